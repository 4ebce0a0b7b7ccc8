//! Who is testing: the sources of test packets, each with what it sent and when.
//!
//! A [`Testers`] table keeps one row per source address and VLAN: the source MAC of its last
//! packet, the families its packets carried, the packets answered and their bytes, the packets
//! a rate limit held back, when it was first and last seen. The table is bounded
//! ([`TESTERS`] rows): a new source takes a free row near the one its address hashes to, or the
//! one there seen longest ago (counted in [`Testers::evicted`]). A worker keeps one and
//! publishes a copy for the control plane; the XDP programs keep the same rows in a map.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv6Addr};

use crate::signature::FamilySet;
use crate::verdict::{Hit, L3Kind};
use crate::wire::MacAddr;

/// Rows a [`Testers`] table of the data paths holds.
pub const TESTERS: usize = 4096;
/// Rows looked at for a source (from the one its key hashes to).
const PROBE: usize = 8;

/// One source of test packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tester {
    /// Its address: IPv6, or IPv4 as `::ffff:a.b.c.d`.
    pub ip: [u8; 16],
    /// The outer VLAN ID its packets came with (0: untagged).
    pub vlan: u16,
    /// The source MAC of its last packet.
    pub mac: MacAddr,
    /// The families its packets carried.
    pub families: FamilySet,
    /// Its test packets that were answered.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Its test packets a rate limit held back.
    pub limited: u64,
    /// When its first packet came (ns since the Unix epoch, UTC).
    pub first_seen_ns: u64,
    /// When its last packet came (0: a free row).
    pub last_seen_ns: u64,
}

impl Tester {
    /// Its address, IPv4 as IPv4.
    pub fn addr(&self) -> IpAddr {
        Ipv6Addr::from(self.ip).to_canonical()
    }

    /// Adds `other`, a row of the same source kept elsewhere (another worker's): the counts
    /// summed, the first and last times widened, the MAC of the later one.
    pub fn merge(&mut self, other: &Tester) {
        if other.last_seen_ns > self.last_seen_ns {
            self.mac = other.mac;
            self.last_seen_ns = other.last_seen_ns;
        }
        self.first_seen_ns = self.first_seen_ns.min(other.first_seen_ns);
        other.families.iter().for_each(|f| self.families.insert(f));
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.limited += other.limited;
    }
}

/// The source address of the test packet `hit` was classified from, as a [`Tester`] keeps it
/// (IPv4 as `::ffff:a.b.c.d`); zeros if the frame is not that packet.
#[inline(always)]
pub(crate) fn source_of(frame: &[u8], hit: &Hit) -> [u8; 16] {
    let l3 = hit.l3_offset();
    let mut source = [0u8; 16];
    match hit.l3() {
        L3Kind::V4 => {
            if let Some(ip) = frame.get(l3 + 12..l3 + 16) {
                source[10..12].copy_from_slice(&[0xff, 0xff]);
                source[12..].copy_from_slice(ip);
            }
        }
        L3Kind::V6 => {
            if let Some(ip) = frame.get(l3 + 8..l3 + 24) {
                source.copy_from_slice(ip);
            }
        }
    }
    source
}

/// The testers of one data path (see the module's description).
#[derive(Debug)]
pub struct Testers {
    rows: Box<[Tester]>,
    evicted: u64,
}

impl Default for Testers {
    /// A table of [`TESTERS`] rows.
    fn default() -> Testers {
        Testers::new(TESTERS)
    }
}

impl Testers {
    /// A table of `rows` rows, rounded up to a power of two.
    pub fn new(rows: usize) -> Testers {
        let rows: Vec<Tester> = (0..rows.max(1).next_power_of_two()).map(|_| Tester::default()).collect();
        Testers { rows: rows.into_boxed_slice(), evicted: 0 }
    }

    /// Records the test packet `hit` was classified from (`len` bytes, at `now` ns UTC):
    /// answered, or held back by a rate limit.
    #[inline]
    pub fn record(&mut self, frame: &[u8], hit: &Hit, now: u64, answered: bool) {
        let ip = source_of(frame, hit);
        let vlan = match hit.vlan_tags() {
            0 => 0,
            _ => crate::wire::be16(frame, 14).map_or(0, |tci| tci & 0x0fff),
        };
        let mac = frame.get(6..12).and_then(|m| m.try_into().ok()).map_or(MacAddr::ZERO, MacAddr);
        let row = self.row(ip, vlan, now);
        row.mac = mac;
        row.last_seen_ns = now.max(1);
        row.families.insert(hit.signature().family());
        if answered {
            row.packets += 1;
            row.bytes += frame.len() as u64;
        } else {
            row.limited += 1;
        }
    }

