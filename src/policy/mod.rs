//! The policy: the checks a session asks about at each stage, each answering
//! with a [`Refusal`] that names the check, or nothing. The policy never
//! writes to the socket; the session never decides by itself.
//! Relay control ([`relay`]), the recipient table, and the DNS and list
//! checks of each stage ([`stages`], run per session by [`session_checks`],
//! folded by [`verdict`]).

pub mod helo;
pub mod pipeline;
pub mod rdns;
pub mod relay;
pub mod session_checks;
pub mod stages;

use crate::config::Config;
use crate::dns::Dns;
use crate::log::Logger;
use crate::recipients::Verifier;
use crate::reload::FileError;
use crate::smtp::address::{Mailbox, Path};
use crate::verdict::Refusal;
use relay::{Destination, RelayControl};
use stages::Checks;
use std::net::IpAddr;
use std::sync::Arc;

/// Every check, built once from the configuration and shared by sessions.
pub struct Policy {
    relay: RelayControl,
    pub recipients: Arc<Verifier>,
    /// The DNS and list checks of each stage.
    pub checks: Arc<Checks>,
}

impl Policy {
    pub fn new(
        config: Arc<Config>,
        dns: Arc<Dns>,
        state: Arc<crate::state::State>,
        log: Arc<Logger>,
        health: Arc<crate::dns::dnsbl::HealthTable>,
    ) -> Result<Policy, FileError> {
        let recipients = Arc::new(Verifier::new(config.clone(), state, log.clone())?);
        Ok(Policy {
            relay: RelayControl::new(&config.relay),
            recipients,
            checks: Arc::new(Checks::new(config, dns, log, health)?),
        })
    }

    /// Why `client` skips the client checks, if it does: it is trusted,
    /// or in the exception list.
    pub fn exemption(&self, client: IpAddr) -> Option<String> {
        if self.relay.is_trusted(client) {
            return Some("trusted network".into());
        }
        self.checks
            .exception(client)
            .map(|entry| format!("exception {entry}"))
    }

    /// RCPT stage, first: relay control.
    pub fn relay<'a>(&self, client: IpAddr, to: &'a Path) -> Result<Destination<'a>, Refusal> {
        self.relay.check(client, to)
    }

    /// RCPT stage, last: whether a mailbox at our domain exists.
    pub async fn recipient_known(&self, mailbox: &Mailbox) -> Result<(), Refusal> {
        self.recipients.verify(mailbox).await
    }
}
