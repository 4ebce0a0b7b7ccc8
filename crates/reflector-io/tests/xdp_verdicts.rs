//! The generated XDP program and the core agree: every corpus frame and many random ones go
//! through the kernel (`BPF_PROG_TEST_RUN`, in a variant whose hit returns XDP_TX) and the
//! program's verdict, and for a rejected frame the reason it counted, must equal the core's. Needs root (loading BPF); skipped otherwise.
#![cfg(target_os = "linux")]

use std::os::fd::{AsRawFd, OwnedFd};

use reflector_bpf::xdp::{OnHit, XDP_PASS, XDP_TX, program};
use reflector_core::{Filter, Mode, Reject, classify};
use reflector_sys::xdp::bpf;
use reflector_testkit::{Rng, corpus, default_filter, filter_with, mutated};

/// These tests are `#[ignore = "needs root (BPF)"]`: the test command runs them as root.
fn require_root() {
    assert!(
        reflector_sys::process::is_root(),
        "loading BPF programs needs root (run as root, as scripts/test.sh does)"
    );
    // Then only what a service holds to load them: the programs must pass the verifier
    // without CAP_PERFMON (and CAP_SYS_ADMIN, which stands in for it). Capabilities are per
    // thread: this test's thread gives the rest up.
    use reflector_sys::privilege::{Capability, keep_only};
    keep_only(&[Capability::CAP_BPF, Capability::CAP_NET_ADMIN]).unwrap();
    assert!(!reflector_sys::privilege::held().contains(&Capability::CAP_PERFMON));
}

/// Frames `BPF_PROG_TEST_RUN` takes for XDP: at least an Ethernet header, at most what fits
/// in one page with XDP's head and tail room.
fn testable(frame: &[u8]) -> bool {
    (14..=3000).contains(&frame.len())
}

/// The test variant of the program for `filter`, with its reject counters and the maps of its
/// lists and limits (filled from the filter's, as a run fills them).
struct Loaded {
    prog: OwnedFd,
    counters: OwnedFd,
    gate: reflector_io::xdp::GateMaps,
    last: [u64; Reject::COUNT],
}

fn load(filter: &Filter) -> Loaded {
    let counters = reflector_io::xdp::reject_counters().unwrap();
    let gate = reflector_io::xdp::GateMaps::create().unwrap();
    gate.sync(filter).unwrap();
    let insns =
        program(&filter.without_gate(), OnHit::ReturnTx, Some(counters.as_raw_fd()), Some(gate.fds()), None)
            .expect("program assembles");
    // With the prologue a service without CAP_PERFMON loads (which changes no verdict).
    let insns = reflector_bpf::xdp::mark_stack_written(insns);
    let prog = reflector_io::xdp::load_program(&insns, "reflector_test").unwrap_or_else(|e| panic!("{e}"));
    Loaded { prog, counters, gate, last: [0; Reject::COUNT] }
}

impl Loaded {
    /// The program's verdict on `frame`: Ok for a test packet, or the reason it counted.
    fn verdict(&mut self, frame: &[u8]) -> Result<(), Reject> {
        let action = bpf::prog_test_run(&self.prog, frame).unwrap().action as i32;
        let now = reflector_io::xdp::read_reject_counters(&self.counters).unwrap();
        let moved: Vec<Reject> =
            Reject::ALL.iter().copied().filter(|r| now[*r as usize] != self.last[*r as usize]).collect();
        self.last = now;
        match (action, moved.as_slice()) {
            (XDP_TX, []) => Ok(()),
            (XDP_PASS, [reason]) => Err(*reason),
            other => panic!("unexpected action / counters: {other:?}"),
        }
    }
}

