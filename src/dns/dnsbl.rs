//! DNS lists: the query name for a client address (IPv4 reversed octets,
//! IPv6 reversed nibbles) or a sender domain, which answers count as a
//! listing, and the health of each zone (RFC 5782 section 5): a zone that
//! lists the negative test point 127.0.0.1, or answers with a query-error
//! code (Spamhaus's 127.255.255.0/24 and 127.0.1.255), is unusable and can
//! never refuse mail until a later health check finds it sane; Spamhaus's
//! three refusals of the resolver itself ([`Refusal`]) are told apart, with
//! what to do about them. A list with a DQS key is asked under
//! `<key>.<zone>` ([`ListZone::query_zone`]) and named by its zone alone.
//! A server shares its conclusions with the fleet through the state store
//! ([`test_and_share`]).

use super::{Answer, Dns};
use crate::config::checks::CodeRange;
use crate::config::{Config, ListZone};
use crate::log::Logger;
use crate::state::State;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

/// `1.2.0.192.zone.` for 192.0.2.1; nibbles for IPv6.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    match crate::net::canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let mut name = String::with_capacity(17 + zone.len());
            for octet in v4.octets().into_iter().rev() {
                crate::net::push_octet(&mut name, octet);
                name.push('.');
            }
            name.push_str(zone);
            name.push('.');
            name
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(65 + zone.len());
            for byte in v6.octets().into_iter().rev() {
                for nibble in [byte & 0xf, byte >> 4] {
                    name.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
                    name.push('.');
                }
            }
            name.push_str(zone);
            name.push('.');
            name
        }
    }
}

/// An answer that reports an error in the query rather than a listing.
pub fn is_error_code(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    (o[0] == 127 && o[1] == 255 && o[2] == 255) || ip == Ipv4Addr::new(127, 0, 1, 255)
}

/// Spamhaus refusing to answer a resolver (not a listing, and not the
/// list's fault): the answers 127.255.255.252, .254 and .255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 127.255.255.252: a typo in the zone or the key, or a query the
    /// list does not take.
    BadQuery,
    /// 127.255.255.254: the query came through a public or open resolver.
    OpenResolver,
    /// 127.255.255.255: this resolver is over its free quota.
    OverQuota,
}

impl Refusal {
    /// The refusal an answer is, if it is one.
    pub fn of(code: Ipv4Addr) -> Option<Refusal> {
        match code.octets() {
            [127, 255, 255, 252] => Some(Refusal::BadQuery),
            [127, 255, 255, 254] => Some(Refusal::OpenResolver),
            [127, 255, 255, 255] => Some(Refusal::OverQuota),
            _ => None,
        }
    }

    /// Its name in the log (`reason=`), the metrics and the state store.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadQuery => "bad_query",
            Refusal::OpenResolver => "open_resolver",
            Refusal::OverQuota => "over_quota",
        }
    }

    fn from_name(name: &str) -> Option<Refusal> {
        [Refusal::BadQuery, Refusal::OpenResolver, Refusal::OverQuota]
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// What it means and what to do.
    pub fn explanation(self) -> &'static str {
        match self {
            Refusal::BadQuery => {
                "the list answers 127.255.255.252 (typo or bad query): check the zone name \
                 and the DQS key"
            }
            Refusal::OpenResolver => {
                "the list answers 127.255.255.254 (public or open resolver): it refuses \
                 queries that come through a public resolver; set dns.nameservers to a \
                 resolver of your own, or use a DQS key"
            }
            Refusal::OverQuota => {
                "the list answers 127.255.255.255 (over quota, excessive queries): use a \
                 DQS key, or a resolver of your own that is not shared"
            }
        }
    }
}

/// What a zone's answer for one query means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Listed, with the answers that matched the code filter.
    Listed(Vec<Ipv4Addr>),
    NotListed,
    /// The zone answered with a query-error code: it is unusable.
    ZoneError(Ipv4Addr),
    Failed(String),
}

/// Reads an A answer with the zone's code filter (default: anything in
/// 127.0.0.0/8 that is not an error code).
pub fn interpret(answer: Answer<Vec<Ipv4Addr>>, codes: &[CodeRange]) -> Listing {
    let ips = match answer {
        Answer::Found(ips) => ips,
        Answer::NotFound => return Listing::NotListed,
        Answer::Failed(why) => return Listing::Failed(why),
    };
    if let Some(err) = ips.iter().copied().find(|ip| is_error_code(*ip)) {
        return Listing::ZoneError(err);
    }
    let matched: Vec<Ipv4Addr> = ips
        .into_iter()
        .filter(|ip| {
            if codes.is_empty() {
                ip.octets()[0] == 127
            } else {
                codes.iter().any(|c| c.contains(*ip))
            }
        })
        .collect();
    if matched.is_empty() {
        Listing::NotListed
    } else {
        Listing::Listed(matched)
    }
}

