//! A run once its data path is open: the workers started, the start line, the control loop
//! (stats lines, SIGHUP, the interface watch, the stop conditions) and the summary.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reflector_core::{Counters, Filter};
use reflector_io::backend::Backend;
use reflector_io::datapath::Backend as DataPath;
use reflector_io::tap::{Tap, TapThread, Tapped};
use reflector_io::worker::{FilterCell, Pin, Runtime, allowed_cpus};

use super::link::LinkWatch;
use super::notify::Notifier;
use super::running::{Output, Run, mode_note, who_note};
use crate::control::Control;
use crate::input::UsageError;
use crate::stats::{self, Context, Rates, StatsFormat};

/// Keeps the host's own stack from answering test packets: with a socket bound to the test
/// port, the kernel queues them (and drops them when the small buffer is full) instead of
/// sending ICMP port-unreachable back to the tester. The socket is never read.
fn hold_test_port(port: u16) -> (Option<UdpSocket>, String) {
    if port == 0 {
        return (None, "port any: the host may answer test packets with ICMP port-unreachable".into());
    }
    // A dual-stack IPv6 socket covers IPv4 too; without IPv6, fall back to IPv4.
    match UdpSocket::bind(("::", port)).or_else(|_| UdpSocket::bind(("0.0.0.0", port))) {
        Ok(socket) => (Some(socket), format!("udp/{port} held so the host stays quiet")),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => (
            None,
            format!(
                "udp/{port} not held (a port below 1024 needs CAP_NET_BIND_SERVICE): the host may answer test packets with ICMP port-unreachable"
            ),
        ),
        Err(e) => {
            (None, format!("udp/{port} not held ({e}): another program there also receives test packets"))
        }
    }
}

/// [`hold_test_port`] for each UDP port the selected protocols listen on
/// (`reflector_core::protocol::udp_ports`: the test port, the STAMP port).
fn hold_test_ports(filter: &Filter) -> (Vec<UdpSocket>, String) {
    let (mut held, mut notes) = (Vec::new(), Vec::new());
    for port in reflector_core::protocol::udp_ports(filter) {
        let (socket, note) = hold_test_port(port);
        held.extend(socket);
        notes.push(note);
    }
    (held, notes.join("; "))
}

/// The HTTP server's thread, and where it serves (for the start line).
type Served = (std::thread::JoinHandle<()>, String);

/// The workers started on `backends` and the control plane's view of them, with the HTTP
/// server when asked for.
fn start<B: Backend>(
    run: &Run<'_>,
    cell: &Arc<FilterCell>,
    backends: Vec<B>,
    tap: Option<&Arc<Tap>>,
) -> anyhow::Result<(Runtime, Arc<Control>, Option<Served>)> {
    let args = run.args;
    if let (Some(tap), Some(file)) = (tap, args.capture_file()) {
        tap.add(Box::new(file.open(run.iface_name)?));
    }
    let recent = tap.zip(args.capture_keep_mb).map(|(tap, mb)| {
        let recent = reflector_io::tap::Recent::new(mb as usize * 1_000_000);
        tap.add(recent.sink());
        recent
    });
    let http = args.http_config().map(crate::http::bind).transpose()?;
    let pin = match &args.cpus {
        None => Pin::Allowed,
        Some(list) => {
            let allowed = allowed_cpus().map_err(|e| UsageError(format!("--cpus: {e}")))?;
            list.check(&allowed, backends.len()).map_err(UsageError)?;
            Pin::Cpus(list.0.clone())
        }
    };
    // Set up: from here on only what a reload needs, before any other thread starts (each
    // thread has capabilities of its own, and a new one inherits its parent's).
    super::privilege::drop_after_setup(run.kernel.is_some(), run.info.closing_detaches_xdp())?;
    let runtime =
        Runtime::start(backends, cell.clone(), pin, args.latency).context("cannot start worker threads")?;
    // Frames a kernel program rejected never reach the workers: the control plane adds its
    // per-reason counts (as received and rejected frames; their bytes are not counted).
    let mut control = Control::new(
        run.info.clone(),
        run.iface_name.to_string(),
        run.iface.mac,
        cell.clone(),
        runtime.workers.iter().map(|w| (w.counters.clone(), w.placement.to_string())).collect(),
        run.kernel.as_ref().map(|k| k.counters.clone()),
    );
    control.dwell = runtime.workers.iter().filter_map(|w| w.dwell.clone()).collect();
    control.worker_testers = runtime.workers.iter().map(|w| w.testers.clone()).collect();
    control.kernel_testers = run.kernel.as_ref().map(|k| k.testers.clone());
    control.limiter = Some(runtime.limiter.clone());
    control.tap = tap.cloned();
    control.recent = recent;
    control.set_settings(args.to_json());
    let ctl = Arc::new(control);
    let http_thread = match http {
        Some(h) => match (h.describe(), h.start(ctl.clone(), run.signals.stop.clone())) {
            (described, Ok(t)) => Some((t, described)),
            (_, Err(e)) => {
                let _ = runtime.stop();
                return Err(e);
            }
        },
        None => None,
    };
    Ok((runtime, ctl, http_thread))
}

