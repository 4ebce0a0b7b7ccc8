//! Counters and testers as the control plane shows them, and as JSON (the field names of the
//! API's `Counters` schema, docs/openapi.yaml).

use reflector_core::testers::Tester;
use reflector_core::{Counters, Reject, Signature};
use serde_json::{Map, Value, json};

/// A tester as the control plane shows it: its row, and the rate it sends at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TesterRow {
    /// What the data path recorded.
    pub tester: Tester,
    /// Packets a second it sent (answered and limited) over the last second or so; 0 when it
    /// is not active.
    pub pps: f64,
    /// Its last packet came within the control plane's active window (10 s).
    pub active: bool,
}

/// The counter fields every JSON report carries.
pub fn counters_json(c: &Counters) -> Map<String, Value> {
    let by_signature: Map<String, Value> =
        Signature::ALL.iter().map(|s| (s.name().to_string(), json!(c.by_signature[*s as usize]))).collect();
    let rejected: Map<String, Value> =
        Reject::ALL.iter().map(|r| (r.name().to_string(), json!(c.rejected[*r as usize]))).collect();
    let mut m = Map::new();
    m.insert("rx_packets".into(), json!(c.rx_packets));
    m.insert("rx_bytes".into(), json!(c.rx_bytes));
    m.insert("reflected_packets".into(), json!(c.reflected_packets));
    m.insert("reflected_bytes".into(), json!(c.reflected_bytes));
    m.insert("rejected_packets".into(), json!(c.rejected_packets()));
    m.insert("tx_errors".into(), json!(c.tx_errors));
    m.insert("rx_dropped".into(), json!(c.rx_dropped));
    m.insert("rx_invalid".into(), json!(c.rx_invalid));
    m.insert("stamp_sessions_evicted".into(), json!(c.stamp_sessions_evicted));
    m.insert("stamp_short_answered".into(), json!(c.stamp_short_answered));
    m.insert("by_signature".into(), Value::Object(by_signature));
    m.insert("rejected".into(), Value::Object(rejected));
    m
}

/// A tester as the API, the summary and the dashboard show it: its address, VLAN (`null`
/// untagged), MAC, families, counts, rate, when first and last seen (Unix seconds), and
/// whether it is testing now.
pub fn tester_json(row: &TesterRow) -> Value {
    let t = &row.tester;
    let unix = |ns: u64| (ns as f64 / 1e6).round() / 1000.0;
    json!({
        "ip": t.addr().to_string(),
        "vlan": (t.vlan != 0).then_some(t.vlan),
        "mac": t.mac.to_string(),
        "families": t.families.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "packets": t.packets,
        "bytes": t.bytes,
        "limited": t.limited,
        "pps": row.pps.round(),
        "first_seen": unix(t.first_seen_ns),
        "last_seen": unix(t.last_seen_ns),
        "active": row.active,
    })
}

/// The testers as `/api/v1/testers` and the summary show them: how many are testing now and
/// how many are known, and the first `limit` rows (busiest first).
pub fn testers_json(rows: &[TesterRow], limit: usize) -> Value {
    json!({
        "active": rows.iter().filter(|r| r.active).count(),
        "known": rows.len(),
        "testers": rows.iter().take(limit).map(tester_json).collect::<Vec<_>>(),
    })
}
