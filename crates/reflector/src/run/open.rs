//! Choosing and opening a data path: [`open`] returns what will run and a typed [`BackendInfo`]
//! that the start line, the API, `/metrics`, the TUI, the dashboard and `lab` read.

use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use reflector_core::Filter;
use reflector_sys::iface::IfaceInfo;
use serde::Serialize;

use super::args::RunArgs;
use crate::input::UsageError;

/// Which data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The best one available here: af-xdp, else af-packet on Linux; bpf on macOS and FreeBSD.
    Auto,
    /// An XDP program hands test packets to AF_XDP sockets, one per queue (Linux).
    AfXdp,
    /// AF_PACKET with mmap rings and a kernel pre-filter (Linux).
    AfPacket,
    /// A /dev/bpf device with the same classic BPF filter (macOS, FreeBSD); one worker.
    Bpf,
}

impl BackendChoice {
    /// The backend `auto` stands for on this system.
    pub fn resolve(self) -> Backend {
        match self {
            BackendChoice::Auto if cfg!(target_os = "linux") => Backend::AfXdp,
            BackendChoice::Auto => Backend::Bpf,
            BackendChoice::AfXdp => Backend::AfXdp,
            BackendChoice::AfPacket => Backend::AfPacket,
            BackendChoice::Bpf => Backend::Bpf,
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::AfXdp => Backend::AfXdp.name(),
            BackendChoice::AfPacket => Backend::AfPacket.name(),
            BackendChoice::Bpf => Backend::Bpf.name(),
        }
    }
}

/// A data path that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// XDP program and AF_XDP sockets.
    AfXdp,
    /// AF_PACKET rings.
    AfPacket,
    /// A /dev/bpf device.
    Bpf,
}

impl Backend {
    /// The name used on the command line, in reports and as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Backend::AfXdp => "af-xdp",
            Backend::AfPacket => "af-packet",
            Backend::Bpf => "bpf",
        }
    }
}

/// How the backend came to be chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum Choice {
    /// The user named it.
    Asked,
    /// `auto` chose it.
    Auto,
    /// `auto` chose af-xdp, which failed to open: af-packet instead.
    Fallback {
        /// Why af-xdp failed.
        reason: String,
    },
}

/// Facts about an XDP program and its AF_XDP sockets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct XdpInfo {
    /// "native" or "generic".
    pub mode: &'static str,
    /// Instructions in the program.
    pub instructions: usize,
    /// Frames move without a copy (else copy mode).
    pub zero_copy: bool,
    /// UMEM size, shared by the sockets.
    pub umem_mib: u32,
    /// Sockets (served queues 0..sockets).
    pub sockets: u32,
    /// Receive queues of the interface (the ones past `sockets` go to the stack).
    pub queues: u32,
    /// Workers spin instead of sleeping.
    pub busy_poll: bool,
}

/// What was opened, as every report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendInfo {
    /// The data path.
    pub backend: Backend,
    /// How it was chosen.
    pub choice: Choice,
    /// af-xdp: the program and sockets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpInfo>,
    /// af-packet and bpf: instructions of the classic BPF filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_filter_instructions: Option<usize>,
    /// bpf: the device opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// bpf: its buffer, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_bytes: Option<u32>,
    /// af-xdp: milliseconds from the first step to sockets ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<f64>,
}

impl BackendInfo {
    fn new(backend: Backend, choice: Choice) -> BackendInfo {
        BackendInfo {
            backend,
            choice,
            xdp: None,
            kernel_filter_instructions: None,
            device: None,
            buffer_bytes: None,
            ready_ms: None,
        }
    }

    /// Frames move without a copy.
    pub fn zero_copy(&self) -> bool {
        self.xdp.as_ref().is_some_and(|x| x.zero_copy)
    }

    /// Why this backend, for the start line.
    pub fn why(&self) -> String {
        match (&self.choice, self.backend) {
            (Choice::Asked, _) => "as asked".into(),
            (Choice::Auto, Backend::Bpf) => "auto: bpf (no AF_PACKET on this system)".into(),
            (Choice::Auto, b) => format!("auto: {}", b.name()),
            (Choice::Fallback { reason }, b) => {
                format!("auto: {}, because af-xdp failed: {reason}", b.name())
            }
        }
    }

