//! `reflector replay` end to end, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reflector_io::capture::{CaptureReader, PcapWriter};
use reflector_testkit::{Case, corpus};
use serde_json::Value;

fn reflector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reflector")).args(args).output().expect("the binary runs")
}

/// `reflector replay IN -o OUT --local-mac 02:00:00:00:00:01 --local-ip 192.0.2.1 --local-ip
/// 2001:db8::1 EXTRA...`: the reflector of the corpus.
fn replay(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "replay",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--local-mac",
        "02:00:00:00:00:01",
        "--local-ip",
        "192.0.2.1",
        "--local-ip",
        "2001:db8::1",
    ];
    args.extend_from_slice(extra);
    reflector(&args)
}

/// The corpus cases judged with the default filter: what `replay` with default flags sees.
fn default_cases() -> Vec<Case> {
    let default = reflector_testkit::default_filter();
    corpus().into_iter().filter(|c| c.filter == default).collect()
}

fn write_capture(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (ts, f) in frames {
        w.write(*ts, f).unwrap();
    }
    w.finish().unwrap();
}

fn read_capture(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut r = CaptureReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push((rec.timestamp_ns, rec.data));
    }
    out
}

#[test]
fn replay_reflects_the_test_packets_of_a_mixed_capture() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    let cases = default_cases();
    let frames: Vec<(u64, Vec<u8>)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (1_700_000_000_000_000_000 + i as u64 * 1_000_123, c.bytes.clone()))
        .collect();
    write_capture(&input, &frames);

    let out = replay(&input, &output, &[]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");

    let hits: Vec<&Case> = cases.iter().filter(|c| c.expect.is_ok()).collect();
    assert_eq!(json["records"], frames.len());
    assert_eq!(json["rx_packets"], frames.len());
    assert_eq!(json["reflected_packets"], hits.len());
    assert_eq!(json["reflected_bytes"], hits.iter().map(|c| c.bytes.len()).sum::<usize>());
    assert_eq!(json["rejected_packets"], frames.len() - hits.len());
    assert_eq!(json["truncated_records"], 0);
    for sig in reflector_core::Signature::ALL {
        let want = hits.iter().filter(|c| c.expect == Ok(sig)).count();
        assert_eq!(json["by_signature"][sig.name()], want, "{}", sig.name());
    }
    for reason in reflector_core::Reject::ALL {
        let want = cases.iter().filter(|c| c.expect == Err(reason)).count();
        assert_eq!(json["rejected"][reason.name()], want, "{}", reason.name());
    }

    // The output holds exactly the reflections, in order, with the input's timestamps.
    let written = read_capture(&output);
    let expected: Vec<(u64, Vec<u8>)> = frames
        .iter()
        .zip(&cases)
        .filter(|(_, c)| c.expect.is_ok())
        .map(|((ts, _), c)| (*ts, c.frame.as_ref().unwrap().reflected(reflector_core::Mode::All).bytes()))
        .collect();
    assert_eq!(written, expected);
}

#[test]
fn replay_flags_change_the_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    let probe = reflector_testkit::Frame::ito_v4();
    let other_vendor = reflector_testkit::Frame { src_mac: reflector_testkit::OTHER_MAC, ..probe.clone() };
    let custom = reflector_testkit::Frame { payload: reflector_testkit::custom_payload(), ..probe.clone() };
    write_capture(&input, &[(1, probe.bytes()), (2, other_vendor.bytes()), (3, custom.bytes())]);
    let run = |extra: &[&str]| -> Value {
        let out = replay(&input, &output, extra);
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(run(&[])["reflected_packets"], 1);
    assert_eq!(run(&[])["rejected"]["oui"], 1);
    assert_eq!(run(&["--no-oui-filter"])["reflected_packets"], 2);
    assert_eq!(run(&["--oui", "52:54:00"])["reflected_packets"], 1);
    assert_eq!(run(&["--port", "9"])["rejected"]["dst_port"], 3);
    assert_eq!(run(&["--sig", "rfc2544"])["rejected"]["no_signature"], 3);
    let custom_run = run(&["--custom-sig", "2:ACME-TEST"]);
    assert_eq!(custom_run["by_signature"]["custom"], 1);
    assert_eq!(custom_run["reflected_packets"], 2);
    // --mode mac swaps only the MACs.
    run(&["--mode", "mac"]);
    let written = read_capture(&output);
    assert_eq!(written[0].1, probe.reflected(reflector_core::Mode::Mac).bytes());
}

