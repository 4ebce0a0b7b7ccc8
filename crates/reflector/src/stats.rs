//! Live statistics lines (text, JSON, CSV) and the final summary.

use std::time::Duration;

use clap::ValueEnum;
use reflector_core::{Counters, Dwell, Reject, Signature};
use serde_json::{Value, json};

/// How statistics are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// One human-readable line per interval.
    Text,
    /// One JSON object per line.
    Json,
    /// A header, then one comma-separated row per interval.
    Csv,
}

/// Rates over one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Frames received per second.
    pub rx_pps: f64,
    /// Megabits received per second.
    pub rx_mbps: f64,
    /// Frames reflected per second.
    pub pps: f64,
    /// Megabits reflected per second.
    pub mbps: f64,
}

impl Rates {
    /// Rates from the counter change `delta` over `interval`.
    pub fn over(delta: &Counters, interval: Duration) -> Rates {
        let secs = interval.as_secs_f64().max(1e-9);
        Rates {
            rx_pps: delta.rx_packets as f64 / secs,
            rx_mbps: delta.rx_bytes as f64 * 8.0 / 1e6 / secs,
            pps: delta.reflected_packets as f64 / secs,
            mbps: delta.reflected_bytes as f64 * 8.0 / 1e6 / secs,
        }
    }
}

/// What every stats line names besides counters.
#[derive(Debug, Clone)]
pub struct Context {
    /// Backend in use.
    pub backend: &'static str,
    /// Interface name.
    pub interface: String,
    /// Where each worker runs ("cpu 0", or why it is not pinned).
    pub placements: Vec<String>,
}

const CSV_HEADER: &str = "type,elapsed_s,rx_packets,rx_bytes,reflected_packets,reflected_bytes,rejected_packets,tx_errors,rx_pps,pps,mbps";

/// Prints the CSV header when the format needs one.
pub fn header(format: StatsFormat) -> Option<&'static str> {
    (format == StatsFormat::Csv).then_some(CSV_HEADER)
}

/// The first JSON record of a run: `{"type": "start", …}` with what was opened (`lab` reads it).
pub fn start_record(
    format: StatsFormat,
    ctx: &Context,
    info: &reflector_io::datapath::BackendInfo,
) -> Option<String> {
    (format == StatsFormat::Json).then(|| {
        json!({
            "type": "start",
            "backend": ctx.backend,
            "interface": ctx.interface,
            "placements": ctx.placements,
            "why": info.why(),
            "details": info.details(),
            "backend_info": info,
        })
        .to_string()
    })
}

/// `{"p50": …, "p99": …, "p999": …}` in nanoseconds (bucket upper bounds), for `dwell_ns`.
pub fn dwell_json(d: &Dwell) -> Value {
    json!({"p50": d.quantile(0.5), "p99": d.quantile(0.99), "p999": d.quantile(0.999), "count": d.count()})
}

fn json_record(
    kind: &str,
    ctx: &Context,
    elapsed: Duration,
    totals: &Counters,
    rates: &Rates,
    dwell: Option<&Dwell>,
) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!(kind));
    m.insert("elapsed_s".into(), json!((elapsed.as_secs_f64() * 1000.0).round() / 1000.0));
    m.insert("backend".into(), json!(ctx.backend));
    m.insert("interface".into(), json!(ctx.interface));
    m.extend(crate::report::counters_json(totals));
    m.insert("rx_pps".into(), json!(rates.rx_pps.round()));
    m.insert("rx_mbps".into(), json!((rates.rx_mbps * 1000.0).round() / 1000.0));
    m.insert("pps".into(), json!(rates.pps.round()));
    m.insert("mbps".into(), json!((rates.mbps * 1000.0).round() / 1000.0));
    if let Some(d) = dwell {
        m.insert("dwell_ns".into(), dwell_json(d));
    }
    Value::Object(m)
}

fn csv_row(kind: &str, elapsed: Duration, c: &Counters, r: &Rates) -> String {
    format!(
        "{kind},{:.3},{},{},{},{},{},{},{:.0},{:.0},{:.3}",
        elapsed.as_secs_f64(),
        c.rx_packets,
        c.rx_bytes,
        c.reflected_packets,
        c.reflected_bytes,
        c.rejected_packets(),
        c.tx_errors,
        r.rx_pps,
        r.pps,
        r.mbps
    )
}

