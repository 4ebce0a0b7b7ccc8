//! The control plane's view of a run: counters read from the workers' published snapshots
//! (and a kernel program's reject counts), never from the packet path itself, so nothing here
//! can stall a worker. The stats lines, the REST API and `/metrics` all read from here.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use reflector_core::{Counters, Dwell, MacAddr};
use reflector_io::worker::{FilterCell, SharedCounters, SharedDwell};

use crate::backend_info::BackendInfo;
use crate::stats::Rates;

/// What a kernel program counted, per CPU: the frames it rejected before any worker saw them
/// (af-xdp), or everything it judged and reflected in the driver (xdp-tx).
pub type KernelCounters = Arc<dyn Fn() -> Option<Vec<Counters>> + Send + Sync>;

/// Everything the control plane shows about a run.
pub struct Control {
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
        }
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

    /// Zeroes the counters the control plane shows (the workers' own counters go on).
    pub fn reset(&self) {
        *self.baseline.lock().expect("baseline lock") = self.lifetime();
    }
}
