//! `reflector check [IFACE] [--backend B] [--json]`: what a run would meet here, before it
//! runs. Facts are looked up (kernel, interface, driver, queues, VLAN offload, XDP programs
//! attached, a veth's peer, the locked-memory limit, capabilities, the clock); whether each
//! backend runs is found by its data path's probe (`reflector_io::datapath::probe`): set up as
//! `run` sets it up (the XDP program loaded and attached through a bpf_link, AF_XDP sockets
//! bound, or a packet socket opened) and taken down again at once. While an XDP program is
//! attached for the try (a few milliseconds), test packets are handled by it; nothing else on
//! the interface is touched. DPDK, which can start only once in a process, is tried in a child
//! process of this program (`reflector dpdk-try`, hidden), under a time limit.
//!
//! Exit code 0 when the backend asked about (default `auto`) can run, 1 when it cannot.

use reflector_io::datapath::{self, Backend, Iface, Verdict};
use serde_json::{Value, json};

use crate::backend_choice::BackendChoice;
use crate::output;

/// `reflector check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The interface to check; without one, only the system's side.
    iface: Option<String>,
    /// The backend the exit code is about (each is checked either way).
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// One JSON object on stdout instead of lines of text.
    #[arg(long)]
    json: bool,
    /// dpdk: the EAL arguments to try, as run's --dpdk-eal [default: run's, over IFACE]; with
    /// them DPDK is tried without IFACE too (a NIC bound to DPDK has no interface).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    dpdk_eal: Option<String>,
    /// dpdk: the port to try, as run's --dpdk-port [default: the first DPDK finds].
    #[arg(long, value_name = "NAME")]
    dpdk_port: Option<String>,
}

/// `reflector dpdk-try` (hidden): DPDK started as a run would start it, in this process, and
/// stopped; the verdict as one JSON object (`check` runs this as a child process).
#[derive(Debug, clap::Args)]
pub struct DpdkTryArgs {
    /// The interface of the default EAL arguments, and whose MAC the port must have.
    iface: Option<String>,
    /// The EAL arguments.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    dpdk_eal: Option<String>,
    /// The port.
    #[arg(long, value_name = "NAME")]
    dpdk_port: Option<String>,
}

/// `reflector dpdk-try`.
pub fn dpdk_try(args: &DpdkTryArgs) -> anyhow::Result<()> {
    let settings = datapath::Settings {
        dpdk_eal: args.dpdk_eal.as_ref().map(|a| a.split_whitespace().map(String::from).collect()),
        dpdk_port: args.dpdk_port.clone(),
        ..datapath::Settings::default()
    };
    let v = datapath::try_dpdk_here(&settings, args.iface.as_deref());
    Ok(output::line(json!({"runs": v.runs, "why": v.why}))?)
}

/// How long DPDK's try may take (its start probes devices and maps memory).
const DPDK_TRY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// DPDK tried in a child process (`reflector dpdk-try`): its verdict, or why it gave none.
fn dpdk_in_child(args: &CheckArgs, iface: Option<&str>) -> Verdict {
    use std::process::{Command, Stdio};
    let failed = |why: String| Verdict { runs: false, why };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return failed(format!("cannot find this program to try DPDK in a process of its own: {e}"));
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("dpdk-try").args(iface);
    if let Some(eal) = &args.dpdk_eal {
        cmd.args(["--dpdk-eal", eal]);
    }
    if let Some(port) = &args.dpdk_port {
        cmd.args(["--dpdk-port", port]);
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start DPDK's try: {e}")),
    };
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < DPDK_TRY_LIMIT => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return failed(format!("DPDK's try did not end within {} s", DPDK_TRY_LIMIT.as_secs()));
            }
        }
    }
    // It has ended: what it wrote is read to the end at once.
    let out = match child.wait_with_output() {
        Ok(out) => out,
        Err(e) => return failed(format!("cannot read DPDK's try: {e}")),
    };
    let (status, err) = (out.status, String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) if v["runs"].is_boolean() => Verdict {
            runs: v["runs"].as_bool().unwrap_or(false),
            why: v["why"].as_str().unwrap_or_default().to_string(),
        },
        _ => failed(format!(
            "DPDK's try ended ({status}) without a verdict: {}",
            err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message")
        )),
    }
}

// What is looked up differs per system: capabilities, locked memory, the clock's discipline,
// drivers, queues and XDP on Linux; privileges and the interface's basics on macOS and FreeBSD.
#[cfg(not(target_os = "linux"))]
#[path = "bsd.rs"]
mod system;
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod system;

