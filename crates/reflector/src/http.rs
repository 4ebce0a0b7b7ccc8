//! The HTTP server: a REST API under `/api/v1/` (docs/openapi.yaml), Prometheus metrics at
//! `/metrics` (OpenMetrics or Prometheus text, [`crate::metrics`]) and the dashboard page at
//! `/`. It reads only the control plane's view, so it cannot stall a worker.
//!
//! hyper (HTTP/1.1), over TLS (rustls) when there is a certificate, on a single-threaded tokio
//! runtime in a thread of its own. Every connection
//! is a task of its own, so a slow or stuck client holds its connection and nothing else. What
//! one client may cost is bounded before any request is looked at: the request line and
//! headers ([`MAX_HEAD`]), the time to send them ([`HEADER_TIMEOUT`]), the time a connection
//! may go without reading or writing a byte ([`IDLE_TIMEOUT`]), and the number of connections
//! ([`MAX_CONNECTIONS`]; past it a short 503, over TLS on the HTTPS port). Request bodies are
//! never read.
//!
//! Connections that hold places without using them cannot lock anyone out ([`Admission`]): a
//! new connection at the cap takes the place of the oldest one that has not sent a complete
//! request yet, so a client that asks at once is always served; one address holds at most
//! [`MAX_PER_ADDRESS`] places (past that, its own oldest waiting one makes room); with a token set, the last
//! [`KEPT_FOR_TOKEN`] places are kept for requests that carry it (a connection past that whose
//! request does not is closed after its answer).
//!
//! Access (docs/USAGE.md's table says the same):
//! - `GET /` (the dashboard page, which holds no data) is served to anyone who can connect.
//! - With a token (`Authorization: Bearer TOKEN`, compared in constant time): on a non-loopback
//!   address every other request needs it; on loopback the reads are open and the reset needs it.
//! - Without a token, on loopback: reads are open; the reset needs a same-origin proof (no
//!   `Origin` from another site, no cross-site `Sec-Fetch-Site`), so a web page cannot reset it.
//! - Without a token, elsewhere (`--http-insecure`): reads are open, the reset is refused.
//! - On a loopback address, a `Host` other than a loopback address or `localhost` is refused
//!   (DNS rebinding).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::body::ChannelBody;
use crate::control::Control;
use crate::input::UsageError;

/// Connections served at once; one more takes the place of one that has not sent a complete
/// request yet, or gets a 503 and is closed.
const MAX_CONNECTIONS: usize = 64;
/// Places kept for requests with the token, when one is set: a connection beyond
/// `MAX_CONNECTIONS - KEPT_FOR_TOKEN` whose request lacks it is closed after the answer.
const KEPT_FOR_TOKEN: usize = 16;
/// Places one client address may hold; past it a new connection from there takes the place of
/// that address's oldest one that has not asked yet, or gets a 503.
const MAX_PER_ADDRESS: usize = 32;
/// `/api/v1/events` subscribers at once; one more gets a 503.
const MAX_SUBSCRIBERS: usize = 16;
/// Bytes of request line and headers a connection may send before its request is answered
/// (hyper's read buffer; past it, 431 and the connection is closed).
const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send a request's line and headers (and, on HTTPS, to finish the TLS
/// handshake first).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may go without a byte read or written (an idle keep-alive connection, or
/// a client that sends requests and never reads the answers).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address and port.
    pub addr: SocketAddr,
    /// Bearer token.
    pub token: Option<String>,
    /// Serve a non-loopback address without a token.
    pub insecure: bool,
    /// HTTPS with this certificate (PEM, the server's first, then its chain) and key (PEM).
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key.
    pub tls_key: Option<std::path::PathBuf>,
}

