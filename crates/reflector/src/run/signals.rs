//! SIGINT, SIGTERM and SIGHUP for a run: flags set from the first instruction.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;

/// The run's signal flags. The handlers are installed before anything else, so a signal
/// during start-up is never fatal: SIGINT / SIGTERM end the run as soon as it is ready (with a
/// summary), and a SIGHUP is taken up then (the configuration read again).
pub(super) struct Signals {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) hup: Arc<AtomicBool>,
}

/// The SIGHUP flag, registered once: by [`defer_sighup`] before the command line is parsed.
static EARLY_HUP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Called first thing in `main` for `run`: from here on a SIGHUP only sets a flag (its default
/// action would end the process, exit code 129, before the run has even started).
pub fn defer_sighup() {
    // A failure here is reported by `Signals::install`, which tries again.
    let _ = hup_flag();
}

fn hup_flag() -> anyhow::Result<Arc<AtomicBool>> {
    if let Some(flag) = EARLY_HUP.get() {
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone())
        .context("cannot install signal handlers")?;
    Ok(EARLY_HUP.get_or_init(|| flag).clone())
}

impl Signals {
    pub(super) fn install() -> anyhow::Result<Signals> {
        let signals = Signals { stop: Arc::default(), hup: hup_flag()? };
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, signals.stop.clone())
                .context("cannot install signal handlers")?;
        }
        Ok(signals)
    }
}
