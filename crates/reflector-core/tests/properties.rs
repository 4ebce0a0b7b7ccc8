//! Properties over random and mutated frames (deterministic seeds, plain `cargo test`).

use proptest::prelude::*;
use reflector_core::build::IpAddrs;
use reflector_core::testing::{classify_fast, classify_ordered};
use reflector_core::{Family, Filter, L3Kind, MacAddr, Mode, Reject, Signature, classify, reflect};
use reflector_testkit::{Frame, LOCAL_MAC, Rng, TESTER_MAC, corpus, default_filter, filter_with, mutated};

/// Runs `frame` through `filter` and checks the invariants every frame must keep.
fn check_invariants(filter: &Filter, frame: &[u8]) -> bool {
    let mut bytes = frame.to_vec();
    match reflector_core::testing::process(filter, &mut bytes) {
        Err(_) => {
            assert_eq!(bytes, frame, "a rejected frame is never modified");
            false
        }
        // A short request's answer grown into trailing bytes of the frame: shorter than the frame
        // or as long, its IPv4 header still right (tests/stamp.rs checks it field by field).
        Ok(hit) if hit.grown() => {
            assert!(hit.answer_len(frame.len()) <= frame.len());
            if hit.l3() == L3Kind::V4 {
                let l3 = hit.l3_offset();
                let header = &bytes[l3..l3 + (bytes[l3] & 0x0f) as usize * 4];
                assert!(reflector_core::checksum::ipv4_header_ok(header), "a grown answer's IPv4 header");
            }
            true
        }
        Ok(hit) if hit.signature() == Signature::Stamp => {
            // A STAMP answer: headers turned around whatever the mode, the payload rewritten
            // (tests/stamp.rs checks it field by field), the sender's fields kept.
            assert_eq!(bytes.len(), frame.len());
            let p = hit.l4_offset() + 8;
            assert_eq!(bytes[p + 24..p + 38], frame[p..p + 14]);
            // A hop off where the request comes from a port below 32768 or our own STAMP port
            // is 32768 or above (the loop rule), the IPv4 header still right.
            let (l3, l4) = (hit.l3_offset(), hit.l4_offset());
            let src_port = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
            let own = filter.stamp_port().expect("STAMP on");
            let ttl_guard = filter.loop_guard() == reflector_core::LoopGuard::Ttl;
            let hop = u8::from(ttl_guard && (src_port < 32768 || own >= 32768));
            let at = if hit.l3() == L3Kind::V4 { l3 + 8 } else { l3 + 7 };
            assert_eq!(bytes[at], frame[at].wrapping_sub(hop), "a STAMP answer's hops");
            if hit.l3() == L3Kind::V4 {
                let header = &bytes[l3..l3 + (bytes[l3] & 0x0f) as usize * 4];
                assert!(
                    reflector_core::checksum::ipv4_header_ok(header),
                    "the answer's IPv4 header checksum"
                );
            }
            reflect(&mut bytes, &hit, filter);
            // But for the hops the two turns took.
            let mut want = frame[..p - 2].to_vec();
            want[at] = bytes[at];
            if hit.l3() == L3Kind::V4 {
                want[l3 + 10..l3 + 12].copy_from_slice(&bytes[l3 + 10..l3 + 12]);
            }
            assert_eq!(bytes[..p - 2], want[..], "headers reflected twice = identity");
            true
        }
        Ok(hit) => {
            assert_eq!(bytes.len(), frame.len());
            assert_ne!(bytes, frame, "a reflected frame has its MACs swapped");
            let l3 = hit.l3_offset();
            let mut want = frame.to_vec();
            // The loop rule (docs/PACKET-RULES.md, "Loops"): a hop off but in mode `all` on 3842.
            let ttl_guard = filter.loop_guard() == reflector_core::LoopGuard::Ttl;
            let hop = ttl_guard && !(filter.mode() == Mode::All && filter.port() == 3842);
            assert_eq!(hop, filter.takes_a_hop());
            if hop {
                // One hop less, and an IPv4 header still right; the second pass below would
                // take another.
                let at = if hit.l3() == L3Kind::V4 { l3 + 8 } else { l3 + 7 };
                assert_eq!(bytes[at], frame[at] - 1, "one hop less");
                if hit.l3() == L3Kind::V4 {
                    let header = &bytes[l3..l3 + (bytes[l3] & 0x0f) as usize * 4];
                    assert!(reflector_core::checksum::ipv4_header_ok(header), "one hop less, checksum right");
                }
                if frame[at] < 2 {
                    return true;
                }
                want[at] -= 2;
            }
            reflect(&mut bytes, &hit, filter);
            if hop && hit.l3() == L3Kind::V4 {
                let header = &bytes[l3..l3 + (bytes[l3] & 0x0f) as usize * 4];
                assert!(reflector_core::checksum::ipv4_header_ok(header), "two hops less, checksum right");
                want[l3 + 10..l3 + 12].copy_from_slice(&bytes[l3 + 10..l3 + 12]);
            }
            assert_eq!(bytes, want, "reflect twice = identity (but for the hops)");
            true
        }
    }
}

