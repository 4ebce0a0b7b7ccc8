//! Offline replay: a capture in, the frames the reflector would send out.

use std::io::{Read, Write};

use reflector_core::stamp::{SessionTable, Sessions};
use reflector_core::{Counters, Filter, PathState};

use crate::capture::{CaptureError, CaptureReader, PcapWriter};

/// What a replay saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Records read from the capture.
    pub records: u64,
    /// Records the capture had cut short (snap length): the reflector would have seen the
    /// whole frame, so they are neither judged nor written.
    pub truncated_records: u64,
    /// The core's counters over the judged records.
    pub counters: Counters,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The output could not be written.
    #[error("write failed: {0}")]
    Write(#[source] std::io::Error),
}

/// Reads every record of `input`, reflects the test packets with `filter`, and writes them to
/// `output` with their original timestamps. A STAMP answer's receive and transmit times are both
/// the request's capture time (the moment the replayed reflector saw it), so a replay's output
/// depends on its input alone; their error estimate says the clock is unknown
/// ([`reflector_core::stamp::ErrorEstimate::UNKNOWN`]).
/// Bytes of room after each frame for an answer that outgrows its request (a short STAMP
/// request's grows by at most 27 bytes).
const ANSWER_ROOM: usize = 64;

pub fn replay<R: Read, W: Write>(input: R, output: W, filter: &Filter) -> Result<ReplaySummary, ReplayError> {
    let mut reader = CaptureReader::new(input)?;
    let mut writer = PcapWriter::new(output).map_err(ReplayError::Write)?;
    let mut summary = ReplaySummary::default();
    let mut sessions: Box<Sessions> = Box::default();
    // Rate limits are kept at the capture's times, as if the frames came as captured.
    let limiter = (filter.source_limit().is_some() || filter.total_limit().is_some())
        .then(reflector_core::limit::Limiter::default);
    // Nothing is known of the capturing clock.
    let error = reflector_core::stamp::ErrorEstimate::UNKNOWN;
    while let Some(mut record) = reader.next_record()? {
        summary.records += 1;
        if (record.data.len() as u64) < record.orig_len as u64 {
            summary.truncated_records += 1;
            continue;
        }
        let captured = record.timestamp_ns;
        let mut stamping = PathState {
            received: Some(captured),
            clock: &mut || captured,
            error,
            sessions: &mut *sessions,
            limiter: limiter.as_ref(),
            testers: None,
        };
        // Room after the frame for an answer longer than the request (a short STAMP request's).
        let len = record.data.len();
        record.data.resize(len + ANSWER_ROOM, 0);
        let verdict = filter.process_in(&mut record.data, len, &mut stamping);
        summary.counters.record(len, &verdict);
        if let Ok(hit) = verdict {
            writer
                .write(record.timestamp_ns, &record.data[..hit.answer_len(len)])
                .map_err(ReplayError::Write)?;
        }
    }
    summary.counters.stamp_sessions_evicted = sessions.evicted();
    writer.finish().map_err(ReplayError::Write)?;
    Ok(summary)
}
