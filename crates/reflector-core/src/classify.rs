//! One pass over the headers: is this frame a test packet, and if not, why not.
//!
//! Panic contract: every read below is preceded by a length check against the frame (or
//! goes through [`be16`], which returns `None` past the end), so no input can panic.

use crate::checks::{FAST_SPAN, FIRST_OCTET, late_checks_fast, unusable_ipv4, unusable_ipv6, word_at};
use crate::filter::Filter;
use crate::protocol::{signatures, stamp};
use crate::signature::ITO_INDEX_BY_SLOT;
use crate::verdict::{Hit, L3Kind, Reject};
use crate::wire::*;

#[inline(always)]
fn is_vlan_tpid(ethertype: u16) -> bool {
    VLAN_TPIDS.contains(&ethertype)
}

/// Classifies `frame` against `filter`. Never panics and never allocates.
/// A test packet from a source the allow and deny lists keep out is rejected for that
/// ([`Reject::SrcDenied`], [`Reject::SrcNotAllowed`]); rate limits, which need the time and
/// the buckets, are [`Filter::process`]'s.
#[inline(always)]
pub fn classify(frame: &[u8], filter: &Filter) -> Result<Hit, Reject> {
    let hit = match ipv4_fast::<true>(frame, filter) {
        Some(verdict) => verdict?,
        None => classify_ordered(frame, filter)?,
    };
    if filter.access.is_on() {
        listed(frame, &hit, filter)?;
    }
    Ok(hit)
}

/// The allow and deny lists for the test packet `hit` was classified from: its source MAC and
/// source IP address, looked up (see [`crate::access`]).
#[inline(never)]
pub(crate) fn listed(frame: &[u8], hit: &Hit, filter: &Filter) -> Result<(), Reject> {
    let mac = frame.get(6..14).and_then(|b| b.first_chunk::<8>()).map_or(0, |w| le64(w) & MAC_MASK);
    let l3 = hit.l3_offset();
    let ip = match hit.l3() {
        L3Kind::V4 => frame.get(l3 + 12..l3 + 16),
        L3Kind::V6 => frame.get(l3 + 8..l3 + 24),
    }
    .ok_or(Reject::ShortIpv4)?;
    match filter.access.judge(mac, ip) {
        Some(crate::access::Verdict::Deny) => Err(Reject::SrcDenied),
        Some(crate::access::Verdict::Allow) => Ok(()),
        None if filter.access.has_allow() => Err(Reject::SrcNotAllowed),
        None => Ok(()),
    }
}

/// [`classify`]'s fast path alone: `None` where it leaves the frame to the ordered checks. For
/// tests that hold it to their answers and check that it decides what it should; not part of
/// the API.
pub fn classify_fast(frame: &[u8], filter: &Filter) -> Option<Result<Hit, Reject>> {
    ipv4_fast::<true>(frame, filter)
}

/// [`classify`] without its fast path: every frame through the ordered checks. For tests that
/// hold the fast path to the same answers; not part of the API.
#[inline(always)]
pub fn classify_ordered(frame: &[u8], filter: &Filter) -> Result<Hit, Reject> {
    after_ethernet(frame, filter, &ethernet(frame, filter)?)
}

/// What the Ethernet checks found.
#[derive(Clone, Copy)]
pub(crate) struct Ethernet {
    /// The source MAC as a little-endian word (see [`MAC_MASK`]).
    src: u64,
    /// The outer EtherType.
    ethertype: u16,
}

/// The Ethernet checks: our destination, a usable source.
#[inline(always)]
pub(crate) fn ethernet(frame: &[u8], filter: &Filter) -> Result<Ethernet, Reject> {
    let Some(eth) = frame.first_chunk::<ETH_HEADER_LEN>() else {
        return Err(Reject::ShortEthernet);
    };
    // Two overlapping words: bytes 0..8 (destination, then two bytes of the source) and 6..14
    // (source, then the EtherType).
    let w0 = le64(eth.first_chunk::<8>().expect("14 > 8"));
    let w1 = le64(eth.last_chunk::<8>().expect("14 > 8"));
    let src = w1 & MAC_MASK;
    if w0 & MAC_MASK != filter.local_mac_bits {
        return Err(Reject::DstMac);
    }
    // I/G bit: the lowest bit of the first byte, bit 0 of the little-endian word.
    if src & 1 != 0 {
        return Err(Reject::SrcMacGroup);
    }
    if src == 0 {
        return Err(Reject::SrcMacZero);
    }
    if src == filter.local_mac_bits {
        return Err(Reject::SrcMacOwn);
    }
    Ok(Ethernet { src, ethertype: ((w1 >> 48) as u16).swap_bytes() })
}

