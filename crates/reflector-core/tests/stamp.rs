//! The STAMP / TWAMP-Light responder: golden requests answered field by field for a fixed time,
//! in both sequence modes and both timestamp formats, and properties over random requests.

use proptest::prelude::*;
use reflector_core::build::IpAddrs;
use reflector_core::stamp::{
    ErrorEstimate, NTP_UNIX_OFFSET, SequenceMode, SessionTable, Sessions, TimestampFormat,
};
use reflector_core::{Family, Filter, Hit, L3Kind, PathState, Reject, Signature, checksum};
use reflector_testkit::{Frame, filter_with, stamp_golden};

/// T2 and T3 of every answer here: 2026-11-30 12:00:00.25 and 1.5 µs later.
const T2: u64 = 1_796_126_400_250_000_000;
const T3: u64 = T2 + 1_500;

fn stamp_filter(sequence: SequenceMode, format: TimestampFormat) -> Filter {
    filter_with(|c| {
        c.families.insert(Family::Stamp);
        c.stamp_sequence = sequence;
        c.stamp_timestamps = format;
    })
}

/// Answers `frame` with receive time T2 and a clock that reads T3.
fn answer(filter: &Filter, frame: &mut [u8], sessions: &mut dyn SessionTable) -> Result<Hit, Reject> {
    let len = frame.len();
    answer_in(filter, frame, len, sessions)
}

/// [`answer`] for the frame of `len` bytes at the start of `buf`, the rest room for the answer.
fn answer_in(
    filter: &Filter,
    buf: &mut [u8],
    len: usize,
    sessions: &mut dyn SessionTable,
) -> Result<Hit, Reject> {
    let mut clock = || T3;
    let mut stamping = PathState {
        received: Some(T2),
        clock: &mut clock,
        error: ErrorEstimate::new(true, 1_000),
        sessions,
        limiter: None,
        testers: None,
    };
    filter.process_in(buf, len, &mut stamping)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// The UDP checksum `udp` should carry, computed over the frame as it is.
fn udp_checksum_ok(frame: &[u8], hit: &Hit) -> bool {
    let (l3, l4) = (hit.l3_offset(), hit.l4_offset());
    let len = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]) as usize;
    let mut udp = frame[l4..l4 + len].to_vec();
    let sent = u16::from_be_bytes([udp[6], udp[7]]);
    udp[6..8].fill(0);
    let want = match hit.l3() {
        L3Kind::V4 => checksum::udp(&frame[l3 + 12..l3 + 16], &frame[l3 + 16..l3 + 20], &udp),
        L3Kind::V6 => checksum::udp(&frame[l3 + 8..l3 + 24], &frame[l3 + 24..l3 + 40], &udp),
    };
    sent == want
}

