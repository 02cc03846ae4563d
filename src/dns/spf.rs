//! SPF on the shared resolver: the thin driver of [`crate::spf`]'s
//! evaluation (each round of its questions asked at once, the whole
//! bounded by four lookup timeouts), and [`SpfOnce`], one transaction's
//! MAIL FROM verdict, which the MAIL check and DMARC at the end of DATA
//! share. Names are asked label by label as the record made them
//! (`foo:bar/baz.example.com` is a name to DNS, not to a host-name
//! parser); a non-ASCII domain is asked in its A-label form.

use super::{name_text, records, Answer, Dns};
use crate::spf::eval::Step;
use crate::spf::{self, Evaluation, Lookup, Params, Query, SpfResult, Verdict};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::IpAddr;

/// Rounds of questions one evaluation may ask: far more than its limits
/// allow (ten lookups, their MX and PTR names, an explanation).
const MAX_ROUNDS: usize = 64;

impl Dns {
    /// SPF for the MAIL FROM identity (`sender` is `local@domain`, or
    /// `postmaster@helo` for the null sender).
    pub async fn spf_mail_from(
        &self,
        ip: IpAddr,
        helo: &str,
        our_hostname: &str,
        sender: &str,
    ) -> Verdict {
        let (local, domain) = sender.rsplit_once('@').unwrap_or(("", sender));
        let sender = format!("{local}@{}", a_labels(domain));
        self.spf(ip, helo, our_hostname, sender).await
    }

    /// SPF for the HELO identity (`postmaster@helo`).
    pub async fn spf_helo(&self, ip: IpAddr, helo: &str, our_hostname: &str) -> Verdict {
        let sender = format!("postmaster@{}", a_labels(helo));
        self.spf(ip, helo, our_hostname, sender).await
    }

    async fn spf(&self, ip: IpAddr, helo: &str, our_hostname: &str, sender: String) -> Verdict {
        let domain = sender.rsplit_once('@').map_or("", |(_, d)| d).to_string();
        let params = Params {
            ip: crate::net::canonical_ip(ip),
            sender,
            helo: helo.to_string(),
            receiver: our_hostname.to_string(),
            now: crate::time::unix_now(),
        };
        // RFC 7208 section 4.6.4 bounds the lookups; this bounds their time.
        match tokio::time::timeout(self.timeout * 4, self.drive(params)).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict::of(SpfResult::TempError, &domain, "timed out"),
        }
    }

    async fn drive(&self, params: Params) -> Verdict {
        let domain = params
            .sender
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_string();
        let mut evaluation = Evaluation::new(params);
        let mut step = evaluation.start();
        for _ in 0..MAX_ROUNDS {
            match step {
                Step::Done(verdict) => return verdict,
                Step::Ask(queries) => {
                    let answers = queries.iter().map(|q| self.spf_answer(q));
                    step = evaluation.resume(futures_util::future::join_all(answers).await);
                }
            }
        }
        Verdict::of(SpfResult::TempError, &domain, "too many rounds of lookups")
    }

    async fn spf_answer(&self, query: &Query) -> spf::Answer {
        match query {
            Query::Txt(name) => spf::Answer::Txt(self.raw_txt(name).await),
            Query::A(name) => spf::Answer::Addresses(self.spf_addresses(name, false).await),
            Query::Aaaa(name) => spf::Answer::Addresses(self.spf_addresses(name, true).await),
            Query::Mx(name) => spf::Answer::Mx(self.exchanges(name).await),
            Query::Ptr(ip) => spf::Answer::Ptr(lookup(self.ptr(*ip).await)),
        }
    }

    /// TXT records as bytes, each record's strings joined.
    async fn raw_txt(&self, name: &str) -> Lookup<Vec<u8>> {
        let Some(name) = query_name(name) else {
            return Lookup::NotFound;
        };
        let answer = self
            .bounded(async {
                records(
                    self.resolver.lookup(name, RecordType::TXT).await,
                    |d| match d {
                        RData::TXT(t) => Some(t.txt_data.concat()),
                        _ => None,
                    },
                )
            })
            .await;
        lookup(answer)
    }

    async fn spf_addresses(&self, name: &str, v6: bool) -> Lookup<IpAddr> {
        let Some(name) = query_name(name) else {
            return Lookup::NotFound;
        };
        let answer = self
            .bounded(async {
                if v6 {
                    records(self.resolver.ipv6_lookup(name).await, |d| match d {
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    })
                } else {
                    records(self.resolver.ipv4_lookup(name).await, |d| match d {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        _ => None,
                    })
                }
            })
            .await;
        lookup(answer)
    }

    /// MX names, label by label (the root, a null MX, as an empty name).
    async fn exchanges(&self, name: &str) -> Lookup<String> {
        let Some(name) = query_name(name) else {
            return Lookup::NotFound;
        };
        let answer = self
            .bounded(async {
                records(self.resolver.mx_lookup(name).await, |d| match d {
                    RData::MX(mx) => Some(raw_text(&mx.exchange)),
                    _ => None,
                })
            })
            .await;
        lookup(answer)
    }
}

/// A transaction's SPF identity (its HELO name and `local@domain`, or
/// `postmaster@<helo>`) and the verdict on it.
#[derive(Debug, Clone)]
pub struct MailFromSpf {
    pub helo: String,
    pub sender: String,
    pub verdict: Verdict,
}

/// One transaction's SPF verdict for its MAIL FROM identity, evaluated by
/// whoever asks first — the MAIL check, or DMARC at the end of DATA — so
/// that both see the same one. Asked about another identity, it evaluates
/// that one without keeping it.
#[derive(Default)]
pub struct SpfOnce(tokio::sync::OnceCell<(SpfKey, Verdict)>);

/// Client, HELO and sender of a kept verdict.
type SpfKey = (IpAddr, String, String);

impl SpfOnce {
    pub async fn mail_from(
        &self,
        dns: &Dns,
        ip: IpAddr,
        helo: &str,
        our_hostname: &str,
        sender: &str,
    ) -> Verdict {
        let key = (ip, helo.to_string(), sender.to_string());
        let (kept, verdict) = self
            .0
            .get_or_init(|| async {
                let verdict = dns.spf_mail_from(ip, helo, our_hostname, sender).await;
                (key.clone(), verdict)
            })
            .await;
        if *kept == key {
            verdict.clone()
        } else {
            dns.spf_mail_from(ip, helo, our_hostname, sender).await
        }
    }
}

fn lookup<T>(answer: Answer<Vec<T>>) -> Lookup<T> {
    match answer {
        Answer::Found(found) => Lookup::Found(found),
        Answer::NotFound => Lookup::NotFound,
        Answer::Failed(_) => Lookup::Failed,
    }
}

/// The name to ask for, label by label as written; None if DNS cannot
/// carry it (the evaluation only asks for names that it can).
fn query_name(text: &str) -> Option<Name> {
    let mut name = Name::from_labels(text.split('.').map(str::as_bytes)).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A name's labels as they are, joined by dots, without the final dot.
fn raw_text(name: &Name) -> String {
    name.iter()
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
}

/// A domain in A-label (punycode) form; as it was if it is ASCII or no
/// valid internationalised name.
fn a_labels(domain: &str) -> String {
    if domain.is_ascii() {
        return domain.to_string();
    }
    Name::from_utf8(domain).map_or_else(|_| domain.to_string(), |n| name_text(&n))
}
