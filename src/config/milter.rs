//! `[[milter]]`: the content filters (rspamd, clamav-milter, OpenDKIM…)
//! each message is shown before its `250`, in the order written, and what
//! happens when one cannot be asked.

use super::duration::HumanDuration;
use serde::Deserialize;
use std::time::Duration;

/// One `[[milter]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milter {
    /// The name in log lines, metrics and the report (default: the address).
    #[serde(default)]
    pub name: String,
    /// `inet:HOST:PORT`, `inet:PORT@HOST` (sendmail's form) or
    /// `unix:/path`.
    pub address: String,
    /// What a message gets when the filter cannot be reached, times out,
    /// breaks the protocol or is over `max_sessions`.
    #[serde(default)]
    pub default_action: DefaultAction,
    /// How much of the message it is shown at the end of DATA (the
    /// envelope steps it always sees, as the protocol wants).
    #[serde(default)]
    pub content: Content,
    #[serde(default = "connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// The wait for the reply to one step (connect, HELO, MAIL, RCPT, DATA,
    /// a header).
    #[serde(default = "command_timeout")]
    pub command_timeout: HumanDuration,
    /// The wait for the reply to a body chunk and to the end of the
    /// message (a filter's progress notices restart it).
    #[serde(default = "content_timeout")]
    pub content_timeout: HumanDuration,
    /// SMTP sessions talking to this filter at once; a session beyond it
    /// gets `default_action`.
    #[serde(default = "max_sessions")]
    pub max_sessions: usize,
}

fn connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

fn command_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn content_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}

fn max_sessions() -> usize {
    200
}

/// `milter.default_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Go on as if the filter had accepted (a content filter down must not
    /// stop mail).
    #[default]
    Accept,
    /// `451 4.7.1`: the client tries again later.
    Tempfail,
    /// `550 5.7.1`.
    Reject,
}

impl DefaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Accept => "accept",
            DefaultAction::Tempfail => "tempfail",
            DefaultAction::Reject => "reject",
        }
    }
}

/// `milter.content`: the stages of the message a filter sees. A filter
/// that judges by the envelope or the header alone (an SPF or DMARC
/// milter) is spared the body's round trips; its steps stay in the order
/// libmilter accepts (a message without header fields or body is one it
/// knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// Header fields and body.
    #[default]
    Whole,
    /// Header fields, no body.
    Headers,
    /// Neither: the envelope steps, then the end of the message.
    Envelope,
}

/// Checks the entries and names the unnamed; errors name the key.
pub fn validate(milters: &mut [Milter]) -> Result<(), (&'static str, String)> {
    let mut names = std::collections::HashSet::new();
    for milter in milters.iter_mut() {
        if let Err(e) = crate::milter::client::Address::parse(&milter.address) {
            return Err(("milter.address", format!("`{}`: {e}", milter.address)));
        }
        if milter.name.is_empty() {
            milter.name = milter.address.clone();
        }
        if milter.name.chars().any(|c| c.is_whitespace() || c == '"') {
            let why = format!("`{}` may not hold spaces or quotes", milter.name);
            return Err(("milter.name", why));
        }
        if !names.insert(milter.name.clone()) {
            let why = format!("`{}` names two filters", milter.name);
            return Err(("milter.name", why));
        }
        for (key, timeout) in [
            ("milter.connect_timeout", milter.connect_timeout),
            ("milter.command_timeout", milter.command_timeout),
            ("milter.content_timeout", milter.content_timeout),
        ] {
            if timeout.0.is_zero() {
                return Err((key, "must be more than 0s".into()));
            }
        }
        if milter.max_sessions == 0 {
            return Err(("milter.max_sessions", "must be at least 1".into()));
        }
    }
    Ok(())
}
