//! Sampling judged frames into the capture ring buffer, under the cap's bucket.

use crate::ebpf::*;

use super::generator::*;
use super::layout::*;
use super::maps::*;

pub(super) const BPF_FUNC_RINGBUF_RESERVE: i32 = 131;

pub(super) const BPF_FUNC_RINGBUF_SUBMIT: i32 = 132;

pub(super) const BPF_FUNC_RINGBUF_DISCARD: i32 = 133;

impl Gen<'_> {
    /// The sample block, reached with the verdict's code and the action in their slots: when
    /// the control entry asks for this kind and the cap's bucket has room, the frame's first
    /// [`CAPTURE_SNAP`] bytes go into a ring buffer record with the verdict, the frame's length
    /// and the time; a frame over the cap, or one the ring has no room for, is counted. Then
    /// the action. The bucket is updated without a lock, as the rate limits' are.
    pub(super) fn sample(&mut self) {
        let Some((maps, sample)) = self.capture else { return };
        let a = &mut self.a;
        let (out, capped, lost, discard, keep_time) = (a.label(), a.label(), a.label(), a.label(), a.label());
        a.place(sample);
        a.store_imm(Size::W, R10, CAPTURE_KEY_SLOT, 0);
        a.load_map_fd(R1, maps.control_fd);
        a.mov(R2, R10);
        a.alu_imm(Alu::Add, R2, CAPTURE_KEY_SLOT as i32);
        a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
        a.jump_imm(Cond::Eq, R0, 0, out);
        a.mov(R8, R0);
        // Asked for this kind?
        a.load(Size::W, R1, R8, 0);
        a.load(Size::W, R2, R10, CAPTURE_CODE_SLOT);
        a.alu_imm(Alu::Rsh, R2, 16);
        a.alu_reg(Alu::And, R1, R2);
        a.jump_imm(Cond::Eq, R1, 0, out);
        // The cap: allowed while now + tolerance reaches the bucket time.
        a.call(BPF_FUNC_KTIME_GET_NS);
        a.mov(R7, R0);
        a.load(Size::DW, R1, R8, 24);
        a.load(Size::DW, R2, R8, 16);
        a.alu_reg(Alu::Add, R2, R7);
        a.jump_reg(Cond::Gt, R1, R2, capped);
        a.jump_reg(Cond::Gt, R1, R7, keep_time);
        a.mov(R1, R7);
        a.place(keep_time);
        a.load(Size::DW, R2, R8, 8);
        a.alu_reg(Alu::Add, R1, R2);
        a.store(Size::DW, R8, 24, R1);
        // The frame's length, and what of it is kept.
        a.mov(R1, R6);
        a.call(BPF_FUNC_XDP_GET_BUFF_LEN);
        a.mov(R2, R0);
        a.store(Size::W, R10, CAPTURE_LEN_SLOT, R2);
        let short = a.label();
        a.jump_imm(Cond::Le, R2, CAPTURE_SNAP as i32, short);
        a.mov_imm(R2, CAPTURE_SNAP as i32);
        a.place(short);
        a.store(Size::W, R10, CAPTURE_CAPLEN_SLOT, R2);
        a.load_map_fd(R1, maps.ring_fd);
        a.mov_imm(R2, CAPTURE_RECORD_LEN as i32);
        a.mov_imm(R3, 0);
        a.call(BPF_FUNC_RINGBUF_RESERVE);
        a.jump_imm(Cond::Eq, R0, 0, lost);
        a.mov(R9, R0);
        a.load(Size::W, R1, R10, CAPTURE_CODE_SLOT);
        a.store(Size::W, R9, 0, R1);
        a.load(Size::W, R1, R10, CAPTURE_LEN_SLOT);
        a.store(Size::W, R9, 4, R1);
        a.call(BPF_FUNC_KTIME_GET_TAI_NS);
        a.store(Size::DW, R9, 8, R0);
        // bpf_xdp_load_bytes(ctx, 0, record + 16, caplen), caplen proven 1..=CAPTURE_SNAP.
        a.load(Size::W, R4, R10, CAPTURE_CAPLEN_SLOT);
        a.jump_imm(Cond::Gt, R4, CAPTURE_SNAP as i32, discard);
        a.jump_imm(Cond::Eq, R4, 0, discard);
        a.mov(R1, R6);
        a.mov_imm(R2, 0);
        a.mov(R3, R9);
        a.alu_imm(Alu::Add, R3, 16);
        a.call(BPF_FUNC_XDP_LOAD_BYTES);
        a.jump_imm(Cond::Ne, R0, 0, discard);
        a.mov(R1, R9);
        a.mov_imm(R2, 0);
        a.call(BPF_FUNC_RINGBUF_SUBMIT);
        a.goto(out);
        a.place(discard);
        a.mov(R1, R9);
        a.mov_imm(R2, 0);
        a.call(BPF_FUNC_RINGBUF_DISCARD);
        a.goto(out);
        a.place(capped);
        a.mov_imm(R1, 1);
        a.atomic_fetch_add(Size::DW, R8, 32, R1);
        a.goto(out);
        a.place(lost);
        a.mov_imm(R1, 1);
        a.atomic_fetch_add(Size::DW, R8, 40, R1);
        a.place(out);
        a.load(Size::W, R0, R10, CAPTURE_ACTION_SLOT);
        a.exit();
    }
}
