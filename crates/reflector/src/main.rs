//! `reflector`: turns network test packets around at line rate.
//!
//! Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod backend_choice;
#[cfg(unix)]
mod body;
#[cfg(unix)]
mod capture;
#[cfg(unix)]
mod check;
mod config;
#[cfg(unix)]
mod control;
mod cpus;
mod filter_args;
mod history;
#[cfg(unix)]
mod http;
#[cfg(unix)]
mod idle;
mod input;
#[cfg(unix)]
mod interface;
// Two network namespaces joined by veth: Linux only.
#[cfg(target_os = "linux")]
mod lab;
mod logging;
#[cfg(unix)]
mod metrics;
mod output;
mod pacer;
// Raw probe frames and their tally: the raw prober's (Linux).
#[cfg(target_os = "linux")]
mod probe;
#[cfg(unix)]
mod probe_cmd;
mod prober;
// Raw probes go out through an AF_PACKET socket: Linux only (`probe --stamp` is a UDP socket).
#[cfg(target_os = "linux")]
mod raw_prober;
mod replay_cmd;
mod report;
#[cfg(unix)]
mod run;
mod settings;
#[cfg(unix)]
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
    #[command(after_long_help = RUN_PRIVILEGES)]
    Run(Box<run::RunArgs>),
    /// What a run would meet here: the kernel, the interface, privileges, the clock, and
    /// whether each backend runs (tried: set up and taken down). Exit 1 when --backend cannot.
    #[cfg(unix)]
    Check(check::CheckArgs),
    /// Send test packets to a reflector and report loss, round-trip time and jitter.
    #[cfg(unix)]
    Probe(prober::ProbeArgs),
    /// Reflect the test packets of a capture offline; prints a JSON summary.
    Replay(replay_cmd::ReplayArgs),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// DPDK started as a run would and stopped, in this process; the verdict as JSON (for
    /// `check`, which runs it as a child: DPDK starts once per process).
    #[cfg(unix)]
    #[command(hide = true)]
    DpdkTry(check::DpdkTryArgs),
    /// Write the manual pages (reflector(8) and one per command) into DIR, for packaging.
    #[command(hide = true)]
    Man {
        /// The directory (created when missing).
        dir: std::path::PathBuf,
    },
}

/// What `run --help` says of privileges (also in the manual page).
const RUN_PRIVILEGES: &str = "Privileges (Linux): root, or these capabilities: af-packet CAP_NET_RAW; af-xdp \
CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF, plus CAP_IPC_LOCK or a locked-memory limit above the \
UMEM size; xdp-tx CAP_NET_ADMIN and CAP_BPF; CAP_NET_BIND_SERVICE to hold a test port below \
1024. A missing one is named in the error. Once set up, the run gives up every capability but \
those a SIGHUP reload uses: none on af-packet; CAP_BPF and CAP_NET_ADMIN on af-xdp and xdp-tx \
(a changed filter is a new XDP program); CAP_NET_ADMIN on dpdk's net_af_xdp device (its XDP \
program is detached at the end).";

/// `man DIR`: reflector.8 and reflector-COMMAND.8 for each command (section 8: a daemon's).
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let top = Cli::command();
    let mut pages = vec![("reflector".to_string(), top.clone())];
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        // The page is reflector-run(8); its synopsis is what one types: `reflector run …`.
        let name = format!("reflector-{}", sub.get_name());
        let typed = format!("reflector {}", sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name).bin_name(typed)));
    }
    for (name, cmd) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd).section("8").render(&mut roff)?;
        let path = dir.join(format!("{name}.8"));
        std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
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
    logging::init();
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
            tracing::error!("reflector: {first} (see 'reflector --help')");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        #[cfg(target_os = "linux")]
        Command::Lab(args) => lab::run(args),
        #[cfg(unix)]
        Command::Run(args) => run::run(args, matches.subcommand_matches("run").expect("the run subcommand")),
        #[cfg(unix)]
        Command::Check(args) => check::run(args),
        #[cfg(unix)]
        Command::DpdkTry(args) => check::dpdk_try(args),
        #[cfg(unix)]
        Command::Probe(args) => probe_cmd::run(args),
        Command::Replay(args) => replay_cmd::run(args),
        Command::Config(ConfigCommand::Check { file }) => {
            check_config(file).and_then(|()| Ok(output::line(format!("{}: ok", file.display()))?))
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "reflector", &mut script);
            output::line(String::from_utf8_lossy(&script).trim_end()).map_err(Into::into)
        }
        Command::Man { dir } => write_man_pages(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away: nothing more to say, as `head` expects.
        Err(e) if matches!(e.downcast_ref(), Some(output::OutputError::Closed)) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("reflector: {e:#}");
            ExitCode::from(if e.is::<input::UsageError>() || e.is::<reflector_io::datapath::Unusable>() {
                2
            } else {
                1
            })
        }
    }
}
