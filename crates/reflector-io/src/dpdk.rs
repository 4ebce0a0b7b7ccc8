//! The DPDK data path (`--backend dpdk`, a build with the `dpdk` feature): DPDK started with the
//! run's EAL arguments (by default a virtual device over the interface: `net_af_packet`, so
//! nothing has to be bound to another driver), one port, one worker per queue. Each worker
//! receives bursts of [`BURST`] frames into DPDK's buffers, hands each to the packet core in
//! place with the room after it, and sends the answers from the same buffers; the other frames
//! go to the host through the exception path's interface (`--dpdk-tap`, DPDK's `net_tap`, whose
//! frames go out of the port the other way) or are freed. What the worker could not send is
//! counted as transmit errors, a frame of several segments (which cannot be answered in place)
//! and the port's receive errors (`ierrors`) as invalid, and the port's own drops (no free
//! descriptor, no free buffer) and the host's frames its interface would not take as dropped by
//! the kernel. Idle, a worker spins through 64 empty polls, then sleeps, longer each
//! time up to 200 µs; with `--busy-poll` it spins. Each worker counts its busy cycles as
//! `dpdk-testpmd --record-core-cycles` does ([`BusyMeters`]), for the run's summary.

use std::time::{Duration, Instant};

use reflector_sys::dpdk::{Burst, Eal, Port, PortStats};

use crate::backend::{Backend, BackendError, Batch, RxTime, Verdict};
use crate::datapath::contract::{
    self, BackendInfo, BusyMeter, BusyMeters, Choice, DpdkInfo, Iface, Opening, Unusable,
};

/// Frames a worker receives at once.
pub const BURST: u16 = 64;
/// Descriptors of each receive and transmit queue (the driver may adjust it).
const RING: u16 = 1024;
/// Buffers per queue of the port's pool. DPDK 22.11's `net_af_xdp` keeps 4096 of them in its
/// fill ring alone and more in flight on the transmit side: with 4096 the host's frames on the
/// exception path stopped going out once answers flowed (the driver counted them sent); with
/// 16384 none is lost (`tests/live_dpdk.rs`). 16384 buffers of 2 KiB are 37 MB per queue.
const PORT_MBUFS: u32 = 16384;
/// Buffers per queue of the exception path's pool (`net_tap` copies each frame to the kernel).
const TAP_MBUFS: u32 = 4096;
/// Empty polls an idle worker spins through before it starts to sleep (the gaps in a tester's
/// stream stay short of a sleep's wake-up time).
const SPIN_POLLS: u32 = 64;
/// An idle worker's first sleep, doubled at each empty poll after it up to [`IDLE_SLEEP_MAX`].
const IDLE_SLEEP_MIN: Duration = Duration::from_micros(10);
/// An idle worker's longest sleep.
const IDLE_SLEEP_MAX: Duration = Duration::from_micros(200);
/// How often the first queue's worker reads the port's drop counters.
const STATS_EVERY: Duration = Duration::from_millis(100);

/// One queue of the port, served by one worker.
pub struct DpdkQueue {
    burst: Burst,
    /// The same queue of the exception path's port (`--dpdk-tap`): what is not answered goes
    /// to the host through it, and what the host sends on it goes out of the port.
    tap: Option<Burst>,
    port: Port,
    keep: Vec<bool>,
    /// The first queue's worker reports the port's drops (`imissed`, `rx_nombuf`) and receive
    /// errors (`ierrors`): when it last read them, and their counts then.
    drops: Option<(Instant, PortStats)>,
    /// Spin when idle (`--busy-poll`) instead of sleeping.
    busy_poll: bool,
    /// Empty polls in a row.
    idle: u32,
    /// The cycles of the polls that received frames, and those frames.
    busy: std::sync::Arc<BusyMeter>,
    /// Dropped after the port is closed (fields drop in order): takes away what DPDK's
    /// `net_af_xdp` driver leaves attached.
    _leftover: Option<std::sync::Arc<AfXdpLeftover>>,
}

