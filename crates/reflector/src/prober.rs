//! The prober behind `probe` and `lab`: its arguments, the socket, the paced sending and the
//! matching of reflections.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use reflector_core::{Family, MacAddr, Mode, Signature};
use reflector_io::afpacket::{AfPacket, AfPacketConfig};
use reflector_io::worker::utc_now_ns;
use serde_json::json;

use crate::input::UsageError;
use crate::input::parse_mac;
use crate::probe::{FCS_LEN, Pacer, ProbeConfig, Report, Tally};
use reflector_io::host::iface::IfaceInfo;

/// Arguments of `reflector probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Interface to send from.
    pub iface: String,
    /// The reflector's MAC address (not with --stamp).
    #[arg(long, value_name = "MAC", value_parser = parse_mac, required_unless_present = "stamp")]
    pub dst_mac: Option<MacAddr>,
    /// Speak STAMP (RFC 8762) over a UDP socket to --dst-ip and --port (default 862): report
    /// the round trip, the reflector's dwell, one-way delays and, against a stateful
    /// reflector, the loss per direction.
    #[arg(long, conflicts_with_all = ["dst_mac", "src_mac", "sig", "mode"])]
    pub stamp: bool,
    /// The reflector's IP address (IPv4 or IPv6) [default: 192.0.2.1, or 2001:db8::1 with an
    /// IPv6 --src-ip].
    #[arg(long, value_name = "IP")]
    pub dst_ip: Option<IpAddr>,
    /// Our IP address [default: the interface's IPv4 address, else 192.0.2.10, or 2001:db8::a
    /// with an IPv6 --dst-ip].
    #[arg(long, value_name = "IP")]
    pub src_ip: Option<IpAddr>,
    /// Our MAC [default: the interface's; for ITO signatures from another vendor's interface,
    /// 00:c0:17 and its last three bytes, received in promiscuous mode, so a default reflector
    /// accepts the probes].
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub src_mac: Option<MacAddr>,
    /// Probes per second; 0 sends as fast as possible.
    #[arg(long, value_name = "PPS", default_value_t = 1000)]
    pub rate: u64,
    /// Frame size in bytes including the 4-byte FCS, as testers count it.
    #[arg(long, value_name = "BYTES", default_value_t = 128)]
    pub size: usize,
    /// Probes to send [default: 1000 unless --duration is given].
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..=u32::MAX as u64))]
    pub count: Option<u64>,
    /// Send for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::input::parse_secs)]
    pub duration: Option<Duration>,
    /// Signature to carry: PROBEOT, DATA:OT, LATENCY, RFC2544 or Y.1564.
    #[arg(long, default_value = "PROBEOT", value_parser = parse_signature)]
    pub sig: Signature,
    /// What the reflector swaps (all, mac-ip, mac): reflections must come back that way.
    #[arg(long, default_value = "all", value_parser = parse_mode)]
    pub mode: Mode,
    /// The reflector's UDP test port [default: 3842, or 862 with --stamp].
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds to wait for late reflections after the last probe.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::input::parse_secs)]
    pub wait: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_signature(s: &str) -> Result<Signature, String> {
    Signature::ALL
        .into_iter()
        .find(|sig| sig.bytes().is_some_and(|b| std::str::from_utf8(b).is_ok_and(|t| t.trim_end() == s)))
        .ok_or_else(|| {
            format!("unknown signature '{s}' (expected PROBEOT, DATA:OT, LATENCY, RFC2544 or Y.1564)")
        })
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse().map_err(|e: reflector_core::ConfigError| e.to_string())
}

/// How long to send: a number of probes or a time.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    /// This many probes.
    Count(u64),
    /// For this long.
    Duration(Duration),
}

/// A probe run ready to go: the socket is open, the source port held.
pub struct Prober {
    config: ProbeConfig,
    socket: AfPacket,
    _port: UdpSocket,
    /// What the start line says.
    pub description: String,
}

/// The probes' source and destination addresses: as given, else the documentation prefixes
/// (the interface's IPv4 address as the source when it has one).
fn addresses(args: &ProbeArgs, iface: &IfaceInfo) -> Result<(IpAddr, IpAddr), UsageError> {
    let v6 = matches!(args.dst_ip, Some(IpAddr::V6(_))) || matches!(args.src_ip, Some(IpAddr::V6(_)));
    let src_ip = args.src_ip.unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa))
    } else {
        IpAddr::V4(iface.ipv4.unwrap_or(Ipv4Addr::new(192, 0, 2, 10)))
    });
    let dst_ip = args.dst_ip.unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    });
    if src_ip.is_ipv4() != dst_ip.is_ipv4() {
        return Err(UsageError(format!(
            "--src-ip {src_ip} and --dst-ip {dst_ip} are of different IP versions"
        )));
    }
    Ok((src_ip, dst_ip))
}

/// The probes' source MAC, and whether the socket must receive for a MAC not the interface's:
/// ITO probes go out from a NetAlly OUI unless told otherwise, as the reflector expects.
fn source_mac(args: &ProbeArgs, iface: &IfaceInfo) -> Result<(MacAddr, bool), UsageError> {
    let (src_mac, promiscuous) = match args.src_mac {
        Some(mac) => (mac, mac != iface.mac),
        None if args.sig.family() == Family::Ito && iface.mac.oui() != reflector_core::DEFAULT_OUI => {
            let m = iface.mac.0;
            let oui = reflector_core::DEFAULT_OUI;
            (MacAddr([oui[0], oui[1], oui[2], m[3], m[4], m[5]]), true)
        }
        None => (iface.mac, false),
    };
    if src_mac.is_group() || src_mac.is_zero() {
        return Err(UsageError(format!("--src-mac {src_mac} is not a unicast address")));
    }
    Ok((src_mac, promiscuous))
}

