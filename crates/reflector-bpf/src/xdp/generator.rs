//! The program being generated ([`Gen`]: the assembler, the filter, the choices that shape
//! the program) and the small tools every stage uses: bounds checks, counters, checksum folds,
//! copies, the helpers' numbers.

use reflector_core::wire::{ETH_HEADER_LEN, MAX_VLAN_TAGS, VLAN_TAG_LEN};
use reflector_core::{Filter, Reject};

use crate::ebpf::*;

use super::layout::*;
use super::maps::*;

/// `BPF_FUNC_redirect_map`.
pub(super) const BPF_FUNC_REDIRECT_MAP: i32 = 51;

pub(super) const BPF_FUNC_XDP_LOAD_BYTES: i32 = 189;

/// `BPF_FUNC_ktime_get_ns`.
pub(super) const BPF_FUNC_KTIME_GET_NS: i32 = 5;

/// `BPF_FUNC_jiffies64`: the kernel's tick count (a load, where a clock read costs ~12 ns).
pub(super) const BPF_FUNC_JIFFIES64: i32 = 118;

/// `BPF_NOEXIST`: a map update that only creates.
pub(super) const BPF_NOEXIST: i32 = 1;

/// `BPF_FUNC_map_lookup_elem`.
pub(super) const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;

/// `BPF_FUNC_map_update_elem`.
pub(super) const BPF_FUNC_MAP_UPDATE_ELEM: i32 = 2;

/// `BPF_FUNC_xdp_get_buff_len`.
pub(super) const BPF_FUNC_XDP_GET_BUFF_LEN: i32 = 188;

pub(super) fn le16(bytes: [u8; 2]) -> u32 {
    u16::from_le_bytes(bytes) as u32
}

pub(super) fn le32(bytes: [u8; 4]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// Emits `if cursor + n > bound goto fail` for one or more bounds.
pub(super) fn need(a: &mut Asm, base: Reg, n: i32, bounds: &[Reg], fail: Label) {
    a.mov(R2, base);
    a.alu_imm(Alu::Add, R2, n);
    for b in bounds {
        a.jump_reg(Cond::Gt, R2, *b, fail);
    }
}

/// `BPF_FUNC_xdp_adjust_tail`.
pub(super) const BPF_FUNC_XDP_ADJUST_TAIL: i32 = 65;

/// `BPF_FUNC_xdp_store_bytes`.
pub(super) const BPF_FUNC_XDP_STORE_BYTES: i32 = 190;

/// `BPF_FUNC_ktime_get_tai_ns`.
pub(super) const BPF_FUNC_KTIME_GET_TAI_NS: i32 = 208;

/// `BPF_FUNC_xdp_adjust_head`.
pub(super) const BPF_FUNC_XDP_ADJUST_HEAD: i32 = 44;

/// `XDP_ABORTED`: what a frame gets whose start cannot be put back (it cannot happen).
pub(super) const XDP_ABORTED: i32 = 0;

/// The program being generated: the assembler, the filter, and one label per reject reason
/// (`r0 = reason; goto count`, or straight to pass without counters).
pub(super) struct Gen<'a> {
    pub(super) a: Asm,
    pub(super) filter: &'a Filter,
    pub(super) reasons: Vec<Label>,
    /// Hits are counted per signature (the reflecting program with counters).
    pub(super) count_hits: bool,
    /// A hit keeps its signature in its stack slot (for the counters, or the testers table).
    pub(super) signatures: bool,
    /// STAMP requests get their receive time as metadata (the redirecting program, STAMP on).
    pub(super) stamp_meta: bool,
    /// STAMP requests are answered in full with these maps (the reflecting program, STAMP on).
    pub(super) stamp_answer: Option<StampMaps>,
    /// The counters map, when there is one.
    pub(super) counters_fd: Option<i32>,
    /// Frames are sampled for a capture into these maps, by the block at this label.
    pub(super) capture: Option<(CaptureMaps, Label)>,
}

/// r0 = the entry of map `fd` whose key is at stack `slot`; on to `missing` when there is
/// none. Uses r1, r2.
pub(super) fn lookup(a: &mut Asm, fd: i32, slot: i16, missing: Label) {
    a.load_map_fd(R1, fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, slot as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, missing);
}

/// Adds 1, or `value` (a register the helper call keeps: r6-r9), to the entry of the
/// per-CPU counters map `fd` whose index is in r0.
pub(super) fn add_to(a: &mut Asm, fd: i32, value: Option<Reg>) {
    let skip = a.label();
    a.store(Size::W, R10, COUNTER_KEY_SLOT, R0);
    lookup(a, fd, COUNTER_KEY_SLOT, skip);
    // A per-CPU entry: only this CPU writes it, so no atomic is needed.
    a.load(Size::DW, R1, R0, 0);
    match value {
        Some(v) => a.alu_reg(Alu::Add, R1, v),
        None => a.alu_imm(Alu::Add, R1, 1),
    }
    a.store(Size::DW, R0, 0, R1);
    a.place(skip);
}

