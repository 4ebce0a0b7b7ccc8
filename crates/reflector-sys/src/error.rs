//! The error every syscall wrapper returns: which call failed, and the OS error.

use std::io;

/// A failed syscall: which one, and the OS error.
///
/// The OS error is part of the message, not a separate `source()`, so an error chain printed
/// with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {err}")]
pub struct SysError {
    /// The call (and option) that failed.
    pub call: &'static str,
    /// The OS error.
    pub err: io::Error,
}

impl SysError {
    /// The errno, if any.
    pub fn errno(&self) -> Option<i32> {
        self.err.raw_os_error()
    }

    /// The calling thread's last OS error, for `call`.
    pub fn last(call: &'static str) -> SysError {
        SysError { call, err: io::Error::last_os_error() }
    }
}

/// Result of a syscall wrapper.
pub type SysResult<T> = Result<T, SysError>;
