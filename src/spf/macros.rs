//! SPF macro strings (RFC 7208 section 7): their syntax, for a
//! domain-spec, an unknown modifier's value and an explanation text; the
//! domain-spec's end (7.1: a macro or a valid top label); and their
//! expansion with the values of one evaluation, URL-escaped for upper-case
//! letters, a domain name cut from the left to 253 octets.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Where a macro string stands, which decides what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A domain-spec: no space, and not the letters `c`, `r`, `t`.
    Domain,
    /// An unknown modifier's value: every letter, no space.
    Modifier,
    /// An explanation text (`exp=` TXT record): every letter, and spaces.
    Explanation,
}

/// A macro string that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacroError {
    #[error("'%' is followed by neither '{{', '%', '_' nor '-'")]
    BadPercent,
    #[error("unknown macro letter '{0}'")]
    UnknownLetter(char),
    #[error("the macro letter '{0}' is allowed only in an explanation")]
    ExplanationOnly(char),
    #[error("a macro without its closing '}}'")]
    Unterminated,
    #[error("a macro's digit transformer is 0")]
    ZeroDigits,
    #[error("the character {0:?} is not allowed here")]
    BadChar(char),
    #[error("empty domain-spec")]
    Empty,
    #[error("domain-spec {0:?} ends neither in a macro nor in a valid top label")]
    BadDomainEnd(String),
}

/// What a macro letter stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letter {
    /// `s`: the sender, `local@domain`.
    Sender,
    /// `l`: the sender's local part.
    Local,
    /// `o`: the sender's domain.
    SenderDomain,
    /// `d`: the domain being checked.
    Domain,
    /// `i`: the client address, dotted (IPv6 as nibbles).
    Ip,
    /// `p`: a validated name of the client address, or `unknown`.
    Ptr,
    /// `v`: `in-addr` or `ip6`.
    Version,
    /// `h`: the HELO name.
    Helo,
    /// `c`: the client address as text (explanations only).
    Client,
    /// `r`: the receiving host (explanations only).
    Receiver,
    /// `t`: the time, in seconds since the epoch (explanations only).
    Time,
}

impl Letter {
    fn of(c: char) -> Option<Letter> {
        Some(match c.to_ascii_lowercase() {
            's' => Letter::Sender,
            'l' => Letter::Local,
            'o' => Letter::SenderDomain,
            'd' => Letter::Domain,
            'i' => Letter::Ip,
            'p' => Letter::Ptr,
            'v' => Letter::Version,
            'h' => Letter::Helo,
            'c' => Letter::Client,
            'r' => Letter::Receiver,
            't' => Letter::Time,
            _ => return None,
        })
    }

    fn explanation_only(self) -> bool {
        matches!(self, Letter::Client | Letter::Receiver | Letter::Time)
    }
}

/// One macro: `%{` letter, digits, `r`, delimiters `}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macro {
    pub letter: Letter,
    /// An upper-case letter: the value is URL-escaped.
    pub escape: bool,
    /// How many parts from the right to keep (none: all).
    pub keep: Option<u32>,
    pub reverse: bool,
    /// The characters the value is split on (`.` when none is given).
    pub delimiters: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Macro(Macro),
}

/// A parsed macro string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    pieces: Vec<Piece>,
}

/// The values macros expand to, for one `check_host()`.
pub struct Values<'a> {
    pub sender: &'a str,
    pub local: &'a str,
    pub sender_domain: &'a str,
    pub domain: &'a str,
    pub ip: IpAddr,
    /// The validated name for `%{p}` (`unknown` when there is none).
    pub ptr: &'a str,
    pub helo: &'a str,
    pub receiver: &'a str,
    pub now: u64,
}

/// The longest domain name a macro expansion may give (RFC 7208 7.3).
const MAX_NAME: usize = 253;

