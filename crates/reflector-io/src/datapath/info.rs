//! What a run opened, as every report shows it: the data path, how it was chosen, and its
//! facts.

use serde::Serialize;

/// A data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// XDP program and AF_XDP sockets.
    AfXdp,
    /// AF_PACKET rings.
    AfPacket,
    /// A /dev/bpf device.
    Bpf,
    /// An XDP program that reflects in the driver.
    XdpTx,
    /// A DPDK port (a build with the `dpdk` feature).
    Dpdk,
}

impl Backend {
    /// Every data path, in the order the command line lists them.
    pub const ALL: &[Backend] =
        &[Backend::AfXdp, Backend::AfPacket, Backend::Bpf, Backend::XdpTx, Backend::Dpdk];

    /// The name used on the command line, in reports and as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Backend::AfXdp => "af-xdp",
            Backend::AfPacket => "af-packet",
            Backend::Bpf => "bpf",
            Backend::XdpTx => "xdp-tx",
            Backend::Dpdk => "dpdk",
        }
    }

    /// What it is, in a line (the command line's help).
    pub fn about(self) -> &'static str {
        match self {
            Backend::AfXdp => "An XDP program hands test packets to AF_XDP sockets, one per queue (Linux)",
            Backend::AfPacket => "AF_PACKET with mmap rings and a kernel pre-filter (Linux)",
            Backend::Bpf => "A /dev/bpf device with the same classic BPF filter (macOS, FreeBSD); one worker",
            Backend::XdpTx => {
                "An XDP program applies the rules and reflects test packets in the driver (XDP_TX); no workers (Linux)"
            }
            Backend::Dpdk => {
                "A DPDK port, one worker per queue (Linux; a build with the dpdk feature); see --dpdk-eal, --dpdk-port"
            }
        }
    }

    /// It runs on this system (else opening it is a usage error, and `check` leaves it out).
    pub fn on_this_system(self) -> bool {
        match self {
            Backend::AfXdp | Backend::AfPacket | Backend::XdpTx => cfg!(target_os = "linux"),
            Backend::Bpf => !cfg!(target_os = "linux"),
            Backend::Dpdk => cfg!(all(target_os = "linux", feature = "dpdk")),
        }
    }

    /// The capabilities it needs on Linux (none elsewhere).
    #[cfg(target_os = "linux")]
    pub fn capabilities(self) -> Vec<crate::host::privilege::Capability> {
        use crate::host::privilege::{SOCKET, XDP_PROGRAM};
        match self {
            Backend::AfPacket => SOCKET.to_vec(),
            Backend::AfXdp => [XDP_PROGRAM, SOCKET].concat(),
            Backend::XdpTx => XDP_PROGRAM.to_vec(),
            Backend::Bpf => Vec::new(),
            // Its virtual devices over an interface take packet sockets (or AF_XDP ones); a PCI
            // NIC bound to vfio or uio needs the device files, which root holds.
            Backend::Dpdk => SOCKET.to_vec(),
        }
    }
}

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver.
    Native,
    /// In the stack, after the driver (drivers without XDP, or MTUs native mode refuses).
    Generic,
}

impl XdpMode {
    /// "native" or "generic".
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
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
    /// Where the program runs.
    pub mode: XdpMode,
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
    /// The XDP program hands a STAMP request's receive time to the worker as metadata (else
    /// the worker reads its clock: the kernel's verifier refuses `bpf_xdp_adjust_meta`).
    pub stamp_time_from_kernel: bool,
}

/// Facts about an XDP program that reflects in the driver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InDriverInfo {
    /// Where the program runs.
    pub mode: XdpMode,
    /// Instructions in the program.
    pub instructions: usize,
}

/// Facts about a DPDK port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DpdkInfo {
    /// The port's name (a virtual device's, or a PCI address).
    pub port: String,
    /// Its poll-mode driver.
    pub driver: String,
    /// Queues served, one worker each.
    pub queues: u16,
    /// Link speed in Mb/s (0: unknown or down).
    pub speed_mbps: u32,
    /// The exception path's interface (`--dpdk-tap`), if there is one.
    pub tap: Option<String>,
    /// The workers' busy cycles, counted while they run.
    #[serde(skip)]
    pub busy: BusyMeters,
}

/// The DPDK workers' busy time as `dpdk-testpmd --record-core-cycles` counts it: the cycles of
/// each poll that received frames, from before the receive to after the send (DPDK's cycle
/// counter, the TSC on x86), and the frames received in them. One meter per worker (no shared
/// cache line between them).
#[derive(Debug, Clone, Default)]
pub struct BusyMeters {
    /// The counter's rate in Hz.
    pub hz: u64,
    /// Each worker's.
    pub workers: Vec<std::sync::Arc<BusyMeter>>,
}

impl BusyMeters {
    /// All workers' busy cycles and the frames received in them.
    pub fn total(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.workers
            .iter()
            .fold((0, 0), |(c, p), m| (c + m.cycles.load(Relaxed), p + m.packets.load(Relaxed)))
    }
}

/// Meters are the same when they are the same counters.
impl PartialEq for BusyMeters {
    fn eq(&self, other: &BusyMeters) -> bool {
        self.hz == other.hz
            && self.workers.len() == other.workers.len()
            && self.workers.iter().zip(&other.workers).all(|(a, b)| std::sync::Arc::ptr_eq(a, b))
    }
}

impl Eq for BusyMeters {}

/// One worker's busy cycles and the frames received in them.
#[derive(Debug, Default)]
pub struct BusyMeter {
    cycles: std::sync::atomic::AtomicU64,
    packets: std::sync::atomic::AtomicU64,
}