/// The ordered checks after [`ethernet`]: every rule, in order, so a reject gets its reason.
#[inline(always)]
pub(crate) fn after_ethernet(frame: &[u8], filter: &Filter, eth: &Ethernet) -> Result<Hit, Reject> {
    if filter.stamp_on() { ordered::<true>(frame, filter, eth) } else { ordered::<false>(frame, filter, eth) }
}

/// The ordered checks, with or without a look for the STAMP port.
#[inline(always)]
pub(crate) fn ordered<const STAMP: bool>(
    frame: &[u8],
    filter: &Filter,
    eth: &Ethernet,
) -> Result<Hit, Reject> {
    let (src, mut ethertype) = (eth.src, eth.ethertype);
    let mut l3 = ETH_HEADER_LEN;
    let mut vlan_tags = 0u8;
    while is_vlan_tpid(ethertype) {
        if vlan_tags as usize == MAX_VLAN_TAGS {
            return Err(Reject::VlanDepth);
        }
        // The tag's TCI is at l3..l3+2, the inner EtherType at l3+2..l3+4.
        ethertype = be16(frame, l3 + 2).ok_or(Reject::ShortVlan)?;
        l3 += VLAN_TAG_LEN;
        vlan_tags += 1;
    }

    let (kind, l4, end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let (l4, end) = ipv4(frame, l3)?;
            (L3Kind::V4, l4, end)
        }
        ETHERTYPE_IPV6 => {
            let (l4, end) = ipv6(frame, l3)?;
            (L3Kind::V6, l4, end)
        }
        _ => return Err(Reject::NotIp),
    };

    // UDP (RFC 768): the header must fit and its length must be exactly the IP payload.
    let udp: &[u8; UDP_HEADER_LEN] = match frame.get(l4..end).and_then(|u| u.first_chunk()) {
        Some(u) => u,
        None => return Err(Reject::ShortUdp),
    };
    if u16::from_be_bytes([udp[4], udp[5]]) as usize != end - l4 {
        return Err(Reject::UdpLength);
    }
    // IPv6 has no header checksum: the UDP one is mandatory (RFC 8200 §8.1).
    if kind == L3Kind::V6 && udp[6..8] == [0, 0] {
        return Err(Reject::UdpChecksum);
    }
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    if STAMP && dst_port as u32 == filter.stamp_port {
        return stamp::recognise(frame, filter, kind, (l3, l4, end), vlan_tags);
    }
    signatures::recognise(frame, filter, src, kind, (l3, l4, end), vlan_tags, dst_port)
}

/// The common frame with few instructions: untagged IPv4 without options, at least 54 bytes
/// long. `Some` only with the answer the ordered checks would give: a hit for an ITO test
/// packet, or a reject with its reason. `None` for anything else (another layout, another
/// signature, a total length too short for the ITO signature), which the ordered checks decide.
///
/// A source MAC starting with the trusted OUI ([`crate::filter::FastMasks`]) passes the source
/// checks by itself, so a tester's frame skips them. The fields are read as little-endian words
/// at fixed offsets and compared with words the filter holds.
///
/// A STAMP request (untagged IPv4 without options too) is decided here as well when `STAMP`;
/// without, the STAMP port is not looked at, which is right only for a filter without the
/// STAMP family.
#[inline(always)]
pub(crate) fn ipv4_fast<const STAMP: bool>(frame: &[u8], filter: &Filter) -> Option<Result<Hit, Reject>> {
    // Frames shorter than this and other layouts take the ordered checks, out of this line.
    let Some(b) = frame.first_chunk::<FAST_SPAN>() else {
        core::hint::cold_path();
        return None;
    };
    let fast = &filter.fast;
    let word = |at: usize| word_at(b, at);
    // Bytes 8..16 against the trusted OUI's last byte, the IPv4 EtherType, version 4 and IHL 5.
    let w8 = word(8) ^ fast.head8;
    if w8 & fast.ipv4_mask != 0 {
        core::hint::cold_path();
        return None;
    }
    // Our MAC and the trusted OUI's first two bytes, then its last byte. The two paths differ
    // in the source checks and the OUI; each is compiled on its own, as one straight line.
    if word(0) != fast.head || w8 as u8 != 0 {
        if (word(0) ^ filter.local_mac_bits) << 16 != 0 {
            return Some(Err(Reject::DstMac));
        }
        let src = word(6) & MAC_MASK;
        if src & 1 != 0 {
            core::hint::cold_path();
            return Some(Err(Reject::SrcMacGroup));
        }
        if src == 0 {
            core::hint::cold_path();
            return Some(Err(Reject::SrcMacZero));
        }
        if src == filter.local_mac_bits {
            core::hint::cold_path();
            return Some(Err(Reject::SrcMacOwn));
        }
        return ipv4_after_macs::<false, STAMP>(frame, b, filter, src);
    }
    ipv4_after_macs::<true, STAMP>(frame, b, filter, 0)
}

