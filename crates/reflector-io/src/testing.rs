//! An in-process backend for tests and benchmarks of the worker loop: not a data path.

use std::time::Duration;

use crate::backend::{Backend, BackendError, Batch, RxTime, Verdict};

/// Bytes of room after each frame (as a data path's buffer has after a short frame).
const ROOM: usize = 64;

/// An in-process backend for tests and benchmarks: frames in from a queue, out into a list.
/// Each frame is lent with 64 bytes of room after it, as a data path's buffer has; a frame
/// queued with that room already reserved ([`with_room`]) is lent without a reallocation.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    /// Frames still to be received.
    pub rx: std::collections::VecDeque<Vec<u8>>,
    /// Frames sent back, shared with whoever inspects them.
    pub tx: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    /// Frames per batch.
    pub batch: usize,
}

/// `frame` in a buffer with the room [`MemoryBackend`] lends after it, so that lending it
/// allocates nothing (as a ring's slot does not).
pub fn with_room(frame: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(frame.len() + ROOM);
    buf.extend_from_slice(frame);
    buf
}

impl Backend for MemoryBackend {
    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        if self.rx.is_empty() {
            std::thread::sleep(wait.min(Duration::from_millis(1)));
            return Ok(Batch::default());
        }
        let mut batch = Batch::default();
        let mut sent = Vec::new();
        for _ in 0..self.batch.max(1) {
            let Some(mut frame) = self.rx.pop_front() else { break };
            batch.received += 1;
            let len = frame.len();
            // Room for an answer longer than the request, as the data paths have.
            frame.resize(len + ROOM, 0);
            if let Ok(hit) = handle(&mut frame, len, RxTime::Unknown) {
                frame.truncate(hit.answer_len(len));
                sent.push(frame);
            }
        }
        self.tx.lock().expect("tx list lock").extend(sent);
        Ok(batch)
    }
}
