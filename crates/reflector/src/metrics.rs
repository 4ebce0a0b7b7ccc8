//! `/metrics`: what [`Control`] shows, in the two exposition formats Prometheus reads, encoded
//! by `prometheus-client` (the Prometheus project's Rust client). The values live in the
//! workers' published snapshots and the kernel's maps, not in metric objects, so each scrape
//! reads them once into a [`Scrape`], a collector the encoder walks, as exporters do.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use reflector_core::{Counters, Reject, Signature};

use crate::control::Control;

/// The exposition formats `/metrics` speaks, chosen by the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    /// OpenMetrics 1.0 (`application/openmetrics-text`), what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus's text format 0.0.4 (`text/plain`), for anything that does not ask for
    /// OpenMetrics (older scrapers, `promtool check metrics`, curl): counters named with their
    /// `_total`, the info metric as a gauge, no `# EOF`.
    Text,
}

impl MetricsFormat {
    /// OpenMetrics when `accept` names it, else the text format.
    pub fn for_accept(accept: Option<&str>) -> MetricsFormat {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            MetricsFormat::OpenMetrics
        } else {
            MetricsFormat::Text
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            MetricsFormat::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// A sample's labels: names and values (escaped by the encoder).
type Labels = Vec<(&'static str, String)>;

/// What one metric family holds at this scrape.
#[derive(Debug)]
enum Values {
    /// A counter: one sample per label set (the encoder adds `_total`).
    Counter(Vec<(Labels, u64)>),
    /// A gauge without labels.
    Gauge(f64),
    /// A gauge without labels that counts things.
    Count(u64),
    /// An info metric: its labels (the encoder adds `_info`).
    Info(Labels),
}

/// One metric family: its name without the `reflector_` prefix or a type's suffix.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    values: Values,
}

/// The metrics of one scrape, read from the control plane once.
#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let name = format!("reflector_{}", family.name);
            match &family.values {
                Values::Counter(samples) => {
                    let mut metric =
                        encoder.encode_descriptor(&name, family.help, None, MetricType::Counter)?;
                    for (labels, value) in samples {
                        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
                    }
                }
                Values::Gauge(value) => {
                    let metric = encoder.encode_descriptor(&name, family.help, None, MetricType::Gauge)?;
                    ConstGauge::new(*value).encode(metric)?;
                }
                Values::Count(value) => {
                    let metric = encoder.encode_descriptor(&name, family.help, None, MetricType::Gauge)?;
                    ConstGauge::new(*value).encode(metric)?;
                }
                Values::Info(labels) => {
                    let metric = encoder.encode_descriptor(&name, family.help, None, MetricType::Info)?;
                    Info::new(labels.clone()).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

/// The metrics in `format`, with series of their own for the `testers` busiest testers.
pub fn metrics(ctl: &Control, format: MetricsFormat, testers: usize) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape(ctl, testers)));
    let mut out = String::new();
    match format {
        MetricsFormat::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        MetricsFormat::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// Reads what `/metrics` shows from `ctl`.
fn scrape(ctl: &Control, testers: usize) -> Scrape {
    let c: Counters = ctl.totals();
    let mut families = Vec::new();
    let mut counter = |name, help, samples: Vec<(Labels, u64)>| {
        families.push(Family { name, help, values: Values::Counter(samples) });
    };
    let one = |v: u64| vec![(Labels::new(), v)];
    counter("rx_packets", "Frames judged.", one(c.rx_packets));
    counter("rx_bytes", "Bytes of frames judged by the workers.", one(c.rx_bytes));
    counter("reflected_packets", "Test packets reflected.", one(c.reflected_packets));
    counter("reflected_bytes", "Bytes of test packets reflected.", one(c.reflected_bytes));
    counter("tx_errors", "Reflections that could not be sent.", one(c.tx_errors));
    counter("rx_dropped", "Frames the kernel dropped before a worker saw them.", one(c.rx_dropped));
    counter("rx_invalid", "Records a backend could not take apart.", one(c.rx_invalid));
    counter(
        "stamp_sessions_evicted",
        "Live STAMP sessions whose sequence counter a new session took over (table full).",
        one(c.stamp_sessions_evicted),
    );
    counter(
        "stamp_short_answered",
        "STAMP / TWAMP-Light requests shorter than the 41-byte reflector packet answered with it (longer than they came; counted as reflected too).",
        one(c.stamp_short_answered),
    );
    let sigs = Signature::ALL
        .iter()
        .map(|s| (vec![("signature", s.name().to_string())], c.by_signature[*s as usize]))
        .collect();
    counter("signature_packets", "Test packets reflected, per signature.", sigs);
    let reasons = Reject::ALL
        .iter()
        .map(|r| (vec![("reason", r.name().to_string())], c.rejected[*r as usize]))
        .collect();
    counter("rejected_packets", "Frames rejected, per reason.", reasons);
    let workers = ctl
        .worker_rows()
        .iter()
        .enumerate()
        .map(|(i, (_, w))| (vec![("worker", i.to_string())], w.reflected_packets))
        .collect();
    counter("worker_reflected_packets", "Test packets reflected, per worker.", workers);
    let rows = ctl.testers();
    if testers > 0 {
        let top = &rows[..rows.len().min(testers)];
        let per = |value: fn(&crate::report::TesterRow) -> u64| {
            top.iter()
                .map(|r| {
                    (vec![("ip", r.tester.addr().to_string()), ("vlan", r.tester.vlan.to_string())], value(r))
                })
                .collect()
        };
        counter(
            "tester_packets",
            "Test packets answered, per tester (the busiest, as asked).",
            per(|r| r.tester.packets),
        );
        counter(
            "tester_limited_packets",
            "Test packets a rate limit held back, per tester.",
            per(|r| r.tester.limited),
        );
    }
    let overflowed = ctl.limiter.as_ref().map_or(0, |l| l.overflowed());
    counter(
        "limiter_overflow_packets",
        "Test packets of sources that found no rate-limit bucket of their own and shared one.",
        one(overflowed),
    );
    let (captured, not_captured, not_streamed) =
        ctl.tap.as_ref().map_or((0, 0, 0), |t| (t.captured(), t.dropped(), t.stream_dropped()));
    counter("capture_frames", "Frames copied to captures (--capture, /api/v1/capture).", one(captured));
    counter(
        "capture_dropped_frames",
        "Frames a capture wanted but did not get (its writer was behind, or a capture file or FIFO could not take them).",
        one(not_captured),
    );
    counter(
        "capture_stream_dropped_frames",
        "Frames /api/v1/capture streams did not send because their clients read too slowly.",
        one(not_streamed),
    );
    let mut gauge = |name, help, values| families.push(Family { name, help, values });
    gauge(
        "testers_active",
        "Testers whose last packet came within the last 10 s.",
        Values::Count(rows.iter().filter(|r| r.active).count() as u64),
    );
    gauge("testers_known", "Testers the table holds.", Values::Count(rows.len() as u64));
    let pps = ctl.rates.lock().expect("rates lock").pps;
    gauge("reflected_pps", "Reflections per second over the last statistics interval.", Values::Gauge(pps));
    families.push(Family {
        name: "running",
        help: "The running reflector.",
        values: Values::Info(vec![
            ("backend", ctl.info.backend.name().to_string()),
            ("interface", ctl.interface.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ]),
    });
    Scrape(families)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use reflector_core::testers::Tester;
    use reflector_io::worker::FilterCell;

    use super::*;
    use reflector_io::datapath::{Backend, BackendInfo, Choice};

    /// An xdp-tx run whose kernel counted on two CPUs, with two testers.
    fn control() -> Control {
        let cpu = |reflected: u64| {
            let mut c =
                Counters { rx_packets: reflected + 3, reflected_packets: reflected, ..Counters::default() };
            c.rejected[Reject::Oui as usize] = 3;
            c.by_signature[Signature::ALL[0] as usize] = reflected;
            c
        };
        let filter = FilterCell::new(Arc::new(reflector_testkit::default_filter()));
        let mut ctl = Control::new(
            BackendInfo::new(Backend::XdpTx, Choice::Asked),
            "eth\"0".into(),
            reflector_testkit::LOCAL_MAC,
            filter,
            Vec::new(),
            Some(Arc::new(move || Some(vec![cpu(40), cpu(2)]))),
        );
        let now = reflector_io::worker::utc_now_ns();
        let tester = move |last: u8, packets| Tester {
            ip: std::net::Ipv4Addr::new(192, 0, 2, last).to_ipv6_mapped().octets(),
            vlan: 7,
            packets,
            limited: 1,
            first_seen_ns: now - 1_000_000_000,
            last_seen_ns: now,
            ..Tester::default()
        };
        ctl.kernel_testers = Some(Arc::new(move || Some(vec![tester(9, 30), tester(10, 12)])));
        ctl
    }

    /// The lines of `text` that are samples.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn both_formats_hold_the_same_samples_under_the_names_of_each() {
        let ctl = control();
        let open = metrics(&ctl, MetricsFormat::OpenMetrics, 5).unwrap();
        let text = metrics(&ctl, MetricsFormat::Text, 5).unwrap();
        assert_eq!(samples(&open), samples(&text));
        for line in [
            "reflector_rx_packets_total 48",
            "reflector_reflected_packets_total 42",
            "reflector_signature_packets_total{signature=\"probeot\"} 42",
            "reflector_rejected_packets_total{reason=\"oui\"} 6",
            "reflector_worker_reflected_packets_total{worker=\"0\"} 40",
            "reflector_worker_reflected_packets_total{worker=\"1\"} 2",
            "reflector_tester_packets_total{ip=\"192.0.2.9\",vlan=\"7\"} 30",
            "reflector_tester_limited_packets_total{ip=\"192.0.2.10\",vlan=\"7\"} 1",
            "reflector_testers_active 2",
            "reflector_testers_known 2",
            "reflector_reflected_pps 0.0",
            // A label value is escaped, whatever the interface is called.
            "reflector_running_info{backend=\"xdp-tx\",interface=\"eth\\\"0\",version=\"0.1.0\"} 1",
        ] {
            assert!(samples(&open).contains(&line), "{line}\n{open}");
        }
        let per_reason = Reject::ALL.len();
        let per_signature = Signature::ALL.len();
        // 9 plain counters, the signatures, the reasons, 2 workers, 2 testers twice, 4 more
        // counters, 3 gauges, the info.
        assert_eq!(samples(&open).len(), 9 + per_signature + per_reason + 2 + 4 + 4 + 3 + 1, "{open}");

        // OpenMetrics names a counter family without `_total` and ends with `# EOF`; the text
        // format names it with `_total`, has the info metric as a gauge, and no `# EOF`.
        assert!(open.contains("\n# TYPE reflector_rejected_packets counter\n"), "{open}");
        assert!(open.contains("\n# TYPE reflector_running info\n") && open.ends_with("\n# EOF\n"), "{open}");
        assert!(text.contains("\n# TYPE reflector_rejected_packets_total counter\n"), "{text}");
        assert!(
            text.contains("\n# TYPE reflector_running_info gauge\n") && !text.contains("# EOF"),
            "{text}"
        );
        assert!(text.contains("\n# HELP reflector_testers_known Testers the table holds.\n"), "{text}");

        // Tester series only when asked for, and at most as many as asked for.
        let none = metrics(&ctl, MetricsFormat::OpenMetrics, 0).unwrap();
        assert!(!none.contains("reflector_tester_packets"), "{none}");
        let one = metrics(&ctl, MetricsFormat::OpenMetrics, 1).unwrap();
        assert_eq!(samples(&one).iter().filter(|l| l.starts_with("reflector_tester_packets")).count(), 1);
    }

    #[test]
    fn the_format_follows_accept() {
        let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(MetricsFormat::for_accept(Some(prometheus)), MetricsFormat::OpenMetrics);
        assert_eq!(MetricsFormat::for_accept(Some("*/*")), MetricsFormat::Text);
        assert_eq!(MetricsFormat::for_accept(None), MetricsFormat::Text);
        assert_eq!(MetricsFormat::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    }
}
