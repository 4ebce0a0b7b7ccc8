//! Capture while running: the settings (`--capture FILE`, `--capture-what`, rotation), the
//! file opened at start, and the timed captures `/api/v1/capture` streams to a client. The
//! frames come from the workers' tap (`reflector_io::tap`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reflector_io::pcapng;
use reflector_io::tap::{Chunk, FileSink, Sink, Tap, What};

use crate::body::ChannelBody;
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
/// Chunks a streaming client may be behind by before frames are not sent to it (counted); the
/// bytes it may be behind by are bounded too (`reflector_io::tap::STREAM_BYTES`, and for all
/// streams together `STREAMS_BYTES`).
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
    /// Frames it did not send (the client read too slowly), for the statistics blocks.
    dropped: u64,
    /// Bytes sent into the channel that the client has not taken yet (the body gives them
    /// back to it and to the tap's budget as it takes them).
    waiting: Arc<std::sync::atomic::AtomicU64>,
    tap: Arc<Tap>,
}

/// The accounting of a capture stream's bytes: what its body hands back as the client takes
/// them (or when the client goes away).
struct StreamMeter {
    waiting: Arc<std::sync::atomic::AtomicU64>,
    tap: Arc<Tap>,
}

impl StreamMeter {
    /// `bytes` taken by the client.
    fn taken(&self, bytes: usize) {
        self.waiting.fetch_sub(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        self.tap.release_stream(bytes as u64);
    }
}

impl StreamSink {
    /// A capture of `what` for `seconds` from `tap`: the pcapng stream to send, as a body;
    /// `None` when the streams together have all the bytes they may hold waiting already.
    pub fn start(tap: &Arc<Tap>, what: What, seconds: u64) -> Option<ChannelBody> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        let now = Instant::now();
        let waiting = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sink = StreamSink {
            what,
            until: now + Duration::from_secs(seconds),
            out: tx,
            last_sent: now,
            dropped: 0,
            waiting: waiting.clone(),
            tap: tap.clone(),
        };
        let header = pcapng::header(tap.interface());
        let len = header.len() as u64;
        if !tap.reserve_stream(0, len) {
            return None;
        }
        waiting.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        let _ = sink.out.try_send(Bytes::from(header));
        tap.add(Box::new(sink));
        let meter = StreamMeter { waiting, tap: tap.clone() };
        Some(ChannelBody::metered(rx, move |bytes| meter.taken(bytes)))
    }

    fn give_back(&self, bytes: u64) {
        self.waiting.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        self.tap.release_stream(bytes);
    }

    /// Sends `bytes` (holding `frames` frames) to the client, unless it is too far behind (in
    /// chunks, or in bytes of its own or of all streams): then they are not sent, and counted.
    fn send(&mut self, bytes: Vec<u8>, frames: usize) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let len = bytes.len() as u64;
        let not_sent = |sink: &mut StreamSink| {
            sink.dropped += frames as u64;
            sink.tap.count_stream_dropped(frames as u64);
        };
        if self.out.is_closed() {
            return Ok(());
        }
        if !self.tap.reserve_stream(self.waiting.load(Ordering::Relaxed), len) {
            not_sent(self);
            return Ok(());
        }
        self.waiting.fetch_add(len, Ordering::Relaxed);
        match self.out.try_send(Bytes::from(bytes)) {
            Ok(()) => self.last_sent = Instant::now(),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.give_back(len);
                not_sent(self);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => self.give_back(len),
        }
        Ok(())
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
