//! The AF_PACKET backend: TPACKET_V2 RX and TX rings shared with the kernel.
//!
//! Per frame there is no syscall: the kernel fills RX slots, the worker copies each candidate
//! into a TX slot (the one copy AF_PACKET needs, re-inserting a VLAN tag the kernel moved into
//! metadata), the core reflects it there in place, and one `send()` per batch flushes the TX
//! ring. When idle, the worker sleeps in `poll()`, which wakes on the next frame: TPACKET_V2
//! has no block timeout that could hold a lone probe back.
//!
//! Ring protocol (Documentation/networking/packet_mmap.rst): a slot belongs to userspace
//! while its `tp_status` says so; userspace reads the status with acquire ordering before
//! touching the slot and hands it back with a release store after the last write.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reflector_bpf::cbpf::Insn;

use crate::backend::{Backend, BackendError, Batch};
use crate::sys::{self, Mmap, SysError, TpacketReq};

// tp_status values (linux/if_packet.h).
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// TX data starts after the aligned `tpacket2_hdr` (TPACKET2_HDRLEN - sizeof(sockaddr_ll)).
const TX_DATA_OFFSET: usize = 32;
/// RX data starts at `tp_mac`, at most this far in for Ethernet (see `tpacket_rcv`).
const RX_MAX_MAC_OFFSET: usize = 96;
/// Frames per batch: the TX ring is flushed once per batch.
const BATCH: usize = 64;
/// How often the kernel's drop counter is read.
const STATS_EVERY: Duration = Duration::from_millis(100);
/// How long a worker waits for a TX slot before counting a reflection as a TX error.
const TX_SLOT_WAIT: Duration = Duration::from_millis(20);

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// The process may not open packet sockets.
    #[error(
        "opening a packet socket needs CAP_NET_RAW (run as root, or grant it: setcap cap_net_raw,cap_net_admin+ep reflector)"
    )]
    Permission,
    /// A syscall failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// Opens a packet socket, naming the missing capability when that is why it fails.
pub(crate) fn open_socket() -> Result<OwnedFd, AfPacketError> {
    sys::packet_socket().map_err(|e| match e.errno() {
        Some(libc::EPERM) | Some(libc::EACCES) => AfPacketError::Permission,
        _ => AfPacketError::Sys(e),
    })
}

/// How to open one AF_PACKET worker socket.
#[derive(Debug, Clone)]
pub struct AfPacketConfig<'a> {
    /// Interface index.
    pub ifindex: u32,
    /// Interface MTU (sizes the ring slots).
    pub mtu: u32,
    /// The kernel pre-filter.
    pub program: &'a [Insn],
    /// Fanout group to join when several workers share the interface.
    pub fanout_group: Option<u16>,
    /// RX ring slots.
    pub rx_frames: u32,
    /// TX ring slots.
    pub tx_frames: u32,
    /// Receive frames for any MAC (the tester side, when it sends from a MAC that is not the
    /// interface's). The kernel undoes it when the socket closes.
    pub promiscuous: bool,
}

/// Slot geometry of one ring inside the shared mapping.
#[derive(Debug)]
struct Ring {
    base: *mut u8,
    frame_size: usize,
    frames: usize,
}

impl Ring {
    /// The slot's status word.
    fn status(&self, slot: usize) -> &AtomicU32 {
        debug_assert!(slot < self.frames);
        // SAFETY: the slot lies inside the mapping (slot < frames, frames * frame_size is within
        // the ring), `tp_status` is the first, 4-byte aligned field of `tpacket2_hdr`, and the
        // kernel accesses it concurrently, hence the atomic view.
        unsafe { &*(self.base.add(slot * self.frame_size) as *const AtomicU32) }
    }

    /// A `u32` / `u16` header field at byte `offset` of the slot.
    fn read_u32(&self, slot: usize, offset: usize) -> u32 {
        // SAFETY: inside the slot's header, aligned, and owned by userspace (status USER).
        unsafe { (self.base.add(slot * self.frame_size + offset) as *const u32).read_volatile() }
    }
    fn read_u16(&self, slot: usize, offset: usize) -> u16 {
        // SAFETY: as in `read_u32`.
        unsafe { (self.base.add(slot * self.frame_size + offset) as *const u16).read_volatile() }
    }
    fn write_u32(&self, slot: usize, offset: usize, value: u32) {
        // SAFETY: inside the slot's header, aligned, and owned by userspace (status AVAILABLE).
        unsafe { (self.base.add(slot * self.frame_size + offset) as *mut u32).write_volatile(value) }
    }

