//! Counters as JSON (the field names of docs/INTERFACES.md).

use reflector_core::{Counters, Reject, Signature};
use serde_json::{Map, Value, json};

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
    m.insert("by_signature".into(), Value::Object(by_signature));
    m.insert("rejected".into(), Value::Object(rejected));
    m
}
