//! What checks say and how it becomes one decision: a [`Refusal`] names
//! the check that said no and the reply for the client; each check yields a
//! [`CheckResult`] (passed, hit with the reply it would give, or could not
//! tell because DNS failed); its setting turns that into an [`Effect`]
//! (refuse, warn, add to the score, nothing); [`decide`] folds the effects
//! of a session into the reply to give, if any.

use crate::config::{Action, CheckSetting, Mode, OnDnsError};
use crate::smtp::reply::Reply;
use std::borrow::Cow;
use std::time::Duration;

/// A check's name: a constant for most (`reverse_dns`), made once per
/// result for those named after their list (`dnsbl:zen.spamhaus.org`).
pub type CheckName = Cow<'static, str>;

/// A check said no: its name for the log, and the reply for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub check: CheckName,
    pub reply: Reply,
    /// Why a refusal became a warning, for the log (`note=`).
    pub note: Option<String>,
}

impl Refusal {
    pub fn new(check: impl Into<CheckName>, reply: Reply) -> Refusal {
        Refusal {
            check: check.into(),
            reply,
            note: None,
        }
    }

    /// `reject` for 5xx, `tempfail` for 4xx.
    pub fn action(&self) -> &'static str {
        self.reply.action()
    }
}

/// Where in the conversation a check belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Helo => "helo",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    /// The check fired; this is the reply it gives when it rejects.
    Hit(Reply),
    /// DNS could not answer; this is the 4xx to give when that tempfails.
    DnsError(Reply),
}

/// One check's result, with what it saw, for logs and `mxguard check`.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// `reverse_dns`, `dnsbl:zen.spamhaus.org`, …
    pub check: CheckName,
    pub stage: Stage,
    pub setting: CheckSetting,
    /// The default when the setting names no `on_dns_error`.
    pub dns_error_default: OnDnsError,
    pub outcome: Outcome,
    /// What the check looked at: DNS answers, the pattern that matched.
    pub detail: String,
    pub elapsed: Duration,
}

/// What a result does to the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    Refuse(Reply),
    /// Would have refused with this reply (warn mode).
    Warn(Reply),
    Score(f64),
}

impl CheckResult {
    pub fn effect(&self, mode: Mode) -> Effect {
        if self.setting.is_off() {
            return Effect::None;
        }
        let effect = match &self.outcome {
            Outcome::Pass => Effect::None,
            Outcome::Hit(reply) => match (self.setting.weight, self.setting.action) {
                (Some(w), _) => Effect::Score(w),
                (None, Action::Reject) => Effect::Refuse(reply.clone()),
                (None, Action::Tempfail) => Effect::Refuse(reply.as_temporary()),
                (None, Action::Warn) => Effect::Warn(reply.clone()),
                (None, Action::Off) => Effect::None,
            },
            Outcome::DnsError(reply) => {
                match self.setting.on_dns_error.unwrap_or(self.dns_error_default) {
                    OnDnsError::Ignore => Effect::None,
                    OnDnsError::Tempfail if self.setting.action == Action::Warn => {
                        Effect::Warn(reply.as_temporary())
                    }
                    OnDnsError::Tempfail => Effect::Refuse(reply.as_temporary()),
                }
            }
        };
        match (effect, mode) {
            (Effect::Refuse(reply), Mode::Warn) => Effect::Warn(reply),
            (effect, _) => effect,
        }
    }
}

/// The verdict over a set of results.
#[derive(Debug, Default)]
pub struct Decision {
    /// The reply to give, from the first refusing check (a 5xx before a 4xx).
    pub refusal: Option<Refusal>,
    /// Checks in warn mode (or policy.mode = "warn") that would have refused.
    pub warnings: Vec<Refusal>,
    pub score: f64,
}

