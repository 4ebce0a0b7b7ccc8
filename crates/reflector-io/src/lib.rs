//! The OS-facing side of `reflector`: capture files, packet backends and the worker runtime.
//!
//! Every syscall, mapping and ring view comes from `reflector-sys`; this crate has none of its
//! own (the workspace forbids it everywhere else).

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod backend;
#[cfg(unix)]
pub mod bsdbpf;
pub mod capture;
#[cfg(target_os = "linux")]
pub mod claim;
pub mod pcapng;
pub mod replay;
pub mod tap;
pub mod testing;
pub mod worker;
#[cfg(target_os = "linux")]
pub mod xdp;
