//! The configuration file of `reflector run` (TOML).
//!
//! Every `run` option has a key; precedence is defaults < file < command-line flags. A file is
//! checked completely before anything starts: an unknown key, a wrong type or a bad value is
//! one line naming the file, the line and the key, and exit code 2.

use std::path::Path;
use std::time::Duration;

use reflector_core::{CustomSignature, FamilySet, Mode};
use serde::Deserialize;
use toml::Spanned;

use crate::input::UsageError;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    interface: Option<Spanned<String>>,
    backend: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    signatures: Option<Spanned<Vec<String>>>,
    oui: Option<Spanned<String>>,
    oui_filter: Option<Spanned<bool>>,
    oui_scope: Option<Spanned<Vec<String>>>,
    workers: Option<Spanned<u16>>,
    cpus: Option<Spanned<String>>,
    umem_size_mib: Option<Spanned<u32>>,
    busy_poll: Option<Spanned<bool>>,
    replace: Option<Spanned<bool>>,
    duration: Option<Spanned<f64>>,
    latency: Option<Spanned<bool>>,
    stats: Option<RawStats>,
    http: Option<RawHttp>,
    signature: Option<Vec<RawSignature>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    insecure: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStats {
    format: Option<Spanned<String>>,
    interval: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    offset: Spanned<u16>,
    text: Option<Spanned<String>>,
    hex: Option<Spanned<String>>,
}

