//! Who may test: allow and deny lists of source prefixes and MAC addresses.
//!
//! A test packet (a frame that passed every other rule) is judged by its source:
//! - **denied** ([`crate::Reject::SrcDenied`]) when its source MAC is on the deny list, or when
//!   the most specific listed prefix holding its source IP is a deny entry;
//! - otherwise, when the allow list has any entry, **not allowed**
//!   ([`crate::Reject::SrcNotAllowed`]) unless its source MAC is on the allow list or the most
//!   specific listed prefix holding its source IP is an allow entry.
//!
//! So `deny 10.0.0.0/8` with `allow 10.1.0.0/16` answers 10.1.x.x and nothing else of 10/8,
//! and an empty allow list allows everyone the deny list does not name. The same prefix on both
//! lists, or the same MAC, is refused ([`crate::ConfigError::AccessConflict`]).
//!
//! The lists are tables built once (with the filter); a lookup is a binary search.

use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use crate::wire::MacAddr;

/// Most entries a list (allow or deny) holds: the size of the XDP programs' maps.
pub const MAX_ACCESS_ENTRIES: usize = 4096;

/// An allow-list entry or a deny-list entry: its value in the XDP programs' maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    /// Answered.
    Allow = 1,
    /// Not answered.
    Deny = 2,
}

/// An IP prefix: an address and how many of its leading bits count, the others zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// `addr/len`; `None` when `len` is longer than the address or a bit past it is set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let bits = address_bits(addr);
        let width = width(addr);
        (len <= width && bits & !mask(len, width) == 0).then_some(Prefix { addr, len })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for a prefix of length 0 (every address of its version).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first and last address it holds, as integers.
    fn range(&self) -> (u128, u128) {
        let start = address_bits(self.addr);
        (start, start | !mask(self.len, width(self.addr)) & max_of(self.addr))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn width(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn max_of(addr: IpAddr) -> u128 {
    if addr.is_ipv4() { u32::MAX as u128 } else { u128::MAX }
}

fn address_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The `len` leading bits of a `width`-bit address.
fn mask(len: u8, width: u8) -> u128 {
    let all = if width == 32 { u32::MAX as u128 } else { u128::MAX };
    all & !all.checked_shr(len as u32).unwrap_or(0)
}

/// A source a list names: an IP prefix (a bare address is a /32 or /128) or a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Source IP addresses in this prefix.
    Net(Prefix),
    /// This source MAC address.
    Mac(MacAddr),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Net(p) => p.fmt(f),
            Source::Mac(m) => m.fmt(f),
        }
    }
}

/// Why a list entry cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Neither an IP address, a prefix nor a MAC address.
    Syntax,
    /// The prefix length is longer than the address.
    Length,
    /// Bits past the prefix length are set: the network address is the one given.
    HostBits(Prefix),
    /// A group (multicast or broadcast) or all-zero MAC, which never sends a test packet.
    Mac,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Syntax => f.write_str(
                "expected an IP address, a prefix like 192.0.2.0/24 or 2001:db8::/32, or a MAC address",
            ),
            SourceError::Length => {
                f.write_str("prefix length longer than the address (at most 32 for IPv4, 128 for IPv6)")
            }
            SourceError::HostBits(p) => write!(f, "bits past the prefix length are set (did you mean {p}?)"),
            SourceError::Mac => {
                f.write_str("a multicast, broadcast or all-zero MAC never sends a test packet")
            }
        }
    }
}

impl FromStr for Source {
    type Err = SourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(mac) = s.parse::<MacAddr>() {
            return if mac.is_group() || mac.is_zero() {
                Err(SourceError::Mac)
            } else {
                Ok(Source::Mac(mac))
            };
        }
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| SourceError::Syntax)?;
        let len = match len {
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                l.parse::<u8>().map_err(|_| SourceError::Length)?
            }
            Some(_) => return Err(SourceError::Syntax),
            None => width(addr),
        };
        if len > width(addr) {
            return Err(SourceError::Length);
        }
        Prefix::new(addr, len).map(Source::Net).ok_or_else(|| {
            let network = address_bits(addr) & mask(len, width(addr));
            let network = match addr {
                IpAddr::V4(_) => IpAddr::V4((network as u32).into()),
                IpAddr::V6(_) => IpAddr::V6(network.into()),
            };
            SourceError::HostBits(Prefix { addr: network, len })
        })
    }
}