    /// The slot's bytes from `offset` to its end.
    #[allow(clippy::mut_from_ref)]
    fn bytes(&self, slot: usize, offset: usize) -> &mut [u8] {
        assert!(offset <= self.frame_size);
        // SAFETY: the range lies inside one slot; the caller holds the slot (its status says
        // userspace owns it) and no other reference to it is alive while this one is used.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.add(slot * self.frame_size + offset),
                self.frame_size - offset,
            )
        }
    }
}

/// One worker's packet socket with its RX and TX rings.
#[derive(Debug)]
pub struct AfPacket {
    // Field order matters for drop: the rings' mapping goes before the socket is closed.
    rx: Ring,
    tx: Ring,
    map: Mmap,
    fd: OwnedFd,
    rx_head: usize,
    tx_head: usize,
    /// When the kernel's drop counter was last read.
    stats_read: Instant,
}

// SAFETY: the raw pointers in `Ring` point into `map`, which this value owns and which moves
// with it; nothing else in the process refers to the mapping.
unsafe impl Send for AfPacket {}

fn slot_size(mtu: u32) -> usize {
    // Room for the RX header and MAC offset, a frame of MTU plus Ethernet and two VLAN tags.
    (RX_MAX_MAC_OFFSET + mtu as usize + 14 + 8).next_power_of_two().max(2048)
}

fn ring_request(frame_size: usize, frames: u32) -> TpacketReq {
    let per_block = (65536 / frame_size).max(1);
    let block_nr = (frames as usize).div_ceil(per_block);
    TpacketReq {
        block_size: (per_block * frame_size) as u32,
        block_nr: block_nr as u32,
        frame_size: frame_size as u32,
        frame_nr: (block_nr * per_block) as u32,
    }
}

impl AfPacket {
    /// Opens, configures and binds a socket with its rings; it receives only after `bind`,
    /// when the filter is already in place.
    pub fn open(config: &AfPacketConfig<'_>) -> Result<AfPacket, AfPacketError> {
        let fd = open_socket()?;
        sys::setsockopt(
            &fd,
            sys::SOL_PACKET,
            sys::PACKET_VERSION,
            &sys::TPACKET_V2,
            "setsockopt(PACKET_VERSION)",
        )?;
        // Reflections skip the qdisc: they are answers, not new traffic to shape.
        sys::enable_packet_option(&fd, sys::PACKET_QDISC_BYPASS, "setsockopt(PACKET_QDISC_BYPASS)")?;
        // Our own transmissions must not come back in through the RX ring.
        sys::enable_packet_option(&fd, sys::PACKET_IGNORE_OUTGOING, "setsockopt(PACKET_IGNORE_OUTGOING)")?;
        sys::attach_filter(&fd, config.program)?;
        let frame_size = slot_size(config.mtu);
        let rx_req = ring_request(frame_size, config.rx_frames);
        let tx_req = ring_request(frame_size, config.tx_frames);
        sys::setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_RX_RING, &rx_req, "setsockopt(PACKET_RX_RING)")?;
        sys::setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_TX_RING, &tx_req, "setsockopt(PACKET_TX_RING)")?;
        let rx_len = rx_req.block_size as usize * rx_req.block_nr as usize;
        let tx_len = tx_req.block_size as usize * tx_req.block_nr as usize;
        // The TX ring follows the RX ring in one mapping.
        let map = Mmap::new(&fd, rx_len + tx_len)?;
        let rx = Ring { base: map.as_ptr(), frame_size, frames: rx_req.frame_nr as usize };
        // SAFETY: rx_len < map.len(), so the TX ring's base is inside the mapping.
        let tx_base = unsafe { map.as_ptr().add(rx_len) };
        let tx = Ring { base: tx_base, frame_size, frames: tx_req.frame_nr as usize };
        sys::bind_packet(&fd, config.ifindex, sys::ETH_P_ALL)?;
        if config.promiscuous {
            sys::add_promiscuous(&fd, config.ifindex)?;
        }
        if let Some(group) = config.fanout_group {
            let arg: u32 = group as u32 | (sys::PACKET_FANOUT_HASH << 16);
            sys::setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_FANOUT, &arg, "setsockopt(PACKET_FANOUT)")?;
        }
        Ok(AfPacket { rx, tx, map, fd, rx_head: 0, tx_head: 0, stats_read: Instant::now() })
    }

    /// Bytes of ring memory mapped.
    pub fn ring_bytes(&self) -> usize {
        self.map.len()
    }

    /// Waits until the TX slot at `tx_head` is free. Returns the bytes of a frame the kernel
    /// refused in it, if any, or `None` when it stayed busy past [`TX_SLOT_WAIT`].
    fn claim_tx_slot(&mut self) -> Result<Option<Option<u32>>, BackendError> {
        let slot = self.tx_head;
        let mut deadline: Option<Instant> = None;
        loop {
            match self.tx.status(slot).load(Ordering::Acquire) {
                TP_STATUS_AVAILABLE => return Ok(Some(None)),
                TP_STATUS_WRONG_FORMAT => {
                    let len = self.tx.read_u32(slot, 4);
                    self.tx.status(slot).store(TP_STATUS_AVAILABLE, Ordering::Release);
                    return Ok(Some(Some(len)));
                }
                _ => {
                    // Still queued or being sent: push the ring and wait a little.
                    sys::kick_tx(self.fd.as_raw_fd())?;
                    let now = Instant::now();
                    match deadline {
                        None => deadline = Some(now + TX_SLOT_WAIT),
                        Some(d) if now >= d => return Ok(None),
                        Some(_) => std::thread::yield_now(),
                    }
                }
            }
        }
    }
}

