//! What mxguard answers to one policy request: the client's ban, the rate
//! limits, the checks of every stage up to the one Postfix asks about
//! (`protocol_state`), folded as an SMTP session folds them, then — at
//! RCPT — the recipient block list, greylisting and the recipient rate
//! limits. Exempt clients (trusted networks, the exception list) get
//! `DUNNO` without a check. Relay control and recipient verification
//! (with the spam traps) are not run: Postfix does those.
//!
//! A request only claims who the client is, so by default it changes no
//! state that could punish that client: bans in force still refuse and
//! greylisting works as in a session, but refusals count no ban offence
//! and rate limits are neither counted nor applied, unless
//! `policy_server.count_offences` is set.
//!
//! One [`Decider`] serves one policy connection, whose requests come from
//! one Postfix SMTP server process in turn. It remembers the mail
//! transaction of the last request (Postfix's `instance`): the results of
//! its connect, HELO and MAIL checks (so the requests for its other
//! recipients run no lookup again), the warnings and offences already
//! logged, and whether its message was counted.

use super::protocol::{Answer, Request};
use crate::policy::pipeline::{Decision, Front, Known, Upto};
use crate::services::Services;
use crate::smtp::address::{parse_path, Path};
use crate::verdict::Refusal;
use crate::verdict::{CheckResult, Outcome, Stage};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

/// The stage Postfix asks about, from `protocol_state`; `None` for the
/// states no check belongs to (`VRFY`, `ETRN`) and unknown ones.
pub fn stage(protocol_state: &str) -> Option<Stage> {
    match protocol_state.to_ascii_uppercase().as_str() {
        "CONNECT" => Some(Stage::Connect),
        "EHLO" | "HELO" => Some(Stage::Helo),
        "MAIL" => Some(Stage::Mail),
        "RCPT" => Some(Stage::Rcpt),
        "DATA" | "BDAT" | "END-OF-MESSAGE" => Some(Stage::Data),
        _ => None,
    }
}

/// How deep into the conversation a stage is.
fn depth(stage: Stage) -> u8 {
    match stage {
        Stage::Connect => 0,
        Stage::Helo => 1,
        Stage::Mail => 2,
        Stage::Rcpt => 3,
        Stage::Data => 4,
    }
}

/// A sender or recipient as given (without angle brackets), parsed when
/// it is an address mxguard understands.
struct Address {
    /// `<text>`, as the session logs and counts it.
    shown: String,
    path: Option<Path>,
}

impl Address {
    fn new(text: &str) -> Address {
        let bracketed = format!("<{text}>");
        let path = parse_path(&bracketed).ok();
        Address {
            shown: path.as_ref().map_or(bracketed, ToString::to_string),
            path,
        }
    }
}

/// One request, read.
struct Envelope {
    client: IpAddr,
    stage: Stage,
    /// Empty when the client sent none (yet).
    helo: String,
    /// From MAIL on; empty is the null sender.
    sender: Option<Address>,
    /// At RCPT (and at DATA for a single recipient).
    recipient: Option<Address>,
    instance: String,
}

impl Envelope {
    /// The request as an envelope, or why it gets `DUNNO` unchecked (`None`
    /// for the states without checks).
    fn read(request: &Request) -> Result<Option<Envelope>, String> {
        if !request.request.eq_ignore_ascii_case("smtpd_access_policy") {
            return Err(format!("unknown request type {:?}", request.request));
        }
        let state = request.protocol_state.as_str();
        let stage = match stage(state) {
            Some(stage) => stage,
            None if state.eq_ignore_ascii_case("VRFY") || state.eq_ignore_ascii_case("ETRN") => {
                return Ok(None)
            }
            None => return Err(format!("unknown protocol_state {state:?}")),
        };
        let client = request
            .client_address
            .parse::<IpAddr>()
            .map_err(|_| format!("client_address {:?} is no address", request.client_address))?;
        let from_mail = depth(stage) >= depth(Stage::Mail);
        Ok(Some(Envelope {
            client: crate::net::canonical_ip(client),
            stage,
            helo: request.helo_name.clone(),
            sender: from_mail.then(|| Address::new(&request.sender)),
            recipient: (from_mail && !request.recipient.is_empty())
                .then(|| Address::new(&request.recipient)),
            instance: request.instance.clone(),
        }))
    }

