//! What sampling for a capture costs an XDP program, measured in the kernel without a network:
//! `BPF_PROG_TEST_RUN` repeated a million times over one frame, the kernel's mean time per run;
//! for `scripts/bench-capture.sh`. The program is the verdict variant (`OnHit::ReturnTx`: the
//! rules, then `XDP_TX` with the frame untouched, sampled as a reflection when asked), since a
//! repeated run keeps the frame a run before it changed, and a reflection is no probe.
//!
//! Usage (root): `xdp_capture_cost [RUNS]` (default 5, the median of each printed). Variants,
//! over an ITO probe (reflected): no capture maps (a run that cannot capture); the maps, nothing
//! asked (a run with `--http` and no capture going); a capture of the rejected frames going; a
//! capture of everything at the default cap (10 000 a second: a million runs take a fraction of a
//! second, so nearly all are over the cap). And over a frame that is rejected: no capture; a
//! capture of the rejected frames at the default cap.

use std::os::fd::AsRawFd;
use std::path::Path;

use reflector_bpf::xdp::{CAPTURE_REFLECTED, CAPTURE_REJECTED, OnHit, program};
use reflector_io::tap::{FileSink, Tap, What};
use reflector_io::xdp::{GateMaps, KernelCapture, reflect_counters};
use reflector_sys::xdp::bpf;
use reflector_testkit::{Frame, default_filter};

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let probe = Frame::ito_v4().bytes();
    let mut rejected = probe.clone();
    rejected[0] ^= 0x02; // not our MAC
    let filter = default_filter();
    let variants: [(&str, &[u8], Option<What>); 6] = [
        ("probe, no capture maps", &probe, None),
        ("probe, nothing asked", &probe, Some(What::REJECTED).filter(|_| false)),
        ("probe, rejected asked", &probe, Some(What::REJECTED)),
        ("probe, all asked", &probe, Some(What::ALL)),
        ("reject, no capture maps", &rejected, None),
        ("reject, rejected asked", &rejected, Some(What::REJECTED)),
    ];
    let mut bases = [None, None];
    for (i, (name, frame, asked)) in variants.into_iter().enumerate() {
        let counters = reflect_counters().expect("a counters map (root?)");
        let gate = GateMaps::create().expect("the gate maps");
        gate.sync(&filter).expect("the maps filled");
        // Maps for every variant but the first of each frame.
        let maps = (i % 4 != 0).then(|| {
            KernelCapture::create(CAPTURE_REFLECTED | CAPTURE_REJECTED, 10_000).expect("the capture maps")
        });
        let (tap, thread) = Tap::start("bench").expect("a tap");
        if let (Some(maps), Some(what)) = (&maps, asked) {
            tap.add(Box::new(
                FileSink::create(Path::new("/dev/null"), "bench", what, None).expect("/dev/null"),
            ));
            maps.pump(&tap).expect("the flags written");
        }
        let insns = program(
            &filter.without_gate(),
            OnHit::ReturnTx,
            Some(counters.as_raw_fd()),
            Some(gate.fds()),
            maps.as_ref().map(KernelCapture::fds),
        )
        .expect("the program assembles");
        let prog = reflector_io::xdp::load_program(&insns, "capture_cost").unwrap_or_else(|e| panic!("{e}"));
        let mut times: Vec<u32> = (0..runs)
            .map(|_| bpf::prog_test_run_repeat(&prog, frame, 1_000_000).expect("a test run").1)
            .collect();
        times.sort_unstable();
        let median = times[times.len() / 2];
        let base = &mut bases[usize::from(i >= 4)];
        let above = base.map_or(String::new(), |b: u32| {
            format!(", {:+} ns against no capture maps", median as i64 - b as i64)
        });
        base.get_or_insert(median);
        if let Some(maps) = &maps {
            maps.pump(&tap).expect("the samples read");
        }
        thread.stop();
        println!("{name:<24} {median:4} ns per frame (runs: {times:?}){above}; {} instructions", insns.len());
    }
}
