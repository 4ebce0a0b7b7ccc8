//! TPACKET_V2 rings: the RX and TX rings an `AF_PACKET` socket shares with the kernel.
//!
//! Ring protocol (Documentation/networking/packet_mmap.rst): a slot belongs to userspace while
//! its `tp_status` says so; userspace reads the status with acquire ordering before touching
//! the slot and hands it back with a release store after the last write. [`FrameRing::head`]
//! hands out the slot at the ring's head only while it is ours, as a [`Slot`] that borrows the
//! ring; [`Slot::hand_over`] gives it back and moves the head on.

use std::mem::offset_of;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::mmap::Mmap;

// tp_status values (linux/if_packet.h).
/// RX: the slot is the kernel's.
pub const TP_STATUS_KERNEL: u32 = 0;
/// RX: the slot holds a frame for userspace.
pub const TP_STATUS_USER: u32 = 1;
/// RX: `tp_vlan_tci` holds a tag the kernel took off the frame.
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// RX: `tp_vlan_tpid` holds that tag's TPID.
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
/// TX: the slot is free for userspace.
pub const TP_STATUS_AVAILABLE: u32 = 0;
/// TX: userspace asks the kernel to send the slot.
pub const TP_STATUS_SEND_REQUEST: u32 = 1;
/// TX: the kernel is sending the slot.
pub const TP_STATUS_SENDING: u32 = 2;
/// TX: the kernel refused the slot's frame.
pub const TP_STATUS_WRONG_FORMAT: u32 = 4;

/// TX data starts after the aligned `tpacket2_hdr` (TPACKET2_HDRLEN - sizeof(sockaddr_ll)).
pub const TX_DATA_OFFSET: usize = 32;

/// `struct tpacket2_hdr`: the header at the start of every slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tpacket2Hdr {
    /// Who owns the slot, and flags.
    pub tp_status: u32,
    /// The frame's length on the wire.
    pub tp_len: u32,
    /// The bytes captured into the slot.
    pub tp_snaplen: u32,
    /// Offset of the frame's first byte in the slot.
    pub tp_mac: u16,
    /// Offset of the network header in the slot.
    pub tp_net: u16,
    /// Receive time: seconds.
    pub tp_sec: u32,
    /// Receive time: nanoseconds.
    pub tp_nsec: u32,
    /// A VLAN tag the kernel took off (with `TP_STATUS_VLAN_VALID`).
    pub tp_vlan_tci: u16,
    /// That tag's TPID (with `TP_STATUS_VLAN_TPID_VALID`).
    pub tp_vlan_tpid: u16,
    /// Padding.
    pub tp_padding: [u8; 4],
}

/// Which way a ring carries frames: it decides which statuses make a slot ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The kernel writes, userspace reads (ours while `TP_STATUS_USER` is set).
    Rx,
    /// Userspace writes, the kernel sends (ours unless a send is requested or under way).
    Tx,
}

impl Direction {
    fn ours(self, status: u32) -> bool {
        match self {
            Direction::Rx => status & TP_STATUS_USER != 0,
            Direction::Tx => status & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) == 0,
        }
    }
}

/// One ring of equal slots inside a mapping, with a head that walks it.
#[derive(Debug)]
pub struct FrameRing {
    /// Keeps the mapping alive as long as the ring.
    _map: Arc<Mmap>,
    base: NonNull<u8>,
    frame_size: usize,
    frames: usize,
    head: usize,
    direction: Direction,
}

// SAFETY: the ring reaches only the slots of its own range of the mapping it keeps alive, and
// only through `&mut self` (one thread at a time).
unsafe impl Send for FrameRing {}