/// A frame received by [`AfPacket::receive`].
#[derive(Debug)]
pub struct Received<'a> {
    /// The frame's bytes (as captured; an outer VLAN tag the kernel took off is not restored).
    pub data: &'a [u8],
    /// The kernel's receive time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
}

impl AfPacket {
    /// Fills up to `max` free TX slots with `fill` (which writes one frame into the slot and
    /// returns its length, or 0 to stop) and asks the kernel to send them. Returns how many
    /// were queued; fewer than asked when the ring is full.
    pub fn send_batch(
        &mut self,
        max: usize,
        mut fill: impl FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, BackendError> {
        let mut queued = 0;
        while queued < max {
            let slot = self.tx_head;
            match self.tx.status(slot).load(Ordering::Acquire) {
                TP_STATUS_AVAILABLE | TP_STATUS_WRONG_FORMAT => {}
                _ => break,
            }
            let len = fill(self.tx.bytes(slot, TX_DATA_OFFSET));
            if len == 0 {
                break;
            }
            self.tx.write_u32(slot, 4, len as u32);
            self.tx.status(slot).store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx_head = (self.tx_head + 1) % self.tx.frames;
            queued += 1;
        }
        if queued > 0 {
            sys::kick_tx(self.fd.as_raw_fd())?;
        }
        Ok(queued)
    }

    /// Hands every frame waiting in the RX ring to `handle` (waiting up to `wait` for the first
    /// one). Returns how many there were.
    pub fn receive(
        &mut self,
        wait: Duration,
        mut handle: impl FnMut(Received<'_>),
    ) -> Result<usize, BackendError> {
        if self.rx.status(self.rx_head).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            if wait.is_zero() {
                return Ok(0);
            }
            sys::poll_readable(self.fd.as_raw_fd(), wait)?;
        }
        let mut n = 0;
        loop {
            let slot = self.rx_head;
            if self.rx.status(slot).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                break;
            }
            let snaplen = self.rx.read_u32(slot, 8) as usize;
            let mac = self.rx.read_u16(slot, 12) as usize;
            let timestamp_ns =
                self.rx.read_u32(slot, 16) as u64 * 1_000_000_000 + self.rx.read_u32(slot, 20) as u64;
            let bytes = self.rx.bytes(slot, mac.min(self.rx.frame_size));
            handle(Received { data: &bytes[..snaplen.min(bytes.len())], timestamp_ns });
            self.rx.status(slot).store(TP_STATUS_KERNEL, Ordering::Release);
            self.rx_head = (self.rx_head + 1) % self.rx.frames;
            n += 1;
        }
        Ok(n)
    }

    /// Frames the kernel dropped since the last call because the RX ring was full.
    pub fn take_rx_dropped(&mut self) -> Result<u64, BackendError> {
        Ok(sys::packet_statistics(&self.fd)?.1 as u64)
    }
}

