//! An SPF record (RFC 7208 sections 4.5, 4.6, 5, 6 and 12): which TXT
//! strings are one, and its terms parsed whole before anything is
//! evaluated, so that a syntax error anywhere is a permerror (4.6): terms
//! separated by spaces only, mechanisms with their domain-specs and CIDR
//! lengths (no leading zero, within the family's range), `redirect=` and
//! `exp=` at most once each, unknown modifiers with a valid name and macro
//! string.

use super::macros::{Context, MacroError, MacroString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a matching mechanism gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

/// One mechanism (RFC 7208 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(MacroString),
    /// `a[:domain][/len4][//len6]`; no domain: the current one.
    A {
        domain: Option<MacroString>,
        cidr: Cidr,
    },
    Mx {
        domain: Option<MacroString>,
        cidr: Cidr,
    },
    Ptr(Option<MacroString>),
    Ip4 {
        network: Ipv4Addr,
        len: u8,
    },
    Ip6 {
        network: Ipv6Addr,
        len: u8,
    },
    Exists(MacroString),
}

/// The prefix lengths an `a` or `mx` mechanism compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub v4: u8,
    pub v6: u8,
}

impl Cidr {
    /// Whether `ip` is in the network of `address` (same family only).
    pub fn covers(self, address: IpAddr, ip: IpAddr) -> bool {
        match (address, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => same_prefix(&a.octets(), &b.octets(), self.v4),
            (IpAddr::V6(a), IpAddr::V6(b)) => same_prefix(&a.octets(), &b.octets(), self.v6),
            _ => false,
        }
    }
}

/// Whether the first `len` bits of `a` and `b` are equal.
pub fn same_prefix(a: &[u8], b: &[u8], len: u8) -> bool {
    let mut bits = usize::from(len);
    for (x, y) in a.iter().zip(b) {
        if bits == 0 {
            return true;
        }
        let mask = if bits >= 8 {
            0xff
        } else {
            0xffu8 << (8 - bits)
        };
        if (x ^ y) & mask != 0 {
            return false;
        }
        bits = bits.saturating_sub(8);
    }
    true
}

/// A qualifier and its mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
}

/// A parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub directives: Vec<Directive>,
    pub redirect: Option<MacroString>,
    pub exp: Option<MacroString>,
}

/// Why a record is not valid SPF: a permerror.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is not 7-bit ASCII")]
    NotAscii,
    #[error("unknown mechanism `{0}`")]
    UnknownMechanism(String),
    #[error("`{term}`: {why}")]
    BadTerm { term: String, why: String },
    #[error("`{term}`: {error}")]
    Macro { term: String, error: MacroError },
    #[error("`{0}=` appears more than once")]
    Repeated(&'static str),
}

/// Whether a TXT record's text is an SPF version 1 record: `v=spf1`, in
/// any case, alone or followed by a space.
pub fn is_spf(text: &[u8]) -> bool {
    let version = b"v=spf1";
    text.len() >= version.len()
        && text[..version.len()].eq_ignore_ascii_case(version)
        && text.get(version.len()).is_none_or(|b| *b == b' ')
}

impl Record {
    /// Parses a record that [`is_spf`].
    pub fn parse(text: &[u8]) -> Result<Record, RecordError> {
        let text = std::str::from_utf8(text)
            .ok()
            .filter(|t| t.is_ascii())
            .ok_or(RecordError::NotAscii)?;
        let terms = text.get(6..).unwrap_or("");
        let mut record = Record {
            directives: Vec::new(),
            redirect: None,
            exp: None,
        };
        for term in terms.split(' ').filter(|t| !t.is_empty()) {
            if let Some((name, value)) = modifier(term) {
                record.modifier(term, name, value)?;
            } else {
                record.directives.push(directive(term)?);
            }
        }
        Ok(record)
    }

    fn modifier(&mut self, term: &str, name: &str, value: &str) -> Result<(), RecordError> {
        let macro_error = |error| RecordError::Macro {
            term: term.to_string(),
            error,
        };
        let (slot, label) = if name.eq_ignore_ascii_case("redirect") {
            (&mut self.redirect, "redirect")
        } else if name.eq_ignore_ascii_case("exp") {
            (&mut self.exp, "exp")
        } else {
            // An unknown modifier is ignored, but must be well formed.
            MacroString::parse(value, Context::Modifier).map_err(macro_error)?;
            return Ok(());
        };
        if slot.is_some() {
            return Err(RecordError::Repeated(label));
        }
        *slot = Some(MacroString::domain_spec(value).map_err(macro_error)?);
        Ok(())
    }
}