/// A zone's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// No conclusive test yet (not tested, or its test points did not
    /// answer): the zone cannot refuse mail until a test is conclusive.
    Unknown(String),
    Ok,
    /// Usable, but something is off (e.g. 127.0.0.2 not listed).
    Warning(String),
    /// Never trusted: it cannot refuse mail.
    Disabled(String),
    /// The list refuses to answer this host's resolver: off, as disabled.
    Refused(Refusal),
}

impl Health {
    /// Whether the zone may refuse mail.
    pub fn usable(&self) -> bool {
        matches!(self, Health::Ok | Health::Warning(_))
    }

    pub fn label(&self) -> &'static str {
        match self {
            Health::Unknown(_) => "unknown",
            Health::Ok => "ok",
            Health::Warning(_) => "warning",
            Health::Disabled(_) => "disabled",
            Health::Refused(_) => "refused",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Health::Unknown(r) | Health::Warning(r) | Health::Disabled(r) => r,
            Health::Refused(refusal) => refusal.explanation(),
            Health::Ok => "",
        }
    }

    /// `LABEL REASON`, as kept in the state store.
    fn encode(&self) -> String {
        match self {
            Health::Refused(refusal) => format!("refused {}", refusal.name()),
            _ => format!("{} {}", self.label(), self.reason()),
        }
    }

    fn decode(value: &str) -> Option<Health> {
        let (label, reason) = value.split_once(' ').unwrap_or((value, ""));
        let reason = reason.to_string();
        Some(match label {
            "ok" => Health::Ok,
            "warning" => Health::Warning(reason),
            "disabled" => Health::Disabled(reason),
            "refused" => Health::Refused(Refusal::from_name(&reason)?),
            _ => return None,
        })
    }
}

/// What the RFC 5782 test points of a zone are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    /// Client addresses: 127.0.0.2 listed, 127.0.0.1 not.
    Address,
    /// Domain names (RHSBL): `test` listed, `invalid` not.
    Domain,
}

/// The RFC 5782 test of one zone: the positive test point must be listed,
/// the negative one must not, and neither answer may be a refusal.
pub async fn test_zone(dns: &Dns, zone: &ListZone, kind: ZoneKind) -> Health {
    let asked = zone.query_zone();
    let (positive, negative, point) = match kind {
        ZoneKind::Address => (
            query_name(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), &asked),
            query_name(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), &asked),
            "127.0.0.1",
        ),
        ZoneKind::Domain => (
            format!("test.{asked}."),
            format!("invalid.{asked}."),
            "INVALID",
        ),
    };
    let (pos, neg) = tokio::join!(dns.ipv4(&positive), dns.ipv4(&negative));
    let refusal = [&pos, &neg].into_iter().find_map(|answer| match answer {
        Answer::Found(ips) => ips.iter().find_map(|ip| Refusal::of(*ip)),
        _ => None,
    });
    if let Some(refusal) = refusal {
        return Health::Refused(refusal);
    }
    // Any answer for the negative point means the zone lists everything
    // (or is hijacked): the blackholes.us lesson.
    match (neg, interpret(pos, &zone.codes)) {
        (Answer::Found(ips), _) => Health::Disabled(format!(
            "lists the RFC 5782 negative test point {point} ({})",
            join(&ips)
        )),
        (_, Listing::ZoneError(code)) => {
            Health::Disabled(format!("answers with the query-error code {code}"))
        }
        (Answer::Failed(why), _) | (_, Listing::Failed(why)) => {
            Health::Unknown(zone.redact(&format!("test point lookup failed: {why}")))
        }
        (_, Listing::NotListed) => {
            Health::Warning("does not list its RFC 5782 positive test point".into())
        }
        (_, Listing::Listed(_)) => Health::Ok,
    }
}

/// One round of health for a server: what the fleet last concluded (state
/// key `dnsbl:ZONE`) first, then this host's own test, whose conclusive
/// results are shared for three test intervals. An inconclusive local test
/// thus keeps the fleet's verdict rather than "not tested yet".
pub async fn test_and_share(
    dns: &Dns,
    config: &Config,
    table: &HealthTable,
    state: &State,
    log: &Logger,
) {
    let zones: Vec<&str> = config
        .dnsbl
        .iter()
        .chain(config.rhsbl.iter())
        .map(|z| z.zone.as_str())
        .collect();
    for zone in &zones {
        let shared = state.get(&format!("dnsbl:{zone}")).await.ok().flatten();
        if let Some(health) = shared.as_deref().and_then(Health::decode) {
            table.set(zone, health, log);
        }
    }
    test_all(dns, config, table, log).await;
    let ttl = config.policy.dnsbl_health_interval.0.saturating_mul(3);
    for zone in zones {
        let health = table.get(zone);
        if !matches!(health, Health::Unknown(_)) {
            let _ = state
                .put(&format!("dnsbl:{zone}"), &health.encode(), ttl)
                .await;
        }
    }
}

