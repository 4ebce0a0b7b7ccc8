//! The kernel's instruction layouts, as this crate hands programs to it: a classic BPF
//! instruction (`struct sock_filter`, BSD's `struct bpf_insn`) and an eBPF one (Linux's
//! `struct bpf_insn`). The assemblers (`reflector-bpf`) have their own types; the data paths
//! (`reflector-io`) turn one into the other, so that this crate depends on no other of the
//! workspace.

/// One classic BPF instruction: `struct sock_filter` (Linux) and `struct bpf_insn` (BSD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    /// Operation.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// One eBPF instruction: `struct bpf_insn` (Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_kernels() {
        assert_eq!(std::mem::size_of::<SockFilter>(), 8, "struct sock_filter");
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8, "struct bpf_insn");
        assert_eq!(std::mem::align_of::<BpfInsn>(), 4);
    }
}
