//! The HTTP server: a REST API under `/api/v1/` (docs/openapi.yaml) and Prometheus metrics at
//! `/metrics` (OpenMetrics text). It reads only the control plane's view, so it cannot stall
//! a worker.
//!
//! Access: it binds to loopback unless told otherwise; any other address needs a token
//! (`Authorization: Bearer TOKEN`, compared in constant time), which then guards every
//! endpoint, or an explicit `--http-insecure`. Counter reset, the one mutating endpoint, needs
//! the token whenever one is set, and without one is allowed on loopback only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use reflector_core::{Counters, Reject, Signature};
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::UsageError;
use crate::control::Control;

/// The web dashboard (web/dashboard.html), built into the binary.
const DASHBOARD: &str = include_str!("../../../web/dashboard.html");

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address and port.
    pub addr: SocketAddr,
    /// Bearer token.
    pub token: Option<String>,
    /// Serve a non-loopback address without a token.
    pub insecure: bool,
}

impl HttpConfig {
    /// Refuses a non-loopback address without a token or `insecure`.
    pub fn check(&self) -> Result<(), UsageError> {
        if !self.addr.ip().is_loopback() && self.token.is_none() && !self.insecure {
            return Err(UsageError(format!(
                "--http {} is not a loopback address: set --http-token TOKEN (or, knowingly, --http-insecure)",
                self.addr
            )));
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(UsageError("--http-token must not be empty".into()));
        }
        // A token travels in an Authorization header, whose value is visible ASCII; one with a
        // space or a control character could never be matched.
        if self.token.as_deref().is_some_and(|t| !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(UsageError(
                "--http-token must be printable ASCII without spaces or control characters".into(),
            ));
        }
        Ok(())
    }
}

/// Equal without an early exit, so the time taken does not say how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn json_response(status: u16, body: &Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", "application/json").expect("valid header"))
}

fn status_json(ctl: &Control) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "backend": ctl.backend,
        "interface": ctl.interface,
        "mac": ctl.mac.to_string(),
        "uptime_s": (ctl.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "workers": ctl.workers.len(),
        "zero_copy": ctl.zero_copy,
        "details": ctl.details,
    })
}

fn stats_json(ctl: &Control) -> Value {
    let totals = ctl.totals();
    let rates = *ctl.rates.lock().expect("rates lock");
    let mut m = crate::report::counters_json(&totals);
    m.insert("backend".into(), json!(ctl.backend));
    m.insert("interface".into(), json!(ctl.interface));
    m.insert("rx_pps".into(), json!(rates.rx_pps.round()));
    m.insert("rx_mbps".into(), json!((rates.rx_mbps * 1000.0).round() / 1000.0));
    m.insert("pps".into(), json!(rates.pps.round()));
    m.insert("mbps".into(), json!((rates.mbps * 1000.0).round() / 1000.0));
    if let Some(d) = ctl.dwell() {
        m.insert("dwell_ns".into(), crate::stats::dwell_json(&d));
    }
    Value::Object(m)
}

fn workers_json(ctl: &Control) -> Value {
    let list: Vec<Value> = ctl
        .per_worker()
        .iter()
        .zip(&ctl.workers)
        .enumerate()
        .map(|(i, (c, (_, placement)))| {
            let mut m = crate::report::counters_json(c);
            m.insert("worker".into(), json!(i));
            m.insert("placement".into(), json!(placement));
            Value::Object(m)
        })
        .collect();
    Value::Array(list)
}

fn config_json(ctl: &Control) -> Value {
    let f = &ctl.filter.get();
    json!({
        "interface": ctl.interface,
        "backend": ctl.backend,
        "local_mac": f.local_mac().to_string(),
        "mode": f.mode().name(),
        "port": f.port(),
        "signatures": f.families().iter().map(|x| x.name()).collect::<Vec<_>>(),
        "oui": f.oui().filter(|_| !f.oui_families().is_empty()).map(|o| format!("{:02x}:{:02x}:{:02x}", o[0], o[1], o[2])),
        "oui_scope": f.oui_families().iter().map(|x| x.name()).collect::<Vec<_>>(),
        "custom_signatures": f.custom_signatures().iter().map(|s| json!({"offset": s.offset(), "hex": s.bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()})).collect::<Vec<_>>(),
    })
}

