//! Classic BPF: the filter for `SO_ATTACH_FILTER` (Linux packet sockets) and `BIOCSETF`
//! (BSD / macOS `/dev/bpf`), which share the instruction format.
//!
//! **What it decides.** The program answers one question: *is this test traffic at all?* It
//! passes a frame that carries UDP over IPv4 or IPv6 (behind up to two VLAN tags) with what the
//! selected protocols ask for (`reflector_core::protocol::udp_matches`: a signature's bytes at
//! its offset, or the STAMP port when that family is on), and drops everything else, so the
//! host's ordinary traffic
//! is never copied to userspace. It deliberately does *not* check the destination MAC, the
//! port, the OUI or the addresses: those are policy, decided by the core, which counts each
//! reason. A user whose tester is misconfigured then sees `dst_port` or `oui` climbing instead
//! of silence.
//!
//! **How.** The program is straight-line for each VLAN depth (0, 1, 2 tags), so every load uses
//! a known offset; the IPv4 header length goes into X with `ldx 4*([k]&0xf)`. IPv6 extension
//! headers are passed to the core unexamined (cBPF cannot loop). A load beyond the end of the
//! packet ends a cBPF program with "drop", so signatures are checked in order of the bytes they
//! need, shortest first: a frame too short for one is too short for all later ones, and no
//! frame the core accepts is dropped.

use reflector_core::Filter;
use reflector_core::protocol::{self, UdpMatch};
use reflector_core::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_UDP, VLAN_TPIDS};

/// One instruction, laid out as `struct sock_filter` (and BSD's `struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Operation.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

// Opcode parts (linux/filter.h, net/bpf.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MSH: u16 = 0xa0;
const RSH: u16 = 0x70;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JSET: u16 = 0x40;
const K: u16 = 0x00;

/// What the program returns for a candidate: the whole frame (any snap length ≥ 256 KiB).
pub const ACCEPT: u32 = 0x0004_0000;
/// What it returns for a frame to leave alone.
pub const DROP: u32 = 0;

/// Jump targets while assembling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Label(usize),
    /// The nearest `ret ACCEPT` after the jump.
    Accept,
    /// Skip this many instructions.
    Skip(usize),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Insn(Insn),
    Jump { code: u16, k: u32, jt: Target, jf: Target },
    Label(usize),
}

/// A tiny assembler: forward jumps to labels, resolved in [`Asm::finish`].
#[derive(Debug, Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn place(&mut self, label: usize) {
        self.ops.push(Op::Label(label));
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Insn(Insn { code, jt: 0, jf: 0, k }));
    }
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.ops.push(Op::Jump { code, k, jt, jf });
    }
    fn ld_h(&mut self, k: usize) {
        self.stmt(LD | H | ABS, k as u32);
    }
    fn ld_b(&mut self, k: usize) {
        self.stmt(LD | B | ABS, k as u32);
    }
    /// Continue when A == k, else go to `otherwise` (which must be near).
    fn expect_eq(&mut self, k: u32, otherwise: Target) {
        self.jump(JMP | JEQ | K, k, Target::Next, otherwise);
    }
    /// Continue when A == k, else drop (with a `ret` in line, so the jump is always short).
    fn drop_unless_eq(&mut self, k: u32) {
        self.jump(JMP | JEQ | K, k, Target::Skip(1), Target::Next);
        self.ret(DROP);
    }
    /// Drop when any bit of k is set in A.
    fn drop_if_set(&mut self, k: u32) {
        self.jump(JMP | JSET | K, k, Target::Next, Target::Skip(1));
        self.ret(DROP);
    }
    /// Go to `label` when A == k, however far (`ja` has a 32-bit offset).
    fn far_if_eq(&mut self, k: u32, label: usize) {
        self.jump(JMP | JEQ | K, k, Target::Next, Target::Skip(1));
        self.jump(JMP | JA, 0, Target::Label(label), Target::Label(label));
    }

    /// A `ret` instruction in line; jumps to [`Target::Accept`] land on the nearest
    /// `ret ACCEPT` that follows them, which keeps every jump short.
    fn ret(&mut self, k: u32) {
        self.stmt(RET | K, k);
    }

    /// Resolves jumps to relative offsets; `None` if one is longer than cBPF allows.
    fn finish(mut self) -> Option<Vec<Insn>> {
        // Both outcomes exist at the end, so every Accept / Drop jump has a target.
        self.ret(ACCEPT);
        self.ret(DROP);
        let mut out = Vec::new();
        let mut positions = vec![usize::MAX; self.labels];
        let mut jumps = Vec::new();
        for op in &self.ops {
            match op {
                Op::Label(l) => positions[*l] = out.len(),
                Op::Insn(i) => out.push(*i),
                Op::Jump { code, k, jt, jf } => {
                    jumps.push((out.len(), *jt, *jf));
                    out.push(Insn { code: *code, jt: 0, jf: 0, k: *k });
                }
            }
        }
        let ret_after = |at: usize, k: u32| {
            (at + 1..out.len()).find(|&i| out[i] == Insn { code: RET | K, jt: 0, jf: 0, k })
        };
        let mut resolved = Vec::with_capacity(jumps.len());
        for (at, jt, jf) in jumps {
            let offset = |t: Target| -> Option<usize> {
                let dest = match t {
                    Target::Next => at + 1,
                    Target::Skip(n) => at + 1 + n,
                    Target::Label(l) => positions[l],
                    Target::Accept => ret_after(at, ACCEPT)?,
                };
                dest.checked_sub(at + 1)
            };
            resolved.push((at, offset(jt)?, offset(jf)?));
        }
        for (at, t, f) in resolved {
            let insn = &mut out[at];
            if insn.code == JMP | JA {
                insn.k = u32::try_from(t).ok()?;
            } else {
                insn.jt = u8::try_from(t).ok()?;
                insn.jf = u8::try_from(f).ok()?;
            }
        }
        Some(out)
    }
}