/// What the start line says of STAMP when it is on: its port, its modes, and how good the
/// clock its timestamps come from is.
fn stamp_note(filter: &Filter) -> String {
    let Some(port) = filter.stamp_port() else { return String::new() };
    let error = reflector_io::worker::clock_error_estimate();
    let clock = if error.synchronised() {
        format!("clock synchronised, error under {}", crate::output::duration_ns(error.error_ns()))
    } else {
        format!("clock NOT synchronised (error estimate {})", crate::output::duration_ns(error.error_ns()))
    };
    format!(
        " (STAMP on udp/{port}, {}, {} timestamps, {clock})",
        filter.stamp_sequence().name(),
        filter.stamp_timestamps().name()
    )
}

/// The start line on stderr: what runs where, with which rules.
fn start_line(run: &Run<'_>, filter: &Filter, placements: &[String], quiet_note: &str, http: Option<&str>) {
    let iface = run.iface;
    let oui = match filter.oui() {
        Some(o) if !filter.oui_families().is_empty() => {
            format!("OUI {:02x}:{:02x}:{:02x} for {}", o[0], o[1], o[2], filter.oui_families())
        }
        _ => "any vendor".into(),
    };
    let workers = match placements.len() {
        0 => "no workers".to_string(),
        n => format!("{n} worker{} ({})", if n == 1 { "" } else { "s" }, placements.join(", ")),
    };
    tracing::info!(
        "reflector: {} on {} ({}, mtu {}{}) [{}]; port {}; signatures {}{}; {oui}; mode {}; {}; {workers}; {}; {quiet_note}{}",
        run.info.backend.name(),
        run.iface_name,
        iface.mac,
        iface.mtu,
        if iface.running { "" } else { ", no carrier" },
        run.info.why(),
        if filter.port() == 0 { "any".to_string() } else { filter.port().to_string() },
        filter.families(),
        stamp_note(filter),
        mode_note(filter),
        who_note(filter),
        run.info.details(),
        run.args.capture_file().map_or(String::new(), |c| format!(
            "; {}",
            c.describe(
                run.kernel
                    .as_ref()
                    .is_some_and(|k| k.capture.is_some())
                    .then_some((run.info.backend == DataPath::XdpTx, run.args.capture_kernel_limit))
            )
        )),
    );
    if let Some(served) = http {
        tracing::info!(
            "reflector: HTTP on {served} (/api/v1/status, /api/v1/stats, /api/v1/workers, /api/v1/config, /api/v1/testers, /api/v1/capture, /api/v1/events, /metrics)"
        );
    }
}

/// Runs the workers until stopped, printing the start line, stats lines and the summary.
///
/// A run that may capture (`--capture`, or the HTTP server's `/api/v1/capture`) on a data path
/// with workers has every frame they judge pass the tap, which copies it only while a capture
/// wants it; the others run the backends bare (the tap costs about 2.5 ns a frame when idle).
pub(super) fn serve<B: Backend>(run: Run<'_>, filter: Arc<Filter>, backends: Vec<B>) -> anyhow::Result<()> {
    let kernel_samples = run.kernel.as_ref().is_some_and(|k| k.capture.is_some());
    if !run.args.may_capture() || (backends.is_empty() && !kernel_samples) {
        return serve_with(run, filter, backends, None);
    }
    let (tap, thread) = Tap::start(run.iface_name).context("cannot start the capture thread")?;
    let tapped = backends.into_iter().map(|b| Tapped::new(b, tap.clone())).collect();
    serve_with(run, filter, tapped, Some((tap, thread)))
}

