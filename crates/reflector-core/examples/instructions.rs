//! The criterion benchmark's loop (`benches/classify.rs`) as a plain program, for counting
//! instructions under valgrind, which unlike wall-clock time does not move with the machine's
//! load: `scripts/bench-core-instructions.sh` runs it twice with different pass counts and
//! divides the difference by the frames processed.
//!
//! Usage: `instructions KIND PASSES`, KIND one of `v4` (the 60-byte ITO frame), `v6`, `vlan`,
//! `arp` (a broadcast ARP request), `tcp` (a TCP segment to us), `dns` (UDP to another port)
//! or `stamp` (a 44-byte STAMP request answered); one pass is 64 frames. As in the benchmark,
//! hits go through in batches of 64 frames in 2 KiB slots, rejects one frame at a time through
//! `black_box`, STAMP requests copied into their slot before each answer.

use std::hint::black_box;
use std::process::ExitCode;

use reflector_core::testing::with_stamping;
use reflector_core::{Filter, FilterConfig};
use reflector_testkit::{Frame, TESTER_MAC, default_filter, ordinary_traffic};

const BATCH: usize = 64;
const SLOT: usize = 2048;
/// The test port of the hit runs (see `main`).
const TEST_PORT: u16 = 7000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(Ok(passes))) = (args.get(1), args.get(2).map(|p| p.parse::<usize>())) else {
        eprintln!("usage: instructions v4|v6|vlan|arp|tcp|dns|stamp PASSES");
        return ExitCode::from(2);
    };
    if kind == "stamp" {
        stamp(passes);
        return ExitCode::SUCCESS;
    }
    let [arp, tcp, udp] = ordinary_traffic().map(|(_, frame)| frame);
    // Test packets to port 7000 (see below).
    let probe = Frame { dst_port: TEST_PORT, ..Frame::ito_v4() };
    let (frame, hits) = match kind.as_str() {
        "v4" => (probe.bytes(), true),
        "v6" => (Frame { ip: Frame::ito_v6().ip, ..probe }.bytes(), true),
        "vlan" => (Frame { vlans: vec![(0x8100, 100)], ..probe }.bytes(), true),
        "arp" => (arp, false),
        "tcp" => (tcp, false),
        "dns" => (udp, false),
        _ => {
            eprintln!("instructions: unknown kind '{kind}' (v4, v6, vlan, arp, tcp, dns, stamp)");
            return ExitCode::from(2);
        }
    };
    let there = default_filter();
    if !hits {
        let mut frame = frame;
        // The reason is kept from the optimizer, as criterion keeps a benchmark's result.
        with_stamping(|stamping| {
            for _ in 0..passes * BATCH {
                black_box(there.process(black_box(&mut frame), stamping).expect_err("a reject"));
            }
        });
        return ExitCode::SUCCESS;
    }
    // Reflected frames go back through a filter on the tester's side, as in the benchmark (in
    // mode all, the test port 7000: an answer from 3842 would be refused on the way back by
    // the loop guard).
    let there = reflector_testkit::filter_with(|c| c.port = TEST_PORT);
    let back = Filter::new(&FilterConfig { oui: None, port: 0, ..FilterConfig::new(TESTER_MAC) }).unwrap();
    let mut umem = vec![0u8; BATCH * SLOT];
    for slot in umem.chunks_mut(SLOT) {
        slot[..frame.len()].copy_from_slice(&frame);
    }
    let len = frame.len();
    let mut accepted = 0;
    with_stamping(|stamping| {
        for pass in 0..passes {
            let filter = if pass % 2 == 0 { &there } else { &back };
            for slot in black_box(&mut umem).chunks_mut(SLOT) {
                accepted +=
                    filter.process(&mut slot[..len], stamping).map_or(0, |h| 1 + h.signature() as usize);
            }
        }
    });
    assert_eq!(accepted, passes * BATCH);
    ExitCode::SUCCESS
}

/// The STAMP benchmark's loop: each slot gets the request again, then its answer.
fn stamp(passes: usize) {
    let filter = reflector_core::testing::stamp_filter(reflector_testkit::LOCAL_MAC);
    let request: [u8; 86] = Frame::stamp_v4(44).bytes().try_into().expect("86 bytes");
    let len = request.len();
    let mut umem = vec![0u8; BATCH * SLOT];
    let mut answered = 0;
    with_stamping(|stamping| {
        for _ in 0..passes {
            for slot in black_box(&mut umem).chunks_mut(SLOT) {
                let Some(frame) = slot.first_chunk_mut::<86>() else { continue };
                *frame = request;
                answered += filter.process(&mut frame[..len], stamping).is_ok() as usize;
            }
        }
    });
    assert_eq!(answered, passes * BATCH);
}
