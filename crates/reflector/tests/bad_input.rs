//! Bad input is one line naming the problem, with exit code 2, whatever it contains; and
//! `config check` refuses exactly what `run` refuses before it looks at the system.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_reflector");

fn reflector(args: &[&str]) -> Output {
    Command::new("timeout").arg("20").arg(BIN).args(args).output().expect("runs")
}

/// Exit code 2 and one line on stderr containing `message`, nothing on stdout.
fn assert_one_line_usage_error(out: &Output, message: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err:?}");
    assert!(err.ends_with('\n') && !err.contains('\u{1b}'), "{what}: {err:?}");
    assert!(err.contains(message), "{what}: expected '{message}' in {err:?}");
    assert!(out.stdout.is_empty(), "{what}");
}

#[test]
fn control_characters_in_values_are_escaped_into_one_line() {
    let mac = "02:00:00:00:00:01";
    for (args, message) in [
        (vec!["run", "x", "--mode", "a\nb"], "'a\\nb'"),
        // clap drops the escape sequence from the value it quotes; no ESC reaches the terminal.
        (vec!["run", "x", "--sig", "ito,\u{1b}[2J"], "invalid value 'ito,"),
        (vec!["replay", "/nonexistent/a\nb.pcap", "-o", "/tmp/x.pcap", "--local-mac", mac], "a\\nb.pcap"),
        (vec!["replay", "/dev/null", "-o", "/tmp/x.pcap", "--local-mac", "02:00\r:00"], "\\r"),
    ] {
        assert_one_line_usage_error(&reflector(&args), message, &format!("{args:?}"));
    }
}

#[test]
fn intervals_and_durations_have_minimums() {
    for (args, message) in [
        (vec!["run", "x", "--stats-interval", "1e-12"], "from 0.1 to 1e9 seconds"),
        (vec!["run", "x", "--stats-interval", "0.05"], "from 0.1 to 1e9 seconds"),
        (vec!["run", "x", "--duration", "0.001"], "from 0.01 to 1e9 seconds"),
        (vec!["run", "x", "--duration", "NaN"], "from 0.01 to 1e9 seconds"),
        (vec!["lab", "--duration", "1e-9"], "from 0.01 to 1e9 seconds"),
        (vec!["probe", "x", "--dst-mac", "02:00:00:00:00:01", "--wait", "0"], "from 0.01 to 1e9 seconds"),
    ] {
        assert_one_line_usage_error(&reflector(&args), message, &format!("{args:?}"));
    }
}

#[test]
fn lab_checks_its_arguments_before_it_creates_anything() {
    // As any user: the argument error comes before the root check and before any namespace.
    for size in ["1", "73", "1519"] {
        let out = reflector(&["lab", "--size", size]);
        assert_one_line_usage_error(&out, "--size", size);
    }
}

/// Writes `text` to a file and runs `config check` on it and `run --config` with it on an
/// interface that does not exist: both must refuse it with the same message, before `run`
/// looks for the interface.
fn check_and_run_agree(text: &str, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap();
    let check = reflector(&["config", "check", path]);
    assert_one_line_usage_error(&check, message, &format!("config check of {text:?}"));
    let run = reflector(&["run", "rfl-no-such-if0", "--config", path]);
    assert_one_line_usage_error(&run, message, &format!("run with {text:?}"));
}

#[test]
fn config_check_refuses_what_run_refuses() {
    let nine: String = (0..9).map(|i| format!("[[signature]]\noffset = {i}\ntext = \"X\"\n")).collect();
    check_and_run_agree(&format!("signatures = [\"all\"]\n{nine}"), "at most 8 custom signatures");
    check_and_run_agree("[http]\nlisten = \"0.0.0.0:9180\"\n", "is not a loopback address");
    check_and_run_agree("[http]\nlisten = \"127.0.0.1:9180\"\ntoken = \"a b\"\n", "printable ASCII");
    check_and_run_agree("[http]\nlisten = \"127.0.0.1:9180\"\ntoken = \"a\\nb\"\n", "printable ASCII");
    check_and_run_agree("signatures = [\"custom\"]\n", "no custom signature defined");
    check_and_run_agree("[stats]\ninterval = 0.001\n", "from 0.1 to 1e9 seconds");
    check_and_run_agree(
        "backend = \"af-packet\"\nbusy_poll = true\n",
        "--busy-poll applies to --backend af-xdp and dpdk only",
    );
    check_and_run_agree("[capture]\nwhat = \"all\"\n", "--capture-what needs --capture FILE");
    check_and_run_agree(
        "[capture]\nfile = \"/tmp/c.pcapng\"\nfiles = 3\n",
        "--capture-files needs --capture-max-mb",
    );
    check_and_run_agree("[capture]\nfile = \"/tmp/c.pcapng\"\nwhat = \"some\"\n", "'some'");
    check_and_run_agree("[capture]\nfile = \"/tmp/c.pcapng\"\nkernel_limit = 0\n", "kernel_limit");
    check_and_run_agree("[capture]\nkeep_mb = 8\n", "--capture-keep-mb needs --http");
    check_and_run_agree("[capture]\nkeep_mb = 0\n", "keep_mb");
    // And a file both accept.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "signatures = [\"all\"]\n").unwrap();
    let out = reflector(&["config", "check", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_token_with_control_characters_is_refused_on_the_command_line() {
    for token in ["a\nb", "with space", "tab\there", ""] {
        let out = reflector(&["run", "rfl-no-such-if0", "--http", "127.0.0.1:9180", "--http-token", token]);
        assert_one_line_usage_error(&out, "--http-token", &format!("{token:?}"));
    }
}

#[test]
fn sig_all_means_every_built_in_family() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sample.pcap");
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("o.pcap");
    let replay = |extra: &[&str]| {
        let mut args =
            vec!["replay", sample, "-o", out_path.to_str().unwrap(), "--local-mac", "02:00:00:00:00:01"];
        args.extend_from_slice(extra);
        reflector(&args)
    };
    let all = replay(&["--sig", "all"]);
    assert!(all.status.success(), "{}", String::from_utf8_lossy(&all.stderr));
    let default = replay(&[]);
    // `all` without custom signatures is the default set plus STAMP: verdict for verdict the
    // same, but for the sample's one STAMP request (which the default set refuses for its port).
    let (all, default): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&all.stdout).unwrap(), serde_json::from_slice(&default.stdout).unwrap());
    assert_eq!(all["by_signature"]["stamp"], 1, "{all}");
    assert_eq!(all["reflected_packets"].as_u64(), default["reflected_packets"].as_u64().map(|n| n + 1));
    assert_eq!(all["rejected"]["dst_port"].as_u64(), default["rejected"]["dst_port"].as_u64().map(|n| n - 1));
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        for key in ["by_signature", "reflected_packets", "reflected_bytes", "rejected", "rejected_packets"] {
            v.as_object_mut().unwrap().remove(key);
        }
        v
    };
    assert_eq!(strip(&all), strip(&default));
    // With a custom signature, `all` takes it in.
    let custom = replay(&["--sig", "all", "--custom-sig", "2:ACME-TEST"]);
    let summary: serde_json::Value = serde_json::from_slice(&custom.stdout).unwrap();
    assert!(summary["by_signature"]["custom"].as_u64().unwrap() > 0, "{summary}");
}