impl MacroString {
    /// Parses a macro string of `context`.
    pub fn parse(text: &str, context: Context) -> Result<MacroString, MacroError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                let allowed =
                    matches!(c, '\x21'..='\x7e') || (c == ' ' && context == Context::Explanation);
                if !allowed {
                    return Err(MacroError::BadChar(c));
                }
                literal.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => literal.push('%'),
                Some('_') => literal.push(' '),
                Some('-') => literal.push_str("%20"),
                Some('{') => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Macro(parse_macro(&mut chars, context)?));
                }
                _ => return Err(MacroError::BadPercent),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(MacroString { pieces })
    }

    /// Parses a domain-spec (RFC 7208 7.1): a macro string that ends in a
    /// macro or in `.` and a valid top label (with an optional final dot).
    pub fn domain_spec(text: &str) -> Result<MacroString, MacroError> {
        if text.is_empty() {
            return Err(MacroError::Empty);
        }
        let spec = MacroString::parse(text, Context::Domain)?;
        let ends_well = match spec.pieces.as_slice() {
            [] => false,
            [.., Piece::Macro(_)] => true,
            [.., before, Piece::Literal(tail)] => {
                let tail = tail.strip_suffix('.').unwrap_or(tail);
                match tail.rsplit_once('.') {
                    Some((_, top)) => is_toplabel(top),
                    // `%{d}.`: a macro and the final dot.
                    None => tail.is_empty() && matches!(before, Piece::Macro(_)),
                }
            }
            [Piece::Literal(tail)] => {
                let tail = tail.strip_suffix('.').unwrap_or(tail);
                tail.rsplit_once('.')
                    .is_some_and(|(_, top)| is_toplabel(top))
            }
        };
        if ends_well {
            Ok(spec)
        } else {
            Err(MacroError::BadDomainEnd(text.to_string()))
        }
    }

    /// Whether expanding needs the validated PTR name (`%{p}`).
    pub fn needs_ptr(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Macro(m) if m.letter == Letter::Ptr))
    }

    /// The expanded text.
    pub fn expand(&self, values: &Values) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Macro(m) => out.push_str(&m.expand(values)),
            }
        }
        out
    }

    /// The expanded text as a domain name: without a final dot, labels cut
    /// from the left until it is at most 253 octets long.
    pub fn expand_name(&self, values: &Values) -> String {
        let expanded = self.expand(values);
        let mut name = expanded.strip_suffix('.').unwrap_or(&expanded);
        while name.len() > MAX_NAME {
            match name.split_once('.') {
                Some((_, rest)) => name = rest,
                None => return String::new(),
            }
        }
        name.to_string()
    }
}

fn parse_macro(chars: &mut std::str::Chars, context: Context) -> Result<Macro, MacroError> {
    let c = chars.next().ok_or(MacroError::Unterminated)?;
    let letter = Letter::of(c).ok_or(MacroError::UnknownLetter(c))?;
    if letter.explanation_only() && context == Context::Domain {
        return Err(MacroError::ExplanationOnly(c));
    }
    let mut digits: Option<u32> = None;
    let mut reverse = false;
    let mut delimiters = String::new();
    loop {
        match chars.next() {
            None => return Err(MacroError::Unterminated),
            Some('}') => break,
            Some(d @ '0'..='9') if !reverse && delimiters.is_empty() => {
                let value = digits
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(d.to_digit(10).unwrap_or(0));
                digits = Some(value);
            }
            Some('r' | 'R') if !reverse && delimiters.is_empty() => reverse = true,
            Some(d @ ('.' | '-' | '+' | ',' | '/' | '_' | '=')) => delimiters.push(d),
            Some(other) => return Err(MacroError::BadChar(other)),
        }
    }
    if digits == Some(0) {
        return Err(MacroError::ZeroDigits);
    }
    Ok(Macro {
        letter,
        escape: c.is_ascii_uppercase(),
        keep: digits,
        reverse,
        delimiters,
    })
}

impl Macro {
    fn expand(&self, v: &Values) -> String {
        let value = match self.letter {
            Letter::Sender => v.sender.to_string(),
            Letter::Local => v.local.to_string(),
            Letter::SenderDomain => v.sender_domain.to_string(),
            Letter::Domain => v.domain.to_string(),
            Letter::Ip => dotted(v.ip),
            Letter::Ptr => v.ptr.to_string(),
            Letter::Version => match v.ip {
                IpAddr::V4(_) => "in-addr".to_string(),
                IpAddr::V6(_) => "ip6".to_string(),
            },
            Letter::Helo => v.helo.to_string(),
            Letter::Client => v.ip.to_string(),
            Letter::Receiver => v.receiver.to_string(),
            Letter::Time => v.now.to_string(),
        };
        let delimiters = if self.delimiters.is_empty() {
            "."
        } else {
            self.delimiters.as_str()
        };
        let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
        if self.reverse {
            parts.reverse();
        }
        if let Some(keep) = self.keep {
            let keep = usize::try_from(keep).unwrap_or(usize::MAX);
            if keep < parts.len() {
                parts.drain(..parts.len() - keep);
            }
        }
        let joined = parts.join(".");
        if self.escape {
            url_escape(&joined)
        } else {
            joined
        }
    }
}

/// `%{i}`: IPv4 dotted, IPv6 as 32 dot-separated nibbles.
fn dotted(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(63);
            for byte in v6.octets() {
                if !out.is_empty() {
                    out.push('.');
                }
                let _ = write!(out, "{:x}.{:x}", byte >> 4, byte & 0xf);
            }
            out
        }
    }
}

