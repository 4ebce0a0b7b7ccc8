//! The real `/dev/bpf` device: `open`, `ioctl`, `read`, `write` and nothing else. It builds on
//! every Unix (the request numbers are our own constants), and on Linux, which has no such
//! device, opening reports that clearly.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::insn::SockFilter as Insn;

pub mod ioctl;
use ioctl::{BIOCSETF, BIOCSETIF, BIOCSRTIMEOUT, IFREQ_SIZE};

/// An open `/dev/bpfN`.
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
    /// Its path, for messages.
    pub path: String,
}

/// Why no device could be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// There are no `/dev/bpf*` devices (not macOS or FreeBSD, or a jail without them).
    #[error("no /dev/bpf device on this system (the bpf backend is for macOS and FreeBSD)")]
    NoDevice,
    /// Every device is in use.
    #[error("all /dev/bpf devices are busy (close other capture tools, or create more devices)")]
    AllBusy,
    /// Not allowed.
    #[error(
        "cannot open {0}: permission denied (run with sudo, or give your user read/write access to /dev/bpf*)"
    )]
    Permission(String),
    /// Something else.
    #[error("cannot open {0}: {1}")]
    Other(String, io::Error),
}

impl Device {
    /// Opens the first free `/dev/bpfN`.
    pub fn open_first() -> Result<Device, OpenError> {
        Device::open_first_in("/dev")
    }

    /// Opens the first free `bpfN` under `dir` (tests use a directory of their own).
    pub fn open_first_in(dir: &str) -> Result<Device, OpenError> {
        let mut busy = false;
        for n in 0..256 {
            let path = format!("{dir}/bpf{n}");
            let c = CString::new(path.clone()).map_err(|e| OpenError::Other(path.clone(), e.into()))?;
            // SAFETY: a valid NUL-terminated path; the returned fd is owned below.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd >= 0 {
                // SAFETY: `fd` was just returned by open() and is owned by nothing else.
                return Ok(Device { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path });
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EBUSY) => busy = true,
                Some(libc::ENOENT) => break,
                Some(libc::EACCES) | Some(libc::EPERM) => return Err(OpenError::Permission(path)),
                _ => return Err(OpenError::Other(path, e)),
            }
        }
        Err(if busy { OpenError::AllBusy } else { OpenError::NoDevice })
    }

    fn ioctl_ptr<T>(&mut self, request: u64, arg: *mut T) -> io::Result<()> {
        // SAFETY: `arg` points to a live value of the type and size the request encodes
        // (checked against the system headers by the tests of `ioctl`).
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, arg) };
        if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

impl Device {
    /// An ioctl that takes a `u_int` and (for BIOCSBLEN) answers with one.
    pub fn ioctl_uint(&mut self, request: u64, value: u32) -> io::Result<u32> {
        let mut v: libc::c_uint = value;
        self.ioctl_ptr(request, &mut v)?;
        Ok(v)
    }

    /// An ioctl that reads a `u_int` (BIOCGDLT).
    pub fn get_uint(&mut self, request: u64) -> io::Result<u32> {
        let mut v: libc::c_uint = 0;
        self.ioctl_ptr(request, &mut v)?;
        Ok(v)
    }

    /// BIOCSETIF.
    pub fn set_interface(&mut self, name: &str) -> io::Result<()> {
        let mut ifreq = [0u8; IFREQ_SIZE];
        if name.is_empty() || name.len() >= 16 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        ifreq[..name.len()].copy_from_slice(name.as_bytes());
        self.ioctl_ptr(BIOCSETIF, ifreq.as_mut_ptr())
    }

    /// BIOCSETF.
    pub fn set_filter(&mut self, program: &[Insn]) -> io::Result<()> {
        #[repr(C)]
        struct BpfProgram {
            bf_len: libc::c_uint,
            bf_insns: *const Insn,
        }
        let mut prog = BpfProgram { bf_len: program.len() as libc::c_uint, bf_insns: program.as_ptr() };
        self.ioctl_ptr(BIOCSETF, &mut prog)
    }

    /// BIOCSRTIMEOUT.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let mut tv = libc::timeval { tv_sec: timeout.as_secs() as _, tv_usec: timeout.subsec_micros() as _ };
        self.ioctl_ptr(BIOCSRTIMEOUT, &mut tv)
    }

    /// One `read()`: a buffer of records, 0 at the read timeout.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, writable buffer of the length passed.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// One `write()`: one frame.
    pub fn write(&mut self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is a live buffer of the length passed; the kernel only reads it.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}
