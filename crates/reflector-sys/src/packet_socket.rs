//! A plain packet socket for sending and receiving single frames: the tester side of the
//! live tests (and the base of `probe`). Frames are received whole: a VLAN tag the kernel
//! moved into metadata is put back from the `PACKET_AUXDATA` control message.
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{SysError, SysResult};
use crate::packet::{self as sys, AfPacketError, TpacketAuxdata};
use crate::tpacket::{TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID};

/// A bound `AF_PACKET` socket that does not see its own transmissions.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket on the interface with index `ifindex` (in the calling thread's namespace).
    pub fn open(ifindex: u32) -> Result<PacketSocket, AfPacketError> {
        let fd = sys::open_socket()?;
        sys::enable_packet_option(&fd, sys::PACKET_IGNORE_OUTGOING, "setsockopt(PACKET_IGNORE_OUTGOING)")?;
        sys::enable_packet_option(&fd, sys::PACKET_AUXDATA, "setsockopt(PACKET_AUXDATA)")?;
        sys::bind_packet(&fd, ifindex, sys::ETH_P_ALL)?;
        Ok(PacketSocket { fd })
    }

    /// Attaches a classic BPF program: only frames it accepts are received from then on.
    pub fn attach_filter(&self, program: &[crate::insn::SockFilter]) -> SysResult<()> {
        sys::attach_filter(&self.fd, program)
    }

    /// Sets the receive buffer to `bytes` (beyond `rmem_max` when the process may, as root).
    pub fn set_recv_buffer(&self, bytes: usize) -> SysResult<()> {
        let value = bytes.min(i32::MAX as usize) as i32;
        crate::sock::setsockopt(
            &self.fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &value,
            "setsockopt(SO_RCVBUFFORCE)",
        )
        .or_else(|_| {
            crate::sock::setsockopt(
                &self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &value,
                "setsockopt(SO_RCVBUF)",
            )
        })
    }

    /// Sends one frame as it is.
    pub fn send(&self, frame: &[u8]) -> SysResult<()> {
        crate::sock::send(self.fd.as_fd(), frame, "send(AF_PACKET)").map(|_| ())
    }

    /// Receives one frame into `buf` (which needs 4 spare bytes for a restored VLAN tag),
    /// waiting until `deadline`. Returns its length, or `None` at the deadline.
    pub fn recv(&self, buf: &mut [u8], deadline: Instant) -> SysResult<Option<usize>> {
        if buf.len() < 18 {
            return Err(SysError {
                call: "recvmsg(AF_PACKET)",
                err: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if !crate::sock::poll_readable(self.fd.as_fd(), left.min(Duration::from_millis(100)))? {
                continue;
            }
            // Receive at offset 4, leaving room to put a stripped tag back in front of the
            // EtherType without moving the payload.
            let mut iov = libc::iovec { iov_base: buf[4..].as_mut_ptr().cast(), iov_len: buf.len() - 4 };
            let mut control = [0u64; 8]; // aligned room for one auxdata message
            // SAFETY: msghdr is plain data; all-zero is valid.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 8]>();
            // SAFETY: `msg` points to the live iovec and control buffer set up above.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                    continue;
                }
                return Err(SysError { call: "recvmsg(AF_PACKET)", err: e });
            }
            let n = n as usize;
            let aux = auxdata(&msg);
            return Ok(Some(match aux {
                Some(aux) if aux.tp_status & TP_STATUS_VLAN_VALID != 0 && n >= 12 => {
                    let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    buf.copy_within(4..16, 0);
                    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                    buf[14..16].copy_from_slice(&aux.tp_vlan_tci.to_be_bytes());
                    n + 4
                }
                _ => {
                    buf.copy_within(4..4 + n, 0);
                    n
                }
            }));
        }
    }
}

/// The `PACKET_AUXDATA` control message of a received frame, if present.
fn auxdata(msg: &libc::msghdr) -> Option<TpacketAuxdata> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer within
    // msg_controllen, and the data is read unaligned into a plain-data struct.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == sys::SOL_PACKET
                && (*cmsg).cmsg_type == sys::PACKET_AUXDATA
                && (*cmsg).cmsg_len as usize >= libc::CMSG_LEN(size_of::<TpacketAuxdata>() as u32) as usize
            {
                return Some((libc::CMSG_DATA(cmsg) as *const TpacketAuxdata).read_unaligned());
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}
