//! What every command shares about its input: the usage error (exit code 2) and the parsers of
//! durations.

/// A bad command line, configuration or input file: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses a number of seconds (fractions allowed) for a duration or a wait: at least 0.01 s.
pub fn parse_secs(s: &str) -> Result<std::time::Duration, String> {
    parse_secs_at_least(s, 0.01)
}

/// Parses the seconds between stats lines: at least 0.1 s, so that no setting makes the control
/// loop spin.
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    parse_secs_at_least(s, 0.1)
}

fn parse_secs_at_least(s: &str, min: f64) -> Result<std::time::Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs >= min && secs <= 1e9) {
        return Err(format!("'{s}' must be from {min} to 1e9 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Parses a MAC address for clap.
pub fn parse_mac(s: &str) -> Result<reflector_core::MacAddr, String> {
    s.parse().map_err(|e: reflector_core::wire::ParseMacError| e.to_string())
}

/// Parses `0xHEX` (or bare hex) into bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let hex = s.strip_prefix("0x").unwrap_or(s);
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return Err(format!("bad hex '{hex}' (an even number of hex digits)"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| format!("bad hex '{hex}'"))
}
