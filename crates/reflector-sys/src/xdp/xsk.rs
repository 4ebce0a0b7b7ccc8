//! AF_XDP sockets, one per receive queue, sharing one UMEM: opening, binding, the four rings,
//! and the UMEM split into one share per socket.
//!
//! The UMEM is registered on the first socket; the others bind with `XDP_SHARED_UMEM`, each
//! with its own fill and completion rings (the kernel's rule for sharing across queues). The
//! frames are split into one equal share per socket; a [`UmemShare`] only ever hands out frames
//! of its own range, so a worker can touch only its own frames, and the shares of one UMEM never
//! overlap. Every ring is as large as the share, and the share's frames start on the fill ring.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::ring::{Consumer, Producer, RingLayout, XdpDesc};
use crate::error::{SysError, SysResult};
use crate::mmap::Mmap;
use crate::sock::{getsockopt, setsockopt};

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

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XdpStatistics {
    /// Dropped for want of a buffer from the fill ring, or too large for one.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Drops for an empty fill ring (also counted in `rx_dropped`).
    pub rx_fill_ring_empty_descs: u64,
    /// TX attempts that found the TX ring empty.
    pub tx_ring_empty_descs: u64,
}

impl XdpStatistics {
    /// Frames the kernel had for this socket but could not deliver: `rx_dropped` (no buffer
    /// from the fill ring, or a frame too large for one) and `rx_ring_full`. A drop for an empty
    /// fill ring is counted in both `rx_dropped` and `rx_fill_ring_empty_descs` (copy mode,
    /// net/xdp/xsk.c), so the latter is not added: a test compares the sum with the interface's
    /// drop counter.
    pub fn lost(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }
}
const XDP_PGOFF_RX_RING: i64 = 0;
const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;
const XDP_SHARED_UMEM: u16 = 1 << 0;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
/// UMEM frame size.
pub const FRAME_SIZE: u32 = 4096;
/// The smallest share of the UMEM a socket gets: one full batch of the worker (64 frames).
pub const MIN_SHARE: u32 = 64;

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
    /// Not allowed to open the socket: what is missing, and how to grant it.
    #[error("{0}")]
    Permission(String),
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
        "registering {0} MiB of UMEM failed: the locked-memory limit is too small (raise it with 'ulimit -l' or LimitMEMLOCK= in the service unit, or grant CAP_IPC_LOCK)"
    )]
    Memlock(usize),
    /// A step failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// One socket's share of the UMEM: frames `[first, first + span)` bytes into it.
#[derive(Debug)]
pub struct UmemShare {
    map: Arc<Mmap>,
    first: u64,
    span: u64,
}

// SAFETY: see `frame_mut`: a share reaches only its own range, which no other share covers.
unsafe impl Send for UmemShare {}

impl UmemShare {
    /// Splits `map` into `shares` shares of `frames` frames each.
    fn split(map: Arc<Mmap>, frames: u32, shares: u32) -> Vec<UmemShare> {
        let span = frames as u64 * FRAME_SIZE as u64;
        assert!(span * shares as u64 <= map.len() as u64, "the shares fit the UMEM");
        (0..shares as u64).map(|i| UmemShare { map: map.clone(), first: i * span, span }).collect()
    }

    /// The UMEM address of this share's first frame.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Frames in this share.
    pub fn frames(&self) -> u32 {
        (self.span / FRAME_SIZE as u64) as u32
    }

    /// The start of the frame that holds `addr`, when that frame is in this share.
    pub fn frame_start(&self, addr: u64) -> Option<u64> {
        let start = addr - addr % FRAME_SIZE as u64;
        (self.first..self.first + self.span).contains(&start).then_some(start)
    }