/// `name=value` when the term is a modifier: `name = ALPHA *( ALPHA /
/// DIGIT / "-" / "_" / "." )` right before the first `=`.
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    valid.then_some((name, value))
}

fn directive(term: &str) -> Result<Directive, RecordError> {
    let (qualifier, rest) = match term.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, &term[1..]),
        Some(b'-') => (Qualifier::Fail, &term[1..]),
        Some(b'~') => (Qualifier::SoftFail, &term[1..]),
        Some(b'?') => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let split = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, args) = rest.split_at(split);
    let bad = |why: &str| RecordError::BadTerm {
        term: term.to_string(),
        why: why.to_string(),
    };
    let macro_error = |error| RecordError::Macro {
        term: term.to_string(),
        error,
    };
    let domain = |args: &str| match args.strip_prefix(':') {
        Some(spec) => MacroString::domain_spec(spec).map_err(macro_error),
        None => Err(bad("needs `:domain`")),
    };
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "all" => return Err(bad("`all` takes no argument")),
        "include" => Mechanism::Include(domain(args)?),
        "exists" => Mechanism::Exists(domain(args)?),
        "ptr" if args.is_empty() => Mechanism::Ptr(None),
        "ptr" => Mechanism::Ptr(Some(domain(args)?)),
        "a" | "mx" => {
            let (spec, cidr) = dual_cidr(args).ok_or_else(|| bad("bad CIDR length"))?;
            let domain = if spec.is_empty() {
                None
            } else {
                Some(domain(spec)?)
            };
            if name.eq_ignore_ascii_case("a") {
                Mechanism::A { domain, cidr }
            } else {
                Mechanism::Mx { domain, cidr }
            }
        }
        "ip4" => {
            let (address, len) = network(args, 32).ok_or_else(|| bad("bad IPv4 network"))?;
            let network = address.parse().map_err(|_| bad("bad IPv4 address"))?;
            Mechanism::Ip4 { network, len }
        }
        "ip6" => {
            let (address, len) = network(args, 128).ok_or_else(|| bad("bad IPv6 network"))?;
            let network = address.parse().map_err(|_| bad("bad IPv6 address"))?;
            Mechanism::Ip6 { network, len }
        }
        _ => return Err(RecordError::UnknownMechanism(term.to_string())),
    };
    Ok(Directive {
        qualifier,
        mechanism,
    })
}

/// `:address[/len]` of `ip4`/`ip6`: the address text and the length
/// (`max` when absent).
fn network(args: &str, max: u8) -> Option<(&str, u8)> {
    let args = args.strip_prefix(':')?;
    match args.split_once('/') {
        None => Some((args, max)),
        Some((address, len)) => Some((address, cidr_len(len, max)?)),
    }
}

