//! What the lists, the limits and the testers table cost in the XDP program, measured in the
//! kernel without a network: the verdict variant of the program (`OnHit::ReturnTx`: the rules,
//! then `XDP_TX` with the frame untouched) over one ITO probe, `BPF_PROG_TEST_RUN` repeated a
//! million times, the kernel's mean time per run; for `scripts/bench-lab.sh`.
//!
//! Usage (root): `xdp_gate_cost [RUNS]` (default 5, the median of each printed). Variants:
//! no gate maps at all; the maps with nothing listed (the testers table only, what every run
//! has); a 2-entry allow and a 2-entry deny list of IPv4 prefixes; a per-source limit, a total
//! limit, and both (high enough that every run passes); lists and limits. Each line also gives
//! the program's size: the instructions we generate, and as the kernel keeps it (after the
//! verifier's rewriting, and as machine code).

use std::os::fd::AsRawFd;

use reflector_bpf::xdp::{OnHit, XDP_TX, program};
use reflector_core::limit::Rate;
use reflector_io::xdp::{GateMaps, reject_counters};
use reflector_sys::xdp::bpf;
use reflector_testkit::{Frame, filter_with, sources};

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let frame = Frame::ito_v4().bytes();
    let (allow, deny) =
        (sources(&["192.0.2.0/24", "198.51.100.0/24"]), sources(&["192.0.2.66", "203.0.113.0/24"]));
    let fast = Rate::new(u32::MAX, 1000);
    let variants: [(&str, Option<reflector_core::Filter>); 7] = [
        ("no gate", None),
        ("testers only", Some(filter_with(|_| {}))),
        ("lists", Some(filter_with(|c| (c.allow, c.deny) = (allow, deny)))),
        ("source limit", Some(filter_with(|c| c.source_limit = fast))),
        ("total limit", Some(filter_with(|c| c.total_limit = fast))),
        ("limits", Some(filter_with(|c| (c.source_limit, c.total_limit) = (fast, fast)))),
        (
            "lists and limits",
            Some(filter_with(|c| {
                (c.allow, c.deny) = (allow, deny);
                (c.source_limit, c.total_limit) = (fast, fast);
            })),
        ),
    ];
    let counters = reject_counters().expect("a counters map (root?)");
    let mut base = None;
    for (name, gated) in variants {
        let gate = GateMaps::create().expect("the gate maps");
        let filter = gated.clone().unwrap_or_else(|| filter_with(|_| {}));
        gate.sync(&filter).expect("the maps filled");
        let maps = gated.is_some().then(|| gate.fds());
        let insns = program(&filter.without_gate(), OnHit::ReturnTx, Some(counters.as_raw_fd()), maps, None)
            .expect("the program assembles");
        // As a run loads it: with the prologue when CAP_PERFMON is not held.
        let insns = reflector_io::xdp::as_this_process_loads(insns);
        let prog = reflector_io::xdp::load_program(&insns, "gate_cost").unwrap_or_else(|e| panic!("{e}"));
        let mut times: Vec<u32> = (0..runs)
            .map(|_| {
                let (run, ns) = bpf::prog_test_run_repeat(&prog, &frame, 1_000_000).expect("a test run");
                assert_eq!(run.action as i32, XDP_TX, "{name}: the probe is a test packet");
                ns
            })
            .collect();
        times.sort_unstable();
        let median = times[times.len() / 2];
        let above = base
            .map_or(String::new(), |b: u32| format!(", {:+} ns against no gate", median as i64 - b as i64));
        base.get_or_insert(median);
        let sizes = bpf::prog_sizes(&prog).expect("the program's sizes");
        println!(
            "{name:<18} {median:4} ns per frame (runs: {times:?}){above}; {} instructions, xlated {} B, jited {} B",
            insns.len(),
            sizes.xlated,
            sizes.jited
        );
        if gated.is_some() {
            let started = std::time::Instant::now();
            let rows = gate.testers().expect("the testers table read");
            let hz = gate.jiffy_clock().hz();
            println!(
                "{:<18} the testers table read in {:?} ({} rows; ticks {hz} Hz)",
                "",
                started.elapsed(),
                rows.len()
            );
        }
    }
}
