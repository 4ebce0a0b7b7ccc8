//! The criterion benchmark's loop (`benches/classify.rs`) as a plain program, for counting
//! instructions under valgrind, which unlike wall-clock time does not move with the machine's
//! load: `scripts/bench-core-instructions.sh` runs it twice with different pass counts and
//! divides the difference by the frames processed.
//!
//! Usage: `instructions KIND PASSES`, KIND one of `v4` (the 60-byte ITO frame), `v6`, `vlan`,
//! `arp` (a broadcast ARP request), `tcp` (a TCP segment to us), `dns` (UDP to another port),
//! `stamp` (a 44-byte STAMP request answered) or `refill` (the copy alone: the 60-byte ITO frame
//! put into every slot); one pass is 64 frames. As in the benchmark, hits go through in batches
//! of 64 frames in 2 KiB slots (the default filter; every slot gets the request again before the
//! batch is processed, a copy the count includes, as the benchmark's time does), rejects one
//! frame at a time through `black_box`.

use std::hint::black_box;
use std::process::ExitCode;

use reflector_core::testing::with_stamping;
use reflector_testkit::{Frame, default_filter, ordinary_traffic};

const BATCH: usize = 64;
const SLOT: usize = 2048;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(Ok(passes))) = (args.get(1), args.get(2).map(|p| p.parse::<usize>())) else {
        eprintln!("usage: instructions v4|v6|vlan|arp|tcp|dns|stamp|refill PASSES");
        return ExitCode::from(2);
    };
    if kind == "stamp" {
        stamp(passes);
        return ExitCode::SUCCESS;
    }
    if kind == "refill" {
        let request: [u8; 60] = Frame::ito_v4().bytes().try_into().expect("60 bytes");
        let mut umem = vec![0u8; BATCH * SLOT];
        for _ in 0..passes {
            refill(&mut umem, &request);
        }
        return ExitCode::SUCCESS;
    }
    let [arp, tcp, udp] = ordinary_traffic().map(|(_, frame)| frame);
    let (frame, hits) = match kind.as_str() {
        "v4" => (Frame::ito_v4().bytes(), true),
        "v6" => (Frame::ito_v6().bytes(), true),
        "vlan" => (Frame { vlans: vec![(0x8100, 100)], ..Frame::ito_v4() }.bytes(), true),
        "arp" => (arp, false),
        "tcp" => (tcp, false),
        "dns" => (udp, false),
        _ => {
            eprintln!("instructions: unknown kind '{kind}' (v4, v6, vlan, arp, tcp, dns, stamp, refill)");
            return ExitCode::from(2);
        }
    };
    let filter = default_filter();
    if !hits {
        let mut frame = frame;
        // The reason is kept from the optimizer, as criterion keeps a benchmark's result.
        with_stamping(|stamping| {
            for _ in 0..passes * BATCH {
                black_box(filter.process(black_box(&mut frame), stamping).expect_err("a reject"));
            }
        });
        return ExitCode::SUCCESS;
    }
    match frame.len() {
        60 => batches::<60>(&frame, &filter, passes),
        64 => batches::<64>(&frame, &filter, passes),
        80 => batches::<80>(&frame, &filter, passes),
        n => unreachable!("no hit frame of {n} bytes here"),
    }
    ExitCode::SUCCESS
}

/// Puts `request` into every slot of the batch, as the benchmark's `refill`.
#[inline(never)]
fn refill<const N: usize>(umem: &mut [u8], request: &[u8; N]) {
    for slot in black_box(umem).chunks_mut(SLOT) {
        if let Some(frame) = slot.first_chunk_mut::<N>() {
            *frame = *request;
        }
    }
}

/// The hit benchmark's loop: the batch refilled, then every frame processed.
fn batches<const N: usize>(frame: &[u8], filter: &reflector_core::Filter, passes: usize) {
    let request: [u8; N] = frame.try_into().expect("N bytes");
    let mut umem = vec![0u8; BATCH * SLOT];
    let mut accepted = 0;
    with_stamping(|stamping| {
        for _ in 0..passes {
            refill(&mut umem, &request);
            for slot in black_box(&mut umem).chunks_mut(SLOT) {
                accepted +=
                    filter.process(&mut slot[..N], stamping).map_or(0, |h| 1 + h.signature() as usize);
            }
        }
    });
    assert_eq!(accepted, passes * BATCH);
}

/// The STAMP benchmark's loop: the batch refilled, then every request answered.
fn stamp(passes: usize) {
    let filter = reflector_core::testing::stamp_filter(reflector_testkit::LOCAL_MAC);
    let request: [u8; 86] = Frame::stamp_v4(44).bytes().try_into().expect("86 bytes");
    let mut umem = vec![0u8; BATCH * SLOT];
    let mut answered = 0;
    with_stamping(|stamping| {
        for _ in 0..passes {
            refill(&mut umem, &request);
            for slot in black_box(&mut umem).chunks_mut(SLOT) {
                answered += filter.process(&mut slot[..86], stamping).is_ok() as usize;
            }
        }
    });
    assert_eq!(answered, passes * BATCH);
}