    /// The `len` bytes at UMEM address `addr`, when they lie inside one frame of this share.
    pub fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let start = self.frame_start(addr)?;
        if addr + len as u64 > start + FRAME_SIZE as u64 {
            return None;
        }
        let ptr = self.map.range(addr as usize, len as usize)?;
        // SAFETY: the bytes lie inside the mapping (checked by `range`) and inside this share
        // (checked above). Shares of one UMEM never overlap (`split`), and the frame belongs to
        // the caller from the moment its descriptor was taken off the RX ring until its address
        // goes back on the fill or TX ring; `&mut self` keeps one view at a time.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len as usize) })
    }

    /// The frame of `len` bytes at UMEM address `addr` with the rest of its UMEM frame after it
    /// (room an answer may grow into: the frame is the first `len` bytes), and the `META`
    /// bytes in front of it (where an XDP program's metadata lies): `None` for them when the
    /// frame starts less than `META` bytes into its UMEM frame. `None` when the frame does not
    /// lie inside one frame of this share.
    pub fn frame_and_meta_mut<const META: usize>(
        &mut self,
        addr: u64,
        len: u32,
    ) -> Option<(Option<&mut [u8; META]>, &mut [u8])> {
        let start = self.frame_start(addr)?;
        let end = start + FRAME_SIZE as u64;
        if addr + len as u64 > end {
            return None;
        }
        let head = if addr - start >= META as u64 { META } else { 0 };
        let from = addr as usize - head;
        let span = (end - addr) as usize;
        let ptr = self.map.range(from, head + span)?;
        // SAFETY: as in `frame_mut`; the bytes in front of the frame and after it up to the end
        // of its UMEM frame are inside that UMEM frame (checked above), which is ours for as long
        // as its descriptor is.
        let whole = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), head + span) };
        let (meta, frame) = whole.split_at_mut(head);
        Some((meta.try_into().ok(), frame))
    }
}

/// Our sides of one socket's four rings.
#[derive(Debug)]
pub struct XskRings {
    /// Frames for the kernel to receive into.
    pub fill: Producer<u64>,
    /// Frames the kernel has sent.
    pub completion: Consumer<u64>,
    /// Received frames.
    pub rx: Consumer<XdpDesc>,
    /// Frames to send.
    pub tx: Producer<XdpDesc>,
}

impl XskRings {
    /// Puts every frame of `share` on the fill ring (at start, for the kernel to receive into).
    pub fn fill_with(&mut self, share: &UmemShare) {
        for i in 0..share.frames() as u64 {
            self.fill.push(share.first + i * FRAME_SIZE as u64);
        }
        self.fill.submit();
    }
}

/// One AF_XDP socket, bound to one queue.
#[derive(Debug)]
pub struct XskSocket {
    fd: OwnedFd,
    /// Zero-copy mode is active (else copy mode).
    pub zero_copy: bool,
    /// The queue it is bound to.
    pub queue: u32,
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What [`XskSocket::open_queues`] returns per queue: the socket, its rings and its share.
pub type XskQueue = (XskSocket, XskRings, UmemShare);

impl XskSocket {
    /// Opens one socket per queue `0..queues` of `ifindex`, sharing a UMEM of `umem_bytes`
    /// (4 KiB frames, split equally): zero-copy if the driver offers it, else copy mode.
    pub fn open_queues(ifindex: u32, queues: u32, umem_bytes: usize) -> Result<Vec<XskQueue>, XskError> {
        let frames = share(umem_bytes, queues)
            .ok_or(XskError::UmemTooSmall { mib: umem_bytes >> 20, sockets: queues })?;
        let umem_len = frames as usize * queues as usize * FRAME_SIZE as usize;
        let umem = Arc::new(Mmap::anonymous(umem_len, "mmap(UMEM)")?);
        let mut out: Vec<XskQueue> = Vec::with_capacity(queues as usize);
        for (queue, share) in UmemShare::split(umem.clone(), frames, queues).into_iter().enumerate() {
            let owner = out.first().map(|(s, _, _)| s.fd.as_raw_fd());
            let (socket, rings) = XskSocket::open_one(ifindex, queue as u32, &umem, &share, owner)?;
            out.push((socket, rings, share));
        }
        Ok(out)
    }

