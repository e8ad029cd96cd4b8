//! The collector's logs, and text logs a peer cannot forge a line in: in `--log-format text` every field's
//! value is written with its control characters escaped (`\n`, `\u{1b}`, …), so an agent id, a cluster, a
//! label or anything else a peer sent shows as it is, on the one line it belongs to. JSON logs escape them as
//! JSON does.

use std::fmt::Debug;

use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{FormatFields, Writer};

/// Starts logging to stderr as `format` says: `json`, `text`, or `auto` (JSON when stderr is not a terminal).
pub fn init(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    if json {
        builder.json().init();
    } else {
        // Colours only for a terminal: a file or a pipe gets the text alone.
        builder.fmt_fields(escaped_fields()).with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Fields as the text format writes them (the message, then `name=value`), control characters escaped.
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w: &mut Writer<'_>, field: &Field, value: &dyn Debug| {
        let text = escape_controls(&format!("{value:?}"));
        match field.name() {
            "message" => w.write_str(&text),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().fold(String::with_capacity(s.len() + 8), |mut out, c| {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_peers_newline_or_escape_sequence_stays_on_its_line_escaped() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .finish();
        let agent = "n1\n2026-01-01T00:00:00Z  INFO forged: everything is fine\u{1b}[2K";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(agent = %agent, cluster = "c\r1", seq = 3, "refused a batch");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("refused a batch agent=n1\\n2026-01-01T00:00:00Z  INFO forged"), "{text}");
        assert!(text.contains("\\u{1b}[2K") && text.contains("cluster=\"c\\r1\"") && text.contains("seq=3"), "{text}");
    }
}
