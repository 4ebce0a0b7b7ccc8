//! Capture while running: the settings (`--capture FILE`, `--capture-what`, rotation), the
//! file opened at start, and the timed captures `/api/v1/capture` streams to a client. The
//! frames come from the workers' tap (`reflector_io::tap`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reflector_io::pcapng;
use reflector_io::tap::{Chunk, FileSink, Sink, Tap, What};

use crate::http::ChannelBody;
use crate::input::UsageError;
use crate::output::Target;

/// Which frames `--capture` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum CaptureWhat {
    /// The reflections, as sent.
    Reflected,
    /// The frames the workers rejected, as received, each with its reason.
    Rejected,
    /// Both.
    All,
}

impl From<CaptureWhat> for What {
    fn from(w: CaptureWhat) -> What {
        match w {
            CaptureWhat::Reflected => What::REFLECTED,
            CaptureWhat::Rejected => What::REJECTED,
            CaptureWhat::All => What::ALL,
        }
    }
}

/// Files `--capture-max-mb` keeps when `--capture-files` is not given.
pub const DEFAULT_FILES: u32 = 2;

/// The capture file of a run, as its settings ask: `path`, the frames `what`, and with
/// `max_mb`, a ring of `files` files of at most that many megabytes (10^6 bytes) each.
#[derive(Debug, Clone)]
pub struct CaptureFile<'a> {
    pub path: &'a Path,
    pub what: What,
    pub max_mb: Option<u32>,
    pub files: u32,
}

impl CaptureFile<'_> {
    /// Opens the file (before the workers start, so a bad path stops the run with one line).
    pub fn open(&self, interface: &str) -> anyhow::Result<FileSink> {
        let path = match Target::of(self.path)? {
            Target::File(path) => path,
            Target::Special(_) if self.max_mb.is_some() => {
                return Err(UsageError(format!(
                    "--capture-max-mb: {} is not a regular file, so it cannot be rotated",
                    self.path.display()
                ))
                .into());
            }
            Target::Special(path) => path,
        };
        let rotation = self.max_mb.map(|mb| (u64::from(mb) * 1_000_000, self.files));
        FileSink::create(&path, interface, self.what, rotation)
            .map_err(|e| anyhow::anyhow!("cannot write the capture file {}: {e}", self.path.display()))
    }

    /// What the start line says of it; `kernel`: the XDP program samples (whether it
    /// reflects too, and its cap).
    pub fn describe(&self, kernel: Option<(bool, u32)>) -> String {
        let ring = match self.max_mb {
            Some(mb) => format!(", {} files of {mb} MB at most", self.files),
            None => String::new(),
        };
        let kernel = match kernel {
            Some((true, cap)) => format!(" (sampled by the XDP program, at most {cap} frames/s)"),
            Some((false, cap)) if self.what != What::REFLECTED => {
                format!(" (the frames the XDP program rejects sampled, at most {cap}/s)")
            }
            _ => String::new(),
        };
        format!("capture of {} frames to {}{ring}{kernel}", self.what.name(), self.path.display())
    }
}

/// Longest capture `/api/v1/capture` streams.
pub const MAX_STREAM_SECONDS: u64 = 300;
/// Chunks a streaming client may be behind by before frames are dropped for it (counted).
const STREAM_QUEUE: usize = 256;
/// A stream with no frames gets a statistics block this often, so the connection never goes
/// idle (the server closes connections idle for 30 s).
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A capture streamed to an HTTP client for a while (`/api/v1/capture`).
pub struct StreamSink {
    what: What,
    until: Instant,
    out: tokio::sync::mpsc::Sender<Bytes>,
    last_sent: Instant,
    /// Frames it could not take (the client read too slowly), for the statistics blocks.
    dropped: u64,
    tap: Arc<Tap>,
}

impl StreamSink {
    /// A capture of `what` for `seconds` from `tap`: the pcapng stream to send, as a body.
    pub fn start(tap: &Arc<Tap>, what: What, seconds: u64) -> ChannelBody {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        let _ = tx.try_send(Bytes::from(pcapng::header(tap.interface())));
        let now = Instant::now();
        tap.add(Box::new(StreamSink {
            what,
            until: now + Duration::from_secs(seconds),
            out: tx,
            last_sent: now,
            dropped: 0,
            tap: tap.clone(),
        }));
        ChannelBody(rx)
    }

    fn send(&mut self, bytes: Vec<u8>, frames: usize) -> Result<(), String> {
        match self.out.try_send(Bytes::from(bytes)) {
            Ok(()) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.dropped += frames as u64;
                self.tap.count_dropped(frames as u64);
                Ok(())
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }
}

impl Sink for StreamSink {
    fn what(&self) -> What {
        self.what
    }

    fn write(&mut self, chunk: &Chunk) -> Result<(), String> {
        let (mut bytes, mut frames) = (Vec::new(), 0);
        chunk.runs(self.what, |run, n| {
            bytes.extend_from_slice(run);
            frames += n;
        });
        if frames > 0 { self.send(bytes, frames) } else { Ok(()) }
    }

    fn tick(&mut self, now: Instant) -> Result<(), String> {
        if now - self.last_sent >= KEEP_ALIVE {
            let mut block = Vec::new();
            pcapng::statistics(&mut block, reflector_io::worker::utc_now_ns(), self.dropped);
            self.send(block, 0)?;
        }
        Ok(())
    }

    fn done(&self, now: Instant) -> bool {
        now >= self.until || self.out.is_closed()
    }

    fn finish(&mut self) -> Result<(), String> {
        // The last block says how many frames the client missed.
        let mut block = Vec::new();
        pcapng::statistics(&mut block, reflector_io::worker::utc_now_ns(), self.dropped);
        self.send(block, 0)
    }

    fn describe(&self) -> String {
        "capture stream".into()
    }
}