/// [`ipv4_fast`] after the MAC checks, for a source with the trusted OUI or another (`src`),
/// on the frame's first bytes `b`. Rejects that ordinary traffic rarely gets are marked cold,
/// so that the checks a test packet passes stay in one line.
#[inline(always)]
fn ipv4_after_macs<const TRUSTED: bool, const STAMP: bool>(
    frame: &[u8],
    b: &[u8; FAST_SPAN],
    filter: &Filter,
    src: u64,
) -> Option<Result<Hit, Reject>> {
    const L4: usize = ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN;
    let fast = &filter.fast;
    let total_len = u16::from_be_bytes([b[16], b[17]]) as usize;
    // At most the frame and at least the ITO signature's end (20 + 8 + 12); otherwise the
    // ordered checks, unless the length is wrong for any IPv4 packet.
    if total_len.wrapping_sub(FAST_SPAN - ETH_HEADER_LEN) > frame.len() - FAST_SPAN {
        core::hint::cold_path();
        return (total_len.wrapping_sub(IPV4_MIN_HEADER_LEN) > frame.len() - L4)
            .then_some(Err(Reject::Ipv4Length));
    }
    // Bytes 20..24: neither MF nor a fragment offset (the mask 0xff3f read little-endian), and
    // the protocol UDP, in one compare; which one failed only when one did.
    let fragment_protocol = u32::from_le_bytes(b[20..24].try_into().expect("4 bytes"));
    if fragment_protocol & 0xff00_ff3f != (IPPROTO_UDP as u32) << 24 {
        if fragment_protocol & 0xff3f != 0 {
            core::hint::cold_path();
            return Some(Err(Reject::Ipv4Fragment));
        }
        return Some(Err(Reject::NotUdp));
    }
    // The addresses by their first octets (see FIRST_OCTET); the whole address only when
    // that octet is 0 or 255.
    if FIRST_OCTET[b[26] as usize] | FIRST_OCTET[b[30] as usize] != 0 {
        core::hint::cold_path();
        let w26 = word_at(b, 26);
        if unusable_ipv4(w26 as u32) {
            return Some(Err(Reject::SrcIp));
        }
        if unusable_ipv4((w26 >> 32) as u32) {
            return Some(Err(Reject::DstIp));
        }
    }
    // The UDP length is the IP payload (compared in wire order).
    if u16::from_le_bytes([b[38], b[39]]) != ((total_len - IPV4_MIN_HEADER_LEN) as u16).swap_bytes() {
        core::hint::cold_path();
        return Some(Err(Reject::UdpLength));
    }
    let dst_port = u16::from_le_bytes([b[36], b[37]]) as u64;
    if STAMP && dst_port == fast.stamp_port {
        // A STAMP request, before the test port as in the ordered checks.
        return Some(stamp::recognise_fast(b, filter, total_len));
    }
    if (dst_port ^ fast.port) & fast.port_mask != 0 {
        return Some(Err(Reject::DstPort));
    }
    // The signature: its first byte tells which ITO one it can be (bits 2..5 of 'P', 'D', 'L'
    // differ), so one compare against that one decides. A trusted source has its own table,
    // which is empty when the OUI filter asks for another OUI.
    let signature = word_at(b, 46) >> 8;
    let slot = (signature >> 2 & 7) as usize;
    let table = if TRUSTED { &fast.trusted_ito } else { &fast.ito };
    if signature != table[slot] {
        return None;
    }
    if !TRUSTED && (src ^ filter.oui_bits as u64) & fast.oui_mask != 0 {
        return Some(Err(Reject::Oui));
    }
    // Where answers take one off the TTL (`Filter::takes_a_hop`): none is left.
    if b[22] < fast.min_ttl {
        core::hint::cold_path();
        return Some(Err(Reject::Loop));
    }
    Some(late_checks_fast(b, filter).map(|()| Hit::fast(ITO_INDEX_BY_SLOT[slot])))
}

