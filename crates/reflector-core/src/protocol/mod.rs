//! The protocols a reflector answers, a module each: which frames are its requests (the
//! classifier hands each a UDP datagram by its destination port) and what they become.
//!
//! | protocol | module | recognised by | answered by |
//! |---|---|---|---|
//! | ITO, RFC 2544, Y.1564, custom | [`signatures`] | bytes of the payload, on the test port | the reflection (`crate::reflect`) |
//! | STAMP / TWAMP-Light | [`stamp`] | the STAMP port | [`stamp::respond`], then the reflection |
//!
//! What each listens on is [`udp_ports`] (the ports a run holds, so that the host's stack stays
//! quiet), and what a kernel pre-filter must let through for it is [`udp_matches`]: the data
//! paths build their filters from these, not from a protocol's own rules.

pub mod signatures;
pub mod stamp;
mod udp;

pub use udp::UdpMatch;

use alloc::vec::Vec;

use crate::filter::Filter;
use crate::signature::Family;

/// What the protocols `filter` selects need a pre-filter to let through: the ports first (STAMP),
/// then the signatures' bytes.
pub fn udp_matches(filter: &Filter) -> Vec<UdpMatch<'_>> {
    let mut out: Vec<UdpMatch<'_>> = stamp::udp_matches(filter).collect();
    out.extend(signatures::udp_matches(filter));
    out
}

/// The UDP ports the protocols `filter` selects listen on, each once: the test port when a
/// signature family is on (0: any port), the STAMP port when STAMP is.
pub fn udp_ports(filter: &Filter) -> impl Iterator<Item = u16> + '_ {
    let signatures = filter.families().iter().any(|f| f != Family::Stamp);
    signatures.then_some(filter.port()).into_iter().chain(filter.stamp_port())
}