#[test]
#[ignore = "needs root (BPF)"]
fn kernel_verdicts_and_reasons_equal_the_core_on_the_corpus_and_random_frames() {
    require_root();
    let corpus = corpus();
    let mut checked = 0;
    let mut filters: Vec<Filter> = Vec::new();
    for case in &corpus {
        if !filters.contains(&case.filter) {
            filters.push(case.filter.clone());
        }
    }
    for filter in &filters {
        let mut prog = load(filter);
        for case in corpus.iter().filter(|c| &c.filter == filter && testable(&c.bytes)) {
            let core = classify(&case.bytes, filter).map(|_| ());
            assert_eq!(prog.verdict(&case.bytes), core, "{}: kernel and core disagree", case.name);
            checked += 1;
        }
    }
    assert!(checked > 70, "only {checked} corpus frames checked");

    let random_filters = [
        default_filter(),
        filter_with(|c| c.port = 0),
        filter_with(|c| {
            c.families = "all".parse().unwrap();
            c.oui = None;
        }),
    ];
    let mut rng = Rng::new(0x0dd_5eed);
    let mut hits = 0;
    for filter in &random_filters {
        let mut prog = load(filter);
        for _ in 0..20_000 {
            let frame = mutated(&mut rng, &corpus);
            if !testable(&frame) {
                continue;
            }
            let core = classify(&frame, filter).map(|_| ());
            assert_eq!(prog.verdict(&frame), core, "kernel and core disagree on {frame:02x?}");
            hits += core.is_ok() as usize;
        }
    }
    assert!(hits > 1000, "random frames reached the hit path only {hits} times");
}

