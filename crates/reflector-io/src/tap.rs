//! Capture while running: [`Tapped`] wraps a backend and copies the frames the worker judged
//! (reflections as they are sent, rejected frames as they came in, each with its verdict) to
//! a writer thread, which hands them to the sinks that want them: a pcapng file
//! ([`FileSink`], with rotation) or a stream to an HTTP client. The worker loop knows nothing
//! of it.
//!
//! The worker never waits on a capture: with no sink, a batch costs one atomic load; with one,
//! the copies of a batch go to the writer thread through a queue bounded in bytes, and a batch
//! that finds it full is not captured and is counted ([`Tap::dropped`]).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{Backend, BackendError, Batch, RxTime, Verdict};
use crate::pcapng::{self, Direction};
use crate::worker::utc_now_ns;

/// Which frames a capture keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct What(u8);

impl What {
    /// Its bits: 1 reflected, 2 rejected (as the XDP programs' capture flags have them).
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }

    /// The reflections, as sent.
    pub const REFLECTED: What = What(1);
    /// The frames the worker rejected, as received, with the reason.
    pub const REJECTED: What = What(2);
    /// Both.
    pub const ALL: What = What(3);

    /// Its name in settings and in the API: `reflected`, `rejected` or `all`.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "reflected",
            2 => "rejected",
            _ => "all",
        }
    }

    fn wants(self, kind: u8) -> bool {
        self.0 & kind != 0
    }
}

impl std::str::FromStr for What {
    type Err = String;
    fn from_str(s: &str) -> Result<What, String> {
        match s {
            "reflected" => Ok(What::REFLECTED),
            "rejected" => Ok(What::REJECTED),
            "all" => Ok(What::ALL),
            _ => Err(format!("'{s}' is not one of reflected, rejected, all")),
        }
    }
}

/// Copies of one batch's frames: whole pcapng packet blocks, and where each ends with its kind
/// and its time (ns, UTC).
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    blocks: Vec<u8>,
    marks: Vec<(usize, u8, u64)>,
}

impl Chunk {
    /// Adds a copy of a frame of `len` bytes (`frame` holds its first bytes) taken at
    /// `time_ns` (UTC), of kind `what` (reflected or rejected), with its verdict as the comment.
    pub fn push(
        &mut self,
        time_ns: u64,
        frame: &[u8],
        len: usize,
        comment: &[&str],
        direction: Direction,
        what: What,
    ) {
        pcapng::packet_cut(&mut self.blocks, time_ns, frame, len, comment, direction);
        self.marks.push((self.blocks.len(), what.0, time_ns));
    }

    /// Frames in it.
    pub fn frames(&self) -> usize {
        self.marks.len()
    }

    /// Calls `f` with each longest run of blocks that `what` wants, and the frames in it.
    pub fn runs(&self, what: What, f: impl FnMut(&[u8], usize)) {
        self.runs_since(what, 0, f)
    }

    /// As [`Chunk::runs`], of the frames taken at or after `since_ns` (UTC) only.
    pub fn runs_since(&self, what: What, since_ns: u64, mut f: impl FnMut(&[u8], usize)) {
        let (mut start, mut run_start, mut frames) = (0, None, 0);
        for &(end, kind, time) in &self.marks {
            if what.wants(kind) && time >= since_ns {
                run_start.get_or_insert(start);
                frames += 1;
            } else if let Some(s) = run_start.take() {
                f(&self.blocks[s..start], frames);
                frames = 0;
            }
            start = end;
        }
        if let Some(s) = run_start {
            f(&self.blocks[s..start], frames);
        }
    }
}

/// Where captured frames go. Called from the writer thread only.
pub trait Sink: Send {
    /// The frames it wants.
    fn what(&self) -> What;
    /// Takes the blocks of `chunk` it wants. An error ends the sink (and is reported).
    fn write(&mut self, chunk: &Chunk) -> Result<(), String>;
    /// Called at least every 100 ms: flush what waits, keep a stream alive.
    fn tick(&mut self, now: Instant) -> Result<(), String>;
    /// True once the sink has had all it wants (a timed capture ran out, a client went away).
    fn done(&self, now: Instant) -> bool;
    /// Writes what waits; the sink is dropped after.
    fn finish(&mut self) -> Result<(), String>;
    /// Frames it was handed and could not keep since it was last asked, and a failure to
    /// report (once per failure): a sink that lives through failures (a full disk) says so
    /// here rather than by ending.
    fn take_lost(&mut self) -> (u64, Option<String>) {
        (0, None)
    }
    /// What it is, for messages ("capture file /tmp/x.pcapng").
    fn describe(&self) -> String;
}

enum Message {
    Chunk(Chunk),
    Wake,
    Stop,
}

/// Bytes of copies the writer thread may be behind by before workers drop copies (counted):
/// about 0.7 s of 100-byte frames at a million a second.
const QUEUE_BYTES: u64 = 64 << 20;
/// Emptied chunks kept for reuse.
const SPARE: usize = 64;
/// Bytes one capture stream may have waiting for its client before frames are not sent to it
/// (counted, [`Tap::stream_dropped`]).
pub const STREAM_BYTES: u64 = 8 << 20;
/// Bytes all capture streams together may have waiting for their clients.
pub const STREAMS_BYTES: u64 = 64 << 20;

/// The most recent frames of every kind, kept in memory up to a size (the oldest go first):
/// what a capture of the last seconds is cut from (`/api/v1/capture?last=N`). Filled by its
/// [`Sink`], [`Recent::sink`], from the writer thread. A read takes a [`Snapshot`]: the kept
/// chunks shared, not copied, and at most [`MAX_RECENT_READERS`] at a time, so readers that
/// never finish cannot hold more than that many generations of the kept frames.
#[derive(Debug)]
pub struct Recent {
    max_bytes: usize,
    kept: Mutex<Kept>,
    readers: std::sync::atomic::AtomicUsize,
}

/// Reads of a [`Recent`] at a time.
pub const MAX_RECENT_READERS: usize = 4;

/// The chunks a [`Recent`] holds, each with when it was written (ns, UTC), and their bytes.
#[derive(Debug, Default)]
struct Kept {
    chunks: VecDeque<(u64, Arc<Chunk>)>,
    bytes: usize,
}

