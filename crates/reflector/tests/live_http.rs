//! The HTTP API and /metrics of a running reflector (root; skipped otherwise).
// Network namespaces, veth and packet sockets: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{NetnsPair, receive_reflections};
use reflector_testkit::Frame;
use serde_json::Value;

/// One HTTP/1.1 request from inside the reflector's namespace: (status, body).
fn request(pair: &NetnsPair, method: &str, addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = request_with(pair, method, addr, path, token, "");
    (status, body)
}

/// [`request`] with `headers` (each ending in CRLF) added; the status, the response's headers
/// and its body.
fn request_with(
    pair: &NetnsPair,
    method: &str,
    addr: &str,
    path: &str,
    token: Option<&str>,
    headers: &str,
) -> (u16, String, String) {
    NetnsPair::in_ns(&pair.reflector_ns, || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        (status, head.to_string(), body.to_string())
    })
}

/// One HTTPS request with curl from inside the reflector's namespace, trusting `ca` (a PEM
/// file) or, without one, any certificate (`-k`): (status, body); status 0 when no HTTP answer
/// came (a failed handshake, say).
fn request_tls(
    pair: &NetnsPair,
    method: &str,
    url: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
) -> (u16, String) {
    let mut args: Vec<String> =
        ["10", "ip", "netns", "exec", &pair.reflector_ns, "curl", "-sS", "-X", method]
            .iter()
            .map(|s| s.to_string())
            .collect();
    match ca {
        Some(ca) => args.extend(["--cacert".into(), ca.display().to_string()]),
        None => args.push("-k".into()),
    }
    if let Some(t) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
    }
    args.extend(["-w".into(), "\n%{http_code}".into(), url.into()]);
    let out = Command::new("timeout").args(&args).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The alert rules and the Grafana dashboard shipped in packaging/.
fn fleet_files() -> [(&'static str, &'static str); 2] {
    [
        ("reflector.rules.yml", include_str!("../../../packaging/prometheus/reflector.rules.yml")),
        ("reflector-dashboard.json", include_str!("../../../packaging/grafana/reflector-dashboard.json")),
    ]
}

/// The metric names (`reflector_…`) `text` mentions.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("reflector_"))
        .map(String::from)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn promtool_accepts_the_alert_rules_and_the_dashboard_is_grafana_json() {
    let rules = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/prometheus/reflector.rules.yml");
    let out = Command::new(promtool()).args(["check", "rules"]).arg(&rules).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("SUCCESS: 8 rules found"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And they fire on what should fire them, with the words they say, and not on a healthy
    // reflector (promtool's own rule tests, over series written out in tests/data).
    let tests =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reflector.rules.test.yml");
    let out = Command::new(promtool()).args(["test", "rules"]).arg(&tests).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard: Value = serde_json::from_str(fleet_files()[1].1).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    for p in panels {
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{p}"));
        assert!(
            !targets.is_empty()
                && targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("reflector_"))),
            "{p}"
        );
    }
}

/// How Prometheus asks for metrics (2.x).
const PROMETHEUS_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";

/// `promtool` from Debian's `prometheus` package, unpacked by scripts/test.sh.
fn promtool() -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tools/prometheus/usr/bin/promtool");
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh unpacks it (Debian package prometheus)",
        path.display()
    );
    path
}

