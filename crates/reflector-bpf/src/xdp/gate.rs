//! The gate: the allow and deny lists, the rate limits and the testers table, in maps that
//! userspace writes (`GateMaps`).

use reflector_core::Reject;
use reflector_core::access::Verdict;
use reflector_core::wire::VLAN_TPIDS;

use crate::ebpf::*;

use super::generator::*;
use super::layout::*;
use super::maps::*;

/// The allow and deny lists, then the rate limits and the testers table, from the maps of
/// `gate`, as the core's `listed`, `Limiter::admit` and `Testers::record` judge and record: a
/// source MAC on the deny list, or an IP whose most specific listed prefix is a deny entry, is
/// `src_denied`; with an allow list, a source neither names is `src_not_allowed`; then the
/// source's bucket (in its row of the testers table) and the total's (the generic cell rate
/// algorithm, updated without locks) may say `rate_limited`; the row counts the packet either
/// way. Each table is looked at only when the flags say it holds something. On entry r4 is the
/// IP header (kept on the stack across the helper calls and restored on the way out), r7 the
/// Ethernet header (either perhaps their copies: `Gen::shift`); r8 holds the tester's row in
/// here and is data_end again on the way out.
pub(super) fn gate(a: &mut Asm, maps: GateMaps, r: &dyn Fn(Reject) -> Label) {
    let done = a.label();
    a.store(Size::DW, R10, GATE_IP_SLOT, R4);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 0);
    a.load_map_fd(R1, maps.config_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, GATE_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, done);
    a.load(Size::W, R1, R0, 0);
    a.jump_imm(Cond::Eq, R1, 0, done);
    a.store(Size::W, R10, GATE_FLAGS_SLOT, R1);
    for word in 0..4i16 {
        a.load(Size::DW, R1, R0, 8 + 8 * word);
        a.store(Size::DW, R10, GATE_LIMITS_SLOT + 8 * word, R1);
    }
    a.store_imm(Size::W, R10, GATE_ALLOWED_SLOT, 0);
    let (limits, by_ip, no_ip, v6, lookup_ip) = (a.label(), a.label(), a.label(), a.label(), a.label());
    flag_clear(a, GATE_LISTS, limits);
    // The source MAC (6 bytes and 2 zero ones), when MACs are listed.
    flag_clear(a, GATE_MACS, by_ip);
    a.store_imm(Size::DW, R10, GATE_KEY_SLOT, 0);
    a.load(Size::W, R1, R7, 6);
    a.store(Size::W, R10, GATE_KEY_SLOT, R1);
    a.load(Size::H, R1, R7, 10);
    a.store(Size::H, R10, GATE_KEY_SLOT + 4, R1);
    a.load_map_fd(R1, maps.macs_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, GATE_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, by_ip);
    a.load(Size::W, R1, R0, 0);
    a.jump_imm(Cond::Eq, R1, Verdict::Deny as i32, r(Reject::SrcDenied));
    a.store_imm(Size::W, R10, GATE_ALLOWED_SLOT, 1);
    // The source IP, as the longest prefix a trie holds for it, when prefixes of its version
    // are listed.
    a.place(by_ip);
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    flag_clear(a, GATE_V4, no_ip);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 32);
    a.load(Size::W, R1, R4, 12);
    a.store(Size::W, R10, GATE_KEY_SLOT + 4, R1);
    a.load_map_fd(R1, maps.v4_fd);
    a.goto(lookup_ip);
    a.place(v6);
    flag_clear(a, GATE_V6, no_ip);
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 128);
    for word in 0..4i16 {
        a.load(Size::W, R1, R4, 8 + 4 * word);
        a.store(Size::W, R10, GATE_KEY_SLOT + 4 + 4 * word, R1);
    }
    a.load_map_fd(R1, maps.v6_fd);
    a.place(lookup_ip);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, GATE_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, no_ip);
    a.load(Size::W, R1, R0, 0);
    a.jump_imm(Cond::Eq, R1, Verdict::Deny as i32, r(Reject::SrcDenied));
    a.goto(limits);
    a.place(no_ip);
    flag_clear(a, GATE_ALLOW, limits);
    a.load(Size::W, R1, R10, GATE_ALLOWED_SLOT);
    a.jump_imm(Cond::Eq, R1, 0, r(Reject::SrcNotAllowed));

    // The source's row of the testers table, whose bucket the per-source limit takes; then the
    // total's bucket; then the row counts the packet. Without a per-source limit the row is
    // this CPU's (plain stores); with one, or when this CPU's row is another source's, it is
    // the shared table's (made when it has none; counted with atomics).
    a.place(limits);
    let (shared, have_row, shared_limited, total) = (a.label(), a.label(), a.label(), a.label());
    flag_clear(a, GATE_SOURCE_LIMIT | GATE_TOTAL_LIMIT | GATE_TESTERS, done);
    // When a tester was seen, in jiffies: reading a clock costs a probe 12 ns (the coarse one;
    // 29 the exact one), the tick count next to nothing, and userspace turns ticks into time
    // (`JiffyClock`). The buckets' time, exact, only with a limit; without, the slot holds the
    // jiffies too (unread then, and one kind of value either way, which keeps the verifier's
    // states few).
    let untimed = a.label();
    a.call(BPF_FUNC_JIFFIES64);
    a.store(Size::DW, R10, GATE_SEEN_SLOT, R0);
    flag_clear(a, GATE_SOURCE_LIMIT | GATE_TOTAL_LIMIT, untimed);
    a.call(BPF_FUNC_KTIME_GET_NS);
    a.place(untimed);
    a.store(Size::DW, R10, GATE_NOW_SLOT, R0);
    tester_key(a);
    flag_set(a, GATE_SOURCE_LIMIT, shared);
    cpu_row(a, maps.testers_cpu_fd, shared);
    a.mov(R8, R0);
    let cpu_limited = a.label();
    total_and_count(a, maps, Row::ThisCpu, cpu_limited, r, done);

    a.place(shared);
    let lookup_row = |a: &mut Asm| {
        a.load_map_fd(R1, maps.testers_fd);
        a.mov(R2, R10);
        a.alu_imm(Alu::Add, R2, TESTER_KEY_SLOT as i32);
        a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    };
    lookup_row(a);
    a.jump_imm(Cond::Ne, R0, 0, have_row);
    // A new row: no packets yet, first seen now, a full bucket (its time now). Made only
    // where none is (a racing CPU's stands), then looked up.
    for at in (0..TESTER_VALUE_LEN as i16).step_by(8) {
        a.store_imm(Size::DW, R10, TESTER_VALUE_SLOT + at, 0);
    }
    a.load(Size::DW, R1, R10, GATE_SEEN_SLOT);
    a.store(Size::DW, R10, TESTER_VALUE_SLOT + 24, R1);
    a.load(Size::DW, R1, R10, GATE_NOW_SLOT);
    a.store(Size::DW, R10, TESTER_VALUE_SLOT + 56, R1);
    a.load_map_fd(R1, maps.testers_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, TESTER_KEY_SLOT as i32);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, TESTER_VALUE_SLOT as i32);
    a.mov_imm(R4, BPF_NOEXIST);
    a.call(BPF_FUNC_MAP_UPDATE_ELEM);
    lookup_row(a);
    // No row even now (the table cannot take one): the packet goes on unlimited and
    // unrecorded, as the core's overflow would not let it; it cannot happen with an LRU map.
    a.jump_imm(Cond::Eq, R0, 0, done);
    // The row is kept in r8 (data_end is not needed in here, and is read again on the way
    // out): a pointer spilled to the stack costs a speculation barrier without CAP_PERFMON.
    a.place(have_row);
    a.mov(R8, R0);
    flag_clear(a, GATE_SOURCE_LIMIT, total);
    a.mov(R0, R8);
    a.alu_imm(Alu::Add, R0, 56);
    take_bucket(a, GATE_LIMITS_SLOT, shared_limited, total);
    a.place(total);
    total_and_count(a, maps, Row::Shared, shared_limited, r, done);
    a.place(done);
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.load(Size::W, R8, R6, 4);
}

