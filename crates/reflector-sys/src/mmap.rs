//! The one owner of memory mappings: kernel rings, AF_XDP's UMEM, and plain memory for tests.

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::error::{SysError, SysResult};

/// A read-write mapping, populated up front, unmapped on drop.
///
/// It only hands out its address inside this crate: every view into it (a ring cursor, a ring
/// slot, a UMEM frame) is built here, bounds-checked, with its own `SAFETY` argument.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is an address range owned by this value; moving it to another thread moves
// the only handle to it. Views into it carry their own rules for who touches which bytes.
unsafe impl Send for Mmap {}
// SAFETY: `&Mmap` offers nothing but its length (and, inside this crate, its address).
unsafe impl Sync for Mmap {}

impl Mmap {
    /// `len` bytes of `fd` at `offset`, shared with the kernel (`MAP_SHARED`).
    pub fn shared(fd: &OwnedFd, offset: i64, len: usize, call: &'static str) -> SysResult<Mmap> {
        Mmap::map(len, libc::MAP_SHARED | libc::MAP_POPULATE, fd.as_raw_fd(), offset, call)
    }

    /// `len` bytes of `fd` at `offset`, shared with the kernel, read-only (what a BPF ring
    /// buffer's producer pages allow).
    pub fn shared_read_only(fd: &OwnedFd, offset: i64, len: usize, call: &'static str) -> SysResult<Mmap> {
        Mmap::map_prot(len, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), offset, call)
    }

    /// `len` bytes of zeroed private memory (the AF_XDP UMEM; plain memory for ring tests).
    pub fn anonymous(len: usize, call: &'static str) -> SysResult<Mmap> {
        Mmap::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0, call)
    }

    fn map(
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: i64,
        call: &'static str,
    ) -> SysResult<Mmap> {
        Mmap::map_prot(len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, offset, call)
    }

    fn map_prot(
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: i64,
        call: &'static str,
    ) -> SysResult<Mmap> {
        // SAFETY: a fresh mapping at an address the kernel picks; no existing memory is touched.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset as _) };
        if ptr == libc::MAP_FAILED {
            return Err(SysError::last(call));
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| SysError::last(call))?;
        Ok(Mmap { ptr, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start address (for views built in this crate, and for registering a UMEM).
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The address `offset` bytes in, when `offset + len` stays inside the mapping.
    pub(crate) fn range(&self, offset: usize, len: usize) -> Option<NonNull<u8>> {
        let end = offset.checked_add(len)?;
        // SAFETY: offset <= end <= self.len, so the result is inside (or one past) the mapping.
        (end <= self.len).then(|| unsafe { self.ptr.add(offset) })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created, and nothing else unmaps it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
