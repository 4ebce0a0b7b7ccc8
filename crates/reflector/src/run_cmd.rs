//! `reflector run IFACE`: reflect test packets on a live interface until stopped.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use reflector_core::{Counters, Filter};

use crate::control::{Control, KernelRejects};
use crate::http::HttpConfig;
use reflector_io::backend::Backend;
use reflector_io::worker::{FilterCell, Pin, Placement, Runtime, allowed_cpus};
use reflector_sys::iface::{IfaceError, IfaceInfo, iface_info};

use crate::UsageError;
use crate::cpus::CpuList;
use crate::filter_args::FilterArgs;
use crate::stats::{self, Context, Rates, StatsFormat};

/// Which data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The best one available here: af-xdp, else af-packet on Linux; bpf on macOS and FreeBSD.
    Auto,
    /// An XDP program hands test packets to AF_XDP sockets, one per queue (Linux).
    AfXdp,
    /// AF_PACKET with mmap rings and a kernel pre-filter (Linux).
    AfPacket,
    /// A /dev/bpf device with the same classic BPF filter (macOS, FreeBSD); one worker.
    Bpf,
}

impl BackendChoice {
    /// The backend `auto` stands for on this system, and why.
    fn resolve(self) -> (BackendChoice, &'static str) {
        match self {
            BackendChoice::Auto if cfg!(target_os = "linux") => (BackendChoice::AfXdp, "auto: af-xdp"),
            BackendChoice::Auto => (BackendChoice::Bpf, "auto: bpf (no AF_PACKET on this system)"),
            other => (other, "as asked"),
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::AfXdp => "af-xdp",
            BackendChoice::AfPacket => "af-packet",
            BackendChoice::Bpf => "bpf",
        }
    }
}

/// Arguments of `reflector run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Interface to reflect on [default: `interface` from --config].
    iface: Option<String>,
    /// Configuration file (TOML); command-line flags override it. See examples/reflector.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Data path.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    #[command(flatten)]
    filter: FilterArgs,
    /// Worker threads, each pinned to its own CPU [default: af-packet 1; af-xdp one per receive
    /// queue; with af-xdp, N workers serve queues 0..N and the other queues go to the stack].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
    /// Pin worker i to the i-th of these CPUs, e.g. 2,3 or 2-5 [default: the CPUs the process
    /// may use, in order]. Only the workers are pinned; the control plane runs anywhere.
    #[arg(long, value_name = "LIST")]
    cpus: Option<CpuList>,
    /// af-xdp: UMEM in MiB (4 KiB frames), shared by the sockets (one per queue) in equal parts.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    umem_size: u32,
    /// af-xdp: remove another XDP program attached to the interface instead of refusing.
    #[arg(long)]
    replace: bool,
    /// af-xdp: spin on the rings instead of sleeping when idle (lowest latency; a core per worker).
    #[arg(long)]
    busy_poll: bool,
    /// Measure dwell times (receive to transmit submission): p50 / p99 / p999 in the stats.
    #[arg(long)]
    latency: bool,
    /// Serve the REST API and /metrics on ADDR:PORT (loopback unless a token or --http-insecure).
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<std::net::SocketAddr>,
    /// Bearer token the HTTP server requires (needed for a non-loopback --http).
    #[arg(long, value_name = "TOKEN")]
    http_token: Option<String>,
    /// Serve a non-loopback --http without a token (read-only then: counter reset is refused).
    #[arg(long)]
    http_insecure: bool,
    /// Statistics format on stdout [default: text; the terminal UI when stdout is a terminal].
    #[arg(long, value_enum)]
    stats: Option<StatsFormat>,
    /// Show the terminal UI (q quits).
    #[arg(long, conflicts_with = "stats")]
    tui: bool,
    /// Seconds between statistics lines.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::parse_interval)]
    stats_interval: Duration,
    /// Stop after this many seconds (default: run until SIGINT / SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = crate::parse_secs)]
    duration: Option<Duration>,
}

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
        Err(e) => {
            (None, format!("udp/{port} not held ({e}): another program there also receives test packets"))
        }
    }
}

/// Looks up `name` and checks that it is up: an unknown or bad name is a usage error (exit 2),
/// a down interface a runtime one (exit 1).
pub fn usable_interface(name: &str) -> anyhow::Result<IfaceInfo> {
    let iface = iface_info(name).map_err(|e| -> anyhow::Error {
        match e {
            IfaceError::NotFound(_) | IfaceError::BadName(_) => UsageError(e.to_string()).into(),
            IfaceError::Sys(e) => anyhow::anyhow!("cannot read interface {name}: {e}"),
        }
    })?;
    if !iface.up {
        anyhow::bail!("interface {name} is down (bring it up: ip link set {name} up)");
    }
    Ok(iface)
}

