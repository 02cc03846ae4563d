//! The decision log: one line per event, `key=value` (or JSON lines with the
//! same fields), to standard error, a file, or syslog (facility mail, over
//! the local datagram socket). Greppable and fail2ban-friendly: every line
//! starts with a timestamp and `event=`, values with spaces or quotes are
//! quoted, control characters are escaped. A list of addresses in one field
//! is written by [`join_addresses`] and read by [`split_addresses`].
//!
//! Lines to a file or standard error are buffered and written together
//! (one write for many lines under load): a line waits at most
//! [`FLUSH_DELAY`] — a flusher thread sleeps while nothing waits, but for a
//! look once a second whether its logger is gone — and
//! [`Logger::flush`] writes what waits at once (a stop, and when the logger
//! is dropped). Syslog gets each line as it comes (datagrams).

use crate::config::{Log, LogFormat};
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// The longest a line waits in the buffer before it is written.
pub const FLUSH_DELAY: Duration = Duration::from_millis(5);
/// Buffered lines past this are written at once.
const MAX_BUFFERED: usize = 64 * 1024;

/// Reads every line as it is written (the metrics count from them).
pub trait Observer: Send + Sync {
    fn observe(&self, fields: &Fields);
}

/// The fields of a line: every value written one after the other into one
/// buffer, each key with where its value ends (two allocations a line,
/// whatever its number of fields).
pub struct Fields {
    values: String,
    ends: Vec<(&'static str, usize)>,
}

impl Fields {
    /// Room for a line of the usual size, so that it grows no more.
    fn new() -> Fields {
        Fields {
            values: String::with_capacity(192),
            ends: Vec::with_capacity(16),
        }
    }

    /// Adds `key=value`.
    fn push(&mut self, key: &'static str, value: impl std::fmt::Display) {
        let _ = write!(self.values, "{value}");
        self.ends.push((key, self.values.len()));
    }

    /// Adds `key=ip`, written without the formatting machinery.
    fn push_ip(&mut self, key: &'static str, ip: std::net::IpAddr) {
        crate::net::push_ip(&mut self.values, ip);
        self.ends.push((key, self.values.len()));
    }

    /// Adds `key=text`, copied as it is.
    fn push_str(&mut self, key: &'static str, text: &str) {
        self.values.push_str(text);
        self.ends.push((key, self.values.len()));
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(key, end)| {
            let value = self.values.get(start..end).unwrap_or_default();
            start = end;
            (key, value)
        })
    }

