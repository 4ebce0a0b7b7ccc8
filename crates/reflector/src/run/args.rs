//! The settings of a run: the command line with the configuration file filled in under it, and
//! the checks that need nothing from the system (shared with `config check`).

use std::time::Duration;

use clap::ValueEnum;

use reflector_io::datapath::Backend;

use crate::backend_choice::BackendChoice;
use crate::config::ConfigFile;
use crate::cpus::CpuList;
use crate::filter_args::FilterArgs;
use crate::http::HttpConfig;
use crate::input::UsageError;
use crate::stats::StatsFormat;

crate::settings::settings! {
    /// Arguments of `reflector run`: every setting, with the filter's.
    pub struct RunArgs {
        #[command(flatten)]
        #[serde(flatten)]
        pub filter: FilterArgs,
    }

    /// Interface to reflect on [default: `interface` from --config].
    #[arg(value_name = "IFACE", value_parser = non_empty)]
    iface: Option<String> => key "interface": String, reload Restart;
    /// Configuration file (TOML); command-line flags override it. See examples/reflector.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf> => key None, reload Restart;
    /// Data path.
    #[arg(long, value_enum, default_value = "auto")]
    #[serde(serialize_with = "value_name")]
    backend: BackendChoice => key "backend": String, reload Restart;
    /// Worker threads, each pinned to its own CPU [default: af-packet 1; af-xdp one per receive
    /// queue; with af-xdp, N workers serve queues 0..N and the other queues go to the stack].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16> => key "workers": u16, reload Restart;
    /// Pin worker i to the i-th of these CPUs, e.g. 2,3 or 2-5 [default: the CPUs the process
    /// may use, in order]. Only the workers are pinned; the control plane runs anywhere.
    #[arg(long, value_name = "LIST")]
    #[serde(serialize_with = "crate::settings::display_opt")]
    cpus: Option<CpuList> => key "cpus": String, reload Restart;
    /// af-xdp: UMEM in MiB (4 KiB frames), shared by the sockets (one per queue) in equal parts.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    umem_size: u32 => key "umem_size_mib": u32, reload Restart;
    /// af-xdp: remove another XDP program attached to the interface instead of refusing.
    #[arg(long)]
    replace: bool => key "replace": bool, reload Restart;
    /// af-xdp, dpdk: spin on the rings instead of sleeping when idle (lowest latency; a core
    /// per worker).
    #[arg(long)]
    busy_poll: bool => key "busy_poll": bool, reload Restart;
    /// dpdk: the EAL's arguments, separated by spaces, as dpdk-testpmd takes them before `--`
    /// [default: "--no-huge --no-pci --no-shconf --no-telemetry -m 256 --log-level=warning
    /// --vdev=net_af_packet0,iface=IFACE,qpairs=WORKERS"].
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true, value_parser = non_empty)]
    dpdk_eal: Option<String> => key "dpdk.eal": String, reload Restart;
    /// dpdk: the port, by name (a --vdev's name, or a PCI address) [default: the first DPDK
    /// finds]. It must be the interface's (its MAC).
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    dpdk_port: Option<String> => key "dpdk.port": String, reload Restart;
    /// dpdk: make the kernel interface NAME (DPDK's net_tap) with the port's MAC, and run on it:
    /// frames that are not answered go to the host through it, and what the host sends on it
    /// goes out of the port (ARP, ping, SSH keep working). Needs --dpdk-eal; no IFACE then.
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    dpdk_tap: Option<String> => key "dpdk.tap": String, reload Restart;
    /// Measure dwell times (receive to transmit submission): p50 / p99 / p999 in the stats.
    #[arg(long)]
    latency: bool => key "latency": bool, reload Restart;
    /// Serve the REST API and /metrics on ADDR:PORT (loopback unless a token or --http-insecure).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    http: Option<std::net::SocketAddr> => key "http.listen": String, reload Restart;
    /// Bearer token the HTTP server requires (needed for a non-loopback --http).
    #[arg(long, value_name = "TOKEN", value_parser = non_empty)]
    #[serde(serialize_with = "crate::settings::secret")]
    http_token: Option<String> => key "http.token": String, reload Restart;
    /// Serve a non-loopback --http without a token (read-only then: counter reset is refused).
    #[arg(long)]
    http_insecure: bool => key "http.insecure": bool, reload Restart;
    /// Serve --http as HTTPS with this certificate (PEM: the server's, then its chain). Without
    /// it, a non-loopback --http with a token gets a self-signed certificate made at start (its
    /// SHA-256 fingerprint on the start line).
    #[arg(long, value_name = "FILE")]
    http_tls_cert: Option<std::path::PathBuf> => key "http.tls_cert": String, reload Restart;
    /// The private key (PEM) of --http-tls-cert.
    #[arg(long, value_name = "FILE")]
    http_tls_key: Option<std::path::PathBuf> => key "http.tls_key": String, reload Restart;
    /// Write frames to FILE as pcapng while running (a new file, or one replaced; a FIFO or a
    /// device is written through): the reflections as sent, or what --capture-what says, each
    /// with its verdict in the packet's comment. What the XDP program handles (af-xdp: its
    /// rejects; xdp-tx: all) is sampled, at most --capture-kernel-limit frames a second.
    #[arg(long, value_name = "FILE")]
    capture: Option<std::path::PathBuf> => key "capture.file": String, reload Restart;
    /// The frames --capture writes: reflected, rejected (as received, with the reason) or all
    /// [default: reflected].
    #[arg(long, value_enum, value_name = "WHAT")]
    #[serde(serialize_with = "value_name_opt")]
    capture_what: Option<crate::capture::CaptureWhat> => key "capture.what": String, reload Restart;
    /// Start a new --capture file when the current one would pass MB megabytes (10^6 bytes):
    /// the full one becomes NAME.1.EXT, older ones NAME.2.EXT and so on (as does a file with
    /// frames that an earlier run left at start).
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    capture_max_mb: Option<u32> => key "capture.max_mb": u32, reload Restart;
    /// Files --capture-max-mb keeps, the current one included (the oldest is removed)
    /// [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    capture_files: Option<u32> => key "capture.files": u32, reload Restart;
    /// Most frames a second the XDP program samples for captures (af-xdp: the frames it
    /// rejects; xdp-tx: all), in bursts of a tenth of that; the others are counted as not
    /// captured.
    #[arg(long, value_name = "PPS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    capture_kernel_limit: u32 => key "capture.kernel_limit": u32, reload Restart;
    /// Keep the most recent frames (reflected and rejected) in memory, up to MB megabytes
    /// (10^6 bytes), so that a capture can be of the last seconds: /api/v1/capture?last=N and
    /// the dashboard's Capture button (needs --http).
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(1..=4096))]
    capture_keep_mb: Option<u32> => key "capture.keep_mb": u32, reload Restart;
    /// Statistics format on stdout [default: text; the terminal UI when stdout is a terminal].
    #[arg(long, value_enum)]
    #[serde(serialize_with = "value_name_opt")]
    stats: Option<StatsFormat> => key "stats.format": String, reload Live;
    /// Show the terminal UI (q quits).
    #[arg(long, conflicts_with = "stats")]
    tui: bool => key None, reload Restart;
    /// Seconds between statistics lines.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::input::parse_interval)]
    #[serde(serialize_with = "crate::settings::seconds")]
    stats_interval: Duration => key "stats.interval": f64, reload Live;
    /// Stop after this many seconds (default: run until SIGINT / SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = crate::input::parse_secs)]
    #[serde(serialize_with = "crate::settings::seconds_opt")]
    duration: Option<Duration> => key "duration": f64, reload Restart;
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() { Err("must not be empty".into()) } else { Ok(s.to_string()) }
}

fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| format!("'{s}' is not ADDR:PORT"))
}

/// A clap value enum by its name on the command line.
fn value_name<T: ValueEnum, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.to_possible_value().as_ref().map_or("", |p| p.get_name()))
}

fn value_name_opt<T: ValueEnum, S: serde::Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => value_name(v, s),
        None => s.serialize_none(),
    }
}

impl RunArgs {
    /// Every setting of `run`: the filter's, then the rest.
    pub fn settings() -> impl Iterator<Item = &'static crate::settings::Setting> {
        FilterArgs::SETTINGS.iter().chain(RunArgs::SETTINGS)
    }

    /// Every setting by its file key (by its name for a command-line-only one), as
    /// `/api/v1/config` shows them.
    pub fn to_json(&self) -> serde_json::Value {
        let serde_json::Value::Object(by_field) = serde_json::to_value(self).unwrap_or_default() else {
            return serde_json::Value::Null;
        };
        let named = RunArgs::settings().filter_map(|s| {
            let value = by_field.get(s.id)?;
            let value = match (s.inverted, value.as_bool()) {
                (true, Some(on)) => serde_json::Value::Bool(!on),
                _ => value.clone(),
            };
            Some((s.key.unwrap_or(s.id).to_string(), value))
        });
        serde_json::Value::Object(named.collect())
    }

    /// Takes the setting `id` from `other`.
    fn take(&mut self, other: &RunArgs, id: &str) {
        if !self.filter.set_from(&other.filter, id) {
            self.set_from(other, id);
        }
    }

    /// The keys of settings that need a restart and differ in `new`.
    pub(super) fn needs_restart(&self, new: &RunArgs) -> Vec<&'static str> {
        let mut keys = self.filter.restart_changes(&new.filter);
        keys.extend(self.restart_changes(new));
        keys
    }
}

