//! The policy: every decision about a client, its sender and recipients
//! and its message is made here, by the [`pipeline`], whichever front end
//! asks (the SMTP session, the Postfix policy server, `mxguard check`); the
//! front ends speak their protocol and apply the decision. [`Policy`]
//! holds what the pipeline judges with: relay control ([`relay`]), the
//! recipient verifier, and the DNS and list checks of each stage
//! ([`checks`], one file per family: [`rdns`], [`dnsbl`], [`helo`],
//! [`sender`]), run in the background of a session by [`session_checks`]
//! and folded by [`crate::verdict`]; who is greylisted ([`greylisting`]);
//! and the forwarders and ARC sealers that forwarded mail is forgiven
//! for ([`forwarded`]); what a content filter's reply means ([`milter`]).

pub mod checks;
pub mod dnsbl;
pub mod forwarded;
pub mod greylisting;
pub mod helo;
pub mod milter;
pub mod pipeline;
pub mod rdns;
pub mod relay;
pub mod sender;
pub mod session_checks;

use crate::config::Config;
use crate::dns::Dns;
use crate::log::Logger;
use crate::recipients::Verifier;
use crate::reload::FileError;
use crate::smtp::address::{Mailbox, Path};
use crate::verdict::Refusal;
use checks::Checks;
use relay::{Destination, RelayControl};
use std::net::IpAddr;
use std::sync::Arc;

/// Every check, built once from the configuration and shared by sessions.
pub struct Policy {
    relay: RelayControl,
    pub recipients: Arc<Verifier>,
    /// The DNS and list checks of each stage.
    pub checks: Arc<Checks>,
    /// Who is greylisted (`greylist.when`).
    pub greylisting: greylisting::Greylisting,
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
        let allow_file = config.greylist.allow_file.as_deref();
        let greylisting = greylisting::Greylisting::new(allow_file, dns.clone(), log.clone())?;
        Ok(Policy {
            relay: RelayControl::new(&config.relay),
            recipients,
            greylisting,
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
