//! The DPDK data path (`--backend dpdk`, a build with the `dpdk` feature): DPDK started with the
//! run's EAL arguments (by default a virtual device over the interface: `net_af_packet`, so
//! nothing has to be bound to another driver), one port, one worker per queue. Each worker
//! receives bursts of [`BURST`] frames into DPDK's buffers, hands each to the packet core in
//! place with the room after it, and sends the answers from the same buffers; the other frames
//! are freed. What the worker could not send is counted as transmit errors, a frame of several
//! segments (which cannot be answered in place) as invalid, and the port's own drops (no free
//! descriptor, no free buffer) as dropped by the kernel. Idle, a worker sleeps in short steps
//! rather than spinning.

use std::time::{Duration, Instant};

use reflector_sys::dpdk::{Burst, Eal, Port, PortStats};

use crate::backend::{Backend, BackendError, Batch, RxTime, Verdict};
use crate::datapath::contract::{self, BackendInfo, Choice, DpdkInfo, Iface, Opening, Unusable};

/// Frames a worker receives at once.
pub const BURST: u16 = 64;
/// Descriptors of each receive and transmit queue (the driver may adjust it).
const RING: u16 = 1024;
/// How long an idle worker sleeps before it looks again.
const IDLE_SLEEP: Duration = Duration::from_micros(200);
/// How often the first queue's worker reads the port's drop counters.
const STATS_EVERY: Duration = Duration::from_millis(100);

/// One queue of the port, served by one worker.
pub struct DpdkQueue {
    burst: Burst,
    port: Port,
    keep: Vec<bool>,
    /// The first queue's worker reports the port's drops (`imissed`, `rx_nombuf`): when it last
    /// read them, and their sum then.
    drops: Option<(Instant, u64)>,
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
            batch.rx_dropped = dropped(&stats).saturating_sub(before);
            self.drops = Some((Instant::now(), dropped(&stats)));
        }
        let n = self.burst.receive();
        if n == 0 {
            std::thread::sleep(wait.min(IDLE_SLEEP));
            return Ok(batch);
        }
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
        let (_, failed, bytes) = self.burst.send(&self.keep);
        batch.tx_error_packets += failed as u64;
        batch.tx_error_bytes += bytes;
        Ok(batch)
    }
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

/// Starts DPDK, opens the port and a worker per queue (`--workers`, default 1).
pub fn open(
    settings: &contract::Settings,
    iface: Iface<'_>,
    filter: &reflector_core::Filter,
) -> anyhow::Result<Opening<Vec<DpdkQueue>>> {
    let _ = filter;
    let queues = settings.workers.unwrap_or(1);
    let args = settings.dpdk_eal.clone().unwrap_or_else(|| default_eal(iface.name, queues));
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
    let port = Port::start(&eal, id, queues, RING).map_err(|e| Unusable(format!("DPDK port {name}: {e}")))?;
    let info = port.info().map_err(|e| Unusable(format!("DPDK port {name}: {e}")))?;
    // The packet rules judge frames by the interface's MAC: the port must be that interface.
    if reflector_core::MacAddr(info.mac) != iface.info.mac {
        return Err(Unusable(format!(
            "DPDK port {name} has MAC {}, the interface {} has {}: name the interface the port is on",
            reflector_core::MacAddr(info.mac),
            iface.name,
            iface.info.mac
        ))
        .into());
    }
    let before = port.stats().map(|s| dropped(&s)).unwrap_or(0);
    let workers = (0..queues)
        .map(|q| {
            Ok(DpdkQueue {
                burst: port.burst(q, BURST)?,
                port: port.clone(),
                keep: Vec::with_capacity(usize::from(BURST)),
                drops: (q == 0).then(|| (Instant::now(), before)),
            })
        })
        .collect::<Result<Vec<_>, reflector_sys::dpdk::DpdkError>>()
        .map_err(|e| Unusable(format!("DPDK port {name}: {e}")))?;
    let mut opened = BackendInfo::new(contract::Backend::Dpdk, Choice::Asked);
    opened.dpdk = Some(DpdkInfo { port: name, driver: info.driver, queues, speed_mbps: info.speed_mbps });
    Ok(Opening { workers, kernel: None, info: opened })
}

/// Whether DPDK runs here: not tried by `check`, since DPDK can start only once in a process
/// (and `check` is one); a run says.
pub fn probe(iface: Iface<'_>) -> contract::Verdict {
    contract::Verdict {
        runs: false,
        why: format!(
            "not tried here (DPDK starts once per process): `reflector run {} --backend dpdk` tries it",
            iface.name
        ),
    }
}
