//! The tester side: probe frames, pacing, and what came back.
//!
//! A probe's UDP payload is the signature (the ITO family after a 5-byte header) followed by
//! 16 bytes of our own: `RF`, a session number, a sequence number and the send time in
//! nanoseconds since the Unix epoch, all big-endian. A reflection keeps the payload, so the
//! receive side finds the same bytes at the same frame offset, matches its own session, and
//! computes the round trip from the kernel's receive timestamp.

use std::net::IpAddr;

use reflector_core::build::{FrameSpec, IpAddrs};
use reflector_core::{MacAddr, Mode, Signature};

/// Marks our probes in the payload.
pub const MAGIC: [u8; 2] = *b"RF";
/// Bytes we add after the signature: magic, session, sequence number, send time.
pub const PROBE_DATA_LEN: usize = 2 + 2 + 4 + 8;
pub use crate::pacer::FCS_LEN;

/// Everything needed to build probes and recognise their reflections.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Our MAC (the reflection's destination).
    pub src_mac: MacAddr,
    /// The reflector's MAC.
    pub dst_mac: MacAddr,
    /// Our IP address.
    pub src_ip: IpAddr,
    /// The reflector's IP address.
    pub dst_ip: IpAddr,
    /// Our UDP port.
    pub src_port: u16,
    /// The reflector's test port.
    pub dst_port: u16,
    /// The signature to carry (a built-in one).
    pub signature: Signature,
    /// Frame size including the 4-byte FCS, as testers count it.
    pub size: usize,
    /// What the reflector is expected to swap.
    pub mode: Mode,
    /// Tells this run's probes from any other's.
    pub session: u16,
}

fn l3_len(ip: &IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 20,
        IpAddr::V6(_) => 40,
    }
}

impl ProbeConfig {
    /// Offset of our data in the UDP payload.
    fn data_offset(&self) -> usize {
        self.signature.offset().unwrap_or(0) + 7
    }

    /// Offset of our data in the frame.
    pub fn data_frame_offset(&self) -> usize {
        14 + l3_len(&self.dst_ip) + 8 + self.data_offset()
    }

    /// The smallest frame size (with FCS) that holds the headers, signature and our data.
    pub fn min_size(&self) -> usize {
        self.data_frame_offset() + PROBE_DATA_LEN + FCS_LEN
    }

    /// Bytes written per probe (the size without FCS).
    pub fn frame_len(&self) -> usize {
        self.size - FCS_LEN
    }

    /// The bytes `MAGIC` + session that mark our reflections, at [`Self::data_frame_offset`].
    pub fn marker(&self) -> [u8; 4] {
        let s = self.session.to_be_bytes();
        [MAGIC[0], MAGIC[1], s[0], s[1]]
    }

