//! The AF_PACKET backend: TPACKET_V2 RX and TX rings shared with the kernel.
//!
//! Per frame there is no syscall: the kernel fills RX slots, the worker copies each candidate
//! into a TX slot (the one copy AF_PACKET needs, re-inserting a VLAN tag the kernel moved into
//! metadata), the core reflects it there in place, and one `send()` per batch flushes the TX
//! ring. When idle, the worker sleeps in `poll()`, which wakes on the next frame: TPACKET_V2
//! has no block timeout that could hold a lone probe back.
//!
//! The rings themselves (slot ownership, the header layout) are `reflector_sys::tpacket`; the
//! walk over them is here, and is tested in plain memory.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reflector_bpf::cbpf::Insn;
use reflector_sys::error::SysError;
use reflector_sys::mmap::Mmap;
pub use reflector_sys::packet::AfPacketError;
use reflector_sys::packet::{self as sys, TpacketReq};
use reflector_sys::sock::{poll_readable, setsockopt};
use reflector_sys::tpacket::{
    Direction, FrameRing, TP_STATUS_AVAILABLE, TP_STATUS_KERNEL, TP_STATUS_SEND_REQUEST,
    TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, TP_STATUS_WRONG_FORMAT, TX_DATA_OFFSET,
};

use crate::backend::{Backend, BackendError, Batch, RxTime, Verdict};

/// RX data starts at `tp_mac`, at most this far in for Ethernet (see `tpacket_rcv`).
const RX_MAX_MAC_OFFSET: usize = 96;
/// Frames per batch: the TX ring is flushed once per batch.
const BATCH: usize = 64;
/// How often the kernel's drop counter is read.
const STATS_EVERY: Duration = Duration::from_millis(100);
/// How long a worker waits for a TX slot before counting a reflection as a TX error.
const TX_SLOT_WAIT: Duration = Duration::from_millis(20);

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

/// One worker's packet socket with its RX and TX rings.
#[derive(Debug)]
pub struct AfPacket {
    // Field order matters for drop: the rings (and their mapping) go before the socket closes.
    rx: FrameRing,
    tx: FrameRing,
    ring_bytes: usize,
    fd: OwnedFd,
    /// When the kernel's drop counter was last read.
    stats_read: Instant,
}

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
        let fd = sys::open_socket()?;
        setsockopt(
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
        sys::attach_filter(&fd, &crate::host::sock_filters(config.program))?;
        let frame_size = slot_size(config.mtu);
        let rx_req = ring_request(frame_size, config.rx_frames);
        let tx_req = ring_request(frame_size, config.tx_frames);
        setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_RX_RING, &rx_req, "setsockopt(PACKET_RX_RING)")?;
        setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_TX_RING, &tx_req, "setsockopt(PACKET_TX_RING)")?;
        let rx_len = rx_req.block_size as usize * rx_req.block_nr as usize;
        let tx_len = tx_req.block_size as usize * tx_req.block_nr as usize;
        // The TX ring follows the RX ring in one mapping.
        let map = Arc::new(Mmap::shared(&fd, 0, rx_len + tx_len, "mmap(packet rings)")?);
        let ring = |offset, req: &TpacketReq, direction| {
            FrameRing::new(map.clone(), offset, frame_size, req.frame_nr as usize, direction).ok_or(
                SysError { call: "mmap(packet rings)", err: std::io::Error::from_raw_os_error(libc::EINVAL) },
            )
        };
        let rx = ring(0, &rx_req, Direction::Rx)?;
        let tx = ring(rx_len, &tx_req, Direction::Tx)?;
        sys::bind_packet(&fd, config.ifindex, sys::ETH_P_ALL)?;
        if config.promiscuous {
            sys::add_promiscuous(&fd, config.ifindex)?;
        }
        if let Some(group) = config.fanout_group {
            let arg: u32 = group as u32 | (sys::PACKET_FANOUT_HASH << 16);
            setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_FANOUT, &arg, "setsockopt(PACKET_FANOUT)")?;
        }
        Ok(AfPacket { rx, tx, ring_bytes: map.len(), fd, stats_read: Instant::now() })
    }

    /// Bytes of ring memory mapped.
    pub fn ring_bytes(&self) -> usize {
        self.ring_bytes
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
            let Some(mut slot) = self.tx.head() else { break };
            let len = fill(slot.bytes_mut(TX_DATA_OFFSET));
            if len == 0 {
                break;
            }
            slot.set_len(len as u32);
            slot.hand_over(TP_STATUS_SEND_REQUEST);
            queued += 1;
        }
        if queued > 0 {
            sys::kick_tx(self.fd.as_fd())?;
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
        if !self.rx.head_is_ours() {
            if wait.is_zero() {
                return Ok(0);
            }
            poll_readable(self.fd.as_fd(), wait)?;
        }
        let mut n = 0;
        while let Some(slot) = self.rx.head() {
            let hdr = slot.header();
            let bytes = slot.bytes(hdr.tp_mac as usize);
            let timestamp_ns = hdr.tp_sec as u64 * 1_000_000_000 + hdr.tp_nsec as u64;
            handle(Received { data: &bytes[..(hdr.tp_snaplen as usize).min(bytes.len())], timestamp_ns });
            slot.hand_over(TP_STATUS_KERNEL);
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
        sys::attach_filter(&self.fd, &crate::host::sock_filters(&program))?;
        Ok(())
    }

    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        if !self.rx.head_is_ours() {
            poll_readable(self.fd.as_fd(), wait)?;
        }
        let fd = self.fd.as_fd();
        let (mut batch, queued) =
            walk(&mut self.rx, &mut self.tx, &mut || Ok(sys::kick_tx(fd)?), &mut handle)?;
        if queued > 0 {
            sys::kick_tx(self.fd.as_fd())?;
        }
        // Ring-full drops, read (and reset) by the kernel call a few times a second.
        if self.stats_read.elapsed() >= STATS_EVERY {
            self.stats_read = Instant::now();
            batch.rx_dropped = self.take_rx_dropped()?;
        }
        Ok(batch)
    }
}

