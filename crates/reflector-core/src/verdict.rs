//! What one pass over the headers concludes: a test packet ([`Hit`], of an [`L3Kind`]) or the
//! reason it is not one ([`Reject`]). Below the protocols and the filter, so that each of them
//! can name a verdict without reaching into the classifier.

use core::fmt;

use crate::signature::Signature;
use crate::wire::{ETH_HEADER_LEN, IPV4_MIN_HEADER_LEN, STAMP_MIN_LEN, UDP_HEADER_LEN};

/// Why a frame is not a test packet. Declared in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reject {
    /// Shorter than an Ethernet header.
    ShortEthernet,
    /// Destination MAC is not the interface's.
    DstMac,
    /// Source MAC is a multicast or broadcast address.
    SrcMacGroup,
    /// Source MAC is all zeros.
    SrcMacZero,
    /// Source MAC is our own (a loop).
    SrcMacOwn,
    /// A VLAN tag is cut off by the end of the frame.
    ShortVlan,
    /// More than two VLAN tags.
    VlanDepth,
    /// EtherType is neither IPv4 nor IPv6.
    NotIp,
    /// The IPv4 header (with options) does not fit in the frame.
    ShortIpv4,
    /// IPv4 version is not 4 or IHL is below 5.
    Ipv4Header,
    /// IPv4 total length is shorter than the header or longer than the frame.
    Ipv4Length,
    /// An IPv4 fragment (MF set or non-zero offset).
    Ipv4Fragment,
    /// The fixed IPv6 header does not fit in the frame.
    ShortIpv6,
    /// IPv6 version field is not 6.
    Ipv6Header,
    /// IPv6 payload length is zero (jumbogram) or longer than the frame.
    Ipv6Length,
    /// An IPv6 extension header is cut off by the end of the payload, or a hop-by-hop header
    /// is not the first (RFC 8200 §4.3).
    Ipv6Ext,
    /// More IPv6 extension headers than are walked.
    Ipv6ExtDepth,
    /// An IPv6 fragment header.
    Ipv6Fragment,
    /// The transport protocol is not UDP.
    NotUdp,
    /// Source IP is unspecified, multicast, or limited broadcast.
    SrcIp,
    /// Destination IP is unspecified, multicast, or broadcast.
    DstIp,
    /// The UDP header does not fit in the IP payload.
    ShortUdp,
    /// UDP length disagrees with the IP payload length.
    UdpLength,
    /// An IPv6 UDP datagram without a checksum (0), which RFC 8200 §8.1 has receivers discard.
    UdpChecksum,
    /// A STAMP request too short to be answered: under 14 bytes of payload (a TWAMP-Light
    /// sender's packet), or under 41 (the reflector's fields through the sender's TTL) with
    /// `--stamp-short refuse`, or where the data path has no room to answer it longer.
    StampLength,
    /// UDP destination port is not the configured one.
    DstPort,
    /// No selected signature at its offset.
    NoSignature,
    /// Source OUI is not the required one.
    Oui,
    /// The UDP source port is a reflector's: the destination port, or the well-known test
    /// port 3842. Such a frame is another reflector's answer; reflecting it again would start
    /// a loop between two reflectors.
    Loop,
    /// Source IP is one of our own interface's addresses.
    SrcIpOwn,
    /// The IPv4 header checksum is wrong.
    Ipv4Checksum,
    /// The source is on the deny list (its MAC, or the most specific listed prefix holding
    /// its IP address).
    SrcDenied,
    /// The allow list has entries and names neither the source MAC nor a prefix holding the
    /// source IP address (as the most specific listed prefix).
    SrcNotAllowed,
    /// Over the source's rate limit, or the total one.
    RateLimited,
}

impl Reject {
    /// Number of reasons (the length of per-reason counter arrays).
    pub const COUNT: usize = 34;
    /// Every reason, in check order.
    pub const ALL: [Reject; Self::COUNT] = [
        Reject::ShortEthernet,
        Reject::DstMac,
        Reject::SrcMacGroup,
        Reject::SrcMacZero,
        Reject::SrcMacOwn,
        Reject::ShortVlan,
        Reject::VlanDepth,
        Reject::NotIp,
        Reject::ShortIpv4,
        Reject::Ipv4Header,
        Reject::Ipv4Length,
        Reject::Ipv4Fragment,
        Reject::ShortIpv6,
        Reject::Ipv6Header,
        Reject::Ipv6Length,
        Reject::Ipv6Ext,
        Reject::Ipv6ExtDepth,
        Reject::Ipv6Fragment,
        Reject::NotUdp,
        Reject::SrcIp,
        Reject::DstIp,
        Reject::ShortUdp,
        Reject::UdpLength,
        Reject::UdpChecksum,
        Reject::StampLength,
        Reject::DstPort,
        Reject::NoSignature,
        Reject::Oui,
        Reject::Loop,
        Reject::SrcIpOwn,
        Reject::Ipv4Checksum,
        Reject::SrcDenied,
        Reject::SrcNotAllowed,
        Reject::RateLimited,
    ];

