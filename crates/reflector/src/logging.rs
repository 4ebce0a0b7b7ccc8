//! A run's events on stderr, through `tracing`: one line each, with control characters escaped
//! ([`one_line`]), and, when stderr is the journal (systemd's `JOURNAL_STREAM` names its device
//! and inode), the syslog priority as a `<N>` prefix (sd-daemon(3)), so that `journalctl -p
//! warning` finds the warnings; on a terminal or in a file there is no prefix.
//!
//! Levels are priorities: `error!` err (3, the command failed), `warn!` warning (4, the run goes
//! on, perhaps not as asked), `info!` info (6, what a run is doing), and `info!` with the field
//! `notice = true` notice (5, a change the user caused or should know of: a reload, the link
//! coming back). The workers never log: what happens to frames is counted.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::output::one_line;

/// Sends the process's events to stderr, as this module says. Called first thing in `main`.
pub fn init() {
    // Nothing was installed before: this cannot fail, and if it did events would go nowhere,
    // as before it was called.
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stderr, stderr_is_journal()));
}

/// The subscriber [`init`] installs, writing to `writer`, with priority prefixes or without.
fn subscriber<W>(writer: W, journal: bool) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(Level::INFO)
        .with_writer(writer)
        .event_format(Line { journal })
        .finish()
}

/// One event as one line.
struct Line {
    /// Put the priority in front (stderr is the journal).
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.journal {
            let priority = match *event.metadata().level() {
                Level::ERROR => 3,
                Level::WARN => 4,
                _ if fields.notice => 5,
                _ => 6,
            };
            write!(writer, "<{priority}>")?;
        }
        writeln!(writer, "{}", one_line(&fields.text))
    }
}

/// An event's message, any other fields after it as ` name=value`, and whether it is a notice.
#[derive(Default)]
struct Fields {
    text: String,
    notice: bool,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "notice" {
            self.notice = value;
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

/// Whether stderr is the stream `JOURNAL_STREAM` (`DEVICE:INODE`) names.
#[cfg(not(unix))]
fn stderr_is_journal() -> bool {
    false
}

/// Whether stderr is the stream `JOURNAL_STREAM` (`DEVICE:INODE`) names.
#[cfg(unix)]
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    // The file stderr is open on (a socket, under systemd): stat follows the fd's link.
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Where a test's subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the events `emit` sends come out as.
    fn written(journal: bool, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let out = buffer.clone();
        tracing::subscriber::with_default(subscriber(move || out.clone(), journal), emit);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    fn every_priority() {
        tracing::error!("reflector: failed");
        tracing::warn!("reflector: careful");
        tracing::info!(notice = true, "reflector: SIGHUP: applied");
        tracing::info!("reflector: af-packet on va");
        tracing::debug!("reflector: not shown");
    }

    #[test]
    fn priorities_for_the_journal_and_none_elsewhere() {
        assert_eq!(
            written(true, every_priority),
            "<3>reflector: failed\n<4>reflector: careful\n<5>reflector: SIGHUP: applied\n<6>reflector: af-packet on va\n"
        );
        assert_eq!(
            written(false, every_priority),
            "reflector: failed\nreflector: careful\nreflector: SIGHUP: applied\nreflector: af-packet on va\n"
        );
    }

    #[test]
    fn an_event_is_one_line_whatever_it_quotes() {
        let value = "a\nb\u{1b}[2J";
        assert_eq!(
            written(true, || tracing::error!(file = "x\ny", "reflector: bad value {value}")),
            "<3>reflector: bad value a\\nb\\u{1b}[2J file=\"x\\ny\"\n"
        );
    }
}
