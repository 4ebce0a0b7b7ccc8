//! `reflector lab`: the whole thing on one machine. Two network namespaces joined by a veth
//! pair, the reflector in one, the prober in the other, a short report at the end, and
//! nothing left behind (also on Ctrl-C or an error).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use reflector_core::{MacAddr, Mode, Signature};
use serde_json::{Value, json};

use reflector_io::datapath::Backend;

use crate::backend_choice::BackendChoice;
use crate::output;
use crate::prober::{Amount, ProbeArgs};
use crate::raw_prober::{Prober, report_json};

/// The reflector's side of the veth pair.
const REFLECTOR_MAC: MacAddr = MacAddr([0x02, 0x52, 0x46, 0x4c, 0x00, 0x01]);
/// The tester's side: a NetAlly OUI, so a reflector with default flags accepts its probes.
const TESTER_MAC: MacAddr = MacAddr([0x00, 0xc0, 0x17, 0x4c, 0x00, 0x0a]);

/// Arguments of `reflector lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Data path for the reflector.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Probes per second (0: as fast as the prober goes).
    #[arg(long, value_name = "PPS", default_value_t = 10_000)]
    rate: u64,
    /// Probe frame size including FCS.
    #[arg(long, value_name = "BYTES", default_value_t = 128)]
    size: usize,
    /// Seconds of traffic.
    #[arg(long, value_name = "SECS", default_value = "8", value_parser = crate::input::parse_secs)]
    duration: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The namespaces and the reflector process; everything is removed on drop.
struct Lab {
    reflector_ns: String,
    tester_ns: String,
    reflector: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.reflector.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.reflector_ns, &self.tester_ns] {
            // Deleting a namespace also deletes the veth end inside it.
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run 'ip' (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn lines(reader: impl std::io::Read + Send + 'static, sink: impl Fn(String) + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(l) => sink(l),
                Err(_) => break,
            }
        }
    });
}

/// What the reflector's start record says it opened, in one line.
fn start_description(start: &Value) -> String {
    let text = |key: &str| start[key].as_str().unwrap_or("?").to_string();
    let placements: Vec<&str> =
        start["placements"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let workers = match placements.len() {
        0 => "no workers".to_string(),
        n => format!("{n} worker(s) ({})", placements.join(", ")),
    };
    format!(
        "reflector {} on {} [{}]; {workers}; {}",
        text("backend"),
        text("interface"),
        text("why"),
        text("details")
    )
}

/// The veth pair's MTU (the kernel's default for veth).
const LAB_MTU: usize = 1500;

/// The checks of the arguments that `probe` would make later, made before anything is created.
fn check_args(args: &LabArgs) -> Result<(), crate::input::UsageError> {
    let probe = crate::probe::ProbeConfig {
        src_mac: TESTER_MAC,
        dst_mac: REFLECTOR_MAC,
        src_ip: std::net::Ipv4Addr::new(192, 0, 2, 10).into(),
        dst_ip: std::net::Ipv4Addr::new(192, 0, 2, 1).into(),
        src_port: 0,
        dst_port: reflector_core::DEFAULT_PORT,
        signature: Signature::ProbeOt,
        size: args.size,
        mode: Mode::All,
        session: 0,
    };
    let max = LAB_MTU + 14 + crate::probe::FCS_LEN;
    if !(probe.min_size()..=max).contains(&args.size) {
        return Err(crate::input::UsageError(format!(
            "--size {} is outside {}..={max} (a PROBEOT probe over IPv4 on the lab's 1500-byte MTU)",
            args.size,
            probe.min_size()
        )));
    }
    Ok(())
}

pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    check_args(args)?;
    if !reflector_io::host::process::is_root() {
        bail!("lab creates network namespaces and needs root (try: sudo reflector lab)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install signal handlers")?;
    }
    let base = format!("rfl-lab-{}", std::process::id());
    let mut lab = Lab { reflector_ns: format!("{base}-r"), tester_ns: format!("{base}-t"), reflector: None };
    let say = |msg: &str| {
        if !args.json {
            eprintln!("lab: {msg}");
        }
    };
    say(&format!(
        "creating namespaces {} (reflector) and {} (tester), joined by a veth pair",
        lab.reflector_ns, lab.tester_ns
    ));
    lab.create()?;
    let latest_stats = start_reflector(&mut lab, args, &say)?;
    let started = Instant::now();
    let (tally, description) = probe(args, &lab.tester_ns, &stop, &latest_stats)?;
    let elapsed = started.elapsed();
    let interrupted = stop.load(Ordering::Relaxed);
    let summary = stop_reflector(&mut lab, &latest_stats, interrupted)?;
    drop(lab); // namespaces go before the report is printed
    report(args, &tally.report(), &description, elapsed, summary.as_ref(), interrupted)
}

