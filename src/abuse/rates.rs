//! Rate limits per client address and per sender (`limits.*_per_minute`,
//! `limits.*_per_hour`): sliding-window counters in the state store, so a
//! fleet shares them. Each limit has its reply, in Postfix's words.

use crate::config::Config;
use crate::smtp::reply::Reply;
use crate::state::{State, Unavailable};
use crate::verdict::Refusal;
use std::sync::Arc;
use std::time::Duration;

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// New connections from a client address, per minute.
    Connections,
    /// MAIL commands from a client address, per hour.
    Messages,
    /// Accepted recipients from a client address, per hour.
    Recipients,
    /// MAIL commands naming a sender, per hour.
    SenderMessages,
    /// Accepted recipients for a sender, per hour.
    SenderRecipients,
}

impl Rate {
    /// The check name in the log.
    pub fn check(self) -> &'static str {
        match self {
            Rate::Connections => "connection_rate",
            Rate::Messages => "message_rate",
            Rate::Recipients => "recipient_rate",
            Rate::SenderMessages => "sender_message_rate",
            Rate::SenderRecipients => "sender_recipient_rate",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Rate::Connections => "conn",
            Rate::Messages => "msg",
            Rate::Recipients => "rcpt",
            Rate::SenderMessages => "smsg",
            Rate::SenderRecipients => "srcpt",
        }
    }

    fn window(self) -> Duration {
        match self {
            Rate::Connections => Duration::from_secs(60),
            _ => Duration::from_secs(3600),
        }
    }

    fn limit(self, config: &Config) -> u32 {
        let l = &config.limits;
        match self {
            Rate::Connections => l.connections_per_minute,
            Rate::Messages => l.messages_per_hour,
            Rate::Recipients => l.recipients_per_hour,
            Rate::SenderMessages => l.sender_messages_per_hour,
            Rate::SenderRecipients => l.sender_recipients_per_hour,
        }
    }

    /// The refusal once the limit is reached; `who` is the client address
    /// or the sender.
    pub fn refusal(self, hostname: &str, who: &str) -> Refusal {
        let reply = match self {
            Rate::Connections => Reply::new(
                421,
                "4.7.0",
                format!("{hostname} Error: too many connections from {who}"),
            ),
            Rate::Messages | Rate::SenderMessages => {
                Reply::new(450, "4.7.1", format!("Error: too much mail from {who}"))
            }
            Rate::Recipients | Rate::SenderRecipients => Reply::new(
                450,
                "4.7.1",
                format!("Error: too many recipients from {who}"),
            ),
        };
        Refusal::new(self.check(), reply)
    }
}

pub struct Rates {
    config: Arc<Config>,
    state: Arc<State>,
}

impl Rates {
    pub fn new(config: Arc<Config>, state: Arc<State>) -> Rates {
        Rates { config, state }
    }

    /// Counts one event for `who`; the refusal when over the limit.
    pub async fn count(&self, rate: Rate, who: &str) -> Result<Option<Refusal>, Unavailable> {
        let limit = rate.limit(&self.config);
        if limit == 0 {
            return Ok(None);
        }
        let counted = self
            .state
            .hit(&key(rate, who), rate.window(), limit)
            .await?;
        Ok(counted
            .is_none()
            .then(|| rate.refusal(&self.config.server.hostname, who)))
    }

    /// What [`Rates::count`] would answer now, counting nothing.
    pub async fn peek(&self, rate: Rate, who: &str) -> Result<Option<Refusal>, Unavailable> {
        let limit = rate.limit(&self.config);
        if limit == 0 {
            return Ok(None);
        }
        let seen = self.state.count(&key(rate, who), rate.window()).await?;
        Ok((seen >= limit).then(|| rate.refusal(&self.config.server.hostname, who)))
    }
}

fn key(rate: Rate, who: &str) -> String {
    ["rate:", rate.key(), ":", &who.to_lowercase()].concat()
}