    /// The value of the first field named `key` ("" when there is none).
    pub fn get(&self, key: &str) -> &str {
        self.iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, value)| value)
    }

    /// The fields of `pairs` (tests of what reads lines).
    #[cfg(test)]
    pub fn of(pairs: &[(&'static str, &str)]) -> Fields {
        let mut fields = Fields::new();
        for (key, value) in pairs {
            fields.push(key, value);
        }
        fields
    }
}

/// Where log lines go.
pub struct Logger {
    /// JSON lines rather than `key=value` text (a reload may change it).
    json: AtomicBool,
    /// The sink, and the flusher's wake-up when lines start waiting.
    shared: Arc<(Mutex<Sink>, Condvar)>,
    /// Reads every line, when metrics are on.
    observer: OnceLock<Arc<dyn Observer>>,
}

enum Sink {
    /// A file or standard error, and the lines waiting to be written
    /// (none when not `buffered`: no flusher thread could be started).
    Stream {
        out: Box<dyn Write + Send>,
        waiting: Vec<u8>,
        buffered: bool,
    },
    /// The syslog socket (reconnected after a failed send).
    Syslog {
        path: PathBuf,
        socket: Option<UnixDatagram>,
    },
}

/// A log file mxguard creates: its user writes, its group reads (as the
/// shipped logrotate rule creates it), nobody else: the log names clients
/// and addresses.
const LOG_FILE_MODE: u32 = 0o640;

/// `<mail.info>` in RFC 3164 terms: facility 2, severity 6.
const SYSLOG_PRIORITY: u8 = 2 * 8 + 6;

impl Logger {
    /// Where `[log]` says: syslog, `log.file` (appended, created if
    /// missing), or standard error.
    pub fn open(config: &Log) -> std::io::Result<Logger> {
        Ok(Logger::with_sink(
            config.format == LogFormat::Json,
            Sink::open(config)?,
        ))
    }

    fn with_sink(json: bool, sink: Sink) -> Logger {
        let shared = Arc::new((Mutex::new(sink), Condvar::new()));
        let weak = Arc::downgrade(&shared);
        // Without a thread (out of them), lines are written as they come.
        let flusher = std::thread::Builder::new()
            .name("mxguard-log".into())
            .spawn(move || flusher(weak));
        if flusher.is_err() {
            lock(&shared.0).unbuffer();
        }
        Logger {
            json: AtomicBool::new(json),
            shared,
            observer: OnceLock::new(),
        }
    }

    /// Writes the lines waiting in the buffer now.
    pub fn flush(&self) {
        lock(&self.shared.0).flush();
    }

    /// Opens the log again, as `[log]` now says (a reload; after
    /// logrotate moved the file away, a new one is made). Lines go to the
    /// old place until the new one is open; if it cannot be opened, they
    /// keep going there.
    pub fn reopen(&self, config: &Log) -> std::io::Result<()> {
        let sink = Sink::open(config)?;
        let mut old = lock(&self.shared.0);
        old.flush();
        let unbuffered = matches!(
            &*old,
            Sink::Stream {
                buffered: false,
                ..
            }
        );
        *old = sink;
        if unbuffered {
            old.unbuffer();
        }
        drop(old);
        self.json
            .store(config.format == LogFormat::Json, Ordering::Relaxed);
        Ok(())
    }

    /// A logger that writes nowhere (for tests of other parts).
    pub fn discard() -> Logger {
        let sink = Sink::Stream {
            out: Box::new(std::io::sink()),
            waiting: Vec::new(),
            buffered: true,
        };
        Logger::with_sink(false, sink)
    }

    /// From now on, every line is also given to `observer` (the metrics).
    pub fn count_into(&self, observer: Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    /// Starts a line for `event`.
    pub fn event(&self, event: &'static str) -> Line<'_> {
        let mut fields = Fields::new();
        fields.push("event", event);
        Line {
            logger: self,
            fields,
        }
    }

    fn write(&self, fields: &Fields) {
        if let Some(observer) = self.observer.get() {
            observer.observe(fields);
        }
        let time = crate::time::now();
        let json = self.json.load(Ordering::Relaxed);
        let line = if json {
            render_json(time, fields)
        } else {
            render_text(time, fields)
        };
        let (sink, wake) = &*self.shared;
        let mut sink = lock(sink);
        // A log that cannot be written must not stop mail.
        match &mut *sink {
            Sink::Stream { .. } => {
                if sink.take(&line) {
                    wake.notify_one();
                }
            }
            Sink::Syslog { path, socket } => {
                // Syslog stamps the time itself; the message is the line
                // from `event=` on (or the JSON object).
                let message = if json {
                    line.trim_end()
                } else {
                    line.trim_end()
                        .split_once(" mxguard: ")
                        .map_or(line.trim_end(), |(_, m)| m)
                };
                let datagram = format!(
                    "<{SYSLOG_PRIORITY}>{} mxguard[{}]: {message}",
                    crate::time::rfc3164(time),
                    std::process::id()
                );
                let sent = socket
                    .as_ref()
                    .is_some_and(|s| s.send(datagram.as_bytes()).is_ok());
                if !sent {
                    // syslogd restarted: one new connection, one retry.
                    *socket = connect_syslog(path).ok();
                    if let Some(s) = socket {
                        let _ = s.send(datagram.as_bytes());
                    }
                }
            }
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.flush();
        // The flusher holds only a weak reference: it ends on its own.
        self.shared.1.notify_one();
    }
}

fn lock(sink: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes waiting lines [`FLUSH_DELAY`] after the first of them, and sleeps
/// while none waits; ends with its logger.
fn flusher(shared: std::sync::Weak<(Mutex<Sink>, Condvar)>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let (sink, wake) = &*strong;
        let guard = lock(sink);
        let waiting = !guard.is_idle();
        // Wakes for a first waiting line, or now and then to see whether
        // its logger is gone.
        let guard = match waiting {
            true => guard,
            false => match wake.wait_timeout(guard, Duration::from_secs(1)) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            },
        };
        let waiting = !guard.is_idle();
        drop(guard);
        drop(strong);
        if waiting {
            std::thread::sleep(FLUSH_DELAY);
            if let Some(strong) = shared.upgrade() {
                lock(&strong.0).flush();
            }
        }
    }
}

impl Sink {
    /// Whether no line waits to be written.
    fn is_idle(&self) -> bool {
        match self {
            Sink::Stream { waiting, .. } => waiting.is_empty(),
            Sink::Syslog { .. } => true,
        }
    }

    /// Writes the waiting lines.
    fn flush(&mut self) {
        if let Sink::Stream { out, waiting, .. } = self {
            if !waiting.is_empty() {
                let _ = out.write_all(waiting).and_then(|()| out.flush());
                waiting.clear();
            }
        }
    }

    /// Adds a line to those waiting, written at once when the buffer is
    /// full (or there is no flusher); true when it is the first one
    /// waiting (the flusher is to be woken).
    fn take(&mut self, line: &str) -> bool {
        let Sink::Stream {
            waiting, buffered, ..
        } = self
        else {
            return false;
        };
        let first = waiting.is_empty();
        waiting.extend_from_slice(line.as_bytes());
        if waiting.len() >= MAX_BUFFERED || !*buffered {
            self.flush();
            return false;
        }
        first
    }

    /// Lines are written as they come from now on (no flusher).
    fn unbuffer(&mut self) {
        if let Sink::Stream { buffered, .. } = self {
            *buffered = false;
        }
    }

    fn open(config: &Log) -> std::io::Result<Sink> {
        if config.syslog {
            let path = config.syslog_socket.clone();
            let socket = connect_syslog(&path).ok();
            return Ok(Sink::Syslog { path, socket });
        }
        let out: Box<dyn Write + Send> = match &config.file {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(LOG_FILE_MODE)
                    .open(path)?,
            ),
            None => Box::new(std::io::stderr()),
        };
        Ok(Sink::Stream {
            out,
            waiting: Vec::new(),
            buffered: true,
        })
    }
}

fn connect_syslog(path: &std::path::Path) -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    Ok(socket)
}

/// One log line being built.
pub struct Line<'a> {
    logger: &'a Logger,
    fields: Fields,
}

