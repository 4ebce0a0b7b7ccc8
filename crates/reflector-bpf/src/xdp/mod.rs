//! The XDP program, generated for one configuration.
//!
//! It applies the packet rules of the core (`docs/PACKET-RULES.md`) to every frame in the
//! driver and hands exactly the frames the core would reflect to the AF_XDP socket of their
//! receive queue (`bpf_redirect_map(xsks, rx_queue_index, XDP_PASS)`); everything else, and
//! every frame of a queue without a socket, goes on to the kernel stack. The configuration
//! (our MAC, port, OUI, signatures) is baked in as immediates.
//!
//! The checks mirror `classify` one for one and in the same order, so a rejected frame is
//! counted under the same reason the core would give (in a per-CPU array that userspace adds
//! to its counters). A test runs the corpus and random frames through the kernel
//! (`BPF_PROG_TEST_RUN`) and compares every verdict and every reason with the core's.
//!
//! The generator follows the same stages as `classify`, a module each, in the order a frame
//! meets them: `parse` (the context, Ethernet, VLAN tags, IPv4 or IPv6, UDP), `signatures`
//! (ITO, RFC 2544, Y.1564, custom, the OUI), `checks` (the late checks and the loop rule),
//! `gate` (lists, limits, testers), `stamp` (STAMP / TWAMP-Light), `reflect` (what the frame
//! ends with) and `capture` (sampling). They share `generator` (the program being generated,
//! `Gen`, and small tools), `layout` (the registers' roles and every stack slot with the stages
//! it is live in, checked for overlaps when the crate compiles) and `maps` (what userspace
//! shares with the programs). Every load is preceded by a check against data_end that the
//! verifier can follow; comparisons with r5 are the rules' own length checks.
//!
//! The programs load with CAP_BPF and CAP_NET_ADMIN alone: without CAP_PERFMON the verifier's
//! Spectre rules let a packet pointer move only by constants (never by a register), refuse
//! subtracting pointers and reading stack never written, and follow mispredicted branches too.
//! So lengths are compared as numbers (the frame's from `bpf_xdp_get_buff_len`); the tags are
//! walked with constant steps, each number of them a path of its own for the verifier; IPv6
//! extension headers are read with `bpf_xdp_load_bytes`; and a UDP header behind IPv4 options or
//! extension headers is brought to a constant offset by moving the frame's start on
//! (`bpf_xdp_adjust_head`), the headers before it kept in copies on the stack until the start
//! is put back (`Gen::shift`, `Gen::restore`).

mod capture;
mod checks;
mod gate;
mod generator;
mod layout;
mod maps;
mod parse;
mod reflect;
mod signatures;
mod stamp;

use reflector_core::{Filter, Reject};

use crate::ebpf::*;

pub use gate::jiffies_sampler;
use generator::*;
pub use maps::*;

/// `insns` (a program of [`program`]) with a prologue for a verifier without CAP_PERFMON, which
/// puts a speculation barrier (`lfence` on x86) after every store to stack it has not seen
/// written on some way there (Spectre v4): dozens a frame, 2.5 times the program's time
/// (`xdp_gate_cost`). A helper that may write the whole stack makes every byte of it written
/// for the verifier first: `bpf_xdp_load_bytes` into all 512 bytes from an offset past any
/// frame, which it refuses at once, copying nothing. The call costs what a helper call costs,
/// so a loader that holds CAP_PERFMON (no barriers) does without it. Jumps are relative, so
/// the program after it is unchanged; it uses r1-r6, which the program sets afresh.
pub fn mark_stack_written(insns: Vec<Insn>) -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov(R6, R1);
    a.mov_imm(R4, 512);
    a.mov_imm(R2, -1);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, -512);
    a.call(BPF_FUNC_XDP_LOAD_BYTES);
    a.mov(R1, R6);
    let mut out = a.finish().expect("a straight prologue assembles");
    out.extend(insns);
    out
}

/// The program for `filter`. With `counters_fd` (a per-CPU array of `u64` with
/// [`Reject::COUNT`] entries), every rejected frame increments the entry of its reason, the
/// same reason the core gives, so the counters say why even though rejected frames never
/// reach userspace.
///
/// `None` when the program cannot be had: a jump too far, or [`OnHit::Reflect`] without the
/// STAMP maps for a filter that answers STAMP.
///
/// With `gate`, a test packet then meets the allow and deny lists and the rate limits those
/// maps hold ([`GateMaps`]); the filter's own lists and limits are not looked at (userspace
/// writes them into the maps).
pub fn program(
    filter: &Filter,
    on_hit: OnHit,
    counters_fd: Option<i32>,
    gate_maps: Option<GateMaps>,
    capture: Option<CaptureMaps>,
) -> Option<Vec<Insn>> {
    let stamp_answer = match on_hit {
        OnHit::Reflect { stamp } if filter.stamp_port().is_some() => Some(stamp?),
        _ => None,
    };
    let mut a = Asm::default();
    let reasons = Reject::ALL.iter().map(|_| a.label()).collect();
    let count_hits = matches!(on_hit, OnHit::Reflect { .. }) && counters_fd.is_some();
    let stamp_meta =
        matches!(on_hit, OnHit::Redirect { receive_time: true, .. }) && filter.stamp_port().is_some();
    // Samples need the counters' reject code.
    let capture = capture.filter(|_| counters_fd.is_some()).map(|c| (c, a.label()));
    let signatures = count_hits || gate_maps.is_some() || capture.is_some();
    let mut g =
        Gen { a, filter, reasons, count_hits, signatures, stamp_meta, stamp_answer, counters_fd, capture };
    let (v4, v6, shift, udp, hit) = (g.a.label(), g.a.label(), g.a.label(), g.a.label(), g.a.label());
    g.context();
    g.ethernet();
    g.vlan_and_ethertype(v4, v6);
    g.a.place(v4);
    g.ipv4(udp, shift);
    g.a.place(v6);
    g.ipv6(udp, shift);
    g.a.place(shift);
    g.shift(udp);
    g.a.place(udp);
    g.udp(hit);
    g.signatures_and_oui(hit)?;
    g.a.place(hit);
    let reasons = g.reasons.clone();
    checks::late_checks(&mut g.a, filter, &|reason| reasons[reason as usize]);
    if let Some(maps) = gate_maps {
        gate::gate(&mut g.a, maps, &|reason| reasons[reason as usize]);
    }
    g.on_hit(on_hit, counters_fd);
    g.rejected(counters_fd);
    g.sample();
    g.a.finish()
}
