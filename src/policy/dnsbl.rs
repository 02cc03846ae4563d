//! DNS lists: a client address in a `[[dnsbl]]` zone (a DNSBL, or with a
//! negative weight an allow list), a sender domain in a `[[rhsbl]]` zone —
//! one code path for both: the zone's health first (a dead or broken list
//! is never asked, and one that answers with a query-error code is turned
//! off), the lookup (under `<key>.<zone>` with a DQS key, which nothing
//! shown contains), the reply codes that count, the TXT record when the
//! message quotes it, and the message with `{client_ip}`, `{zone}`,
//! `{txt}`, `{sender_domain}`.

use super::checks::{joined, render, Checks, Timer};
use crate::config::{ListZone, OnDnsError};
use crate::dns::dnsbl::{self, Listing};
use crate::dns::Answer;
use crate::smtp::reply::Reply;
use crate::verdict::{CheckResult, Outcome, Stage};
use std::net::IpAddr;

/// What is looked up in a list.
#[derive(Clone, Copy)]
pub(super) enum Listed<'a> {
    /// The client address (`[[dnsbl]]`).
    Client,
    /// The sender domain (`[[rhsbl]]`).
    Domain(&'a str),
}

impl Checks {
    /// The connect stage's lookup of the client in one `[[dnsbl]]` zone.
    pub(super) async fn dnsbl(&self, client: IpAddr, zone: &ListZone) -> CheckResult {
        let t = Timer::start(Stage::Connect);
        self.listed(&t, client, zone, Listed::Client).await
    }

    /// One list lookup and its result.
    pub(super) async fn listed(
        &self,
        t: &Timer,
        client: IpAddr,
        zone: &ListZone,
        what: Listed<'_>,
    ) -> CheckResult {
        let (check, name, default, domain) = match what {
            Listed::Client => (
                ["dnsbl:", &zone.zone].concat(),
                dnsbl::query_name(client, &zone.query_zone()),
                "Service unavailable; Client host [{client_ip}] blocked using {zone}",
                "",
            ),
            Listed::Domain(domain) => (
                ["rhsbl:", &zone.zone].concat(),
                format!("{domain}.{}.", zone.query_zone()),
                "Service unavailable; Sender domain {sender_domain} blocked using {zone}",
                domain,
            ),
        };
        let setting = zone.setting();
        let ignore = OnDnsError::Ignore;
        if matches!(what, Listed::Client) && !zone.covers(client) {
            let family = if client.is_ipv4() { "ipv4" } else { "ipv6" };
            let detail = format!("not asked: {family} = false");
            return t.result(check, setting, ignore, Outcome::Pass, detail);
        }
        let health = self.health.get(&zone.zone);
        if !health.usable() {
            let detail = format!("zone {}: {}", health.label(), health.reason());
            return t.result(check, setting, ignore, Outcome::Pass, detail);
        }
        match dnsbl::interpret(self.dns.ipv4(&name).await, &zone.codes) {
            Listing::NotListed => t.result(check, setting, ignore, Outcome::Pass, "not listed"),
            Listing::Failed(why) => {
                let failed = match what {
                    Listed::Client => format!(
                        "Service unavailable; {} lookup failed for [{client}]",
                        zone.zone
                    ),
                    Listed::Domain(_) => {
                        format!("Service unavailable; {} lookup failed", zone.zone)
                    }
                };
                let reply = Reply::new(451, "4.7.1", failed);
                let detail = zone.redact(&format!("lookup failed: {why}"));
                t.result(check, setting, ignore, Outcome::DnsError(reply), detail)
            }
            Listing::ZoneError(code) => {
                let health = match dnsbl::Refusal::of(code) {
                    Some(refusal) => dnsbl::Health::Refused(refusal),
                    None => dnsbl::Health::Disabled(format!(
                        "answered a query with the query-error code {code}"
                    )),
                };
                self.health.set(&zone.zone, health, &self.log);
                let detail = format!("zone error code {code}: zone disabled");
                t.result(check, setting, ignore, Outcome::Pass, detail)
            }
            Listing::Listed(ips) => {
                let txt = match &zone.message {
                    Some(m) if m.contains("{txt}") => match self.dns.txt(&name).await {
                        Answer::Found(t) => t.join(" "),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                let template = zone.message.as_deref().unwrap_or(default);
                let reply = Reply::new(
                    554,
                    "5.7.1",
                    render(template, client, &zone.zone, &txt, domain),
                );
                let detail = joined("listed: ", &ips);
                t.result(check, setting, ignore, Outcome::Hit(reply), detail)
            }
        }
    }
}
