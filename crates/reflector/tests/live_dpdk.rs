//! `reflector run --backend dpdk` on a veth in a network namespace (DPDK's `net_af_packet`
//! virtual device over it, the default EAL arguments), driven from a tester namespace: golden
//! frames come back exactly in every mode, rejects are counted by reason and not answered, the
//! host keeps answering ping meanwhile, several queues share the work, and bad DPDK settings are
//! one-line errors with exit 2. In a build without the `dpdk` feature, the one line says how to
//! get one (root and network namespaces; ignored otherwise).
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use common::{NetnsPair, receive_reflections, summary};

#[cfg(feature = "dpdk")]
mod with_dpdk {
    use std::time::Duration;

    use super::*;
    use reflector_core::{Mode, Reject};
    use reflector_testkit::{Case, default_filter, golden, rejects};

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn golden_frames_come_back_exactly_in_every_mode_and_rejects_are_counted() {
        require_live!();
        let default = default_filter();
        // DPDK's af_packet driver puts back the VLAN tag the kernel took off as 802.1Q whatever
        // it was (docs/USAGE.md): frames whose outer tag is 802.1ad or 0x9100 are left out here.
        let cases: Vec<Case> = golden()
            .into_iter()
            .filter(|c| (c.filter == default || c.name == "custom_v4") && c.bytes.len() <= 1514)
            .filter(|c| {
                c.frame.as_ref().is_none_or(|f| f.vlans.first().is_none_or(|(tpid, _)| *tpid == 0x8100))
            })
            .collect();
        assert!(cases.len() >= 10, "{} golden cases", cases.len());
        for (mode, flag) in [(Mode::All, "all"), (Mode::MacIp, "mac-ip"), (Mode::Mac, "mac")] {
            let pair = NetnsPair::for_backend("af-packet");
            let args = ["--mode", flag, "--custom-sig", "2:ACME-TEST", "--stats", "json"];
            let reflector = pair.start_reflector_on(Some("dpdk"), &args);
            let tester = pair.tester();
            for case in &cases {
                tester.send(&case.bytes).unwrap();
            }
            let mut got = receive_reflections(&tester, cases.len(), Duration::from_secs(3));
            let mut want: Vec<Vec<u8>> =
                cases.iter().map(|c| c.frame.as_ref().unwrap().reflected(mode).bytes()).collect();
            got.sort();
            want.sort();
            assert_eq!(got.len(), want.len(), "{flag}: reflections received");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{flag}: reflected bytes");
            }
            let (status, lines) = reflector.signal_and_wait("TERM");
            assert!(status.success(), "{flag}: exit {status}");
            let s = summary(&lines);
            assert_eq!(s["reflected_packets"], cases.len(), "{flag}: {s}");
            assert_eq!(s["tx_errors"], 0, "{flag}: {s}");
            let start: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON start record");
            let dpdk = &start["backend_info"]["dpdk"];
            assert_eq!(
                (dpdk["driver"].as_str(), dpdk["queues"].as_u64()),
                (Some("net_af_packet"), Some(1)),
                "{start}"
            );
        }

