//! STAMP / TWAMP-Light live, against an independent sender: `stamp-suite` 1.0.0 (crates.io),
//! which `scripts/test.sh` installs into `target/tools/stamp-suite` (root; ignored otherwise).
//! Its sender measures through a veth pair against `reflector run --sig stamp`, over IPv4 and
//! IPv6, on af-packet, af-xdp and xdp-tx; every probe must be answered, with timestamps it
//! decodes near the host clock, T2 ≤ T3, and the TTL it sent echoed. Its packets leave the
//! tester's stack with their checksums left for offload (a veth), which the answers complete.
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{BACKENDS, NetnsPair, summary};

/// The stamp-suite binary `scripts/test.sh` installs.
fn stamp_suite() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/stamp-suite/bin/stamp-suite");
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh installs it (cargo install stamp-suite --version 1.0.0 --locked --root target/tools/stamp-suite)",
        path.display()
    );
    path
}

/// One answered probe as stamp-suite prints it with `-R`: `seq=N rtt=…ms ttl=T
/// reflector_recv_ts=T2 reflector_send_ts=T3` (the timestamps as raw 64-bit NTP values).
#[derive(Debug)]
struct Reply {
    ttl: u8,
    t2: u64,
    t3: u64,
}

fn replies(stderr: &str) -> Vec<Reply> {
    stderr
        .lines()
        .filter(|l| l.starts_with("seq="))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {l}"))
                    .to_string()
            };
            Reply {
                ttl: field("ttl=").parse().unwrap(),
                t2: field("reflector_recv_ts=").parse().unwrap(),
                t3: field("reflector_send_ts=").parse().unwrap(),
            }
        })
        .collect()
}

