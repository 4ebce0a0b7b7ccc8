//! The OS-facing side of `reflector`: capture files, packet backends and the worker runtime.
//!
//! All `unsafe` of the project lives in this crate, in the few modules that opt in.

pub mod capture;
pub mod replay;
