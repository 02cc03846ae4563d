//! A message on its way into the spool (sans-IO): the decoded DATA stream
//! goes in, piece by piece, and what the spool keeps comes out.
//!
//! - Header fields that claim to be our own verdict (an
//!   `Authentication-Results:` whose authserv-id is our host name, however
//!   folded, commented, quoted or cased) are removed, anywhere in the
//!   header block however long it is.
//! - The header block is capped (`limits.max_header_size`): over the cap,
//!   the message is refused (552 5.3.4) and nothing more is kept.
//! - No line over 998 octets (RFC 5321 section 4.5.3.1.6) leaves as it
//!   came: header lines are folded (CRLF before a space or tab, or
//!   CRLF SP where there is none), body lines broken with CRLF, never
//!   truncated (`limits.long_lines = "wrap"`); or the message is refused
//!   (`"reject"`).
//! - The header block as received is kept (up to the cap), and the body as
//!   received is fed to the DKIM body hashes, for message authentication
//!   without the message in memory.
//!
//! The header block ends at the first empty line, or at the first line that
//! is not a header field — nor the continuation of one — which then starts
//! the body, after an empty line put in so that no reader downstream takes
//! it (or what follows) for a header.

use super::auth_results;
use super::body_hash::BodyHashes;
use serde::Deserialize;

/// Lines over [`MAX_LINE`] octets (`limits.long_lines`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongLines {
    /// Header lines folded, body lines broken; nothing is cut.
    Wrap,
    /// The message is refused at the end of DATA (500 5.5.2).
    Reject,
}

/// The longest line, CRLF aside (RFC 5321 section 4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// Why the message cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// The header block is larger than `limits.max_header_size`.
    HeaderTooBig,
    /// A line is longer than 998 octets and `limits.long_lines = "reject"`.
    LongLine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Headers,
    Body,
    /// The message will be refused: nothing more is kept.
    Discard,
}

/// What comes out at the end, besides the bytes.
pub struct Finished {
    /// The header block as received (for message authentication).
    pub header_block: Vec<u8>,
    /// The DKIM body hashes, when they were asked for.
    pub body_hashes: Option<BodyHashes>,
    /// Line breaks put into lines that were too long.
    pub wrapped: u32,
    pub flaw: Option<Flaw>,
}

pub struct Intake {
    /// Lower case, for comparing authserv-ids.
    hostname: String,
    max_header: usize,
    long_lines: LongLines,
    authenticate: bool,
    part: Part,
    /// The header line being read (not yet ended by LF).
    line: Vec<u8>,
    /// The header field being read: its first line and continuations.
    field: Vec<u8>,
    header_block: Vec<u8>,
    body_hashes: Option<BodyHashes>,
    /// Octets of the current body line written so far.
    body_line: usize,
    wrapped: u32,
    flaw: Option<Flaw>,
}

impl Intake {
    /// `authenticate`: keep the header block and compute DKIM body hashes.
    pub fn new(
        hostname: &str,
        max_header: u64,
        long_lines: LongLines,
        authenticate: bool,
    ) -> Intake {
        Intake {
            hostname: hostname.to_ascii_lowercase(),
            max_header: usize::try_from(max_header).unwrap_or(usize::MAX),
            long_lines,
            authenticate,
            part: Part::Headers,
            line: Vec::new(),
            field: Vec::new(),
            header_block: Vec::new(),
            body_hashes: None,
            body_line: 0,
            wrapped: 0,
            flaw: None,
        }
    }