/// A raw NTP timestamp in seconds since the Unix epoch.
fn ntp_to_unix(raw: u64) -> f64 {
    (raw >> 32) as f64 - 2_208_988_800.0 + (raw & 0xffff_ffff) as f64 / 4_294_967_296.0
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Sends `count` STAMP probes from the tester namespace to `addr` with stamp-suite; returns its
/// JSON summary and the replies it printed.
fn stamp_suite_sender(pair: &NetnsPair, addr: &str, count: u32) -> (serde_json::Value, Vec<Reply>) {
    let bin = stamp_suite();
    let local = if addr.contains(':') { "::" } else { "0.0.0.0" };
    let count = count.to_string();
    let out = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", &pair.tester_ns])
        .arg(&bin)
        .args(["-r", addr, "-S", local, "-p", "862", "-c", &count, "-d", "1ms", "-L", "2"])
        .args(["--output-format", "json", "-R"])
        .output()
        .expect("stamp-suite runs");
    assert!(out.status.success(), "stamp-suite: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last =
        stdout.lines().rev().find(|l| l.contains("\"summary\"")).expect("a JSON summary from stamp-suite");
    (serde_json::from_str(last).unwrap(), replies(&String::from_utf8_lossy(&out.stderr)))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn stamp_suite_gets_every_probe_answered_with_honest_timestamps() {
    require_live!();
    for backend in BACKENDS.into_iter().chain(["xdp-tx"]) {
        let pair = NetnsPair::for_backend(backend);
        // xdp-tx: the tester's veth takes XDP_TX frames only with a program of its own.
        let _peer = (backend == "xdp-tx").then(|| pair.peer_xdp_pass());
        let reflector = pair.start_reflector_on(
            Some(backend),
            &["--sig", "stamp", "--stats", "json", "--stats-interval", "10"],
        );
        assert!(
            reflector.start_line.contains("STAMP on udp/862, stateless, ntp timestamps"),
            "{}",
            reflector.start_line
        );
        assert!(reflector.start_line.contains("udp/862 held"), "{}", reflector.start_line);
        for addr in ["192.0.2.1", "2001:db8::1"] {
            let before = now();
            let (report, replies) = stamp_suite_sender(&pair, addr, 1000);
            let after = now();
            let what = format!("{backend} {addr}");
            assert_eq!(report["packets_sent"], 1000, "{what}: {report}");
            assert_eq!(report["packets_received"], 1000, "{what}: {report}");
            assert_eq!(report["measurements"]["answered_probes"], 1000, "{what}");
            assert_eq!(replies.len(), 1000, "{what}: one line per reply");
            for r in &replies {
                // stamp-suite sends with TTL / hop limit 255 on a direct link.
                assert_eq!(r.ttl, 255, "{what}: the sender's TTL echoed: {r:?}");
                assert!(r.t2 <= r.t3, "{what}: T2 after T3: {r:?}");
                let (t2, t3) = (ntp_to_unix(r.t2), ntp_to_unix(r.t3));
                assert!(
                    t2 > before - 1.0 && t3 < after + 1.0,
                    "{what}: {t2} / {t3} not within 1 s of {before}..{after}"
                );
            }
            // Its one-way delays use our timestamps: every sample decoded.
            assert_eq!(report["owd"]["samples"], 1000, "{what}: {report}");
        }
        let (status, lines) = reflector.signal_and_wait("INT");
        assert!(status.success(), "{backend}");
        let s = summary(&lines);
        assert_eq!(s["by_signature"]["stamp"], 2000, "{backend}: {s}");
        assert_eq!(s["reflected_packets"], 2000, "{backend}: {s}");
    }
}

/// Runs `reflector probe vb --stamp ARGS --json` in the tester namespace; its report.
fn stamp_probe(pair: &NetnsPair, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["30", "ip", "netns", "exec", &pair.tester_ns, env!("CARGO_BIN_EXE_reflector")];
    full.extend_from_slice(&["probe", "vb", "--stamp", "--json"]);
    full.extend_from_slice(args);
    let out = Command::new("timeout").args(&full).output().expect("probe runs");
    assert!(out.status.success(), "probe: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_stamp_measures_against_stamp_suites_reflector_and_ours() {
    require_live!();
    let pair = NetnsPair::with_mtu(1500);
    // stamp-suite's own reflector, on the reflector's side.
    let mut theirs = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &pair.reflector_ns])
        .arg(stamp_suite())
        .args(["-i", "-S", "192.0.2.1", "-o", "862"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = now();
    let report = stamp_probe(&pair, &["--dst-ip", "192.0.2.1", "--count", "500", "--rate", "2000"]);
    // SIGTERM to `timeout`, which hands it on to stamp-suite (SIGKILL would end `timeout`
    // alone and leave stamp-suite holding the port, and running, after the test).
    let _ = Command::new("kill").args(["-TERM", &theirs.id().to_string()]).status();
    let _ = theirs.wait();
    assert_eq!((report["sent"].as_u64(), report["received"].as_u64()), (Some(500), Some(500)), "{report}");
    assert_eq!(report["lost"], 0);
    // The round trip holds the reflector's dwell; both are positive and below a second.
    let (rtt, dwell) = (&report["rtt_us"], &report["reflector_dwell_us"]);
    assert!(rtt["min"].as_f64().unwrap() > 0.0 && rtt["max"].as_f64().unwrap() < 1e6, "{report}");
    assert!(
        dwell["min"].as_f64().unwrap() >= 0.0 && dwell["p50"].as_f64() <= rtt["p50"].as_f64(),
        "{report}"
    );
    assert_eq!(report["ttl_at_reflector"], 64, "{report}");
    assert!(report["elapsed_s"].as_f64().unwrap() < now() - before + 1.0);

    // Ours, stateful, PTP timestamps, over IPv6: answered in full, the reflector's clock and
    // format read from its error estimate.
    let reflector = pair.start_reflector_on(
        Some("af-packet"),
        &["--sig", "stamp", "--stamp-sequence", "stateful", "--stamp-timestamps", "ptp", "--stats", "json"],
    );
    let report = stamp_probe(&pair, &["--dst-ip", "2001:db8::1", "--count", "300", "--size", "300"]);
    assert_eq!(report["received"], 300, "{report}");
    assert_eq!(report["reflector_clock"]["format"], "ptp", "{report}");
    // Nothing lost on the way out: a stateful reflector's numbers equal ours, and per-direction
    // loss cannot be told from a stateless one's.
    assert!(report["lost_forward"].is_null(), "{report}");
    let clock = reflector_sys::clock::state().unwrap();
    assert_eq!(report["reflector_clock"]["synchronised"], clock.synchronised, "{report}");
    assert_eq!(report["clocks_synchronised"], clock.synchronised, "{report}");
    let (status, lines) = reflector.signal_and_wait("INT");
    assert!(status.success());
    assert_eq!(summary(&lines)["by_signature"]["stamp"], 300);
}

#[test]
fn probe_stamp_refuses_what_it_does_not_use_in_one_line() {
    for (args, message) in [
        (&["probe", "lo", "--stamp", "--dst-mac", "02:00:00:00:00:01"][..], "cannot be used with"),
        (&["probe", "lo", "--stamp", "--sig", "RFC2544"][..], "cannot be used with"),
        (
            &["probe", "lo", "--stamp", "--size", "80"][..],
            "too small for a STAMP packet over IPv4 (minimum 90)",
        ),
        (&["probe", "lo"][..], "--dst-mac"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_reflector")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// TWAMP-Light senders that do not pad (twampy sends 14-byte test packets by default, and mixes
/// 22, 548 and 1472 bytes) get every request answered, on every data path: a UDP socket in the
/// tester's namespace, from twampy's port 20000, over IPv4 and IPv6 (1452 bytes there for the
/// 1472); the answers to the short
/// ones are the 41-byte reflector packet (their UDP checksums complete, or the kernel would
/// drop them), the others as long as the request, each with the sender's fields and TTL where
/// RFC 5357 §4.2.1 puts them, and the short ones counted as `stamp_short_answered`. An IPv6
/// request without a UDP checksum is refused as `udp_checksum` (RFC 8200 §8.1) on every path.
/// Before, 14-byte requests were all refused (`stamp_length`), the mix lost about half.
#[test]
#[ignore = "needs root and network namespaces"]
fn twamp_light_requests_that_are_not_padded_are_answered_on_every_path() {
    require_live!();
    const SIZES: [usize; 5] = [14, 22, 40, 548, 1472];
    const ROUNDS: usize = 20;
    for backend in BACKENDS.into_iter().chain(["xdp-tx"]) {
        let pair = NetnsPair::with_mtu(1500);
        let _peer = (backend == "xdp-tx").then(|| pair.peer_xdp_pass());
        let reflector = pair.start_reflector_on(Some(backend), &["--sig", "stamp", "--stats", "json"]);
        let answered = NetnsPair::in_ns(&pair.tester_ns, || {
            let mut answered = 0;
            for (addr, local) in [("192.0.2.1:862", "0.0.0.0:20000"), ("[2001:db8::1]:862", "[::]:20000")] {
                let socket = std::net::UdpSocket::bind(local).unwrap();
                socket.connect(addr).unwrap();
                socket.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 2048];
                for round in 0..ROUNDS {
                    // (IPv6's 40-byte header leaves 1452 bytes of a 1500-byte MTU unfragmented.)
                    let v6 = addr.starts_with('[');
                    for size in SIZES.map(|s| if v6 { s.min(1452) } else { s }) {
                        let mut request = vec![0u8; size];
                        let seq = (round * SIZES.len() + size) as u32;
                        request[0..4].copy_from_slice(&seq.to_be_bytes());
                        request[4..12].copy_from_slice(&[0xe9, 0x5b, 0x1c, 0x00, 0x80, 0, 0, 0]);
                        request[12..14].copy_from_slice(&0x0001u16.to_be_bytes());
                        socket.send(&request).unwrap();
                        let n =
                            socket.recv(&mut buf).unwrap_or_else(|e| panic!("{backend} {addr} {size}: {e}"));
                        let answer = &buf[..n];
                        assert_eq!(n, size.max(41), "{backend} {addr}: a {size}-byte request's answer");
                        assert_eq!(
                            answer[24..38],
                            request[0..14],
                            "{backend} {addr} {size}: the sender's fields"
                        );
                        assert_eq!(answer[0..4], request[0..4], "{backend} {addr} {size}: sequence number");
                        assert_eq!(answer[40], 64, "{backend} {addr} {size}: the sender's TTL");
                        answered += 1;
                    }
                }
            }
            answered
        });
        assert_eq!(answered, 2 * ROUNDS * SIZES.len(), "{backend}");
        // IPv6 without a UDP checksum: refused, not answered.
        let tester = pair.tester();
        let mut zero = reflector_testkit::Frame {
            src_mac: reflector_testkit::TESTER_MAC,
            ..reflector_testkit::Frame::stamp_v6(44)
        }
        .bytes();
        zero[54 + 6..54 + 8].fill(0);
        for _ in 0..3 {
            tester.send(&zero).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (status, lines) = reflector.signal_and_wait("INT");
        assert!(status.success(), "{backend}");
        let s = summary(&lines);
        let short = 2 * ROUNDS * 3;
        assert_eq!(s["stamp_short_answered"], short as u64, "{backend}: {s}");
        assert_eq!(s["by_signature"]["stamp"], answered as u64, "{backend}: {s}");
        assert_eq!(s["rejected"]["udp_checksum"], 3, "{backend}: {s}");
    }
}
