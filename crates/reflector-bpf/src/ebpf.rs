//! A small eBPF assembler: instructions, registers, forward jumps to labels.
//!
//! Only what the generated XDP program needs. Jumps are resolved in [`Asm::finish`]; eBPF
//! jump offsets are 16-bit, far beyond any program generated here.

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

/// A register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

/// Registers: r0 return value, r1-r5 arguments (clobbered by calls), r6-r9 kept, r10 frame.
pub const R0: Reg = Reg(0);
/// Argument 1 / context at entry.
pub const R1: Reg = Reg(1);
/// Argument 2.
pub const R2: Reg = Reg(2);
/// Argument 3.
pub const R3: Reg = Reg(3);
/// Argument 4.
pub const R4: Reg = Reg(4);
/// Argument 5.
pub const R5: Reg = Reg(5);
/// Callee-saved.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Callee-saved.
pub const R8: Reg = Reg(8);
/// Callee-saved.
pub const R9: Reg = Reg(9);
/// The frame pointer (read-only): the stack lies below it.
pub const R10: Reg = Reg(10);

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ATOMIC: u8 = 0xc0;
/// `BPF_ADD | BPF_FETCH`: an atomic add that returns the old value in the source register.
const FETCH_ADD: i32 = 0x01;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const ALU: u8 = 0x04;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const DW: u8 = 0x18;
const K: u8 = 0x00;
const X: u8 = 0x08;
const END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
/// `src_reg` value marking a 64-bit immediate load as a map file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// Load sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    DW,
}

impl Size {
    fn bits(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }
}

/// ALU operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    /// dst += src
    Add = 0x00,
    /// dst -= src
    Sub = 0x10,
    /// dst *= src
    Mul = 0x20,
    /// dst /= src (unsigned)
    Div = 0x30,
    /// dst |= src
    Or = 0x40,
    /// dst &= src
    And = 0x50,
    /// dst <<= src
    Lsh = 0x60,
    /// dst >>= src
    Rsh = 0x70,
    /// dst %= src (unsigned)
    Mod = 0x90,
    /// dst ^= src
    Xor = 0xa0,
    /// dst = src
    Mov = 0xb0,
}

/// Jump conditions (unsigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// ==
    Eq = 0x10,
    /// >
    Gt = 0x20,
    /// >=
    Ge = 0x30,
    /// & != 0
    Set = 0x40,
    /// !=
    Ne = 0x50,
    /// <
    Lt = 0xa0,
    /// <=
    Le = 0xb0,
}

/// A jump target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Op {
    Insn(Insn),
    Jump(Insn, Label),
    Place(Label),
}

/// The assembler.
#[derive(Debug, Default)]
pub struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

fn regs(dst: Reg, src: Reg) -> u8 {
    dst.0 | (src.0 << 4)
}

