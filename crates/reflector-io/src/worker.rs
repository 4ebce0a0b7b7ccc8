//! The worker runtime: one thread per backend, each owning its counters, publishing them
//! for the control plane without locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reflector_core::limit::Limiter;
use reflector_core::stamp::{ErrorEstimate, SessionTable, Sessions};
use reflector_core::testers::{Tester, Testers};
use reflector_core::{Counters, DWELL_BUCKETS, Dwell, Filter, PathState, Reject, Signature};

use crate::backend::{Backend, BackendError, RxTime};

/// How long a worker sleeps in the backend when idle before it looks at the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// A worker's counters as the control plane reads them: single writer (the worker), relaxed
/// atomics, on their own cache lines so readers never slow the writer's line down.
#[derive(Debug)]
#[repr(align(128))]
pub struct SharedCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    reflected_packets: AtomicU64,
    reflected_bytes: AtomicU64,
    tx_errors: AtomicU64,
    rx_dropped: AtomicU64,
    rx_invalid: AtomicU64,
    stamp_sessions_evicted: AtomicU64,
    stamp_short_answered: AtomicU64,
    by_signature: [AtomicU64; Signature::COUNT],
    rejected: [AtomicU64; Reject::COUNT],
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters {
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            reflected_packets: AtomicU64::new(0),
            reflected_bytes: AtomicU64::new(0),
            tx_errors: AtomicU64::new(0),
            rx_dropped: AtomicU64::new(0),
            rx_invalid: AtomicU64::new(0),
            stamp_sessions_evicted: AtomicU64::new(0),
            stamp_short_answered: AtomicU64::new(0),
            by_signature: std::array::from_fn(|_| AtomicU64::new(0)),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SharedCounters {
    fn publish(&self, c: &Counters) {
        self.rx_packets.store(c.rx_packets, Ordering::Relaxed);
        self.rx_bytes.store(c.rx_bytes, Ordering::Relaxed);
        self.reflected_packets.store(c.reflected_packets, Ordering::Relaxed);
        self.reflected_bytes.store(c.reflected_bytes, Ordering::Relaxed);
        self.tx_errors.store(c.tx_errors, Ordering::Relaxed);
        self.rx_dropped.store(c.rx_dropped, Ordering::Relaxed);
        self.rx_invalid.store(c.rx_invalid, Ordering::Relaxed);
        self.stamp_sessions_evicted.store(c.stamp_sessions_evicted, Ordering::Relaxed);
        self.stamp_short_answered.store(c.stamp_short_answered, Ordering::Relaxed);
        for (a, v) in self.by_signature.iter().zip(c.by_signature) {
            a.store(v, Ordering::Relaxed);
        }
        for (a, v) in self.rejected.iter().zip(c.rejected) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// A copy of the last published counters (fields may be from consecutive batches).
    pub fn snapshot(&self) -> Counters {
        Counters {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            reflected_packets: self.reflected_packets.load(Ordering::Relaxed),
            reflected_bytes: self.reflected_bytes.load(Ordering::Relaxed),
            tx_errors: self.tx_errors.load(Ordering::Relaxed),
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
            rx_invalid: self.rx_invalid.load(Ordering::Relaxed),
            stamp_sessions_evicted: self.stamp_sessions_evicted.load(Ordering::Relaxed),
            stamp_short_answered: self.stamp_short_answered.load(Ordering::Relaxed),
            by_signature: std::array::from_fn(|i| self.by_signature[i].load(Ordering::Relaxed)),
            rejected: std::array::from_fn(|i| self.rejected[i].load(Ordering::Relaxed)),
        }
    }
}

/// A worker's dwell-time histogram as the control plane reads it (single writer).
#[derive(Debug)]
#[repr(align(128))]
pub struct SharedDwell {
    buckets: [AtomicU64; DWELL_BUCKETS],
}

impl Default for SharedDwell {
    fn default() -> Self {
        SharedDwell { buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl SharedDwell {
    fn publish(&self, d: &Dwell) {
        for (a, v) in self.buckets.iter().zip(d.buckets) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// A copy of the last published histogram.
    pub fn snapshot(&self) -> Dwell {
        Dwell { buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)) }
    }
}

/// A worker's testers table as the control plane reads it: a copy of its rows in use, replaced
/// about once a second (and when the worker stops).
#[derive(Debug, Default)]
pub struct SharedTesters {
    rows: std::sync::Mutex<Vec<Tester>>,
}

impl SharedTesters {
    fn publish(&self, testers: &Testers) {
        let rows: Vec<Tester> = testers.active().copied().collect();
        *self.rows.lock().expect("testers lock") = rows;
    }

    /// The rows last published.
    pub fn snapshot(&self) -> Vec<Tester> {
        self.rows.lock().expect("testers lock").clone()
    }
}

/// The filter workers apply, replaceable while they run (SIGHUP): a worker looks at the
/// generation once per batch and takes the new filter between batches, so no frame is judged
/// half by one filter and half by another, and none is dropped for the change.
#[derive(Debug)]
pub struct FilterCell {
    current: std::sync::Mutex<Arc<Filter>>,
    generation: AtomicU64,
}

impl FilterCell {
    /// A cell holding `filter`.
    pub fn new(filter: Arc<Filter>) -> Arc<FilterCell> {
        Arc::new(FilterCell { current: std::sync::Mutex::new(filter), generation: AtomicU64::new(0) })
    }

    /// The filter in force.
    pub fn get(&self) -> Arc<Filter> {
        self.current.lock().expect("filter lock").clone()
    }

    /// Replaces the filter; workers take it at their next batch.
    pub fn set(&self, filter: Arc<Filter>) {
        *self.current.lock().expect("filter lock") = filter;
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Where a worker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Pinned to this CPU.
    Pinned(usize),
    /// Not pinned, and why.
    Unpinned(Unpinned),
}

/// Why a worker is not pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpinned {
    /// Pinning was not asked for.
    NotRequested,
    /// The process may run on no CPU at all (an empty affinity set).
    NoCpu,
    /// Reading the allowed CPUs or pinning failed (the system's error).
    Failed(String),
    /// The worker thread ended before it said where it runs.
    NotStarted,
}

impl std::fmt::Display for Placement {
    /// "cpu 2", or "unpinned: " and why.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Pinned(cpu) => write!(f, "cpu {cpu}"),
            Placement::Unpinned(Unpinned::NotRequested) => f.write_str("unpinned: pinning not requested"),
            Placement::Unpinned(Unpinned::NoCpu) => f.write_str("unpinned: no CPU available"),
            Placement::Unpinned(Unpinned::Failed(e)) => write!(f, "unpinned: {e}"),
            Placement::Unpinned(Unpinned::NotStarted) => f.write_str("unpinned: worker did not start"),
        }
    }
}

/// One running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    /// Its published counters.
    pub counters: Arc<SharedCounters>,
    /// Its dwell-time histogram, when measured.
    pub dwell: Option<Arc<SharedDwell>>,
    /// Its testers (empty for a backend whose XDP program keeps them).
    pub testers: Arc<SharedTesters>,
    /// Where it runs.
    pub placement: Placement,
    thread: Option<JoinHandle<Result<Counters, BackendError>>>,
}

/// All workers of a run.
#[derive(Debug)]
pub struct Runtime {
    /// The workers, in start order.
    pub workers: Vec<WorkerHandle>,
    /// The buckets of the rate limits, shared by the workers (unused by backends whose XDP
    /// program applies the limits: [`Backend::gates_in_kernel`]).
    pub limiter: Arc<Limiter>,
    stop: Arc<AtomicBool>,
}

/// The filter a worker of `backend` applies: the one in force, without its lists and limits
/// when the backend's XDP program applied them already.
fn worker_filter(gates_in_kernel: bool, cell: &FilterCell) -> Arc<Filter> {
    let filter = cell.get();
    if gates_in_kernel { Arc::new(filter.without_gate()) } else { filter }
}

/// Runs one worker until `stop`: the hot loop, monomorphised per backend.
fn work<B: Backend>(
    mut backend: B,
    cell: &FilterCell,
    limiter: &Limiter,
    shared: &SharedCounters,
    shared_testers: &SharedTesters,
    dwell: Option<&SharedDwell>,
    stop: &AtomicBool,
) -> Result<Counters, BackendError> {
    let mut counters = Counters::default();
    let mut histogram = Dwell::default();
    // STAMP: the session table (stateful mode), the clock, and its error estimate read again
    // every second.
    let mut sessions: Box<Sessions> = Box::default();
    // Who is testing (kept by the XDP program instead where it applies the lists and limits).
    let mut testers: Box<Testers> = Box::default();
    let mut clock = utc_now_ns;
    let mut clock_state = (Instant::now(), ClockState::read());
    let in_kernel = backend.gates_in_kernel();
    let mut generation = cell.generation();
    let mut filter = worker_filter(in_kernel, cell);
    let mut pending_kernel_update = false;
    while !stop.load(Ordering::Relaxed) {
        if cell.generation() != generation {
            generation = cell.generation();
            filter = worker_filter(in_kernel, cell);
            pending_kernel_update = true;
        }
        if pending_kernel_update {
            pending_kernel_update = false;
            backend.update_filter(&cell.get())?;
        }
        // With dwell times on: the clock is read when the batch's first frame is handed over
        // (so time spent waiting for it does not count) and once more after the batch was
        // queued for transmission; every frame reflected in the batch gets that interval.
        let mut first_frame: Option<std::time::Instant> = None;
        let mut first = true;
        let reflected_before = counters.reflected_packets;
        let batch = backend.process(IDLE_WAIT, |buf, len, received| {
            if first {
                first = false;
                // A filter that came while the backend waited for this batch applies to it
                // already (the kernel side follows after the batch).
                if cell.generation() != generation {
                    generation = cell.generation();
                    filter = worker_filter(in_kernel, cell);
                    pending_kernel_update = true;
                }
                if dwell.is_some() {
                    first_frame = Some(Instant::now());
                }
            }
            let received = match received {
                RxTime::Unknown => None,
                RxTime::Utc(t) => Some(t),
                RxTime::Tai(t) => Some(t.saturating_sub(clock_state.1.tai_offset_ns)),
            };
            let mut stamping = PathState {
                received,
                clock: &mut clock,
                error: clock_state.1.error,
                sessions: &mut *sessions,
                limiter: Some(limiter),
                testers: if in_kernel { None } else { Some(&mut *testers) },
            };
            let verdict = filter.process_in(buf, len, &mut stamping);
            counters.record(len, &verdict);
            verdict
        })?;
        counters.stamp_sessions_evicted = sessions.evicted();
        // Once a second: the clock's state, and the testers for the control plane.
        if clock_state.0.elapsed() >= Duration::from_secs(1) {
            clock_state = (Instant::now(), ClockState::read());
            if !in_kernel {
                shared_testers.publish(&testers);
            }
        }
        if batch.tx_error_packets > 0 {
            counters.record_tx_errors(batch.tx_error_packets, batch.tx_error_bytes);
        }
        if let (Some(shared_dwell), Some(t0)) = (dwell, first_frame) {
            let reflected = counters.reflected_packets.saturating_sub(reflected_before);
            if reflected > 0 {
                histogram.record(t0.elapsed().as_nanos() as u64, reflected);
                shared_dwell.publish(&histogram);
            }
        }
        counters.rx_dropped += batch.rx_dropped;
        counters.rx_invalid += batch.rx_invalid;
        if batch.received > 0 || batch.tx_error_packets > 0 || batch.rx_dropped > 0 || batch.rx_invalid > 0 {
            shared.publish(&counters);
        }
    }
    shared.publish(&counters);
    shared_testers.publish(&testers);
    Ok(counters)
}

/// The system clock (UTC) in nanoseconds since the Unix epoch: a STAMP answer's times.
pub fn utc_now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// What STAMP answers need to know of the system clock (a worker reads it again every second,
/// the xdp-tx program gets it through a map): unknown where the kernel cannot say.
#[derive(Debug, Clone, Copy)]
pub struct ClockState {
    /// The error estimate answers carry.
    pub error: ErrorEstimate,
    /// TAI − UTC, in nanoseconds: what turns an XDP program's receive time into UTC.
    pub tai_offset_ns: u64,
}

impl ClockState {
    /// The state as the kernel has it now.
    #[cfg(target_os = "linux")]
    pub fn read() -> ClockState {
        match reflector_sys::clock::state() {
            Ok(s) => ClockState {
                error: ErrorEstimate::new(s.synchronised, s.error_ns()),
                tai_offset_ns: s.tai_offset_s.max(0) as u64 * 1_000_000_000,
            },
            Err(_) => ClockState { error: ErrorEstimate::UNKNOWN, tai_offset_ns: 0 },
        }
    }
    /// The state as the kernel has it now.
    #[cfg(not(target_os = "linux"))]
    pub fn read() -> ClockState {
        ClockState { error: ErrorEstimate::UNKNOWN, tai_offset_ns: 0 }
    }
}

/// The clock's error estimate for STAMP answers, from the kernel's synchronisation state.
pub fn clock_error_estimate() -> ErrorEstimate {
    ClockState::read().error
}

/// Where the worker threads run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Wherever the scheduler puts them.
    No,
    /// Worker `i` on the `i`-th CPU the process may use.
    Allowed,
    /// Worker `i` on the `i`-th of these CPUs.
    Cpus(Vec<usize>),
}