impl HttpConfig {
    /// Refuses a non-loopback address without a token or `insecure`, and a token that no
    /// header could carry.
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
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(UsageError(
                "--http-tls-cert and --http-tls-key go together: give both or neither".into(),
            ));
        }
        Ok(())
    }

    /// Whether the server speaks HTTPS: with a certificate given, or, on a non-loopback address
    /// with a token, with one generated at start (so the token never crosses the network in
    /// clear).
    fn tls_wanted(&self) -> bool {
        self.tls_cert.is_some() || (!self.addr.ip().is_loopback() && self.token.is_some())
    }

    /// The TLS set-up: the given certificate and key, or a self-signed certificate for the bound
    /// address and `localhost`, made now; with the certificate's SHA-256 fingerprint and whether
    /// it was generated.
    pub(crate) fn tls(&self) -> anyhow::Result<Option<(tokio_rustls::TlsAcceptor, String, bool)>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        if !self.tls_wanted() {
            return Ok(None);
        }
        let (certs, key, generated) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                use crate::input::{UsageError, read_config_file};
                // Read capped, and only from regular files (a usage error, exit code 2).
                let (cert_pem, key_pem) =
                    (read_config_file(cert, "the TLS certificate")?, read_config_file(key, "the TLS key")?);
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>().map_err(|e| {
                        UsageError(format!("cannot read the TLS certificate {}: {e}", cert.display()))
                    })?;
                if certs.is_empty() {
                    return Err(UsageError(format!(
                        "cannot read the TLS certificate {}: no certificate in it",
                        cert.display()
                    ))
                    .into());
                }
                let key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| UsageError(format!("cannot read the TLS key {}: {e}", key.display())))?;
                (certs, key, false)
            }
            _ => {
                let names = vec![self.addr.ip().to_string(), "localhost".to_string()];
                let made = rcgen::generate_simple_self_signed(names)
                    .map_err(|e| anyhow::anyhow!("cannot make a self-signed certificate: {e}"))?;
                let key = PrivateKeyDer::try_from(made.key_pair.serialize_der())
                    .map_err(|e| anyhow::anyhow!("cannot use the generated key: {e}"))?;
                (vec![made.cert.der().clone()], key, true)
            }
        };
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, &certs[0])
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
                .map_err(|e| anyhow::anyhow!("cannot serve HTTPS with that certificate and key: {e}"))?;
        Ok(Some((tokio_rustls::TlsAcceptor::from(Arc::new(config)), fingerprint, generated)))
    }
}

/// The web dashboard (web/dashboard.html), built into the binary.
const DASHBOARD: &str = include_str!("../../../web/dashboard.html");

/// Equal without an early exit, so the time taken does not say how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// A whole answer, or one streamed as it is made (`/api/v1/capture`).
type Body = Either<Full<Bytes>, ChannelBody>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    respond(status, "application/json", body.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

fn status_json(ctl: &Control) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "backend": ctl.info.backend.name(),
        "interface": ctl.interface,
        "mac": ctl.mac.to_string(),
        "uptime_s": (ctl.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "workers": ctl.workers.len(),
        "zero_copy": ctl.info.zero_copy(),
        "details": ctl.info.details(),
        "backend_info": ctl.info,
    })
}