/// The reflecting program (what `--backend xdp-tx` is to run) against the core, byte for byte:
/// for every frame the core reflects, `XDP_TX` and exactly the core's reflected frame; for
/// every other frame, `XDP_PASS`, the frame unchanged, and the core's reason counted. Over the
/// corpus and 150 000 mutated frames, under several filters, in every mode. A STAMP answer
/// equals the core's but for its two timestamps, which lie between the clock readings taken
/// around the run (T2 ≤ T3), and its UDP checksum, which is right where the request's was.
#[test]
#[ignore = "needs root (BPF)"]
fn the_reflecting_program_turns_frames_around_byte_for_byte_as_the_core_does() {
    require_root();
    let corpus = corpus();
    let mut filters: Vec<Filter> = Vec::new();
    for case in &corpus {
        if !filters.contains(&case.filter) {
            filters.push(case.filter.clone());
        }
    }
    filters.push(filter_with(|c| c.port = 0));
    filters.push(filter_with(|c| {
        c.families = "all".parse().unwrap();
        c.oui = None;
    }));
    filters.push(filter_with(|c| {
        c.families.insert(reflector_core::Family::Stamp);
        c.stamp_sequence = reflector_core::stamp::SequenceMode::Stateful;
        c.stamp_timestamps = reflector_core::stamp::TimestampFormat::Ptp;
    }));
    // Without the STAMP maps, no program for a filter that answers STAMP.
    assert_eq!(
        program(&reflector_testkit::stamp_filter(), OnHit::Reflect { stamp: None }, None, None, None),
        None
    );
    let error = reflector_io::worker::clock_error_estimate();
    let mut rng = Rng::new(0x7e1_ec7);
    let (mut reflected, mut passed, mut stamped) = (0usize, 0usize, 0usize);
    for base in &filters {
        for mode in [Mode::All, Mode::MacIp, Mode::Mac] {
            let filter = base.clone().with_mode(mode);
            let counters = reflector_io::xdp::reflect_counters().unwrap();
            let maps = reflector_io::xdp::StampMaps::create().unwrap();
            maps.refresh_clock().unwrap();
            let on_hit = OnHit::Reflect { stamp: Some(maps.fds()) };
            // The lists of the corpus filters that have them, in the maps (as a run has them).
            let gate = reflector_io::xdp::GateMaps::create().unwrap();
            gate.sync(&filter).unwrap();
            let insns =
                program(&filter.without_gate(), on_hit, Some(counters.as_raw_fd()), Some(gate.fds()), None)
                    .expect("program assembles");
            // The core's side: its own session table, fed the same frames in the same order.
            let mut sessions: Box<reflector_core::stamp::Sessions> = Box::default();
            let mut want = reflector_core::Counters::default();
            // In mode mac-ip, with the prologue a service without CAP_PERFMON loads.
            let insns =
                if mode == Mode::MacIp { reflector_bpf::xdp::mark_stack_written(insns) } else { insns };
            let prog =
                reflector_io::xdp::load_program(&insns, "reflector_tx").unwrap_or_else(|e| panic!("{e}"));
            let mut last = [0u64; Reject::COUNT];
            let frames = corpus
                .iter()
                .filter(|c| c.filter == *base)
                .map(|c| c.bytes.clone())
                .chain((0..8_000).map(|_| mutated(&mut rng, &corpus)));
            for frame in frames.filter(|f| testable(f)) {
                let before = now_utc();
                let run = bpf::prog_test_run(&prog, &frame).unwrap();
                let after = now_utc();
                let now = reflector_io::xdp::read_reject_counters(&counters).unwrap();
                let moved: Vec<Reject> =
                    Reject::ALL.iter().copied().filter(|r| now[*r as usize] != last[*r as usize]).collect();
                last = now;
                let mut core = frame.clone();
                let mut clock = || before;
                let mut stamping = reflector_core::PathState {
                    received: Some(before),
                    clock: &mut clock,
                    error,
                    sessions: &mut *sessions,
                    limiter: None,
                    testers: None,
                };
                // Room after the frame, as a data path has: a short STAMP request's answer grows.
                core.resize(frame.len() + 64, 0);
                let verdict = filter.process_in(&mut core, frame.len(), &mut stamping);
                core.truncate(verdict.map_or(frame.len(), |hit| hit.answer_len(frame.len())));
                want.record(frame.len(), &verdict);
                match verdict {
                    Ok(hit) if hit.signature() == reflector_core::Signature::Stamp => {
                        assert_eq!(run.action as i32, XDP_TX, "{mode:?}: the core answers {frame:02x?}");
                        let p = hit.l4_offset() + 8;
                        let format = filter.stamp_timestamps();
                        let time =
                            |f: &[u8], at: usize| format.decode(f[p + at..p + at + 8].try_into().unwrap());
                        let (t2, t3) = (time(&run.frame, 16), time(&run.frame, 4));
                        assert!(
                            before <= t2 && t2 <= t3 && t3 <= after,
                            "{before} {t2} {t3} {after}: {frame:02x?}"
                        );
                        let mut masked = run.frame.clone();
                        for at in [p - 2, p - 1] {
                            masked[at] = core[at];
                        }
                        masked[p + 4..p + 12].copy_from_slice(&core[p + 4..p + 12]);
                        masked[p + 16..p + 24].copy_from_slice(&core[p + 16..p + 24]);
                        assert_eq!(masked, core, "{mode:?}: STAMP answer differs for {frame:02x?}");
                        // A right checksum stays right (a mutated one stays wrong, as RFC 1624's
                        // update keeps it); a grown answer's is computed whole.
                        if hit.grown() || udp_checksum_ok(&frame, &hit) {
                            assert!(
                                udp_checksum_ok(&run.frame, &hit),
                                "{mode:?}: checksum of {:02x?}",
                                run.frame
                            );
                        }
                        assert!(moved.is_empty(), "{mode:?}: a hit counted a reject {moved:?}");
                        stamped += 1;
                        reflected += 1;
                    }
                    Ok(_) => {
                        assert_eq!(run.action as i32, XDP_TX, "{mode:?}: the core reflects {frame:02x?}");
                        assert_eq!(run.frame, core, "{mode:?}: reflected bytes differ for {frame:02x?}");
                        assert!(moved.is_empty(), "{mode:?}: a hit counted a reject {moved:?}");
                        reflected += 1;
                    }
                    Err(reason) => {
                        assert_eq!(
                            run.action as i32, XDP_PASS,
                            "{mode:?}: the core refuses ({reason:?}) {frame:02x?}"
                        );
                        assert_eq!(run.frame, frame, "{mode:?}: a passed frame was changed");
                        assert_eq!(moved, [reason], "{mode:?}: reason for {frame:02x?}");
                        passed += 1;
                    }
                }
            }
            // The kernel's counters: what the core would have counted (the bytes of rejected
            // frames are not counted in the kernel).
            let got = reflector_io::xdp::read_reflect_counters(&counters).unwrap();
            want.rx_bytes = want.reflected_bytes;
            assert_eq!(got, want, "{mode:?}: the program's counters");
        }
    }
    eprintln!(
        "{} filters x 3 modes: {reflected} frames reflected ({stamped} STAMP answers), {passed} passed",
        filters.len()
    );
    assert!(
        reflected > 5_000 && passed > 50_000 && stamped > 500,
        "reflected {reflected} ({stamped}), passed {passed}"
    );
}

