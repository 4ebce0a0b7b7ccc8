//! `reflector check [IFACE] [--backend B] [--json]`: what a run would meet here, before it
//! runs. Facts are looked up (kernel, interface, driver, queues, VLAN offload, XDP programs
//! attached, a veth's peer, the locked-memory limit, capabilities, the clock); whether each
//! backend runs is found by its data path's probe (`reflector_io::datapath::probe`): set up as
//! `run` sets it up (the XDP program loaded and attached through a bpf_link, AF_XDP sockets
//! bound, or a packet socket opened) and taken down again at once. While an XDP program is
//! attached for the try (a few milliseconds), test packets are handled by it; nothing else on
//! the interface is touched.
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
                    verdicts.push((b, datapath::probe(b, Iface { name, info: &iface })));
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
            verdicts.push((b, datapath::probe_capabilities(b)));
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
