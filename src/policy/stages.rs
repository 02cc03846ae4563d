//! The checks of each stage, run with DNS: connect (reverse DNS, DNSBLs),
//! HELO (syntax, resolves, matches the PTR name, SPF), MAIL (block list,
//! domain exists, null MX, RHSBLs, SPF) and RCPT (block list). Each stage
//! starts all its lookups at once, so it takes as long as its slowest
//! lookup; checks that are off cost nothing.

use super::rdns::looks_generic;
use crate::config::{CheckSetting, Config, ListZone, OnDnsError};
use crate::dns::dnsbl::{self, HealthTable, Listing};
use crate::dns::{Answer, Dns};
use crate::lists::{AddressList, ClientExceptions};
use crate::log::Logger;
use crate::reload::FileError;
use crate::smtp::address::{Mailbox, Path};
use crate::smtp::reply::Reply;
use crate::verdict::{CheckResult, Outcome, Stage};
use mail_auth::SpfResult;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// Everything the DNS checks need, shared by all sessions.
pub struct Checks {
    pub config: Arc<Config>,
    pub dns: Arc<Dns>,
    pub health: Arc<HealthTable>,
    pub log: Arc<Logger>,
    exceptions: Option<ClientExceptions>,
    sender_blocklist: Option<AddressList>,
    recipient_blocklist: Option<AddressList>,
}

/// Builds one result, timing it from `started`.
struct Timer {
    stage: Stage,
    started: Instant,
}

impl Timer {
    fn start(stage: Stage) -> Timer {
        Timer {
            stage,
            started: Instant::now(),
        }
    }

