//! `mxguard check`: one imagined session (client, HELO, sender, recipient)
//! through the pipeline, as its third front end: every stage it has facts
//! for, against the configured DNS and the state a session would meet now
//! — the running server's (the check then runs inside it, asked through
//! the control socket), or without one the state file or Redis — changing
//! nothing (no rate counted, no triplet greylisted, no trap sprung). A
//! report line per check (result, what it saw, time), the stages it could
//! not judge (`not judged: …`), and the verdict with the exact reply.

use crate::abuse::Abuse;
use crate::config::{Config, Mode, RejectAt};
use crate::dns::dnsbl;
use crate::policy::pipeline::{Decision, Front, Known, NotJudged, Pipeline, Upto};
use crate::policy::Policy;
use crate::smtp::address::{parse_path, Path};
use crate::verdict::{CheckResult, Effect, Outcome, Refusal};
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

impl Verdict {
    /// The verdict a report's last `verdict:` line gives.
    pub fn of_report(report: &str) -> Option<Verdict> {
        let line = report.lines().rfind(|l| l.starts_with("verdict: "))?;
        Some(match line.trim_start_matches("verdict: ") {
            "accept" => Verdict::Accept,
            rest if rest.starts_with("reject") => Verdict::Reject,
            _ => Verdict::Tempfail,
        })
    }
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

impl Trial {
    /// The trial as the control socket carries it: `check` and the four
    /// fields, tab-separated (empty when not given).
    pub fn to_command(&self) -> String {
        let field = |f: &Option<String>| f.clone().unwrap_or_default();
        format!(
            "check\t{}\t{}\t{}\t{}",
            self.client,
            field(&self.helo),
            field(&self.from),
            field(&self.rcpt)
        )
    }

    /// A trial from [`Trial::to_command`]'s fields (after `check`).
    pub fn from_fields(fields: &[&str]) -> Option<Trial> {
        let [client, helo, from, rcpt] = fields else {
            return None;
        };
        let given = |f: &str| (!f.is_empty()).then(|| f.to_string());
        Some(Trial {
            client: client.parse().ok()?,
            helo: given(helo),
            from: given(from),
            rcpt: given(rcpt),
        })
    }
}

/// The effect of one result, as the report says it.
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

fn not_judged(out: &mut String, what: &NotJudged) {
    let _ = writeln!(out, "not judged: {}: {}", what.what, what.why);
}

/// What the check knows of the state, for the report's `state` line.
pub enum StateSource {
    /// The running server's own.
    Live,
    /// The memory backend's file (bans, traps, greylisting; its rate
    /// counters are not saved).
    File(String),
    /// The shared Redis.
    Redis,
    /// No server and no state file: bans, traps, greylisting and rates
    /// cannot be judged.
    Nothing,
}

impl StateSource {
    fn notes(&self, out: &mut String) {
        let (shown, missing) = match self {
            StateSource::Live => ("the running server's", None),
            StateSource::File(path) => (
                path.as_str(),
                Some(NotJudged {
                    what: "rate limits",
                    why: "no running server, and the state file keeps no rate counters",
                }),
            ),
            StateSource::Redis => ("Redis (shared with the servers)", None),
            StateSource::Nothing => (
                "none",
                Some(NotJudged {
                    what: "bans, spam traps, greylisting, rate limits",
                    why: "no running server and no state file",
                }),
            ),
        };
        let _ = writeln!(out, "state    {shown}");
        if let Some(missing) = missing {
            not_judged(out, &missing);
        }
    }
}

/// What the pipeline needs, and the state the check reads.
pub struct Context<'a> {
    pub config: &'a Config,
    pub policy: &'a Policy,
    pub abuse: &'a Abuse,
    pub state: StateSource,
    /// Test the DNSBLs first (a one-shot run); a server knows their health.
    pub test_dnsbls: bool,
}

/// Why a check could not be run at all (beyond a bad trial).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Trial(#[from] TrialError),
    #[error("{0}")]
    Setup(String),
}

/// Runs the trial in this process, with the state it can read: the state
/// file of the memory backend (read, never written), or Redis.
pub async fn run_here(
    config: std::sync::Arc<Config>,
    trial: &Trial,
) -> Result<(String, Verdict), CheckError> {
    use crate::state::{memory::Memory, State, Store};
    use std::sync::Arc;
    let setup = |e: &dyn std::fmt::Display| CheckError::Setup(e.to_string());
    let log = Arc::new(crate::log::Logger::discard());
    let (store, source) = match &config.state.backend {
        crate::config::Backend::Memory => {
            let file = crate::state::state_file(&config);
            match std::fs::read_to_string(&file) {
                Ok(text) => (
                    Store::Memory(Memory::from_text(None, &text, config.state.max_entries)),
                    StateSource::File(file.display().to_string()),
                ),
                Err(_) => (Store::Memory(Memory::scratch()), StateSource::Nothing),
            }
        }
        crate::config::Backend::Redis(_) => (
            Store::open(&config).map_err(|e| setup(&e))?,
            StateSource::Redis,
        ),
    };
    let state = Arc::new(State::new(store, &config, log.clone()));
    let dns = Arc::new(crate::dns::Dns::new(&config.dns).map_err(|e| setup(&e))?);
    let policy = Policy::new(
        config.clone(),
        dns,
        state.clone(),
        log.clone(),
        Arc::default(),
    )
    .map_err(|e| setup(&e))?;
    let abuse = Abuse::new(config.clone(), state, log);
    let cx = Context {
        config: &config,
        policy: &policy,
        abuse: &abuse,
        state: source,
        test_dnsbls: true,
    };
    Ok(run(&cx, trial).await?)
}

