//! What a run holds while it serves, shared by the control loop (`serve`) and SIGHUP
//! (`reload`): the run's settings and data path, how statistics are shown, and the notes the
//! start line and a reload print.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reflector_core::Filter;
use reflector_io::host::iface::IfaceInfo;

use super::args::RunArgs;
use super::signals::Signals;
use crate::output::OutputError;
use crate::stats::StatsFormat;
use reflector_io::datapath::{BackendInfo, KernelProgram};

/// Everything a run holds while it serves.
pub(crate) struct Run<'a> {
    /// The settings in force.
    pub args: &'a RunArgs,
    /// The interface's name and facts at start.
    pub iface_name: &'a str,
    pub iface: &'a IfaceInfo,
    /// What was opened.
    pub info: BackendInfo,
    /// The interface-wide kernel program, if the data path has one.
    pub kernel: Option<KernelProgram>,
    /// Re-reads the configuration (SIGHUP): the settings as they would be now.
    pub reload: &'a dyn Fn() -> anyhow::Result<RunArgs>,
    /// The run's signal flags.
    pub signals: &'a Signals,
}

/// How statistics are shown; SIGHUP may change the format and the interval.
pub(crate) struct Output {
    pub format: Cell<StatsFormat>,
    pub interval: Cell<Duration>,
    /// The terminal UI is showing (no stats lines).
    pub tui: bool,
    /// The first stdout write that failed (which ends the run).
    error: RefCell<Option<OutputError>>,
}

impl Output {
    /// Statistics in `format` every `interval`, or the terminal UI when `tui`.
    pub fn new(format: StatsFormat, interval: Duration, tui: bool) -> Output {
        Output { format: Cell::new(format), interval: Cell::new(interval), tui, error: RefCell::default() }
    }

    /// The first stdout write that failed, if one did.
    pub fn take_error(&self) -> Option<OutputError> {
        self.error.take()
    }

    /// Writes a stats line; a failure stops the run: quietly when stdout was closed (`| head`),
    /// with a one-line error otherwise (`> /dev/full`).
    pub fn line(&self, text: String, stop: &AtomicBool) {
        if let Err(e) = crate::output::line(text) {
            self.error.borrow_mut().get_or_insert(e);
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The mode, and the loop guard when it is not the default (it leaves loops possible).
pub(crate) fn mode_note(filter: &Filter) -> String {
    match filter.loop_guard() {
        reflector_core::LoopGuard::Ttl => filter.mode().name().to_string(),
        guard => format!(
            "{} (loop guard {}: TTL untouched, two facing reflectors can loop)",
            filter.mode().name(),
            guard.name()
        ),
    }
}

/// Who may test and how hard, for the start line and SIGHUP: "every source, no limit", or the
/// lists' sizes and the limits.
pub(crate) fn who_note(filter: &Filter) -> String {
    use reflector_core::access::Verdict;
    let entries = filter.access_entries();
    let count = |v: Verdict| entries.iter().filter(|(_, e)| *e == v).count();
    let sources = match (count(Verdict::Allow), count(Verdict::Deny)) {
        (0, 0) => "every source".to_string(),
        (0, deny) => format!("every source but {deny} denied"),
        (allow, deny) => format!("{allow} allowed, {deny} denied"),
    };
    let rate = |r: Option<reflector_core::limit::Rate>, what: &str| {
        r.map(|r| format!("{}/s {what} (burst {})", r.per_second(), r.burst()))
    };
    let limits: Vec<String> =
        [rate(filter.source_limit(), "per source"), rate(filter.total_limit(), "in all")]
            .into_iter()
            .flatten()
            .collect();
    if limits.is_empty() {
        format!("{sources}, no rate limit")
    } else {
        format!("{sources}, limit {}", limits.join(", "))
    }
}
