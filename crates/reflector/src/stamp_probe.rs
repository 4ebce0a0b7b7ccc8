//! `reflector probe --stamp`: a STAMP Session-Sender (RFC 8762, unauthenticated) over a UDP
//! socket. It sends base packets (sequence number, transmit time T1, our clock's error
//! estimate) padded to the frame size asked for, and from each answer takes the reflector's
//! receive and transmit times (T2, T3, in the format its Z bit names) and its sequence number;
//! our receive time T4 is read when the answer is taken off the socket. It reports the round
//! trip (T4 − T1), the reflector's dwell (T3 − T2), the round trip without it, the one-way
//! delays (T2 − T1 forward, T4 − T3 back, meaningful only with synchronised clocks) and, against
//! a stateful reflector, the loss per direction.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reflector_core::stamp::{ErrorEstimate, TimestampFormat};
use serde_json::json;

use crate::pacer::{FCS_LEN, Pacer};
use crate::prober::Amount;
use reflector_io::worker::utc_now_ns;

/// What a STAMP run is told.
#[derive(Debug, Clone)]
pub struct StampProbe {
    /// Interface to send from (the socket is bound to it).
    pub iface: String,
    /// The reflector.
    pub target: SocketAddr,
    /// Our address, when given.
    pub src_ip: Option<IpAddr>,
    /// Frame size including the FCS, as testers count it.
    pub size: usize,
    /// Probes per second (0: as fast as possible).
    pub rate: u64,
    /// How many, or how long.
    pub amount: Amount,
    /// How long to wait for late answers after the last probe.
    pub wait: Duration,
}

/// One answer, as read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// Our sequence number, as echoed.
    pub sender_seq: u32,
    /// The reflector's sequence number.
    pub reflector_seq: u32,
    /// T1, T2, T3, T4 in nanoseconds since the Unix epoch.
    pub t1: u64,
    /// The reflector's receive time.
    pub t2: u64,
    /// The reflector's transmit time.
    pub t3: u64,
    /// Our receive time.
    pub t4: u64,
    /// The reflector's error estimate.
    pub error: u16,
    /// The TTL / hop limit our probe arrived with at the reflector.
    pub ttl: u8,
}

/// The UDP payload length for a frame of `size` bytes (with FCS) to `target`.
pub fn payload_len(size: usize, target: &SocketAddr) -> usize {
    let ip = if target.is_ipv4() { 20 } else { 40 };
    size.saturating_sub(FCS_LEN + 14 + ip + 8)
}

/// Writes probe `seq` sent at `t1` into `buf` (its length is the payload's).
fn write_probe(buf: &mut [u8], seq: u32, t1: u64, error: ErrorEstimate) {
    buf.fill(0);
    buf[0..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..12].copy_from_slice(&TimestampFormat::Ntp.encode(t1));
    buf[12..14].copy_from_slice(&error.bits().to_be_bytes());
}

/// An answer's fields, or `None` when it is too short to be one.
pub fn parse_answer(payload: &[u8], t4: u64) -> Option<Answer> {
    if payload.len() < 41 {
        return None;
    }
    let be32 =
        |at: usize| u32::from_be_bytes([payload[at], payload[at + 1], payload[at + 2], payload[at + 3]]);
    let ts = |at: usize| -> [u8; 8] { payload[at..at + 8].try_into().expect("8 bytes") };
    let error = u16::from_be_bytes([payload[12], payload[13]]);
    // The Z bit says in which format the reflector wrote its times; ours are NTP.
    let format = if error & 0x4000 != 0 { TimestampFormat::Ptp } else { TimestampFormat::Ntp };
    Some(Answer {
        reflector_seq: be32(0),
        t3: format.decode(ts(4)),
        error,
        t2: format.decode(ts(16)),
        sender_seq: be32(24),
        t1: TimestampFormat::Ntp.decode(ts(28)),
        t4,
        ttl: payload[40],
    })
}

