//! The af-xdp data path: the XDP program hands test packets to one AF_XDP socket per served
//! queue, and the workers answer them.

use anyhow::Context as _;
use reflector_core::Filter;

use super::xsk::{FRAME_SIZE, Xsk};
use super::{Attachment, Ending, rx_queues};
use crate::datapath::contract::{Backend, BackendInfo, Choice, Iface, Opening, Unusable, Verdict, XdpInfo};

/// The largest frame `iface` can receive fits one UMEM frame (no multi-buffer AF_XDP here).
fn fits(iface: Iface<'_>) -> bool {
    iface.info.mtu as usize + 14 + 8 <= FRAME_SIZE as usize
}

/// Attaches the XDP program and opens one AF_XDP socket per served queue (`settings.workers`,
/// default every receive queue).
pub fn open(
    settings: &crate::datapath::contract::Settings,
    iface: Iface<'_>,
    filter: &Filter,
) -> anyhow::Result<Opening<Vec<Xsk>>> {
    let started = std::time::Instant::now();
    let name = iface.name;
    if !fits(iface) {
        anyhow::bail!(
            "af-xdp takes frames up to {FRAME_SIZE} bytes and {name} has MTU {} (use --backend af-packet, or a smaller MTU)",
            iface.info.mtu
        );
    }
    let queues = rx_queues(name);
    let served = match settings.workers {
        Some(w) if u32::from(w) > queues => {
            return Err(Unusable(format!("--workers {w}: {name} has only {queues} receive queue(s)")).into());
        }
        Some(w) => u32::from(w),
        None => queues,
    };
    let attachment = Attachment::attach(
        filter,
        iface.info.index,
        name,
        Ending::Redirect { queues },
        settings.replace,
        settings.capture_kernel_limit,
    )?;
    let mut sockets = Xsk::open_queues(iface.info.index, served, settings.umem_mib as usize * 1024 * 1024)
        .with_context(|| format!("AF_XDP sockets on {name} queues 0..{served}"))?;
    for xsk in &mut sockets {
        if settings.busy_poll {
            xsk.set_busy_poll()?;
        }
        attachment.register(xsk.queue, xsk.raw_fd())?;
    }
    let mut info = BackendInfo::new(Backend::AfXdp, Choice::Asked);
    info.xdp = Some(XdpInfo {
        mode: attachment.mode,
        instructions: attachment.instructions,
        zero_copy: sockets.iter().all(|s| s.zero_copy),
        umem_mib: settings.umem_mib,
        sockets: served,
        queues,
        busy_poll: settings.busy_poll,
        stamp_time_from_kernel: super::takes_xdp_metadata(),
    });
    info.ready_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    Ok(Opening { workers: sockets, kernel: Some(super::kernel_program(attachment, None)), info })
}

/// The UMEM `run` registers by default (`--umem-size`), in bytes.
pub const DEFAULT_UMEM_BYTES: u64 = 16 << 20;

/// Whether af-xdp runs here: the program attached as `run` attaches it and the AF_XDP sockets
/// bound, then all of it taken down.
pub fn probe(iface: Iface<'_>) -> Verdict {
    if !fits(iface) {
        return Verdict {
            runs: false,
            why: format!("MTU {} does not fit one {FRAME_SIZE}-byte UMEM frame", iface.info.mtu),
        };
    }
    let queues = rx_queues(iface.name);
    let program = match super::try_attach(iface, Ending::Redirect { queues }) {
        Ok(program) => program,
        Err(verdict) => return verdict,
    };
    match Xsk::open_queues(iface.info.index, queues, DEFAULT_UMEM_BYTES as usize) {
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
            why: format!("the program attaches ({program}), but AF_XDP sockets do not: {e:#}"),
        },
    }
}