impl Lab {
    /// The two namespaces, joined by a veth pair with our MACs and addresses, up.
    fn create(&self) -> anyhow::Result<()> {
        ip(&["netns", "add", &self.reflector_ns])?;
        ip(&["netns", "add", &self.tester_ns])?;
        ip(&[
            "link",
            "add",
            "va",
            "netns",
            &self.reflector_ns,
            "address",
            &REFLECTOR_MAC.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "netns",
            &self.tester_ns,
            "address",
            &TESTER_MAC.to_string(),
        ])?;
        for (ns, dev, addr) in
            [(&self.reflector_ns, "va", "192.0.2.1/24"), (&self.tester_ns, "vb", "192.0.2.10/24")]
        {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }
}

/// The first and the last CPU this process may use, when there are two or more: the prober
/// and the reflector's worker go on different ones.
fn separate_cpus() -> Option<(usize, usize)> {
    let cpus = reflector_io::worker::allowed_cpus().ok()?;
    match (cpus.first(), cpus.last()) {
        (Some(&first), Some(&last)) if first != last => Some((first, last)),
        _ => None,
    }
}

/// The latest stats record of the reflector (its summary at the end).
type LatestStats = Arc<Mutex<Option<Value>>>;

/// Starts the reflector: this same program, in its namespace, under `timeout` as a safety net,
/// and waits for its start record, which says what it opened.
fn start_reflector(lab: &mut Lab, args: &LabArgs, say: &dyn Fn(&str)) -> anyhow::Result<LatestStats> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let limit = (args.duration.as_secs_f64() + 60.0).ceil().to_string();
    let backend = args.backend.name();
    // With two CPUs or more, the reflector's worker gets the last one and the prober the first
    // (`probe`), so they do not take turns on one CPU.
    let mut placement = Vec::new();
    if let (Some(last), true) =
        (separate_cpus().map(|(_, last)| last), args.backend != BackendChoice::Named(Backend::XdpTx))
    {
        placement = vec!["--cpus".to_string(), last.to_string()];
    }
    let mut child = Command::new("timeout")
        .args(["-s", "TERM", &limit, "ip", "netns", "exec", &lab.reflector_ns])
        .arg(&exe)
        .args(["run", "va", "--backend", backend, "--stats", "json"])
        .args(&placement)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the reflector")?;
    // Its first JSON record says what it opened; the stats records follow, then the summary.
    let latest_stats: LatestStats = Arc::default();
    let stats_sink = latest_stats.clone();
    let (start_tx, start_rx) = std::sync::mpsc::channel();
    lines(child.stdout.take().expect("piped"), move |l| {
        if let Ok(v) = serde_json::from_str::<Value>(&l) {
            if v["type"] == "start" {
                let _ = start_tx.send(v);
            } else {
                *stats_sink.lock().expect("stats lock") = Some(v);
            }
        }
    });
    let stderr_tail: Arc<Mutex<Option<String>>> = Arc::default();
    let tail_sink = stderr_tail.clone();
    lines(child.stderr.take().expect("piped"), move |l| {
        *tail_sink.lock().expect("stderr lock") = Some(l);
    });
    lab.reflector = Some(child);
    let start = start_rx.recv_timeout(Duration::from_secs(15)).map_err(|_| {
        let said = stderr_tail.lock().expect("stderr lock").take();
        anyhow::anyhow!("the reflector did not start: {}", said.as_deref().unwrap_or("no output"))
    })?;
    say(&start_description(&start));
    Ok(latest_stats)
}

