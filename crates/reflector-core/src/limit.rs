//! How hard a tester may test: a rate limit per source address and one on the total.
//!
//! Each limit is a token bucket, kept as the generic cell rate algorithm keeps it (ITU-T
//! I.371): one number per bucket, the time at which it would be full again (its "theoretical
//! arrival time"). A packet at `now` passes when that time is at most `now` plus the burst's
//! worth of intervals, and moves it one interval on. So `burst` packets pass back to back, and
//! on average one per interval.
//!
//! The per-source buckets live in a [`Limiter`]: a fixed table of [`LIMITER_SOURCES`] slots
//! that the workers of a run share. A source takes a slot near the one its address hashes to;
//! a slot whose bucket is full again (its source silent long enough) is free to take, which
//! changes no outcome (a full bucket and a new one are the same). When none near is, the new
//! source shares one overflow bucket with the others in that case, counted in
//! [`Limiter::overflowed`]. Updates are plain atomic loads and stores, no locked instruction:
//! two workers racing for one bucket may let a packet or two more through, as the kernel's
//! limiter (an LRU hash updated without locks, as Cilium's) may.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sources a [`Limiter`] of the data paths keeps a bucket for.
pub const LIMITER_SOURCES: usize = 16_384;
/// Slots looked at for a source (from the one its address hashes to).
const PROBE: usize = 8;

/// A rate limit: packets per second, and how many may come back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_second: u32,
    burst: u32,
}

impl Rate {
    /// `per_second` packets a second, `burst` of them back to back; `None` when either is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<Rate> {
        (per_second > 0 && burst > 0).then_some(Rate { per_second, burst })
    }

    /// The default burst for a rate: a tenth of a second's worth, at least 1.
    pub fn default_burst(per_second: u32) -> u32 {
        (per_second / 10).max(1)
    }

    /// Packets per second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Packets that may come back to back.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds between packets at the rate (rounded to the nearest).
    pub fn interval_ns(&self) -> u64 {
        (1_000_000_000 + self.per_second as u64 / 2) / self.per_second as u64
    }

    /// How far ahead of now a bucket's time may be for a packet to pass: the burst less one
    /// interval.
    pub fn tolerance_ns(&self) -> u64 {
        (self.burst as u64 - 1) * self.interval_ns()
    }

    /// Whether a packet at `now` (ns) passes the bucket whose time is `tat`, and the bucket's
    /// time after it. A time that is further ahead than any packet could have put it (the
    /// clock went back) starts again from `now`.
    #[inline(always)]
    pub fn take(&self, tat: u64, now: u64) -> Option<u64> {
        let (interval, tolerance) = (self.interval_ns(), self.tolerance_ns());
        let start = if tat <= now || tat - now > tolerance + interval { now } else { tat };
        (start - now <= tolerance).then_some(start + interval)
    }
}

/// The bucket at `tat` taken for a packet at `now` (see [`Rate::take`]): read, then written,
/// without a lock. Two workers taking one bucket at once may both pass where one should (the
/// kernel's buckets are updated so too); a compare-and-swap would cost every packet a locked
/// instruction (about 8 ns here) for what the racing workers of one source rarely meet.
#[inline(always)]
fn take_shared(tat: &AtomicU64, rate: &Rate, now: u64) -> bool {
    match rate.take(tat.load(Relaxed), now) {
        Some(next) => {
            tat.store(next, Relaxed);
            true
        }
        None => false,
    }
}

/// One source's bucket: its address (IPv4 as `::ffff:a.b.c.d`) as two words, all-zero when
/// free (`::` never sends a test packet), and the bucket's time.
#[derive(Debug, Default)]
struct Slot {
    key: [AtomicU64; 2],
    tat: AtomicU64,
}

/// The buckets of a run's rate limits, shared by its workers (see the module's description).
#[derive(Debug)]
pub struct Limiter {
    slots: Box<[Slot]>,
    overflow: AtomicU64,
    total: AtomicU64,
    overflowed: AtomicU64,
}

impl Default for Limiter {
    /// A limiter of [`LIMITER_SOURCES`] sources.
    fn default() -> Limiter {
        Limiter::new(LIMITER_SOURCES)
    }
}

