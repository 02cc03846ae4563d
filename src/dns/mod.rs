//! DNS for the checks: one resolver for the whole process, built from
//! `[dns]` (or the system configuration), shared with mail-auth for DKIM,
//! ARC and DMARC; answers classified as found, not found (NXDOMAIN/NODATA)
//! or failed (timeout, SERVFAIL), every lookup bounded by `dns.timeout`.
//! Identical concurrent queries are merged by hickory's name server pool;
//! what the checks read of an answer is kept here until its TTL runs out
//! ([`cache`]; PTR answers for a fixed time), hickory's response cache
//! behind it.
//! DNSBL queries and health: [`dnsbl`]. SPF: [`spf`].
//!
//! Reverse lookups go straight to the name server pool: hickory's resolver
//! answers names under `127.in-addr.arpa` itself (RFC 6761), and mxguard
//! must ask the configured server, which holds the real data.

pub mod cache;
pub mod dnsbl;
pub mod latency;
pub mod spf;

use crate::config::checks::Dns as DnsConfig;
use cache::Expiring;
use futures_util::StreamExt;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, DnsHandle, NetError, RetryDnsHandle};
use hickory_resolver::proto::op::{DnsRequestOptions, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig, TokioResolver};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy as DmarcPolicy;
use mail_auth::{
    ArcOutput, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput,
    SpfResult,
};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Found(T),
    /// NXDOMAIN, or the name exists without records of that type.
    NotFound,
    /// Timeout, SERVFAIL, refused, no server: nobody can say.
    Failed(String),
}

impl<T> Answer<Vec<T>> {
    /// The same answer with each record changed by `f`.
    fn each<U>(self, f: impl Fn(T) -> U) -> Answer<Vec<U>> {
        match self {
            Answer::Found(found) => Answer::Found(found.into_iter().map(f).collect()),
            Answer::NotFound => Answer::NotFound,
            Answer::Failed(why) => Answer::Failed(why),
        }
    }
}

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("dns: {0}")]
    Build(NetError),
}

/// The process's DNS: the cached resolver, the raw pool for PTR, and the
/// mail-auth authenticator on the same resolver.
pub struct Dns {
    resolver: TokioResolver,
    pool: RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>,
    auth: MessageAuthenticator,
    timeout: Duration,
    /// PTR answers (found or not found; failures are asked again), since
    /// the pool has no cache of its own.
    ptr_cache: Expiring<IpAddr, PtrEntry>,
    /// A, AAAA, TXT and MX answers as the checks read them, by name.
    answers: Answers,
}

/// The answers of each kind kept, by lower-case name without the final
/// dot; failures are asked again.
struct Answers {
    a: Kept<Ipv4Addr>,
    aaaa: Kept<Ipv6Addr>,
    txt: Kept<String>,
    mx: Kept<(u16, String)>,
}

/// The answers of one kind.
type Kept<T> = Expiring<Box<str>, Answer<Vec<T>>>;

/// A cached PTR answer, and the name a check confirmed from it.
#[derive(Clone)]
struct PtrEntry {
    answer: PtrAnswer,
    /// The PTR name that resolves back to the address (FCrDNS).
    confirmed: Option<String>,
}

/// What the end of DATA learned about a message.
pub struct Authentication {
    /// `Authentication-Results: …` with its CRLF.
    pub header: String,
    /// The From: domain, when DMARC fails and its policy is `p=reject`.
    pub dmarc_rejects: Option<String>,
    /// The message's ARC chain (RFC 8617).
    pub arc: ArcChain,
}

/// What the ARC chain of a message says, as RFC 8617 names the results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArcChain {
    /// No ARC header.
    None,
    /// Every seal and the latest message signature verify; `sealer` is
    /// the `d=` of the latest seal (the highest instance).
    Pass { sealer: String },
    /// Broken, tampered, or not verifiable: why.
    Fail(mail_auth::Error),
}

