//! The one place where mxguard decides. Three front ends ask it — the SMTP
//! session, the Postfix policy server and `mxguard check` — giving it the
//! facts they have (client, HELO, sender, recipient, message) and the
//! results of the DNS checks ([`Evidence`]); each applies the [`Decision`]
//! and none decides by itself. The stages, in order:
//!
//! - **admission**, before the banner: a ban in force, the connection
//!   rate (and, measured by the front end, the connection caps and the
//!   pregreet test, whose refusals are made here);
//! - **HELO**, **MAIL**: the checks so far, refused at their stage only
//!   with `policy.reject_at = "immediate"`; at MAIL the message rates;
//! - **RCPT**: relay control, spam traps, the connect, HELO and MAIL
//!   checks, the recipient checks, recipient verification, greylisting,
//!   the recipient rates;
//! - **DATA**: a trapped client, a bounce to several recipients;
//! - **end of DATA**: message authentication (DMARC, forgiven when a
//!   trusted ARC sealer vouches for the message).
//!
//! What each front end may change and what it cannot judge is its
//! [`Front`]: the session counts rates, greylists and springs traps; the
//! policy server leaves relay control, recipient verification and the
//! message to Postfix (said in [`Decision::not_judged`]), and counts only
//! when told; `check` changes nothing and reads what the state holds.
//! Trusted and excepted clients skip the client checks, rates and
//! greylisting, at every front end.

use super::forwarded::vouching_sealer;
use super::greylisting::Standing;
use super::relay::Destination;
use super::Policy;
use crate::abuse::rates::Rate;
use crate::abuse::Abuse;
use crate::config::{Config, GreylistWhen, OnDnsError, RejectAt};
use crate::dns::ArcChain;
use crate::peers;
use crate::smtp::address::Path;
use crate::smtp::reply::Reply;
use crate::verdict::{decide, CheckResult, Effect, Outcome, Refusal, Stage};
use std::net::IpAddr;

/// Who asks, which decides what the pipeline may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// An SMTP session of mxguard's own.
    Session,
    /// The Postfix policy server; `counts`: `policy_server.count_offences`.
    PolicyServer { counts: bool },
    /// `mxguard check`: judges, changes nothing.
    Check,
}

impl Front {
    /// Whether rates are counted (else only read).
    fn counts(self) -> bool {
        matches!(self, Front::Session | Front::PolicyServer { counts: true })
    }
}

/// Which stages' checks a decision covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Upto {
    Connect,
    Helo,
    Mail,
}

impl Upto {
    /// Whether a check of `stage` is covered.
    pub fn covers(self, stage: Stage) -> bool {
        match stage {
            Stage::Connect => true,
            Stage::Helo => self >= Upto::Helo,
            Stage::Mail => self >= Upto::Mail,
            Stage::Rcpt | Stage::Data => false,
        }
    }
}

/// The results of the DNS and list checks of the connect, HELO and MAIL
/// stages, as a front end gathers them (the session in the background,
/// from the moment each stage's input is known).
pub trait Evidence: Send {
    /// The results of the stages up to `upto`, borrowed: a fold reads them,
    /// and only the front ends that show them keep copies.
    fn results(
        &mut self,
        upto: Upto,
    ) -> impl std::future::Future<Output = Vec<&CheckResult>> + Send;
}

/// Results gathered beforehand.
pub struct Known(pub Vec<CheckResult>);

impl Evidence for Known {
    async fn results(&mut self, upto: Upto) -> Vec<&CheckResult> {
        self.0.iter().filter(|r| upto.covers(r.stage)).collect()
    }
}

/// A part of the pipeline a front end cannot apply, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJudged {
    pub what: &'static str,
    pub why: &'static str,
}

/// What the pipeline decided at one stage.
#[derive(Debug, Default)]
pub struct Decision {
    /// The reply to give, if the client is refused (5xx or 4xx).
    pub refusal: Option<Refusal>,
    /// What checks in warn mode would have refused.
    pub warnings: Vec<Refusal>,
    /// The check results looked at (for `mxguard check` and for the policy
    /// server, which defers a refusal a DNS failure caused).
    pub results: Vec<CheckResult>,
    pub score: f64,
    /// The refused recipient does not exist (toward `recipients.max_unknown`).
    pub unknown_recipient: bool,
    pub not_judged: Vec<NotJudged>,
}

impl Decision {
    fn refused(refusal: Refusal) -> Decision {
        Decision {
            refusal: Some(refusal),
            ..Decision::default()
        }
    }

    /// Refused, or a state store that fails closed.
    fn from(refusal: Result<Option<Refusal>, crate::state::Unavailable>) -> Decision {
        match refusal {
            Ok(refusal) => Decision {
                refusal,
                ..Decision::default()
            },
            Err(unavailable) => Decision::refused(unavailable.refusal()),
        }
    }

