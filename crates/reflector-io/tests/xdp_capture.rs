//! The XDP programs' samples for a capture (`reflector_io::xdp::KernelCapture`): through
//! `BPF_PROG_TEST_RUN`, every corpus frame's sample carries the core's verdict and the frame as
//! the program left it (the reflection, for a reflecting program; the frame as received, for a
//! rejected one); nothing is sampled until a sink asks; the cap holds and what it keeps out is
//! counted. Needs root (loading BPF); run by the test command as root.
#![cfg(target_os = "linux")]

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflector_bpf::xdp::{CAPTURE_REFLECTED, CAPTURE_REJECTED, CAPTURE_SNAP, OnHit, program};
use reflector_io::tap::{Chunk, Sink, Tap, What};
use reflector_io::xdp::{GateMaps, KernelCapture};
use reflector_sys::xdp::bpf;
use reflector_testkit::{corpus, default_filter};

/// A sample as a sink got it: the bytes kept, the frame's length, the comment.
type Sample = (Vec<u8>, usize, String);

/// A sink that keeps what it is given, parsed back out of the pcapng blocks.
struct Collect(Arc<Mutex<Vec<Sample>>>);

impl Sink for Collect {
    fn what(&self) -> What {
        What::ALL
    }
    fn write(&mut self, chunk: &Chunk) -> Result<(), String> {
        chunk.runs(What::ALL, |mut blocks, _| {
            while blocks.len() >= 12 {
                let word =
                    |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
                let total = word(blocks, 4);
                let (caplen, len) = (word(blocks, 20), word(blocks, 24));
                let data = blocks[28..28 + caplen].to_vec();
                let options = 28 + caplen.next_multiple_of(4);
                let code = u16::from_le_bytes([blocks[options], blocks[options + 1]]);
                let n = u16::from_le_bytes([blocks[options + 2], blocks[options + 3]]) as usize;
                assert_eq!(code, 1, "the first option is the comment");
                let comment = String::from_utf8(blocks[options + 4..options + 4 + n].to_vec()).unwrap();
                self.0.lock().unwrap().push((data, len, comment));
                blocks = &blocks[total..];
            }
        });
        Ok(())
    }
    fn tick(&mut self, _: std::time::Instant) -> Result<(), String> {
        Ok(())
    }
    fn done(&self, _: std::time::Instant) -> bool {
        false
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn describe(&self) -> String {
        "test sink".into()
    }
}

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

/// The production program of `on_hit` for the default filter, with its maps and a capture at
/// `cap` frames a second that samples `kinds`.
fn load(
    on_hit: OnHit,
    kinds: u32,
    cap: u32,
) -> (std::os::fd::OwnedFd, KernelCapture, GateMaps, std::os::fd::OwnedFd) {
    load_for(&default_filter(), on_hit, kinds, cap)
}

/// [`load`] for `filter`.
fn load_for(
    filter: &reflector_core::Filter,
    on_hit: OnHit,
    kinds: u32,
    cap: u32,
) -> (std::os::fd::OwnedFd, KernelCapture, GateMaps, std::os::fd::OwnedFd) {
    let counters = match on_hit {
        OnHit::Reflect { .. } => reflector_io::xdp::reflect_counters().unwrap(),
        _ => reflector_io::xdp::reject_counters().unwrap(),
    };
    let gate = GateMaps::create().unwrap();
    gate.sync(filter).unwrap();
    let capture = KernelCapture::create(kinds, cap).unwrap();
    let insns = program(
        &filter.without_gate(),
        on_hit,
        Some(counters.as_raw_fd()),
        Some(gate.fds()),
        Some(capture.fds()),
    )
    .expect("the program assembles");
    let prog = reflector_io::xdp::load_program(&insns, "reflector_cap").unwrap_or_else(|e| panic!("{e}"));
    (prog, capture, gate, counters)
}

#[test]
#[ignore = "needs root (BPF)"]
fn each_sample_carries_the_cores_verdict_and_the_frame_as_the_program_left_it() {
    require_root();
    let (prog, capture, _gate, _counters) =
        load(OnHit::Reflect { stamp: None }, CAPTURE_REFLECTED | CAPTURE_REJECTED, 1_000_000);
    let (tap, thread) = Tap::start("test").unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    // No sink yet: the program samples nothing.
    let frame = reflector_testkit::Frame::ito_v4().bytes();
    capture.pump(&tap).unwrap();
    bpf::prog_test_run(&prog, &frame).unwrap();
    tap.add(Box::new(Collect(got.clone())));
    capture.pump(&tap).unwrap();
    let filter = default_filter();
    let mut want: Vec<Sample> = Vec::new();
    // The corpus, and a probe longer than a sample keeps.
    let mut long = reflector_testkit::Frame::ito_v4();
    long.payload.resize(2500, 0x5a);
    let corpus = corpus();
    let frames = corpus
        .iter()
        .filter(|c| c.filter == filter && (14..=3000).contains(&c.bytes.len()))
        .map(|c| c.bytes.clone())
        .chain([long.bytes()]);
    for bytes in frames {
        bpf::prog_test_run(&prog, &bytes).unwrap();
        let mut reflected = bytes.clone();
        let comment = match reflector_core::testing::process(&filter, &mut reflected) {
            Ok(hit) => format!("reflected: {}", hit.signature().name()),
            Err(reason) => {
                reflected = bytes.clone();
                format!("rejected: {}", reason.name())
            }
        };
        let kept = reflected.len().min(CAPTURE_SNAP as usize);
        want.push((reflected[..kept].to_vec(), reflected.len(), comment));
    }
    capture.pump(&tap).unwrap();
    thread.stop();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), want.len(), "one sample per frame, none for the frame before the sink");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {i}");
    }
    assert!(
        want.iter().any(|w| w.2.starts_with("reflected: "))
            && want.iter().any(|w| w.2.starts_with("rejected: "))
    );
    assert!(want.iter().any(|w| w.1 > CAPTURE_SNAP as usize), "a frame longer than the sample keeps");
    assert_eq!(tap.dropped(), 0);
}

