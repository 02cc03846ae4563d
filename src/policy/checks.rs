//! The DNS and list checks of each stage, [`Checks`]: built once from the
//! configuration, shared by all sessions. This file holds what they share
//! (the lists, the timer of a result, the rendering of a list's message),
//! the connect stage's start (reverse DNS and the DNSBLs, at once) and the
//! RCPT stage (the recipient block list); each family of checks is a file
//! of its own: [`super::rdns`], [`super::dnsbl`] (DNSBLs and RHSBLs, one
//! code path), [`super::helo`], [`super::sender`] (with the forwarders
//! of [`super::forwarded`]). Each stage starts all its
//! lookups at once, so it takes as long as its slowest lookup; checks that
//! are off cost nothing.

use crate::config::{CheckSetting, Config, OnDnsError};
use crate::dns::dnsbl::HealthTable;
use crate::dns::Dns;
use crate::lists::{AddressList, ClientExceptions, Forwarders};
use crate::log::Logger;
use crate::reload::FileError;
use crate::smtp::address::Mailbox;
use crate::smtp::reply::Reply;
use crate::verdict::{CheckName, CheckResult, Outcome, Stage};
use futures_util::future::{join, join_all};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Everything the DNS checks need, shared by all sessions.
pub struct Checks {
    pub config: Arc<Config>,
    pub dns: Arc<Dns>,
    pub health: Arc<HealthTable>,
    pub log: Arc<Logger>,
    exceptions: Option<ClientExceptions>,
    pub(super) sender_blocklist: Option<AddressList>,
    recipient_blocklist: Option<AddressList>,
    pub(super) forwarders: Option<Forwarders>,
}

/// Builds one result, timing it from `started`.
pub(super) struct Timer {
    stage: Stage,
    started: Instant,
}

impl Timer {
    pub(super) fn start(stage: Stage) -> Timer {
        Timer {
            stage,
            started: Instant::now(),
        }
    }

    pub(super) fn result(
        &self,
        check: impl Into<CheckName>,
        setting: CheckSetting,
        dns_error_default: OnDnsError,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> CheckResult {
        CheckResult {
            check: check.into(),
            stage: self.stage,
            setting,
            dns_error_default,
            outcome,
            detail: detail.into(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// A DNSBL's reply text: `{client_ip}`, `{zone}`, `{txt}` and
/// `{sender_domain}` in the template replaced by their values, in one pass
/// (a value is never searched for placeholders in its turn).
pub(super) fn render(
    template: &str,
    client: IpAddr,
    zone: &str,
    txt: &str,
    sender: &str,
) -> String {
    let mut out = String::with_capacity(template.len() + zone.len() + txt.len() + 40);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        // The client's address is written in place (None), the rest copied.
        let placeholder = [
            ("{client_ip}", None),
            ("{zone}", Some(zone)),
            ("{txt}", Some(txt)),
            ("{sender_domain}", Some(sender)),
        ]
        .into_iter()
        .find(|(name, _)| rest.starts_with(name));
        rest = match placeholder {
            Some((name, value)) => {
                match value {
                    Some(text) => out.push_str(text),
                    None => crate::net::push_ip(&mut out, client),
                }
                &rest[name.len()..]
            }
            None => {
                out.push('{');
                &rest[1..]
            }
        };
    }
    out.push_str(rest);
    out
}

impl Checks {
    pub fn new(
        config: Arc<Config>,
        dns: Arc<Dns>,
        log: Arc<Logger>,
        health: Arc<HealthTable>,
    ) -> Result<Checks, FileError> {
        let lists = &config.lists;
        let exceptions = lists
            .client_exceptions
            .as_deref()
            .map(ClientExceptions::open)
            .transpose()?;
        let sender_blocklist = lists
            .sender_blocklist
            .as_deref()
            .map(|p| AddressList::open("lists.sender_blocklist", p))
            .transpose()?;
        let recipient_blocklist = lists
            .recipient_blocklist
            .as_deref()
            .map(|p| AddressList::open("lists.recipient_blocklist", p))
            .transpose()?;
        let forwarders = config
            .checks
            .forwarders
            .as_deref()
            .map(Forwarders::open)
            .transpose()?;
        Ok(Checks {
            config,
            dns,
            health,
            log,
            exceptions,
            sender_blocklist,
            recipient_blocklist,
            forwarders,
        })
    }

    /// The exception entry that exempts `client` from the client checks.
    pub fn exception(&self, client: IpAddr) -> Option<String> {
        self.exceptions.as_ref()?.find(client, &self.log)
    }

    /// Whether any connect-stage check is configured (else no task is
    /// started for a connection).
    pub fn has_connect_checks(&self) -> bool {
        let c = &self.config.checks;
        !(self.config.dnsbl.is_empty()
            && c.reverse_dns.is_off()
            && c.forged_reverse_dns.is_off()
            && c.generic_reverse_dns.is_off())
    }

    /// Connect stage: reverse DNS and every DNSBL, concurrently, their
    /// results in the configuration's order.
    pub async fn connect(self: Arc<Self>, client: IpAddr) -> Vec<CheckResult> {
        let lists = (self.config.dnsbl.iter()).map(|zone| self.dnsbl(client, zone));
        let (mut results, listed) = join(self.rdns(client), join_all(lists)).await;
        results.extend(listed);
        results
    }

    /// RCPT stage: the recipient block list.
    pub fn rcpt(&self, to: &Mailbox) -> Vec<CheckResult> {
        let c = &self.config.checks;
        let (Some(list), false) = (&self.recipient_blocklist, c.recipient_blocklist.is_off())
        else {
            return Vec::new();
        };
        let t = Timer::start(Stage::Rcpt);
        let addr = to.unquoted();
        let (outcome, detail) = match list.find(&addr, &self.log) {
            Some(pattern) => (
                Outcome::Hit(Reply::new(
                    550,
                    "5.7.1",
                    format!("<{addr}>: Recipient address rejected: Access denied"),
                )),
                format!("matches {pattern}"),
            ),
            None => (Outcome::Pass, "not listed".to_string()),
        };
        vec![t.result(
            "recipient_blocklist",
            c.recipient_blocklist,
            OnDnsError::Ignore,
            outcome,
            detail,
        )]
    }
}

/// `prefix` and then addresses joined by commas (a check's detail),
/// written without the formatting machinery.
pub(super) fn joined<T: Copy + Into<std::net::IpAddr>>(prefix: &str, ips: &[T]) -> String {
    let mut out = String::with_capacity(prefix.len() + 16 * ips.len());
    out.push_str(prefix);
    for (i, ip) in ips.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::net::push_ip(&mut out, (*ip).into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn a_dnsbl_message_gets_each_placeholder_once_and_keeps_other_braces() {
        let client = "192.0.2.1".parse().unwrap();
        assert_eq!(
            render(
                "{client_ip} at {zone}: {txt} ({sender_domain}) {client_ip} {other} {",
                client,
                "bl.test",
                "see {sender_domain}",
                "example.test"
            ),
            "192.0.2.1 at bl.test: see {sender_domain} (example.test) 192.0.2.1 {other} {"
        );
        assert_eq!(render("plain", client, "z", "", ""), "plain");
    }
}
