//! The STAMP (RFC 8762) and TWAMP-Light (RFC 5357 §4.2.1) Session-Reflector, unauthenticated
//! mode: what a STAMP test packet becomes once [`crate::classify`] accepted it.
//!
//! Pure like the rest of the core: the receive and transmit times come in as arguments
//! ([`Times`]), the per-session sequence counters in a table the caller owns ([`Sessions`]).
//!
//! The Session-Reflector packet, offsets in the UDP payload (`docs/PACKET-RULES.md` "STAMP"):
//! sequence number 0..4, transmit timestamp T3 4..12, error estimate 12..14, SSID 14..16
//! (echoed, RFC 8972), receive timestamp T2 16..24, the sender's sequence number, timestamp and
//! error estimate 24..38, zero 38..40, the sender's TTL / hop limit at 40, zero 41..44. Bytes
//! past 44 (TLVs, padding) are returned as they came, and the answer is as long as the
//! request. A request of 41 to 43 bytes (a TWAMP-Light sender's minimum) is answered with the
//! fields that fit; a shorter one cannot hold the answer at its own size and is rejected
//! ([`crate::Reject::StampLength`]).

use crate::checksum;
use crate::classify::{Hit, L3Kind};
use crate::wire::UDP_HEADER_LEN;

/// The default UDP port of STAMP (RFC 8762 §4.1) and TWAMP (RFC 5357).
pub const DEFAULT_STAMP_PORT: u16 = 862;
/// The size of STAMP's base packet in unauthenticated mode (RFC 8762 §4.2.1, §4.3.1).
pub const BASE_LEN: usize = 44;
/// The shortest request answered: through the sender's TTL at byte 40 (a TWAMP-Light
/// reflector packet, RFC 5357 §4.2.1).
pub const MIN_LEN: usize = 41;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

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
            // The fraction rounds down: nanos < 10^9 < 2^30, so the shift cannot overflow.
            TimestampFormat::Ntp => ((secs + NTP_UNIX_OFFSET) as u32, ((nanos << 32) / 1_000_000_000) as u32),
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

/// The Error Estimate field (RFC 4656 §4.1.2, RFC 8762 §4.2.1): S (synchronised to UTC), Z
/// (PTP format), a 6-bit scale and an 8-bit multiplier, the error being multiplier × 2^(scale −
/// 32) seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEstimate(u16);

impl ErrorEstimate {
    /// The estimate of a clock whose state is unknown: not synchronised, 16 s (the largest
    /// maximum error the Linux kernel reports for a clock nobody disciplines).
    pub const UNKNOWN: ErrorEstimate = ErrorEstimate(29 << 8 | 128);

    /// The estimate of a clock whose error is at most `error_ns` nanoseconds, `synchronised` to
    /// UTC or not: the smallest scale whose multiplier (rounded up, so the estimate never
    /// understates) fits 8 bits. At least 1 ns (the multiplier is never 0, RFC 4656).
    pub fn new(synchronised: bool, error_ns: u64) -> ErrorEstimate {
        // error / 2^(scale - 32) s = error_ns × 2^(32 - scale) / 10^9.
        let mut scale = 0u16;
        let multiplier = loop {
            let units = ((error_ns.max(1) as u128) << 32).div_ceil(1_000_000_000u128 << scale);
            if units <= 255 || scale == 63 {
                break units.clamp(1, 255) as u16;
            }
            scale += 1;
        };
        ErrorEstimate(u16::from(synchronised) << 15 | scale << 8 | multiplier)
    }

    /// The 16 bits as sent (Z clear).
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The error it states, in nanoseconds (rounded up).
    pub fn error_ns(self) -> u64 {
        let (scale, multiplier) = ((self.0 >> 8 & 0x3f) as u32, (self.0 & 0xff) as u128);
        (((multiplier * 1_000_000_000u128) << scale).div_ceil(1 << 32)) as u64
    }

    /// The S bit: synchronised to UTC.
    pub fn synchronised(self) -> bool {
        self.0 & 0x8000 != 0
    }

    /// An estimate as received.
    pub fn from_bits(bits: u16) -> ErrorEstimate {
        ErrorEstimate(bits)
    }
}

/// The times of one answer, in nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// T2: when the request was received.
    pub received: u64,
    /// T3: when the answer leaves (as late as the data path can read a clock before it is sent).
    pub sent: u64,
}

/// What the responder writes besides the times: the configured formats and the clock's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Timestamp format.
    pub format: TimestampFormat,
    /// The clock's error estimate (the Z bit is added for PTP).
    pub error: ErrorEstimate,
    /// The answer's sequence number, from [`Sessions::next`], or `None` to copy the sender's.
    pub sequence: Option<u32>,
}

