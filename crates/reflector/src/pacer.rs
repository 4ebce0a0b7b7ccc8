//! Paced sending, for both probers (raw and STAMP), and the frame sizes they count in.

use std::time::{Duration, Instant};

/// Ethernet frame check sequence, counted in frame sizes (as testers do) but not written.
pub const FCS_LEN: usize = 4;

/// Sends at a steady rate: a token bucket refilled by elapsed time, so a late loop catches up
/// with a burst instead of drifting.
#[derive(Debug)]
pub struct Pacer {
    /// Packets per second; 0 means as fast as possible.
    rate: f64,
    start: Instant,
    /// Packets sent so far.
    pub sent: u64,
    /// The most a single call hands out.
    burst: u64,
}

impl Pacer {
    /// A pacer for `rate` packets per second (0 = unlimited), starting `now`.
    pub fn new(rate: u64, now: Instant) -> Pacer {
        Pacer { rate: rate as f64, start: now, sent: 0, burst: 64 }
    }

    /// How many packets may go out at `now`.
    pub fn due(&self, now: Instant) -> u64 {
        if self.rate == 0.0 {
            return self.burst;
        }
        let allowed = ((now - self.start).as_secs_f64() * self.rate) as u64 + 1;
        allowed.saturating_sub(self.sent).min(self.burst)
    }

    /// When the next packet is due.
    pub fn next_at(&self) -> Instant {
        if self.rate == 0.0 {
            return self.start;
        }
        self.start + Duration::from_secs_f64(self.sent as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_keeps_the_rate_and_catches_up() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, t0);
        assert_eq!(p.due(t0), 1);
        p.sent = 1;
        assert_eq!(p.due(t0), 0);
        assert_eq!(p.next_at(), t0 + Duration::from_millis(1));
        // 10 ms late: ten are due at once (a burst), capped at 64.
        assert_eq!(p.due(t0 + Duration::from_millis(10)), 10);
        assert_eq!(p.due(t0 + Duration::from_secs(1)), 64);
        let unlimited = Pacer::new(0, t0);
        assert_eq!(unlimited.due(t0), 64);
    }
}
