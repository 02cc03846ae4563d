//! One log line → the fields the report uses. Both of mxguard's log
//! formats are read, mixed in one file: text (`TS mxguard: event=… key=value
//! key="quoted \"value\""`) and JSON lines (`{"ts":"…","event":"…",…}`),
//! also behind a syslog prefix (`Nov 29 15:13:06 host mxguard[123]: …`).
//! Anything else is not a log line: `None`, never a panic.

use super::stamp::{self, Time};
use std::borrow::Cow;

/// The fields of one log line the report counts; values unescaped, absent
/// when the line does not have them. Other fields are passed over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub time: Option<Time>,
    pub event: Cow<'a, str>,
    pub client: Option<Cow<'a, str>>,
    pub from: Option<Cow<'a, str>>,
    pub to: Option<Cow<'a, str>>,
    pub stage: Option<Cow<'a, str>>,
    pub check: Option<Cow<'a, str>>,
    pub action: Option<Cow<'a, str>>,
    pub reply: Option<Cow<'a, str>>,
    pub size: Option<Cow<'a, str>>,
    pub status: Option<Cow<'a, str>>,
    pub tls: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    fn set(&mut self, key: &str, value: Cow<'a, str>) {
        let slot = match key {
            "event" => {
                self.event = value;
                return;
            }
            "ts" => {
                self.time = stamp::parse_iso(&value).map(Time::Utc).or(self.time);
                return;
            }
            "client" => &mut self.client,
            "from" => &mut self.from,
            "to" => &mut self.to,
            "stage" => &mut self.stage,
            "check" => &mut self.check,
            "action" => &mut self.action,
            "reply" => &mut self.reply,
            "size" => &mut self.size,
            "status" => &mut self.status,
            "tls" => &mut self.tls,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// The fields of an mxguard log line, or `None` for a line that is not one
/// (no event, no time, broken quoting).
pub fn parse_line(line: &str) -> Option<Fields<'_>> {
    let line = line.trim_end_matches(['\n', '\r']);
    let text_at = event_at(line);
    let json_at = line
        .match_indices('{')
        .map(|(i, _)| i)
        .find(|&i| line[i + 1..].trim_start().starts_with('"'));
    let fields = match (text_at, json_at) {
        (_, Some(j)) if text_at.is_none_or(|t| j < t) => {
            let mut fields = parse_json(&line[j..])?;
            if fields.time.is_none() {
                fields.time = prefix_time(&line[..j]);
            }
            fields
        }
        (Some(t), _) => {
            let mut fields = parse_text(&line[t..])?;
            fields.time = prefix_time(&line[..t]);
            fields
        }
        _ => return None,
    };
    if fields.event.is_empty() || fields.time.is_none() {
        return None;
    }
    // Keys a client cannot forge are plain words; anything else is junk.
    if !fields
        .event
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    Some(fields)
}

/// Where the `event=` field starts (at the start or after a space).
fn event_at(line: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = line[from..].find("event=") {
        let at = from + i;
        if at == 0 || line.as_bytes()[at - 1] == b' ' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The time in what precedes the fields: an ISO 8601 timestamp (mxguard's
/// own, also behind a syslog header), else a syslog date at the start.
fn prefix_time(prefix: &str) -> Option<Time> {
    prefix
        .split_ascii_whitespace()
        .find_map(stamp::parse_iso)
        .map(Time::Utc)
        .or_else(|| stamp::parse_syslog(prefix))
}

/// `key=value key="quoted value" …`; a token without `=` is passed over.
fn parse_text(mut rest: &str) -> Option<Fields<'_>> {
    let mut fields = Fields::default();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Some(fields);
        }
        let token_end = rest.find(' ').unwrap_or(rest.len());
        let Some(eq) = rest[..token_end].find('=') else {
            rest = &rest[token_end..];
            continue;
        };
        let key = &rest[..eq];
        let after = &rest[eq + 1..];
        if let Some(quoted) = after.strip_prefix('"') {
            let (value, used) = unquote(quoted)?;
            fields.set(key, value);
            rest = &quoted[used..];
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            fields.set(key, Cow::Borrowed(&after[..end]));
            rest = &after[end..];
        }
    }
}

/// A flat JSON object of strings (numbers, booleans and null are taken as
/// written; null as absent); nested values make it not a log line.
fn parse_json(text: &str) -> Option<Fields<'_>> {
    let mut fields = Fields::default();
    let mut rest = text.strip_prefix('{')?.trim_start();
    if let Some(after) = rest.strip_prefix('}') {
        return after.trim().is_empty().then_some(fields);
    }
    loop {
        let (key, used) = unquote(rest.strip_prefix('"')?)?;
        rest = rest[1 + used..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            let (value, used) = unquote(quoted)?;
            fields.set(&key, value);
            rest = &quoted[used..];
        } else {
            let end = rest.find([',', '}', ' ']).unwrap_or(rest.len());
            let scalar = &rest[..end];
            let number = scalar
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
            match scalar {
                "null" => {}
                "true" | "false" => fields.set(&key, Cow::Borrowed(scalar)),
                _ if number && !scalar.is_empty() => fields.set(&key, Cow::Borrowed(scalar)),
                _ => return None,
            }
            rest = &rest[end..];
        }
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return after.trim().is_empty().then_some(fields);
        }
        rest = rest.strip_prefix(',')?.trim_start();
    }
}

