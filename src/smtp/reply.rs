//! SMTP replies: a code, an RFC 3463 enhanced status and text, rendered once
//! into wire form (multi-line aware).

use crate::decimal::Decimal;
use std::borrow::Cow;
use std::fmt;

/// One SMTP reply, possibly several lines long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status (`"5.7.1"`); absent only where RFC 2034 says so
    /// (the greeting and the positive answers to HELO and EHLO).
    /// Mostly a literal: most replies are written in the code.
    pub status: Option<Cow<'static, str>>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, status: impl Into<Cow<'static, str>>, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status.into()),
            lines: vec![text.into()],
        }
    }

    /// A reply without enhanced status code.
    pub fn plain(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// What refusing with this reply is called in the log.
    pub fn action(&self) -> &'static str {
        if self.code >= 500 {
            "reject"
        } else {
            "tempfail"
        }
    }

    /// The same reply as a temporary failure: 5xy becomes 4xy and the
    /// enhanced status 5.a.b becomes 4.a.b.
    pub fn as_temporary(&self) -> Reply {
        let mut r = self.clone();
        if r.code >= 500 {
            r.code -= 100;
            r.status = r.status.map(|s| s.replacen('5', "4", 1).into());
        }
        r
    }

    /// Appends the wire form, CRLF-terminated lines, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let status = self.status.as_deref().map_or(0, |s| s.len() + 1);
        let size: usize = (self.lines.iter())
            .map(|line| 6 + status + line.len())
            .sum();
        out.reserve(size.max(5));
        let digits = Decimal::of(u64::from(self.code));
        let code = digits.as_bytes();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(code);
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(status) = &self.status {
                out.extend_from_slice(status.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            out.extend_from_slice(code);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// What mxguard answers to EHLO: its name, then the extensions it offers
/// (STARTTLS when `starttls`).
pub fn ehlo(hostname: &str, max_message_size: u64, starttls: bool) -> Reply {
    let mut lines = vec![
        hostname.to_string(),
        "PIPELINING".to_string(),
        format!("SIZE {max_message_size}"),
        "8BITMIME".to_string(),
        "ENHANCEDSTATUSCODES".to_string(),
        "SMTPUTF8".to_string(),
        "DSN".to_string(),
    ];
    if starttls {
        lines.push("STARTTLS".to_string());
    }
    Reply::plain(250, lines)
}

/// The one-line form used in logs: `550 5.1.1 text`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(Decimal::of(u64::from(self.code)).as_str())?;
        if let Some(status) = &self.status {
            f.write_str(" ")?;
            f.write_str(status)?;
        }
        // The lines joined by spaces, if that makes any text.
        let text = self.lines.iter().map(String::len).sum::<usize>() + self.lines.len();
        if text > 1 {
            for line in &self.lines {
                f.write_str(" ")?;
                f.write_str(line)?;
            }
        }
        Ok(())
    }
}

/// Checks a server's whole output: every line is three digits, a space or
/// a dash, text without CR or LF, and CRLF; a 4xx or 5xx line carries an
/// enhanced status of its class. The property tests and the session fuzz
/// target hold every session to this.
pub fn check_stream(out: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))?;
    if !text.is_empty() && !text.ends_with("\r\n") {
        return Err(format!("unterminated last line: {text:?}"));
    }
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        let shaped = b.len() >= 4
            && b[..3].iter().all(u8::is_ascii_digit)
            && (b[3] == b' ' || b[3] == b'-')
            && !line.contains(['\r', '\n']);
        if !shaped {
            return Err(format!("malformed reply line: {line:?}"));
        }
        if (b[0] == b'4' || b[0] == b'5') && !line[4..].starts_with(&format!("{}.", b[0] as char)) {
            return Err(format!("no enhanced status: {line:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_single_and_multi_line() {
        let mut out = Vec::new();
        Reply::new(550, "5.1.1", "User unknown").write_to(&mut out);
        assert_eq!(out, b"550 5.1.1 User unknown\r\n");
        out.clear();
        Reply::plain(250, vec!["mx.example".into(), "PIPELINING".into()]).write_to(&mut out);
        assert_eq!(out, b"250-mx.example\r\n250 PIPELINING\r\n");
        assert_eq!(Reply::new(421, "4.7.0", "bye").to_string(), "421 4.7.0 bye");
        assert_eq!(
            Reply::new(550, "5.7.1", "no").as_temporary().to_string(),
            "450 4.7.1 no"
        );
        assert_eq!(
            Reply::new(451, "4.3.0", "x").as_temporary().to_string(),
            "451 4.3.0 x"
        );
    }

    #[test]
    fn a_multi_line_reply_with_a_status_carries_it_on_every_line() {
        let mut out = b"kept".to_vec();
        let reply = Reply {
            code: 554,
            status: Some("5.7.1".into()),
            lines: vec!["first".into(), String::new(), "last".into()],
        };
        reply.write_to(&mut out);
        assert_eq!(
            out,
            b"kept554-5.7.1 first\r\n554-5.7.1 \r\n554 5.7.1 last\r\n"
        );
        assert_eq!(reply.to_string(), "554 5.7.1 first  last");
    }

    #[test]
    fn a_reply_without_text_is_its_code() {
        let mut out = Vec::new();
        let bare = Reply::plain(250, Vec::new());
        bare.write_to(&mut out);
        assert_eq!(out, b"250\r\n");
        assert_eq!(bare.to_string(), "250");
        let empty_line = Reply::plain(220, vec![String::new()]);
        assert_eq!(empty_line.to_string(), "220");
        let two_empty = Reply::plain(220, vec![String::new(), String::new()]);
        assert_eq!(
            two_empty.to_string(),
            "220  ",
            "the lines joined by a space"
        );
    }
}