#[test]
#[ignore = "needs root (BPF)"]
fn the_redirecting_program_passes_the_verifier() {
    require_root();
    let map = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, "xsks").unwrap();
    let counters = reflector_io::xdp::reject_counters().unwrap();
    let on_hit = OnHit::Redirect { xsk_map_fd: map.as_raw_fd(), receive_time: false };
    let insns = program(&default_filter(), on_hit, Some(counters.as_raw_fd()), None, None).unwrap();
    reflector_io::xdp::load_program(&insns, "reflector").unwrap_or_else(|e| panic!("{e}"));
    // And without counters.
    let insns = program(&default_filter(), on_hit, None, None, None).unwrap();
    reflector_io::xdp::load_program(&insns, "reflector").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
#[ignore = "needs root (BPF)"]
fn a_broken_program_reports_the_verifier_log() {
    require_root();
    use reflector_bpf::ebpf::*;
    let mut a = Asm::default();
    a.load(Size::W, R0, R1, 0); // data
    a.load(Size::B, R0, R0, 0); // read a packet byte without a bounds check
    a.exit();
    let err = reflector_io::xdp::load_program(&a.finish().unwrap(), "broken").unwrap_err();
    let text = err.to_string();
    // One line naming the failure and the file with the whole log.
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("invalid access to packet"), "{text}");
    let bpf::LoadError::Verifier { saved_to: Some(path), .. } = &err else { panic!("{err:?}") };
    assert!(text.ends_with(&format!("full verifier log: {}", path.display())), "{text}");
    let log = std::fs::read_to_string(path).unwrap();
    assert!(log.contains("invalid access to packet") && log.lines().count() > 1, "{log}");
    std::fs::remove_file(path).unwrap();
}

