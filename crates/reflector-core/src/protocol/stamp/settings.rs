//! What a filter is configured with for STAMP: its port, the lengths it answers, the timestamp
//! format and where sequence numbers come from. Below the filter, which holds them, and the answer, which uses
//! them.

/// The default UDP port of STAMP (RFC 8762 §4.1) and TWAMP (RFC 5357).
pub const DEFAULT_STAMP_PORT: u16 = 862;
/// The size of STAMP's base packet in unauthenticated mode (RFC 8762 §4.2.1, §4.3.1).
pub const BASE_LEN: usize = 44;
/// The shortest request answered at its own size: through the sender's TTL at byte 40 (a
/// TWAMP-Light reflector packet, RFC 5357 §4.2.1).
pub const MIN_LEN: usize = crate::wire::STAMP_MIN_LEN;
/// The shortest request answered at all: a TWAMP-Light Session-Sender packet without padding
/// (sequence number, timestamp, error estimate: RFC 5357 §4.1.2). One under [`MIN_LEN`] is
/// answered with the 41-byte reflector packet, the frame grown (`grow_short`).
pub const MIN_REQUEST_LEN: usize = 14;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// 2^64 / 10^9, rounded up: nanoseconds × this >> 32 is the NTP fraction (2^-32 s units)
/// without a division; below 10^9 ns the product fits 64 bits.
pub const NTP_FRACTION_PER_NS: u64 = 18_446_744_074;

/// How timestamps are written (RFC 8762 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampFormat {
    /// NTP 64-bit: seconds since 1900 and a 2^-32 s fraction (Z = 0).
    #[default]
    Ntp,
    /// PTPv2 truncated: seconds since 1970 and nanoseconds (Z = 1).
    Ptp,
}

impl TimestampFormat {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TimestampFormat::Ntp => "ntp",
            TimestampFormat::Ptp => "ptp",
        }
    }

    /// `ns` nanoseconds since the Unix epoch (UTC) in this format, as the 8 wire bytes.
    pub fn encode(self, ns: u64) -> [u8; 8] {
        let (secs, nanos) = (ns / 1_000_000_000, ns % 1_000_000_000);
        let (high, low) = match self {
            // The fraction as nanos × 2^32 / 10^9 with a multiply ([`NTP_FRACTION_PER_NS`]), as
            // the XDP program computes it too: at most one 2^-32 s unit above the exact floor,
            // and decoding gives the nanosecond back.
            TimestampFormat::Ntp => {
                ((secs + NTP_UNIX_OFFSET) as u32, ((nanos * NTP_FRACTION_PER_NS) >> 32) as u32)
            }
            TimestampFormat::Ptp => (secs as u32, nanos as u32),
        };
        let mut out = [0; 8];
        out[..4].copy_from_slice(&high.to_be_bytes());
        out[4..].copy_from_slice(&low.to_be_bytes());
        out
    }

    /// The 8 wire bytes of a timestamp in this format as nanoseconds since the Unix epoch (an
    /// NTP time before 1970 counts from the next NTP era, 2036, as RFC 5905 §6 suggests for
    /// times in the era that began then).
    pub fn decode(self, bytes: [u8; 8]) -> u64 {
        let high = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64;
        let low = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as u64;
        match self {
            TimestampFormat::Ntp => {
                let secs = if high >= NTP_UNIX_OFFSET {
                    high - NTP_UNIX_OFFSET
                } else {
                    high + (1 << 32) - NTP_UNIX_OFFSET
                };
                // Round to the nearest nanosecond, so that decode(encode(t)) is t.
                secs * 1_000_000_000 + ((low * 1_000_000_000 + (1 << 31)) >> 32)
            }
            TimestampFormat::Ptp => high * 1_000_000_000 + low,
        }
    }
}

/// Where the answer's sequence number comes from (RFC 8762 §4.2: stateless or stateful).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SequenceMode {
    /// The sender's sequence number, copied.
    #[default]
    Stateless,
    /// A counter of the reflector's own per session, from 0: the sender tells loss on the way
    /// out from loss on the way back.
    Stateful,
}

impl SequenceMode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SequenceMode::Stateless => "stateless",
            SequenceMode::Stateful => "stateful",
        }
    }
}
