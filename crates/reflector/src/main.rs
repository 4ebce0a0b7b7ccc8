//! `reflector`: turns network test packets around at line rate.
//!
//! Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod backend_info;
mod config;
#[cfg(unix)]
mod control;
mod cpus;
mod filter_args;
#[cfg(unix)]
mod http;
mod input;
#[cfg(unix)]
mod interface;
#[cfg(target_os = "linux")]
mod lab;
mod output;
#[cfg(target_os = "linux")]
mod probe;
#[cfg(target_os = "linux")]
mod probe_cmd;
#[cfg(target_os = "linux")]
mod prober;
mod replay_cmd;
mod report;
#[cfg(unix)]
mod run;
mod settings;
mod stamp_probe;
mod stats;
#[cfg(unix)]
mod tui;

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
    Run(run::RunArgs),
    /// Send test packets to a reflector and report loss, round-trip time and jitter.
    #[cfg(target_os = "linux")]
    Probe(prober::ProbeArgs),
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

/// `config check`: every check `run --config FILE` makes before it looks at the system.
fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    return run::check_config_file(file);
    #[cfg(not(unix))]
    return config::Config::load(file).map(|_| ()).map_err(Into::into);
}

fn main() -> ExitCode {
    // Before anything else: a SIGHUP during a run's start-up is taken up once it is ready.
    #[cfg(unix)]
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        run::defer_sighup();
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
            output::event(output::Priority::Err, format!("reflector: {first} (see 'reflector --help')"));
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        #[cfg(target_os = "linux")]
        Command::Lab(args) => lab::run(args),
        #[cfg(unix)]
        Command::Run(args) => run::run(args, matches.subcommand_matches("run").expect("the run subcommand")),
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
            output::event(output::Priority::Err, format!("reflector: {e:#}"));
            ExitCode::from(if e.is::<input::UsageError>() { 2 } else { 1 })
        }
    }
}
