//! The filter flags shared by `run` and `replay`.

use std::net::IpAddr;

use reflector_core::access::Source;
use reflector_core::limit::Rate;
use reflector_core::stamp::{SequenceMode, TimestampFormat};
use reflector_core::wire::parse_hex_bytes;
use reflector_core::{
    CustomSignature, Family, FamilySet, Filter, FilterConfig, LoopGuard, MacAddr, Mode, StampShort,
};

use crate::input::{UsageError, parse_hex};

crate::settings::settings! {
    /// Which frames are test packets, and how they are turned around.
    pub struct FilterArgs {}

    /// What to swap: `all` (MACs, IPs, UDP ports), `mac-ip`, or `mac`. Except in mode `all` on
    /// port 3842, answers also take one off the TTL / hop limit (two reflectors facing each
    /// other stop when it is 0).
    #[arg(long, default_value = "all", value_parser = parse_mode)]
    #[serde(serialize_with = "mode_name")]
    mode: Mode => key "mode": String, reload Live;
    /// UDP destination port of test packets; 0 accepts any port.
    #[arg(long, default_value_t = reflector_core::DEFAULT_PORT)]
    port: u16 => key "port": u16, reload Live;
    /// Signature families to accept: ito, rfc2544, y1564, stamp, custom, all (comma-separated;
    /// all = every built-in family, STAMP included, plus custom when --custom-sig is given)
    /// [default: ito,rfc2544,y1564, plus custom when --custom-sig is given].
    #[arg(long, value_parser = parse_sig_list)]
    #[serde(serialize_with = "sig_names")]
    sig: Option<SigList> => key "signatures": Vec<String>, reload Live;
    /// A user-defined signature, OFFSET:TEXT or OFFSET:0xHEX (offset in the UDP payload); repeatable.
    #[arg(long = "custom-sig", value_name = "OFFSET:BYTES", value_parser = parse_custom)]
    #[serde(serialize_with = "custom_signatures")]
    custom_sig: Vec<CustomSignature> => key "signature": Vec<crate::settings::SignatureTable>, reload Live;
    /// Required source OUI (first three MAC bytes) for the families in --oui-scope.
    #[arg(long, value_name = "XX:XX:XX", default_value = "00:c0:17", value_parser = parse_oui)]
    #[serde(serialize_with = "oui_hex")]
    oui: [u8; 3] => key "oui": String, reload Live;
    /// Accept test packets from any vendor.
    #[arg(long, conflicts_with_all = ["oui", "oui_scope"])]
    no_oui_filter: bool => key "oui_filter": bool [inverted], reload Live;
    /// Signature families the OUI requirement applies to [default: ito, when selected].
    #[arg(long, value_name = "FAMILIES", value_parser = parse_families)]
    #[serde(serialize_with = "family_names")]
    oui_scope: Option<FamilySet> => key "oui_scope": Vec<String>, reload Live;
    /// UDP destination port of STAMP / TWAMP-Light requests (family stamp).
    #[arg(long, default_value_t = reflector_core::stamp::DEFAULT_STAMP_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    stamp_port: u16 => key "stamp_port": u16, reload Restart;
    /// STAMP sequence numbers: `stateless` (the sender's, copied) or `stateful` (a counter per
    /// session, so the sender tells loss on the way out from loss on the way back).
    #[arg(long, default_value = "stateless", value_parser = parse_sequence)]
    #[serde(serialize_with = "sequence_name")]
    stamp_sequence: SequenceMode => key "stamp_sequence": String, reload Live;
    /// STAMP timestamp format: `ntp` (64-bit NTP) or `ptp` (PTPv2 truncated, Z bit set).
    #[arg(long, default_value = "ntp", value_parser = parse_timestamps)]
    #[serde(serialize_with = "timestamps_name")]
    stamp_timestamps: TimestampFormat => key "stamp_timestamps": String, reload Live;
    /// STAMP / TWAMP-Light requests shorter than the 41-byte reflector packet (14 to 40 bytes, from
    /// TWAMP-Light senders that do not pad): `answer` them with it, the answer up to 27 bytes
    /// longer than the request (RFC 5357 §4.2.1), or `refuse` them (stamp_length), every answer
    /// as long as its request.
    #[arg(long, value_name = "WHAT", default_value = "answer", value_parser = parse_stamp_short)]
    #[serde(serialize_with = "stamp_short_name")]
    stamp_short: StampShort => key "stamp_short": String, reload Live;
    /// Answer only these sources: IPv4 or IPv6 addresses or prefixes (CIDR) and MAC addresses,
    /// comma-separated, repeatable. The most specific prefix holding a source's IP decides
    /// between this list and --deny [default: every source --deny does not name].
    #[arg(long, value_name = "SOURCES", value_delimiter = ',', value_parser = parse_source)]
    #[serde(serialize_with = "source_names")]
    allow: Vec<Source> => key "allow": crate::settings::List, reload Live;
    /// Never answer these sources (the same forms as --allow); a denied MAC is never answered.
    #[arg(long, value_name = "SOURCES", value_delimiter = ',', value_parser = parse_source)]
    #[serde(serialize_with = "source_names")]
    deny: Vec<Source> => key "deny": crate::settings::List, reload Live;
    /// Answer each source IP address at most this many test packets a second.
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u32).range(1..))]
    source_limit: Option<u32> => key "source_limit": u32, reload Live;
    /// Packets a source may send back to back within its limit [default: a tenth of
    /// --source-limit, at least 1].
    #[arg(long, value_name = "PACKETS", value_parser = clap::value_parser!(u32).range(1..))]
    source_burst: Option<u32> => key "source_burst": u32, reload Live;
    /// Answer at most this many test packets a second in all.
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u32).range(1..))]
    total_limit: Option<u32> => key "total_limit": u32, reload Live;
    /// Packets that may come back to back within the total limit [default: a tenth of
    /// --total-limit, at least 1].
    #[arg(long, value_name = "PACKETS", value_parser = clap::value_parser!(u32).range(1..))]
    total_burst: Option<u32> => key "total_burst": u32, reload Live;
    /// How loops between two reflectors end: `ttl` (answers that the port rule cannot tell from
    /// a request take one off the TTL / hop limit, and one that arrives with none left is
    /// refused) or `port-only` (the TTL is never touched, for testers that compare it; two
    /// reflectors that face each other in mode mac or mac-ip, or on other ports than 3842, or
    /// with STAMP on different ports, then turn one packet around without end).
    #[arg(long, value_name = "GUARD", default_value = "ttl", value_parser = parse_loop_guard)]
    #[serde(serialize_with = "loop_guard_name")]
    loop_guard: LoopGuard => key "loop_guard": String, reload Live;
}

