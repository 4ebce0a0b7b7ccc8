//! Kernel-side filters generated from a [`reflector_core::Filter`].
//!
//! A kernel filter is a *pre-filter*: it must pass every frame the core would reflect (no
//! false negatives) and should drop as much else as it cheaply can. The core re-checks every
//! frame it is handed, so a frame the filter lets through by mistake costs only a copy.
#![forbid(unsafe_code)]

pub mod cbpf;