fn serve_with<B: Backend>(
    run: Run<'_>,
    filter: Arc<Filter>,
    backends: Vec<B>,
    tapping: Option<(Arc<Tap>, TapThread)>,
) -> anyhow::Result<()> {
    let (_quiet, quiet_note) = hold_test_ports(&filter);
    let cell = FilterCell::new(filter.clone());
    let tap = tapping.as_ref().map(|(tap, _)| tap.clone());
    let (runtime, ctl, http_thread) = start(&run, &cell, backends, tap.as_ref())?;
    // What the XDP program samples goes into the same tap, every 10 ms.
    let pump = match (&tap, run.kernel.as_ref().and_then(|k| k.capture.clone())) {
        (Some(tap), Some(pump)) => Some(start_pump(tap.clone(), pump, run.signals.stop.clone())?),
        _ => None,
    };
    let placements: Vec<String> = ctl.workers.iter().map(|(_, p)| p.clone()).collect();
    start_line(&run, &filter, &placements, &quiet_note, http_thread.as_ref().map(|(_, d)| d.as_str()));
    let ctx = Context { backend: run.info.backend.name(), interface: run.iface_name.to_string(), placements };
    let output = Output::new(
        run.args.stats.unwrap_or(StatsFormat::Text),
        run.args.stats_interval,
        crate::tui::wanted(run.args.tui, run.args.stats.is_some()),
    );
    let stop = run.signals.stop.clone();
    if !output.tui {
        if let Some(h) = stats::header(output.format.get()) {
            output.line(h.to_string(), &stop);
        }
        if let Some(record) = stats::start_record(output.format.get(), &ctx, &run.info) {
            output.line(record, &stop);
        }
    }
    let mut watch = Watch { link: LinkWatch::new(run.iface_name, run.iface), notifier: Notifier::from_env() };
    watch.notifier.ready(&format!("reflecting on {} ({})", run.iface_name, run.info.backend.name()));
    let (elapsed, link_error) = control_loop(&run, &cell, &ctl, &runtime, &output, &ctx, &mut watch)?;
    watch.notifier.stopping();
    let link = &mut watch.link;
    stop.store(true, Ordering::Relaxed); // ends the HTTP thread too
    let workers = match runtime.stop() {
        Ok(workers) => workers,
        // A worker that failed because its interface went away: say that.
        Err(e) => {
            let gone = link_error.or_else(|| link.check(Instant::now() + LinkWatch::EVERY).err());
            return Err(gone.unwrap_or_else(|| anyhow::Error::new(e).context("a worker failed")));
        }
    };
    if let Some((t, _)) = http_thread {
        let _ = t.join();
    }
    if let Some(pump) = pump {
        let _ = pump.join();
    }
    if let Some((tap, thread)) = tapping {
        thread.stop();
        report_capture_failures(&tap);
    }
    if let Some(e) = output.take_error() {
        return Err(e.into());
    }
    let cpu = reflector_io::host::process::process_cpu_time().ok();
    let kernel = ctl.kernel_counters();
    let (dwell, testers) = (ctl.dwell(), ctl.testers());
    crate::output::line(stats::summary(
        output.format.get(),
        &ctx,
        elapsed,
        &workers,
        (kernel != Counters::default()).then_some(&kernel),
        &stats::Closing {
            dwell: dwell.as_ref(),
            cpu,
            testers: &testers,
            capture: ctl.tap.as_ref().map(|t| (t.captured(), t.dropped(), t.stream_dropped())),
            busy: run.info.dpdk.as_ref().map(|d| {
                let (cycles, packets) = d.busy.total();
                (cycles, packets, d.busy.hz)
            }),
        },
    ))?;
    link_error.map_or(Ok(()), Err)
}