fn source_names<S: serde::Serializer>(v: &[Source], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|source| source.to_string()))
}

fn parse_source(s: &str) -> Result<Source, String> {
    s.parse().map_err(|e: reflector_core::access::SourceError| format!("'{s}': {e}"))
}

/// `per_second` with `burst`, or the default burst; a burst without a rate is refused (by the
/// name of the settings `what` names: `source` or `total`).
fn rate(per_second: Option<u32>, burst: Option<u32>, what: &str) -> Result<Option<Rate>, UsageError> {
    match (per_second, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => {
            Err(UsageError(format!("--{what}-burst (file: {what}_burst) needs --{what}-limit")))
        }
        (Some(pps), burst) => Ok(Rate::new(pps, burst.unwrap_or_else(|| Rate::default_burst(pps)))),
    }
}

fn sequence_name<S: serde::Serializer>(m: &SequenceMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name())
}

fn timestamps_name<S: serde::Serializer>(m: &TimestampFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name())
}

fn parse_sequence(s: &str) -> Result<SequenceMode, String> {
    match s {
        "stateless" => Ok(SequenceMode::Stateless),
        "stateful" => Ok(SequenceMode::Stateful),
        _ => Err("expected stateless or stateful".into()),
    }
}

fn parse_timestamps(s: &str) -> Result<TimestampFormat, String> {
    match s {
        "ntp" => Ok(TimestampFormat::Ntp),
        "ptp" => Ok(TimestampFormat::Ptp),
        _ => Err("expected ntp or ptp".into()),
    }
}

fn mode_name<S: serde::Serializer>(m: &Mode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name())
}

/// A family list as the file writes it: `["all"]`, or the names.
fn sig_names<S: serde::Serializer>(v: &Option<SigList>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(SigList { all: true, .. }) => s.collect_seq(["all"]),
        Some(list) => family_names(&Some(list.families), s),
        None => s.serialize_none(),
    }
}

fn family_names<S: serde::Serializer>(v: &Option<FamilySet>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(set) => s.collect_seq(set.iter().map(Family::name)),
        None => s.serialize_none(),
    }
}

fn oui_hex<S: serde::Serializer>(o: &[u8; 3], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{:02x}:{:02x}:{:02x}", o[0], o[1], o[2]))
}

fn custom_signatures<S: serde::Serializer>(sigs: &[CustomSignature], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(sigs.len()))?;
    for sig in sigs {
        let hex: String = sig.bytes().iter().map(|b| format!("{b:02x}")).collect();
        seq.serialize_element(&serde_json::json!({"offset": sig.offset(), "hex": hex}))?;
    }
    seq.end()
}