    fn ip_addrs(&self, src: IpAddr, dst: IpAddr) -> IpAddrs {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpAddrs::V4 { src: s.octets(), dst: d.octets() },
            (IpAddr::V6(s), IpAddr::V6(d)) => IpAddrs::V6 { src: s.octets(), dst: d.octets() },
            _ => unreachable!("validated: both addresses are of one family"),
        }
    }

    /// The UDP payload of probe `seq` sent at `sent_ns`.
    fn payload(&self, seq: u32, sent_ns: u64, out: &mut Vec<u8>) {
        out.clear();
        out.resize(self.frame_len() - 14 - l3_len(&self.dst_ip) - 8, 0);
        let sig = self.signature.bytes().expect("built-in signature");
        let at = self.signature.offset().unwrap_or(0);
        if self.signature.family() == reflector_core::Family::Ito {
            out[..5].copy_from_slice(&[0, 1, 0, 0, 0]); // ITO header: version 0, type 1
        }
        out[at..at + 7].copy_from_slice(sig);
        let d = self.data_offset();
        out[d..d + 4].copy_from_slice(&self.marker());
        out[d + 4..d + 8].copy_from_slice(&seq.to_be_bytes());
        out[d + 8..d + 16].copy_from_slice(&sent_ns.to_be_bytes());
    }

    /// Writes probe `seq` into `buf` (IPv4 and UDP checksums complete); returns its length.
    pub fn write(&self, buf: &mut [u8], seq: u32, sent_ns: u64, scratch: &mut Vec<u8>) -> usize {
        self.payload(seq, sent_ns, scratch);
        let spec = FrameSpec {
            dst_mac: self.dst_mac,
            src_mac: self.src_mac,
            vlans: &[],
            ip: self.ip_addrs(self.src_ip, self.dst_ip),
            ipv4_options: &[],
            ipv6_ext: &[],
            ttl: 64,
            src_port: self.src_port,
            dst_port: self.dst_port,
            payload: scratch,
        };
        spec.write(buf).unwrap_or(0)
    }

    /// If `frame` is a reflection of one of our probes, its (sequence number, send time).
    /// The headers must be what the reflector's mode makes of ours.
    pub fn parse_reflection(&self, frame: &[u8]) -> Option<(u32, u64)> {
        if frame.len() < self.frame_len() || frame[0..6] != self.src_mac.0 || frame[6..12] != self.dst_mac.0 {
            return None;
        }
        let l3 = 14;
        let (ip_src, ip_dst) =
            if self.mode == Mode::Mac { (self.src_ip, self.dst_ip) } else { (self.dst_ip, self.src_ip) };
        let ips_ok = match (ip_src, ip_dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame[12..14] == [0x08, 0x00]
                    && frame[l3 + 12..l3 + 16] == s.octets()
                    && frame[l3 + 16..l3 + 20] == d.octets()
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                frame[12..14] == [0x86, 0xdd]
                    && frame[l3 + 8..l3 + 24] == s.octets()
                    && frame[l3 + 24..l3 + 40] == d.octets()
            }
            _ => false,
        };
        let l4 = l3 + l3_len(&self.dst_ip);
        let (p_src, p_dst) = if self.mode == Mode::All {
            (self.dst_port, self.src_port)
        } else {
            (self.src_port, self.dst_port)
        };
        let ports_ok =
            frame[l4..l4 + 2] == p_src.to_be_bytes() && frame[l4 + 2..l4 + 4] == p_dst.to_be_bytes();
        let d = self.data_frame_offset();
        if !ips_ok || !ports_ok || frame[d..d + 4] != self.marker() {
            return None;
        }
        let seq = u32::from_be_bytes(frame[d + 4..d + 8].try_into().ok()?);
        let sent = u64::from_be_bytes(frame[d + 8..d + 16].try_into().ok()?);
        Some((seq, sent))
    }
}

/// What came back, tallied as reflections arrive.
#[derive(Debug)]
pub struct Tally {
    /// Probes sent.
    pub sent: u64,
    /// Distinct probes that came back.
    pub received: u64,
    /// Reflections of a probe that had already come back.
    pub duplicated: u64,
    /// Probes that came back after a later one.
    pub reordered: u64,
    /// Reflections of probes more than [`SEQ_WINDOW`] behind the newest one: too late to tell
    /// a first arrival from a duplicate, so not counted as received.
    pub too_late: u64,
    window: SeqWindow,
    /// Round trips in nanoseconds (3 significant digits, bounded memory), and the exact extremes.
    rtts_ns: hdrhistogram::Histogram<u64>,
    rtt_min_max_ns: Option<(u64, u64)>,
    jitter_ns: f64,
    last_transit_ns: Option<i64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            sent: 0,
            received: 0,
            duplicated: 0,
            reordered: 0,
            too_late: 0,
            window: SeqWindow::default(),
            rtts_ns: hdrhistogram::Histogram::new(3).expect("3 significant digits is a valid precision"),
            rtt_min_max_ns: None,
            jitter_ns: 0.0,
            last_transit_ns: None,
        }
    }
}

/// How many sequence numbers behind the newest one a reflection is still told apart from a
/// duplicate (128 KiB of bits, whatever the run's length).
pub const SEQ_WINDOW: u64 = 1 << 20;

/// Which of the last [`SEQ_WINDOW`] sequence numbers have come back. Sequence numbers are 32
/// bits on the wire and wrap; they are extended to 64 bits around the newest one seen
/// (RFC 1982 serial number arithmetic), so a long run wraps without confusion.
#[derive(Debug)]
struct SeqWindow {
    bits: Vec<u64>,
    newest: Option<u64>,
}

impl Default for SeqWindow {
    fn default() -> Self {
        SeqWindow { bits: vec![0; (SEQ_WINDOW / 64) as usize], newest: None }
    }
}