impl BusyMeter {
    /// A poll that received `packets` frames took `cycles`.
    pub fn add(&self, cycles: u64, packets: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        // Only its worker writes: a load and a store, no locked instruction.
        self.cycles.store(self.cycles.load(Relaxed).wrapping_add(cycles), Relaxed);
        self.packets.store(self.packets.load(Relaxed).wrapping_add(packets), Relaxed);
    }
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
    /// xdp-tx: the program.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_driver: Option<InDriverInfo>,
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
    /// dpdk: the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpdk: Option<DpdkInfo>,
}

impl BackendInfo {
    /// What a backend opened with nothing to say yet.
    pub fn new(backend: Backend, choice: Choice) -> BackendInfo {
        BackendInfo {
            backend,
            choice,
            xdp: None,
            in_driver: None,
            kernel_filter_instructions: None,
            device: None,
            buffer_bytes: None,
            ready_ms: None,
            dpdk: None,
        }
    }

    /// Frames move without a copy.
    pub fn zero_copy(&self) -> bool {
        self.xdp.as_ref().is_some_and(|x| x.zero_copy)
    }

    /// Its end detaches an XDP program (DPDK's `net_af_xdp` driver leaves its own attached:
    /// `crate::dpdk`), which needs CAP_NET_ADMIN kept until then.
    pub fn closing_detaches_xdp(&self) -> bool {
        self.dpdk.as_ref().is_some_and(|d| d.driver == "net_af_xdp")
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
                x.mode.name(),
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
            if !x.stamp_time_from_kernel {
                out.push_str(
                    "; STAMP receive times from the workers' clock (this kernel refuses XDP metadata)",
                );
            }
        }
        if let Some(d) = &self.in_driver {
            out = format!(
                "XDP {} mode, {} instructions; test packets reflected in the {} (XDP_TX), no workers",
                d.mode.name(),
                d.instructions,
                if d.mode == XdpMode::Native {
                    "driver"
                } else {
                    "kernel's generic XDP path (the driver has no native XDP here: far slower than native)"
                }
            );
        }
        match (&self.device, self.buffer_bytes, self.kernel_filter_instructions) {
            (Some(dev), Some(buffer), Some(n)) => {
                out = format!("{dev}, buffer {} KiB, filter {n} instructions", buffer / 1024)
            }
            (_, _, Some(n)) => out = format!("kernel filter {n} instructions"),
            _ => {}
        }
        if let Some(d) = &self.dpdk {
            out = format!(
                "DPDK port {} (driver {}), {} queue{}, one worker each; link {}",
                d.port,
                d.driver,
                d.queues,
                if d.queues == 1 { "" } else { "s" },
                if d.speed_mbps == 0 {
                    "speed unknown".to_string()
                } else {
                    format!("{} Mb/s", d.speed_mbps)
                }
            );
            if let Some(tap) = &d.tap {
                out.push_str(&format!("; other frames to the host through {tap}"));
            }
        }
        if let Some(ms) = self.ready_ms {
            out.push_str(&format!("; ready in {ms:.1} ms"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_line_says_what_was_opened_and_why() {
        let mut info = BackendInfo::new(Backend::AfXdp, Choice::Auto);
        info.xdp = Some(XdpInfo {
            mode: XdpMode::Native,
            instructions: 463,
            zero_copy: false,
            umem_mib: 16,
            sockets: 2,
            queues: 4,
            busy_poll: true,
            stamp_time_from_kernel: true,
        });
        info.ready_ms = Some(26.71);
        assert_eq!(info.why(), "auto: af-xdp");
        assert_eq!(
            info.details(),
            "XDP native mode, 463 instructions; AF_XDP copy mode, 16 MiB UMEM shared by 2 sockets; queues 0..2; busy polling (queues 2..4 go to the stack); ready in 26.7 ms"
        );
        assert!(!info.zero_copy());
        info.xdp.as_mut().unwrap().stamp_time_from_kernel = false;
        assert!(info.details().contains(
            "(queues 2..4 go to the stack); STAMP receive times from the workers' clock (this kernel refuses XDP metadata); ready"
        ));
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
        let mut dpdk = BackendInfo::new(Backend::Dpdk, Choice::Asked);
        dpdk.dpdk = Some(DpdkInfo {
            port: "net_af_packet0".into(),
            driver: "net_af_packet".into(),
            queues: 2,
            speed_mbps: 10_000,
            tap: None,
            busy: BusyMeters::default(),
        });
        assert_eq!(
            dpdk.details(),
            "DPDK port net_af_packet0 (driver net_af_packet), 2 queues, one worker each; link 10000 Mb/s"
        );
        // The busy meters add up their workers' counts, and are not part of the start record.
        let meters = BusyMeters { hz: 1_000, workers: vec![Default::default(), Default::default()] };
        meters.workers[0].add(300, 2);
        meters.workers[1].add(100, 2);
        meters.workers[1].add(100, 1);
        assert_eq!(meters.total(), (500, 5));
        assert_eq!(meters, meters.clone());
        assert_ne!(meters, BusyMeters { hz: 1_000, workers: vec![Default::default(), Default::default()] });
        dpdk.dpdk.as_mut().unwrap().busy = meters;
        assert!(serde_json::to_value(&dpdk).unwrap()["dpdk"].get("busy").is_none());
        dpdk.dpdk.as_mut().unwrap().tap = Some("rfl0".into());
        assert!(dpdk.details().ends_with("; other frames to the host through rfl0"), "{}", dpdk.details());
        let json = serde_json::to_value(&packet).unwrap();
        assert_eq!(json["backend"], "af-packet");
        assert_eq!(json["choice"], serde_json::json!({"how": "fallback", "reason": "MTU 9000 too large"}));
        assert!(json.get("xdp").is_none());
    }
}
