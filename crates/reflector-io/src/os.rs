//! Process-level calls that every Unix has.
#![allow(unsafe_code)]

use crate::error::{SysError, SysResult};

/// CPU time used by this process so far: (user, system).
pub fn process_cpu_time() -> SysResult<(std::time::Duration, std::time::Duration)> {
    // SAFETY: rusage is plain data; all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live rusage for the kernel to fill.
    let ret = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if ret < 0 {
        return Err(SysError::last("getrusage"));
    }
    let time = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((time(usage.ru_utime), time(usage.ru_stime)))
}

/// True when the process runs as root (effective user id 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to the process `pid` (one this program started).
pub fn signal_process(pid: u32, signal: libc::c_int) -> SysResult<()> {
    // SAFETY: plain syscall; a wrong pid is reported as an error, not undefined behaviour.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } < 0 {
        return Err(SysError::last("kill"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_moves() {
        let (u0, s0) = process_cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (u1, s1) = process_cpu_time().unwrap();
        assert!(u1 + s1 > u0 + s0);
    }
}
