//! `reflector`: turns network test packets around at line rate.
//!
//! Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod config;
#[cfg(unix)]
mod control;
mod cpus;
mod filter_args;
#[cfg(unix)]
mod http;
#[cfg(target_os = "linux")]
mod lab;
mod output;
#[cfg(target_os = "linux")]
mod probe;
#[cfg(target_os = "linux")]
mod probe_cmd;
mod replay_cmd;
mod report;
#[cfg(unix)]
mod run_cmd;
mod stats;
#[cfg(unix)]
mod tui;

/// A bad command line, configuration or input file: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Parser)]
#[command(name = "reflector", version, about = "Line-rate packet reflector for network test tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A self-contained demo: reflector and prober in two network namespaces (root).
    #[cfg(target_os = "linux")]
    Lab(lab::LabArgs),
    /// Reflect test packets on a live interface until stopped (SIGINT / SIGTERM / --duration).
    #[cfg(unix)]
    Run(run_cmd::RunArgs),
    /// Send test packets to a reflector and report loss, round-trip time and jitter.
    #[cfg(target_os = "linux")]
    Probe(probe_cmd::ProbeArgs),
    /// Reflect the test packets of a capture offline; prints a JSON summary.
    Replay(replay_cmd::ReplayArgs),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file; prints "FILE: ok", or the first problem (exit code 2).
    Check {
        /// The file.
        file: std::path::PathBuf,
    },
}

/// Parses a number of seconds (fractions allowed) for a duration or a wait: at least 0.01 s.
pub fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    parse_secs_at_least(s, 0.01)
}

/// Parses the seconds between stats lines: at least 0.1 s, so that no setting makes the control
/// loop spin.
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    parse_secs_at_least(s, 0.1)
}

fn parse_secs_at_least(s: &str, min: f64) -> Result<std::time::Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs >= min && secs <= 1e9) {
        return Err(format!("'{s}' must be from {min} to 1e9 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `config check`: every check `run --config FILE` makes before it looks at the system.
fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    return run_cmd::check_config_file(file);
    #[cfg(not(unix))]
    return config::Config::load(file).map(|_| ()).map_err(Into::into);
}

fn main() -> ExitCode {
    // Before anything else: a SIGHUP during a run's start-up is taken up once it is ready.
    #[cfg(unix)]
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        run_cmd::defer_sighup();
    }
    let parsed = Cli::command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's first paragraph names the flag and the problem (a value with a
            // newline in it spans lines there, so paragraphs, not lines).
            let rendered = e.render().to_string();
            let first = rendered.split("\n\n").next().unwrap_or("invalid command line").trim_end();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("reflector: {} (see 'reflector --help')", output::one_line(first));
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        #[cfg(target_os = "linux")]
        Command::Lab(args) => lab::run(args),
        #[cfg(unix)]
        Command::Run(args) => {
            run_cmd::run(args, matches.subcommand_matches("run").expect("the run subcommand"))
        }
        #[cfg(target_os = "linux")]
        Command::Probe(args) => probe_cmd::run(args),
        Command::Replay(args) => replay_cmd::run(args),
        Command::Config(ConfigCommand::Check { file }) => {
            check_config(file).and_then(|()| Ok(output::line(format!("{}: ok", file.display()))?))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away: nothing more to say, as `head` expects.
        Err(e) if matches!(e.downcast_ref(), Some(output::OutputError::Closed)) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reflector: {}", output::one_line(&format!("{e:#}")));
            ExitCode::from(if e.is::<UsageError>() { 2 } else { 1 })
        }
    }
}
