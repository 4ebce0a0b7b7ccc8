//! The control plane's view of a run: counters read from the workers' published snapshots
//! (and a kernel program's reject counts), never from the packet path itself, so nothing here
//! can stall a worker. The stats lines, the REST API and `/metrics` all read from here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reflector_core::limit::Limiter;
use reflector_core::testers::Tester;
use reflector_core::{Counters, Dwell, MacAddr};
use reflector_io::datapath::{BackendInfo, KernelCounters, KernelTesters};
use reflector_io::worker::{FilterCell, SharedCounters, SharedDwell, SharedTesters};

use crate::report::TesterRow;
use crate::stats::Rates;

/// A tester is "testing now" when its last packet came this recently.
pub const ACTIVE_WITHIN: Duration = Duration::from_secs(10);

/// A tester's count at the last rate sample, and the rate shown until the next one.
#[derive(Debug, Clone, Copy)]
struct Sampled {
    sent: u64,
    last_seen_ns: u64,
    pps: f64,
}

/// The testers at the last rate sample.
#[derive(Debug, Default)]
struct TesterRates {
    at: Option<Instant>,
    rows: HashMap<([u8; 16], u16), Sampled>,
}

/// How long a tester's count may stand still before its rate reads 0: the workers publish their
/// tables once a second, so a count can stand still for up to two samples while packets come.
const STILL_FOR: Duration = Duration::from_millis(2500);

/// A tester's rate at a sample: `sent` (answered and held back) with its row `t`, the sample
/// before (`before`) and the wall-clock seconds since it (`interval`). The packets counted
/// since the last sample came after its `last_seen_ns` and by this one's, so that span, not the
/// sampling interval, is what they are divided by: the workers publish once a second, out of
/// step with the samples, and dividing by the sampling interval read 0 or twice the rate when
/// a publication fell on the other side of a sample. A count that stands still keeps the rate
/// shown until [`STILL_FOR`] after the tester's last packet. A tester new since the last
/// sample reads its average.
fn tester_rate(before: Option<&Sampled>, sent: u64, t: &Tester, now_ns: u64, interval: Option<f64>) -> f64 {
    let Some(before) = before else {
        let span = t.last_seen_ns.saturating_sub(t.first_seen_ns) as f64 / 1e9;
        return if span >= 0.2 { sent as f64 / span } else { 0.0 };
    };
    let counted = sent.saturating_sub(before.sent);
    if counted == 0 {
        let still = now_ns.saturating_sub(t.last_seen_ns) <= STILL_FOR.as_nanos() as u64;
        return if still { before.pps } else { 0.0 };
    }
    let span = t.last_seen_ns.saturating_sub(before.last_seen_ns) as f64 / 1e9;
    // Several workers' rows merged: the latest packet may be one counted before (0.2 s: far
    // longer than any gap between workers' rows, far shorter than a publication period).
    match (span >= 0.2, interval) {
        (true, _) => counted as f64 / span,
        (false, Some(secs)) if secs > 0.0 => counted as f64 / secs,
        (false, _) => before.pps,
    }
}