        // Rejects: not answered, each counted by its reason (no kernel pre-filter: the core
        // judges every frame the port receives).
        let pair = NetnsPair::for_backend("af-packet");
        let reflector = pair.start_reflector_on(Some("dpdk"), &["--stats", "json"]);
        let tester = pair.tester();
        let mut expected: std::collections::HashMap<&'static str, u64> = Default::default();
        let refused: Vec<Case> = rejects()
            .into_iter()
            .filter(|c| c.filter == default && c.bytes.len() >= 14 && c.bytes.len() <= 1514)
            .filter(|c| !matches!(&c.bytes[12..14], [0x88, 0xa8] | [0x91, 0x00]))
            // The af_packet driver asks the kernel to reassemble IPv4 fragments before it sees
            // them (docs/USAGE.md): they never reach the rules as fragments.
            .filter(|c| c.expect != Err(Reject::Ipv4Fragment))
            .collect();
        for case in &refused {
            tester.send(&case.bytes).unwrap();
            *expected.entry(case.expect.unwrap_err().name()).or_default() += 1;
        }
        let back = receive_reflections(&tester, 1, Duration::from_millis(800));
        assert!(back.is_empty(), "a reject was answered: {back:02x?}");
        let (_, lines) = reflector.signal_and_wait("TERM");
        let s = summary(&lines);
        assert_eq!(s["reflected_packets"], 0, "{s}");
        for reason in Reject::ALL {
            let want = expected.get(reason.name()).copied().unwrap_or(0);
            let counted = s["rejected"][reason.name()].as_u64().unwrap();
            // The host's own traffic reaches the core too: multicast as `dst_mac`, ARP and
            // ICMPv6 as `not_ip` / `not_udp`. Every other reason counts exactly what was sent.
            if matches!(reason, Reject::DstMac | Reject::NotIp | Reject::NotUdp) {
                assert!(counted >= want, "{}: counted {counted}, sent {want}", reason.name());
            } else {
                assert_eq!(counted, want, "{}: {s}", reason.name());
            }
        }
        assert!(expected.len() >= 10, "{expected:?}");
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn probes_and_ping_both_come_back_through_two_queues() {
        require_live!();
        let pair = NetnsPair::with_queues(1500, 2);
        let reflector = pair.start_reflector_on(Some("dpdk"), &["--workers", "2", "--stats", "json"]);
        let in_tester = |args: &[&str]| {
            let mut full = vec!["30", "ip", "netns", "exec", &pair.tester_ns];
            full.extend_from_slice(args);
            std::process::Command::new("timeout").args(&full).output().expect("runs")
        };
        let bin = env!("CARGO_BIN_EXE_reflector");
        let probe = in_tester(&[
            bin,
            "probe",
            "vb",
            "--dst-mac",
            "02:00:00:00:00:01",
            "--count",
            "500",
            "--rate",
            "250",
            "--json",
        ]);
        let ping = in_tester(&["ping", "-c", "3", "-i", "0.3", "-W", "2", "192.0.2.1"]);
        let report: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("probe's JSON");
        assert_eq!(
            (report["sent"].as_u64(), report["received"].as_u64()),
            (Some(500), Some(500)),
            "{report}"
        );
        assert!(ping.status.success(), "ping: {}", String::from_utf8_lossy(&ping.stdout));
        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success());
        let s = summary(&lines);
        assert_eq!(s["reflected_packets"], 500, "{s}");
        let start: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(start["backend_info"]["dpdk"]["queues"], 2, "{start}");
    }

    /// The EAL arguments of the exception-path tests: DPDK's `net_af_xdp` device over `va`,
    /// which takes every frame from the kernel (an XDP program redirects them to its socket), as
    /// a NIC bound to DPDK would.
    const AF_XDP_EAL: &str =
        "--no-huge --no-pci --no-shconf --no-telemetry -m 256 --log-level=error --vdev=net_af_xdp0,iface=va";

    fn ip_in(ns: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("ip").arg("-n").arg(ns).args(args).output().expect("ip runs");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn in_tester(pair: &NetnsPair, args: &[&str]) -> std::process::Output {
        let mut full = vec!["30", "ip", "netns", "exec", &pair.tester_ns];
        full.extend_from_slice(args);
        std::process::Command::new("timeout").args(&full).output().expect("runs")
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn the_host_answers_arp_and_ping_through_the_exception_path_and_probes_are_reflected() {
        require_live!();
        let pair = NetnsPair::for_backend("af-xdp");
        // The host's address moves to the interface DPDK makes.
        ip_in(&pair.reflector_ns, &["addr", "flush", "dev", "va"]);
        let reflector = pair.start_reflector_named(
            "rfl0",
            Some("dpdk"),
            &["--dpdk-eal", AF_XDP_EAL, "--dpdk-tap", "rfl0", "--stats", "json"],
        );
        assert!(
            reflector.start_line.contains("other frames to the host through rfl0"),
            "{}",
            reflector.start_line
        );
        let tap = ip_in(&pair.reflector_ns, &["link", "show", "rfl0"]);
        assert!(tap.contains("link/ether 02:00:00:00:00:01") && tap.contains(",UP"), "{tap}");
        ip_in(&pair.reflector_ns, &["addr", "add", "192.0.2.1/24", "dev", "rfl0"]);
        // The tester resolves the reflector's address and pings it through the exception path.
        let ping = in_tester(&pair, &["ping", "-c", "6", "-i", "0.2", "-W", "2", "192.0.2.1"]);
        let said = String::from_utf8_lossy(&ping.stdout);
        assert!(said.contains("6 received"), "{said}");
        // Then the probes: every one answered. (The host's frames sent out of a net_af_xdp port
        // once it has sent its own answers are lost: docs/USAGE.md, "DPDK". Not asserted here
        // until that is solved.)
        let bin = env!("CARGO_BIN_EXE_reflector");
        let probe = in_tester(
            &pair,
            &[
                bin,
                "probe",
                "vb",
                "--dst-mac",
                "02:00:00:00:00:01",
                "--count",
                "400",
                "--rate",
                "200",
                "--json",
            ],
        );
        let report: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("probe's JSON");
        assert_eq!(
            (report["sent"].as_u64(), report["received"].as_u64()),
            (Some(400), Some(400)),
            "{report}"
        );
        let neighbour = ip_in(&pair.tester_ns, &["neigh", "show", "192.0.2.1"]);
        assert!(neighbour.contains("lladdr 02:00:00:00:00:01"), "{neighbour}");
        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success(), "exit {status}");
        let s = summary(&lines);
        assert_eq!((s["reflected_packets"].as_u64(), s["tx_errors"].as_u64()), (Some(400), Some(0)), "{s}");
        // ARP's broadcast (a group address) and the pings went to the host: judged, and passed
        // to it; none dropped.
        assert!(
            s["rejected"]["dst_mac"].as_u64() >= Some(1) && s["rejected"]["not_udp"].as_u64() >= Some(6),
            "{s}"
        );
        assert_eq!(s["rx_dropped"], 0, "{s}");
        // Nothing left: the interface DPDK made is gone, and so is its driver's XDP program.
        let va = ip_in(&pair.reflector_ns, &["link", "show", "va"]);
        assert!(!va.contains("prog/xdp"), "{va}");
        assert!(!ip_in(&pair.reflector_ns, &["link", "show"]).contains("rfl0"));
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn after_kill_9_the_interface_still_works_and_the_next_run_cleans_up() {
        require_live!();
        let pair = NetnsPair::for_backend("af-xdp");
        let args = ["--dpdk-eal", AF_XDP_EAL, "--dpdk-tap", "rfl0"];
        let first = pair.start_reflector_named("rfl0", Some("dpdk"), &args);
        let pid = common::child_of(first.pid());
        assert!(
            std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success()
        );
        drop(first.wait());
        // The driver's program is left (nothing runs at a kill -9), but it passes what no
        // socket takes: va's own address answers.
        assert!(ip_in(&pair.reflector_ns, &["link", "show", "va"]).contains("prog/xdp"));
        let ping = in_tester(&pair, &["ping", "-c", "2", "-i", "0.3", "-W", "2", "192.0.2.1"]);
        assert!(ping.status.success(), "ping after kill -9: {}", String::from_utf8_lossy(&ping.stdout));
        // The next run starts over it and takes it away at its end.
        let mut full = vec!["run", "--backend", "dpdk", "--duration", "1"];
        full.extend_from_slice(&args);
        let out = pair.run_reflector_cmd(&[], &full);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let va = ip_in(&pair.reflector_ns, &["link", "show", "va"]);
        assert!(!va.contains("prog/xdp"), "{va}");
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn bad_dpdk_settings_are_one_line_errors() {
        require_live!();
        let pair = NetnsPair::for_backend("af-packet");
        for (args, says) in [
            (
                vec!["--dpdk-port", "net_nothing9"],
                "DPDK has no port named 'net_nothing9' (it found: net_af_packet0)",
            ),
            (vec!["--dpdk-eal", "--no-huge --frobnicate"], "DPDK did not start with the EAL arguments"),
            (
                vec!["--dpdk-eal", "--no-huge --no-pci --no-shconf -m 128 --vdev=net_null0"],
                "DPDK port net_null0 has MAC",
            ),
        ] {
            let mut full = vec!["run", "va", "--backend", "dpdk", "--duration", "2"];
            full.extend_from_slice(&args);
            let out = pair.run_reflector_cmd(&[], &full);
            let err = String::from_utf8_lossy(&out.stderr);
            let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("reflector:")).collect();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(ours.len() == 1 && ours[0].contains(says), "{args:?}: {err}");
        }
    }
}

#[cfg(not(feature = "dpdk"))]
#[test]
#[ignore = "needs root and network namespaces"]
fn without_the_feature_dpdk_says_how_to_get_it() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let out = pair.run_reflector_cmd(&[], &["run", "va", "--backend", "dpdk", "--duration", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("built without DPDK") && err.contains("--features dpdk"), "{err}");
    let _ = (receive_reflections, summary);
}
