//! Choosing and opening a data path: [`open`] returns what will run and a typed [`BackendInfo`]
//! that the start line, the API, `/metrics`, the TUI, the dashboard and `lab` read.

use std::sync::Arc;

use anyhow::Context as _;
use reflector_core::Filter;
use reflector_sys::iface::IfaceInfo;

use super::args::RunArgs;
use crate::backend_info::{Backend, BackendChoice, BackendInfo, Choice, InDriverInfo, XdpInfo};
use crate::input::UsageError;

/// Replaces an interface-wide kernel program with the one for a new filter.
pub type KernelUpdate = Box<dyn Fn(&Filter) -> anyhow::Result<()>>;

/// What an interface-wide program (af-xdp, xdp-tx) counts, and a way to bring it in line with
/// a new filter.
pub struct KernelProgram {
    /// What it counted, per CPU.
    pub counters: crate::control::KernelCounters,
    /// Replaces it with the program for a new filter.
    pub update: KernelUpdate,
    /// The testers table it keeps.
    pub testers: crate::control::KernelTesters,
    /// Moves the frames it sampled into a capture tap (when it samples).
    pub capture: Option<KernelPump>,
}

/// Moves what an XDP program sampled into the tap, and tells it what the tap wants.
pub type KernelPump = Arc<dyn Fn(&reflector_io::tap::Tap) -> anyhow::Result<()> + Send + Sync>;

impl std::fmt::Debug for KernelProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelProgram")
    }
}

/// What will run: the workers' backends, of one kind.
pub enum Workers {
    /// One AF_XDP socket per served queue, behind the XDP program.
    #[cfg(target_os = "linux")]
    AfXdp(Vec<reflector_io::xdp::xsk::Xsk>),
    /// AF_PACKET sockets in a fanout group.
    #[cfg(target_os = "linux")]
    AfPacket(Vec<reflector_io::afpacket::AfPacket>),
    /// The /dev/bpf device.
    Bpf(Vec<reflector_io::bsdbpf::BpfBackend<reflector_io::bsdbpf::device::Device>>),
    /// None: the kernel program reflects.
    InKernel,
}

/// An opened data path.
pub struct Opened {
    /// The workers' backends.
    pub workers: Workers,
    /// The interface-wide kernel program, if the data path has one.
    pub kernel: Option<KernelProgram>,
    /// What was opened.
    pub info: BackendInfo,
}

/// Opens the data path `args.backend` names on `iface` for `filter`. `auto` falls back from
/// af-xdp to af-packet and says why; an explicit choice fails.
pub fn open(args: &RunArgs, iface_name: &str, iface: &IfaceInfo, filter: &Filter) -> anyhow::Result<Opened> {
    let choice = if args.backend == BackendChoice::Auto { Choice::Auto } else { Choice::Asked };
    let program =
        reflector_bpf::cbpf::program(filter).context("the kernel filter does not fit in classic BPF")?;
    match args.backend.resolve() {
        #[cfg(target_os = "linux")]
        Backend::AfXdp => match open_af_xdp(args, iface_name, iface, filter) {
            Ok(mut opened) => {
                opened.info.choice = choice;
                Ok(opened)
            }
            Err(e) if choice == Choice::Auto => open_af_packet(
                args,
                iface_name,
                iface,
                &program,
                Choice::Fallback { reason: format!("{e:#}") },
            ),
            Err(e) => Err(e),
        },
        #[cfg(target_os = "linux")]
        Backend::AfPacket => open_af_packet(args, iface_name, iface, &program, choice),
        #[cfg(target_os = "linux")]
        Backend::XdpTx => open_xdp_tx(args, iface_name, iface, filter, choice),
        #[cfg(not(target_os = "linux"))]
        b @ (Backend::AfXdp | Backend::AfPacket | Backend::XdpTx) => {
            Err(UsageError(format!("the {} backend is Linux only (use --backend bpf)", b.name())).into())
        }
        Backend::Bpf => open_bpf(args, iface_name, &program, choice),
    }
}

