//! Signals as a service manager and an impatient user send them: SIGHUP during start-up is
//! taken up once the reflector is ready, SIGTERM during start-up ends it cleanly, and a hundred
//! reloads with good and bad files while probes flow lose nothing. Needs root.
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BACKENDS, NetnsPair, receive_reflections};
use reflector_testkit::Frame;

const BIN: &str = env!("CARGO_BIN_EXE_reflector");

fn signal(pid: u32, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap().success());
}

/// Replaces the file at `path` whole (write, then rename), as an editor or a config manager does.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// True once process `pid` runs the reflector binary (`ip netns exec` has exec'ed it).
fn runs_reflector(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(BIN))
}

/// True once process `pid` blocks or catches signal `signo` (`/proc/PID/status`): from then on
/// the signal is the reflector's to handle. Between `execve` and the first instruction of `main`
/// (the dynamic loader, the Rust runtime) the kernel's default action applies, as for any program.
fn handles(pid: u32, signo: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigBlk:") | mask("SigCgt:")) & (1 << (signo - 1)) != 0
}

/// Starts `reflector run va ARGS` in the reflector namespace without waiting for its start line;
/// returns the child (`timeout`) and the reflector's pid once it runs the binary.
fn spawn(pair: &NetnsPair, args: &[&str]) -> (std::process::Child, u32) {
    let child = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", &pair.reflector_ns, BIN, "run", "va"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = common::child_of(child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !runs_reflector(pid) {
        assert!(Instant::now() < deadline, "the reflector did not start");
        std::thread::yield_now();
    }
    (child, pid)
}

#[test]
#[ignore = "needs root and network namespaces"]
fn sighup_during_start_up_is_taken_up_once_ready() {
    require_live!();
    for backend in BACKENDS {
        let pair = NetnsPair::for_backend(backend);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("r.toml");
        write_atomically(&config, &format!("backend = \"{backend}\"\n[stats]\nformat = \"json\"\n"));
        let (mut child, pid) = spawn(&pair, &["--config", config.to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !handles(pid, libc::SIGHUP as u32) {
            assert!(Instant::now() < deadline, "{backend}: SIGHUP never blocked nor caught");
            std::thread::yield_now();
        }
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        // SIGHUP every half millisecond from the moment it takes the signal until its start line is out.
        let started = std::sync::atomic::AtomicBool::new(false);
        let sent = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                let mut sent = 0;
                while !started.load(std::sync::atomic::Ordering::Relaxed) {
                    signal(pid, "HUP");
                    sent += 1;
                    std::thread::sleep(Duration::from_micros(500));
                }
                sent
            });
            let mut line = String::new();
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
            started.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(line.starts_with(&format!("reflector: {backend} on va")), "{backend}: {line:?}");
            sender.join().unwrap()
        });
        assert!(sent > 0);
        // It runs, reflects, and has taken the deferred reload up.
        let tester = pair.tester();
        tester.send(&Frame::ito_v4().bytes()).unwrap();
        assert_eq!(receive_reflections(&tester, 1, Duration::from_secs(2)).len(), 1, "{backend}");
        signal(pid, "TERM");
        let out = child.wait_with_output().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        assert!(out.status.success(), "{backend}: {:?} {rest}", out.status);
        assert!(rest.contains("reflector: SIGHUP: "), "{backend}: no reload after start-up: {rest}");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn sigterm_during_start_up_ends_the_run_cleanly() {
    require_live!();
    for backend in BACKENDS {
        let pair = NetnsPair::for_backend(backend);
        let (child, pid) = spawn(&pair, &["--backend", backend, "--stats", "json"]);
        signal(pid, "TERM");
        let started = Instant::now();
        let out = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{backend}");
        // Ended by the signal before its handler was in place, or by the handler with a summary.
        use std::os::unix::process::ExitStatusExt;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || out.status.signal() == Some(15) || out.status.code() == Some(124 + 19),
            "{backend}: {:?} {stderr}",
            out.status
        );
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("\"summary\""), "{backend}");
        }
        // Nothing left behind: no program on the interface, and it can be served again.
        let again = pair.start_reflector_on(Some(backend), &["--duration", "0.5"]);
        assert!(again.wait().0.success(), "{backend}");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_hundred_reloads_with_good_and_bad_files_lose_no_probe() {
    require_live!();
    for backend in BACKENDS {
        let pair = NetnsPair::for_backend(backend);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("r.toml");
        let file = |signatures: &str, port: u16| {
            format!(
                "backend = \"{backend}\"\nport = {port}\nsignatures = [{signatures}]\n[stats]\nformat = \"json\"\n"
            )
        };
        write_atomically(&config, &file("\"ito\"", 3842));
        let reflector = pair.start_reflector_on(None, &["--config", config.to_str().unwrap()]);
        let pid = common::child_of(reflector.pid());
        // Probes at 2000 per second for 4 s, from the tester's side.
        let mut probe = Command::new("timeout")
            .args(["30", "ip", "netns", "exec", &pair.tester_ns, BIN, "probe", "vb"])
            .args(["--dst-mac", "02:00:00:00:00:01", "--rate", "2000", "--duration", "4", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        // A hundred reloads in 2.5 s: two filters that both take the probes (each change swaps
        // the kernel program), and broken files in between.
        for i in 0..100 {
            let text = match i % 3 {
                0 => file("\"ito\", \"rfc2544\"", 3842),
                1 => file("\"ito\"", 3842),
                _ => "port = \"not a port\"\n".to_string(),
            };
            write_atomically(&config, &text);
            signal(pid, "HUP");
            std::thread::sleep(Duration::from_millis(25));
        }
        probe.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(probe.stdout.as_mut().unwrap(), &mut out).unwrap();
        let report: serde_json::Value = serde_json::from_str(&out).expect("probe's JSON report");
        assert!(report["sent"].as_u64().unwrap() > 7000, "{backend}: {report}");
        assert_eq!(report["lost"], 0, "{backend}: {report}");
        // The last file is the one in force: a new port.
        write_atomically(&config, &file("\"ito\"", 4000));
        signal(pid, "HUP");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let line = reflector.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            if line.expect("the last reload is said").contains("filter now: port 4000") {
                break;
            }
        }
        let tester = pair.tester();
        tester.send(&Frame { dst_port: 4000, ..Frame::ito_v4() }.bytes()).unwrap();
        assert_eq!(receive_reflections(&tester, 1, Duration::from_secs(1)).len(), 1, "{backend}");
        let said: Vec<String> = reflector.stderr.try_iter().collect();
        assert!(said.iter().all(|l| l.lines().count() == 1), "{said:?}");
        let (status, _) = reflector.signal_and_wait("TERM");
        assert!(status.success(), "{backend}");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_closed_stdout_ends_the_run_quietly_and_a_full_one_with_one_line() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let args = ["--backend", "af-packet", "--stats", "json", "--stats-interval", "0.1", "--duration", "20"];
    // `run ... | head -n 0`: the reader is gone before the first stats line.
    let (mut child, _) = spawn(&pair, &args);
    drop(child.stdout.take());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started.elapsed() < Duration::from_secs(5), "it ran on");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "only the start line: {stderr}");
    // `run ... > /dev/full`.
    let full = std::fs::File::create("/dev/full").unwrap();
    let out = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", &pair.reflector_ns, BIN, "run", "va"])
        .args(args)
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("reflector: cannot write to stdout: No space left on device (os error 28)"),
        "{stderr}"
    );
}