/// Sends the probes and collects the answers (in the order they came).
pub fn run(probe: &StampProbe, stop: &AtomicBool) -> anyhow::Result<(u64, Vec<Answer>)> {
    let len = payload_len(probe.size, &probe.target);
    let v4 = probe.target.is_ipv4();
    let local = SocketAddr::new(
        match probe.src_ip {
            Some(ip) => ip,
            None => default_source(&probe.iface, v4)?,
        },
        0,
    );
    let socket = UdpSocket::bind(local).with_context(|| format!("cannot bind a UDP socket to {local}"))?;
    bind_to_device(&socket, &probe.iface, v4)?;
    socket.connect(probe.target).with_context(|| format!("cannot reach {}", probe.target))?;
    socket.set_nonblocking(true).context("non-blocking socket")?;
    let error = reflector_io::worker::clock_error_estimate();
    let started = Instant::now();
    let mut pacer = Pacer::new(probe.rate, started);
    let (mut buf, mut rx) = (vec![0u8; len], vec![0u8; 65536]);
    let (mut seq, mut answers, mut last_send) = (0u32, Vec::new(), started);
    loop {
        let now = Instant::now();
        let sending = !stop.load(Ordering::Relaxed)
            && match probe.amount {
                Amount::Count(n) => (seq as u64) < n,
                Amount::Duration(d) => now - started < d && seq < u32::MAX,
            };
        if !sending && now - last_send >= probe.wait {
            break;
        }
        if sending {
            let mut due = pacer.due(now);
            if let Amount::Count(n) = probe.amount {
                due = due.min(n - seq as u64);
            }
            for _ in 0..due {
                write_probe(&mut buf, seq, utc_now_ns(), error);
                match socket.send(&buf) {
                    Ok(_) => {}
                    // A full socket buffer: the probe counts as sent and lost.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot send to {}", probe.target)),
                }
                seq = seq.wrapping_add(1);
                pacer.sent += 1;
            }
            if due > 0 {
                last_send = Instant::now();
            }
        }
        loop {
            match socket.recv(&mut rx) {
                Ok(n) => answers.extend(parse_answer(&rx[..n], utc_now_ns())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // An ICMP error for an earlier probe (nobody listening): keep going, it counts
                // as lost.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e).context("cannot receive"),
            }
        }
        let until = if sending { pacer.next_at() } else { now + Duration::from_millis(10) };
        let idle = until.saturating_duration_since(Instant::now());
        if !idle.is_zero() {
            reflector_io::host::sock::poll_readable(socket.as_fd(), idle).context("poll")?;
        }
    }
    Ok((seq as u64, answers))
}

/// The address the socket is bound to when `--src-ip` is not given: any, where the socket can be
/// tied to the interface itself (Linux, macOS: [`bind_to_device`]).
#[cfg(not(target_os = "freebsd"))]
fn default_source(_iface: &str, v4: bool) -> anyhow::Result<IpAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    Ok(if v4 { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() })
}

