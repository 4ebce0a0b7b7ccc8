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