/// The addresses of interface `name`, which the packet rules refuse test packets from.
fn interface_addresses(name: &str) -> anyhow::Result<Vec<std::net::IpAddr>> {
    reflector_sys::iface::iface_addresses(name)
        .with_context(|| format!("cannot read the addresses of {name}"))
}

/// The arguments with the config file's settings filled in, checked as `run` checks them before
/// it touches the system, and the interface to run on.
fn with_config(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<(RunArgs, String)> {
    let a = apply_config(args, matches)?;
    check_settings(&a)?;
    let iface = a
        .iface
        .clone()
        .ok_or_else(|| UsageError("no interface given (pass IFACE, or set interface in --config)".into()))?;
    Ok((a, iface))
}

/// `reflector config check FILE`: the file read as `run --config FILE` reads it, with every
/// check `run` makes before it looks at the interface.
pub fn check_config_file(path: &std::path::Path) -> anyhow::Result<()> {
    use clap::{Args as _, FromArgMatches as _};
    let command = RunArgs::augment_args(clap::Command::new("run").no_binary_name(true));
    let matches = command.try_get_matches_from([std::ffi::OsStr::new("--config"), path.as_os_str()])?;
    let args = RunArgs::from_arg_matches(&matches)?;
    check_settings(&apply_config(&args, &matches)?)?;
    Ok(())
}

/// The checks of settings that need nothing from the system: the filter (with a stand-in MAC;
/// the interface's own is checked again at start), the HTTP access rule, and flags that only
/// one backend takes.
fn check_settings(args: &RunArgs) -> Result<(), UsageError> {
    args.filter.filter(reflector_core::MacAddr([0x02, 0, 0, 0, 0, 1]), &[])?;
    if let Some(addr) = args.http {
        HttpConfig { addr, token: args.http_token.clone(), insecure: args.http_insecure }.check()?;
    }
    let (backend, _) = args.backend.resolve();
    let xdp_only =
        [(args.replace, "--replace"), (args.busy_poll, "--busy-poll"), (args.umem_size != 16, "--umem-size")];
    if backend != BackendChoice::AfXdp
        && args.backend != BackendChoice::Auto
        && let Some((_, flag)) = xdp_only.iter().find(|(set, _)| *set)
    {
        return Err(UsageError(format!("{flag} applies to --backend af-xdp only")));
    }
    Ok(())
}

/// The arguments with the config file's settings filled in where the command line gave none.
fn apply_config(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<RunArgs> {
    let mut a = args.clone();
    if let Some(path) = &args.config {
        let c = crate::config::Config::load(path)?;
        let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let f = &mut a.filter;
        if a.iface.is_none() {
            a.iface = c.interface;
        }
        macro_rules! take {
            ($id:literal, $field:expr, $value:expr) => {
                if !given($id) {
                    if let Some(v) = $value {
                        $field = v;
                    }
                }
            };
        }
        take!("backend", a.backend, c.backend);
        take!("mode", f.mode, c.mode);
        take!("port", f.port, c.port);
        take!("sig", f.sig, c.signatures.map(Some));
        take!("oui", f.oui, c.oui);
        take!("no_oui_filter", f.no_oui_filter, c.oui_filter.map(|on| !on));
        take!("oui_scope", f.oui_scope, c.oui_scope.map(Some));
        take!("custom_sig", f.custom_sig, (!c.custom.is_empty()).then_some(c.custom));
        take!("workers", a.workers, c.workers.map(Some));
        take!("cpus", a.cpus, c.cpus.map(Some));
        take!("umem_size", a.umem_size, c.umem_size_mib);
        take!("replace", a.replace, c.replace);
        take!("busy_poll", a.busy_poll, c.busy_poll);
        take!("duration", a.duration, c.duration.map(Some));
        take!("latency", a.latency, c.latency);
        take!("stats", a.stats, c.stats_format.map(Some));
        take!("stats_interval", a.stats_interval, c.stats_interval);
        take!("http", a.http, c.http_listen.map(Some));
        take!("http_token", a.http_token, c.http_token.map(Some));
        take!("http_insecure", a.http_insecure, c.http_insecure);
    }
    Ok(a)
}

/// The run's signal flags. The handlers are installed before anything else, so a signal
/// during start-up is never fatal: SIGINT / SIGTERM end the run as soon as it is ready (with a
/// summary), and a SIGHUP is taken up then (the configuration read again).
struct Signals {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
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
    fn install() -> anyhow::Result<Signals> {
        let signals = Signals { stop: Arc::default(), hup: hup_flag()? };
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, signals.stop.clone())
                .context("cannot install signal handlers")?;
        }
        Ok(signals)
    }
}

