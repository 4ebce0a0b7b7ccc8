//! `reflector probe`: send test packets to a reflector and report loss, round trip and jitter.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context as _;

use crate::prober::{Amount, ProbeArgs, Prober, report_json};

pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let prober = Prober::open(args)?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install signal handlers")?;
    }
    let amount = match (args.count, args.duration) {
        (Some(n), _) => Amount::Count(n),
        (None, Some(d)) => Amount::Duration(d),
        (None, None) => Amount::Count(1000),
    };
    eprintln!("reflector probe: {}", prober.description);
    let description = prober.description.clone();
    let started = Instant::now();
    let json_mode = args.json;
    let tally = prober.run(amount, args.rate, args.wait, &stop, |t, elapsed| {
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
            args.dst_mac
        );
    }
    Ok(())
}