#[test]
#[ignore = "needs root (BPF)"]
fn the_cap_holds_and_what_it_keeps_out_is_counted() {
    require_root();
    let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 1, "xsks").unwrap();
    // Ten a second, in bursts of one: a quick run of 200 rejected frames gets one or two.
    let (prog, capture, _gate, _counters) = load(
        OnHit::Redirect {
            xsk_map_fd: xsks.as_raw_fd(),
            receive_time: reflector_io::xdp::takes_xdp_metadata(),
        },
        CAPTURE_REJECTED,
        10,
    );
    let (tap, thread) = Tap::start("test").unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    tap.add(Box::new(Collect(got.clone())));
    capture.pump(&tap).unwrap();
    let mut frame = reflector_testkit::Frame::ito_v4().bytes();
    frame[0] ^= 0x02; // not our MAC: rejected (dst_mac)
    let started = std::time::Instant::now();
    for _ in 0..200 {
        bpf::prog_test_run(&prog, &frame).unwrap();
    }
    let elapsed = started.elapsed();
    capture.pump(&tap).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    thread.stop();
    let sampled = got.lock().unwrap().len() as u64;
    let allowed = 1 + (elapsed.as_secs_f64() * 10.0).ceil() as u64;
    assert!((1..=allowed).contains(&sampled), "{sampled} sampled in {elapsed:?}");
    assert_eq!(tap.dropped(), 200 - sampled, "every frame over the cap is counted");
    assert!(got.lock().unwrap().iter().all(|(_, _, c)| c == "rejected: dst_mac"));
}

#[test]
#[ignore = "needs root (BPF)"]
fn programs_with_stamp_and_capture_pass_the_verifier() {
    require_root();
    let filter = reflector_testkit::stamp_filter();
    let stamp = reflector_io::xdp::StampMaps::create().unwrap();
    let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 1, "xsks").unwrap();
    // `load_for` panics with the verifier's log when a program is refused.
    for on_hit in [
        OnHit::Reflect { stamp: Some(stamp.fds()) },
        OnHit::Redirect {
            xsk_map_fd: xsks.as_raw_fd(),
            receive_time: reflector_io::xdp::takes_xdp_metadata(),
        },
    ] {
        load_for(&filter, on_hit, CAPTURE_REFLECTED | CAPTURE_REJECTED, 1000);
    }
}
