//! What each data path's module offers the table (`datapath`) and takes from it: the settings it
//! opens with, the interface, what it opened ([`Opening`]), and its probe's [`Verdict`]. Below
//! both the table and the modules, so that neither imports the other's importer.

use std::sync::Arc;

use reflector_core::testers::Tester;
use reflector_core::{Counters, Filter};

pub use super::info::{Backend, BackendInfo, Choice};
// Only the XDP paths (Linux) fill these in.
#[cfg(all(target_os = "linux", feature = "dpdk"))]
pub use super::info::{BusyMeter, BusyMeters, DpdkInfo};
#[cfg(target_os = "linux")]
pub use super::info::{InDriverInfo, XdpInfo, XdpMode};
#[cfg(unix)]
use crate::host::iface::IfaceInfo;

/// The settings a data path opens with (the run's flags and configuration keys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Workers asked for (`--workers`); each path's own default when `None`.
    pub workers: Option<u16>,
    /// af-xdp: the UMEM, in MiB (`--umem-size`).
    pub umem_mib: u32,
    /// af-xdp: workers spin instead of sleeping (`--busy-poll`).
    pub busy_poll: bool,
    /// XDP: replace another program attached to the interface (`--replace`).
    pub replace: bool,
    /// XDP: sample frames for a capture, at most this many a second (`None`: no capture).
    pub capture_kernel_limit: Option<u32>,
    /// DPDK: the EAL's arguments (`--dpdk-eal`); `None`: a virtual device over the interface.
    pub dpdk_eal: Option<Vec<String>>,
    /// DPDK: the port, by name (`--dpdk-port`); `None`: the first.
    pub dpdk_port: Option<String>,
    /// DPDK: the exception path's interface (`--dpdk-tap`), which the run is on.
    pub dpdk_tap: Option<String>,
}

/// The settings cannot work on this interface or system (the command line's fault: exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// What a kernel program counted, per CPU: the frames it rejected before any worker saw them
/// (af-xdp), or everything it judged and reflected in the driver (xdp-tx).
pub type KernelCounters = Arc<dyn Fn() -> Option<Vec<Counters>> + Send + Sync>;

/// The testers table a kernel program keeps (af-xdp, xdp-tx), read when asked.
pub type KernelTesters = Arc<dyn Fn() -> Option<Vec<Tester>> + Send + Sync>;

/// Replaces an interface-wide kernel program with the one for a new filter.
pub type KernelUpdate = Box<dyn Fn(&Filter) -> anyhow::Result<()>>;

/// Moves what an XDP program sampled into the tap, and tells it what the tap wants.
pub type KernelPump = Arc<dyn Fn(&crate::tap::Tap) -> anyhow::Result<()> + Send + Sync>;

/// What an interface-wide program (af-xdp, xdp-tx) counts, and a way to bring it in line with
/// a new filter.
pub struct KernelProgram {
    /// What it counted, per CPU.
    pub counters: KernelCounters,
    /// Replaces it with the program for a new filter.
    pub update: KernelUpdate,
    /// The testers table it keeps.
    pub testers: KernelTesters,
    /// Moves the frames it sampled into a capture tap (when it samples).
    pub capture: Option<KernelPump>,
}

impl std::fmt::Debug for KernelProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelProgram")
    }
}

/// What a data path's `open` returns: its workers' backends (`W`: a `Vec` of one backend
/// type), the interface-wide kernel program if it has one, and what it opened.
#[derive(Debug)]
pub struct Opening<W> {
    /// The workers' backends.
    pub workers: W,
    /// The interface-wide kernel program, if the data path has one.
    pub kernel: Option<KernelProgram>,
    /// What was opened.
    pub info: BackendInfo,
}

/// The interface a data path opens on.
#[cfg(unix)]
#[derive(Debug, Clone, Copy)]
pub struct Iface<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its facts.
    pub info: &'a IfaceInfo,
}

/// Whether a data path runs here, and how, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// It runs.
    pub runs: bool,
    /// How it runs, or why not.
    pub why: String,
}
