//! The one place that issues each kind of syscall. Every wrapper returns an error naming the
//! call that failed, so a user sees "setsockopt(PACKET_RX_RING): Cannot allocate memory"
//! rather than a bare errno.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub use crate::error::{SysError, SysResult};

fn check(ret: libc::c_int, call: &'static str) -> SysResult<libc::c_int> {
    if ret < 0 { Err(SysError::last(call)) } else { Ok(ret) }
}

// Kernel ABI values (linux/if_packet.h, linux/if_ether.h, linux/sockios.h), written down here
// so the code does not depend on which ones a libc release exports.
/// `ETH_P_ALL`: every protocol.
pub const ETH_P_ALL: u16 = 0x0003;
pub(crate) const SOL_PACKET: libc::c_int = 263;
pub(crate) const PACKET_RX_RING: libc::c_int = 5;
pub(crate) const PACKET_AUXDATA: libc::c_int = 8;
pub(crate) const PACKET_VERSION: libc::c_int = 10;
pub(crate) const PACKET_TX_RING: libc::c_int = 13;
pub(crate) const PACKET_FANOUT: libc::c_int = 18;
pub(crate) const PACKET_STATISTICS: libc::c_int = 6;
pub(crate) const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub(crate) const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
pub(crate) const TPACKET_V2: libc::c_int = 1;
pub(crate) const PACKET_FANOUT_HASH: u32 = 0;
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCGIFMTU: libc::c_ulong = 0x8921;
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCGIFINDEX: libc::c_ulong = 0x8933;
const SIOCGIFADDR: libc::c_ulong = 0x8915;

/// `struct tpacket_req`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct TpacketReq {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
}

/// `struct tpacket_auxdata` (PACKET_AUXDATA control message).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TpacketAuxdata {
    pub tp_status: u32,
    pub tp_len: u32,
    pub tp_snaplen: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub tp_vlan_tci: u16,
    pub tp_vlan_tpid: u16,
}

/// Opens a packet socket that receives nothing until it is bound with a protocol.
pub fn packet_socket() -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; the returned fd is owned below.
    let fd = check(
        unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
        "socket(AF_PACKET)",
    )?;
    // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with a plain-data value.
pub(crate) fn setsockopt<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    call: &'static str,
) -> SysResult<()> {
    // SAFETY: `value` points to a live `T` of the size passed; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret, call).map(|_| ())
}

/// Puts the interface in promiscuous mode for as long as this socket is open
/// (`PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC`).
pub(crate) fn add_promiscuous(fd: &OwnedFd, ifindex: u32) -> SysResult<()> {
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

/// `getsockopt` into a plain-data value.
pub(crate) fn getsockopt<T: Copy + Default>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    call: &'static str,
) -> SysResult<T> {
    let mut value = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live T of the size passed for the kernel to fill.
    let ret =
        unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut T).cast(), &mut len) };
    check(ret, call)?;
    Ok(value)
}

/// `getsockopt(PACKET_STATISTICS)`: (frames received, frames dropped) since the last call.
pub(crate) fn packet_statistics(fd: &OwnedFd) -> SysResult<(u32, u32)> {
    // struct tpacket_stats { tp_packets, tp_drops }
    let stats: [u32; 2] = getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, "getsockopt(PACKET_STATISTICS)")?;
    Ok((stats[0], stats[1]))
}

/// Turns on the packet-socket option `option` (`setsockopt(SOL_PACKET, option, 1)`).
pub(crate) fn enable_packet_option(fd: &OwnedFd, option: libc::c_int, call: &'static str) -> SysResult<()> {
    setsockopt(fd, SOL_PACKET, option, &1i32, call)
}