/// The lists as the classifier looks them up. Empty lists cost nothing: the filter does not
/// look at all ([`Access::is_on`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Access {
    /// Each entry as configured, with its list.
    entries: Vec<(Source, Verdict)>,
    /// The allow list has an entry.
    has_allow: bool,
    /// IPv4 and IPv6 address ranges, by their first address, with the verdict of the most
    /// specific prefix holding them (0: none).
    v4: Vec<(u32, u8)>,
    v6: Vec<(u128, u8)>,
    /// MACs as [`MacAddr::bits`], sorted, with their verdict.
    macs: Vec<(u64, Verdict)>,
}

/// Why lists cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListsError {
    /// An entry is on both lists.
    Conflict,
    /// More than [`MAX_ACCESS_ENTRIES`] entries on one list.
    TooMany,
}

impl Access {
    /// The tables for `allow` and `deny`.
    pub(crate) fn new(allow: &[Source], deny: &[Source]) -> Result<Access, ListsError> {
        if allow.len() > MAX_ACCESS_ENTRIES || deny.len() > MAX_ACCESS_ENTRIES {
            return Err(ListsError::TooMany);
        }
        let mut entries: Vec<(Source, Verdict)> = Vec::new();
        for (list, verdict) in [(allow, Verdict::Allow), (deny, Verdict::Deny)] {
            for source in list {
                match entries.iter().find(|(s, _)| s == source) {
                    Some((_, v)) if *v != verdict => return Err(ListsError::Conflict),
                    Some(_) => {}
                    None => entries.push((*source, verdict)),
                }
            }
        }
        let prefixes = |v4: bool| {
            let mut p: Vec<(u128, u128, u8, Verdict)> = entries
                .iter()
                .filter_map(|(s, v)| match s {
                    Source::Net(p) if p.addr.is_ipv4() == v4 => {
                        let (start, end) = p.range();
                        Some((start, end, p.len, *v))
                    }
                    _ => None,
                })
                .collect();
            p.sort_by_key(|&(start, _, len, _)| (start, len));
            intervals(&p)
        };
        let mut macs: Vec<(u64, Verdict)> = entries
            .iter()
            .filter_map(|(s, v)| match s {
                Source::Mac(m) => Some((m.bits(), *v)),
                Source::Net(_) => None,
            })
            .collect();
        macs.sort_by_key(|&(bits, _)| bits);
        Ok(Access {
            has_allow: entries.iter().any(|(_, v)| *v == Verdict::Allow),
            // (The range past the last IPv4 address, if one was emitted, holds none.)
            v4: prefixes(true)
                .into_iter()
                .filter_map(|(start, v)| Some((u32::try_from(start).ok()?, v)))
                .collect(),
            v6: prefixes(false),
            macs,
            entries,
        })
    }

    /// True when any list has an entry.
    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The entries as configured, each with its list.
    pub(crate) fn entries(&self) -> &[(Source, Verdict)] {
        &self.entries
    }

    /// The allow list has an entry (so a source it does not name is not answered).
    pub(crate) fn has_allow(&self) -> bool {
        self.has_allow
    }

    /// The verdict for a source MAC (as [`MacAddr::bits`]) and IP address (4 or 16 bytes):
    /// `Some(Verdict::Deny)` for a denied source, `Some(Verdict::Allow)` for one an allow entry
    /// names, `None` for one no entry names.
    #[inline]
    pub(crate) fn judge(&self, mac: u64, ip: &[u8]) -> Option<Verdict> {
        let by_mac = match self.macs.is_empty() {
            true => None,
            false => self.macs.binary_search_by_key(&mac, |&(bits, _)| bits).ok().map(|i| self.macs[i].1),
        };
        if by_mac == Some(Verdict::Deny) {
            return by_mac;
        }
        let verdict = match *ip {
            [a, b, c, d] => range_verdict(&self.v4, u32::from_be_bytes([a, b, c, d])),
            _ => range_verdict(&self.v6, ip.try_into().map_or(0, u128::from_be_bytes)),
        };
        let by_ip = match verdict {
            1 => Some(Verdict::Allow),
            2 => Some(Verdict::Deny),
            _ => None,
        };
        by_ip.or(by_mac)
    }
}

/// The verdict of the range holding `addr` (0: none), from ranges sorted by first address
/// that start with address 0.
#[inline(always)]
fn range_verdict<T: Ord + Copy>(table: &[(T, u8)], addr: T) -> u8 {
    let at = table.partition_point(|&(start, _)| start <= addr);
    at.checked_sub(1).and_then(|i| table.get(i)).map_or(0, |&(_, v)| v)
}

