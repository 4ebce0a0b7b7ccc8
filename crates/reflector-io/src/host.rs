//! The host as the program above sees it: its interfaces (with the core's types), and the
//! process, clock, capability and socket calls of `reflector-sys`. The binary reaches the
//! system through here and the data paths ([`crate::datapath`]), never `reflector-sys` itself.

pub use reflector_sys::error::{SysError, SysResult};
#[cfg(target_os = "linux")]
pub use reflector_sys::{clock, privilege};
#[cfg(unix)]
pub use reflector_sys::{process, sock};

/// Interfaces: their facts, addresses and driver.
#[cfg(unix)]
pub mod iface {
    use reflector_core::MacAddr;

    #[cfg(target_os = "linux")]
    pub use reflector_sys::iface::{DriverStats, Timestamping, driver_stats, rx_vlan_offload, timestamping};
    pub use reflector_sys::iface::{IfaceError, iface_addresses};

    /// Facts about a network interface.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IfaceInfo {
        /// Interface index.
        pub index: u32,
        /// Hardware address.
        pub mac: MacAddr,
        /// Administratively up (IFF_UP).
        pub up: bool,
        /// Has carrier (IFF_RUNNING).
        pub running: bool,
        /// MTU in bytes.
        pub mtu: u32,
        /// The primary IPv4 address, if one is configured.
        pub ipv4: Option<std::net::Ipv4Addr>,
    }

    /// The facts of the interface `name` (in the calling thread's network namespace).
    pub fn iface_info(name: &str) -> Result<IfaceInfo, IfaceError> {
        let i = reflector_sys::iface::iface_info(name)?;
        Ok(IfaceInfo {
            index: i.index,
            mac: MacAddr(i.mac),
            up: i.up,
            running: i.running,
            mtu: i.mtu,
            ipv4: i.ipv4,
        })
    }
}

/// A classic BPF program as the kernel takes it (`struct sock_filter`, BSD's `struct bpf_insn`).
pub fn sock_filters(program: &[reflector_bpf::cbpf::Insn]) -> Vec<reflector_sys::insn::SockFilter> {
    program
        .iter()
        .map(|i| reflector_sys::insn::SockFilter { code: i.code, jt: i.jt, jf: i.jf, k: i.k })
        .collect()
}

/// An eBPF program as the kernel takes it (`struct bpf_insn`).
pub fn bpf_insns(program: &[reflector_bpf::ebpf::Insn]) -> Vec<reflector_sys::insn::BpfInsn> {
    program
        .iter()
        .map(|i| reflector_sys::insn::BpfInsn { code: i.code, regs: i.regs, off: i.off, imm: i.imm })
        .collect()
}
