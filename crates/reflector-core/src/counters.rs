//! Counters as plain data: updated by a single owner, copied for display.

use crate::classify::{Hit, Reject, Signature};

/// What one worker (or a whole run) has seen and done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
                self.reflected_bytes += len as u64;
                self.by_signature[hit.signature() as usize] += 1;
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
        for (a, b) in out.by_signature.iter_mut().zip(earlier.by_signature) {
            *a -= b.min(*a);
        }
        for (a, b) in out.rejected.iter_mut().zip(earlier.rejected) {
            *a -= b.min(*a);
        }
        out
    }
}
