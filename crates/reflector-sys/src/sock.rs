//! Sockets in general: creating one, its options, waiting for it, and the empty `send` that
//! kicks a TX ring. Every wrapper returns an error naming the call that failed, so a user sees
//! "setsockopt(PACKET_RX_RING): Cannot allocate memory" rather than a bare errno.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::error::{SysError, SysResult};

pub(crate) fn check(ret: libc::c_int, call: &'static str) -> SysResult<libc::c_int> {
    if ret < 0 { Err(SysError::last(call)) } else { Ok(ret) }
}

/// `socket(domain, kind | SOCK_CLOEXEC, protocol)`; on macOS, which has no `SOCK_CLOEXEC`,
/// close-on-exec is set with `fcntl` right after.
pub fn socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
    call: &'static str,
) -> SysResult<OwnedFd> {
    #[cfg(not(target_os = "macos"))]
    let kind = kind | libc::SOCK_CLOEXEC;
    // SAFETY: plain syscall with integer arguments; the returned fd is owned below.
    let fd = check(unsafe { libc::socket(domain, kind, protocol) }, call)?;
    // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    #[cfg(target_os = "macos")]
    // SAFETY: plain syscall on a descriptor we own.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }, "fcntl(FD_CLOEXEC)")?;
    Ok(fd)
}

/// `setsockopt` with a plain-data value (`#[repr(C)]`, as the option expects).
pub fn setsockopt<T: Copy>(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    call: &'static str,
) -> SysResult<()> {
    // SAFETY: `value` points to a live `T` of the size passed; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret, call).map(|_| ())
}

/// `getsockopt` into a plain-data value.
pub fn getsockopt<T: Copy + Default>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    call: &'static str,
) -> SysResult<T> {
    let mut value = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live T of the size passed for the kernel to fill.
    let ret =
        unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut T).cast(), &mut len) };
    check(ret, call)?;
    Ok(value)
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
///
/// A socket error (POLLERR: for a packet socket, ENETDOWN when its interface goes down) is
/// read and so cleared, and the call returns `false`: the error says nothing the worker must
/// act on (the control loop watches the interface), and left pending it would make every
/// later poll return at once, a worker spinning at 100% for as long as the link is down.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> SysResult<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one live pollfd is passed with count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = SysError::last("poll");
        return if e.errno() == Some(libc::EINTR) { Ok(false) } else { Err(e) };
    }
    if n > 0 && pfd.revents & libc::POLLERR != 0 && pfd.revents & libc::POLLIN == 0 {
        let mut err: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` is a live c_int of the size passed; SO_ERROR reads and clears the
        // socket's pending error.
        let ret = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        check(ret, "getsockopt(SO_ERROR)")?;
        if err == 0 {
            // POLLERR without a pending error (an error queue): wait out the timeout instead
            // of returning at once again and again.
            std::thread::sleep(timeout);
        }
        return Ok(false);
    }
    Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
}

/// A zero-length, non-blocking `send`: the documented way to ask the kernel to transmit what
/// is queued in a TX ring (AF_PACKET and AF_XDP alike). Returns the error for the caller to
/// judge (which errnos only mean "not now" differs between the two).
pub fn send_empty(fd: BorrowedFd<'_>, call: &'static str) -> SysResult<()> {
    // SAFETY: a zero-length send with a null buffer reads no memory.
    let n = unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
    if n < 0 { Err(SysError::last(call)) } else { Ok(()) }
}

/// `send` of one buffer as it is.
pub fn send(fd: BorrowedFd<'_>, data: &[u8], call: &'static str) -> SysResult<usize> {
    // SAFETY: `data` is a live slice of the length passed; the kernel only reads it.
    let n = unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
    if n < 0 { Err(SysError::last(call)) } else { Ok(n as usize) }
}
