//! The rules every protocol's request meets after its own (`docs/PACKET-RULES.md`, "Late
//! checks"), and the address screens of the headers: below the classifier and the protocols,
//! which both apply them.

use crate::filter::Filter;
use crate::verdict::{L3Kind, Reject};
use crate::wire::*;

/// Ethernet (14) + IPv4 (20) + UDP (8) + the ITO header (5) and signature (7): what
/// the classifier's fast path reads.
pub(crate) const FAST_SPAN: usize = 54;

/// The little-endian word at `at` in `b` (the offsets are constants, so the bounds are checked
/// when compiling).
#[inline(always)]
pub(crate) fn word_at(b: &[u8; FAST_SPAN], at: usize) -> u64 {
    le64(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The late checks (see `late_checks`) at the classifier's fast path's fixed offsets, on the frame's first
/// bytes `b`.
#[inline(always)]
pub(crate) fn late_checks_fast(b: &[u8; FAST_SPAN], filter: &Filter) -> Result<(), Reject> {
    if is_loop([b[34], b[35]], [b[36], b[37]]) {
        core::hint::cold_path();
        return Err(Reject::Loop);
    }
    // A tester's address differs from ours in its last octet, as a rule: one table load
    // decides, and the whole address is compared only where that octet is one of ours.
    if filter.fast.own_v4_last_octet[b[29] as usize] != 0 {
        core::hint::cold_path();
        if filter.local_v4.contains(&(word_at(b, 26) as u32)) {
            return Err(Reject::SrcIpOwn);
        }
    }
    // The 20 header bytes as five 32-bit words summed in 64 bits (no carry is lost).
    let word32 = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64;
    let header_sum = word32(14) + word32(18) + word32(22) + word32(26) + word32(30);
    if !crate::checksum::fold_is_all_ones(header_sum) {
        core::hint::cold_path();
        return Err(Reject::Ipv4Checksum);
    }
    Ok(())
}

/// An IPv4 address that never sends or receives a test flow on the wire: 0.0.0.0/8 ("this
/// network"), 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast), 255.255.255.255. Read
/// little-endian, so the first octet is the low byte.
#[inline(always)]
pub(crate) fn unusable_ipv4(a: u32) -> bool {
    let first = a & 0xff;
    first == 0 || first == 127 || a & 0xf0 == 0xe0 || a == u32::MAX
}

/// An IPv6 address that never sends or receives a test flow on the wire: ::/96 (unspecified,
/// loopback, the deprecated IPv4-compatible ones), ::ffff:0:0/96 (IPv4-mapped, which RFC 4291
/// §2.5.5.2 keeps off the wire) and ff00::/8 (multicast).
#[inline(always)]
pub(crate) fn unusable_ipv6(a: &[u8; 16]) -> bool {
    let (head, tail) = a.split_at(10);
    a[0] == 0xff || (head == [0; 10] && matches!(tail[..2], [0, 0] | [0xff, 0xff]))
}

/// By an IPv4 address's first octet: non-zero when [`unusable_ipv4`] may hold (0, 127 and
/// 224..=239 it does; 255 it may), zero when it cannot. One load per address on the fast path.
pub(crate) const FIRST_OCTET: [u8; 256] = {
    let mut t = [0; 256];
    let mut octet = 0xe0;
    while octet <= 0xef {
        t[octet] = 1;
        octet += 1;
    }
    t[0] = 1;
    t[127] = 1;
    t[0xff] = 1;
    t
};

/// The checks a frame pays for only once it has passed every other rule (no ordinary traffic
/// gets this far, so no reject is slower for them): the UDP source port is not a reflector's
/// ([`Reject::Loop`]), the source IP is not ours ([`Reject::SrcIpOwn`]), and an IPv4 header
/// carries its right checksum ([`Reject::Ipv4Checksum`]). `l3` and `l4` are the offsets the
/// ordered checks found, so every read below is inside the frame.
#[inline(always)]
pub(crate) fn late_checks(
    frame: &[u8],
    kind: L3Kind,
    l3: usize,
    l4: usize,
    filter: &Filter,
) -> Result<(), Reject> {
    let ports = frame.get(l4..l4 + 4).ok_or(Reject::ShortUdp)?;
    if is_loop([ports[0], ports[1]], [ports[2], ports[3]]) {
        return Err(Reject::Loop);
    }
    match kind {
        L3Kind::V4 => {
            let header_len = (frame[l3] & 0x0f) as usize * 4;
            let header = frame.get(l3..l3 + header_len).ok_or(Reject::ShortIpv4)?;
            let src = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
            // As on the fast path: the whole address only where its last octet is one of ours
            // (unused entries are 0.0.0.0, which never gets here: `src_ip`).
            if filter.fast.own_v4_last_octet[header[15] as usize] != 0 && filter.local_v4.contains(&src) {
                return Err(Reject::SrcIpOwn);
            }
            if !crate::checksum::ipv4_header_ok(header) {
                return Err(Reject::Ipv4Checksum);
            }
        }
        L3Kind::V6 => {
            let src = frame.get(l3 + 8..l3 + 24).ok_or(Reject::ShortIpv6)?;
            if filter.local_v6[..filter.local_v6_len].iter().any(|own| own == src) {
                return Err(Reject::SrcIpOwn);
            }
        }
    }
    Ok(())
}

/// The IPv4 TTL or IPv6 hop limit of the IP header at `l3` (found inside the frame).
#[inline(always)]
pub(crate) fn hops_left(frame: &[u8], kind: L3Kind, l3: usize) -> u8 {
    let at = match kind {
        L3Kind::V4 => l3 + 8,
        L3Kind::V6 => l3 + 7,
    };
    frame.get(at).copied().unwrap_or(0)
}

/// A frame from a reflector's port: from its own destination port, or from the well-known test
/// port. A reflector in mode `all` answers from the port it was sent to, so its answer comes
/// from one of these; a tester sends from a port of its own.
/// The ports as they are on the wire.
#[inline(always)]
fn is_loop(src_port: [u8; 2], dst_port: [u8; 2]) -> bool {
    src_port == dst_port || src_port == crate::filter::DEFAULT_PORT.to_be_bytes()
}
