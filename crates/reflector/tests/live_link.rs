//! Link faults, as a field engineer meets them: the link goes down and up (the reflector waits
//! without spinning and reflects again), the MTU grows (said, and counted), the interface is
//! deleted (exit 1 within a second, one line naming it). Every live backend. Needs root.
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BACKENDS, NetnsPair, receive_reflections};
use reflector_testkit::Frame;

fn ip(args: &[&str]) {
    assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
}

/// CPU time (user + system) of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the reflector runs");
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Sends `n` probes and returns how many came back.
fn round(pair: &NetnsPair, n: usize) -> usize {
    let tester = pair.tester();
    let frame = Frame::ito_v4().bytes();
    for _ in 0..n {
        tester.send(&frame).unwrap();
    }
    receive_reflections(&tester, n, Duration::from_millis(500)).len()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn reflection_survives_link_flaps_without_spinning() {
    require_live!();
    for backend in BACKENDS {
        let pair = NetnsPair::for_backend(backend);
        let reflector = pair.start_reflector_on(Some(backend), &["--stats", "json"]);
        let pid = common::child_of(reflector.pid());
        assert_eq!(round(&pair, 50), 50, "{backend}: before the flap");
        for how in ["admin", "carrier"] {
            // Down: our side administratively, or the peer (our side loses its carrier).
            let (ns, dev) = if how == "admin" { (&pair.reflector_ns, "va") } else { (&pair.tester_ns, "vb") };
            ip(&["-n", ns, "link", "set", dev, "down"]);
            let before = cpu_ticks(pid);
            std::thread::sleep(Duration::from_secs(2));
            let used = (cpu_ticks(pid) - before) as f64 / ticks_per_second() as f64;
            assert!(used < 0.1, "{backend}, {how} down: {used:.2} s of CPU in 2 s (spinning)");
            ip(&["-n", ns, "link", "set", dev, "up"]);
            // The veth pair needs a moment to come up on both sides.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut back = 0;
            while back < 50 && Instant::now() < deadline {
                back = round(&pair, 50);
            }
            assert_eq!(back, 50, "{backend}: after the {how} flap");
        }
        // The run goes on, and ends cleanly with a summary.
        let said: Vec<String> = reflector.stderr.try_iter().collect();
        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success(), "{backend}");
        assert!(common::summary(&lines)["reflected_packets"].as_u64().unwrap() >= 150, "{backend}");
        assert!(
            said.iter().any(|l| l == "reflector: va: link down (no carrier): waiting"),
            "{backend}: {said:?}"
        );
        assert!(said.iter().any(|l| l == "reflector: va: link up again: reflecting"), "{backend}: {said:?}");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_deleted_interface_ends_the_run_within_a_second() {
    require_live!();
    for backend in BACKENDS {
        let pair = NetnsPair::for_backend(backend);
        let reflector = pair.start_reflector_on(Some(backend), &["--stats", "json"]);
        assert_eq!(round(&pair, 10), 10, "{backend}");
        let deleted = Instant::now();
        ip(&["-n", &pair.reflector_ns, "link", "del", "va"]);
        let mut last = String::new();
        // The process ends: its stderr closes.
        while let Ok(line) = reflector.stderr.recv_timeout(Duration::from_secs(3)) {
            last = line;
        }
        let took = deleted.elapsed();
        let (status, _) = reflector.wait();
        assert!(took < Duration::from_secs(1), "{backend}: took {took:?}");
        assert_eq!(status.code(), Some(1), "{backend}");
        assert_eq!(last, "reflector: interface va was deleted", "{backend}");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn an_mtu_increase_is_said_and_frames_beyond_the_rings_are_counted() {
    require_live!();
    let pair = NetnsPair::with_mtu(1500);
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--stats", "json"]);
    for (ns, dev) in [(&pair.reflector_ns, "va"), (&pair.tester_ns, "vb")] {
        ip(&["-n", ns, "link", "set", dev, "mtu", "9000"]);
    }
    let said = reflector.stderr.recv_timeout(Duration::from_secs(2)).expect("a line about the MTU");
    assert!(said.starts_with("reflector: va: MTU now 9000; the data path was sized for MTU 1500"), "{said}");
    let tester = pair.tester();
    let mut big = Frame::ito_v4();
    big.payload.resize(5000, 0x5a);
    tester.send(&big.bytes()).unwrap();
    tester.send(&Frame::ito_v4().bytes()).unwrap();
    let back = receive_reflections(&tester, 2, Duration::from_millis(500));
    assert_eq!(back.len(), 1, "only the frame that fits comes back");
    let (status, lines) = reflector.signal_and_wait("TERM");
    assert!(status.success());
    let summary = common::summary(&lines);
    assert_eq!(summary["rx_invalid"], 1, "{summary}");
    assert_eq!(summary["reflected_packets"], 1, "{summary}");
    assert_eq!(summary["rejected"]["ipv4_length"], 0, "{summary}");
}
