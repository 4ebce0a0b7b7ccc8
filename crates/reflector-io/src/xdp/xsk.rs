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
//!
//! The sockets, rings and UMEM shares come from `reflector_sys::xdp::xsk`; the frame accounting
//! is here, and is tested in plain memory.

use std::time::{Duration, Instant};

use reflector_sys::error::SysResult;
pub use reflector_sys::xdp::xsk::{FRAME_SIZE, MIN_SHARE, XskError, share};
use reflector_sys::xdp::xsk::{UmemShare, XskRings, XskSocket};

use crate::backend::{Backend, BackendError, Batch, RxTime, Verdict};
use reflector_bpf::xdp::STAMP_META_LEN;

/// How often the kernel's drop counters are read.
const STATS_EVERY: Duration = Duration::from_millis(100);
/// How long an idle worker keeps looking at the RX ring before it sleeps in poll(): under load
/// the next frame is often closer than that, and a poll() that sleeps costs two context
/// switches and a wake-up. Short, because at low rates it is spent once per frame.
const SPIN: Duration = Duration::from_micros(2);
/// Frames handled per batch (a share holds at least this many).
const BATCH: u32 = MIN_SHARE;

/// One AF_XDP socket on one queue, with its rings and its share of the UMEM.
#[derive(Debug)]
pub struct Xsk {
    // The rings and the share go before the socket closes.
    rings: XskRings,
    umem: UmemShare,
    socket: XskSocket,
    /// Zero-copy mode is active (else copy mode).
    pub zero_copy: bool,
    /// The queue it is bound to.
    pub queue: u32,
    /// Spin instead of sleeping in poll() when idle (lowest latency, one busy core).
    pub busy_poll: bool,
    /// When the kernel's counters were last read, and what they said.
    stats: (Instant, u64),
}

impl Xsk {
    /// Opens one socket per queue `0..queues` of `ifindex`, sharing a UMEM of `umem_bytes`
    /// (4 KiB frames, split equally): zero-copy if the driver offers it, else copy mode.
    pub fn open_queues(ifindex: u32, queues: u32, umem_bytes: usize) -> Result<Vec<Xsk>, XskError> {
        Ok(XskSocket::open_queues(ifindex, queues, umem_bytes)?
            .into_iter()
            .map(|(socket, rings, umem)| Xsk {
                rings,
                umem,
                zero_copy: socket.zero_copy,
                queue: socket.queue,
                socket,
                busy_poll: false,
                stats: (Instant::now(), 0),
            })
            .collect())
    }

    /// Busy polling: the worker spins on the rings instead of sleeping in poll(), and the
    /// socket asks the kernel to poll the device from the syscall (`SO_BUSY_POLL`).
    pub fn set_busy_poll(&mut self) -> SysResult<()> {
        self.socket.set_busy_poll()?;
        self.busy_poll = true;
        Ok(())
    }

    /// The socket's file descriptor (for the XSKMAP).
    pub fn raw_fd(&self) -> i32 {
        self.socket.raw_fd()
    }

    /// Spins on the RX ring for up to [`SPIN`]; true when frames arrived.
    fn spin_until_frames(&mut self) -> bool {
        let start = std::time::Instant::now();
        loop {
            for _ in 0..32 {
                std::hint::spin_loop();
                if self.rings.rx.available() > 0 {
                    return true;
                }
            }
            if start.elapsed() >= SPIN {
                return false;
            }
        }
    }

    /// Asks the kernel to send what is on the TX ring. In copy mode one call sends a limited
    /// number of frames, so it loops while frames are pending (bounded, so a stuck queue
    /// cannot hold the worker).
    fn kick_tx(&mut self) -> SysResult<()> {
        for _ in 0..64 {
            if self.rings.tx.outstanding() == 0 {
                break;
            }
            let needed = !self.zero_copy || self.rings.tx.needs_wakeup();
            if let Err(e) = if needed { self.socket.kick_tx() } else { Ok(()) } {
                match e.errno() {
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {}
                    // The interface is down (or gone, which the control loop sees): the
                    // frames wait on the TX ring until it is up again.
                    Some(libc::ENETDOWN) | Some(libc::ENXIO) => break,
                    _ => return Err(e),
                }
            }
            recycle_completions(&mut self.rings);
        }
        Ok(())
    }
}