/// A signature check: `bytes` at `offset` in the UDP payload.
struct SigCheck<'a> {
    offset: usize,
    bytes: &'a [u8],
}

/// What the protocols need let through (`reflector_core::protocol::udp_matches`): the ports
/// accepted whole, and the byte checks, shortest need first (see the module documentation).
fn udp_checks(filter: &Filter) -> (Vec<u16>, Vec<SigCheck<'_>>) {
    let (mut ports, mut checks) = (Vec::new(), Vec::new());
    for m in protocol::udp_matches(filter) {
        match m {
            UdpMatch::Port(port) => ports.push(port),
            UdpMatch::Payload { offset, bytes } => checks.push(SigCheck { offset, bytes }),
        }
    }
    checks.sort_by_key(|c| c.offset + c.bytes.len());
    (ports, checks)
}

/// Emits the checks for a UDP header at `udp` (X-relative when `indirect`): accept a datagram
/// to one of `ports` (STAMP's) or one with a signature, on the first match; drop when none
/// matches.
fn emit_signatures(asm: &mut Asm, checks: &[SigCheck], ports: &[u16], udp: usize, indirect: bool) {
    let mode = if indirect { IND } else { ABS };
    for &port in ports {
        let not_stamp = asm.label();
        asm.stmt(LD | H | mode, (udp + 2) as u32);
        asm.jump(JMP | JEQ | K, port as u32, Target::Next, Target::Label(not_stamp));
        asm.ret(ACCEPT);
        asm.place(not_stamp);
    }
    for check in checks {
        let next = asm.label();
        let mut at = udp + 8 + check.offset;
        let mut rest = check.bytes;
        while !rest.is_empty() {
            let (size, n) = match rest.len() {
                1 => (B, 1),
                2 | 3 => (H, 2),
                _ => (W, 4),
            };
            asm.stmt(LD | size | mode, at as u32);
            let value = rest[..n].iter().fold(0u32, |v, b| (v << 8) | *b as u32);
            asm.expect_eq(value, Target::Label(next));
            at += n;
            rest = &rest[n..];
        }
        asm.ret(ACCEPT);
        asm.place(next);
    }
    asm.ret(DROP);
}

