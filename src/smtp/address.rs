//! Envelope addresses (RFC 5321 section 4.1.2): parsing `<path>` arguments of
//! MAIL and RCPT into a [`Path`], and spotting the address tricks that
//! old mailers turned into open relays (percent hack, `!` paths, quoted
//! local parts holding an `@`, source routes, address literals).

use std::fmt;

/// The domain of a mailbox: a host name, or an address literal `[…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// Lower case, without a trailing dot.
    Name(String),
    /// The literal as written, brackets included.
    Literal(String),
}

/// `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// As written: a dot-string, or a quoted string with its quotes.
    pub local: String,
    pub domain: Domain,
}

/// The argument of MAIL FROM or RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// `None` for the null path `<>`.
    pub mailbox: Option<Mailbox>,
    /// The client wrote a source route (`<@relay:user@domain>`).
    pub source_route: bool,
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
    /// The local part with quoting undone.
    pub fn local_unquoted(&self) -> String {
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
                out
            }
            None => self.local.clone(),
        }
    }

    /// Routing syntax in the local part that a downstream mailer might
    /// follow to another host: `%`, `!`, or an `@` inside quotes.
    pub fn has_routing_trick(&self) -> bool {
        self.local_unquoted().contains(['%', '!', '@'])
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
        match &self.domain {
            Domain::Name(d) | Domain::Literal(d) => write!(f, "{}@{}", self.local, d),
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
        return Ok(Path {
            mailbox: None,
            source_route: false,
        });
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
    if local.len() > MAX_LOCAL {
        return Err(AddressError::TooLong);
    }
    Ok(Mailbox {
        local: local.to_string(),
        domain: parse_domain(domain)?,
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
            32..=126 => i += 1,
            _ => return None,
        }
    }
    None
}

fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
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

/// Lower case, one trailing dot removed.
pub fn normalize_domain(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
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
        let long = format!("<{}@example.com>", "a".repeat(65));
        assert_eq!(parse_path(&long), Err(AddressError::TooLong));
        // Found by fuzzing: a bare address of 255 octets is 257 with brackets.
        let domain = vec!["b".repeat(63); 4].join(".");
        let bare = format!("a@{}", &domain[..253]);
        assert_eq!(parse_path(&bare), Err(AddressError::TooLong));
    }
}
