//! The raw prober behind `probe` and `lab`: test frames built whole and sent through an
//! AF_PACKET socket (with its TX ring), reflections matched on the same socket behind a classic
//! BPF filter, paced sending. Linux only: macOS and FreeBSD have `probe --stamp` (a UDP socket).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reflector_core::{Family, MacAddr};
use reflector_io::afpacket::{AfPacket, AfPacketConfig, Received};
use reflector_io::host::iface::IfaceInfo;
use reflector_io::worker::utc_now_ns;

use crate::input::UsageError;
use crate::pacer::{FCS_LEN, Pacer};
use crate::probe::{ProbeConfig, Report, Tally};
use crate::prober::{Amount, ProbeArgs};
use serde_json::json;

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
            let received = self.socket.receive(Duration::ZERO, |frame| take(&mut tally, &config, &frame))?;
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
                    self.socket.receive(idle - Duration::from_micros(100), |frame| {
                        take(&mut tally, &config, &frame)
                    })?;
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        Ok(tally)
    }
}

/// Counts `frame` if it is a reflection of one of `config`'s probes.
fn take(tally: &mut Tally, config: &ProbeConfig, frame: &Received<'_>) {
    if let Some((seq, sent_ns)) = config.parse_reflection(frame.data) {
        tally.record(seq, sent_ns, frame.timestamp_ns);
    }
}

/// The JSON object a probe run prints.
pub fn report_json(report: &Report, description: &str, elapsed: Duration) -> serde_json::Value {
    let mut m = report.json();
    m.insert("elapsed_s".into(), json!((elapsed.as_secs_f64() * 1000.0).round() / 1000.0));
    m.insert("probe".into(), json!(description));
    serde_json::Value::Object(m)
}