/// `/api/v1/events`: a snapshot (`event: stats`, its data the JSON of `/api/v1/stats` with
/// the 20 busiest testers under `testers`) once at once, then each stats interval; a comment
/// line every 15 s when no interval ends in that time, so the connection never goes idle.
fn events(ctl: &Control) -> Response<Body> {
    use tokio::sync::broadcast::error::RecvError;
    // Each subscriber holds a receiver until its client goes away, or stops reading long
    // enough for its connection to go idle (`IDLE_TIMEOUT` once the socket's buffers are full).
    if ctl.events.receiver_count() >= MAX_SUBSCRIBERS {
        let why = format!("{MAX_SUBSCRIBERS} clients follow the events already; try again later");
        return error(StatusCode::SERVICE_UNAVAILABLE, &why);
    }
    let mut snapshots = ctl.events.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let first = snapshot_event(ctl);
    tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                got = snapshots.recv() => match got {
                    Ok(event) => event,
                    // A client slower than the interval misses snapshots, never gets old ones.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
                () = tokio::time::sleep(EVENTS_KEEP_ALIVE) => Bytes::from_static(b": keep-alive\n\n"),
                () = tx.closed() => return,
            };
            if tx.send(next).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Either::Right(ChannelBody::new(rx)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// How often `/api/v1/events` sends something while no snapshot comes.
const EVENTS_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A snapshot as a server-sent event.
fn snapshot_event(ctl: &Control) -> Bytes {
    let mut stats = stats_json(ctl);
    stats["testers"] = crate::report::testers_json(&ctl.testers(), 20);
    stats["sample"] = ctl.history.lock().expect("history lock").latest_json();
    Bytes::from(format!("event: stats\ndata: {stats}\n\n"))
}

/// Sends the run's snapshot to the `/api/v1/events` clients (called by the control loop each
/// stats interval; nothing is built while no one listens).
pub fn publish_snapshot(ctl: &Control) {
    if ctl.events.receiver_count() > 0 {
        let _ = ctl.events.send(snapshot_event(ctl));
    }
}

fn stats_json(ctl: &Control) -> Value {
    let totals = ctl.totals();
    let rates = *ctl.rates.lock().expect("rates lock");
    let mut m = crate::report::counters_json(&totals);
    m.insert("backend".into(), json!(ctl.info.backend.name()));
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
        .worker_rows()
        .iter()
        .enumerate()
        .map(|(i, (placement, c))| {
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
        "backend": ctl.info.backend.name(),
        "local_mac": f.local_mac().to_string(),
        "mode": f.mode().name(),
        "port": f.port(),
        "signatures": f.families().iter().map(|x| x.name()).collect::<Vec<_>>(),
        "oui": f.oui().filter(|_| !f.oui_families().is_empty()).map(|o| format!("{:02x}:{:02x}:{:02x}", o[0], o[1], o[2])),
        "oui_scope": f.oui_families().iter().map(|x| x.name()).collect::<Vec<_>>(),
        "custom_signatures": f.custom_signatures().iter().map(|s| json!({"offset": s.offset(), "hex": s.bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()})).collect::<Vec<_>>(),
        "settings": ctl.settings(),
    })
}

/// What a request is allowed, by its token and where it comes from.
struct Access<'a> {
    config: &'a HttpConfig,
    /// `Some(true)` with the right token, `Some(false)` with none or a wrong one, `None` when
    /// no token is set.
    authorized: Option<bool>,
    loopback: bool,
}

impl<'a> Access<'a> {
    fn of(req: &Request<Incoming>, config: &'a HttpConfig) -> Self {
        let authorized = config.token.as_deref().map(|token| {
            req.headers().get_all(header::AUTHORIZATION).iter().any(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
            })
        });
        Access { config, authorized, loopback: config.addr.ip().is_loopback() }
    }

    /// The reads: open, except with a token on a non-loopback address.
    fn may_read(&self) -> bool {
        self.authorized != Some(false) || self.loopback
    }

    /// The counter reset: the token when one is set; else loopback and the same origin.
    fn may_reset(&self, req: &Request<Incoming>) -> Result<(), (StatusCode, &'static str)> {
        match self.authorized {
            Some(true) => Ok(()),
            Some(false) => Err((StatusCode::UNAUTHORIZED, "missing or wrong bearer token")),
            None if !self.loopback => {
                Err((StatusCode::FORBIDDEN, "set --http-token to reset counters over the network"))
            }
            None if !same_origin(req, self.config) => Err((
                StatusCode::FORBIDDEN,
                "cross-origin request refused (set --http-token to reset from other origins)",
            )),
            None => Ok(()),
        }
    }
}

/// A request that a browser sent on behalf of a page of ours, or that no browser sent at all
/// (curl has no `Origin` and no `Sec-Fetch-Site`). Browsers send `Origin` with every POST and
/// `Sec-Fetch-Site` with every request, so a page elsewhere cannot pass for us.
fn same_origin(req: &Request<Incoming>, config: &HttpConfig) -> bool {
    let value = |name| req.headers().get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(site) = value(header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match value(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = value(header::HOST).unwrap_or_default();
            origin.strip_prefix("http://").is_some_and(|o| o == host && host_is_ours(host, config))
        }
    }
}

