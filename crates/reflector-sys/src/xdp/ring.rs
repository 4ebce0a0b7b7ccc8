//! AF_XDP rings: single-producer / single-consumer queues shared with the kernel.
//!
//! A ring is a power-of-two array of descriptors with a producer and a consumer index that
//! only grow (wrapping at 2^32). The side that produces writes descriptors, then publishes
//! the producer index with release ordering; the side that consumes reads the producer index
//! with acquire ordering, reads the descriptors, then publishes its consumer index with
//! release ordering. Each side caches the other's index and reads it again only when the
//! cached value says the ring is full (or empty). The logic here runs over any memory, so the
//! tests drive both sides of a ring in plain memory, without a kernel.
//!
//! A ring side is built from the mapping it lives in, in an `unsafe fn` whose caller vouches
//! for the offsets (the kernel's `XDP_MMAP_OFFSETS`); it keeps the mapping alive and reaches
//! the shared words only through `NonNull<AtomicU32>`, never through a reference that could
//! outlive it.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::mmap::Mmap;

/// `struct xdp_desc`: a frame in the UMEM (RX and TX rings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpDesc {
    /// Address in the UMEM.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// Options (unused: 0).
    pub options: u32,
}

/// Where a ring lives inside its mapping: byte offsets of its two indices, its flags word and
/// its descriptor array (`struct xdp_ring_offset`), and its size.
#[derive(Debug, Clone, Copy)]
pub struct RingLayout {
    /// Offset of the producer index.
    pub producer: usize,
    /// Offset of the consumer index.
    pub consumer: usize,
    /// Offset of the flags word (`XDP_RING_NEED_WAKEUP`).
    pub flags: usize,
    /// Offset of the first descriptor.
    pub descs: usize,
    /// Number of descriptors (a power of two).
    pub size: u32,
}

/// The shared words and descriptors of one ring, inside a mapping it keeps alive.
#[derive(Debug)]
struct Shared<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    size: u32,
    _map: Arc<Mmap>,
}

impl<T> Shared<T> {
    /// # Safety
    /// `layout` must describe a ring of `T` descriptors inside `map`: each index word 4-byte
    /// aligned, the descriptors aligned for `T`, and `size` of them within the mapping.
    unsafe fn new(map: Arc<Mmap>, layout: RingLayout) -> Shared<T> {
        assert!(layout.size.is_power_of_two(), "ring sizes are powers of two");
        let word = |offset: usize| map.range(offset, 4).expect("ring word inside its mapping").cast();
        let bytes = layout.size as usize * std::mem::size_of::<T>();
        let descs = map.range(layout.descs, bytes).expect("descriptors inside their mapping").cast();
        Shared {
            producer: word(layout.producer),
            consumer: word(layout.consumer),
            flags: word(layout.flags),
            descs,
            size: layout.size,
            _map: map,
        }
    }

    fn word(&self, w: NonNull<AtomicU32>) -> &AtomicU32 {
        // SAFETY: the word lies inside the mapping this value keeps alive (checked at
        // construction), is 4-byte aligned (the constructor's contract) and is only ever
        // accessed atomically, here or by the kernel; the reference lives no longer than `self`.
        unsafe { w.as_ref() }
    }
}

/// `XDP_RING_NEED_WAKEUP`: the kernel needs a syscall to make progress on this ring.
pub const XDP_RING_NEED_WAKEUP: u32 = 1;

/// Our side of a ring we fill (fill and TX rings).
#[derive(Debug)]
pub struct Producer<T> {
    mem: Shared<T>,
    cached_prod: u32,
    cached_cons: u32,
    _t: PhantomData<T>,
}

/// Our side of a ring we drain (RX and completion rings).
#[derive(Debug)]
pub struct Consumer<T> {
    mem: Shared<T>,
    cached_prod: u32,
    cached_cons: u32,
    _t: PhantomData<T>,
}

