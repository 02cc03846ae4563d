//! The list files of the checks, reloaded when they change:
//! address block lists (qmail badmailfrom/badmailto and qregex: an exact
//! address, `@domain`, or `/regex/` per line), the client exceptions
//! (`IP-or-CIDR [name]` per line, hosts style), the greylist allow-list
//! (host name suffixes, one per line; a built-in copy of the shipped file
//! when none is configured) and the forwarders (an IP address, a network
//! or a domain per line).

use crate::config::Network;
use crate::log::Logger;
use crate::reload::{lines, FileError, LineError, Reloadable};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Patterns are linear-time regexes (the `regex` crate), case-insensitive,
/// matched against the whole address; this bounds their compiled size.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One parsed address list.
pub struct AddressPatterns {
    exact: HashSet<String>,
    domains: HashSet<String>,
    regexes: Vec<(String, regex::Regex)>,
}

impl AddressPatterns {
    /// The pattern that matches `address` (already lower case), if any.
    pub fn find(&self, address: &str) -> Option<String> {
        if self.exact.contains(address) {
            return Some(address.to_string());
        }
        if let Some((_, domain)) = address.rsplit_once('@') {
            if self.domains.contains(domain) {
                return Some(format!("@{domain}"));
            }
        }
        self.regexes
            .iter()
            .find(|(_, re)| re.is_match(address))
            .map(|(text, _)| format!("/{text}/"))
    }
}

fn parse_patterns(text: &str) -> Result<AddressPatterns, LineError> {
    let mut list = AddressPatterns {
        exact: HashSet::new(),
        domains: HashSet::new(),
        regexes: Vec::new(),
    };
    for (line, entry) in lines(text) {
        if let Some(inner) = entry.strip_prefix('/').and_then(|e| e.strip_suffix('/')) {
            let re = regex::RegexBuilder::new(inner)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| LineError {
                    line,
                    message: format!("bad regex /{inner}/: {e}"),
                })?;
            list.regexes.push((inner.to_string(), re));
        } else if let Some(domain) = entry.strip_prefix('@') {
            list.domains
                .insert(crate::smtp::address::normalize_domain(domain));
        } else if entry.contains('@') && !entry.contains(char::is_whitespace) {
            list.exact.insert(comparable(entry));
        } else {
            return Err(LineError {
                line,
                message: format!("`{entry}` is not an address, @domain or /regex/"),
            });
        }
    }
    Ok(list)
}

/// A block list file.
pub struct AddressList(Reloadable<AddressPatterns>);

impl AddressList {
    pub fn open(key: &'static str, path: &Path) -> Result<AddressList, FileError> {
        Reloadable::open(key, path, parse_patterns).map(AddressList)
    }

    /// The matching pattern for `address` (any case, its domain in
    /// U-labels or A-labels), if any.
    pub fn find(&self, address: &str, log: &Logger) -> Option<String> {
        self.0.current(log).find(&comparable(address))
    }
}

/// An address as lists compare it: lower case, its domain in A-labels.
fn comparable(address: &str) -> String {
    crate::smtp::address::parse_mailbox(address)
        .map_or_else(|_| address.to_string(), |m| m.comparable())
        .to_ascii_lowercase()
}

/// The greylist allow-list as shipped (`examples/greylist-allow`):
/// the default when `greylist.allow_file` is not set.
const SHIPPED_GREYLIST_ALLOW: &str = include_str!("../examples/greylist-allow");

/// Host name suffixes (lower case, without a final dot).
fn parse_suffixes(text: &str) -> Result<Vec<String>, LineError> {
    lines(text)
        .map(|(line, entry)| {
            let normal = crate::smtp::address::normalize_domain(entry.trim_start_matches('.'));
            match crate::smtp::address::is_domain(&normal) {
                true => Ok(normal),
                false => Err(LineError {
                    line,
                    message: format!("`{entry}` is not a host name suffix"),
                }),
            }
        })
        .collect()
}