/// Whose row r8 points to: this CPU's (plain stores) or the shared table's (atomic adds).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    ThisCpu,
    Shared,
}

/// The total's bucket (when a total limit is set), then the packet counted in the row r8
/// points to: on to `done` when answered; placing `limited`, where a limit that says no
/// jumps, the packet counted as limited and on to the `rate_limited` reject.
fn total_and_count(
    a: &mut Asm,
    maps: GateMaps,
    row: Row,
    limited: Label,
    r: &dyn Fn(Reject) -> Label,
    done: Label,
) {
    let answered = a.label();
    flag_clear(a, GATE_TOTAL_LIMIT, answered);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 0);
    lookup(a, maps.total_fd, GATE_KEY_SLOT, answered);
    take_bucket(a, GATE_LIMITS_SLOT + 16, limited, answered);
    a.place(limited);
    count_in_row(a, false, row);
    a.goto(r(Reject::RateLimited));
    a.place(answered);
    count_in_row(a, true, row);
    a.goto(done);
}

/// This CPU's row for the key at its slot, in r0 (its value): the row the key hashes to,
/// claimed when empty (the key and the first-seen time written); on to `other` when it holds
/// another source. Uses r0-r2.
fn cpu_row(a: &mut Asm, map_fd: i32, other: Label) {
    let (mismatch, mine) = (a.label(), a.label());
    let key = TESTER_KEY_SLOT;
    // The row `tester_slot` names: a multiplicative hash of the key's 20 bytes folded to 32
    // bits, whose top bits pick the row.
    a.load(Size::DW, R1, R10, key);
    a.load(Size::DW, R2, R10, key + 8);
    a.alu_reg(Alu::Xor, R1, R2);
    a.load(Size::W, R2, R10, key + 16);
    a.alu_reg(Alu::Xor, R1, R2);
    a.mov(R2, R1);
    a.alu_imm(Alu::Rsh, R2, 32);
    a.alu_reg(Alu::Xor, R1, R2);
    a.alu_imm(Alu::Mul, R1, TESTER_HASH as i32);
    a.alu_imm(Alu::Rsh, R1, 32 - TESTER_SLOTS.trailing_zeros() as i32);
    a.alu_imm(Alu::And, R1, TESTER_SLOTS as i32 - 1);
    // (The key slot again: it costs a speculation barrier without CAP_PERFMON, since it held
    // the configuration's key, but a slot of its own made the verifier walk the reflecting
    // program past its million instructions.)
    a.store(Size::W, R10, GATE_KEY_SLOT, R1);
    lookup(a, map_fd, GATE_KEY_SLOT, other);
    for (at, size) in [(0, Size::DW), (8, Size::DW), (16, Size::W)] {
        a.load(size, R1, R0, at);
        a.load(size, R2, R10, key + at);
        a.jump_reg(Cond::Ne, R1, R2, mismatch);
    }
    a.goto(mine);
    // Another source's, or empty (an all-zero key and nothing counted yet).
    a.place(mismatch);
    a.load(Size::DW, R1, R0, 0);
    a.load(Size::DW, R2, R0, 8);
    a.alu_reg(Alu::Or, R1, R2);
    a.load(Size::W, R2, R0, 16);
    a.alu_reg(Alu::Or, R1, R2);
    a.jump_imm(Cond::Ne, R1, 0, other);
    for (at, size) in [(0, Size::DW), (8, Size::DW), (16, Size::W)] {
        a.load(size, R1, R10, key + at);
        a.store(size, R0, at, R1);
    }
    a.load(Size::DW, R1, R10, GATE_SEEN_SLOT);
    a.store(Size::DW, R0, TESTER_ROW_VALUE as i16 + 24, R1);
    a.place(mine);
    a.alu_imm(Alu::Add, R0, TESTER_ROW_VALUE as i32);
}

