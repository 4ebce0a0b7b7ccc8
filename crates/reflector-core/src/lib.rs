//! The packet rules of `reflector`, shared by every data path.
//!
//! Everything here is pure: no I/O, no allocation, no raw pointers, and no panic on any input.
//! A backend hands a received frame to [`Filter::process`], which classifies it in one pass
//! over the headers and, when it is a test packet, turns it around in place.
//!
//! Modules in reading order, each using only those before it: `wire` (layouts, constants) →
//! `signature` (the test signatures and their families) → `filter` (a checked configuration) →
//! `classify` (one pass over the headers: a [`Hit`] or a [`Reject`]) → `reflect` (the in-place
//! swap) → `process` ([`Filter::process`], the per-frame entry point). `counters` and `build`
//! (test frames) sit beside them.
//!
//! The rules are written down in `docs/PACKET-RULES.md`; the order of checks there is the
//! order of [`Reject`] reasons here (the first failing check names the reason).
#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod build;
pub mod checksum;
mod classify;
mod counters;
mod filter;
mod process;
mod reflect;
pub mod signature;
pub mod wire;

pub use classify::{Hit, L3Kind, Reject, classify};
pub use counters::{Counters, DWELL_BUCKETS, Dwell};
pub use filter::{
    ConfigError, CustomSignature, DEFAULT_OUI, DEFAULT_PORT, Filter, FilterConfig, MAX_CUSTOM_SIGNATURES,
    MAX_LOCAL_ADDRESSES, MAX_SIGNATURE_LEN, Mode,
};
pub use reflect::reflect;
pub use signature::{Family, FamilySet, Signature};
pub use wire::MacAddr;

/// The two halves of [`classify`] on their own, for the tests that hold the fast path to the
/// ordered checks: not part of the API.
#[doc(hidden)]
pub mod testing {
    pub use crate::classify::{classify_fast, classify_ordered};
}
