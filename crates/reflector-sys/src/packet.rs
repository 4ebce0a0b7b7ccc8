//! Packet sockets (`AF_PACKET`): their options, filters, binding and statistics.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::error::{SysError, SysResult};
use crate::sock::{check, getsockopt, send_empty, setsockopt, socket};

// Kernel ABI values (linux/if_packet.h, linux/if_ether.h, linux/sockios.h), written down here
// so the code does not depend on which ones a libc release exports.
/// `ETH_P_ALL`: every protocol.
pub const ETH_P_ALL: u16 = 0x0003;
pub const SOL_PACKET: libc::c_int = 263;
pub const PACKET_RX_RING: libc::c_int = 5;
pub const PACKET_AUXDATA: libc::c_int = 8;
pub const PACKET_VERSION: libc::c_int = 10;
pub const PACKET_TX_RING: libc::c_int = 13;
pub const PACKET_FANOUT: libc::c_int = 18;
pub const PACKET_STATISTICS: libc::c_int = 6;
pub const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
pub const TPACKET_V2: libc::c_int = 1;
pub const PACKET_FANOUT_HASH: u32 = 0;

/// `struct tpacket_req`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TpacketReq {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
}

/// `struct tpacket_auxdata` (PACKET_AUXDATA control message).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TpacketAuxdata {
    pub tp_status: u32,
    pub tp_len: u32,
    pub tp_snaplen: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub tp_vlan_tci: u16,
    pub tp_vlan_tpid: u16,
}

/// Why a packet socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// The process may not open packet sockets: what is missing, and how to grant it.
    #[error("{0}")]
    Permission(String),
    /// A syscall failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// Opens a packet socket that receives nothing until it is bound with a protocol, naming the
/// missing capability when that is why it fails.
pub fn open_socket() -> Result<OwnedFd, AfPacketError> {
    socket(libc::AF_PACKET, libc::SOCK_RAW, 0, "socket(AF_PACKET)").map_err(|e| match e.errno() {
        Some(libc::EPERM) | Some(libc::EACCES) => AfPacketError::Permission(crate::privilege::refused(
            "opening a packet socket",
            crate::privilege::SOCKET,
        )),
        _ => AfPacketError::Sys(e),
    })
}

/// Puts the interface in promiscuous mode for as long as this socket is open
/// (`PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC`).
pub fn add_promiscuous(fd: &OwnedFd, ifindex: u32) -> SysResult<()> {
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct PacketMreq {
        mr_ifindex: libc::c_int,
        mr_type: libc::c_ushort,
        mr_alen: libc::c_ushort,
        mr_address: [u8; 8],
    }
    const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
    const PACKET_MR_PROMISC: libc::c_ushort = 1;
    let mreq =
        PacketMreq { mr_ifindex: ifindex as i32, mr_type: PACKET_MR_PROMISC, mr_alen: 0, mr_address: [0; 8] };
    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, "setsockopt(PACKET_ADD_MEMBERSHIP)")
}

/// `getsockopt(PACKET_STATISTICS)`: (frames received, frames dropped) since the last call.
pub fn packet_statistics(fd: &OwnedFd) -> SysResult<(u32, u32)> {
    // struct tpacket_stats { tp_packets, tp_drops }
    let stats: [u32; 2] = getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, "getsockopt(PACKET_STATISTICS)")?;
    Ok((stats[0], stats[1]))
}

/// Turns on the packet-socket option `option` (`setsockopt(SOL_PACKET, option, 1)`).
pub fn enable_packet_option(fd: &OwnedFd, option: libc::c_int, call: &'static str) -> SysResult<()> {
    setsockopt(fd, SOL_PACKET, option, &1i32, call)
}

/// Attaches a classic BPF program (`SO_ATTACH_FILTER`).
pub fn attach_filter(fd: &OwnedFd, program: &[crate::insn::SockFilter]) -> SysResult<()> {
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct SockFprog {
        len: u16,
        filter: *const crate::insn::SockFilter,
    }
    let len = u16::try_from(program.len()).map_err(|_| SysError {
        call: "setsockopt(SO_ATTACH_FILTER)",
        err: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    let prog = SockFprog { len, filter: program.as_ptr() };
    // `SockFilter` is `#[repr(C)]` with the layout of `struct sock_filter` (checked by a test).
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog, "setsockopt(SO_ATTACH_FILTER)")
}

/// Binds a packet socket to `ifindex` for `protocol` (host order).
pub fn bind_packet(fd: &OwnedFd, ifindex: u32, protocol: u16) -> SysResult<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a live sockaddr_ll and its size is passed.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    check(ret, "bind(AF_PACKET)").map(|_| ())
}

/// Asks the kernel to transmit what is queued in a TX ring (`send` with no data).
pub fn kick_tx(fd: BorrowedFd<'_>) -> SysResult<()> {
    if let Err(e) = send_empty(fd, "send(TX ring)") {
        // Nothing could be queued right now; the frames stay in the ring for the next kick.
        // ENETDOWN / ENXIO: the interface is down (or its error from going down was still
        // pending): the frames wait too, and count as TX errors if it stays down (the control
        // loop says so, and ends the run if the interface is deleted).
        if matches!(
            e.errno(),
            Some(libc::EAGAIN)
                | Some(libc::ENOBUFS)
                | Some(libc::EINTR)
                | Some(libc::ENETDOWN)
                | Some(libc::ENXIO)
        ) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn abi_layouts() {
        assert_eq!(size_of::<TpacketReq>(), 16);
        assert_eq!(size_of::<TpacketAuxdata>(), 20);
    }
}
