//! The STAMP (RFC 8762) and TWAMP-Light (RFC 5357 §4.2.1) Session-Reflector, unauthenticated
//! mode: which frames are STAMP requests (`recognise`, `recognise_fast`, called by the
//! classifier for a datagram to the STAMP port) and what such a request becomes (the answer).
//!
//! Pure like the rest of the core: the receive and transmit times come in as arguments
//! ([`Times`]), the per-session sequence counters in a table the caller owns ([`Sessions`]).
//!
//! The Session-Reflector packet, offsets in the UDP payload (`docs/PACKET-RULES.md` "STAMP"):
//! sequence number 0..4, transmit timestamp T3 4..12, error estimate 12..14, SSID 14..16
//! (echoed, RFC 8972), receive timestamp T2 16..24, the sender's sequence number, timestamp and
//! error estimate 24..38, zero 38..40, the sender's TTL / hop limit at 40, zero 41..44. Bytes
//! past 44 (TLVs, padding) are returned as they came, and the answer is as long as the
//! request. A request of 41 to 43 bytes (a TWAMP-Light reflector packet's length) is answered
//! with the fields that fit; a shorter one (from 14 bytes, a TWAMP-Light sender's minimum) with
//! the 41-byte reflector packet, the frame grown ([`grow_short`]), or refused as
//! [`crate::Reject::StampLength`] where the filter says so.

pub(crate) mod settings;

pub use settings::{
    BASE_LEN, DEFAULT_STAMP_PORT, MIN_LEN, MIN_REQUEST_LEN, NTP_FRACTION_PER_NS, NTP_UNIX_OFFSET,
    SequenceMode, TimestampFormat,
};

use crate::checks::{FAST_SPAN, hops_left, late_checks, late_checks_fast};
use crate::filter::Filter;
use crate::signature::Signature;
use crate::verdict::{Hit, L3Kind, Reject};
use crate::wire::{IPV4_MIN_HEADER_LEN, UDP_HEADER_LEN, be16};

/// What a pre-filter must let through for STAMP: every datagram to the STAMP port, when STAMP
/// is on.
pub(crate) fn udp_matches(filter: &Filter) -> impl Iterator<Item = super::udp::UdpMatch<'static>> {
    filter.stamp_port().map(super::udp::UdpMatch::Port).into_iter()
}

/// The ordered checks' rest for a datagram to the STAMP port, at the offsets they found (`l3`,
/// `l4`, and the end of the IP packet): long enough for the answer (its fields through the
/// sender's TTL), not a loop, then the late checks.
#[inline(always)]
pub(crate) fn recognise(
    frame: &[u8],
    filter: &Filter,
    kind: L3Kind,
    (l3, l4, end): (usize, usize, usize),
    vlan_tags: u8,
) -> Result<Hit, Reject> {
    if end - l4 < UDP_HEADER_LEN + filter.stamp_min_payload {
        return Err(Reject::StampLength);
    }
    let src_port = be16(frame, l4).ok_or(Reject::ShortUdp)?;
    if filter.stamp_takes_a_hop(src_port) && hops_left(frame, kind, l3) == 0 {
        return Err(Reject::Loop);
    }
    late_checks(frame, kind, l3, l4, filter)?;
    Ok(Hit::found(Signature::Stamp, kind, l3, l4, vlan_tags))
}

