//! The real-driver lab from the tests: `scripts/vm-lab.sh` boots an emulated guest with real
//! drivers' NICs, runs a shell script inside it with this build's binaries and another on the
//! host side of its taps, both writing into a shared folder the test then reads.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One guest run's outcome: its shared folder (removed on drop) and what the script printed.
pub struct VmRun {
    pub share: tempfile::TempDir,
    /// The guest script's exit code (else the host script's; 124 when over the time limit).
    pub code: Option<i32>,
    /// vm-lab's output: the guest's, then "--- host side ---" and the host's.
    pub stdout: String,
    pub stderr: String,
}

impl VmRun {
    /// A file the scripts left in the shared folder ("" when there is none).
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.share.path().join(name)).unwrap_or_default()
    }

    /// A JSON file the scripts left, or a failure that shows the run's output.
    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.file(name))
            .unwrap_or_else(|e| panic!("{name}: {e}: {:?}\n{self}", self.file(name)))
    }
}

impl std::fmt::Display for VmRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)?;
        write!(f, "\n--- console (end) ---\n")?;
        let console = self.file("console.log");
        let lines: Vec<&str> = console.lines().collect();
        for l in &lines[lines.len().saturating_sub(30)..] {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

/// Boots a guest with `nics` (`virtio` or `e1000e`, each virtio NIC with `queues` queue pairs),
/// runs `guest` (sh) inside and `host` (sh) on the host side meanwhile, with `$S` the shared
/// folder in both, at most `limit_s` seconds, with the binaries of this test build.
pub fn vm_lab(nics: &[&str], queues: u32, limit_s: u32, guest: &str, host: &str) -> VmRun {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_reflector")).parent().expect("a folder").into();
    let share = tempfile::tempdir().expect("a shared folder");
    let mut cmd = Command::new(root.join("scripts/vm-lab.sh"));
    for nic in nics {
        cmd.args(["--nic", nic]);
    }
    let prefix = "S=\"$VM_LAB_SHARE\"\n";
    cmd.args(["--queues", &queues.to_string(), "--timeout", &limit_s.to_string()])
        .arg("--share")
        .arg(share.path())
        .args(["--host", &format!("{prefix}{host}")])
        .args(["--", "sh", "-c", &format!("{prefix}{guest}")])
        .env("VM_LAB_BIN_DIR", &bin_dir);
    // The script bounds the guest and the host side with `timeout`; this bounds the script.
    let out = Command::new("timeout")
        .arg((limit_s + 600).to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .output()
        .expect("scripts/vm-lab.sh runs");
    VmRun {
        share,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
