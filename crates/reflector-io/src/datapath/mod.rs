//! The data paths, one table: each [`Backend`] is a module of this crate that opens it from
//! the settings ([`open`]: workers, or a kernel program, and its [`BackendInfo`]) and probes
//! it ([`probe`]: would it run here, and if not, why). `auto` and its fallback are [`AUTO`].
//!
//! | backend | module | opens |
//! |---|---|---|
//! | `af-xdp` | [`crate::xdp::af_xdp`] | the XDP program and one AF_XDP socket per served queue |
//! | `af-packet` | [`crate::afpacket`] | AF_PACKET sockets with mmap rings, in a fanout group |
//! | `bpf` | [`crate::bsdbpf`] | a `/dev/bpf` device (macOS, FreeBSD) |
//! | `xdp-tx` | [`crate::xdp::xdp_tx`] | the XDP program that reflects in the driver |
//! | `dpdk` | `crate::dpdk` (the `dpdk` feature) | DPDK's environment and one port, a worker per queue |
//!
//! A new data path is a new module with an `open` and a `probe` of these signatures, a
//! [`Backend`] value (its name and help), its line in [`Backend::ALL`] and in the two
//! dispatches below (`open_one`, [`probe`]), and a [`Workers`] variant when it has workers.

pub(crate) mod contract;
mod info;

use reflector_core::Filter;

#[cfg(unix)]
pub use contract::Iface;
pub use contract::{
    KernelCounters, KernelProgram, KernelPump, KernelTesters, KernelUpdate, Opening, Settings, Unusable,
    Verdict,
};
pub use info::{
    Backend, BackendInfo, BusyMeter, BusyMeters, Choice, DpdkInfo, InDriverInfo, XdpInfo, XdpMode,
};

use crate::backend::Backend as Worker;

/// What `auto` tries, in order: the first that opens runs; a later one says why the first did
/// not ([`Choice::Fallback`]).
pub const AUTO: &[Backend] =
    if cfg!(target_os = "linux") { &[Backend::AfXdp, Backend::AfPacket] } else { &[Backend::Bpf] };

/// What will run: the workers' backends, of one kind.
pub enum Workers {
    /// One AF_XDP socket per served queue, behind the XDP program.
    #[cfg(target_os = "linux")]
    AfXdp(Vec<crate::xdp::xsk::Xsk>),
    /// AF_PACKET sockets in a fanout group.
    #[cfg(target_os = "linux")]
    AfPacket(Vec<crate::afpacket::AfPacket>),
    /// The /dev/bpf device.
    #[cfg(unix)]
    Bpf(Vec<crate::bsdbpf::BpfBackend<crate::bsdbpf::device::Device>>),
    /// A DPDK port's queues.
    #[cfg(all(target_os = "linux", feature = "dpdk"))]
    Dpdk(Vec<crate::dpdk::DpdkQueue>),
    /// None: the kernel program reflects.
    InKernel,
}

/// What runs a set of workers of any kind: the worker loop is generic over the backend (so the
/// frame handler inlines into its receive loop), and this is how one generic function is
/// called with whichever kind was opened.
pub trait RunWorkers {
    /// What running them returns.
    type Output;
    /// Runs `backends`.
    fn run<B: Worker>(self, backends: Vec<B>) -> Self::Output;
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, n) = match self {
            #[cfg(target_os = "linux")]
            Workers::AfXdp(v) => ("AfXdp", v.len()),
            #[cfg(target_os = "linux")]
            Workers::AfPacket(v) => ("AfPacket", v.len()),
            #[cfg(unix)]
            Workers::Bpf(v) => ("Bpf", v.len()),
            #[cfg(all(target_os = "linux", feature = "dpdk"))]
            Workers::Dpdk(v) => ("Dpdk", v.len()),
            Workers::InKernel => ("InKernel", 0),
        };
        write!(f, "Workers::{kind}({n})")
    }
}

impl Workers {
    /// Runs these workers with `runner`.
    pub fn run<R: RunWorkers>(self, runner: R) -> R::Output {
        match self {
            #[cfg(target_os = "linux")]
            Workers::AfXdp(sockets) => runner.run(sockets),
            #[cfg(target_os = "linux")]
            Workers::AfPacket(sockets) => runner.run(sockets),
            #[cfg(unix)]
            Workers::Bpf(devices) => runner.run(devices),
            #[cfg(all(target_os = "linux", feature = "dpdk"))]
            Workers::Dpdk(queues) => runner.run(queues),
            Workers::InKernel => runner.run(Vec::<crate::backend::InKernel>::new()),
        }
    }
}