/// On a loopback bind, the `Host` a request names must be a loopback address or `localhost`:
/// a page of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends
/// its own name. Elsewhere, any (the token guards those binds). A request without `Host`
/// (HTTP/1.0) came from no browser.
fn host_is_ours(host: &str, config: &HttpConfig) -> bool {
    if !config.addr.ip().is_loopback() {
        return true;
    }
    // Strip a port: "[::1]:9180", "127.0.0.1:9180", "localhost:9180", "localhost".
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host
            .rsplit_once(':')
            .map_or(host, |(n, port)| if port.bytes().all(|b| b.is_ascii_digit()) { n } else { host }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn handle(req: &Request<Incoming>, ctl: &Control, config: &HttpConfig) -> Response<Body> {
    if let Some(host) = req.headers().get(header::HOST)
        && !host.to_str().is_ok_and(|h| host_is_ours(h, config))
    {
        return error(StatusCode::FORBIDDEN, "this server answers to a loopback address or localhost only");
    }
    let access = Access::of(req, config);
    // HEAD is GET without the body (hyper leaves the body out).
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path();
    // The dashboard page holds no data (its script fetches the API with the token from the
    // URL's fragment), so it is served to anyone who can reach the server.
    if read && (path == "/" || path == "/index.html") {
        return respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD);
    }
    let route = match path {
        "/api/v1/status" => Route::Status,
        "/api/v1/stats" => Route::Stats,
        "/api/v1/workers" => Route::Workers,
        "/api/v1/config" => Route::Config,
        "/api/v1/testers" => Route::Testers,
        "/api/v1/history" => Route::History,
        "/api/v1/capture" => Route::Capture,
        "/api/v1/events" => Route::Events,
        "/api/v1/counters/reset" => Route::Reset,
        "/metrics" => Route::Metrics,
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    if !access.may_read() {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let not_allowed = |methods| allow(error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"), methods);
    match route {
        Route::Reset if req.method() == Method::POST => match access.may_reset(req) {
            Ok(()) => {
                ctl.reset();
                json_response(StatusCode::OK, &json!({"reset": true}))
            }
            Err((status, why)) => error(status, why),
        },
        Route::Reset => not_allowed("POST"),
        _ if !read => not_allowed("GET, HEAD"),
        Route::Status => json_response(StatusCode::OK, &status_json(ctl)),
        Route::Stats => json_response(StatusCode::OK, &stats_json(ctl)),
        Route::Workers => json_response(StatusCode::OK, &workers_json(ctl)),
        Route::Config => json_response(StatusCode::OK, &config_json(ctl)),
        Route::Testers => match query_number(req, "limit", 0, 1000) {
            Ok(limit) => json_response(
                StatusCode::OK,
                &crate::report::testers_json(&ctl.testers(), limit.unwrap_or(20)),
            ),
            Err(why) => error(StatusCode::BAD_REQUEST, &why),
        },
        Route::History => {
            let most = crate::history::HISTORY_SECONDS;
            match query_number(req, "seconds", 1, most) {
                Err(why) => error(StatusCode::BAD_REQUEST, &why),
                Ok(seconds) => json_response(
                    StatusCode::OK,
                    &ctl.history.lock().expect("history lock").json(seconds.unwrap_or(most)),
                ),
            }
        }
        Route::Capture => capture(req, ctl, &access),
        Route::Events => events(ctl),
        Route::Metrics => match query_number(req, "testers", 0, MAX_TESTER_SERIES) {
            Ok(testers) => {
                let accept = req.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok());
                let format = crate::metrics::MetricsFormat::for_accept(accept);
                match crate::metrics::metrics(ctl, format, testers.unwrap_or(0)) {
                    Ok(text) => respond(StatusCode::OK, format.content_type(), text),
                    Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded"),
                }
            }
            Err(why) => error(StatusCode::BAD_REQUEST, &why),
        },
    }
}

/// `/api/v1/capture?seconds=N&what=W`: the frames the workers judge for the next N seconds
/// (default 10, at most [`crate::capture::MAX_STREAM_SECONDS`]), as a pcapng stream; or
/// `last=N`: those of the last N seconds, at once, from the frames the run keeps
/// (`--capture-keep-mb`). Packets are what a token guards most: with a token set, it needs the
/// token even on loopback; on `--http-insecure` it is refused.
fn capture(req: &Request<Incoming>, ctl: &Control, access: &Access<'_>) -> Response<Body> {
    match access.authorized {
        Some(false) => return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
        None if !access.loopback => {
            return error(StatusCode::FORBIDDEN, "set --http-token to capture over the network");
        }
        _ => {}
    }
    let (mut seconds, mut last, mut what) = (None, None, reflector_io::tap::What::ALL);
    let max = crate::capture::MAX_STREAM_SECONDS;
    for pair in req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "seconds" => &mut seconds,
            "last" => &mut last,
            "what" => match value.parse() {
                Ok(w) => {
                    what = w;
                    continue;
                }
                Err(why) => return error(StatusCode::BAD_REQUEST, &format!("what: {why}")),
            },
            _ => {
                let why = format!("unknown query parameter '{key}' (expected seconds, last, what)");
                return error(StatusCode::BAD_REQUEST, &why);
            }
        };
        match value.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => *slot = Some(n),
            _ => return error(StatusCode::BAD_REQUEST, &format!("{key} must be a number from 1 to {max}")),
        }
    }
    let Some(tap) = &ctl.tap else {
        return error(StatusCode::CONFLICT, "this run cannot capture (its XDP program takes no samples)");
    };
    let now = reflector_io::worker::utc_now_ns();
    let mut r = match (seconds, last) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give seconds (the next N) or last (the last N), not both",
            );
        }
        (_, Some(last)) => {
            let Some(recent) = &ctl.recent else {
                let why = "this run keeps no recent frames (start it with --capture-keep-mb MB)";
                return error(StatusCode::CONFLICT, why);
            };
            let Some(snapshot) = recent.snapshot(now.saturating_sub(last * 1_000_000_000)) else {
                let why = format!(
                    "{} reads of the last seconds are under way; try again when one is done",
                    reflector_io::tap::MAX_RECENT_READERS
                );
                return error(StatusCode::SERVICE_UNAVAILABLE, &why);
            };
            // Sent chunk by chunk from the kept frames (shared, not copied whole), within a
            // time limit, so a client that does not read holds a reader's place for that long
            // at most.
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            let header = Bytes::from(reflector_io::pcapng::header(&ctl.interface));
            tokio::spawn(tokio::time::timeout(LAST_SEND_LIMIT, async move {
                if tx.send(header).await.is_err() {
                    return;
                }
                for (blocks, _) in snapshot.pieces(what) {
                    if tx.send(Bytes::from(blocks)).await.is_err() {
                        return;
                    }
                }
            }));
            Response::new(Either::Right(ChannelBody::new(rx)))
        }
        (seconds, None) => match crate::capture::StreamSink::start(tap, what, seconds.unwrap_or(10)) {
            Some(body) => Response::new(Either::Right(body)),
            None => {
                let why = "capture streams hold all the memory they may for clients that read slowly; try again later";
                return error(StatusCode::SERVICE_UNAVAILABLE, why);
            }
        },
    };
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pcapng"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let name = format!("attachment; filename=\"reflector-{}-{}.pcapng\"", ctl.interface, file_stamp(now));
    if let Ok(v) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// The longest `/api/v1/capture?last=N` may take to send (its snapshot of the kept frames is