/// Runs `cmd` with `text` on its standard input; what it did.
fn piped(cmd: &mut Command, text: &str) -> std::process::Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `promtool check metrics` on `text`: its exit status and what it said.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let out = piped(Command::new(promtool()).args(["check", "metrics"]), text);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn get_json(pair: &NetnsPair, addr: &str, path: &str) -> Value {
    let (status, body) = request(pair, "GET", addr, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
}

/// Parses `text` with the strict OpenMetrics parser of prometheus_client; returns
/// "family sample value" lines.
fn parse_openmetrics(text: &str) -> Vec<String> {
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                  for f in p(sys.stdin.read()):\n    for s in f.samples:\n        print(f.name, s.name, s.labels.get('reason', ''), s.value)\n";
    let out = piped(Command::new("python3").args(["-c", script]), text);
    assert!(out.status.success(), "not valid OpenMetrics: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn sample(lines: &[String], name: &str) -> f64 {
    lines
        .iter()
        .find_map(|l| {
            l.split_once(' ').filter(|(_, rest)| rest.starts_with(&format!("{name} "))).map(|(_, rest)| rest)
        })
        .and_then(|rest| rest.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name}"))
}

#[test]
#[ignore = "needs root and network namespaces"]
fn every_endpoint_and_metrics_that_move_with_traffic() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "127.0.0.1:9180";
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--http", addr, "--stats-interval", "0.2"]);
    std::thread::sleep(Duration::from_millis(200));
    let status = get_json(&pair, addr, "/api/v1/status");
    assert_eq!(
        (status["backend"].as_str(), status["interface"].as_str(), status["workers"].as_u64()),
        (Some("af-packet"), Some("va"), Some(1))
    );
    assert_eq!(status["mac"], "02:00:00:00:00:01");
    assert_eq!(status["zero_copy"], false, "af-packet copies");
    assert!(status["details"].as_str().unwrap().contains("kernel filter"), "{status}");
    let info = &status["backend_info"];
    assert_eq!(
        (info["backend"].as_str(), info["choice"]["how"].as_str()),
        (Some("af-packet"), Some("asked"))
    );
    assert!(info["kernel_filter_instructions"].as_u64().unwrap() > 10, "{info}");
    assert!(info.get("xdp").is_none(), "{info}");
    let config = get_json(&pair, addr, "/api/v1/config");
    assert_eq!(
        (config["port"].as_u64(), config["mode"].as_str(), config["oui"].as_str()),
        (Some(3842), Some("all"), Some("00:c0:17"))
    );
    let workers = get_json(&pair, addr, "/api/v1/workers");
    assert_eq!(workers.as_array().unwrap().len(), 1);
    assert_eq!(workers[0]["placement"], "cpu 0");

    // Asked as Prometheus asks: OpenMetrics.
    let (code, head, before) = request_with(&pair, "GET", addr, "/metrics", None, PROMETHEUS_ACCEPT);
    assert_eq!(code, 200);
    assert!(
        head.to_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let before = parse_openmetrics(&before);
    assert_eq!(sample(&before, "reflector_reflected_packets_total"), 0.0);

    let tester = pair.tester();
    let probe = Frame::ito_v4().bytes();
    let stranger = Frame { src_mac: reflector_testkit::OTHER_MAC, ..Frame::ito_v4() }.bytes();
    for _ in 0..50 {
        tester.send(&probe).unwrap();
        tester.send(&stranger).unwrap();
    }
    assert_eq!(receive_reflections(&tester, 50, Duration::from_secs(2)).len(), 50);
    std::thread::sleep(Duration::from_millis(300));

    let stats = get_json(&pair, addr, "/api/v1/stats");
    assert_eq!(
        (stats["reflected_packets"].as_u64(), stats["rejected"]["oui"].as_u64()),
        (Some(50), Some(50))
    );
    for key in ["rx_pps", "pps", "mbps", "rx_mbps", "by_signature", "tx_errors", "rx_dropped", "backend"] {
        assert!(stats.get(key).is_some(), "stats lacks {key}");
    }
    let (_, _, after) = request_with(&pair, "GET", addr, "/metrics", None, PROMETHEUS_ACCEPT);
    let after = parse_openmetrics(&after);
    // Asked without Accept (curl, older scrapers): Prometheus's text format, which promtool
    // checks, with the same samples.
    let (code, head, text) = request_with(&pair, "GET", addr, "/metrics", None, "");
    assert_eq!(code, 200);
    assert!(head.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    let (ok, said) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics: {said}\n{text}");
    assert!(text.contains("\nreflector_reflected_packets_total 50\n"), "{text}");
    assert!(text.contains("\n# TYPE reflector_running_info gauge\n") && !text.contains("# EOF"), "{text}");
    // The alert rules and the Grafana dashboard ask only for metrics that are there.
    let samples: Vec<&str> =
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    for (file, used) in fleet_files().iter().map(|(f, t)| (f, metric_names(t))) {
        assert!(!used.is_empty(), "{file}");
        for name in used {
            assert!(
                samples.contains(&name.as_str()),
                "{file} uses {name}, which /metrics does not have: {samples:?}"
            );
        }
    }
    assert_eq!(sample(&after, "reflector_reflected_packets_total"), 50.0);
    assert!(
        after
            .iter()
            .any(|l| l.starts_with("reflector_rejected_packets reflector_rejected_packets_total oui 50")),
        "{after:?}"
    );

    // Reset (loopback, no token set: allowed), then the counters start again from zero.
    let (code, body) = request(&pair, "POST", addr, "/api/v1/counters/reset", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(get_json(&pair, addr, "/api/v1/stats")["reflected_packets"], 0);
    assert_eq!(request(&pair, "GET", addr, "/api/v1/nothing", None).0, 404);
    assert_eq!(request(&pair, "DELETE", addr, "/api/v1/stats", None).0, 405);
    let (status, lines) = reflector.signal_and_wait("TERM");
    assert!(status.success());
    assert!(lines.last().unwrap().contains("reflected 50"), "the summary covers the whole run");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn non_loopback_needs_a_token_and_a_wrong_one_is_refused() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let out =
        pair.run_reflector_cmd(&[], &["run", "va", "--backend", "af-packet", "--http", "192.0.2.1:9181"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not a loopback address")
            && err.contains("--http-token")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );

    // (A token on a non-loopback address means HTTPS, with a certificate made at start.)
    let url = |path: &str| format!("https://192.0.2.1:9182{path}");
    let reflector =
        pair.start_reflector_on(Some("af-packet"), &["--http", "192.0.2.1:9182", "--http-token", "s3cret"]);
    std::thread::sleep(Duration::from_millis(200));
    let req = |method, path: &str, token| request_tls(&pair, method, &url(path), token, None).0;
    assert_eq!(req("GET", "/api/v1/status", None), 401);
    assert_eq!(req("GET", "/api/v1/status", Some("wrong")), 401);
    assert_eq!(req("GET", "/metrics", Some("s3cre")), 401);
    assert_eq!(req("GET", "/api/v1/status", Some("s3cret")), 200);
    assert_eq!(req("POST", "/api/v1/counters/reset", Some("wrong")), 401);
    assert_eq!(req("POST", "/api/v1/counters/reset", Some("s3cret")), 200);
    drop(reflector.signal_and_wait("TERM"));

    // Knowingly insecure: reads open, reset and capture refused without a token.
    let reflector =
        pair.start_reflector_on(Some("af-packet"), &["--http", "192.0.2.1:9183", "--http-insecure"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(request(&pair, "GET", "192.0.2.1:9183", "/api/v1/status", None).0, 200);
    assert_eq!(request(&pair, "POST", "192.0.2.1:9183", "/api/v1/counters/reset", None).0, 403);
    assert_eq!(request(&pair, "GET", "192.0.2.1:9183", "/api/v1/capture?seconds=1", None).0, 403);
    drop(reflector.signal_and_wait("TERM"));
}

/// `/api/v1/events` for `secs` seconds (curl in the reflector's namespace): the status and
/// the data of each event, parsed.
fn events_for(pair: &NetnsPair, url: &str, token: Option<&str>, secs: &str) -> (u16, Vec<Value>) {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "20",
        "ip",
        "netns",
        "exec",
        &pair.reflector_ns,
        "curl",
        "-sS",
        "-k",
        "-N",
        "--max-time",
        secs,
    ]);
    cmd.args(["-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let events = body
        .split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (!data.is_empty()).then(|| {
                assert!(block.starts_with("event: stats\n"), "{block:?}");
                serde_json::from_str(&data.join("\n")).expect("event data is JSON")
            })
        })
        .collect();
    (code.trim().parse().unwrap_or(0), events)
}

#[test]
#[ignore = "needs root and network namespaces"]
fn events_push_a_snapshot_each_stats_interval() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "192.0.2.1:9196";
    let reflector = pair.start_reflector_on(
        Some("af-packet"),
        &["--http", addr, "--http-token", "t0ken", "--stats-interval", "0.5"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let url = format!("https://{addr}/api/v1/events");
    assert_eq!(events_for(&pair, &url, None, "2").0, 401, "the token is needed as for every read");
    let tester = pair.tester();
    let (code, events) = std::thread::scope(|s| {
        let listening = s.spawn(|| events_for(&pair, &url, Some("t0ken"), "3.2"));
        std::thread::sleep(Duration::from_millis(1500));
        for _ in 0..50 {
            tester.send(&Frame::ito_v4().bytes()).unwrap();
        }
        listening.join().unwrap()
    });
    assert_eq!(code, 200);
    // One at once, then one every 0.5 s for about 3 s.
    assert!((6..=8).contains(&events.len()), "{} events", events.len());
    assert_eq!(events[0]["reflected_packets"], 0);
    assert_eq!(events.last().unwrap()["reflected_packets"], 50, "{}", events.last().unwrap());
    assert!(events.iter().all(|e| e["testers"]["testers"].is_array() && e["backend"] == "af-packet"));
    assert_eq!(events.last().unwrap()["testers"]["testers"][0]["packets"], 50);
    drop(reflector.signal_and_wait("TERM"));
}

fn shown(dom: &str, id: &str) -> String {
    let start = format!("id=\"{id}\">");
    let at = dom.find(&start).unwrap_or_else(|| panic!("no #{id} in the page")) + start.len();
    dom[at..].split('<').next().unwrap().to_string()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_dashboard_in_a_real_browser_follows_the_traffic() {
    require_live!();
    assert!(
        Command::new("chromium").arg("--version").output().is_ok(),
        "chromium is not installed (scripts/test.sh installs it as root)"
    );
    let pair = NetnsPair::for_backend("af-xdp");
    let addr = "127.0.0.1:9184";
    let url = format!("http://{addr}/");
    let reflector = pair.start_reflector_on(Some("af-xdp"), &["--http", addr, "--stats-interval", "0.2"]);
    std::thread::sleep(Duration::from_millis(300));
    let before = common::render_page(&pair, &url, &["--dump-dom"]);
    assert!(
        shown(&before, "facts").starts_with("af-xdp on va (02:00:00:00:00:01)"),
        "{}",
        shown(&before, "facts")
    );
    assert_eq!(shown(&before, "reflected_packets"), "0");

    let tester = pair.tester();
    for _ in 0..120 {
        tester.send(&Frame::ito_v4().bytes()).unwrap();
    }
    assert_eq!(receive_reflections(&tester, 120, Duration::from_secs(2)).len(), 120);
    std::thread::sleep(Duration::from_millis(300));
    let after = common::render_page(&pair, &url, &["--dump-dom"]);
    assert_eq!(shown(&after, "reflected_packets"), "120", "the page shows the new count");
    // It shows it from the event stream (once an event has come, the page stops polling).
    assert_eq!(shown(&after, "updates"), "live", "the page follows /api/v1/events");
    assert!(after.contains(">probeot<"), "per-signature table");

    // A screenshot for people to look at.
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let arg = format!("--screenshot={}", png.display());
    common::render_page(&pair, &url, &["--window-size=1280,900", &arg]);
    let bytes = std::fs::read(&png).expect("a screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{} bytes", bytes.len());
    eprintln!("dashboard screenshot: {}", png.display());
    drop(reflector.signal_and_wait("TERM"));
}

/// The value of `attr` on the element with id `id` in a dumped page.
fn attribute(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag = &dom[dom[..at].rfind('<')?..at + dom[at..].find('>')?];
    let start = tag.find(&format!(" {attr}="))? + attr.len() + 3;
    Some(tag[start..].split('"').next()?.to_string())
}

/// Sends the ITO probe from two testers (the test corpus's source, and one with another IPv4
/// address) every 10 ms for `secs`.
fn two_testers(pair: &NetnsPair, secs: u64) {
    let tester = pair.tester();
    let mut other = Frame::ito_v4();
    other.ip = reflector_core::build::IpAddrs::V4 { src: [192, 0, 2, 77], dst: reflector_testkit::LOCAL_V4 };
    let (first, second) = (Frame::ito_v4().bytes(), other.bytes());
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        tester.send(&first).unwrap();
        tester.send(&second).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_dashboard_shows_what_happened_before_it_was_opened() {
    require_live!();
    assert!(
        Command::new("chromium").arg("--version").output().is_ok(),
        "chromium is not installed (scripts/test.sh installs it as root)"
    );
    let pair = NetnsPair::for_backend("af-xdp");
    let addr = "127.0.0.1:9186";
    let url = format!("http://{addr}/");
    let reflector = pair.start_reflector_on(Some("af-xdp"), &["--http", addr, "--latency"]);
    two_testers(&pair, 20);

    // The server's history: a sample a second, the testers' rates in them.
    let h = get_json(&pair, addr, "/api/v1/history?seconds=600");
    let samples = h["samples"].as_array().unwrap();
    assert!((18..=22).contains(&samples.len()), "{} samples", samples.len());
    let busy = &samples[samples.len() - 2];
    assert!(busy["pps"].as_f64().unwrap() > 100.0 && busy["dwell_ns"]["p99"].as_u64().unwrap() > 0, "{busy}");
    assert_eq!(h["testers"].as_array().unwrap().len(), 2, "{}", h["testers"]);
    assert_eq!(get_json(&pair, addr, "/api/v1/history?seconds=5")["samples"].as_array().unwrap().len(), 5);
    for bad in ["seconds=0", "seconds=601", "seconds=soon", "since=5"] {
        let (status, body) = request(&pair, "GET", addr, &format!("/api/v1/history?{bad}"), None);
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // A page opened now shows the minutes before it: the rates, the dwell times, each tester's line.
    let dom = common::render_page(&pair, &url, &["--dump-dom"]);
    let points =
        |id: &str| attribute(&dom, id, "data-points").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0);
    assert!(points("chart") >= 15, "rate chart points: {}", points("chart"));
    assert!(points("dwell-chart") >= 15, "dwell chart points: {}", points("dwell-chart"));
    assert_eq!(attribute(&dom, "dwell", "hidden"), None, "the dwell chart shows with --latency");
    let sparks = dom.matches("class=\"spark\"").count();
    assert_eq!(sparks, 2, "a sparkline per tester");
    assert!(dom.contains("192.0.2.77"), "the second tester is listed");

    // Screenshots for people to look at: a laptop and a phone.
    for (name, size) in [("dashboard-1400x1100.png", "1400,1100"), ("dashboard-390x844.png", "390,844")] {
        let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let (window, shot) = (format!("--window-size={size}"), format!("--screenshot={}", png.display()));
        common::render_page(&pair, &url, &[&window, "--hide-scrollbars", &shot]);
        let bytes = std::fs::read(&png).expect("a screenshot was written");
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{name}: {} bytes", bytes.len());
        eprintln!("dashboard screenshot: {}", png.display());
    }
    drop(reflector.signal_and_wait("TERM"));

    // Without --latency there is no dwell chart.
    let reflector = pair.start_reflector_on(Some("af-xdp"), &["--http", addr]);
    two_testers(&pair, 3);
    let dom = common::render_page(&pair, &url, &["--dump-dom"]);
    assert_eq!(attribute(&dom, "dwell", "hidden").as_deref(), Some(""), "no dwell chart without --latency");
    assert!(
        attribute(&dom, "chart", "data-points").is_some_and(|p| p != "0"),
        "the rate chart has its points"
    );
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_terminal_ui_runs_in_a_real_terminal_and_q_quits() {
    require_live!();
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is not installed (scripts/test.sh installs it as root)");
    }
    let pair = NetnsPair::for_backend("af-packet");
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status");
    let session = format!("rfl-tui-{}", std::process::id());
    // No --stats: on a terminal, run shows the UI. The exit status lands in a file.
    let command = format!(
        "timeout --foreground 60 ip netns exec {} {} run va --backend af-packet; echo $? > {}",
        pair.reflector_ns,
        env!("CARGO_BIN_EXE_reflector"),
        status_file.display()
    );
    let tmux = |args: &[&str]| Command::new("timeout").arg("10").arg("tmux").args(args).output().unwrap();
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "32", &command]).status.success());
    let screen =
        || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut shown = screen();
    while !shown.contains("q quits") {
        if std::time::Instant::now() > deadline {
            let _ = tmux(&["kill-session", "-t", &session]);
            panic!("the UI did not appear:\n{shown}");
        }
        std::thread::sleep(Duration::from_millis(100));
        shown = screen();
    }
    assert!(
        shown.contains("af-packet on va (02:00:00:00:00:01)") && shown.contains("by signature"),
        "{shown}"
    );
    assert!(tmux(&["send-keys", "-t", &session, "q"]).status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !status_file.exists() {
        if std::time::Instant::now() > deadline {
            let _ = tmux(&["kill-session", "-t", &session]);
            panic!("q did not end the UI:\n{}", screen());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    assert_eq!(std::fs::read_to_string(&status_file).unwrap().trim(), "0", "exit status after q");
}

#[test]
#[ignore = "needs root and network namespaces"]
fn latency_gives_dwell_time_percentiles() {
    require_live!();
    for backend in common::BACKENDS {
        let pair = NetnsPair::for_backend(backend);
        let reflector = pair
            .start_reflector_on(Some(backend), &["--latency", "--stats", "json", "--stats-interval", "0.2"]);
        let tester = pair.tester();
        for _ in 0..500 {
            tester.send(&Frame::ito_v4().bytes()).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(receive_reflections(&tester, 500, Duration::from_secs(2)).len(), 500, "{backend}");
        std::thread::sleep(Duration::from_millis(300));
        let (status, lines) = reflector.signal_and_wait("TERM");
        assert!(status.success());
        let s = common::summary(&lines);
        let d = &s["dwell_ns"];
        assert_eq!(d["count"], 500, "{backend}: every reflection has a dwell time: {s}");
        let (p50, p99, p999) =
            (d["p50"].as_u64().unwrap(), d["p99"].as_u64().unwrap(), d["p999"].as_u64().unwrap());
        assert!(p50 > 0 && p50 <= p99 && p99 <= p999, "{backend}: {d}");
        assert!(
            lines.iter().any(|l| l.contains("\"dwell_ns\"") && l.contains("\"type\":\"stats\"")),
            "per-interval lines carry it"
        );
    }
}

/// Sends `text` as is on a new connection from inside the reflector's namespace and reads
/// the answer until the server closes or `wait` passes: (status, head, body).
fn raw(pair: &NetnsPair, addr: &str, text: &str) -> (u16, String, String) {
    NetnsPair::in_ns(&pair.reflector_ns, || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(text.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        (status, head.to_string(), body.to_string())
    })
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root and network namespaces"]
fn head_host_and_cross_origin_rules_on_loopback() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "127.0.0.1:9191";
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--http", addr]);
    std::thread::sleep(Duration::from_millis(200));
    let req = |method: &str, path: &str, headers: &str| {
        raw(
            &pair,
            addr,
            &format!("{method} {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"),
        )
    };
    // HEAD: the GET's head, no body.
    for path in ["/api/v1/status", "/metrics", "/"] {
        let (status, head, body) = req("HEAD", path, &format!("Host: {addr}\r\n"));
        assert_eq!(status, 200, "HEAD {path}: {head}");
        assert!(head.to_ascii_lowercase().contains("content-length: "), "{head}");
        assert!(body.is_empty(), "HEAD {path} has a body: {body}");
    }
    let (status, head, _) = req("PUT", "/api/v1/status", &format!("Host: {addr}\r\n"));
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get, head"), "{head}");
    // Host: loopback names only (DNS rebinding).
    for host in ["evil.example:9191", "evil.example", "192.0.2.1:9191"] {
        assert_eq!(req("GET", "/api/v1/status", &format!("Host: {host}\r\n")).0, 403, "Host {host}");
    }
    for host in ["localhost:9191", "LOCALHOST", "127.0.0.1:9191", "127.0.0.1"] {
        assert_eq!(req("GET", "/api/v1/status", &format!("Host: {host}\r\n")).0, 200, "Host {host}");
    }
    // The reset: refused to another site's page, allowed to our own page and to curl.
    let reset =
        |headers: &str| req("POST", "/api/v1/counters/reset", &format!("Host: {addr}\r\n{headers}")).0;
    assert_eq!(reset("Origin: http://evil.example\r\n"), 403);
    assert_eq!(reset("Origin: null\r\n"), 403);
    assert_eq!(reset("Sec-Fetch-Site: cross-site\r\n"), 403);
    assert_eq!(reset("Sec-Fetch-Site: same-site\r\n"), 403);
    assert_eq!(reset(&format!("Origin: http://{addr}\r\nSec-Fetch-Site: same-origin\r\n")), 200);
    assert_eq!(reset(""), 200);
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn an_endless_header_line_costs_bounded_memory() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "127.0.0.1:9192";
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--http", addr]);
    let pid = common::child_of(reflector.pid());
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(pid);
    let (sent, answer) = NetnsPair::in_ns(&pair.reflector_ns, || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0;
        // 64 MiB of one header line, never finished: the server gives up long before.
        while sent < 64 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        (sent, String::from_utf8_lossy(&answer).into_owned())
    });
    let after = rss_kib(pid);
    assert!(sent < 64 << 20, "the server read all 64 MiB");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(after.saturating_sub(before) < 4096, "RSS {before} -> {after} KiB");
    // And it still answers.
    assert_eq!(request(&pair, "GET", addr, "/api/v1/status", None).0, 200);
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn connections_past_the_cap_or_the_fd_limit_do_not_stop_the_server() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "127.0.0.1:9193";
    // A low file descriptor limit, as a service manager might set: the connections below run
    // into it before the server's own cap.
    let reflector =
        pair.start_reflector_under(&["prlimit", "--nofile=48"], Some("af-packet"), &["--http", addr]);
    std::thread::sleep(Duration::from_millis(200));
    NetnsPair::in_ns(&pair.reflector_ns, || {
        let idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(addr).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(idle);
    });
    // Closed again: answered within a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        if request(&pair, "GET", addr, "/api/v1/status", None).0 == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server does not answer after the fd limit");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(reflector.signal_and_wait("TERM"));

    // With descriptors to spare, the server's own cap: 32 connections from one address that
    // each asked (and keep their connection) hold every place that address may have, so one more
    // from it gets a clear 503. (The cap of 64 in all is the unit tests'.)
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--http", addr]);
    std::thread::sleep(Duration::from_millis(200));
    NetnsPair::in_ns(&pair.reflector_ns, || {
        let idle: Vec<TcpStream> = (0..32)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                write!(s, "GET /api/v1/status HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = [0u8; 12];
                s.read_exact(&mut head).unwrap();
                assert_eq!(&head, b"HTTP/1.1 200");
                s
            })
            .collect();
        let mut extra = TcpStream::connect(addr).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut answer = String::new();
        let _ = extra.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable"), "{answer}");
        drop(idle);
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(request(&pair, "GET", addr, "/api/v1/status", None).0, 200);
    drop(reflector.signal_and_wait("TERM"));
}

/// 64 connections that send nothing, reopened as soon as they are closed, lock no one out: a
/// scrape with the token every 0.5 s is answered every time (a new connection takes the place
/// of the oldest that has not asked). Before, 44 of 46 such scrapes failed. At most 16 clients
/// follow `/api/v1/events`; the next gets 503.
#[test]
#[ignore = "needs root and network namespaces"]
fn idle_connections_lock_no_one_out() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "127.0.0.1:9194";
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--http", addr, "--http-token", "s3cret"]);
    std::thread::sleep(Duration::from_millis(200));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answered = std::thread::scope(|s| {
        let _stop = common::StopOnDrop(&stop);
        s.spawn(|| {
            NetnsPair::in_ns(&pair.reflector_ns, || {
                // From two other addresses of the loopback, 32 each (the most one address may
                // hold): every place of the server taken by a connection that never asks.
                let connect = |i: usize| {
                    let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                    let from: std::net::SocketAddr = ([127, 0, 0, 2 + (i % 2) as u8], 0).into();
                    c.bind(&from.into()).unwrap();
                    c.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into()).expect("connect");
                    let c: TcpStream = c.into();
                    c.set_nonblocking(true).unwrap();
                    c
                };
                let mut idle: Vec<TcpStream> = (0..64).map(connect).collect();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for (i, c) in idle.iter_mut().enumerate() {
                        let mut byte = [0u8; 64];
                        // Closed by the server (0 bytes, or reset): open another.
                        if c.read(&mut byte).is_ok() || c.peer_addr().is_err() {
                            *c = connect(i);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        let codes: Vec<u16> = (0..12)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(500));
                request(&pair, "GET", addr, "/metrics", Some("s3cret")).0
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        codes
    });
    assert_eq!(answered, vec![200; 12], "scrapes with the token while 64 idle connections are held");
    // The events: 16 followers, then a 503.
    NetnsPair::in_ns(&pair.reflector_ns, || {
        let follow = || {
            let mut c = TcpStream::connect(addr).expect("connect");
            write!(c, "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer s3cret\r\n\r\n")
                .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            (c, String::from_utf8_lossy(&head).to_string())
        };
        let followers: Vec<(TcpStream, String)> = (0..16).map(|_| follow()).collect();
        assert!(followers.iter().all(|(_, h)| h == "HTTP/1.1 200"), "16 followers");
        assert_eq!(follow().1, "HTTP/1.1 503", "the 17th");
    });
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn a_client_that_never_reads_stalls_no_one_else() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "127.0.0.1:9194";
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--http", addr]);
    std::thread::sleep(Duration::from_millis(200));
    std::thread::scope(|s| {
        let ns = pair.reflector_ns.clone();
        s.spawn(move || {
            NetnsPair::in_ns(&ns, || {
                let mut stuck = TcpStream::connect(addr).unwrap();
                stuck.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                let one = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                let many = one.repeat(20_000);
                // Pipelined requests, answers never read: its buffers fill and it blocks.
                let _ = stuck.write_all(many.as_bytes());
                std::thread::sleep(Duration::from_secs(3));
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..10 {
            let started = std::time::Instant::now();
            assert_eq!(request(&pair, "GET", addr, "/api/v1/status", None).0, 200);
            assert!(started.elapsed() < Duration::from_secs(1), "answered after {:?}", started.elapsed());
        }
    });
    drop(reflector.signal_and_wait("TERM"));
}

#[test]
#[ignore = "needs root and network namespaces"]
fn the_dashboard_page_loads_without_the_token_and_the_browser_uses_it() {
    require_live!();
    assert!(
        Command::new("chromium").arg("--version").output().is_ok(),
        "chromium is not installed (scripts/test.sh installs it as root)"
    );
    let pair = NetnsPair::for_backend("af-packet");
    let addr = "192.0.2.1:9195";
    let reflector = pair.start_reflector_on(Some("af-packet"), &["--http", addr, "--http-token", "t0ken"]);
    std::thread::sleep(Duration::from_millis(200));
    // The page itself: no token needed; the data: the token needed (over HTTPS, with the
    // certificate made at start).
    assert_eq!(request_tls(&pair, "GET", &format!("https://{addr}/"), None, None).0, 200);
    assert_eq!(request_tls(&pair, "GET", &format!("https://{addr}/api/v1/status"), None, None).0, 401);
    let dom = common::render_page(
        &pair,
        &format!("https://{addr}/#token=t0ken"),
        &["--ignore-certificate-errors", "--dump-dom"],
    );
    assert!(
        shown(&dom, "facts").starts_with("af-packet on va (02:00:00:00:00:01)"),
        "{}",
        shown(&dom, "facts")
    );
    // The capture button is there, ready (af-packet can capture).
    assert!(dom.contains("<button id=\"capture-button\" type=\"button\">Capture</button>"), "{dom}");
    drop(reflector.signal_and_wait("TERM"));
}

/// HTTPS with a given certificate (curl trusts exactly it; plain HTTP to the port gets no
/// answer) and with one made at start, whose fingerprint the start line gives and the server
/// presents.
#[test]
#[ignore = "needs root and network namespaces"]
fn https_with_a_given_certificate_and_with_a_generated_one() {
    require_live!();
    let pair = NetnsPair::for_backend("af-packet");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let reflector = pair.start_reflector_on(
        Some("af-packet"),
        &["--http", "127.0.0.1:9196", "--http-tls-cert", &c, "--http-tls-key", &k],
    );
    let served = reflector.stderr.recv_timeout(Duration::from_secs(5)).expect("the HTTP line");
    assert!(
        served.starts_with("reflector: HTTP on https://127.0.0.1:9196 (certificate SHA-256 "),
        "{served}"
    );
    assert!(!served.contains("generated"), "{served}");
    let (status, body) = request_tls(&pair, "GET", "https://127.0.0.1:9196/api/v1/status", None, Some(&cert));
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["backend"], "af-packet");
    // Plain HTTP to the TLS port: no HTTP answer, the connection closed.
    let (plain, _) = NetnsPair::in_ns(&pair.reflector_ns, || {
        let mut s = TcpStream::connect("127.0.0.1:9196").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        (String::from_utf8_lossy(&raw).to_string(), ())
    });
    assert!(!plain.starts_with("HTTP/"), "plain HTTP was answered: {plain}");
    drop(reflector.signal_and_wait("TERM"));

    // A token on a non-loopback address and no certificate: one made at start.
    let reflector =
        pair.start_reflector_on(Some("af-packet"), &["--http", "192.0.2.1:9197", "--http-token", "t0k"]);
    let served = reflector.stderr.recv_timeout(Duration::from_secs(5)).expect("the HTTP line");
    let fingerprint = served
        .split_once("certificate SHA-256 ")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap_or_else(|| panic!("no fingerprint: {served}"))
        .to_string();
    assert!(served.contains("self-signed, generated at start"), "{served}");
    let presented = Command::new("timeout")
        .args(["10", "ip", "netns", "exec", &pair.reflector_ns, "sh", "-c"])
        .arg("openssl s_client -connect 192.0.2.1:9197 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256")
        .output()
        .unwrap();
    let presented = String::from_utf8_lossy(&presented.stdout).to_string();
    assert_eq!(presented.trim().rsplit('=').next(), Some(fingerprint.as_str()), "{presented}");
    let (status, _) = request_tls(&pair, "GET", "https://192.0.2.1:9197/api/v1/status", Some("t0k"), None);
    assert_eq!(status, 200);
    drop(reflector.signal_and_wait("TERM"));
}