/// The address the socket is bound to when `--src-ip` is not given: FreeBSD cannot tie a socket
/// to an interface, so it sends from the interface's own address (the first of the family, not
/// link-local), and the route to the target picks the way out.
#[cfg(target_os = "freebsd")]
fn default_source(iface: &str, v4: bool) -> anyhow::Result<IpAddr> {
    let addresses = reflector_io::host::iface::iface_addresses(iface)
        .with_context(|| format!("cannot list {iface}'s addresses"))?;
    addresses
        .into_iter()
        .find(|a| match a {
            IpAddr::V4(_) => v4,
            IpAddr::V6(a6) => !v4 && (a6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .ok_or_else(|| {
            crate::input::UsageError(format!(
                "{iface} has no IPv{} address to send from (give --src-ip)",
                if v4 { 4 } else { 6 }
            ))
            .into()
        })
}

/// Ties `socket` to interface `iface`, so the probes leave through it: SO_BINDTODEVICE.
#[cfg(target_os = "linux")]
fn bind_to_device(socket: &UdpSocket, iface: &str, _v4: bool) -> anyhow::Result<()> {
    let mut name = [0u8; libc::IFNAMSIZ];
    if iface.len() >= name.len() {
        anyhow::bail!("interface name '{iface}' is too long");
    }
    name[..iface.len()].copy_from_slice(iface.as_bytes());
    reflector_io::host::sock::setsockopt(
        socket,
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        &name,
        "SO_BINDTODEVICE",
    )
    .with_context(|| format!("cannot send from {iface}"))
}

/// Ties `socket` to interface `iface`, so the probes leave through it: IP_BOUND_IF
/// (IPV6_BOUND_IF), by the interface's index.
#[cfg(target_os = "macos")]
fn bind_to_device(socket: &UdpSocket, iface: &str, v4: bool) -> anyhow::Result<()> {
    let index = reflector_io::host::iface::iface_info(iface)?.index as libc::c_int;
    let (level, name, call) = if v4 {
        (libc::IPPROTO_IP, libc::IP_BOUND_IF, "IP_BOUND_IF")
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_BOUND_IF, "IPV6_BOUND_IF")
    };
    reflector_io::host::sock::setsockopt(socket, level, name, &index, call)
        .with_context(|| format!("cannot send from {iface}"))
}

/// FreeBSD has no option tying a socket to an interface: the source address does
/// ([`default_source`]).
#[cfg(target_os = "freebsd")]
fn bind_to_device(_socket: &UdpSocket, _iface: &str, _v4: bool) -> anyhow::Result<()> {
    Ok(())
}

/// Minimum, median, 99th percentile and maximum of `values` (ns) in microseconds.
fn summary(values: &mut [i64]) -> serde_json::Value {
    if values.is_empty() {
        return serde_json::Value::Null;
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    let r = |x: f64| (x * 10.0).round() / 10.0;
    json!({"min": r(at(0.0)), "p50": r(at(0.5)), "p99": r(at(0.99)), "max": r(at(1.0))})
}

/// The loss on each way, from a stateful reflector's sequence numbers: it numbers the probes
/// it received, so the highest number it sent back says how many arrived (at least); the rest of
/// ours were lost on the way out, and answers it sent that did not come back on the way back.
/// `None` while the numbers cannot tell (a stateless reflector copies ours: every answer has
/// both numbers equal, which a stateful one without loss on the way out gives too).
pub fn loss_per_direction(sent: u64, answers: &[Answer]) -> Option<(u64, u64)> {
    if answers.iter().all(|a| a.reflector_seq == a.sender_seq) {
        return None;
    }
    let arrived = answers.iter().map(|a| a.reflector_seq as u64 + 1).max()?;
    let received = distinct(answers);
    Some((sent.saturating_sub(arrived), arrived.saturating_sub(received)))
}

fn distinct(answers: &[Answer]) -> u64 {
    let mut seqs: Vec<u32> = answers.iter().map(|a| a.sender_seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs.len() as u64
}

/// The report of a run, as one JSON object.
pub fn report(probe: &StampProbe, sent: u64, answers: &[Answer], elapsed: Duration) -> serde_json::Value {
    let received = distinct(answers);
    let lost = sent.saturating_sub(received);
    let d = |a: u64, b: u64| a as i64 - b as i64;
    let mut rtt: Vec<i64> = answers.iter().map(|a| d(a.t4, a.t1)).collect();
    let mut dwell: Vec<i64> = answers.iter().map(|a| d(a.t3, a.t2)).collect();
    let mut net: Vec<i64> = answers.iter().map(|a| d(a.t4, a.t1) - d(a.t3, a.t2)).collect();
    let mut forward: Vec<i64> = answers.iter().map(|a| d(a.t2, a.t1)).collect();
    let mut backward: Vec<i64> = answers.iter().map(|a| d(a.t4, a.t3)).collect();
    let ours = reflector_io::worker::clock_error_estimate();
    let theirs = answers.last().map(|a| ErrorEstimate::from_bits(a.error & !0x4000));
    let synchronised = ours.synchronised() && theirs.is_some_and(|e| e.synchronised());
    let per_direction = loss_per_direction(sent, answers);
    json!({
        "probe": format!("STAMP to {} from {}, {} bytes", probe.target, probe.iface, probe.size),
        "sent": sent,
        "received": received,
        "duplicated": answers.len() as u64 - received,
        "lost": lost,
        "loss_pct": if sent == 0 { 0.0 } else { (lost as f64 * 100.0 / sent as f64 * 1000.0).round() / 1000.0 },
        "lost_forward": per_direction.map(|p| p.0),
        "lost_backward": per_direction.map(|p| p.1),
        "rtt_us": summary(&mut rtt),
        "reflector_dwell_us": summary(&mut dwell),
        "rtt_without_dwell_us": summary(&mut net),
        "forward_us": summary(&mut forward),
        "backward_us": summary(&mut backward),
        "clocks_synchronised": synchronised,
        "our_clock": {"synchronised": ours.synchronised(), "error_ns": ours.error_ns()},
        "reflector_clock": theirs.map(|e| json!({
            "synchronised": e.synchronised(),
            "error_ns": e.error_ns(),
            "format": if answers.last().is_some_and(|a| a.error & 0x4000 != 0) { "ptp" } else { "ntp" },
        })),
        "ttl_at_reflector": answers.last().map(|a| a.ttl),
        "elapsed_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

/// The report as text lines.
pub fn text(report: &serde_json::Value) -> String {
    let us = |v: &serde_json::Value| {
        if v.is_null() {
            "-".to_string()
        } else {
            format!("min {} / p50 {} / p99 {} / max {} µs", v["min"], v["p50"], v["p99"], v["max"])
        }
    };
    let mut out = format!(
        "{}\nsent {} received {} lost {} ({}%)",
        report["probe"].as_str().unwrap_or(""),
        report["sent"],
        report["received"],
        report["lost"],
        report["loss_pct"]
    );
    match (report["lost_forward"].as_u64(), report["lost_backward"].as_u64()) {
        (Some(f), Some(b)) => out += &format!(", {f} on the way out, {b} on the way back"),
        _ => out += " (per direction: needs a stateful reflector that lost some on the way out)",
    }
    out += &format!("\nround trip            {}", us(&report["rtt_us"]));
    out += &format!("\nreflector dwell       {}", us(&report["reflector_dwell_us"]));
    out += &format!("\nround trip w/o dwell  {}", us(&report["rtt_without_dwell_us"]));
    out += &format!("\nforward (T2 - T1)     {}", us(&report["forward_us"]));
    out += &format!("\nbackward (T4 - T3)    {}", us(&report["backward_us"]));
    if report["clocks_synchronised"] != true {
        out += "\nwarning: the clocks are not known to be synchronised (S bit): one-way delays include their offset";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(sender_seq: u32, reflector_seq: u32) -> Answer {
        Answer { sender_seq, reflector_seq, t1: 0, t2: 10, t3: 15, t4: 40, error: 0x8001, ttl: 255 }
    }

    #[test]
    fn loss_per_direction_from_a_stateful_reflectors_numbers() {
        // Ten sent; 2 and 5 lost on the way out (the reflector numbered 8 arrivals, 0..=7);
        // of its answers, the one numbered 6 (to our 8) lost on the way back.
        let answers: Vec<Answer> = [(0, 0), (1, 1), (3, 2), (4, 3), (6, 4), (7, 5), (9, 7)]
            .iter()
            .map(|(s, r)| answer(*s, *r))
            .collect();
        assert_eq!(loss_per_direction(10, &answers), Some((2, 1)));
        // Numbers all equal: a stateless reflector (or nothing lost on the way out).
        let same: Vec<Answer> = (0..5).map(|i| answer(i, i)).collect();
        assert_eq!(loss_per_direction(6, &same), None);
    }

    #[test]
    fn an_answer_is_parsed_in_the_format_its_z_bit_names() {
        let t1 = 1_796_126_400_000_000_000u64;
        let mut p = vec![0u8; 44];
        write_probe(&mut p, 7, t1, ErrorEstimate::new(true, 1000));
        // As a reflector answers it: its fields in PTP format, ours copied to 24..38.
        let mut a = [0u8; 44];
        a[0..4].copy_from_slice(&3u32.to_be_bytes());
        a[4..12].copy_from_slice(&TimestampFormat::Ptp.encode(t1 + 2_000));
        a[12..14].copy_from_slice(&(0x4000u16 | 0x0101).to_be_bytes());
        a[16..24].copy_from_slice(&TimestampFormat::Ptp.encode(t1 + 1_000));
        a[24..38].copy_from_slice(&p[0..14]);
        a[40] = 61;
        let got = parse_answer(&a, t1 + 3_000).unwrap();
        assert_eq!((got.sender_seq, got.reflector_seq, got.ttl), (7, 3, 61));
        assert_eq!((got.t1, got.t2, got.t3, got.t4), (t1, t1 + 1_000, t1 + 2_000, t1 + 3_000));
        assert_eq!(parse_answer(&a[..40], 0), None);
    }
}
