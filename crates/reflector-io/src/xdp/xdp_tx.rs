//! The xdp-tx data path: the XDP program applies the rules and reflects test packets in the
//! driver (`XDP_TX`); no workers.

use reflector_core::Filter;

use super::{Attachment, Ending, PeerXdp, veth_peer_xdp};
use crate::backend::InKernel;
use crate::datapath::contract::{Backend, BackendInfo, Choice, Iface, InDriverInfo, Opening, Verdict};

/// Attaches the reflecting XDP program.
pub fn open(
    settings: &crate::datapath::contract::Settings,
    iface: Iface<'_>,
    filter: &Filter,
) -> anyhow::Result<Opening<Vec<InKernel>>> {
    let started = std::time::Instant::now();
    let attachment = Attachment::attach(
        filter,
        iface.info.index,
        iface.name,
        Ending::Reflect,
        settings.replace,
        settings.capture_kernel_limit,
    )?;
    let mut info = BackendInfo::new(Backend::XdpTx, Choice::Asked);
    info.in_driver = Some(InDriverInfo { mode: attachment.mode, instructions: attachment.instructions });
    info.ready_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    Ok(Opening {
        workers: Vec::new(),
        kernel: Some(super::kernel_program(attachment, Some(iface.name.to_string()))),
        info,
    })
}

/// Whether xdp-tx runs here: the program attached as `run` attaches it (then taken down),
/// and on a veth, a peer that takes the reflections.
pub fn probe(iface: Iface<'_>) -> Verdict {
    let program = match super::try_attach(iface, Ending::Reflect) {
        Ok(program) => program,
        Err(verdict) => return verdict,
    };
    match veth_peer_xdp(iface.name, iface.info.index) {
        PeerXdp::Looked(Ok(None)) => Verdict {
            runs: false,
            why: format!(
                "the program attaches ({program}), but the veth peer runs no XDP program: it drops the reflections (unless GRO is on there)"
            ),
        },
        _ => Verdict {
            runs: true,
            why: format!("the program attaches ({program}) and reflects in the driver"),
        },
    }
}