impl Backend for Xsk {
    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        recycle_completions(&mut self.rings);
        if self.rings.rx.available() == 0 && !self.busy_poll && !self.spin_until_frames() {
            // Idle: sleep in poll() until frames arrive (which also wakes the kernel's fill
            // side when it asked for it).
            self.socket.wait_readable(wait)?;
        }
        let (mut batch, queued) = reflect(&mut self.rings, &mut self.umem, &mut handle);
        if queued > 0 {
            self.kick_tx()?;
        }
        // The kernel's drop counters are cumulative: report what is new since the last read.
        if self.stats.0.elapsed() >= STATS_EVERY {
            let lost = self.socket.statistics()?.lost();
            batch.rx_dropped = lost.saturating_sub(self.stats.1);
            self.stats = (Instant::now(), lost);
        }
        if self.rings.fill.needs_wakeup() && batch.received == 0 {
            self.socket.wake_fill();
        }
        Ok(batch)
    }

    /// The XDP program that redirects to the socket applies the lists and limits.
    fn gates_in_kernel(&self) -> bool {
        true
    }
}

/// The receive time the XDP program put in front of a STAMP request (CLOCK_TAI), if it did;
/// the bytes are cleared once read, so a later frame in the same UMEM frame never finds a stale
/// one (a frame without metadata reads as zero).
#[inline(always)]
fn take_receive_time(meta: &mut [u8; STAMP_META_LEN]) -> RxTime {
    match u64::from_ne_bytes(*meta) {
        0 => RxTime::Unknown,
        tai => {
            *meta = [0; STAMP_META_LEN];
            RxTime::Tai(tai)
        }
    }
}

/// Sent frames back to the fill ring.
fn recycle_completions(rings: &mut XskRings) {
    let mut n = 0;
    while let Some(addr) = rings.completion.pop() {
        rings.fill.push(addr);
        n += 1;
    }
    if n > 0 {
        rings.completion.release();
        rings.fill.submit();
    }
}