/// What [`SeqWindow::mark`] found.
#[derive(Debug, PartialEq, Eq)]
enum Arrival {
    /// First arrival; `late` when a later probe came first.
    First {
        late: bool,
    },
    Duplicate,
    TooLate,
}

impl SeqWindow {
    /// `seq` as the 64-bit sequence number nearest the newest one.
    fn extend(&self, seq: u32) -> u64 {
        let Some(newest) = self.newest else { return seq as u64 };
        let delta = seq.wrapping_sub(newest as u32) as i32 as i64;
        (newest as i64 + delta).max(0) as u64
    }

    fn mark(&mut self, seq: u32) -> Arrival {
        let s = self.extend(seq);
        let newest = self.newest.unwrap_or(s);
        if s + SEQ_WINDOW <= newest {
            return Arrival::TooLate;
        }
        if s > newest || self.newest.is_none() {
            // Forget what slides out of the window: the slots of newest+1..=s.
            if s - newest >= SEQ_WINDOW {
                self.bits.fill(0);
            } else {
                for n in newest + 1..=s {
                    self.clear(n);
                }
            }
            self.newest = Some(s);
        }
        let (word, bit) = ((s % SEQ_WINDOW / 64) as usize, s % 64);
        if self.bits[word] & (1 << bit) != 0 {
            return Arrival::Duplicate;
        }
        self.bits[word] |= 1 << bit;
        Arrival::First { late: s < newest }
    }

    fn clear(&mut self, n: u64) {
        self.bits[(n % SEQ_WINDOW / 64) as usize] &= !(1 << (n % 64));
    }
}

impl Tally {
    /// Records the reflection of probe `seq`, sent at `sent_ns`, received at `received_ns`.
    pub fn record(&mut self, seq: u32, sent_ns: u64, received_ns: u64) {
        match self.window.mark(seq) {
            Arrival::Duplicate => {
                self.duplicated += 1;
                return;
            }
            Arrival::TooLate => {
                self.too_late += 1;
                return;
            }
            Arrival::First { late } => {
                self.received += 1;
                self.reordered += late as u64;
            }
        }
        let rtt = received_ns.saturating_sub(sent_ns);
        // Values beyond the histogram's range grow it (auto-resize); a value it cannot hold
        // at all (over 2^63) is only in min / max.
        let _ = self.rtts_ns.record(rtt);
        self.rtt_min_max_ns = Some(match self.rtt_min_max_ns {
            None => (rtt, rtt),
            Some((min, max)) => (min.min(rtt), max.max(rtt)),
        });
        // RFC 3550 §6.4.1: J += (|D| - J) / 16, D the change in transit time between
        // consecutive arrivals (here the round trip, both ends on one clock).
        let transit = rtt as i64;
        if let Some(last) = self.last_transit_ns {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit_ns = Some(transit);
    }

    /// The summary so far.
    pub fn report(&self) -> Report {
        let h = &self.rtts_ns;
        // Nearest rank, as the histogram keeps it; a bucket stands for its middle value.
        let pct = |p: f64| -> Option<f64> {
            let (min, max) = self.rtt_min_max_ns?;
            let v = match p {
                0.0 => min,
                100.0 => max,
                _ => h.median_equivalent(h.value_at_quantile(p / 100.0)).clamp(min, max),
            };
            Some(v as f64 / 1000.0)
        };
        Report {
            sent: self.sent,
            received: self.received,
            lost: self.sent.saturating_sub(self.received),
            duplicated: self.duplicated,
            reordered: self.reordered,
            too_late: self.too_late,
            loss_pct: if self.sent == 0 {
                0.0
            } else {
                100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64
            },
            rtt_us: [pct(0.0), pct(50.0), pct(90.0), pct(99.0), pct(100.0)],
            jitter_us: self.jitter_ns / 1000.0,
        }
    }
}

/// A probe run's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Probes sent.
    pub sent: u64,
    /// Distinct probes that came back.
    pub received: u64,
    /// Probes that never came back.
    pub lost: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// Probes that arrived after a later one.
    pub reordered: u64,
    /// Reflections too far behind the newest to be told from duplicates (not in `received`).
    pub too_late: u64,
    /// `lost / sent` in percent.
    pub loss_pct: f64,
    /// Round trip min, p50, p90, p99, max in microseconds (`None` with nothing received).
    pub rtt_us: [Option<f64>; 5],
    /// RFC 3550 interarrival jitter of the round trip, in microseconds.
    pub jitter_us: f64,
}

