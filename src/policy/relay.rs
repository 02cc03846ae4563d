//! Relay control: mail is accepted for `relay.domains`, and for any domain
//! only from `relay.trusted_networks`. Address tricks that made old mailers
//! relay (source routes, `%` and `!` in the local part, a quoted local part
//! holding `@`) are refused from everyone; address literals never match a
//! relay domain.

use crate::config::{Network, Relay};
use crate::smtp::address::{Mailbox, Path};
use crate::smtp::reply::Reply;
use crate::verdict::Refusal;
use std::collections::HashSet;
use std::net::IpAddr;

pub struct RelayControl {
    domains: HashSet<String>,
    trusted: Vec<Network>,
}

/// Where an acceptable recipient goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// One of our relay domains.
    Local(&'a Mailbox),
    /// Elsewhere, for a trusted client.
    Relayed,
}

impl RelayControl {
    pub fn new(config: &Relay) -> RelayControl {
        RelayControl {
            domains: config.domains.iter().cloned().collect(),
            trusted: config.trusted_networks.clone(),
        }
    }

    pub fn is_trusted(&self, client: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(client))
    }

    pub fn check<'a>(&self, client: IpAddr, to: &'a Path) -> Result<Destination<'a>, Refusal> {
        let Some(mailbox) = &to.mailbox else {
            return Err(denied(to));
        };
        if to.source_route || mailbox.has_routing_trick() {
            return Err(denied(to));
        }
        match mailbox.domain_name() {
            Some(domain) if self.domains.contains(domain) => Ok(Destination::Local(mailbox)),
            _ if self.is_trusted(client) => Ok(Destination::Relayed),
            _ => Err(denied(to)),
        }
    }
}

fn denied(to: &Path) -> Refusal {
    Refusal::new(
        "relay",
        Reply::new(554, "5.7.1", format!("{to}: Relay access denied")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_path;

    fn control() -> RelayControl {
        RelayControl::new(&Relay {
            domains: vec!["example.com".into()],
            trusted_networks: vec!["10.0.0.0/8".parse().unwrap()],
        })
    }

    fn verdict(client: &str, to: &str) -> Result<bool, u16> {
        let path = parse_path(to).unwrap();
        control()
            .check(client.parse().unwrap(), &path)
            .map(|d| matches!(d, Destination::Local(_)))
            .map_err(|r| r.reply.code)
    }

    #[test]
    fn local_domains_accepted_from_anyone() {
        assert_eq!(verdict("192.0.2.1", "<user@example.com>"), Ok(true));
        assert_eq!(verdict("192.0.2.1", "<user@EXAMPLE.com.>"), Ok(true));
    }

    #[test]
    fn other_domains_only_from_trusted() {
        assert_eq!(verdict("192.0.2.1", "<user@elsewhere.org>"), Err(554));
        assert_eq!(verdict("10.1.2.3", "<user@elsewhere.org>"), Ok(false));
    }

    #[test]
    fn tricks_never_relay() {
        for trick in [
            "<user%elsewhere.org@example.com>",
            "<elsewhere.org!user@example.com>",
            "<\"user@elsewhere.org\"@example.com>",
            "<@example.com:user@elsewhere.org>",
            "<@elsewhere.org:user@example.com>",
            "<user@[192.0.2.99]>",
            "<user@example.com.elsewhere.org>",
        ] {
            assert_eq!(verdict("192.0.2.1", trick), Err(554), "{trick}");
        }
    }
}
