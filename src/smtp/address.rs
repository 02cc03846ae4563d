//! Envelope addresses (RFC 5321 section 4.1.2, and RFC 6531's UTF-8 ones):
//! parsing `<path>` arguments of MAIL and RCPT into a [`Path`], domains
//! compared as A-labels (IDNA), and spotting the address tricks that old
//! mailers turned into open relays (percent hack, `!` paths, quoted local
//! parts holding an `@`, source routes, address literals).

use std::borrow::Cow;
use std::fmt;

/// The domain of a mailbox: a host name, or an address literal `[…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// Lower case, without a trailing dot; an internationalized name in
    /// its A-labels (`xn--…`), however it was written.
    Name(String),
    /// The literal as written, brackets included.
    Literal(String),
}

/// `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// As written: a dot-string, or a quoted string with its quotes; may
    /// hold UTF-8 (RFC 6531).
    pub local: String,
    pub domain: Domain,
    /// The domain as written when it has U-labels: it is shown and relayed
    /// as the sender wrote it, and compared as `domain`.
    pub domain_written: Option<String>,
}

/// The argument of MAIL FROM or RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// `None` for the null path `<>`.
    pub mailbox: Option<Mailbox>,
    /// The client wrote a source route (`<@relay:user@domain>`).
    pub source_route: bool,
    /// Written with characters beyond ASCII (it needs `SMTPUTF8`).
    pub utf8: bool,
}

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("missing angle brackets")]
    Brackets,
    #[error("bad local part")]
    LocalPart,
    #[error("bad domain")]
    Domain,
    #[error("missing @domain")]
    NoDomain,
    #[error("bad source route")]
    Route,
    #[error("address too long")]
    TooLong,
}

const MAX_PATH: usize = 256;
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

impl Mailbox {
    /// The local part with quoting undone (borrowed when unquoted).
    pub fn local_unquoted(&self) -> Cow<'_, str> {
        match self
            .local
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
        {
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(next) = chars.next() {
                            out.push(next);
                        }
                    } else {
                        out.push(c);
                    }
                }
                Cow::Owned(out)
            }
            None => Cow::Borrowed(&self.local),
        }
    }

    /// `local@domain` with the local part's quoting undone: the address
    /// SPF checks and the sender and recipient lists match.
    pub fn unquoted(&self) -> String {
        let local = self.local_unquoted();
        let (Domain::Name(domain) | Domain::Literal(domain)) = &self.domain;
        let mut address = String::with_capacity(local.len() + 1 + domain.len());
        address.push_str(&local);
        address.push('@');
        address.push_str(domain);
        address
    }

    /// Routing syntax in the local part that a downstream mailer might
    /// follow to another host: `%`, `!`, or an `@` inside quotes.
    pub fn has_routing_trick(&self) -> bool {
        self.local_unquoted().contains(['%', '!', '@'])
    }

    /// `local@domain` with the domain in its A-labels: the one form lists
    /// and tables compare, however the domain was written.
    pub fn comparable(&self) -> String {
        match &self.domain {
            Domain::Name(d) | Domain::Literal(d) => format!("{}@{}", self.local, d),
        }
    }

    /// The domain name, if it is one (not a literal).
    pub fn domain_name(&self) -> Option<&str> {
        match &self.domain {
            Domain::Name(n) => Some(n),
            Domain::Literal(_) => None,
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (&self.domain_written, &self.domain) {
            (Some(d), _) | (None, Domain::Name(d) | Domain::Literal(d)) => {
                write!(f, "{}@{}", self.local, d)
            }
        }
    }
}