impl Line<'_> {
    /// Adds `key=value`.
    pub fn kv(mut self, key: &'static str, value: impl std::fmt::Display) -> Self {
        self.fields.push(key, value);
        self
    }

    /// Adds `key=ip`: the same text as `kv`, cheaper (the client's
    /// address is on every session's lines).
    pub fn ip(mut self, key: &'static str, ip: std::net::IpAddr) -> Self {
        self.fields.push_ip(key, ip);
        self
    }

    /// Adds `key=text`: the same as `kv`, without the formatting
    /// machinery (the values of every session's lines).
    pub fn text(mut self, key: &'static str, text: &str) -> Self {
        self.fields.push_str(key, text);
        self
    }

    /// Adds `key=n`, likewise.
    pub fn num(mut self, key: &'static str, n: u64) -> Self {
        self.fields
            .push_str(key, crate::decimal::Decimal::of(n).as_str());
        self
    }

    /// Adds `key=value` when there is a value.
    pub fn opt(self, key: &'static str, value: Option<impl std::fmt::Display>) -> Self {
        match value {
            Some(v) => self.kv(key, v),
            None => self,
        }
    }

    /// Adds `key=text` when there is a text.
    pub fn opt_text(self, key: &'static str, text: Option<&str>) -> Self {
        match text {
            Some(text) => self.text(key, text),
            None => self,
        }
    }

    pub fn emit(self) {
        self.logger.write(&self.fields);
    }
}