/// The arguments of `a`/`mx` split into the domain part (with its `:`, or
/// empty) and the dual CIDR length at its end.
fn dual_cidr(args: &str) -> Option<(&str, Cidr)> {
    let mut rest = args;
    let mut cidr = Cidr { v4: 32, v6: 128 };
    if let Some((before, len)) = rest.rsplit_once("//") {
        if is_number(len) {
            cidr.v6 = cidr_len(len, 128)?;
            rest = before;
        }
    }
    if let Some((before, len)) = rest.rsplit_once('/') {
        if is_number(len) {
            cidr.v4 = cidr_len(len, 32)?;
            rest = before;
        }
    }
    (rest.is_empty() || rest.starts_with(':')).then_some((rest, cidr))
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A prefix length: digits without a leading zero, at most `max`.
fn cidr_len(text: &str, max: u8) -> Option<u8> {
    if !is_number(text) || (text.len() > 1 && text.starts_with('0')) || text.len() > 3 {
        return None;
    }
    text.parse::<u8>().ok().filter(|len| *len <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Record, RecordError> {
        Record::parse(text.as_bytes())
    }

    #[test]
    fn a_record_is_v_spf1_in_any_case_then_a_space_or_its_end() {
        assert!(is_spf(b"v=spf1"));
        assert!(is_spf(b"V=sPf1 +all"));
        assert!(!is_spf(b"v=spf10"));
        assert!(!is_spf(b"v=spf1mx"));
        assert!(!is_spf(b"v=spf"));
        assert!(!is_spf(b"spf2.0/pra"));
    }

    #[test]
    fn every_mechanism_and_modifier_of_a_good_record_is_read() {
        let record = parse(
            "v=spf1 +a -mx:%{d}.example.com/24//64 ~ptr ?ip4:192.0.2.0/24 ip6:2001:db8::/32 \
             include:_spf.example.net exists:%{ir}.bl.example.org all \
             redirect=example.org exp=why.%{d} moo.cow-far_out=man:dog/cat",
        )
        .unwrap();
        let qualifiers: Vec<Qualifier> = record.directives.iter().map(|d| d.qualifier).collect();
        assert_eq!(
            qualifiers,
            [
                Qualifier::Pass,
                Qualifier::Fail,
                Qualifier::SoftFail,
                Qualifier::Neutral,
                Qualifier::Pass,
                Qualifier::Pass,
                Qualifier::Pass,
                Qualifier::Pass,
            ]
        );
        assert!(matches!(
            record.directives[1].mechanism,
            Mechanism::Mx {
                domain: Some(_),
                cidr: Cidr { v4: 24, v6: 64 }
            }
        ));
        assert!(record.redirect.is_some() && record.exp.is_some());
    }

    #[test]
    fn a_syntax_error_anywhere_makes_the_record_invalid() {
        for text in [
            "v=spf1 ip4:1.2.3.4 -all moo",
            "v=spf1 -all.",
            "v=spf1 -all:foobar",
            "v=spf1 -all/8",
            "v=spf1 ptr/0 -all",
            "v=spf1 ptr:",
            "v=spf1 a/33 -all",
            "v=spf1 a//129 -all",
            "v=spf1 a/24/64 -all",
            "v=spf1 a:example.com:8080",
            "v=spf1 a:museum",
            "v=spf1 a:",
            "v=spf1 include",
            "v=spf1 include:ip5.example.com/24",
            "v=spf1 exists",
            "v=spf1 exists:mail.example.com/24",
            "v=spf1 ip4",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip4:1.2.3.4:8080",
            "v=spf1 ip4:1.2.3",
            "v=spf1 -all ip6",
            "v=spf1 ip6:::1.1.1.1/129",
            "v=spf1 ip6:::1.1.1.1//33",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 redirect:t2.example.com",
            "v=spf1 moo.cow/far_out=man:dog/cat",
            "v=spf1 1up=foo",
            "v=spf1 =all",
            "v=spf1 exp=",
            "v=spf1 exp=-all",
            "v=spf1 redirect=-all ?all",
            "v=spf1 -all foo=%abc",
            "v=spf1 exp=a.example.com -all exp=b.example.com",
            "v=spf1 redirect=a.example.com redirect=a.example.com",
            "v=spf1 a:ctrl.example.com\rptr -all",
            "v=spf1 ip4:192.0.2.5\n include:x.example.com",
            "v=spf1 \u{80}a:example.net -all",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn terms_may_be_separated_by_several_spaces_and_end_with_one() {
        assert_eq!(parse("v=spf1 a  -all ").unwrap().directives.len(), 2);
        assert_eq!(parse("v=spf1").unwrap().directives.len(), 0);
    }

    #[test]
    fn the_domain_of_a_or_mx_may_hold_a_colon_and_a_slash() {
        let record = parse("v=spf1 a:foo:bar/baz.example.com").unwrap();
        assert!(matches!(
            record.directives[0].mechanism,
            Mechanism::A {
                domain: Some(_),
                cidr: Cidr { v4: 32, v6: 128 }
            }
        ));
    }

    #[test]
    fn a_prefix_compares_only_its_bits_and_only_within_a_family() {
        let cidr = Cidr { v4: 24, v6: 64 };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr.covers(ip("192.0.2.200"), ip("192.0.2.1")));
        assert!(!cidr.covers(ip("192.0.3.1"), ip("192.0.2.1")));
        assert!(cidr.covers(
            ip("2001:db8:1234::dead:beef"),
            ip("2001:db8:1234::cafe:babe")
        ));
        assert!(!cidr.covers(ip("::ffff:192.0.2.1"), ip("192.0.2.1")));
        assert!(same_prefix(&[0b1010_0000], &[0b1011_1111], 3));
        assert!(!same_prefix(&[0b1010_0000], &[0b1011_1111], 4));
        assert!(same_prefix(&[1, 2], &[3, 4], 0));
    }
}