impl Path {
    /// The null path `<>`.
    pub fn null() -> Path {
        Path {
            mailbox: None,
            source_route: false,
            utf8: false,
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.mailbox {
            Some(m) => write!(f, "<{m}>"),
            None => f.write_str("<>"),
        }
    }
}

/// Parses a path, with or without its angle brackets (Postfix accepts both).
pub fn parse_path(text: &str) -> Result<Path, AddressError> {
    let inner = match text.strip_prefix('<') {
        Some(rest) => rest.strip_suffix('>').ok_or(AddressError::Brackets)?,
        None if text.contains(['<', '>', ' ']) || text.is_empty() => {
            return Err(AddressError::Brackets)
        }
        None => text,
    };
    // The limit counts the brackets, written or not (RFC 5321 4.5.3.1.3).
    if inner.len() + 2 > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    if inner.is_empty() {
        return Ok(Path::null());
    }
    let (source_route, mailbox_text) = if inner.starts_with('@') {
        let (route, rest) = inner.split_once(':').ok_or(AddressError::Route)?;
        for hop in route.split(',') {
            let domain = hop.strip_prefix('@').ok_or(AddressError::Route)?;
            parse_domain(domain).map_err(|_| AddressError::Route)?;
        }
        (true, rest)
    } else {
        (false, inner)
    };
    Ok(Path {
        mailbox: Some(parse_mailbox(mailbox_text)?),
        source_route,
        utf8: !inner.is_ascii(),
    })
}

/// Parses `local@domain`.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, AddressError> {
    let (local, rest) = if text.starts_with('"') {
        let end = quoted_end(text).ok_or(AddressError::LocalPart)?;
        (&text[..end], &text[end..])
    } else {
        let at = text.rfind('@').ok_or(AddressError::NoDomain)?;
        let local = &text[..at];
        if !is_dot_string(local) {
            return Err(AddressError::LocalPart);
        }
        (local, &text[at..])
    };
    let domain = rest.strip_prefix('@').ok_or(AddressError::NoDomain)?;
    // RFC 6531 counts octets too.
    if local.len() > MAX_LOCAL {
        return Err(AddressError::TooLong);
    }
    Ok(Mailbox {
        local: local.to_string(),
        domain: parse_domain(domain)?,
        domain_written: (!domain.is_ascii()).then(|| domain.to_string()),
    })
}

/// Byte offset just past the closing quote of a quoted string at the start.
fn quoted_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() && (32..=126).contains(&bytes[i + 1]) => i += 2,
            b'"' => return Some(i + 1),
            // Printable ASCII, or UTF-8 (the text is a str: whole
            // characters only).
            32..=126 | 0x80.. => i += 1,
            _ => return None,
        }
    }
    None
}

fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

/// Atoms of atext, or of UTF-8 beyond ASCII (RFC 6531's `atext`).
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(|c| is_atext(c) || c >= 0x80))
}

