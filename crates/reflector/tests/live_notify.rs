//! `reflector run` under a service manager: the `sd_notify` protocol against a fake
//! `NOTIFY_SOCKET` that the test reads (root and network namespaces; ignored otherwise).
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::NetnsPair;

/// The notifications that arrive within `wait`, one datagram each.
fn notifications(socket: &UnixDatagram, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_service_manager_hears_ready_status_watchdog_reloading_and_stopping() {
    require_live!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let config = dir.path().join("r.toml");
    std::fs::write(&config, "port = 3842\n").unwrap();
    let pair = NetnsPair::for_backend("af-packet");
    let env = format!("NOTIFY_SOCKET={}", path.display());
    // As systemd does: the watchdog's interval, and the pid it is meant for (the reflector's
    // own: the shell's, which `exec` hands on).
    let reflector = pair.start_reflector_under(
        &["env", &env, "WATCHDOG_USEC=400000", "sh", "-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""],
        Some("af-packet"),
        &["--config", config.to_str().unwrap(), "--stats-interval", "0.2"],
    );
    // The start line is out (the data path is attached) by the time READY=1 is read.
    let first = notifications(&socket, Duration::from_secs(1));
    assert!(first[0].starts_with("READY=1\nSTATUS=reflecting on va (af-packet)"), "{first:?}");
    // Over two seconds: WATCHDOG=1 at about half of the 400 ms asked for, and the rate.
    let later = notifications(&socket, Duration::from_secs(2));
    let pings = later.iter().filter(|n| n.as_str() == "WATCHDOG=1\n").count();
    assert!((7..=12).contains(&pings), "{pings} watchdog pings in 2 s: {later:?}");
    assert!(later.iter().any(|n| n.starts_with("STATUS=reflecting 0 pps of")), "{later:?}");
    // SIGHUP: RELOADING=1 (with the monotonic time), then READY=1.
    let pid = common::child_of(reflector.pid());
    assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    let reload: Vec<String> = notifications(&socket, Duration::from_secs(1))
        .into_iter()
        .filter(|n| n.as_str() != "WATCHDOG=1\n" && !n.starts_with("STATUS=reflecting "))
        .collect();
    assert!(reload[0].starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reload:?}");
    assert!(reload[1].starts_with("READY=1\n"), "{reload:?}");
    // SIGTERM: STOPPING=1.
    let (status, _) = reflector.signal_and_wait("TERM");
    assert!(status.success());
    let end = notifications(&socket, Duration::from_millis(300));
    assert!(end.iter().any(|n| n.as_str() == "STOPPING=1\n"), "{end:?}");
}