    /// Takes the next decoded piece; what the spool keeps is appended to
    /// `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut at = 0;
        while at < input.len() && self.part == Part::Headers {
            let rest = &input[at..];
            let end = rest.iter().position(|&b| b == b'\n').map(|i| i + 1);
            let take = end.unwrap_or(rest.len());
            if self.header_block.len() + self.line.len() + take > self.max_header {
                self.refuse(Flaw::HeaderTooBig);
                return;
            }
            self.line.extend_from_slice(&rest[..take]);
            at += take;
            if end.is_some() {
                let line = std::mem::take(&mut self.line);
                self.header_line(line, out);
            }
        }
        if self.part == Part::Body {
            self.body(&input[at..], out);
        }
    }

    /// Whether the content is already refused (nothing more is kept).
    pub fn flawed(&self) -> bool {
        self.flaw.is_some()
    }

    /// The end of the message: what is still held goes out.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Finished {
        if self.part == Part::Headers {
            let line = std::mem::take(&mut self.line);
            if !line.is_empty() {
                self.header_line(line, out);
            }
            self.flush_field(out);
        }
        if self.authenticate && self.flaw.is_none() && self.body_hashes.is_none() {
            // Headers alone: the body is empty.
            self.body_hashes = Some(BodyHashes::for_headers(&self.header_block));
        }
        Finished {
            header_block: std::mem::take(&mut self.header_block),
            body_hashes: self.body_hashes.take(),
            wrapped: self.wrapped,
            flaw: self.flaw,
        }
    }

    fn refuse(&mut self, flaw: Flaw) {
        self.flaw = Some(flaw);
        self.part = Part::Discard;
        self.line = Vec::new();
        self.field = Vec::new();
        self.body_hashes = None;
    }

    /// One whole line of the header block (or the line that ends it).
    fn header_line(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        let empty = line == b"\r\n" || line == b"\n";
        // A folded line continues the field before it; with none before
        // it (the message's first line), it would continue the header we
        // put on top of the message.
        let continuation = matches!(line.first(), Some(b' ' | b'\t')) && !self.field.is_empty();
        if empty || !(continuation || starts_field(&line)) {
            self.flush_field(out);
            if self.part == Part::Discard {
                return;
            }
            self.part = Part::Body;
            if self.authenticate {
                self.body_hashes = Some(BodyHashes::for_headers(&self.header_block));
            }
            if empty {
                self.header_block.extend_from_slice(&line);
                out.extend_from_slice(&line);
            } else {
                // A line that is no header ends the header block; the empty
                // line put before it makes every reader agree (Dovecot, for
                // one, reads headers up to an empty line).
                out.extend_from_slice(b"\r\n");
                self.body(&line, out);
            }
            return;
        }
        self.header_block.extend_from_slice(&line);
        if !continuation {
            self.flush_field(out);
        }
        self.field.extend_from_slice(&line);
    }

    /// The field read so far goes out, folded where a line is too long,
    /// unless it claims to be ours (as received, or once folded: a fold
    /// must not make a claim out of a long token).
    fn flush_field(&mut self, out: &mut Vec<u8>) {
        let field = std::mem::take(&mut self.field);
        if field.is_empty() || self.part == Part::Discard {
            return;
        }
        let mut folded = Vec::with_capacity(field.len());
        for line in field.split_inclusive(|&b| b == b'\n') {
            let content = content_len(line);
            if content <= MAX_LINE {
                folded.extend_from_slice(line);
                continue;
            }
            if self.long_lines == LongLines::Reject {
                self.refuse(Flaw::LongLine);
                return;
            }
            self.wrapped += fold(&line[..content], &mut folded);
            folded.extend_from_slice(&line[content..]);
        }
        if self.claims_ours(&field) || self.claims_ours(&folded) {
            return;
        }
        out.extend_from_slice(&folded);
    }

    /// Whether a header field is an `Authentication-Results:` in our name.
    fn claims_ours(&self, field: &[u8]) -> bool {
        field.iter().position(|&b| b == b':').is_some_and(|colon| {
            auth_results::is_auth_results(&field[..colon])
                && auth_results::claims(&field[colon + 1..], &self.hostname)
        })
    }

    /// Body bytes: hashed as received, written with long lines broken.
    fn body(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Some(hashes) = &mut self.body_hashes {
            hashes.write(bytes);
        }
        for segment in crate::lines::of(bytes) {
            let ends_line = segment.last() == Some(&b'\n');
            if self.body_line + content_len(segment) <= MAX_LINE {
                out.extend_from_slice(segment);
                self.body_line = if ends_line {
                    0
                } else {
                    self.body_line + segment.len()
                };
                continue;
            }
            if self.long_lines == LongLines::Reject {
                self.refuse(Flaw::LongLine);
                return;
            }
            self.break_line(segment, out);
        }
    }

    /// A body segment whose line grows past the limit, byte by byte:
    /// CRLF goes in before the byte that would pass it, never inside a
    /// UTF-8 sequence, never before a CR (which may end the line).
    fn break_line(&mut self, segment: &[u8], out: &mut Vec<u8>) {
        for &b in segment {
            match b {
                b'\n' => self.body_line = 0,
                b'\r' => self.body_line += 1,
                _ => {
                    if self.body_line > 0 && self.body_line + utf8_len(b) > MAX_LINE {
                        out.extend_from_slice(b"\r\n");
                        self.body_line = 0;
                        self.wrapped += 1;
                    }
                    self.body_line += 1;
                }
            }
            out.push(b);
        }
    }
}