impl Limiter {
    /// A limiter that keeps a bucket for up to `sources` sources, rounded up to a power of two
    /// (so that a slot is found by a mask, not a division).
    pub fn new(sources: usize) -> Limiter {
        let slots: Vec<Slot> = (0..sources.max(1).next_power_of_two()).map(|_| Slot::default()).collect();
        Limiter {
            slots: slots.into_boxed_slice(),
            overflow: AtomicU64::new(0),
            total: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Whether a packet from `source` (16 bytes: an IPv6 address, or IPv4 as `::ffff:a.b.c.d`)
    /// at `now` (ns) passes `per_source`, then `total`. A packet the total holds back has used
    /// its source's token.
    #[inline]
    pub fn admit(&self, source: [u8; 16], now: u64, per_source: Option<&Rate>, total: Option<&Rate>) -> bool {
        if let Some(rate) = per_source
            && !take_shared(self.bucket(source, now), rate, now)
        {
            return false;
        }
        total.is_none_or(|rate| take_shared(&self.total, rate, now))
    }

    /// The bucket of `source`: its slot, a slot it may take, or the overflow bucket.
    #[inline(always)]
    fn bucket(&self, source: [u8; 16], now: u64) -> &AtomicU64 {
        let key = [
            u64::from_le_bytes(source[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(source[8..].try_into().expect("8 bytes")),
        ];
        let mask = self.slots.len() - 1;
        let start = hash(key) as usize;
        let mut free = None;
        for i in 0..PROBE.min(mask + 1) {
            let slot = &self.slots[(start + i) & mask];
            let held = [slot.key[0].load(Relaxed), slot.key[1].load(Relaxed)];
            if held == key {
                return &slot.tat;
            }
            if free.is_none() && (held == [0, 0] || slot.tat.load(Relaxed) <= now) {
                free = Some(slot);
            }
        }
        match free {
            Some(slot) => {
                slot.tat.store(now, Relaxed);
                slot.key[0].store(key[0], Relaxed);
                slot.key[1].store(key[1], Relaxed);
                &slot.tat
            }
            None => {
                self.overflowed.fetch_add(1, Relaxed);
                &self.overflow
            }
        }
    }

    /// Packets of sources that found no slot of their own and shared the overflow bucket.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Relaxed)
    }

    /// Sources whose bucket is not full at `now`: those that tested within the last burst's
    /// worth of time (a full bucket's slot is free again).
    pub fn busy_sources(&self, now: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| s.key[0].load(Relaxed) | s.key[1].load(Relaxed) != 0 && s.tat.load(Relaxed) > now)
            .count()
    }
}

/// Both words mixed by a 64 × 64 → 128-bit multiply each (halves folded), folded together.
#[inline(always)]
pub(crate) fn hash(key: [u64; 2]) -> u64 {
    let mix = |w: u64, k: u64| {
        let p = (w ^ k) as u128 * 0xe703_7ed1_a0b4_28db_u128;
        (p as u64) ^ (p >> 64) as u64
    };
    mix(key[0], 0x9e37_79b9_7f4a_7c15) ^ mix(key[1], 0xbf58_476d_1ce4_e5b9)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn source(i: u32) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[10] = 0xff;
        s[11] = 0xff;
        s[12..].copy_from_slice(&i.to_be_bytes());
        s
    }

    #[test]
    fn a_bucket_passes_its_burst_then_its_rate() {
        let rate = Rate::new(1000, 5).unwrap();
        assert_eq!((rate.interval_ns(), rate.tolerance_ns()), (MS, 4 * MS));
        let limiter = Limiter::new(64);
        let now = 10_000 * MS;
        let passed = (0..20).filter(|_| limiter.admit(source(1), now, Some(&rate), None)).count();
        assert_eq!(passed, 5, "the burst, back to back");
        assert!(!limiter.admit(source(1), now + MS / 2, Some(&rate), None));
        assert!(limiter.admit(source(1), now + MS, Some(&rate), None), "one interval later, one more");
        assert!(limiter.admit(source(2), now, Some(&rate), None), "another source has its own bucket");
        // A second at ten times the rate: the rate and the burst pass.
        let limiter = Limiter::new(64);
        let passed =
            (0..10_000u64).filter(|i| limiter.admit(source(3), now + i * MS / 10, Some(&rate), None)).count();
        assert_eq!(passed, 1000 + 4);
    }

    #[test]
    fn the_total_holds_across_sources() {
        let (per_source, total) = (Rate::new(1000, 1).unwrap(), Rate::new(1500, 10).unwrap());
        let limiter = Limiter::new(64);
        let mut passed = 0;
        for i in 0..1000u64 {
            for s in 0..4 {
                let now = 5 * MS + i * MS + s as u64 * MS / 4;
                passed += limiter.admit(source(s), now, Some(&per_source), Some(&total)) as u32;
            }
        }
        // One second: 1000 per source would be 4000; the total lets 1500 and its burst through.
        assert!((1500..=1510).contains(&passed), "{passed}");
    }

    #[test]
    fn a_clock_step_back_does_not_lock_a_source_out() {
        let rate = Rate::new(10, 1).unwrap();
        let limiter = Limiter::new(8);
        assert!(limiter.admit(source(1), 100_000 * MS, Some(&rate), None));
        assert!(!limiter.admit(source(1), 100_000 * MS + 1, Some(&rate), None));
        assert!(limiter.admit(source(1), 50_000 * MS, Some(&rate), None), "the clock went back 50 s");
    }

    #[test]
    fn a_full_table_shares_the_overflow_bucket_and_frees_full_buckets() {
        let rate = Rate::new(1, 1).unwrap();
        let limiter = Limiter::new(4);
        let now = 1_000 * MS;
        for s in 1..=4 {
            assert!(limiter.admit(source(s), now, Some(&rate), None));
        }
        assert_eq!(limiter.busy_sources(now), 4);
        // Every slot holds a source whose bucket is not full: the next ones share one bucket.
        assert!(limiter.admit(source(5), now, Some(&rate), None));
        assert!(!limiter.admit(source(6), now, Some(&rate), None), "the overflow bucket is shared");
        assert_eq!(limiter.overflowed(), 2);
        // A second later every bucket is full again, so a new source takes a slot.
        assert!(limiter.admit(source(7), now + 1000 * MS, Some(&rate), None));
        assert!(!limiter.admit(source(7), now + 1000 * MS, Some(&rate), None), "its own bucket, taken");
        assert_eq!(limiter.overflowed(), 2);
    }
}
