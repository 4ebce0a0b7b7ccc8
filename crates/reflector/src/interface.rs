//! The interface a command works on: looked up, checked, and its addresses.

use anyhow::Context as _;
use reflector_io::host::iface::{IfaceError, IfaceInfo, iface_info};

use crate::input::UsageError;

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
pub fn interface_addresses(name: &str) -> anyhow::Result<Vec<std::net::IpAddr>> {
    reflector_io::host::iface::iface_addresses(name)
        .with_context(|| format!("cannot read the addresses of {name}"))
}
