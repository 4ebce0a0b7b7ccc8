//! `reflector check [IFACE] [--backend B] [--json]`: what a run would meet here, before it
//! runs. Facts are looked up (kernel, interface, driver, queues, VLAN offload, XDP programs
//! attached, a veth's peer, the locked-memory limit, capabilities, the clock); whether each
//! backend runs is found by trying: its data path is set up as `run` sets it up (the XDP
//! program loaded and attached through a bpf_link, AF_XDP sockets bound, or a packet socket
//! opened) and taken down again at once. While an XDP program is attached for the try (a few
//! milliseconds), test packets are handled by it; nothing else on the interface is touched.
//!
//! Exit code 0 when the backend asked about (default `auto`) can run, 1 when it cannot.

use serde_json::{Value, json};

use crate::backend_info::{Backend, BackendChoice};
use crate::output;

/// The UMEM `run` registers by default (`--umem-size`), in bytes.
const UMEM_BYTES: u64 = 16 << 20;

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

/// One fact: its value and what it means for a run.
struct Item {
    name: &'static str,
    value: Value,
    means: String,
}

/// A backend's verdict.
#[derive(Clone)]
struct Verdict {
    runs: bool,
    /// How it runs, or why not.
    why: String,
}

/// Runs the checks, prints them, and fails (exit 1) when the asked backend cannot run.
pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    use reflector_sys::privilege::{Capability, SOCKET, XDP_PROGRAM, missing, names};
    let mut items = Vec::new();
    let release =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    items.push(Item {
        name: "kernel",
        value: json!(release),
        means: "XDP, AF_XDP, bpf_link and the helpers our programs call are tried below, not assumed from the version".into(),
    });

    // Capabilities, per backend.
    let held: Vec<String> = caps_held();
    let need = |c: &[Capability]| missing(c);
    let af_packet_caps = need(SOCKET);
    let mut af_xdp_needed = XDP_PROGRAM.to_vec();
    af_xdp_needed.extend_from_slice(SOCKET);
    let af_xdp_caps = need(&af_xdp_needed);
    let xdp_tx_caps = need(XDP_PROGRAM);
    items.push(Item {
        name: "capabilities",
        value: json!({
            "held": held,
            "missing": {
                "af-packet": af_packet_caps.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "af-xdp": af_xdp_caps.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "xdp-tx": xdp_tx_caps.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            },
        }),
        means: match (af_packet_caps.is_empty(), af_xdp_caps.is_empty()) {
            (true, true) => "every backend's capabilities are held".into(),
            (true, false) => {
                format!("af-packet can run; af-xdp and xdp-tx lack {}", names(&af_xdp_caps, ", "))
            }
            _ => format!("no backend can run: missing {}", names(&af_xdp_caps, ", ")),
        },
    });

    // Locked memory, for the UMEM.
    let memlock = memlock_limit();
    let ipc_lock = missing(&[Capability::CAP_IPC_LOCK]).is_empty();
    items.push(Item {
        name: "memlock",
        value: json!({"limit_bytes": memlock, "umem_bytes": UMEM_BYTES, "cap_ipc_lock": ipc_lock}),
        means: if ipc_lock {
            "CAP_IPC_LOCK is held: the UMEM is not charged to the limit".into()
        } else if memlock.is_none_or(|l| l >= UMEM_BYTES) {
            "the limit holds a 16 MiB UMEM (af-xdp's default)".into()
        } else {
            "too small for af-xdp's 16 MiB UMEM: raise it (ulimit -l, LimitMEMLOCK=) or grant CAP_IPC_LOCK"
                .into()
        },
    });

    // The clock, for STAMP timestamps.
    let clock = reflector_sys::clock::state();
    items.push(match clock {
        Ok(c) => Item {
            name: "clock",
            value: json!({"synchronised": c.synchronised, "error_ns": c.error_ns(), "tai_offset_s": c.tai_offset_s}),
            means: if c.synchronised {
                format!("synchronised: STAMP answers state an error of {}", output::duration_ns(c.error_ns()))
            } else {
                format!(
                    "not synchronised: STAMP answers say so (S bit clear) with an error of {}; one-way delays against this host mean little",
                    output::duration_ns(c.error_ns())
                )
            },
        },
        Err(e) => Item { name: "clock", value: Value::Null, means: format!("cannot be read: {e}") },
    });

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
                interface_items(name, &iface, &mut items);
                verdicts.push((Backend::AfPacket, try_af_packet()));
                verdicts.push((Backend::AfXdp, try_xdp(name, &iface, true)));
                verdicts.push((Backend::XdpTx, try_xdp(name, &iface, false)));
            }
            None => {
                let facts = reflector_sys::iface::iface_info(name)?;
                interface_items(name, &facts, &mut items);
                let down = Verdict {
                    runs: false,
                    why: format!("{name} is down (bring it up: ip link set {name} up)"),
                };
                for b in [Backend::AfPacket, Backend::AfXdp, Backend::XdpTx] {
                    verdicts.push((b, down.clone()));
                }
            }
        }
    } else {
        let by_caps = |m: &[Capability], b: &str| Verdict {
            runs: m.is_empty(),
            why: if m.is_empty() {
                format!("{b}: the capabilities are held (give an interface to try it)")
            } else {
                format!("missing {}", names(m, ", "))
            },
        };
        verdicts.push((Backend::AfPacket, by_caps(&af_packet_caps, "af-packet")));
        verdicts.push((Backend::AfXdp, by_caps(&af_xdp_caps, "af-xdp")));
        verdicts.push((Backend::XdpTx, by_caps(&xdp_tx_caps, "xdp-tx")));
    }
    let of = |b: Backend| verdicts.iter().find(|(k, _)| *k == b).map(|(_, v)| v.clone()).expect("checked");
    let (af_xdp, af_packet) = (of(Backend::AfXdp), of(Backend::AfPacket));
    let auto = if af_xdp.runs {
        Verdict { runs: true, why: "af-xdp".into() }
    } else if af_packet.runs {
        Verdict { runs: true, why: format!("af-packet, because af-xdp cannot run: {}", af_xdp.why) }
    } else {
        Verdict {
            runs: false,
            why: format!("neither af-xdp ({}) nor af-packet ({})", af_xdp.why, af_packet.why),
        }
    };
    let asked = match args.backend {
        BackendChoice::Auto => auto.clone(),
        BackendChoice::Bpf => Verdict { runs: false, why: "the bpf backend is for macOS and FreeBSD".into() },
        other => of(other.resolve()),
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
        out.insert("asked".into(), json!({"backend": backend_name(args.backend), "runs": asked.runs}));
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
        anyhow::bail!("{} cannot run here: {}", backend_name(args.backend), asked.why);
    }
    Ok(())
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Auto => "auto",
        other => other.resolve().name(),
    }
}

