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
        let every: Vec<Case> = golden()
            .into_iter()
            .filter(|c| (c.filter == default || c.name == "custom_v4") && c.bytes.len() <= 1514)
            .collect();
        let cases: Vec<Case> = every
            .iter()
            .filter(|c| {
                c.frame.as_ref().is_none_or(|f| f.vlans.first().is_none_or(|(tpid, _)| *tpid == 0x8100))
            })
            .cloned()
            .collect();
        assert!(cases.len() >= 10 && every.len() > cases.len(), "{} golden cases", cases.len());
        // Every mode over the default device (af_packet), and mode all over net_af_xdp, whose
        // XDP program hands DPDK the frames as they came, whatever their tags.
        let runs = [
            (Mode::All, "all", None, &cases),
            (Mode::MacIp, "mac-ip", None, &cases),
            (Mode::Mac, "mac", None, &cases),
            (Mode::All, "all", Some(AF_XDP_EAL), &every),
        ];
        for (mode, flag, eal, cases) in runs {
            let pair = NetnsPair::for_backend("af-xdp");
            let mut args = vec!["--mode", flag, "--custom-sig", "2:ACME-TEST", "--stats", "json"];
            if let Some(eal) = eal {
                args.extend(["--dpdk-eal", eal]);
            }
            let driver = if eal.is_some() { "net_af_xdp" } else { "net_af_packet" };
            let flag = format!("{flag} over {driver}");
            let reflector = pair.start_reflector_on(Some("dpdk"), &args);
            let tester = pair.tester();
            for case in cases.iter() {
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
            // Its busy cycles, as dpdk-testpmd --record-core-cycles counts them: over every
            // frame received.
            let busy = &s["dpdk"];
            assert_eq!(busy["busy_packets"], s["rx_packets"], "{flag}: {s}");
            assert!(busy["busy_cycles"].as_u64() > Some(0) && busy["cycles_hz"].as_u64() > Some(0), "{s}");
            assert!(busy["cycles_per_packet"].as_f64() > Some(0.0), "{s}");
            let start: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON start record");
            let dpdk = &start["backend_info"]["dpdk"];
            assert_eq!(
                (dpdk["driver"].as_str(), dpdk["queues"].as_u64()),
                (Some(driver), Some(1)),
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
        probes_all_answered(&pair, "500", "250");
        let ping = in_tester(&pair, &["ping", "-c", "3", "-i", "0.3", "-W", "2", "192.0.2.1"]);
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

    /// `count` probes at `rate` from the tester to the reflector: every one answered.
    fn probes_all_answered(pair: &NetnsPair, count: &str, rate: &str) {
        let bin = env!("CARGO_BIN_EXE_reflector");
        let args = [
            bin,
            "probe",
            "vb",
            "--dst-mac",
            "02:00:00:00:00:01",
            "--count",
            count,
            "--rate",
            rate,
            "--json",
        ];
        let probe = in_tester(pair, &args);
        let report: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("probe's JSON");
        let n = count.parse::<u64>().unwrap();
        assert_eq!((report["sent"].as_u64(), report["received"].as_u64()), (Some(n), Some(n)), "{report}");
    }

    fn in_tester(pair: &NetnsPair, args: &[&str]) -> std::process::Output {
        let mut full = vec!["30", "ip", "netns", "exec", &pair.tester_ns];
        full.extend_from_slice(args);
        std::process::Command::new("timeout").args(&full).output().expect("runs")
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn the_host_answers_arp_and_ping_through_the_exception_path_while_probes_are_reflected() {
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
        // The tester resolves the reflector's address and pings it through the exception path,
        // before the probes, while they are reflected, and after.
        let ping = |n: &str| {
            let out = in_tester(&pair, &["ping", "-c", n, "-i", "0.2", "-W", "2", "192.0.2.1"]);
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let before = ping("4");
        assert!(before.contains("4 received"), "{before}");
        std::thread::scope(|s| {
            let during = s.spawn(|| ping("8"));
            probes_all_answered(&pair, "400", "200");
            let during = during.join().unwrap();
            assert!(during.contains("8 received"), "{during}");
        });
        let after = ping("4");
        assert!(after.contains("4 received"), "{after}");
        let neighbour = ip_in(&pair.tester_ns, &["neigh", "show", "192.0.2.1"]);
        assert!(neighbour.contains("lladdr 02:00:00:00:00:01"), "{neighbour}");
        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success(), "exit {status}");
        let s = summary(&lines);
        assert_eq!((s["reflected_packets"].as_u64(), s["tx_errors"].as_u64()), (Some(400), Some(0)), "{s}");
        // ARP's broadcast (a group address) and the pings went to the host: judged, and passed
        // to it; none dropped.
        assert!(
            s["rejected"]["dst_mac"].as_u64() >= Some(1) && s["rejected"]["not_udp"].as_u64() >= Some(16),
            "{s}"
        );
        assert_eq!(s["rx_dropped"], 0, "{s}");
        // Nothing left: the interface DPDK made is gone, and so is its driver's XDP program.
        let va = ip_in(&pair.reflector_ns, &["link", "show", "va"]);
        assert!(!va.contains("prog/xdp"), "{va}");
        assert!(!ip_in(&pair.reflector_ns, &["link", "show"]).contains("rfl0"));
    }

    /// STAMP, the deny list, a per-source limit and a capture of every frame, over both of
    /// DPDK's devices the tests use (`net_af_packet`, the default; `net_af_xdp`), as on the
    /// other data paths: STAMP requests answered in full, a flood held to its limit and
    /// counted, a denied source counted and not answered, and the capture file holding every
    /// frame judged (`capinfos` reads it).
    #[test]
    #[ignore = "needs root and network namespaces"]
    fn stamp_the_lists_a_limit_and_a_capture_work_over_both_devices() {
        require_live!();
        for (device, eal) in [("net_af_packet", None), ("net_af_xdp", Some(AF_XDP_EAL))] {
            let pair = NetnsPair::for_backend("af-xdp");
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("dpdk.pcapng");
            let mut args = vec!["--sig", "ito,stamp", "--deny", "192.0.2.30", "--source-limit", "100"];
            args.extend([
                "--source-burst",
                "10",
                "--capture",
                file.to_str().unwrap(),
                "--capture-what",
                "all",
            ]);
            args.extend(["--stats", "json"]);
            if let Some(eal) = eal {
                args.extend(["--dpdk-eal", eal]);
            }
            let reflector = pair.start_reflector_on(Some("dpdk"), &args);
            let tester = pair.tester();
            // 20 STAMP requests (44 bytes), 12 ms apart: within their source's limit.
            let request = reflector_testkit::Frame::stamp_v4(44).bytes();
            for _ in 0..20 {
                tester.send(&request).unwrap();
                std::thread::sleep(Duration::from_millis(12));
            }
            let answers = receive_reflections(&tester, 20, Duration::from_millis(300));
            assert_eq!(answers.len(), 20, "{device}: STAMP answers");
            for a in &answers {
                // From port 862 back to the sender's, as long as the request, the sender's
                // sequence number carried over (RFC 8762 §4.3).
                assert_eq!(
                    (a.len(), &a[34..36], &a[36..38]),
                    (request.len(), &request[36..38], &request[34..36])
                );
                assert_eq!(a[42 + 24..42 + 28], request[42..46], "{device}: the sender's sequence number");
            }
            // A flood of 200 probes at once from another source: its burst of 10 answered (and
            // what the limit refills meanwhile), the rest held back; a denied source: nothing.
            let (flood, denied) = (common::probe_from([192, 0, 2, 20]), common::probe_from([192, 0, 2, 30]));
            for _ in 0..200 {
                tester.send(&flood).unwrap();
            }
            for _ in 0..10 {
                tester.send(&denied).unwrap();
            }
            let flooded = receive_reflections(&tester, 200, Duration::from_millis(500)).len();
            let (status, lines) = reflector.signal_and_wait("TERM");
            assert!(status.success(), "{device}: exit {status}");
            let s = summary(&lines);
            let limited = s["rejected"]["rate_limited"].as_u64().unwrap();
            assert!(
                (10..60).contains(&flooded) && flooded as u64 + limited == 200,
                "{device}: {flooded}: {s}"
            );
            assert_eq!(s["rejected"]["src_denied"], 10, "{device}: {s}");
            assert_eq!(s["by_signature"]["stamp"], 20, "{device}: {s}");
            // Every frame judged is in the capture, and Wireshark's tools read it.
            let frames = s["capture"]["frames"].as_u64().unwrap();
            assert!(frames >= 230 && s["capture"]["dropped"] == 0, "{device}: {s}");
            let out = std::process::Command::new("timeout")
                .args(["60", "capinfos", "-c", "-M"])
                .arg(&file)
                .output()
                .expect("capinfos runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&format!("Number of packets:   {frames}")),
                "{device}: {frames} frames: {text}"
            );
        }
    }

    /// DPDK 22.11's `net_af_xdp` takes the port's pool as its UMEM: more probes than the pool
    /// has buffers (16 384) are all answered. (With DPDK's usual pool, whose buffers keep to
    /// their pages, receiving stopped after 9 472 frames: csrc/dpdk.c, `rfl_pool_create`.)
    #[test]
    #[ignore = "needs root and network namespaces"]
    fn over_net_af_xdp_more_probes_than_the_pool_has_buffers_are_all_answered() {
        require_live!();
        let pair = NetnsPair::for_backend("af-xdp");
        let reflector = pair.start_reflector_on(Some("dpdk"), &["--dpdk-eal", AF_XDP_EAL, "--stats", "json"]);
        probes_all_answered(&pair, "30000", "10000");
        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success(), "exit {status}");
        let s = summary(&lines);
        assert_eq!(
            (s["reflected_packets"].as_u64(), s["rx_dropped"].as_u64()),
            (Some(30000), Some(0)),
            "{s}"
        );
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

    /// On a real poll-mode driver: the emulated guest's second virtio-net NIC (scripts/vm-lab.sh)
    /// taken from the kernel (`uio_pci_generic`, 2 MB hugepages), `check` trying it, and a run
    /// with the exception path for the guest's own address; from the host side of its tap, a
    /// ping, then 200 probes with a ping meanwhile, then a ping again.
    #[test]
    #[ignore = "needs root and network namespaces"]
    fn a_virtio_pci_nic_under_dpdk_reflects_in_the_guest_and_the_guest_keeps_its_address() {
        require_live!();
        // eth1's device is its virtio device; the PCI function is that device's parent.
        let guest = r#"addr=$(basename "$(readlink -f /sys/class/net/eth1/device/..)")
echo "$addr" > "$S/pci.txt"
echo 96 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
echo uio_pci_generic > "/sys/bus/pci/devices/$addr/driver_override"
echo "$addr" > "/sys/bus/pci/devices/$addr/driver/unbind"
echo "$addr" > /sys/bus/pci/drivers_probe
readlink "/sys/bus/pci/devices/$addr/driver" > "$S/driver.txt"
eal="-a $addr --in-memory -m 128 --no-telemetry --log-level=error"
reflector check --backend dpdk --dpdk-eal "$eal" --json > "$S/check.json" 2> "$S/check.err"
reflector run --backend dpdk --dpdk-eal "$eal" --dpdk-tap rfl0 --stats json --duration 20 > "$S/dpdk.json" 2> "$S/dpdk.err" & pid=$!
for i in $(seq 600); do grep -q "^reflector: " "$S/dpdk.err" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
ip addr add 10.0.1.2/24 dev rfl0
touch "$S/dpdk.ready"
wait $pid; echo $? > "$S/dpdk.rc"
"#;
        let host = r#"for i in $(seq 1200); do [ -e "$S/dpdk.ready" ] && break; [ -e "$S/guest.rc" ] && exit 1; sleep 0.1; done
ping -c 5 -i 0.3 -W 3 10.0.1.2 > "$S/ping.txt" 2>&1
ping -c 6 -i 0.3 -W 3 10.0.1.2 > "$S/ping-during.txt" 2>&1 &
reflector probe tap1 --dst-mac 52:54:00:00:00:02 --dst-ip 10.0.1.2 --rate 100 --count 200 --json > "$S/probe.json" 2> "$S/probe.err"
wait
ping -c 3 -i 0.3 -W 3 10.0.1.2 > "$S/ping-after.txt" 2>&1
"#;
        let vm = common::vm::vm_lab(&["virtio", "virtio"], 1, 300, guest, host);
        assert_eq!(vm.code, Some(0), "{vm}");
        assert_eq!(vm.file("driver.txt").rsplit('/').next().map(str::trim), Some("uio_pci_generic"), "{vm}");
        let check = vm.json("check.json");
        assert_eq!(check["backends"]["dpdk"]["runs"], true, "{check}");
        assert!(
            check["backends"]["dpdk"]["why"].as_str().unwrap().contains("(driver net_virtio)"),
            "{check}"
        );
        assert_eq!(vm.file("dpdk.rc").trim(), "0", "{}\n{vm}", vm.file("dpdk.err"));
        let start = vm.file("dpdk.err");
        assert!(start.contains("dpdk on rfl0 (52:54:00:00:00:02"), "{start}");
        assert!(start.contains("(driver net_virtio)"), "{start}");
        assert!(
            vm.file("ping.txt").contains(" 0% packet loss"),
            "ARP and ping through rfl0: {}",
            vm.file("ping.txt")
        );
        let probe = vm.json("probe.json");
        assert_eq!(
            (probe["sent"].as_u64(), probe["received"].as_u64()),
            (Some(200), Some(200)),
            "{probe}\n{vm}"
        );
        let summary = vm
            .file("dpdk.json")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "summary")
            .unwrap_or_else(|| panic!("no summary: {vm}"));
        assert_eq!(summary["reflected_packets"], 200, "{summary}");
        // The guest's address answers while the probes are reflected and after them (which over
        // net_af_xdp on a veth it does not: docs/USAGE.md).
        for ping in ["ping-during.txt", "ping-after.txt"] {
            assert!(vm.file(ping).contains(" 0% packet loss"), "{ping}: {}", vm.file(ping));
        }
    }

    #[test]
    #[ignore = "needs root and network namespaces"]
    fn check_tries_dpdk_in_a_process_of_its_own() {
        require_live!();
        let pair = NetnsPair::for_backend("af-packet");
        let check = |args: &[&str]| -> (Option<i32>, serde_json::Value) {
            let mut full = vec!["check", "--backend", "dpdk", "--json"];
            full.extend_from_slice(args);
            let out = pair.run_reflector_cmd(&[], &full);
            let json = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
            (out.status.code(), json)
        };
        let null = "--no-huge --no-pci --no-shconf --no-telemetry -m 128 --log-level=error --vdev=net_null0";
        // The default EAL arguments over the interface: DPDK starts, the port is the interface's.
        let (code, json) = check(&["va"]);
        let dpdk = &json["backends"]["dpdk"];
        assert_eq!((code, dpdk["runs"].as_bool()), (Some(0), Some(true)), "{json}");
        assert!(dpdk["why"].as_str().unwrap().contains("(driver net_af_packet)"), "{dpdk}");
        // Another port than the interface's: it would not run on va.
        let (code, json) = check(&["va", "--dpdk-eal", null]);
        let why = json["backends"]["dpdk"]["why"].as_str().unwrap().to_string();
        assert_eq!(code, Some(1), "{json}");
        assert!(why.contains("DPDK port net_null0 has MAC") && why.contains("--dpdk-tap"), "{why}");
        // Without an interface, with EAL arguments (a NIC bound to DPDK has none): tried.
        let (code, json) = check(&["--dpdk-eal", null]);
        assert_eq!(code, Some(0), "{json}");
        assert!(
            json["backends"]["dpdk"]["why"]
                .as_str()
                .unwrap()
                .contains("DPDK port net_null0 (driver net_null)")
        );
        // EAL arguments DPDK refuses: the reason, exit 1.
        let (code, json) = check(&["va", "--dpdk-eal", "--no-huge --frobnicate"]);
        let why = json["backends"]["dpdk"]["why"].as_str().unwrap().to_string();
        assert_eq!(code, Some(1), "{json}");
        assert!(why.starts_with("DPDK did not start with the EAL arguments"), "{why}");
        // The other backends are still checked in the same run.
        assert_eq!(json["backends"]["af-packet"]["runs"], true, "{json}");
    }

    /// Idle, a worker sleeps (backing off), and spins with `--busy-poll`: the CPU time of two
    /// seconds without a frame says which.
    #[test]
    #[ignore = "needs root and network namespaces"]
    fn an_idle_worker_sleeps_and_spins_only_with_busy_poll() {
        require_live!();
        let pair = NetnsPair::for_backend("af-packet");
        let cpu = |extra: &[&str]| -> f64 {
            let mut args = vec!["run", "va", "--backend", "dpdk", "--duration", "2", "--stats", "json"];
            args.extend_from_slice(extra);
            let out = pair.run_reflector_cmd(&[], &args);
            assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
            let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
            let s = summary(&lines);
            s["cpu_user_s"].as_f64().unwrap() + s["cpu_system_s"].as_f64().unwrap()
        };
        let (sleeping, spinning) = (cpu(&[]), cpu(&["--busy-poll"]));
        assert!(spinning >= 1.0, "spinning for 2 s took {spinning} s of CPU");
        assert!(sleeping < spinning / 3.0, "sleeping {sleeping} s of CPU, spinning {spinning} s");
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
                vec!["--dpdk-eal", "--no-huge --no-pci --no-shconf -m 48 --vdev=net_af_packet0,iface=va"],
                "rte_pktmbuf_pool_create: No buffer space available (give DPDK more memory: -m MB in --dpdk-eal",
            ),
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
            // DPDK's usage text (it prints it on stdout) is kept out of the run's output too.
            assert!(out.stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    /// The package with DPDK (`scripts/package-deb.sh` builds it where DPDK's development files
    /// are): installed over `reflector` it takes its place, its dependencies are DPDK's runtime
    /// and drivers, the installed binary reflects over DPDK's af_packet device in a namespace,
    /// `reflector` takes its place back the same way, and a purge leaves no file behind. Both
    /// packages are purged when the test ends, also when it fails.
    #[test]
    #[ignore = "needs root and network namespaces"]
    fn the_dpdk_package_takes_reflectors_place_reflects_over_dpdk_and_purges_clean() {
        use common::deb::{Purge, deb, installed_binary_reflects, sh, status};
        require_live!();
        let (plain, with_dpdk) = (deb("reflector"), deb("reflector-dpdk"));
        let _purge = Purge(&["reflector-dpdk", "reflector"]);
        let install = |deb: &std::path::Path| {
            let (ok, said) = sh("dpkg", &["-i", deb.to_str().unwrap()]);
            assert!(ok, "dpkg -i {}: {said}", deb.display());
        };
        install(&plain);
        install(&with_dpdk);
        assert_eq!(status("reflector-dpdk"), "install ok installed");
        assert!(!status("reflector").ends_with(" installed"), "reflector: {}", status("reflector"));
        let (_, owner) = sh("dpkg", &["-S", "/usr/bin/reflector"]);
        assert_eq!(owner.trim(), "reflector-dpdk: /usr/bin/reflector");
        let (_, depends) = sh("dpkg-query", &["-W", "-f=${Depends}", "reflector-dpdk"]);
        for want in ["librte-eal23", "librte-ethdev23", "librte-meta-net", "adduser"] {
            assert!(depends.contains(want), "{want} not in {depends}");
        }
        // The shipped configuration and unit are those of reflector.
        let (ok, said) = sh("/usr/bin/reflector", &["config", "check", "/etc/reflector/reflector.toml"]);
        assert!(ok, "{said}");
        assert!(std::path::Path::new("/lib/systemd/system/reflector@.service").is_file());

        // The installed binary reflects over DPDK (its default EAL arguments: af_packet on va).
        let pair = NetnsPair::for_backend("af-packet");
        let lines = installed_binary_reflects(&pair, &[], &["--backend", "dpdk", "--duration", "4"], "dpdk");
        assert_eq!(summary(&lines)["reflected_packets"], 20, "{lines:?}");

        // And back: reflector takes the place of reflector-dpdk.
        let (_, files) = sh("dpkg", &["-L", "reflector-dpdk"]);
        let files: Vec<String> =
            files.lines().filter(|f| std::path::Path::new(f).is_file()).map(String::from).collect();
        install(&plain);
        assert_eq!(status("reflector"), "install ok installed");
        assert!(!status("reflector-dpdk").ends_with(" installed"), "{}", status("reflector-dpdk"));
        let (ok, said) = sh("/usr/bin/reflector", &["run", "lo", "--backend", "dpdk"]);
        assert!(!ok && said.contains("built without DPDK"), "{said}");
        // Purged, nothing either package had is left.
        let (ok, said) = sh("dpkg", &["--purge", "reflector", "reflector-dpdk"]);
        assert!(ok, "{said}");
        let left: Vec<&String> = files.iter().filter(|f| std::path::Path::new(f).exists()).collect();
        assert!(files.len() >= 10 && left.is_empty(), "left behind: {left:?} of {files:?}");
        assert!(!std::path::Path::new("/etc/reflector").exists());
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