/// `if flags & flag goto to`, the flags from their stack slot. Uses r1.
fn flag_set(a: &mut Asm, flag: u32, to: Label) {
    a.load(Size::W, R1, R10, GATE_FLAGS_SLOT);
    a.alu_imm(Alu::And, R1, flag as i32);
    a.jump_imm(Cond::Ne, R1, 0, to);
}

/// `if !(flags & flag) goto to`, the flags from their stack slot. Uses r1.
pub(super) fn flag_clear(a: &mut Asm, flag: u32, to: Label) {
    a.load(Size::W, R1, R10, GATE_FLAGS_SLOT);
    a.alu_imm(Alu::And, R1, flag as i32);
    a.jump_imm(Cond::Eq, R1, 0, to);
}

/// The testers table's key at its slot: the frame's source address (IPv4 as
/// `::ffff:a.b.c.d`), from the IP header kept in its slot, then the outer VLAN ID (a tag's TCI
/// follows a TPID at 12: the tags were walked, so the frame, or the copy r7 points to, holds
/// it) and 2 zero bytes. Uses r0-r2, r4.
pub(super) fn tester_key(a: &mut Asm) {
    let (v6, vlan, tagged, untagged) = (a.label(), a.label(), a.label(), a.label());
    let slot = TESTER_KEY_SLOT;
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    a.store_imm(Size::DW, R10, slot, 0);
    a.store_imm(Size::W, R10, slot + 8, le32([0, 0, 0xff, 0xff]) as i32);
    a.load(Size::W, R1, R4, 12);
    a.store(Size::W, R10, slot + 12, R1);
    a.goto(vlan);
    a.place(v6);
    for word in 0..4i16 {
        a.load(Size::W, R1, R4, 8 + 4 * word);
        a.store(Size::W, R10, slot + 4 * word, R1);
    }
    a.place(vlan);
    a.mov_imm(R1, 0);
    a.load(Size::H, R0, R7, 12);
    for tpid in VLAN_TPIDS {
        a.jump32_imm(Cond::Eq, R0, le16(tpid.to_be_bytes()), tagged);
    }
    a.goto(untagged);
    a.place(tagged);
    a.load(Size::H, R1, R7, 14);
    a.to_be(R1, 16);
    a.alu_imm(Alu::And, R1, 0x0fff);
    a.place(untagged);
    a.store(Size::W, R10, slot + 16, R1);
}