/// Moves the XDP program's samples into `tap` (and tells it what to sample) now, then from a
/// thread every 10 ms, and at once when a capture is added (`/api/v1/capture`), until `stop`
/// (and once more then); a failure to read the maps is said once.
fn start_pump(
    tap: Arc<Tap>,
    pump: reflector_io::datapath::KernelPump,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    // Once before the start line: the program samples what the capture file wants from the
    // first frame a tester can send after it.
    let mut said = false;
    if let Err(e) = pump(&tap) {
        said = true;
        tracing::warn!("reflector: capture: cannot read the XDP program's samples: {e:#}");
    }
    let wakes = tap.clone();
    let thread = std::thread::Builder::new().name("reflector-samples".into()).spawn(move || {
        loop {
            let last = stop.load(Ordering::Relaxed);
            if let Err(e) = pump(&tap)
                && !said
            {
                said = true;
                tracing::warn!("reflector: capture: cannot read the XDP program's samples: {e:#}");
            }
            if last {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
    })?;
    wakes.wake_on_add(thread.thread().clone());
    Ok(thread)
}

/// A capture's failure (a full disk, a FIFO without a reader, a stream that failed) is said
/// once; the frames it misses are counted as not captured.
fn report_capture_failures(tap: &Tap) {
    for failure in tap.take_failures() {
        tracing::warn!("reflector: capture: {failure}");
    }
}

/// What the control loop keeps an eye on besides the counters: the interface, and the service
/// manager it reports to.
struct Watch<'a> {
    link: LinkWatch<'a>,
    notifier: Notifier,
}

/// Until a signal, `--duration`, a worker's end or an unusable interface: every interval the
/// rates of that interval for the API and UI, and a stats line; after SIGHUP the configuration
/// read again; the interface watched. Returns the run's length and why the interface ended it.
fn control_loop(
    run: &Run<'_>,
    cell: &FilterCell,
    ctl: &Arc<Control>,
    runtime: &Runtime,
    output: &Output,
    ctx: &Context,
    watch: &mut Watch<'_>,
) -> anyhow::Result<(Duration, Option<anyhow::Error>)> {
    let Watch { link, notifier } = watch;
    let stop = &run.signals.stop;
    let started = Instant::now();
    let mut last = (started, ctl.totals());
    let mut next_stats = started + run.args.stats_interval;
    // The history's samples: one a second, the first (its starting point) now.
    ctl.record_history();
    let mut next_sample = started + Duration::from_secs(1);
    let end = run.args.duration.map(|d| started + d);
    let mut link_error = None;
    let mut warned = false;
    let mut tick = || {
        if run.signals.hup.swap(false, Ordering::Relaxed) {
            notifier.reloading();
            super::reload::reload(run, cell, output, ctl);
            notifier.ready("reflecting (configuration read again)");
        }
        let now = Instant::now();
        notifier.tick(now);
        if let Some(tap) = &ctl.tap {
            report_capture_failures(tap);
        }
        if let Err(e) = link.check(now) {
            link_error.get_or_insert(e);
            stop.store(true, Ordering::Relaxed);
        }
        if now >= next_sample {
            ctl.record_history();
            next_sample = now.max(next_sample) + Duration::from_secs(1);
        }
        if now >= next_stats {
            let totals = ctl.totals();
            if run.info.backend == DataPath::XdpTx && totals.tx_errors > 0 && !warned {
                warned = true;
                tracing::warn!(
                    "reflector: {}: the driver dropped {} reflections after XDP_TX (tx errors); on a veth, the peer must run an XDP program, or have GRO on (ethtool -K PEER gro on)",
                    run.iface_name,
                    totals.tx_errors
                );
            }
            let rates = Rates::over(&totals.delta(&last.1), now - last.0);
            *ctl.rates.lock().expect("rates lock") = rates;
            crate::http::publish_snapshot(ctl);
            notifier.status(&format!(
                "reflecting {:.0} pps of {:.0} received; {} reflected, {} rejected",
                rates.pps,
                rates.rx_pps,
                totals.reflected_packets,
                totals.rejected_packets()
            ));
            if !output.tui {
                let dwell = ctl.dwell();
                let line = stats::interval_line(
                    output.format.get(),
                    ctx,
                    now - started,
                    &totals,
                    &rates,
                    dwell.as_ref(),
                );
                output.line(line, stop);
            }
            last = (now, totals);
            next_stats = now.max(next_stats) + output.interval.get();
        }
        next_stats.min(next_sample)
    };
    if output.tui {
        crate::tui::run(ctl, stop, end, || {
            tick();
            !runtime.any_finished()
        })?;
    } else {
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) || runtime.any_finished() {
                break;
            }
            let mut wake = tick();
            if let Some(e) = end {
                wake = wake.min(e);
            }
            std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
        }
    }
    Ok((started.elapsed(), link_error))
}