    /// The stages of the connect, HELO and MAIL checks that apply.
    fn checks_depth(&self) -> u8 {
        depth(self.stage).min(depth(Stage::Mail))
    }

    fn sender_shown(&self) -> &str {
        self.sender.as_ref().map_or("", |s| s.shown.as_str())
    }
}

/// How a refusal reaches Postfix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `NNN X.Y.Z text`, exactly mxguard's reply.
    Reply,
    /// `DEFER_IF_PERMIT`: a check could not tell because DNS failed.
    DeferIfPermit,
}

/// A request refused: the refusal and its form.
struct Refused {
    refusal: Refusal,
    form: Form,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused {
            refusal,
            form: Form::Reply,
        }
    }
}

/// The answer for a refusal that came out of these check results: a DNS
/// failure (the refusing check could not tell) is deferred only if
/// nothing else in Postfix rejects; anything else is mxguard's reply.
fn form(refusal: &Refusal, results: &[CheckResult]) -> Form {
    let dns_failure = results
        .iter()
        .any(|r| r.check == refusal.check && matches!(r.outcome, Outcome::DnsError(_)));
    if dns_failure {
        Form::DeferIfPermit
    } else {
        Form::Reply
    }
}

/// The connect, HELO and MAIL results of one transaction.
struct Cached {
    /// Whom they are about.
    client: IpAddr,
    helo: String,
    sender: String,
    /// The deepest stage run.
    depth: u8,
    results: Vec<CheckResult>,
}

impl Cached {
    /// The results that still hold for `env`, and how deep they go: the
    /// connect checks for the same client, the HELO checks for the same
    /// HELO name, the MAIL checks for the same sender.
    fn still_valid(self, env: &Envelope) -> Option<(u8, Vec<CheckResult>)> {
        if self.client != env.client {
            return None;
        }
        let valid = if self.helo != env.helo {
            depth(Stage::Connect)
        } else if self.sender != env.sender_shown() {
            depth(Stage::Helo)
        } else {
            self.depth
        }
        .min(self.depth);
        let results = self.results.into_iter();
        Some((valid, results.filter(|r| depth(r.stage) <= valid).collect()))
    }
}

/// What a connection remembers of the transaction of its last request.
#[derive(Default)]
struct Transaction {
    /// Postfix's `instance`; empty: every request is on its own.
    instance: String,
    checks: Option<Cached>,
    /// Warnings logged (check and reply), each once per transaction.
    warned: HashSet<String>,
    /// Offences counted, each kind once per transaction.
    offences: HashSet<String>,
    message_counted: bool,
}

/// Answers the requests of one policy connection.
pub struct Decider {
    svc: Arc<Services>,
    /// The policy client (Postfix), for the log.
    peer: String,
    tx: Transaction,
}

impl Decider {
    pub fn new(svc: Arc<Services>, peer: String) -> Decider {
        Decider {
            svc,
            peer,
            tx: Transaction::default(),
        }
    }

    /// The answer to `request`; refusals and would-be refusals are logged.
    pub async fn answer(&mut self, request: &Request) -> Answer {
        let env = match Envelope::read(request) {
            Ok(Some(env)) => env,
            Ok(None) => return Answer::Dunno,
            Err(why) => {
                self.svc
                    .log
                    .event("policy_skip")
                    .kv("client", &self.peer)
                    .kv("reason", why)
                    .kv("answer", "DUNNO")
                    .kv("service", "policy")
                    .emit();
                return Answer::Dunno;
            }
        };
        if env.instance.is_empty() || env.instance != self.tx.instance {
            self.tx = Transaction {
                instance: env.instance.clone(),
                ..Transaction::default()
            };
        }
        let Err(refused) = self.judge(&env).await else {
            return Answer::Dunno;
        };
        let Refused { refusal, form } = refused;
        let action = match form {
            Form::Reply => refusal.action(),
            Form::DeferIfPermit => "defer_if_permit",
        };
        self.log("reject", &env, &refusal, action);
        let bans = &self.svc.abuse.bans;
        if self.svc.config.policy_server.count_offences
            && bans.counts(&refusal.check)
            && self.tx.offences.insert(refusal.check.to_string())
        {
            // A failing store already logged; nothing more to do here.
            let _ = bans.offence(env.client, &refusal.check).await;
        }
        match form {
            Form::Reply => Answer::Refuse(refusal.reply),
            Form::DeferIfPermit => Answer::DeferIfPermit(refusal.reply),
        }
    }