/// An interface a `net_af_xdp` device of the EAL arguments is over. DPDK 22.11's driver, with
/// the libxdp of Debian 12, loads its XDP program (`xsk_def_prog`) without libxdp's dispatcher
/// where no bpffs is mounted, then fails to remove it when the port closes; the program would
/// stay on the interface. When the last worker goes, this removes it if it is still there
/// (that program only: it passes to the kernel what no socket takes, so an interface a killed
/// run left it on still works, and the next run replaces it).
#[derive(Debug)]
struct AfXdpLeftover {
    ifindex: u32,
    /// The id of the program the driver attached.
    prog: u32,
}

/// The name of the program DPDK's `net_af_xdp` driver attaches.
const AF_XDP_PROGRAM: &str = "xsk_def_prog";

impl Drop for AfXdpLeftover {
    fn drop(&mut self) {
        use reflector_sys::xdp::netlink;
        // By the id seen at the start (the program's name cannot be read once the run has
        // given up its privileges).
        if netlink::attached_prog_id(self.ifindex).is_ok_and(|id| id == Some(self.prog)) {
            let _ = netlink::detach(self.ifindex);
        }
    }
}

/// The interfaces of the `net_af_xdp` devices in EAL arguments (`--vdev=net_af_xdp0,iface=X`
/// or `--vdev net_af_xdp0,iface=X`).
fn af_xdp_interfaces(args: &[String]) -> Vec<String> {
    let devices = args.iter().enumerate().filter_map(|(i, a)| match a.strip_prefix("--vdev") {
        Some("") => args.get(i + 1).map(String::as_str),
        Some(rest) => rest.strip_prefix('='),
        None => None,
    });
    devices
        .filter(|d| d.starts_with("net_af_xdp"))
        .flat_map(|d| d.split(',').filter_map(|kv| kv.strip_prefix("iface=")).map(String::from))
        .collect()
}

impl std::fmt::Debug for DpdkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkQueue").field("port", &self.port.id()).finish_non_exhaustive()
    }
}

fn dropped(s: &PortStats) -> u64 {
    s.imissed + s.rx_nombuf
}

impl Backend for DpdkQueue {
    fn process<F: FnMut(&mut [u8], usize, RxTime) -> Verdict>(
        &mut self,
        wait: Duration,
        mut handle: F,
    ) -> Result<Batch, BackendError> {
        let mut batch = Batch::default();
        if let Some((at, before)) = self.drops
            && at.elapsed() >= STATS_EVERY
            && let Ok(stats) = self.port.stats()
        {
            batch.rx_dropped = dropped(&stats).saturating_sub(dropped(&before));
            // Frames the NIC received in error: never handed over, counted as invalid.
            batch.rx_invalid = stats.ierrors.saturating_sub(before.ierrors);
            self.drops = Some((Instant::now(), stats));
        }
        let polled = reflector_sys::dpdk::cycles();
        let n = self.burst.receive();
        if n > 0 {
            self.keep.clear();
            self.keep.resize(n, false);
            for i in 0..n {
                let Some((buf, len)) = self.burst.frame(i) else {
                    batch.rx_invalid += 1;
                    continue;
                };
                batch.received += 1;
                if let Ok(hit) = handle(buf, len, RxTime::Unknown) {
                    let answer = hit.answer_len(len);
                    if self.burst.set_len(i, answer) {
                        self.keep[i] = true;
                    } else {
                        batch.tx_error_packets += 1;
                        batch.tx_error_bytes += answer as u64;
                    }
                }
            }
            let sent = self.burst.send(&self.keep, self.tap.as_ref());
            batch.tx_error_packets += sent.failed as u64;
            batch.tx_error_bytes += sent.failed_bytes;
            // Frames for the host that the tap's queue would not take.
            batch.rx_dropped += sent.pass_failed as u64;
            self.busy.add(reflector_sys::dpdk::cycles().wrapping_sub(polled), n as u64);
        }
        // What the host sent on the exception path goes out of the port unchanged; what the
        // port would not take counts as a transmit error.
        let from_host = match &mut self.tap {
            Some(tap) => match tap.receive() {
                0 => 0,
                m => {
                    let (_, lost) = tap.forward(&self.burst);
                    batch.tx_error_packets += lost as u64;
                    m
                }
            },
            None => 0,
        };
        if n > 0 || from_host > 0 {
            self.idle = 0;
        } else if !self.busy_poll {
            self.idle = self.idle.saturating_add(1);
            if let Some(past) = self.idle.checked_sub(SPIN_POLLS) {
                std::thread::sleep(wait.min(idle_sleep(past)));
            }
        }
        Ok(batch)
    }
}