/// The redirecting program (af-xdp's) puts a STAMP request's receive time in front of it as
/// XDP metadata: `BPF_PROG_TEST_RUN` hands back the metadata with the frame, so for every
/// STAMP request the output is 8 bytes of CLOCK_TAI, between the readings taken around the
/// run, then the frame unchanged; every other test packet comes back without metadata. (With
/// no socket in the XSKMAP, the program passes the frame on.) On a kernel whose verifier refuses
/// `bpf_xdp_adjust_meta`, the program the run loads has no metadata and every frame comes back
/// as it went in (the worker reads its own clock), and asking for the metadata is refused.
#[test]
#[ignore = "needs root (BPF)"]
fn the_redirecting_program_stamps_stamp_requests_with_their_receive_time() {
    require_root();
    use reflector_bpf::xdp::STAMP_META_LEN;
    let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 1, "test_xsks").unwrap();
    let filter = reflector_testkit::stamp_filter();
    let with_meta = reflector_io::xdp::takes_xdp_metadata();
    let on_hit = |receive_time| OnHit::Redirect { xsk_map_fd: xsks.as_raw_fd(), receive_time };
    if !with_meta {
        let insns = program(&filter, on_hit(true), None, None, None).unwrap();
        let refused = reflector_io::xdp::load_program(&insns, "reflector_test")
            .expect_err("the probe said the kernel refuses it");
        assert!(refused.to_string().contains("bpf_xdp_adjust_meta"), "{refused}");
    }
    let insns = program(&filter, on_hit(with_meta), None, None, None).unwrap();
    let prog = reflector_io::xdp::load_program(&insns, "reflector_test").unwrap_or_else(|e| panic!("{e}"));
    let (mut stamped, mut plain) = (0, 0);
    let mut cases: Vec<_> = corpus().into_iter().filter(|c| c.filter == filter && c.expect.is_ok()).collect();
    // The golden ITO frames, test packets for this filter too.
    for mut case in reflector_testkit::golden().into_iter().filter(|c| c.filter == default_filter()) {
        case.filter = filter.clone();
        cases.push(case);
    }
    for case in &cases {
        let before = reflector_sys::clock::tai_ns();
        let run = bpf::prog_test_run(&prog, &case.bytes).unwrap();
        let after = reflector_sys::clock::tai_ns();
        assert_eq!(run.action as i32, XDP_PASS, "{}", case.name);
        if case.expect == Ok(reflector_core::Signature::Stamp) && with_meta {
            assert_eq!(
                run.frame.len(),
                case.bytes.len() + STAMP_META_LEN,
                "{}: metadata in front",
                case.name
            );
            let t = u64::from_ne_bytes(run.frame[..8].try_into().unwrap());
            assert!((before..=after).contains(&t), "{}: {t} not in {before}..={after}", case.name);
            assert_eq!(run.frame[STAMP_META_LEN..], case.bytes[..], "{}", case.name);
            stamped += 1;
        } else {
            assert_eq!(run.frame, case.bytes, "{}: no metadata", case.name);
            plain += 1;
        }
    }
    if with_meta {
        assert!(stamped >= 7 && plain >= 1, "{stamped} stamped, {plain} plain");
    } else {
        assert!(stamped == 0 && plain >= 8, "{stamped} stamped, {plain} plain");
    }
}

fn now_utc() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Whether the UDP checksum of the datagram `hit` found is right (0 counts as right for IPv4:
/// no checksum).
fn udp_checksum_ok(frame: &[u8], hit: &reflector_core::Hit) -> bool {
    use reflector_core::{L3Kind, checksum};
    let (l3, l4) = (hit.l3_offset(), hit.l4_offset());
    let len = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]) as usize;
    let mut udp = frame[l4..l4 + len].to_vec();
    let sent = u16::from_be_bytes([udp[6], udp[7]]);
    udp[6..8].fill(0);
    match hit.l3() {
        L3Kind::V4 => {
            sent == 0 || sent == checksum::udp(&frame[l3 + 12..l3 + 16], &frame[l3 + 16..l3 + 20], &udp)
        }
        L3Kind::V6 => sent == checksum::udp(&frame[l3 + 8..l3 + 24], &frame[l3 + 24..l3 + 40], &udp),
    }
}