/// The same on the classifier's fast path (untagged IPv4 without options, the frame's first
/// bytes `b`, its IPv4 total length `total_len`): the answer the ordered checks would give.
#[inline(always)]
pub(crate) fn recognise_fast(b: &[u8; FAST_SPAN], filter: &Filter, total_len: usize) -> Result<Hit, Reject> {
    if total_len < IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN + filter.stamp_min_payload {
        return Err(Reject::StampLength);
    }
    if filter.stamp_takes_a_hop(u16::from_be_bytes([b[34], b[35]])) && b[22] == 0 {
        core::hint::cold_path();
        return Err(Reject::Loop);
    }
    late_checks_fast(b, filter).map(|()| Hit::fast(Signature::Stamp as u8))
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
///
/// The common request, a base packet or longer in IPv4 without options or in IPv6, is answered
/// at fixed offsets from the IP header (`respond_fixed`); anything else by `respond_any`.
#[inline(always)]
pub fn respond(frame: &mut [u8], hit: &Hit, answer: &Answer, times: Times) {
    let (l3, l4) = (hit.l3_offset(), hit.l4_offset());
    let done = match hit.l3() {
        L3Kind::V4 if l4 == l3 + 20 => frame
            .get_mut(l3..)
            .and_then(|ip| ip.first_chunk_mut())
            .is_some_and(|ip| respond_fixed::<{ 20 + FIXED_UDP }, true>(ip, answer, times)),
        L3Kind::V6 if l4 == l3 + 40 => frame
            .get_mut(l3..)
            .and_then(|ip| ip.first_chunk_mut())
            .is_some_and(|ip| respond_fixed::<{ 40 + FIXED_UDP }, false>(ip, answer, times)),
        _ => false,
    };
    if !done {
        respond_any(frame, hit, answer, times);
    }
}

/// Makes room in `buf` for the answer to the short STAMP request `hit` was classified from (its
/// payload under [`MIN_LEN`] bytes, the frame `len` bytes, any Ethernet padding after the IP
/// packet): the UDP payload becomes [`MIN_LEN`] bytes, the new bytes zero, the UDP length, the
/// IPv4 total length (its header checksum updated, RFC 1624 eqn. 3) or IPv6 payload length
/// follow, and the UDP checksum field is set to the pseudo-header's sum alone, so that
/// [`respond`] gives the answer its whole checksum (as for a request whose checksum was left to
/// offload). Returns the answer's frame length (the padding dropped), or `None` when `buf` has
/// no room for it (or the hit does not fit the frame).
pub fn grow_short(buf: &mut [u8], len: usize, hit: &Hit) -> Option<usize> {
    let (l3, l4) = (hit.l3_offset(), hit.l4_offset());
    let udp_len = u16::from_be_bytes(*buf.get(l4 + 4..)?.first_chunk::<2>()?) as usize;
    let (end, new_end) = (l4 + udp_len, l4 + UDP_HEADER_LEN + MIN_LEN);
    if end > len || new_end > buf.len() || udp_len >= UDP_HEADER_LEN + MIN_LEN {
        return None;
    }
    let added = (new_end - end) as u16;
    buf[end..new_end].fill(0);
    buf[l4 + 4..l4 + 6].copy_from_slice(&((UDP_HEADER_LEN + MIN_LEN) as u16).to_be_bytes());
    match hit.l3() {
        L3Kind::V4 => {
            let total = u16::from_be_bytes([buf[l3 + 2], buf[l3 + 3]]);
            let grown = total + added;
            buf[l3 + 2..l3 + 4].copy_from_slice(&grown.to_be_bytes());
            let hc = u16::from_be_bytes([buf[l3 + 10], buf[l3 + 11]]);
            let hc = crate::checksum::updated(hc, total, grown);
            buf[l3 + 10..l3 + 12].copy_from_slice(&hc.to_be_bytes());
        }
        L3Kind::V6 => {
            let payload = u16::from_be_bytes([buf[l3 + 4], buf[l3 + 5]]) + added;
            buf[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
        }
    }
    let pseudo = fold_le(pseudo_header_sum(buf, hit)?);
    buf[l4 + 6..l4 + 8].copy_from_slice(&pseudo.to_le_bytes());
    Some(new_end)
}

/// What [`respond_fixed`] reads past the IP header: the UDP header and the base packet.
const FIXED_UDP: usize = UDP_HEADER_LEN + BASE_LEN;

/// [`respond`] for `ip`, the IP header (IPv4 of 20 bytes when `V4`, else IPv6) and the UDP
/// header and base packet that follow it, `N` bytes: every offset a constant. Leaves the
/// request as it is and returns `false` when its payload is shorter than the base packet or
/// its checksum was left for offload, for [`respond_any`].
#[inline(always)]
fn respond_fixed<const N: usize, const V4: bool>(ip: &mut [u8; N], answer: &Answer, times: Times) -> bool {
    let l4 = N - FIXED_UDP;
    let ttl = if V4 { ip[8] } else { ip[7] };
    let word = |at: usize| u32::from_le_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]) as u64;
    let addresses = if V4 { word(12) + word(16) } else { (8..40).step_by(4).map(word).sum() };
    let udp_len = u16::from_be_bytes([ip[l4 + 4], ip[l4 + 5]]) as usize;
    let sent = u16::from_le_bytes([ip[l4 + 6], ip[l4 + 7]]);
    let pseudo = addresses + pseudo_rest([ip[l4 + 4], ip[l4 + 5]]);
    if udp_len < FIXED_UDP || sent == fold_le(pseudo) {
        core::hint::cold_path();
        return false;
    }
    let (header, payload) = ip[l4..].split_at_mut(UDP_HEADER_LEN);
    let base: &mut [u8; BASE_LEN] = payload.try_into().expect("N - l4 - 8 = 44 bytes");
    let (removed, added) = rewrite(base, ttl, answer, times);
    // An IPv4 sender may leave the checksum out (0); the answer does too.
    if !(V4 && sent == 0) {
        header[6..8].copy_from_slice(&updated_checksum(sent, removed, added).to_le_bytes());
    }
    true
}

