//! The list files of the checks, reloaded when they change:
//! address block lists (qmail badmailfrom/badmailto and qregex: an exact
//! address, `@domain`, or `/regex/` per line) and the client exceptions
//! (`IP-or-CIDR [name]` per line, hosts style).

use crate::config::Network;
use crate::log::Logger;
use crate::reload::{lines, FileError, LineError, Reloadable};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

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
            // With its domain in A-labels, as addresses are looked up.
            let normal = crate::smtp::address::parse_mailbox(entry)
                .map_or_else(|_| entry.to_string(), |m| m.to_string());
            list.exact.insert(normal.to_ascii_lowercase());
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

    /// The matching pattern for `address` (any case), if any.
    pub fn find(&self, address: &str, log: &Logger) -> Option<String> {
        self.0.current(log).find(&address.to_ascii_lowercase())
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
        assert_eq!(
            list.find("\u{7528}@xn--fsqu00a.xn--0zwm56d"),
            Some("@xn--fsqu00a.xn--0zwm56d".into())
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
