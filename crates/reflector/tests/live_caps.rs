//! `reflector run` with capabilities only: as an unprivileged user holding exactly what the
//! service unit grants, it reflects, and once set up it holds only what a reload needs (and a
//! reload that changes the filter works with that); with one of them missing it says which, in
//! one line (root and network namespaces; ignored otherwise).
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{NetnsPair, receive_reflections};
use reflector_testkit::Frame;

/// What `packaging/systemd/reflector@.service` grants (AmbientCapabilities=).
const GRANTED: &str = "+net_raw,+net_admin,+bpf,+ipc_lock,+net_bind_service";

/// `setpriv` as an unprivileged user (nobody) with `caps` as its inheritable and ambient sets.
fn as_nobody(caps: &str) -> Vec<String> {
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        .into_iter()
        .map(String::from)
        .chain([format!("--inh-caps=-all,{caps}"), format!("--ambient-caps=-all,{caps}")])
        .collect()
}

/// The capability sets of every thread of process `pid`: (thread name, [CapInh, CapPrm, CapEff,
/// CapAmb]).
fn thread_caps(pid: u32) -> Vec<(String, [u64; 4])> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap()
        };
        let set = |name: &str| u64::from_str_radix(&field(name), 16).unwrap();
        out.push((field("Name:"), [set("CapInh:"), set("CapPrm:"), set("CapEff:"), set("CapAmb:")]));
    }
    out
}

const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_BPF: u64 = 1 << 39;

#[test]
#[ignore = "needs root and network namespaces"]
fn an_unprivileged_user_with_the_units_capabilities_reflects_and_keeps_only_what_reload_needs() {
    require_live!();
    // af-packet's filter is the socket's own (nothing kept); an XDP program is loaded again
    // when a reload changes the filter.
    for (backend, kept) in
        [("af-packet", 0), ("af-xdp", CAP_BPF | CAP_NET_ADMIN), ("xdp-tx", CAP_BPF | CAP_NET_ADMIN)]
    {
        let pair = NetnsPair::for_backend(backend);
        let _peer = (backend == "xdp-tx").then(|| pair.peer_xdp_pass());
        // A configuration nobody may read, for the reload below.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("r.toml");
        std::fs::write(&config, "port = 3842\nsignatures = [\"ito\", \"stamp\"]\n").unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let prefix = as_nobody(GRANTED);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let reflector = pair.start_reflector_under(
            &prefix,
            Some(backend),
            &["--config", config.to_str().unwrap(), "--stats-interval", "10"],
        );
        let pid = common::child_of(reflector.pid());
        let threads = thread_caps(pid);
        assert!(!threads.is_empty());
        for (name, [inh, prm, eff, amb]) in &threads {
            assert_eq!((*inh, *amb), (0, 0), "{backend}: {name}: {threads:?}");
            assert_eq!((*prm, *eff), (kept, kept), "{backend}: {name}: {threads:?}");
        }
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(uid.lines().any(|l| l.starts_with("Uid:\t65534\t")), "{backend}: {uid}");

        let tester = pair.tester();
        let round = |port: u16| {
            let frame = Frame { dst_port: port, ..Frame::ito_v4() }.bytes();
            for _ in 0..50 {
                tester.send(&frame).unwrap();
            }
            receive_reflections(&tester, 50, Duration::from_millis(500)).len()
        };
        assert_eq!(round(3842), 50, "{backend}");
        // What the XDP programs reach only by moving the frame's start (IPv4 options, IPv6
        // extension headers), and STAMP requests (answered in the kernel on xdp-tx), all
        // loaded without CAP_PERFMON.
        for frame in [
            Frame { ipv4_options: vec![1, 1, 1, 0], vlans: vec![], ..Frame::ito_v4() },
            Frame { ipv6_ext: vec![0, 60], ..Frame::ito_v6() },
            Frame::stamp_v4(44),
            Frame { ipv6_ext: vec![0], ..Frame::stamp_v6(44) },
        ] {
            for _ in 0..10 {
                tester.send(&frame.bytes()).unwrap();
            }
            assert_eq!(
                receive_reflections(&tester, 10, Duration::from_millis(500)).len(),
                10,
                "{backend}: {frame:?}"
            );
        }
        // A reload that changes the filter, with what was kept: a new XDP program for the
        // XDP backends.
        std::fs::write(&config, "port = 4000\nsignatures = [\"ito\", \"stamp\"]\n").unwrap();
        assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut said = Vec::new();
        while !said.iter().any(|l: &String| l.contains("filter now: port 4000")) {
            let left = deadline.checked_duration_since(Instant::now()).expect("no reload line");
            said.push(reflector.stderr.recv_timeout(left).unwrap_or_else(|_| panic!("{backend}: {said:?}")));
            assert!(!said.last().unwrap().contains("cannot"), "{backend}: {said:?}");
        }
        assert_eq!(round(4000), 50, "{backend} after the reload");
        assert_eq!(round(3842), 0, "{backend} after the reload");
        let (status, _) = reflector.signal_and_wait("TERM");
        assert!(status.success(), "{backend}: {status}");
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_missing_capability_is_named_in_one_line() {
    require_live!();
    let without = |cap: &str| GRANTED.split(',').filter(|c| *c != cap).collect::<Vec<_>>().join(",");
    for (backend, missing, name) in [
        ("af-packet", "+net_raw", "CAP_NET_RAW"),
        ("af-xdp", "+net_raw", "CAP_NET_RAW"),
        ("af-xdp", "+bpf", "CAP_BPF"),
        ("af-xdp", "+net_admin", "CAP_NET_ADMIN"),
        ("xdp-tx", "+net_admin", "CAP_NET_ADMIN"),
        ("xdp-tx", "+bpf", "CAP_BPF"),
    ] {
        let pair = NetnsPair::for_backend(backend);
        let prefix = as_nobody(&without(missing));
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let out = pair.run_reflector_cmd(&prefix, &["run", "va", "--backend", backend, "--duration", "1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{backend} without {name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{backend} without {name}: {err}");
        assert!(err.contains(&format!("missing {name}: grant it with AmbientCapabilities={name}")), "{err}");
    }
    // The HTTP port below 1024 without CAP_NET_BIND_SERVICE: the error names it.
    let pair = NetnsPair::for_backend("af-packet");
    let prefix = as_nobody(&without("+net_bind_service"));
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let args = ["run", "va", "--backend", "af-packet", "--http", "127.0.0.1:80", "--duration", "1"];
    let out = pair.run_reflector_cmd(&prefix, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot serve HTTP on 127.0.0.1:80: Permission denied"), "{err}");
    assert!(err.contains("needs CAP_NET_BIND_SERVICE"), "{err}");
}