/// What message authentication needs of a stored message, read from
/// `message` a piece at a time (blocking): its header block and the DKIM
/// body hashes; `None` for a header block over `max_header` octets.
pub fn authentication_input(
    mut message: impl std::io::Read,
    max_header: u64,
) -> std::io::Result<Option<(Vec<u8>, Vec<super::body_hash::Digest>)>> {
    // The host name is not ours to judge here: nothing is dropped.
    let mut intake = Intake::new("", max_header, LongLines::Wrap, true);
    let mut piece = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = message.read(&mut piece)?;
        if n == 0 {
            break;
        }
        out.clear();
        intake.feed(&piece[..n], &mut out);
    }
    let finished = intake.finish(&mut out);
    Ok(finished
        .body_hashes
        .map(|hashes| (finished.header_block, hashes.finish())))
}

/// A header we write ourselves (our Authentication-Results, which quotes
/// names taken from the message), with every line over [`MAX_LINE`] octets
/// folded as the intake folds a received one.
pub fn fold_header(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 8);
    for line in header.split_inclusive(|&b| b == b'\n') {
        let content = content_len(line);
        if content > MAX_LINE {
            fold(&line[..content], &mut out);
            out.extend_from_slice(&line[content..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Whether a line starts a header field: a name of printable characters
/// (spaces allowed before the colon, as the obsolete syntax does).
fn starts_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic())
}

/// The octets of a line without its line end (CRLF, LF, or a last CR
/// whose LF is still to come).
fn content_len(line: &[u8]) -> usize {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line).len()
}

/// How many octets the UTF-8 sequence starting with `b` has (1 for ASCII
/// and for bytes that start none).
fn utf8_len(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Folds one header line's content into lines of at most [`MAX_LINE`]
/// octets: before a space or tab where there is one, else with CRLF SP at
/// a UTF-8 boundary. Ends without the final line end; returns how many
/// line breaks it put in.
fn fold(content: &[u8], out: &mut Vec<u8>) -> u32 {
    let mut rest = content;
    let mut budget = MAX_LINE;
    let mut breaks = 0;
    while rest.len() > budget {
        breaks += 1;
        let wsp = |b: &u8| *b == b' ' || *b == b'\t';
        // Before a space, unless what would stand on the line is only
        // spaces (a line of white space may end a header block for some).
        let at_space = rest[1..=budget]
            .iter()
            .rposition(wsp)
            .map(|i| i + 1)
            .filter(|&cut| !rest[..cut].iter().all(wsp));
        match at_space {
            Some(cut) => {
                out.extend_from_slice(&rest[..cut]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[cut..];
                budget = MAX_LINE;
            }
            None => {
                let cut = utf8_boundary(rest, budget);
                out.extend_from_slice(&rest[..cut]);
                out.extend_from_slice(b"\r\n ");
                rest = &rest[cut..];
                budget = MAX_LINE - 1;
            }
        }
    }
    out.extend_from_slice(rest);
    breaks
}

/// The last cut at or before `at` that does not split a UTF-8 sequence
/// (looking back at most three octets; `at` itself otherwise).
fn utf8_boundary(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3).max(1)..=at)
        .rev()
        .find(|&i| !matches!(bytes.get(i), Some(0x80..=0xBF)))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(message: &[u8], long_lines: LongLines, pieces: usize) -> (Vec<u8>, Finished) {
        let mut intake = Intake::new("MX.test", 64 * 1024, long_lines, true);
        let mut out = Vec::new();
        let size = message.len().div_ceil(pieces.max(1)).max(1);
        for piece in message.chunks(size) {
            intake.feed(piece, &mut out);
        }
        let finished = intake.finish(&mut out);
        (out, finished)
    }

    fn longest_line(bytes: &[u8]) -> usize {
        bytes
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn our_claims_go_wherever_they_are_and_however_written() {
        let padding = "X-Pad: ".to_string() + &"p".repeat(900) + "\r\n";
        let mut message = String::new();
        for _ in 0..40 {
            message.push_str(&padding);
        }
        message.push_str(concat!(
            "Authentication-Results:\r\n mx.test; dkim=pass\r\n",
            "Authentication-Results: (x) mx.test; dkim=pass\r\n",
            "Authentication-Results: \"mx.test\"; dkim=pass\r\n",
            "Authentication-Results: MX.TEST.; dkim=pass\r\n",
            "authentication-results : mx.test;\r\n\tspf=pass\r\n",
            "Authentication-Results: other.test; spf=pass\r\n",
            "Subject: hi\r\n",
            "\r\n",
            "Authentication-Results: mx.test; in the body stays\r\n",
        ));
        for pieces in [1, 3, 1000] {
            let (out, finished) = run(message.as_bytes(), LongLines::Wrap, pieces);
            let out = String::from_utf8(out).unwrap();
            assert_eq!(
                out.matches("mx.test;").count(),
                1,
                "only the body's: {pieces}"
            );
            assert!(out.contains("Authentication-Results: other.test; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.test; in the body stays\r\n"));
            assert!(out.starts_with(&padding));
            assert_eq!(finished.flaw, None);
            assert_eq!(finished.wrapped, 0);
            assert!(finished.header_block.ends_with(b"Subject: hi\r\n\r\n"));
        }
    }

    #[test]
    fn a_header_block_over_the_cap_is_refused() {
        let message = format!("X-Pad: {}\r\n\r\nbody\r\n", "p".repeat(70 * 1024));
        let (out, finished) = run(message.as_bytes(), LongLines::Wrap, 7);
        assert_eq!(finished.flaw, Some(Flaw::HeaderTooBig));
        assert!(out.is_empty());
        // Exactly at the cap is fine.
        let line = format!("X-Pad: {}\r\n", "p".repeat(64 * 1024 - 11));
        let message = format!("{line}\r\n");
        assert_eq!(message.len(), 64 * 1024);
        let (_, finished) = run(message.as_bytes(), LongLines::Wrap, 1);
        assert_eq!(finished.flaw, None);
    }

    #[test]
    fn long_lines_are_wrapped_and_nothing_is_lost() {
        let subject = format!("Subject: {}\r\n", "word ".repeat(400));
        let token = format!("X-Token: {}\r\n", "t".repeat(2500));
        let body_line = "b".repeat(5000);
        let utf8 = "é".repeat(1500);
        let message = format!("{subject}{token}\r\n{body_line}\r\n{utf8}\r\nshort\r\n");
        let (_, whole) = run(message.as_bytes(), LongLines::Wrap, 1);
        // subject 2, token 3, body line 5, UTF-8 line 3
        assert_eq!(whole.wrapped, 13);
        for pieces in [1, 2, 5, 999] {
            let (out, finished) = run(message.as_bytes(), LongLines::Wrap, pieces);
            assert_eq!(finished.flaw, None);
            assert!(longest_line(&out) <= MAX_LINE, "{pieces}");
            let text = String::from_utf8(out.clone()).expect("no UTF-8 sequence split");
            let (headers, body) = text.split_once("\r\n\r\n").unwrap();
            // Folded at a space, a header unfolds to what was sent; where
            // there was none, the fold added one.
            let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", "\t");
            assert!(unfolded.starts_with(subject.trim_end()), "{pieces}");
            let squeeze = |s: &str| s.replace("\r\n", "").replace(' ', "");
            assert_eq!(squeeze(headers), squeeze(&format!("{subject}{token}")));
            // Body lines are only broken: joined again, they are the same.
            assert_eq!(body.replace("\r\n", ""), format!("{body_line}{utf8}short"));
            assert_eq!(finished.wrapped, whole.wrapped, "{pieces}");
        }
    }

    #[test]
    fn a_line_of_exactly_998_octets_is_left_alone() {
        let line = "a".repeat(MAX_LINE);
        let message = format!("X-A: {}\r\n\r\n{line}\r\n", &line[5..]);
        let (out, finished) = run(message.as_bytes(), LongLines::Reject, 3);
        assert_eq!(out, message.as_bytes());
        assert_eq!((finished.flaw, finished.wrapped), (None, 0));
    }

    #[test]
    fn long_lines_can_be_refused_instead() {
        let message = format!("Subject: x\r\n\r\n{}\r\n", "b".repeat(1000));
        let (_, finished) = run(message.as_bytes(), LongLines::Reject, 4);
        assert_eq!(finished.flaw, Some(Flaw::LongLine));
        let message = format!("Subject: {}\r\n\r\nb\r\n", "s ".repeat(600));
        let (_, finished) = run(message.as_bytes(), LongLines::Reject, 1);
        assert_eq!(finished.flaw, Some(Flaw::LongLine));
    }

    #[test]
    fn a_line_that_is_no_header_starts_the_body_after_an_empty_line() {
        let message = b"Subject: x\r\nthis is body\r\nAuthentication-Results: mx.test; x\r\n";
        let (out, finished) = run(message, LongLines::Wrap, 1);
        assert_eq!(
            out,
            b"Subject: x\r\n\r\nthis is body\r\nAuthentication-Results: mx.test; x\r\n"
        );
        assert_eq!(finished.header_block, b"Subject: x\r\n");
        // `X Bad: y` is no field name: what follows is not a header either.
        let message =
            b"Subject: x\r\nX Bad: y\r\nAuthentication-Results: mx.test; dkim=pass\r\n\r\nbody\r\n";
        let (out, _) = run(message, LongLines::Wrap, 3);
        assert!(out.starts_with(b"Subject: x\r\n\r\nX Bad: y\r\n"));
        // A folded first line continues nothing: it does not extend the
        // header we put on top.
        let message = b" ; dkim=pass header.d=bank.test\r\nFrom: a@bank.test\r\n\r\nbody\r\n";
        let (out, finished) = run(message, LongLines::Wrap, 2);
        assert!(
            out.starts_with(b"\r\n ; dkim=pass"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(finished.header_block.is_empty());
        let (out, _) = run(b"", LongLines::Wrap, 1);
        assert!(out.is_empty());
        let (out, _) = run(b"Authentication-Results: mx.test; none", LongLines::Wrap, 1);
        assert!(out.is_empty(), "an unended last field is still judged");
    }

    #[test]
    fn our_own_header_is_folded_too() {
        let long = format!(
            "Authentication-Results: mx.test;\r\n\tdmarc=fail header.from={}\r\n",
            "d".repeat(3000)
        );
        let folded = fold_header(long.as_bytes());
        assert!(folded
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= MAX_LINE + 1));
        assert_eq!(fold_header(b"X: short\r\n"), b"X: short\r\n");
    }

    #[test]
    fn a_fold_never_leaves_a_line_of_white_space() {
        let content = format!("X-A:{}  {}", "a".repeat(994), "y".repeat(2000));
        let mut out = Vec::new();
        fold(content.as_bytes(), &mut out);
        for line in out.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(line.len() <= MAX_LINE);
            assert!(!line.iter().all(|b| *b == b' ' || *b == b'\t'), "{out:?}");
        }
    }

    #[test]
    fn a_fold_never_makes_a_claim() {
        // No space anywhere: the fold at 998 octets would fall right after
        // `mx.test`, making it the authserv-id of the folded field.
        let name = "Authentication-Results:(";
        let comment = "c".repeat(MAX_LINE - name.len() - 1 - "mx.test".len());
        let field = format!("{name}{comment})mx.test{}\r\n\r\n", "A".repeat(100));
        assert!(!auth_results::claims(&field.as_bytes()[23..], "mx.test"));
        let (out, finished) = run(field.as_bytes(), LongLines::Wrap, 1);
        assert_eq!(finished.wrapped, 1);
        assert_eq!(out, b"\r\n", "dropped");
    }
}