/// held that long at most).
const LAST_SEND_LIMIT: Duration = Duration::from_secs(60);

/// `YYYYMMDDTHHMMSSZ` for a time in ns since the Unix epoch (UTC), for file names.
fn file_stamp(ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ns / 1_000_000_000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Most testers `/metrics?testers=N` gives series of their own (bounded cardinality).
pub const MAX_TESTER_SERIES: usize = 100;

/// The query parameter `name` as a number from 0 to `max`: `None` when absent, an error
/// (for a 400) when not such a number or when another parameter is given.
fn query_number(
    req: &Request<Incoming>,
    name: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, String> {
    let mut found = None;
    for pair in req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != name {
            return Err(format!("unknown query parameter '{key}' (expected {name})"));
        }
        match value.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => found = Some(n),
            _ => return Err(format!("{name} must be a number from {min} to {max}")),
        }
    }
    Ok(found)
}

/// The endpoints besides the dashboard page.
enum Route {
    Status,
    Stats,
    Workers,
    Config,
    Testers,
    History,
    Capture,
    Events,
    Reset,
    Metrics,
}

fn allow(mut r: Response<Body>, methods: &'static str) -> Response<Body> {
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(methods));
    r
}

/// The HTTP side bound to its address, not serving yet: bound while the run still holds the
/// privilege a port below 1024 needs, started once the control plane exists.
pub struct Bound {
    config: HttpConfig,
    listener: std::net::TcpListener,
    runtime: tokio::runtime::Runtime,
    /// The TLS side, when the server speaks HTTPS; the certificate's fingerprint, and whether it
    /// was generated.
    tls: Option<(tokio_rustls::TlsAcceptor, String, bool)>,
}