/// The metrics in OpenMetrics text format.
pub fn metrics(ctl: &Control) -> String {
    use std::fmt::Write;
    let c: Counters = ctl.totals();
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# TYPE reflector_{name} counter\n# HELP reflector_{name} {help}");
        for (labels, v) in samples {
            let _ = writeln!(out, "reflector_{name}_total{labels} {v}");
        }
    };
    counter("rx_packets", "Frames judged.", &[(String::new(), c.rx_packets)]);
    counter("rx_bytes", "Bytes of frames judged by the workers.", &[(String::new(), c.rx_bytes)]);
    counter("reflected_packets", "Test packets reflected.", &[(String::new(), c.reflected_packets)]);
    counter("reflected_bytes", "Bytes of test packets reflected.", &[(String::new(), c.reflected_bytes)]);
    counter("tx_errors", "Reflections that could not be sent.", &[(String::new(), c.tx_errors)]);
    counter(
        "rx_dropped",
        "Frames the kernel dropped before a worker saw them.",
        &[(String::new(), c.rx_dropped)],
    );
    counter("rx_invalid", "Records a backend could not take apart.", &[(String::new(), c.rx_invalid)]);
    let sigs: Vec<(String, u64)> = Signature::ALL
        .iter()
        .map(|s| (format!("{{signature=\"{}\"}}", s.name()), c.by_signature[*s as usize]))
        .collect();
    counter("signature_packets", "Test packets reflected, per signature.", &sigs);
    let reasons: Vec<(String, u64)> = Reject::ALL
        .iter()
        .map(|r| (format!("{{reason=\"{}\"}}", r.name()), c.rejected[*r as usize]))
        .collect();
    counter("rejected_packets", "Frames rejected, per reason.", &reasons);
    let workers: Vec<(String, u64)> = ctl
        .per_worker()
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("{{worker=\"{i}\"}}"), w.reflected_packets))
        .collect();
    counter("worker_reflected_packets", "Test packets reflected, per worker.", &workers);
    let rates = *ctl.rates.lock().expect("rates lock");
    let _ = writeln!(
        out,
        "# TYPE reflector_reflected_pps gauge\n# HELP reflector_reflected_pps Reflections per second over the last statistics interval.\nreflector_reflected_pps {}",
        rates.pps
    );
    let _ = writeln!(
        out,
        "# TYPE reflector_running info\n# HELP reflector_running The running reflector.\nreflector_running_info{{backend=\"{}\",interface=\"{}\",version=\"{}\"}} 1",
        ctl.backend,
        ctl.interface.replace('"', ""),
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("# EOF\n");
    out
}

fn handle(req: Request, ctl: &Control, config: &HttpConfig) {
    let authorized = config.token.as_deref().map(|token| {
        req.headers().iter().any(|h| {
            h.field.equiv("Authorization")
                && h.value
                    .as_str()
                    .strip_prefix("Bearer ")
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        })
    });
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let loopback = config.addr.ip().is_loopback();
    // With a token on a non-loopback address, everything needs it.
    if authorized == Some(false) && !loopback {
        let _ = req.respond(json_response(401, &json!({"error": "missing or wrong bearer token"})));
        return;
    }
    // The dashboard page holds no data (its script fetches the API with the token), so it is
    // served to anyone who can reach the server.
    if req.method() == &Method::Get && (path == "/" || path == "/index.html") {
        let page = Response::from_string(DASHBOARD).with_header(
            Header::from_bytes("Content-Type", "text/html; charset=utf-8").expect("valid header"),
        );
        let _ = req.respond(page);
        return;
    }
    let response = match (req.method(), path.as_str()) {
        (Method::Get, "/api/v1/status") => json_response(200, &status_json(ctl)),
        (Method::Get, "/api/v1/stats") => json_response(200, &stats_json(ctl)),
        (Method::Get, "/api/v1/workers") => json_response(200, &workers_json(ctl)),
        (Method::Get, "/api/v1/config") => json_response(200, &config_json(ctl)),
        (Method::Post, "/api/v1/counters/reset") => match authorized {
            Some(false) => json_response(401, &json!({"error": "missing or wrong bearer token"})),
            None if !loopback => {
                json_response(403, &json!({"error": "set --http-token to reset counters over the network"}))
            }
            _ => {
                ctl.reset();
                json_response(200, &json!({"reset": true}))
            }
        },
        (Method::Get, "/metrics") => Response::from_string(metrics(ctl)).with_header(
            Header::from_bytes("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                .expect("valid header"),
        ),
        (
            _,
            "/api/v1/status"
            | "/api/v1/stats"
            | "/api/v1/workers"
            | "/api/v1/config"
            | "/api/v1/counters/reset"
            | "/metrics",
        ) => json_response(405, &json!({"error": "method not allowed"})),
        _ => json_response(404, &json!({"error": "not found"})),
    };
    let _ = req.respond(response);
}

/// Serves until `stop` is set. Errors binding are returned before anything starts.
pub fn start(config: HttpConfig, ctl: Arc<Control>, stop: Arc<AtomicBool>) -> anyhow::Result<JoinHandle<()>> {
    config.check()?;
    let server = Server::http(config.addr)
        .map_err(|e| anyhow::anyhow!("cannot serve HTTP on {}: {e}", config.addr))?;
    Ok(std::thread::Builder::new().name("reflector-http".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) {
                handle(req, &ctl, &config);
            }
        }
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn non_loopback_needs_a_token_or_insecure() {
        let c = |addr: &str, token: Option<&str>, insecure| HttpConfig {
            addr: addr.parse().unwrap(),
            token: token.map(Into::into),
            insecure,
        };
        assert!(c("127.0.0.1:9", None, false).check().is_ok());
        assert!(c("[::1]:9", None, false).check().is_ok());
        assert!(c("0.0.0.0:9", None, false).check().unwrap_err().0.contains("--http-token"));
        assert!(c("0.0.0.0:9", Some("t"), false).check().is_ok());
        assert!(c("0.0.0.0:9", None, true).check().is_ok());
        assert!(c("127.0.0.1:9", Some(""), false).check().is_err());
    }
}
