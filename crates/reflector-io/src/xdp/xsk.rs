//! AF_XDP sockets, one per receive queue, sharing one UMEM.
//!
//! The UMEM is registered on the first socket; the others bind with `XDP_SHARED_UMEM`, each
//! with its own fill and completion rings (the kernel's rule for sharing across queues). The
//! frames are split into one equal share per socket, and a share only ever circulates through
//! its own socket's rings, so each worker thread touches only its own frames.
//!
//! Frames are reflected where they land: an RX descriptor's frame is handed to the core in
//! the UMEM and, when it is a test packet, the same address goes on the TX ring. A rejected
//! frame's address goes straight back to the fill ring, a sent frame's when it completes, so
//! every frame is always in exactly one place and the fill ring (as large as the share) can
//! never overflow.
#![allow(unsafe_code)]

use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::ring::{Consumer, Producer, RingMemory, XdpDesc};
use crate::backend::{Backend, BackendError, Batch};
use crate::error::{SysError, SysResult};

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
/// How often the kernel's drop counters are read.
const STATS_EVERY: Duration = Duration::from_millis(100);
/// How long an idle worker keeps looking at the RX ring before it sleeps in poll(): under load
/// the next frame is often closer than that, and a poll() that sleeps costs two context
/// switches and a wake-up. Short, because at low rates it is spent once per frame.
const SPIN: Duration = Duration::from_micros(2);

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

impl XdpStatistics {
    /// Frames the kernel had for this socket but could not deliver: `rx_dropped` (no buffer
    /// from the fill ring, or a frame too large for one) and `rx_ring_full`. A drop for an empty
    /// fill ring is counted in both `rx_dropped` and `rx_fill_ring_empty_descs` (copy mode,
    /// net/xdp/xsk.c), so the latter is not added: a test compares the sum with the interface's
    /// drop counter.
    fn lost(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }
}
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;
const XDP_SHARED_UMEM: u16 = 1 << 0;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
/// UMEM frame size.
pub const FRAME_SIZE: u32 = 4096;
/// Frames handled per batch.
const BATCH: u32 = 64;
/// The smallest share of the UMEM a socket gets: one full batch.
pub const MIN_SHARE: u32 = BATCH;

/// Frames per socket when `umem_bytes` of UMEM are shared by `sockets` sockets: an equal
/// share, rounded down to a power of two (ring sizes must be), `None` below [`MIN_SHARE`].
pub fn share(umem_bytes: usize, sockets: u32) -> Option<u32> {
    let frames = umem_bytes / FRAME_SIZE as usize / sockets.max(1) as usize;
    let frames = u32::try_from(frames).unwrap_or(u32::MAX);
    (frames >= MIN_SHARE).then(|| 1 << frames.ilog2())
}

/// `struct xdp_umem_reg` (the 32-byte layout, `tx_metadata_len` 0).
#[repr(C)]
#[derive(Clone, Copy)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// Not allowed to open the socket.
    #[error("opening an AF_XDP socket needs CAP_NET_RAW (run as root)")]
    Permission,
    /// The UMEM is too small to give every socket a share of at least [`MIN_SHARE`] frames.
    #[error(
        "a UMEM of {mib} MiB is too small for {sockets} sockets (at least {MIN_SHARE} 4 KiB frames each)"
    )]
    UmemTooSmall {
        /// UMEM size in MiB.
        mib: usize,
        /// Sockets to share it.
        sockets: u32,
    },
    /// The UMEM could not be locked in memory.
    #[error(
        "registering {0} MiB of UMEM failed: the locked-memory limit is too small (raise it with 'ulimit -l', or run with CAP_IPC_LOCK)"
    )]
    Memlock(usize),
    /// A step failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// An anonymous or shared mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<(&OwnedFd, libc::off_t)>, call: &'static str) -> SysResult<Mapping> {
        let (flags, raw, off) = match fd {
            Some((f, off)) => (libc::MAP_SHARED | libc::MAP_POPULATE, f.as_raw_fd(), off),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0),
        };
        // SAFETY: a fresh mapping at an address the kernel picks; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, raw, off)
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::last(call));
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }
}

