//! `packaging/launchd/net.reflector.en0.plist`: a property list launchd can read, that keeps
//! `reflector run` on an interface alive, with a command line `run` accepts. Read twice, by the
//! `plist` crate and by Python's `plistlib` (an independent reader), which must agree.

use std::process::Command;

use plist::Value;

#[test]
fn the_launchd_plist_keeps_reflector_run_alive_with_a_command_line_it_accepts() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/launchd/net.reflector.en0.plist");
    let plist = Value::from_file(path).expect("an XML property list");
    let dict = plist.as_dictionary().expect("a dictionary");
    assert_eq!(dict.get("Label").and_then(Value::as_string), Some("net.reflector.en0"));
    assert_eq!(dict.get("KeepAlive").and_then(Value::as_boolean), Some(true));
    assert_eq!(dict.get("RunAtLoad").and_then(Value::as_boolean), Some(true));
    let args: Vec<&str> = dict
        .get("ProgramArguments")
        .and_then(Value::as_array)
        .expect("ProgramArguments")
        .iter()
        .map(|a| a.as_string().expect("strings"))
        .collect();
    assert_eq!(args[..3], ["/usr/local/bin/reflector", "run", "en0"]);
    // Python's plistlib reads the same.
    let python = Command::new("python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
            path,
        ])
        .output()
        .expect("python3");
    assert!(python.status.success(), "plistlib: {}", String::from_utf8_lossy(&python.stderr));
    let read: serde_json::Value = serde_json::from_slice(&python.stdout).unwrap();
    assert_eq!(read["Label"], "net.reflector.en0");
    assert_eq!(read["KeepAlive"], true);
    assert_eq!(read["RunAtLoad"], true);
    assert_eq!(read["ProgramArguments"], serde_json::json!(args), "plistlib and the plist crate differ");
    assert_eq!(read.as_object().map(|o| o.len()), Some(dict.len()), "{read}");
    // The rest parses: run with it (the example configuration in place of the installed one)
    // gets as far as looking for the interface, which this machine does not have.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/reflector.toml");
    let rest: Vec<&str> =
        args[1..].iter().map(|a| if a.ends_with("reflector.toml") { example } else { a }).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_reflector"))
        .args(&rest)
        .args(["--duration", "0.1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("en0") && !err.contains("--help"), "{err}");
}
