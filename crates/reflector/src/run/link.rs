//! The interface as a run watches it.

use std::time::{Duration, Instant};

use reflector_io::host::iface::{IfaceError, IfaceInfo, iface_info};

/// The interface as the control loop watches it: a change of link state or MTU is said on
/// stderr; its deletion ends the run (exit code 1), since no data path survives it.
pub(super) struct LinkWatch<'a> {
    name: &'a str,
    index: u32,
    running: bool,
    mtu: u32,
    started_mtu: u32,
    next: Instant,
}

impl<'a> LinkWatch<'a> {
    /// How often the interface is looked at (a few ioctls).
    pub(super) const EVERY: Duration = Duration::from_millis(200);

    pub(super) fn new(name: &'a str, iface: &IfaceInfo) -> Self {
        LinkWatch {
            name,
            index: iface.index,
            running: iface.running,
            mtu: iface.mtu,
            started_mtu: iface.mtu,
            next: Instant::now(),
        }
    }

    pub(super) fn check(&mut self, now: Instant) -> anyhow::Result<()> {
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
            if info.running {
                tracing::info!(notice = true, "reflector: {name}: link up again: reflecting");
            } else {
                tracing::warn!("reflector: {name}: link down (no carrier): waiting");
            }
        }
        if info.mtu != self.mtu {
            self.mtu = info.mtu;
            if info.mtu > self.started_mtu {
                tracing::warn!(
                    "reflector: {name}: MTU now {}; the data path was sized for MTU {} at start: longer frames are counted (af-packet: rx_invalid, af-xdp: rx_dropped), not reflected, until a restart",
                    info.mtu,
                    self.started_mtu
                );
            } else {
                tracing::info!(notice = true, "reflector: {name}: MTU now {}", info.mtu);
            }
        }
        Ok(())
    }
}
