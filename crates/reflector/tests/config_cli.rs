//! `reflector config check` and `run --config`, as a user runs them.

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_reflector");

#[test]
fn config_check_accepts_the_example_and_names_file_line_and_key_otherwise() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/reflector.toml");
    let out = Command::new(BIN).args(["config", "check", example]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().ends_with("reflector.toml: ok"));

    let dir = tempfile::tempdir().unwrap();
    for (text, message) in [
        ("port = 3842\nmode = \"swap\"\n", "bad.toml:2: mode: unknown mode"),
        ("[stats]\nformat = 7\n", "bad.toml:2: format: invalid type: integer `7`, expected a string"),
        ("colour = \"blue\"\n", "bad.toml:1: unknown field `colour`"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN).args(["config", "check", path.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(message), "expected '{message}' in {err}");
    }
    let out = Command::new(BIN).args(["config", "check", "/nonexistent.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn flags_override_the_file_which_overrides_the_defaults() {
    require_live!();
    let pair = common::NetnsPair::for_backend("af-packet");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, "interface = \"va\"\nbackend = \"af-packet\"\nport = 9999\nmode = \"mac\"\n[stats]\nformat = \"csv\"\n").unwrap();
    let config = path.to_str().unwrap();
    // The file alone: its interface, port, mode and stats format.
    let out = pair.run_reflector_cmd(&[], &["run", "--config", config, "--duration", "0.5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("af-packet on va") && err.contains("port 9999;") && err.contains("mode mac;"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("type,elapsed_s,"), "csv from the file");
    // A flag wins over the file; the rest still comes from the file.
    let out =
        pair.run_reflector_cmd(&[], &["run", "--config", config, "--port", "3842", "--duration", "0.5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("port 3842;") && err.contains("mode mac;"), "{err}");
    // Neither IFACE nor an interface in the file: a usage error.
    std::fs::write(&path, "port = 1\n").unwrap();
    let out = pair.run_reflector_cmd(&[], &["run", "--config", config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface given"));
}