fn parse_domain(text: &str) -> Result<Domain, AddressError> {
    if text.starts_with('[') {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or(AddressError::Domain)?;
        let valid = match inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
        {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => inner.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if valid {
            Ok(Domain::Literal(text.to_string()))
        } else {
            Err(AddressError::Domain)
        };
    }
    let normal = normalize_domain(text);
    if is_domain(&normal) {
        Ok(Domain::Name(normal))
    } else {
        Err(AddressError::Domain)
    }
}

/// The domain of a recipient as queued (`local@domain`), as routes and
/// tables name it: normalized.
pub fn routing_domain(mailbox: &str) -> String {
    normalize_domain(mailbox.rsplit_once('@').map_or("", |(_, domain)| domain))
}

/// Lower case, one trailing dot removed; a name written with U-labels in
/// its A-labels (IDNA, UTS #46), so that every table, list and route
/// compares one form. A name IDNA refuses is left as it is (and is then no
/// [`is_domain`]).
pub fn normalize_domain(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    idna::domain_to_ascii(name).unwrap_or_else(|_| name.to_string())
}

/// A syntactically valid host name: dot-separated labels of letters,
/// digits and inner hyphens (underscores tolerated), 63 octets a label.
pub fn is_domain(name: &str) -> bool {
    name.len() <= MAX_DOMAIN
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(s: &str) -> Mailbox {
        parse_path(s).unwrap().mailbox.unwrap()
    }

    #[test]
    fn ordinary_addresses() {
        let m = mailbox("<John.Doe+tag@Example.COM.>");
        assert_eq!(m.local, "John.Doe+tag");
        assert_eq!(m.domain, Domain::Name("example.com".into()));
        assert_eq!(parse_path("<>").unwrap().mailbox, None);
        assert_eq!(mailbox("bare@example.com").local, "bare");
    }

    #[test]
    fn tricks_are_seen() {
        assert!(mailbox("<user%evil.com@example.com>").has_routing_trick());
        assert!(mailbox("<evil.com!user@example.com>").has_routing_trick());
        assert!(mailbox("<\"user@evil.com\"@example.com>").has_routing_trick());
        assert!(!mailbox("<\"john doe\"@example.com>").has_routing_trick());
        let routed = parse_path("<@hop1.example,@hop2.example:user@example.com>").unwrap();
        assert!(routed.source_route);
        assert_eq!(
            mailbox("<user@[192.0.2.1]>").domain,
            Domain::Literal("[192.0.2.1]".into())
        );
        assert!(mailbox("<user@[IPv6:2001:db8::1]>").domain_name().is_none());
    }

    #[test]
    fn utf8_addresses_have_a_labels_and_say_so() {
        let path = parse_path("<用户@例子.测试>").unwrap();
        assert!(path.utf8);
        let m = path.mailbox.unwrap();
        assert_eq!(m.local, "用户");
        assert_eq!(m.domain, Domain::Name("xn--fsqu00a.xn--0zwm56d".into()));
        assert_eq!(m.domain_name(), Some("xn--fsqu00a.xn--0zwm56d"));
        assert_eq!(m.to_string(), "用户@例子.测试", "shown as written");
        let quoted = mailbox("<\"j\u{f6}rg m\"@example.com>");
        assert_eq!(quoted.local_unquoted(), "j\u{f6}rg m");
        // Only the domain beyond ASCII: still needs SMTPUTF8 as written.
        let idn = parse_path("<info@b\u{fc}cher.example>").unwrap();
        assert!(idn.utf8);
        let idn = idn.mailbox.unwrap();
        assert_eq!(idn.domain_name(), Some("xn--bcher-kva.example"));
        assert_eq!(idn.to_string(), "info@b\u{fc}cher.example");
        assert!(!parse_path("<info@xn--bcher-kva.example>").unwrap().utf8);
        assert_eq!(
            routing_domain("x@B\u{dc}CHER.example."),
            "xn--bcher-kva.example"
        );
        // 64 octets, not characters: 22 three-octet characters are 66.
        let long = format!("<{}@example.com>", "用".repeat(22));
        assert_eq!(parse_path(&long), Err(AddressError::TooLong));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "<user>",
            "<@example.com>",
            "<a..b@example.com>",
            "<user@-bad.com>",
            "<user@exa mple.com>",
            "<user@[999.1.1.1]>",
            "<\"unterminated@example.com>",
            "<user@example.com",
            "user @example.com",
            "<@:user@example.com>",
            "",
        ] {
            assert!(parse_path(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            parse_path("<user@b\u{fc}cher.example>")
                .unwrap()
                .mailbox
                .unwrap()
                .domain,
            parse_path("<user@B\u{dc}CHER.example>")
                .unwrap()
                .mailbox
                .unwrap()
                .domain,
        );
        let long = format!("<{}@example.com>", "a".repeat(65));
        assert_eq!(parse_path(&long), Err(AddressError::TooLong));
        // Found by fuzzing: a bare address of 255 octets is 257 with brackets.
        let domain = vec!["b".repeat(63); 4].join(".");
        let bare = format!("a@{}", &domain[..253]);
        assert_eq!(parse_path(&bare), Err(AddressError::TooLong));
    }
}
