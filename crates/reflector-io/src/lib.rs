//! The OS-facing side of `reflector`: capture files, packet backends and the worker runtime.
//!
//! No `unsafe` here: every syscall, mapping and ring view comes from `reflector-sys`.
#![forbid(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod backend;
#[cfg(unix)]
pub mod bsdbpf;
pub mod capture;
#[cfg(target_os = "linux")]
pub mod claim;
pub mod replay;
pub mod testing;
pub mod worker;
#[cfg(target_os = "linux")]
pub mod xdp;