impl Backend for AfPacket {
    /// Attaching a new classic BPF program replaces the old one atomically.
    fn update_filter(&mut self, filter: &reflector_core::Filter) -> Result<(), BackendError> {
        let program = reflector_bpf::cbpf::program(filter).ok_or(BackendError(SysError {
            call: "classic BPF program",
            err: std::io::Error::from_raw_os_error(libc::E2BIG),
        }))?;
        sys::attach_filter(&self.fd, &program)?;
        Ok(())
    }

    fn process<F: FnMut(&mut [u8]) -> bool>(
        &mut self,
        wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        let mut batch = Batch::default();
        if self.rx.status(self.rx_head).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            sys::poll_readable(self.fd.as_raw_fd(), wait)?;
        }
        let mut queued = 0;
        while batch.received < BATCH {
            let rx_slot = self.rx_head;
            let status = self.rx.status(rx_slot).load(Ordering::Acquire);
            if status & TP_STATUS_USER == 0 {
                break;
            }
            batch.received += 1;
            let snaplen = self.rx.read_u32(rx_slot, 8) as usize;
            if (self.rx.read_u32(rx_slot, 4) as usize) > snaplen {
                // tp_len over tp_snaplen: the frame did not fit the ring's slot (the MTU grew
                // after the rings were sized). Never judged on a part: counted as invalid.
                batch.rx_invalid += 1;
                self.rx.status(rx_slot).store(TP_STATUS_KERNEL, Ordering::Release);
                self.rx_head = (self.rx_head + 1) % self.rx.frames;
                continue;
            }
            let mac = self.rx.read_u16(rx_slot, 12) as usize;
            let vlan_tci = self.rx.read_u16(rx_slot, 24);
            let vlan_tpid = self.rx.read_u16(rx_slot, 26);

            match self.claim_tx_slot()? {
                None => {
                    // The TX ring stayed full: this reflection is lost, and counted as such.
                    batch.tx_error_packets += 1;
                    batch.tx_error_bytes += snaplen as u64;
                }
                Some(refused) => {
                    if let Some(len) = refused {
                        batch.tx_error_packets += 1;
                        batch.tx_error_bytes += len as u64;
                    }
                    let src = &self.rx.bytes(rx_slot, mac)[..snaplen.min(self.rx.frame_size - mac)];
                    let dst = self.tx.bytes(self.tx_head, TX_DATA_OFFSET);
                    let len = if status & TP_STATUS_VLAN_VALID != 0
                        && src.len() >= 12
                        && src.len() + 4 <= dst.len()
                    {
                        // The kernel moved the outer tag into metadata; put it back where it was.
                        let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 { vlan_tpid } else { 0x8100 };
                        dst[..12].copy_from_slice(&src[..12]);
                        dst[12..14].copy_from_slice(&tpid.to_be_bytes());
                        dst[14..16].copy_from_slice(&vlan_tci.to_be_bytes());
                        dst[16..16 + src.len() - 12].copy_from_slice(&src[12..]);
                        src.len() + 4
                    } else {
                        let n = src.len().min(dst.len());
                        dst[..n].copy_from_slice(&src[..n]);
                        n
                    };
                    if handle(&mut dst[..len]) {
                        self.tx.write_u32(self.tx_head, 4, len as u32); // tp_len
                        self.tx.status(self.tx_head).store(TP_STATUS_SEND_REQUEST, Ordering::Release);
                        self.tx_head = (self.tx_head + 1) % self.tx.frames;
                        queued += 1;
                    }
                }
            }
            self.rx.status(rx_slot).store(TP_STATUS_KERNEL, Ordering::Release);
            self.rx_head = (self.rx_head + 1) % self.rx.frames;
        }
        if queued > 0 {
            sys::kick_tx(self.fd.as_raw_fd())?;
        }
        // Ring-full drops, read (and reset) by the kernel call a few times a second.
        if self.stats_read.elapsed() >= STATS_EVERY {
            self.stats_read = Instant::now();
            batch.rx_dropped = self.take_rx_dropped()?;
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_geometry() {
        assert_eq!(slot_size(1500), 2048);
        assert_eq!(slot_size(9000), 16384);
        let req = ring_request(2048, 4096);
        assert_eq!((req.block_size, req.block_nr, req.frame_nr), (65536, 128, 4096));
        let req = ring_request(16384, 100);
        assert_eq!((req.block_size, req.frame_nr), (65536, 100));
        assert_eq!(req.block_size as usize % 4096, 0);
    }
}