/// [`respond`] for any request: offsets from `hit`, requests of 41 to 43 bytes, checksums left
/// for offload.
#[cold]
#[inline(never)]
fn respond_any(frame: &mut [u8], hit: &Hit, answer: &Answer, times: Times) {
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
    let (removed, added) = match payload.first_chunk_mut::<BASE_LEN>() {
        Some(base) => rewrite(base, ttl, answer, times),
        None => rewrite_short(payload, ttl, answer, times),
    };
    let sent = u16::from_le_bytes([header[6], header[7]]);
    // An IPv4 sender may leave the checksum out (0); the answer does too.
    if v4 && sent == 0 {
        return;
    }
    let updated = if sent == fold_le(pseudo) {
        // The field holds the pseudo-header's sum alone: a checksum left for offload to
        // complete (CHECKSUM_PARTIAL), as a sender on the same host or a veth hands it over.
        // The answer leaves without offload, so it gets its whole checksum.
        header[6..8].fill(0);
        let whole = !fold_le(pseudo + sum_le_slice(header) + sum_le_slice(payload));
        // A result of 0 is sent as all ones (RFC 768; RFC 8200 §8.1), in either byte order.
        if whole == 0 { 0xffff } else { whole }
    } else {
        updated_checksum(sent, removed, added)
    };
    header[6..8].copy_from_slice(&updated.to_le_bytes());
}