/// One fact: its value and what it means for a run.
struct Item {
    name: &'static str,
    value: Value,
    means: String,
}

/// Runs the checks, prints them, and fails (exit 1) when the asked backend cannot run.
pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    if (args.dpdk_eal.is_some() || args.dpdk_port.is_some()) && !Backend::Dpdk.on_this_system() {
        let without = datapath::try_dpdk_here(&datapath::Settings::default(), None).why;
        return Err(
            crate::input::UsageError(format!("--dpdk-eal and --dpdk-port try DPDK, but {without}")).into()
        );
    }
    let mut items = vec![Item {
        name: "kernel",
        value: json!(reflector_io::host::process::kernel_release().unwrap_or_default()),
        means: system::KERNEL_MEANS.into(),
    }];
    system::items(&mut items);

    let mut verdicts: Vec<(Backend, Verdict)> = Vec::new();
    if let Some(name) = &args.iface {
        let iface = match crate::interface::usable_interface(name) {
            Ok(iface) => Some(iface),
            // Down: said as the verdict of every backend (run refuses it), with its facts.
            Err(e) if !e.is::<crate::input::UsageError>() => None,
            Err(e) => return Err(e),
        };
        match iface {
            Some(iface) => {
                system::interface_items(name, &iface, &mut items);
                for b in checked() {
                    // DPDK can start only once in a process: tried in one of its own.
                    let v = match b {
                        Backend::Dpdk => dpdk_in_child(args, Some(name)),
                        _ => datapath::probe(b, Iface { name, info: &iface }),
                    };
                    verdicts.push((b, v));
                }
            }
            None => {
                let facts = reflector_io::host::iface::iface_info(name)?;
                system::interface_items(name, &facts, &mut items);
                let down = Verdict {
                    runs: false,
                    why: format!("{name} is down (bring it up: {})", system::bring_up(name)),
                };
                for b in checked() {
                    verdicts.push((b, down.clone()));
                }
            }
        }
    } else {
        for b in checked() {
            // DPDK with EAL arguments is tried without an interface (its port may be a NIC
            // bound to DPDK, which has none).
            let v = match b {
                Backend::Dpdk if args.dpdk_eal.is_some() => dpdk_in_child(args, None),
                _ => datapath::probe_capabilities(b),
            };
            verdicts.push((b, v));
        }
    }
    // What a probe says may quote the kernel (a verifier's log): one line each, as printed.
    for (_, v) in &mut verdicts {
        v.why = output::one_line(&v.why);
    }
    let of = |b: Backend| {
        verdicts.iter().find(|(k, _)| *k == b).map(|(_, v)| v.clone()).unwrap_or_else(|| Verdict {
            runs: false,
            why: format!("the {} backend does not run on this system", b.name()),
        })
    };
    let auto = datapath::auto_verdict(of);
    let asked = match args.backend.named() {
        None => auto.clone(),
        Some(b) => of(b),
    };

    if args.json {
        let mut out = serde_json::Map::new();
        for item in &items {
            out.insert(item.name.into(), json!({"value": item.value, "means": item.means}));
        }
        let mut backends = serde_json::Map::new();
        for (b, v) in &verdicts {
            backends.insert(b.name().into(), json!({"runs": v.runs, "why": v.why}));
        }
        backends.insert("auto".into(), json!({"runs": auto.runs, "why": auto.why}));
        out.insert("backends".into(), Value::Object(backends));
        out.insert("asked".into(), json!({"backend": args.backend.name(), "runs": asked.runs}));
        output::line(Value::Object(out))?;
    } else {
        for item in &items {
            output::line(format!("{}: {} ({})", item.name, compact(&item.value), item.means))?;
        }
        for (b, v) in &verdicts {
            output::line(format!(
                "{}: {} ({})",
                b.name(),
                if v.runs { "runs" } else { "cannot run" },
                v.why
            ))?;
        }
        output::line(format!(
            "auto: {}",
            if auto.runs { format!("runs {}", auto.why) } else { auto.why.clone() }
        ))?;
    }
    if !asked.runs {
        anyhow::bail!("{} cannot run here: {}", args.backend.name(), asked.why);
    }
    Ok(())
}

/// The data paths checked on this system, in the order they are listed: af-packet, then those
/// of an XDP program.
fn checked() -> Vec<Backend> {
    let mut on_this_system: Vec<Backend> =
        Backend::ALL.iter().copied().filter(|b| b.on_this_system()).collect();
    on_this_system.sort_by_key(|b| *b != Backend::AfPacket);
    on_this_system
}

/// A value on one line: strings bare, the rest as JSON.
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
