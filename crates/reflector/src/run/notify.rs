//! The service manager's side of a run, when there is one (systemd's `sd_notify` protocol,
//! `NOTIFY_SOCKET` set): `READY=1` once the data path reflects, `STATUS=` with the rate,
//! `WATCHDOG=1` from the control loop at half the `WatchdogSec` interval, `RELOADING=1` and
//! `READY=1` around a SIGHUP, `STOPPING=1` at the end. Without `NOTIFY_SOCKET` it does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// What a run tells the service manager.
#[derive(Debug)]
pub(super) struct Notifier {
    /// Half the watchdog interval the service manager asked for, if it did.
    watchdog: Option<Duration>,
    last_ping: Instant,
    /// A notification could not be sent (said once).
    failed: bool,
}

impl Notifier {
    /// From the environment the service manager set.
    pub(super) fn from_env() -> Notifier {
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2));
        Notifier { watchdog, last_ping: Instant::now(), failed: false }
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(false, states)
            && !self.failed
        {
            self.failed = true;
            tracing::warn!("reflector: cannot notify the service manager (NOTIFY_SOCKET): {e}");
        }
    }

    /// The data path reflects.
    pub(super) fn ready(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// What the run is doing now.
    pub(super) fn status(&mut self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// A SIGHUP reload begins (systemd 253 and later want the monotonic time with it).
    pub(super) fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    /// The run ends.
    pub(super) fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `WATCHDOG=1` when half the watchdog interval has passed since the last one.
    pub(super) fn tick(&mut self, now: Instant) {
        if let Some(every) = self.watchdog
            && now.duration_since(self.last_ping) >= every
        {
            self.last_ping = now;
            self.send(&[NotifyState::Watchdog]);
        }
    }
}
