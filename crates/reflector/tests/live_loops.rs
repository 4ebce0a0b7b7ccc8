//! Two reflectors facing each other across a veth pair never turn a test packet around
//! between them for ever: with one of them in mode `all` on 3842 each packet is reflected at most
//! once by each side, and the side that refuses the other's answer counts it as `loop`; where
//! the port cannot tell (modes `mac` and `mac-ip`, mode `all` on other ports) each answer takes a
//! hop off the TTL, so a packet goes round at most as many times as its TTL, and the side that
//! gets it with none left counts a `loop`. Needs root and network namespaces.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{BACKENDS, NetnsPair, summary};
use reflector_core::build::IpAddrs;
use reflector_testkit::{Frame, head_payload, ito_payload};

/// One injected frame of each family, from the facing side: from a tester port to the test
/// port, and from the test port to itself (the frame the field report saw ping-pong).
fn injected() -> Vec<Frame> {
    let mut frames = Vec::new();
    for payload in [ito_payload(b"PROBEOT"), head_payload(b"RFC2544", 20), head_payload(b"Y.1564 ", 20)] {
        for (src_port, dst_port) in [(12345, 3842), (3842, 3842)] {
            frames.push(Frame { src_port, dst_port, payload: payload.clone(), ..Frame::ito_v4() });
            frames.push(Frame { src_port, dst_port, payload: payload.clone(), ..Frame::ito_v6() });
        }
    }
    frames
}

fn counted(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key].as_u64().unwrap_or_else(|| panic!("{key} in {summary}"))
}

fn rejected(summary: &serde_json::Value, reason: &str) -> u64 {
    summary["rejected"][reason].as_u64().unwrap_or(0)
}