/// The checksum field after a change: `sent` the field before (read little-endian, like the
/// sums: the one's-complement sum of words read in the other byte order is the byte-swapped sum,
/// RFC 1071 §2 (B)), `removed` and `added` the sums of what the change took out and put in.
/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). A result of 0 is sent as all ones (RFC 768; RFC 8200
/// §8.1), in either byte order.
#[inline(always)]
fn updated_checksum(sent: u16, removed: u64, added: u64) -> u16 {
    let updated = !fold_le((!sent) as u64 + (!fold_le(removed)) as u64 + fold_le(added) as u64);
    if updated == 0 { 0xffff } else { updated }
}

/// Rewrites the base packet of a request into the answer's, in place, from loads and stores of
/// whole words; returns the sums (of little-endian 32-bit words, see [`respond`]) of the bytes
/// it took out and of those it put in, for the checksum.
///
/// Most of the answer is the request moved: the sender's sequence number, timestamp and error
/// estimate (0..14) go to 24..38, where a one's-complement sum does not see the move (the same
/// 16-bit words at even offsets), and the SSID (14..16) stays. What changes the sum is what
/// the moved fields overwrite, bytes 16..44 (the sender's zeros, as a rule), and what is new:
/// the sequence number at 0, T3 at 4, the error estimate at 12, T2 at 16, the TTL at 40.
#[inline(always)]
fn rewrite(base: &mut [u8; BASE_LEN], ttl: u8, answer: &Answer, times: Times) -> (u64, u64) {
    let word = |at: usize| u32::from_le_bytes([base[at], base[at + 1], base[at + 2], base[at + 3]]) as u64;
    let sender = u64::from_le_bytes(base[..8].try_into().expect("8 bytes"));
    let sender_rest = u32::from_le_bytes(base[8..12].try_into().expect("4 bytes"));
    let sender_error = u16::from_le_bytes([base[12], base[13]]);
    let removed = word(16) + word(20) + word(24) + word(28) + word(32) + word(36) + word(40);
    let z = match answer.format {
        TimestampFormat::Ntp => 0,
        TimestampFormat::Ptp => 0x4000,
    };
    // Read little-endian, like the sums.
    let error = (answer.error.bits() | z).swap_bytes();
    // The wire bytes as a little-endian word, like everything here.
    let wire = |ns: u64| u64::from_le_bytes(answer.format.encode(ns));
    let (t3, t2) = (wire(times.sent), wire(times.received));
    let halves = |t: u64| (t & 0xffff_ffff) + (t >> 32);
    // The answer's sequence number comes on top: the sender's moves to 24 and is also copied
    // (stateless) or a new one takes its place (stateful).
    let sequence = match answer.sequence {
        Some(n) => {
            base[..4].copy_from_slice(&n.to_be_bytes());
            n.swap_bytes() as u64
        }
        None => sender & 0xffff_ffff,
    };
    let added = sequence + halves(t3) + halves(t2) + error as u64 + ttl as u64;
    base[4..12].copy_from_slice(&t3.to_le_bytes());
    base[12..14].copy_from_slice(&error.to_le_bytes());
    base[16..24].copy_from_slice(&t2.to_le_bytes());
    base[24..32].copy_from_slice(&sender.to_le_bytes());
    base[32..36].copy_from_slice(&sender_rest.to_le_bytes());
    base[36..44].copy_from_slice(&(sender_error as u64 | (ttl as u64) << 32).to_le_bytes());
    (removed, added)
}

/// [`rewrite`] for a request of 41 to 43 bytes: on a copy padded with zeros, of which the
/// answer takes the bytes that fit (bytes 41..44 of the answer are zero, so the sums over the
/// copy are those over the request).
#[cold]
#[inline(never)]
fn rewrite_short(payload: &mut [u8], ttl: u8, answer: &Answer, times: Times) -> (u64, u64) {
    let mut base = [0u8; BASE_LEN];
    let n = payload.len().min(BASE_LEN);
    base[..n].copy_from_slice(&payload[..n]);
    let sums = rewrite(&mut base, ttl, answer, times);
    payload[..n].copy_from_slice(&base[..n]);
    sums
}

/// `bytes` as little-endian 32-bit words (the last one padded with zeros), summed.
fn sum_le_slice(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    let mut sum: u64 = (&mut words).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64).sum();
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        sum += u32::from_le_bytes(last) as u64;
    }
    sum
}

/// A sum of little-endian words folded to 16 bits (end-around carry): 64 to 32 bits, then 32
/// to 16, each as the high half of the value plus itself rotated by half its width (the low
/// halves' carry is the end-around one), as Linux's `csum_fold` does.
#[inline(always)]
fn fold_le(sum: u64) -> u16 {
    let sum = (sum.wrapping_add(sum.rotate_left(32)) >> 32) as u32;
    (sum.wrapping_add(sum.rotate_left(16)) >> 16) as u16
}

