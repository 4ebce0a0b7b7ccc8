//! Counters as plain data: updated by a single owner, copied for display.

use crate::signature::Signature;
use crate::verdict::{Hit, Reject};

/// What one worker (or a whole run) has seen and done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed to the core.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames reflected and handed back for transmission.
    pub reflected_packets: u64,
    /// Bytes of those frames.
    pub reflected_bytes: u64,
    /// Reflected frames the backend failed to transmit.
    pub tx_errors: u64,
    /// Frames the kernel dropped before the reflector saw them (receive ring or queue full).
    pub rx_dropped: u64,
    /// Received records the backend could not take apart (corrupt, or cut short by capture).
    pub rx_invalid: u64,
    /// Test packets per [`Signature`], indexed in [`Signature::ALL`] order.
    pub by_signature: [u64; Signature::COUNT],
    /// Rejected frames per [`Reject`] reason, indexed in [`Reject::ALL`] order.
    pub rejected: [u64; Reject::COUNT],
    /// Live STAMP sessions (stateful mode) whose sequence counter was taken over by a new
    /// session because the session table was full: each starts again from 0.
    pub stamp_sessions_evicted: u64,
    /// STAMP / TWAMP-Light requests shorter than the reflector packet answered with it, longer
    /// than they came (counted as reflected too).
    pub stamp_short_answered: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx_packets: 0,
            rx_bytes: 0,
            reflected_packets: 0,
            reflected_bytes: 0,
            tx_errors: 0,
            rx_dropped: 0,
            rx_invalid: 0,
            by_signature: [0; Signature::COUNT],
            rejected: [0; Reject::COUNT],
            stamp_sessions_evicted: 0,
            stamp_short_answered: 0,
        }
    }
}

impl Counters {
    /// Records the verdict for a received frame of `len` bytes. A hit counts as reflected.
    #[inline(always)]
    pub fn record(&mut self, len: usize, verdict: &Result<Hit, Reject>) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
        match verdict {
            Ok(hit) => {
                self.reflected_packets += 1;
                self.reflected_bytes += hit.answer_len(len) as u64;
                self.by_signature[hit.signature() as usize] += 1;
                if hit.grown() {
                    self.stamp_short_answered += 1;
                }
            }
            Err(reason) => self.rejected[*reason as usize] += 1,
        }
    }

    /// Records reflected frames (`packets` of `bytes` in all) that could not be transmitted:
    /// they move from reflected to TX errors.
    pub fn record_tx_errors(&mut self, packets: u64, bytes: u64) {
        self.tx_errors += packets;
        self.reflected_packets -= packets.min(self.reflected_packets);
        self.reflected_bytes -= bytes.min(self.reflected_bytes);
    }

    /// Total rejected frames.
    pub fn rejected_packets(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Adds `other` into `self` (for totals over workers).
    pub fn add(&mut self, other: &Counters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.reflected_packets += other.reflected_packets;
        self.reflected_bytes += other.reflected_bytes;
        self.tx_errors += other.tx_errors;
        self.rx_dropped += other.rx_dropped;
        self.rx_invalid += other.rx_invalid;
        self.stamp_sessions_evicted += other.stamp_sessions_evicted;
        self.stamp_short_answered += other.stamp_short_answered;
        for (a, b) in self.by_signature.iter_mut().zip(other.by_signature) {
            *a += b;
        }
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
    }

    /// `self - earlier`, field by field (for rates over an interval).
    pub fn delta(&self, earlier: &Counters) -> Counters {
        let mut out = *self;
        out.rx_packets -= earlier.rx_packets.min(out.rx_packets);
        out.rx_bytes -= earlier.rx_bytes.min(out.rx_bytes);
        out.reflected_packets -= earlier.reflected_packets.min(out.reflected_packets);
        out.reflected_bytes -= earlier.reflected_bytes.min(out.reflected_bytes);
        out.tx_errors -= earlier.tx_errors.min(out.tx_errors);
        out.rx_dropped -= earlier.rx_dropped.min(out.rx_dropped);
        out.rx_invalid -= earlier.rx_invalid.min(out.rx_invalid);
        out.stamp_sessions_evicted -= earlier.stamp_sessions_evicted.min(out.stamp_sessions_evicted);
        out.stamp_short_answered -= earlier.stamp_short_answered.min(out.stamp_short_answered);
        for (a, b) in out.by_signature.iter_mut().zip(earlier.by_signature) {
            *a -= b.min(*a);
        }
        for (a, b) in out.rejected.iter_mut().zip(earlier.rejected) {
            *a -= b.min(*a);
        }
        out
    }
}

/// Number of buckets of a [`Dwell`] histogram: bucket `i` holds times in `[2^i, 2^(i+1))` ns
/// (bucket 0 also holds 0 and 1 ns), up to about 550 s.
pub const DWELL_BUCKETS: usize = 40;

/// A histogram of how long reflected frames stayed in the reflector (from the worker taking
/// them to their transmit submission), in power-of-two nanosecond buckets. Plain data, like
/// [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dwell {
    /// Frames per bucket.
    pub buckets: [u64; DWELL_BUCKETS],
}

impl Default for Dwell {
    fn default() -> Self {
        Dwell { buckets: [0; DWELL_BUCKETS] }
    }
}

impl Dwell {
    /// Records `n` frames that each stayed `ns` nanoseconds.
    pub fn record(&mut self, ns: u64, n: u64) {
        let bucket = (63 - ns.max(1).leading_zeros() as usize).min(DWELL_BUCKETS - 1);
        self.buckets[bucket] += n;
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Dwell) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }

    /// Frames recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound, in nanoseconds, of the bucket holding the `q`-quantile (0 < q <= 1),
    /// or `None` with nothing recorded. A bucket's bound overstates by less than 2x.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // ceil(q * total) without std's float functions (the core is no_std).
        let x = q * total as f64;
        let floor = x as u64;
        let rank = (if (floor as f64) < x { floor + 1 } else { floor }).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some((1u64 << (i + 1)) - 1);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dwell_buckets_and_quantiles() {
        let mut d = Dwell::default();
        assert_eq!(d.quantile(0.5), None);
        d.record(0, 1); // bucket 0
        d.record(1000, 98); // [512, 1024)
        d.record(100_000, 1); // [65536, 131072)
        assert_eq!(d.count(), 100);
        assert_eq!(d.quantile(0.01), Some(1));
        assert_eq!(d.quantile(0.5), Some(1023));
        assert_eq!(d.quantile(0.99), Some(1023));
        assert_eq!(d.quantile(0.999), Some(131_071));
        d.record(u64::MAX, 1);
        assert_eq!(d.buckets[DWELL_BUCKETS - 1], 1, "clamped to the last bucket");
        let mut twice = d;
        twice.add(&d);
        assert_eq!(twice.count(), 2 * d.count());
    }
}