/// A request whose checksum a sender on the same host left for offload to complete (the field
/// holds the pseudo-header's sum): the reflecting program answers it over IPv4 without a
/// checksum (0), over IPv6 with the whole datagram summed, and an IPv6 one longer than it sums
/// ([`reflector_bpf::xdp::MAX_SUM_BYTES`]) not at all: passed on unchanged, counted as a TX
/// error. (The core answers each with its whole checksum.)
#[test]
#[ignore = "needs root (BPF)"]
fn the_reflecting_program_answers_requests_whose_checksum_was_left_for_offload() {
    require_root();
    use reflector_core::checksum;
    let filter = reflector_testkit::stamp_filter();
    let counters = reflector_io::xdp::reflect_counters().unwrap();
    let maps = reflector_io::xdp::StampMaps::create().unwrap();
    maps.refresh_clock().unwrap();
    let insns =
        program(&filter, OnHit::Reflect { stamp: Some(maps.fds()) }, Some(counters.as_raw_fd()), None, None)
            .unwrap();
    let prog = reflector_io::xdp::load_program(&insns, "reflector_tx").unwrap_or_else(|e| panic!("{e}"));
    let partial = |frame: reflector_testkit::Frame| {
        let mut b = frame.bytes();
        let hit = reflector_core::classify(&b, &filter).unwrap();
        let (l3, l4) = (hit.l3_offset(), hit.l4_offset());
        let addresses =
            if hit.l3() == reflector_core::L3Kind::V4 { &b[l3 + 12..l3 + 20] } else { &b[l3 + 8..l3 + 40] };
        let pseudo = checksum::add(checksum::add(0, addresses) + 17, &b[l4 + 4..l4 + 6]);
        let field = !checksum::finish(pseudo);
        b[l4 + 6..l4 + 8].copy_from_slice(&field.to_be_bytes());
        (b, hit)
    };
    let max = reflector_bpf::xdp::MAX_SUM_BYTES as usize;
    use reflector_testkit::Frame;
    // Behind tags, options and extension headers (the frame's start moved on while answered),
    // and at every length around a 64-byte piece of the sum.
    let tagged = |f: Frame| Frame { vlans: vec![(0x8100, 7), (0x88a8, 9)], ..f };
    for (frame, answered) in [
        (Frame::stamp_v4(44), true),
        (Frame::stamp_v4(1400), true),
        (Frame { ipv4_options: vec![1, 1, 1, 0], ..tagged(Frame::stamp_v4(44)) }, true),
        (Frame::stamp_v6(44), true),
        (Frame::stamp_v6(45), true),
        (Frame::stamp_v6(63 - 8), true),
        (Frame::stamp_v6(64 - 8), true),
        (Frame::stamp_v6(65 - 8), true),
        (Frame { ipv6_ext: vec![0, 60], ..Frame::stamp_v6(47) }, true),
        (Frame { ipv6_ext: vec![0], ..tagged(Frame::stamp_v6(300)) }, true),
        (Frame::stamp_v6(max - 8), true),
        (Frame::stamp_v6(max - 7), false),
    ] {
        let (bytes, hit) = partial(frame);
        let mut core = bytes.clone();
        reflector_core::testing::process(&filter, &mut core).unwrap();
        assert!(udp_checksum_ok(&core, &hit), "the core sums it whole");
        let run = bpf::prog_test_run(&prog, &bytes).unwrap();
        let l4 = hit.l4_offset();
        let name = format!("{:?} {} bytes", hit.l3(), bytes.len());
        if !answered {
            assert_eq!(run.action as i32, XDP_PASS, "{name}");
            assert_eq!(run.frame, bytes, "{name}: passed on unchanged");
            continue;
        }
        assert_eq!(run.action as i32, XDP_TX, "{name}");
        match hit.l3() {
            reflector_core::L3Kind::V4 => {
                assert_eq!(run.frame[l4 + 6..l4 + 8], [0, 0], "{name}: no checksum")
            }
            reflector_core::L3Kind::V6 => assert!(udp_checksum_ok(&run.frame, &hit), "{name}: summed whole"),
        }
    }
    let counted = reflector_io::xdp::read_reflect_counters(&counters).unwrap();
    assert_eq!((counted.reflected_packets, counted.tx_errors), (11, 1), "{counted:?}");
}

/// The filter of every family, any vendor, with these lists.
fn listed(allow: &[&str], deny: &[&str]) -> Filter {
    let (allow, deny) = (reflector_testkit::sources(allow), reflector_testkit::sources(deny));
    filter_with(|c| {
        c.families = "all".parse().unwrap();
        c.oui = None;
        c.allow = allow;
        c.deny = deny;
    })
}