    fn result(
        &self,
        check: &str,
        setting: CheckSetting,
        dns_error_default: OnDnsError,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> CheckResult {
        CheckResult {
            check: check.to_string(),
            stage: self.stage,
            setting,
            dns_error_default,
            outcome,
            detail: detail.into(),
            elapsed: self.started.elapsed(),
        }
    }
}

fn render(template: &str, client: IpAddr, zone: &str, txt: &str, sender: &str) -> String {
    template
        .replace("{client_ip}", &client.to_string())
        .replace("{zone}", zone)
        .replace("{txt}", txt)
        .replace("{sender_domain}", sender)
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
        Ok(Checks {
            config,
            dns,
            health,
            log,
            exceptions,
            sender_blocklist,
            recipient_blocklist,
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

    /// Connect stage: reverse DNS and every DNSBL, in parallel.
    pub async fn connect(self: Arc<Self>, client: IpAddr) -> Vec<CheckResult> {
        let mut tasks = JoinSet::new();
        for zone in self.config.dnsbl.clone() {
            let checks = self.clone();
            tasks.spawn(async move { checks.dnsbl(client, &zone).await });
        }
        let mut results = self.rdns(client).await;
        while let Some(done) = tasks.join_next().await {
            if let Ok(result) = done {
                results.push(result);
            }
        }
        results
    }

    async fn rdns(&self, client: IpAddr) -> Vec<CheckResult> {
        let c = &self.config.checks;
        if c.reverse_dns.is_off() && c.forged_reverse_dns.is_off() && c.generic_reverse_dns.is_off()
        {
            return Vec::new();
        }
        let t = Timer::start(Stage::Connect);
        let tempfail = OnDnsError::Tempfail;
        let failed = Outcome::DnsError(Reply::new(
            451,
            "4.7.1",
            format!("Client host rejected: IP name lookup failed [{client}]"),
        ));
        let names = match self.dns.ptr(client).await {
            Answer::Failed(why) => {
                return vec![
                    t.result(
                        "reverse_dns",
                        c.reverse_dns,
                        tempfail,
                        failed.clone(),
                        format!("PTR lookup failed: {why}"),
                    ),
                    t.result(
                        "forged_reverse_dns",
                        c.forged_reverse_dns,
                        tempfail,
                        failed.clone(),
                        "no PTR to confirm",
                    ),
                ];
            }
            Answer::NotFound => {
                let reply = Reply::new(
                    550,
                    "5.7.1",
                    format!("Client host rejected: cannot find your reverse hostname, [{client}]"),
                );
                return vec![
                    t.result(
                        "reverse_dns",
                        c.reverse_dns,
                        tempfail,
                        Outcome::Hit(reply),
                        "no PTR record",
                    ),
                    t.result(
                        "forged_reverse_dns",
                        c.forged_reverse_dns,
                        tempfail,
                        Outcome::Pass,
                        "no PTR to confirm",
                    ),
                ];
            }
            Answer::Found(names) => names,
        };
        let mut results = vec![t.result(
            "reverse_dns",
            c.reverse_dns,
            tempfail,
            Outcome::Pass,
            format!("ptr={}", names.join(",")),
        )];
        // Forward-confirm: one of (at most five) PTR names resolves back.
        let mut confirmed = None;
        let mut failure = None;
        for name in names.iter().take(5) {
            // Only the client's address family: an answer of the other
            // family must not hide a failed lookup of this one.
            match self.dns.addresses_like(name, client).await {
                Answer::Found(ips)
                    if ips.iter().any(|ip| crate::net::canonical_ip(*ip) == client) =>
                {
                    confirmed = Some(name.clone());
                    break;
                }
                Answer::Failed(why) => failure = Some(why),
                _ => {}
            }
        }
        let forged = match (&confirmed, failure) {
            (Some(name), _) => (Outcome::Pass, format!("{name} resolves to {client}")),
            (None, Some(why)) => (failed.clone(), format!("forward lookup failed: {why}")),
            (None, None) => (
                Outcome::Hit(Reply::new(
                    550,
                    "5.7.25",
                    format!("Client host rejected: IP name possibly forged [{client}]"),
                )),
                format!("{} does not resolve to {client}", names.join(",")),
            ),
        };
        results.push(t.result(
            "forged_reverse_dns",
            c.forged_reverse_dns,
            tempfail,
            forged.0,
            forged.1,
        ));
        let shown = confirmed.unwrap_or_else(|| names[0].clone());
        let generic = if looks_generic(&shown, client) {
            Outcome::Hit(Reply::new(
                550,
                "5.7.1",
                format!("Client host rejected: generic reverse hostname {shown} [{client}]"),
            ))
        } else {
            Outcome::Pass
        };
        results.push(t.result(
            "generic_reverse_dns",
            c.generic_reverse_dns,
            tempfail,
            generic,
            shown,
        ));
        results
    }

    async fn dnsbl(&self, client: IpAddr, zone: &ListZone) -> CheckResult {
        let t = Timer::start(Stage::Connect);
        let check = format!("dnsbl:{}", zone.zone);
        let setting = zone.setting();
        let ignore = OnDnsError::Ignore;
        let health = self.health.get(&zone.zone);
        if !health.usable() {
            return t.result(
                &check,
                setting,
                ignore,
                Outcome::Pass,
                format!("zone {}: {}", health.label(), health.reason()),
            );
        }
        let name = dnsbl::query_name(client, &zone.zone);
        match dnsbl::interpret(self.dns.ipv4(&name).await, &zone.codes) {
            Listing::NotListed => t.result(&check, setting, ignore, Outcome::Pass, "not listed"),
            Listing::Failed(why) => {
                let reply = Reply::new(
                    451,
                    "4.7.1",
                    format!(
                        "Service unavailable; {} lookup failed for [{client}]",
                        zone.zone
                    ),
                );
                t.result(
                    &check,
                    setting,
                    ignore,
                    Outcome::DnsError(reply),
                    format!("lookup failed: {why}"),
                )
            }
            Listing::ZoneError(code) => {
                let health = dnsbl::Health::Disabled(format!(
                    "answered {name} with the query-error code {code}"
                ));
                self.health.set(&zone.zone, health, &self.log);
                t.result(
                    &check,
                    setting,
                    ignore,
                    Outcome::Pass,
                    format!("zone error code {code}: zone disabled"),
                )
            }
            Listing::Listed(ips) => {
                let answers: Vec<String> = ips.iter().map(ToString::to_string).collect();
                let txt = match &zone.message {
                    Some(m) if m.contains("{txt}") => match self.dns.txt(&name).await {
                        Answer::Found(t) => t.join(" "),
                        _ => String::new(),
                    },
                    _ => String::new(),
                };
                let template = zone.message.as_deref().unwrap_or(
                    "Service unavailable; Client host [{client_ip}] blocked using {zone}",
                );
                let text = render(template, client, &zone.zone, &txt, "");
                let reply = Reply::new(554, "5.7.1", text);
                t.result(
                    &check,
                    setting,
                    ignore,
                    Outcome::Hit(reply),
                    format!("listed: {}", answers.join(",")),
                )
            }
        }
    }

    /// HELO stage.
    pub async fn helo(self: Arc<Self>, client: IpAddr, helo: String) -> Vec<CheckResult> {
        let c = &self.config.checks;
        let hostname = &self.config.server.hostname;
        let t = Timer::start(Stage::Helo);
        let tempfail = OnDnsError::Tempfail;
        let mut results = Vec::new();
        let bad_syntax = super::helo::syntax(&helo, client, hostname);
        if !c.helo.is_off() {
            let outcome = bad_syntax.clone().map_or(Outcome::Pass, Outcome::Hit);
            results.push(t.result("helo", c.helo, tempfail, outcome, helo.clone()));
        }
        // The DNS checks only make sense for a well-formed host name.
        let is_name = bad_syntax.is_none() && !helo.starts_with('[');
        let name = helo.trim_end_matches('.').to_ascii_lowercase();
        let rejected = |code, status, why: &str| {
            Reply::new(
                code,
                status,
                format!("<{helo}>: Helo command rejected: {why}"),
            )
        };
        let resolves = async {
            if c.helo_dns.is_off() || !is_name {
                return None;
            }
            let (outcome, detail) = match self.dns.addresses(&name).await {
                Answer::Found(ips) => (Outcome::Pass, format!("resolves to {}", join_ips(&ips))),
                Answer::NotFound => (
                    Outcome::Hit(rejected(550, "5.7.1", "Host not found")),
                    "no A/AAAA".into(),
                ),
                Answer::Failed(why) => (
                    Outcome::DnsError(rejected(450, "4.7.1", "Host not found")),
                    format!("lookup failed: {why}"),
                ),
            };
            Some(t.result("helo_dns", c.helo_dns, tempfail, outcome, detail))
        };
        let matches_ptr = async {
            if c.helo_ptr_mismatch.is_off() || !is_name {
                return None;
            }
            let (outcome, detail) = match self.dns.ptr(client).await {
                Answer::Found(names) if names.contains(&name) => {
                    (Outcome::Pass, format!("ptr={}", names.join(",")))
                }
                Answer::Failed(why) => (
                    Outcome::DnsError(rejected(450, "4.7.1", "reverse hostname lookup failed")),
                    format!("PTR lookup failed: {why}"),
                ),
                other => (
                    Outcome::Hit(rejected(
                        550,
                        "5.7.1",
                        "does not match your reverse hostname",
                    )),
                    match other {
                        Answer::Found(names) => format!("ptr={}", names.join(",")),
                        _ => "no PTR".into(),
                    },
                ),
            };
            Some(t.result(
                "helo_ptr_mismatch",
                c.helo_ptr_mismatch,
                OnDnsError::Ignore,
                outcome,
                detail,
            ))
        };
        let spf = async {
            if c.helo_spf.is_off() || !is_name {
                return None;
            }
            let result = self.dns.spf_helo(client, &name, hostname).await;
            let outcome = match result {
                SpfResult::Fail => Outcome::Hit(rejected(550, "5.7.23", "SPF check failed")),
                SpfResult::TempError => {
                    Outcome::DnsError(rejected(451, "4.7.24", "SPF temporary error"))
                }
                _ => Outcome::Pass,
            };
            Some(t.result(
                "helo_spf",
                c.helo_spf,
                tempfail,
                outcome,
                format!("spf={}", spf_name(result)),
            ))
        };
        let (a, b, s) = tokio::join!(resolves, matches_ptr, spf);
        results.extend([a, b, s].into_iter().flatten());
        results
    }

    /// MAIL stage.
    pub async fn mail(
        self: Arc<Self>,
        client: IpAddr,
        helo: String,
        from: Path,
    ) -> Vec<CheckResult> {
        let c = &self.config.checks;
        let t = Timer::start(Stage::Mail);
        let mut results = Vec::new();
        let address = from
            .mailbox
            .as_ref()
            .map(|m| format!("{}@{}", m.local_unquoted(), domain_of(m)));
        if let (Some(list), Some(addr)) = (&self.sender_blocklist, &address) {
            if !c.sender_blocklist.is_off() {
                let outcome = match list.find(addr, &self.log) {
                    Some(pattern) => (
                        Outcome::Hit(Reply::new(
                            554,
                            "5.7.1",
                            format!("<{addr}>: Sender address rejected: Access denied"),
                        )),
                        format!("matches {pattern}"),
                    ),
                    None => (Outcome::Pass, "not listed".to_string()),
                };
                results.push(t.result(
                    "sender_blocklist",
                    c.sender_blocklist,
                    OnDnsError::Ignore,
                    outcome.0,
                    outcome.1,
                ));
            }
        }
        let domain = from
            .mailbox
            .as_ref()
            .and_then(|m| m.domain_name().map(str::to_string));
        let exists = async {
            let (Some(domain), Some(addr)) = (&domain, &address) else {
                return Vec::new();
            };
            if c.sender_domain.is_off() && c.null_mx.is_off() {
                return Vec::new();
            }
            self.sender_domain(&t, domain, addr).await
        };
        let rhsbls = async {
            let Some(domain) = &domain else {
                return Vec::new();
            };
            let lookups = self
                .config
                .rhsbl
                .iter()
                .map(|zone| self.rhsbl(&t, client, domain, zone));
            futures_util::future::join_all(lookups).await
        };
        let spf = async {
            if c.spf.is_off() && c.spf_softfail.is_off() {
                return Vec::new();
            }
            let sender = address
                .clone()
                .unwrap_or_else(|| format!("postmaster@{}", helo.trim_end_matches('.')));
            let result = self
                .dns
                .spf_mail_from(client, &helo, &self.config.server.hostname, &sender)
                .await;
            let rejected = |status, why: &str| {
                Reply::new(
                    550,
                    status,
                    format!("<{sender}>: Sender address rejected: {why}"),
                )
            };
            let fail = match result {
                SpfResult::Fail => Outcome::Hit(rejected("5.7.23", "SPF check failed")),
                SpfResult::TempError => Outcome::DnsError(Reply::new(
                    451,
                    "4.7.24",
                    format!("<{sender}>: Sender address rejected: SPF temporary error"),
                )),
                _ => Outcome::Pass,
            };
            let soft = match result {
                SpfResult::SoftFail => Outcome::Hit(rejected("5.7.23", "SPF soft fail")),
                _ => Outcome::Pass,
            };
            let detail = format!("spf={}", spf_name(result));
            vec![
                t.result("spf", c.spf, OnDnsError::Tempfail, fail, detail.clone()),
                t.result(
                    "spf_softfail",
                    c.spf_softfail,
                    OnDnsError::Ignore,
                    soft,
                    detail,
                ),
            ]
        };
        let (a, b, s) = tokio::join!(exists, rhsbls, spf);
        results.extend(
            a.into_iter()
                .chain(b)
                .chain(s)
                .filter(|r| !r.setting.is_off()),
        );
        results
    }

    async fn sender_domain(&self, t: &Timer, domain: &str, addr: &str) -> Vec<CheckResult> {
        let c = &self.config.checks;
        let tempfail = OnDnsError::Tempfail;
        let rejected = |code, status, why: &str| {
            Reply::new(
                code,
                status,
                format!("<{addr}>: Sender address rejected: {why}"),
            )
        };
        let lookup_failed = |why: String| {
            (
                Outcome::DnsError(rejected(451, "4.1.8", "Domain lookup failed")),
                format!("lookup failed: {why}"),
            )
        };
        let (exists, null_mx) = match self.dns.mx(domain).await {
            Answer::Found(mx) => {
                let null = mx.iter().any(|(_, exchange)| exchange.is_empty());
                let shown = mx
                    .iter()
                    .map(|(p, e)| format!("{p} {e}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let null_outcome = if null {
                    Outcome::Hit(rejected(
                        550,
                        "5.7.27",
                        "Domain does not accept mail (null MX)",
                    ))
                } else {
                    Outcome::Pass
                };
                (
                    (Outcome::Pass, format!("mx={shown}")),
                    (null_outcome, format!("mx={shown}")),
                )
            }
            Answer::Failed(why) => (lookup_failed(why.clone()), lookup_failed(why)),
            Answer::NotFound => {
                let exists = match self.dns.addresses(domain).await {
                    Answer::Found(ips) => {
                        (Outcome::Pass, format!("no MX; address {}", join_ips(&ips)))
                    }
                    Answer::NotFound => (
                        Outcome::Hit(rejected(550, "5.1.8", "Domain not found")),
                        "no MX, A or AAAA".into(),
                    ),
                    Answer::Failed(why) => lookup_failed(why),
                };
                (exists, (Outcome::Pass, "no MX".into()))
            }
        };
        vec![
            t.result(
                "sender_domain",
                c.sender_domain,
                tempfail,
                exists.0,
                exists.1,
            ),
            t.result("null_mx", c.null_mx, tempfail, null_mx.0, null_mx.1),
        ]
    }

    async fn rhsbl(&self, t: &Timer, client: IpAddr, domain: &str, zone: &ListZone) -> CheckResult {
        let check = format!("rhsbl:{}", zone.zone);
        let setting = zone.setting();
        let health = self.health.get(&zone.zone);
        if !health.usable() {
            let detail = format!("zone {}: {}", health.label(), health.reason());
            return t.result(&check, setting, OnDnsError::Ignore, Outcome::Pass, detail);
        }
        let name = format!("{domain}.{}.", zone.zone);
        match dnsbl::interpret(self.dns.ipv4(&name).await, &zone.codes) {
            Listing::Listed(ips) => {
                let template = zone.message.as_deref().unwrap_or(
                    "Service unavailable; Sender domain {sender_domain} blocked using {zone}",
                );
                let reply = Reply::new(
                    554,
                    "5.7.1",
                    render(template, client, &zone.zone, "", domain),
                );
                t.result(
                    &check,
                    setting,
                    OnDnsError::Ignore,
                    Outcome::Hit(reply),
                    format!("listed: {}", join_v4(&ips)),
                )
            }
            Listing::Failed(why) => {
                let reply = Reply::new(
                    451,
                    "4.7.1",
                    format!("Service unavailable; {} lookup failed", zone.zone),
                );
                t.result(
                    &check,
                    setting,
                    OnDnsError::Ignore,
                    Outcome::DnsError(reply),
                    format!("lookup failed: {why}"),
                )
            }
            Listing::ZoneError(code) => {
                let why = format!("answered {name} with the query-error code {code}");
                self.health
                    .set(&zone.zone, dnsbl::Health::Disabled(why), &self.log);
                t.result(
                    &check,
                    setting,
                    OnDnsError::Ignore,
                    Outcome::Pass,
                    format!("zone error code {code}: zone disabled"),
                )
            }
            Listing::NotListed => t.result(
                &check,
                setting,
                OnDnsError::Ignore,
                Outcome::Pass,
                "not listed",
            ),
        }
    }

    /// RCPT stage: the recipient block list.
    pub fn rcpt(&self, to: &Mailbox) -> Vec<CheckResult> {
        let c = &self.config.checks;
        let (Some(list), false) = (&self.recipient_blocklist, c.recipient_blocklist.is_off())
        else {
            return Vec::new();
        };
        let t = Timer::start(Stage::Rcpt);
        let addr = format!("{}@{}", to.local_unquoted(), domain_of(to));
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

fn domain_of(m: &Mailbox) -> &str {
    match &m.domain {
        crate::smtp::address::Domain::Name(d) | crate::smtp::address::Domain::Literal(d) => d,
    }
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn join_v4(ips: &[std::net::Ipv4Addr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}