// SAFETY: a ring side is used by one thread at a time (the worker that owns it, through
// `&mut self`); the mapping it points into lives as long as it does (it holds an `Arc`).
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for `Producer`.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T: Copy> Producer<T> {
    /// Our side of the ring at `layout` in `map`.
    ///
    /// # Safety
    /// `layout` must describe a ring of `T` descriptors inside `map` (as for the kernel's
    /// `XDP_MMAP_OFFSETS`), and no other producer may use it.
    pub unsafe fn new(map: Arc<Mmap>, layout: RingLayout) -> Self {
        // SAFETY: the caller's contract.
        let mem = unsafe { Shared::new(map, layout) };
        let prod = mem.word(mem.producer).load(Ordering::Relaxed);
        let cons = mem.word(mem.consumer).load(Ordering::Acquire);
        Producer { mem, cached_prod: prod, cached_cons: cons, _t: PhantomData }
    }

    /// Free slots (re-reading the consumer only when the cache says fewer than `want`).
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.mem.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.mem.word(self.mem.consumer).load(Ordering::Acquire);
        self.mem.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes `item` into the next slot; false when the ring is full. Not visible to the
    /// other side until [`Producer::submit`].
    pub fn push(&mut self, item: T) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        let index = (self.cached_prod & (self.mem.size - 1)) as usize;
        // SAFETY: index < size, so the slot lies inside the descriptor array (checked at
        // construction), which the producer owns until the producer index passes it.
        unsafe { self.mem.descs.add(index).write_volatile(item) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
        true
    }

    /// Publishes the pushed descriptors.
    pub fn submit(&mut self) {
        self.mem.word(self.mem.producer).store(self.cached_prod, Ordering::Release);
    }

    /// Pushed but not yet taken by the other side.
    pub fn outstanding(&mut self) -> u32 {
        self.cached_cons = self.mem.word(self.mem.consumer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Whether the kernel asked to be woken up for this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.mem.word(self.mem.flags).load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }
}

impl<T: Copy> Consumer<T> {
    /// Our side of the ring at `layout` in `map`.
    ///
    /// # Safety
    /// As for [`Producer::new`], with no other consumer.
    pub unsafe fn new(map: Arc<Mmap>, layout: RingLayout) -> Self {
        // SAFETY: the caller's contract.
        let mem = unsafe { Shared::new(map, layout) };
        let prod = mem.word(mem.producer).load(Ordering::Acquire);
        let cons = mem.word(mem.consumer).load(Ordering::Relaxed);
        Consumer { mem, cached_prod: prod, cached_cons: cons, _t: PhantomData }
    }

    /// Descriptors ready (re-reading the producer when the cache says none).
    pub fn available(&mut self) -> u32 {
        let n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n > 0 {
            return n;
        }
        self.cached_prod = self.mem.word(self.mem.producer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// The next descriptor, if any. Its slot goes back to the other side at
    /// [`Consumer::release`].
    pub fn pop(&mut self) -> Option<T> {
        if self.available() == 0 {
            return None;
        }
        let index = (self.cached_cons & (self.mem.size - 1)) as usize;
        // SAFETY: index < size, inside the descriptor array; the producer published this slot
        // before its index, and does not touch it again until we release it.
        let item = unsafe { self.mem.descs.add(index).read_volatile() };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        Some(item)
    }

    /// Hands the popped slots back.
    pub fn release(&mut self) {
        self.mem.word(self.mem.consumer).store(self.cached_cons, Ordering::Release);
    }
}

/// Both sides of rings in plain memory, for tests of the code that drives them.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// A ring of `size` descriptors of `T` in fresh memory, and its index words' offsets:
    /// producer at 0, consumer at 4, flags at 8, descriptors from 64.
    pub fn pair<T: Copy>(size: u32) -> (Producer<T>, Consumer<T>) {
        let layout = RingLayout { producer: 0, consumer: 4, flags: 8, descs: 64, size };
        let len = 64 + size as usize * std::mem::size_of::<T>();
        let map = Arc::new(Mmap::anonymous(len, "mmap(test ring)").expect("memory for a test ring"));
        // SAFETY: the layout lies inside the fresh mapping, the words 4-byte aligned and the
        // descriptors at a 64-byte boundary; one producer, one consumer.
        unsafe { (Producer::new(map.clone(), layout), Consumer::new(map, layout)) }
    }

    impl<T> Producer<T> {
        /// Sets or clears `XDP_RING_NEED_WAKEUP`, as the kernel would.
        pub fn set_need_wakeup(&self, on: bool) {
            self.mem.word(self.mem.flags).store(if on { XDP_RING_NEED_WAKEUP } else { 0 }, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pair;
    use super::*;

    #[test]
    fn both_sides_of_a_ring_in_plain_memory() {
        let (mut p, mut c) = pair::<u64>(8);
        assert_eq!(p.free(1), 8);
        for i in 0..8 {
            assert!(p.push(i));
        }
        assert!(!p.push(99), "full");
        assert_eq!(c.available(), 0, "nothing is visible before submit");
        p.submit();
        assert_eq!(c.available(), 8);
        assert_eq!(c.pop(), Some(0));
        assert_eq!(c.pop(), Some(1));
        assert!(!p.push(99), "still full: the consumer has not released");
        c.release();
        assert_eq!(p.free(1), 2);
        assert_eq!(p.outstanding(), 6);
        // Wrap around many times, including the u32 index wrap.
        let (mut next_in, mut next_out) = (8u64, 2u64);
        for round in 0..10_000u64 {
            let n = 1 + round % 5;
            for _ in 0..n {
                if p.push(next_in) {
                    next_in += 1;
                }
            }
            p.submit();
            while let Some(v) = c.pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
            c.release();
        }
        assert_eq!(next_in, next_out);
        assert!(!p.needs_wakeup());
        p.set_need_wakeup(true);
        assert!(p.needs_wakeup());
    }

    #[test]
    fn indices_wrap_at_u32() {
        let (mut p, mut c) = pair::<XdpDesc>(4);
        // Both indices start just below the wrap, as after 2^32 - 2 frames.
        p.mem.word(p.mem.producer).store(u32::MAX - 1, Ordering::Relaxed);
        p.mem.word(p.mem.consumer).store(u32::MAX - 1, Ordering::Relaxed);
        (p.cached_prod, p.cached_cons) = (u32::MAX - 1, u32::MAX - 1);
        (c.cached_prod, c.cached_cons) = (u32::MAX - 1, u32::MAX - 1);
        for i in 0..4 {
            assert!(p.push(XdpDesc { addr: i * 4096, len: 60, options: 0 }));
        }
        p.submit();
        assert_eq!(p.mem.word(p.mem.producer).load(Ordering::Relaxed), 2, "the producer index wrapped");
        for i in 0..4 {
            assert_eq!(c.pop().map(|d| d.addr), Some(i * 4096));
        }
        c.release();
        assert_eq!(c.pop(), None);
        assert_eq!(std::mem::size_of::<XdpDesc>(), 16);
    }
}
