//! The OS-facing side of `reflector`: capture files, packet backends and the worker runtime.
//!
//! All `unsafe` of the project lives in this crate, in the few modules that opt in
//! (`sys`, `afpacket`), each block with a `// SAFETY:` comment.

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod backend;
#[cfg(unix)]
pub mod bsdbpf;
pub mod capture;
#[cfg(target_os = "linux")]
pub mod claim;
pub mod error;
#[cfg(unix)]
pub mod iface;
#[cfg(unix)]
pub mod os;
#[cfg(target_os = "linux")]
pub mod packet_socket;
pub mod replay;
#[cfg(target_os = "linux")]
pub mod sys;
pub mod worker;
#[cfg(target_os = "linux")]
pub mod xdp;
