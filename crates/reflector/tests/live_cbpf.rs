//! The classic BPF program in the real kernel: attached to a packet socket in a network
//! namespace, it lets through exactly the corpus frames the reference interpreter accepts,
//! which include every golden frame and none that lacks a selected signature. (The same
//! program is what macOS and FreeBSD get through BIOCSETF.) Root; skipped otherwise.
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{NetnsPair, kernel_view};
use reflector_bpf::cbpf::{ACCEPT, program, run};
use reflector_sys::packet_socket::PacketSocket;
use reflector_testkit::{corpus, default_filter};

#[test]
#[ignore = "needs root and network namespaces"]
fn the_kernel_runs_the_program_as_the_interpreter_does() {
    require_live!();
    let pair = NetnsPair::new();
    let filter = default_filter();
    let prog = program(&filter).unwrap();
    let listener = NetnsPair::in_ns(&pair.reflector_ns, || {
        let index = reflector_sys::iface::iface_info("va").unwrap().index;
        let socket = PacketSocket::open(index).unwrap();
        socket.attach_filter(&reflector_io::host::sock_filters(&prog)).unwrap();
        socket.set_recv_buffer(16 << 20).unwrap();
        socket
    });
    // Drain anything that arrived before the filter was in place.
    let mut buf = vec![0u8; 16384];
    while listener.recv(&mut buf, Instant::now() + Duration::from_millis(100)).unwrap().is_some() {}

    let tester = pair.tester();
    let cases: Vec<_> = corpus().into_iter().filter(|c| c.filter == filter && c.bytes.len() >= 14).collect();
    let mut expected: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut golden_count = 0;
    for case in &cases {
        tester.send(&case.bytes).unwrap();
        let accepted = run(&prog, &kernel_view(&case.bytes)) == Some(ACCEPT);
        if case.expect.is_ok() {
            assert!(accepted, "{}: the interpreter drops a golden frame", case.name);
            golden_count += 1;
        }
        if accepted {
            *expected.entry(case.bytes.clone()).or_default() += 1;
        }
    }
    let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
    while let Some(n) = listener.recv(&mut buf, Instant::now() + Duration::from_millis(500)).unwrap() {
        *got.entry(buf[..n].to_vec()).or_default() += 1;
    }
    let names = |m: &HashMap<Vec<u8>, usize>| -> Vec<String> {
        let mut v: Vec<String> =
            cases.iter().filter(|c| m.contains_key(&c.bytes)).map(|c| c.name.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(names(&got), names(&expected), "frames through the kernel vs the interpreter");
    // Nothing else came through, but the tester host's own IPv6 multicast (MLD reports carry a
    // hop-by-hop header, which the program hands to the core unexamined).
    for frame in got.keys().filter(|f| !expected.contains_key(*f)) {
        let host_mld =
            frame.len() > 54 && frame[12..14] == [0x86, 0xdd] && frame[20] == 0 && frame[0] & 1 == 1;
        assert!(host_mld, "an unexpected frame came through: {frame:02x?}");
    }
    assert!(
        golden_count >= 15 && expected.len() > golden_count,
        "{golden_count} golden, {} accepted",
        expected.len()
    );
    // And nothing without a signature came through.
    for case in &cases {
        if case.expect == Err(reflector_core::Reject::NoSignature) && !case.name.contains("ext") {
            assert!(!got.contains_key(&case.bytes), "{}: passed without a signature", case.name);
        }
    }
}