/// Folds the 64-bit one's-complement sum in `sum` to 16 bits, with `tmp`: 64 -> 32 bits (low +
/// high), then 32 -> 16 three times (end-around carries).
pub(super) fn fold16(a: &mut Asm, sum: Reg, tmp: Reg) {
    a.mov(tmp, sum);
    a.alu_imm(Alu::Rsh, tmp, 32);
    a.alu_imm(Alu::Lsh, sum, 32);
    a.alu_imm(Alu::Rsh, sum, 32);
    a.alu_reg(Alu::Add, sum, tmp);
    for _ in 0..3 {
        a.mov(tmp, sum);
        a.alu_imm(Alu::Rsh, tmp, 16);
        a.alu_imm(Alu::And, sum, 0xffff);
        a.alu_reg(Alu::Add, sum, tmp);
    }
}

/// `dst` = `base` + where the IP header starts (its slot), + `fixed`'s length for IPv4 or IPv6
/// (the version's slot) when given: one branch per number of VLAN tags, so that every packet
/// pointer moves by a constant. Uses r0 and r1.
pub(super) fn at_ip_offset(a: &mut Asm, dst: Reg, base: Reg, fixed: Option<(i32, i32)>) {
    let done = a.label();
    a.load(Size::DW, R0, R10, IP_OFF_SLOT);
    if fixed.is_some() {
        a.load(Size::W, R1, R10, IP_VERSION_SLOT);
    }
    for tags in 0..=MAX_VLAN_TAGS {
        let at = (ETH_HEADER_LEN + tags * VLAN_TAG_LEN) as i32;
        let next = a.label();
        if tags < MAX_VLAN_TAGS {
            a.jump_imm(Cond::Ne, R0, at, next);
        }
        // (`dst` may be r1: the version is looked at before it is written.)
        match fixed {
            None => {
                a.mov(dst, base);
                a.alu_imm(Alu::Add, dst, at);
            }
            Some((v4, v6)) => {
                let six = a.label();
                a.jump_imm(Cond::Eq, R1, 6, six);
                a.mov(dst, base);
                a.alu_imm(Alu::Add, dst, at + v4);
                a.goto(done);
                a.place(six);
                a.mov(dst, base);
                a.alu_imm(Alu::Add, dst, at + v6);
            }
        }
        a.goto(done);
        if tags < MAX_VLAN_TAGS {
            a.place(next);
        }
    }
    a.place(done);
}

/// `bpf_xdp_load_bytes(ctx, offset, r10 + to, len)`, the offset read from the stack slot
/// `offset` (0 without one); on to `fail` when the helper refuses. Uses r0-r5.
pub(super) fn load_bytes(a: &mut Asm, offset: Option<i16>, to: i16, len: i32, fail: Label) {
    match offset {
        None => a.mov_imm(R2, 0),
        Some(slot) => a.load(Size::DW, R2, R10, slot),
    }
    a.mov(R1, R6);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, to as i32);
    a.mov_imm(R4, len);
    a.call(BPF_FUNC_XDP_LOAD_BYTES);
    a.jump_imm(Cond::Ne, R0, 0, fail);
}

/// Copies `len` bytes from `src` to `dst` (each a base register and an offset), through r0, in
/// the widest pieces that keep the stack side (r10) aligned.
pub(super) fn copy(a: &mut Asm, dst: (Reg, i16), src: (Reg, i16), len: usize) {
    let stack = if dst.0 == R10 { dst.1 } else { src.1 };
    let mut at = 0;
    while at < len {
        let aligned = |n: usize| (stack as i32 + at as i32).rem_euclid(n as i32) == 0 && len - at >= n;
        let (size, n) = match () {
            () if aligned(8) => (Size::DW, 8),
            () if aligned(4) => (Size::W, 4),
            () if aligned(2) => (Size::H, 2),
            () => (Size::B, 1),
        };
        a.load(size, R0, src.0, src.1 + at as i16);
        a.store(size, dst.0, dst.1 + at as i16, R0);
        at += n;
    }
}

impl Gen<'_> {
    /// Where a frame rejected for `reason` goes.
    pub(super) fn r(&self, reason: Reject) -> Label {
        self.reasons[reason as usize]
    }

    /// Emits `if base + n > bound goto fail` for one or more bounds.
    pub(super) fn need(&mut self, base: Reg, n: usize, bounds: &[Reg], fail: Label) {
        need(&mut self.a, base, n as i32, bounds, fail);
    }
}