    /// Stable name used as a JSON key and metric label.
    pub fn name(self) -> &'static str {
        match self {
            Reject::ShortEthernet => "short_ethernet",
            Reject::DstMac => "dst_mac",
            Reject::SrcMacGroup => "src_mac_group",
            Reject::SrcMacZero => "src_mac_zero",
            Reject::SrcMacOwn => "src_mac_own",
            Reject::ShortVlan => "short_vlan",
            Reject::VlanDepth => "vlan_depth",
            Reject::NotIp => "not_ip",
            Reject::ShortIpv4 => "short_ipv4",
            Reject::Ipv4Header => "ipv4_header",
            Reject::Ipv4Length => "ipv4_length",
            Reject::Ipv4Fragment => "ipv4_fragment",
            Reject::ShortIpv6 => "short_ipv6",
            Reject::Ipv6Header => "ipv6_header",
            Reject::Ipv6Length => "ipv6_length",
            Reject::Ipv6Ext => "ipv6_ext",
            Reject::Ipv6ExtDepth => "ipv6_ext_depth",
            Reject::Ipv6Fragment => "ipv6_fragment",
            Reject::NotUdp => "not_udp",
            Reject::SrcIp => "src_ip",
            Reject::DstIp => "dst_ip",
            Reject::ShortUdp => "short_udp",
            Reject::UdpLength => "udp_length",
            Reject::UdpChecksum => "udp_checksum",
            Reject::StampLength => "stamp_length",
            Reject::DstPort => "dst_port",
            Reject::NoSignature => "no_signature",
            Reject::Oui => "oui",
            Reject::Loop => "loop",
            Reject::SrcIpOwn => "src_ip_own",
            Reject::Ipv4Checksum => "ipv4_checksum",
            Reject::SrcDenied => "src_denied",
            Reject::SrcNotAllowed => "src_not_allowed",
            Reject::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Network layer of a test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3Kind {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A test packet: what the single parse found, enough to reflect it without parsing again.
///
/// Only the classifier (`classify`) makes one, for the frame it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    // Plain integers only: with enum fields the compiler hid `Result`'s discriminant in their
    // unused values and assembled the result on the stack, costing a store-forwarding stall
    // (about 15 ns) per frame.
    l3_offset: u16,
    l4_offset: u16,
    /// Index into [`Signature::ALL`].
    signature: u8,
    /// 4 or 6.
    ip_version: u8,
    /// The number of tags, and [`GROWN`] for a short STAMP request answered with a longer
    /// frame (kept in this byte so that a hit stays 7 bytes: a `Result` of it fits a register).
    vlan_tags: u8,
}

/// The bit of `Hit::vlan_tags` that marks an answer grown to the 41-byte reflector packet.
const GROWN: u8 = 0x80;

// `Hit::signature` maps each index to its signature by hand, the last one by elimination: a new
// signature must be given its arm there (this stops the build until it is).
const _: () = assert!(Signature::COUNT == 7 && Signature::ALL[6] as u8 == Signature::Stamp as u8);

impl Hit {
    /// What the ordered checks found. Frames are at most 64 KiB in practice; offsets past that
    /// cannot reach here because the IP length fields are 16 bits wide and the offsets are
    /// bounded by tags + header.
    #[inline(always)]
    pub(crate) fn found(signature: Signature, kind: L3Kind, l3: usize, l4: usize, vlan_tags: u8) -> Hit {
        let ip_version = match kind {
            L3Kind::V4 => 4,
            L3Kind::V6 => 6,
        };
        Hit { signature: signature as u8, ip_version, l3_offset: l3 as u16, l4_offset: l4 as u16, vlan_tags }
    }

    /// What the fast path (`ipv4_fast`) found: `signature` (an index into [`Signature::ALL`]) in untagged
    /// IPv4 without options.
    #[inline(always)]
    pub(crate) fn fast(signature: u8) -> Hit {
        Hit {
            signature,
            ip_version: 4,
            l3_offset: ETH_HEADER_LEN as u16,
            l4_offset: (ETH_HEADER_LEN + IPV4_MIN_HEADER_LEN) as u16,
            vlan_tags: 0,
        }
    }

    /// The same hit, its answer grown to the 41-byte reflector packet.
    #[inline(always)]
    pub(crate) fn grown_answer(self) -> Hit {
        Hit { vlan_tags: self.vlan_tags | GROWN, ..self }
    }

    /// The length of the answer's frame, for a request of `received` bytes: the same, but for
    /// a short STAMP request answered with the 41-byte reflector packet (longer, by up to 27
    /// bytes, any Ethernet padding of the request dropped).
    #[inline(always)]
    pub fn answer_len(&self, received: usize) -> usize {
        if self.grown() { self.l4_offset() + UDP_HEADER_LEN + STAMP_MIN_LEN } else { received }
    }

    /// A short STAMP request answered with a longer frame ([`Hit::answer_len`]).
    #[inline(always)]
    pub fn grown(&self) -> bool {
        self.vlan_tags & GROWN != 0
    }

    /// The signature that matched.
    #[inline(always)]
    pub fn signature(&self) -> Signature {
        // The index is always below COUNT; as a match on the declared values (not an indexed
        // table with a bounds check) this compiles to a clamp.
        match self.signature {
            0 => Signature::ProbeOt,
            1 => Signature::DataOt,
            2 => Signature::Latency,
            3 => Signature::Rfc2544,
            4 => Signature::Y1564,
            5 => Signature::Custom,
            _ => Signature::Stamp,
        }
    }
    /// A STAMP request (what [`Hit::signature`] says, in one compare).
    #[inline(always)]
    pub(crate) fn is_stamp(&self) -> bool {
        self.signature == Signature::Stamp as u8
    }
    /// IPv4 or IPv6.
    #[inline(always)]
    pub fn l3(&self) -> L3Kind {
        if self.ip_version == 4 { L3Kind::V4 } else { L3Kind::V6 }
    }
    /// Offset of the IP header in the frame.
    pub fn l3_offset(&self) -> usize {
        self.l3_offset as usize
    }
    /// Offset of the UDP header in the frame.
    pub fn l4_offset(&self) -> usize {
        self.l4_offset as usize
    }
    /// Number of VLAN tags skipped.
    pub fn vlan_tags(&self) -> usize {
        (self.vlan_tags & !GROWN) as usize
    }
}
