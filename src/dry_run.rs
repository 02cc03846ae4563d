//! `mxguard check`: one imagined session (client, HELO, sender, recipient)
//! through every configured check, against the configured DNS, exactly as
//! a real session would run them; a report line per check (result, what it
//! saw, time) and the final verdict with the exact reply.

use crate::config::{Config, Mode, RejectAt};
use crate::dns::dnsbl;
use crate::policy::relay::Destination;
use crate::policy::Policy;
use crate::smtp::address::{parse_path, Path};
use crate::verdict::Refusal;
use crate::verdict::{decide, CheckResult, Effect, Outcome};
use std::fmt::Write as _;
use std::net::IpAddr;

/// What to check.
pub struct Trial {
    pub client: IpAddr,
    pub helo: Option<String>,
    pub from: Option<String>,
    pub rcpt: Option<String>,
}

/// How it ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
    Tempfail,
}

/// A sender or recipient that is not an address.
#[derive(Debug, thiserror::Error)]
#[error("{what} `{text}` is not an address: {error}")]
pub struct TrialError {
    what: &'static str,
    text: String,
    error: crate::smtp::address::AddressError,
}

fn path(what: &'static str, text: &str) -> Result<Path, TrialError> {
    let bracketed = if text.starts_with('<') {
        text.to_string()
    } else {
        format!("<{text}>")
    };
    parse_path(&bracketed).map_err(|error| TrialError {
        what,
        text: text.to_string(),
        error,
    })
}

fn line(out: &mut String, r: &CheckResult, mode: Mode) {
    let effect = match (r.effect(mode), &r.outcome) {
        (_, Outcome::Pass) => "pass".to_string(),
        (Effect::Refuse(reply), _) => format!(
            "{} {reply}",
            if reply.code >= 500 {
                "REJECT"
            } else {
                "TEMPFAIL"
            }
        ),
        (Effect::Warn(reply), _) => format!("WARN would reject: {reply}"),
        (Effect::Score(w), _) => format!("score {w:+}"),
        (Effect::None, Outcome::DnsError(_)) => "dns error, ignored".to_string(),
        (Effect::None, _) => "hit, action off".to_string(),
    };
    let _ = writeln!(
        out,
        "{:<8} {:<28} {:<40} {} ({} ms)",
        r.stage.name(),
        r.check,
        effect,
        r.detail,
        r.elapsed.as_millis()
    );
}

fn refused(out: &mut String, refusal: &Refusal) -> Verdict {
    let verdict = if refusal.reply.code >= 500 {
        Verdict::Reject
    } else {
        Verdict::Tempfail
    };
    let _ = writeln!(
        out,
        "verdict: {} by {}: {}",
        refusal.action(),
        refusal.check,
        refusal.reply
    );
    verdict
}

/// Runs the trial; returns the report and the verdict.
pub async fn run(
    config: &Config,
    policy: &Policy,
    trial: &Trial,
) -> Result<(String, Verdict), TrialError> {
    let from = trial
        .from
        .as_deref()
        .map(|f| path("sender", f))
        .transpose()?;
    let rcpt = trial
        .rcpt
        .as_deref()
        .map(|r| path("recipient", r))
        .transpose()?;
    let checks = policy.checks.clone();
    let mode = config.policy.mode;
    let mut out = String::new();
    let client = crate::net::canonical_ip(trial.client);
    dnsbl::test_all(&checks.dns, config, &checks.health, &checks.log).await;
    for zone in config.dnsbl.iter().chain(&config.rhsbl) {
        let health = checks.health.get(&zone.zone);
        let _ = writeln!(
            out,
            "dnsbl    {:<28} health {} {}",
            zone.zone,
            health.label(),
            health.reason()
        );
    }
    let mut results = Vec::new();
    match policy.exemption(client) {
        Some(why) => {
            let _ = writeln!(out, "connect  client checks skipped: {why}");
        }
        None => {
            results.extend(checks.clone().connect(client).await);
            if let Some(helo) = &trial.helo {
                results.extend(checks.clone().helo(client, helo.clone()).await);
            }
            if let Some(from) = &from {
                let helo = trial.helo.clone().unwrap_or_default();
                results.extend(checks.clone().mail(client, helo, from.clone()).await);
            }
        }
    }
    for r in &results {
        line(&mut out, r, mode);
    }
    let decision = decide(
        &results,
        mode,
        config.policy.reject_score,
        &client.to_string(),
    );
    let _ = writeln!(out, "score    {}", decision.score);
    // The order of a real session: relay control at RCPT comes first, then
    // the verdict of the connect, HELO and MAIL checks, then the recipient.
    let local = match &rcpt {
        Some(to) => match policy.relay(client, to) {
            Err(refusal) => {
                let verdict = refused(&mut out, &refusal);
                return Ok((out, verdict));
            }
            Ok(Destination::Local(m)) => Some(m.clone()),
            Ok(Destination::Relayed) => None,
        },
        None => None,
    };
    if rcpt.is_some() {
        let _ = writeln!(out, "rcpt     relay                        pass");
    }
    if let Some(refusal) = &decision.refusal {
        let stage = match config.policy.reject_at {
            RejectAt::Rcpt => "at RCPT",
            RejectAt::Immediate => "at its stage",
        };
        let _ = writeln!(out, "(delivered {stage})");
        let verdict = refused(&mut out, refusal);
        return Ok((out, verdict));
    }
    if let Some(mailbox) = rcpt.as_ref().and_then(|to| to.mailbox.as_ref()) {
        let results = checks.rcpt(mailbox);
        for r in &results {
            line(&mut out, r, mode);
        }
        if let Some(refusal) = decide(
            &results,
            mode,
            config.policy.reject_score,
            &client.to_string(),
        )
        .refusal
        {
            let verdict = refused(&mut out, &refusal);
            return Ok((out, verdict));
        }
    }
    if let Some(mailbox) = &local {
        if let Err(refusal) = policy.recipient_known(mailbox).await {
            let verdict = refused(&mut out, &refusal);
            return Ok((out, verdict));
        }
        let _ = writeln!(out, "rcpt     recipient                    pass");
    }
    let _ = writeln!(out, "verdict: accept");
    Ok((out, Verdict::Accept))
}