impl Asm {
    /// A new label, placed later with [`Asm::place`].
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    /// Places `label` at the next instruction.
    pub fn place(&mut self, label: Label) {
        self.ops.push(Op::Place(label));
    }
    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) {
        self.ops.push(Op::Insn(Insn { code, regs: regs(dst, src), off, imm }));
    }
    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) {
        self.push(LDX | MEM | size.bits(), dst, src, off, 0);
    }
    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.push(STX | MEM | size.bits(), dst, src, off, 0);
    }
    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) {
        self.push(ST | MEM | size.bits(), dst, Reg(0), off, imm);
    }
    /// `src = atomic_fetch_add((size *)(dst + off), src)`: adds `src` to memory and returns the
    /// value before in `src` (W or DW).
    pub fn atomic_fetch_add(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.push(STX | ATOMIC | size.bits(), dst, src, off, FETCH_ADD);
    }
    /// `dst = imm` for any 64-bit value (a 64-bit immediate load, two instruction slots).
    pub fn load_imm64(&mut self, dst: Reg, value: u64) {
        self.push(LD | DW | IMM, dst, Reg(0), 0, value as u32 as i32);
        self.push(0, Reg(0), Reg(0), 0, (value >> 32) as u32 as i32);
    }
    /// 64-bit `dst op= imm`.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        self.push(ALU64 | op as u8 | K, dst, Reg(0), 0, imm);
    }
    /// 64-bit `dst op= src`.
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.push(ALU64 | op as u8 | X, dst, src, 0, 0);
    }
    /// `dst = src` (64-bit).
    pub fn mov(&mut self, dst: Reg, src: Reg) {
        self.alu_reg(Alu::Mov, dst, src);
    }
    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) {
        self.alu_imm(Alu::Mov, dst, imm);
    }
    /// `dst = be16/be32(dst)`: network to host order (a swap on little-endian hosts).
    pub fn to_be(&mut self, dst: Reg, bits: i32) {
        self.push(ALU | END | TO_BE, dst, Reg(0), 0, bits);
    }
    /// `if dst cond imm goto label`, on all 64 bits (for small non-negative values).
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, label: Label) {
        self.ops
            .push(Op::Jump(Insn { code: JMP | cond as u8 | K, regs: regs(dst, Reg(0)), off: 0, imm }, label));
    }
    /// `if (u32)dst cond (u32)imm goto label`: for loaded 32-bit values, whose constants may
    /// have the top bit set (a 64-bit compare would sign-extend them).
    pub fn jump32_imm(&mut self, cond: Cond, dst: Reg, imm: u32, label: Label) {
        let insn = Insn { code: JMP32 | cond as u8 | K, regs: regs(dst, Reg(0)), off: 0, imm: imm as i32 };
        self.ops.push(Op::Jump(insn, label));
    }
    /// `if dst cond src goto label`.
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, label: Label) {
        self.ops
            .push(Op::Jump(Insn { code: JMP | cond as u8 | X, regs: regs(dst, src), off: 0, imm: 0 }, label));
    }
    /// `goto label`.
    pub fn goto(&mut self, label: Label) {
        self.ops.push(Op::Jump(Insn { code: JMP, regs: 0, off: 0, imm: 0 }, label));
    }
    /// `dst = map fd` (a 64-bit immediate load, two instruction slots).
    pub fn load_map_fd(&mut self, dst: Reg, fd: i32) {
        self.push(LD | DW | IMM, dst, Reg(PSEUDO_MAP_FD), 0, fd);
        self.push(0, Reg(0), Reg(0), 0, 0);
    }
    /// `call helper`.
    pub fn call(&mut self, helper: i32) {
        self.push(JMP | 0x80, Reg(0), Reg(0), 0, helper);
    }
    /// `exit` (returns r0).
    pub fn exit(&mut self) {
        self.push(JMP | 0x90, Reg(0), Reg(0), 0, 0);
    }

    /// Whether any jump so far targets `label` (the verifier rejects unreachable code, so
    /// blocks nothing jumps to must not be emitted).
    pub fn is_used(&self, label: Label) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::Jump(_, l) if *l == label))
    }

    /// Resolves jumps; `None` if a label was never placed or a jump does not fit 16 bits.
    pub fn finish(self) -> Option<Vec<Insn>> {
        let mut positions = vec![None; self.labels];
        let mut n = 0usize;
        for op in &self.ops {
            match op {
                Op::Place(l) => positions[l.0] = Some(n),
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        for op in &self.ops {
            match op {
                Op::Place(_) => {}
                Op::Insn(i) => out.push(*i),
                Op::Jump(i, l) => {
                    let at = out.len() as i64;
                    let dest = positions[l.0]? as i64;
                    let mut i = *i;
                    i.off = i16::try_from(dest - at - 1).ok()?;
                    out.push(i);
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_headers() {
        let mut a = Asm::default();
        let l = a.label();
        a.load(Size::H, R2, R7, 12); // ldxh r2, [r7+12]
        a.jump_imm(Cond::Ne, R2, 8, l); // jne r2, 8, +2
        a.to_be(R2, 16); // be16 r2
        a.mov_imm(R0, 2); // mov r0, 2
        a.place(l);
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p[0], Insn { code: 0x69, regs: 0x72, off: 12, imm: 0 });
        assert_eq!(p[1], Insn { code: 0x55, regs: 0x02, off: 2, imm: 8 });
        assert_eq!(p[2], Insn { code: 0xdc, regs: 0x02, off: 0, imm: 16 });
        assert_eq!(p[3], Insn { code: 0xb7, regs: 0x00, off: 0, imm: 2 });
        assert_eq!(p[4], Insn { code: 0x95, regs: 0, off: 0, imm: 0 });
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // The encodings the STAMP answer adds: a division by an immediate, an atomic fetch-add,
        // a store of an immediate, a 64-bit immediate, and a jump back.
        let mut a = Asm::default();
        let top = a.label();
        a.place(top);
        a.alu_imm(Alu::Div, R1, 1_000_000_000); // r1 /= 1000000000
        a.atomic_fetch_add(Size::W, R0, 0, R1); // r1 = atomic_fetch_add((u32 *)(r0 + 0), r1)
        a.store_imm(Size::H, R9, 36, 0); // *(u16 *)(r9 + 36) = 0
        a.load_imm64(R2, 0x1_0000_0002); // r2 = 0x100000002 ll
        a.jump_imm(Cond::Lt, R2, 3, top); // if r2 < 3 goto -6
        let p = a.finish().unwrap();
        assert_eq!(p[0], Insn { code: 0x37, regs: 0x01, off: 0, imm: 1_000_000_000 });
        assert_eq!(p[1], Insn { code: 0xc3, regs: 0x10, off: 0, imm: 1 });
        assert_eq!(p[2], Insn { code: 0x6a, regs: 0x09, off: 36, imm: 0 });
        assert_eq!(p[3], Insn { code: 0x18, regs: 0x02, off: 0, imm: 2 });
        assert_eq!(p[4], Insn { code: 0x00, regs: 0x00, off: 0, imm: 1 });
        assert_eq!(p[5], Insn { code: 0xa5, regs: 0x02, off: -6, imm: 3 });
        let mut a = Asm::default();
        let never = a.label();
        a.goto(never);
        assert!(a.finish().is_none(), "an unplaced label is an error");
    }
}