/// Rewrites the STAMP request `hit` was classified from into the Session-Reflector packet (the
/// payload only; the caller swaps the addresses and ports) and brings its UDP checksum up to
/// date: incrementally (RFC 1624), or over the whole datagram when the request's checksum was
/// left for offload to complete (it then holds the pseudo-header's sum). Out of range is a
/// no-op, so a `Hit` applied to the wrong frame cannot panic.
pub fn respond(frame: &mut [u8], hit: &Hit, answer: &Answer, times: Times) {
    let ttl_at = match hit.l3() {
        L3Kind::V4 => hit.l3_offset() + 8,
        L3Kind::V6 => hit.l3_offset() + 7,
    };
    let Some(&ttl) = frame.get(ttl_at) else { return };
    let v4 = hit.l3() == L3Kind::V4;
    let l4 = hit.l4_offset();
    let Some(pseudo) = pseudo_header_sum(frame, hit) else { return };
    let Some(udp) = frame.get_mut(l4..) else { return };
    let Some(udp_len) = udp.get(4..6).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize) else { return };
    let Some(udp) = udp.get_mut(..udp_len) else { return };
    if udp_len < UDP_HEADER_LEN + MIN_LEN {
        return;
    }
    let (header, payload) = udp.split_at_mut(UDP_HEADER_LEN);
    let region = &mut payload[..(udp_len - UDP_HEADER_LEN).min(BASE_LEN)];
    let mut request = [0u8; BASE_LEN];
    request[..region.len()].copy_from_slice(region);

    let mut out = [0u8; BASE_LEN];
    let sequence = answer.sequence.map_or([request[0], request[1], request[2], request[3]], u32::to_be_bytes);
    let z = match answer.format {
        TimestampFormat::Ntp => 0,
        TimestampFormat::Ptp => 0x4000,
    };
    out[0..4].copy_from_slice(&sequence);
    out[4..12].copy_from_slice(&answer.format.encode(times.sent));
    out[12..14].copy_from_slice(&(answer.error.bits() | z).to_be_bytes());
    out[14..16].copy_from_slice(&request[14..16]);
    out[16..24].copy_from_slice(&answer.format.encode(times.received));
    out[24..38].copy_from_slice(&request[0..14]);
    out[40] = ttl;
    let out = &out[..region.len()];

    let old = checksum::add(0, region);
    region.copy_from_slice(out);
    let sent = u16::from_be_bytes([header[6], header[7]]);
    // An IPv4 sender may leave the checksum out (0); the answer does too.
    if v4 && sent == 0 {
        return;
    }
    let sum = if sent == fold(pseudo) {
        // The field holds the pseudo-header's sum alone: a checksum left for offload to
        // complete (CHECKSUM_PARTIAL), as a sender on the same host or a veth hands it over.
        // The answer leaves without offload, so it gets its whole checksum.
        header[6..8].fill(0);
        let whole = checksum::add(checksum::add(pseudo, header), payload);
        header[6..8].copy_from_slice(&sent.to_be_bytes());
        whole
    } else {
        // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), written below as the sum HC' complements.
        (!sent) as u32 + (!fold(old)) as u32 + fold(checksum::add(0, out)) as u32
    };
    // A result of 0 is sent as all ones (RFC 768; RFC 8200 §8.1).
    let updated = match !fold(sum) {
        0 => 0xffff,
        c => c,
    };
    header[6..8].copy_from_slice(&updated.to_be_bytes());
}

/// The one's-complement sum of the UDP pseudo-header (RFC 768; RFC 8200 §8.1): both
/// addresses (their order does not change it), the protocol and the UDP length.
fn pseudo_header_sum(frame: &[u8], hit: &Hit) -> Option<u32> {
    let l3 = hit.l3_offset();
    let addresses = match hit.l3() {
        L3Kind::V4 => frame.get(l3 + 12..l3 + 20)?,
        L3Kind::V6 => frame.get(l3 + 8..l3 + 40)?,
    };
    let udp_len = frame.get(hit.l4_offset() + 4..hit.l4_offset() + 6)?;
    let sum = checksum::add(0, addresses) + crate::wire::IPPROTO_UDP as u32;
    Some(checksum::add(sum, udp_len))
}

/// A one's-complement sum folded to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// How many sessions a [`Sessions`] table of the data paths holds.
pub const SESSIONS: usize = 4096;
/// A session unseen for this long starts again from sequence number 0.
pub const SESSION_IDLE_NS: u64 = 300 * 1_000_000_000;
/// Slots looked at for a session (from the one its hash names).
const PROBE: usize = 8;

