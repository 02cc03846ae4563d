//! The checks of the sender at MAIL: the sender block list (qmail's
//! badmailfrom: an exact address, `@domain`, or `/regex/`), whether the
//! domain exists (MX, else an address; RFC 7505 null MX refused), and SPF
//! of the MAIL FROM identity (fail, soft fail, temporary error), whose
//! verdict the transaction keeps for DMARC; a listed forwarder
//! ([`super::forwarded`]) is never refused for its SPF. The RHSBLs of the
//! sender domain are [`super::dnsbl`]'s.

use super::checks::{joined, Checks, Timer};
use super::dnsbl::Listed;
use crate::config::OnDnsError;
use crate::dns::spf::SpfOnce;
use crate::dns::Answer;
use crate::smtp::address::Path;
use crate::smtp::reply::Reply;
use crate::spf::{SpfResult, Verdict};
use crate::verdict::{CheckResult, Outcome, Stage};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

/// The identity SPF checks for a MAIL FROM: `local@domain`, or
/// `postmaster@<helo>` for the null sender (RFC 7208 section 2.4).
pub fn spf_sender(from: &Path, helo: &str) -> String {
    match &from.mailbox {
        Some(m) => m.unquoted(),
        None => format!("postmaster@{}", helo.trim_end_matches('.')),
    }
}

/// What `mxguard check` shows of an SPF verdict: the result, why (for an
/// error or none), and the domain's explanation of a fail.
pub(super) fn spf_detail(verdict: &Verdict) -> String {
    let mut detail = ["spf=", verdict.result.as_str()].concat();
    if let Some(why) = &verdict.why {
        detail.extend([" (", why.as_str(), ")"]);
    }
    if let Some(explanation) = &verdict.explanation {
        detail.push_str(&format!(" explanation={explanation:?}"));
    }
    detail
}

impl Checks {
    /// MAIL stage; the SPF verdict is evaluated through `spf`, the
    /// transaction's, unless it has one already.
    pub async fn mail(
        self: Arc<Self>,
        client: IpAddr,
        helo: String,
        from: Path,
        spf: Arc<SpfOnce>,
    ) -> Vec<CheckResult> {
        let c = &self.config.checks;
        let t = Timer::start(Stage::Mail);
        let mut results = Vec::new();
        let address = from
            .mailbox
            .as_ref()
            .map(crate::smtp::address::Mailbox::unquoted);
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
                .map(|zone| self.listed(&t, client, zone, Listed::Domain(domain)));
            futures_util::future::join_all(lookups).await
        };
        let spf = async {
            if c.spf.is_off() && c.spf_softfail.is_off() {
                return Vec::new();
            }
            let sender = spf_sender(&from, &helo);
            let hostname = &self.config.server.hostname;
            let verdict = spf
                .mail_from(&self.dns, client, &helo, hostname, &sender)
                .await;
            let result = verdict.result;
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
            let mut detail = spf_detail(&verdict);
            // A listed forwarder's mail is forgiven the SPF it breaks;
            // DMARC still judges it with the verdict itself.
            let (fail, soft) = match (&fail, &soft) {
                (Outcome::Pass, Outcome::Pass) => (fail, soft),
                _ => match self.forwarder(client).await {
                    Some(entry) => {
                        detail = format!("forwarder {entry}; {detail}");
                        (Outcome::Pass, Outcome::Pass)
                    }
                    None => (fail, soft),
                },
            };
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
                let mut shown = String::from("mx=");
                for (i, (preference, exchange)) in mx.iter().enumerate() {
                    if i > 0 {
                        shown.push(',');
                    }
                    let _ = write!(shown, "{preference} {exchange}");
                }
                let null_outcome = if null {
                    Outcome::Hit(rejected(
                        550,
                        "5.7.27",
                        "Domain does not accept mail (null MX)",
                    ))
                } else {
                    Outcome::Pass
                };
                ((Outcome::Pass, shown.clone()), (null_outcome, shown))
            }
            Answer::Failed(why) => (lookup_failed(why.clone()), lookup_failed(why)),
            Answer::NotFound => {
                let exists = match self.dns.addresses(domain).await {
                    Answer::Found(ips) => (Outcome::Pass, joined("no MX; address ", &ips)),
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
}