/// Everything the control plane shows about a run.
pub struct Control {
    /// The snapshots `/api/v1/events` sends, one per stats interval.
    #[cfg(unix)]
    pub events: tokio::sync::broadcast::Sender<bytes::Bytes>,
    /// The workers' capture tap (none for a data path without workers).
    #[cfg(unix)]
    pub tap: Option<Arc<reflector_io::tap::Tap>>,
    /// The recent frames kept for `/api/v1/capture?last=N` (`--capture-keep-mb`).
    #[cfg(unix)]
    pub recent: Option<Arc<reflector_io::tap::Recent>>,
    /// When the run started.
    pub started: Instant,
    /// The data path in use, as opened.
    pub info: BackendInfo,
    /// Interface name.
    pub interface: String,
    /// Interface MAC.
    pub mac: MacAddr,
    /// The filter in force (replaced on SIGHUP).
    pub filter: Arc<FilterCell>,
    /// Each worker's published counters and where it runs.
    pub workers: Vec<(Arc<SharedCounters>, String)>,
    /// The kernel program's reject counts, for backends that have one.
    pub kernel: Option<KernelCounters>,
    /// Each worker's dwell-time histogram (empty without `--latency`).
    pub dwell: Vec<Arc<SharedDwell>>,
    /// What a counter reset subtracts.
    baseline: Mutex<Counters>,
    /// Rates over the last statistics interval (written by the main loop).
    pub rates: Mutex<Rates>,
    /// The settings in force, as `/api/v1/config` shows them (replaced on SIGHUP).
    settings: Mutex<serde_json::Value>,
    /// Each worker's published testers (empty where a kernel program keeps them).
    pub worker_testers: Vec<Arc<SharedTesters>>,
    /// The kernel program's testers, for backends whose program keeps them.
    pub kernel_testers: Option<KernelTesters>,
    /// The rate-limit buckets the workers share, for its overflow count.
    pub limiter: Option<Arc<Limiter>>,
    tester_rates: Mutex<TesterRates>,
    /// The last minutes, one sample a second (written by the main loop).
    pub history: Mutex<crate::history::History>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("backend", &self.info.backend)
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// A view of a run that starts now.
    pub fn new(
        info: BackendInfo,
        interface: String,
        mac: MacAddr,
        filter: Arc<FilterCell>,
        workers: Vec<(Arc<SharedCounters>, String)>,
        kernel: Option<KernelCounters>,
    ) -> Control {
        Control {
            started: Instant::now(),
            info,
            interface,
            mac,
            filter,
            workers,
            kernel,
            dwell: Vec::new(),
            baseline: Mutex::default(),
            rates: Mutex::new(Rates { rx_pps: 0.0, rx_mbps: 0.0, pps: 0.0, mbps: 0.0 }),
            settings: Mutex::new(serde_json::Value::Null),
            worker_testers: Vec::new(),
            kernel_testers: None,
            limiter: None,
            #[cfg(unix)]
            tap: None,
            #[cfg(unix)]
            recent: None,
            #[cfg(unix)]
            events: tokio::sync::broadcast::channel(8).0,
            tester_rates: Mutex::default(),
            history: Mutex::default(),
        }
    }