    /// The backend's facts in a few words, for the start line and `details` in the API.
    pub fn details(&self) -> String {
        let mut out = String::new();
        if let Some(x) = &self.xdp {
            out = format!(
                "XDP {} mode, {} instructions; AF_XDP {}, {} MiB UMEM shared by {} socket{}; queues 0..{}{}",
                x.mode,
                x.instructions,
                if x.zero_copy { "zero-copy" } else { "copy mode" },
                x.umem_mib,
                x.sockets,
                if x.sockets == 1 { "" } else { "s" },
                x.sockets,
                if x.busy_poll { "; busy polling" } else { "" }
            );
            if x.sockets < x.queues {
                out.push_str(&format!(" (queues {}..{} go to the stack)", x.sockets, x.queues));
            }
        }
        match (&self.device, self.buffer_bytes, self.kernel_filter_instructions) {
            (Some(dev), Some(buffer), Some(n)) => {
                out = format!("{dev}, buffer {} KiB, filter {n} instructions", buffer / 1024)
            }
            (_, _, Some(n)) => out = format!("kernel filter {n} instructions"),
            _ => {}
        }
        if let Some(ms) = self.ready_ms {
            out.push_str(&format!("; ready in {ms:.1} ms"));
        }
        out
    }
}

/// Replaces an interface-wide kernel program with the one for a new filter.
pub type KernelUpdate = Box<dyn Fn(&Filter) -> anyhow::Result<()>>;

/// Per-reason counts of a kernel program's rejects, and a way to bring it in line with a new
/// filter: what an interface-wide program (af-xdp) adds to the workers.
pub struct KernelProgram {
    /// Frames it rejected, per reason.
    pub rejects: crate::control::KernelRejects,
    /// Replaces it with the program for a new filter.
    pub update: KernelUpdate,
}

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
        #[cfg(not(target_os = "linux"))]
        b @ (Backend::AfXdp | Backend::AfPacket) => {
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
        Attachment, rx_queues,
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
    let attachment = Attachment::attach(filter, iface.index, iface_name, queues, args.replace)?;
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
    });
    info.ready_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    // The program stays attached as long as a clone of this is alive (the run's), and is
    // detached when the last goes (it would go with the process anyway).
    let attachment = Arc::new(attachment);
    let (counted, updated) = (attachment.clone(), attachment);
    let rejects: crate::control::KernelRejects = Arc::new(move || counted.rejected().ok());
    let update = Box::new(move |f: &Filter| -> anyhow::Result<()> { updated.update(f).map_err(Into::into) });
    Ok(Opened { workers: Workers::AfXdp(sockets), kernel: Some(KernelProgram { rejects, update }), info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_line_says_what_was_opened_and_why() {
        let mut info = BackendInfo::new(Backend::AfXdp, Choice::Auto);
        info.xdp = Some(XdpInfo {
            mode: "native",
            instructions: 463,
            zero_copy: false,
            umem_mib: 16,
            sockets: 2,
            queues: 4,
            busy_poll: true,
        });
        info.ready_ms = Some(26.71);
        assert_eq!(info.why(), "auto: af-xdp");
        assert_eq!(
            info.details(),
            "XDP native mode, 463 instructions; AF_XDP copy mode, 16 MiB UMEM shared by 2 sockets; queues 0..2; busy polling (queues 2..4 go to the stack); ready in 26.7 ms"
        );
        assert!(!info.zero_copy());
        let mut packet =
            BackendInfo::new(Backend::AfPacket, Choice::Fallback { reason: "MTU 9000 too large".into() });
        packet.kernel_filter_instructions = Some(41);
        assert_eq!(packet.why(), "auto: af-packet, because af-xdp failed: MTU 9000 too large");
        assert_eq!(packet.details(), "kernel filter 41 instructions");
        let mut bpf = BackendInfo::new(Backend::Bpf, Choice::Auto);
        (bpf.kernel_filter_instructions, bpf.device, bpf.buffer_bytes) =
            (Some(41), Some("/dev/bpf3".into()), Some(1 << 20));
        assert_eq!(bpf.why(), "auto: bpf (no AF_PACKET on this system)");
        assert_eq!(bpf.details(), "/dev/bpf3, buffer 1024 KiB, filter 41 instructions");
        let json = serde_json::to_value(&packet).unwrap();
        assert_eq!(json["backend"], "af-packet");
        assert_eq!(json["choice"], serde_json::json!({"how": "fallback", "reason": "MTU 9000 too large"}));
        assert!(json.get("xdp").is_none());
    }
}