#[test]
fn a_million_random_and_mutated_frames() {
    let corpus = corpus();
    let filters = [
        default_filter(),
        filter_with(|c| c.port = 0),
        filter_with(|c| {
            c.families = "all".parse().unwrap();
            c.oui = None;
            c.mode = Mode::MacIp;
        }),
        filter_with(|c| {
            c.families.insert(Family::Stamp);
            c.mode = Mode::Mac;
            c.loop_guard = reflector_core::LoopGuard::PortOnly;
        }),
    ];
    let mut rng = Rng::new(0x5eed_2026);
    let mut hits = 0;
    const N: usize = 1_000_000;
    for i in 0..N {
        let frame = if i % 4 == 0 {
            // Pure noise, sometimes addressed to us so it gets past the first check.
            let len = rng.below(120);
            let mut f: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if rng.below(2) == 0 && len >= 6 {
                f[..6].copy_from_slice(&reflector_testkit::LOCAL_MAC.0);
            }
            f
        } else {
            mutated(&mut rng, &corpus)
        };
        if check_invariants(&filters[i % filters.len()], &frame) {
            hits += 1;
        }
    }
    // The mutations must keep reaching the hit path, or this test checks only rejects.
    assert!(hits > N / 20, "only {hits} hits in {N} frames");
}

