//! What a protocol asks of a kernel pre-filter, below the protocols that answer with it.

/// What a kernel pre-filter lets through for a protocol's requests in a UDP datagram (whatever
/// else the core then checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpMatch<'a> {
    /// Every datagram to this destination port.
    Port(u16),
    /// A datagram with `bytes` at `offset` of its payload, to any port.
    Payload {
        /// Where in the payload.
        offset: usize,
        /// What must be there.
        bytes: &'a [u8],
    },
}
