//! Golden frames: every case of the shared corpus, checked field by field before and after
//! reflection, in every mode.

use reflector_core::build::IpAddrs;
use reflector_core::{Counters, Mode, Reject, Signature, checksum, classify, testing};
use reflector_testkit::{Frame, ITO_IPV4_GOLDEN, golden, rejects};

const MODES: [Mode; 3] = [Mode::Mac, Mode::MacIp, Mode::All];

#[test]
fn builder_writes_the_golden_bytes() {
    assert_eq!(Frame::ito_v4().bytes(), ITO_IPV4_GOLDEN.to_vec());
}

#[test]
fn golden_ito_frame_field_by_field() {
    let filter = reflector_testkit::default_filter();
    let mut frame = ITO_IPV4_GOLDEN;
    let hit = testing::process(&filter, &mut frame).expect("the golden frame is a test packet");
    assert_eq!(hit.signature(), Signature::ProbeOt);
    assert_eq!((hit.l3_offset(), hit.l4_offset(), hit.vlan_tags()), (14, 34, 0));
    // Ethernet swapped.
    assert_eq!(frame[0..6], [0x00, 0xc0, 0x17, 0x12, 0x34, 0x56]);
    assert_eq!(frame[6..12], [0x02, 0, 0, 0, 0, 1]);
    assert_eq!(frame[12..14], [0x08, 0x00]);
    // IPv4: everything but the addresses as it was, addresses swapped, checksum untouched.
    assert_eq!(frame[14..26], ITO_IPV4_GOLDEN[14..26]);
    assert_eq!(frame[26..30], [192, 0, 2, 1]);
    assert_eq!(frame[30..34], [192, 0, 2, 10]);
    // UDP: ports swapped, length and checksum as they were.
    assert_eq!(frame[34..36], 3842u16.to_be_bytes());
    assert_eq!(frame[36..38], 50000u16.to_be_bytes());
    assert_eq!(frame[38..42], ITO_IPV4_GOLDEN[38..42]);
    // Payload untouched.
    assert_eq!(frame[42..], ITO_IPV4_GOLDEN[42..]);
    // And both checksums still verify.
    assert_eq!(checksum::checksum(&frame[14..34]), 0);
    assert_eq!(
        checksum::finish(checksum::add(
            checksum::add(checksum::add(17 + 26, &frame[26..30]), &frame[30..34]),
            &frame[34..]
        )),
        0
    );
}

/// Checks the reflected bytes against what a tester expects, using etherparse as the reader.
fn check_reflection(name: &str, original: &Frame, reflected: &[u8], mode: Mode, hop: bool) {
    let parsed = etherparse::PacketHeaders::from_ethernet_slice(reflected)
        .unwrap_or_else(|e| panic!("{name}: reflected frame does not parse: {e}"));
    let etherparse::LinkHeader::Ethernet2(eth) = parsed.link.clone().unwrap() else { panic!() };
    assert_eq!(eth.destination, original.src_mac.0, "{name} {mode:?}: eth dst");
    assert_eq!(eth.source, original.dst_mac.0, "{name} {mode:?}: eth src");
    let tags: Vec<(u16, u16)> = parsed
        .link_exts
        .iter()
        .map(|e| match e {
            etherparse::LinkExtHeader::Vlan(v) => (0, v.vlan_id.value()),
            _ => panic!("{name}: unexpected link extension"),
        })
        .collect();
    assert_eq!(tags.len(), original.vlans.len(), "{name}: VLAN tags kept");
    for (got, want) in tags.iter().zip(&original.vlans) {
        assert_eq!(got.1, want.1 & 0x0fff, "{name}: VLAN id kept");
    }
    let swap_ip = mode != Mode::Mac;
    // A hop off where the loop rule takes one.
    let hops = if hop { original.ttl - 1 } else { original.ttl };
    match (parsed.net.clone().unwrap(), original.ip) {
        (etherparse::NetHeaders::Ipv4(h, _), IpAddrs::V4 { src, dst }) => {
            assert_eq!(
                (h.source, h.destination),
                if swap_ip { (dst, src) } else { (src, dst) },
                "{name}: IPv4 addresses"
            );
            assert_eq!(h.time_to_live, hops, "{name} {mode:?}: TTL");
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "{name}: IPv4 checksum valid");
            assert_eq!(h.options.as_slice(), &original.ipv4_options[..], "{name}: options kept");
        }
        (etherparse::NetHeaders::Ipv6(h, _), IpAddrs::V6 { src, dst }) => {
            assert_eq!(
                (h.source, h.destination),
                if swap_ip { (dst, src) } else { (src, dst) },
                "{name}: IPv6 addresses"
            );
            assert_eq!(h.hop_limit, hops, "{name} {mode:?}: hop limit");
        }
        _ => panic!("{name}: IP version changed"),
    }
    let Some(etherparse::TransportHeader::Udp(udp)) = parsed.transport.clone() else {
        panic!("{name}: no UDP header after reflection")
    };
    let ports = (original.src_port, original.dst_port);
    let want = if mode == Mode::All { (ports.1, ports.0) } else { ports };
    assert_eq!((udp.source_port, udp.destination_port), want, "{name}: ports");
    let payload = parsed.payload.slice();
    assert_eq!(payload, &original.payload[..], "{name}: payload untouched");
    let expected_sum = match parsed.net.unwrap() {
        etherparse::NetHeaders::Ipv4(h, _) => udp.calc_checksum_ipv4(&h, payload).unwrap(),
        etherparse::NetHeaders::Ipv6(h, _) => udp.calc_checksum_ipv6(&h, payload).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(udp.checksum, expected_sum, "{name}: UDP checksum valid");
}

