//! Who is greylisted (`greylist.when`): everyone (`always`), or only a
//! client that looks suspicious (`suspicious`, the default) — no
//! forward-confirmed reverse name, a generic one, or a check of the
//! connection or its HELO that hit — and never a large sender's pool of
//! the allow-list (`greylist.allow_file`, by forward-confirmed name) or a
//! sender whose SPF passes. Big senders retry from other addresses of
//! their pools, and greylisting them only delays real mail; bots rarely
//! have what spares a client. The judgement is [`judge`], pure; the
//! greylisting itself is the abuse layer's.

use super::rdns::looks_generic;
use crate::dns::{Answer, Dns};
use crate::lists::Suffixes;
use crate::log::Logger;
use crate::reload::FileError;
use crate::verdict::{CheckResult, Outcome, Stage};
use std::net::IpAddr;
use std::sync::Arc;

/// Whether a client is greylisted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Greylisted(String),
    Spared(String),
}

/// What is known of a client when greylisting would ask.
#[derive(Debug, Default)]
pub struct Signals {
    /// The checks of the connection and HELO that hit (scoring ones and
    /// those in warn mode alike).
    pub hits: Vec<String>,
    /// Its forward-confirmed reverse name.
    pub name: Option<String>,
    /// The reverse lookup failed: nobody can say.
    pub name_failed: bool,
    /// The allow-list suffix the confirmed name is under.
    pub allowed: Option<String>,
    /// The SPF check saw `pass` for the sender.
    pub spf_pass: bool,
    /// The client's address, to tell a generic name.
    pub client: Option<IpAddr>,
}

/// The judgement of `greylist.when = "suspicious"`.
pub fn judge(s: &Signals) -> Standing {
    if let Some(suffix) = &s.allowed {
        return Standing::Spared(format!("large sender's pool ({suffix})"));
    }
    if s.spf_pass {
        return Standing::Spared("SPF pass for the sender".into());
    }
    if let Some(hit) = s.hits.first() {
        return Standing::Greylisted(format!("check {hit} hit"));
    }
    match (&s.name, s.client) {
        (None, _) if s.name_failed => Standing::Greylisted("reverse lookup failed".into()),
        (None, _) => Standing::Greylisted("no forward-confirmed reverse name".into()),
        (Some(name), Some(ip)) if looks_generic(name, ip) => {
            Standing::Greylisted(format!("generic reverse name {name}"))
        }
        (Some(name), _) => Standing::Spared(format!("{name}, nothing suspicious")),
    }
}

/// What greylisting needs beyond the checks: the allow-list, and the
/// resolver for the client's name when no check looked it up.
pub struct Greylisting {
    allow: Suffixes,
    dns: Arc<Dns>,
    log: Arc<Logger>,
}

impl Greylisting {
    pub fn new(
        allow_file: Option<&std::path::Path>,
        dns: Arc<Dns>,
        log: Arc<Logger>,
    ) -> Result<Greylisting, FileError> {
        Ok(Greylisting {
            allow: Suffixes::open("greylist.allow_file", allow_file)?,
            dns,
            log,
        })
    }

    /// The standing of `client`, from the results of its checks so far.
    pub async fn standing(&self, client: IpAddr, results: &[&CheckResult]) -> Standing {
        let mut signals = Signals {
            client: Some(client),
            ..Signals::default()
        };
        for r in results {
            let hit = matches!(r.outcome, Outcome::Hit(_));
            match r.stage {
                Stage::Connect | Stage::Helo if hit => signals.hits.push(r.check.to_string()),
                Stage::Mail if r.check == "spf" => {
                    signals.spf_pass = r.detail.starts_with("spf=pass");
                }
                _ => {}
            }
        }
        match self.dns.ptr(client).await {
            Answer::Found(names) => match self.dns.confirm(client, &names).await {
                Answer::Found(name) => {
                    signals.allowed = self.allow.find(&name, &self.log);
                    signals.name = Some(name);
                }
                Answer::Failed(_) => signals.name_failed = true,
                Answer::NotFound => {}
            },
            Answer::Failed(_) => signals.name_failed = true,
            Answer::NotFound => {}
        }
        judge(&signals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(name: Option<&str>) -> Signals {
        Signals {
            name: name.map(str::to_string),
            client: Some("192.0.2.10".parse().unwrap()),
            ..Signals::default()
        }
    }

    #[test]
    fn a_client_without_a_confirmed_name_is_greylisted() {
        assert_eq!(
            judge(&signals(None)),
            Standing::Greylisted("no forward-confirmed reverse name".into())
        );
    }

    #[test]
    fn a_client_with_a_generic_name_is_greylisted() {
        let standing = judge(&signals(Some("192-0-2-10.dsl.isp.example")));
        assert!(matches!(standing, Standing::Greylisted(why) if why.starts_with("generic")));
    }

    #[test]
    fn a_client_that_hit_a_check_is_greylisted_whatever_its_name() {
        let mut s = signals(Some("mail.example.com"));
        s.hits.push("dnsbl:bl.example".into());
        assert_eq!(
            judge(&s),
            Standing::Greylisted("check dnsbl:bl.example hit".into())
        );
    }

    #[test]
    fn a_named_client_with_nothing_against_it_is_spared() {
        assert!(matches!(
            judge(&signals(Some("mail.example.com"))),
            Standing::Spared(_)
        ));
    }

    #[test]
    fn a_large_senders_pool_is_spared_even_when_a_check_hit() {
        let mut s = signals(Some("mail-yw1-f170.google.com"));
        s.hits.push("generic_reverse_dns".into());
        s.allowed = Some("google.com".into());
        assert_eq!(
            judge(&s),
            Standing::Spared("large sender's pool (google.com)".into())
        );
    }

    #[test]
    fn an_spf_pass_spares_even_a_client_without_a_name() {
        let mut s = signals(None);
        s.spf_pass = true;
        assert_eq!(
            judge(&s),
            Standing::Spared("SPF pass for the sender".into())
        );
    }

    #[test]
    fn a_failed_reverse_lookup_is_greylisted() {
        let mut s = signals(None);
        s.name_failed = true;
        assert_eq!(
            judge(&s),
            Standing::Greylisted("reverse lookup failed".into())
        );
    }
}
