//! A BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`) read from userspace: the consumer position page
//! mapped read-write, the producer position page and the data (mapped twice in a row by the
//! kernel, so a record that wraps reads as one slice) read-only. Records are taken in order;
//! a record the program is still writing stops the walk until the next call.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::SysResult;
use crate::mmap::Mmap;

/// `BPF_MAP_TYPE_RINGBUF`.
pub const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HEADER: usize = 8;

/// A ring buffer map and its mappings.
#[derive(Debug)]
pub struct RingBuf {
    fd: OwnedFd,
    consumer: Mmap,
    producer: Mmap,
    page: usize,
    size: usize,
}

impl RingBuf {
    /// Creates a ring buffer of `size` bytes (a power of two, a multiple of the page size).
    pub fn create(size: u32, name: &str) -> SysResult<RingBuf> {
        let fd = super::bpf::map_create_keyed(BPF_MAP_TYPE_RINGBUF, 0, 0, size, name)?;
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let consumer = Mmap::shared(&fd, 0, page, "mmap(ringbuf consumer)")?;
        let producer =
            Mmap::shared_read_only(&fd, page as i64, page + 2 * size as usize, "mmap(ringbuf data)")?;
        Ok(RingBuf { fd, consumer, producer, page, size: size as usize })
    }

    /// The map's file descriptor (for a program to refer to).
    pub fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn position(map: &Mmap) -> &AtomicU64 {
        let ptr = map.range(0, 8).expect("a page holds a position");
        // SAFETY: the first 8 bytes of the page are the kernel's 8-byte aligned position
        // counter, which lives as long as the mapping (borrowed here); the kernel and this
        // reader update it only atomically.
        unsafe { &*ptr.as_ptr().cast::<AtomicU64>() }
    }

    /// Calls `f` with each record the program has submitted since the last call, in order
    /// (discarded ones skipped), and gives their room back. Returns the number of records.
    pub fn read(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let consumer = Self::position(&self.consumer);
        let producer = Self::position(&self.producer);
        let mut at = consumer.load(Ordering::Acquire);
        let end = producer.load(Ordering::Acquire);
        let mut n = 0;
        while at < end {
            let offset = self.page + (at as usize & (self.size - 1));
            let header = self.producer.range(offset, HEADER).expect("inside the data pages");
            // SAFETY: `header` points at the 8-byte aligned record header inside the mapping
            // (the data pages follow the producer page, mapped twice); its length word is
            // written atomically by the kernel.
            let len_word =
                unsafe { &*header.as_ptr().cast::<std::sync::atomic::AtomicU32>() }.load(Ordering::Acquire);
            if len_word & BUSY != 0 {
                break;
            }
            let len = (len_word & !(BUSY | DISCARD)) as usize;
            if len_word & DISCARD == 0 {
                let data =
                    self.producer.range(offset + HEADER, len).expect("a record fits the double mapping");
                // SAFETY: the kernel committed these `len` bytes (the busy bit is clear, read
                // with acquire ordering) and does not touch them until the consumer position
                // passes them; the double mapping makes them contiguous inside the mapping.
                f(unsafe { std::slice::from_raw_parts(data.as_ptr(), len) });
                n += 1;
            }
            at += (HEADER + len).next_multiple_of(8) as u64;
            consumer.store(at, Ordering::Release);
        }
        n
    }
}
