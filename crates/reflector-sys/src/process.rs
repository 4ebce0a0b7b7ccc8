//! The process and its threads: CPU time, privileges, signals, namespaces, CPU affinity.
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

/// The kernel's release, as `uname -r` prints it (e.g. "6.18.0" on Linux, "24.1.0" on macOS,
/// "14.2-RELEASE" on FreeBSD).
pub fn kernel_release() -> SysResult<String> {
    // SAFETY: utsname is plain data (arrays of C chars); all-zero is valid.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `names` is a live utsname for the kernel to fill.
    if unsafe { libc::uname(&mut names) } < 0 {
        return Err(SysError::last("uname"));
    }
    let bytes: Vec<u8> = names.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Sends `signal` to the process `pid` (one this program started).
pub fn signal_process(pid: u32, signal: libc::c_int) -> SysResult<()> {
    // SAFETY: plain syscall; a wrong pid is reported as an error, not undefined behaviour.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } < 0 {
        return Err(SysError::last("kill"));
    }
    Ok(())
}

/// Moves the calling thread into the network namespace at `path` (e.g. `/run/netns/NAME`).
#[cfg(target_os = "linux")]
pub fn enter_netns(path: &str) -> SysResult<()> {
    let file = std::fs::File::open(path).map_err(|err| SysError { call: "open(netns)", err })?;
    // SAFETY: a valid fd to a namespace file; CLONE_NEWNET changes only this thread's namespace.
    crate::sock::check(
        unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) },
        "setns(CLONE_NEWNET)",
    )
    .map(|_| ())
}

/// The CPUs this process may run on.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> SysResult<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let ret = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    crate::sock::check(ret, "sched_getaffinity")?;
    // SAFETY: CPU_ISSET reads the set within its size.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// Pins the calling thread to `cpu`.
#[cfg(target_os = "linux")]
pub fn pin_current_thread(cpu: usize) -> SysResult<()> {
    set_current_thread_cpus(&[cpu])
}

/// Lets the calling thread run on `cpus` (those past `CPU_SETSIZE` are left out).
#[cfg(target_os = "linux")]
pub fn set_current_thread_cpus(cpus: &[usize]) -> SysResult<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: CPU_SET writes within the set (cpu < CPU_SETSIZE, checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a live cpu_set_t of the size passed; pid 0 is the calling thread.
    crate::sock::check(
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) },
        "sched_setaffinity",
    )
    .map(|_| ())
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

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_release_is_the_one_proc_names() {
        let proc = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(kernel_release().unwrap(), proc.trim());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpus_are_listed() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
    }
}