/// A value on one line: strings bare, the rest as JSON.
fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The capabilities a backend may use that this process holds (effective set), by name.
fn caps_held() -> Vec<String> {
    use reflector_sys::privilege::Capability::*;
    let relevant = [CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF, CAP_IPC_LOCK, CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN];
    reflector_sys::privilege::held().iter().filter(|c| relevant.contains(c)).map(|c| c.to_string()).collect()
}

/// RLIMIT_MEMLOCK's soft limit in bytes (`None`: unlimited), from /proc/self/limits.
fn memlock_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok())
}

/// The interface's facts.
fn interface_items(name: &str, iface: &reflector_sys::iface::IfaceInfo, items: &mut Vec<Item>) {
    use reflector_io::xdp::xsk::FRAME_SIZE;
    use reflector_sys::xdp::netlink;
    let driver = reflector_sys::iface::driver_stats(name).map(|d| d.driver).unwrap_or_else(|_| "?".into());
    let queues = reflector_io::xdp::rx_queues(name);
    let largest = iface.mtu as usize + 14 + 8;
    items.push(Item {
        name: "interface",
        value: json!({
            "name": name, "index": iface.index, "mac": iface.mac.to_string(), "carrier": iface.running,
            "driver": driver, "mtu": iface.mtu, "rx_queues": queues,
        }),
        means: format!(
            "{}; {queues} receive queue(s), one af-xdp socket and worker each; MTU {} {} one {FRAME_SIZE}-byte UMEM frame{}",
            if iface.running { "carrier up" } else { "no carrier: a run waits for the link" },
            iface.mtu,
            if largest <= FRAME_SIZE as usize { "fits" } else { "does not fit" },
            if largest <= FRAME_SIZE as usize { "" } else { " (af-xdp cannot run; af-packet can)" },
        ),
    });
    let vlan = reflector_sys::iface::rx_vlan_offload(name).ok().flatten();
    items.push(Item {
        name: "vlan_offload",
        value: json!(vlan),
        means: match vlan {
            Some(true) => "the driver takes VLAN tags off received frames for the stack: af-packet puts them back from the ring's metadata; whether an XDP program sees them depends on the driver (veth's does)".into(),
            Some(false) => "VLAN tags stay in the frames".into(),
            None => "the driver does not say".into(),
        },
    });
    let attached = netlink::attached_prog_id(iface.index).ok().flatten();
    let prog_name = attached.and_then(|id| reflector_sys::xdp::bpf::prog_name(id).ok());
    items.push(Item {
        name: "xdp_attached",
        value: attached.map_or(Value::Null, |id| json!({"id": id, "name": prog_name})),
        means: match attached {
            Some(id) => format!(
                "another XDP program (id {id}, name {}) is attached: af-xdp and xdp-tx refuse to replace it without --replace",
                prog_name.as_deref().unwrap_or("unknown")
            ),
            None => "no XDP program attached".into(),
        },
    });
    let peer = match veth_peer_xdp(name, iface.index) {
        PeerXdp::NotVeth => return,
        PeerXdp::NotFound => Err("the peer cannot be found".to_string()),
        PeerXdp::Looked(Err(e)) => Err(format!("the peer cannot be looked at: {e}")),
        PeerXdp::Looked(Ok(id)) => Ok(id),
    };
    items.push(Item {
        name: "veth_peer_xdp",
        value: peer.as_ref().map_or(Value::Null, |id| json!(id)),
        means: match peer {
            Ok(Some(id)) => format!("the peer runs an XDP program (id {id}): it takes xdp-tx's reflections"),
            Ok(None) => "the peer runs no XDP program: it drops xdp-tx's reflections (counted as tx errors); attach one there (any, e.g. XDP_PASS) or enable GRO on it".into(),
            Err(why) => why,
        },
    });
}