/// Every octet outside RFC 3986's unreserved set as `%XX`.
fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum
/// / "-" ) alphanum )`: letters, digits and inner dashes, not all digits.
fn is_toplabel(label: &str) -> bool {
    let bytes = label.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes.iter().any(|b| !b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ip: &str) -> Values<'static> {
        Values {
            sender: "strong-bad@email.example.com",
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            ptr: "unknown",
            helo: "mx.example.org",
            receiver: "mx.test",
            now: 1_700_000_000,
        }
    }

    fn expand(spec: &str, ip: &str) -> String {
        MacroString::parse(spec, Context::Explanation)
            .unwrap()
            .expand(&values(ip))
    }

    #[test]
    fn the_examples_of_rfc_7208_section_7_4_expand_as_printed() {
        let v4 = "192.0.2.3";
        assert_eq!(expand("%{s}", v4), "strong-bad@email.example.com");
        assert_eq!(expand("%{o}", v4), "email.example.com");
        assert_eq!(expand("%{d}", v4), "email.example.com");
        assert_eq!(expand("%{d4}", v4), "email.example.com");
        assert_eq!(expand("%{d3}", v4), "email.example.com");
        assert_eq!(expand("%{d2}", v4), "example.com");
        assert_eq!(expand("%{d1}", v4), "com");
        assert_eq!(expand("%{dr}", v4), "com.example.email");
        assert_eq!(expand("%{d2r}", v4), "example.email");
        assert_eq!(expand("%{l}", v4), "strong-bad");
        assert_eq!(expand("%{l-}", v4), "strong.bad");
        assert_eq!(expand("%{lr}", v4), "strong-bad");
        assert_eq!(expand("%{lr-}", v4), "bad.strong");
        assert_eq!(expand("%{l1r-}", v4), "strong");
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", v4),
            "3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(
            expand("%{lr-}.lp._spf.%{d2}", v4),
            "bad.strong.lp._spf.example.com"
        );
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01"),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn an_upper_case_letter_is_url_escaped() {
        let mut v = values("192.0.2.3");
        v.local = "~jack&jill=up-a_b3.c";
        let spec = MacroString::parse("%{L}", Context::Explanation).unwrap();
        assert_eq!(spec.expand(&v), "~jack%26jill%3Dup-a_b3.c");
    }

    #[test]
    fn escapes_give_a_percent_a_space_and_an_encoded_space() {
        assert_eq!(expand("a%%b%_c%-d", "192.0.2.3"), "a%b c%20d");
    }

    #[test]
    fn the_client_and_time_letters_are_refused_outside_an_explanation() {
        for spec in ["%{c}.example.com", "%{r}.example.com", "%{t}.example.com"] {
            assert!(matches!(
                MacroString::domain_spec(spec),
                Err(MacroError::ExplanationOnly(_))
            ));
        }
        assert!(MacroString::parse("%{c} at %{t}", Context::Explanation).is_ok());
    }

    #[test]
    fn a_percent_sign_must_start_a_macro_or_an_escape() {
        for spec in ["%(ir).sbl.example.com", "foo%.sbl.example.com", "a%"] {
            assert_eq!(
                MacroString::parse(spec, Context::Domain),
                Err(MacroError::BadPercent),
                "{spec}"
            );
        }
        assert_eq!(
            MacroString::parse("%{a}.example.com", Context::Domain),
            Err(MacroError::UnknownLetter('a'))
        );
        assert_eq!(
            MacroString::parse("%{d", Context::Domain),
            Err(MacroError::Unterminated)
        );
        assert_eq!(
            MacroString::parse("%{d0}", Context::Domain),
            Err(MacroError::ZeroDigits)
        );
    }

    #[test]
    fn a_domain_spec_ends_in_a_valid_top_label_or_a_macro() {
        for good in [
            "example.com",
            "example.com.",
            "foo:bar/baz.example.com",
            "foo.example.xn--zckzah",
            "%{d}",
            "%{d}.",
            "_spf.%{d2}",
            "%{H}.bar",
            "mail.example...com",
        ] {
            assert!(MacroString::domain_spec(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "museum",
            "museum.",
            "abc.123",
            "111.222.33.44",
            "example.-com",
            "foo-bar",
            "example.com:8080",
            "-all",
            "ip5.example.com/24",
            "foo.example.com\0",
        ] {
            assert!(MacroString::domain_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_long_expansion_loses_labels_on_the_left_down_to_253_octets() {
        let mut v = values("192.0.2.3");
        let long = "somewhat.long.exp.example.com";
        v.sender_domain = long;
        let spec =
            MacroString::domain_spec(&format!("foobar.{}example.com", "%{o}.".repeat(8))).unwrap();
        let name = spec.expand_name(&v);
        assert!(name.len() <= 253, "{}", name.len());
        assert_eq!(name, format!("{}example.com", format!("{long}.").repeat(8)));
    }

    #[test]
    fn the_final_dot_of_a_name_is_dropped_but_an_explanation_keeps_it() {
        let spec = MacroString::domain_spec("%{d}.").unwrap();
        assert_eq!(spec.expand_name(&values("192.0.2.3")), "email.example.com");
        assert_eq!(expand("This is a test.", "192.0.2.3"), "This is a test.");
    }
}