    /// Folds a later step in: its warnings, results and notes added, its
    /// refusal taken if this one has none.
    fn then(mut self, next: Decision) -> Decision {
        self.warnings.extend(next.warnings);
        self.results.extend(next.results);
        self.not_judged.extend(next.not_judged);
        self.score += next.score;
        self.unknown_recipient |= next.unknown_recipient;
        if self.refusal.is_none() {
            self.refusal = next.refusal;
        }
        self
    }

    fn refuses(&self) -> bool {
        self.refusal.is_some()
    }
}

/// The pipeline of one configuration, for one front end.
pub struct Pipeline<'a> {
    config: &'a Config,
    policy: &'a Policy,
    abuse: &'a Abuse,
    front: Front,
    /// The exemption of the client last asked about: looked up (a list
    /// file's stamp, a scan of its networks) once, not at every stage.
    exemption: std::sync::OnceLock<(IpAddr, Option<String>)>,
}

impl<'a> Pipeline<'a> {
    pub fn new(config: &'a Config, policy: &'a Policy, abuse: &'a Abuse, front: Front) -> Self {
        Pipeline {
            config,
            policy,
            abuse,
            front,
            exemption: std::sync::OnceLock::new(),
        }
    }

    fn hostname(&self) -> &str {
        &self.config.server.hostname
    }

    /// Why `client` skips the client checks, if it does.
    pub fn exemption(&self, client: IpAddr) -> Option<String> {
        if let Some((known, exemption)) = self.exemption.get() {
            if *known == client {
                return exemption.clone();
            }
        }
        let exemption = self.policy.exemption(client);
        let _ = self.exemption.set((client, exemption.clone()));
        exemption
    }

    /// A count against a rate limit, or — for a front end that does not
    /// count — whether it is reached already.
    async fn rate(&self, rate: Rate, who: &str) -> Decision {
        let rates = &self.abuse.rates;
        Decision::from(if self.front.counts() {
            rates.count(rate, who).await
        } else {
            rates.peek(rate, who).await
        })
    }

    // Admission.

    /// A ban in force on `client` (`421 4.7.0`, before any DNS work).
    pub async fn ban(&self, client: IpAddr) -> Decision {
        if self.exemption(client).is_some() {
            return Decision::default();
        }
        match self.abuse.bans.active(client).await {
            Ok(ban) => Decision {
                refusal: ban.map(|ban| ban.refusal(self.hostname(), client)),
                ..Decision::default()
            },
            Err(unavailable) => {
                Decision::refused(self.refusal_before_banner(unavailable.refusal()))
            }
        }
    }

    /// Admission: the ban, then the connection rate.
    pub async fn admit(&self, client: IpAddr) -> Decision {
        let ban = self.ban(client).await;
        if ban.refuses() || self.exemption(client).is_some() {
            return ban;
        }
        let mut rate = self
            .rate(Rate::Connections, &crate::net::client_id(client))
            .await;
        // Before the banner a refusal closes the connection: a 421.
        if let Some(refusal) = rate.refusal.take() {
            let state_failed = refusal.check == "state";
            rate.refusal = Some(if state_failed {
                self.refusal_before_banner(refusal)
            } else {
                refusal
            });
        }
        ban.then(rate)
    }

    /// A refusal before the banner (the state store failing closed): a
    /// 421 with our name.
    pub fn refusal_before_banner(&self, refusal: Refusal) -> Refusal {
        let text = format!("{} {}", self.hostname(), refusal.reply.lines.join(" "));
        Refusal::new(refusal.check.clone(), Reply::new(421, "4.3.0", text))
    }

    /// The refusal of a client that talked before the banner.
    pub fn pregreet(&self) -> Refusal {
        Refusal::new("pregreet", Reply::new(554, "5.5.1", "Protocol error"))
    }

    /// The refusal of a connection over a cap (counted at accept).
    pub fn connection_cap(&self, client: IpAddr, cap: peers::Refusal) -> Refusal {
        let host = self.hostname();
        let (check, text) = match cap {
            peers::Refusal::Total | peers::Refusal::NotAllowed => (
                "max_connections",
                format!("{host} Error: too many connections"),
            ),
            peers::Refusal::PerPeer => (
                "max_connections_per_client",
                format!(
                    "{host} Error: too many connections from {}",
                    crate::net::client_id(client)
                ),
            ),
        };
        Refusal::new(check, Reply::new(421, "4.7.0", text))
    }

    /// Whether a client is tarpitted, and why: its connect checks score
    /// above `abuse.tarpit_score`, or one in warn mode matched it.
    pub async fn tarpit(&self, evidence: &mut impl Evidence) -> Option<(&'static str, f64)> {
        let abuse = &self.config.abuse;
        if !abuse.tarpit_enabled() {
            return None;
        }
        // Only the score and warnings are read: no reply names the client.
        let decision = self.fold(evidence.results(Upto::Connect).await, "");
        if abuse.tarpit_score.is_some_and(|t| decision.score > t) {
            return Some(("score", decision.score));
        }
        (abuse.tarpit_on_warn && !decision.warnings.is_empty()).then_some(("warn", decision.score))
    }

