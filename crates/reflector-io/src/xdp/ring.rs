//! AF_XDP rings: single-producer / single-consumer queues shared with the kernel.
//!
//! A ring is a power-of-two array of descriptors with a producer and a consumer index that
//! only grow (wrapping at 2^32). The side that produces writes descriptors, then publishes
//! the producer index with release ordering; the side that consumes reads the producer index
//! with acquire ordering, reads the descriptors, then publishes its consumer index with
//! release ordering. Each side caches the other's index and reads it again only when the
//! cached value says the ring is full (or empty). The logic here runs over any memory, so the
//! tests drive both sides of a ring in plain memory, without a kernel.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

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

/// Where a ring lives: its two indices, its flags word and its descriptor array.
#[derive(Debug, Clone, Copy)]
pub struct RingMemory {
    /// The producer index.
    pub producer: *mut u32,
    /// The consumer index.
    pub consumer: *mut u32,
    /// The flags word (`XDP_RING_NEED_WAKEUP`).
    pub flags: *mut u32,
    /// The first descriptor.
    pub descs: *mut u8,
    /// Number of descriptors (a power of two).
    pub size: u32,
}

/// `XDP_RING_NEED_WAKEUP`: the kernel needs a syscall to make progress on this ring.
pub const XDP_RING_NEED_WAKEUP: u32 = 1;

/// Our side of a ring we fill (fill and TX rings).
#[derive(Debug)]
pub struct Producer<T> {
    mem: RingMemory,
    cached_prod: u32,
    cached_cons: u32,
    _t: PhantomData<T>,
}

/// Our side of a ring we drain (RX and completion rings).
#[derive(Debug)]
pub struct Consumer<T> {
    mem: RingMemory,
    cached_prod: u32,
    cached_cons: u32,
    _t: PhantomData<T>,
}

// SAFETY: a ring side is used by one thread at a time (the worker that owns it); the memory
// it points into lives as long as the socket that owns both.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for `Producer`.
unsafe impl<T: Send> Send for Consumer<T> {}

fn atomic(p: *mut u32) -> &'static AtomicU32 {
    // SAFETY: ring index words are 4-byte aligned u32s inside a live mapping, written by the
    // other side concurrently; AtomicU32 has the layout of u32.
    unsafe { &*(p as *const AtomicU32) }
}

impl<T: Copy> Producer<T> {
    /// Our side of the ring at `mem`.
    ///
    /// # Safety
    /// `mem` must describe a live ring of `T` descriptors that outlives this value, and no
    /// other producer may use it.
    pub unsafe fn new(mem: RingMemory) -> Self {
        debug_assert!(mem.size.is_power_of_two());
        let prod = atomic(mem.producer).load(Ordering::Relaxed);
        let cons = atomic(mem.consumer).load(Ordering::Acquire);
        Producer { mem, cached_prod: prod, cached_cons: cons, _t: PhantomData }
    }

    /// Free slots (re-reading the consumer only when the cache says fewer than `want`).
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.mem.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = atomic(self.mem.consumer).load(Ordering::Acquire);
        self.mem.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes `item` into the next slot; false when the ring is full. Not visible to the
    /// other side until [`Producer::submit`].
    pub fn push(&mut self, item: T) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        let index = (self.cached_prod & (self.mem.size - 1)) as usize;
        // SAFETY: index < size, so the slot lies inside the descriptor array, which the
        // producer owns until the producer index passes it.
        unsafe { (self.mem.descs as *mut T).add(index).write_volatile(item) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
        true
    }

    /// Publishes the pushed descriptors.
    pub fn submit(&mut self) {
        atomic(self.mem.producer).store(self.cached_prod, Ordering::Release);
    }

    /// Pushed but not yet taken by the other side.
    pub fn outstanding(&mut self) -> u32 {
        self.cached_cons = atomic(self.mem.consumer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Whether the kernel asked to be woken up for this ring.
    pub fn needs_wakeup(&self) -> bool {
        atomic(self.mem.flags).load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }
}

impl<T: Copy> Consumer<T> {
    /// Our side of the ring at `mem`.
    ///
    /// # Safety
    /// As for [`Producer::new`], with no other consumer.
    pub unsafe fn new(mem: RingMemory) -> Self {
        debug_assert!(mem.size.is_power_of_two());
        let prod = atomic(mem.producer).load(Ordering::Acquire);
        let cons = atomic(mem.consumer).load(Ordering::Relaxed);
        Consumer { mem, cached_prod: prod, cached_cons: cons, _t: PhantomData }
    }

    /// Descriptors ready (re-reading the producer when the cache says none).
    pub fn available(&mut self) -> u32 {
        let n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n > 0 {
            return n;
        }
        self.cached_prod = atomic(self.mem.producer).load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// The next descriptor, if any. Its slot goes back to the other side at
    /// [`Consumer::release`].
    pub fn pop(&mut self) -> Option<T> {
        if self.available() == 0 {
            return None;
        }
        let index = (self.cached_cons & (self.mem.size - 1)) as usize;
        // SAFETY: index < size; the producer published this slot before its index.
        let item = unsafe { (self.mem.descs as *const T).add(index).read_volatile() };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        Some(item)
    }

    /// Hands the popped slots back.
    pub fn release(&mut self) {
        atomic(self.mem.consumer).store(self.cached_cons, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring in plain memory: indices, flags, descriptors.
    struct Plain<T> {
        words: Box<[u32; 3]>,
        descs: Vec<T>,
    }

    impl<T: Copy + Default> Plain<T> {
        fn new(size: usize) -> Self {
            Plain { words: Box::new([0; 3]), descs: vec![T::default(); size] }
        }
        fn mem(&mut self) -> RingMemory {
            let w = self.words.as_mut_ptr();
            // SAFETY: three words in one box.
            unsafe {
                RingMemory {
                    producer: w,
                    consumer: w.add(1),
                    flags: w.add(2),
                    descs: self.descs.as_mut_ptr().cast(),
                    size: self.descs.len() as u32,
                }
            }
        }
    }

    #[test]
    fn both_sides_of_a_ring_in_plain_memory() {
        let mut ring = Plain::<u64>::new(8);
        let mem = ring.mem();
        // SAFETY: the ring outlives both sides; one producer, one consumer.
        let (mut p, mut c) = unsafe { (Producer::<u64>::new(mem), Consumer::<u64>::new(mem)) };
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
        ring.words[2] = XDP_RING_NEED_WAKEUP;
        assert!(p.needs_wakeup());
    }

    #[test]
    fn indices_wrap_at_u32() {
        let mut ring = Plain::<XdpDesc>::new(4);
        ring.words[0] = u32::MAX - 1;
        ring.words[1] = u32::MAX - 1;
        let mem = ring.mem();
        // SAFETY: as above.
        let (mut p, mut c) = unsafe { (Producer::<XdpDesc>::new(mem), Consumer::<XdpDesc>::new(mem)) };
        for i in 0..4 {
            assert!(p.push(XdpDesc { addr: i * 4096, len: 60, options: 0 }));
        }
        p.submit();
        assert_eq!(ring.words[0], 2, "the producer index wrapped");
        for i in 0..4 {
            assert_eq!(c.pop().map(|d| d.addr), Some(i * 4096));
        }
        c.release();
        assert_eq!(c.pop(), None);
        assert_eq!(std::mem::size_of::<XdpDesc>(), 16);
    }
}