/// A checked configuration file: the settings it makes, each `None` when absent.
#[derive(Debug, Default, Clone)]
pub struct Config {
    /// Interface to reflect on.
    pub interface: Option<String>,
    /// Backend name (checked by the caller's parser).
    pub backend: Option<crate::run::BackendChoice>,
    /// Reflection mode.
    pub mode: Option<Mode>,
    /// Test port.
    pub port: Option<u16>,
    /// Signature families.
    pub signatures: Option<crate::filter_args::SigList>,
    /// Required OUI.
    pub oui: Option<[u8; 3]>,
    /// `false` turns the OUI filter off.
    pub oui_filter: Option<bool>,
    /// Families the OUI applies to.
    pub oui_scope: Option<FamilySet>,
    /// Workers.
    pub workers: Option<u16>,
    /// CPUs the workers are pinned to.
    pub cpus: Option<crate::cpus::CpuList>,
    /// UMEM in MiB, shared by the af-xdp sockets.
    pub umem_size_mib: Option<u32>,
    /// Busy polling.
    pub busy_poll: Option<bool>,
    /// Replace another XDP program.
    pub replace: Option<bool>,
    /// Run time.
    pub duration: Option<Duration>,
    /// Measure dwell times.
    pub latency: Option<bool>,
    /// Statistics format.
    pub stats_format: Option<crate::stats::StatsFormat>,
    /// Statistics interval.
    pub stats_interval: Option<Duration>,
    /// User-defined signatures.
    pub custom: Vec<CustomSignature>,
    /// HTTP server address.
    pub http_listen: Option<std::net::SocketAddr>,
    /// HTTP bearer token.
    pub http_token: Option<String>,
    /// Serve a non-loopback address without a token.
    pub http_insecure: Option<bool>,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, UsageError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read config {}: {e}", path.display())))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Checks `text`, naming `file` in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, UsageError> {
        let raw: Raw = toml::from_str(text)
            .map_err(|e| {
                let line = e.span().map(|s| line_of(text, s.start));
                // The message names the key for unknown keys; for type errors take the key from
                // the line itself.
                let key = line
                    .and_then(|l| text.lines().nth(l - 1))
                    .and_then(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
                    .filter(|k| !k.is_empty() && !k.starts_with('['));
                let message = e.message().replace('\n', " ");
                match (line, key) {
                    (Some(l), Some(k)) if !message.contains(&format!("`{k}`")) => {
                        format!("{file}:{l}: {k}: {message}")
                    }
                    (Some(l), _) => format!("{file}:{l}: {message}"),
                    (None, _) => format!("{file}: {message}"),
                }
            })
            .map_err(UsageError)?;
        let at = |span: std::ops::Range<usize>, key: &str, message: String| {
            UsageError(format!("{file}:{}: {key}: {message}", line_of(text, span.start)))
        };
        let check = |v: Option<Spanned<String>>, key: &str, parse: &dyn Fn(&str) -> Result<(), String>| {
            if let Some(v) = &v {
                parse(v.get_ref()).map_err(|m| at(v.span(), key, m))?;
            }
            Ok::<_, UsageError>(v.map(Spanned::into_inner))
        };
        let mut config = Config {
            interface: check(raw.interface, "interface", &|s| {
                if s.is_empty() { Err("must not be empty".into()) } else { Ok(()) }
            })?,
            ..Config::default()
        };
        if let Some(b) = raw.backend {
            config.backend =
                Some(<crate::run::BackendChoice as clap::ValueEnum>::from_str(b.get_ref(), false).map_err(
                    |_| {
                        at(
                            b.span(),
                            "backend",
                            format!(
                                "unknown backend '{}' (expected auto, af-xdp, af-packet or bpf)",
                                b.get_ref()
                            ),
                        )
                    },
                )?);
        }
        if let Some(m) = raw.mode {
            config.mode = Some(
                m.get_ref()
                    .parse()
                    .map_err(|e: reflector_core::ConfigError| at(m.span(), "mode", e.to_string()))?,
            );
        }
        config.port = raw.port.map(Spanned::into_inner);
        fn list<T: std::str::FromStr<Err = reflector_core::ConfigError>>(
            v: Spanned<Vec<String>>,
            key: &str,
            at: &dyn Fn(std::ops::Range<usize>, &str, String) -> UsageError,
        ) -> Result<T, UsageError> {
            v.get_ref()
                .join(",")
                .parse()
                .map_err(|e: reflector_core::ConfigError| at(v.span(), key, e.to_string()))
        }
        let families = |v, key: &str| list::<FamilySet>(v, key, &at);
        config.signatures = raw.signatures.map(|v| list(v, "signatures", &at)).transpose()?;
        config.oui_scope = raw.oui_scope.map(|v| families(v, "oui_scope")).transpose()?;
        if let Some(o) = raw.oui {
            config.oui = Some(
                reflector_core::wire::parse_hex_bytes::<3>(o.get_ref())
                    .map_err(|_| at(o.span(), "oui", "expected three hex bytes like \"00:c0:17\"".into()))?,
            );
        }
        config.oui_filter = raw.oui_filter.map(Spanned::into_inner);
        if let Some(w) = raw.workers {
            if !(1..=64).contains(w.get_ref()) {
                return Err(at(w.span(), "workers", format!("{} is not in 1..=64", w.get_ref())));
            }
            config.workers = Some(w.into_inner());
        }
        if let Some(c) = raw.cpus {
            config.cpus = Some(c.get_ref().parse().map_err(|m| at(c.span(), "cpus", m))?);
        }
        if let Some(u) = raw.umem_size_mib {
            if !(1..=4096).contains(u.get_ref()) {
                return Err(at(u.span(), "umem_size_mib", format!("{} is not in 1..=4096", u.get_ref())));
            }
            config.umem_size_mib = Some(u.into_inner());
        }
        config.busy_poll = raw.busy_poll.map(Spanned::into_inner);
        config.replace = raw.replace.map(Spanned::into_inner);
        let seconds = |v: Spanned<f64>, key: &str| -> Result<Duration, UsageError> {
            let parse =
                if key == "stats.interval" { crate::input::parse_interval } else { crate::input::parse_secs };
            parse(&v.get_ref().to_string()).map_err(|m| at(v.span(), key, m))
        };
        config.duration = raw.duration.map(|d| seconds(d, "duration")).transpose()?;
        config.latency = raw.latency.map(Spanned::into_inner);
        if let Some(stats) = raw.stats {
            if let Some(f) = stats.format {
                config.stats_format = Some(
                    <crate::stats::StatsFormat as clap::ValueEnum>::from_str(f.get_ref(), false).map_err(
                        |_| {
                            at(
                                f.span(),
                                "stats.format",
                                format!("unknown format '{}' (expected text, json or csv)", f.get_ref()),
                            )
                        },
                    )?,
                );
            }
            config.stats_interval = stats.interval.map(|i| seconds(i, "stats.interval")).transpose()?;
        }
        if let Some(http) = raw.http {
            if let Some(l) = http.listen {
                config.http_listen = Some(l.get_ref().parse().map_err(|_| {
                    at(l.span(), "http.listen", format!("'{}' is not ADDR:PORT", l.get_ref()))
                })?);
            }
            config.http_token = check(http.token, "http.token", &|t| {
                if t.is_empty() { Err("must not be empty".into()) } else { Ok(()) }
            })?;
            config.http_insecure = http.insecure.map(Spanned::into_inner);
        }
        for sig in raw.signature.unwrap_or_default() {
            let bytes = match (&sig.text, &sig.hex) {
                (Some(t), None) => t.get_ref().as_bytes().to_vec(),
                (None, Some(h)) => crate::filter_args::parse_hex(h.get_ref())
                    .map_err(|m| at(h.span(), "signature.hex", m))?,
                _ => {
                    return Err(at(sig.offset.span(), "signature", "give exactly one of text or hex".into()));
                }
            };
            let custom = CustomSignature::new(*sig.offset.get_ref(), &bytes)
                .map_err(|e| at(sig.offset.span(), "signature", e.to_string()))?;
            config.custom.push(custom);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "r.toml").unwrap_err().0
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../../../examples/reflector.toml");
        let c = Config::parse(text, "reflector.toml").unwrap();
        assert_eq!(c.interface.as_deref(), Some("eth0"));
        assert_eq!(c.port, Some(3842));
        assert_eq!(c.mode, Some(Mode::All));
        assert_eq!(c.custom.len(), 1);
        assert_eq!(c.stats_interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn every_key_is_read() {
        let c = Config::parse(
            r#"
interface = "va"
backend = "af-packet"
mode = "mac-ip"
port = 9
signatures = ["ito", "custom"]
oui = "52:54:00"
oui_filter = true
oui_scope = ["ito"]
workers = 2
cpus = "0-1"
umem_size_mib = 32
busy_poll = true
replace = true
duration = 2.5
[stats]
format = "csv"
interval = 0.5
[[signature]]
offset = 0
hex = "0xdead"
"#,
            "r.toml",
        )
        .unwrap();
        assert_eq!(c.backend, Some(crate::run::BackendChoice::AfPacket));
        assert_eq!((c.port, c.workers, c.umem_size_mib), (Some(9), Some(2), Some(32)));
        assert_eq!(c.cpus, Some(crate::cpus::CpuList(vec![0, 1])));
        assert_eq!(c.oui, Some([0x52, 0x54, 0x00]));
        assert_eq!(c.signatures.unwrap().to_string(), "ito,custom");
        assert_eq!(c.duration, Some(Duration::from_millis(2500)));
        assert_eq!(c.stats_format, Some(crate::stats::StatsFormat::Csv));
        assert_eq!(c.custom[0].bytes(), &[0xde, 0xad]);
    }

    #[test]
    fn each_kind_of_bad_file_gives_its_exact_message() {
        assert_eq!(
            err("port = 3842\nprot = 1\n"),
            "r.toml:2: unknown field `prot`, expected one of `interface`, `backend`, `mode`, `port`, `signatures`, `oui`, `oui_filter`, `oui_scope`, `workers`, `cpus`, `umem_size_mib`, `busy_poll`, `replace`, `duration`, `latency`, `stats`, `http`, `signature`"
        );
        assert_eq!(err("port = \"3842\"\n"), "r.toml:1: port: invalid type: string \"3842\", expected u16");
        assert_eq!(err("\nport = 70000\n"), "r.toml:2: port: invalid value: integer `70000`, expected u16");
        assert_eq!(err("mode = \"swap\"\n"), "r.toml:1: mode: unknown mode (expected mac, mac-ip or all)");
        assert_eq!(err("workers = 0\n"), "r.toml:1: workers: 0 is not in 1..=64");
        assert_eq!(
            err("cpus = \"2-1\"\n"),
            "r.toml:1: cpus: '2-1' is not a CPU range (the first CPU comes first)"
        );
        assert_eq!(err("oui = \"00:c0\"\n"), "r.toml:1: oui: expected three hex bytes like \"00:c0:17\"");
        assert_eq!(
            err("signatures = [\"ito\", \"bogus\"]\n"),
            "r.toml:1: signatures: unknown signature family (expected ito, rfc2544, y1564, custom or all)"
        );
        assert_eq!(
            err("[stats]\nformat = \"xml\"\n"),
            "r.toml:2: stats.format: unknown format 'xml' (expected text, json or csv)"
        );
        assert_eq!(
            err("[stats]\ninterval = 0\n"),
            "r.toml:2: stats.interval: '0' must be from 0.1 to 1e9 seconds"
        );
        assert_eq!(
            err("[[signature]]\noffset = 1\n"),
            "r.toml:2: signature: give exactly one of text or hex"
        );
        assert_eq!(
            err("[[signature]]\noffset = 1\nhex = \"0xzz\"\n"),
            "r.toml:3: signature.hex: bad hex 'zz'"
        );
        assert_eq!(
            err("backend = \"dpdk\"\n"),
            "r.toml:1: backend: unknown backend 'dpdk' (expected auto, af-xdp, af-packet or bpf)"
        );
        assert_eq!(
            err("[http]\nlisten = \"localhost\"\n"),
            "r.toml:2: http.listen: 'localhost' is not ADDR:PORT"
        );
        assert!(err("port = \n").starts_with("r.toml:1:"));
        for e in [err("prot = 1"), err("port = \"x\"")] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
