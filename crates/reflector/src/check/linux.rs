//! What `check` looks up on Linux: capabilities per backend, the locked-memory limit (af-xdp's
//! UMEM), the clock's discipline (STAMP), and the interface's driver, queues, VLAN offload, XDP
//! programs and a veth's peer.

use reflector_io::datapath::Backend;
use reflector_io::host::iface::IfaceInfo;
use reflector_io::xdp::af_xdp::DEFAULT_UMEM_BYTES as UMEM_BYTES;
use reflector_io::xdp::{PeerXdp, veth_peer_xdp};
use serde_json::{Value, json};

use super::{Item, checked};
use crate::output;

/// What the kernel's release means for a run.
pub const KERNEL_MEANS: &str =
    "XDP, AF_XDP, bpf_link and the helpers our programs call are tried below, not assumed from the version";

/// How to bring `name` up.
pub fn bring_up(name: &str) -> String {
    format!("ip link set {name} up")
}

/// The system's side: capabilities, locked memory, the clock.
pub fn items(items: &mut Vec<Item>) {
    use reflector_io::host::privilege::{Capability, missing, names};

    // Capabilities, per backend.
    let held: Vec<String> = caps_held();
    let need = |b: Backend| missing(&b.capabilities());
    let af_packet_caps = need(Backend::AfPacket);
    let af_xdp_caps = need(Backend::AfXdp);
    items.push(Item {
        name: "capabilities",
        value: json!({
            "held": held,
            "missing": checked()
                .into_iter()
                .map(|b| (b.name().to_string(), json!(need(b).iter().map(|c| c.to_string()).collect::<Vec<_>>())))
                .collect::<serde_json::Map<_, _>>(),
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
    let clock = reflector_io::host::clock::state();
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
}

/// The capabilities a backend may use that this process holds (effective set), by name.
fn caps_held() -> Vec<String> {
    use reflector_io::host::privilege::Capability::*;
    let relevant = [CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF, CAP_IPC_LOCK, CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN];
    reflector_io::host::privilege::held()
        .iter()
        .filter(|c| relevant.contains(c))
        .map(|c| c.to_string())
        .collect()
}

/// RLIMIT_MEMLOCK's soft limit in bytes (`None`: unlimited), from /proc/self/limits.
fn memlock_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok())
}

/// The interface's facts.
pub fn interface_items(name: &str, iface: &IfaceInfo, items: &mut Vec<Item>) {
    use reflector_io::xdp::xsk::FRAME_SIZE;
    let driver =
        reflector_io::host::iface::driver_stats(name).map(|d| d.driver).unwrap_or_else(|_| "?".into());
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
    let vlan = reflector_io::host::iface::rx_vlan_offload(name).ok().flatten();
    items.push(Item {
        name: "vlan_offload",
        value: json!(vlan),
        means: match vlan {
            Some(true) => "the driver takes VLAN tags off received frames for the stack: af-packet puts them back from the ring's metadata; whether an XDP program sees them depends on the driver (veth's does)".into(),
            Some(false) => "VLAN tags stay in the frames".into(),
            None => "the driver does not say".into(),
        },
    });
    let stamps = reflector_io::host::iface::timestamping(name);
    items.push(Item {
        name: "timestamping",
        value: match &stamps {
            Ok(t) => json!({
                "hardware": t.hardware(), "software": t.software(), "phc": t.phc_index.map(|i| format!("/dev/ptp{i}")),
                "so_timestamping": t.so_timestamping, "tx_types": t.tx_types, "rx_filters": t.rx_filters,
            }),
            Err(_) => Value::Null,
        },
        means: match &stamps {
            Ok(t) if t.hardware() => format!(
                "the NIC stamps frames with its own clock{} (tx types {:#x}, rx filters {:#x}, as `ethtool -T` lists them); the data paths take their stamps from the system clock today",
                t.phc_index.map_or(String::new(), |i| format!(", /dev/ptp{i}")),
                t.tx_types,
                t.rx_filters
            ),
            Ok(t) if t.software() => "software stamps only (the system clock, in the driver and the stack): no hardware clock".into(),
            Ok(_) => "the driver offers no timestamps of its own".into(),
            Err(e) => format!("the driver does not say ({e})"),
        },
    });
    let attached = reflector_io::xdp::attached_program(iface.index);
    items.push(Item {
        name: "xdp_attached",
        value: attached.as_ref().map_or(Value::Null, |(id, prog_name)| json!({"id": id, "name": prog_name})),
        means: match &attached {
            Some((id, prog_name)) => format!(
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