/// Address ranges with the verdict of the most specific prefix holding each, from prefixes
/// sorted by first address and then length (any two are nested or apart, so a stack of the
/// ones holding the current address is enough). Starts at address 0 with no verdict.
fn intervals(prefixes: &[(u128, u128, u8, Verdict)]) -> Vec<(u128, u8)> {
    let mut out: Vec<(u128, u8)> = alloc::vec![(0, 0)];
    let mut emit = |at: u128, verdict: u8| match out.last_mut() {
        Some(last) if last.0 == at => last.1 = verdict,
        Some(last) if last.1 == verdict => {}
        _ => out.push((at, verdict)),
    };
    // (last address, verdict) of the prefixes holding the current one, innermost last.
    let mut open: Vec<(u128, u8)> = Vec::new();
    let close_before = |open: &mut Vec<(u128, u8)>, emit: &mut dyn FnMut(u128, u8), limit: Option<u128>| {
        while let Some(&(end, _)) = open.last() {
            if limit.is_some_and(|start| end >= start) {
                break;
            }
            open.pop();
            if end != u128::MAX {
                emit(end + 1, open.last().map_or(0, |&(_, v)| v));
            }
        }
    };
    for &(start, end, _, verdict) in prefixes {
        close_before(&mut open, &mut emit, Some(start));
        emit(start, verdict as u8);
        open.push((end, verdict as u8));
    }
    close_before(&mut open, &mut emit, None);
    // A range that ends where the next starts with the same verdict was emitted once; a
    // zero-verdict tail at the end of the space is harmless.
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn sources(list: &[&str]) -> Vec<Source> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn judge(access: &Access, ip: &str) -> Option<Verdict> {
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => access.judge(0x1234, &a.octets()),
            IpAddr::V6(a) => access.judge(0x1234, &a.octets()),
        }
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("192.0.2.7".parse::<Source>().unwrap().to_string(), "192.0.2.7/32");
        assert_eq!("2001:db8::/32".parse::<Source>().unwrap().to_string(), "2001:db8::/32");
        assert_eq!("00:c0:17:01:02:03".parse::<Source>().unwrap().to_string(), "00:c0:17:01:02:03");
        assert_eq!("0.0.0.0/0".parse::<Source>().unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(
            "192.168.1.5/24".parse::<Source>().unwrap_err().to_string(),
            "bits past the prefix length are set (did you mean 192.168.1.0/24?)"
        );
        assert_eq!("10.0.0.0/33".parse::<Source>(), Err(SourceError::Length));
        assert_eq!("2001:db8::/129".parse::<Source>(), Err(SourceError::Length));
        for bad in ["", "10.0.0.0/", "10.0.0.0/+8", "10.0.0/8", "host", "10.0.0.0/8/8"] {
            assert_eq!(bad.parse::<Source>(), Err(SourceError::Syntax), "{bad}");
        }
        assert_eq!("ff:ff:ff:ff:ff:ff".parse::<Source>(), Err(SourceError::Mac));
        assert_eq!("01:00:5e:00:00:01".parse::<Source>(), Err(SourceError::Mac));
    }

    #[test]
    fn most_specific_prefix_decides() {
        let access = Access::new(
            &sources(&["10.1.0.0/16", "10.1.2.3", "2001:db8::/32"]),
            &sources(&["10.0.0.0/8", "10.1.2.0/24"]),
        )
        .unwrap();
        assert_eq!(judge(&access, "10.0.0.1"), Some(Verdict::Deny));
        assert_eq!(judge(&access, "10.1.0.1"), Some(Verdict::Allow));
        assert_eq!(judge(&access, "10.1.2.2"), Some(Verdict::Deny));
        assert_eq!(judge(&access, "10.1.2.3"), Some(Verdict::Allow));
        assert_eq!(judge(&access, "10.1.2.4"), Some(Verdict::Deny));
        assert_eq!(judge(&access, "10.1.3.0"), Some(Verdict::Allow));
        assert_eq!(judge(&access, "10.2.0.0"), Some(Verdict::Deny));
        assert_eq!(judge(&access, "11.0.0.0"), None);
        assert_eq!(judge(&access, "9.255.255.255"), None);
        assert_eq!(judge(&access, "2001:db8:ffff::1"), Some(Verdict::Allow));
        assert_eq!(judge(&access, "2001:db9::1"), None);
        assert_eq!(judge(&access, "::ffff:10.0.0.1"), None, "IPv4 prefixes hold IPv4 sources only");
        assert!(access.has_allow());
    }

    #[test]
    fn whole_space_and_edges() {
        let access = Access::new(&sources(&["255.255.255.255", "::/0"]), &sources(&["0.0.0.0/0"])).unwrap();
        assert_eq!(judge(&access, "0.0.0.0"), Some(Verdict::Deny));
        assert_eq!(judge(&access, "255.255.255.254"), Some(Verdict::Deny));
        assert_eq!(judge(&access, "255.255.255.255"), Some(Verdict::Allow));
        assert_eq!(judge(&access, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Some(Verdict::Allow));
        let access = Access::new(&sources(&["2001:db8::a"]), &sources(&["2001:db8::/32"])).unwrap();
        assert_eq!(judge(&access, "2001:db8::a"), Some(Verdict::Allow));
        assert_eq!(judge(&access, "2001:db8::b"), Some(Verdict::Deny));
    }

    #[test]
    fn macs_deny_before_any_prefix_and_allow_after() {
        let mac: MacAddr = "00:c0:17:00:00:09".parse().unwrap();
        let access = Access::new(&sources(&["10.0.0.0/8"]), &sources(&["00:c0:17:00:00:09"])).unwrap();
        assert_eq!(access.judge(mac.bits(), &[10, 0, 0, 1]), Some(Verdict::Deny));
        assert_eq!(access.judge(0x1234, &[10, 0, 0, 1]), Some(Verdict::Allow));
        let access = Access::new(&sources(&["00:c0:17:00:00:09"]), &sources(&["10.0.0.0/8"])).unwrap();
        assert_eq!(access.judge(mac.bits(), &[10, 0, 0, 1]), Some(Verdict::Deny), "a denied IP stays denied");
        assert_eq!(access.judge(mac.bits(), &[11, 0, 0, 1]), Some(Verdict::Allow));
        assert_eq!(access.judge(0x1234, &[11, 0, 0, 1]), None);
    }

    #[test]
    fn conflicts_and_limits() {
        assert_eq!(
            Access::new(&sources(&["10.0.0.0/8"]), &sources(&["10.0.0.0/8"])),
            Err(ListsError::Conflict)
        );
        let mac = sources(&["00:c0:17:00:00:09"]);
        assert_eq!(Access::new(&mac, &mac), Err(ListsError::Conflict));
        assert!(Access::new(&sources(&["10.0.0.0/8", "10.0.0.0/8"]), &[]).is_ok(), "a repeat is harmless");
        let many: Vec<Source> = (0..=MAX_ACCESS_ENTRIES as u32)
            .map(|i| Source::Net(Prefix::new(IpAddr::V4(i.into()), 32).unwrap()))
            .collect();
        assert_eq!(Access::new(&many, &[]), Err(ListsError::TooMany));
        assert!(!Access::new(&[], &[]).unwrap().is_on());
    }

    /// Against a plain search over the prefixes for the most specific one, on random lists.
    #[test]
    fn tables_agree_with_a_linear_search() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut lists: [Vec<Source>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..(next() % 12) {
                let len = (next() % 9) as u8;
                let addr = if len == 0 { 0 } else { next() as u32 & 0xff00_0000 & !(u32::MAX >> len) };
                let p = Source::Net(Prefix::new(IpAddr::V4(addr.into()), len).unwrap());
                let list = (next() % 2) as usize;
                if !lists[1 - list].contains(&p) {
                    lists[list].push(p);
                }
            }
            let access = Access::new(&lists[0], &lists[1]).unwrap();
            for _ in 0..200 {
                let ip = (next() as u32) & 0xff00_0000 | (next() as u32 & 0xff);
                let mut best: Option<(u8, Verdict)> = None;
                for (list, verdict) in [(&lists[0], Verdict::Allow), (&lists[1], Verdict::Deny)] {
                    for s in list {
                        let Source::Net(p) = s else { continue };
                        let (start, end) = p.range();
                        if (start..=end).contains(&(ip as u128)) && best.is_none_or(|(l, _)| p.len() > l) {
                            best = Some((p.len(), verdict));
                        }
                    }
                }
                assert_eq!(access.judge(0x1234, &ip.to_be_bytes()), best.map(|(_, v)| v), "{lists:?} {ip:x}");
            }
        }
    }
}
