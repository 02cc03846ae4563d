//! The policy: the checks a session asks about at each stage, each answering
//! with a [`Refusal`] that names the check, or nothing. The policy never
//! writes to the socket; the session never decides by itself.
//! Today: relay control ([`relay`]) and the recipient table.

pub mod helo;
pub mod lists;
pub mod rdns;
pub mod relay;
pub mod stages;
pub mod verdict;

use crate::config::Config;
use crate::log::Logger;
use crate::recipients::table::RecipientTable;
use crate::reload::FileError;
use crate::smtp::address::Path;
use crate::smtp::reply::Reply;
use relay::{Destination, RelayControl};
use std::net::IpAddr;

/// A check said no: its name for the log, and the reply for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub check: String,
    pub reply: Reply,
}

impl Refusal {
    pub fn new(check: &str, reply: Reply) -> Refusal {
        Refusal {
            check: check.to_string(),
            reply,
        }
    }

    /// `reject` for 5xx, `tempfail` for 4xx.
    pub fn action(&self) -> &'static str {
        if self.reply.code >= 500 {
            "reject"
        } else {
            "tempfail"
        }
    }
}

/// Every check, built once from the configuration and shared by sessions.
pub struct Policy {
    relay: RelayControl,
    recipients: Option<RecipientTable>,
}

impl Policy {
    pub fn new(config: &Config) -> Result<Policy, FileError> {
        let recipients = match &config.recipients.table {
            Some(path) => Some(RecipientTable::open(path)?),
            None => None,
        };
        Ok(Policy {
            relay: RelayControl::new(&config.relay),
            recipients,
        })
    }

    /// Whether `client` may relay to any domain.
    pub fn is_trusted(&self, client: IpAddr) -> bool {
        self.relay.is_trusted(client)
    }

    /// RCPT stage: relay control, then whether the mailbox exists.
    pub fn check_rcpt(&self, client: IpAddr, to: &Path, log: &Logger) -> Result<(), Refusal> {
        let destination = self.relay.check(client, to)?;
        let (Destination::Local(mailbox), Some(table)) = (destination, &self.recipients) else {
            return Ok(());
        };
        if table.contains(mailbox, log) {
            Ok(())
        } else {
            Err(Refusal::new(
                "recipient_table",
                Reply::new(
                    550,
                    "5.1.1",
                    format!("<{mailbox}>: Recipient address rejected: User unknown"),
                ),
            ))
        }
    }
}