/// The sum of the UDP pseudo-header (RFC 768; RFC 8200 §8.1) as little-endian words: both
/// addresses (their order does not change it), the protocol and the UDP length.
#[inline(always)]
fn pseudo_header_sum(frame: &[u8], hit: &Hit) -> Option<u64> {
    let l3 = hit.l3_offset();
    let words = |w: &[u8]| -> u64 {
        w.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64).sum()
    };
    let addresses = match hit.l3() {
        L3Kind::V4 => words(frame.get(l3 + 12..)?.first_chunk::<8>()?),
        L3Kind::V6 => words(frame.get(l3 + 8..)?.first_chunk::<32>()?),
    };
    let l4 = hit.l4_offset();
    let udp_len = frame.get(l4 + 4..l4 + 6)?;
    Some(addresses + pseudo_rest([udp_len[0], udp_len[1]]))
}

/// The pseudo-header's words besides the addresses: the UDP length (as on the wire) and the
/// protocol as the 16-bit word [0, 17], read little-endian.
#[inline(always)]
fn pseudo_rest(udp_len: [u8; 2]) -> u64 {
    u16::from_le_bytes(udp_len) as u64 + ((crate::wire::IPPROTO_UDP as u64) << 8)
}

/// How many sessions a [`Sessions`] table of the data paths holds.
pub const SESSIONS: usize = 4096;
/// A session unseen for this long starts again from sequence number 0.
pub const SESSION_IDLE_NS: u64 = 300 * 1_000_000_000;
/// Slots looked at for a session (from the one its hash names).
const PROBE: usize = 8;

/// What identifies a session (RFC 8972 §3: the addresses and ports, and the SSID), as
/// little-endian words read from the request: both IP addresses (IPv4's in the first word, the
/// next three zero), then both ports and the SSID.
type SessionKey = [u64; 5];

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
        Sessions { slots: [Session { key: [0; 5], next: 0, seen: 0 }; N], evicted: 0 }
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
    let word = |at: usize| frame.get(at..).and_then(|w| w.first_chunk()).map(crate::wire::le64);
    let l3 = hit.l3_offset();
    let mut key = [0u64; 5];
    match hit.l3() {
        L3Kind::V4 => key[0] = word(l3 + 12)?,
        L3Kind::V6 => {
            for (i, k) in key[..4].iter_mut().enumerate() {
                *k = word(l3 + 8 + 8 * i)?;
            }
        }
    }
    // The ports (4 bytes) and, 14 bytes into the payload, the SSID (2).
    let l4 = hit.l4_offset();
    let ssid = frame.get(l4 + UDP_HEADER_LEN + 14..l4 + UDP_HEADER_LEN + 16)?;
    key[4] = word(l4)? & 0xffff_ffff | (u16::from_le_bytes([ssid[0], ssid[1]]) as u64) << 32;
    Some(key)
}

/// The key's words, each mixed by a 64 × 64 → 128-bit multiply (its halves folded) with its own
/// constant, folded together: independent multiplies, not a chain through every byte.
fn hash(key: &SessionKey) -> u64 {
    const K: [u64; 5] = [
        0x9e37_79b9_7f4a_7c15,
        0xbf58_476d_1ce4_e5b9,
        0x94d0_49bb_1331_11eb,
        0xd6e8_feb8_6659_fd93,
        0xa076_1d64_78bd_642f,
    ];
    let mix = |w: u64, k: u64| {
        let p = (w ^ k) as u128 * 0xe703_7ed1_a0b4_28db_u128;
        p as u64 ^ (p >> 64) as u64
    };
    key.iter().zip(K).fold(0, |h, (w, k)| h ^ mix(*w, k))
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
