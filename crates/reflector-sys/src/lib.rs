//! The only `unsafe` code of `reflector`: everything that talks to the kernel through raw
//! pointers. Syscall wrappers return a [`error::SysError`] naming the call; shared memory is
//! reached only through views built here, bounds-checked: [`mmap::Mmap`] (the one mapping
//! owner), the TPACKET_V2 ring slots ([`tpacket`]), the AF_XDP ring cursors and UMEM shares
//! ([`xdp`]). Every `unsafe` block carries a `SAFETY:` note; every other crate of the workspace
//! forbids unsafe code (the workspace lints; this crate has lints of its own).
//!
//! Per system, as quinn-udp does it: Linux gets packet sockets, TPACKET rings, AF_XDP, `bpf(2)`
//! and netlink; every Unix gets the process calls, interface lookup and the `/dev/bpf` device
//! of macOS and FreeBSD.

#[cfg(unix)]
pub mod bpf_device;
// DPDK (the `dpdk` feature, Linux): csrc/dpdk.c, built against the system's DPDK.
#[cfg(target_os = "linux")]
pub mod clock;
#[cfg(all(feature = "dpdk", target_os = "linux"))]
pub mod dpdk;
pub mod error;
#[cfg(unix)]
pub mod iface;
pub mod insn;
// Only Linux's rings are mapped: TPACKET, AF_XDP's UMEM and rings, the BPF ring buffer.
#[cfg(target_os = "linux")]
pub mod mmap;
#[cfg(target_os = "linux")]
pub mod packet;
#[cfg(target_os = "linux")]
pub mod packet_socket;
#[cfg(target_os = "linux")]
pub mod privilege;
#[cfg(unix)]
pub mod process;
#[cfg(unix)]
pub mod sock;
#[cfg(target_os = "linux")]
pub mod tpacket;
#[cfg(target_os = "linux")]
pub mod xdp;