impl ArcChain {
    /// The chain as mail-auth verified it; a result other than pass or
    /// none (a body changed, a key not found) is a fail.
    fn of(output: &ArcOutput) -> ArcChain {
        match output.result() {
            DkimResult::None => ArcChain::None,
            DkimResult::Pass => match output.sets().last() {
                Some(set) => ArcChain::Pass {
                    sealer: set.seal.header.d.to_ascii_lowercase(),
                },
                None => ArcChain::None,
            },
            DkimResult::Neutral(why)
            | DkimResult::Fail(why)
            | DkimResult::PermError(why)
            | DkimResult::TempError(why) => ArcChain::Fail(why.clone()),
        }
    }

    /// Its `arc=` result for the Authentication-Results header.
    fn result(&self) -> DkimResult {
        match self {
            ArcChain::None => DkimResult::None,
            ArcChain::Pass { .. } => DkimResult::Pass,
            ArcChain::Fail(why) => DkimResult::Fail(why.clone()),
        }
    }
}

/// The PTR names of an address.
type PtrAnswer = Answer<Vec<String>>;

/// PTR names kept per address: SPF looks at no more (RFC 7208 4.6.4).
const MAX_PTR_NAMES: usize = 10;

/// How long a PTR answer is reused.
const PTR_CACHE_TTL: Duration = Duration::from_secs(300);
/// Beyond this many PTR answers (one per client address), their cache
/// starts over.
const PTR_CACHE_MAX: usize = 50_000;
/// Beyond this many names of one kind, their cache starts over: clients
/// choose them (HELO names, sender domains), and 10,000 names of at most
/// 253 octets stay under 4 MB a kind.
const ANSWERS_MAX: usize = 10_000;

fn classify<T>(e: &NetError) -> Answer<T> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(_)) => Answer::NotFound,
        NetError::Timeout => Answer::Failed("timeout".into()),
        NetError::Dns(DnsError::ResponseCode(code)) => Answer::Failed(code.to_string()),
        other => Answer::Failed(other.to_string()),
    }
}

/// The records of one kind in a lookup's answer; none is "not found".
fn records<T>(
    lookup: Result<Lookup, NetError>,
    pick: impl Fn(&RData) -> Option<T>,
) -> Answer<Vec<T>> {
    records_until(lookup, pick, Instant::now()).0
}

