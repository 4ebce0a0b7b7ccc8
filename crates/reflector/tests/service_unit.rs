//! `packaging/systemd/reflector@.service`: systemd's own checks of the unit (`systemd-analyze
//! verify` and the offline security exposure), and its command as the unit runs it (the
//! configuration it picks, its user, its capabilities) in a network namespace. systemd is not
//! PID 1 here, so the unit itself is never started.
// A systemd unit, run in network namespaces: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{NetnsPair, receive_reflections};
use reflector_testkit::Frame;

const UNIT: &str = include_str!("../../../packaging/systemd/reflector@.service");

/// The unit as installed for a binary at `bin` and a configuration directory `etc`.
fn unit_for(bin: &str, etc: &Path) -> String {
    UNIT.replace("/usr/bin/reflector", bin).replace("/etc/reflector", etc.to_str().unwrap())
}

/// The value of the unit's first `key=` line.
fn setting<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("{key}"))
}

#[test]
fn systemd_analyze_verifies_the_unit_and_rates_its_exposure_3_or_better() {
    let dir = tempfile::tempdir().unwrap();
    // An instance of the template, with the binary where the test built it.
    let path = dir.path().join("reflector@eth0.service");
    std::fs::write(&path, unit_for(env!("CARGO_BIN_EXE_reflector"), Path::new("/etc/reflector"))).unwrap();
    // The man page the unit names comes with the package (tested there).
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd) is installed");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out =
        Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for reflector@eth0.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    assert!(level <= 3.0, "exposure {level}: {text}");
}

/// Runs the unit's `ExecStart=` in the reflector's namespace as its `User=` would (nobody here)
/// with its `AmbientCapabilities=`, for instance `iface`, under `timeout`.
fn start_as_the_unit(pair: &NetnsPair, unit: &str, iface: &str) -> std::process::Child {
    let exec = setting(unit, "ExecStart");
    let (sh, rest) = exec.split_once(" -c '").expect("ExecStart=/bin/sh -c '...' reflector %I");
    let (script, args) = rest.rsplit_once('\'').unwrap();
    let args: Vec<String> = args.split_whitespace().map(|a| a.replace("%I", iface)).collect();
    let caps: Vec<String> = setting(unit, "AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = format!("-all,{}", caps.join(","));
    Command::new("timeout")
        .args(["20", "ip", "netns", "exec", &pair.reflector_ns, "setpriv", "--reuid=65534", "--regid=65534"])
        .args(["--clear-groups", &format!("--inh-caps={caps}"), &format!("--ambient-caps={caps}")])
        .args([sh, "-c", script])
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A run started by [`start_as_the_unit`], once its start line is out.
struct Started {
    child: std::process::Child,
    line: String,
}

impl Started {
    fn new(mut child: std::process::Child) -> Started {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
        Started { child, line }
    }

    /// Ends it as systemd stops a unit (SIGTERM to the main process); it must exit 0.
    fn stop(mut self) -> String {
        let pid = common::child_of(self.child.id());
        assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success(), "{}", self.line);
        self.line
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_units_command_picks_the_interfaces_configuration_else_the_shared_one() {
    require_live!();
    let pair = NetnsPair::for_backend("af-xdp");
    let etc = tempfile::tempdir().unwrap();
    std::fs::set_permissions(etc.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = etc.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    };
    let unit = unit_for(env!("CARGO_BIN_EXE_reflector"), etc.path());

    // Only the shared file: the interface is the instance's.
    write("reflector.toml", "port = 3842\n");
    let run = Started::new(start_as_the_unit(&pair, &unit, "va"));
    // Reflecting, as the unit's user with the unit's capabilities.
    let tester = pair.tester();
    let frame = Frame::ito_v4().bytes();
    for _ in 0..20 {
        tester.send(&frame).unwrap();
    }
    assert_eq!(receive_reflections(&tester, 20, Duration::from_millis(500)).len(), 20, "{}", run.line);
    let line = run.stop();
    assert!(line.contains(" on va ") && line.contains("port 3842;"), "{line}");

    // The interface's own file, when there is one, wins.
    write("va.toml", "port = 4000\n");
    let line = Started::new(start_as_the_unit(&pair, &unit, "va")).stop();
    assert!(line.contains(" on va ") && line.contains("port 4000;"), "{line}");
}
