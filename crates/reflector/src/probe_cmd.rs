//! `reflector probe`: send test packets to a reflector and report loss, round trip and jitter.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context as _;

use crate::input::UsageError;
use crate::prober::{Amount, ProbeArgs};

pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install signal handlers")?;
    }
    let amount = match (args.count, args.duration) {
        (Some(n), _) => Amount::Count(n),
        (None, Some(d)) => Amount::Duration(d),
        (None, None) => Amount::Count(1000),
    };
    if args.stamp {
        return run_stamp(args, amount, &stop);
    }
    run_raw(args, amount, &stop)
}

/// A raw probe run: test frames through an AF_PACKET socket (Linux only).
#[cfg(not(target_os = "linux"))]
fn run_raw(_args: &ProbeArgs, _amount: Amount, _stop: &AtomicBool) -> anyhow::Result<()> {
    Err(UsageError(
        "raw probes are sent through an AF_PACKET socket, which only Linux has: use --stamp".into(),
    )
    .into())
}

/// A raw probe run: test frames through an AF_PACKET socket (Linux only).
#[cfg(target_os = "linux")]
fn run_raw(args: &ProbeArgs, amount: Amount, stop: &AtomicBool) -> anyhow::Result<()> {
    use crate::raw_prober::report_json;
    let prober = crate::raw_prober::Prober::open(args)?;
    eprintln!("reflector probe: {}", prober.description);
    let description = prober.description.clone();
    let started = Instant::now();
    let json_mode = args.json;
    let tally = prober.run(amount, args.rate, args.wait, stop, |t, elapsed| {
        if !json_mode {
            eprintln!("[{:5.1}s] sent {} received {}", elapsed.as_secs_f64(), t.sent, t.received);
        }
    })?;
    let report = tally.report();
    if args.json {
        crate::output::line(report_json(&report, &description, started.elapsed()))?;
    } else {
        crate::output::line(report.text())?;
    }
    if report.sent > 0 && report.received == 0 {
        anyhow::bail!(
            "no reflections came back: 100% loss (is a reflector running with MAC {} on this link?)",
            args.dst_mac.map_or("?".into(), |m| m.to_string())
        );
    }
    Ok(())
}

/// `probe --stamp`: a STAMP session to `--dst-ip` (default 192.0.2.1) port `--port` (862).
fn run_stamp(args: &ProbeArgs, amount: Amount, stop: &AtomicBool) -> anyhow::Result<()> {
    use crate::stamp_probe::{StampProbe, payload_len, report, run, text};
    let ip = args.dst_ip.unwrap_or(std::net::Ipv4Addr::new(192, 0, 2, 1).into());
    if let Some(src) = args.src_ip
        && src.is_ipv4() != ip.is_ipv4()
    {
        return Err(
            UsageError(format!("--src-ip {src} and --dst-ip {ip} are of different IP versions")).into()
        );
    }
    let probe = StampProbe {
        iface: args.iface.clone(),
        target: std::net::SocketAddr::new(ip, args.port.unwrap_or(reflector_core::stamp::DEFAULT_STAMP_PORT)),
        src_ip: args.src_ip,
        size: args.size,
        rate: args.rate,
        amount,
        wait: args.wait,
    };
    let min =
        crate::pacer::FCS_LEN + 14 + if ip.is_ipv4() { 20 } else { 40 } + 8 + reflector_core::stamp::BASE_LEN;
    if payload_len(args.size, &probe.target) < reflector_core::stamp::BASE_LEN {
        return Err(UsageError(format!(
            "--size {} is too small for a STAMP packet over IPv{} (minimum {min})",
            args.size,
            if ip.is_ipv4() { 4 } else { 6 }
        ))
        .into());
    }
    crate::interface::usable_interface(&args.iface)?;
    eprintln!("reflector probe: STAMP to {} from {}, {} bytes", probe.target, probe.iface, probe.size);
    let started = Instant::now();
    let (sent, answers) = run(&probe, stop)?;
    let report = report(&probe, sent, &answers, started.elapsed());
    if args.json {
        crate::output::line(&report)?;
    } else {
        crate::output::line(text(&report))?;
    }
    if sent > 0 && answers.is_empty() {
        anyhow::bail!(
            "no answers came back: 100% loss (is a STAMP reflector listening on {}?)",
            probe.target
        );
    }
    Ok(())
}