/// The classic BPF program for `filter`'s signature selection. `None` only if a jump does not
/// fit (it cannot with at most 8 custom signatures of 32 bytes; a test checks the largest).
pub fn program(filter: &Filter) -> Option<Vec<Insn>> {
    let (ports, checks) = udp_checks(filter);
    let mut asm = Asm::default();
    for depth in 0..=2usize {
        let ethertype_at = 12 + 4 * depth;
        let l3 = ethertype_at + 2;
        let v4 = asm.label();
        let v6 = asm.label();
        let deeper = asm.label();
        asm.ld_h(ethertype_at);
        asm.far_if_eq(ETHERTYPE_IPV4 as u32, v4);
        asm.far_if_eq(ETHERTYPE_IPV6 as u32, v6);
        if depth < 2 {
            for tpid in VLAN_TPIDS {
                asm.far_if_eq(tpid as u32, deeper);
            }
        }
        asm.ret(DROP);

        // IPv4 UDP; a later fragment has no UDP header to look at. (A first fragment does, and
        // goes to the core, which counts it as a fragment.) X = header length.
        asm.place(v4);
        asm.ld_b(l3 + 9);
        asm.drop_unless_eq(IPPROTO_UDP as u32);
        asm.ld_h(l3 + 6);
        asm.drop_if_set(0x1fff);
        asm.stmt(LDX | B | MSH, l3 as u32);
        emit_signatures(&mut asm, &checks, &ports, l3, true);

        // IPv6: UDP right after the header is judged here; extension headers (not fragments)
        // are passed to the core, which walks them.
        asm.place(v6);
        let udp6 = asm.label();
        asm.ld_b(l3 + 6);
        asm.far_if_eq(IPPROTO_UDP as u32, udp6);
        for ext in [0u32, 43, 60] {
            asm.jump(JMP | JEQ | K, ext, Target::Accept, Target::Next);
        }
        asm.ret(DROP);
        asm.ret(ACCEPT);
        asm.place(udp6);
        emit_signatures(&mut asm, &checks, &ports, l3 + 40, false);

        asm.place(deeper);
    }
    asm.finish()
}

/// A program that passes frames holding `bytes` at frame offset `offset` (the tester side uses
/// it to receive only its own reflections).
pub fn match_bytes_program(offset: usize, bytes: &[u8]) -> Option<Vec<Insn>> {
    let mut asm = Asm::default();
    let mut at = offset;
    for chunk in bytes.chunks(4) {
        let (size, n) = match chunk.len() {
            4 => (W, 4),
            2 | 3 => (H, 2),
            _ => (B, 1),
        };
        asm.stmt(LD | size | ABS, at as u32);
        asm.drop_unless_eq(chunk[..n].iter().fold(0u32, |v, b| (v << 8) | *b as u32));
        at += n;
        if n < chunk.len() {
            asm.stmt(LD | B | ABS, at as u32);
            asm.drop_unless_eq(chunk[n] as u32);
            at += 1;
        }
    }
    asm.ret(ACCEPT);
    asm.finish()
}

/// Runs `program` over `packet` as the kernel does, returning the accepted length (0 = drop).
/// A reference for tests; malformed programs return `None`.
pub fn run(program: &[Insn], packet: &[u8]) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut pc = 0usize;
    let load = |at: usize, size: u16| -> Option<u32> {
        let n = match size {
            W => 4,
            H => 2,
            _ => 1,
        };
        let bytes = packet.get(at..at.checked_add(n)?)?;
        Some(bytes.iter().fold(0u32, |v, b| (v << 8) | *b as u32))
    };
    loop {
        let insn = *program.get(pc)?;
        pc += 1;
        let class = insn.code & 0x07;
        match class {
            c if c == LD => {
                let at = match insn.code & 0xe0 {
                    ABS => insn.k as usize,
                    IND => (x as usize).checked_add(insn.k as usize)?,
                    m if m == IMM => {
                        a = insn.k;
                        continue;
                    }
                    _ => return None,
                };
                match load(at, insn.code & 0x18) {
                    Some(v) => a = v,
                    None => return Some(0), // out of bounds: the kernel drops
                }
            }
            c if c == LDX => match insn.code & 0xe0 {
                MSH => match load(insn.k as usize, B) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return Some(0),
                },
                m if m == IMM => x = insn.k,
                _ => return None,
            },
            c if c == ALU => match insn.code & 0xf0 {
                RSH => a >>= insn.k & 31,
                _ => return None,
            },
            c if c == JMP => {
                let taken = match insn.code & 0xf0 {
                    JA => {
                        pc = pc.checked_add(insn.k as usize)?;
                        continue;
                    }
                    JEQ => a == insn.k,
                    JSET => a & insn.k != 0,
                    _ => return None,
                };
                pc += if taken { insn.jt } else { insn.jf } as usize;
            }
            c if c == RET => return Some(insn.k),
            _ => return None,
        }
    }
}
