//! `reflector check` on a veth pair in network namespaces: every item there, the verdicts of
//! af-packet, af-xdp and xdp-tx (the peer with and without an XDP program, an MTU too large for
//! af-xdp), the exit codes, nothing left attached after the tries, and as an unprivileged user
//! the missing capabilities named (root and network namespaces; ignored otherwise).
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

use common::NetnsPair;
use serde_json::Value;

/// `[PREFIX...] reflector check va ARGS --json` in the reflector namespace: the report and the
/// exit code.
fn check(pair: &NetnsPair, prefix: &[&str], args: &[&str]) -> (Value, Option<i32>, String) {
    let mut full = vec!["check", "va", "--json"];
    full.extend_from_slice(args);
    let out = pair.run_reflector_cmd(prefix, &full);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    (report, out.status.code(), err)
}

fn runs(report: &Value, backend: &str) -> bool {
    report["backends"][backend]["runs"].as_bool().unwrap_or_else(|| panic!("{backend}: {report}"))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn check_reports_every_item_and_tries_each_backend() {
    require_live!();
    let pair = NetnsPair::for_backend("af-xdp");
    let (report, code, err) = check(&pair, &[], &[]);
    assert_eq!(code, Some(0), "{err}");
    for item in [
        "kernel",
        "capabilities",
        "memlock",
        "clock",
        "interface",
        "vlan_offload",
        "timestamping",
        "xdp_attached",
        "veth_peer_xdp",
    ] {
        let entry = &report[item];
        assert!(
            entry.get("value").is_some() && entry["means"].as_str().is_some_and(|m| !m.is_empty()),
            "{item}: {report}"
        );
    }
    assert_eq!(report["interface"]["value"]["driver"], "veth", "{report}");
    assert_eq!(report["interface"]["value"]["mtu"], 1500, "{report}");
    assert!(runs(&report, "af-packet") && runs(&report, "af-xdp"), "{report}");
    assert!(report["backends"]["af-xdp"]["why"].as_str().unwrap().contains("native XDP"), "{report}");
    // xdp-tx needs the veth peer to run an XDP program, and it runs none.
    assert!(!runs(&report, "xdp-tx"), "{report}");
    assert_eq!(report["veth_peer_xdp"]["value"], Value::Null, "{report}");
    assert_eq!(report["backends"]["auto"]["why"], "af-xdp", "{report}");
    let (_, code, err) = check(&pair, &[], &["--backend", "xdp-tx"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("xdp-tx cannot run here") && err.trim_end().lines().count() == 1, "{err}");
    // The tries leave nothing attached.
    assert!(!pair.xdp_attached());

    // With a program on the peer, xdp-tx runs.
    let peer = pair.peer_xdp_pass();
    let (report, code, err) = check(&pair, &[], &["--backend", "xdp-tx"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(runs(&report, "xdp-tx") && report["veth_peer_xdp"]["value"].as_u64().is_some(), "{report}");
    drop(peer);
    assert!(!pair.xdp_attached());

    // Another tool's program on the interface: named, and the XDP backends refuse it.
    let other = NetnsPair::in_ns(&pair.reflector_ns, || {
        let va = reflector_sys::iface::iface_info("va").unwrap().index;
        reflector_io::xdp::attach_pass(va).unwrap()
    });
    let (report, code, err) = check(&pair, &[], &[]);
    assert_eq!(report["xdp_attached"]["value"]["name"], "reflector_pass", "{report}");
    assert!(!runs(&report, "af-xdp") && !runs(&report, "xdp-tx"), "{report}");
    assert!(
        report["backends"]["auto"]["why"].as_str().unwrap().starts_with("af-packet, because"),
        "{report}"
    );
    assert_eq!(code, Some(0), "{err}");
    drop(other);

    // Unprivileged: nothing runs, and what is missing is named.
    let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"];
    let (report, code, err) = check(&pair, &nobody, &[]);
    assert_eq!(code, Some(1), "{err}");
    let missing = &report["capabilities"]["value"]["missing"];
    assert_eq!(missing["af-packet"], serde_json::json!(["CAP_NET_RAW"]), "{report}");
    for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW"] {
        assert!(missing["af-xdp"].as_array().unwrap().contains(&Value::from(cap)), "{report}");
    }
    // Not CAP_PERFMON: the programs pass the verifier without it.
    assert_eq!(missing["af-xdp"].as_array().unwrap().len(), 3, "{report}");
    assert!(!runs(&report, "af-packet") && !runs(&report, "af-xdp") && !runs(&report, "xdp-tx"), "{report}");
    assert!(
        report["backends"]["af-packet"]["why"].as_str().unwrap().contains("missing CAP_NET_RAW"),
        "{report}"
    );
}

#[test]
#[ignore = "needs root and network namespaces"]
fn check_says_af_xdp_cannot_take_a_jumbo_mtu_and_auto_falls_back() {
    require_live!();
    let pair = NetnsPair::with_mtu(9000);
    let (report, code, err) = check(&pair, &[], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!runs(&report, "af-xdp") && runs(&report, "af-packet"), "{report}");
    assert!(report["backends"]["af-xdp"]["why"].as_str().unwrap().contains("MTU 9000"), "{report}");
    assert!(
        report["backends"]["auto"]["why"].as_str().unwrap().starts_with("af-packet, because"),
        "{report}"
    );
    let (_, code, _) = check(&pair, &[], &["--backend", "af-xdp"]);
    assert_eq!(code, Some(1));

    // A down interface: its facts, and no backend runs on it.
    assert!(
        Command::new("ip")
            .args(["-n", &pair.reflector_ns, "link", "set", "va", "down"])
            .status()
            .unwrap()
            .success()
    );
    let (report, code, err) = check(&pair, &[], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(report["interface"]["value"]["mtu"], 9000, "{report}");
    for b in ["af-packet", "af-xdp", "xdp-tx", "auto"] {
        assert!(!runs(&report, b), "{b}: {report}");
    }
    assert!(report["backends"]["af-packet"]["why"].as_str().unwrap().contains("va is down"), "{report}");
}