/// "probeot 10, rfc2544 2": the non-zero entries of a counter table.
fn nonzero<T: Copy>(names: &[T], values: &[u64], name: impl Fn(T) -> &'static str) -> String {
    let parts: Vec<String> =
        names.iter().zip(values).filter(|(_, v)| **v > 0).map(|(n, v)| format!("{} {v}", name(*n))).collect();
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}

/// One line for the interval that ended `elapsed` into the run.
pub fn interval_line(
    format: StatsFormat,
    ctx: &Context,
    elapsed: Duration,
    totals: &Counters,
    rates: &Rates,
    dwell: Option<&Dwell>,
) -> String {
    match format {
        StatsFormat::Json => json_record("stats", ctx, elapsed, totals, rates, dwell).to_string(),
        StatsFormat::Csv => csv_row("stats", elapsed, totals, rates),
        StatsFormat::Text => {
            format!(
                "[{:7.1}s] reflected {:.0} pps {:.2} Mb/s | received {:.0} pps | total reflected {} rejected {} tx errors {}",
                elapsed.as_secs_f64(),
                rates.pps,
                rates.mbps,
                rates.rx_pps,
                totals.reflected_packets,
                totals.rejected_packets(),
                totals.tx_errors
            ) + &dwell_text(dwell)
        }
    }
}

/// "; testers: 192.0.2.10 (1200 answered, 30 limited), …" for the text summary.
fn testers_text(rows: &[crate::report::TesterRow]) -> String {
    if rows.is_empty() {
        return "; no testers".into();
    }
    let named: Vec<String> = rows
        .iter()
        .take(SUMMARY_TESTERS)
        .map(|r| {
            let t = &r.tester;
            let vlan = if t.vlan != 0 { format!(" vlan {}", t.vlan) } else { String::new() };
            format!("{}{vlan} ({} answered, {} limited)", t.addr(), t.packets, t.limited)
        })
        .collect();
    let more = rows.len().saturating_sub(SUMMARY_TESTERS);
    format!(
        "; testers: {}{}",
        named.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )
}

fn dwell_text(dwell: Option<&Dwell>) -> String {
    let us =
        |q| dwell.and_then(|d| d.quantile(q)).map_or("-".into(), |ns| format!("{:.1}", ns as f64 / 1000.0));
    match dwell {
        Some(_) => format!(" | dwell p50 {} us p99 {} us p999 {} us", us(0.5), us(0.99), us(0.999)),
        None => String::new(),
    }
}

/// What the final summary reports besides the counters.
#[derive(Debug, Clone, Default)]
pub struct Closing<'a> {
    /// The workers' dwell times, when measured.
    pub dwell: Option<&'a Dwell>,
    /// The process's CPU time (user, system).
    pub cpu: Option<(Duration, Duration)>,
    /// The testers, busiest first.
    pub testers: &'a [crate::report::TesterRow],
    /// With a capture tap: frames captured, frames not captured (the writer was behind, or a
    /// capture file or FIFO could not take them), and frames capture streams did not send to
    /// clients that read too slowly.
    pub capture: Option<(u64, u64, u64)>,
    /// dpdk: the workers' busy cycles, the frames received in them and the cycle counter's
    /// rate in Hz (`reflector_io::datapath::BusyMeters`).
    pub busy: Option<(u64, u64, u64)>,
}

/// Testers the summary names.
const SUMMARY_TESTERS: usize = 20;