pub fn run(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let original = args;
    let reload = || with_config(original, matches).map(|(a, _)| a);
    let (args, iface_name) = with_config(args, matches)?;
    let args = &args;
    let iface = usable_interface(&iface_name)?;
    // One reflector per interface, whatever the data paths: held until this returns.
    #[cfg(target_os = "linux")]
    let _claim = reflector_io::claim::claim(iface.index, &iface_name)?;
    let local_ips = interface_addresses(&iface_name)?;
    let filter = Arc::new(
        args.filter
            .filter(iface.mac, &local_ips)
            .map_err(|e| UsageError(format!("{e} (interface {} has MAC {})", iface_name, iface.mac)))?,
    );
    let program =
        reflector_bpf::cbpf::program(&filter).context("the kernel filter does not fit in classic BPF")?;
    let (backend, why) = args.backend.resolve();
    #[cfg(target_os = "linux")]
    let (backend, why) = if backend == BackendChoice::AfXdp {
        let started = std::time::Instant::now();
        match open_af_xdp(args, &iface_name, &iface, &filter) {
            Ok((sockets, attachment, details)) => {
                let details =
                    format!("{details}; ready in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
                let attachment = Arc::new(attachment);
                let counted = attachment.clone();
                let rejects: KernelRejects = Arc::new(move || counted.rejected().ok());
                let update = |f: &Filter| -> anyhow::Result<()> { attachment.update(f).map_err(Into::into) };
                let result = serve(
                    args,
                    &iface_name,
                    &iface,
                    filter,
                    sockets,
                    Chosen {
                        name: "af-xdp",
                        why,
                        details: &details,
                        kernel_rejects: Some(rejects),
                        kernel_update: Some(&update),
                        reload: &reload,
                        signals: &signals,
                    },
                );
                drop(attachment); // detaches the program (it would go with the process anyway)
                return result;
            }
            // `auto` falls back to af-packet and says why; an explicit choice fails.
            Err(e) if args.backend == BackendChoice::Auto => {
                (BackendChoice::AfPacket, format!("auto: af-packet, because af-xdp failed: {e:#}"))
            }
            Err(e) => return Err(e),
        }
    } else {
        (backend, why.to_string())
    };
    #[cfg(not(target_os = "linux"))]
    let why = why.to_string();
    let why = why.as_str();
    match backend {
        #[cfg(target_os = "linux")]
        BackendChoice::AfPacket | BackendChoice::Auto | BackendChoice::AfXdp => {
            use reflector_io::afpacket::{AfPacket, AfPacketConfig};
            let workers = args.workers.unwrap_or(1);
            let fanout = (workers > 1).then(|| (std::process::id() & 0xffff) as u16);
            let mut backends = Vec::new();
            for _ in 0..workers {
                let config = AfPacketConfig {
                    ifindex: iface.index,
                    mtu: iface.mtu,
                    program: &program,
                    fanout_group: fanout,
                    rx_frames: 4096,
                    tx_frames: 1024,
                    promiscuous: false,
                };
                backends.push(
                    AfPacket::open(&config)
                        .with_context(|| format!("cannot open AF_PACKET on {}", iface_name))?,
                );
            }
            let details = format!("kernel filter {} instructions", program.len());
            serve(
                args,
                &iface_name,
                &iface,
                filter,
                backends,
                Chosen {
                    name: "af-packet",
                    why,
                    details: &details,
                    kernel_rejects: None,
                    kernel_update: None,
                    reload: &reload,
                    signals: &signals,
                },
            )
        }
        #[cfg(not(target_os = "linux"))]
        BackendChoice::AfPacket | BackendChoice::Auto | BackendChoice::AfXdp => {
            Err(UsageError(format!("the {} backend is Linux only (use --backend bpf)", backend.name()))
                .into())
        }
        BackendChoice::Bpf => {
            use reflector_io::bsdbpf::{BpfBackend, configure, device::Device, ioctl};
            if args.workers.is_some_and(|w| w > 1) {
                return Err(UsageError("the bpf backend runs one worker (drop --workers)".into()).into());
            }
            let mut dev = Device::open_first()?;
            let buffer = configure(&mut dev, &iface_name, &program)?;
            let details =
                format!("{}, buffer {} KiB, filter {} instructions", dev.path, buffer / 1024, program.len());
            serve(
                args,
                &iface_name,
                &iface,
                filter,
                vec![BpfBackend::new(dev, buffer, ioctl::NATIVE)],
                Chosen {
                    name: "bpf",
                    why,
                    details: &details,
                    kernel_rejects: None,
                    kernel_update: None,
                    reload: &reload,
                    signals: &signals,
                },
            )
        }
    }
}

/// Attaches the XDP program and opens one AF_XDP socket per served queue.
#[cfg(target_os = "linux")]
fn open_af_xdp(
    args: &RunArgs,
    iface_name: &str,
    iface: &IfaceInfo,
    filter: &Filter,
) -> anyhow::Result<(Vec<reflector_io::xdp::xsk::Xsk>, reflector_io::xdp::Attachment, String)> {
    use reflector_io::xdp::{
        Attachment, rx_queues,
        xsk::{FRAME_SIZE, Xsk},
    };
    // A frame must fit one UMEM frame (no multi-buffer AF_XDP here).
    let largest = iface.mtu as usize + 14 + 8;
    if largest > FRAME_SIZE as usize {
        anyhow::bail!(
            "af-xdp takes frames up to {FRAME_SIZE} bytes and {} has MTU {} (use --backend af-packet, or a smaller MTU)",
            iface_name,
            iface.mtu
        );
    }
    let queues = rx_queues(iface_name);
    let served = match args.workers {
        Some(w) if u32::from(w) > queues => {
            return Err(UsageError(format!(
                "--workers {w}: {} has only {queues} receive queue(s)",
                iface_name
            ))
            .into());
        }
        Some(w) => u32::from(w),
        None => queues,
    };
    let attachment = Attachment::attach(filter, iface.index, iface_name, queues, args.replace)?;
    let mut sockets = Xsk::open_queues(iface.index, served, args.umem_size as usize * 1024 * 1024)
        .with_context(|| format!("AF_XDP sockets on {} queues 0..{served}", iface_name))?;
    for xsk in &mut sockets {
        if args.busy_poll {
            xsk.set_busy_poll()?;
        }
        attachment.register(xsk.queue, xsk.raw_fd())?;
    }
    let copy = if sockets.iter().all(|s| s.zero_copy) { "zero-copy" } else { "copy mode" };
    let mut details = format!(
        "XDP {} mode, {} instructions; AF_XDP {copy}, {} MiB UMEM shared by {} socket{}; queues 0..{}{}",
        attachment.mode,
        attachment.instructions,
        args.umem_size,
        served,
        if served == 1 { "" } else { "s" },
        served,
        if args.busy_poll { "; busy polling" } else { "" }
    );
    if served < queues {
        details.push_str(&format!(" (queues {served}..{queues} go to the stack)"));
    }
    Ok((sockets, attachment, details))
}

/// Brings an interface-wide kernel program in line with a new filter.
type KernelUpdate<'a> = dyn Fn(&Filter) -> anyhow::Result<()> + 'a;

/// The backend in use, as the start line and the counters describe it.
struct Chosen<'a> {
    name: &'static str,
    /// Why this one (for `auto`).
    why: &'a str,
    /// Backend facts for the start line.
    details: &'a str,
    /// Per-reason counts of frames a kernel program rejected before the workers saw them.
    kernel_rejects: Option<KernelRejects>,
    /// Brings an interface-wide kernel program in line with a new filter (af-xdp).
    kernel_update: Option<&'a KernelUpdate<'a>>,
    /// Re-reads the configuration (SIGHUP): the arguments as they would be now.
    reload: &'a dyn Fn() -> anyhow::Result<RunArgs>,
    /// The run's signal flags.
    signals: &'a Signals,
}

