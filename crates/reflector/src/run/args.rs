//! The settings of a run: the command line with the configuration file filled in under it, and
//! the checks that need nothing from the system (shared with `config check`).

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use reflector_sys::iface::{IfaceError, IfaceInfo, iface_info};

use super::open::{Backend, BackendChoice};
use crate::cpus::CpuList;
use crate::filter_args::FilterArgs;
use crate::http::HttpConfig;
use crate::input::UsageError;
use crate::stats::StatsFormat;

/// Arguments of `reflector run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Interface to reflect on [default: `interface` from --config].
    pub(super) iface: Option<String>,
    /// Configuration file (TOML); command-line flags override it. See examples/reflector.toml.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<std::path::PathBuf>,
    /// Data path.
    #[arg(long, value_enum, default_value = "auto")]
    pub(super) backend: BackendChoice,
    #[command(flatten)]
    pub(super) filter: FilterArgs,
    /// Worker threads, each pinned to its own CPU [default: af-packet 1; af-xdp one per receive
    /// queue; with af-xdp, N workers serve queues 0..N and the other queues go to the stack].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(super) workers: Option<u16>,
    /// Pin worker i to the i-th of these CPUs, e.g. 2,3 or 2-5 [default: the CPUs the process
    /// may use, in order]. Only the workers are pinned; the control plane runs anywhere.
    #[arg(long, value_name = "LIST")]
    pub(super) cpus: Option<CpuList>,
    /// af-xdp: UMEM in MiB (4 KiB frames), shared by the sockets (one per queue) in equal parts.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(super) umem_size: u32,
    /// af-xdp: remove another XDP program attached to the interface instead of refusing.
    #[arg(long)]
    pub(super) replace: bool,
    /// af-xdp: spin on the rings instead of sleeping when idle (lowest latency; a core per worker).
    #[arg(long)]
    pub(super) busy_poll: bool,
    /// Measure dwell times (receive to transmit submission): p50 / p99 / p999 in the stats.
    #[arg(long)]
    pub(super) latency: bool,
    /// Serve the REST API and /metrics on ADDR:PORT (loopback unless a token or --http-insecure).
    #[arg(long, value_name = "ADDR:PORT")]
    pub(super) http: Option<std::net::SocketAddr>,
    /// Bearer token the HTTP server requires (needed for a non-loopback --http).
    #[arg(long, value_name = "TOKEN")]
    pub(super) http_token: Option<String>,
    /// Serve a non-loopback --http without a token (read-only then: counter reset is refused).
    #[arg(long)]
    pub(super) http_insecure: bool,
    /// Statistics format on stdout [default: text; the terminal UI when stdout is a terminal].
    #[arg(long, value_enum)]
    pub(super) stats: Option<StatsFormat>,
    /// Show the terminal UI (q quits).
    #[arg(long, conflicts_with = "stats")]
    pub(super) tui: bool,
    /// Seconds between statistics lines.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::input::parse_interval)]
    pub(super) stats_interval: Duration,
    /// Stop after this many seconds (default: run until SIGINT / SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = crate::input::parse_secs)]
    pub(super) duration: Option<Duration>,
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
pub(super) fn interface_addresses(name: &str) -> anyhow::Result<Vec<std::net::IpAddr>> {
    reflector_sys::iface::iface_addresses(name)
        .with_context(|| format!("cannot read the addresses of {name}"))
}

/// The arguments with the config file's settings filled in, checked as `run` checks them before
/// it touches the system, and the interface to run on.
pub(super) fn with_config(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<(RunArgs, String)> {
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
    let backend = args.backend.resolve();
    let xdp_only =
        [(args.replace, "--replace"), (args.busy_poll, "--busy-poll"), (args.umem_size != 16, "--umem-size")];
    if backend != Backend::AfXdp
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