/// Two reflectors on `backend` facing each other for 4 s, A with `a_flags` on the reflector's
/// side, B with `b_flags` on the tester's; `frames` injected from the tester's side (towards
/// A), 20 ms apart. Returns both summaries.
fn face_off(
    backend: &str,
    a_flags: &[&str],
    b_flags: &[&str],
    frames: &[Frame],
) -> (serde_json::Value, serde_json::Value) {
    let pair = NetnsPair::for_backend(backend);
    let common = ["--stats", "json", "--duration", "4"];
    let a = pair.start_reflector_on(Some(backend), &[&common[..], a_flags].concat());
    let b = pair.start_facing_reflector(Some(backend), &[&common[..], b_flags].concat());
    let socket = pair.tester();
    for frame in frames {
        socket.send(&frame.bytes()).expect("inject");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, a_lines) = a.wait();
    let (_, b_lines) = b.wait();
    (summary(&a_lines), summary(&b_lines))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn two_reflectors_facing_each_other_reflect_a_packet_at_most_once_each() {
    require_live!();
    // Both sides accept any vendor, and (second case) any port: the widest configurations.
    let configs: [&[&str]; 2] = [&["--no-oui-filter"], &["--no-oui-filter", "--port", "0"]];
    for backend in BACKENDS {
        for config in configs {
            let frames = injected();
            let (a, b) = face_off(backend, config, config, &frames);
            let what = format!("{backend} {config:?}: A {a} / B {b}");
            // A reflects the frames from a tester port once and refuses those from the test
            // port (loop); B refuses every answer of A's: as a loop, or (B on port 3842) because
            // A answers to the tester's port.
            let from_tester_port = frames.iter().filter(|f| f.src_port != 3842).count() as u64;
            assert_eq!(counted(&a, "reflected_packets"), from_tester_port, "{what}");
            assert_eq!(rejected(&a, "loop"), frames.len() as u64 - from_tester_port, "{what}");
            assert_eq!(counted(&b, "reflected_packets"), 0, "{what}");
            assert_eq!(rejected(&b, "loop") + rejected(&b, "dst_port"), from_tester_port, "{what}");
            if config.contains(&"0") {
                assert_eq!(rejected(&b, "loop"), from_tester_port, "{what}");
            }
        }
    }
}

/// Where the port rule is not enough (modes `mac` and `mac-ip`, which keep the ports; mode `all`
/// on a port other than 3842, facing one that takes any port), answers take a hop off the TTL:
/// a packet goes round exactly its TTL times, then the side that gets it with none left counts
/// a loop.
#[test]
#[ignore = "needs root and network namespaces"]
fn where_the_port_is_not_enough_a_packet_goes_round_at_most_its_ttl() {
    require_live!();
    // From a source address neither side has (so neither refuses it as its own), from a tester
    // port to the test port: here an answer is a request again for the other side.
    let v4 = IpAddrs::V4 { src: [192, 0, 2, 77], dst: reflector_testkit::LOCAL_V4 };
    let mut v6_src = reflector_testkit::TESTER_V6;
    v6_src[15] = 0x77;
    let v6 = IpAddrs::V6 { src: v6_src, dst: reflector_testkit::LOCAL_V6 };
    const TTL: u8 = 64;
    // (A's flags, B's flags, the test port A answers on.)
    let configs: [(&[&str], &[&str], u16); 3] = [
        (&["--mode", "mac"], &["--mode", "mac"], 3842),
        (&["--mode", "mac-ip"], &["--mode", "mac-ip"], 3842),
        (&["--port", "5000"], &["--port", "0"], 5000),
    ];
    for backend in ["af-packet", "af-xdp", "xdp-tx"] {
        for (a_flags, b_flags, dst_port) in configs {
            let mut frames = Vec::new();
            for payload in
                [ito_payload(b"PROBEOT"), head_payload(b"RFC2544", 20), head_payload(b"Y.1564 ", 20)]
            {
                for ip in [v4, v6] {
                    let payload = payload.clone();
                    frames.push(Frame {
                        src_port: 12345,
                        dst_port,
                        ttl: TTL,
                        ip,
                        payload,
                        ..Frame::ito_v4()
                    });
                }
            }
            let (a, b) = face_off(
                backend,
                &[&["--no-oui-filter"][..], a_flags].concat(),
                &[&["--no-oui-filter"][..], b_flags].concat(),
                &frames,
            );
            let what = format!("{backend} A {a_flags:?} B {b_flags:?}: A {a} / B {b}");
            // A answers TTL 64, 62, ..., 2; B 63, ..., 1, whose answer reaches A with none left.
            let n = frames.len() as u64;
            let half = TTL as u64 / 2;
            assert_eq!(counted(&a, "reflected_packets"), half * n, "{what}");
            assert_eq!(counted(&b, "reflected_packets"), half * n, "{what}");
            assert_eq!(rejected(&a, "loop"), n, "{what}");
            assert_eq!(rejected(&b, "loop"), 0, "{what}");
        }
    }
}

/// Two STAMP reflectors facing each other (docs/PACKET-RULES.md, "Loops"): on different ports
/// (862 and 863, a request spoofed from B's port to A's), each answer to a request from a port
/// below 32768 takes a hop, so the request goes round its TTL and A, which gets it with none
/// left, counts a loop; against a reflector on an ephemeral port (40000) that one's answers
/// take a hop, and A answers the last one at TTL 0; on the same port the first answer is
/// refused by the port rule. STAMP answers to senders on ephemeral ports keep their TTL
/// (`live_stamp`).
#[test]
#[ignore = "needs root and network namespaces"]
fn two_stamp_reflectors_stop_within_the_ttl() {
    require_live!();
    let v4 = IpAddrs::V4 { src: [192, 0, 2, 77], dst: reflector_testkit::LOCAL_V4 };
    let mut v6_src = reflector_testkit::TESTER_V6;
    v6_src[15] = 0x77;
    let v6 = IpAddrs::V6 { src: v6_src, dst: reflector_testkit::LOCAL_V6 };
    const TTL: u64 = 64;
    // (A's flags, B's flags, the request's source and destination port, then what A and B
    // reflect and count as loops, per request.)
    type Config = (&'static [&'static str], &'static [&'static str], (u16, u16), [u64; 4]);
    let configs: [Config; 3] = [
        (&["--stamp-port", "862"], &["--stamp-port", "863"], (863, 862), [TTL / 2, TTL / 2, 1, 0]),
        (
            &["--stamp-port", "862", "--stamp-sequence", "stateful"],
            &["--stamp-port", "40000"],
            (40000, 862),
            [TTL + 1, TTL, 0, 1],
        ),
        (&["--stamp-port", "862"], &["--stamp-port", "862"], (862, 862), [0, 0, 1, 0]),
    ];
    for backend in ["af-packet", "af-xdp", "xdp-tx"] {
        for (a_flags, b_flags, (src_port, dst_port), [a_reflected, b_reflected, a_loops, b_loops]) in configs
        {
            let frames: Vec<Frame> = [v4, v6]
                .into_iter()
                .map(|ip| Frame {
                    src_port,
                    dst_port,
                    ip,
                    payload: reflector_testkit::stamp_payload(44),
                    ..Frame::ito_v4()
                })
                .collect();
            let (a, b) = face_off(
                backend,
                &[&["--sig", "stamp"][..], a_flags].concat(),
                &[&["--sig", "stamp"][..], b_flags].concat(),
                &frames,
            );
            let what = format!("{backend} A {a_flags:?} B {b_flags:?}: A {a} / B {b}");
            let n = frames.len() as u64;
            assert_eq!(counted(&a, "reflected_packets"), a_reflected * n, "{what}");
            assert_eq!(counted(&b, "reflected_packets"), b_reflected * n, "{what}");
            assert_eq!(rejected(&a, "loop"), a_loops * n, "{what}");
            assert_eq!(rejected(&b, "loop"), b_loops * n, "{what}");
        }
    }
}