/// What is known of the XDP program on a veth's peer.
enum PeerXdp {
    /// The interface is no veth.
    NotVeth,
    /// A veth whose peer is not named (IFLA_LINK).
    NotFound,
    /// The peer's program (`None`: none), looked up in the peer's namespace.
    Looked(reflector_sys::error::SysResult<Option<u32>>),
}

fn veth_peer_xdp(name: &str, index: u32) -> PeerXdp {
    use reflector_sys::xdp::netlink;
    if !reflector_sys::iface::driver_stats(name).is_ok_and(|d| d.driver == "veth") {
        return PeerXdp::NotVeth;
    }
    match netlink::link_peer(index).ok().flatten() {
        Some((peer, netns)) => PeerXdp::Looked(netlink::attached_prog_id_in(peer, netns)),
        None => PeerXdp::NotFound,
    }
}

/// af-packet: a packet socket opened (and closed).
fn try_af_packet() -> Verdict {
    match reflector_sys::packet::open_socket() {
        Ok(_) => Verdict { runs: true, why: "a packet socket opens".into() },
        Err(e) => Verdict { runs: false, why: e.to_string() },
    }
}

/// af-xdp (`redirect`) or xdp-tx: the program attached as `run` attaches it (and the AF_XDP
/// sockets bound, for af-xdp), then all of it taken down.
fn try_xdp(name: &str, iface: &reflector_sys::iface::IfaceInfo, redirect: bool) -> Verdict {
    use reflector_io::xdp::xsk::{FRAME_SIZE, Xsk};
    use reflector_io::xdp::{Attachment, Ending, rx_queues};
    if redirect && iface.mtu as usize + 14 + 8 > FRAME_SIZE as usize {
        return Verdict {
            runs: false,
            why: format!("MTU {} does not fit one {FRAME_SIZE}-byte UMEM frame", iface.mtu),
        };
    }
    let filter = match reflector_core::Filter::new(&reflector_core::FilterConfig::new(iface.mac)) {
        Ok(f) => f,
        Err(e) => return Verdict { runs: false, why: e.to_string() },
    };
    let queues = rx_queues(name);
    let ending = if redirect { Ending::Redirect { queues } } else { Ending::Reflect };
    let attachment = match Attachment::attach(&filter, iface.index, name, ending, false, None) {
        Ok(a) => a,
        Err(e) => return Verdict { runs: false, why: output::one_line(&format!("{e:#}")) },
    };
    let mode = attachment.mode.name();
    let program = format!("{} instructions, {mode} XDP", attachment.instructions);
    if !redirect {
        let peer_note = match veth_peer_xdp(name, iface.index) {
            PeerXdp::Looked(Ok(None)) => {
                Some("the veth peer runs no XDP program: it drops the reflections (unless GRO is on there)")
            }
            _ => None,
        };
        return match peer_note {
            Some(why) => Verdict { runs: false, why: format!("the program attaches ({program}), but {why}") },
            None => Verdict {
                runs: true,
                why: format!("the program attaches ({program}) and reflects in the driver"),
            },
        };
    }
    match Xsk::open_queues(iface.index, queues, UMEM_BYTES as usize) {
        Ok(sockets) => {
            let zero_copy = sockets.iter().all(|s| s.zero_copy);
            Verdict {
                runs: true,
                why: format!(
                    "the program attaches ({program}); {queues} AF_XDP socket(s) bind in {} mode",
                    if zero_copy { "zero-copy" } else { "copy" }
                ),
            }
        }
        Err(e) => Verdict {
            runs: false,
            why: output::one_line(&format!(
                "the program attaches ({program}), but AF_XDP sockets do not: {e:#}"
            )),
        },
    }
}