/// The packet counted in the source's row (its pointer in r8): answered (1 packet and its
/// bytes) or limited, with atomic adds in a shared row and plain ones in this CPU's; the time,
/// its MAC and its signature's bit written. Uses r0-r2.
fn count_in_row(a: &mut Asm, answered: bool, row: Row) {
    let after = a.label();
    a.mov(R0, R8);
    a.jump_imm(Cond::Eq, R0, 0, after);
    let add = |a: &mut Asm, at: i16| match row {
        Row::Shared => a.atomic_fetch_add(Size::DW, R0, at, R1),
        Row::ThisCpu => {
            a.load(Size::DW, R2, R0, at);
            a.alu_reg(Alu::Add, R2, R1);
            a.store(Size::DW, R0, at, R2);
        }
    };
    a.mov_imm(R1, 1);
    if answered {
        add(a, 0);
        a.load(Size::DW, R1, R10, FRAME_LEN_SLOT);
        add(a, 8);
    } else {
        add(a, 16);
    }
    a.load(Size::DW, R1, R10, GATE_SEEN_SLOT);
    a.store(Size::DW, R0, 32, R1);
    a.load(Size::W, R1, R7, 6);
    a.store(Size::W, R0, 40, R1);
    a.load(Size::H, R1, R7, 10);
    a.store(Size::H, R0, 44, R1);
    a.load(Size::W, R2, R10, SIGNATURE_SLOT);
    a.alu_imm(Alu::And, R2, 31);
    a.mov_imm(R1, 1);
    a.alu_reg(Alu::Lsh, R1, R2);
    a.load(Size::W, R2, R0, 48);
    a.alu_reg(Alu::Or, R1, R2);
    a.store(Size::W, R0, 48, R1);
    a.place(after);
}

/// The bucket whose time r0 points to, taken for a packet at the time in its slot with the
/// interval and tolerance at `limits` and `limits + 8` (the core's `Rate::take`): on to
/// `limited` when it is too far ahead, else moved one interval on and on to `next`. Uses r1-r5.
pub(super) fn take_bucket(a: &mut Asm, limits: i16, limited: Label, next: Label) {
    let fresh = a.label();
    a.load(Size::DW, R1, R0, 0);
    a.load(Size::DW, R2, R10, GATE_NOW_SLOT);
    a.load(Size::DW, R3, R10, limits);
    a.load(Size::DW, R4, R10, limits + 8);
    a.jump_reg(Cond::Le, R1, R2, fresh);
    a.mov(R5, R1);
    a.alu_reg(Alu::Sub, R5, R2);
    // Further ahead than any packet could have put it (the clock went back): from now.
    a.alu_reg(Alu::Add, R4, R3);
    a.jump_reg(Cond::Gt, R5, R4, fresh);
    a.alu_reg(Alu::Sub, R4, R3);
    a.jump_reg(Cond::Gt, R5, R4, limited);
    a.alu_reg(Alu::Add, R1, R3);
    a.store(Size::DW, R0, 0, R1);
    a.goto(next);
    a.place(fresh);
    a.alu_reg(Alu::Add, R2, R3);
    a.store(Size::DW, R0, 0, R2);
    a.goto(next);
}

/// A program that writes the kernel's jiffies and CLOCK_MONOTONIC, read one after the other,
/// into entry 0 of `map_fd` (an array of 16-byte values: two native-endian `u64`), for
/// userspace to run with `BPF_PROG_TEST_RUN` and learn how the testers table's times
/// ([`GateMaps::testers_fd`]) are to be read. Returns `XDP_PASS`.
pub fn jiffies_sampler(map_fd: i32) -> Vec<Insn> {
    let mut a = Asm::default();
    let done = a.label();
    a.call(BPF_FUNC_JIFFIES64);
    a.store(Size::DW, R10, -16, R0);
    a.call(BPF_FUNC_KTIME_GET_NS);
    a.store(Size::DW, R10, -8, R0);
    a.store_imm(Size::W, R10, -20, 0);
    a.load_map_fd(R1, map_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, -20);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, done);
    for at in [0, 8] {
        a.load(Size::DW, R1, R10, -16 + at);
        a.store(Size::DW, R0, at, R1);
    }
    a.place(done);
    a.mov_imm(R0, XDP_PASS);
    a.exit();
    a.finish().expect("a straight program assembles")
}