impl FrameRing {
    /// The ring of `frames` slots of `frame_size` bytes at `offset` in `map`; `None` when it
    /// does not fit, or a slot is not a multiple of 16 bytes (TPACKET_ALIGNMENT) large enough
    /// for its header.
    pub fn new(
        map: Arc<Mmap>,
        offset: usize,
        frame_size: usize,
        frames: usize,
        direction: Direction,
    ) -> Option<FrameRing> {
        if !frame_size.is_multiple_of(16)
            || frame_size < TX_DATA_OFFSET
            || frames == 0
            || !offset.is_multiple_of(16)
        {
            return None;
        }
        let base = map.range(offset, frame_size.checked_mul(frames)?)?;
        Some(FrameRing { _map: map, base, frame_size, frames, head: 0, direction })
    }

    /// Slots in the ring.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Bytes per slot.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    fn slot_ptr(&self, slot: usize) -> NonNull<u8> {
        debug_assert!(slot < self.frames);
        // SAFETY: slot < frames, and the constructor checked that frames slots fit.
        unsafe { self.base.add(slot * self.frame_size) }
    }

    fn status_word(&self, slot: usize) -> &AtomicU32 {
        // SAFETY: `tp_status` is the first field of the slot's header, 16-byte aligned (the
        // constructor checked the offset and slot size; mappings are page aligned) inside the
        // mapping this ring keeps alive; both sides only ever access it atomically.
        unsafe { self.slot_ptr(slot).cast::<AtomicU32>().as_ref() }
    }

    /// The status of the slot at the head (acquire: the slot's contents are visible after).
    pub fn head_status(&self) -> u32 {
        self.status_word(self.head).load(Ordering::Acquire)
    }

    /// Whether the slot at the head is ours.
    pub fn head_is_ours(&self) -> bool {
        self.direction.ours(self.head_status())
    }

    /// The slot at the head, when it is ours.
    pub fn head(&mut self) -> Option<Slot<'_>> {
        let status = self.head_status();
        self.direction.ours(status).then_some(Slot { ring: self, status })
    }
}

/// The slot at the head of a ring, ours until handed over.
#[derive(Debug)]
pub struct Slot<'a> {
    ring: &'a mut FrameRing,
    status: u32,
}

impl Slot<'_> {
    /// Its status when it was taken.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Its header.
    pub fn header(&self) -> Tpacket2Hdr {
        // SAFETY: the slot is ours (its status said so), so the kernel does not write it; the
        // header lies at its aligned start, inside the mapping.
        unsafe { self.ring.slot_ptr(self.ring.head).cast::<Tpacket2Hdr>().read_volatile() }
    }

    /// Its bytes from `offset` (clamped to the slot) to its end.
    pub fn bytes(&self, offset: usize) -> &[u8] {
        let offset = offset.min(self.ring.frame_size);
        // SAFETY: the range lies inside the slot, which is ours (the kernel does not write it
        // until it is handed over, which needs this borrow to end).
        unsafe {
            std::slice::from_raw_parts(
                self.ring.slot_ptr(self.ring.head).as_ptr().add(offset),
                self.ring.frame_size - offset,
            )
        }
    }

    /// Its bytes from `offset` (clamped to the slot) to its end, to write.
    pub fn bytes_mut(&mut self, offset: usize) -> &mut [u8] {
        let offset = offset.min(self.ring.frame_size);
        // SAFETY: as in `bytes`; `&mut self` makes this the only view of the slot.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ring.slot_ptr(self.ring.head).as_ptr().add(offset),
                self.ring.frame_size - offset,
            )
        }
    }

    /// Sets `tp_len` (the length of a frame to send).
    pub fn set_len(&mut self, len: u32) {
        let at = offset_of!(Tpacket2Hdr, tp_len);
        // SAFETY: a 4-byte aligned field of the slot's header; the slot is ours.
        unsafe { self.ring.slot_ptr(self.ring.head).add(at).cast::<u32>().write_volatile(len) };
    }

    /// Stores `status` and keeps the slot at the head (a refused TX slot made available again).
    pub fn set_status(&mut self, status: u32) {
        self.ring.status_word(self.ring.head).store(status, Ordering::Release);
        self.status = status;
    }

    /// Gives the slot to the kernel with `status` (after every write to it) and moves the head.
    pub fn hand_over(self, status: u32) {
        self.ring.status_word(self.ring.head).store(status, Ordering::Release);
        self.ring.head = (self.ring.head + 1) % self.ring.frames;
    }
}