    /// The row of (`ip`, `vlan`): its own, or a new one (a free row, or the one seen longest
    /// ago of those it may take).
    #[inline(always)]
    fn row(&mut self, ip: [u8; 16], vlan: u16, now: u64) -> &mut Tester {
        let mask = self.rows.len() - 1;
        let words = [
            u64::from_le_bytes(ip[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(ip[8..].try_into().expect("8 bytes")) ^ vlan as u64,
        ];
        let start = crate::limit::hash(words) as usize;
        let mut take = start & mask;
        for i in 0..PROBE.min(mask + 1) {
            let at = (start + i) & mask;
            let row = &self.rows[at];
            if row.last_seen_ns != 0 && row.ip == ip && row.vlan == vlan {
                return &mut self.rows[at];
            }
            if self.rows[take].last_seen_ns != 0 && row.last_seen_ns < self.rows[take].last_seen_ns {
                take = at;
            }
        }
        if self.rows[take].last_seen_ns != 0 {
            self.evicted += 1;
        }
        self.rows[take] = Tester { ip, vlan, first_seen_ns: now.max(1), ..Tester::default() };
        &mut self.rows[take]
    }

    /// The rows in use.
    pub fn active(&self) -> impl Iterator<Item = &Tester> + '_ {
        self.rows.iter().filter(|r| r.last_seen_ns != 0)
    }

    /// Sources whose row was taken over by a new source (the table was full where it hashed).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stamp_filter;
    use alloc::string::ToString;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

    /// An RFC 2544 test frame from `src`, with a VLAN tag of that ID if given.
    fn frame_from(src: [u8; 4], vlan: Option<u16>) -> alloc::vec::Vec<u8> {
        use crate::build::FrameSpec;
        let mut payload = [0u8; 32];
        payload[..7].copy_from_slice(b"RFC2544");
        let tags = vlan.map(|id| [(0x8100, id)]);
        let mut spec = FrameSpec::ipv4(
            MacAddr([0x00, 0xc0, 0x17, 0, 0, 9]),
            MAC,
            src,
            [192, 0, 2, 1],
            (50000, crate::DEFAULT_PORT),
            &payload,
        );
        if let Some(t) = &tags {
            spec.vlans = t;
        }
        let mut buf = alloc::vec![0u8; spec.len()];
        spec.write(&mut buf).unwrap();
        buf
    }

    #[test]
    fn rows_per_source_and_vlan_with_counts_and_times() {
        let filter = stamp_filter(MAC);
        let mut t = Testers::new(16);
        let a = frame_from([192, 0, 2, 10], None);
        let b = frame_from([192, 0, 2, 10], Some(100));
        let hit_a = crate::classify(&a, &filter).unwrap();
        let hit_b = crate::classify(&b, &filter).unwrap();
        t.record(&a, &hit_a, 1_000, true);
        t.record(&a, &hit_a, 2_000, true);
        t.record(&a, &hit_a, 3_000, false);
        t.record(&b, &hit_b, 4_000, true);
        let mut rows: alloc::vec::Vec<Tester> = t.active().copied().collect();
        rows.sort_by_key(|r| r.vlan);
        assert_eq!(rows.len(), 2);
        let (untagged, tagged) = (rows[0], rows[1]);
        assert_eq!(untagged.addr(), IpAddr::from([192, 0, 2, 10]));
        assert_eq!((untagged.packets, untagged.bytes, untagged.limited), (2, 2 * a.len() as u64, 1));
        assert_eq!((untagged.first_seen_ns, untagged.last_seen_ns), (1_000, 3_000));
        assert_eq!(untagged.mac, MacAddr([0x00, 0xc0, 0x17, 0, 0, 9]));
        assert_eq!(untagged.families.to_string(), "rfc2544");
        assert_eq!((tagged.vlan, tagged.packets), (100, 1));
        let mut merged = untagged;
        merged.merge(&tagged);
        assert_eq!((merged.packets, merged.limited, merged.last_seen_ns), (3, 1, 4_000));
    }

    #[test]
    fn a_full_table_gives_the_oldest_row_to_a_new_source() {
        let filter = stamp_filter(MAC);
        let mut t = Testers::new(4);
        for i in 0..4u8 {
            let f = frame_from([192, 0, 2, 10 + i], None);
            t.record(&f, &crate::classify(&f, &filter).unwrap(), 1_000 + i as u64, true);
        }
        let f = frame_from([192, 0, 2, 99], None);
        t.record(&f, &crate::classify(&f, &filter).unwrap(), 9_000, true);
        assert_eq!((t.active().count(), t.evicted()), (4, 1));
        assert!(t.active().all(|r| r.ip[15] != 10), "the oldest (192.0.2.10) made room");
    }
}