    // The checks of the connect, HELO and MAIL stages.

    /// The results, folded: the refusal of the first refusing check (a 5xx
    /// before a 4xx), the warnings, the score.
    /// The results themselves are kept in the decision only for the front
    /// ends that show them (`mxguard check`, the policy server); a
    /// session never reads them.
    fn fold(&self, results: Vec<&CheckResult>, client: impl std::fmt::Display) -> Decision {
        let policy = &self.config.policy;
        let folded = decide(
            results.iter().copied(),
            policy.mode,
            policy.reject_score,
            client,
        );
        let results = match self.front {
            Front::Session => Vec::new(),
            Front::PolicyServer { .. } | Front::Check => results.into_iter().cloned().collect(),
        };
        Decision {
            refusal: folded.refusal,
            warnings: folded.warnings,
            score: folded.score,
            results,
            ..Decision::default()
        }
    }

    /// The verdict of the checks up to `upto` (none for an exempt client).
    pub async fn envelope(
        &self,
        client: IpAddr,
        evidence: &mut impl Evidence,
        upto: Upto,
    ) -> Decision {
        if self.exemption(client).is_some() {
            return Decision::default();
        }
        self.fold(evidence.results(upto).await, crate::net::Ip(client))
    }

    /// Whether the checks refuse at their own stage (HELO, MAIL) rather
    /// than at RCPT.
    pub fn refuses_at_once(&self) -> bool {
        self.config.policy.reject_at == RejectAt::Immediate
    }

    /// MAIL: the message rates of the client and of the sender.
    pub async fn mail(&self, client: IpAddr, from: &Path) -> Decision {
        if self.exemption(client).is_some() {
            return Decision::default();
        }
        // Boxed here and at RCPT: the counts' futures (700 bytes) would
        // take MAIL's and RCPT's futures past glibc's cached chunk sizes.
        Box::pin(self.rates(client, from, Rate::Messages, Rate::SenderMessages)).await
    }

    // RCPT.

    /// Every check of a recipient, in order; the first refusal ends it.
    pub async fn rcpt(
        &self,
        client: IpAddr,
        from: &Path,
        to: &Path,
        evidence: &mut impl Evidence,
    ) -> Decision {
        let mut decision = Decision::default();
        let local = match self.front {
            Front::PolicyServer { .. } => {
                decision.not_judged.push(NotJudged {
                    what: "relay control, spam traps, recipient verification",
                    why: "Postfix's own (reject_unauth_destination, relay_recipient_maps)",
                });
                None
            }
            _ => match self.policy.relay(client, to) {
                Err(refusal) => return decision.then(Decision::refused(refusal)),
                Ok(Destination::Local(mailbox)) => Some(mailbox),
                Ok(Destination::Relayed) => None,
            },
        };
        if !matches!(self.front, Front::PolicyServer { .. }) {
            // A client that sent to a spam trap gets nothing through.
            match self.policy.recipients.trapped(client).await {
                Ok(None) => {}
                trapped => return decision.then(Decision::from(trapped)),
            }
            if let Some(mailbox) = local {
                let trap = match self.front {
                    Front::Session => self.policy.recipients.spring_trap(client, mailbox).await,
                    _ => self.policy.recipients.is_trap(mailbox),
                };
                if let Some(refusal) = trap {
                    let mut refused = Decision::refused(refusal);
                    refused.unknown_recipient = true;
                    return decision.then(refused);
                }
            }
        }
        // Connect, HELO and MAIL refusals are given here (reject_at =
        // "rcpt"), so the log line carries the whole envelope.
        // Each step's verdict awaited before the fold, not inside it: the
        // fold's receiver would be held across the wait beside `decision`.
        let envelope = self.envelope(client, evidence, Upto::Mail).await;
        decision = decision.then(envelope);
        if decision.refuses() {
            return decision;
        }
        if let Some(mailbox) = &to.mailbox {
            let results = self.policy.checks.rcpt(mailbox);
            decision = decision.then(self.fold(results.iter().collect(), crate::net::Ip(client)));
            if decision.refuses() {
                return decision;
            }
        }
        if let Some(mailbox) = local {
            if let Err(refusal) = self.policy.recipient_known(mailbox).await {
                let unknown = refusal.reply.code >= 500;
                let mut refused = Decision::refused(refusal);
                refused.unknown_recipient = unknown;
                return decision.then(refused);
            }
        }
        if self.exemption(client).is_some() {
            return decision;
        }
        let greylisted = Box::pin(self.greylist(client, from, to, evidence)).await;
        decision = decision.then(greylisted);
        if decision.refuses() {
            return decision;
        }
        let rates = Box::pin(self.rates(client, from, Rate::Recipients, Rate::SenderRecipients));
        let rates = rates.await;
        decision.then(rates)
    }