/// The arguments with the config file's settings filled in, checked as `run` checks them before
/// it touches the system, and the interface to run on.
pub(super) fn with_config(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<(RunArgs, String)> {
    let a = apply_config(args, matches)?;
    check_settings(&a)?;
    let iface =
        a.iface.clone().or_else(|| a.dpdk_tap.clone()).ok_or_else(|| {
            UsageError("no interface given (pass IFACE, or set interface in --config)".into())
        })?;
    Ok((a, iface))
}

/// `reflector config check FILE`: the file read as `run --config FILE` reads it, with every
/// check `run` makes before it looks at the interface.
pub fn check_config_file(path: &std::path::Path) -> anyhow::Result<()> {
    use clap::{Args as _, FromArgMatches as _};
    let command = RunArgs::augment_args(clap::Command::new("run").no_binary_name(true));
    let matches = command.try_get_matches_from([std::ffi::OsStr::new("--config"), path.as_os_str()])?;
    let args = RunArgs::from_arg_matches(&matches)?;
    let settings = apply_config(&args, &matches)?;
    check_settings(&settings)?;
    // A problem with the file's settings, as the parser's are (exit code 2), naming the file.
    check_files(&settings).map_err(|e| UsageError(format!("{}: {e:#}", path.display())).into())
}

/// The files a run would read or write, as far as they can be judged without running: the TLS
/// certificate and key, loaded as a run loads them, and the capture file's directory.
fn check_files(args: &RunArgs) -> anyhow::Result<()> {
    if let Some(http) = args.http_config().filter(|h| h.tls_cert.is_some()) {
        http.tls()?;
    }
    if let Some(path) = &args.capture {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            anyhow::bail!(
                "cannot write the capture file {}: {} is not a directory",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// The checks of settings that need nothing from the system: the filter (with a stand-in MAC;
/// the interface's own is checked again at start), the HTTP access rule, and flags that only
/// one backend takes.
fn check_settings(args: &RunArgs) -> Result<(), UsageError> {
    args.filter.filter(reflector_core::MacAddr([0x02, 0, 0, 0, 0, 1]), &[])?;
    if let Some(http) = args.http_config() {
        http.check()?;
    }
    let backend = args.backend.resolve();
    check_capture(args)?;
    if args.umem_size != 16 && backend != Backend::AfXdp && args.backend != BackendChoice::Auto {
        return Err(UsageError("--umem-size applies to --backend af-xdp only".into()));
    }
    if args.busy_poll
        && !matches!(backend, Backend::AfXdp | Backend::Dpdk)
        && args.backend != BackendChoice::Auto
    {
        return Err(UsageError("--busy-poll applies to --backend af-xdp and dpdk only".into()));
    }
    let dpdk_only = [
        (args.dpdk_eal.is_some(), "--dpdk-eal"),
        (args.dpdk_port.is_some(), "--dpdk-port"),
        (args.dpdk_tap.is_some(), "--dpdk-tap"),
    ];
    if backend != Backend::Dpdk
        && let Some((_, flag)) = dpdk_only.iter().find(|(set, _)| *set)
    {
        return Err(UsageError(format!("{flag} applies to --backend dpdk only")));
    }
    if let Some(tap) = &args.dpdk_tap {
        if args.dpdk_eal.is_none() {
            return Err(UsageError(
                "--dpdk-tap needs --dpdk-eal naming the port (a PCI address such as -a 0000:00:04.0, or a --vdev)"
                    .into(),
            ));
        }
        if args.iface.as_ref().is_some_and(|i| i != tap) {
            return Err(UsageError(format!(
                "with --dpdk-tap the run is on the interface {tap} that DPDK makes: give no IFACE (the port is named by --dpdk-eal)"
            )));
        }
    }
    if args.replace && !matches!(backend, Backend::AfXdp | Backend::XdpTx) {
        return Err(UsageError("--replace applies to --backend af-xdp and xdp-tx only".into()));
    }
    let workers_only =
        [(args.workers.is_some(), "--workers"), (args.cpus.is_some(), "--cpus"), (args.latency, "--latency")];
    if backend == Backend::XdpTx
        && let Some((_, flag)) = workers_only.iter().find(|(set, _)| *set)
    {
        return Err(UsageError(format!(
            "{flag} does not apply to --backend xdp-tx: it has no workers (the driver reflects on the CPU that receives)"
        )));
    }
    Ok(())
}

/// The capture settings go together.
fn check_capture(args: &RunArgs) -> Result<(), UsageError> {
    let needs_file = [
        (args.capture_what.is_some(), "--capture-what"),
        (args.capture_max_mb.is_some(), "--capture-max-mb"),
        (args.capture_files.is_some(), "--capture-files"),
    ];
    if args.capture.is_none()
        && let Some((_, flag)) = needs_file.iter().find(|(set, _)| *set)
    {
        return Err(UsageError(format!("{flag} needs --capture FILE")));
    }
    if args.capture_keep_mb.is_some() && args.http.is_none() {
        return Err(UsageError(
            "--capture-keep-mb needs --http (the recent frames are read over /api/v1/capture?last=N)".into(),
        ));
    }
    if args.capture_files.is_some() && args.capture_max_mb.is_none() {
        return Err(UsageError(
            "--capture-files needs --capture-max-mb (the size at which a file is full)".into(),
        ));
    }
    if args.capture.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(UsageError("--capture must not be empty".into()));
    }
    Ok(())
}

impl RunArgs {
    /// The HTTP server's settings, when it is asked for.
    pub(super) fn http_config(&self) -> Option<HttpConfig> {
        self.http.map(|addr| HttpConfig {
            addr,
            token: self.http_token.clone(),
            insecure: self.http_insecure,
            tls_cert: self.http_tls_cert.clone(),
            tls_key: self.http_tls_key.clone(),
        })
    }

    /// Whether the run may capture (a capture file, or the HTTP server's `/api/v1/capture`):
    /// then the workers' frames pass a tap and the XDP program can sample.
    pub fn may_capture(&self) -> bool {
        self.capture.is_some() || self.http.is_some()
    }

    /// The capture file the settings ask for.
    pub fn capture_file(&self) -> Option<crate::capture::CaptureFile<'_>> {
        self.capture.as_deref().map(|path| crate::capture::CaptureFile {
            path,
            what: self.capture_what.unwrap_or(crate::capture::CaptureWhat::Reflected).into(),
            max_mb: self.capture_max_mb,
            files: self.capture_files.unwrap_or(crate::capture::DEFAULT_FILES),
        })
    }
}

/// The arguments with the config file's settings filled in where the command line gave none.
fn apply_config(args: &RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<RunArgs> {
    let mut a = args.clone();
    if let Some(path) = &args.config {
        let (from_file, ids) = read_settings(&ConfigFile::load(path)?)?;
        for id in ids {
            if matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
                a.take(&from_file, id);
            }
        }
    }
    Ok(a)
}

/// The command `run` parses, for file values as for flags.
fn command() -> clap::Command {
    use clap::Args as _;
    RunArgs::augment_args(clap::Command::new("run").no_binary_name(true))
}

/// The settings a file makes: each entry turned into the arguments of its setting's flag and
/// checked by the same parser as the command line, then all of them parsed together. Returns
/// them (the rest at their defaults) and the ids of the settings the file set.
fn read_settings(file: &ConfigFile) -> Result<(RunArgs, Vec<&'static str>), UsageError> {
    use clap::FromArgMatches as _;
    let cmd = command();
    let mut all = Vec::new();
    let mut ids = Vec::new();
    for entry in &file.entries {
        let Some(setting) = RunArgs::settings().find(|s| s.key == Some(entry.key.as_str())) else {
            return Err(unknown_key(file, entry));
        };
        let arg =
            cmd.get_arguments().find(|a| a.get_id() == setting.id).expect("every setting is an argument");
        let flag = arg.get_long();
        let key = setting.key.unwrap_or(setting.id);
        let value = entry.value.clone();
        let args = FilterArgs::file_args(key, value.clone(), flag)
            .or_else(|| RunArgs::file_args(key, value, flag))
            .expect("every key has a file type")
            .map_err(|e| {
                let line = e.field.and_then(|f| entry.field_lines.get(f).copied()).unwrap_or(entry.line);
                let shown = match (e.field, e.name_field) {
                    (Some(f), true) => format!("{key}.{f}"),
                    _ => key.to_string(),
                };
                file.error(line, &shown, &e.message)
            })?;
        if let Err(e) = cmd.clone().try_get_matches_from(&args) {
            return Err(file.error(entry.line, key, &clap_message(&e, arg, key, &args)));
        }
        all.extend(args);
        ids.push(setting.id);
    }
    let matches = cmd.try_get_matches_from(&all).map_err(|e| {
        let message = e.to_string();
        let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ");
        UsageError(format!("{}: {first}", file.name))
    })?;
    let settings =
        RunArgs::from_arg_matches(&matches).map_err(|e| UsageError(format!("{}: {e}", file.name)))?;
    Ok((settings, ids))
}

/// What the parser of `arg` said about the file value `args` of `key`, in one line.
fn clap_message(e: &clap::Error, arg: &clap::Arg, key: &str, args: &[std::ffi::OsString]) -> String {
    use clap::error::ErrorKind;
    let value = args.last().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
    match e.kind() {
        ErrorKind::ValueValidation => {
            std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
        }
        ErrorKind::InvalidValue => {
            let names: Vec<String> =
                arg.get_possible_values().iter().map(|p| p.get_name().to_string()).collect();
            let what = key.rsplit('.').next().unwrap_or(key);
            format!("unknown {what} '{value}' (expected {})", or_list(&names))
        }
        _ => {
            let message = e.to_string();
            message.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
        }
    }
}

/// "a, b or c".
fn or_list(names: &[String]) -> String {
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// "unknown field `x`, expected one of `a`, `b`": the keys the file may hold where `entry` is.
fn unknown_key(file: &ConfigFile, entry: &crate::config::Entry) -> UsageError {
    let (section, name) = match entry.key.split_once('.') {
        Some((section, name))
            if RunArgs::settings().any(|s| s.key.is_some_and(|k| k.starts_with(&format!("{section}.")))) =>
        {
            (Some(section), name)
        }
        _ => (None, entry.key.split('.').next().unwrap_or(&entry.key)),
    };
    let mut expected: Vec<&str> = Vec::new();
    for key in RunArgs::settings().filter_map(|s| s.key) {
        let here = match (section, key.split_once('.')) {
            (None, None) => Some(key),
            (None, Some((s, _))) => Some(s),
            (Some(sec), Some((s, k))) if s == sec => Some(k),
            _ => None,
        };
        if let Some(k) = here
            && !expected.contains(&k)
        {
            expected.push(k);
        }
    }
    let quoted: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    let list = match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        many => format!("one of {}", many.join(", ")),
    };
    UsageError(format!("{}:{}: unknown field `{name}`, expected {list}", file.name, entry.line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches as _;

    /// The settings a file's text makes (the rest at their defaults).
    fn read(text: &str) -> Result<RunArgs, String> {
        let file = ConfigFile::parse(text, "r.toml").map_err(|e| e.0)?;
        read_settings(&file).map(|(args, _)| args).map_err(|e| e.0)
    }

    fn err(text: &str) -> String {
        read(text).unwrap_err()
    }

    fn cli(args: &[&str]) -> RunArgs {
        RunArgs::from_arg_matches(&command().try_get_matches_from(args).unwrap()).unwrap()
    }

    const EXAMPLE: &str = include_str!("../../../../examples/reflector.toml");

    #[test]
    fn the_shipped_example_is_valid() {
        let a = read(EXAMPLE).unwrap();
        assert_eq!(a.iface.as_deref(), Some("eth0"));
        assert_eq!(a.filter.port, 3842);
        assert_eq!(a.filter.mode, reflector_core::Mode::All);
        assert_eq!(a.filter.custom_sig.len(), 1);
        assert_eq!(a.stats_interval, Duration::from_secs(1));
    }

    #[test]
    fn every_key_is_read() {
        let a = read(
            r#"
interface = "va"
backend = "af-packet"
mode = "mac-ip"
port = 9
signatures = ["ito", "custom"]
oui = "52:54:00"
oui_filter = true
oui_scope = ["ito"]
workers = 2
cpus = "0-1"
umem_size_mib = 32
busy_poll = true
replace = true
duration = 2.5
[stats]
format = "csv"
interval = 0.5
[[signature]]
offset = 0
hex = "0xdead"
"#,
        )
        .unwrap();
        assert_eq!(a.backend, BackendChoice::Named(Backend::AfPacket));
        assert_eq!((a.filter.port, a.workers, a.umem_size), (9, Some(2), 32));
        assert_eq!(a.cpus, Some(CpuList(vec![0, 1])));
        assert_eq!(a.filter.oui, [0x52, 0x54, 0x00]);
        assert_eq!(a.filter.sig.unwrap().to_string(), "ito,custom");
        assert_eq!(a.duration, Some(Duration::from_millis(2500)));
        assert_eq!(a.stats, Some(StatsFormat::Csv));
        assert_eq!(a.filter.custom_sig[0].bytes(), &[0xde, 0xad]);
        assert!(!a.filter.no_oui_filter && a.busy_poll && a.replace);
        assert!(
            read("oui_filter = false\n").unwrap().filter.no_oui_filter,
            "the key means the opposite of the flag"
        );
    }

    #[test]
    fn each_kind_of_bad_file_gives_its_exact_message() {
        // Every top-level key and section is listed (`every_setting_…` checks the keys).
        let unknown = err("port = 3842\nprot = 1\n");
        assert!(
            unknown
                .starts_with("r.toml:2: unknown field `prot`, expected one of `mode`, `port`, `signatures`")
                && unknown.contains("`http`, `capture`, `stats`"),
            "{unknown}"
        );
        assert_eq!(
            err("[stats]\nformats = 1\n"),
            "r.toml:2: unknown field `formats`, expected `format` or `interval`"
        );
        assert_eq!(err("port = \"3842\"\n"), "r.toml:1: port: invalid type: string \"3842\", expected u16");
        assert_eq!(err("\nport = 70000\n"), "r.toml:2: port: invalid value: integer `70000`, expected u16");
        assert_eq!(err("mode = \"swap\"\n"), "r.toml:1: mode: unknown mode (expected mac, mac-ip or all)");
        assert_eq!(err("workers = 0\n"), "r.toml:1: workers: 0 is not in 1..=64");
        assert_eq!(err("umem_size_mib = 5000\n"), "r.toml:1: umem_size_mib: 5000 is not in 1..=4096");
        assert_eq!(
            err("cpus = \"2-1\"\n"),
            "r.toml:1: cpus: '2-1' is not a CPU range (the first CPU comes first)"
        );
        assert_eq!(err("oui = \"00:c0\"\n"), "r.toml:1: oui: expected three hex bytes like \"00:c0:17\"");
        assert_eq!(
            err("signatures = [\"ito\", \"bogus\"]\n"),
            "r.toml:1: signatures: unknown signature family (expected ito, rfc2544, y1564, custom, stamp or all)"
        );
        assert_eq!(
            err("[stats]\nformat = \"xml\"\n"),
            "r.toml:2: stats.format: unknown format 'xml' (expected text, json or csv)"
        );
        assert_eq!(
            err("[stats]\nformat = 7\n"),
            "r.toml:2: stats.format: invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            err("[stats]\ninterval = 0\n"),
            "r.toml:2: stats.interval: '0' must be from 0.1 to 1e9 seconds"
        );
        assert_eq!(
            err("[[signature]]\noffset = 1\n"),
            "r.toml:2: signature: give exactly one of text or hex"
        );
        assert_eq!(
            err("[[signature]]\noffset = 1\nhex = \"0xzz\"\n"),
            "r.toml:3: signature.hex: bad hex 'zz'"
        );
        assert_eq!(
            err("[[signature]]\noffset = 1\ntext = \"\"\n"),
            "r.toml:2: signature: a custom signature must be 1 to 32 bytes long"
        );
        assert_eq!(
            err("backend = \"netmap\"\n"),
            "r.toml:1: backend: unknown backend 'netmap' (expected auto, af-xdp, af-packet, bpf, xdp-tx or dpdk)"
        );
        assert_eq!(
            err("[http]\nlisten = \"localhost\"\n"),
            "r.toml:2: http.listen: 'localhost' is not ADDR:PORT"
        );
        assert_eq!(err("interface = \"\"\n"), "r.toml:1: interface: must not be empty");
        assert_eq!(err("[http]\ntoken = \"\"\n"), "r.toml:2: http.token: must not be empty");
        assert!(err("port = \n").starts_with("r.toml:1:"));
        for e in [err("prot = 1"), err("port = \"x\""), err("oui_filter = false\noui = \"00:00:01\"\n")] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    /// Writes the settings of `args` that differ from `defaults` to a file, as the API shows
    /// them, reads it back and requires the same values; returns their keys.
    fn round_trip(args: &RunArgs, defaults: &serde_json::Value) -> Vec<&'static str> {
        let json = args.to_json();
        let keys: Vec<&str> =
            RunArgs::settings().filter_map(|s| s.key).filter(|k| json[*k] != defaults[*k]).collect();
        let mut root = toml::Table::new();
        for key in &keys {
            let value = toml::Value::try_from(&json[*key]).unwrap();
            match key.split_once('.') {
                Some((section, field)) => {
                    let t = root.entry(section).or_insert_with(|| toml::Value::Table(Default::default()));
                    t.as_table_mut().unwrap().insert(field.into(), value);
                }
                None => {
                    root.insert(key.to_string(), value);
                }
            }
        }
        let text = toml::to_string(&root).unwrap();
        let back = read(&text).unwrap_or_else(|e| panic!("{e}\n{text}")).to_json();
        for key in &keys {
            assert_eq!(back[*key], json[*key], "{key} through a file:\n{text}");
        }
        keys
    }

    #[test]
    fn settings_only_some_backends_take_are_refused_with_the_others() {
        let check = |args: &[&str]| check_settings(&cli(args)).map_err(|e| e.0);
        assert_eq!(
            check(&["--backend", "xdp-tx", "--workers", "2"]).unwrap_err(),
            "--workers does not apply to --backend xdp-tx: it has no workers (the driver reflects on the CPU that receives)"
        );
        assert!(
            check(&["--backend", "xdp-tx", "--latency"]).unwrap_err().starts_with("--latency does not apply")
        );
        assert!(
            check(&["--backend", "xdp-tx", "--cpus", "1"]).unwrap_err().starts_with("--cpus does not apply")
        );
        assert_eq!(
            check(&["--backend", "xdp-tx", "--busy-poll"]).unwrap_err(),
            "--busy-poll applies to --backend af-xdp and dpdk only"
        );
        assert!(check(&["--backend", "xdp-tx", "--replace"]).is_ok());
        assert_eq!(
            check(&["--backend", "af-xdp", "--dpdk-port", "net_null0"]).unwrap_err(),
            "--dpdk-port applies to --backend dpdk only"
        );
        assert_eq!(check(&["--dpdk-eal", "-m 64"]).unwrap_err(), "--dpdk-eal applies to --backend dpdk only");
        assert!(check(&["--backend", "dpdk", "--dpdk-eal", "-m 64", "--workers", "2"]).is_ok());
        assert_eq!(
            check(&["--backend", "af-packet", "--dpdk-tap", "rfl0"]).unwrap_err(),
            "--dpdk-tap applies to --backend dpdk only"
        );
        assert!(
            check(&["--backend", "dpdk", "--dpdk-tap", "rfl0"])
                .unwrap_err()
                .starts_with("--dpdk-tap needs --dpdk-eal naming the port")
        );
        assert!(
            check(&["eth1", "--backend", "dpdk", "--dpdk-eal", "-a 0000:00:04.0", "--dpdk-tap", "rfl0"])
                .unwrap_err()
                .starts_with(
                    "with --dpdk-tap the run is on the interface rfl0 that DPDK makes: give no IFACE"
                )
        );
        assert!(
            check(&["rfl0", "--backend", "dpdk", "--dpdk-eal", "-a 0000:00:04.0", "--dpdk-tap", "rfl0"])
                .is_ok()
        );
        assert!(check(&["--backend", "af-xdp", "--replace", "--workers", "1"]).is_ok());
        assert_eq!(
            check(&["--backend", "af-packet", "--replace"]).unwrap_err(),
            "--replace applies to --backend af-xdp and xdp-tx only"
        );
    }

    /// Every setting: in `--help`, in the example file (its key, with the default where the
    /// example does not show another value on purpose), through a file and back unchanged.
    #[test]
    fn every_setting_is_declared_once_and_reaches_everything() {
        let help = command().render_long_help().to_string();
        let defaults = cli(&[]).to_json();
        let example = read(EXAMPLE).unwrap().to_json();
        // Keys the example sets to a value other than the default, to show the syntax.
        let shown = ["interface", "stats.format", "http.listen", "signature"];
        let mut keyed = 0;
        for s in RunArgs::settings() {
            let arg = command().get_arguments().find(|a| a.get_id() == s.id).cloned().unwrap();
            let name = arg.get_long().map_or(s.id.to_uppercase(), |l| format!("--{l}"));
            assert!(help.contains(&name), "{} is not in --help", s.id);
            let Some(key) = s.key else { continue };
            keyed += 1;
            let (section, field) = key.split_once('.').map_or((None, key), |(s, f)| (Some(s), f));
            let in_example = EXAMPLE.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{field} =")) || l == format!("[[{field}]]")
            });
            assert!(in_example, "{key} is not in examples/reflector.toml");
            if let Some(section) = section {
                assert!(EXAMPLE.contains(&format!("[{section}]")), "[{section}] is not in the example");
            }
            if example[key] != serde_json::Value::Null && !shown.contains(&key) {
                assert_eq!(
                    example[key], defaults[key],
                    "{key}: the example shows another value than the default"
                );
            }
        }
        assert_eq!(keyed, 43, "settings with a file key: every key of the example");

        // Every setting away from its default (in two runs: --no-oui-filter excludes --oui),
        // written to a file as the API shows it, read back.
        let changed = cli(&[
            "va",
            "--backend",
            "af-packet",
            "--mode",
            "mac-ip",
            "--port",
            "9",
            "--sig",
            "ito,custom",
            "--custom-sig",
            "3:0xc0ffee",
            "--oui",
            "52:54:00",
            "--oui-scope",
            "ito",
            "--stamp-port",
            "8620",
            "--stamp-sequence",
            "stateful",
            "--stamp-timestamps",
            "ptp",
            "--stamp-short",
            "refuse",
            "--allow",
            "192.0.2.0/24,2001:db8::/32",
            "--allow",
            "00:c0:17:12:34:56",
            "--deny",
            "192.0.2.66",
            "--source-limit",
            "100",
            "--source-burst",
            "7",
            "--total-limit",
            "1000",
            "--total-burst",
            "70",
            "--loop-guard",
            "port-only",
            "--workers",
            "2",
            "--cpus",
            "0-1",
            "--umem-size",
            "32",
            "--replace",
            "--busy-poll",
            "--latency",
            "--http",
            "127.0.0.1:9",
            "--http-insecure",
            "--http-tls-cert",
            "/etc/reflector/cert.pem",
            "--http-tls-key",
            "/etc/reflector/key.pem",
            "--capture",
            "/var/tmp/c.pcapng",
            "--capture-what",
            "all",
            "--capture-max-mb",
            "5",
            "--capture-files",
            "4",
            "--capture-kernel-limit",
            "500",
            "--capture-keep-mb",
            "16",
            "--stats",
            "csv",
            "--stats-interval",
            "0.5",
            "--duration",
            "2.5",
        ]);
        let mut covered: Vec<&str> = round_trip(&changed, &defaults);
        covered.extend(round_trip(&cli(&["--no-oui-filter", "--http-token", "t0k"]), &defaults));
        let dpdk = cli(&["--backend", "dpdk", "--dpdk-eal", "--no-huge -m 64", "--dpdk-port", "net_null0"]);
        covered.extend(round_trip(&dpdk, &defaults));
        let tap = cli(&["--backend", "dpdk", "--dpdk-eal", "-a 0000:00:04.0", "--dpdk-tap", "rfl0"]);
        covered.extend(round_trip(&tap, &defaults));
        for key in RunArgs::settings().filter_map(|s| s.key) {
            assert!(covered.contains(&key), "{key} is not taken through a file");
        }
        // Restart or live: a changed setting that needs a restart is named by its key.
        let restart: Vec<&str> = RunArgs::settings()
            .filter(|s| s.reload == crate::settings::Reload::Restart)
            .filter_map(|s| s.key)
            .collect();
        assert_eq!(
            cli(&[]).needs_restart(&changed).len(),
            restart.len() - 4,
            "all but http.token, dpdk.eal, dpdk.port and dpdk.tap"
        );
    }
}