// SAFETY: a mapping is only an address range: it hands out its pointer and unmaps on drop.
// Every access through the pointer is an `unsafe` block with its own argument (for the shared
// UMEM: each socket touches only its own share).
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` offers nothing but the pointer and the length.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: this value created the mapping and nothing else unmaps it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn setsockopt<T: Copy>(fd: &OwnedFd, name: libc::c_int, value: &T, call: &'static str) -> SysResult<()> {
    crate::sys::setsockopt(fd, SOL_XDP, name, value, call)
}

fn getsockopt<T: Copy + Default>(fd: &OwnedFd, name: libc::c_int, call: &'static str) -> SysResult<T> {
    crate::sys::getsockopt(fd, SOL_XDP, name, call)
}

fn ring_memory(map: &Mapping, off: &RingOffset, size: u32) -> RingMemory {
    // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this very ring mapping.
    unsafe {
        RingMemory {
            producer: map.ptr.add(off.producer as usize).cast(),
            consumer: map.ptr.add(off.consumer as usize).cast(),
            flags: map.ptr.add(off.flags as usize).cast(),
            descs: map.ptr.add(off.desc as usize),
            size,
        }
    }
}

/// One AF_XDP socket on one queue, with its UMEM and four rings.
#[derive(Debug)]
pub struct Xsk {
    fill: Producer<u64>,
    completion: Consumer<u64>,
    rx: Consumer<XdpDesc>,
    tx: Producer<XdpDesc>,
    // Mappings are dropped after the ring sides that point into them, and before the socket.
    _rings: [Mapping; 4],
    /// The whole UMEM, shared with the other sockets (unmapped when the last one goes).
    umem: std::sync::Arc<Mapping>,
    /// This socket's share: frames `[first, first + span)` bytes into the UMEM.
    first: u64,
    span: u64,
    fd: OwnedFd,
    /// Zero-copy mode is active (else copy mode).
    pub zero_copy: bool,
    /// The queue it is bound to.
    pub queue: u32,
    /// Spin instead of sleeping in poll() when idle (lowest latency, one busy core).
    pub busy_poll: bool,
    /// When the kernel's counters were last read, and what they said.
    stats: (std::time::Instant, u64),
}

// SAFETY: the ring sides point into mappings this value owns and moves with it; of the shared
// UMEM it only touches its own share (checked for every descriptor), which no other socket's
// rings ever carry; one worker thread uses it at a time.
unsafe impl Send for Xsk {}

impl Xsk {
    /// Opens one socket per queue `0..queues` of `ifindex`, sharing a UMEM of `umem_bytes`
    /// (4 KiB frames, split equally): zero-copy if the driver offers it, else copy mode.
    pub fn open_queues(ifindex: u32, queues: u32, umem_bytes: usize) -> Result<Vec<Xsk>, XskError> {
        let share = share(umem_bytes, queues)
            .ok_or(XskError::UmemTooSmall { mib: umem_bytes >> 20, sockets: queues })?;
        let umem_len = share as usize * queues as usize * FRAME_SIZE as usize;
        let umem = std::sync::Arc::new(Mapping::new(umem_len, None, "mmap(UMEM)")?);
        let mut sockets: Vec<Xsk> = Vec::with_capacity(queues as usize);
        for queue in 0..queues {
            let owner = sockets.first().map(|s| s.fd.as_raw_fd());
            sockets.push(Xsk::open_one(ifindex, queue, &umem, share, owner)?);
        }
        Ok(sockets)
    }

    /// One socket on `queue` whose share is frames `queue * share ..`; `owner` is the fd of the
    /// socket the UMEM is registered on (`None`: this one registers it).
    fn open_one(
        ifindex: u32,
        queue: u32,
        umem: &std::sync::Arc<Mapping>,
        frames: u32,
        owner: Option<i32>,
    ) -> Result<Xsk, XskError> {
        // SAFETY: plain syscall; the fd is owned below.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = SysError::last("socket(AF_XDP)");
            return Err(if e.errno() == Some(libc::EPERM) { XskError::Permission } else { e.into() });
        }
        // SAFETY: `raw` was just returned by socket() and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if owner.is_none() {
            let reg = UmemReg {
                addr: umem.ptr as u64,
                len: umem.len as u64,
                chunk_size: FRAME_SIZE,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            if let Err(e) = setsockopt(&fd, XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)") {
                return Err(
                    if matches!(e.errno(), Some(libc::ENOBUFS) | Some(libc::ENOMEM) | Some(libc::EPERM)) {
                        XskError::Memlock(umem.len >> 20)
                    } else {
                        e.into()
                    },
                );
            }
        }
        // Every ring as large as the share (see the module documentation); a socket sharing
        // the UMEM on another queue needs fill and completion rings of its own.
        setsockopt(&fd, XDP_UMEM_FILL_RING, &frames, "setsockopt(XDP_UMEM_FILL_RING)")?;
        setsockopt(&fd, XDP_UMEM_COMPLETION_RING, &frames, "setsockopt(XDP_UMEM_COMPLETION_RING)")?;
        setsockopt(&fd, XDP_RX_RING, &frames, "setsockopt(XDP_RX_RING)")?;
        setsockopt(&fd, XDP_TX_RING, &frames, "setsockopt(XDP_TX_RING)")?;
        let off: MmapOffsets = getsockopt(&fd, XDP_MMAP_OFFSETS, "getsockopt(XDP_MMAP_OFFSETS)")?;
        let len = |o: &RingOffset, elem: usize| o.desc as usize + frames as usize * elem;
        let rx_map = Mapping::new(len(&off.rx, 16), Some((&fd, XDP_PGOFF_RX_RING)), "mmap(RX ring)")?;
        let tx_map = Mapping::new(len(&off.tx, 16), Some((&fd, XDP_PGOFF_TX_RING)), "mmap(TX ring)")?;
        let fr_map = Mapping::new(len(&off.fr, 8), Some((&fd, XDP_UMEM_PGOFF_FILL_RING)), "mmap(fill ring)")?;
        let cr_map = Mapping::new(
            len(&off.cr, 8),
            Some((&fd, XDP_UMEM_PGOFF_COMPLETION_RING)),
            "mmap(completion ring)",
        )?;
        // SAFETY: each ring's memory is the mapping just made for it, owned by the returned
        // value; this socket is the only user of each side.
        let (mut fill, completion, rx, tx) = unsafe {
            (
                Producer::new(ring_memory(&fr_map, &off.fr, frames)),
                Consumer::new(ring_memory(&cr_map, &off.cr, frames)),
                Consumer::new(ring_memory(&rx_map, &off.rx, frames)),
                Producer::new(ring_memory(&tx_map, &off.tx, frames)),
            )
        };
        // The share's frames start in the fill ring, for the kernel to receive into.
        let span = frames as u64 * FRAME_SIZE as u64;
        let first = queue as u64 * span;
        for i in 0..frames as u64 {
            fill.push(first + i * FRAME_SIZE as u64);
        }
        fill.submit();
        let bind = |flags: u16| -> SysResult<()> {
            let addr = SockaddrXdp {
                family: AF_XDP as u16,
                flags,
                ifindex,
                queue_id: queue,
                shared_umem_fd: owner.unwrap_or(0) as u32,
            };
            // SAFETY: `addr` is a live sockaddr_xdp of the size passed.
            let ret = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const SockaddrXdp).cast(),
                    size_of::<SockaddrXdp>() as u32,
                )
            };
            if ret < 0 { Err(SysError::last("bind(AF_XDP)")) } else { Ok(()) }
        };
        match owner {
            // Zero-copy where the driver offers it; copy mode otherwise (veth, virtio, most NICs
            // without AF_XDP support in the driver).
            None => {
                bind(XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP).or_else(|_| bind(XDP_COPY | XDP_USE_NEED_WAKEUP))?
            }
            // A sharing socket inherits the owner's mode and need_wakeup; naming them is EINVAL.
            Some(_) => bind(XDP_SHARED_UMEM)?,
        }
        let options: u32 = getsockopt(&fd, XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")?;
        Ok(Xsk {
            fill,
            completion,
            rx,
            tx,
            _rings: [rx_map, tx_map, fr_map, cr_map],
            umem: umem.clone(),
            first,
            span,
            fd,
            zero_copy: options & XDP_OPTIONS_ZEROCOPY != 0,
            queue,
            busy_poll: false,
            stats: (std::time::Instant::now(), 0),
        })
    }

    /// Busy polling: the worker spins on the rings instead of sleeping in poll(), and the
    /// socket asks the kernel to poll the device from the syscall (`SO_BUSY_POLL`).
    pub fn set_busy_poll(&mut self) -> SysResult<()> {
        let usecs: libc::c_int = 50;
        // SAFETY: a live c_int of the size passed.
        let ret = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BUSY_POLL,
                (&usecs as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if ret < 0 {
            return Err(SysError::last("setsockopt(SO_BUSY_POLL)"));
        }
        self.busy_poll = true;
        Ok(())
    }

    /// The socket's file descriptor (for the XSKMAP).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Spins on the RX ring for up to [`SPIN`]; true when frames arrived.
    fn spin_until_frames(&mut self) -> bool {
        let start = std::time::Instant::now();
        loop {
            for _ in 0..32 {
                std::hint::spin_loop();
                if self.rx.available() > 0 {
                    return true;
                }
            }
            if start.elapsed() >= SPIN {
                return false;
            }
        }
    }

    /// Sent frames back to the fill ring.
    fn recycle_completions(&mut self) {
        let mut n = 0;
        while let Some(addr) = self.completion.pop() {
            self.fill.push(addr);
            n += 1;
        }
        if n > 0 {
            self.completion.release();
            self.fill.submit();
        }
    }

    /// Asks the kernel to send what is on the TX ring. In copy mode one call sends a limited
    /// number of frames, so it loops while frames are pending (bounded, so a stuck queue
    /// cannot hold the worker).
    fn kick_tx(&mut self) -> SysResult<()> {
        for _ in 0..64 {
            if self.tx.outstanding() == 0 {
                break;
            }
            if !self.zero_copy || self.tx.needs_wakeup() {
                // SAFETY: a zero-length sendto with null buffers is the documented TX kick.
                let ret = unsafe {
                    libc::sendto(
                        self.fd.as_raw_fd(),
                        std::ptr::null(),
                        0,
                        libc::MSG_DONTWAIT,
                        std::ptr::null(),
                        0,
                    )
                };
                if ret < 0 {
                    let e = SysError::last("sendto(AF_XDP)");
                    match e.errno() {
                        Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {}
                        // The interface is down (or gone, which the control loop sees): the
                        // frames wait on the TX ring until it is up again.
                        Some(libc::ENETDOWN) | Some(libc::ENXIO) => break,
                        _ => return Err(e),
                    }
                }
            }
            self.recycle_completions();
        }
        Ok(())
    }
}

impl Backend for Xsk {
    fn process<F: FnMut(&mut [u8]) -> bool>(
        &mut self,
        wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        self.recycle_completions();
        if self.rx.available() == 0 && !self.busy_poll && !self.spin_until_frames() {
            // Idle: sleep in poll() until frames arrive (which also wakes the kernel's fill
            // side when it asked for it).
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one live pollfd, count 1.
            let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().min(i32::MAX as u128) as i32) };
            if n < 0 {
                let e = SysError::last("poll(AF_XDP)");
                if e.errno() != Some(libc::EINTR) {
                    return Err(e.into());
                }
            }
        }
        let mut batch = Batch::default();
        // Never take more than the TX ring can hold, or reflections would have to be dropped.
        let budget = BATCH.min(self.tx.free(BATCH));
        let mut queued = 0;
        let mut returned = 0;
        while (batch.received as u32) < budget {
            let Some(desc) = self.rx.pop() else { break };
            batch.received += 1;
            let frame_start = desc.addr - desc.addr % FRAME_SIZE as u64;
            if !(self.first..self.first + self.span).contains(&frame_start) {
                // Not this socket's share (never seen from the kernel): touching it could race
                // another worker, and it is not ours to put back.
                batch.rx_invalid += 1;
                continue;
            }
            let hit = if desc.addr + desc.len as u64 <= frame_start + FRAME_SIZE as u64 {
                // SAFETY: the frame lies inside this socket's share of the UMEM (checked
                // above), which no other socket touches, and belongs to us until its address
                // goes back on the fill or TX ring.
                let frame = unsafe {
                    std::slice::from_raw_parts_mut(self.umem.ptr.add(desc.addr as usize), desc.len as usize)
                };
                handle(frame)
            } else {
                batch.rx_invalid += 1;
                false
            };
            if hit && self.tx.push(desc) {
                queued += 1;
            } else {
                if hit {
                    batch.tx_error_packets += 1;
                    batch.tx_error_bytes += desc.len as u64;
                }
                // Back to the fill ring at the start of its frame.
                self.fill.push(frame_start);
                returned += 1;
            }
        }
        if batch.received > 0 {
            self.rx.release();
        }
        if returned > 0 {
            self.fill.submit();
        }
        if queued > 0 {
            self.tx.submit();
            self.kick_tx()?;
        }
        // The kernel's drop counters are cumulative: report what is new since the last read.
        if self.stats.0.elapsed() >= STATS_EVERY {
            let lost =
                getsockopt::<XdpStatistics>(&self.fd, XDP_STATISTICS, "getsockopt(XDP_STATISTICS)")?.lost();
            batch.rx_dropped = lost.saturating_sub(self.stats.1);
            self.stats = (std::time::Instant::now(), lost);
        }
        if self.fill.needs_wakeup() && batch.received == 0 {
            // SAFETY: a zero-length, non-blocking recvfrom wakes the kernel's fill processing.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_umem_is_shared_in_equal_power_of_two_parts() {
        const MIB: usize = 1 << 20;
        // The default 16 MiB: 4096 frames.
        assert_eq!(share(16 * MIB, 1), Some(4096));
        assert_eq!(share(16 * MIB, 4), Some(1024));
        // Three sockets: 1365 frames each, rounded down to 1024 (ring sizes are powers of two).
        assert_eq!(share(16 * MIB, 3), Some(1024));
        // 1 MiB is 256 frames: four shares of 64 are enough, eight of 32 are not.
        assert_eq!(share(MIB, 4), Some(MIN_SHARE));
        assert_eq!(share(MIB, 8), None);
        let e = XskError::UmemTooSmall { mib: 1, sockets: 8 };
        assert_eq!(
            e.to_string(),
            "a UMEM of 1 MiB is too small for 8 sockets (at least 64 4 KiB frames each)"
        );
    }
}