/// `--size` fits the signature's headers and the interface's MTU.
fn check_size(args: &ProbeArgs, config: &ProbeConfig, iface: &IfaceInfo) -> Result<(), UsageError> {
    if args.size < config.min_size() {
        return Err(UsageError(format!(
            "--size {} is too small for {} over IPv{} (minimum {})",
            args.size,
            args.sig.name(),
            if config.src_ip.is_ipv4() { 4 } else { 6 },
            config.min_size()
        )));
    }
    let max = iface.mtu as usize + 14 + FCS_LEN;
    if args.size > max {
        return Err(UsageError(format!(
            "--size {} exceeds the interface's MTU {} (maximum {max})",
            args.size, iface.mtu
        )));
    }
    Ok(())
}

impl Prober {
    /// Checks the arguments and opens the socket (in the calling thread's namespace).
    pub fn open(args: &ProbeArgs) -> anyhow::Result<Prober> {
        let iface = crate::interface::usable_interface(&args.iface)?;
        let dst_mac = args.dst_mac.ok_or_else(|| UsageError("--dst-mac is required".into()))?;
        if dst_mac.is_group() || dst_mac.is_zero() {
            return Err(UsageError(format!("--dst-mac {dst_mac} is not a unicast address")).into());
        }
        let dst_port = args.port.unwrap_or(reflector_core::DEFAULT_PORT);
        let (src_ip, dst_ip) = addresses(args, &iface)?;
        let (src_mac, promiscuous) = source_mac(args, &iface)?;
        // Hold a UDP port on our side: it names our probes, and the host's stack then does not
        // answer reflections with ICMP port-unreachable.
        let unspecified = if src_ip.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let port = UdpSocket::bind((unspecified, 0)).context("cannot reserve a UDP source port")?;
        let src_port = port.local_addr().context("cannot read the reserved port")?.port();
        let config = ProbeConfig {
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            signature: args.sig,
            size: args.size,
            mode: args.mode,
            session: (std::process::id() as u16) ^ (utc_now_ns() as u16),
        };
        check_size(args, &config, &iface)?;
        let program = reflector_bpf::cbpf::match_bytes_program(config.data_frame_offset(), &config.marker())
            .context("receive filter")?;
        let socket = AfPacket::open(&AfPacketConfig {
            ifindex: iface.index,
            mtu: iface.mtu,
            program: &program,
            fanout_group: None,
            rx_frames: 8192,
            tx_frames: 2048,
            promiscuous,
        })
        .with_context(|| format!("cannot open AF_PACKET on {}", args.iface))?;
        let description = format!(
            "{} -> {} on {} ({} {}:{} -> {}:{}), {} bytes, {}, expecting mode {}",
            src_mac,
            dst_mac,
            args.iface,
            args.sig.bytes().map_or("", |b| std::str::from_utf8(b).unwrap_or("")).trim_end(),
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            args.size,
            if args.rate == 0 { "as fast as possible".to_string() } else { format!("{} pps", args.rate) },
            args.mode.name(),
        );
        Ok(Prober { config, socket, _port: port, description })
    }

    /// Sends `amount` probes at `rate`, then waits `wait` for late reflections. `stop` ends the
    /// sending early; `progress` is called about once a second with the tally so far.
    pub fn run(
        mut self,
        amount: Amount,
        rate: u64,
        wait: Duration,
        stop: &AtomicBool,
        mut progress: impl FnMut(&Tally, Duration),
    ) -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        let started = Instant::now();
        let mut pacer = Pacer::new(rate, started);
        let mut scratch = Vec::new();
        let mut seq: u32 = 0;
        let mut next_progress = started + Duration::from_secs(1);
        let config = self.config.clone();
        let mut last_send = started;
        loop {
            let now = Instant::now();
            let sending = !stop.load(Ordering::Relaxed)
                && match amount {
                    Amount::Count(n) => (seq as u64) < n,
                    Amount::Duration(d) => now - started < d && seq < u32::MAX,
                };
            if !sending && now - last_send >= wait {
                break;
            }
            if sending {
                let mut due = pacer.due(now);
                if let Amount::Count(n) = amount {
                    due = due.min(n - seq as u64);
                }
                if due > 0 {
                    let queued = self.socket.send_batch(due as usize, |buf| {
                        let n = config.write(buf, seq, utc_now_ns(), &mut scratch);
                        seq = seq.wrapping_add(1);
                        n
                    })?;
                    pacer.sent += queued as u64;
                    tally.sent += queued as u64;
                    last_send = Instant::now();
                }
            }
            let received = self.socket.receive(Duration::ZERO, |frame| tally.take(&config, &frame))?;
            if now >= next_progress {
                progress(&tally, now - started);
                next_progress += Duration::from_secs(1);
            }
            if received == 0 {
                // Nothing arrived: sleep in poll() until the next probe is due (or briefly,
                // when draining), spinning only for waits too short for the scheduler.
                let until = if sending { pacer.next_at() } else { now + Duration::from_millis(10) };
                let idle = until.saturating_duration_since(Instant::now());
                if idle > Duration::from_micros(200) {
                    self.socket
                        .receive(idle - Duration::from_micros(100), |frame| tally.take(&config, &frame))?;
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        Ok(tally)
    }
}

/// The JSON object a probe run prints.
pub fn report_json(report: &Report, description: &str, elapsed: Duration) -> serde_json::Value {
    let mut m = report.json();
    m.insert("elapsed_s".into(), json!((elapsed.as_secs_f64() * 1000.0).round() / 1000.0));
    m.insert("probe".into(), json!(description));
    serde_json::Value::Object(m)
}