/// Binds `config.addr` (errors are returned before anything starts).
pub fn bind(config: HttpConfig) -> anyhow::Result<Bound> {
    config.check()?;
    let listener = std::net::TcpListener::bind(config.addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && config.addr.port() < 1024 {
                " (a port below 1024 needs CAP_NET_BIND_SERVICE, or root)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot serve HTTP on {}: {e}{hint}", config.addr)
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the HTTP runtime: {e}"))?;
    let tls = config.tls()?;
    Ok(Bound { config, listener, runtime, tls })
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound").field("config", &self.config).field("served", &self.describe()).finish()
    }
}

impl Bound {
    /// Where it serves, for the start line: `http://ADDR`, or `https://ADDR` with the
    /// certificate's SHA-256 fingerprint (and that it was generated, when it was).
    pub fn describe(&self) -> String {
        match &self.tls {
            None => format!("http://{}", self.config.addr),
            Some((_, fingerprint, generated)) => format!(
                "https://{} (certificate SHA-256 {fingerprint}{})",
                self.config.addr,
                if *generated { ", self-signed, generated at start" } else { "" }
            ),
        }
    }

    /// Serves from a thread of its own until `stop` is set.
    pub fn start(self, ctl: Arc<Control>, stop: Arc<AtomicBool>) -> anyhow::Result<JoinHandle<()>> {
        let Bound { config, listener, runtime, tls } = self;
        let tls = tls.map(|(acceptor, _, _)| acceptor);
        Ok(std::thread::Builder::new().name("reflector-http".into()).spawn(move || {
            runtime.block_on(serve(listener, Arc::new(config), ctl, stop, tls));
        })?)
    }
}

/// The accept loop: each connection a task, at most [`MAX_CONNECTIONS`] of them
/// ([`Admission`]).
async fn serve(
    listener: std::net::TcpListener,
    config: Arc<HttpConfig>,
    ctl: Arc<Control>,
    stop: Arc<AtomicBool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            return tracing::error!("reflector: HTTP stopped: {e}");
        }
    };
    let admission = Arc::new(Admission::default());
    let refusing = Arc::new(AtomicUsize::new(0));
    let mut check_stop = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = check_stop.tick() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match admission.admit(peer.ip()) {
                    Some((place, evicted)) => {
                        let (config, ctl, tls) = (config.clone(), ctl.clone(), tls.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                () = connection(stream, config, ctl, tls, &place) => {}
                                // Its place was given to a newer connection before it asked.
                                _ = evicted => {}
                            }
                        });
                        // The new connection reads its request before the next is accepted (a
                        // burst of accepts would otherwise run first, and under a flood of
                        // connections could take its place before it asked).
                        tokio::task::yield_now().await;
                    }
                    // At most a few refusals at a time (each may wait for a TLS handshake);
                    // past that the connection is just closed.
                    None if refusing.load(Ordering::Relaxed) < 16 => {
                        let place = Counted::take(&refusing);
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let _place = place;
                            refuse(stream, tls).await;
                        });
                    }
                    None => drop(stream),
                },
                // Out of file descriptors (EMFILE, ENFILE) or memory: the connection waits in
                // the backlog. Try again shortly, when connections have closed, instead of
                // spinning on the error or giving up.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Who holds the server's [`MAX_CONNECTIONS`] places: how many are taken, and the connections