/// What identifies a session (RFC 8972 §3: the addresses and ports, and the SSID): both IP
/// addresses (an IPv4 one in its first 4 bytes), both ports, the SSID.
type SessionKey = [u8; 38];

#[derive(Clone, Copy)]
struct Session {
    key: SessionKey,
    /// The next sequence number to send.
    next: u32,
    /// When it was last seen (ns); 0 for a free slot.
    seen: u64,
}

/// The per-session counters of stateful mode: a fixed table of `N` entries ([`SESSIONS`] on
/// the data paths), a session idle for [`SESSION_IDLE_NS`] forgotten. When the slots a new
/// session may take are all in use, the one idle longest is taken over: counted in
/// [`SessionTable::evicted`], and that session starts again from 0 when it comes back.
pub struct Sessions<const N: usize = SESSIONS> {
    slots: [Session; N],
    evicted: u64,
}

impl<const N: usize> Default for Sessions<N> {
    fn default() -> Self {
        Sessions { slots: [Session { key: [0; 38], next: 0, seen: 0 }; N], evicted: 0 }
    }
}

impl<const N: usize> core::fmt::Debug for Sessions<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sessions")
            .field("active", &self.slots.iter().filter(|s| s.seen != 0).count())
            .finish()
    }
}

/// A table of [`Sessions`] of any size, as the responder uses it.
pub trait SessionTable {
    /// The sequence number of the next answer in the session of the request `hit` was
    /// classified from, at `now` (ns); `None` when the frame is not that request.
    fn next(&mut self, frame: &[u8], hit: &Hit, now: u64) -> Option<u32>;
    /// Live sessions taken over by a new one because the table was full where it hashed.
    fn evicted(&self) -> u64;
}

impl<const N: usize> SessionTable for Sessions<N> {
    fn next(&mut self, frame: &[u8], hit: &Hit, now: u64) -> Option<u32> {
        let key = session_key(frame, hit)?;
        if N == 0 {
            return None;
        }
        let now = now.max(1);
        let start = hash(&key) as usize % N;
        let mut take = start;
        for i in 0..PROBE.min(N) {
            let at = (start + i) % N;
            let slot = &mut self.slots[at];
            if slot.seen != 0 && slot.key == key {
                if now.saturating_sub(slot.seen) > SESSION_IDLE_NS {
                    slot.next = 0;
                }
                slot.seen = now;
                let n = slot.next;
                slot.next = n.wrapping_add(1);
                return Some(n);
            }
            let free = |s: &Session| s.seen == 0 || now.saturating_sub(s.seen) > SESSION_IDLE_NS;
            let (candidate, best) = (&self.slots[at], &self.slots[take]);
            if free(candidate) && !free(best) || !free(best) && candidate.seen < best.seen {
                take = at;
            }
        }
        let slot = &mut self.slots[take];
        if slot.seen != 0 && now.saturating_sub(slot.seen) <= SESSION_IDLE_NS {
            self.evicted += 1;
        }
        *slot = Session { key, next: 1, seen: now };
        Some(0)
    }

    fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// The session of a request (before its addresses are swapped).
fn session_key(frame: &[u8], hit: &Hit) -> Option<SessionKey> {
    let mut key = [0u8; 38];
    let l3 = hit.l3_offset();
    match hit.l3() {
        L3Kind::V4 => key[..8].copy_from_slice(frame.get(l3 + 12..l3 + 20)?),
        L3Kind::V6 => key[..32].copy_from_slice(frame.get(l3 + 8..l3 + 40)?),
    }
    let l4 = hit.l4_offset();
    key[32..36].copy_from_slice(frame.get(l4..l4 + 4)?);
    key[36..38].copy_from_slice(frame.get(l4 + UDP_HEADER_LEN + 14..l4 + UDP_HEADER_LEN + 16)?);
    Some(key)
}

/// FNV-1a over the key.
fn hash(key: &SessionKey) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_encode_as_ntp_and_ptp() {
        // 2026-11-30 00:00:00.5 UTC.
        let ns = 1_796_083_200 * 1_000_000_000 + 500_000_000;
        let ntp = TimestampFormat::Ntp.encode(ns);
        assert_eq!(u32::from_be_bytes(ntp[..4].try_into().unwrap()) as u64, 1_796_083_200 + NTP_UNIX_OFFSET);
        assert_eq!(u32::from_be_bytes(ntp[4..].try_into().unwrap()), 0x8000_0000);
        let ptp = TimestampFormat::Ptp.encode(ns);
        assert_eq!(u32::from_be_bytes(ptp[..4].try_into().unwrap()), 1_796_083_200);
        assert_eq!(u32::from_be_bytes(ptp[4..].try_into().unwrap()), 500_000_000);
        for t in [0, 1, 999_999_999, ns, ns + 123_456_789, 4_000_000_000 * 1_000_000_000 + 7] {
            assert_eq!(TimestampFormat::Ptp.decode(TimestampFormat::Ptp.encode(t)), t);
            assert_eq!(TimestampFormat::Ntp.decode(TimestampFormat::Ntp.encode(t)), t);
        }
        assert_eq!(TimestampFormat::Ntp.decode(TimestampFormat::Ntp.encode(ns)), ns);
        assert_eq!(TimestampFormat::Ptp.decode(TimestampFormat::Ptp.encode(ns)), ns);
    }

