//! The kernel's jiffies as CLOCK_MONOTONIC time: the XDP programs write when a tester was seen
//! as the tick count (`bpf_jiffies64`, next to free, where a clock read costs a probe 12 ns or
//! more), and the testers table is read through a [`JiffyClock`].

use reflector_sys::error::{SysError, SysResult};
use reflector_sys::xdp::bpf;

/// How jiffies turn into CLOCK_MONOTONIC: the tick rate, and a tick's edge seen on both clocks.
/// The kernel advances jiffies from the same timekeeping as CLOCK_MONOTONIC, so one sample and
/// the rate hold for as long as the system runs; a time read back is within half a tick (the
/// coarse clock is up to a tick early).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JiffyClock {
    /// Ticks a second (the kernel's HZ: 100, 250, 300 or 1000).
    hz: u64,
    /// A tick count…
    edge_jiffies: u64,
    /// …and CLOCK_MONOTONIC when that tick began (within half a tick).
    edge_ns: u64,
}

impl JiffyClock {
    /// Measures it: the tick's length from the coarse clock's resolution (one tick), and the
    /// tick count and CLOCK_MONOTONIC read together by a sampler program
    /// (`reflector_bpf::xdp::jiffies_sampler`) run once with `BPF_PROG_TEST_RUN`; the tick
    /// began up to a tick before, half a tick is taken. Needs what loading an XDP program
    /// needs (CAP_BPF and CAP_NET_ADMIN).
    pub fn measure() -> SysResult<JiffyClock> {
        let tick_ns = reflector_sys::clock::tick_ns()?.max(1);
        let map = bpf::SizedMap::create(bpf::BPF_MAP_TYPE_ARRAY, 4, 16, 1, "reflector_jiffy")?;
        let insns = reflector_bpf::xdp::jiffies_sampler(map.as_raw_fd());
        let prog = bpf::prog_load(&crate::host::bpf_insns(&insns), "reflector_jiffy").map_err(|e| {
            let err = match e {
                bpf::LoadError::Permission(_) => std::io::Error::from_raw_os_error(libc::EPERM),
                other => std::io::Error::other(other.to_string()),
            };
            SysError { call: "bpf(BPF_PROG_LOAD, jiffies sampler)", err }
        })?;
        bpf::prog_test_run(&prog, &[0u8; 64])?;
        let value = map.lookup(&0u32.to_ne_bytes())?.unwrap_or_default();
        let word = |at: usize| {
            value.get(at..at + 8).map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
        };
        let (jiffies, ns) = (word(0), word(8));
        if jiffies == 0 && ns == 0 {
            return Err(SysError {
                call: "jiffies sampler",
                err: std::io::Error::other("no sample written"),
            });
        }
        Ok(JiffyClock::from_sample(tick_ns, jiffies, ns))
    }

    /// The clock a tick length and one sample make.
    fn from_sample(tick_ns: u64, jiffies: u64, ns: u64) -> JiffyClock {
        let hz = ((1e9 / tick_ns as f64).round() as u64).max(1);
        JiffyClock { hz, edge_jiffies: jiffies, edge_ns: ns.saturating_sub(tick_ns / 2) }
    }

    /// Ticks a second.
    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// CLOCK_MONOTONIC nanoseconds at the tick count `jiffies` (its tick's start).
    pub fn monotonic_ns(&self, jiffies: u64) -> u64 {
        let ticks = jiffies as i128 - self.edge_jiffies as i128;
        (self.edge_ns as i128 + ticks * 1_000_000_000 / self.hz as i128).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_ticks_a_second_and_times_count_from_the_sample_less_half_a_tick() {
        // 250 Hz: a 4 ms tick; the sample 1.3 ms into tick 1000.
        let c = JiffyClock::from_sample(4_000_000, 1000, 5_001_300_000);
        assert_eq!(c.hz(), 250);
        assert_eq!(c.monotonic_ns(1000), 4_999_300_000);
        assert_eq!(c.monotonic_ns(1250), 5_999_300_000);
        assert_eq!(c.monotonic_ns(999), 4_995_300_000);
        // 300 Hz does not divide a second evenly: no drift over an hour's ticks.
        let c = JiffyClock::from_sample(3_333_333, 2, 10_000_000);
        assert_eq!(c.hz(), 300);
        assert_eq!(c.monotonic_ns(2 + 300 * 3600), 8_333_334 + 3600 * 1_000_000_000);
        // Before the sample (a row first seen earlier), and never below zero.
        assert_eq!(JiffyClock::from_sample(4_000_000, 10, 1_000).monotonic_ns(0), 0);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_tick_is_one_of_the_lengths_linux_is_built_with() {
        let hz = 1_000_000_000 / reflector_sys::clock::tick_ns().unwrap();
        assert!([100, 250, 300, 1000].contains(&hz), "{hz} Hz");
    }
}