/// Kernel and core agree under allow and deny lists: the corpus and mutated frames through the
/// test variant of the program, its lists in the maps, give the core's verdict and reason
/// (`src_denied`, `src_not_allowed` among them) for every frame, for IPv4 and IPv6 prefixes and
/// MACs, nested prefixes, an allow list and none.
#[test]
#[ignore = "needs root (BPF)"]
fn kernel_and_core_agree_under_allow_and_deny_lists() {
    require_root();
    let corpus = corpus();
    let filters = [
        // The tester's IPv4 address denied inside an allowed /28; its IPv6 /64 allowed.
        listed(&["192.0.2.0/28", "2001:db8::/64"], &["192.0.2.10"]),
        // Its MAC allowed; its IPv6 address denied (the IP's deny wins over the MAC's allow).
        listed(&["00:c0:17:12:34:56"], &["2001:db8::a"]),
        // Its MAC denied, whatever its addresses.
        listed(&[], &["00:c0:17:12:34:56"]),
        // Everything IPv6 and one IPv4 /24, less a /29 in it (nested prefixes).
        listed(&["192.0.2.0/24", "::/0"], &["192.0.2.8/29"]),
        // Deny lists only: everyone else answered.
        listed(&[], &["198.51.100.0/24", "2001:db8:1::/48"]),
    ];
    let mut rng = Rng::new(0x05ee_dac1);
    let mut seen = [0usize; Reject::COUNT];
    let mut hits = 0;
    for filter in &filters {
        let mut prog = load(filter);
        let frames =
            corpus.iter().map(|c| c.bytes.clone()).chain((0..20_000).map(|_| mutated(&mut rng, &corpus)));
        for frame in frames.filter(|f| testable(f)) {
            let core = classify(&frame, filter).map(|_| ());
            assert_eq!(
                prog.verdict(&frame),
                core,
                "{:?}: kernel and core disagree on {frame:02x?}",
                filter.access_entries()
            );
            match core {
                Ok(()) => hits += 1,
                Err(r) => seen[r as usize] += 1,
            }
        }
    }
    for reason in [Reject::SrcDenied, Reject::SrcNotAllowed] {
        assert!(seen[reason as usize] > 100, "{reason} seen {} times", seen[reason as usize]);
    }
    assert!(hits > 1000, "only {hits} test packets answered");
}

/// The lists and limits are in maps: writing them changes what the same loaded program does.
/// A per-source limit lets its burst through, then holds the source while another source goes
/// on; a total limit holds both; lists changed with `sync` apply to the next frame.
#[test]
#[ignore = "needs root (BPF)"]
fn the_kernel_keeps_limits_and_takes_new_lists_without_a_new_program() {
    require_root();
    let frame = reflector_testkit::Frame::ito_v4();
    let other = reflector_testkit::Frame {
        ip: reflector_core::build::IpAddrs::V4 { src: [192, 0, 2, 11], dst: reflector_testkit::LOCAL_V4 },
        ..frame.clone()
    };
    let (frame, other) = (frame.bytes(), other.bytes());
    let limited = |per_source: Option<(u32, u32)>, total: Option<(u32, u32)>| {
        let rate = |r: Option<(u32, u32)>| {
            r.map(|(pps, burst)| reflector_core::limit::Rate::new(pps, burst).unwrap())
        };
        filter_with(|c| {
            c.source_limit = rate(per_source);
            c.total_limit = rate(total);
        })
    };
    // One packet a second, bursts of 3: three pass back to back, then none.
    let filter = limited(Some((1, 3)), None);
    let mut prog = load(&filter);
    let verdicts: Vec<_> = (0..6).map(|_| prog.verdict(&frame)).collect();
    assert_eq!(
        verdicts,
        [
            Ok(()),
            Ok(()),
            Ok(()),
            Err(Reject::RateLimited),
            Err(Reject::RateLimited),
            Err(Reject::RateLimited)
        ]
    );
    assert_eq!(prog.verdict(&other), Ok(()), "another source has its own bucket");
    let testers = prog.gate.testers().unwrap();
    let row = |ip: [u8; 4]| {
        testers.iter().find(|t| t.addr() == std::net::IpAddr::from(ip)).map(|t| (t.packets, t.limited))
    };
    assert_eq!((testers.len(), row([192, 0, 2, 10]), row([192, 0, 2, 11])), (2, Some((3, 3)), Some((1, 0))));
    // A total of 1 a second with bursts of 2, sources unlimited: two frames pass in all.
    prog.gate.sync(&limited(None, Some((1, 2)))).unwrap();
    let verdicts: Vec<_> = [&frame, &other, &frame, &other].iter().map(|f| prog.verdict(f)).collect();
    assert_eq!(verdicts, [Ok(()), Ok(()), Err(Reject::RateLimited), Err(Reject::RateLimited)]);
    // Lists instead: the tester denied, then the other one not allowed, in the same program.
    prog.gate.sync(&listed(&[], &["192.0.2.10"])).unwrap();
    assert_eq!(prog.verdict(&frame), Err(Reject::SrcDenied));
    prog.gate.sync(&listed(&["192.0.2.10"], &[])).unwrap();
    assert_eq!(prog.verdict(&frame), Ok(()));
    let other_listed = classify(&other, &listed(&["192.0.2.10"], &[]));
    assert_eq!(other_listed.map(|_| ()), Err(Reject::SrcNotAllowed));
    assert_eq!(prog.verdict(&other).map(|_| ()), other_listed.map(|_| ()));
    // And nothing again: everyone answered.
    prog.gate.sync(&default_filter()).unwrap();
    assert_eq!((prog.verdict(&frame), prog.verdict(&other)), (Ok(()), Ok(())));
}