/// The sleep of an idle worker `past` empty polls after it stopped spinning: doubling from
/// [`IDLE_SLEEP_MIN`] up to [`IDLE_SLEEP_MAX`].
fn idle_sleep(past: u32) -> Duration {
    IDLE_SLEEP_MIN.saturating_mul(1 << past.min(5)).min(IDLE_SLEEP_MAX)
}

/// The EAL arguments without `--dpdk-eal`: no hugepages, no PCI scan, nothing shared with other
/// DPDK processes, and a `net_af_packet` virtual device over `iface` with a queue pair per
/// worker.
pub fn default_eal(iface: &str, queues: u16) -> Vec<String> {
    [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "256",
        "--log-level=warning",
        &format!("--vdev=net_af_packet0,iface={iface},qpairs={queues}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// DPDK started with its port (and the exception path's tap port, when there is one).
struct Started {
    port: Port,
    name: String,
    info: reflector_sys::dpdk::PortInfo,
    tap: Option<(Port, String)>,
    queues: u16,
    leftover: Option<std::sync::Arc<AfXdpLeftover>>,
    /// The rate of DPDK's cycle counter.
    cycles_hz: u64,
}

/// What [`prepare`] started, until [`open`] takes it (DPDK's state is the process's anyway).
static PREPARED: std::sync::Mutex<Option<Started>> = std::sync::Mutex::new(None);

/// The name of the exception path's virtual device (the `net_tap` driver's).
const TAP_DEVICE: &str = "net_tap_reflector";

/// Starts DPDK and its port, and with `--dpdk-tap NAME` the exception path: a kernel interface
/// NAME (DPDK's `net_tap`) with the port's MAC, which the run is then on. Before the run looks
/// at its interface, since this one does not exist until DPDK makes it.
pub fn prepare(settings: &contract::Settings) -> anyhow::Result<()> {
    let started = start(settings, None)?;
    *PREPARED.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
    Ok(())
}

/// Starts DPDK with the run's EAL arguments (the default ones over `iface`), and the port.
fn start(settings: &contract::Settings, iface: Option<&str>) -> anyhow::Result<Started> {
    let queues = settings.workers.unwrap_or(1);
    let args = match (&settings.dpdk_eal, iface) {
        (Some(args), _) => args.clone(),
        (None, Some(iface)) => default_eal(iface, queues),
        (None, None) => {
            return Err(Unusable(
                "--dpdk-tap needs --dpdk-eal naming the port (a PCI address or a --vdev)".into(),
            )
            .into());
        }
    };
    let eal = Eal::init(&args).map_err(|e| {
        Unusable(format!("DPDK did not start with the EAL arguments '{}': {e}", args.join(" ")))
    })?;
    let ports = eal.ports();
    let listed = || {
        if ports.is_empty() {
            "none".to_string()
        } else {
            ports.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    let (id, name) = match &settings.dpdk_port {
        Some(name) => match eal.port_by_name(name) {
            Ok(id) => (id, name.clone()),
            Err(_) => {
                return Err(
                    Unusable(format!("DPDK has no port named '{name}' (it found: {})", listed())).into()
                );
            }
        },
        None => ports.first().cloned().ok_or_else(|| {
            Unusable(
                "DPDK found no port: give --dpdk-eal a --vdev, or bind a NIC to vfio-pci or uio_pci_generic"
                    .into(),
            )
        })?,
    };
    let port = Port::start(&eal, id, queues, RING, true, PORT_MBUFS)
        .map_err(|e| Unusable(format!("DPDK port {name}: {e}{}", memory_hint(&e))))?;
    let info = port.info().map_err(|e| Unusable(format!("DPDK port {name}: {e}")))?;
    let tap = match &settings.dpdk_tap {
        None => None,
        Some(tap) => {
            let mac = reflector_core::MacAddr(info.mac);
            let id = eal
                .add_vdev(TAP_DEVICE, &format!("iface={tap},mac={mac}"))
                .map_err(|e| Unusable(format!("DPDK could not make the interface {tap} (net_tap): {e}")))?;
            let port = Port::start(&eal, id, queues, RING, false, TAP_MBUFS)
                .map_err(|e| Unusable(format!("DPDK's interface {tap} (net_tap): {e}{}", memory_hint(&e))))?;
            Some((port, tap.clone()))
        }
    };
    let leftover = if info.driver == "net_af_xdp" {
        // The device's interface: the one whose MAC the port has (a run names one port).
        af_xdp_interfaces(&args)
            .iter()
            .filter_map(|i| crate::host::iface::iface_info(i).ok())
            .find(|i| i.mac == reflector_core::MacAddr(info.mac))
            .and_then(|i| {
                use reflector_sys::xdp::{bpf, netlink};
                let prog = netlink::attached_prog_id(i.index).ok().flatten()?;
                let ours = bpf::prog_name(prog).is_ok_and(|n| n == AF_XDP_PROGRAM);
                ours.then(|| std::sync::Arc::new(AfXdpLeftover { ifindex: i.index, prog }))
            })
    } else {
        None
    };
    let cycles_hz = eal.cycles_hz();
    Ok(Started { port, name, info, tap, queues, leftover, cycles_hz })
}

/// Opens the port [`prepare`] started, or starts DPDK and the port now, and a worker per queue
/// (`--workers`, default 1).
pub fn open(
    settings: &contract::Settings,
    iface: Iface<'_>,
    filter: &reflector_core::Filter,
) -> anyhow::Result<Opening<Vec<DpdkQueue>>> {
    let _ = filter;
    let prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Started { port, name, info, tap, queues, leftover, cycles_hz } = match prepared {
        Some(started) => started,
        None => start(settings, Some(iface.name))?,
    };
    // (Or the exception path's, which carries the port's MAC.)
    port_is_interface(&name, &info, iface.name, iface.info.mac).map_err(Unusable)?;
    let before = port.stats().unwrap_or_default();
    let workers = (0..queues)
        .map(|q| {
            Ok(DpdkQueue {
                burst: port.burst(q, BURST)?,
                tap: tap.as_ref().map(|(t, _)| t.burst(q, BURST)).transpose()?,
                port: port.clone(),
                keep: Vec::with_capacity(usize::from(BURST)),
                drops: (q == 0).then(|| (Instant::now(), before)),
                busy_poll: settings.busy_poll,
                idle: 0,
                busy: Default::default(),
                _leftover: leftover.clone(),
            })
        })
        .collect::<Result<Vec<_>, reflector_sys::dpdk::DpdkError>>()
        .map_err(|e| Unusable(format!("DPDK port {name}: {e}")))?;
    let mut opened = BackendInfo::new(contract::Backend::Dpdk, Choice::Asked);
    opened.dpdk = Some(DpdkInfo {
        port: name,
        driver: info.driver,
        queues,
        speed_mbps: info.speed_mbps,
        tap: tap.map(|(_, name)| name),
        busy: BusyMeters { hz: cycles_hz, workers: workers.iter().map(|w| w.busy.clone()).collect() },
    });
    Ok(Opening { workers, kernel: None, info: opened })
}

/// Whether DPDK runs here: not tried in this process, since DPDK can start only once in one
/// (`check` tries it in a process of its own: [`try_here`]).
pub fn probe(iface: Iface<'_>) -> contract::Verdict {
    contract::Verdict {
        runs: false,
        why: format!(
            "not tried here (DPDK starts once per process): `reflector check {} --backend dpdk` tries it",
            iface.name
        ),
    }
}

/// Starts DPDK and its port as a run would (the default EAL arguments over `iface`, else
/// `--dpdk-eal`'s; no exception path), then stops them: whether a run would, and why not, with
/// what to do. DPDK starts once per process: `check` calls this in a process of its own.
pub fn try_here(settings: &contract::Settings, iface: Option<&str>) -> contract::Verdict {
    let settings = contract::Settings { dpdk_tap: None, ..settings.clone() };
    let started = match start(&settings, iface) {
        Ok(started) => started,
        Err(e) => return contract::Verdict { runs: false, why: with_hint(format!("{e:#}")) },
    };
    let Started { name, info, queues, .. } = &started;
    if let Some(iface) = iface
        && let Ok(facts) = crate::host::iface::iface_info(iface)
        && let Err(why) = port_is_interface(name, info, iface, facts.mac)
    {
        return contract::Verdict { runs: false, why };
    }
    contract::Verdict {
        runs: true,
        why: format!(
            "DPDK port {name} (driver {}), {queues} queue{}, at most {} receive queues; link {}",
            info.driver,
            if *queues == 1 { "" } else { "s" },
            info.max_rx_queues,
            if info.speed_mbps == 0 {
                "speed unknown".to_string()
            } else {
                format!("{} Mb/s", info.speed_mbps)
            }
        ),
    }
}

/// The packet rules judge frames by the interface's MAC: the port must be that interface.
fn port_is_interface(
    name: &str,
    info: &reflector_sys::dpdk::PortInfo,
    iface: &str,
    mac: reflector_core::MacAddr,
) -> Result<(), String> {
    let port_mac = reflector_core::MacAddr(info.mac);
    if port_mac == mac {
        return Ok(());
    }
    Err(format!(
        "DPDK port {name} has MAC {port_mac}, the interface {iface} has {mac}: name the interface the port is on, or use --dpdk-tap"
    ))
}

/// What to do when the buffer pool did not fit the EAL's memory.
fn memory_hint(e: &reflector_sys::dpdk::DpdkError) -> &'static str {
    if e.call == "rte_pktmbuf_pool_create" {
        " (give DPDK more memory: -m MB in --dpdk-eal, 80 for one queue and 40 more for each other, 10 more per queue with --dpdk-tap)"
    } else {
        ""
    }
}

/// What to do about a DPDK error, added to it where its words say.
fn with_hint(error: String) -> String {
    let hint = if error.contains("rte_pktmbuf_pool_create") {
        ""
    } else if error.contains("hugepage") || error.contains("Cannot allocate memory") {
        "; reserve hugepages (echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) or give --no-huge in --dpdk-eal"
    } else if error.contains("Permission denied") || error.contains("Operation not permitted") {
        "; DPDK needs root for a NIC bound to vfio-pci or uio_pci_generic"
    } else {
        ""
    };
    format!("{error}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_worker_sleeps_longer_each_time_up_to_the_most() {
        let sleeps: Vec<u128> = (0..8).map(|p| idle_sleep(p).as_micros()).collect();
        assert_eq!(sleeps, [10, 20, 40, 80, 160, 200, 200, 200]);
        assert_eq!(idle_sleep(u32::MAX), IDLE_SLEEP_MAX);
    }

    #[test]
    fn the_interfaces_of_af_xdp_devices_are_found_in_either_spelling() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            af_xdp_interfaces(&args(
                "--no-huge --vdev=net_af_xdp0,iface=va,start_queue=0 --vdev net_af_xdp1,iface=vc"
            )),
            ["va", "vc"]
        );
        assert!(af_xdp_interfaces(&args("--vdev=net_af_packet0,iface=va -a 0000:00:04.0 --vdev")).is_empty());
    }
}