/// Tests every `[[dnsbl]]` and `[[rhsbl]]` zone at once and records the
/// results.
pub async fn test_all(dns: &Dns, config: &Config, table: &HealthTable, log: &Logger) {
    let zones = config
        .dnsbl
        .iter()
        .map(|z| (z, ZoneKind::Address))
        .chain(config.rhsbl.iter().map(|z| (z, ZoneKind::Domain)));
    let tests =
        zones.map(|(z, kind)| async move { (z.zone.clone(), test_zone(dns, z, kind).await) });
    for (zone, health) in futures_util::future::join_all(tests).await {
        table.set(&zone, health, log);
    }
}

fn join(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The health of every configured zone, shared by the checks.
#[derive(Default)]
pub struct HealthTable(Mutex<HashMap<String, Health>>);

impl HealthTable {
    pub fn get(&self, zone: &str) -> Health {
        let table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        table
            .get(zone)
            .cloned()
            .unwrap_or_else(|| Health::Unknown("not tested yet".into()))
    }

    /// Records a zone's health; a change is logged (loudly when disabled).
    /// An inconclusive test keeps a conclusive earlier state: one dropped
    /// packet must not bring a disabled zone back.
    pub fn set(&self, zone: &str, health: Health, log: &Logger) {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let conclusive_before = table
            .get(zone)
            .is_some_and(|h| !matches!(h, Health::Unknown(_)));
        if matches!(health, Health::Unknown(_)) && conclusive_before {
            log.event("dnsbl_health")
                .kv("zone", zone)
                .kv("health", "inconclusive")
                .kv("reason", health.reason())
                .kv("action", "kept previous state")
                .emit();
            return;
        }
        let previous = table.insert(zone.to_string(), health.clone());
        if previous.as_ref() != Some(&health) {
            if let Health::Refused(refusal) = &health {
                log.event("dnsbl_refused")
                    .kv("zone", zone)
                    .kv("health", health.label())
                    .kv("reason", refusal.name())
                    .kv("explanation", refusal.explanation())
                    .emit();
                return;
            }
            let event = if health.usable() {
                "dnsbl_health"
            } else {
                "dnsbl_disabled"
            };
            log.event(event)
                .kv("zone", zone)
                .kv("health", health.label())
                .kv("reason", health.reason())
                .emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_round_trips_through_the_store_format() {
        for h in [
            Health::Ok,
            Health::Warning("does not list 127.0.0.2".into()),
            Health::Disabled("lists everything".into()),
            Health::Refused(Refusal::OpenResolver),
            Health::Refused(Refusal::OverQuota),
            Health::Refused(Refusal::BadQuery),
        ] {
            assert_eq!(Health::decode(&h.encode()), Some(h));
        }
        assert_eq!(Health::decode("unknown timeout"), None);
        assert_eq!(Health::decode("refused open"), None);
    }

    #[test]
    fn spamhaus_refusals_are_told_apart_from_other_error_codes() {
        let code = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            Refusal::of(code("127.255.255.252")),
            Some(Refusal::BadQuery)
        );
        assert_eq!(
            Refusal::of(code("127.255.255.254")),
            Some(Refusal::OpenResolver)
        );
        assert_eq!(
            Refusal::of(code("127.255.255.255")),
            Some(Refusal::OverQuota)
        );
        assert_eq!(Refusal::of(code("127.255.255.253")), None);
        assert_eq!(Refusal::of(code("127.0.0.2")), None);
        assert!(!Health::Refused(Refusal::OpenResolver).usable());
    }

    #[test]
    fn query_names() {
        assert_eq!(
            query_name("192.0.2.1".parse().unwrap(), "bl.test"),
            "1.2.0.192.bl.test."
        );
        assert_eq!(
            query_name("::ffff:192.0.2.1".parse().unwrap(), "bl.test"),
            "1.2.0.192.bl.test."
        );
        let v6 = query_name("2001:db8::1".parse().unwrap(), "bl.test");
        assert!(
            v6.starts_with("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."),
            "{v6}"
        );
        assert!(v6.ends_with(".bl.test."));
    }

    #[test]
    fn answers_and_codes() {
        let codes: Vec<CodeRange> = vec!["127.0.0.2-127.0.0.11".parse().unwrap()];
        let found = |ips: &[&str]| Answer::Found(ips.iter().map(|i| i.parse().unwrap()).collect());
        assert_eq!(
            interpret(found(&["127.0.0.4"]), &codes),
            Listing::Listed(vec!["127.0.0.4".parse().unwrap()])
        );
        assert_eq!(
            interpret(found(&["127.0.0.20"]), &codes),
            Listing::NotListed
        );
        assert_eq!(
            interpret(found(&["127.255.255.254"]), &codes),
            Listing::ZoneError("127.255.255.254".parse().unwrap())
        );
        assert_eq!(
            interpret(found(&["127.0.1.255"]), &[]),
            Listing::ZoneError("127.0.1.255".parse().unwrap())
        );
        assert_eq!(interpret(found(&["10.0.0.1"]), &[]), Listing::NotListed);
        assert_eq!(interpret(Answer::NotFound, &[]), Listing::NotListed);
        assert_eq!(
            interpret(Answer::Failed("timeout".into()), &[]),
            Listing::Failed("timeout".into())
        );
    }
}