    /// The testers, busiest first (by rate, then by when last seen): the workers' rows merged
    /// by source and VLAN, or the kernel program's; rates from the change of each one's count
    /// since the last sample (taken at most once a second, whoever asks), see [`tester_rate`].
    pub fn testers(&self) -> Vec<TesterRow> {
        let mut merged: HashMap<([u8; 16], u16), Tester> = HashMap::new();
        let rows = match &self.kernel_testers {
            Some(read) => read().unwrap_or_default(),
            None => self.worker_testers.iter().flat_map(|w| w.snapshot()).collect(),
        };
        for row in rows {
            merged.entry((row.ip, row.vlan)).and_modify(|t| t.merge(&row)).or_insert(row);
        }
        let now = reflector_io::worker::utc_now_ns();
        let mut rates = self.tester_rates.lock().expect("tester rates lock");
        if rates.at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            let interval = rates.at.map(|at| at.elapsed().as_secs_f64());
            let rows = merged
                .iter()
                .map(|(k, t)| {
                    let sent = t.packets + t.limited;
                    let pps = tester_rate(rates.rows.get(k), sent, t, now, interval);
                    (*k, Sampled { sent, last_seen_ns: t.last_seen_ns, pps })
                })
                .collect();
            *rates = TesterRates { at: Some(Instant::now()), rows };
        }
        let mut out: Vec<TesterRow> = merged
            .into_iter()
            .map(|(k, tester)| {
                let active = now.saturating_sub(tester.last_seen_ns) <= ACTIVE_WITHIN.as_nanos() as u64;
                let pps = if active { rates.rows.get(&k).map_or(0.0, |s| s.pps) } else { 0.0 };
                TesterRow { tester, pps, active }
            })
            .collect();
        out.sort_by(|a, b| b.pps.total_cmp(&a.pps).then(b.tester.last_seen_ns.cmp(&a.tester.last_seen_ns)));
        out
    }

    /// Counters of the whole run, before any reset: workers plus kernel rejects (counted as
    /// received and rejected frames; their bytes are not known).
    pub fn lifetime(&self) -> Counters {
        let mut total = Counters::default();
        for (w, _) in &self.workers {
            total.add(&w.snapshot());
        }
        total.add(&self.kernel_counters());
        total
    }

    /// The kernel program's counters, over all CPUs.
    pub fn kernel_counters(&self) -> Counters {
        let mut c = Counters::default();
        for cpu in self.kernel.as_ref().and_then(|f| f()).unwrap_or_default() {
            c.add(&cpu);
        }
        c
    }

    /// Counters since the last reset.
    pub fn totals(&self) -> Counters {
        self.lifetime().delta(&self.baseline.lock().expect("baseline lock"))
    }

    /// Where the work is done and what each place counted since the run started (a reset
    /// applies to the totals): the workers with their placement,
    /// or, for a data path without workers (xdp-tx), each CPU the kernel reflected on.
    pub fn worker_rows(&self) -> Vec<(String, Counters)> {
        if !self.workers.is_empty() {
            return self.workers.iter().map(|(w, p)| (p.clone(), w.snapshot())).collect();
        }
        let cpus = self.kernel.as_ref().and_then(|f| f()).unwrap_or_default();
        cpus.into_iter()
            .enumerate()
            .filter(|(_, c)| c.rx_packets > 0)
            .map(|(i, c)| (format!("cpu {i}, in the driver"), c))
            .collect()
    }

    /// The workers' dwell times together, when measured (over the whole run).
    pub fn dwell(&self) -> Option<Dwell> {
        (!self.dwell.is_empty()).then(|| {
            let mut d = Dwell::default();
            self.dwell.iter().for_each(|w| d.add(&w.snapshot()));
            d
        })
    }

    /// Records the settings in force.
    pub fn set_settings(&self, settings: serde_json::Value) {
        *self.settings.lock().expect("settings lock") = settings;
    }

    /// The settings in force.
    pub fn settings(&self) -> serde_json::Value {
        self.settings.lock().expect("settings lock").clone()
    }

    /// Takes the history's sample of the second that ends now.
    pub fn record_history(&self) {
        let (lifetime, dwell, testers) = (self.lifetime(), self.dwell(), self.testers());
        let utc_ms = reflector_io::worker::utc_now_ns() / 1_000_000;
        self.history.lock().expect("history lock").record(
            Instant::now(),
            utc_ms,
            &lifetime,
            dwell.as_ref(),
            &testers,
        );
    }

    /// Zeroes the counters the control plane shows (the workers' own counters go on).
    pub fn reset(&self) {
        *self.baseline.lock().expect("baseline lock") = self.lifetime();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn row(sent: u64, first_s: f64, last_s: f64) -> Tester {
        Tester {
            packets: sent,
            first_seen_ns: (first_s * S as f64) as u64,
            last_seen_ns: (last_s * S as f64) as u64,
            ..Tester::default()
        }
    }

    /// A worker publishing once a second at 2 000 packets a second, sampled once a second a
    /// little out of step: every sample reads 2 000, whether a publication fell just before it,
    /// just after it, or twice between two samples.
    #[test]
    fn a_rate_does_not_alias_with_the_publications() {
        let t0 = row(2000, 0.0, 1.0);
        let first = tester_rate(None, 2000, &t0, 1_010_000_000, None);
        assert_eq!(first, 2000.0, "a new tester reads its average");
        let before = Sampled { sent: 2000, last_seen_ns: S, pps: first };
        // No publication between the two samples: the rate shown stays.
        assert_eq!(tester_rate(Some(&before), 2000, &t0, 2 * S + 5, Some(1.0)), 2000.0);
        // Two publications between them: the packets over the span they came in.
        let t2 = row(6000, 0.0, 3.0);
        assert_eq!(tester_rate(Some(&before), 6000, &t2, 3 * S + 5, Some(1.0)), 2000.0);
        // One publication, the sample 1.3 s later.
        let t1 = row(4000, 0.0, 2.0);
        assert_eq!(tester_rate(Some(&before), 4000, &t1, 2 * S + 300_000_000, Some(1.3)), 2000.0);
    }

    #[test]
    fn a_tester_that_stopped_reads_0_once_its_count_stood_still_long_enough() {
        let t = row(500, 0.0, 1.0);
        let before = Sampled { sent: 500, last_seen_ns: S, pps: 500.0 };
        assert_eq!(tester_rate(Some(&before), 500, &t, 3 * S, Some(1.0)), 500.0);
        assert_eq!(tester_rate(Some(&before), 500, &t, 4 * S, Some(1.0)), 0.0);
    }

    #[test]
    fn a_tester_seen_for_less_than_a_fifth_of_a_second_reads_0_then_its_rate() {
        let t = row(10, 0.0, 0.1);
        assert_eq!(tester_rate(None, 10, &t, S / 10, None), 0.0);
        let before = Sampled { sent: 10, last_seen_ns: S / 10, pps: 0.0 };
        let later = row(110, 0.0, 1.1);
        assert_eq!(tester_rate(Some(&before), 110, &later, 1_100_000_100, Some(1.0)), 100.0);
        // Rows of several workers merged: the newest packet counted before; the wall clock then.
        let merged = row(130, 0.0, 1.1);
        let b = Sampled { sent: 110, last_seen_ns: 1_100_000_000, pps: 100.0 };
        assert_eq!(tester_rate(Some(&b), 130, &merged, 2 * S, Some(0.5)), 40.0);
    }
}