/// The value of a quoted string whose opening quote is already read, and
/// the bytes used up to and including the closing quote. Escapes are
/// JSON's (the text format uses the same); a bad escape or a missing
/// closing quote is `None`.
fn unquote(text: &str) -> Option<(Cow<'_, str>, usize)> {
    let end = text.find(['"', '\\'])?;
    if text.as_bytes()[end] == b'"' {
        return Some((Cow::Borrowed(&text[..end]), end + 1));
    }
    let mut out = String::with_capacity(text.len().min(256));
    out.push_str(&text[..end]);
    let mut chars = text[end..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), end + i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    '"' | '\\' | '/' => out.push(e),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hi = hex4(&mut chars)?;
                        let c = if (0xD800..0xDC00).contains(&hi) {
                            // A surrogate pair, if the low half follows.
                            let rest = chars.as_str();
                            match rest.strip_prefix("\\u").and_then(|r| {
                                let lo = u32::from_str_radix(r.get(..4)?, 16).ok()?;
                                (0xDC00..0xE000).contains(&lo).then_some(lo)
                            }) {
                                Some(lo) => {
                                    for _ in 0..6 {
                                        chars.next();
                                    }
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                }
                                None => None,
                            }
                        } else {
                            char::from_u32(hi)
                        };
                        out.push(c.unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

fn hex4(chars: &mut std::str::CharIndices<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        let (_, c) = chars.next()?;
        value = value * 16 + c.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: i64 = 1_795_964_515_123; // 2026-11-29T15:01:55.123Z

    fn some(v: &str) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(v))
    }

    #[test]
    fn text_line_with_quoted_values() {
        let line = "2026-11-29T15:01:55.123Z mxguard: event=reject client=192.0.2.7 helo=bot.test \
                    from=<a@b.test> to=<x@elsewhere.test> stage=rcpt check=relay action=reject \
                    reply=\"554 5.7.1 <x@elsewhere.test>: Relay access denied\"\n";
        let f = parse_line(line).unwrap();
        assert_eq!(f.time, Some(Time::Utc(TS)));
        assert_eq!(f.event, "reject");
        assert_eq!(f.client, some("192.0.2.7"));
        assert_eq!(f.from, some("<a@b.test>"));
        assert_eq!(f.to, some("<x@elsewhere.test>"));
        assert_eq!(f.stage, some("rcpt"));
        assert_eq!(f.check, some("relay"));
        assert_eq!(f.action, some("reject"));
        assert_eq!(
            f.reply,
            some("554 5.7.1 <x@elsewhere.test>: Relay access denied")
        );
        assert_eq!(f.size, None);
    }

    #[test]
    fn escapes_are_undone() {
        let line = r#"2026-11-29T15:01:55.123Z mxguard: event=reject helo="a \"b\" c\\d" from="" reply="x\r\ny\tz\u001b" client=192.0.2.1"#;
        let f = parse_line(line).unwrap();
        assert_eq!(f.from, some(""));
        assert_eq!(f.reply.as_deref(), Some("x\r\ny\tz\u{1b}"));
        assert_eq!(f.client, some("192.0.2.1"));
        // A value that looks like a field is the value.
        let line =
            r#"2026-11-29T15:01:55.123Z mxguard: event=accept from="a event=reject to=b" to=<c@d>"#;
        let f = parse_line(line).unwrap();
        assert_eq!(f.event, "accept");
        assert_eq!(f.from, some("a event=reject to=b"));
        assert_eq!(f.to, some("<c@d>"));
    }

    #[test]
    fn json_line() {
        let line = r#"{"ts":"2026-11-29T15:01:55.123Z","event":"accept","client":"192.0.2.9","from":"<a@b.test>","to":"x@example.test,y@example.test","size":"1234","reply":"250 2.0.0 Ok: queued as \"A1\"","helo":"h {\"x"}"#;
        let f = parse_line(line).unwrap();
        assert_eq!(f.time, Some(Time::Utc(TS)));
        assert_eq!(f.event, "accept");
        assert_eq!(f.to, some("x@example.test,y@example.test"));
        assert_eq!(f.size, some("1234"));
        assert_eq!(f.reply.as_deref(), Some("250 2.0.0 Ok: queued as \"A1\""));
        // Other scalars as written, null as absent, spaces allowed.
        let line = r#" { "ts" : "2026-11-29T15:01:55.123Z" , "event" : "accept", "size": 12, "tls": null, "x": true } "#;
        let f = parse_line(line).unwrap();
        assert_eq!(f.size, some("12"));
        assert_eq!(f.tls, None);
        // Surrogate pairs, lone surrogates.
        let line =
            r#"{"ts":"2026-11-29T15:01:55.123Z","event":"reject","helo":"\ud83d\ude00 \ud800x"}"#;
        assert!(parse_line(line).is_some());
        let line =
            r#"{"ts":"2026-11-29T15:01:55.123Z","event":"reject","from":"\ud83d\ude00 \ud800x"}"#;
        assert_eq!(
            parse_line(line).unwrap().from.as_deref(),
            Some("😀 \u{fffd}x")
        );
    }

    #[test]
    fn syslog_prefixes() {
        let own = "Nov 29 15:13:06 mx1 mxguard[123]: 2026-11-29T15:01:55.123Z mxguard: event=disconnect client=192.0.2.1";
        assert_eq!(parse_line(own).unwrap().time, Some(Time::Utc(TS)));
        let bare = "Nov 29 15:13:06 mx1 mxguard[123]: event=disconnect client=192.0.2.1";
        let f = parse_line(bare).unwrap();
        assert!(matches!(
            f.time,
            Some(Time::Syslog {
                month: 11,
                day: 29,
                ..
            })
        ));
        assert_eq!(f.event, "disconnect");
        let json =
            r#"Nov 29 15:13:06 mx1 mxguard[123]: {"event":"disconnect","client":"192.0.2.1"}"#;
        assert!(matches!(
            parse_line(json).unwrap().time,
            Some(Time::Syslog { .. })
        ));
    }

    #[test]
    fn not_log_lines() {
        for junk in [
            "",
            "hello world",
            "2026-11-29T15:01:55.123Z mxguard: listening",
            "mxguard: event=accept client=1",
            "2026-11-29T15:01:55.123Z mxguard: event=reject reply=\"unterminated",
            "2026-11-29T15:01:55.123Z mxguard: event=reject reply=\"bad \\q escape\"",
            "2026-11-29T15:01:55.123Z mxguard: event=",
            "2026-11-29T15:01:55.123Z mxguard: event=\"a b\"",
            "2026-11-29T15:01:55.123Z mxguard: noevent=accept",
            r#"{"ts":"2026-11-29T15:01:55.123Z","event":"accept","to":["a"]}"#,
            r#"{"ts":"2026-11-29T15:01:55.123Z","event":"accept""#,
            r#"{"ts":"2026-11-29T15:01:55.123Z","event":"accept"} trailing"#,
            r#"{"ts":"2026-11-29T15:01:55.123Z","event":"accept","size":12x}"#,
            r#"{"ts":"2026-11-29T15:01:55.123Z","event":"\ud800"}"#,
            "{\"",
            "{}",
            "\"\\u12",
            "event=\"\\u12",
        ] {
            assert_eq!(parse_line(junk), None, "{junk:?}");
        }
    }

    mod props {
        use super::*;
        use crate::config::LogFormat;
        use crate::log::Logger;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                if let Some(f) = parse_line(&String::from_utf8_lossy(&bytes)) {
                    prop_assert!(f.time.is_some() && !f.event.is_empty());
                }
            }

            /// What the real logger writes reads back as it was, in both
            /// formats, whatever the client sent.
            #[test]
            fn the_loggers_lines_read_back(
                from in any::<String>(),
                to in "[ -~]{0,20}",
                reply in any::<String>(),
                json in any::<bool>(),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("mx.log");
                let format = if json { LogFormat::Json } else { LogFormat::Text };
                let config = crate::config::Log {
                    file: Some(path.clone()),
                    format,
                    ..crate::config::Log::default()
                };
                let log = Logger::open(&config).unwrap();
                log.event("reject")
                    .kv("client", "192.0.2.1")
                    .kv("from", &from)
                    .kv("to", &to)
                    .kv("stage", "rcpt")
                    .kv("reply", &reply)
                    .emit();
                log.flush();
                let line = std::fs::read_to_string(&path).unwrap();
                let f = parse_line(&line).unwrap();
                prop_assert!(matches!(f.time, Some(Time::Utc(_))));
                prop_assert_eq!(f.event, "reject");
                prop_assert_eq!(f.client.as_deref(), Some("192.0.2.1"));
                prop_assert_eq!(f.from.as_deref(), Some(from.as_str()));
                prop_assert_eq!(f.to.as_deref(), Some(to.as_str()));
                prop_assert_eq!(f.stage.as_deref(), Some("rcpt"));
                prop_assert_eq!(f.reply.as_deref(), Some(reply.as_str()));
            }
        }
    }

    #[test]
    fn unknown_fields_and_stray_tokens_are_passed_over() {
        let line = "2026-11-29T15:01:55.123Z mxguard: event=disconnect  client=192.0.2.1 stray ptr=x.test tls=TLSv1.3 commands=4";
        let f = parse_line(line).unwrap();
        assert_eq!(f.client, some("192.0.2.1"));
        assert_eq!(f.tls, some("TLSv1.3"));
    }
}
