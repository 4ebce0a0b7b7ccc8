//! What every command shares about its input: the usage error (exit code 2) and the parsers of
//! durations.

/// A bad command line, configuration or input file: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The most of a file the configuration names (the configuration itself, a TLS certificate or
/// key) that is read: such files are a few KiB.
pub const MAX_CONFIG_FILE_BYTES: u64 = 4 << 20;

/// The bytes of `path`, the `what` of the configuration (for the message): only a regular file
/// (a device or a FIFO could be endless, or block), at most [`MAX_CONFIG_FILE_BYTES`].
pub fn read_config_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>, UsageError> {
    use std::io::Read;
    let shown = path.display();
    let cannot = |e: std::io::Error| UsageError(format!("cannot read {what} {shown}: {e}"));
    let too_big = || UsageError(format!("{what} {shown} is larger than {} MiB", MAX_CONFIG_FILE_BYTES >> 20));
    // `metadata` follows links and does not open: a FIFO without a writer cannot block it.
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(UsageError(format!(
            "{what} {shown} is not a regular file (a device, FIFO or directory is not read)"
        )));
    }
    if meta.len() > MAX_CONFIG_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // A file that grows after the look (or a /proc file, whose size reads 0) stops at the cap.
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

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