/// A ring in plain memory with the kernel's side of it, for tests of the code that walks it.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// The kernel's side of a ring: it only touches slots the kernel owns.
    #[derive(Debug)]
    pub struct KernelRing {
        map: Arc<Mmap>,
        frame_size: usize,
        frames: usize,
    }

    /// A ring of `frames` slots of `frame_size` bytes in fresh memory, and the kernel's side.
    pub fn ring(frame_size: usize, frames: usize, direction: Direction) -> (FrameRing, KernelRing) {
        let map = Arc::new(
            Mmap::anonymous(frame_size * frames, "mmap(test ring)").expect("memory for a test ring"),
        );
        let ring = FrameRing::new(map.clone(), 0, frame_size, frames, direction).expect("a valid test ring");
        (ring, KernelRing { map, frame_size, frames })
    }

    impl KernelRing {
        fn slot(&self, slot: usize) -> NonNull<u8> {
            assert!(slot < self.frames);
            self.map.range(slot * self.frame_size, self.frame_size).expect("inside the ring")
        }

        fn status(&self, slot: usize) -> &AtomicU32 {
            // SAFETY: as in `FrameRing::status_word`.
            unsafe { self.slot(slot).cast::<AtomicU32>().as_ref() }
        }

        fn write_header(&self, slot: usize, hdr: Tpacket2Hdr) {
            // SAFETY: the slot is the kernel's (checked by the callers), so no view of it is
            // alive; the header lies at its aligned start.
            unsafe { self.slot(slot).cast::<Tpacket2Hdr>().write_volatile(hdr) };
        }

        /// RX: delivers `frame` into `slot` at `mac` with `hdr`'s other fields, when the slot
        /// is the kernel's; false when userspace still holds it (the kernel would drop).
        pub fn deliver(&self, slot: usize, frame: &[u8], mac: u16, mut hdr: Tpacket2Hdr) -> bool {
            if self.status(slot).load(Ordering::Acquire) != TP_STATUS_KERNEL {
                return false;
            }
            let stored = frame.len().min(self.frame_size - mac as usize);
            hdr.tp_mac = mac;
            hdr.tp_snaplen = stored as u32;
            if hdr.tp_len == 0 {
                hdr.tp_len = frame.len() as u32;
            }
            let status = hdr.tp_status | TP_STATUS_USER;
            hdr.tp_status = TP_STATUS_KERNEL;
            self.write_header(slot, hdr);
            // SAFETY: inside the slot, which is the kernel's; no view of it is alive.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    self.slot(slot).as_ptr().add(mac as usize),
                    stored,
                )
            };
            self.status(slot).store(status, Ordering::Release);
            true
        }

        /// TX: takes the frame userspace asked to send from `slot`, if any, and frees the slot
        /// (or, with `refuse`, marks it `TP_STATUS_WRONG_FORMAT`).
        pub fn take_sent(&self, slot: usize, refuse: bool) -> Option<Vec<u8>> {
            if self.status(slot).load(Ordering::Acquire) != TP_STATUS_SEND_REQUEST {
                return None;
            }
            // SAFETY: a send-requested slot is the kernel's until it sets the status again.
            let hdr = unsafe { self.slot(slot).cast::<Tpacket2Hdr>().read_volatile() };
            let len = (hdr.tp_len as usize).min(self.frame_size - TX_DATA_OFFSET);
            let mut out = vec![0; len];
            // SAFETY: as above; inside the slot.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.slot(slot).as_ptr().add(TX_DATA_OFFSET),
                    out.as_mut_ptr(),
                    len,
                )
            };
            let next = if refuse { TP_STATUS_WRONG_FORMAT } else { TP_STATUS_AVAILABLE };
            self.status(slot).store(next, Ordering::Release);
            Some(out)
        }

        /// The raw status of `slot`.
        pub fn status_of(&self, slot: usize) -> u32 {
            self.status(slot).load(Ordering::Acquire)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::ring;
    use super::*;
    use std::mem::size_of;

    #[test]
    fn the_header_is_the_kernels_layout() {
        assert_eq!(size_of::<Tpacket2Hdr>(), 32);
        assert_eq!(offset_of!(Tpacket2Hdr, tp_len), 4);
        assert_eq!(offset_of!(Tpacket2Hdr, tp_snaplen), 8);
        assert_eq!(offset_of!(Tpacket2Hdr, tp_mac), 12);
        assert_eq!(offset_of!(Tpacket2Hdr, tp_sec), 16);
        assert_eq!(offset_of!(Tpacket2Hdr, tp_nsec), 20);
        assert_eq!(offset_of!(Tpacket2Hdr, tp_vlan_tci), 24);
        assert_eq!(offset_of!(Tpacket2Hdr, tp_vlan_tpid), 26);
    }

    #[test]
    fn a_ring_must_fit_its_mapping() {
        let map = Arc::new(Mmap::anonymous(4096, "mmap").unwrap());
        assert!(FrameRing::new(map.clone(), 0, 2048, 2, Direction::Rx).is_some());
        assert!(FrameRing::new(map.clone(), 2048, 2048, 2, Direction::Rx).is_none());
        assert!(FrameRing::new(map.clone(), 0, 2040, 2, Direction::Rx).is_none(), "unaligned slots");
        assert!(FrameRing::new(map, 0, usize::MAX / 2, 4, Direction::Rx).is_none(), "overflow");
    }

    #[test]
    fn slots_are_ours_only_while_the_status_says_so() {
        let (mut rx, kernel) = ring(2048, 4, Direction::Rx);
        assert!(rx.head().is_none(), "an empty RX ring has nothing for us");
        let hdr = Tpacket2Hdr { tp_sec: 3, tp_nsec: 7, ..Default::default() };
        assert!(kernel.deliver(0, &[0xab; 60], 66, hdr));
        assert!(!kernel.deliver(0, &[0; 60], 66, hdr), "the kernel may not write a slot we hold");
        let slot = rx.head().expect("a frame");
        let h = slot.header();
        assert_eq!((h.tp_snaplen, h.tp_mac, h.tp_sec, h.tp_nsec), (60, 66, 3, 7));
        assert_eq!(&slot.bytes(66)[..60], &[0xab; 60][..]);
        assert_eq!(slot.bytes(4096).len(), 0, "offsets are clamped to the slot");
        slot.hand_over(TP_STATUS_KERNEL);
        assert!(rx.head().is_none());
        assert_eq!(kernel.status_of(0), TP_STATUS_KERNEL);

        let (mut tx, kernel) = ring(2048, 2, Direction::Tx);
        for round in 0..5u8 {
            let mut slot = tx.head().expect("a free TX slot");
            slot.bytes_mut(TX_DATA_OFFSET)[..3].copy_from_slice(&[round, 2, 3]);
            slot.set_len(3);
            slot.hand_over(TP_STATUS_SEND_REQUEST);
            let slot = (round % 2) as usize;
            assert_eq!(kernel.take_sent(slot, false), Some(vec![round, 2, 3]));
        }
        // A full TX ring has no slot for us until the kernel sends one.
        for _ in 0..2 {
            let mut slot = tx.head().unwrap();
            slot.set_len(1);
            slot.hand_over(TP_STATUS_SEND_REQUEST);
        }
        assert!(tx.head().is_none());
        assert!(kernel.take_sent(1, true).is_some());
        assert!(kernel.take_sent(0, false).is_some());
        let slot = tx.head().expect("sent");
        assert_eq!(slot.status(), TP_STATUS_WRONG_FORMAT, "head is slot 1, which the kernel refused");
    }
}
