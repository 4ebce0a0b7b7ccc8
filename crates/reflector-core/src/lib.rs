//! The packet rules of `reflector`, shared by every data path.
//!
//! Everything here is pure: no I/O, no allocation per frame (the allow and deny tables are
//! built with the filter, the limiter's buckets with the run), no raw pointers, and no panic
//! on any input.
//! A backend hands a received frame to [`Filter::process`], which classifies it in one pass
//! over the headers and, when it is a test packet, turns it around in place.
//!
//! Modules in reading order, each using only those before it: `wire` (layouts, constants) →
//! `signature` (the test signatures and their families) → `verdict` (a [`Hit`] or a
//! [`Reject`]) → `access` (allow and deny lists), `limit` (rate limits) and the protocols'
//! settings → `filter` (a checked configuration) → `checks` (the rules after a protocol's own)
//! → [`protocol`] (each protocol recognising and answering its requests: the signatures,
//! STAMP) → `classify` (one pass over the headers, then the protocol the port names) →
//! `reflect` (the in-place swap) → `process` ([`Filter::process`], the per-frame entry point).
//! `counters`, `testers` (who is testing) and `build` (test frames) sit beside them.
//!
//! The rules are written down in `docs/PACKET-RULES.md`; the order of checks there is the
//! order of [`Reject`] reasons here (the first failing check names the reason).
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod access;
pub mod build;
mod checks;
pub mod checksum;
mod classify;
mod counters;
mod filter;
pub mod limit;
mod process;
pub mod protocol;
mod reflect;
pub mod signature;
pub mod testers;
mod verdict;
pub mod wire;

pub use classify::classify;
pub use counters::{Counters, DWELL_BUCKETS, Dwell};
pub use filter::{
    ConfigError, CustomSignature, DEFAULT_OUI, DEFAULT_PORT, FIRST_EPHEMERAL_PORT, Filter, FilterConfig,
    LoopGuard, MAX_CUSTOM_SIGNATURES, MAX_LOCAL_ADDRESSES, MAX_SIGNATURE_LEN, Mode, StampShort,
};
pub use process::PathState;
pub use protocol::stamp;
pub use reflect::reflect;
pub use signature::{Family, FamilySet, Signature};
pub use verdict::{Hit, L3Kind, Reject};
pub use wire::MacAddr;

/// The two halves of [`classify`] on their own, for the tests that hold the fast path to the
/// ordered checks: not part of the API.
#[doc(hidden)]
pub mod testing {
    pub use crate::classify::{classify_fast, classify_ordered};
    use crate::{Filter, FilterConfig, Hit, MacAddr, PathState, Reject, stamp};

    /// A verdict as the data paths' own tests need one: reflect (as an RFC 2544 frame of
    /// untagged IPv4 would be) or not (`not_udp`).
    pub fn verdict(reflect: bool) -> Result<Hit, Reject> {
        if reflect { Ok(Hit::fast(crate::Signature::Rfc2544 as u8)) } else { Err(Reject::NotUdp) }
    }

    /// The clock of [`process`]: 2026-11-30 00:00:00 UTC, in ns.
    pub const FIXED_TIME: u64 = 1_796_083_200_000_000_000;

    /// Runs `f` with a [`PathState`] of a fixed clock ([`FIXED_TIME`]), a synchronised 1 µs
    /// error estimate and a small session table, for the tests and benchmarks to which the time
    /// of a STAMP answer does not matter.
    pub fn with_stamping<R>(f: impl FnOnce(&mut PathState<'_>) -> R) -> R {
        let mut clock = || FIXED_TIME;
        let mut sessions = stamp::Sessions::<16>::default();
        let mut stamping = PathState {
            received: None,
            clock: &mut clock,
            error: stamp::ErrorEstimate::new(true, 1_000),
            sessions: &mut sessions,
            limiter: None,
            testers: None,
        };
        f(&mut stamping)
    }

    /// [`Filter::process`] for one frame with [`with_stamping`].
    pub fn process(filter: &Filter, frame: &mut [u8]) -> Result<Hit, Reject> {
        with_stamping(|stamping| filter.process(frame, stamping))
    }

    /// The STAMP answer [`process`] gives to the request `hit` was classified from (by the
    /// ordered checks, say), reached without the fast path.
    pub fn answer_stamp(filter: &Filter, frame: &mut [u8], hit: Hit) {
        with_stamping(|stamping| filter.answer_stamp(frame, hit, stamping)).expect("an answer");
    }

    /// The default filter with the STAMP family added, for `local_mac`.
    pub fn stamp_filter(local_mac: MacAddr) -> Filter {
        let mut config = FilterConfig::new(local_mac);
        config.families.insert(crate::Family::Stamp);
        Filter::new(&config).expect("a valid configuration")
    }
}