impl Runtime {
    /// Starts one thread per backend, placed as `pin` says (best effort: a failure is reported
    /// in the worker's [`Placement`]). With `latency`, each worker also keeps a dwell-time
    /// histogram.
    pub fn start<B: Backend>(
        backends: Vec<B>,
        filter: Arc<FilterCell>,
        pin: Pin,
        latency: bool,
    ) -> std::io::Result<Runtime> {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = match &pin {
            Pin::Cpus(list) => Ok(list.clone()),
            Pin::No | Pin::Allowed => allowed_cpus(),
        };
        let pin = pin != Pin::No;
        let limiter = Arc::new(Limiter::default());
        let mut workers = Vec::new();
        for (i, backend) in backends.into_iter().enumerate() {
            let shared = Arc::new(SharedCounters::default());
            let testers = Arc::new(SharedTesters::default());
            let testers_w = testers.clone();
            let dwell = latency.then(|| Arc::new(SharedDwell::default()));
            let dwell_w = dwell.clone();
            let (placed_tx, placed_rx) = std::sync::mpsc::channel();
            let cpu = cpus.as_ref().ok().and_then(|c| c.get(i % c.len().max(1)).copied());
            let cpus_error = cpus.as_ref().err().cloned();
            let (filter, shared_w, stop_w) = (filter.clone(), shared.clone(), stop.clone());
            let limiter_w = limiter.clone();
            let thread = std::thread::Builder::new().name(format!("reflector-w{i}")).spawn(move || {
                let placement = match (pin, cpu) {
                    (false, _) => Placement::Unpinned(Unpinned::NotRequested),
                    (true, None) => Placement::Unpinned(cpus_error.map_or(Unpinned::NoCpu, Unpinned::Failed)),
                    (true, Some(cpu)) => match pin_to(cpu) {
                        Ok(()) => Placement::Pinned(cpu),
                        Err(e) => Placement::Unpinned(Unpinned::Failed(e)),
                    },
                };
                let _ = placed_tx.send(placement);
                work(backend, &filter, &limiter_w, &shared_w, &testers_w, dwell_w.as_deref(), &stop_w)
            })?;
            let placement = placed_rx.recv().unwrap_or(Placement::Unpinned(Unpinned::NotStarted));
            workers.push(WorkerHandle { counters: shared, dwell, testers, placement, thread: Some(thread) });
        }
        Ok(Runtime { workers, limiter, stop })
    }

