//! `reflector replay`: a capture in, the reflections out, a JSON summary on stdout.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use reflector_core::MacAddr;
use reflector_io::replay::{ReplayError, replay};
use serde_json::{Value, json};

use crate::UsageError;
use crate::filter_args::{FilterArgs, parse_mac};

/// Arguments of `reflector replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture to read (pcap or pcapng, Ethernet).
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// Where to write the reflected frames (pcap, nanosecond timestamps).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// The reflector's MAC address: test frames must be addressed to it.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    local_mac: MacAddr,
    /// One of the reflector's own IP addresses: frames from it are not a tester's
    /// (reason src_ip_own); repeatable.
    #[arg(long = "local-ip", value_name = "IP")]
    local_ips: Vec<std::net::IpAddr>,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let filter = args.filter.filter(args.local_mac, &args.local_ips)?;
    let input = File::open(&args.input)
        .map_err(|e| UsageError(format!("cannot open {}: {e}", args.input.display())))?;
    // Write next to OUT and rename at the end, so a failed replay leaves nothing at OUT.
    let dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".reflector-replay-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let out = BufWriter::new(temp.as_file());
    let summary = replay(BufReader::new(input), out, &filter).map_err(|e| -> anyhow::Error {
        match e {
            ReplayError::Capture(e) => UsageError(format!("{}: {e}", args.input.display())).into(),
            ReplayError::Write(e) => anyhow::anyhow!("cannot write {}: {e}", args.output.display()),
        }
    })?;
    temp.persist(&args.output).with_context(|| format!("cannot write {}", args.output.display()))?;

    let mut report = serde_json::Map::new();
    report.insert("input".into(), json!(args.input.display().to_string()));
    report.insert("output".into(), json!(args.output.display().to_string()));
    report.insert("records".into(), json!(summary.records));
    report.insert("truncated_records".into(), json!(summary.truncated_records));
    report.extend(crate::report::counters_json(&summary.counters));
    println!("{}", Value::Object(report));
    Ok(())
}
