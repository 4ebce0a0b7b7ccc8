//! The system clock's synchronisation state, as the kernel's NTP discipline keeps it
//! (`adjtimex(2)`): what a STAMP answer's error estimate says, and the TAI offset that turns
//! an XDP program's `bpf_ktime_get_tai_ns()` into UTC.

use crate::error::{SysError, SysResult};

/// What the kernel knows about the system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// Synchronised to a time source (`STA_UNSYNC` clear).
    pub synchronised: bool,
    /// The estimated error, in nanoseconds (`esterror`), when synchronised.
    pub estimated_error_ns: u64,
    /// The maximum error, in nanoseconds (`maxerror`: grows by 500 ppm while nobody
    /// disciplines the clock, up to 16 s).
    pub max_error_ns: u64,
    /// TAI − UTC in seconds (0 until a time daemon sets it, 37 since 2017).
    pub tai_offset_s: i32,
}

impl ClockState {
    /// The bound a STAMP error estimate states: the estimated error when synchronised, else
    /// the maximum error (at least 1 ns either way).
    pub fn error_ns(&self) -> u64 {
        if self.synchronised { self.estimated_error_ns.max(1) } else { self.max_error_ns.max(1) }
    }
}

/// Reads the clock state without changing anything (`adjtimex` with `modes = 0`).
pub fn state() -> SysResult<ClockState> {
    // SAFETY: timex is plain data (all-zero is valid: modes = 0 reads only); adjtimex writes
    // into the struct we own for the duration of the call.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a timex we own; modes = 0 changes nothing.
    let status = unsafe { libc::adjtimex(&mut t) };
    if status < 0 {
        return Err(SysError::last("adjtimex"));
    }
    Ok(ClockState {
        // TIME_ERROR (5) is also returned while unsynchronised.
        synchronised: t.status & libc::STA_UNSYNC == 0 && status != libc::TIME_ERROR,
        estimated_error_ns: (t.esterror.max(0) as u64).saturating_mul(1000),
        max_error_ns: (t.maxerror.max(0) as u64).saturating_mul(1000),
        tai_offset_s: t.tai,
    })
}

/// CLOCK_TAI now, in nanoseconds: the clock of an XDP program's `bpf_ktime_get_tai_ns()`.
pub fn tai_ns() -> u64 {
    clock_ns(libc::CLOCK_TAI)
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of an XDP program's `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The kernel's tick length in nanoseconds (1 s / CONFIG_HZ): the resolution of
/// CLOCK_MONOTONIC_COARSE, which moves once a tick, as the jiffies do.
pub fn tick_ns() -> SysResult<u64> {
    // SAFETY: timespec is plain data; all-zero is valid.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a timespec we own for the kernel to fill.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut t) } < 0 {
        return Err(SysError::last("clock_getres(CLOCK_MONOTONIC_COARSE)"));
    }
    Ok(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: timespec is plain data; clock_gettime writes into the struct we own.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a timespec we own; both clocks this is called with exist
    // (CLOCK_TAI since Linux 3.10).
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_state_reads() {
        let s = super::state().unwrap();
        assert!(s.error_ns() >= 1);
        assert!((0..=100).contains(&s.tai_offset_s), "{s:?}");
    }
}