/// Whether `name` (normalized) is `suffix` or ends in it after a dot.
fn under(name: &str, suffix: &str) -> bool {
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Host name suffixes: a name matches one it equals or ends in after a dot.
pub enum Suffixes {
    Shipped(Vec<String>),
    File(Reloadable<Vec<String>>),
}

impl Suffixes {
    /// The file of `key`, or the shipped greylist allow-list.
    pub fn open(key: &'static str, path: Option<&Path>) -> Result<Suffixes, FileError> {
        match path {
            Some(path) => Reloadable::open(key, path, parse_suffixes).map(Suffixes::File),
            None => Ok(Suffixes::Shipped(
                parse_suffixes(SHIPPED_GREYLIST_ALLOW).unwrap_or_default(),
            )),
        }
    }

    /// The suffix `name` is under, if any.
    pub fn find(&self, name: &str, log: &Logger) -> Option<String> {
        let name = crate::smtp::address::normalize_domain(name);
        match self {
            Suffixes::Shipped(list) => list.iter().find(|s| under(&name, s)).cloned(),
            Suffixes::File(file) => file.current(log).iter().find(|s| under(&name, s)).cloned(),
        }
    }
}

/// The forwarders' entries: networks, and domains a forward-confirmed
/// client name is under.
#[derive(Debug, Default)]
pub struct ForwarderEntries {
    networks: Vec<(String, Network)>,
    domains: Vec<String>,
}

impl ForwarderEntries {
    /// The entry (as written) whose network holds `client`, if any.
    pub fn by_network(&self, client: IpAddr) -> Option<String> {
        self.networks
            .iter()
            .find(|(_, net)| net.contains(client))
            .map(|(entry, _)| entry.clone())
    }

    /// Whether any entry is a domain (worth a reverse lookup).
    pub fn has_domains(&self) -> bool {
        !self.domains.is_empty()
    }

    /// The domain entry `name` (a forward-confirmed client name) is
    /// under, if any.
    pub fn by_name(&self, name: &str) -> Option<String> {
        let name = crate::smtp::address::normalize_domain(name);
        self.domains.iter().find(|d| under(&name, d)).cloned()
    }
}

fn parse_forwarders(text: &str) -> Result<ForwarderEntries, LineError> {
    let mut entries = ForwarderEntries::default();
    for (line, entry) in lines(text) {
        if let Ok(network) = entry.parse::<Network>() {
            entries.networks.push((entry.to_string(), network));
            continue;
        }
        let domain = crate::smtp::address::normalize_domain(entry.trim_start_matches('.'));
        if !crate::smtp::address::is_domain(&domain) || domain.parse::<IpAddr>().is_ok() {
            return Err(LineError {
                line,
                message: format!("`{entry}` is not an IP address, a network or a domain"),
            });
        }
        entries.domains.push(domain);
    }
    Ok(entries)
}

/// The forwarders file (`checks.forwarders`).
pub struct Forwarders(Reloadable<ForwarderEntries>);

impl Forwarders {
    pub fn open(path: &Path) -> Result<Forwarders, FileError> {
        Reloadable::open("checks.forwarders", path, parse_forwarders).map(Forwarders)
    }

    /// The entries as the file holds them now.
    pub fn current(&self, log: &Logger) -> Arc<ForwarderEntries> {
        self.0.current(log)
    }
}

/// Client exceptions: networks with an optional name.
pub struct ClientExceptions(Reloadable<Vec<(Network, Option<String>)>>);

fn parse_exceptions(text: &str) -> Result<Vec<(Network, Option<String>)>, LineError> {
    lines(text)
        .map(|(line, entry)| {
            let mut words = entry.split_whitespace();
            let net = words.next().unwrap_or("");
            let network = net
                .parse::<Network>()
                .map_err(|message| LineError { line, message })?;
            Ok((network, words.next().map(str::to_string)))
        })
        .collect()
}

impl ClientExceptions {
    pub fn open(path: &Path) -> Result<ClientExceptions, FileError> {
        Reloadable::open("lists.client_exceptions", path, parse_exceptions).map(ClientExceptions)
    }

    /// The entry covering `client`: its network, and name if given.
    pub fn find(&self, client: IpAddr, log: &Logger) -> Option<String> {
        self.0
            .current(log)
            .iter()
            .find(|(net, _)| net.contains(client))
            .map(|(net, name)| match name {
                Some(n) => format!("{} {n}", net.0),
                None => net.0.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_and_qregex_patterns() {
        let list = parse_patterns(
            "# badmailfrom\nspammer@example.net\n@bulk.example\n/^[a-z]+[0-9]+@example\\.com$/\n",
        )
        .ok()
        .unwrap();
        assert_eq!(
            list.find("spammer@example.net"),
            Some("spammer@example.net".into())
        );
        assert_eq!(
            list.find("anyone@bulk.example"),
            Some("@bulk.example".into())
        );
        assert_eq!(
            list.find("abc123@example.com"),
            Some("/^[a-z]+[0-9]+@example\\.com$/".into())
        );
        assert_eq!(list.find("abc@example.com"), None);
        assert_eq!(list.find("x@sub.bulk.example"), None);
    }

    #[test]
    fn utf8_entries_match_as_addresses_are_looked_up() {
        let list = parse_patterns("spam@b\u{fc}cher.example\n@\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}\n")
            .ok()
            .unwrap();
        assert!(list.find("spam@xn--bcher-kva.example").is_some());
        assert!(list.find(&comparable("SPAM@B\u{fc}cher.example")).is_some());
        assert_eq!(
            list.find("\u{7528}@xn--fsqu00a.xn--0zwm56d"),
            Some("@xn--fsqu00a.xn--0zwm56d".into())
        );
    }

    #[test]
    fn suffixes_match_names_under_them() {
        let log = Logger::discard();
        let shipped = Suffixes::open("greylist.allow_file", None).ok().unwrap();
        assert_eq!(
            shipped.find("mail-yw1-f170.google.com.", &log),
            Some("google.com".into())
        );
        assert_eq!(shipped.find("google.com", &log), Some("google.com".into()));
        assert_eq!(shipped.find("notgoogle.com", &log), None);
        assert_eq!(shipped.find("google.com.evil.example", &log), None);
        let err = parse_suffixes("good.example\nnot a name\n").err().unwrap();
        assert_eq!(
            (err.line, err.message.contains("not a host name")),
            (2, true)
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse_patterns("ok@example.com\n/[unclosed/\n")
            .err()
            .unwrap();
        assert_eq!(err.line, 2);
        let err = parse_patterns("no at sign\n").err().unwrap();
        assert!(err.message.contains("not an address"));
        let err = parse_exceptions("192.0.2.0/24 partner\nnot-an-ip\n")
            .err()
            .unwrap();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn a_forwarder_is_a_network_an_address_or_a_domain_its_name_is_under() {
        let list = parse_forwarders("# lists\n192.0.2.0/24\n2001:db8::7\n.Lists.Example.\n")
            .ok()
            .unwrap();
        assert_eq!(
            list.by_network("192.0.2.9".parse().unwrap()),
            Some("192.0.2.0/24".into())
        );
        assert_eq!(
            list.by_network("2001:db8::7".parse().unwrap()),
            Some("2001:db8::7".into())
        );
        assert_eq!(list.by_network("198.51.100.1".parse().unwrap()), None);
        assert!(list.has_domains());
        assert_eq!(
            list.by_name("out3.lists.example."),
            Some("lists.example".into())
        );
        assert_eq!(list.by_name("lists.example"), Some("lists.example".into()));
        assert_eq!(list.by_name("evil-lists.example"), None);
        assert_eq!(list.by_name("lists.example.evil.test"), None);
    }

    #[test]
    fn a_forwarders_line_that_is_neither_an_address_nor_a_domain_is_named() {
        let err = parse_forwarders("192.0.2.0/24\n192.0.2.0/99\n")
            .err()
            .unwrap();
        assert_eq!(err.line, 2);
        assert!(err
            .message
            .contains("not an IP address, a network or a domain"));
        assert!(!parse_forwarders("").ok().unwrap().has_domains());
    }

    #[test]
    fn exceptions_match_networks() {
        let list = parse_exceptions("192.0.2.0/24 partner.example\n2001:db8::1\n")
            .ok()
            .unwrap();
        let hit = list
            .iter()
            .find(|(n, _)| n.contains("192.0.2.77".parse().unwrap()));
        assert_eq!(
            hit.and_then(|(_, name)| name.clone()),
            Some("partner.example".into())
        );
        assert!(list
            .iter()
            .any(|(n, _)| n.contains("2001:db8::1".parse().unwrap())));
    }
}
