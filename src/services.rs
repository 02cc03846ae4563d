//! [`Services`]: the shared, read-mostly parts of a running gateway that
//! every session uses — configuration, log, policy, abuse defense and
//! shared state, spool, TLS and the delivery handle — built once at start.

use crate::config::Config;
use crate::delivery;
use crate::log::Logger;
use crate::policy::Policy;
use crate::reload::FileError;
use crate::spool::Spool;
use crate::tls::TlsError;
use std::sync::Arc;

pub struct Services {
    pub config: Arc<Config>,
    pub log: Arc<Logger>,
    pub policy: Policy,
    pub abuse: crate::abuse::Abuse,
    pub spool: Arc<Spool>,
    /// Present when `[tls]` is configured: STARTTLS is offered.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub delivery: delivery::Handle,
}

/// Why the services could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("spool.dir: {0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error("{0}")]
    Dns(#[from] crate::dns::DnsSetupError),
}

impl Services {
    pub fn new(
        config: Arc<Config>,
        log: Arc<Logger>,
        dns: Arc<crate::dns::Dns>,
        spool: Arc<Spool>,
        delivery: delivery::Handle,
        state: Arc<crate::state::State>,
    ) -> Result<Services, ServicesError> {
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::server_config(&t.cert, &t.key)?),
            None => None,
        };
        Ok(Services {
            policy: Policy::new(config.clone(), dns, state.clone(), log.clone())?,
            abuse: crate::abuse::Abuse::new(config.clone(), state, log.clone()),
            config,
            log,
            spool,
            tls,
            delivery,
        })
    }

    /// Services for sessions driven from memory rather than a listener
    /// (the property tests, the session fuzz target): the spool opened at
    /// `spool.dir`, no delivery (messages stay in the spool), state in
    /// memory only, the log discarded.
    pub fn offline(config: Config) -> Result<Services, ServicesError> {
        let spool = Arc::new(Spool::open(&config.spool.dir)?);
        let dns = Arc::new(crate::dns::Dns::new(&config.dns)?);
        let log = Arc::new(Logger::discard());
        let state = Arc::new(crate::state::State::scratch(&config, log.clone()));
        Services::new(
            Arc::new(config),
            log,
            dns,
            spool,
            delivery::Handle::detached(),
            state,
        )
    }
}
