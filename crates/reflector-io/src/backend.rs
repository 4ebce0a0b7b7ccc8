//! What every data path offers the worker loop: batches of frames lent in place.

use std::time::Duration;

/// What one call to [`Backend::process`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Batch {
    /// Frames received and handed to the handler.
    pub received: usize,
    /// Reflected frames the backend could not transmit.
    pub tx_error_packets: u64,
    /// Their bytes.
    pub tx_error_bytes: u64,
    /// Frames the kernel dropped before the backend could receive them (ring or queue full).
    pub rx_dropped: u64,
    /// Received records the backend could not take apart (corrupt, or cut short).
    pub rx_invalid: u64,
}

/// When the data path received a frame, if it knows, in nanoseconds: af-packet has the
/// kernel's receive timestamp (UTC), af-xdp the XDP program's for a STAMP request (TAI, which
/// the worker turns into UTC with the kernel's TAI offset). Where it is [`RxTime::Unknown`],
/// the worker's own clock reading stands in (taken when it takes the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxTime {
    /// No receive time.
    Unknown,
    /// Nanoseconds since the Unix epoch, UTC (CLOCK_REALTIME).
    Utc(u64),
    /// Nanoseconds of CLOCK_TAI.
    Tai(u64),
}

/// What the handler made of a frame: reflect it (the test packet it is), or not (why).
pub type Verdict = Result<reflector_core::Hit, reflector_core::Reject>;

/// A data path failure that ends the worker.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(#[from] pub reflector_sys::error::SysError);

/// A packet path: receive, let the handler reflect in place, transmit.
///
/// The worker loop is generic over this trait (monomorphised), so the handler inlines into
/// each backend's receive loop.
pub trait Backend: Send + 'static {
    /// Receives a batch (waiting up to `wait` when nothing is there), calls `handle` on each
    /// frame with its receive time when the data path has one ([`RxTime`]), which may rewrite
    /// it in place and returns its [`Verdict`], and queues the frames to reflect for
    /// transmission. The frame is lent as a buffer and its length: the frame is the buffer's
    /// first `len` bytes, the rest room the answer may grow into (a short STAMP request's is
    /// longer than the request); what is sent is the hit's [`reflector_core::Hit::answer_len`]
    /// bytes.
    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        wait: Duration,
        handle: F,
    ) -> Result<Batch, BackendError>;

    /// A new filter is in force: bring any kernel-side filter of this backend in line with it
    /// (called by the worker between batches). Nothing to do by default.
    fn update_filter(&mut self, filter: &reflector_core::Filter) -> Result<(), BackendError> {
        let _ = filter;
        Ok(())
    }

    /// True when the backend's XDP program applies the filter's allow and deny lists and rate
    /// limits before a frame reaches the worker, so the worker does not apply them again.
    fn gates_in_kernel(&self) -> bool {
        false
    }
}

/// The backend of a data path with no workers: the reflection runs in the kernel (`xdp-tx`).
/// It has no values, so a runtime of it has no threads.
#[derive(Debug)]
pub enum InKernel {}

impl Backend for InKernel {
    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        _: Duration,
        _: F,
    ) -> Result<Batch, BackendError> {
        match *self {}
    }
}
