//! The OS-facing side of `reflector`: the data paths (opened and probed through
//! [`datapath`]), the worker runtime, capture files, and the host's interfaces, process and
//! clock ([`host`]).
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
pub mod datapath;
// DPDK (the `dpdk` feature, Linux).
#[cfg(all(feature = "dpdk", target_os = "linux"))]
pub mod dpdk;
pub mod host;
pub mod pcapng;
pub mod replay;
pub mod tap;
pub mod testing;
pub mod worker;
#[cfg(target_os = "linux")]
pub mod xdp;