    #[test]
    fn error_estimates_never_understate_and_fit() {
        for (synced, ns) in [
            (true, 0),
            (true, 1),
            (true, 1_000),
            (false, 16_000_000_000),
            (true, 500_000),
            (false, u64::MAX / 4),
        ] {
            let e = ErrorEstimate::new(synced, ns);
            assert_eq!(e.synchronised(), synced);
            assert_ne!(e.bits() & 0xff, 0, "multiplier never 0");
            assert_eq!(e.bits() & 0x4000, 0, "Z is the format's");
            assert!(e.error_ns() >= ns.max(1).min(e.error_ns()), "{ns}: {}", e.error_ns());
            if ns < 1 << 40 {
                assert!(e.error_ns() >= ns, "{ns} understated as {}", e.error_ns());
                // The smallest scale: at most one step of the scale (a factor of 2) above,
                // plus one multiplier unit.
                assert!(e.error_ns() <= 2 * ns.max(1) + 4, "{ns} overstated as {}", e.error_ns());
            }
        }
        assert_eq!(ErrorEstimate::UNKNOWN, ErrorEstimate::new(false, 16_000_000_000));
        // 1 µs: 1e-6 s × 2^32 = 4294.97 units of 2^-32 s; at scale 5, 134.2 → 135.
        assert_eq!(ErrorEstimate::new(true, 1_000).bits(), 0x8000 | 5 << 8 | 135);
    }

    #[test]
    fn sessions_count_per_session_expire_and_evict() {
        use crate::build::FrameSpec;
        use crate::wire::MacAddr;
        let hit_of = |frame: &[u8]| {
            crate::classify(frame, &crate::testing::stamp_filter(MacAddr([2, 0, 0, 0, 0, 1]))).unwrap()
        };
        let mut payload = [0u8; 44];
        let frame = |src_port: u16, ssid: u16, payload: &mut [u8; 44]| {
            payload[14..16].copy_from_slice(&ssid.to_be_bytes());
            let spec = FrameSpec::ipv4(
                MacAddr([2, 0, 0, 0, 0, 2]),
                MacAddr([2, 0, 0, 0, 0, 1]),
                [10, 0, 0, 2],
                [10, 0, 0, 1],
                (src_port, DEFAULT_STAMP_PORT),
                payload,
            );
            let mut buf = std::vec![0u8; spec.len()];
            spec.write(&mut buf).unwrap();
            buf
        };
        let mut s = Sessions::<SESSIONS>::default();
        let a = frame(40_000, 0, &mut payload);
        let b = frame(40_001, 0, &mut payload);
        let c = frame(40_000, 7, &mut payload);
        let t = 1_000_000_000;
        assert_eq!(s.next(&a, &hit_of(&a), t), Some(0));
        assert_eq!(s.next(&a, &hit_of(&a), t + 1), Some(1));
        assert_eq!(s.next(&b, &hit_of(&b), t + 2), Some(0), "another port, another session");
        assert_eq!(s.next(&c, &hit_of(&c), t + 3), Some(0), "another SSID, another session");
        assert_eq!(s.next(&a, &hit_of(&a), t + 4), Some(2));
        assert_eq!(s.next(&a, &hit_of(&a), t + 5 + SESSION_IDLE_NS), Some(0), "idle: starts again");
        assert_eq!(s.evicted(), 0);
        // Many more sessions than slots: every one gets a number, the live ones taken over are
        // counted.
        let mut fresh = 0;
        for port in 0..(2 * SESSIONS as u16) {
            let f = frame(10_000 + port, 1, &mut payload);
            fresh += (s.next(&f, &hit_of(&f), 2 * SESSION_IDLE_NS) == Some(0)) as u64;
        }
        assert_eq!(fresh, 2 * SESSIONS as u64);
        assert!(s.evicted() >= SESSIONS as u64 - 8, "{}", s.evicted());
    }
}
