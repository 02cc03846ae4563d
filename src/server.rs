//! `mxguard serve` (and `mxguard policy-server`): opens the log and the
//! spool (waiting for a dying predecessor to let go of it), starts
//! delivery, the control socket, the policy server and metrics, binds the
//! SMTP listeners, then answers signals until it stops:
//!
//! - SIGHUP: a reload ([`crate::reconfigure`]); never an exit.
//! - SIGTERM or SIGINT: an orderly stop. The listeners close; sessions may
//!   finish the mail transaction they are in, then hear `421 4.3.2`; after
//!   `server.drain_timeout` the rest hear it at once; deliveries in flight
//!   finish (the others stay queued); the state is saved; exit 0. A second
//!   signal stops at once. Nothing acknowledged is lost either way: a
//!   message is on disk before its 250.

use crate::config::Config;
use crate::control::{self, ControlError};
use crate::delivery;
use crate::lifecycle::{Lifecycle, Phase};
use crate::listeners::{ConnectionCaps, Listeners};
use crate::log::Logger;
use crate::reconfigure::Reloader;
use crate::services::{Live, Services, ServicesError, Shared};
use crate::spool::{Spool, SpoolError};
use crate::state::{State, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("log.file: {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("spool.dir: {0}")]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    Services(#[from] ServicesError),
    #[error("{0}")]
    Dns(#[from] crate::dns::DnsSetupError),
    #[error("spool.dir: control socket: {0}")]
    Control(#[from] ControlError),
    #[error("{0}")]
    Bind(#[from] crate::listeners::BindError),
    #[error("state: {0}")]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    PolicyServer(#[from] crate::policy_server::PolicyServerError),
    #[error("metrics.listen: cannot listen on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// What `serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The SMTP gateway (and the policy server and metrics when set).
    Gateway,
    /// `mxguard policy-server`: no SMTP listener, no delivery of mail.
    PolicyOnly,
}

/// How long a start waits for the process that held the spool to let go
/// of it (one still dying after `kill -9`, say).
const SPOOL_LOCK_WAIT: Duration = Duration::from_secs(15);

/// After the drain, how long sessions have to hear their `421` and close.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The signals the server answers.
struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> Result<Signals, ServeError> {
        let install = |kind| signal(kind).map_err(ServeError::Signal);
        Ok(Signals {
            hangup: install(SignalKind::hangup())?,
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Runs the gateway until a termination signal; `path` is the file the
/// configuration came from (read again on SIGHUP), `None` for the
/// embedded default.
pub async fn serve(config: Config, mode: Mode, path: Option<PathBuf>) -> Result<(), ServeError> {
    // Installed first: a SIGHUP from here on reloads, never kills.
    let mut signals = Signals::install()?;
    let config = Arc::new(config);
    let log = Logger::open(&config.log).map_err(|source| ServeError::Log {
        path: config
            .log
            .file
            .as_deref()
            .unwrap_or(std::path::Path::new("-"))
            .display()
            .to_string(),
        source,
    })?;
    let log = Arc::new(log);
    if crate::time::test_clock_enabled() {
        log.event("warning")
            .kv(
                "warning",
                "TEST BUILD: MXGUARD_TEST_CLOCK=1 lets the control socket move this server's clock; never run this in production",
            )
            .emit();
    }
    if let Some(warning) = config.public_resolver_warning() {
        log.event("warning").kv("warning", warning).emit();
    }
    let (spool, _lock) = open_spool(&config, &log).await?;
    let spool = Arc::new(spool);
    let dns = Arc::new(crate::dns::Dns::new(&config.dns)?);
    let delivery = delivery::start(Arc::new(delivery::Context {
        config: config.clone(),
        spool: spool.clone(),
        log: log.clone(),
        tls: crate::tls::client::DownstreamTls::load(&config.downstream)
            .map_err(ServicesError::from)?,
        dns: dns.clone(),
        pool: delivery::pool::Pool::new(&config.downstream),
    }));
    let state = Arc::new(State::new(Store::open(&config)?, &config, log.clone()));
    let lifecycle = Lifecycle::new();
    let shared = Shared {
        log: log.clone(),
        spool: spool.clone(),
        state: state.clone(),
        delivery: delivery.clone(),
        health: Arc::default(),
        phase: lifecycle.watch(),
    };
    let live = Live::new(Services::new(config.clone(), dns, &shared, None)?);
    let caps = ConnectionCaps::new(
        config.limits.max_connections,
        config.limits.max_connections_per_client,
    );
    let listeners = (mode == Mode::Gateway).then(|| Listeners::new(live.clone(), caps.clone()));
    let reloader = Arc::new(Reloader::new(
        path,
        live.clone(),
        shared,
        caps.clone(),
        listeners,
    ));
    let control_group = config.control.group.as_ref().map(|g| g.gid);
    control::listen(
        &spool.control_socket(),
        control_group,
        live.clone(),
        reloader.clone(),
    )?;
    if let Some(tls) = &live.current().tls {
        tls.warn(&log);
    }
    tokio::spawn(watch_certificates(live.clone()));
    watch_dnsbl_health(&live).await;
    let saver = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(STATE_SAVE_INTERVAL).await;
            let state = saver.clone();
            let _ = tokio::task::spawn_blocking(move || state.save()).await;
        }
    });
    let granted = caps.clone();
    tokio::spawn(crate::memory::release_after_bursts(move || {
        granted.granted()
    }));
    crate::policy_server::start(live.clone()).await?;
    start_metrics(&live, &caps, mode).await?;
    if let Some(failed) = reloader.listen().await.into_iter().next() {
        return Err(failed.into());
    }
    loop {
        tokio::select! {
            _ = signals.hangup.recv() => {
                reloader.reload().await;
            }
            _ = signals.terminate.recv() => break,
            _ = signals.interrupt.recv() => break,
        }
    }
    stop(&live, &reloader, &caps, &lifecycle, &mut signals).await;
    state.save();
    let _ = std::fs::remove_file(spool.control_socket());
    log.event("stop").kv("phase", "stopped").emit();
    // Every line, the last accepted message's too, is written before exit.
    log.flush();
    Ok(())
}

/// Takes the spool for this process, waiting (bounded) for a predecessor
/// that still holds it; who holds it is logged.
async fn open_spool(
    config: &Config,
    log: &Arc<Logger>,
) -> Result<(Spool, crate::spool::SpoolLock), ServeError> {
    let (dir, log) = (config.spool.dir.clone(), log.clone());
    let group = config.control.group.as_ref().map(|g| g.gid);
    let opened = tokio::task::spawn_blocking(move || {
        Spool::open_exclusive(&dir, group, SPOOL_LOCK_WAIT, |holder| {
            log.event("spool_locked")
                .opt("pid", holder)
                .kv("action", "waiting")
                .kv("wait", format!("{}s", SPOOL_LOCK_WAIT.as_secs()))
                .emit();
        })
    })
    .await;
    match opened {
        Ok(opened) => Ok(opened?),
        Err(e) => Err(ServeError::Signal(std::io::Error::other(e))),
    }
}

/// The orderly stop: listeners closed, sessions drained, then told to go,
/// deliveries in flight finished. A second signal cuts it short.
async fn stop(
    live: &Arc<Live>,
    reloader: &Reloader,
    caps: &ConnectionCaps,
    lifecycle: &Lifecycle,
    signals: &mut Signals,
) {
    let svc = live.current();
    let drain = svc.config.server.drain_timeout.0;
    reloader.close_listeners().await;
    lifecycle.enter(Phase::Draining);
    svc.log
        .event("stop")
        .kv("phase", "draining")
        .kv("sessions", caps.open())
        .kv("drain_timeout", format!("{}s", drain.as_secs()))
        .emit();
    let deadline = tokio::time::Instant::now() + drain;
    let at_once = tokio::select! {
        _ = caps.wait_idle() => false,
        _ = tokio::time::sleep_until(deadline) => false,
        _ = signals.stop() => true,
    };
    lifecycle.enter(Phase::Stopping);
    if at_once {
        svc.log.event("stop").kv("phase", "now").emit();
        return;
    }
    let grace = tokio::time::Instant::now() + STOP_GRACE;
    let delivered = async {
        let _ = tokio::time::timeout_at(grace, caps.wait_idle()).await;
        svc.delivery.drain().await;
    };
    tokio::select! {
        _ = delivered => {}
        _ = tokio::time::sleep_until(deadline.max(grace)) => {}
        _ = signals.stop() => svc.log.event("stop").kv("phase", "now").emit(),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` when `[metrics] listen` is
/// set; from then on every log line is counted.
async fn start_metrics(
    live: &Arc<Live>,
    caps: &Arc<ConnectionCaps>,
    mode: Mode,
) -> Result<(), ServeError> {
    let svc = live.current();
    let Some(addr) = svc.config.metrics.listen else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Metrics { addr, source })?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    svc.log.count_into(metrics.clone());
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    svc.log
        .event("listen")
        .kv("service", "metrics")
        .kv("address", bound)
        .emit();
    let gate = crate::metrics::http::Gate {
        allow: svc.config.metrics.allow.clone(),
        log: svc.log.clone(),
    };
    let caps = caps.clone();
    let site = crate::metrics::site::Site {
        live: live.clone(),
        metrics,
        open_connections: move || caps.open(),
        smtp_listeners: mode == Mode::Gateway,
    };
    tokio::spawn(crate::metrics::http::serve(listener, gate, site));
    Ok(())
}

/// Looks at the certificate files of the configuration in force every
/// `tls.check_interval`, so a renewed certificate is served without a
/// reload (certbot replaces them through a symlink).
async fn watch_certificates(live: Arc<Live>) {
    /// How long to wait before looking whether `[tls]` came with a reload.
    const WITHOUT_TLS: Duration = Duration::from_secs(60);
    loop {
        let interval = live
            .current()
            .tls
            .as_ref()
            .map_or(WITHOUT_TLS, |tls| tls.check_interval());
        tokio::time::sleep(interval).await;
        let svc = live.current();
        if let Some(tls) = &svc.tls {
            tls.check(&svc.log).await;
        }
    }
}

/// How often the memory state backend is written to disk (and at stop).
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Tests every DNSBL zone (RFC 5782) before the first client is served,
/// then again every `policy.dnsbl_health_interval` (of the configuration
/// in force at each round).
async fn watch_dnsbl_health(live: &Arc<Live>) {
    let round = |svc: Arc<Services>| async move {
        if svc.config.dnsbl.is_empty() && svc.config.rhsbl.is_empty() {
            return;
        }
        let checks = &svc.policy.checks;
        crate::dns::dnsbl::test_and_share(
            &checks.dns,
            &checks.config,
            &checks.health,
            &svc.abuse.state,
            &checks.log,
        )
        .await;
    };
    round(live.current()).await;
    let live = live.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(live.current().config.policy.dnsbl_health_interval.0).await;
            round(live.current()).await;
        }
    });
}