    /// Greylisting, unless a DNS allow list lists the client, or (with
    /// `greylist.when = "suspicious"`) nothing about it is suspicious.
    async fn greylist(
        &self,
        client: IpAddr,
        from: &Path,
        to: &Path,
        evidence: &mut impl Evidence,
    ) -> Decision {
        let greylist = &self.abuse.greylist;
        if !greylist.enabled() || allow_listed(&evidence.results(Upto::Connect).await) {
            return Decision::default();
        }
        if self.config.greylist.when == GreylistWhen::Suspicious {
            let results = evidence.results(Upto::Mail).await;
            let standing = self.policy.greylisting.standing(client, &results).await;
            if let Standing::Spared(_) = standing {
                return Decision::default();
            }
        }
        let (from, to) = (bare(from), bare(to));
        Decision::from(match self.front {
            Front::Check => greylist.peek(client, &from, &to).await,
            _ => greylist.check(client, &from, &to).await,
        })
    }

    /// A rate of the client, then (unless it refuses, or for the null
    /// sender) the matching rate of the sender.
    async fn rates(
        &self,
        client: IpAddr,
        from: &Path,
        of_client: Rate,
        of_sender: Rate,
    ) -> Decision {
        let by_client = self.rate(of_client, &crate::net::client_id(client)).await;
        let sender = from.to_string();
        if by_client.refuses() || sender == "<>" {
            return by_client;
        }
        let by_sender = self.rate(of_sender, &sender).await;
        by_client.then(by_sender)
    }

    // DATA.

    /// DATA, before the 354: a client trapped meanwhile, a bounce (null
    /// sender) to more than one recipient; `transaction` is the sender and
    /// the number of recipients, when there is one.
    pub async fn data(&self, client: IpAddr, transaction: Option<(&Path, usize)>) -> Decision {
        let trapped = Decision::from(self.policy.recipients.trapped(client).await);
        if trapped.refuses() {
            return trapped;
        }
        if transaction.is_some_and(|(from, n)| from.mailbox.is_none() && n > 1) {
            let text = "Error: a message from the null sender (a bounce) has exactly one recipient";
            return Decision::refused(Refusal::new("null_sender", Reply::new(550, "5.7.1", text)));
        }
        Decision::default()
    }

    /// End of DATA: the DMARC verdict of a message whose DMARC policy is
    /// `p=reject` and that fails it (`checks.dmarc`); a refusal is only a
    /// warning when a valid ARC chain sealed last by one of
    /// `checks.arc_trusted_sealers` vouches for the message.
    pub fn dmarc(&self, rejecting_domain: Option<&str>, arc: &ArcChain, header: &str) -> Decision {
        let Some(domain) = rejecting_domain else {
            return Decision::default();
        };
        let sealer = vouching_sealer(arc, &self.config.checks.arc_trusted_sealers);
        let result = CheckResult {
            check: "dmarc".into(),
            stage: Stage::Data,
            setting: self.config.checks.dmarc.0,
            dns_error_default: OnDnsError::Ignore,
            outcome: Outcome::Hit(Reply::new(
                550,
                "5.7.1",
                format!("Message rejected: it fails the DMARC policy (p=reject) of {domain}"),
            )),
            detail: header.trim_end().to_string(),
            elapsed: std::time::Duration::ZERO,
        };
        let mut decision = Decision::default();
        match (result.effect(self.config.policy.mode), sealer) {
            (Effect::Refuse(reply), None) => {
                decision.refusal = Some(Refusal::new("dmarc", reply));
            }
            (Effect::Refuse(reply) | Effect::Warn(reply), Some(sealer)) => {
                let mut warning = Refusal::new("dmarc", reply);
                warning.note = Some(format!("ARC from {sealer} vouched"));
                decision.warnings.push(warning);
            }
            (Effect::Warn(reply), None) => decision.warnings.push(Refusal::new("dmarc", reply)),
            _ => {}
        }
        decision.results.push(result);
        decision
    }
}

/// An address without its angle brackets, as greylisting keys it.
fn bare(path: &Path) -> String {
    let shown = path.to_string();
    shown
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Whether a DNS allow list (a `[[dnsbl]]` with a negative weight) lists
/// the client, among these results.
pub fn allow_listed(results: &[&CheckResult]) -> bool {
    results.iter().any(|r| {
        r.check.starts_with("dnsbl:")
            && r.setting.weight.is_some_and(|w| w < 0.0)
            && matches!(r.outcome, Outcome::Hit(_))
    })
}