/// Without a per-source limit the program counts a tester in this CPU's row (plain stores, no
/// helper call), claimed by its first packet; a source whose row another holds is counted in
/// the shared table. Either way every packet is counted once, answered or limited, and the
/// table read back adds the rows of a source up.
#[test]
#[ignore = "needs root (BPF)"]
fn the_testers_rows_of_each_cpu_count_every_packet_and_a_taken_row_sends_to_the_shared_table() {
    use reflector_bpf::xdp::tester_slot;
    require_root();
    let key = |ip: [u8; 4]| {
        let mut k = [0u8; 20];
        k[10..12].copy_from_slice(&[0xff, 0xff]);
        k[12..16].copy_from_slice(&ip);
        k
    };
    let a = [192, 0, 2, 10];
    // A source whose key hashes to a's row.
    let b = (0..=255u8)
        .flat_map(|x| (1..=254u8).map(move |y| [198, 51, x, y]))
        .find(|ip| tester_slot(&key(*ip)) == tester_slot(&key(a)))
        .expect("a colliding source among 65 000");
    let from = |src: [u8; 4]| {
        reflector_testkit::Frame {
            ip: reflector_core::build::IpAddrs::V4 { src, dst: reflector_testkit::LOCAL_V4 },
            ..reflector_testkit::Frame::ito_v4()
        }
        .bytes()
    };
    let (fa, fb) = (from(a), from(b));
    // A total limit of one a second with bursts of 3 (no per-source limit): a, a, b pass, then
    // b and a are held.
    let filter = filter_with(|c| c.total_limit = reflector_core::limit::Rate::new(1, 3));
    let mut prog = load(&filter);
    let before = reflector_io::worker::utc_now_ns();
    let verdicts: Vec<_> = [&fa, &fa, &fb, &fb, &fa].iter().map(|f| prog.verdict(f)).collect();
    let after = reflector_io::worker::utc_now_ns();
    assert_eq!(verdicts, [Ok(()), Ok(()), Ok(()), Err(Reject::RateLimited), Err(Reject::RateLimited)]);
    let rows = prog.gate.testers().unwrap();
    let of = |ip: [u8; 4]| {
        let mut sum = reflector_core::testers::Tester::default();
        let mine = rows.iter().filter(|t| t.addr() == std::net::IpAddr::from(ip));
        mine.for_each(|t| if sum.packets + sum.limited == 0 { sum = *t } else { sum.merge(t) });
        (sum.packets, sum.bytes, sum.limited, sum.families.iter().count())
    };
    let len = fa.len() as u64;
    assert_eq!((of(a), of(b)), ((2, 2 * len, 1, 1), (1, len, 1, 1)), "{rows:?}");
    // The times, kept as jiffies, read back as UTC: within the packets' time give or take a
    // tick (10 ms at the slowest tick rate) and a little for the clocks read apart.
    for t in &rows {
        for seen in [t.first_seen_ns, t.last_seen_ns] {
            assert!(
                seen + 12_000_000 >= before && seen <= after + 12_000_000,
                "{t:?} not within {before}..{after}"
            );
        }
    }
}