    /// The sum of every worker's published counters.
    pub fn totals(&self) -> Counters {
        let mut total = Counters::default();
        for w in &self.workers {
            total.add(&w.counters.snapshot());
        }
        total
    }

    /// True when a worker has ended by itself (which only a backend error does).
    pub fn any_finished(&self) -> bool {
        self.workers.iter().any(|w| w.thread.as_ref().is_some_and(|t| t.is_finished()))
    }

    /// Stops every worker and returns each one's final counters (in start order), or the
    /// first worker error.
    pub fn stop(mut self) -> Result<Vec<Counters>, BackendError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut finals = Vec::new();
        let mut first_error = None;
        for w in &mut self.workers {
            match w.thread.take().map(|t| t.join()) {
                Some(Ok(Ok(c))) => finals.push(c),
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(finals),
        }
    }
}

/// The CPUs this process may run on.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    reflector_sys::process::allowed_cpus().map_err(|e| e.to_string())
}
#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) -> Result<(), String> {
    reflector_sys::process::pin_current_thread(cpu).map_err(|e| e.to_string())
}
/// The CPUs this process may run on.
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    Err("CPU pinning is not supported on this OS".into())
}
#[cfg(not(target_os = "linux"))]
fn pin_to(_cpu: usize) -> Result<(), String> {
    Err("CPU pinning is not supported on this OS".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryBackend;
    use reflector_testkit::{corpus, default_filter};

    #[test]
    fn workers_reflect_count_and_stop() {
        let corpus = corpus();
        let default = default_filter();
        let frames: Vec<_> = corpus.iter().filter(|c| c.filter == default).collect();
        let mut backends = Vec::new();
        let mut outputs = Vec::new();
        for _ in 0..2 {
            let backend = MemoryBackend {
                rx: frames.iter().map(|c| c.bytes.clone()).collect(),
                batch: 7,
                ..MemoryBackend::default()
            };
            outputs.push(backend.tx.clone());
            backends.push(backend);
        }
        let runtime =
            Runtime::start(backends, FilterCell::new(Arc::new(default)), Pin::Allowed, true).unwrap();
        assert_eq!(runtime.workers.len(), 2);
        for w in &runtime.workers {
            assert!(matches!(w.placement, Placement::Pinned(_)), "{:?}", w.placement);
        }
        let want = frames.len() as u64 * 2;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runtime.totals().rx_packets < want {
            assert!(std::time::Instant::now() < deadline, "workers did not drain their queues");
            std::thread::sleep(Duration::from_millis(5));
        }
        let live = runtime.totals();
        let dwell: Dwell = runtime.workers.iter().fold(Dwell::default(), |mut d, w| {
            d.add(&w.dwell.as_ref().unwrap().snapshot());
            d
        });
        assert_eq!(dwell.count(), live.reflected_packets, "every reflection has a dwell time");
        let finals = runtime.stop().unwrap();
        assert_eq!(finals.len(), 2);
        let mut total = Counters::default();
        finals.iter().for_each(|c| total.add(c));
        assert_eq!(total, live);
        assert_eq!(finals[0], finals[1], "both workers saw the same frames");
        let hits: Vec<_> = frames.iter().filter(|c| c.expect.is_ok()).collect();
        assert_eq!(total.reflected_packets, 2 * hits.len() as u64);
        assert_eq!(total.rejected_packets(), 2 * (frames.len() - hits.len()) as u64);
        for out in outputs {
            let sent = out.lock().unwrap();
            let expected: Vec<Vec<u8>> = hits
                .iter()
                .map(|c| c.frame.as_ref().unwrap().reflected(reflector_core::Mode::All).bytes())
                .collect();
            assert_eq!(*sent, expected);
        }
    }
}
