//! Wire constants and small, panic-free field readers.

use core::fmt;
use core::str::FromStr;

/// Length of an Ethernet header without tags.
pub const ETH_HEADER_LEN: usize = 14;
/// Length of one 802.1Q / 802.1ad tag.
pub const VLAN_TAG_LEN: usize = 4;
/// Length of an IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// The shortest STAMP / TWAMP-Light payload answered at its own size (`stamp::MIN_LEN`).
pub const STAMP_MIN_LEN: usize = 41;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Tag protocol identifiers skipped as VLAN tags: 802.1Q, 802.1ad, and the pre-standard QinQ value.
pub const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// At most this many VLAN tags are skipped.
pub const MAX_VLAN_TAGS: usize = 2;

/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 hop-by-hop options header.
pub const IPV6_EXT_HOP_BY_HOP: u8 = 0;
/// IPv6 routing header.
pub const IPV6_EXT_ROUTING: u8 = 43;
/// IPv6 fragment header.
pub const IPV6_EXT_FRAGMENT: u8 = 44;
/// IPv6 destination options header.
pub const IPV6_EXT_DEST_OPTS: u8 = 60;
/// At most this many IPv6 extension headers are walked before UDP (a bound the XDP verifier
/// also needs).
pub const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Reads a big-endian `u16` at `at`, or `None` past the end.
#[inline(always)]
pub fn be16(buf: &[u8], at: usize) -> Option<u16> {
    match buf.get(at..at.checked_add(2)?) {
        Some(&[a, b]) => Some(u16::from_be_bytes([a, b])),
        _ => None,
    }
}

/// The low 48 bits of a `u64`: a MAC address read as a little-endian word.
pub const MAC_MASK: u64 = (1 << 48) - 1;

/// Eight bytes as a little-endian integer. Frames are compared as little-endian words so that
/// reading a field is one load with no byte swap; the constants they are compared with are
/// built the same way.
#[inline(always)]
pub fn le64(b: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*b)
}

/// The seven bytes at `b[at..at + 7]` as a little-endian integer (the top byte zero), `None`
/// past the end (signature compare).
///
/// At a non-zero offset this is one 8-byte load starting a byte early, shifted; at offset 0,
/// two overlapping 4-byte loads (bytes 0..4 and 3..7). [`sig_const`] builds the same value
/// from a constant.
#[inline(always)]
pub fn sig_bits(b: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(7)?;
    match at.checked_sub(1) {
        Some(before) => {
            let w: &[u8; 8] = b.get(before..end)?.try_into().ok()?;
            Some(le64(w) >> 8)
        }
        None => {
            let s: &[u8; 7] = b.get(..end)?.try_into().ok()?;
            let lo = u32::from_le_bytes(*s.first_chunk::<4>().expect("7 > 4")) as u64;
            let hi = u32::from_le_bytes(*s.last_chunk::<4>().expect("7 > 4")) as u64;
            Some(lo | hi << 24)
        }
    }
}

/// A 7-byte signature as the integer [`sig_bits`] reads.
#[inline(always)]
pub const fn sig_const(s: &[u8; 7]) -> u64 {
    u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], 0])
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for multicast and broadcast addresses (the I/G bit is set).
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for 00:00:00:00:00:00.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The address as the classifier reads it from a frame: a little-endian word masked
    /// with [`MAC_MASK`].
    pub const fn bits(&self) -> u64 {
        let m = self.0;
        u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
    }

    /// The first three bytes (the OUI).
    pub fn oui(&self) -> [u8; 3] {
        [self.0[0], self.0[1], self.0[2]]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error from parsing a MAC address or an OUI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected hexadecimal bytes separated by ':' or '-', like 00:c0:17:12:34:56")
    }
}

/// Parses `N` hex bytes separated by `:` or `-`.
pub fn parse_hex_bytes<const N: usize>(s: &str) -> Result<[u8; N], ParseMacError> {
    let mut out = [0u8; N];
    let mut parts = s.split([':', '-']);
    for byte in out.iter_mut() {
        let part = parts.next().ok_or(ParseMacError)?;
        if part.is_empty() || part.len() > 2 {
            return Err(ParseMacError);
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
    }
    if parts.next().is_some() {
        return Err(ParseMacError);
    }
    Ok(out)
}

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_bytes::<6>(s).map(MacAddr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn mac_parse_and_display_round_trip() {
        let mac: MacAddr = "00:C0:17:aa:0b:1".parse().unwrap();
        assert_eq!(mac.0, [0x00, 0xc0, 0x17, 0xaa, 0x0b, 0x01]);
        assert_eq!(mac.to_string(), "00:c0:17:aa:0b:01");
        assert_eq!("00-c0-17-aa-0b-01".parse::<MacAddr>(), Ok(mac));
        for bad in [
            "",
            "00:c0:17:aa:0b",
            "00:c0:17:aa:0b:01:02",
            "00:c0:17:aa:0b:zz",
            "000:c0:17:aa:0b:01",
            "00::17:aa:0b:01",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(ParseMacError), "{bad}");
        }
    }

    #[test]
    fn be16_is_bounds_checked() {
        assert_eq!(be16(&[1, 2, 3], 1), Some(0x0203));
        assert_eq!(be16(&[1, 2, 3], 2), None);
        assert_eq!(be16(&[1, 2, 3], usize::MAX), None);
    }
}
