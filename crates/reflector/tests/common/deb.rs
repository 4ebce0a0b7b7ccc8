//! The Debian packages `scripts/package-deb.sh` builds, for the tests that install them.

use std::path::PathBuf;
use std::process::Command;

/// The package `name` (`reflector`, `reflector-dpdk`) of this version for this machine, or a
/// failure that says what builds it.
pub fn deb(name: &str) -> PathBuf {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../target/debian/{name}_{}_{arch}.deb", env!("CARGO_PKG_VERSION")));
    assert!(
        path.exists(),
        "{} is missing: scripts/package-deb.sh builds it (scripts/test.sh runs it)",
        path.display()
    );
    path
}

/// Runs `cmd` with `args`: whether it succeeded, and its stdout and stderr together.
pub fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// Purges the packages named when dropped (also when the test fails).
pub struct Purge(pub &'static [&'static str]);

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").arg("--purge").args(self.0).output();
    }
}

/// The status dpkg has for `package` ("install ok installed", "" when it knows none).
pub fn status(package: &str) -> String {
    let (_, said) = sh("dpkg-query", &["-W", "-f=${Status}", package]);
    if said.contains("no packages found") { String::new() } else { said.trim().to_string() }
}

/// Runs the installed `/usr/bin/reflector run va ARGS --stats json` in `pair`'s reflector
/// namespace, after `prefix` (e.g. `setpriv` and its options), for `secs` seconds: its start
/// line names `backend`, and it answers 20 of 20 ITO probes from the tester. Its stdout lines
/// (the JSON stats, the summary last).
pub fn installed_binary_reflects(
    pair: &super::NetnsPair,
    prefix: &[&str],
    args: &[&str],
    backend: &str,
) -> Vec<String> {
    use std::io::{BufRead, Read};
    let mut run = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &pair.reflector_ns])
        .args(prefix)
        .args(["/usr/bin/reflector", "run", "va"])
        .args(args)
        .args(["--stats", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its start line first: the data path is open.
    let mut stderr = std::io::BufReader::new(run.stderr.take().unwrap());
    let mut start = String::new();
    stderr.read_line(&mut start).unwrap();
    assert!(start.starts_with(&format!("reflector: {backend} on va ")), "{start}");
    let tester = pair.tester();
    let frame = reflector_testkit::Frame::ito_v4().bytes();
    for _ in 0..20 {
        tester.send(&frame).unwrap();
    }
    let back = super::receive_reflections(&tester, 20, std::time::Duration::from_millis(500)).len();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{start}{rest}");
    assert_eq!(back, 20, "{start}{rest}");
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}
