//! `reflector run --backend xdp-tx`: the rules and the turn-around in the driver, over a veth
//! pair between two namespaces (root; ignored otherwise). A veth takes frames its peer sends
//! with `XDP_TX` only when it runs an XDP program itself, so the tester's end gets one that
//! passes everything. The golden frames, rejects, host traffic and one-reflector-per-interface
//! tests run xdp-tx with the other backends (`live_af_packet.rs`), SIGHUP in `config_cli.rs`.
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::{NetnsPair, receive_reflections, summary};
use reflector_testkit::Frame;

#[test]
#[ignore = "needs root and network namespaces"]
fn single_probes_and_a_burst_come_back_whole_and_the_api_counts_them() {
    require_live!();
    let pair = NetnsPair::with_mtu(1500);
    let _peer = pair.peer_xdp_pass();
    let reflector = pair.start_reflector_on(Some("xdp-tx"), &["--http", "127.0.0.1:9190"]);
    let tester = pair.tester();
    let frame = Frame::ito_v4().bytes();
    // Single probes, 100 ms apart: each comes back on its own.
    for i in 0..20 {
        tester.send(&frame).unwrap();
        assert_eq!(receive_reflections(&tester, 1, Duration::from_millis(100)).len(), 1, "single probe {i}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut got = 0;
    for _ in 0..20 {
        for _ in 0..1000 {
            common::send_backing_off(&tester, &frame);
        }
        got += receive_reflections(&tester, 1000, Duration::from_millis(500)).len();
    }
    assert_eq!(got, 20_000, "reflections of a 20 000-probe burst");
    let metrics = NetnsPair::in_ns(&pair.reflector_ns, || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9190").unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9190\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    });
    assert!(metrics.contains("reflector_reflected_packets_total 20020\n"), "{metrics}");
    assert!(
        metrics.contains("reflector_signature_packets_total{signature=\"probeot\"} 20020\n"),
        "{metrics}"
    );
    assert!(metrics.contains("backend=\"xdp-tx\""), "{metrics}");
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn kill_9_leaves_no_program_and_the_host_still_answers() {
    require_live!();
    let pair = NetnsPair::with_mtu(1500);
    let _peer = pair.peer_xdp_pass();
    let reflector = pair.start_reflector_on(Some("xdp-tx"), &[]);
    assert!(pair.xdp_attached(), "the program is attached while it runs");
    assert!(pair.tester_cmd(&["ping", "-c", "2", "-W", "2", "192.0.2.1"]), "ping while it runs");
    pair.kill_9_leaves_no_program(reflector);
}

#[test]
#[ignore = "needs root and network namespaces"]
fn reflections_a_veth_peer_cannot_take_are_counted_and_said() {
    require_live!();
    // No XDP program on the tester's end: the veth drops every frame sent with XDP_TX.
    let pair = NetnsPair::with_mtu(1500);
    let reflector = pair.start_reflector_on(Some("xdp-tx"), &["--stats", "json", "--stats-interval", "0.2"]);
    let tester = pair.tester();
    let frame = Frame::ito_v4().bytes();
    for _ in 0..10 {
        tester.send(&frame).unwrap();
    }
    assert!(receive_reflections(&tester, 10, Duration::from_millis(500)).is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("dropped 10 reflections after XDP_TX")) {
        match reflector.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => said.push(line),
            Err(_) => panic!("no warning: {said:?}"),
        }
    }
    assert!(said.iter().any(|l| l.contains("the peer must run an XDP program")), "{said:?}");
    let (status, lines) = reflector.signal_and_wait("TERM");
    assert!(status.success());
    let s = summary(&lines);
    assert_eq!((s["tx_errors"].as_u64(), s["reflected_packets"].as_u64()), (Some(10), Some(0)), "{s}");
}