/// The chunks of a [`Recent`] that may hold frames taken since a time, shared with it: what
/// one read of the last seconds sends. It counts as a reader until dropped.
#[derive(Debug)]
pub struct Snapshot {
    chunks: Vec<Arc<Chunk>>,
    since_ns: u64,
    recent: Arc<Recent>,
}

impl Snapshot {
    /// The blocks of the frames of kind `what` taken since the snapshot's time, chunk by chunk
    /// (oldest first), each with how many frames it holds; chunks without any are left out.
    pub fn pieces(&self, what: What) -> impl Iterator<Item = (Vec<u8>, usize)> + '_ {
        self.chunks.iter().filter_map(move |chunk| {
            let (mut blocks, mut frames) = (Vec::new(), 0);
            chunk.runs_since(what, self.since_ns, |run, n| {
                blocks.extend_from_slice(run);
                frames += n;
            });
            (frames > 0).then_some((blocks, frames))
        })
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.recent.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Recent {
    /// Keeps up to `max_bytes` of copies.
    pub fn new(max_bytes: usize) -> Arc<Recent> {
        Arc::new(Recent {
            max_bytes,
            kept: Mutex::new(Kept::default()),
            readers: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The sink that fills it, to [`Tap::add`].
    pub fn sink(self: &Arc<Self>) -> Box<dyn Sink> {
        Box::new(RecentSink(self.clone()))
    }

    /// The kept chunks that may hold frames taken since `since_ns` (UTC, each frame's own
    /// time); `None` while [`MAX_RECENT_READERS`] snapshots are out.
    pub fn snapshot(self: &Arc<Self>, since_ns: u64) -> Option<Snapshot> {
        if self.readers.fetch_add(1, Ordering::Relaxed) >= MAX_RECENT_READERS {
            self.readers.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let kept = self.kept.lock().expect("recent lock");
        // A chunk reaches the writer after its frames were taken: one written before `since_ns`
        // holds none taken after.
        let chunks = kept.chunks.iter().filter(|(at, _)| *at >= since_ns).map(|(_, c)| c.clone()).collect();
        Some(Snapshot { chunks, since_ns, recent: self.clone() })
    }

    /// Bytes of copies it holds.
    pub fn bytes(&self) -> usize {
        self.kept.lock().expect("recent lock").bytes
    }
}

/// What fills a [`Recent`].
struct RecentSink(Arc<Recent>);

impl Sink for RecentSink {
    fn what(&self) -> What {
        What::ALL
    }

    fn write(&mut self, chunk: &Chunk) -> Result<(), String> {
        let recent = &self.0;
        let mut kept = recent.kept.lock().expect("recent lock");
        kept.bytes += chunk.blocks.len();
        kept.chunks.push_back((utc_now_ns(), Arc::new(chunk.clone())));
        while kept.bytes > recent.max_bytes {
            let Some((_, old)) = kept.chunks.pop_front() else { break };
            kept.bytes -= old.blocks.len();
        }
        Ok(())
    }

    fn tick(&mut self, _: Instant) -> Result<(), String> {
        Ok(())
    }

    fn done(&self, _: Instant) -> bool {
        false
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!("recent frames ({} bytes)", self.0.max_bytes)
    }
}

/// The capture side of a run, shared by its workers (through [`Tapped`]) and the control plane.
pub struct Tap {
    /// Kinds of frames some sink wants (0: no capture; workers look at it once per batch).
    wanted: AtomicU8,
    queue: Sender<Message>,
    /// Bytes of copies sent to the writer and not written yet.
    queued: AtomicU64,
    added: Mutex<Vec<Box<dyn Sink>>>,
    /// Frames handed to the sinks.
    captured: AtomicU64,
    /// Frames not captured: the writer was behind (queue full), or a capture file or FIFO
    /// could not take them.
    dropped: AtomicU64,
    /// Frames a capture stream (`/api/v1/capture`) did not send because its client read too
    /// slowly: the client's loss, not the capture's.
    stream_dropped: AtomicU64,
    /// Bytes waiting in all capture streams for their clients (see [`Tap::reserve_stream`]).
    stream_bytes: AtomicU64,
    /// Sinks that ended with an error, and the error, not yet reported.
    failures: Mutex<Vec<String>>,
    /// Emptied chunks the writer hands back for the workers to fill again (so that neither
    /// side allocates or frees a batch's buffer, across threads, in the steady state).
    spare: Mutex<Vec<Chunk>>,
    /// A thread to wake when a sink is added (the one that tells an XDP program what to
    /// sample, so that it starts at once rather than at its next round).
    waker: Mutex<Option<std::thread::Thread>>,
    interface: String,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("wanted", &self.wanted)
            .field("captured", &self.captured)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

/// The writer thread; [`TapThread::stop`] ends it once every sink has written what it has.
#[derive(Debug)]
pub struct TapThread {
    tap: Arc<Tap>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tap {
    /// A tap for frames of `interface` (named in the files' headers), with its writer thread.
    pub fn start(interface: &str) -> std::io::Result<(Arc<Tap>, TapThread)> {
        let (queue, rx) = std::sync::mpsc::channel();
        let tap = Arc::new(Tap {
            wanted: AtomicU8::new(0),
            queue,
            queued: AtomicU64::new(0),
            added: Mutex::new(Vec::new()),
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stream_dropped: AtomicU64::new(0),
            stream_bytes: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            waker: Mutex::new(None),
            interface: interface.to_string(),
        });
        let writer = tap.clone();
        let thread = std::thread::Builder::new()
            .name("reflector-capture".into())
            .spawn(move || writer.write_loop(rx))?;
        Ok((tap.clone(), TapThread { tap, thread: Some(thread) }))
    }

    /// The interface the frames are from.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Starts handing frames to `sink` (from the workers' next batch on).
    pub fn add(&self, sink: Box<dyn Sink>) {
        let what = sink.what();
        self.added.lock().expect("tap lock").push(sink);
        self.wanted.fetch_or(what.0, Ordering::Relaxed);
        let _ = self.queue.send(Message::Wake);
        if let Some(thread) = &*self.waker.lock().expect("tap lock") {
            thread.unpark();
        }
    }

    /// Unparks `thread` whenever a sink is added from now on.
    pub fn wake_on_add(&self, thread: std::thread::Thread) {
        *self.waker.lock().expect("tap lock") = Some(thread);
    }

    /// The kinds of frames some sink wants now.
    pub fn wanted(&self) -> What {
        What(self.wanted.load(Ordering::Relaxed))
    }

    /// Frames handed to the sinks so far.
    pub fn captured(&self) -> u64 {
        self.captured.load(Ordering::Relaxed)
    }

    /// Frames that were not captured: the writer was behind, or a capture file or FIFO could
    /// not take them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts `n` frames the capture could not keep (the XDP program's samples it missed).
    pub fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Frames capture streams did not send because their clients read too slowly.
    pub fn stream_dropped(&self) -> u64 {
        self.stream_dropped.load(Ordering::Relaxed)
    }

    /// Counts `n` frames a stream did not send to a slow client.
    pub fn count_stream_dropped(&self, n: u64) {
        self.stream_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `bytes` of the budget of all capture streams together ([`STREAMS_BYTES`]) for a
    /// stream that has `own` bytes waiting already (at most [`STREAM_BYTES`] each): false, and
    /// nothing taken, when either would be exceeded. [`Tap::release_stream`] gives them back
    /// when the client has them (or went away).
    pub fn reserve_stream(&self, own: u64, bytes: u64) -> bool {
        if own + bytes > STREAM_BYTES {
            return false;
        }
        let total = self.stream_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > STREAMS_BYTES {
            self.stream_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back `bytes` taken by [`Tap::reserve_stream`].
    pub fn release_stream(&self, bytes: u64) {
        self.stream_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The sinks that failed since the last call, each with its error.
    pub fn take_failures(&self) -> Vec<String> {
        std::mem::take(&mut *self.failures.lock().expect("tap lock"))
    }

    /// Hands a batch's copies to the writer, unless it is 64 MiB of copies behind (then they
    /// are counted as dropped).
    pub fn offer(&self, chunk: Chunk) {
        let (frames, bytes) = (chunk.frames() as u64, chunk.blocks.len() as u64);
        if self.queued.load(Ordering::Relaxed) + bytes > QUEUE_BYTES {
            self.dropped.fetch_add(frames, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        if self.queue.send(Message::Chunk(chunk)).is_err() {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(frames, Ordering::Relaxed);
        }
    }

    fn write_loop(&self, rx: Receiver<Message>) {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let mut last_tick = Instant::now();
        loop {
            let message = rx.recv_timeout(Duration::from_millis(100));
            sinks.append(&mut self.added.lock().expect("tap lock"));
            let (stop, chunk) = match message {
                Ok(Message::Chunk(chunk)) => (false, Some(chunk)),
                Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => (false, None),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => (true, None),
            };
            if let Some(mut chunk) = chunk {
                self.queued.fetch_sub(chunk.blocks.len() as u64, Ordering::Relaxed);
                self.captured.fetch_add(chunk.frames() as u64, Ordering::Relaxed);
                sinks.retain_mut(|s| self.keep(s, |s| s.write(&chunk)));
                self.collect_lost(&mut sinks);
                chunk.blocks.clear();
                chunk.marks.clear();
                let mut spare = self.spare.lock().expect("tap lock");
                if spare.len() < SPARE {
                    spare.push(chunk);
                }
            }
            let now = Instant::now();
            if now - last_tick >= Duration::from_millis(100) || stop {
                last_tick = now;
                sinks.retain_mut(|s| self.keep(s, |s| s.tick(now)));
                sinks.retain_mut(|s| {
                    if s.done(now) || stop {
                        self.keep(s, |s| s.finish());
                        self.collect_lost(std::slice::from_mut(s));
                        return false;
                    }
                    true
                });
                self.collect_lost(&mut sinks);
            }
            if stop {
                return;
            }
            let wanted = sinks.iter().fold(0, |w, s| w | s.what().0);
            // A sink added since the fold keeps its bits: `add` sets them after queueing it.
            let pending = self.added.lock().expect("tap lock").iter().fold(0, |w, s| w | s.what().0);
            self.wanted.store(wanted | pending, Ordering::Relaxed);
        }
    }

    /// An emptied chunk to fill, if the writer has handed one back.
    fn spare(&self) -> Option<Chunk> {
        self.spare.lock().expect("tap lock").pop()
    }

    /// The frames the sinks could not keep, counted as not captured, and their failures to say.
    fn collect_lost(&self, sinks: &mut [Box<dyn Sink>]) {
        for sink in sinks {
            let (lost, failure) = sink.take_lost();
            if lost > 0 {
                self.dropped.fetch_add(lost, Ordering::Relaxed);
            }
            if let Some(failure) = failure {
                self.failures.lock().expect("tap lock").push(failure);
            }
        }
    }

    /// Runs `f` on a sink: false (drop it) when it fails, after recording why.
    fn keep(
        &self,
        sink: &mut Box<dyn Sink>,
        f: impl FnOnce(&mut Box<dyn Sink>) -> Result<(), String>,
    ) -> bool {
        match f(sink) {
            Ok(()) => true,
            Err(e) => {
                self.failures.lock().expect("tap lock").push(format!("{}: {e}", sink.describe()));
                false
            }
        }
    }
}

impl TapThread {
    /// Ends the writer thread once the workers have stopped: every sink writes what it has.
    pub fn stop(mut self) {
        if self.tap.queue.send(Message::Stop).is_ok()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

/// A backend whose judged frames go to a [`Tap`] as well.
#[derive(Debug)]
pub struct Tapped<B> {
    inner: B,
    tap: Arc<Tap>,
}

impl<B> Tapped<B> {
    /// `inner`, its frames copied to `tap` while a sink wants them.
    pub fn new(inner: B, tap: Arc<Tap>) -> Self {
        Tapped { inner, tap }
    }
}

const REFLECTED: u8 = What::REFLECTED.0;
const REJECTED: u8 = What::REJECTED.0;

impl<B: Backend> Backend for Tapped<B> {
    /// One pass of the backend's loop whether or not a capture runs (a second instantiation of
    /// it, for the capturing case, cost every frame about 4 ns in the worker-loop benchmark):
    /// without a sink, one predictable branch a frame.
    #[inline(always)]
    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        let wanted = What(self.tap.wanted.load(Ordering::Relaxed));
        let mut chunk = Chunk::default();
        let mut now = None;
        let batch = self.inner.process(wait, |buf, len, received| {
            let verdict = handle(buf, len, received);
            if wanted.0 != 0 {
                // A reflection as it is sent (its length the answer's), a rejected frame as it
                // came.
                let sent = verdict.as_ref().map_or(len, |hit| hit.answer_len(len));
                copy(
                    &self.tap,
                    &mut chunk,
                    &mut now,
                    wanted,
                    &buf[..sent.min(buf.len())],
                    received,
                    &verdict,
                );
            }
            verdict
        })?;
        if chunk.frames() > 0 {
            self.tap.offer(chunk);
        }
        Ok(batch)
    }

    fn update_filter(&mut self, filter: &reflector_core::Filter) -> Result<(), BackendError> {
        self.inner.update_filter(filter)
    }

    fn gates_in_kernel(&self) -> bool {
        self.inner.gates_in_kernel()
    }
}

/// Copies a judged frame into `chunk` when `wanted` covers its verdict, with its time: the
/// receive time for a rejected frame when the data path has it; else the time the batch's first
/// copy was made (`now`, read then), which for a reflection is within the batch of when it was
/// queued to be sent.
#[inline(never)]
fn copy(
    tap: &Tap,
    chunk: &mut Chunk,
    now: &mut Option<u64>,
    wanted: What,
    frame: &[u8],
    received: RxTime,
    verdict: &Verdict,
) {
    let kind = if verdict.is_ok() { REFLECTED } else { REJECTED };
    if !wanted.wants(kind) {
        return;
    }
    let batch_time = *now.get_or_insert_with(utc_now_ns);
    let (time, direction, comment) = match (verdict, received) {
        (Ok(hit), _) => (batch_time, Direction::Outbound, ["reflected: ", hit.signature().name()]),
        (Err(r), RxTime::Utc(t)) => (t, Direction::Inbound, ["rejected: ", r.name()]),
        (Err(r), _) => (batch_time, Direction::Inbound, ["rejected: ", r.name()]),
    };
    if chunk.blocks.capacity() == 0 {
        // A buffer the writer is done with; else room for a batch of frames like this one.
        match tap.spare() {
            Some(spare) => *chunk = spare,
            None => chunk.blocks.reserve(64 * (frame.len() + 64)),
        }
    }
    pcapng::packet(&mut chunk.blocks, time, frame, &comment, direction);
    chunk.marks.push((chunk.blocks.len(), kind, time));
}

/// A capture file: `--capture FILE`. A regular file is created (0666 less the umask) or
/// replaced; with a size limit, a full file is renamed `NAME.1.EXT` (the older ones moving up
/// to `NAME.N.EXT`, the oldest removed) and a new one started, so the files never hold more
/// than `files` × `max_bytes`. With a size limit a run also starts that way: a non-empty file
/// left by the run before (one the service manager restarts after a failure, say) that holds
/// frames moves up to `NAME.1.EXT` instead of being replaced, so the files stay in time order.
/// A FIFO is opened without waiting for a reader (`wireshark -k -i FIFO` may come later) and
/// written without blocking; anything else (a device) is written through, without rotation.
/// Written in whole blocks, so a reader sees whole frames at any time.
///
/// A capture never stops for good: frames it cannot keep (a full disk, a FIFO without a reader
/// or with one that reads too slowly) are counted as not captured ([`Sink::take_lost`], which
/// the tap adds to [`Tap::dropped`]), the failure is reported once, and writing resumes when it
/// can; a file deleted while the run writes it is started anew.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    what: What,
    rotation: Option<(u64, u32)>,
    header: Vec<u8>,
    /// `None` while a FIFO has no reader, or a file could not be opened again.
    file: Option<std::fs::File>,
    kind: FileKind,
    /// Device and inode of the regular file written, to notice it was deleted or replaced.
    identity: Option<(u64, u64)>,
    /// Bytes in the current file, and waiting to go there.
    written: u64,
    /// Bytes really in the current file (a failed write is cut back to this).
    on_disk: u64,
    pending: Vec<u8>,
    /// Frames whose blocks wait in `pending`.
    pending_frames: u64,
    last_flush: Instant,
    frames: u64,
    /// Frames not captured since [`Sink::take_lost`] was last asked.
    lost: u64,
    /// The failure being lived with (said once, when it starts), and one to say.
    failing: Option<String>,
    to_report: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Regular,
    Fifo,
    Device,
}

/// Bytes a file sink collects before it writes them (it writes at least every 200 ms).
const FLUSH_AT: usize = 256 * 1024;
/// Bytes a FIFO sink may hold for a reader that is behind; beyond, frames are not captured.
const FIFO_BEHIND: usize = 4 << 20;

impl FileSink {
    /// Opens `path` for frames `what` of `interface`; `rotation`: the largest file in bytes and
    /// the number of files kept. Never waits (a FIFO without a reader is opened later).
    pub fn create(
        path: &Path,
        interface: &str,
        what: What,
        rotation: Option<(u64, u32)>,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        let header = pcapng::header(interface);
        let kind = match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_fifo() => FileKind::Fifo,
            Ok(m) if !m.is_file() => FileKind::Device,
            _ => FileKind::Regular,
        };
        if let (Some((_, files)), FileKind::Regular) = (rotation, kind) {
            // More than a header: frames (a run that stopped before its first frame, over and
            // over in a restart loop, would otherwise push the frames out of the ring).
            let header_len = header.len() as u64;
            let left = std::fs::metadata(path).map(|m| m.is_file() && m.len() > header_len).unwrap_or(false);
            if left {
                Self::move_up(path, files)?;
            }
        }
        let mut sink = FileSink {
            path: path.to_path_buf(),
            what,
            rotation,
            header,
            file: None,
            kind,
            identity: None,
            written: 0,
            on_disk: 0,
            pending: Vec::new(),
            pending_frames: 0,
            last_flush: Instant::now(),
            frames: 0,
            lost: 0,
            failing: None,
            to_report: None,
        };
        match sink.start_file() {
            // A FIFO without a reader waits for one; anything else that cannot be opened now
            // stops the run before it starts.
            Err(e) if kind == FileKind::Fifo && e.raw_os_error() == Some(libc::ENXIO) => {}
            other => other?,
        }
        sink.flush();
        Ok(sink)
    }

    /// Opens the file (a regular file created or replaced) and queues the header.
    fn start_file(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        match self.kind {
            FileKind::Regular => {
                options.create(true).truncate(true);
            }
            // Without a reader this fails at once (ENXIO) instead of waiting; writes never
            // block the writer thread (so a stuck reader cannot hold up the end of a run).
            FileKind::Fifo => {
                options.custom_flags(libc::O_NONBLOCK);
            }
            FileKind::Device => {}
        }
        let file = options.open(&self.path)?;
        self.identity = match self.kind {
            FileKind::Regular => file.metadata().ok().map(|m| (m.dev(), m.ino())),
            _ => None,
        };
        self.file = Some(file);
        (self.written, self.on_disk) = (0, 0);
        self.pending.clear();
        self.pending_frames = 0;
        let header = std::mem::take(&mut self.header);
        self.append(&header, 0);
        self.header = header;
        Ok(())
    }

    /// The name of the `n`-th older file: `NAME.n.EXT`, or `NAME.n` without an extension.
    pub fn numbered(path: &Path, n: u32) -> PathBuf {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let numbered = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{n}.{ext}"),
            _ => format!("{name}.{n}"),
        };
        path.with_file_name(numbered)
    }

    fn append(&mut self, blocks: &[u8], frames: u64) {
        self.pending.extend_from_slice(blocks);
        self.pending_frames += frames;
        self.written += blocks.len() as u64;
    }

    /// Frames that were not captured, and why (said once per failure).
    fn lose(&mut self, frames: u64, why: impl FnOnce() -> String) {
        self.lost += frames;
        if self.failing.is_none() {
            let why = why();
            self.to_report = Some(why.clone());
            self.failing = Some(why);
        }
    }

    /// Writes what waits. A regular file or device that refuses it (a full disk) loses those
    /// frames, and the file is cut back to its last whole block; a FIFO takes what its reader
    /// has room for, the rest waiting for the next flush, and a reader that went away loses
    /// what waited.
    fn flush(&mut self) {
        use std::io::{Seek, SeekFrom};
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let Some(file) = self.file.as_mut() else { return };
        if self.kind == FileKind::Fifo {
            let mut sent = 0;
            let result = loop {
                match file.write(&self.pending[sent..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        sent += n;
                        if sent == self.pending.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            self.pending.drain(..sent);
            if self.pending.is_empty() {
                self.pending_frames = 0;
            }
            if let Err(e) = result {
                // The reader went away (EPIPE): what waited is lost; the next reader gets a
                // stream of its own, header first.
                let frames = std::mem::take(&mut self.pending_frames);
                let path = self.path.display().to_string();
                self.lose(frames, || format!("capture FIFO {path}: {e}; waiting for a reader"));
                self.file = None;
                self.pending.clear();
            } else if self.failing.is_some() && self.pending.is_empty() {
                self.failing = None;
            }
            return;
        }
        match file.write_all(&self.pending) {
            Ok(()) => {
                self.on_disk += self.pending.len() as u64;
                self.failing = None;
            }
            Err(e) => {
                // Whatever part of it went in is cut off again: the file ends with a whole block.
                if self.kind == FileKind::Regular {
                    let _ = file.set_len(self.on_disk);
                    let _ = file.seek(SeekFrom::Start(self.on_disk));
                }
                self.written = self.on_disk;
                let frames = self.pending_frames;
                let path = self.path.display().to_string();
                self.lose(frames, || format!("capture file {path}: {e}; frames are counted as not captured until it can be written again"));
            }
        }
        self.pending.clear();
        self.pending_frames = 0;
    }

    /// `path` becomes `NAME.1.EXT`, the older files moving up, the oldest of `files` removed
    /// (with one file, nothing moves: it is replaced). A `path` that is gone (deleted) moves
    /// nothing.
    fn move_up(path: &Path, files: u32) -> std::io::Result<()> {
        let ignore_gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if files > 1 {
            let _ = std::fs::remove_file(Self::numbered(path, files - 1));
            for n in (1..files - 1).rev() {
                ignore_gone(std::fs::rename(Self::numbered(path, n), Self::numbered(path, n + 1)))?;
            }
            ignore_gone(std::fs::rename(path, Self::numbered(path, 1)))?;
        }
        Ok(())
    }

    /// The file is full: start the next, the older ones moving up.
    fn rotate(&mut self, files: u32) -> std::io::Result<()> {
        self.flush();
        Self::move_up(&self.path, files)?;
        self.start_file()
    }

    /// A regular file that is no longer at its path (deleted, or replaced by another) is
    /// started anew; a FIFO without a reader is opened when one has come.
    fn reopen_if_needed(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let gone = match (self.kind, &self.file) {
            (FileKind::Regular, Some(_)) => match std::fs::metadata(&self.path) {
                Ok(m) => Some((m.dev(), m.ino())) != self.identity,
                Err(_) => true,
            },
            (FileKind::Regular, None) | (FileKind::Fifo, None) => true,
            _ => false,
        };
        if !gone {
            return;
        }
        let was_open = self.file.is_some();
        match self.start_file() {
            Ok(()) if was_open => {
                let path = self.path.display().to_string();
                self.to_report =
                    Some(format!("capture file {path} was deleted or replaced; a new one was started"));
            }
            Ok(()) => self.failing = None,
            Err(e) if self.kind == FileKind::Fifo && e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(e) => {
                self.file = None;
                let path = self.path.display().to_string();
                self.lose(0, || format!("capture file {path}: {e}"));
            }
        }
    }

    /// Frames written (or waiting to be) so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl Sink for FileSink {
    fn what(&self) -> What {
        self.what
    }

    fn write(&mut self, chunk: &Chunk) -> Result<(), String> {
        let what = self.what;
        let mut lost = 0;
        chunk.runs(what, |mut run, frames| {
            // Nowhere to write it (a FIFO without a reader, a file that could not be opened
            // again), or a reader far behind: not captured.
            if self.file.is_none() || (self.kind == FileKind::Fifo && self.pending.len() >= FIFO_BEHIND) {
                lost += frames as u64;
                return;
            }
            // Block by block, so a file ends at a block boundary when it is full.
            while !run.is_empty() {
                let len = u32::from_le_bytes(run[4..8].try_into().expect("4 bytes")) as usize;
                let (block, rest) = run.split_at(len);
                if let Some((max, files)) = self.rotation
                    && self.kind == FileKind::Regular
                    && self.written + len as u64 > max
                    && self.written > self.header.len() as u64
                    && let Err(e) = self.rotate(files)
                {
                    // This frame and the rest of the run are lost; the next write tries again.
                    self.file = None;
                    lost += 1 + run_frames(rest);
                    let path = self.path.display().to_string();
                    self.lose(0, || format!("capture file {path}: cannot rotate: {e}"));
                    return;
                }
                self.append(block, 1);
                self.frames += 1;
                run = rest;
            }
        });
        if lost > 0 {
            let path = self.path.display().to_string();
            let kind = self.kind;
            self.lose(lost, || match kind {
                FileKind::Fifo => format!(
                    "capture FIFO {path}: no reader, or one too slow; frames are counted as not captured"
                ),
                _ => format!("capture file {path} cannot be written; frames are counted as not captured"),
            });
        }
        if self.pending.len() >= FLUSH_AT {
            self.flush();
        }
        Ok(())
    }

    fn tick(&mut self, now: Instant) -> Result<(), String> {
        if now - self.last_flush >= Duration::from_millis(200) {
            self.flush();
            self.reopen_if_needed();
        }
        Ok(())
    }

    fn done(&self, _: Instant) -> bool {
        false
    }

    fn finish(&mut self) -> Result<(), String> {
        self.flush();
        // What a FIFO's reader had no room for at the end is lost.
        if !self.pending.is_empty() {
            let frames = std::mem::take(&mut self.pending_frames);
            self.lost += frames;
            self.pending.clear();
        }
        Ok(())
    }

    fn take_lost(&mut self) -> (u64, Option<String>) {
        (std::mem::take(&mut self.lost), self.to_report.take())
    }

    fn describe(&self) -> String {
        format!("capture file {}", self.path.display())
    }
}

/// Frames in a run of whole blocks.
fn run_frames(mut run: &[u8]) -> u64 {
    let mut n = 0;
    while run.len() >= 8 {
        let len = u32::from_le_bytes(run[4..8].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > run.len() {
            break;
        }
        run = &run[len..];
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureReader;
    use crate::testing::MemoryBackend;
    use reflector_testkit::{corpus, default_filter};

    fn records(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = CaptureReader::new(&bytes[..]).unwrap();
        std::iter::from_fn(|| reader.next_record().unwrap()).map(|r| r.data).collect()
    }

    /// Runs the corpus frames of the default filter through a tapped in-memory backend with
    /// `sink`, and returns what was sent and the frames with their verdicts.
    fn run_tapped(
        what: What,
        rotation: Option<(u64, u32)>,
        rounds: usize,
        path: &Path,
    ) -> (Vec<Vec<u8>>, u64) {
        let default = default_filter();
        let frames: Vec<Vec<u8>> =
            corpus().iter().filter(|c| c.filter == default).map(|c| c.bytes.clone()).collect();
        let mut backend = MemoryBackend { batch: 5, ..MemoryBackend::default() };
        for _ in 0..rounds {
            backend.rx.extend(frames.iter().cloned());
        }
        let sent = backend.tx.clone();
        let (tap, thread) = Tap::start("veth0").unwrap();
        tap.add(Box::new(FileSink::create(path, "veth0", what, rotation).unwrap()));
        let mut tapped = Tapped::new(backend, tap.clone());
        let mut stamp_clock = utc_now_ns;
        let mut sessions = Box::<reflector_core::stamp::Sessions>::default();
        while !tapped.inner.rx.is_empty() {
            tapped
                .process(Duration::ZERO, |buf, len, _| {
                    let mut state = reflector_core::PathState {
                        received: None,
                        clock: &mut stamp_clock,
                        error: reflector_core::stamp::ErrorEstimate::UNKNOWN,
                        sessions: &mut *sessions,
                        limiter: None,
                        testers: None,
                    };
                    default.process_in(buf, len, &mut state)
                })
                .unwrap();
        }
        thread.stop();
        assert!(tap.take_failures().is_empty());
        let sent = sent.lock().unwrap().clone();
        (sent, tap.dropped())
    }

    #[test]
    fn reflections_are_captured_as_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let (sent, dropped) = run_tapped(What::REFLECTED, None, 3, &path);
        assert_eq!(dropped, 0);
        assert!(!sent.is_empty());
        assert_eq!(records(&path), sent);
    }

    #[test]
    fn rejected_frames_are_captured_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let (_, dropped) = run_tapped(What::REJECTED, None, 1, &path);
        assert_eq!(dropped, 0);
        let default = default_filter();
        let rejected: Vec<Vec<u8>> = corpus()
            .iter()
            .filter(|c| c.filter == default && c.expect.is_err())
            .map(|c| c.bytes.clone())
            .collect();
        assert!(!rejected.is_empty());
        assert_eq!(records(&path), rejected);
    }

    #[test]
    fn rotation_keeps_the_files_within_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let max = 20_000; // more than the corpus's largest frame (9 KB)
        let (sent, _) = run_tapped(What::REFLECTED, Some((max, 3)), 100, &path);
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["c.1.pcapng", "c.2.pcapng", "c.pcapng"]);
        // Oldest first: the frames of the three files are the last ones sent, in order.
        let mut kept = Vec::new();
        for name in ["c.2.pcapng", "c.1.pcapng", "c.pcapng"] {
            let file = dir.path().join(name);
            assert!(
                std::fs::metadata(&file).unwrap().len() <= max,
                "{name}: {}",
                std::fs::metadata(&file).unwrap().len()
            );
            kept.extend(records(&file));
        }
        assert!(kept.len() < sent.len());
        assert_eq!(kept[..], sent[sent.len() - kept.len()..]);
    }

    #[test]
    fn a_new_run_moves_the_files_of_the_last_one_up_instead_of_replacing_its_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let (one, two) = (FileSink::numbered(&path, 1), FileSink::numbered(&path, 2));
        // (Longer than a header: files that hold frames.)
        let (newest, older, oldest) = (vec![1u8; 1000], vec![2u8; 1000], vec![3u8; 1000]);
        std::fs::write(&path, &newest).unwrap();
        std::fs::write(&one, &older).unwrap();
        std::fs::write(&two, &oldest).unwrap();
        drop(FileSink::create(&path, "veth0", What::ALL, Some((20_000, 3))).unwrap());
        assert_eq!(std::fs::read(&one).unwrap(), newest);
        assert_eq!(std::fs::read(&two).unwrap(), older);
        assert!(!FileSink::numbered(&path, 3).exists(), "at most 3 files");
        assert!(records(&path).is_empty(), "a new file, its header only");
        // A file of a run that wrote no frame (its header only) is replaced, not kept: a
        // restart loop does not push the frames out of the ring.
        drop(FileSink::create(&path, "veth0", What::ALL, Some((20_000, 3))).unwrap());
        assert_eq!(std::fs::read(&one).unwrap(), newest);
        // Without a size limit (no ring) the file is replaced, as before.
        std::fs::write(&path, &oldest).unwrap();
        drop(FileSink::create(&path, "veth0", What::ALL, None).unwrap());
        assert_eq!(std::fs::read(&one).unwrap(), newest);
        assert!(records(&path).is_empty());
    }

    #[test]
    fn numbered_names() {
        assert_eq!(FileSink::numbered(Path::new("/t/c.pcapng"), 2), Path::new("/t/c.2.pcapng"));
        assert_eq!(FileSink::numbered(Path::new("cap"), 1), Path::new("cap.1"));
        assert_eq!(FileSink::numbered(Path::new(".hidden"), 1), Path::new(".hidden.1"));
    }

    #[test]
    fn adding_a_sink_wakes_the_thread_that_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (tap, thread) = Tap::start("veth0").unwrap();
        // A thread that would sleep for a minute unless unparked (a wake-up before it parks
        // leaves the token, and the park returns at once).
        let sleeper = std::thread::spawn(|| {
            let started = Instant::now();
            std::thread::park_timeout(Duration::from_secs(60));
            started.elapsed()
        });
        tap.wake_on_add(sleeper.thread().clone());
        let path = dir.path().join("c.pcapng");
        tap.add(Box::new(FileSink::create(&path, "veth0", What::ALL, None).unwrap()));
        assert!(sleeper.join().unwrap() < Duration::from_secs(60), "not woken");
        thread.stop();
    }

    /// The blocks of a snapshot of `recent` since `since_ns`, and how many frames they are.
    fn since(recent: &Arc<Recent>, since_ns: u64, what: What) -> (Vec<u8>, usize) {
        let snapshot = recent.snapshot(since_ns).expect("a reader's place");
        snapshot.pieces(what).fold((Vec::new(), 0), |(mut all, n), (blocks, frames)| {
            all.extend_from_slice(&blocks);
            (all, n + frames)
        })
    }

    #[test]
    fn recent_frames_are_read_by_a_bounded_number_of_snapshots_sharing_them() {
        let recent = Recent::new(1 << 20);
        let mut sink = recent.sink();
        let mut chunk = Chunk::default();
        chunk.push(utc_now_ns(), &[7; 60], 60, &["reflected: probeot"], Direction::Outbound, What::REFLECTED);
        sink.write(&chunk).unwrap();
        let held: Vec<Snapshot> = (0..MAX_RECENT_READERS).map(|_| recent.snapshot(0).unwrap()).collect();
        assert!(recent.snapshot(0).is_none(), "one reader too many");
        // Shared: the kept chunk and each snapshot's are one allocation.
        let kept = recent.kept.lock().unwrap().chunks[0].1.clone();
        assert!(held.iter().all(|s| Arc::ptr_eq(&s.chunks[0], &kept)));
        drop(held);
        assert_eq!(since(&recent, 0, What::ALL).1, 1, "places given back");
    }

    #[test]
    fn recent_frames_keep_the_newest_within_their_size() {
        let (tap, thread) = Tap::start("veth0").unwrap();
        let recent = Recent::new(20_000);
        tap.add(recent.sink());
        // 20 chunks of 10 frames of 300 bytes (reflected and rejected by turns): more than fit.
        let start = utc_now_ns();
        for round in 0..20u8 {
            let mut chunk = Chunk::default();
            for i in 0..10u8 {
                let what = if i % 2 == 0 { What::REFLECTED } else { What::REJECTED };
                chunk.push(
                    utc_now_ns(),
                    &[round; 300],
                    300,
                    &["reflected: probeot"],
                    Direction::Outbound,
                    what,
                );
            }
            tap.offer(chunk);
        }
        // (Stopping writes every chunk offered before.)
        thread.stop();
        assert!(recent.bytes() <= 20_000 && recent.bytes() > 10_000, "{}", recent.bytes());
        let (all, n) = since(&recent, start, What::ALL);
        let (reflected, half) = since(&recent, start, What::REFLECTED);
        assert_eq!(half * 2, n);
        assert_eq!(reflected.len() * 2, all.len());
        // The newest are kept: the last chunk's bytes end the blocks.
        let file = [pcapng::header("veth0"), all].concat();
        let mut reader = CaptureReader::new(&file[..]).unwrap();
        let newest: Vec<Vec<u8>> =
            std::iter::from_fn(|| reader.next_record().unwrap()).map(|r| r.data).collect();
        assert_eq!(newest.len(), n);
        assert_eq!(newest.last().unwrap(), &vec![19u8; 300]);
        assert!(newest.first().unwrap()[0] > 0, "the oldest went");
        assert!(since(&recent, utc_now_ns() + 1, What::ALL).1 == 0);
    }

    #[test]
    fn the_last_seconds_are_cut_by_each_frames_time_not_its_chunks() {
        let recent = Recent::new(1 << 20);
        let mut sink = recent.sink();
        // Frames taken 3, 2 and 1 s ago, reaching the writer in one chunk now.
        let now = utc_now_ns();
        let mut chunk = Chunk::default();
        for (ago, byte) in [(3, 3u8), (2, 2), (1, 1)] {
            let taken = now - ago * 1_000_000_000;
            chunk.push(taken, &[byte; 60], 60, &["reflected: probeot"], Direction::Outbound, What::REFLECTED);
        }
        sink.write(&chunk).unwrap();
        let (blocks, n) = since(&recent, now - 2_500_000_000, What::ALL);
        assert_eq!(n, 2);
        let file = [pcapng::header("veth0"), blocks].concat();
        let mut reader = CaptureReader::new(&file[..]).unwrap();
        let kept: Vec<u8> = std::iter::from_fn(|| reader.next_record().unwrap()).map(|r| r.data[0]).collect();
        assert_eq!(kept, [2, 1]);
        assert_eq!(since(&recent, now - 4_000_000_000, What::ALL).1, 3);
        assert_eq!(since(&recent, now - 500_000_000, What::REFLECTED).1, 0);
    }

    /// A chunk of `n` reflected frames of 100 bytes holding `byte`.
    fn frames_of(byte: u8, n: usize) -> Chunk {
        let mut chunk = Chunk::default();
        for _ in 0..n {
            chunk.push(
                utc_now_ns(),
                &[byte; 100],
                100,
                &["reflected: probeot"],
                Direction::Outbound,
                What::REFLECTED,
            );
        }
        chunk
    }

    /// Ticks `sink` as the writer thread would, past its 200 ms flush interval.
    fn tick_later(sink: &mut FileSink) {
        sink.tick(Instant::now() + Duration::from_millis(250)).unwrap();
    }

    #[test]
    fn a_full_disk_counts_the_frames_not_captured_and_says_so_once() {
        // /dev/full refuses every write with ENOSPC, as a full disk does.
        let mut sink = FileSink::create(Path::new("/dev/full"), "veth0", What::ALL, None).unwrap();
        sink.write(&frames_of(1, 5)).unwrap();
        tick_later(&mut sink);
        let (lost, said) = sink.take_lost();
        assert_eq!(lost, 5);
        assert!(
            said.as_deref().is_some_and(|s| s.contains("/dev/full") && s.contains("not captured")),
            "{said:?}"
        );
        sink.write(&frames_of(2, 3)).unwrap();
        sink.finish().unwrap();
        assert_eq!(sink.take_lost(), (3, None), "counted again, said once");
    }

    #[test]
    fn a_failed_write_leaves_the_file_with_whole_blocks_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let mut sink = FileSink::create(&path, "veth0", What::ALL, None).unwrap();
        sink.write(&frames_of(1, 2)).unwrap();
        tick_later(&mut sink);
        // A write that fails: the file is replaced by a read-only handle on it.
        let good = std::fs::metadata(&path).unwrap().len();
        sink.file = Some(std::fs::File::open(&path).unwrap());
        sink.write(&frames_of(2, 2)).unwrap();
        tick_later(&mut sink);
        assert_eq!(sink.take_lost().0, 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        assert_eq!(records(&path).len(), 2);
    }

    #[test]
    fn a_deleted_capture_file_is_started_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let mut sink = FileSink::create(&path, "veth0", What::ALL, Some((1_000_000, 3))).unwrap();
        sink.write(&frames_of(1, 4)).unwrap();
        tick_later(&mut sink);
        std::fs::remove_file(&path).unwrap();
        tick_later(&mut sink);
        let (lost, said) = sink.take_lost();
        assert_eq!(lost, 0);
        assert!(said.is_some_and(|s| s.contains("a new one was started")));
        sink.write(&frames_of(2, 3)).unwrap();
        sink.finish().unwrap();
        let frames = records(&path);
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f[0] == 2));
        // And rotation goes on from it (the deleted file had nothing to move up).
        let mut sink = FileSink::create(&path, "veth0", What::ALL, Some((2_000, 3))).unwrap();
        std::fs::remove_file(&path).unwrap();
        sink.write(&frames_of(3, 40)).unwrap();
        sink.finish().unwrap();
        assert_eq!(sink.take_lost().0, 0);
        assert!(path.exists() && FileSink::numbered(&path, 1).exists());
    }

    #[test]
    fn a_fifo_without_a_reader_does_not_block_and_is_written_once_one_comes() {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("c.fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let started = Instant::now();
        let mut sink = FileSink::create(&fifo, "veth0", What::ALL, None).unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "waited for a reader");
        sink.write(&frames_of(1, 4)).unwrap();
        tick_later(&mut sink);
        let (lost, said) = sink.take_lost();
        assert_eq!(lost, 4, "no reader: not captured");
        assert!(said.is_some_and(|s| s.contains("no reader")));
        let mut reader =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        tick_later(&mut sink);
        sink.write(&frames_of(2, 3)).unwrap();
        sink.finish().unwrap();
        assert_eq!(sink.take_lost().0, 0);
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        let mut capture = CaptureReader::new(&bytes[..]).unwrap();
        let frames: Vec<Vec<u8>> =
            std::iter::from_fn(|| capture.next_record().unwrap()).map(|r| r.data).collect();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f[0] == 2));
    }

    #[test]
    fn the_tap_counts_what_a_sink_could_not_keep_as_not_captured() {
        let (tap, thread) = Tap::start("veth0").unwrap();
        tap.add(Box::new(FileSink::create(Path::new("/dev/full"), "veth0", What::ALL, None).unwrap()));
        tap.offer(frames_of(1, 6));
        thread.stop();
        assert_eq!(tap.dropped(), 6);
        assert_eq!(tap.take_failures().len(), 1);
    }
}