#[test]
fn every_golden_case_reflects_exactly_in_every_mode() {
    let cases = golden();
    assert!(cases.len() >= 20);
    for case in &cases {
        let want = case.expect.expect("golden cases are hits");
        for mode in MODES {
            let filter = case.filter.clone().with_mode(mode);
            let mut bytes = case.bytes.clone();
            let hit = testing::process(&filter, &mut bytes)
                .unwrap_or_else(|r| panic!("{}: rejected as {r}", case.name));
            assert_eq!(hit.signature(), want, "{}", case.name);
            let frame = case.frame.as_ref().expect("golden cases are built");
            // The loop rule (docs/PACKET-RULES.md, "Loops"): a hop off but in mode `all` on 3842,
            // and never with `--loop-guard port-only`.
            let ttl_guard = filter.loop_guard() == reflector_core::LoopGuard::Ttl;
            let hop = ttl_guard && !(mode == Mode::All && filter.port() == 3842);
            assert_eq!(bytes, frame.reflected_by(&filter).bytes(), "{} {mode:?}: reflected bytes", case.name);
            check_reflection(&case.name, frame, &bytes, mode, hop);
            assert_eq!(bytes.len(), case.bytes.len(), "{}: same length", case.name);
            // The reflection of a reflection is the original frame, with two hops less where
            // answers take one. (The second pass is done by `reflect` alone: the reflected frame
            // is addressed to the tester, not to us.) A frame with one hop left has none for a
            // second pass there.
            if hop && frame.ttl < 2 {
                continue;
            }
            reflector_core::reflect(&mut bytes, &hit, &filter);
            let twice =
                if hop { Frame { ttl: frame.ttl - 2, ..frame.clone() }.bytes() } else { case.bytes.clone() };
            assert_eq!(bytes, twice, "{} {mode:?}: reflect twice", case.name);
        }
    }
}

#[test]
fn every_reject_case_is_rejected_for_its_reason_and_left_unmodified() {
    let cases = rejects();
    let mut seen = [false; Reject::COUNT];
    for case in &cases {
        let want = case.expect.expect_err("reject cases are rejects");
        let mut bytes = case.bytes.clone();
        assert_eq!(testing::process(&case.filter, &mut bytes), Err(want), "{}", case.name);
        assert_eq!(bytes, case.bytes, "{}: a rejected frame is never modified", case.name);
        seen[want as usize] = true;
    }
    rate_limited_is_given_by_the_buckets_and_leaves_the_frame_alone();
    seen[Reject::RateLimited as usize] = true;
    for reason in Reject::ALL {
        assert!(seen[reason as usize], "no reject case for {reason}");
    }
}

/// `rate_limited` needs a bucket that is empty, so no single frame shows it: the second of
/// two frames at the same time from one source, with one packet a second allowed.
fn rate_limited_is_given_by_the_buckets_and_leaves_the_frame_alone() {
    use reflector_core::limit::{Limiter, Rate};
    use reflector_core::stamp::{ErrorEstimate, Sessions};
    let filter = reflector_testkit::filter_with(|c| c.source_limit = Rate::new(1, 1));
    let limiter = Limiter::new(8);
    let mut sessions = Sessions::<4>::default();
    let mut clock = || testing::FIXED_TIME;
    let frame = reflector_testkit::Frame::ito_v4().bytes();
    let mut verdicts = Vec::new();
    for _ in 0..2 {
        let mut bytes = frame.clone();
        let mut state = reflector_core::PathState {
            received: Some(testing::FIXED_TIME),
            clock: &mut clock,
            error: ErrorEstimate::UNKNOWN,
            sessions: &mut sessions,
            limiter: Some(&limiter),
            testers: None,
        };
        verdicts.push(filter.process(&mut bytes, &mut state).map(|_| ()));
        if verdicts.last() == Some(&Err(Reject::RateLimited)) {
            assert_eq!(bytes, frame, "a rejected frame is never modified");
        }
    }
    assert_eq!(verdicts, [Ok(()), Err(Reject::RateLimited)]);
}

#[test]
fn enum_tables_match_their_discriminants() {
    for (i, r) in Reject::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    for (i, s) in Signature::ALL.iter().enumerate() {
        assert_eq!(*s as usize, i);
    }
    let mut names: Vec<_> = Reject::ALL.iter().map(|r| r.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), Reject::COUNT, "reason names are unique");
}

#[test]
fn counters_record_every_verdict() {
    let mut counters = Counters::default();
    for case in golden().iter().chain(rejects().iter()) {
        let verdict = classify(&case.bytes, &case.filter);
        counters.record(case.bytes.len(), &verdict);
    }
    let golden = golden();
    let rejects = rejects();
    assert_eq!(counters.rx_packets as usize, golden.len() + rejects.len());
    assert_eq!(counters.reflected_packets as usize, golden.len());
    assert_eq!(counters.reflected_bytes as usize, golden.iter().map(|c| c.bytes.len()).sum::<usize>());
    assert_eq!(counters.rejected_packets() as usize, rejects.len());
    assert_eq!(counters.by_signature[Signature::Custom as usize], 1);
    assert_eq!(counters.rejected[Reject::Oui as usize], 2);
    let mut twice = counters;
    twice.add(&counters);
    assert_eq!(twice.delta(&counters), counters);
    twice.record_tx_errors(1, 60);
    assert_eq!(twice.tx_errors, 1);
    assert_eq!(twice.reflected_packets, 2 * counters.reflected_packets - 1);
}