#[test]
fn golden_requests_are_answered_field_by_field() {
    let cases = stamp_golden();
    assert!(cases.len() >= 7);
    let mut checked = 0;
    for case in &cases {
        let request = case.frame.as_ref().expect("built");
        for sequence in [SequenceMode::Stateless, SequenceMode::Stateful] {
            for format in [TimestampFormat::Ntp, TimestampFormat::Ptp] {
                let filter = stamp_filter(sequence, format);
                let mut sessions = Sessions::<64>::default();
                let name = format!("{} {sequence:?} {format:?}", case.name);
                for round in 0..2u32 {
                    let mut bytes = case.bytes.clone();
                    let hit =
                        answer(&filter, &mut bytes, &mut sessions).unwrap_or_else(|r| panic!("{name}: {r}"));
                    assert_eq!(hit.signature(), Signature::Stamp, "{name}");
                    assert_eq!(bytes.len(), case.bytes.len(), "{name}: the answer is as long as the request");
                    // Headers: MACs, addresses and ports swapped (whatever the mode), the rest
                    // as it was.
                    let mut headers = request.stamp_answered_by(&filter);
                    headers.payload = bytes[hit.l4_offset() + 8..].to_vec();
                    let mut want_headers = headers.bytes();
                    let l4 = hit.l4_offset();
                    // `Frame::bytes` recomputes the UDP checksum; the responder updates it.
                    want_headers[l4 + 6..l4 + 8].copy_from_slice(&bytes[l4 + 6..l4 + 8]);
                    assert_eq!(bytes[..l4 + 8], want_headers[..l4 + 8], "{name}: headers");
                    assert!(udp_checksum_ok(&bytes, &hit), "{name}: UDP checksum");

                    let (req, ans) = (&request.payload, &bytes[l4 + 8..]);
                    let sequence_number = match sequence {
                        SequenceMode::Stateless => be32(&req[0..4]),
                        SequenceMode::Stateful => round,
                    };
                    assert_eq!(be32(&ans[0..4]), sequence_number, "{name}: sequence number");
                    let (t3, t2) = (&ans[4..12], &ans[16..24]);
                    match format {
                        TimestampFormat::Ntp => {
                            assert_eq!(
                                be32(t3) as u64,
                                T3 / 1_000_000_000 + NTP_UNIX_OFFSET,
                                "{name}: T3 seconds"
                            );
                            // 0.2500015 s × 2^32, rounded down (or one unit above, see
                            // NTP_FRACTION_PER_NS).
                            let exact = ((250_001_500u64 << 32) / 1_000_000_000) as u32;
                            assert!((exact..=exact + 1).contains(&be32(&t3[4..])), "{name}: T3 fraction");
                            assert_eq!(be32(t2) as u64, T2 / 1_000_000_000 + NTP_UNIX_OFFSET, "{name}: T2");
                            assert_eq!(be32(&t2[4..]), 0x4000_0000, "{name}: T2 fraction (0.25 s)");
                        }
                        TimestampFormat::Ptp => {
                            assert_eq!(be32(t3) as u64, T3 / 1_000_000_000, "{name}: T3 seconds");
                            assert_eq!(be32(&t3[4..]), 250_001_500, "{name}: T3 ns");
                            assert_eq!(be32(t2) as u64, T2 / 1_000_000_000, "{name}: T2 seconds");
                            assert_eq!(be32(&t2[4..]), 250_000_000, "{name}: T2 ns");
                        }
                    }
                    assert_eq!(format.decode(t3.try_into().unwrap()), T3, "{name}");
                    assert_eq!(format.decode(t2.try_into().unwrap()), T2, "{name}");
                    // S set (synchronised), Z per format, 1 µs = scale 5, multiplier 135.
                    let z = if format == TimestampFormat::Ptp { 0x4000 } else { 0 };
                    assert_eq!(ans[12..14], (0x8000u16 | z | 5 << 8 | 135).to_be_bytes(), "{name}: error");
                    assert_eq!(ans[14..16], req[14..16], "{name}: SSID echoed");
                    assert_eq!(ans[24..38], req[0..14], "{name}: the sender's fields");
                    assert_eq!(ans[38..40], [0, 0], "{name}: MBZ");
                    assert_eq!(ans[40], 64, "{name}: the sender's TTL / hop limit");
                    assert!(ans[41..ans.len().min(44)].iter().all(|b| *b == 0), "{name}: MBZ 41..44");
                    if req.len() > 44 {
                        assert_eq!(ans[44..], req[44..], "{name}: TLVs and padding as received");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, cases.len() * 8);
}

#[test]
fn ttl_and_checksum_edge_cases() {
    let filter = stamp_filter(SequenceMode::Stateless, TimestampFormat::Ntp);
    let mut sessions = Sessions::<1>::default();
    // An IPv4 request without a UDP checksum: the answer has none either.
    let mut bytes = Frame::stamp_v4(44).bytes();
    let l4 = 34;
    bytes[l4 + 6..l4 + 8].fill(0);
    answer(&filter, &mut bytes, &mut sessions).unwrap();
    assert_eq!(bytes[l4 + 6..l4 + 8], [0, 0], "a zero IPv4 UDP checksum stays zero");
    // A request whose checksum a local sender left for offload to complete (the field holds
    // the pseudo-header's folded sum), IPv4 and IPv6: the answer carries its whole checksum.
    for frame in [Frame::stamp_v4(44), Frame::stamp_v6(100)] {
        let mut bytes = frame.bytes();
        let (l3, l4) = (14, if matches!(frame.ip, IpAddrs::V4 { .. }) { 34 } else { 54 });
        let addresses = if l4 == 34 { &bytes[l3 + 12..l3 + 20] } else { &bytes[l3 + 8..l3 + 40] };
        let mut pseudo = checksum::add(0, addresses) + 17;
        pseudo = checksum::add(pseudo, &bytes[l4 + 4..l4 + 6]);
        let partial = !checksum::finish(pseudo);
        bytes[l4 + 6..l4 + 8].copy_from_slice(&partial.to_be_bytes());
        let hit = answer(&filter, &mut bytes, &mut sessions).unwrap();
        assert!(udp_checksum_ok(&bytes, &hit), "{:?}", frame.ip);
    }
    // Another TTL is echoed (the IPv4 header checksum written again for the test frame).
    let mut bytes = Frame::stamp_v4(44).bytes();
    bytes[22] = 3;
    bytes[24..26].fill(0);
    let c = checksum::checksum(&bytes[14..34]);
    bytes[24..26].copy_from_slice(&c.to_be_bytes());
    let hit = answer(&filter, &mut bytes, &mut sessions).unwrap();
    assert_eq!(bytes[l4 + 8 + 40], 3);
    assert_eq!(bytes[22], 3, "the answer's own TTL is left as it was");
    assert!(udp_checksum_ok(&bytes, &hit));
}

/// A request too short to answer is refused unchanged: under 14 bytes always; 14 to 40 bytes
/// with `--stamp-short refuse`, or where the data path has no room after the frame.
#[test]
fn a_request_too_short_to_answer_is_refused_unchanged() {
    let answering = stamp_filter(SequenceMode::Stateless, TimestampFormat::Ntp);
    let refusing = filter_with(|c| {
        c.families.insert(Family::Stamp);
        c.stamp_short = reflector_core::StampShort::Refuse;
    });
    let mut sessions = Sessions::<1>::default();
    for (filter, len, room) in [
        (&answering, 0, 64),
        (&answering, 13, 64),
        (&answering, 14, 0),
        (&refusing, 14, 64),
        (&refusing, 40, 64),
    ] {
        let original = Frame::stamp_v4(len).bytes();
        let mut bytes = original.clone();
        bytes.resize(original.len() + room, 0xee);
        let verdict = answer_in(filter, &mut bytes, original.len(), &mut sessions);
        assert_eq!(verdict, Err(Reject::StampLength), "{len} bytes, room {room}");
        assert_eq!(bytes[..original.len()], original[..]);
        assert!(bytes[original.len()..].iter().all(|b| *b == 0xee), "the room untouched");
    }
}

/// A TWAMP-Light request of 14 to 40 bytes (a sender that does not pad, RFC 5357 §4.1.2) is
/// answered with the 41-byte reflector packet (§4.2.1): the frame grows into the room after
/// it (any Ethernet padding of the request dropped), the IP and UDP lengths follow, the IPv4
/// header and UDP checksums are right (the UDP one computed whole), the sender's fields and
/// TTL are where the reflector packet has them, and what the request did not have is zero.
#[test]
fn a_short_request_is_answered_with_the_reflector_packet() {
    let filter = stamp_filter(SequenceMode::Stateless, TimestampFormat::Ntp);
    let mut sessions = Sessions::<4>::default();
    let cases = reflector_testkit::stamp_short();
    assert!(cases.len() >= 8);
    for case in &cases {
        let request = case.frame.as_ref().unwrap();
        for pad_to in [0, 60] {
            // As on the wire: padded to the 60-byte Ethernet minimum (when shorter).
            let mut bytes = case.bytes.clone();
            let len = bytes.len().max(pad_to);
            bytes.resize(len + 64, 0);
            let name = format!("{} padded to {pad_to}", case.name);
            let hit =
                answer_in(&filter, &mut bytes, len, &mut sessions).unwrap_or_else(|r| panic!("{name}: {r}"));
            assert!(hit.grown(), "{name}");
            let l4 = hit.l4_offset();
            let answer_len = hit.answer_len(len);
            assert_eq!(answer_len, l4 + 8 + 41, "{name}");
            let answer = &bytes[..answer_len];
            // Headers, as etherparse reads them: lengths, the IPv4 header checksum.
            let parsed =
                etherparse::SlicedPacket::from_ethernet(answer).unwrap_or_else(|e| panic!("{name}: {e}"));
            match parsed.net.unwrap() {
                etherparse::NetSlice::Ipv4(ip) => {
                    let h = ip.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum(), "{name}: IPv4 header checksum");
                    assert_eq!(h.total_len as usize, answer_len - hit.l3_offset(), "{name}");
                }
                etherparse::NetSlice::Ipv6(ip) => {
                    assert_eq!(
                        ip.header().payload_length() as usize,
                        answer_len - hit.l3_offset() - 40,
                        "{name}"
                    );
                }
                _ => panic!("{name}"),
            }
            assert_eq!(u16::from_be_bytes([answer[l4 + 4], answer[l4 + 5]]), 49, "{name}: UDP length");
            assert!(udp_checksum_ok(answer, &hit), "{name}: UDP checksum");
            let (req, ans) = (&request.payload, &answer[l4 + 8..]);
            assert_eq!(ans.len(), 41);
            assert_eq!(ans[0..4], req[0..4], "{name}: sequence number");
            assert_eq!(TimestampFormat::Ntp.decode(ans[4..12].try_into().unwrap()), T3, "{name}");
            assert_eq!(TimestampFormat::Ntp.decode(ans[16..24].try_into().unwrap()), T2, "{name}");
            assert_eq!(ans[24..38], req[0..14], "{name}: the sender's fields");
            let echoed = req.len().min(16);
            assert_eq!(ans[14..echoed], req[14..echoed], "{name}: what the request had at 14..16");
            assert!(ans[echoed..16].iter().all(|b| *b == 0), "{name}");
            assert_eq!(ans[38..40], [0, 0], "{name}: MBZ");
            assert_eq!(ans[40], 64, "{name}: the sender's TTL");
            // Addresses and ports turned around, a hop less from a port below 32768.
            let want = request.stamp_answered_by(&filter);
            let (src_mac, dst_mac) = (&answer[6..12], &answer[0..6]);
            assert_eq!((src_mac, dst_mac), (&want.src_mac.0[..], &want.dst_mac.0[..]), "{name}");
            let ports = [
                u16::from_be_bytes([answer[l4], answer[l4 + 1]]),
                u16::from_be_bytes([answer[l4 + 2], answer[l4 + 3]]),
            ];
            assert_eq!(ports, [want.src_port, want.dst_port], "{name}");
            let ttl = if hit.l3() == L3Kind::V4 {
                answer[hit.l3_offset() + 8]
            } else {
                answer[hit.l3_offset() + 7]
            };
            assert_eq!(ttl, want.ttl, "{name}: the answer's TTL");
        }
    }
}

#[test]
fn without_a_receive_time_the_clock_gives_both_in_order() {
    let filter = stamp_filter(SequenceMode::Stateless, TimestampFormat::Ptp);
    let mut sessions = Sessions::<1>::default();
    let mut reads = [T2 + 10, T2].into_iter();
    let mut clock = || reads.next().unwrap();
    let mut stamping = PathState {
        received: None,
        clock: &mut clock,
        error: ErrorEstimate::new(false, 16_000_000_000),
        sessions: &mut sessions,
        limiter: None,
        testers: None,
    };
    let mut bytes = Frame::stamp_v4(44).bytes();
    filter.process(&mut bytes, &mut stamping).unwrap();
    let ans = &bytes[42..];
    let (t3, t2) = (
        TimestampFormat::Ptp.decode(ans[4..12].try_into().unwrap()),
        TimestampFormat::Ptp.decode(ans[16..24].try_into().unwrap()),
    );
    // The first reading is T2; a clock that then reads earlier (stepped back) never makes T3
    // come before it.
    assert_eq!((t2, t3), (T2 + 10, T2 + 10));
    assert_eq!(ans[12] & 0x80, 0, "not synchronised: S clear");
}

fn arb_request() -> impl Strategy<Value = Frame> {
    let ip = prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(src, dst)| IpAddrs::V4 { src, dst }),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(src, dst)| IpAddrs::V6 { src, dst }),
    ];
    let vlans = prop::collection::vec((Just(0x8100u16), 0u16..0x1000), 0..=2);
    (ip, vlans, 1024u16.., prop::collection::vec(any::<u8>(), 41..600)).prop_map(
        |(ip, vlans, src_port, payload)| Frame { ip, vlans, src_port, payload, ..Frame::stamp_v4(44) },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Any request answered (times up to 2096, where both formats' seconds still fit): same length, checksum valid, T2 ≤ T3, the sender's fields kept,
    /// bytes past 44 unchanged; anything rejected is left as it was. Never a panic.
    #[test]
    fn random_requests_answered_correctly(frame in arb_request(), stateful in any::<bool>(), ptp in any::<bool>(),
                                          received in 0u64..4_000_000_000_000_000_000, dwell in 0u64..1_000_000) {
        let sequence = if stateful { SequenceMode::Stateful } else { SequenceMode::Stateless };
        let format = if ptp { TimestampFormat::Ptp } else { TimestampFormat::Ntp };
        let filter = stamp_filter(sequence, format);
        let mut sessions = Sessions::<8>::default();
        let original = frame.bytes();
        let mut bytes = original.clone();
        let mut clock = || received + dwell;
        let mut stamping = PathState { received: Some(received), clock: &mut clock, error: ErrorEstimate::new(true, 5), sessions: &mut sessions, limiter: None, testers: None };
        match filter.process(&mut bytes, &mut stamping) {
            Err(_) => prop_assert_eq!(bytes, original),
            Ok(hit) => {
                prop_assert_eq!(bytes.len(), original.len());
                prop_assert!(udp_checksum_ok(&bytes, &hit));
                let p = hit.l4_offset() + 8;
                let (req, ans) = (&original[p..], &bytes[p..]);
                let t2 = format.decode(ans[16..24].try_into().unwrap());
                let t3 = format.decode(ans[4..12].try_into().unwrap());
                prop_assert_eq!((t2, t3), (received, received + dwell));
                prop_assert!(t2 <= t3);
                prop_assert_eq!(&ans[24..38], &req[0..14]);
                prop_assert_eq!(&ans[14..16], &req[14..16]);
                if req.len() > 44 {
                    prop_assert_eq!(&ans[44..], &req[44..]);
                }
            }
        }
    }
}