/// [`records`], and until when the answer may be kept: the lookup's TTL,
/// the negative TTL of a name or type that does not exist (none when the
/// server gave no SOA), never for a failure.
fn records_until<T>(
    lookup: Result<Lookup, NetError>,
    pick: impl Fn(&RData) -> Option<T>,
    now: Instant,
) -> (Answer<Vec<T>>, Option<Instant>) {
    match lookup {
        Ok(l) => {
            let found: Vec<T> = l.answers().iter().filter_map(|r| pick(&r.data)).collect();
            let answer = if found.is_empty() {
                Answer::NotFound
            } else {
                Answer::Found(found)
            };
            (answer, Some(l.valid_until()))
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => (
            Answer::NotFound,
            none.negative_ttl
                .map(|ttl| now + Duration::from_secs(u64::from(ttl))),
        ),
        Err(e) => (classify(&e), None),
    }
}

/// The key a name's answers are kept under: lower case, without the final
/// dot (every lookup of the checks asks for the name as fully qualified).
fn cache_key(name: &str) -> Cow<'_, str> {
    let name = name.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Lower case, without the trailing dot.
fn name_text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl Dns {
    pub fn new(config: &DnsConfig) -> Result<Dns, DnsSetupError> {
        // Without [dns] nameservers: the system's, or the conventional local
        // resolver when /etc/resolv.conf cannot be read (a server with no DNS
        // checks must still start).
        let system = config
            .nameservers
            .is_empty()
            .then(hickory_resolver::system_conf::read_system_conf)
            .and_then(Result::ok);
        let (resolver_config, mut opts) = match system {
            Some(conf) => conf,
            None => {
                let fallback = [std::net::SocketAddr::from(([127, 0, 0, 1], 53))];
                let addrs = if config.nameservers.is_empty() {
                    &fallback[..]
                } else {
                    &config.nameservers[..]
                };
                let servers = addrs
                    .iter()
                    .map(|addr| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = addr.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = addr.port();
                        NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                (
                    ResolverConfig::from_name_servers(servers),
                    ResolverOpts::default(),
                )
            }
        };
        opts.timeout = config.timeout.0;
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.cache_size = 8192;
        // mxguard asks its name servers over UDP and TCP only: the DNS over
        // TLS settings hickory wants trust nothing, and the system's CA
        // certificates are not read (twice: resolver and PTR pool).
        let tls = crate::tls::client::trusting_nothing();
        let resolver = TokioResolver::builder_with_config(
            resolver_config.clone(),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts.clone())
        .with_tls_config(tls.clone())
        .build()
        .map_err(DnsSetupError::Build)?;
        let cx = Arc::new(PoolContext::new(opts, TlsConfig { config: tls }));
        let pool = NameServerPool::from_config(
            resolver_config.name_servers().to_vec(),
            cx,
            TokioRuntimeProvider::default(),
        );
        Ok(Dns {
            auth: MessageAuthenticator(resolver.clone()),
            resolver,
            pool: RetryDnsHandle::new(pool, 1),
            timeout: config.timeout.0,
            ptr_cache: Expiring::new(PTR_CACHE_MAX),
            answers: Answers {
                a: Expiring::new(ANSWERS_MAX),
                aaaa: Expiring::new(ANSWERS_MAX),
                txt: Expiring::new(ANSWERS_MAX),
                mx: Expiring::new(ANSWERS_MAX),
            },
        })
    }

    /// Runs a lookup under the overall timeout.
    async fn bounded<T>(&self, f: impl std::future::Future<Output = Answer<T>>) -> Answer<T> {
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| Answer::Failed("timeout".into()));
        latency::LATENCY.observe(started.elapsed());
        answer
    }

    /// The client's host name if a check has looked it up already (for
    /// the log; never a lookup of its own): the first PTR name, or
    /// `unknown` when there is none.
    pub fn known_ptr(&self, ip: IpAddr) -> Option<String> {
        self.ptr_cache.peek(&ip, |entry| match &entry.answer {
            Answer::Found(names) => names.first().cloned(),
            _ => Some("unknown".into()),
        })?
    }

    /// Which of `names` (PTR names of `ip`, at most five asked) resolves
    /// back to `ip` in its own address family — an answer of the other
    /// family must not hide a failed lookup of this one; the name found is
    /// remembered for [`Dns::known_name`]. `Failed` when none does and a
    /// lookup failed (nobody can say), `NotFound` when none does.
    pub async fn confirm(&self, ip: IpAddr, names: &[String]) -> Answer<String> {
        let mut failure = None;
        for name in names.iter().take(5) {
            match self.addresses_like(name, ip).await {
                Answer::Found(ips) if ips.iter().any(|a| crate::net::canonical_ip(*a) == ip) => {
                    self.note_confirmed(ip, name);
                    return Answer::Found(name.clone());
                }
                Answer::Failed(why) => failure = Some(why),
                _ => {}
            }
        }
        failure.map_or(Answer::NotFound, Answer::Failed)
    }

    /// Records that `name`, a PTR name of `ip`, resolves back to it.
    fn note_confirmed(&self, ip: IpAddr, name: &str) {
        self.ptr_cache
            .update(&ip, |entry| entry.confirmed = Some(name.to_string()));
    }

    /// The client's verified name as a check has established it (never a
    /// lookup of its own), in XCLIENT's words: the forward-confirmed PTR
    /// name, `[UNAVAILABLE]` when it has no PTR; `None` when no check
    /// looked, or none could be confirmed.
    pub fn known_name(&self, ip: IpAddr) -> Option<String> {
        self.ptr_cache
            .peek(&ip, |entry| match (&entry.confirmed, &entry.answer) {
                (Some(name), _) => Some(name.clone()),
                (None, Answer::NotFound) => Some("[UNAVAILABLE]".into()),
                _ => None,
            })?
    }

    /// PTR names of an address (cached for a few minutes).
    pub async fn ptr(&self, ip: IpAddr) -> Answer<Vec<String>> {
        if let Some(entry) = self.ptr_cache.get(&ip, Instant::now()) {
            return entry.answer;
        }
        // Boxed: only a miss carries the resolver's future (kilobytes),
        // so every future awaiting a lookup stays small.
        let answer = Box::pin(self.ptr_uncached(ip)).await;
        if !matches!(answer, Answer::Failed(_)) {
            let entry = PtrEntry {
                answer: answer.clone(),
                confirmed: None,
            };
            let now = Instant::now();
            self.ptr_cache.insert(ip, entry, now + PTR_CACHE_TTL, now);
        }
        answer
    }

    async fn ptr_uncached(&self, ip: IpAddr) -> Answer<Vec<String>> {
        let query = Query::query(Name::from(ip), RecordType::PTR);
        self.bounded(async {
            let mut responses = self.pool.lookup(query, DnsRequestOptions::default());
            match responses.next().await {
                None => Answer::Failed("no response".into()),
                Some(Err(e)) => classify(&e),
                Some(Ok(response)) => {
                    let code = response.metadata.response_code;
                    if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
                        return Answer::Failed(code.to_string());
                    }
                    let names: Vec<String> = response
                        .answers
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::PTR(p) => Some(name_text(&p.0)),
                            _ => None,
                        })
                        .filter(|name| name.len() <= 255)
                        .take(MAX_PTR_NAMES)
                        .collect();
                    if names.is_empty() {
                        Answer::NotFound
                    } else {
                        Answer::Found(names)
                    }
                }
            }
        })
        .await
    }

    /// The answer kept in `kept` for `name`, or the resolver's (`ask`
    /// for the name fully qualified, bounded by the timeout), kept until
    /// its TTL runs out.
    async fn kept<T: Clone>(
        &self,
        kept: &Kept<T>,
        name: &str,
        ask: impl AsyncFnOnce(&str) -> Result<Lookup, NetError>,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Answer<Vec<T>> {
        let key = cache_key(name);
        if let Some(answer) = kept.get(&*key, Instant::now()) {
            return answer;
        }
        let mut until = None;
        // Boxed, as in `ptr`: a hit never builds the resolver's future.
        let answer = Box::pin(self.bounded(async {
            let lookup = ask(&format!("{key}.")).await;
            let (answer, valid) = records_until(lookup, pick, Instant::now());
            until = valid;
            answer
        }))
        .await;
        if let Some(until) = until {
            let key: Box<str> = key.into();
            kept.insert(key, answer.clone(), until, Instant::now());
        }
        answer
    }

    /// The A records of a name (and the DNSBL queries).
    pub async fn ipv4(&self, name: &str) -> Answer<Vec<Ipv4Addr>> {
        let ask = async |fqdn: &str| self.resolver.ipv4_lookup(fqdn).await;
        self.kept(&self.answers.a, name, ask, |d| match d {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// The AAAA records of a name.
    async fn ipv6(&self, name: &str) -> Answer<Vec<Ipv6Addr>> {
        let ask = async |fqdn: &str| self.resolver.ipv6_lookup(fqdn).await;
        self.kept(&self.answers.aaaa, name, ask, |d| match d {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// A and AAAA records of a name, asked in parallel.
    pub async fn addresses(&self, name: &str) -> Answer<Vec<IpAddr>> {
        let (v4, v6) = tokio::join!(self.ipv4(name), self.ipv6(name));
        match (v4.each(IpAddr::V4), v6.each(IpAddr::V6)) {
            (Answer::Found(mut a), Answer::Found(b)) => {
                a.extend(b);
                Answer::Found(a)
            }
            (Answer::Found(a), _) | (_, Answer::Found(a)) => Answer::Found(a),
            (Answer::Failed(why), _) | (_, Answer::Failed(why)) => Answer::Failed(why),
            _ => Answer::NotFound,
        }
    }

    /// The addresses of a name in the family of `like` (A for an IPv4
    /// address, AAAA for IPv6): forward confirmation of a PTR name.
    pub async fn addresses_like(&self, name: &str, like: IpAddr) -> Answer<Vec<IpAddr>> {
        match like {
            IpAddr::V4(_) => self.ipv4(name).await.each(IpAddr::V4),
            IpAddr::V6(_) => self.ipv6(name).await.each(IpAddr::V6),
        }
    }

    /// TXT strings of a name, each record's strings joined.
    pub async fn txt(&self, name: &str) -> Answer<Vec<String>> {
        let ask = async |fqdn: &str| self.resolver.txt_lookup(fqdn).await;
        self.kept(&self.answers.txt, name, ask, |d| match d {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .await
    }

    /// MX records of a domain: (preference, exchange).
    pub async fn mx(&self, domain: &str) -> Answer<Vec<(u16, String)>> {
        let ask = async |fqdn: &str| self.resolver.mx_lookup(fqdn).await;
        self.kept(&self.answers.mx, domain, ask, |d| match d {
            RData::MX(mx) => Some((mx.preference, name_text(&mx.exchange))),
            _ => None,
        })
        .await
    }

    /// How the sender of a message is verified, if it is: SPF pass for the
    /// MAIL FROM domain, or a DKIM signature that verifies and whose `d=`
    /// is that domain or a parent of it (relaxed alignment). The message is
    /// its header block and body hashes, read when `message` is called
    /// (only when SPF did not pass).
    pub async fn sender_verified<F, Fut>(
        &self,
        ip: IpAddr,
        helo: &str,
        our_hostname: &str,
        sender: &str,
        message: F,
    ) -> Option<String>
    where
        F: FnOnce() -> Fut,
        Fut:
            std::future::Future<Output = Option<(Vec<u8>, Vec<crate::message::body_hash::Digest>)>>,
    {
        let domain = sender.rsplit_once('@')?.1.to_ascii_lowercase();
        let spf = self.spf_mail_from(ip, helo, our_hostname, sender).await;
        if spf.result == crate::spf::SpfResult::Pass {
            return Some("spf=pass".into());
        }
        let (header_block, digests) = message().await?;
        let mut parsed = mail_auth::AuthenticatedMessage::parse(&header_block)?;
        crate::message::body_hash::apply(&mut parsed, &digests);
        let outputs = tokio::time::timeout(self.timeout * 4, self.auth.verify_dkim(&parsed))
            .await
            .ok()?;
        outputs.iter().find_map(|out| {
            let d = out.signature()?.d.to_ascii_lowercase();
            let aligned = domain == d || domain.ends_with(&format!(".{d}"));
            (*out.result() == mail_auth::DkimResult::Pass && aligned)
                .then(|| format!("dkim=pass d={d}"))
        })
    }

    /// Message authentication at the end of DATA: DKIM signatures, the
    /// ARC chain, and DMARC for the From: domain with `mail_from`, the
    /// transaction's SPF identity and verdict (the one its MAIL check
    /// saw); the `Authentication-Results:` header (RFC 8601) naming
    /// `our_hostname`.
    /// The message is its header block and the DKIM body hashes computed
    /// while it was received, never the whole message in memory.
    pub async fn authenticate(
        &self,
        ip: IpAddr,
        our_hostname: &str,
        mail_from: &spf::MailFromSpf,
        header_block: &[u8],
        body_hashes: &[crate::message::body_hash::Digest],
    ) -> Authentication {
        let budget = self.timeout * 4;
        let (helo, sender) = (mail_from.helo.as_str(), mail_from.sender.as_str());
        let verdict = &mail_from.verdict;
        let spf = SpfOutput::new(verdict.domain.clone()).with_result(mail_auth_spf(verdict.result));
        let Some(mut parsed) = mail_auth::AuthenticatedMessage::parse(header_block) else {
            let header = AuthenticationResults::new(our_hostname)
                .with_spf_mailfrom_result(&spf, ip, sender, helo)
                .to_header();
            return Authentication {
                header,
                dmarc_rejects: None,
                arc: ArcChain::None,
            };
        };
        crate::message::body_hash::apply(&mut parsed, body_hashes);
        let (dkim, arc) = tokio::join!(
            tokio::time::timeout(budget, self.auth.verify_dkim(&parsed)),
            tokio::time::timeout(budget, self.auth.verify_arc(&parsed)),
        );
        let dkim = dkim.unwrap_or_default();
        let arc = arc.map_or_else(
            |_| ArcChain::Fail(mail_auth::Error::Io("timed out".into())),
            |arc| ArcChain::of(&arc),
        );
        let mail_from_domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
        let dmarc = tokio::time::timeout(
            budget,
            self.auth
                .verify_dmarc(DmarcParameters::new(&parsed, &dkim, mail_from_domain, &spf)),
        )
        .await;
        let mut results = AuthenticationResults::new(our_hostname)
            .with_dkim_results(&dkim, parsed.from())
            .with_spf_mailfrom_result(&spf, ip, sender, helo)
            .with_arc_result(&ArcOutput::default().with_result(arc.result()), ip);
        let mut dmarc_rejects = None;
        if let Ok(dmarc) = &dmarc {
            results = results.with_dmarc_result(dmarc);
            if matches!(dmarc.result(), DmarcResult::Fail(_))
                && dmarc.policy() == DmarcPolicy::Reject
            {
                dmarc_rejects = Some(dmarc.domain().to_string());
            }
        }
        Authentication {
            header: results.to_header(),
            dmarc_rejects,
            arc,
        }
    }
}

/// mail-auth's name for an SPF result (for DMARC and the
/// Authentication-Results header).
fn mail_auth_spf(result: crate::spf::SpfResult) -> SpfResult {
    use crate::spf::SpfResult as Ours;
    match result {
        Ours::None => SpfResult::None,
        Ours::Neutral => SpfResult::Neutral,
        Ours::Pass => SpfResult::Pass,
        Ours::Fail => SpfResult::Fail,
        Ours::SoftFail => SpfResult::SoftFail,
        Ours::TempError => SpfResult::TempError,
        Ours::PermError => SpfResult::PermError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::rr::rdata::A;
    use hickory_resolver::proto::rr::Record;

    fn a_query() -> Query {
        Query::query(Name::from_ascii("kept.test.").unwrap(), RecordType::A)
    }

    fn pick_a(d: &RData) -> Option<Ipv4Addr> {
        match d {
            RData::A(a) => Some(a.0),
            _ => None,
        }
    }

    #[test]
    fn a_found_answer_is_kept_until_the_lookup_says() {
        let now = Instant::now();
        let until = now + Duration::from_secs(300);
        let record = Record::from_rdata(
            Name::from_ascii("kept.test.").unwrap(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        );
        let lookup = Lookup::new_with_deadline(a_query(), [record], until);
        let (answer, kept) = records_until(Ok(lookup), pick_a, now);
        assert_eq!(answer, Answer::Found(vec![Ipv4Addr::new(192, 0, 2, 1)]));
        assert_eq!(kept, Some(until));
    }

    #[test]
    fn a_name_that_does_not_exist_is_kept_for_the_negative_ttl_only_when_there_is_one() {
        let now = Instant::now();
        let mut none = NoRecords::new(a_query(), ResponseCode::NXDomain);
        let without_soa = NetError::Dns(DnsError::NoRecordsFound(none.clone()));
        assert_eq!(
            records_until(Err(without_soa), pick_a, now),
            (Answer::NotFound, None)
        );
        none.negative_ttl = Some(60);
        let with_soa = NetError::Dns(DnsError::NoRecordsFound(none));
        assert_eq!(
            records_until(Err(with_soa), pick_a, now),
            (Answer::NotFound, Some(now + Duration::from_secs(60)))
        );
    }

    #[test]
    fn a_failure_is_never_kept() {
        let now = Instant::now();
        let (answer, kept) = records_until(Err(NetError::Timeout), pick_a, now);
        assert_eq!(answer, Answer::Failed("timeout".into()));
        assert_eq!(kept, None);
        let servfail = NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail));
        assert_eq!(records_until(Err(servfail), pick_a, now).1, None);
    }

    #[test]
    fn names_are_kept_under_one_key_whatever_their_case_and_final_dot() {
        assert_eq!(cache_key("Kept.Test."), "kept.test");
        assert_eq!(cache_key("kept.test"), "kept.test");
        assert!(matches!(cache_key("kept.test."), Cow::Borrowed(_)));
    }
}
