//! `reflector replay`: a capture in, the reflections out, a JSON summary on stdout.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use clap::Args;
use reflector_core::MacAddr;
use reflector_io::replay::{ReplayError, replay};
use serde_json::{Value, json};

use crate::filter_args::FilterArgs;
use crate::input::UsageError;
use crate::input::parse_mac;
use crate::output::Target;

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
    let to_stdout = args.output.as_os_str() == "-";
    let summary = if to_stdout {
        let out = std::io::stdout().lock();
        replay_into(args, input, BufWriter::new(out), &filter)?
    } else {
        match Target::of(&args.output)? {
            Target::File(path) => {
                // Write next to OUT and rename at the end, so a failed replay leaves nothing at
                // OUT. The file is created 0666 less the umask, as any new file.
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let temp = tempfile::Builder::new()
                    .prefix(".reflector-replay-")
                    .permissions(std::fs::Permissions::from_mode(0o666))
                    .tempfile_in(dir)
                    .with_context(|| format!("cannot create a file in {}", dir.display()))?;
                let summary = replay_into(args, input, BufWriter::new(temp.as_file()), &filter)?;
                temp.persist(&path).with_context(|| format!("cannot write {}", args.output.display()))?;
                summary
            }
            // A device, a FIFO or a socket: written as it is, never replaced.
            Target::Special(path) => {
                let out = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {} for writing", args.output.display()))?;
                replay_into(args, input, BufWriter::new(out), &filter)?
            }
        }
    };

    let mut report = serde_json::Map::new();
    report.insert("input".into(), json!(args.input.display().to_string()));
    report.insert("output".into(), json!(args.output.display().to_string()));
    report.insert("records".into(), json!(summary.records));
    report.insert("truncated_records".into(), json!(summary.truncated_records));
    report.extend(crate::report::counters_json(&summary.counters));
    if to_stdout {
        // The capture went to stdout: the summary goes to stderr.
        eprintln!("{}", Value::Object(report));
        Ok(())
    } else {
        Ok(crate::output::line(Value::Object(report))?)
    }
}

fn replay_into(
    args: &ReplayArgs,
    input: File,
    out: impl std::io::Write,
    filter: &reflector_core::Filter,
) -> anyhow::Result<reflector_io::replay::ReplaySummary> {
    replay(BufReader::new(input), out, filter).map_err(|e| -> anyhow::Error {
        match e {
            ReplayError::Capture(e) => UsageError(format!("{}: {e}", args.input.display())).into(),
            ReplayError::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                crate::output::OutputError::Closed.into()
            }
            ReplayError::Write(e) => anyhow::anyhow!("cannot write {}: {e}", args.output.display()),
        }
    })
}