/// Folds results into a decision; `client` is named in the score reply.
pub fn decide<'a>(
    results: impl IntoIterator<Item = &'a CheckResult>,
    mode: Mode,
    reject_score: f64,
    client: impl std::fmt::Display,
) -> Decision {
    let mut decision = Decision::default();
    let mut temporary: Option<Refusal> = None;
    let mut scored = Vec::new();
    for r in results {
        match r.effect(mode) {
            Effect::None => {}
            Effect::Score(w) => {
                decision.score += w;
                scored.push(format!("{}({w})", r.check));
            }
            Effect::Warn(reply) => decision.warnings.push(Refusal::new(r.check.clone(), reply)),
            Effect::Refuse(reply) if reply.code >= 500 => {
                if decision.refusal.is_none() {
                    decision.refusal = Some(Refusal::new(r.check.clone(), reply));
                }
            }
            Effect::Refuse(reply) => {
                if temporary.is_none() {
                    temporary = Some(Refusal::new(r.check.clone(), reply));
                }
            }
        }
    }
    if decision.refusal.is_none() {
        decision.refusal = temporary;
    }
    if decision.refusal.is_none() && !scored.is_empty() && decision.score >= reject_score {
        let reply = Reply::new(
            550,
            "5.7.1",
            format!(
                "Service unavailable; client [{client}] blocked: score {} reached {reject_score} ({})",
                decision.score,
                scored.join(", ")
            ),
        );
        let refusal = Refusal::new("score", reply);
        match mode {
            Mode::Enforce => decision.refusal = Some(refusal),
            Mode::Warn => decision.warnings.push(refusal),
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(check: &'static str, setting: CheckSetting, outcome: Outcome) -> CheckResult {
        CheckResult {
            check: check.into(),
            stage: Stage::Connect,
            setting,
            dns_error_default: OnDnsError::Ignore,
            outcome,
            detail: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn action(a: Action) -> CheckSetting {
        CheckSetting {
            action: a,
            ..Default::default()
        }
    }

    fn weight(w: f64) -> CheckSetting {
        CheckSetting {
            weight: Some(w),
            ..Default::default()
        }
    }

    fn hit() -> Outcome {
        Outcome::Hit(Reply::new(550, "5.7.1", "listed"))
    }

    #[test]
    fn reject_beats_tempfail_and_warn_only_warns() {
        let results = [
            result("a", action(Action::Tempfail), hit()),
            result("b", action(Action::Warn), hit()),
            result("c", action(Action::Reject), hit()),
        ];
        let d = decide(&results, Mode::Enforce, 10.0, "192.0.2.1");
        let refusal = d.refusal.unwrap();
        assert_eq!((&*refusal.check, refusal.reply.code), ("c", 550));
        assert_eq!(d.warnings.len(), 1);
        let d = decide(&results[..2], Mode::Enforce, 10.0, "192.0.2.1");
        assert_eq!(d.refusal.unwrap().reply.to_string(), "450 4.7.1 listed");
    }

    #[test]
    fn dns_errors_never_reject() {
        let mut r = result(
            "rdns",
            action(Action::Reject),
            Outcome::DnsError(Reply::new(451, "4.7.1", "lookup failed")),
        );
        assert_eq!(
            r.effect(Mode::Enforce),
            Effect::None,
            "ignored by default here"
        );
        r.setting.on_dns_error = Some(OnDnsError::Tempfail);
        assert_eq!(
            r.effect(Mode::Enforce),
            Effect::Refuse(Reply::new(451, "4.7.1", "lookup failed"))
        );
        r.outcome = Outcome::DnsError(Reply::new(550, "5.7.1", "would be wrong"));
        assert_eq!(
            r.effect(Mode::Enforce),
            Effect::Refuse(Reply::new(450, "4.7.1", "would be wrong"))
        );
    }

    #[test]
    fn a_check_that_is_off_does_nothing_even_on_dns_errors() {
        let mut r = result(
            "reverse_dns",
            CheckSetting::default(),
            Outcome::DnsError(Reply::new(451, "4.7.1", "x")),
        );
        r.dns_error_default = OnDnsError::Tempfail;
        assert_eq!(r.effect(Mode::Enforce), Effect::None);
    }

    #[test]
    fn scores_add_up_and_allow_lists_subtract() {
        let results = [
            result("dnsbl:a", weight(6.0), hit()),
            result("dnsbl:b", weight(5.0), hit()),
            result("dnswl:c", weight(-3.0), Outcome::Pass),
        ];
        let d = decide(&results, Mode::Enforce, 10.0, "192.0.2.1");
        assert_eq!(d.score, 11.0);
        let reply = d.refusal.unwrap().reply.to_string();
        assert!(
            reply.starts_with(
                "550 5.7.1 Service unavailable; client [192.0.2.1] blocked: score 11 reached 10"
            ),
            "{reply}"
        );
        let with_allow = [
            results[0].clone(),
            results[1].clone(),
            result("dnswl:c", weight(-3.0), hit()),
        ];
        let d = decide(&with_allow, Mode::Enforce, 10.0, "192.0.2.1");
        assert_eq!(d.score, 8.0);
        assert!(d.refusal.is_none());
    }

    #[test]
    fn global_warn_mode_refuses_nothing() {
        let results = [
            result("a", action(Action::Reject), hit()),
            result("b", weight(20.0), hit()),
        ];
        let d = decide(&results, Mode::Warn, 10.0, "192.0.2.1");
        assert!(d.refusal.is_none());
        assert_eq!(d.warnings.len(), 2);
        assert_eq!(d.warnings[1].check, "score");
    }
}