/// Takes up to one batch off the RX ring (never more than the TX ring can hold, so no
/// reflection has to be dropped) and hands each frame to `handle` where it lies in the UMEM. A
/// frame to reflect goes on the TX ring; any other goes straight back to the fill ring, so every
/// frame of the share is always in exactly one place. Returns what happened and how many frames
/// were queued for sending (submitted, not yet kicked).
fn reflect<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
    rings: &mut XskRings,
    umem: &mut UmemShare,
    handle: &mut F,
) -> (Batch, u32) {
    let mut batch = Batch::default();
    let budget = BATCH.min(rings.tx.free(BATCH));
    let mut queued = 0;
    let mut returned = 0;
    while (batch.received as u32) < budget {
        let Some(desc) = rings.rx.pop() else { break };
        batch.received += 1;
        let Some(frame_start) = umem.frame_start(desc.addr) else {
            // Not this socket's share (never seen from the kernel): touching it could race
            // another worker, and it is not ours to put back.
            batch.rx_invalid += 1;
            continue;
        };
        let mut desc = desc;
        // The frame, with the rest of its UMEM frame as room for an answer longer than it.
        let hit = match umem.frame_and_meta_mut::<STAMP_META_LEN>(desc.addr, desc.len) {
            Some((meta, room)) => {
                let len = desc.len as usize;
                match handle(room, len, meta.map_or(RxTime::Unknown, take_receive_time)) {
                    Ok(hit) => {
                        desc.len = hit.answer_len(len) as u32;
                        true
                    }
                    Err(_) => false,
                }
            }
            None => {
                // Runs past the end of its frame.
                batch.rx_invalid += 1;
                false
            }
        };
        if hit && rings.tx.push(desc) {
            queued += 1;
        } else {
            if hit {
                batch.tx_error_packets += 1;
                batch.tx_error_bytes += desc.len as u64;
            }
            // Back to the fill ring at the start of its frame.
            rings.fill.push(frame_start);
            returned += 1;
        }
    }
    if batch.received > 0 {
        rings.rx.release();
    }
    if returned > 0 {
        rings.fill.submit();
    }
    if queued > 0 {
        rings.tx.submit();
    }
    (batch, queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reflector_core::testing::verdict;
    use reflector_sys::xdp::ring::XdpDesc;
    use reflector_sys::xdp::xsk::testing::sockets;

    const F: u64 = FRAME_SIZE as u64;

    #[test]
    fn every_frame_is_always_in_exactly_one_place() {
        // Two sockets of 64 frames over one UMEM; work with the second, whose share starts at
        // 64 frames in.
        let (mut all, kumem) = sockets(64, 2);
        let (mut rings, mut umem, mut k) = all.pop().unwrap();
        let base = 64 * F;
        // The kernel takes every frame of the share off the fill ring.
        let mut free: Vec<u64> = std::iter::from_fn(|| k.fill.pop()).collect();
        k.fill.release();
        assert_eq!(free.len(), 64);
        assert!(free.iter().all(|a| (base..base + 64 * F).contains(a) && a % F == 0));
        // It receives ten frames into them (two at an offset into their frame), plus a
        // descriptor of the other share and one running past its frame's end.
        let mut delivered = Vec::new();
        for i in 0..10u8 {
            let addr = free.pop().unwrap() + if i < 2 { 256 } else { 0 };
            kumem.write(addr, &[i; 60]);
            if i == 0 {
                // The XDP program's receive time in front of the first (a STAMP request's).
                kumem.write(addr - 8, &12_345u64.to_ne_bytes());
            }
            assert!(k.rx.push(XdpDesc { addr, len: 60, options: 0 }));
            delivered.push(addr);
        }
        let stray = free.pop().unwrap();
        assert!(k.rx.push(XdpDesc { addr: 0, len: 60, options: 0 }), "the other share's frame");
        assert!(k.rx.push(XdpDesc { addr: stray + F - 10, len: 60, options: 0 }), "past its end");
        k.rx.submit();
        // Even frames are reflected (first byte flipped), odd ones refused.
        let mut times = Vec::new();
        let (batch, queued) = reflect(&mut rings, &mut umem, &mut |b: &mut [u8], len: usize, t: RxTime| {
            let f = &mut b[..len];
            times.push(t);
            f[1] ^= 0xff;
            verdict(f[0].is_multiple_of(2))
        });
        assert_eq!((batch.received, batch.rx_invalid, queued), (12, 2, 5));
        assert_eq!(times[0], RxTime::Tai(12_345), "the metadata's receive time");
        assert!(times[1..].iter().all(|t| *t == RxTime::Unknown), "{times:?}");
        assert_eq!(kumem.read(delivered[0] - 8, 8), vec![0; 8], "read once, then cleared");
        // The kernel sees five reflections on TX, in order, changed in place.
        let sent: Vec<XdpDesc> = std::iter::from_fn(|| k.tx.pop()).collect();
        k.tx.release();
        assert_eq!(
            sent.iter().map(|d| d.addr).collect::<Vec<_>>(),
            delivered.iter().step_by(2).copied().collect::<Vec<_>>()
        );
        assert_eq!(kumem.read(sent[1].addr, 3), vec![2, 2 ^ 0xff, 2]);
        // Five refused frames and the frame running past its end are back on the fill ring,
        // at their frames' starts; the other share's frame is not.
        let refilled: Vec<u64> = std::iter::from_fn(|| k.fill.pop()).collect();
        k.fill.release();
        let mut want: Vec<u64> = delivered.iter().skip(1).step_by(2).map(|a| a - a % F).collect();
        want.push(stray);
        assert_eq!(refilled, want);
        // Sending completes: the frames go back to the fill ring at the next recycle.
        for d in &sent {
            assert!(k.completion.push(d.addr));
        }
        k.completion.submit();
        recycle_completions(&mut rings);
        let recycled: Vec<u64> = std::iter::from_fn(|| k.fill.pop()).collect();
        assert_eq!(recycled, sent.iter().map(|d| d.addr).collect::<Vec<_>>());
        // All 64 frames accounted for: the kernel's free list, the refills, the recycled ones.
        assert_eq!(free.len() + refilled.len() + recycled.len(), 64 - 4 + 4 - 1 + 1);
    }

    #[test]
    fn a_full_tx_ring_bounds_the_batch() {
        let (mut all, kumem) = sockets(64, 1);
        let (mut rings, mut umem, mut k) = all.pop().unwrap();
        let free: Vec<u64> = std::iter::from_fn(|| k.fill.pop()).collect();
        k.fill.release();
        // The TX ring holds 64; fill 60 of it with frames the kernel has not taken.
        for &addr in &free[..60] {
            assert!(rings.tx.push(XdpDesc { addr, len: 60, options: 0 }));
        }
        rings.tx.submit();
        for &addr in &free[60..] {
            kumem.write(addr, &[0; 60]);
            assert!(k.rx.push(XdpDesc { addr, len: 60, options: 0 }));
        }
        k.rx.submit();
        let (batch, queued) =
            reflect(&mut rings, &mut umem, &mut |_: &mut [u8], _: usize, _: RxTime| verdict(true));
        assert_eq!((batch.received, queued, batch.tx_error_packets), (4, 4, 0), "exactly the room left");
        let (batch, _) =
            reflect(&mut rings, &mut umem, &mut |_: &mut [u8], _: usize, _: RxTime| verdict(true));
        assert_eq!(batch.received, 0, "no room: the RX ring waits, nothing is dropped");
        let _ = kumem;
    }
}
