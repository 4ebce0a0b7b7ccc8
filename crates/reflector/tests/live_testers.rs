//! Who is testing, live on every Linux data path (af-packet, af-xdp, xdp-tx) over a veth pair
//! between two namespaces (root; ignored otherwise): two testers at different rates are listed
//! by `/api/v1/testers` with their rates, in `/metrics` when asked for, in the final summary,
//! and on the dashboard in headless Chromium.
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

use common::{NetnsPair, http_get, offer, summary};
use serde_json::Value;

const BACKENDS: [&str; 3] = ["af-packet", "af-xdp", "xdp-tx"];
const FAST: [u8; 4] = [192, 0, 2, 10];
const SLOW: [u8; 4] = [192, 0, 2, 20];

/// The row of `ip` in a `/api/v1/testers` answer.
fn row<'a>(testers: &'a Value, ip: &str) -> &'a Value {
    testers["testers"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["ip"] == ip))
        .unwrap_or_else(|| panic!("{ip} not listed: {testers}"))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn both_testers_are_listed_with_their_rates_counts_and_in_the_summary() {
    require_live!();
    for (i, backend) in BACKENDS.iter().enumerate() {
        let pair = NetnsPair::for_backend(backend);
        let _peer = (*backend == "xdp-tx").then(|| pair.peer_xdp_pass());
        let addr = format!("127.0.0.1:{}", 9210 + i);
        let reflector = pair.start_reflector_on(Some(backend), &["--http", &addr, "--stats", "json"]);
        // 6 s: 2 000 and 500 packets a second; the table is read after 3 s, while they send (the
        // rates are those of the last second or so: the control plane takes them every second).
        let mut seen = Value::Null;
        let got = offer(&pair, &[(FAST, 2000), (SLOW, 500)], 6.0, || {
            let (status, body) = http_get(&pair, &addr, "/api/v1/testers");
            assert_eq!(status, 200, "{body}");
            seen = serde_json::from_str(&body).unwrap();
        });
        assert_eq!(
            (seen["active"].as_u64(), seen["known"].as_u64()),
            (Some(2), Some(2)),
            "{backend}: {seen}"
        );
        for (ip, rate) in [("192.0.2.10", 2000.0), ("192.0.2.20", 500.0)] {
            let r = row(&seen, ip);
            let pps = r["pps"].as_f64().unwrap();
            eprintln!("{backend}: {ip} at {pps} pps (sent at {rate})");
            assert!((pps - rate).abs() <= 0.1 * rate, "{backend}: {ip} listed at {pps} pps, sent at {rate}");
            assert_eq!(
                (r["mac"].as_str(), r["families"][0].as_str(), r["vlan"].as_u64(), r["active"].as_bool()),
                (Some("00:c0:17:12:34:56"), Some("ito"), None, Some(true)),
                "{backend}: {r}"
            );
        }
        assert_eq!(seen["testers"][0]["ip"], "192.0.2.10", "{backend}: the busiest first");
        // Per-tester series only when asked for, for as many as asked.
        let (_, plain) = http_get(&pair, &addr, "/metrics");
        assert!(!plain.contains("reflector_tester_packets_total"), "{backend}");
        assert!(plain.contains("reflector_testers_active 2\n"), "{backend}: {plain}");
        let (_, one) = http_get(&pair, &addr, "/metrics?testers=1");
        assert_eq!(one.matches("reflector_tester_packets_total{").count(), 1, "{backend}: {one}");
        assert!(one.contains("reflector_tester_packets_total{ip=\"192.0.2.10\",vlan=\"0\"}"), "{one}");
        assert_eq!(http_get(&pair, &addr, "/metrics?testers=101").0, 400);
        assert_eq!(http_get(&pair, &addr, "/api/v1/testers?limit=x").0, 400);

        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success(), "{backend}");
        let s = summary(&lines);
        for (ip, src) in [("192.0.2.10", FAST), ("192.0.2.20", SLOW)] {
            let r = row(&s["testers"], ip);
            assert_eq!(r["packets"].as_u64(), Some(got.sent[&src] as u64), "{backend}: {ip} answered: {r}");
            assert_eq!(r["limited"].as_u64(), Some(0), "{backend}");
            assert_eq!(r["bytes"].as_u64(), Some(got.sent[&src] as u64 * 60), "{backend}: 60-byte probes");
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_dashboard_shows_who_is_testing_now() {
    require_live!();
    assert!(
        Command::new("chromium").arg("--version").output().is_ok(),
        "chromium is not installed (scripts/test.sh installs it as root)"
    );
    let pair = NetnsPair::for_backend("af-xdp");
    let addr = "127.0.0.1:9220";
    let reflector = pair.start_reflector_on(Some("af-xdp"), &["--http", addr, "--source-limit", "300"]);
    let mut dom = String::new();
    offer(&pair, &[(FAST, 1000), (SLOW, 200)], 4.0, || {
        dom = common::render_page(&pair, &format!("http://{addr}/"), &["--dump-dom"]);
    });
    let start = dom.find("id=\"testers\"").expect("the testing-now table");
    let table = &dom[start..start + dom[start..].find("</table>").expect("its end")];
    for want in ["192.0.2.10", "192.0.2.20", "00:c0:17:12:34:56", "ito", "packets/s", "limited"] {
        assert!(table.contains(want), "'{want}' not in the testing-now table: {table}");
    }
    drop(reflector.signal_and_wait("TERM"));
}
