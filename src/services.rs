//! [`Services`]: the read-mostly parts of a running gateway that every
//! connection uses — configuration, log, policy, abuse defense and shared
//! state, spool, TLS, the delivery handle and the server's phase. What
//! outlives a reload ([`Shared`]: the log, the spool, the state store, the
//! delivery scheduler, the DNSBL health, the phase) is built once at start;
//! the rest is built from each configuration. [`Live`] holds the services
//! new connections get: a reload replaces them whole, and a connection
//! keeps the ones it started with to its end.

use crate::config::Config;
use crate::delivery;
use crate::dns::dnsbl::HealthTable;
use crate::lifecycle;
use crate::log::Logger;
use crate::policy::pipeline::{Front, Pipeline};
use crate::policy::Policy;
use crate::reload::FileError;
use crate::smtp::reply::{self, Reply};
use crate::spool::Spool;
use crate::state::State;
use crate::tls::server::ServerTls;
use crate::tls::TlsError;
use std::sync::{Arc, RwLock};

pub struct Services {
    pub config: Arc<Config>,
    pub log: Arc<Logger>,
    pub policy: Policy,
    pub abuse: crate::abuse::Abuse,
    pub spool: Arc<Spool>,
    /// Present when `[tls]` is configured: STARTTLS is offered. Kept by a
    /// reload that does not change `[tls]` (its files are read again).
    pub tls: Option<Arc<ServerTls>>,
    pub delivery: delivery::Handle,
    /// Serving, draining or stopping.
    pub phase: lifecycle::Watch,
    /// One per `[[milter]]`: its `max_sessions` slots.
    pub milter_slots: Vec<Arc<tokio::sync::Semaphore>>,
    /// The replies every session gives alike, written once.
    pub greetings: Greetings,
}

/// The banner and the answers to HELO and EHLO, in wire form: the same for
/// every session of a configuration (a session writes them as they are,
/// without building a reply of eight lines each time).
pub struct Greetings {
    pub banner: Vec<u8>,
    pub helo: Vec<u8>,
    /// EHLO's answer where STARTTLS is not offered (no `[tls]`, or the
    /// connection is already encrypted).
    pub ehlo: Vec<u8>,
    pub ehlo_starttls: Vec<u8>,
}

impl Greetings {
    fn new(config: &Config) -> Greetings {
        let host = &config.server.hostname;
        let size = config.limits.max_message_size;
        let wire = |reply: Reply| {
            let mut out = Vec::new();
            reply.write_to(&mut out);
            out
        };
        Greetings {
            banner: wire(Reply::plain(220, vec![format!("{host} ESMTP mxguard")])),
            helo: wire(Reply::plain(250, vec![host.clone()])),
            ehlo: wire(reply::ehlo(host, size, false)),
            ehlo_starttls: wire(reply::ehlo(host, size, true)),
        }
    }
}

/// What outlives a reload.
#[derive(Clone)]
pub struct Shared {
    pub log: Arc<Logger>,
    pub spool: Arc<Spool>,
    pub state: Arc<State>,
    pub delivery: delivery::Handle,
    /// DNSBL zones' health: a reload does not forget a dead list.
    pub health: Arc<HealthTable>,
    pub phase: lifecycle::Watch,
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
    /// The services of `config`, around what outlives a reload; `tls`
    /// when the certificates are already loaded (else they are loaded).
    pub fn new(
        config: Arc<Config>,
        dns: Arc<crate::dns::Dns>,
        shared: &Shared,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<Services, ServicesError> {
        let tls = match (tls, &config.tls) {
            (Some(loaded), Some(_)) => Some(loaded),
            (None, Some(t)) => Some(Arc::new(ServerTls::load(t)?)),
            (_, None) => None,
        };
        let log = shared.log.clone();
        let milter_slots = (config.milter.iter())
            .map(|m| Arc::new(tokio::sync::Semaphore::new(m.max_sessions)))
            .collect();
        Ok(Services {
            milter_slots,
            greetings: Greetings::new(&config),
            policy: Policy::new(
                config.clone(),
                dns,
                shared.state.clone(),
                log.clone(),
                shared.health.clone(),
            )?,
            abuse: crate::abuse::Abuse::new(config.clone(), shared.state.clone(), log.clone()),
            config,
            log,
            spool: shared.spool.clone(),
            tls,
            delivery: shared.delivery.clone(),
            phase: shared.phase.clone(),
        })
    }

    /// The pipeline of these services, for `front`.
    pub fn pipeline(&self, front: Front) -> Pipeline<'_> {
        Pipeline::new(&self.config, &self.policy, &self.abuse, front)
    }

    /// Services for sessions driven from memory rather than a listener
    /// (the property tests, the session fuzz target): the spool opened at
    /// `spool.dir`, no delivery (messages stay in the spool), state in
    /// memory only, the log discarded, always serving.
    pub fn offline(config: Config) -> Result<Services, ServicesError> {
        let spool = Arc::new(Spool::open(&config.spool.dir)?);
        let dns = Arc::new(crate::dns::Dns::new(&config.dns)?);
        let log = Arc::new(Logger::discard());
        let shared = Shared {
            state: Arc::new(State::scratch(&config, log.clone())),
            log,
            spool,
            delivery: delivery::Handle::detached(),
            health: Arc::default(),
            phase: lifecycle::Watch::serving(),
        };
        Services::new(Arc::new(config), dns, &shared, None)
    }
}

/// The services new connections get.
pub struct Live(RwLock<Arc<Services>>);

impl Live {
    pub fn new(services: Services) -> Arc<Live> {
        Arc::new(Live(RwLock::new(Arc::new(services))))
    }

    /// The services of the configuration in force.
    pub fn current(&self) -> Arc<Services> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// From now on, new connections get `services`.
    pub fn replace(&self, services: Services) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(services);
    }
}