/// SIGHUP: reads the configuration again and applies what can change while running (the
/// filter, in the core and in the kernel; the stats format and interval); reports what cannot
/// and keeps its old value. A bad file changes nothing.
fn reload(
    running: &RunArgs,
    chosen: &Chosen<'_>,
    cell: &FilterCell,
    mac: reflector_core::MacAddr,
    format: &std::cell::Cell<StatsFormat>,
    interval: &std::cell::Cell<Duration>,
    tui: bool,
) {
    let say = |msg: String| eprintln!("reflector: SIGHUP: {}", crate::output::one_line(&msg));
    if running.config.is_none() {
        return say("nothing to reload (started without --config)".into());
    }
    let new = match (chosen.reload)() {
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
            if let Some(update) = chosen.kernel_update
                && let Err(e) = update(&f)
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

/// Runs the workers until stopped, printing the start line, stats lines and the summary.
fn serve<B: Backend>(
    args: &RunArgs,
    iface_name: &str,
    iface: &IfaceInfo,
    filter: Arc<Filter>,
    backends: Vec<B>,
    chosen: Chosen<'_>,
) -> anyhow::Result<()> {
    let (backend_name, why, details) = (chosen.name, chosen.why, chosen.details);
    let (_quiet, quiet_note) = hold_test_port(filter.port());

    let stop = chosen.signals.stop.clone();
    let http = args.http.map(|addr| HttpConfig {
        addr,
        token: args.http_token.clone(),
        insecure: args.http_insecure,
    });
    if let Some(h) = &http {
        h.check()?;
    }
    let pin = match &args.cpus {
        None => Pin::Allowed,
        Some(list) => {
            let allowed = allowed_cpus().map_err(|e| UsageError(format!("--cpus: {e}")))?;
            list.check(&allowed, backends.len()).map_err(UsageError)?;
            Pin::Cpus(list.0.clone())
        }
    };
    let cell = FilterCell::new(filter.clone());
    let runtime =
        Runtime::start(backends, cell.clone(), pin, args.latency).context("cannot start worker threads")?;
    let placements: Vec<String> = runtime
        .workers
        .iter()
        .map(|w| match &w.placement {
            Placement::Pinned(cpu) => format!("cpu {cpu}"),
            Placement::Unpinned(why) => format!("unpinned: {why}"),
        })
        .collect();
    // Frames a kernel program rejected never reach the workers: the control plane adds its
    // per-reason counts (as received and rejected frames; their bytes are not counted).
    let mut control = Control::new(
        backend_name,
        iface_name.to_string(),
        iface.mac,
        cell.clone(),
        runtime.workers.iter().zip(&placements).map(|(w, p)| (w.counters.clone(), p.clone())).collect(),
        chosen.kernel_rejects.clone(),
        details.to_string(),
    );
    control.dwell = runtime.workers.iter().filter_map(|w| w.dwell.clone()).collect();
    let ctl = Arc::new(control);
    let http_thread = match http {
        Some(h) => {
            let addr = h.addr;
            match crate::http::start(h, ctl.clone(), stop.clone()) {
                Ok(t) => Some((t, addr)),
                Err(e) => {
                    let _ = runtime.stop();
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let oui = match filter.oui() {
        Some(o) if !filter.oui_families().is_empty() => {
            format!("OUI {:02x}:{:02x}:{:02x} for {}", o[0], o[1], o[2], filter.oui_families())
        }
        _ => "any vendor".into(),
    };
    eprintln!(
        "reflector: {backend_name} on {} ({}, mtu {}{}) [{why}]; port {}; signatures {}; {oui}; mode {}; {} worker{} ({}); {details}; {quiet_note}",
        iface_name,
        iface.mac,
        iface.mtu,
        if iface.running { "" } else { ", no carrier" },
        if filter.port() == 0 { "any".to_string() } else { filter.port().to_string() },
        filter.families(),
        filter.mode().name(),
        placements.len(),
        if placements.len() == 1 { "" } else { "s" },
        placements.join(", "),
    );
    if let Some((_, addr)) = &http_thread {
        eprintln!(
            "reflector: HTTP on http://{addr} (/api/v1/status, /api/v1/stats, /api/v1/workers, /api/v1/config, /metrics)"
        );
    }

    let ctx =
        Context { backend: backend_name, interface: iface_name.to_string(), placements: placements.clone() };
    let format = std::cell::Cell::new(args.stats.unwrap_or(StatsFormat::Text));
    let interval = std::cell::Cell::new(args.stats_interval);
    let tui = crate::tui::wanted(args.tui, args.stats.is_some());
    // A stats line that cannot be written ends the run: quietly when stdout was closed
    // (`| head`), with a one-line error otherwise (`> /dev/full`).
    let output_error: std::cell::RefCell<Option<crate::output::OutputError>> = Default::default();
    let write_line = |text: String| {
        if let Err(e) = crate::output::line(text) {
            output_error.borrow_mut().get_or_insert(e);
            stop.store(true, Ordering::Relaxed);
        }
    };
    if let (false, Some(h)) = (tui, stats::header(format.get())) {
        write_line(h.to_string());
    }
    let hup = &chosen.signals.hup;
    let started = Instant::now();
    let mut last = (started, ctl.totals());
    let mut next_stats = started + args.stats_interval;
    let end = args.duration.map(|d| started + d);
    // Every interval: the rates of that interval for the API and UI, and a stats line. And,
    // after SIGHUP, the configuration read again.
    let mut link = LinkWatch::new(iface_name, iface);
    let link_error: std::cell::RefCell<Option<anyhow::Error>> = Default::default();
    let mut tick = || {
        if hup.swap(false, Ordering::Relaxed) {
            reload(args, &chosen, &cell, iface.mac, &format, &interval, tui);
        }
        let now = Instant::now();
        if let Err(e) = link.check(now) {
            link_error.borrow_mut().get_or_insert(e);
            stop.store(true, Ordering::Relaxed);
        }
        if now >= next_stats {
            let totals = ctl.totals();
            let rates = Rates::over(&totals.delta(&last.1), now - last.0);
            *ctl.rates.lock().expect("rates lock") = rates;
            if !tui {
                let dwell = ctl.dwell();
                write_line(stats::interval_line(
                    format.get(),
                    &ctx,
                    now - started,
                    &totals,
                    &rates,
                    dwell.as_ref(),
                ));
            }
            last = (now, totals);
            next_stats = now.max(next_stats) + interval.get();
        }
        next_stats
    };
    if tui {
        crate::tui::run(&ctl, &stop, end, || {
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
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed); // ends the HTTP thread too
    let workers = match runtime.stop() {
        Ok(workers) => workers,
        // A worker that failed because its interface went away: say that.
        Err(e) => {
            let gone = link_error.take().or_else(|| link.check(Instant::now() + LinkWatch::EVERY).err());
            return Err(gone.unwrap_or_else(|| anyhow::Error::new(e).context("a worker failed")));
        }
    };
    if let Some((t, _)) = http_thread {
        let _ = t.join();
    }
    if let Some(e) = output_error.take() {
        return Err(e.into());
    }
    let cpu = reflector_sys::process::process_cpu_time().ok();
    let kernel = ctl.kernel_counters();
    crate::output::line(stats::summary(
        format.get(),
        &ctx,
        elapsed,
        &workers,
        (kernel != Counters::default()).then_some(&kernel),
        ctl.dwell().as_ref(),
        cpu,
    ))?;
    link_error.take().map_or(Ok(()), Err)
}

/// The interface as the control loop watches it: a change of link state or MTU is said on
/// stderr; its deletion ends the run (exit code 1), since no data path survives it.
struct LinkWatch<'a> {
    name: &'a str,
    index: u32,
    running: bool,
    mtu: u32,
    started_mtu: u32,
    next: Instant,
}

impl<'a> LinkWatch<'a> {
    /// How often the interface is looked at (a few ioctls).
    const EVERY: Duration = Duration::from_millis(200);

    fn new(name: &'a str, iface: &IfaceInfo) -> Self {
        LinkWatch {
            name,
            index: iface.index,
            running: iface.running,
            mtu: iface.mtu,
            started_mtu: iface.mtu,
            next: Instant::now(),
        }
    }

    fn check(&mut self, now: Instant) -> anyhow::Result<()> {
        if now < self.next {
            return Ok(());
        }
        self.next = now + Self::EVERY;
        let name = self.name;
        let info = match iface_info(name) {
            Err(IfaceError::NotFound(_)) => anyhow::bail!("interface {name} was deleted"),
            // Looked up again at the next check.
            Err(_) => return Ok(()),
            Ok(info) if info.index != self.index => {
                anyhow::bail!("interface {name} was deleted (another interface now has its name)")
            }
            Ok(info) => info,
        };
        if info.running != self.running {
            self.running = info.running;
            let state = if info.running { "up again: reflecting" } else { "down (no carrier): waiting" };
            eprintln!("reflector: {name}: link {state}");
        }
        if info.mtu != self.mtu {
            self.mtu = info.mtu;
            let note = if info.mtu > self.started_mtu {
                format!(
                    "; the data path was sized for MTU {} at start: longer frames are counted (af-packet: rx_invalid, af-xdp: rx_dropped), not reflected, until a restart",
                    self.started_mtu
                )
            } else {
                String::new()
            };
            eprintln!("reflector: {name}: MTU now {}{note}", info.mtu);
        }
        Ok(())
    }
}
