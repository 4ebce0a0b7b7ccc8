//! `reflector run IFACE`: reflect test packets on a live interface until stopped.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use reflector_core::Filter;
use reflector_io::backend::Backend;
use reflector_io::iface::{IfaceError, IfaceInfo, iface_info};
use reflector_io::worker::{Placement, Runtime};

use crate::UsageError;
use crate::filter_args::FilterArgs;
use crate::stats::{self, Context, Rates, StatsFormat};

/// Which data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The best one available here: af-packet on Linux, bpf on macOS and FreeBSD.
    Auto,
    /// AF_PACKET with mmap rings and a kernel pre-filter (Linux).
    AfPacket,
    /// A /dev/bpf device with the same classic BPF filter (macOS, FreeBSD); one worker.
    Bpf,
}

impl BackendChoice {
    /// The backend `auto` stands for on this system, and why.
    fn resolve(self) -> (BackendChoice, &'static str) {
        match self {
            BackendChoice::Auto if cfg!(target_os = "linux") => {
                (BackendChoice::AfPacket, "auto: af-packet (Linux)")
            }
            BackendChoice::Auto => (BackendChoice::Bpf, "auto: bpf (no AF_PACKET on this system)"),
            other => (other, "as asked"),
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::AfPacket => "af-packet",
            BackendChoice::Bpf => "bpf",
        }
    }
}

/// Arguments of `reflector run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to reflect on.
    iface: String,
    /// Data path.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    #[command(flatten)]
    filter: FilterArgs,
    /// Worker threads (AF_PACKET fanout members), each pinned to its own CPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Statistics format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    stats: StatsFormat,
    /// Seconds between statistics lines.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::parse_secs)]
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

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let iface = iface_info(&args.iface).map_err(|e| -> anyhow::Error {
        match e {
            IfaceError::NotFound(_) | IfaceError::BadName(_) => UsageError(e.to_string()).into(),
            IfaceError::Sys(e) => anyhow::anyhow!("cannot read interface {}: {e}", args.iface),
        }
    })?;
    if !iface.up {
        anyhow::bail!("interface {} is down (bring it up: ip link set {} up)", args.iface, args.iface);
    }
    let filter = Arc::new(
        args.filter
            .filter(iface.mac)
            .map_err(|e| UsageError(format!("{e} (interface {} has MAC {})", args.iface, iface.mac)))?,
    );
    let program =
        reflector_bpf::cbpf::program(&filter).context("the kernel filter does not fit in classic BPF")?;
    let (backend, why) = args.backend.resolve();
    match backend {
        #[cfg(target_os = "linux")]
        BackendChoice::AfPacket | BackendChoice::Auto => {
            use reflector_io::afpacket::{AfPacket, AfPacketConfig};
            let fanout = (args.workers > 1).then(|| (std::process::id() & 0xffff) as u16);
            let mut backends = Vec::new();
            for _ in 0..args.workers {
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
                        .with_context(|| format!("cannot open AF_PACKET on {}", args.iface))?,
                );
            }
            let details = format!("kernel filter {} instructions", program.len());
            serve(args, &iface, filter, backends, "af-packet", why, &details)
        }
        #[cfg(not(target_os = "linux"))]
        BackendChoice::AfPacket | BackendChoice::Auto => {
            Err(UsageError("the af-packet backend is Linux only (use --backend bpf)".into()).into())
        }
        BackendChoice::Bpf => {
            use reflector_io::bsdbpf::{BpfBackend, configure, device::Device, ioctl};
            if args.workers > 1 {
                return Err(UsageError("the bpf backend runs one worker (drop --workers)".into()).into());
            }
            let mut dev = Device::open_first()?;
            let buffer = configure(&mut dev, &args.iface, &program)?;
            let details =
                format!("{}, buffer {} KiB, filter {} instructions", dev.path, buffer / 1024, program.len());
            serve(
                args,
                &iface,
                filter,
                vec![BpfBackend::new(dev, buffer, ioctl::NATIVE)],
                "bpf",
                why,
                &details,
            )
        }
    }
}

/// Runs the workers until stopped, printing the start line, stats lines and the summary.
fn serve<B: Backend>(
    args: &RunArgs,
    iface: &IfaceInfo,
    filter: Arc<Filter>,
    backends: Vec<B>,
    backend_name: &'static str,
    why: &str,
    details: &str,
) -> anyhow::Result<()> {
    let (_quiet, quiet_note) = hold_test_port(filter.port());

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install signal handlers")?;
    }
    let runtime = Runtime::start(backends, filter.clone(), true).context("cannot start worker threads")?;
    let placements: Vec<String> = runtime
        .workers
        .iter()
        .map(|w| match &w.placement {
            Placement::Pinned(cpu) => format!("cpu {cpu}"),
            Placement::Unpinned(why) => format!("unpinned: {why}"),
        })
        .collect();
    let oui = match filter.oui() {
        Some(o) if !filter.oui_families().is_empty() => {
            format!("OUI {:02x}:{:02x}:{:02x} for {}", o[0], o[1], o[2], filter.oui_families())
        }
        _ => "any vendor".into(),
    };
    eprintln!(
        "reflector: {backend_name} on {} ({}, mtu {}{}) [{why}]; port {}; signatures {}; {oui}; mode {}; {} worker{} ({}); {details}; {quiet_note}",
        args.iface,
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

    let ctx =
        Context { backend: backend_name, interface: args.iface.clone(), placements: placements.clone() };
    if let Some(h) = stats::header(args.stats) {
        println!("{h}");
    }
    let started = Instant::now();
    let mut last = (started, runtime.totals());
    let mut next_stats = started + args.stats_interval;
    let end = args.duration.map(|d| started + d);
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) || runtime.any_finished() {
            break;
        }
        if now >= next_stats {
            let totals = runtime.totals();
            let rates = Rates::over(&totals.delta(&last.1), now - last.0);
            println!("{}", stats::interval_line(args.stats, &ctx, now - started, &totals, &rates));
            last = (now, totals);
            next_stats += args.stats_interval;
        }
        let mut wake = next_stats;
        if let Some(e) = end {
            wake = wake.min(e);
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
    }
    let elapsed = started.elapsed();
    let workers = runtime.stop().context("a worker failed")?;
    let cpu = reflector_io::os::process_cpu_time().ok();
    println!("{}", stats::summary(args.stats, &ctx, elapsed, &workers, cpu));
    Ok(())
}