/// Runs the trial; returns the report and the verdict.
pub async fn run(cx: &Context<'_>, trial: &Trial) -> Result<(String, Verdict), TrialError> {
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
    let (config, checks) = (cx.config, &cx.policy.checks);
    let mut out = String::new();
    let client = crate::net::canonical_ip(trial.client);
    if cx.test_dnsbls {
        dnsbl::test_all(&checks.dns, config, &checks.health, &checks.log).await;
    }
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
    cx.state.notes(&mut out);
    let pipeline = Pipeline::new(config, cx.policy, cx.abuse, Front::Check);
    for what in [
        "the pregreet test, the connection caps",
        "message authentication (DKIM, SPF, DMARC)",
    ] {
        let why = if what.starts_with("message") {
            "it needs the message"
        } else {
            "they need a connection"
        };
        not_judged(&mut out, &NotJudged { what, why });
    }
    if !config.milter.is_empty() {
        let what = "the content filters ([[milter]])";
        let why = "they are asked by a session, about its message";
        not_judged(&mut out, &NotJudged { what, why });
    }
    let exempt = pipeline.exemption(client);
    if let Some(why) = &exempt {
        let _ = writeln!(out, "connect  client checks skipped: {why}");
    }
    let admission = pipeline.admit(client).await;
    if let Some(refusal) = &admission.refusal {
        let _ = writeln!(out, "(delivered before the banner)");
        let verdict = refused(&mut out, refusal);
        return Ok((out, verdict));
    }
    let mut results = Vec::new();
    if exempt.is_none() {
        results.extend(checks.clone().connect(client).await);
        if let Some(helo) = &trial.helo {
            results.extend(checks.clone().helo(client, helo.clone()).await);
        }
        if let Some(from) = &from {
            let helo = trial.helo.clone().unwrap_or_default();
            results.extend(
                checks
                    .clone()
                    .mail(client, helo, from.clone(), Default::default())
                    .await,
            );
        }
    }
    let mode = config.policy.mode;
    for r in &results {
        line(&mut out, r, mode);
    }
    let mut evidence = Known(results);
    let envelope = pipeline.envelope(client, &mut evidence, Upto::Mail).await;
    let _ = writeln!(out, "score    {}", envelope.score);
    let sender = from.clone().unwrap_or(Path::null());
    let mut stage = pipeline.mail(client, &sender).await;
    if stage.refusal.is_none() {
        stage = match &rcpt {
            Some(to) => pipeline.rcpt(client, &sender, to, &mut evidence).await,
            None => envelope,
        };
    }
    Ok(finish(out, config, stage))
}

/// The rest of the report: the recipient's own checks, what was not
/// judged, and the verdict.
fn finish(mut out: String, config: &Config, decision: Decision) -> (String, Verdict) {
    for r in decision
        .results
        .iter()
        .filter(|r| r.stage == crate::verdict::Stage::Rcpt)
    {
        line(&mut out, r, config.policy.mode);
    }
    for what in &decision.not_judged {
        not_judged(&mut out, what);
    }
    for warning in &decision.warnings {
        let _ = writeln!(
            out,
            "warn     {}: would reject: {}",
            warning.check, warning.reply
        );
    }
    let Some(refusal) = &decision.refusal else {
        let _ = writeln!(out, "verdict: accept");
        return (out, Verdict::Accept);
    };
    let stage = match config.policy.reject_at {
        RejectAt::Rcpt => "at RCPT",
        RejectAt::Immediate => "at its stage",
    };
    let _ = writeln!(out, "(delivered {stage})");
    let verdict = refused(&mut out, refusal);
    (out, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_goes_through_the_control_socket_whole() {
        let trial = Trial {
            client: "192.0.2.7".parse().unwrap(),
            helo: Some("mail.example.org".into()),
            from: None,
            rcpt: Some("\"a b\"@example.test".into()),
        };
        let command = trial.to_command();
        let fields: Vec<&str> = command.split('\t').skip(1).collect();
        let back = Trial::from_fields(&fields).unwrap();
        assert_eq!(back.client, trial.client);
        assert_eq!(back.helo, trial.helo);
        assert_eq!(back.from, None);
        assert_eq!(back.rcpt, trial.rcpt);
        assert!(Trial::from_fields(&["nonsense", "", "", ""]).is_none());
        assert!(Trial::from_fields(&["192.0.2.7"]).is_none());
    }

    #[test]
    fn the_verdict_is_read_back_from_the_report() {
        assert_eq!(
            Verdict::of_report("x\nverdict: accept\n"),
            Some(Verdict::Accept)
        );
        assert_eq!(
            Verdict::of_report("verdict: reject by helo: 550 5.7.1 no\n"),
            Some(Verdict::Reject)
        );
        assert_eq!(
            Verdict::of_report("verdict: tempfail by spf: 451 4.7.24 x\n"),
            Some(Verdict::Tempfail)
        );
        assert_eq!(Verdict::of_report("error\n"), None);
    }
}