    /// One socket on `queue` for `share`; `owner` is the fd of the socket the UMEM is
    /// registered on (`None`: this one registers it).
    fn open_one(
        ifindex: u32,
        queue: u32,
        umem: &Mmap,
        share: &UmemShare,
        owner: Option<i32>,
    ) -> Result<(XskSocket, XskRings), XskError> {
        let fd = crate::sock::socket(AF_XDP, libc::SOCK_RAW, 0, "socket(AF_XDP)").map_err(|e| {
            if e.errno() == Some(libc::EPERM) {
                XskError::Permission(crate::privilege::refused(
                    "opening an AF_XDP socket",
                    crate::privilege::SOCKET,
                ))
            } else {
                e.into()
            }
        })?;
        if owner.is_none() {
            let reg = UmemReg {
                addr: umem.ptr().as_ptr() as u64,
                len: umem.len() as u64,
                chunk_size: FRAME_SIZE,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            if let Err(e) = setsockopt(&fd, SOL_XDP, XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)") {
                return Err(
                    if matches!(e.errno(), Some(libc::ENOBUFS) | Some(libc::ENOMEM) | Some(libc::EPERM)) {
                        XskError::Memlock(umem.len() >> 20)
                    } else {
                        e.into()
                    },
                );
            }
        }
        // Every ring as large as the share (see the module documentation); a socket sharing
        // the UMEM on another queue needs fill and completion rings of its own.
        let frames = share.frames();
        setsockopt(&fd, SOL_XDP, XDP_UMEM_FILL_RING, &frames, "setsockopt(XDP_UMEM_FILL_RING)")?;
        setsockopt(&fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &frames, "setsockopt(XDP_UMEM_COMPLETION_RING)")?;
        setsockopt(&fd, SOL_XDP, XDP_RX_RING, &frames, "setsockopt(XDP_RX_RING)")?;
        setsockopt(&fd, SOL_XDP, XDP_TX_RING, &frames, "setsockopt(XDP_TX_RING)")?;
        let off: MmapOffsets = getsockopt(&fd, SOL_XDP, XDP_MMAP_OFFSETS, "getsockopt(XDP_MMAP_OFFSETS)")?;
        let map = |o: &RingOffset, elem: usize, pgoff: i64, call| -> SysResult<(Arc<Mmap>, RingLayout)> {
            let len = o.desc as usize + frames as usize * elem;
            let layout = RingLayout {
                producer: o.producer as usize,
                consumer: o.consumer as usize,
                flags: o.flags as usize,
                descs: o.desc as usize,
                size: frames,
            };
            Ok((Arc::new(Mmap::shared(&fd, pgoff, len, call)?), layout))
        };
        let rx = map(&off.rx, size_of::<XdpDesc>(), XDP_PGOFF_RX_RING, "mmap(RX ring)")?;
        let tx = map(&off.tx, size_of::<XdpDesc>(), XDP_PGOFF_TX_RING, "mmap(TX ring)")?;
        let fr = map(&off.fr, 8, XDP_UMEM_PGOFF_FILL_RING, "mmap(fill ring)")?;
        let cr = map(&off.cr, 8, XDP_UMEM_PGOFF_COMPLETION_RING, "mmap(completion ring)")?;
        // SAFETY: each layout comes from XDP_MMAP_OFFSETS for the very mapping it is paired
        // with, sized for `frames` descriptors; this socket is the only user of each side.
        let mut rings = unsafe {
            XskRings {
                fill: Producer::new(fr.0, fr.1),
                completion: Consumer::new(cr.0, cr.1),
                rx: Consumer::new(rx.0, rx.1),
                tx: Producer::new(tx.0, tx.1),
            }
        };
        // The share's frames start in the fill ring, for the kernel to receive into.
        rings.fill_with(share);
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
        let options: u32 = getsockopt(&fd, SOL_XDP, XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")?;
        Ok((XskSocket { fd, zero_copy: options & XDP_OPTIONS_ZEROCOPY != 0, queue }, rings))
    }

    /// Asks the kernel to poll the device from the syscall (`SO_BUSY_POLL`, 50 µs).
    pub fn set_busy_poll(&self) -> SysResult<()> {
        setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &50i32, "setsockopt(SO_BUSY_POLL)")
    }

    /// The socket's file descriptor (for the XSKMAP).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Asks the kernel to send what is on the TX ring (a zero-length `sendto`).
    pub fn kick_tx(&self) -> SysResult<()> {
        crate::sock::send_empty(self.fd.as_fd(), "sendto(AF_XDP)")
    }

    /// Waits up to `wait` for received frames.
    pub fn wait_readable(&self, wait: Duration) -> SysResult<bool> {
        crate::sock::poll_readable(self.fd.as_fd(), wait)
    }

    /// Wakes the kernel's fill-ring processing (a zero-length, non-blocking `recvfrom`).
    pub fn wake_fill(&self) {
        // SAFETY: a zero-length recvfrom with null buffers writes no memory.
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

    /// The kernel's cumulative counters for this socket.
    pub fn statistics(&self) -> SysResult<XdpStatistics> {
        getsockopt(&self.fd, SOL_XDP, XDP_STATISTICS, "getsockopt(XDP_STATISTICS)")
    }
}

/// A UMEM and rings in plain memory, with the kernel's side of each ring, for tests of the code
/// that drives a socket.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use crate::xdp::ring::testing::pair;
    use std::ptr::NonNull;