/// that have not sent a complete request yet, oldest first, each with the way to end it.
#[derive(Default)]
struct Admission {
    open: AtomicUsize,
    /// Connections waiting for their first request (entries of connections that asked or
    /// ended since are skipped when met, and cleared when the queue grows long).
    waiting: std::sync::Mutex<std::collections::VecDeque<std::sync::Weak<Place>>>,
    /// Places held per client address.
    per_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// A connection's place: given back when it ends, unless a newer connection took it over.
struct Place {
    admission: Arc<Admission>,
    /// The client's address.
    peer: std::net::IpAddr,
    /// It has sent a complete request (it can no longer be evicted).
    asked: AtomicBool,
    /// Its place went to a newer connection (it must not give it back again).
    taken_over: AtomicBool,
    evict: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Admission {
    /// A place for a new connection from `peer`, and what fires when it is taken over: a free
    /// one, else that of the oldest connection still waiting for its first request (from
    /// `peer` itself when that address holds [`MAX_PER_ADDRESS`] places); `None` when there is
    /// no such connection. (Called by the accept loop alone.)
    fn admit(
        self: &Arc<Self>,
        peer: std::net::IpAddr,
    ) -> Option<(Arc<Place>, tokio::sync::oneshot::Receiver<()>)> {
        let mut waiting = self.waiting.lock().expect("admission lock");
        let held = self.per_address.lock().expect("admission lock").get(&peer).copied().unwrap_or(0);
        let full = self.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS;
        if full || held >= MAX_PER_ADDRESS {
            let evictable =
                |p: &Place| !p.asked.load(Ordering::Relaxed) && (held < MAX_PER_ADDRESS || p.peer == peer);
            let at = waiting.iter().position(|w| w.upgrade().is_some_and(|p| evictable(&p)))?;
            let oldest = waiting.remove(at).and_then(|w| w.upgrade())?;
            // Its place (and its address's count) goes to the newcomer.
            oldest.taken_over.store(true, Ordering::Relaxed);
            self.release_address(oldest.peer);
            if let Some(evict) = oldest.evict.lock().expect("place lock").take() {
                let _ = evict.send(());
            }
        } else {
            self.open.fetch_add(1, Ordering::Relaxed);
        }
        *self.per_address.lock().expect("admission lock").entry(peer).or_default() += 1;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let place = Arc::new(Place {
            admission: self.clone(),
            peer,
            asked: AtomicBool::new(false),
            taken_over: AtomicBool::new(false),
            evict: std::sync::Mutex::new(Some(tx)),
        });
        if waiting.len() >= 2 * MAX_CONNECTIONS {
            waiting.retain(|p| p.upgrade().is_some_and(|p| !p.asked.load(Ordering::Relaxed)));
        }
        waiting.push_back(Arc::downgrade(&place));
        Some((place, rx))
    }

    /// Places taken.
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// One place fewer held by `peer`.
    fn release_address(&self, peer: std::net::IpAddr) {
        let mut per_address = self.per_address.lock().expect("admission lock");
        if let Some(n) = per_address.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                per_address.remove(&peer);
            }
        }
    }
}

impl Place {
    /// The connection has sent a complete request: its place is its own from now on.
    fn asked(&self) {
        self.asked.store(true, Ordering::Relaxed);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.taken_over.load(Ordering::Relaxed) {
            self.admission.open.fetch_sub(1, Ordering::Relaxed);
            self.admission.release_address(self.peer);
        }
    }
}