    /// The pipeline at the request's stage; `Err` is the first refusal.
    async fn judge(&mut self, env: &Envelope) -> Result<(), Refused> {
        let svc = self.svc.clone();
        let counts = svc.config.policy_server.count_offences;
        let pipeline = svc.pipeline(Front::PolicyServer { counts });
        // Postfix asks at CONNECT once per connection: admission then; at
        // every other request, a ban in force.
        let admission = if env.stage == Stage::Connect {
            pipeline.admit(env.client).await
        } else {
            pipeline.ban(env.client).await
        };
        self.apply(env, admission)?;
        // A sender mxguard cannot parse (Postfix is more lenient) goes
        // without the MAIL stage rather than being refused for it.
        let from = env.sender.as_ref().and_then(|s| s.path.clone());
        if let Some(from) = &from {
            if self.counts_message(env) {
                self.apply(env, pipeline.mail(env.client, from).await)?;
            }
        }
        let mut evidence = Known(self.envelope_checks(env).await);
        let to = env.recipient.as_ref().and_then(|r| r.path.clone());
        let decision = match (env.stage, &from, &to) {
            (Stage::Rcpt, Some(from), Some(to)) => {
                pipeline.rcpt(env.client, from, to, &mut evidence).await
            }
            (stage, ..) => {
                let upto = match stage {
                    Stage::Connect => Upto::Connect,
                    Stage::Helo => Upto::Helo,
                    _ => Upto::Mail,
                };
                pipeline.envelope(env.client, &mut evidence, upto).await
            }
        };
        self.apply(env, decision)
    }

    /// Whether this request's message is new to the message rate limits:
    /// once per transaction, or — without `instance` — per MAIL request.
    fn counts_message(&mut self, env: &Envelope) -> bool {
        if depth(env.stage) < depth(Stage::Mail) {
            return false;
        }
        if env.instance.is_empty() {
            return env.stage == Stage::Mail;
        }
        !std::mem::replace(&mut self.tx.message_counted, true)
    }

    /// The connect, HELO and MAIL checks up to the request's stage, run
    /// at once; what the transaction already ran is not run again.
    async fn envelope_checks(&mut self, env: &Envelope) -> Vec<CheckResult> {
        let want = env.checks_depth();
        let (have, mut results) = match self.tx.checks.take().and_then(|c| c.still_valid(env)) {
            Some((have, results)) => (Some(have), results),
            None => (None, Vec::new()),
        };
        let missing = |stage: Stage| depth(stage) <= want && have.is_none_or(|h| depth(stage) > h);
        let checks = &self.svc.policy.checks;
        let connect = async {
            if missing(Stage::Connect) && checks.has_connect_checks() {
                checks.clone().connect(env.client).await
            } else {
                Vec::new()
            }
        };
        // No HELO: Postfix was told not to require one; nothing to check.
        let helo = async {
            if missing(Stage::Helo) && !env.helo.is_empty() {
                checks.clone().helo(env.client, env.helo.clone()).await
            } else {
                Vec::new()
            }
        };
        // A sender mxguard cannot parse (Postfix is more lenient) goes
        // without the MAIL checks rather than being refused for it.
        let from = env.sender.as_ref().and_then(|s| s.path.clone());
        let mail = async {
            match from {
                Some(from) if missing(Stage::Mail) => {
                    checks
                        .clone()
                        .mail(env.client, env.helo.clone(), from, Default::default())
                        .await
                }
                _ => Vec::new(),
            }
        };
        let (connect, helo, mail) = tokio::join!(connect, helo, mail);
        results.extend(connect.into_iter().chain(helo).chain(mail));
        let wanted = results
            .iter()
            .filter(|r| depth(r.stage) <= want)
            .cloned()
            .collect();
        if !env.instance.is_empty() {
            self.tx.checks = Some(Cached {
                client: env.client,
                helo: env.helo.clone(),
                sender: env.sender_shown().to_string(),
                depth: have.map_or(want, |h| h.max(want)),
                results,
            });
        }
        wanted
    }