/// Attaches a classic BPF program (`SO_ATTACH_FILTER`).
pub fn attach_filter(fd: &OwnedFd, program: &[reflector_bpf::cbpf::Insn]) -> SysResult<()> {
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct SockFprog {
        len: u16,
        filter: *const reflector_bpf::cbpf::Insn,
    }
    let len = u16::try_from(program.len()).map_err(|_| SysError {
        call: "setsockopt(SO_ATTACH_FILTER)",
        err: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    let prog = SockFprog { len, filter: program.as_ptr() };
    // `Insn` is `#[repr(C)]` with the layout of `struct sock_filter` (checked by a test).
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

/// A shared memory mapping of a socket's rings, unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// the only handle the process uses to reach it.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` read-write, shared, populated.
    pub fn new(fd: &OwnedFd, len: usize) -> SysResult<Mmap> {
        // SAFETY: a fresh mapping at an address the kernel chooses; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::last("mmap(packet rings)"));
        }
        Ok(Mmap { ptr: ptr.cast(), len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and nothing else unmaps.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
///
/// A socket error (POLLERR: for a packet socket, ENETDOWN when its interface goes down) is
/// read and so cleared, and the call returns `false`: the error says nothing the worker must
/// act on (the control loop watches the interface), and left pending it would make every
/// later poll return at once, a worker spinning at 100% for as long as the link is down.
pub fn poll_readable(fd: RawFd, timeout: Duration) -> SysResult<bool> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one live pollfd is passed with count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = SysError::last("poll");
        return if e.errno() == Some(libc::EINTR) { Ok(false) } else { Err(e) };
    }
    if n > 0 && pfd.revents & libc::POLLERR != 0 && pfd.revents & libc::POLLIN == 0 {
        let mut err: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` is a live c_int of the size passed; SO_ERROR reads and clears the
        // socket's pending error.
        let ret = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        check(ret, "getsockopt(SO_ERROR)")?;
        if err == 0 {
            // POLLERR without a pending error (an error queue): wait out the timeout instead
            // of returning at once again and again.
            std::thread::sleep(timeout);
        }
        return Ok(false);
    }
    Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
}

/// Asks the kernel to transmit what is queued in a TX ring (`send` with no data).
pub fn kick_tx(fd: RawFd) -> SysResult<()> {
    // SAFETY: a zero-length send with a null buffer is the documented TX ring kick.
    let n = unsafe { libc::send(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = SysError::last("send(TX ring)");
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

pub use crate::iface::{IfaceError, IfaceInfo};
pub use crate::os::{is_root, process_cpu_time, signal_process};

fn ifreq_for(name: &str) -> Result<libc::ifreq, IfaceError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(IfaceError::BadName(name.into()));
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn ioctl_ifreq(
    fd: &OwnedFd,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
    call: &'static str,
) -> SysResult<()> {
    // SAFETY: `req` is a live ifreq, which is what these SIOCGIF* requests read and write.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut libc::ifreq) }, call).map(|_| ())
}

/// Looks up `name` in the calling thread's network namespace.
pub fn iface_info(name: &str) -> Result<IfaceInfo, IfaceError> {
    let mut req = ifreq_for(name)?;
    // SAFETY: plain syscall; the fd is owned below.
    let raw = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
        "socket(AF_INET)",
    )?;
    // SAFETY: `raw` was just returned by socket() and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Err(e) = ioctl_ifreq(&fd, SIOCGIFINDEX, &mut req, "ioctl(SIOCGIFINDEX)") {
        return Err(if e.errno() == Some(libc::ENODEV) {
            IfaceError::NotFound(name.into())
        } else {
            e.into()
        });
    }
    // SAFETY: SIOCGIFINDEX filled the ifru_ifindex member of the union.
    let index = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
    ioctl_ifreq(&fd, SIOCGIFHWADDR, &mut req, "ioctl(SIOCGIFHWADDR)")?;
    // SAFETY: SIOCGIFHWADDR filled the ifru_hwaddr member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = *src as u8;
    }
    ioctl_ifreq(&fd, SIOCGIFFLAGS, &mut req, "ioctl(SIOCGIFFLAGS)")?;
    // SAFETY: SIOCGIFFLAGS filled the ifru_flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
    ioctl_ifreq(&fd, SIOCGIFMTU, &mut req, "ioctl(SIOCGIFMTU)")?;
    // SAFETY: SIOCGIFMTU filled the ifru_mtu member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu } as u32;
    // No address is not an error: the interface may carry only IPv6, or nothing.
    let ipv4 = ioctl_ifreq(&fd, SIOCGIFADDR, &mut req, "ioctl(SIOCGIFADDR)").ok().map(|()| {
        // SAFETY: SIOCGIFADDR filled the ifru_addr member with a sockaddr_in.
        let addr = unsafe { req.ifr_ifru.ifru_addr };
        std::net::Ipv4Addr::new(
            addr.sa_data[2] as u8,
            addr.sa_data[3] as u8,
            addr.sa_data[4] as u8,
            addr.sa_data[5] as u8,
        )
    });
    Ok(IfaceInfo {
        index,
        ipv4,
        mac: reflector_core::MacAddr(mac),
        up: flags & libc::IFF_UP != 0,
        running: flags & libc::IFF_RUNNING != 0,
        mtu,
    })
}

/// Moves the calling thread into the network namespace at `path` (e.g. `/run/netns/NAME`).
pub fn enter_netns(path: &str) -> SysResult<()> {
    let file = std::fs::File::open(path).map_err(|err| SysError { call: "open(netns)", err })?;
    // SAFETY: a valid fd to a namespace file; CLONE_NEWNET changes only this thread's namespace.
    check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, "setns(CLONE_NEWNET)").map(|_| ())
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> SysResult<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let ret = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    check(ret, "sched_getaffinity")?;
    // SAFETY: CPU_ISSET reads the set within its size.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> SysResult<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes within the set (cpu < CPU_SETSIZE is checked by the caller's source).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed; pid 0 is the calling thread.
    check(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) }, "sched_setaffinity")
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_layouts() {
        assert_eq!(size_of::<TpacketReq>(), 16);
        assert_eq!(size_of::<TpacketAuxdata>(), 20);
        assert_eq!(size_of::<reflector_bpf::cbpf::Insn>(), 8, "struct sock_filter");
    }

    #[test]
    fn interface_lookup() {
        let lo = iface_info("lo").expect("loopback exists");
        assert!(lo.index >= 1 && lo.up && lo.mtu >= 1500);
        assert_eq!(lo.mac, reflector_core::MacAddr::ZERO);
        assert_eq!(lo.ipv4, Some(std::net::Ipv4Addr::LOCALHOST));
        assert!(matches!(iface_info("no-such-if0"), Err(IfaceError::NotFound(_))));
        assert!(matches!(iface_info("this-name-is-far-too-long"), Err(IfaceError::BadName(_))));
        assert!(matches!(iface_info(""), Err(IfaceError::BadName(_))));
    }

    #[test]
    fn cpus_are_listed() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
    }
}
