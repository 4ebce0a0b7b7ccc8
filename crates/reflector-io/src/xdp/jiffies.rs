//! The kernel's jiffies as CLOCK_MONOTONIC time: the XDP programs write when a tester was seen
//! as the tick count (`bpf_jiffies64`, next to free, where a clock read costs a probe 12 ns or
//! more), and the testers table is read through a [`JiffyClock`].

use std::time::{Duration, Instant};

use reflector_sys::error::{SysError, SysResult};
use reflector_sys::xdp::bpf;

/// How jiffies turn into CLOCK_MONOTONIC: the tick rate, and a tick's edge seen on both clocks.
/// The kernel advances jiffies from the same timekeeping as CLOCK_MONOTONIC, so one edge and
/// the rate hold for as long as the system runs; a time read back is at most a tick early
/// (as the coarse clock is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JiffyClock {
    /// Ticks a second (the kernel's HZ: 100, 250, 300 or 1000).
    hz: u64,
    /// The tick count just after an edge…
    edge_jiffies: u64,
    /// …and CLOCK_MONOTONIC then (at most a sample's time, ~2 µs, after the edge).
    edge_ns: u64,
}

/// How long [`JiffyClock::measure`] waits for its ticks before it gives up.
const MEASURE_LIMIT: Duration = Duration::from_secs(2);

/// The least time between the two tick edges the rate is measured over.
const MEASURE_SPAN_NS: u64 = 30_000_000;

/// The tick rates (`CONFIG_HZ`) Linux is built with on x86 and arm64.
const KERNEL_HZ: [u64; 4] = [100, 250, 300, 1000];

impl JiffyClock {
    /// Measures it: a sampler program (`reflector_bpf::xdp::jiffies_sampler`) run again and
    /// again with `BPF_PROG_TEST_RUN` from one edge of the tick count to the first edge 30 ms or
    /// more later (40 ms at most), the ticks between them over the time giving the rate. Needs what loading an XDP program
    /// needs (CAP_BPF and CAP_NET_ADMIN).
    pub fn measure() -> SysResult<JiffyClock> {
        let map = bpf::SizedMap::create(bpf::BPF_MAP_TYPE_ARRAY, 4, 16, 1, "reflector_jiffy")?;
        let insns = reflector_bpf::xdp::jiffies_sampler(map.as_raw_fd());
        let prog = super::load_program(&insns, "reflector_jiffy").map_err(|e| {
            let err = match e {
                bpf::LoadError::Permission(_) => std::io::Error::from_raw_os_error(libc::EPERM),
                other => std::io::Error::other(other.to_string()),
            };
            SysError { call: "bpf(BPF_PROG_LOAD, jiffies sampler)", err }
        })?;
        let frame = [0u8; 64];
        let sample = || -> SysResult<(u64, u64)> {
            bpf::prog_test_run(&prog, &frame)?;
            let value = map.lookup(&0u32.to_ne_bytes())?.unwrap_or_default();
            let word = |at: usize| u64::from_ne_bytes(value[at..at + 8].try_into().expect("8 bytes"));
            Ok((word(0), word(8)))
        };
        // The first edge, then the first edge at least 30 ms later: a tick's length from one
        // pair alone is off by the tick's jitter (a tenth of it and more in a virtual machine).
        let started = Instant::now();
        let mut first: Option<(u64, u64)> = None;
        let (mut last, _) = sample()?;
        loop {
            if started.elapsed() > MEASURE_LIMIT {
                return Err(SysError {
                    call: "jiffies sampler",
                    err: std::io::Error::other("the kernel's tick count did not move in 2 s"),
                });
            }
            let (jiffies, ns) = sample()?;
            if jiffies == last {
                continue;
            }
            last = jiffies;
            match first {
                None => first = Some((jiffies, ns)),
                Some(edge) if ns.saturating_sub(edge.1) >= MEASURE_SPAN_NS => {
                    return Ok(JiffyClock::from_edges(edge, (jiffies, ns)));
                }
                Some(_) => {}
            }
        }
    }

    /// The clock two tick edges make: the rate the nearest of the rates Linux is built with
    /// (within 5 %), else the nearest whole number of ticks a second.
    fn from_edges((j1, t1): (u64, u64), (j2, t2): (u64, u64)) -> JiffyClock {
        let ticks = j2.saturating_sub(j1).max(1);
        let measured = ticks as f64 * 1e9 / t2.saturating_sub(t1).max(1) as f64;
        let hz = KERNEL_HZ
            .iter()
            .copied()
            .find(|&hz| (measured - hz as f64).abs() <= 0.05 * hz as f64)
            .unwrap_or((measured.round() as u64).max(1));
        JiffyClock { hz, edge_jiffies: j2, edge_ns: t2 }
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
    fn the_rate_is_the_nearest_whole_hz_and_times_count_from_the_edge() {
        // Edges 13 ticks and 52.3 ms apart (a jittery tick): 248.6 measured, 250 Hz.
        let c = JiffyClock::from_edges((1000, 5_000_001_300), (1013, 5_052_300_000));
        assert_eq!(c.hz(), 250);
        assert_eq!(c.monotonic_ns(1013), 5_052_300_000);
        assert_eq!(c.monotonic_ns(1263), 6_052_300_000);
        assert_eq!(c.monotonic_ns(1012), 5_048_300_000);
        // A rate Linux is not built with: the nearest whole number.
        assert_eq!(JiffyClock::from_edges((0, 0), (64, 100_000_000)).hz(), 640);
        // 300 Hz does not divide a second evenly: no drift over an hour's ticks.
        let c = JiffyClock::from_edges((0, 0), (2, 6_666_667));
        assert_eq!(c.hz(), 300);
        assert_eq!(c.monotonic_ns(2 + 300 * 3600), 6_666_667 + 3600 * 1_000_000_000);
        // Before the edge (a row first seen earlier), and never below zero.
        assert_eq!(c.monotonic_ns(0), 1);
        assert_eq!(JiffyClock::from_edges((9, 1), (10, 4_000_001)).monotonic_ns(0), 0);
    }
}
