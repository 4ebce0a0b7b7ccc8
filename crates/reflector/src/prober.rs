//! The arguments of `probe` (and of `lab`'s prober), how long it sends, and the JSON object a
//! run prints. The raw sender is [`crate::raw_prober`] (Linux); the STAMP sender
//! [`crate::stamp_probe`] (every Unix).

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use reflector_core::{MacAddr, Mode, Signature};

use crate::input::parse_mac;

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
