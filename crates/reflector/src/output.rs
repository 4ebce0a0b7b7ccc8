//! Lines on stdout, with a closed or full stdout handled as command-line tools do: a reader
//! that went away (`run … | head -n1`) ends the program quietly with exit code 0; any other
//! write error (`> /dev/full`) is a one-line error with exit code 1. (Events on stderr go
//! through `tracing`: [`crate::logging`].)

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::input::UsageError;

/// Writing to stdout failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader of stdout went away (EPIPE). `main` ends quietly with exit code 0.
    #[error("stdout was closed")]
    Closed,
    /// Any other write error.
    #[error("cannot write to stdout: {0}")]
    Failed(std::io::Error),
}

impl From<std::io::Error> for OutputError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe { OutputError::Closed } else { OutputError::Failed(e) }
    }
}

/// Writes `text` and a newline to stdout, and flushes it (so a full device is noticed at once,
/// not at exit).
pub fn line(text: impl Display) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// `s` with its control characters escaped (`\n`, `\t`, `\u{1b}`), so that an error quoting a
/// value the user gave stays one line and cannot move the terminal's cursor.
pub fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A duration in nanoseconds as people read it: "850 ns", "12.5 µs", "3.20 ms", "16.0 s".
pub fn duration_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} s", ns / 1e9)
    }
}

/// Where an output file goes (`replay -o`, `run --capture`): a regular file (new, or replaced),
/// or something that is written through as it is (a device, a FIFO, a socket). A symbolic link
/// is followed to what it names, so the link stays.
pub enum Target {
    /// A regular file, or nothing yet: the path to create.
    File(PathBuf),
    /// Anything else: the path to open for writing.
    Special(PathBuf),
}

impl Target {
    /// What `path` names, links followed.
    pub fn of(path: &Path) -> anyhow::Result<Target> {
        let mut path = path.to_path_buf();
        // Follow links (a bounded number, as the kernel does) to the path that is written.
        for _ in 0..40 {
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::File(path)),
                Err(e) => return Err(anyhow::anyhow!("cannot write {}: {e}", path.display())),
                Ok(m) if m.file_type().is_symlink() => {
                    let link = std::fs::read_link(&path)
                        .with_context(|| format!("cannot read the link {}", path.display()))?;
                    path = match path.parent() {
                        Some(dir) if link.is_relative() => dir.join(link),
                        _ => link,
                    };
                }
                Ok(m) if m.file_type().is_file() => return Ok(Target::File(path)),
                Ok(m) if m.file_type().is_dir() => {
                    return Err(UsageError(format!("{} is a directory", path.display())).into());
                }
                Ok(_) => return Ok(Target::Special(path)),
            }
        }
        Err(UsageError(format!("{}: too many levels of symbolic links", path.display())).into())
    }
}
