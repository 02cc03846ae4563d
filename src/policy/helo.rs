//! HELO checks: the name's syntax (valid, fully qualified, no bare IP, an
//! address literal only if it is the client's, not our own name), and with
//! DNS: whether it resolves, whether it is the client's PTR name, and the
//! SPF result of the HELO identity.

use super::checks::{joined, Checks, Timer};
use crate::config::OnDnsError;
use crate::dns::Answer;
use crate::smtp::address::is_domain;
use crate::smtp::reply::Reply;
use crate::spf::SpfResult;
use crate::verdict::{CheckResult, Outcome, Stage};
use std::net::IpAddr;
use std::sync::Arc;

impl Checks {
    /// HELO stage.
    pub async fn helo(self: Arc<Self>, client: IpAddr, helo: String) -> Vec<CheckResult> {
        let c = &self.config.checks;
        let hostname = &self.config.server.hostname;
        let t = Timer::start(Stage::Helo);
        let tempfail = OnDnsError::Tempfail;
        let mut results = Vec::new();
        let bad_syntax = syntax(&helo, client, hostname);
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
                Answer::Found(ips) => (Outcome::Pass, joined("resolves to ", &ips)),
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
            let verdict = self.dns.spf_helo(client, &name, hostname).await;
            let outcome = match verdict.result {
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
                super::sender::spf_detail(&verdict),
            ))
        };
        let (a, b, s) = tokio::join!(resolves, matches_ptr, spf);
        results.extend([a, b, s].into_iter().flatten());
        results
    }
}

/// The syntax part of the `helo` check: the reply if the name is bad.
pub fn syntax(helo: &str, client: IpAddr, our_hostname: &str) -> Option<Reply> {
    let rejected = |code, status, why: &str| {
        Some(Reply::new(
            code,
            status,
            format!("<{helo}>: Helo command rejected: {why}"),
        ))
    };
    if let Some(inner) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let literal = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
            .unwrap_or(inner)
            .parse::<IpAddr>();
        return match literal {
            Err(_) => rejected(501, "5.5.2", "Invalid name"),
            Ok(ip) if crate::net::canonical_ip(ip) != client => rejected(
                550,
                "5.7.1",
                &format!("address literal does not match your address [{client}]"),
            ),
            Ok(_) => None,
        };
    }
    if helo.parse::<IpAddr>().is_ok() {
        return rejected(501, "5.5.2", &format!("bare IP address, use [{helo}]"));
    }
    let name = helo.strip_suffix('.').unwrap_or(helo);
    if !is_domain(name) {
        return rejected(501, "5.5.2", "Invalid name");
    }
    if !name.contains('.') {
        return rejected(504, "5.5.2", "need fully-qualified hostname");
    }
    if name.eq_ignore_ascii_case(our_hostname) {
        return rejected(550, "5.7.1", "You are not me");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(helo: &str) -> Option<String> {
        syntax(helo, "192.0.2.1".parse().unwrap(), "mx.example.com").map(|r| r.to_string())
    }

    #[test]
    fn good_names_pass() {
        assert_eq!(check("mail.client.example"), None);
        assert_eq!(check("mail.client.example."), None);
        assert_eq!(check("[192.0.2.1]"), None);
    }

    #[test]
    fn bad_names_get_their_reply() {
        assert_eq!(
            check("localhost").unwrap(),
            "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
        );
        assert_eq!(
            check("bad_name!").unwrap(),
            "501 5.5.2 <bad_name!>: Helo command rejected: Invalid name"
        );
        assert_eq!(
            check("192.0.2.1").unwrap(),
            "501 5.5.2 <192.0.2.1>: Helo command rejected: bare IP address, use [192.0.2.1]"
        );
        assert_eq!(
            check("[198.51.100.9]").unwrap(),
            "550 5.7.1 <[198.51.100.9]>: Helo command rejected: address literal does not match your address [192.0.2.1]"
        );
        assert_eq!(
            check("[999.1.1.1]").unwrap(),
            "501 5.5.2 <[999.1.1.1]>: Helo command rejected: Invalid name"
        );
        assert_eq!(
            check("MX.Example.com").unwrap(),
            "550 5.7.1 <MX.Example.com>: Helo command rejected: You are not me"
        );
    }
}
