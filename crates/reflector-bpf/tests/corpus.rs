//! The classic BPF program agrees with the core on the shared corpus (run in the reference
//! interpreter here; the live tests attach the same program to a real socket).

use reflector_bpf::cbpf::{ACCEPT, DROP, program, run};
use reflector_core::build::IpAddrs;
use reflector_core::{Reject, classify};
use reflector_testkit::{Case, Rng, corpus, golden, mutated, rejects, stamp_golden};

/// Whether the program must drop this reject case: it has no selected signature where one
/// would be (or is a later IPv4 fragment, which has no UDP header). Cases whose rejection is
/// policy (MAC, port, OUI, addresses, lengths) must pass, so the core can count them.
/// `None`: the program may do either (IPv6 extension headers go to the core unexamined).
fn expected_verdict(case: &Case) -> Option<u32> {
    use Reject::*;
    let reason = case.expect.expect_err("reject cases only");
    let has_v6_ext =
        case.frame.as_ref().is_some_and(|f| matches!(f.ip, IpAddrs::V6 { .. }) && !f.ipv6_ext.is_empty());
    match reason {
        _ if has_v6_ext => None,
        // A STAMP request to a reflector without the family carries no signature.
        DstPort if case.name == "stamp_family_off" => Some(DROP),
        // The STAMP port passes: the core judges the length.
        StampLength => Some(ACCEPT),
        ShortEthernet | NotIp | NotUdp | NoSignature | VlanDepth | ShortVlan | ShortUdp => Some(DROP),
        DstMac | SrcMacGroup | SrcMacZero | SrcMacOwn | DstPort | Oui | SrcIp | DstIp | UdpLength | Loop
        | SrcIpOwn | Ipv4Checksum => Some(ACCEPT),
        // A first fragment carries the UDP header and the signature; a later one does not.
        Ipv4Fragment if case.name == "ipv4_first_fragment" => Some(ACCEPT),
        Ipv4Fragment => Some(DROP),
        // Bytes cut off or header fields that only the core checks: either way is fine.
        _ => None,
    }
}

#[test]
fn golden_frames_pass_policy_rejects_pass_non_test_traffic_drops() {
    for case in golden().into_iter().chain(stamp_golden()) {
        let prog = program(&case.filter).expect("program fits");
        assert_eq!(run(&prog, &case.bytes), Some(ACCEPT), "{}: a test packet must pass", case.name);
    }
    let (mut dropped, mut passed) = (0, 0);
    for case in rejects() {
        let prog = program(&case.filter).expect("program fits");
        let verdict = run(&prog, &case.bytes).expect("program is well-formed");
        if let Some(want) = expected_verdict(&case) {
            assert_eq!(verdict, want, "{} ({:?})", case.name, case.expect);
            if want == DROP { dropped += 1 } else { passed += 1 }
        }
    }
    assert!(dropped >= 8 && passed >= 15, "only {dropped} drops / {passed} passes checked");
}

#[test]
fn no_false_negatives_on_mutated_frames() {
    let corpus = corpus();
    let mut rng = Rng::new(0xb9f0_2026);
    let mut passed_to_core = 0u64;
    let mut dropped = 0u64;
    for i in 0..200_000 {
        let filter = &corpus[i % corpus.len()].filter;
        let prog = program(filter).unwrap();
        let frame = mutated(&mut rng, &corpus);
        let verdict = run(&prog, &frame).unwrap();
        if classify(&frame, filter).is_ok() {
            assert_eq!(verdict, ACCEPT, "a frame the core reflects was dropped: {frame:02x?}");
        }
        if verdict == ACCEPT { passed_to_core += 1 } else { dropped += 1 }
    }
    assert!(dropped > passed_to_core / 10, "the filter drops almost nothing: {dropped} vs {passed_to_core}");
}

#[test]
fn program_size_stays_small_even_with_every_signature() {
    let default = program(&reflector_testkit::default_filter()).unwrap();
    assert!(default.len() < 400, "default program has {} instructions", default.len());
    // Eight 32-byte custom signatures: the largest configuration still assembles (8-bit jumps).
    let sigs: Vec<_> =
        (0..8).map(|i| reflector_core::CustomSignature::new(i * 3, &[b'A' + i as u8; 32]).unwrap()).collect();
    let config = reflector_core::FilterConfig {
        families: "all".parse().unwrap(),
        custom: &sigs,
        oui_families: "ito,rfc2544,y1564,custom".parse().unwrap(),
        ..reflector_core::FilterConfig::new(reflector_testkit::LOCAL_MAC)
    };
    let filter = reflector_core::Filter::new(&config).unwrap();
    let largest = program(&filter).expect("the largest configuration assembles");
    assert!(largest.len() <= 4096, "{} instructions exceed BPF_MAXINSNS", largest.len());
}

#[test]
fn byte_matching_program() {
    let prog = reflector_bpf::cbpf::match_bytes_program(3, b"RFLPX").unwrap();
    assert_eq!(run(&prog, b"abcRFLPXyz"), Some(ACCEPT));
    assert_eq!(run(&prog, b"abcRFLPYyz"), Some(DROP));
    assert_eq!(run(&prog, b"abcRFLP"), Some(DROP), "too short");
    assert_eq!(run(&prog, b"xbcRFLPX"), Some(ACCEPT));
    for n in 1..=9 {
        let bytes: Vec<u8> = (1..=n).collect();
        let prog = reflector_bpf::cbpf::match_bytes_program(0, &bytes).unwrap();
        assert_eq!(run(&prog, &bytes), Some(ACCEPT), "{n} bytes");
        let mut other = bytes.clone();
        *other.last_mut().unwrap() ^= 0xff;
        assert_eq!(run(&prog, &other), Some(DROP), "{n} bytes, last differs");
    }
}