/// Checks an IPv4 header at `l3`; returns (UDP offset, end of IP packet).
#[inline(always)]
fn ipv4(frame: &[u8], l3: usize) -> Result<(usize, usize), Reject> {
    let rest = frame.len() - l3;
    // One checked read of the fixed header; the fields below index a fixed-size array.
    let Some(h) = frame.get(l3..l3 + IPV4_MIN_HEADER_LEN).and_then(|h| <&[u8; 20]>::try_from(h).ok()) else {
        return Err(Reject::ShortIpv4);
    };
    let version_ihl = h[0];
    // Version 4 with an IHL of at least 5 is exactly the bytes 0x45..=0x4f.
    if version_ihl.wrapping_sub(0x45) > 0x0a {
        return Err(Reject::Ipv4Header);
    }
    let header_len = (version_ihl & 0x0f) as usize * 4;
    if rest < header_len {
        return Err(Reject::ShortIpv4);
    }
    // Trailing bytes after total_length are Ethernet padding and are allowed.
    let total_len = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total_len < header_len || total_len > rest {
        return Err(Reject::Ipv4Length);
    }
    // Flags/fragment offset: MF (0x2000) or any offset (0x1fff) marks a fragment (RFC 791);
    // read little-endian, the mask is 0xff3f.
    if u16::from_le_bytes([h[6], h[7]]) & 0xff3f != 0 {
        return Err(Reject::Ipv4Fragment);
    }
    if h[9] != IPPROTO_UDP {
        return Err(Reject::NotUdp);
    }
    let ips = h.last_chunk::<8>().expect("20 > 8");
    let src = u32::from_le_bytes(*ips.first_chunk::<4>().expect("8 > 4"));
    let dst = u32::from_le_bytes(*ips.last_chunk::<4>().expect("8 > 4"));
    if unusable_ipv4(src) {
        return Err(Reject::SrcIp);
    }
    if unusable_ipv4(dst) {
        return Err(Reject::DstIp);
    }
    Ok((l3 + header_len, l3 + total_len))
}

/// Checks an IPv6 header and its extension headers at `l3`; returns (UDP offset, end of IP packet).
#[inline(always)]
fn ipv6(frame: &[u8], l3: usize) -> Result<(usize, usize), Reject> {
    if frame.len() - l3 < IPV6_HEADER_LEN {
        return Err(Reject::ShortIpv6);
    }
    let h = &frame[l3..];
    if h[0] >> 4 != 6 {
        return Err(Reject::Ipv6Header);
    }
    let payload_len = u16::from_be_bytes([h[4], h[5]]) as usize;
    // Zero is a jumbogram (RFC 2675), which never fits an Ethernet frame.
    if payload_len == 0 || IPV6_HEADER_LEN + payload_len > h.len() {
        return Err(Reject::Ipv6Length);
    }
    let end = l3 + IPV6_HEADER_LEN + payload_len;
    let mut next = h[6];
    let mut l4 = l3 + IPV6_HEADER_LEN;
    let mut walked = 0;
    loop {
        match next {
            IPPROTO_UDP => break,
            IPV6_EXT_HOP_BY_HOP | IPV6_EXT_ROUTING | IPV6_EXT_DEST_OPTS => {
                if next == IPV6_EXT_HOP_BY_HOP && walked > 0 {
                    return Err(Reject::Ipv6Ext);
                }
                if walked == MAX_IPV6_EXT_HEADERS {
                    return Err(Reject::Ipv6ExtDepth);
                }
                // RFC 8200 §4: next header, then length in 8-octet units not counting the first 8.
                if end - l4 < 8 {
                    return Err(Reject::Ipv6Ext);
                }
                let ext_len = (frame[l4 + 1] as usize + 1) * 8;
                if end - l4 < ext_len {
                    return Err(Reject::Ipv6Ext);
                }
                next = frame[l4];
                l4 += ext_len;
                walked += 1;
            }
            IPV6_EXT_FRAGMENT => return Err(Reject::Ipv6Fragment),
            _ => return Err(Reject::NotUdp),
        }
    }
    let addresses: &[u8; 32] = h[8..40].try_into().expect("40-byte header checked");
    let (src, dst) = addresses.split_at(16);
    if unusable_ipv6(src.try_into().expect("16 bytes")) {
        return Err(Reject::SrcIp);
    }
    if unusable_ipv6(dst.try_into().expect("16 bytes")) {
        return Err(Reject::DstIp);
    }
    Ok((l4, end))
}