/// The line as text, at the size it will have unless values need quotes.
fn render_text(now: std::time::SystemTime, fields: &Fields) -> String {
    let keys: usize = fields.ends.iter().map(|(key, _)| key.len() + 2).sum();
    let mut out = String::with_capacity(40 + keys + fields.values.len());
    crate::time::push_iso8601(&mut out, now);
    out.push_str(" mxguard:");
    for (key, value) in fields.iter() {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        let plain = !value.is_empty()
            && (value.bytes()).all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
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

fn render_json(now: std::time::SystemTime, fields: &Fields) -> String {
    let keys: usize = fields.ends.iter().map(|(key, _)| key.len() + 6).sum();
    let mut out = String::with_capacity(40 + keys + fields.values.len());
    out.push_str("{\"ts\":\"");
    crate::time::push_iso8601(&mut out, now);
    out.push('"');
    for (key, value) in fields.iter() {
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":\"");
        escape_into(&mut out, value);
        out.push('"');
    }
    out.push_str("}\n");
    out
}

/// A list of addresses as one field value (the `to=` of `accept` and
/// `quarantine`): joined with `,`, and inside an address `\` written `\\`
/// and `,` written `\,` (only a quoted local part, `"a,b"@example.com`,
/// holds either), so [`split_addresses`] gives the list back, in both log
/// formats. Ordinary addresses are written as they are.
pub fn join_addresses(addresses: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for (i, address) in addresses.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in address.as_ref().chars() {
            if matches!(c, ',' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// The addresses of a list [`join_addresses`] wrote (nothing for an empty
/// value); also reads the lists of older versions, which had no escapes.
pub fn split_addresses(list: &str) -> SplitAddresses<'_> {
    SplitAddresses {
        rest: (!list.is_empty()).then_some(list),
    }
}

/// The iterator of [`split_addresses`]: borrowed unless an address had an
/// escape.
pub struct SplitAddresses<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for SplitAddresses<'a> {
    type Item = std::borrow::Cow<'a, str>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let end = rest.find([',', '\\']).unwrap_or(rest.len());
        if rest.as_bytes().get(end) != Some(&b'\\') {
            self.rest = rest.get(end + 1..).filter(|_| end < rest.len());
            return Some(std::borrow::Cow::Borrowed(&rest[..end]));
        }
        let mut address = String::from(&rest[..end]);
        let mut chars = rest[end..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                // A lone `\` at the very end stands for itself.
                '\\' => address.push(chars.next().map_or('\\', |(_, e)| e)),
                ',' => {
                    self.rest = Some(&rest[end + i + 1..]);
                    return Some(std::borrow::Cow::Owned(address));
                }
                c => address.push(c),
            }
        }
        self.rest = None;
        Some(std::borrow::Cow::Owned(address))
    }
}