/// The final summary from each worker's counters, what a kernel program rejected before the
/// workers saw it, and `closing` (dwell times, the process's CPU time, the testers); rates are
/// averages over the run.
pub fn summary(
    format: StatsFormat,
    ctx: &Context,
    elapsed: Duration,
    workers: &[Counters],
    kernel: Option<&Counters>,
    closing: &Closing<'_>,
) -> String {
    let (dwell, cpu) = (closing.dwell, closing.cpu);
    let mut total = Counters::default();
    workers.iter().chain(kernel).for_each(|w| total.add(w));
    let totals = &total;
    let rates = Rates::over(totals, elapsed);
    match format {
        StatsFormat::Json => {
            let mut record = json_record("summary", ctx, elapsed, totals, &rates, dwell);
            let per_worker: Vec<Value> = workers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut m = crate::report::counters_json(c);
                    m.insert("worker".into(), json!(i));
                    m.insert("placement".into(), json!(ctx.placements.get(i)));
                    Value::Object(m)
                })
                .collect();
            record["workers"] = Value::Array(per_worker);
            if let Some(k) = kernel {
                record["kernel"] = Value::Object(crate::report::counters_json(k));
            }
            if let Some((user, system)) = cpu {
                record["cpu_user_s"] = json!(user.as_secs_f64());
                record["cpu_system_s"] = json!(system.as_secs_f64());
            }
            if let Some((frames, dropped, stream_dropped)) = closing.capture {
                record["capture"] =
                    json!({ "frames": frames, "dropped": dropped, "stream_dropped": stream_dropped });
            }
            if let Some((cycles, packets, hz)) = closing.busy {
                record["dpdk"] = json!({
                    "busy_cycles": cycles,
                    "busy_packets": packets,
                    "cycles_hz": hz,
                    "cycles_per_packet": (packets > 0).then(|| cycles as f64 / packets as f64),
                });
            }
            record["testers"] = crate::report::testers_json(closing.testers, SUMMARY_TESTERS);
            record.to_string()
        }
        StatsFormat::Csv => csv_row("summary", elapsed, totals, &rates),
        StatsFormat::Text => {
            format!(
                "summary after {:.1} s on {} ({}): received {} ({} bytes), reflected {} ({} bytes; {}), rejected {} ({}), tx errors {}, dropped by the kernel {}{}",
                elapsed.as_secs_f64(),
                ctx.interface,
                ctx.backend,
                totals.rx_packets,
                totals.rx_bytes,
                totals.reflected_packets,
                totals.reflected_bytes,
                nonzero(&Signature::ALL, &totals.by_signature, Signature::name),
                totals.rejected_packets(),
                nonzero(&Reject::ALL, &totals.rejected, Reject::name),
                totals.tx_errors,
                totals.rx_dropped,
                match cpu {
                    Some((u, s)) =>
                        format!(", cpu {:.2} s user + {:.2} s system", u.as_secs_f64(), s.as_secs_f64()),
                    None => String::new(),
                }
            ) + &closing.capture.filter(|(f, d, s)| f + d + s > 0).map_or(String::new(), |(f, d, s)| {
                let slow = if s > 0 {
                    format!(", {s} not sent to capture clients that read too slowly")
                } else {
                    String::new()
                };
                format!("; captured {f} frames ({d} not captured{slow})")
            }) + &closing.busy.filter(|(_, p, _)| *p > 0).map_or(String::new(), |(c, p, hz)| {
                format!(
                    "; busy {:.0} cycles a frame received ({:.2} GHz)",
                    c as f64 / p as f64,
                    hz as f64 / 1e9
                )
            }) + &testers_text(closing.testers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_every_format() {
        let ctx =
            Context { backend: "af-packet", interface: "eth0".into(), placements: vec!["cpu 0".into()] };
        let mut c = Counters {
            rx_packets: 10,
            rx_bytes: 1000,
            reflected_packets: 8,
            reflected_bytes: 800,
            ..Counters::default()
        };
        c.by_signature[Signature::ProbeOt as usize] = 8;
        c.rejected[Reject::Oui as usize] = 2;
        let r = Rates::over(&c, Duration::from_secs(2));
        assert_eq!((r.rx_pps, r.pps, r.mbps), (5.0, 4.0, 0.0032));
        let j: Value = serde_json::from_str(&interval_line(
            StatsFormat::Json,
            &ctx,
            Duration::from_secs(2),
            &c,
            &r,
            None,
        ))
        .unwrap();
        assert_eq!(j["type"], "stats");
        assert_eq!(j["pps"], 4.0);
        assert_eq!(j["rejected"]["oui"], 2);
        assert_eq!(j["backend"], "af-packet");
        let csv = interval_line(StatsFormat::Csv, &ctx, Duration::from_secs(2), &c, &r, None);
        assert_eq!(csv.split(',').count(), CSV_HEADER.split(',').count());
        assert_eq!(csv, "stats,2.000,10,1000,8,800,2,0,5,4,0.003");
        let text = summary(StatsFormat::Text, &ctx, Duration::from_secs(2), &[c], None, &Closing::default());
        assert!(text.contains("reflected 8 (800 bytes; probeot 8), rejected 2 (oui 2)"), "{text}");
        assert!(text.ends_with("; no testers"), "{text}");
        let tester = reflector_core::testers::Tester {
            ip: std::net::Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped().octets(),
            vlan: 100,
            packets: 8,
            limited: 1,
            first_seen_ns: 1_000_000_000,
            last_seen_ns: 2_000_000_000,
            ..Default::default()
        };
        let rows = [crate::report::TesterRow { tester, pps: 4.4, active: false }];
        let closing = Closing { testers: &rows, ..Closing::default() };
        let text = summary(StatsFormat::Text, &ctx, Duration::from_secs(2), &[c], None, &closing);
        assert!(text.ends_with("; testers: 192.0.2.10 vlan 100 (8 answered, 1 limited)"), "{text}");
        let j: Value = serde_json::from_str(&summary(
            StatsFormat::Json,
            &ctx,
            Duration::from_secs(2),
            &[c],
            None,
            &closing,
        ))
        .unwrap();
        assert_eq!(
            j["testers"],
            serde_json::json!({"active": 0, "known": 1, "testers": [{
                "ip": "192.0.2.10", "vlan": 100, "mac": "00:00:00:00:00:00", "families": [],
                "packets": 8, "bytes": 0, "limited": 1, "pps": 4.0,
                "first_seen": 1.0, "last_seen": 2.0, "active": false
            }]})
        );
        let mut kernel = Counters { rx_packets: 3, ..Counters::default() };
        kernel.rejected[Reject::Oui as usize] = 3;
        let j: Value = serde_json::from_str(&summary(
            StatsFormat::Json,
            &ctx,
            Duration::from_secs(2),
            &[c, c],
            Some(&kernel),
            &Closing {
                dwell: Some(&{
                    let mut d = Dwell::default();
                    d.record(3000, 4);
                    d
                }),
                cpu: Some((Duration::from_millis(1500), Duration::ZERO)),
                testers: &[],
                capture: Some((12, 1, 5)),
                busy: Some((4_000, 20, 3_000_000_000)),
            },
        ))
        .unwrap();
        assert_eq!(
            j["dpdk"],
            serde_json::json!({"busy_cycles": 4000, "busy_packets": 20, "cycles_hz": 3_000_000_000u64, "cycles_per_packet": 200.0})
        );
        let busy = Closing { busy: Some((4_000, 20, 3_000_000_000)), ..Closing::default() };
        let text = summary(StatsFormat::Text, &ctx, Duration::from_secs(2), &[c], None, &busy);
        assert!(text.contains("; busy 200 cycles a frame received (3.00 GHz); no testers"), "{text}");
        assert_eq!(j["cpu_user_s"], 1.5);
        assert_eq!((j["capture"]["frames"].as_u64(), j["capture"]["dropped"].as_u64()), (Some(12), Some(1)));
        assert_eq!(j["capture"]["stream_dropped"], 5);
        assert_eq!(j["reflected_packets"], 16);
        assert_eq!((j["rejected"]["oui"].as_u64(), j["rx_packets"].as_u64()), (Some(7), Some(23)));
        assert_eq!(j["kernel"]["rejected"]["oui"], 3);
        assert_eq!((j["dwell_ns"]["p50"].as_u64(), j["dwell_ns"]["count"].as_u64()), (Some(4095), Some(4)));
        assert_eq!(j["workers"][1]["reflected_packets"], 8);
        assert_eq!(j["workers"][0]["placement"], "cpu 0");
    }
}