    /// Logs the warnings not logged in this transaction; `Err` is the
    /// refusal, deferred if a DNS failure made it.
    fn apply(&mut self, env: &Envelope, decision: Decision) -> Result<(), Refused> {
        for warning in decision.warnings {
            if self
                .tx
                .warned
                .insert(format!("{} {}", warning.check, warning.reply))
            {
                self.log("would_reject", env, &warning, "warn");
            }
        }
        match decision.refusal {
            Some(refusal) => Err(Refused {
                form: form(&refusal, &decision.results),
                refusal,
            }),
            None => Ok(()),
        }
    }

    fn log(&self, event: &'static str, env: &Envelope, refusal: &Refusal, action: &str) {
        self.svc
            .log
            .event(event)
            .kv("client", env.client)
            // As in a session: ours first, the client's after.
            .kv("stage", env.stage.name())
            .kv("check", &refusal.check)
            .kv("action", action)
            .opt("helo", Some(&env.helo).filter(|h| !h.is_empty()))
            .opt("from", env.sender.as_ref().map(|s| &s.shown))
            .opt("to", env.recipient.as_ref().map(|r| &r.shown))
            .kv("reply", &refusal.reply)
            .kv("service", "policy")
            .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Action, CheckSetting, OnDnsError};
    use crate::smtp::reply::Reply;
    use crate::verdict::decide;
    use std::time::Duration;

    fn request(state: &str) -> Request {
        Request {
            request: "smtpd_access_policy".into(),
            protocol_state: state.into(),
            client_address: "192.0.2.7".into(),
            helo_name: "mail.example.org".into(),
            sender: "a@Example.ORG".into(),
            recipient: "b@example.test".into(),
            instance: "1.2.3".into(),
        }
    }

    #[test]
    fn protocol_states_map_to_stages() {
        assert_eq!(stage("CONNECT"), Some(Stage::Connect));
        assert_eq!(stage("EHLO"), Some(Stage::Helo));
        assert_eq!(stage("HELO"), Some(Stage::Helo));
        assert_eq!(stage("MAIL"), Some(Stage::Mail));
        assert_eq!(stage("RCPT"), Some(Stage::Rcpt));
        assert_eq!(stage("END-OF-MESSAGE"), Some(Stage::Data));
        assert_eq!(stage("VRFY"), None);
    }

    #[test]
    fn requests_become_envelopes() {
        let env = Envelope::read(&request("RCPT")).unwrap().unwrap();
        assert_eq!(env.stage, Stage::Rcpt);
        assert_eq!(env.sender_shown(), "<a@example.org>");
        assert_eq!(env.recipient.as_ref().unwrap().shown, "<b@example.test>");
        assert_eq!(env.checks_depth(), depth(Stage::Mail));

        let mut null = request("MAIL");
        null.sender.clear();
        null.recipient.clear();
        let env = Envelope::read(&null).unwrap().unwrap();
        assert_eq!(env.sender_shown(), "<>");
        assert!(env.recipient.is_none());

        // Before MAIL there is no sender, not a null one.
        let env = Envelope::read(&request("EHLO")).unwrap().unwrap();
        assert!(env.sender.is_none());
        assert_eq!(env.checks_depth(), depth(Stage::Helo));

        let mut mapped = request("CONNECT");
        mapped.client_address = "::ffff:192.0.2.7".into();
        let env = Envelope::read(&mapped).unwrap().unwrap();
        assert_eq!(env.client, "192.0.2.7".parse::<IpAddr>().unwrap());

        let mut odd = request("RCPT");
        odd.sender = "not an address".into();
        let env = Envelope::read(&odd).unwrap().unwrap();
        let sender = env.sender.unwrap();
        assert!(sender.path.is_none());
        assert_eq!(sender.shown, "<not an address>");
    }

