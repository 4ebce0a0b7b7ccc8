//! SIGHUP: the configuration read again, and what of it can change while running applied.

use std::sync::Arc;

use reflector_io::worker::FilterCell;

use super::args::interface_addresses;
use super::serve::{Output, Run};

/// SIGHUP: reads the configuration again and applies what can change while running (the
/// filter, in the core and in the kernel; the stats format and interval); reports what cannot
/// and keeps its old value. A bad file changes nothing.
pub(super) fn reload(run: &Run<'_>, cell: &FilterCell, output: &Output) {
    let (running, mac, tui) = (run.args, run.iface.mac, output.tui);
    let (format, interval) = (&output.format, &output.interval);
    let say = |msg: String| eprintln!("reflector: SIGHUP: {}", crate::output::one_line(&msg));
    if running.config.is_none() {
        return say("nothing to reload (started without --config)".into());
    }
    let new = match (run.reload)() {
        Ok(new) => new,
        Err(e) => return say(format!("{e:#}; keeping the running configuration")),
    };
    // Said first, so that a reload that changes nothing is seen to have happened; what changed
    // follows on lines of its own.
    if let Some(path) = &running.config {
        say(format!("{} read again", path.display()));
    }
    let fixed = [
        ("interface", new.iface != running.iface),
        ("backend", new.backend != running.backend),
        ("workers", new.workers != running.workers),
        ("cpus", new.cpus != running.cpus),
        ("umem_size_mib", new.umem_size != running.umem_size),
        ("busy_poll", new.busy_poll != running.busy_poll),
        ("replace", new.replace != running.replace),
        ("duration", new.duration != running.duration),
        ("latency", new.latency != running.latency),
        (
            "http",
            new.http != running.http
                || new.http_token != running.http_token
                || new.http_insecure != running.http_insecure,
        ),
    ];
    for (key, _) in fixed.iter().filter(|(_, changed)| *changed) {
        say(format!("{key} cannot change while running; keeping the old value (restart to apply)"));
    }
    // The interface's addresses may have changed since start (DHCP, SLAAC): read them again.
    let local_ips = match running.iface.as_deref().map(interface_addresses).transpose() {
        Ok(ips) => ips.unwrap_or_default(),
        Err(e) => return say(format!("{e:#}; keeping the old filter")),
    };
    match new.filter.filter(mac, &local_ips) {
        Err(e) => say(format!("{}; keeping the old filter", e.0)),
        Ok(f) if f == *cell.get() => {}
        Ok(f) => {
            if let Some(kernel) = &run.kernel
                && let Err(e) = (kernel.update)(&f)
            {
                return say(format!("cannot update the XDP program ({e:#}); keeping the old filter"));
            }
            say(format!(
                "filter now: port {}, signatures {}, mode {}",
                f.port(),
                f.families(),
                f.mode().name()
            ));
            cell.set(Arc::new(f));
        }
    }
    if let Some(fmt) = new.stats
        && fmt != format.get()
    {
        if tui {
            say("the terminal UI is showing; stats format unchanged".into());
        } else {
            format.set(fmt);
            say(format!("stats format now {fmt:?}").to_lowercase());
        }
    }
    if new.stats_interval != interval.get() {
        interval.set(new.stats_interval);
        say(format!("stats interval now {:.3} s", new.stats_interval.as_secs_f64()));
    }
}
