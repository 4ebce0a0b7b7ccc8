//! Where output goes: `replay -o` writes through devices, FIFOs and links and creates files
//! with the umask; `-o -` is stdout; a closed stdout ends a command quietly (exit 0), a full
//! one is a one-line error (exit 1).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sample.pcap");
const BIN: &str = env!("CARGO_BIN_EXE_reflector");
const REPLAY: [&str; 4] = ["replay", SAMPLE, "--local-mac", "02:00:00:00:00:01"];

fn replay_to(out: &str) -> Output {
    let mut args = REPLAY.to_vec();
    args.extend_from_slice(&["-o", out]);
    Command::new(BIN).args(&args).output().expect("runs")
}

/// What `replay` writes for the sample, into a fresh regular file.
fn expected(dir: &Path) -> Vec<u8> {
    let path = dir.join("expected.pcap");
    let out = replay_to(path.to_str().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(path).unwrap()
}

fn is_root() -> bool {
    reflector_sys::process::is_root()
}

#[test]
fn replay_to_stdout_puts_the_capture_there_and_the_summary_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    let out = replay_to("-");
    assert!(out.status.success());
    assert_eq!(out.stdout, want);
    let summary: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON summary on stderr");
    // The sample is the corpus's cases for the default filter; without `--local-ip` those from
    // the reflector's own address are answered too.
    let default = reflector_testkit::default_filter();
    let answered =
        |c: &reflector_testkit::Case| matches!(c.expect, Ok(_) | Err(reflector_core::Reject::SrcIpOwn));
    let hits = reflector_testkit::corpus().iter().filter(|c| c.filter == default && answered(c)).count();
    assert_eq!(summary["reflected_packets"], hits);
}

#[test]
fn replay_writes_through_a_symlink_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    let target = dir.path().join("target.pcap");
    std::fs::write(&target, b"old").unwrap();
    let link = dir.path().join("link.pcap");
    std::os::unix::fs::symlink("target.pcap", &link).unwrap();
    assert!(replay_to(link.to_str().unwrap()).status.success());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read(&target).unwrap(), want);
    // A dangling link: the file it names is created.
    std::fs::remove_file(&target).unwrap();
    assert!(replay_to(link.to_str().unwrap()).status.success());
    assert_eq!(std::fs::read(&target).unwrap(), want);
}

#[test]
fn replay_writes_into_a_fifo_without_replacing_it() {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(dir.path());
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = Command::new("timeout")
        .args(["10", BIN])
        .args(REPLAY)
        .args(["-o", fifo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reader.join().unwrap(), want);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
}

#[test]
#[ignore = "needs root (mknod)"]
fn replay_writes_into_a_device_node_without_replacing_it() {
    assert!(is_root(), "making a device node needs root (run as root, as scripts/test.sh does)");
    let dir = tempfile::tempdir().unwrap();
    // Our own node for the null device (1, 3), so nothing of the system's is at stake.
    let null = dir.path().join("null");
    assert!(Command::new("mknod").arg(&null).args(["c", "1", "3"]).status().unwrap().success());
    assert!(replay_to(null.to_str().unwrap()).status.success());
    let meta = std::fs::metadata(&null).unwrap();
    assert!(meta.file_type().is_char_device(), "the device node was replaced by a file");
}

#[test]
fn new_files_honour_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for (umask, mode) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let path = dir.path().join(format!("out-{umask}.pcap"));
        let script = format!("umask {umask}; exec \"$0\" \"$@\"");
        let status = Command::new("sh")
            .args(["-c", &script, BIN])
            .args(REPLAY)
            .args(["-o", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {umask}");
    }
}

/// Runs `reflector ARGS` with its stdout's reading end closed before it writes.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child =
        Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs");
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_full_one_is_a_one_line_error() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/reflector.toml");
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("o.pcap");
    let commands: [Vec<&str>; 3] = [
        vec!["config", "check", example],
        [&REPLAY[..], &["-o", out_file.to_str().unwrap()]].concat(),
        [&REPLAY[..], &["-o", "-"]].concat(),
    ];
    for args in &commands {
        let out = with_closed_stdout(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    for args in &commands[..2] {
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let out = Command::new(BIN).args(args).stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("cannot write to stdout: No space left on device"), "{stderr}");
    }
}