/// An opened data path.
#[derive(Debug)]
pub struct Opened {
    /// The workers' backends.
    pub workers: Workers,
    /// The interface-wide kernel program, if the data path has one.
    pub kernel: Option<KernelProgram>,
    /// What was opened.
    pub info: BackendInfo,
}

/// Opens `backend` (`None`: [`AUTO`]) on `iface` for `filter`. `auto` falls back along
/// [`AUTO`] and says why; a named backend fails. A setting the interface or system cannot
/// take is an [`Unusable`] error.
#[cfg(unix)]
pub fn open(
    backend: Option<Backend>,
    settings: &Settings,
    iface: Iface<'_>,
    filter: &Filter,
) -> anyhow::Result<Opened> {
    let Some(backend) = backend else {
        let mut first_failure: Option<String> = None;
        let mut last = None;
        for &b in AUTO {
            let choice = match &first_failure {
                None => Choice::Auto,
                Some(reason) => Choice::Fallback { reason: reason.clone() },
            };
            match open_one(b, settings, iface, filter, choice) {
                Ok(opened) => return Ok(opened),
                Err(e) => {
                    first_failure.get_or_insert_with(|| format!("{e:#}"));
                    last = Some(e);
                }
            }
        }
        return Err(last.unwrap_or_else(|| Unusable("no data path runs on this system".into()).into()));
    };
    open_one(backend, settings, iface, filter, Choice::Asked)
}

/// What a data path must do before the run looks at its interface: with `--dpdk-tap`, DPDK
/// starts and makes the interface the run is on; in a build without DPDK, `--backend dpdk` is
/// refused here, before anything about the interface. Nothing for the others.
#[cfg(unix)]
pub fn prepare(backend: Option<Backend>, settings: &Settings) -> anyhow::Result<()> {
    if backend != Some(Backend::Dpdk) {
        return Ok(());
    }
    #[cfg(all(target_os = "linux", feature = "dpdk"))]
    return match settings.dpdk_tap {
        Some(_) => crate::dpdk::prepare(settings),
        None => Ok(()),
    };
    #[cfg(not(all(target_os = "linux", feature = "dpdk")))]
    {
        let _ = settings;
        Err(Unusable(WITHOUT_DPDK.into()).into())
    }
}

/// Opens one data path, as `choice` chose it.
#[cfg(unix)]
fn open_one(
    backend: Backend,
    settings: &Settings,
    iface: Iface<'_>,
    filter: &Filter,
    choice: Choice,
) -> anyhow::Result<Opened> {
    let mut opened = match backend {
        #[cfg(target_os = "linux")]
        Backend::AfXdp => crate::xdp::af_xdp::open(settings, iface, filter)?.into_opened(Workers::AfXdp),
        #[cfg(target_os = "linux")]
        Backend::AfPacket => crate::afpacket::open(settings, iface, filter)?.into_opened(Workers::AfPacket),
        #[cfg(target_os = "linux")]
        Backend::XdpTx => {
            crate::xdp::xdp_tx::open(settings, iface, filter)?.into_opened(|_| Workers::InKernel)
        }
        #[cfg(not(target_os = "linux"))]
        b @ (Backend::AfXdp | Backend::AfPacket | Backend::XdpTx) => {
            return Err(
                Unusable(format!("the {} backend is Linux only (use --backend bpf)", b.name())).into()
            );
        }
        // Tried everywhere: on Linux it says there is no /dev/bpf device.
        Backend::Bpf => crate::bsdbpf::open(settings, iface, filter)?.into_opened(Workers::Bpf),
        #[cfg(all(target_os = "linux", feature = "dpdk"))]
        Backend::Dpdk => crate::dpdk::open(settings, iface, filter)?.into_opened(Workers::Dpdk),
        #[cfg(not(all(target_os = "linux", feature = "dpdk")))]
        Backend::Dpdk => return Err(Unusable(WITHOUT_DPDK.into()).into()),
    };
    opened.info.choice = choice;
    Ok(opened)
}

impl<W> Opening<W> {
    /// The same, its workers one kind of [`Workers`].
    fn into_opened(self, kind: impl FnOnce(W) -> Workers) -> Opened {
        Opened { workers: kind(self.workers), kernel: self.kernel, info: self.info }
    }
}