/// Waits until the TX ring's head slot is ours, pushing the ring with `kick` meanwhile; false
/// when it stayed busy past [`TX_SLOT_WAIT`].
fn wait_for_tx_slot(
    tx: &FrameRing,
    kick: &mut impl FnMut() -> Result<(), BackendError>,
) -> Result<bool, BackendError> {
    let mut deadline: Option<Instant> = None;
    while !tx.head_is_ours() {
        // Still queued or being sent: push the ring and wait a little.
        kick()?;
        let now = Instant::now();
        match deadline {
            None => deadline = Some(now + TX_SLOT_WAIT),
            Some(d) if now >= d => return Ok(false),
            Some(_) => std::thread::yield_now(),
        }
    }
    Ok(true)
}

/// Moves up to [`BATCH`] frames from the RX ring through `handle` into the TX ring: each is
/// copied into a TX slot (with a VLAN tag the kernel took off put back), reflected there in
/// place, and queued when `handle` says so. Returns what happened and how many were queued.
fn walk<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
    rx: &mut FrameRing,
    tx: &mut FrameRing,
    kick: &mut impl FnMut() -> Result<(), BackendError>,
    handle: &mut F,
) -> Result<(Batch, usize), BackendError> {
    let mut batch = Batch::default();
    let mut queued = 0;
    while batch.received < BATCH {
        let Some(rx_slot) = rx.head() else { break };
        batch.received += 1;
        let hdr = rx_slot.header();
        let snaplen = hdr.tp_snaplen as usize;
        if hdr.tp_len as usize > snaplen {
            // tp_len over tp_snaplen: the frame did not fit the ring's slot (the MTU grew after
            // the rings were sized). Never judged on a part: counted as invalid.
            batch.rx_invalid += 1;
            rx_slot.hand_over(TP_STATUS_KERNEL);
            continue;
        }
        let tx_slot = if wait_for_tx_slot(tx, kick)? { tx.head() } else { None };
        let Some(mut tx_slot) = tx_slot else {
            // The TX ring stayed full: this reflection is lost, and counted as such.
            batch.tx_error_packets += 1;
            batch.tx_error_bytes += snaplen as u64;
            rx_slot.hand_over(TP_STATUS_KERNEL);
            continue;
        };
        if tx_slot.status() == TP_STATUS_WRONG_FORMAT {
            // The kernel refused the frame it last held: count it, and take the slot back.
            batch.tx_error_packets += 1;
            batch.tx_error_bytes += tx_slot.header().tp_len as u64;
            tx_slot.set_status(TP_STATUS_AVAILABLE);
        }
        let src = rx_slot.bytes(hdr.tp_mac as usize);
        let src = &src[..snaplen.min(src.len())];
        let dst = tx_slot.bytes_mut(TX_DATA_OFFSET);
        let status = rx_slot.status();
        let len = if status & TP_STATUS_VLAN_VALID != 0 && src.len() >= 12 && src.len() + 4 <= dst.len() {
            // The kernel moved the outer tag into metadata; put it back where it was.
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 { hdr.tp_vlan_tpid } else { 0x8100 };
            dst[..12].copy_from_slice(&src[..12]);
            dst[12..14].copy_from_slice(&tpid.to_be_bytes());
            dst[14..16].copy_from_slice(&hdr.tp_vlan_tci.to_be_bytes());
            dst[16..16 + src.len() - 12].copy_from_slice(&src[12..]);
            src.len() + 4
        } else {
            let n = src.len().min(dst.len());
            dst[..n].copy_from_slice(&src[..n]);
            n
        };
        // The kernel's receive timestamp (CLOCK_REALTIME, taken when the frame entered the
        // packet socket's receive path).
        let received = hdr.tp_sec as u64 * 1_000_000_000 + hdr.tp_nsec as u64;
        // The rest of the slot is room for an answer longer than the request.
        if let Ok(hit) = handle(dst, len, RxTime::Utc(received)) {
            tx_slot.set_len(hit.answer_len(len) as u32);
            tx_slot.hand_over(TP_STATUS_SEND_REQUEST);
            queued += 1;
        }
        rx_slot.hand_over(TP_STATUS_KERNEL);
    }
    Ok((batch, queued))
}