/// The fast path for untagged IPv4 gives the answer the ordered checks give, hit or reject,
/// and `process` reflects (or answers, for STAMP) exactly what they accept, for every frame:
/// every single-byte change of ITO frames and STAMP requests (each position, each value) from
/// testers with different OUIs, every length from 0 to 20 bytes past theirs, and a million
/// mutated corpus frames. The filters switch each of the fast path's inputs: the port, the OUI
/// filter and its scope, the ITO and STAMP families, the mode, and the trusted OUI, which is
/// the configured one, the default, or a stand-in when the configured one is a group address,
/// zero, or ours.
#[test]
fn the_fast_path_agrees_with_the_ordered_checks() {
    let ours_in_tester_oui = MacAddr([0x00, 0xc0, 0x17, 0x00, 0x00, 0x01]);
    let filters = [
        default_filter(),
        filter_with(|c| c.port = 0),
        filter_with(|c| c.oui = None),
        filter_with(|c| c.oui_families = "rfc2544".parse().unwrap()),
        filter_with(|c| {
            c.families = "rfc2544,y1564".parse().unwrap();
            c.oui_families = "rfc2544".parse().unwrap();
        }),
        filter_with(|c| c.oui = Some([0x00, 0x11, 0x22])),
        filter_with(|c| c.oui = Some([0x01, 0x00, 0x5e])),
        filter_with(|c| c.oui = Some([0x00, 0x00, 0x00])),
        filter_with(|c| c.oui = Some(LOCAL_MAC.oui())),
        filter_with(|c| c.local_mac = ours_in_tester_oui),
        filter_with(|c| {
            c.local_mac = ours_in_tester_oui;
            c.oui = None;
        }),
        filter_with(|c| c.mode = Mode::Mac),
        filter_with(|c| c.mode = Mode::MacIp),
        filter_with(|c| c.families.insert(Family::Stamp)),
        filter_with(|c| {
            c.families.insert(Family::Stamp);
            c.port = 0;
            c.mode = Mode::Mac;
        }),
    ];
    let mut decided = [[0usize; Reject::COUNT + 1]; 15];
    let mut agree = |frame: &[u8], only: Option<usize>| {
        for (i, f) in filters.iter().enumerate().filter(|(i, _)| only.is_none_or(|o| o == *i)) {
            let want = classify_ordered(frame, f);
            match classify_fast(frame, f) {
                Some(fast) => {
                    assert_eq!(fast, want, "fast path: {frame:02x?} under {f:?}");
                    decided[i][fast.err().map_or(Reject::COUNT, |r| r as usize)] += 1;
                }
                // Every ITO and STAMP hit over untagged IPv4 without options is the fast path's.
                None => assert!(
                    !want.is_ok_and(|h| matches!(h.signature().family(), Family::Ito | Family::Stamp)
                        && h.l3() == L3Kind::V4
                        && h.vlan_tags() == 0
                        && h.l4_offset() == 34),
                    "left to the ordered checks: {frame:02x?} under {f:?}"
                ),
            }
            assert_eq!(classify(frame, f), want, "{frame:02x?} under {f:?}");
            let (mut processed, mut reflected) = (frame.to_vec(), frame.to_vec());
            let verdict = reflector_core::testing::process(f, &mut processed);
            // A STAMP request shorter than the reflector packet: without room after the frame it
            // is refused unchanged, unless trailing bytes give the room (tests/stamp.rs checks
            // the grown answer).
            if let Ok(hit) = want
                && hit.signature() == Signature::Stamp
                && u16::from_be_bytes([frame[hit.l4_offset() + 4], frame[hit.l4_offset() + 5]]) < 49
            {
                match verdict {
                    Err(r) => {
                        assert_eq!(r, Reject::StampLength, "{frame:02x?} under {f:?}");
                        assert_eq!(processed, frame, "{frame:02x?} under {f:?}");
                    }
                    Ok(grown) => assert!(grown.grown() && grown.answer_len(frame.len()) <= frame.len()),
                }
                continue;
            }
            assert_eq!(verdict, want, "process: {frame:02x?} under {f:?}");
            match want {
                // The STAMP answer itself is tests/stamp.rs's; here the fast path's hit has to
                // get it as the ordered checks' would.
                Ok(hit) if hit.signature() == Signature::Stamp => {
                    let mut answered = frame.to_vec();
                    reflector_core::testing::answer_stamp(f, &mut answered, hit);
                    assert_eq!(processed, answered, "process: {frame:02x?} under {f:?}");
                }
                Ok(hit) => {
                    reflect(&mut reflected, &hit, f);
                    assert_eq!(processed, reflected, "process: {frame:02x?} under {f:?}");
                }
                Err(_) => assert_eq!(processed, frame, "process: {frame:02x?} under {f:?}"),
            }
        }
    };
    for (i, f) in filters.iter().enumerate() {
        let local = f.local_mac();
        // Testers in the default OUI, in the stand-in, in another, and one byte from our MAC.
        let mut near_us = local;
        near_us.0[5] ^= 1;
        let sources = [
            TESTER_MAC,
            MacAddr([0x02, 0, 0, 0x12, 0x34, 0x56]),
            MacAddr([0x00, 0x11, 0x22, 1, 2, 3]),
            near_us,
        ];
        let ito = sources.into_iter().flat_map(|s| [b"PROBEOT", b"DATA:OT", b"LATENCY"].map(|g| (s, g))).map(
            |(src_mac, sig)| {
                let mut base = Frame { dst_mac: local, src_mac, ..Frame::ito_v4() };
                base.payload[5..12].copy_from_slice(sig);
                base.bytes()
            },
        );
        // STAMP requests of the base packet's size and of the shortest answered one.
        let stamp = sources.into_iter().flat_map(|s| {
            [44, 41].map(|len| Frame { dst_mac: local, src_mac: s, ..Frame::stamp_v4(len) }.bytes())
        });
        for base in ito.chain(stamp) {
            for len in 0..=base.len() + 20 {
                let mut f = base.clone();
                f.resize(len, 0);
                agree(&f, Some(i));
            }
            for at in 0..base.len() {
                for value in 0..=255u8 {
                    let mut f = base.clone();
                    f[at] = value;
                    agree(&f, Some(i));
                }
            }
        }
    }
    let corpus = corpus();
    let mut rng = Rng::new(0xfa57_2026);
    for _ in 0..1_000_000 {
        agree(&mutated(&mut rng, &corpus), None);
    }
    // Besides its hits, the fast path must give every reason it can give.
    let hits: usize = decided.iter().map(|d| d[Reject::COUNT]).sum();
    assert!(hits > 100_000, "{hits} fast hits");
    let fast_reasons = [
        Reject::DstMac,
        Reject::SrcMacGroup,
        Reject::SrcMacZero,
        Reject::SrcMacOwn,
        Reject::Ipv4Length,
        Reject::Ipv4Fragment,
        Reject::NotUdp,
        Reject::SrcIp,
        Reject::DstIp,
        Reject::UdpLength,
        Reject::DstPort,
        Reject::Oui,
        Reject::Loop,
        Reject::SrcIpOwn,
        Reject::Ipv4Checksum,
        Reject::StampLength,
    ];
    for reason in fast_reasons {
        let n: usize = decided.iter().map(|d| d[reason as usize]).sum();
        assert!(n > 0, "the fast path never rejected a frame as {reason}");
    }
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let vlans =
        prop::collection::vec((prop::sample::select(vec![0x8100u16, 0x88a8, 0x9100]), 0u16..0x1000), 0..=2);
    let ip = prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(src, dst)| IpAddrs::V4 { src, dst }),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(src, dst)| IpAddrs::V6 { src, dst }),
    ];
    let options = (0usize..=10).prop_map(|n| vec![1u8; 4 * n]);
    // The order RFC 8200 §4.1 recommends, each header at most once (etherparse's model):
    // hop-by-hop, destination options, routing, destination options.
    // The second destination options header only follows a routing header.
    let ext = any::<[bool; 4]>().prop_map(|mut present| {
        present[3] &= present[2];
        [0u8, 60, 43, 60].into_iter().zip(present).filter(|(_, p)| *p).map(|(t, _)| t).collect::<Vec<_>>()
    });
    let sig = prop::sample::select(vec![
        reflector_testkit::ito_payload(b"PROBEOT"),
        reflector_testkit::ito_payload(b"LATENCY"),
        reflector_testkit::head_payload(b"RFC2544", 10),
        reflector_testkit::head_payload(b"Y.1564 ", 3),
        vec![0u8; 20],
    ]);
    let extra = prop::collection::vec(any::<u8>(), 0..64);
    let src_mac =
        prop_oneof![Just(reflector_testkit::TESTER_MAC), any::<[u8; 6]>().prop_map(reflector_core::MacAddr)];
    let ttl = prop_oneof![Just(64u8), Just(0u8), Just(1u8), any::<u8>()];
    (
        vlans,
        ip,
        options,
        ext,
        any::<u16>(),
        prop_oneof![Just(3842u16), any::<u16>()],
        sig,
        extra,
        src_mac,
        ttl,
    )
        .prop_map(
            |(vlans, ip, ipv4_options, ipv6_ext, src_port, dst_port, mut payload, extra, src_mac, ttl)| {
                payload.extend(extra);
                Frame {
                    dst_mac: reflector_testkit::LOCAL_MAC,
                    src_mac,
                    vlans,
                    ip,
                    ipv4_options,
                    ipv6_ext,
                    ttl,
                    src_port,
                    dst_port,
                    payload,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_invariants(&default_filter(), &bytes);
        check_invariants(&filter_with(|c| c.port = 0), &bytes);
    }

    /// Our single-pass parse agrees with etherparse on well-formed frames: wherever we accept
    /// a frame, etherparse finds the same VLAN stack, addresses, ports and payload; and a
    /// well-formed frame with valid addresses, port and signature is never rejected.
    #[test]
    fn parse_agrees_with_etherparse(frame in arb_frame()) {
        let bytes = frame.bytes();
        let filter = filter_with(|c| c.oui = None);
        let parsed = etherparse::PacketHeaders::from_ethernet_slice(&bytes).expect("built frames parse");
        let verdict = classify(&bytes, &filter);
        // Written out from the rules, independently of the core's code.
        let usable4 = |a: [u8; 4]| a[0] != 0 && a[0] != 127 && a[0] >> 4 != 0xe && a != [255; 4];
        let usable6 = |a: [u8; 16]| {
            a[0] != 0xff && !(a[..10] == [0; 10] && (a[10..12] == [0, 0] || a[10..12] == [0xff, 0xff]))
        };
        let addresses_ok = match frame.ip {
            IpAddrs::V4 { src, dst } => usable4(src) && usable4(dst) && src != reflector_testkit::LOCAL_V4,
            IpAddrs::V6 { src, dst } => usable6(src) && usable6(dst) && src != reflector_testkit::LOCAL_V6,
        };
        let sig_ok = matches!(frame.payload.get(5..12), Some(b"PROBEOT" | b"LATENCY"))
            || frame.payload.starts_with(b"RFC2544") || frame.payload.starts_with(b"Y.1564 ");
        let src_ok = !frame.src_mac.is_group() && !frame.src_mac.is_zero() && frame.src_mac != reflector_testkit::LOCAL_MAC;
        let not_a_reflection = frame.src_port != frame.dst_port && frame.src_port != 3842;
        let should_hit = addresses_ok && sig_ok && src_ok && frame.dst_port == 3842 && not_a_reflection;
        prop_assert_eq!(verdict.is_ok(), should_hit, "verdict {:?}", verdict);
        if let Ok(hit) = verdict {
            prop_assert_eq!(hit.vlan_tags(), parsed.link_exts.len());
            let (src, dst) = match parsed.net.unwrap() {
                etherparse::NetHeaders::Ipv4(h, _) => (h.source.to_vec(), h.destination.to_vec()),
                etherparse::NetHeaders::Ipv6(h, _) => (h.source.to_vec(), h.destination.to_vec()),
                _ => unreachable!(),
            };
            let l3 = hit.l3_offset();
            let (s, d) = match hit.l3() {
                reflector_core::L3Kind::V4 => (&bytes[l3 + 12..l3 + 16], &bytes[l3 + 16..l3 + 20]),
                reflector_core::L3Kind::V6 => (&bytes[l3 + 8..l3 + 24], &bytes[l3 + 24..l3 + 40]),
            };
            prop_assert_eq!((s.to_vec(), d.to_vec()), (src, dst));
            let Some(etherparse::TransportHeader::Udp(udp)) = parsed.transport else { panic!("no UDP") };
            let l4 = hit.l4_offset();
            prop_assert_eq!(u16::from_be_bytes([bytes[l4], bytes[l4 + 1]]), udp.source_port);
            prop_assert_eq!(u16::from_be_bytes([bytes[l4 + 2], bytes[l4 + 3]]), udp.destination_port);
            prop_assert_eq!(&bytes[l4 + 8..], parsed.payload.slice());
        }
    }
}
