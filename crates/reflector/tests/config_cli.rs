//! `reflector config check` and `run --config`, as a user runs them.

// The live tests' harness (network namespaces): Linux only, as are the tests that use it.
#[cfg(target_os = "linux")]
mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_reflector");

#[test]
fn config_check_accepts_the_example_and_names_file_line_and_key_otherwise() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/reflector.toml");
    let out = Command::new(BIN).args(["config", "check", example]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().ends_with("reflector.toml: ok"));

    let dir = tempfile::tempdir().unwrap();
    for (text, message) in [
        ("port = 3842\nmode = \"swap\"\n", "bad.toml:2: mode: unknown mode"),
        ("[stats]\nformat = 7\n", "bad.toml:2: stats.format: invalid type: integer `7`, expected a string"),
        ("colour = \"blue\"\n", "bad.toml:1: unknown field `colour`"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN).args(["config", "check", path.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(message), "expected '{message}' in {err}");
    }
    let out = Command::new(BIN).args(["config", "check", "/nonexistent.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    // The files a run would read or write: a certificate that is not there, or not a
    // certificate, and a capture file in a directory that is not there.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let tls = |cert: &str| {
        format!("[http]\nlisten = \"127.0.0.1:9000\"\ntls_cert = \"{cert}\"\ntls_key = \"{cert}\"\n")
    };
    for (text, message) in [
        (tls("/nonexistent/cert.pem"), "cannot read the TLS certificate /nonexistent/cert.pem"),
        (tls(junk.to_str().unwrap()), "no certificate in it"),
        ("[capture]\nfile = \"/nonexistent/c.pcapng\"\n".to_string(), "/nonexistent is not a directory"),
    ] {
        let path = dir.path().join("files.toml");
        std::fs::write(&path, &text).unwrap();
        let out = Command::new(BIN).args(["config", "check", path.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(message), "expected '{message}' in {err}");
    }
}

/// The configuration file, TLS certificate and key are read only from regular files and at most
/// 4 MiB of them: a device, a FIFO or a huge file gets one line and exit code 2, at once and
/// within a 1 GB address-space limit (unbounded, `/dev/zero` as a certificate grew to 24 GB and
/// `/dev/urandom` as a key spun for minutes; a FIFO without a writer blocked the start).
#[test]
fn files_the_configuration_names_are_read_capped_and_only_when_regular() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'a'; 5 << 20]).unwrap();
    let fifo = dir.path().join("config.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let tls = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "[http]\nlisten = \"127.0.0.1:9000\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        )
    };
    let path = dir.path().join("files.toml");
    let (zero, urandom) = (std::path::Path::new("/dev/zero"), std::path::Path::new("/dev/urandom"));
    let config_check = ["config", "check", path.to_str().unwrap()];
    let run_fifo = ["run", "lo", "--config", fifo.to_str().unwrap()];
    for (text, args, message) in [
        (tls(zero, &junk), &config_check[..], "the TLS certificate /dev/zero is not a regular file"),
        (tls(&junk, urandom), &config_check[..], "the TLS key /dev/urandom is not a regular file"),
        (tls(&big, &big), &config_check[..], "is larger than 4 MiB"),
        (String::new(), &run_fifo[..], "is not a regular file (a device, FIFO or directory is not read)"),
    ] {
        std::fs::write(&path, &text).unwrap();
        let out = Command::new("prlimit")
            .args(["--as=1000000000", "timeout", "10", BIN])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {text}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(message), "expected '{message}' in {err}");
    }
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root and network namespaces"]
fn flags_override_the_file_which_overrides_the_defaults() {
    require_live!();
    let pair = common::NetnsPair::for_backend("af-packet");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, "interface = \"va\"\nbackend = \"af-packet\"\nport = 9999\nmode = \"mac\"\n[stats]\nformat = \"csv\"\n").unwrap();
    let config = path.to_str().unwrap();
    // The file alone: its interface, port, mode and stats format.
    let out = pair.run_reflector_cmd(&[], &["run", "--config", config, "--duration", "0.5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("af-packet on va") && err.contains("port 9999;") && err.contains("mode mac;"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("type,elapsed_s,"), "csv from the file");
    // A flag wins over the file; the rest still comes from the file.
    let out =
        pair.run_reflector_cmd(&[], &["run", "--config", config, "--port", "3842", "--duration", "0.5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("port 3842;") && err.contains("mode mac;"), "{err}");
    // Round trip: what the file says is what the running reflector reports.
    std::fs::write(
        &path,
        "interface = \"va\"\nbackend = \"af-packet\"\nport = 9999\nmode = \"mac-ip\"\nsignatures = [\"ito\", \"custom\"]\noui = \"52:54:00\"\n[http]\nlisten = \"127.0.0.1:9185\"\n[[signature]]\noffset = 3\nhex = \"c0ffee\"\n",
    )
    .unwrap();
    let reflector = pair.start_reflector(&["--config", config]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let body = common::NetnsPair::in_ns(&pair.reflector_ns, || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9185").unwrap();
        s.write_all(b"GET /api/v1/config HTTP/1.1\r\nHost: 127.0.0.1:9185\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw.split_once("\r\n\r\n").unwrap().1.to_string()
    });
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (c["port"].as_u64(), c["mode"].as_str(), c["oui"].as_str(), c["backend"].as_str()),
        (Some(9999), Some("mac-ip"), Some("52:54:00"), Some("af-packet")),
        "{c}"
    );
    assert_eq!(c["signatures"], serde_json::json!(["ito", "custom"]));
    assert_eq!(c["custom_signatures"], serde_json::json!([{"offset": 3, "hex": "c0ffee"}]));
    drop(reflector.signal_and_wait("TERM"));

    // Neither IFACE nor an interface in the file: a usage error.
    std::fs::write(&path, "port = 1\n").unwrap();
    let out = pair.run_reflector_cmd(&[], &["run", "--config", config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface given"));
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root and network namespaces"]
fn sighup_reloads_a_changed_filter_while_traffic_flows() {
    require_live!();
    use common::{BACKENDS, NetnsPair, receive_reflections};
    use reflector_testkit::Frame;
    use std::time::{Duration, Instant};
    for backend in BACKENDS.into_iter().chain(["xdp-tx"]) {
        let pair = NetnsPair::for_backend(backend);
        let _peer = (backend == "xdp-tx").then(|| pair.peer_xdp_pass());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        let write = |port: u16, extra: &str| {
            let text = format!(
                "interface = \"va\"\nbackend = \"{backend}\"\nport = {port}\n{extra}[stats]\nformat = \"json\"\ninterval = 0.2\n"
            );
            std::fs::write(&path, text).unwrap();
        };
        write(3842, "");
        let reflector = pair.start_reflector_on(None, &["--config", path.to_str().unwrap()]);
        assert!(
            reflector.start_line.starts_with(&format!("reflector: {backend} on va")),
            "{}",
            reflector.start_line
        );
        let tester = pair.tester();
        let old = Frame::ito_v4().bytes();
        let new = Frame { dst_port: 4000, ..Frame::ito_v4() }.bytes();
        tester.send(&old).unwrap();
        assert_eq!(receive_reflections(&tester, 1, Duration::from_secs(1)).len(), 1, "{backend}: before");

        // Traffic keeps flowing while the file changes and SIGHUP arrives.
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tester.send(&old).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            write(4000, "duration = 100\n");
            let pid = common::child_of(reflector.pid());
            assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut said = Vec::new();
            while !said.iter().any(|l: &String| l.contains("filter now: port 4000")) {
                let left = deadline.saturating_duration_since(Instant::now());
                match reflector.stderr.recv_timeout(left) {
                    Ok(line) => said.push(line),
                    Err(_) => panic!("{backend}: no reload message: {said:?}"),
                }
            }
            assert!(said.iter().any(|l| l.contains("duration cannot change while running")), "{said:?}");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        // Let the reflections of the old port drain, then: the new port is reflected, the old not.
        std::thread::sleep(Duration::from_millis(300));
        while !receive_reflections(&tester, 10_000, Duration::from_millis(200)).is_empty() {}
        tester.send(&old).unwrap();
        assert!(
            receive_reflections(&tester, 1, Duration::from_millis(500)).is_empty(),
            "{backend}: old port still reflected"
        );
        tester.send(&new).unwrap();
        assert_eq!(
            receive_reflections(&tester, 1, Duration::from_secs(1)).len(),
            1,
            "{backend}: new port not reflected"
        );

        // A broken file changes nothing.
        std::fs::write(&path, "port = \"x\"\n").unwrap();
        let pid = common::child_of(reflector.pid());
        Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
        let line = reflector.stderr.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(line.contains("keeping the running configuration"), "{line}");
        tester.send(&new).unwrap();
        assert_eq!(
            receive_reflections(&tester, 1, Duration::from_secs(1)).len(),
            1,
            "{backend}: after a bad reload"
        );

        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success());
        let s = common::summary(&lines);
        assert_eq!((s["tx_errors"].as_u64(), s["rx_dropped"].as_u64()), (Some(0), Some(0)), "{backend}: {s}");
        assert!(
            s["rejected"]["dst_port"].as_u64().unwrap() >= 1,
            "{backend}: old-port probes rejected after the reload"
        );
    }
}
