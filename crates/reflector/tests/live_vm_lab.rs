//! Every Linux data path on real drivers: one emulated guest (scripts/vm-lab.sh) with a
//! virtio-net NIC (2 queue pairs) and an e1000e NIC, booted once for all scenarios. In the
//! guest, `check` on each NIC, then `run` with xdp-tx, af-xdp and af-packet on virtio_net and
//! af-packet on e1000e, one after the other; from the host side of each NIC, for each run, 200
//! probes and a ping meanwhile. Every probe must come back, the pings too, and `check` must name
//! each driver and what it can do. Then the lab itself: the guest command's status comes back,
//! a guest over its time is stopped, nothing is left either way (root and network namespaces;
//! ignored otherwise); bad options are refused before anything starts (any user).
// qemu, taps and network namespaces: Linux only.
#![cfg(target_os = "linux")]

mod common;

use serde_json::Value;

/// The runs, in order: name, guest NIC, backend.
const RUNS: [(&str, u32, &str); 4] = [
    ("virtio-xdp-tx", 0, "xdp-tx"),
    ("virtio-af-xdp", 0, "af-xdp"),
    ("virtio-af-packet", 0, "af-packet"),
    ("e1000e-af-packet", 1, "af-packet"),
];

#[test]
#[ignore = "needs root and network namespaces"]
fn every_data_path_reflects_on_virtio_net_and_e1000e_in_a_guest() {
    require_live!();
    // Guest: the NICs' reports (e1000e's link comes up a few seconds after boot), then each run
    // until its start line (printed once the data path is set up), a marker for the host side,
    // and its end.
    let mut guest = String::from(
        r#"for i in $(seq 100); do [ "$(cat /sys/class/net/eth1/carrier 2>/dev/null)" = 1 ] && break; sleep 0.1; done
reflector check eth0 --json > "$S/check-eth0.json" 2> "$S/check-eth0.err"
reflector check eth1 --json > "$S/check-eth1.json" 2> "$S/check-eth1.err"
ethtool -T eth1 > "$S/ethtool-T-eth1.txt" 2>&1
run() {
  name=$1; shift
  reflector run "$@" --stats json --duration 12 > "$S/$name.json" 2> "$S/$name.err" & pid=$!
  for i in $(seq 300); do grep -q "^reflector: " "$S/$name.err" && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  touch "$S/$name.ready"
  wait $pid; echo $? > "$S/$name.rc"
}
"#,
    );
    // Host: for each run, once it is ready, a ping meanwhile and 200 probes at 100 pps.
    let mut host = String::from(
        r#"probe() {
  name=$1; n=$2
  for i in $(seq 600); do [ -e "$S/$name.ready" ] && break; [ -e "$S/guest.rc" ] && exit 1; sleep 0.1; done
  ping -c 5 -i 0.4 -W 3 "10.0.$n.2" > "$S/$name.ping" 2>&1 &
  reflector probe "tap$n" --dst-mac "52:54:00:00:00:0$((n + 1))" --dst-ip "10.0.$n.2" --rate 100 --count 200 \
    --json > "$S/$name.probe.json" 2> "$S/$name.probe.err"
  wait
}
"#,
    );
    for (name, nic, backend) in RUNS {
        guest += &format!("run {name} eth{nic} --backend {backend}\n");
        host += &format!("probe {name} {nic}\n");
    }
    let vm = common::vm::vm_lab(&["virtio", "e1000e"], 2, 400, &guest, &host);
    assert_eq!(vm.code, Some(0), "{vm}");

    // check names each driver, what it supports, and e1000e's hardware timestamping.
    let check = |nic: &str| -> Value { vm.json(&format!("check-{nic}.json")) };
    let (virtio, e1000e) = (check("eth0"), check("eth1"));
    assert_eq!(virtio["interface"]["value"]["driver"], "virtio_net", "{virtio}");
    assert_eq!(virtio["interface"]["value"]["rx_queues"], 2, "{virtio}");
    assert_eq!(e1000e["interface"]["value"]["driver"], "e1000e", "{e1000e}");
    for backend in ["af-packet", "af-xdp", "xdp-tx"] {
        assert_eq!(virtio["backends"][backend]["runs"], true, "{backend} on virtio_net: {virtio}");
    }
    assert!(
        virtio["backends"]["xdp-tx"]["why"].as_str().is_some_and(|w| w.contains("native XDP")),
        "virtio_net has native XDP: {virtio}"
    );
    assert_eq!(virtio["timestamping"]["value"]["hardware"], false, "{virtio}");
    let stamps = &e1000e["timestamping"]["value"];
    assert_eq!(stamps["hardware"], true, "{e1000e}");
    assert!(stamps["phc"].as_str().is_some_and(|p| p.starts_with("/dev/ptp")), "{e1000e}");
    assert!(vm.file("ethtool-T-eth1.txt").contains("hardware-transmit"), "{}", vm.file("ethtool-T-eth1.txt"));

    for (name, _, backend) in RUNS {
        assert_eq!(
            vm.file(&format!("{name}.rc")).trim(),
            "0",
            "{name}: {}\n{vm}",
            vm.file(&format!("{name}.err"))
        );
        let start = vm.file(&format!("{name}.err"));
        assert!(start.contains(&format!("{backend} on eth")), "{name}: {start}");
        let probe = vm.json(&format!("{name}.probe.json"));
        assert_eq!(probe["sent"], 200, "{name}: {probe}");
        assert_eq!(probe["received"], 200, "{name}: every probe answered: {probe}\n{start}");
        let ping = vm.file(&format!("{name}.ping"));
        assert!(ping.contains(" 0% packet loss"), "{name}: the guest's own traffic goes on: {ping}");
        let summary = vm
            .file(&format!("{name}.json"))
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["type"] == "summary")
            .unwrap_or_else(|| panic!("{name}: no summary: {}", vm.file(&format!("{name}.json"))));
        assert_eq!(summary["reflected_packets"], 200, "{name}: {summary}");
    }
}

