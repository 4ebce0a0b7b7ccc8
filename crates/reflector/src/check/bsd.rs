//! What `check` looks up on macOS and FreeBSD: who the process runs as (the `/dev/bpf`
//! devices' permissions decide, there are no capabilities), and the interface's basics. The
//! clock is not read there: STAMP answers say its error is unknown.

use reflector_io::host::iface::IfaceInfo;
use serde_json::json;

use super::Item;

/// What the kernel's release means for a run.
pub const KERNEL_MEANS: &str = "the bpf device is tried below, not assumed from the version";

/// How to bring `name` up.
pub fn bring_up(name: &str) -> String {
    format!("ifconfig {name} up")
}

/// The system's side: the user, and the clock.
pub fn items(items: &mut Vec<Item>) {
    let root = reflector_io::host::process::is_root();
    items.push(Item {
        name: "privileges",
        value: json!({"root": root}),
        means: if root {
            "root: the /dev/bpf devices open".into()
        } else {
            "not root: the bpf backend needs read-write access to the /dev/bpf devices (macOS: the access_bpf group)"
                .into()
        },
    });
    items.push(Item {
        name: "clock",
        value: serde_json::Value::Null,
        means:
            "not read on this system: STAMP answers say the clock is not synchronised, with an unknown error"
                .into(),
    });
}

/// The interface's facts.
pub fn interface_items(name: &str, iface: &IfaceInfo, items: &mut Vec<Item>) {
    items.push(Item {
        name: "interface",
        value: json!({
            "name": name, "index": iface.index, "mac": iface.mac.to_string(), "carrier": iface.running,
            "mtu": iface.mtu,
        }),
        means: format!(
            "{}; MTU {}",
            if iface.running { "carrier up" } else { "no carrier: a run waits for the link" },
            iface.mtu
        ),
    });
}
