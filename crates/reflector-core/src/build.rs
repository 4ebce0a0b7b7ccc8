//! Building well-formed test frames (for the tester side, tests and benchmarks).
//!
//! Frames are written with complete IPv4 header and UDP checksums, so a receiver with no
//! checksum offload sees them exactly as a hardware tester would send them.

use crate::checksum;
use crate::wire::*;

/// The IP addresses of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAddrs {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
    },
}

/// Everything needed to write one Ethernet / optional VLAN tags / IP / UDP frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec<'a> {
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// VLAN tags, outermost first, as (TPID, TCI).
    pub vlans: &'a [(u16, u16)],
    /// Addresses (and so the IP version).
    pub ip: IpAddrs,
    /// IPv4 options (a multiple of 4 bytes, at most 40); ignored for IPv6.
    pub ipv4_options: &'a [u8],
    /// IPv6 extension header types written before UDP, each as 8 bytes of padding options.
    pub ipv6_ext: &'a [u8],
    /// TTL / hop limit.
    pub ttl: u8,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: &'a [u8],
}

impl<'a> FrameSpec<'a> {
    /// An untagged IPv4 frame with TTL 64 and no options.
    pub fn ipv4(
        src_mac: MacAddr,
        dst_mac: MacAddr,
        src: [u8; 4],
        dst: [u8; 4],
        ports: (u16, u16),
        payload: &'a [u8],
    ) -> Self {
        FrameSpec {
            dst_mac,
            src_mac,
            vlans: &[],
            ip: IpAddrs::V4 { src, dst },
            ipv4_options: &[],
            ipv6_ext: &[],
            ttl: 64,
            src_port: ports.0,
            dst_port: ports.1,
            payload,
        }
    }

    fn l3_header_len(&self) -> usize {
        match self.ip {
            IpAddrs::V4 { .. } => IPV4_MIN_HEADER_LEN + self.ipv4_options.len(),
            IpAddrs::V6 { .. } => IPV6_HEADER_LEN + 8 * self.ipv6_ext.len(),
        }
    }

    /// Length of the frame [`FrameSpec::write`] produces.
    pub fn len(&self) -> usize {
        ETH_HEADER_LEN
            + VLAN_TAG_LEN * self.vlans.len()
            + self.l3_header_len()
            + UDP_HEADER_LEN
            + self.payload.len()
    }

    /// Always false: a frame has at least its headers.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the frame to the start of `buf` and returns its length; `None` if `buf` is too
    /// short, the IPv4 options are not a multiple of 4 bytes (or over 40), or the IP packet
    /// would exceed 65535 bytes.
    pub fn write(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.len();
        let buf = buf.get_mut(..len)?;
        if !self.ipv4_options.len().is_multiple_of(4) || self.ipv4_options.len() > 40 {
            return None;
        }
        let udp_len = u16::try_from(UDP_HEADER_LEN + self.payload.len()).ok()?;
        buf[0..6].copy_from_slice(&self.dst_mac.0);
        buf[6..12].copy_from_slice(&self.src_mac.0);
        let mut at = 12;
        for (tpid, tci) in self.vlans {
            buf[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
            buf[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
            at += 4;
        }
        let ethertype = match self.ip {
            IpAddrs::V4 { .. } => ETHERTYPE_IPV4,
            IpAddrs::V6 { .. } => ETHERTYPE_IPV6,
        };
        buf[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
        let l3 = at + 2;
        let l4 = l3 + self.l3_header_len();
        let ip_len = u16::try_from(len - l3).ok()?;

        // UDP header and payload first: the checksum covers them.
        buf[l4..l4 + 2].copy_from_slice(&self.src_port.to_be_bytes());
        buf[l4 + 2..l4 + 4].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
        buf[l4 + 6..l4 + 8].fill(0);
        buf[l4 + 8..].copy_from_slice(self.payload);

        let udp_sum;
        match self.ip {
            IpAddrs::V4 { src, dst } => {
                let h = &mut buf[l3..l4];
                h[0] = 0x40 | (h.len() / 4) as u8;
                h[1] = 0;
                h[2..4].copy_from_slice(&ip_len.to_be_bytes());
                h[4..6].fill(0);
                h[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF, no fragment
                h[8] = self.ttl;
                h[9] = IPPROTO_UDP;
                h[10..12].fill(0);
                h[12..16].copy_from_slice(&src);
                h[16..20].copy_from_slice(&dst);
                h[20..].copy_from_slice(self.ipv4_options);
                let c = checksum::checksum(h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                udp_sum = checksum::udp(&src, &dst, &buf[l4..]);
            }
            IpAddrs::V6 { src, dst } => {
                let h = &mut buf[l3..l4];
                h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
                h[4..6].copy_from_slice(&(ip_len - IPV6_HEADER_LEN as u16).to_be_bytes());
                h[6] = self.ipv6_ext.first().copied().unwrap_or(IPPROTO_UDP);
                h[7] = self.ttl;
                h[8..24].copy_from_slice(&src);
                h[24..40].copy_from_slice(&dst);
                for (i, _) in self.ipv6_ext.iter().enumerate() {
                    let e = &mut h[IPV6_HEADER_LEN + 8 * i..IPV6_HEADER_LEN + 8 * (i + 1)];
                    e[0] = self.ipv6_ext.get(i + 1).copied().unwrap_or(IPPROTO_UDP);
                    e[1] = 0; // 8 bytes in all
                    e[2..8].copy_from_slice(&[1, 4, 0, 0, 0, 0]); // one PadN option of 4 bytes
                }
                udp_sum = checksum::udp(&src, &dst, &buf[l4..]);
            }
        }
        buf[l4 + 6..l4 + 8].copy_from_slice(&udp_sum.to_be_bytes());
        Some(len)
    }
}
