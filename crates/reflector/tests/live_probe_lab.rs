//! `reflector probe` and `reflector lab`, run as a user would (root; skipped otherwise).
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::NetnsPair;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_reflector");

/// Runs `reflector probe vb ARGS` in the tester namespace under `timeout`.
fn probe(pair: &NetnsPair, args: &[&str]) -> Output {
    let mut full = vec!["30", "ip", "netns", "exec", &pair.tester_ns, BIN, "probe", "vb"];
    full.extend_from_slice(args);
    Command::new("timeout").args(&full).output().expect("probe runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_against_a_reflector_gets_every_probe_back() {
    require_live!();
    let pair = NetnsPair::new();
    let reflector = pair.start_reflector(&["--stats", "json"]);
    let out =
        probe(&pair, &["--dst-mac", "02:00:00:00:00:01", "--count", "10000", "--rate", "5000", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    for field in ["sent", "received", "lost", "duplicated", "reordered", "loss_pct", "rtt_us", "jitter_us"] {
        assert!(r.get(field).is_some(), "missing {field}: {r}");
    }
    for p in ["min", "p50", "p90", "p99", "max"] {
        assert!(r["rtt_us"][p].as_f64().is_some_and(|v| v > 0.0), "rtt {p}: {r}");
    }
    assert_eq!(
        (r["sent"].as_u64(), r["received"].as_u64(), r["lost"].as_u64()),
        (Some(10_000), Some(10_000), Some(0))
    );
    assert_eq!(r["loss_pct"], 0.0);
    assert_eq!(r["duplicated"], 0);
    let (status, lines) = reflector.signal_and_wait("TERM");
    assert!(status.success());
    assert_eq!(common::summary(&lines)["by_signature"]["probeot"], 10_000);

    // Other signatures, IPv6, and a reflector mode the prober is told about.
    let reflector = pair.start_reflector(&["--mode", "mac-ip"]);
    for args in [
        &["--sig", "RFC2544", "--mode", "mac-ip"][..],
        &["--sig", "Y.1564", "--mode", "mac-ip", "--size", "1518"][..],
        &["--sig", "LATENCY", "--mode", "mac-ip", "--dst-ip", "2001:db8::1", "--src-ip", "2001:db8::a"][..],
    ] {
        let mut full = vec!["--dst-mac", "02:00:00:00:00:01", "--count", "200", "--rate", "2000", "--json"];
        full.extend_from_slice(args);
        let out = probe(&pair, &full);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json(&out)["received"], 200, "{args:?}");
    }
    // Expecting the wrong mode: the reflections do not look like ours, so nothing counts.
    let out = probe(
        &pair,
        &["--dst-mac", "02:00:00:00:00:01", "--count", "20", "--rate", "200", "--json", "--wait", "0.3"],
    );
    assert_eq!(out.status.code(), Some(1));
    drop(reflector.signal_and_wait("TERM"));
}

/// Resident memory of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process runs");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_memory_stays_flat_at_full_rate() {
    require_live!();
    let pair = NetnsPair::new();
    let reflector = pair.start_reflector(&["--stats", "json"]);
    let child = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", &pair.tester_ns, BIN, "probe", "vb"])
        .args(["--dst-mac", "02:00:00:00:00:01", "--rate", "0", "--duration", "7", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("probe runs");
    let pid = common::child_of(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let early = rss_kib(pid);
    std::thread::sleep(Duration::from_millis(4500));
    let late = rss_kib(pid);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let r = json(&out);
    let received = r["received"].as_u64().unwrap();
    // What keeping every round trip would have cost over the 4.5 s between the samples.
    let per_probe_before = 8 * received * 45 / 70 / 1024;
    assert!(received > 100_000, "too few probes to tell: {r}");
    assert!(
        late.saturating_sub(early) < 2048,
        "RSS grew from {early} to {late} KiB over 4.5 s ({received} probes; a list of round trips would add {per_probe_before} KiB)"
    );
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_against_nothing_reports_total_loss_and_exits_1() {
    require_live!();
    let pair = NetnsPair::new();
    let started = Instant::now();
    let out = probe(
        &pair,
        &["--dst-mac", "02:00:00:00:00:01", "--count", "50", "--rate", "100", "--json", "--wait", "1"],
    );
    assert!(started.elapsed() < Duration::from_secs(10), "the probe hung");
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(
        (r["sent"].as_u64(), r["received"].as_u64(), r["loss_pct"].as_f64()),
        (Some(50), Some(0), Some(100.0))
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().last().unwrap().contains("no reflections came back: 100% loss"), "{err}");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_paces_its_rate() {
    require_live!();
    let pair = NetnsPair::new();
    let reflector = pair.start_reflector(&[]);
    let out =
        probe(&pair, &["--dst-mac", "02:00:00:00:00:01", "--rate", "1000", "--duration", "2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent = json(&out)["sent"].as_u64().unwrap();
    assert!((1940..=2060).contains(&sent), "sent {sent} at 1000 pps for 2 s");
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn probe_input_errors_are_one_line() {
    require_live!();
    let pair = NetnsPair::new();
    for (args, code, message) in [
        (&["--dst-mac", "02:00:00"][..], 2, "--dst-mac"),
        (&["--dst-mac", "ff:ff:ff:ff:ff:ff"][..], 2, "not a unicast address"),
        (&["--dst-mac", "02:00:00:00:00:01", "--size", "64"][..], 2, "too small"),
        (&["--dst-mac", "02:00:00:00:00:01", "--size", "9100"][..], 2, "exceeds the interface's MTU"),
        (&["--dst-mac", "02:00:00:00:00:01", "--sig", "HELLO"][..], 2, "unknown signature"),
        (
            &["--dst-mac", "02:00:00:00:00:01", "--src-ip", "2001:db8::a", "--dst-ip", "192.0.2.1"][..],
            2,
            "different IP versions",
        ),
        (
            &["--dst-mac", "02:00:00:00:00:01", "--count", "5", "--duration", "1"][..],
            2,
            "cannot be used with",
        ),
    ] {
        let out = probe(&pair, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    Command::new("ip").args(["-n", &pair.tester_ns, "link", "set", "vb", "down"]).status().unwrap();
    let out = probe(&pair, &["--dst-mac", "02:00:00:00:00:01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interface vb is down"));
}

/// Namespaces a lab run with process id `pid` would leave behind.
fn lab_leftovers(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("rfl-lab-{pid}-")))
        .map(str::to_string)
        .collect()
}

/// Starts `timeout SECS reflector lab ARGS` and returns it with the lab's own pid (the child
/// of `timeout`), which names its namespaces. The caller waits for the returned child.
#[allow(clippy::zombie_processes)] // returned to the caller, which waits
fn start_lab(secs: &str, args: &[&str]) -> (std::process::Child, u32) {
    let mut full = vec![secs, BIN, "lab"];
    full.extend_from_slice(args);
    let child =
        Command::new("timeout").args(&full).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return (child, pid);
        }
        assert!(Instant::now() < deadline, "the lab process did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn lab_with_defaults_reports_and_cleans_up() {
    require_live!();
    let (child, pid) = start_lab("60", &["--json"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert_eq!(r["backend"], "af-xdp", "auto picks af-xdp on a veth with MTU 1500");
    assert_eq!(r["interrupted"], false);
    assert_eq!(r["lost"], 0);
    assert!(r["sent"].as_u64().unwrap() > 50_000, "{r}");
    assert_eq!(r["reflected"], r["sent"]);
    assert!(r["reflector_cpu_s"].as_f64().unwrap() > 0.0);
    assert!(r["rtt_us"]["p99"].as_f64().is_some());
    assert!(lab_leftovers(pid).is_empty(), "left behind: {:?}", lab_leftovers(pid));
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(" va@"),
        "a veth end was left in the host namespace"
    );
}

#[test]
#[ignore = "needs root and network namespaces"]
fn lab_reflects_in_the_driver_with_xdp_tx() {
    require_live!();
    let (child, pid) = start_lab("60", &["--json", "--backend", "xdp-tx", "--duration", "2"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert_eq!(r["backend"], "xdp-tx");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["reflected"], r["sent"], "{r}");
    assert!(lab_leftovers(pid).is_empty(), "left behind: {:?}", lab_leftovers(pid));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn lab_interrupted_with_sigint_still_cleans_up() {
    require_live!();
    let (mut child, pid) = start_lab("60", &["--duration", "20"]);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut saw_progress = false;
    // With two CPUs or more, the reflector's worker is on the last one (the prober on the first).
    let cpus = reflector_io::worker::allowed_cpus().unwrap();
    let mut placed = cpus.len() < 2;
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.starts_with("lab: reflector ") {
            placed |= line.contains(&format!("1 worker(s) (cpu {})", cpus.last().unwrap()));
        }
        if line.starts_with("lab: [") {
            saw_progress = true;
            assert!(!lab_leftovers(pid).is_empty(), "namespaces exist while it runs");
            Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
            break;
        }
    }
    assert!(saw_progress, "no progress line");
    assert!(placed, "the reflector's worker is not on the last CPU");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", out.status);
    assert!(stdout.contains("lab report (interrupted)"), "{stdout}");
    assert!(lab_leftovers(pid).is_empty(), "left behind: {:?}", lab_leftovers(pid));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn lab_refuses_without_root() {
    require_live!();
    let out = Command::new("timeout")
        .args([
            "20",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
            "lab",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs root") && err.trim_end().lines().count() == 1, "{err}");
}