/// One of a few counted places (the refusals under way), given back when dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn take(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Past the connection cap: a short 503, then the connection is closed; on the HTTPS port over
/// TLS (a client that does not finish the handshake within a second just sees the close).
async fn refuse(stream: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":"too many connections; try again shortly"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let limit = Duration::from_secs(1);
    match tls {
        None => {
            let mut stream = stream;
            let _ = tokio::time::timeout(limit, stream.write_all(answer.as_bytes())).await;
        }
        Some(acceptor) => {
            let _ = tokio::time::timeout(limit, async {
                let mut stream = acceptor.accept(stream).await?;
                stream.write_all(answer.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
        }
    }
}

/// Serves one connection with the bounds of the module's documentation, over TLS when the
/// server speaks HTTPS (the handshake within [`HEADER_TIMEOUT`]; a client that does not speak
/// TLS, plain HTTP say, fails it and the connection is closed).
async fn connection(
    stream: tokio::net::TcpStream,
    config: Arc<HttpConfig>,
    ctl: Arc<Control>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    place: &Arc<Place>,
) {
    let timed = crate::idle::Idle::new(stream, IDLE_TIMEOUT);
    match tls {
        None => http(hyper_util::rt::TokioIo::new(timed), config, ctl, place.clone()).await,
        Some(acceptor) => {
            if let Ok(Ok(stream)) = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(timed)).await {
                http(hyper_util::rt::TokioIo::new(stream), config, ctl, place.clone()).await;
            }
        }
    }
}

/// HTTP/1.1 over `io` (a TCP stream, or TLS over one), in `place`.
async fn http<I>(io: I, config: Arc<HttpConfig>, ctl: Arc<Control>, place: Arc<Place>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        place.asked();
        let mut answer = handle(&req, &ctl, &config);
        // Past the places open to anyone, a request without the token (when one is set) is
        // answered and its connection closed, so the last places stay for those with it.
        if place.admission.open() > MAX_CONNECTIONS - KEPT_FOR_TOKEN
            && Access::of(&req, &config).authorized == Some(false)
        {
            answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        async move { Ok::<_, Infallible>(answer) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, service)
        .await;
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
            tls_cert: None,
            tls_key: None,
        };
        assert!(c("127.0.0.1:9", None, false).check().is_ok());
        let half = HttpConfig { tls_cert: Some("c.pem".into()), ..c("127.0.0.1:9", None, false) };
        assert_eq!(
            half.check().unwrap_err().0,
            "--http-tls-cert and --http-tls-key go together: give both or neither"
        );
        assert!(!c("127.0.0.1:9", Some("t"), false).tls_wanted(), "loopback stays plain");
        assert!(c("192.0.2.1:9", Some("t"), false).tls_wanted(), "a token elsewhere means HTTPS");
        assert!(!c("192.0.2.1:9", None, true).tls_wanted(), "insecure stays plain");
        assert!(c("[::1]:9", None, false).check().is_ok());
        assert!(c("0.0.0.0:9", None, false).check().unwrap_err().0.contains("--http-token"));
        assert!(c("0.0.0.0:9", Some("t"), false).check().is_ok());
        assert!(c("0.0.0.0:9", None, true).check().is_ok());
        assert!(c("127.0.0.1:9", Some(""), false).check().is_err());
    }

    /// Past the cap on the HTTPS port the 503 goes out over TLS (openssl's client reads it),
    /// never as plain text on the TLS port.
    #[test]
    fn the_refusal_on_the_https_port_is_a_tls_answer() {
        // (A non-loopback address with a token gets a certificate made at start; the test
        // listens on loopback itself.)
        let config = HttpConfig {
            addr: "192.0.2.1:9180".parse().unwrap(),
            token: Some("t".into()),
            insecure: false,
            tls_cert: None,
            tls_key: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (acceptor, _, generated) = config.tls().unwrap().expect("a generated certificate");
        assert!(generated);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::thread::spawn(move || {
            std::process::Command::new("timeout")
                .args(["10", "openssl", "s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}")])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl runs")
        });
        runtime.block_on(async {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            refuse(stream, Some(acceptor)).await;
        });
        let out = client.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable"),
            "{text} / {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new connection at the cap takes the place of the oldest one that has not asked yet;
    /// when every place is held by one that asked, there is none.
    #[test]
    fn a_place_goes_to_the_newest_connection_over_the_oldest_that_has_not_asked() {
        let admission = Arc::new(Admission::default());
        // Two clients, half of the places each (the most one address may hold).
        let client = |i: usize| std::net::IpAddr::from([192, 0, 2, 1 + (i % 2) as u8]);
        let mut held: Vec<_> = (0..MAX_CONNECTIONS).map(|i| admission.admit(client(i)).unwrap()).collect();
        assert_eq!(admission.open(), MAX_CONNECTIONS);
        held[0].0.asked();
        let (newest, _evicted) = admission.admit(client(1)).expect("a place taken over");
        // The oldest that had not asked (the second) was told to go; the first keeps its place.
        assert!(held[1].1.try_recv().is_ok());
        assert!(held[0].1.try_recv().is_err());
        assert_eq!(admission.open(), MAX_CONNECTIONS);
        held.remove(1);
        assert_eq!(admission.open(), MAX_CONNECTIONS, "a place taken over is not given back twice");
        for (place, _) in &held {
            place.asked();
        }
        newest.asked();
        assert!(admission.admit(client(0)).is_none(), "every place held by a connection that asked");
        drop(held);
        assert_eq!(admission.open(), 1);
        drop(newest);
        assert_eq!(admission.open(), 0);
        assert!(admission.per_address.lock().unwrap().is_empty());
        // One address alone: past its 32 places, its own oldest waiting one makes room; when all
        // of its places have asked, it gets none, while another address still gets one.
        let one: Vec<_> = (0..MAX_PER_ADDRESS).map(|_| admission.admit(client(0)).unwrap()).collect();
        let (again, _) = admission.admit(client(0)).expect("its oldest waiting one taken over");
        assert!(one[0].0.taken_over.load(Ordering::Relaxed));
        assert_eq!(admission.open(), MAX_PER_ADDRESS);
        for (place, _) in &one[1..] {
            place.asked();
        }
        again.asked();
        assert!(admission.admit(client(0)).is_none(), "32 places of one address that asked");
        let other = admission.admit(client(1));
        assert!(other.is_some(), "another address");
    }
}