/// The prober, in the tester namespace, in a thread of this process, for `--duration`.
fn probe(
    args: &LabArgs,
    tester_ns: &str,
    stop: &AtomicBool,
    latest_stats: &LatestStats,
) -> anyhow::Result<(crate::probe::Tally, String)> {
    let probe_args = ProbeArgs {
        iface: "vb".into(),
        dst_mac: Some(REFLECTOR_MAC),
        stamp: false,
        dst_ip: None,
        src_ip: None,
        src_mac: None,
        rate: args.rate,
        size: args.size,
        count: None,
        duration: Some(args.duration),
        sig: Signature::ProbeOt,
        mode: Mode::All,
        port: None,
        wait: Duration::from_millis(500),
        json: args.json,
    };
    let json = args.json;
    let progress = |t: &crate::probe::Tally, elapsed: Duration| {
        if json {
            return;
        }
        let reflector_pps = latest_stats
            .lock()
            .expect("stats lock")
            .as_ref()
            .and_then(|v| v["pps"].as_f64())
            .map_or("-".to_string(), |p| format!("{p:.0}"));
        eprintln!(
            "lab: [{:4.1}s] sent {} received {} | reflector {} pps",
            elapsed.as_secs_f64(),
            t.sent,
            t.received,
            reflector_pps
        );
    };
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<_> {
            reflector_io::host::process::enter_netns(&format!("/run/netns/{tester_ns}"))?;
            if let Some((first, _)) = separate_cpus() {
                // Best effort: unpinned, it still works, only slower.
                let _ = reflector_io::host::process::pin_current_thread(first);
            }
            // A veth takes frames its peer sends with XDP_TX only when it runs an XDP program
            // itself: one that passes everything, for as long as the probe runs.
            let _peer = match args.backend {
                BackendChoice::Named(Backend::XdpTx) => {
                    let vb = reflector_io::host::iface::iface_info("vb")?.index;
                    Some(reflector_io::xdp::attach_pass(vb).context("an XDP program on the tester's veth")?)
                }
                _ => None,
            };
            let prober = Prober::open(&probe_args)?;
            let description = prober.description.clone();
            if !json {
                eprintln!("lab: prober {description}");
            }
            let tally =
                prober.run(Amount::Duration(args.duration), args.rate, probe_args.wait, stop, progress)?;
            Ok((tally, description))
        })
        .join()
        .expect("prober thread")
    })
}

/// Stops the reflector and returns its summary record.
fn stop_reflector(
    lab: &mut Lab,
    latest_stats: &LatestStats,
    interrupted: bool,
) -> anyhow::Result<Option<Value>> {
    let mut child = lab.reflector.take().expect("started before");
    if reflector_io::host::process::signal_process(child.id(), libc::SIGTERM).is_err() {
        // Already gone, or not ours to signal any more: make sure, then collect it below.
        let _ = child.kill();
    }
    let status = child.wait().context("cannot wait for the reflector")?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let summary = loop {
        let s = latest_stats.lock().expect("stats lock").clone();
        match s {
            Some(v) if v["type"] == "summary" => break Some(v),
            _ if Instant::now() >= deadline => break None,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    if !status.success() && !interrupted {
        bail!("the reflector ended with {status}");
    }
    Ok(summary)
}

/// The lab report: the prober's, with the reflector's count and CPU time.
fn report(
    args: &LabArgs,
    report: &crate::probe::Report,
    description: &str,
    elapsed: Duration,
    summary: Option<&Value>,
    interrupted: bool,
) -> anyhow::Result<()> {
    let cpu_s =
        summary.map(|s| s["cpu_user_s"].as_f64().unwrap_or(0.0) + s["cpu_system_s"].as_f64().unwrap_or(0.0));
    let reflected = summary.and_then(|s| s["reflected_packets"].as_u64());
    if args.json {
        let mut v = report_json(report, description, elapsed);
        v["backend"] = json!(summary.map(|s| s["backend"].clone()));
        v["reflected"] = json!(reflected);
        v["reflector_cpu_s"] = json!(cpu_s);
        v["interrupted"] = json!(interrupted);
        output::line(v)?;
    } else {
        output::line(format!(
            "lab report{}: backend {}, {:.1} s",
            if interrupted { " (interrupted)" } else { "" },
            summary.and_then(|s| s["backend"].as_str()).unwrap_or("?"),
            elapsed.as_secs_f64()
        ))?;
        output::line(report.text())?;
        let in_kernel = summary.and_then(|s| s["backend"].as_str()) == Some("xdp-tx");
        output::line(match (cpu_s, reflected) {
            (Some(cpu), Some(n)) => format!(
                "reflector: reflected {n}, CPU {:.2} s over the whole run, start-up and idle time included ({:.1}% of one core; {:.0} ns of it per reflected packet, not a per-packet cost){}",
                cpu,
                100.0 * cpu / elapsed.as_secs_f64(),
                if n > 0 { cpu * 1e9 / n as f64 } else { 0.0 },
                if in_kernel {
                    "; the reflection itself runs in the kernel's receive path, not in this process's CPU time"
                } else {
                    ""
                }
            ),
            _ => "reflector: no summary received".into(),
        })?;
    }
    if report.sent > 0 && report.received == 0 {
        bail!("no reflections came back: 100% loss");
    }
    Ok(())
}
