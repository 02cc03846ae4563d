//! The decision log: one line per event, `key=value` (or JSON lines with the
//! same fields), to standard error or a file. Greppable and fail2ban-friendly:
//! every line starts with a timestamp and `event=`, values with spaces or
//! quotes are quoted, control characters are escaped.

use crate::config::LogFormat;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Where log lines go.
pub struct Logger {
    format: LogFormat,
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Logger {
    /// Standard error, or `file` (appended, created if missing).
    pub fn open(file: Option<&Path>, format: LogFormat) -> std::io::Result<Logger> {
        let sink: Box<dyn Write + Send> = match file {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => Box::new(std::io::stderr()),
        };
        Ok(Logger {
            format,
            sink: Mutex::new(sink),
        })
    }

    /// A logger that writes nowhere (for tests of other parts).
    pub fn discard() -> Logger {
        Logger {
            format: LogFormat::Text,
            sink: Mutex::new(Box::new(std::io::sink())),
        }
    }

    /// Starts a line for `event`.
    pub fn event(&self, event: &'static str) -> Line<'_> {
        Line {
            logger: self,
            fields: vec![("event", event.to_string())],
        }
    }

    fn write(&self, fields: &[(&'static str, String)]) {
        let now = crate::time::iso8601(crate::time::now());
        let line = match self.format {
            LogFormat::Text => render_text(&now, fields),
            LogFormat::Json => render_json(&now, fields),
        };
        let mut sink = match self.sink.lock() {
            Ok(sink) => sink,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A log that cannot be written must not stop mail.
        let _ = sink.write_all(line.as_bytes()).and_then(|()| sink.flush());
    }
}

/// One log line being built.
pub struct Line<'a> {
    logger: &'a Logger,
    fields: Vec<(&'static str, String)>,
}

impl Line<'_> {
    /// Adds `key=value`.
    pub fn kv(mut self, key: &'static str, value: impl std::fmt::Display) -> Self {
        self.fields.push((key, value.to_string()));
        self
    }

    /// Adds `key=value` when there is a value.
    pub fn opt(self, key: &'static str, value: Option<impl std::fmt::Display>) -> Self {
        match value {
            Some(v) => self.kv(key, v),
            None => self,
        }
    }

    pub fn emit(self) {
        self.logger.write(&self.fields);
    }
}

fn render_text(now: &str, fields: &[(&'static str, String)]) -> String {
    let mut out = String::with_capacity(160);
    out.push_str(now);
    out.push_str(" mxguard:");
    for (key, value) in fields {
        let _ = write!(out, " {key}=");
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
        if plain {
            out.push_str(value);
        } else {
            out.push('"');
            escape_into(&mut out, value);
            out.push('"');
        }
    }
    out.push('\n');
    out
}

fn render_json(now: &str, fields: &[(&'static str, String)]) -> String {
    let mut out = String::with_capacity(200);
    out.push_str("{\"ts\":\"");
    out.push_str(now);
    out.push('"');
    for (key, value) in fields {
        let _ = write!(out, ",\"{key}\":\"");
        escape_into(&mut out, value);
        out.push('"');
    }
    out.push_str("}\n");
    out
}

/// JSON-style escaping, also used inside quoted text values.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<(&'static str, String)> {
        vec![
            ("event", "reject".into()),
            ("client", "192.0.2.1".into()),
            ("reply", "550 5.1.1 \"x\" unknown".into()),
            ("helo", "".into()),
            ("from", "a\r\nb".into()),
        ]
    }

    #[test]
    fn text_quotes_what_needs_it() {
        let line = render_text("T", &fields());
        assert_eq!(
            line,
            "T mxguard: event=reject client=192.0.2.1 reply=\"550 5.1.1 \\\"x\\\" unknown\" helo=\"\" from=\"a\\r\\nb\"\n"
        );
    }

    #[test]
    fn json_has_the_same_fields() {
        let line = render_json("T", &fields());
        assert_eq!(
            line,
            "{\"ts\":\"T\",\"event\":\"reject\",\"client\":\"192.0.2.1\",\"reply\":\"550 5.1.1 \\\"x\\\" unknown\",\"helo\":\"\",\"from\":\"a\\r\\nb\"}\n"
        );
    }
}