/// No namespace of the lab's left (the taps go with theirs).
fn lab_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("rfl-vm-"))
        .map(String::from)
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_guest_commands_status_comes_back_and_a_guest_over_its_time_is_stopped_leaving_nothing() {
    require_live!();
    let failed = common::vm::vm_lab(&["virtio"], 1, 120, "echo done > \"$S/out\"; exit 3", "true");
    assert_eq!(failed.code, Some(3), "{failed}");
    assert_eq!(failed.file("out"), "done\n", "{failed}");
    assert!(lab_namespaces().is_empty(), "{:?}", lab_namespaces());

    let stuck = common::vm::vm_lab(&["e1000e"], 1, 25, "sleep 600", "sleep 600");
    assert_eq!(stuck.code, Some(124), "{stuck}");
    assert!(stuck.stderr.contains("did not finish"), "{stuck}");
    assert!(lab_namespaces().is_empty(), "{:?}", lab_namespaces());
    let qemu = std::process::Command::new("pgrep")
        .args(["-f", stuck.share.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(qemu.stdout.is_empty(), "nothing of the run is left: {}", String::from_utf8_lossy(&qemu.stdout));
}

#[test]
fn bad_options_are_refused_with_one_line_before_anything_starts() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/vm-lab.sh");
    for (args, says) in [
        (&["--nic", "rtl8139", "--", "true"][..], "--nic takes virtio or e1000e, not 'rtl8139'"),
        (&["--queues", "0", "--", "true"][..], "--queues takes 1 to 8, not '0'"),
        (&["--timeout", "soon", "--", "true"][..], "--timeout takes seconds, not 'soon'"),
        (&["--share", "/no/such/folder", "--", "true"][..], "--share: '/no/such/folder' is not a folder"),
        (&["--nic", "virtio"][..], "no command to run in the guest"),
        (&["--frobnicate"][..], "unknown option '--frobnicate'"),
    ] {
        let out = std::process::Command::new(&script).args(args).output().expect("vm-lab.sh runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{args:?}: {err}");
    }
}