    #[test]
    fn requests_without_checks_are_told_apart_from_bad_ones() {
        assert!(matches!(Envelope::read(&request("VRFY")), Ok(None)));
        let mut other = request("RCPT");
        other.request = "junk".into();
        assert_eq!(
            Envelope::read(&other).err().unwrap(),
            "unknown request type \"junk\""
        );
        assert!(Envelope::read(&request("NOOP")).is_err());
        let mut no_client = request("RCPT");
        no_client.client_address = "unknown".into();
        assert!(Envelope::read(&no_client).is_err());
    }

    fn result(check: &'static str, outcome: Outcome) -> CheckResult {
        CheckResult {
            check: check.into(),
            stage: Stage::Connect,
            setting: CheckSetting {
                action: Action::Reject,
                on_dns_error: Some(OnDnsError::Tempfail),
                ..CheckSetting::default()
            },
            dns_error_default: OnDnsError::Tempfail,
            outcome,
            detail: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn cached_results_hold_while_what_they_are_about_holds() {
        let env = Envelope::read(&request("RCPT")).unwrap().unwrap();
        let at = |check: &'static str, stage| CheckResult {
            stage,
            ..result(check, Outcome::Pass)
        };
        let cached = || Cached {
            client: env.client,
            helo: env.helo.clone(),
            sender: env.sender_shown().to_string(),
            depth: depth(Stage::Mail),
            results: vec![
                at("reverse_dns", Stage::Connect),
                at("helo", Stage::Helo),
                at("spf", Stage::Mail),
            ],
        };
        let valid = |req: &Request| {
            let env = Envelope::read(req).unwrap().unwrap();
            cached().still_valid(&env).map(|(depth, results)| {
                let checks: Vec<String> =
                    results.into_iter().map(|r| r.check.into_owned()).collect();
                (depth, checks.join(","))
            })
        };
        let mut req = request("RCPT");
        req.recipient = "another@example.test".into();
        assert_eq!(valid(&req), Some((2, "reverse_dns,helo,spf".into())));
        req.sender = "other@example.org".into();
        assert_eq!(valid(&req), Some((1, "reverse_dns,helo".into())));
        req.helo_name = "other.example.org".into();
        assert_eq!(valid(&req), Some((0, "reverse_dns".into())));
        req.client_address = "192.0.2.8".into();
        assert_eq!(valid(&req), None);
        // Results that only went as far as HELO do not grow with the request.
        let mut shallow = cached();
        shallow.depth = depth(Stage::Helo);
        shallow.results.pop();
        let (depth, results) = shallow.still_valid(&env).unwrap();
        assert_eq!((depth, results.len()), (1, 2));
    }

    #[test]
    fn only_dns_failures_are_deferred_if_permitted() {
        let failed = Reply::new(451, "4.7.1", "lookup failed");
        let listed = Reply::new(554, "5.7.1", "listed");
        let results = [
            result("reverse_dns", Outcome::DnsError(failed.clone())),
            result("dnsbl:bl.test", Outcome::Hit(listed.clone())),
        ];
        let policy = crate::config::Mode::Enforce;
        let decision = decide(&results, policy, 10.0, "192.0.2.7");
        let refusal = decision.refusal.unwrap();
        assert_eq!(refusal.check, "dnsbl:bl.test", "a reject beats a tempfail");
        assert_eq!(form(&refusal, &results), Form::Reply);
        let decision = decide(&results[..1], policy, 10.0, "192.0.2.7");
        let refusal = decision.refusal.unwrap();
        assert_eq!(refusal.reply, failed);
        assert_eq!(form(&refusal, &results), Form::DeferIfPermit);
        // A check set to tempfail refuses explicitly: nothing failed.
        let score = Refusal::new("score", listed.as_temporary());
        assert_eq!(form(&score, &results), Form::Reply);
    }
}