/// One AF_PACKET socket per worker, in a fanout group when there are several.
#[cfg(target_os = "linux")]
fn open_af_packet(
    args: &RunArgs,
    iface_name: &str,
    iface: &IfaceInfo,
    program: &[reflector_bpf::cbpf::Insn],
    choice: Choice,
) -> anyhow::Result<Opened> {
    use reflector_io::afpacket::{AfPacket, AfPacketConfig};
    let workers = args.workers.unwrap_or(1);
    let fanout = (workers > 1).then(|| (std::process::id() & 0xffff) as u16);
    let config = AfPacketConfig {
        ifindex: iface.index,
        mtu: iface.mtu,
        program,
        fanout_group: fanout,
        rx_frames: 4096,
        tx_frames: 1024,
        promiscuous: false,
    };
    let backends = (0..workers)
        .map(|_| AfPacket::open(&config).with_context(|| format!("cannot open AF_PACKET on {iface_name}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut info = BackendInfo::new(Backend::AfPacket, choice);
    info.kernel_filter_instructions = Some(program.len());
    Ok(Opened { workers: Workers::AfPacket(backends), kernel: None, info })
}

/// The /dev/bpf device (one worker).
fn open_bpf(
    args: &RunArgs,
    iface_name: &str,
    program: &[reflector_bpf::cbpf::Insn],
    choice: Choice,
) -> anyhow::Result<Opened> {
    use reflector_io::bsdbpf::{BpfBackend, configure, device::Device, ioctl};
    if args.workers.is_some_and(|w| w > 1) {
        return Err(UsageError("the bpf backend runs one worker (drop --workers)".into()).into());
    }
    let mut dev = Device::open_first()?;
    let buffer = configure(&mut dev, iface_name, program)?;
    let mut info = BackendInfo::new(Backend::Bpf, choice);
    info.kernel_filter_instructions = Some(program.len());
    info.device = Some(dev.path.clone());
    info.buffer_bytes = Some(buffer);
    Ok(Opened {
        workers: Workers::Bpf(vec![BpfBackend::new(dev, buffer, ioctl::NATIVE)]),
        kernel: None,
        info,
    })
}

/// Attaches the XDP program and opens one AF_XDP socket per served queue.
#[cfg(target_os = "linux")]
fn open_af_xdp(
    args: &RunArgs,
    iface_name: &str,
    iface: &IfaceInfo,
    filter: &Filter,
) -> anyhow::Result<Opened> {
    use reflector_io::xdp::{
        Attachment, Ending, rx_queues,
        xsk::{FRAME_SIZE, Xsk},
    };
    let started = std::time::Instant::now();
    // A frame must fit one UMEM frame (no multi-buffer AF_XDP here).
    let largest = iface.mtu as usize + 14 + 8;
    if largest > FRAME_SIZE as usize {
        anyhow::bail!(
            "af-xdp takes frames up to {FRAME_SIZE} bytes and {iface_name} has MTU {} (use --backend af-packet, or a smaller MTU)",
            iface.mtu
        );
    }
    let queues = rx_queues(iface_name);
    let served = match args.workers {
        Some(w) if u32::from(w) > queues => {
            return Err(UsageError(format!(
                "--workers {w}: {iface_name} has only {queues} receive queue(s)"
            ))
            .into());
        }
        Some(w) => u32::from(w),
        None => queues,
    };
    let capture = args.may_capture().then_some(args.capture_kernel_limit);
    let attachment = Attachment::attach(
        filter,
        iface.index,
        iface_name,
        Ending::Redirect { queues },
        args.replace,
        capture,
    )?;
    let mut sockets = Xsk::open_queues(iface.index, served, args.umem_size as usize * 1024 * 1024)
        .with_context(|| format!("AF_XDP sockets on {iface_name} queues 0..{served}"))?;
    for xsk in &mut sockets {
        if args.busy_poll {
            xsk.set_busy_poll()?;
        }
        attachment.register(xsk.queue, xsk.raw_fd())?;
    }
    let mut info = BackendInfo::new(Backend::AfXdp, Choice::Asked);
    info.xdp = Some(XdpInfo {
        mode: attachment.mode.name(),
        instructions: attachment.instructions,
        zero_copy: sockets.iter().all(|s| s.zero_copy),
        umem_mib: args.umem_size,
        sockets: served,
        queues,
        busy_poll: args.busy_poll,
        stamp_time_from_kernel: reflector_io::xdp::takes_xdp_metadata(),
    });
    info.ready_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    Ok(Opened { workers: Workers::AfXdp(sockets), kernel: Some(kernel_program(attachment, None)), info })
}

/// The counters and the update of an attached program, which stays attached as long as either
/// is alive (the run's), and is detached when the last goes (it would go with the process
/// anyway).
#[cfg(target_os = "linux")]
fn kernel_program(attachment: reflector_io::xdp::Attachment, tx_errors_of: Option<String>) -> KernelProgram {
    let attachment = Arc::new(attachment);
    let (counted, updated, listed) = (attachment.clone(), attachment.clone(), attachment.clone());
    // Reflections the driver failed to send after XDP_TX (a veth whose peer runs no XDP
    // program drops them all): moved from reflected to TX errors, on the CPU that reflected
    // most (the driver does not say which; their bytes stay counted as reflected).
    let at_start = tx_errors_of.as_deref().map(|i| driver_tx_errors(i).unwrap_or(0));
    let counters: crate::control::KernelCounters = Arc::new(move || {
        // The clock state the program answers STAMP with, kept current as the control loop
        // reads the counters (every stats interval); a failure leaves the last one in force.
        let _ = counted.refresh_clock();
        let mut cpus = counted.counters_per_cpu().ok()?;
        if let (Some(iface), Some(base)) = (&tx_errors_of, at_start) {
            let failed = driver_tx_errors(iface).unwrap_or(base).saturating_sub(base);
            if let Some(cpu) = cpus.iter_mut().max_by_key(|c| c.reflected_packets) {
                cpu.record_tx_errors(failed, 0);
            }
        }
        Some(cpus)
    });
    let update = Box::new(move |f: &Filter| -> anyhow::Result<()> {
        updated.update(f).map(|_replaced| ()).map_err(Into::into)
    });
    let testers: crate::control::KernelTesters = Arc::new(move || listed.gate().testers().ok());
    let capture = attachment.capture().is_some().then(|| -> KernelPump {
        Arc::new(move |tap: &reflector_io::tap::Tap| {
            attachment.capture().map_or(Ok(()), |c| c.pump(tap).map_err(Into::into))
        })
    });
    KernelProgram { counters, update, testers, capture }
}

/// Attaches the reflecting XDP program: test packets are turned around in the driver.
#[cfg(target_os = "linux")]
fn open_xdp_tx(
    args: &RunArgs,
    iface_name: &str,
    iface: &IfaceInfo,
    filter: &Filter,
    choice: Choice,
) -> anyhow::Result<Opened> {
    use reflector_io::xdp::{Attachment, Ending};
    let started = std::time::Instant::now();
    let capture = args.may_capture().then_some(args.capture_kernel_limit);
    let attachment =
        Attachment::attach(filter, iface.index, iface_name, Ending::Reflect, args.replace, capture)?;
    let mut info = BackendInfo::new(Backend::XdpTx, choice);
    info.in_driver =
        Some(InDriverInfo { mode: attachment.mode.name(), instructions: attachment.instructions });
    info.ready_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    Ok(Opened {
        workers: Workers::InKernel,
        kernel: Some(kernel_program(attachment, Some(iface_name.to_string()))),
        info,
    })
}

/// The driver's count of frames it failed to send after `XDP_TX` (the statistics whose names
/// say so: `rx_queue_N_xdp_tx_errors` on a veth), summed over its queues.
#[cfg(target_os = "linux")]
fn driver_tx_errors(iface: &str) -> Option<u64> {
    let stats = reflector_sys::iface::driver_stats(iface).ok()?;
    Some(stats.stats.iter().filter(|(name, _)| name.contains("xdp_tx_err")).map(|(_, v)| v).sum())
}