/// Probes `backend` on `iface`: set up as a run would set it up, and taken down again at
/// once (while an XDP program is attached for the try, a few milliseconds, test packets are
/// handled by it; nothing else on the interface is touched).
#[cfg(unix)]
pub fn probe(backend: Backend, iface: Iface<'_>) -> Verdict {
    match backend {
        #[cfg(target_os = "linux")]
        Backend::AfXdp => crate::xdp::af_xdp::probe(iface),
        #[cfg(target_os = "linux")]
        Backend::AfPacket => crate::afpacket::probe(iface),
        #[cfg(target_os = "linux")]
        Backend::XdpTx => crate::xdp::xdp_tx::probe(iface),
        #[cfg(not(target_os = "linux"))]
        b @ (Backend::AfXdp | Backend::AfPacket | Backend::XdpTx) => {
            Verdict { runs: false, why: format!("the {} backend is Linux only", b.name()) }
        }
        Backend::Bpf => crate::bsdbpf::probe(iface),
        #[cfg(all(target_os = "linux", feature = "dpdk"))]
        Backend::Dpdk => crate::dpdk::probe(iface),
        #[cfg(not(all(target_os = "linux", feature = "dpdk")))]
        Backend::Dpdk => Verdict { runs: false, why: WITHOUT_DPDK.into() },
    }
}

/// Whether DPDK and its port start here as a run would start them, tried in this process, which
/// it then cannot start again in (DPDK starts once per process): for a process of its own
/// (`check` runs one).
#[cfg(unix)]
pub fn try_dpdk_here(settings: &Settings, iface: Option<&str>) -> Verdict {
    #[cfg(all(target_os = "linux", feature = "dpdk"))]
    return crate::dpdk::try_here(settings, iface);
    #[cfg(not(all(target_os = "linux", feature = "dpdk")))]
    {
        let _ = (settings, iface);
        Verdict { runs: false, why: WITHOUT_DPDK.into() }
    }
}

/// Why `--backend dpdk` cannot run in a build without the `dpdk` feature, and what to do.
#[cfg(not(all(target_os = "linux", feature = "dpdk")))]
const WITHOUT_DPDK: &str = "this reflector was built without DPDK: install the reflector-dpdk package instead, or build with `cargo build --release --features dpdk` (Linux, DPDK 22.11 or later: apt install libdpdk-dev pkg-config)";

/// Without an interface to try it on: whether `backend`'s capabilities are held.
#[cfg(target_os = "linux")]
pub fn probe_capabilities(backend: Backend) -> Verdict {
    let missing = crate::host::privilege::missing(&backend.capabilities());
    if missing.is_empty() {
        Verdict {
            runs: true,
            why: format!("{}: the capabilities are held (give an interface to try it)", backend.name()),
        }
    } else {
        Verdict { runs: false, why: format!("missing {}", crate::host::privilege::names(&missing, ", ")) }
    }
}

/// Without an interface to try it on: whether a `/dev/bpf` device opens (macOS and FreeBSD have
/// no capabilities; the devices' permissions decide).
#[cfg(all(unix, not(target_os = "linux")))]
pub fn probe_capabilities(backend: Backend) -> Verdict {
    match backend {
        Backend::Bpf => crate::bsdbpf::probe_device(),
        b => Verdict { runs: false, why: format!("the {} backend is Linux only", b.name()) },
    }
}

/// What `auto` would do, from the verdicts of the backends it tries.
pub fn auto_verdict(of: impl Fn(Backend) -> Verdict) -> Verdict {
    let verdicts: Vec<(Backend, Verdict)> = AUTO.iter().map(|&b| (b, of(b))).collect();
    let Some((first, first_verdict)) = verdicts.first() else {
        return Verdict { runs: false, why: "no data path runs on this system".into() };
    };
    if first_verdict.runs {
        return Verdict { runs: true, why: first.name().into() };
    }
    if let Some((b, _)) = verdicts.iter().skip(1).find(|(_, v)| v.runs) {
        return Verdict {
            runs: true,
            why: format!("{}, because {} cannot run: {}", b.name(), first.name(), first_verdict.why),
        };
    }
    let each: Vec<String> = verdicts.iter().map(|(b, v)| format!("{} ({})", b.name(), v.why)).collect();
    Verdict {
        runs: false,
        why: if each.len() == 2 { format!("neither {} nor {}", each[0], each[1]) } else { each.join("; ") },
    }
}
