//! Events on stderr under systemd: when `JOURNAL_STREAM` names the file stderr is, each line
//! starts with its syslog priority (`<3>` error, `<4>` warning, `<5>` notice, `<6>`
//! information), which journald reads; anywhere else the lines are plain.

// The live tests' harness (network namespaces): Linux only, as are the tests that use it.
#[cfg(target_os = "linux")]
mod common;

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

#[cfg(target_os = "linux")]
use common::NetnsPair;

/// Runs `PREFIX... reflector ARGS` with stderr into a file, `JOURNAL_STREAM` naming that file
/// (`journal`) or another one; its stderr and exit code.
fn run_to_file(prefix: &[&str], args: &[&str], journal: bool) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let (path, other) = (dir.path().join("stderr"), dir.path().join("other"));
    let file = std::fs::File::create(&path).unwrap();
    std::fs::write(&other, "").unwrap();
    let named = std::fs::metadata(if journal { &path } else { &other }).unwrap();
    let (program, rest) = match prefix.split_first() {
        Some((p, rest)) => (*p, rest.to_vec()),
        None => (env!("CARGO_BIN_EXE_reflector"), Vec::new()),
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if !prefix.is_empty() {
        cmd.arg(env!("CARGO_BIN_EXE_reflector"));
    }
    let status = cmd
        .args(args)
        .env("JOURNAL_STREAM", format!("{}:{}", named.dev(), named.ino()))
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    (std::fs::read_to_string(&path).unwrap(), status.code())
}

#[test]
fn an_error_is_marked_as_one_for_the_journal_and_plain_elsewhere() {
    let (err, code) = run_to_file(&[], &["run", "nosuchif0"], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("<3>reflector: ") && err.lines().count() == 1, "{err}");
    // One from the command line's parser too.
    let (err, code) = run_to_file(&[], &["run", "--port", "x"], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("<3>reflector: "), "{err}");
    // JOURNAL_STREAM naming another file (inherited by a child whose stderr went elsewhere).
    let (err, code) = run_to_file(&[], &["run", "nosuchif0"], false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("reflector: "), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root and network namespaces"]
fn a_runs_start_line_is_information_for_the_journal() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let prefix = ["timeout", "20", "ip", "netns", "exec", pair.reflector_ns.as_str()];
    let (err, code) =
        run_to_file(&prefix, &["run", "va", "--backend", "af-packet", "--duration", "0.3"], true);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.starts_with("<6>reflector: af-packet on va "), "{err}");
    assert!(err.lines().all(|l| l.starts_with('<')), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "needs root and network namespaces"]
fn a_reload_is_a_notice_for_the_journal() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    // timeout sends SIGHUP after 1 s and then waits for the run to end by itself.
    let prefix =
        ["timeout", "--preserve-status", "-s", "HUP", "1", "ip", "netns", "exec", pair.reflector_ns.as_str()];
    let (err, code) = run_to_file(&prefix, &["run", "va", "--backend", "af-packet", "--duration", "2"], true);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("<6>reflector: af-packet on va "), "{err}");
    assert!(lines.contains(&"<5>reflector: SIGHUP: nothing to reload (started without --config)"), "{err}");
}