/// The af-packet data path: one AF_PACKET socket per worker (`settings.workers`, default 1),
/// in a fanout group when there are several, behind the classic BPF pre-filter of `filter`.
pub fn open(
    settings: &crate::datapath::contract::Settings,
    iface: crate::datapath::contract::Iface<'_>,
    filter: &reflector_core::Filter,
) -> anyhow::Result<crate::datapath::contract::Opening<Vec<AfPacket>>> {
    use anyhow::Context as _;

    use crate::datapath::contract::{Backend, BackendInfo, Choice, Opening};
    let program =
        reflector_bpf::cbpf::program(filter).context("the kernel filter does not fit in classic BPF")?;
    let workers = settings.workers.unwrap_or(1);
    let fanout = (workers > 1).then(|| (std::process::id() & 0xffff) as u16);
    let config = AfPacketConfig {
        ifindex: iface.info.index,
        mtu: iface.info.mtu,
        program: &program,
        fanout_group: fanout,
        rx_frames: 4096,
        tx_frames: 1024,
        promiscuous: false,
    };
    let backends = (0..workers)
        .map(|_| AfPacket::open(&config).with_context(|| format!("cannot open AF_PACKET on {}", iface.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut info = BackendInfo::new(Backend::AfPacket, Choice::Asked);
    info.kernel_filter_instructions = Some(program.len());
    Ok(Opening { workers: backends, kernel: None, info })
}

/// Whether af-packet runs here: a packet socket opened (and closed).
pub fn probe(_iface: crate::datapath::contract::Iface<'_>) -> crate::datapath::contract::Verdict {
    use crate::datapath::contract::Verdict;
    match sys::open_socket() {
        Ok(_) => Verdict { runs: true, why: "a packet socket opens".into() },
        Err(e) => Verdict { runs: false, why: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reflector_core::testing::verdict;

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

    use reflector_sys::tpacket::Tpacket2Hdr;
    use reflector_sys::tpacket::testing::ring;

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| n.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn the_ring_walk_in_plain_memory() {
        let (mut rx, krx) = ring(2048, 8, Direction::Rx);
        let (mut tx, ktx) = ring(2048, 8, Direction::Tx);
        let mut kicks = 0;
        let mut kick = || -> Result<(), BackendError> {
            kicks += 1;
            Ok(())
        };
        // Slot 0: an ordinary frame; 1: a tagged frame whose tag the kernel took off (802.1ad
        // TPID); 2: cut short (tp_len over tp_snaplen); 3: one the handler refuses.
        assert!(krx.deliver(
            0,
            &frame(1, 60),
            66,
            Tpacket2Hdr { tp_sec: 5, tp_nsec: 7, ..Default::default() }
        ));
        let tagged = Tpacket2Hdr {
            tp_status: TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID,
            tp_vlan_tci: 0x0123,
            tp_vlan_tpid: 0x88a8,
            ..Default::default()
        };
        assert!(krx.deliver(1, &frame(2, 60), 66, tagged));
        assert!(krx.deliver(2, &frame(3, 60), 66, Tpacket2Hdr { tp_len: 9000, ..Default::default() }));
        assert!(krx.deliver(3, &frame(4, 60), 66, Tpacket2Hdr::default()));
        let mut seen = Vec::new();
        let mut times = Vec::new();
        let mut handle = |b: &mut [u8], len: usize, received: RxTime| {
            let f = &mut b[..len];
            seen.push(f.to_vec());
            times.push(received);
            f[0] ^= 0xff; // "reflect" in place
            verdict(f[12] != 4 + 12)
        };
        let (batch, queued) = walk(&mut rx, &mut tx, &mut kick, &mut handle).unwrap();
        assert_eq!(
            batch,
            Batch { received: 4, rx_invalid: 1, ..Default::default() },
            "four frames, one of them cut short"
        );
        assert_eq!(queued, 2);
        assert_eq!(seen.len(), 3, "the cut-short frame is never judged");
        assert_eq!(times[0], RxTime::Utc(5_000_000_007), "the kernel's receive time goes with the frame");
        // The tag is back in place, between the MACs and the EtherType.
        let mut want = frame(2, 60);
        want.splice(12..12, [0x88, 0xa8, 0x01, 0x23]);
        assert_eq!(seen[1], want);
        // What the kernel is asked to send: the reflections, in order.
        let mut sent0 = frame(1, 60);
        sent0[0] ^= 0xff;
        want[0] ^= 0xff;
        assert_eq!(ktx.take_sent(0, false), Some(sent0));
        assert_eq!(ktx.take_sent(1, false), Some(want));
        assert_eq!(ktx.take_sent(2, false), None, "the refused frame is not sent");
        for slot in 0..4 {
            assert_eq!(krx.status_of(slot), TP_STATUS_KERNEL, "RX slot {slot} handed back");
        }
        assert_eq!(kicks, 0, "free TX slots need no push");
    }

    #[test]
    fn a_full_tx_ring_costs_counted_reflections_and_a_refused_frame_is_counted() {
        let (mut rx, krx) = ring(2048, 8, Direction::Rx);
        let (mut tx, ktx) = ring(2048, 2, Direction::Tx);
        let kicks = std::cell::Cell::new(0);
        let mut kick = || -> Result<(), BackendError> {
            kicks.set(kicks.get() + 1);
            Ok(())
        };
        for slot in 0..3 {
            assert!(krx.deliver(slot, &frame(slot as u8, 60), 66, Tpacket2Hdr::default()));
        }
        let (batch, queued) =
            walk(&mut rx, &mut tx, &mut kick, &mut |_: &mut [u8], _: usize, _: RxTime| verdict(true))
                .unwrap();
        // Two TX slots: the third reflection waits TX_SLOT_WAIT, pushing the ring, then counts.
        assert_eq!(queued, 2);
        assert_eq!((batch.received, batch.tx_error_packets, batch.tx_error_bytes), (3, 1, 60));
        assert!(kicks.get() > 0);
        // The kernel refuses the first frame and sends the second.
        assert!(ktx.take_sent(0, true).is_some());
        assert!(ktx.take_sent(1, false).is_some());
        assert!(krx.deliver(3, &frame(9, 70), 66, Tpacket2Hdr::default()));
        let (batch, queued) =
            walk(&mut rx, &mut tx, &mut kick, &mut |_: &mut [u8], _: usize, _: RxTime| verdict(true))
                .unwrap();
        assert_eq!(queued, 1);
        assert_eq!((batch.received, batch.tx_error_packets, batch.tx_error_bytes), (1, 1, 60), "the refusal");
        assert_eq!(ktx.take_sent(0, false), Some(frame(9, 70)));
    }
}
