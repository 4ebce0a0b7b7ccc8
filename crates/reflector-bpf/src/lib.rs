//! Kernel-side programs generated from a [`reflector_core::Filter`]: the classic BPF
//! pre-filter (`cbpf`) and the XDP program (`xdp`, on the `ebpf` assembler).
//!
//! The classic BPF filter is a *pre-filter*: it must pass every frame the core would reflect (no
//! false negatives) and should drop as much else as it cheaply can. The core re-checks every
//! frame it is handed, so a frame the filter lets through by mistake costs only a copy.

pub mod cbpf;
pub mod ebpf;
pub mod xdp;