    /// The kernel's sides of a socket's four rings.
    #[derive(Debug)]
    pub struct KernelRings {
        /// Takes frames to receive into.
        pub fill: Consumer<u64>,
        /// Hands back sent frames.
        pub completion: Producer<u64>,
        /// Delivers received frames.
        pub rx: Producer<XdpDesc>,
        /// Takes frames to send.
        pub tx: Consumer<XdpDesc>,
    }

    /// The kernel's view of the whole UMEM: it writes received frames and reads sent ones.
    #[derive(Debug)]
    pub struct KernelUmem {
        map: Arc<Mmap>,
    }

    impl KernelUmem {
        fn at(&self, addr: u64, len: usize) -> NonNull<u8> {
            self.map.range(addr as usize, len).expect("inside the UMEM")
        }

        /// Writes `bytes` at `addr` (a frame the kernel holds: taken off a fill ring).
        pub fn write(&self, addr: u64, bytes: &[u8]) {
            let dst = self.at(addr, bytes.len());
            // SAFETY: inside the mapping (checked); no reference to these bytes is alive: the
            // frame is the kernel's, so no share hands it out now.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        }

        /// Reads `len` bytes at `addr` (a frame the kernel holds: taken off a TX ring).
        pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
            let src = self.at(addr, len);
            let mut out = vec![0; len];
            // SAFETY: as in `write`.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr(), len) };
            out
        }
    }

    /// `shares` sockets of `frames` frames each over one UMEM in plain memory: each socket's
    /// rings (its share's frames already on the fill ring) and share, the kernel's sides, and
    /// the kernel's view of the UMEM.
    pub fn sockets(frames: u32, shares: u32) -> (Vec<(XskRings, UmemShare, KernelRings)>, KernelUmem) {
        let len = frames as usize * shares as usize * FRAME_SIZE as usize;
        let map = Arc::new(Mmap::anonymous(len, "mmap(test UMEM)").expect("memory for a test UMEM"));
        let sockets = UmemShare::split(map.clone(), frames, shares)
            .into_iter()
            .map(|share| {
                let (fill, kfill) = pair(frames);
                let (kcompletion, completion) = pair(frames);
                let (krx, rx) = pair(frames);
                let (tx, ktx) = pair(frames);
                let mut rings = XskRings { fill, completion, rx, tx };
                rings.fill_with(&share);
                (rings, share, KernelRings { fill: kfill, completion: kcompletion, rx: krx, tx: ktx })
            })
            .collect();
        (sockets, KernelUmem { map })
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

    #[test]
    fn a_share_hands_out_only_its_own_frames() {
        let (mut sockets, _) = testing::sockets(64, 2);
        let (_, second, _) = sockets.pop().unwrap();
        let (_, mut first, _) = sockets.pop().unwrap();
        let span = 64 * FRAME_SIZE as u64;
        assert_eq!((first.first(), second.first()), (0, span));
        assert!(first.frame_mut(0, 60).is_some());
        assert!(first.frame_mut(span - FRAME_SIZE as u64 + 100, 60).is_some());
        assert!(first.frame_mut(span, 60).is_none(), "the next share's first frame");
        assert!(first.frame_mut(FRAME_SIZE as u64 - 10, 60).is_none(), "across a frame's end");
        assert!(first.frame_mut(u64::MAX - 10, 60).is_none());
        assert_eq!(first.frame_start(FRAME_SIZE as u64 + 7), Some(FRAME_SIZE as u64));
        // The metadata in front of a frame: there when the frame starts far enough into its
        // UMEM frame, and written where the frame's bytes are not.
        let (meta, frame) = first.frame_and_meta_mut::<8>(256, 60).unwrap();
        assert_eq!(frame.len(), FRAME_SIZE as usize - 256, "the frame and the room after it");
        meta.expect("room in front").copy_from_slice(&7u64.to_ne_bytes());
        frame[0] = 1;
        assert_eq!(first.frame_mut(248, 9).unwrap(), [7, 0, 0, 0, 0, 0, 0, 0, 1]);
        let (meta, frame) = first.frame_and_meta_mut::<8>(FRAME_SIZE as u64 + 4, 60).unwrap();
        assert!(meta.is_none() && frame.len() == FRAME_SIZE as usize - 4, "no room in front");
        assert!(first.frame_and_meta_mut::<8>(span, 60).is_none());
        assert!(first.frame_and_meta_mut::<8>(FRAME_SIZE as u64 - 10, 60).is_none());
    }
}