impl Report {
    /// As a JSON object.
    pub fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let r = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
        let mut m = serde_json::Map::new();
        m.insert("sent".into(), json!(self.sent));
        m.insert("received".into(), json!(self.received));
        m.insert("lost".into(), json!(self.lost));
        m.insert("duplicated".into(), json!(self.duplicated));
        m.insert("reordered".into(), json!(self.reordered));
        m.insert("too_late".into(), json!(self.too_late));
        m.insert("loss_pct".into(), json!((self.loss_pct * 1000.0).round() / 1000.0));
        m.insert(
            "rtt_us".into(),
            json!({"min": r(self.rtt_us[0]), "p50": r(self.rtt_us[1]), "p90": r(self.rtt_us[2]),
                   "p99": r(self.rtt_us[3]), "max": r(self.rtt_us[4])}),
        );
        m.insert("jitter_us".into(), json!((self.jitter_us * 10.0).round() / 10.0));
        m
    }

    /// As lines of text.
    pub fn text(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.1}"));
        format!(
            "sent {}, received {}, lost {} ({:.3}%), duplicated {}, reordered {}{}\nround trip (us): min {} p50 {} p90 {} p99 {} max {}; jitter {:.1} us",
            self.sent,
            self.received,
            self.lost,
            self.loss_pct,
            self.duplicated,
            self.reordered,
            if self.too_late > 0 { format!(", too late to judge {}", self.too_late) } else { String::new() },
            f(self.rtt_us[0]),
            f(self.rtt_us[1]),
            f(self.rtt_us[2]),
            f(self.rtt_us[3]),
            f(self.rtt_us[4]),
            self.jitter_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reflector_core::{Filter, FilterConfig};

    fn config(signature: Signature, mode: Mode, v6: bool) -> ProbeConfig {
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if v6 {
            ("2001:db8::a".parse().unwrap(), "2001:db8::1".parse().unwrap())
        } else {
            ("192.0.2.10".parse().unwrap(), "192.0.2.1".parse().unwrap())
        };
        ProbeConfig {
            src_mac: reflector_testkit::TESTER_MAC,
            dst_mac: reflector_testkit::LOCAL_MAC,
            src_ip,
            dst_ip,
            src_port: 50000,
            dst_port: 3842,
            signature,
            size: 128,
            mode,
            session: 0xbeef,
        }
    }

    #[test]
    fn probes_pass_a_default_reflector_and_their_reflections_are_recognised() {
        for sig in
            [Signature::ProbeOt, Signature::DataOt, Signature::Latency, Signature::Rfc2544, Signature::Y1564]
        {
            for mode in [Mode::All, Mode::MacIp, Mode::Mac] {
                for v6 in [false, true] {
                    let c = config(sig, mode, v6);
                    let mut buf = vec![0u8; 2048];
                    let mut scratch = Vec::new();
                    let n = c.write(&mut buf, 77, 123_456_789, &mut scratch);
                    assert_eq!(n, 124);
                    let frame = &mut buf[..n];
                    // Checksums are complete.
                    let parsed = etherparse::PacketHeaders::from_ethernet_slice(frame).unwrap();
                    let Some(etherparse::TransportHeader::Udp(udp)) = parsed.transport.clone() else {
                        panic!()
                    };
                    let sum = match parsed.net.clone().unwrap() {
                        etherparse::NetHeaders::Ipv4(h, _) => {
                            udp.calc_checksum_ipv4(&h, parsed.payload.slice()).unwrap()
                        }
                        etherparse::NetHeaders::Ipv6(h, _) => {
                            udp.calc_checksum_ipv6(&h, parsed.payload.slice()).unwrap()
                        }
                        _ => unreachable!(),
                    };
                    assert_eq!(udp.checksum, sum);
                    assert_eq!(c.parse_reflection(frame), None, "an unreflected probe is not a reflection");
                    let filter = Filter::new(&FilterConfig { mode, ..FilterConfig::new(c.dst_mac) }).unwrap();
                    let hit = reflector_core::testing::process(&filter, frame)
                        .unwrap_or_else(|r| panic!("{sig:?} {mode:?} v6={v6}: {r}"));
                    assert_eq!(hit.signature(), sig);
                    assert_eq!(c.parse_reflection(frame), Some((77, 123_456_789)));
                    // A reflector in another mode changes headers we do not expect.
                    let other = ProbeConfig {
                        mode: if mode == Mode::All { Mode::Mac } else { Mode::All },
                        ..c.clone()
                    };
                    assert_eq!(other.parse_reflection(frame), None);
                    let other_session = ProbeConfig { session: 1, ..c.clone() };
                    assert_eq!(other_session.parse_reflection(frame), None);
                }
            }
        }
    }

    #[test]
    fn minimum_sizes() {
        assert_eq!(config(Signature::ProbeOt, Mode::All, false).min_size(), 14 + 20 + 8 + 12 + 16 + 4);
        assert_eq!(config(Signature::Rfc2544, Mode::All, false).min_size(), 14 + 20 + 8 + 7 + 16 + 4);
        assert_eq!(config(Signature::ProbeOt, Mode::All, true).min_size(), 14 + 40 + 8 + 12 + 16 + 4);
    }

    #[test]
    fn tally_counts_loss_duplicates_reordering_and_jitter() {
        let mut t = Tally { sent: 6, ..Tally::default() };
        // Round trips 100, 300, 200, 200 us; seq 2 arrives after 3; seq 1 twice; seq 4, 5 lost.
        t.record(0, 0, 100_000);
        t.record(1, 1_000_000, 1_300_000);
        t.record(3, 3_000_000, 3_200_000);
        t.record(2, 2_000_000, 2_200_000);
        t.record(1, 1_000_000, 1_400_000);
        let r = t.report();
        assert_eq!((r.sent, r.received, r.lost, r.duplicated, r.reordered), (6, 4, 2, 1, 1));
        assert!((r.loss_pct - 33.333).abs() < 0.01);
        // Min and max exact; the percentiles within the histogram's 0.1%.
        let want = [100.0, 200.0, 300.0, 300.0, 300.0];
        for (got, want) in r.rtt_us.iter().zip(want) {
            assert!((got.unwrap() - want).abs() <= want * 0.001, "{:?}", r.rtt_us);
        }
        assert_eq!((r.rtt_us[0], r.rtt_us[4]), (Some(100.0), Some(300.0)));
        // D = 200, 100, 0 us: J = 12.5, then 12.5 + (100 - 12.5)/16, then that - J/16.
        let j1 = 200.0 / 16.0;
        let j2 = j1 + (100.0 - j1) / 16.0;
        let j3 = j2 + (0.0 - j2) / 16.0;
        assert!((r.jitter_us - j3).abs() < 1e-6, "{}", r.jitter_us);
        let empty = Tally { sent: 3, ..Tally::default() }.report();
        assert_eq!((empty.lost, empty.loss_pct, empty.rtt_us[1]), (3, 100.0, None));
    }

    #[test]
    fn tally_memory_is_bounded_and_sequence_numbers_wrap() {
        let mut t = Tally::default();
        // Ten million probes, through the 32-bit wrap, one duplicate and one reordering in the
        // window at the end, one reflection far too late.
        let start = u32::MAX - 5_000_000;
        t.record(start, 0, 1_999);
        let histogram_slots = t.rtts_ns.distinct_values();
        for i in 1..10_000_000u32 {
            let seq = start.wrapping_add(i);
            t.record(seq, 0, 1_000 + (i % 1000) as u64);
        }
        let last = start.wrapping_add(9_999_999);
        t.record(last, 0, 1_000); // duplicate of the newest
        t.record(last.wrapping_sub(100), 0, 1_000); // duplicate inside the window
        t.record(start, 0, 1_000); // ten million behind: too late to tell
        t.record(last.wrapping_add(2), 0, 1_000);
        t.record(last.wrapping_add(1), 0, 1_000); // reordered
        assert_eq!((t.received, t.duplicated, t.too_late, t.reordered), (10_000_002, 2, 1, 1));
        // The window and the histogram stay their size, whatever the run's length.
        assert_eq!(t.window.bits.len(), (SEQ_WINDOW / 64) as usize);
        assert_eq!(t.rtts_ns.distinct_values(), histogram_slots);
        let r = t.report();
        assert_eq!((r.rtt_us[0], r.rtt_us[4]), (Some(1.0), Some(1.999)));
    }
}