/// The families `--sig` (or the config's `signatures`) names. `all` stands for every built-in
/// family, and for custom too when custom signatures are defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigList {
    /// The families named one by one (or built-in ones, for `all`).
    pub families: FamilySet,
    /// `all` was among them.
    pub all: bool,
}

impl std::str::FromStr for SigList {
    type Err = reflector_core::ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = SigList { families: FamilySet::EMPTY, all: false };
        for name in s.split(',').map(str::trim) {
            if name == "all" {
                list.all = true;
                [Family::Ito, Family::Rfc2544, Family::Y1564, Family::Stamp]
                    .into_iter()
                    .for_each(|f| list.families.insert(f));
            } else {
                let one: FamilySet = name.parse()?;
                one.iter().for_each(|f| list.families.insert(f));
            }
        }
        Ok(list)
    }
}

impl std::fmt::Display for SigList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.families.fmt(f)
    }
}

impl FilterArgs {
    /// The validated filter for an interface with MAC `local_mac` and addresses `local_ips`.
    pub fn filter(&self, local_mac: MacAddr, local_ips: &[IpAddr]) -> Result<Filter, UsageError> {
        let sig =
            self.sig.unwrap_or(SigList { families: "ito,rfc2544,y1564".parse().expect("valid"), all: true });
        let mut families = sig.families;
        if sig.all && !self.custom_sig.is_empty() {
            families.insert(Family::Custom);
        }
        let config = FilterConfig {
            local_mac,
            port: self.port,
            families,
            oui: (!self.no_oui_filter).then_some(self.oui),
            // Only an explicit scope must name selected families; the default follows --sig.
            oui_families: self.oui_scope.unwrap_or_else(|| {
                if families.contains(Family::Ito) { FamilySet::only(Family::Ito) } else { FamilySet::EMPTY }
            }),
            custom: &self.custom_sig,
            mode: self.mode,
            local_ips,
            stamp_port: self.stamp_port,
            stamp_timestamps: self.stamp_timestamps,
            stamp_sequence: self.stamp_sequence,
            allow: &self.allow,
            deny: &self.deny,
            source_limit: rate(self.source_limit, self.source_burst, "source")?,
            total_limit: rate(self.total_limit, self.total_burst, "total")?,
            loop_guard: self.loop_guard,
            stamp_short: self.stamp_short,
        };
        Filter::new(&config).map_err(|e| UsageError(format!("invalid filter: {e}")))
    }
}

fn stamp_short_name<S: serde::Serializer>(v: &StampShort, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

fn parse_stamp_short(s: &str) -> Result<StampShort, String> {
    s.parse().map_err(|e: reflector_core::ConfigError| e.to_string())
}

fn loop_guard_name<S: serde::Serializer>(g: &LoopGuard, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(g.name())
}

fn parse_loop_guard(s: &str) -> Result<LoopGuard, String> {
    s.parse().map_err(|e: reflector_core::ConfigError| e.to_string())
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse().map_err(|e: reflector_core::ConfigError| e.to_string())
}

fn parse_sig_list(s: &str) -> Result<SigList, String> {
    s.parse().map_err(|e: reflector_core::ConfigError| e.to_string())
}

fn parse_families(s: &str) -> Result<FamilySet, String> {
    s.parse().map_err(|e: reflector_core::ConfigError| e.to_string())
}

fn parse_oui(s: &str) -> Result<[u8; 3], String> {
    parse_hex_bytes::<3>(s).map_err(|_| "expected three hex bytes like \"00:c0:17\"".into())
}

fn parse_custom(s: &str) -> Result<CustomSignature, String> {
    let (offset, bytes) = s.split_once(':').ok_or("expected OFFSET:TEXT or OFFSET:0xHEX")?;
    let offset: u16 = offset.parse().map_err(|_| format!("bad offset '{offset}'"))?;
    let bytes = if bytes.starts_with("0x") { parse_hex(bytes)? } else { bytes.as_bytes().to_vec() };
    CustomSignature::new(offset, &bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_signature_syntax() {
        let s = parse_custom("5:HELLO").unwrap();
        assert_eq!((s.offset(), s.bytes()), (5, &b"HELLO"[..]));
        let s = parse_custom("0:0xdeadBEEF").unwrap();
        assert_eq!(s.bytes(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(parse_custom("HELLO").is_err());
        assert!(parse_custom("x:HELLO").is_err());
        assert!(parse_custom("1:0xabc").is_err());
        assert!(parse_custom("1:0xzz").is_err());
        assert!(parse_custom("1:").is_err());
        assert!(parse_custom("1:0xé1").is_err());
    }
}
