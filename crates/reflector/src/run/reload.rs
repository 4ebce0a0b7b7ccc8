//! SIGHUP: the configuration read again, and what of it can change while running applied.

use std::sync::Arc;

use reflector_io::worker::FilterCell;

use super::running::{Output, Run, mode_note, who_note};
use crate::control::Control;
use crate::interface::interface_addresses;

/// SIGHUP: reads the configuration again and applies what can change while running (the
/// filter, in the core and in the kernel; the stats format and interval); reports what cannot
/// and keeps its old value. A bad file changes nothing.
pub(super) fn reload(run: &Run<'_>, cell: &FilterCell, output: &Output, ctl: &Control) {
    let (running, mac, tui) = (run.args, run.iface.mac, output.tui);
    let (format, interval) = (&output.format, &output.interval);
    // What was applied is a notice; what was refused or kept back, a warning.
    let say = |msg: String| tracing::info!(notice = true, "reflector: SIGHUP: {msg}");
    let warn = |msg: String| tracing::warn!("reflector: SIGHUP: {msg}");
    if running.config.is_none() {
        return say("nothing to reload (started without --config)".into());
    }
    let new = match (run.reload)() {
        Ok(new) => new,
        Err(e) => return warn(format!("{e:#}; keeping the running configuration")),
    };
    // Said first, so that a reload that changes nothing is seen to have happened; what changed
    // follows on lines of its own.
    if let Some(path) = &running.config {
        say(format!("{} read again", path.display()));
    }
    for key in running.needs_restart(&new) {
        warn(format!("{key} cannot change while running; keeping the old value (restart to apply)"));
    }
    // What runs from here on: the settings that need a restart as they were, the others as
    // they are applied below.
    let mut applied = running.clone();
    // The interface's addresses may have changed since start (DHCP, SLAAC): read them again.
    let local_ips = match running.iface.as_deref().map(interface_addresses).transpose() {
        Ok(ips) => ips.unwrap_or_default(),
        Err(e) => return warn(format!("{e:#}; keeping the old filter")),
    };
    match new.filter.filter(mac, &local_ips) {
        Err(e) => warn(format!("{}; keeping the old filter", e.0)),
        Ok(f) if f == *cell.get() => applied.filter = new.filter.clone(),
        Ok(f) => {
            if let Some(kernel) = &run.kernel
                && let Err(e) = (kernel.update)(&f)
            {
                return warn(format!("cannot update the XDP program ({e:#}); keeping the old filter"));
            }
            say(format!(
                "filter now: port {}, signatures {}, mode {}; {}",
                f.port(),
                f.families(),
                mode_note(&f),
                who_note(&f)
            ));
            if let (Some(port), None) = (f.stamp_port(), cell.get().stamp_port()) {
                warn(format!(
                    "udp/{port} (STAMP) is not held by this run: the host may answer STAMP requests with ICMP port-unreachable until a restart"
                ));
            }
            cell.set(Arc::new(f));
            applied.filter = new.filter.clone();
        }
    }
    if let Some(fmt) = new.stats
        && fmt != format.get()
    {
        if tui {
            warn("the terminal UI is showing; stats format unchanged".into());
        } else {
            format.set(fmt);
            applied.stats = Some(fmt);
            say(format!("stats format now {fmt:?}").to_lowercase());
        }
    }
    if new.stats_interval != interval.get() {
        interval.set(new.stats_interval);
        applied.stats_interval = new.stats_interval;
        say(format!("stats interval now {:.3} s", new.stats_interval.as_secs_f64()));
    }
    ctl.set_settings(applied.to_json());
}
