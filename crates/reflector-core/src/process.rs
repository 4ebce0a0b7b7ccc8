//! The per-frame entry point every data path calls: classify, then reflect in place.
//!
//! Reading order of the crate, wire to verdict: [`crate::wire`] (layouts and constants) →
//! [`crate::signature`] (what a test packet carries) → `filter` (what the user asked for) →
//! `classify` (one pass over the headers) → `reflect` (the in-place swap) → here.

use crate::classify::{Hit, Reject, after_ethernet, ethernet, ipv4_fast};
use crate::filter::Filter;
use crate::reflect::{reflect_accepted, reflect_ito_ipv4};

impl Filter {
    /// Classifies `frame` and, when it is a test packet, reflects it in place.
    ///
    /// A rejected frame is never modified.
    #[inline(always)]
    pub fn process(&self, frame: &mut [u8]) -> Result<Hit, Reject> {
        if let Some(verdict) = ipv4_fast(frame, self) {
            let hit = verdict?;
            reflect_ito_ipv4(frame, self);
            return Ok(hit);
        }
        let hit = after_ethernet(frame, self, &ethernet(frame, self)?)?;
        reflect_accepted(frame, &hit, self);
        Ok(hit)
    }
}