/// JSON-style escaping, also used inside quoted text values (and by the
/// report's JSON).
pub fn escape_into(out: &mut String, value: &str) {
    // Most values need nothing escaped: copied up to the first byte that
    // may (a quote, a backslash, a control, anything not ASCII).
    let plain = (value.bytes())
        .position(|b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f)
        .unwrap_or(value.len());
    out.push_str(&value[..plain]);
    for c in value[plain..].chars() {
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

    #[test]
    fn values_are_escaped_from_the_first_byte_that_needs_it() {
        let mut out = String::new();
        for value in [
            "plain é text",
            "a\"b\\c",
            "tab\there",
            "nel\u{85}é\u{7f}",
            "",
        ] {
            escape_into(&mut out, value);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain é text|a\\\"b\\\\c|tab\\there|nel\\u0085é\\u007f||"
        );
    }

    fn fields() -> Fields {
        Fields::of(&[
            ("event", "reject"),
            ("client", "192.0.2.1"),
            ("reply", "550 5.1.1 \"x\" unknown"),
            ("helo", ""),
            ("from", "a\r\nb"),
        ])
    }

    #[test]
    fn fields_are_read_back_in_order_empty_ones_included() {
        let fields = fields();
        let read: Vec<(&str, &str)> = fields.iter().collect();
        assert_eq!(
            read,
            [
                ("event", "reject"),
                ("client", "192.0.2.1"),
                ("reply", "550 5.1.1 \"x\" unknown"),
                ("helo", ""),
                ("from", "a\r\nb"),
            ]
        );
        assert_eq!(fields.get("client"), "192.0.2.1");
        assert_eq!(fields.get("helo"), "");
        assert_eq!(fields.get("size"), "");
    }

    #[test]
    fn text_and_num_write_what_kv_writes() {
        let logger = Logger::discard();
        let fast = (logger.event("x").text("s", "a \"b\""))
            .num("n", 1_234_567)
            .num("zero", 0)
            .opt_text("o", Some("z"))
            .opt_text("none", None);
        let formatted = (logger.event("x").kv("s", "a \"b\""))
            .kv("n", 1_234_567)
            .kv("zero", 0)
            .opt("o", Some("z"))
            .opt("none", None::<&str>);
        let fast: Vec<_> = fast
            .fields
            .iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let formatted: Vec<_> = (formatted.fields.iter())
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        assert_eq!(fast, formatted);
        assert_eq!(fast.len(), 5);
    }

    #[test]
    fn text_quotes_what_needs_it() {
        let line = render_text(std::time::UNIX_EPOCH, &fields());
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z mxguard: event=reject client=192.0.2.1 reply=\"550 5.1.1 \\\"x\\\" unknown\" helo=\"\" from=\"a\\r\\nb\"\n"
        );
    }

    fn file_logger(dir: &std::path::Path) -> (Logger, std::path::PathBuf) {
        let path = dir.join("mx.log");
        let config = Log {
            file: Some(path.clone()),
            ..Log::default()
        };
        (Logger::open(&config).unwrap(), path)
    }

    #[test]
    fn buffered_lines_are_written_by_a_flush_and_by_the_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = file_logger(dir.path());
        log.event("one").emit();
        log.event("two").emit();
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        log.event("three").emit();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().nth(2).unwrap().ends_with("event=three"),
            "{text}"
        );
    }

    /// A writer whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_wait_until_the_buffer_is_full() {
        let written = Shared::default();
        let mut sink = Sink::Stream {
            out: Box::new(written.clone()),
            waiting: Vec::new(),
            buffered: true,
        };
        let line = format!("{}\n", "x".repeat(999));
        assert!(sink.take(&line), "the first line wakes the flusher");
        assert!(!sink.take(&line), "the second does not");
        for _ in 2..MAX_BUFFERED / 1000 {
            sink.take(&line);
        }
        assert!(written.0.lock().unwrap().is_empty());
        sink.take(&line);
        assert_eq!(
            written.0.lock().unwrap().len(),
            (MAX_BUFFERED / 1000 + 1) * 1000
        );
        assert!(sink.is_idle());
        sink.unbuffer();
        assert!(!sink.take(&line));
        assert!(
            sink.is_idle(),
            "without a flusher, a line is written at once"
        );
    }

    #[test]
    fn address_lists() {
        let list = ["a@x.test", "\"a,b\"@x.test", "\"c\\\\d\"@x.test"];
        let joined = join_addresses(&list);
        assert_eq!(joined, "a@x.test,\"a\\,b\"@x.test,\"c\\\\\\\\d\"@x.test");
        assert_eq!(split_addresses(&joined).collect::<Vec<_>>(), list);
        // What older versions wrote reads as it did.
        assert_eq!(
            split_addresses("a@x.test,b@y.test").collect::<Vec<_>>(),
            ["a@x.test", "b@y.test"]
        );
        assert_eq!(split_addresses("").count(), 0);
        assert_eq!(split_addresses("a,,b").collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(split_addresses("a,").collect::<Vec<_>>(), ["a", ""]);
        assert_eq!(split_addresses("x\\").collect::<Vec<_>>(), ["x\\"]);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any addresses, commas, quotes and backslashes included.
            #[test]
            fn address_lists_round_trip(list in proptest::collection::vec(".+", 1..6)) {
                let joined = join_addresses(&list);
                let back: Vec<String> = split_addresses(&joined).map(|a| a.into_owned()).collect();
                prop_assert_eq!(back, list);
            }
        }
    }

    #[test]
    fn json_has_the_same_fields() {
        let line = render_json(std::time::UNIX_EPOCH, &fields());
        assert_eq!(
            line,
            "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"event\":\"reject\",\"client\":\"192.0.2.1\",\"reply\":\"550 5.1.1 \\\"x\\\" unknown\",\"helo\":\"\",\"from\":\"a\\r\\nb\"}\n"
        );
    }
}