#[test]
fn cut_records_are_counted_not_judged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    // A pcap whose one record says 60 bytes were on the wire but 40 were kept.
    let mut bytes = Vec::new();
    bytes.extend(0xa1b2_c3d4u32.to_le_bytes());
    bytes.extend(2u16.to_le_bytes());
    bytes.extend(4u16.to_le_bytes());
    bytes.extend([0; 8]);
    bytes.extend(40u32.to_le_bytes());
    bytes.extend(1u32.to_le_bytes());
    bytes.extend([0; 8]);
    bytes.extend(40u32.to_le_bytes());
    bytes.extend(60u32.to_le_bytes());
    bytes.extend(&reflector_testkit::ITO_IPV4_GOLDEN[..40]);
    std::fs::write(&input, bytes).unwrap();
    let out = replay(&input, &output, &[]);
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["records"].as_u64(), json["truncated_records"].as_u64(), json["rx_packets"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
}

/// Runs a replay that must fail with exit code 2, a one-line message, and nothing at OUT.
fn assert_usage_error(args: &[&str], output: &Path, message: &str) {
    let out = reflector(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line, got {stderr}");
    assert!(stderr.contains(message), "{args:?}: expected '{message}' in {stderr}");
    assert!(out.stdout.is_empty());
    assert!(!output.exists(), "{args:?}: nothing may be left at OUT");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(output.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".reflector-replay"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.pcap");
    let out = out_path.to_str().unwrap();
    let good = dir.path().join("good.pcap");
    write_capture(&good, &[(1, reflector_testkit::ITO_IPV4_GOLDEN.to_vec())]);
    let good = good.to_str().unwrap();
    let mac = "02:00:00:00:00:01";

    let missing = dir.path().join("missing.pcap");
    assert_usage_error(
        &["replay", missing.to_str().unwrap(), "-o", out, "--local-mac", mac],
        &out_path,
        "cannot open",
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a capture").unwrap();
    assert_usage_error(
        &["replay", text.to_str().unwrap(), "-o", out, "--local-mac", mac],
        &out_path,
        "not a pcap or pcapng",
    );

    let cut = dir.path().join("cut.pcap");
    let bytes = std::fs::read(good).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    assert_usage_error(
        &["replay", cut.to_str().unwrap(), "-o", out, "--local-mac", mac],
        &out_path,
        "truncated",
    );

    let raw_ip = dir.path().join("rawip.pcap");
    let mut bytes = bytes.clone();
    bytes[20..24].copy_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    std::fs::write(&raw_ip, &bytes).unwrap();
    assert_usage_error(
        &["replay", raw_ip.to_str().unwrap(), "-o", out, "--local-mac", mac],
        &out_path,
        "unsupported link type 101",
    );

    for (flags, message) in [
        (&["--local-mac", "02:00:00:00:00"][..], "--local-mac"),
        (&["--local-mac", "ff:ff:ff:ff:ff:ff"][..], "unicast"),
        (&["--local-mac", mac, "--mode", "swap"][..], "unknown mode"),
        (&["--local-mac", mac, "--port", "70000"][..], "--port"),
        (&["--local-mac", mac, "--sig", "ito,bogus"][..], "unknown signature family"),
        (&["--local-mac", mac, "--sig", "custom"][..], "no custom signature defined"),
        (&["--local-mac", mac, "--sig", "ito", "--custom-sig", "0:X"][..], "family 'custom' is not selected"),
        (&["--local-mac", mac, "--custom-sig", "0:"][..], "1 to 32 bytes"),
        (&["--local-mac", mac, "--oui", "00:c0"][..], "--oui"),
        (&["--local-mac", mac, "--oui", "00:c0:17", "--no-oui-filter"][..], "cannot be used with"),
        (&["--local-mac", mac, "--oui-scope", "rfc2544", "--sig", "ito"][..], "not selected"),
    ] {
        let mut args = vec!["replay", good, "-o", out];
        args.extend_from_slice(flags);
        assert_usage_error(&args, &out_path, message);
    }
}

/// The capture shipped in `examples/` for the README is the corpus run with default flags;
/// `REGENERATE_SAMPLE=1 cargo test` rewrites it after the corpus changes.
#[test]
fn shipped_sample_capture_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample.pcap");
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("sample.pcap");
    let frames: Vec<(u64, Vec<u8>)> = default_cases()
        .iter()
        .enumerate()
        .map(|(i, c)| (1_764_000_000_000_000_000 + i as u64 * 1_000_000, c.bytes.clone()))
        .collect();
    write_capture(&fresh, &frames);
    if std::env::var_os("REGENERATE_SAMPLE").is_some() {
        std::fs::copy(&fresh, &path).unwrap();
    }
    assert_eq!(
        std::fs::read(&fresh).unwrap(),
        std::fs::read(&path).unwrap(),
        "run REGENERATE_SAMPLE=1 cargo test"
    );
}
