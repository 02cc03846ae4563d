//! `mxguard serve`: opens the log, the spool and the control socket, starts
//! delivery, binds the listeners, and runs the accept loops with the
//! connection caps (in total and per client address) until SIGINT/SIGTERM.

use crate::config::Config;
use crate::control::{self, ControlError};
use crate::delivery;
use crate::log::Logger;
use crate::peers::Refusal;
use crate::services::{Services, ServicesError};
use crate::smtp::reply::Reply;
use crate::spool::{Spool, SpoolError};
use crate::state::{State, Store};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

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
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
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

/// Open SMTP connections, in total and per client (an IPv4 address, an
/// IPv6 /64: see [`crate::net::client_network`]).
type Limiter = crate::peers::Caps<IpAddr>;

/// What `serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The SMTP gateway (and the policy server and metrics when set).
    Gateway,
    /// `mxguard policy-server`: no SMTP listener, no delivery of mail.
    PolicyOnly,
}

/// Runs the gateway until a termination signal.
pub async fn serve(config: Config, mode: Mode) -> Result<(), ServeError> {
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
    let (spool, _lock) = Spool::open_exclusive(&config.spool.dir)?;
    let spool = Arc::new(spool);
    let dns = Arc::new(crate::dns::Dns::new(&config.dns)?);
    let delivery = delivery::start(Arc::new(delivery::Context {
        config: config.clone(),
        spool: spool.clone(),
        log: log.clone(),
        tls: crate::tls::client::DownstreamTls::load(&config.downstream)
            .map_err(ServicesError::from)?,
        dns: dns.clone(),
    }));
    let state = Arc::new(State::new(Store::open(&config)?, &config, log.clone()));
    let svc = Arc::new(Services::new(
        config.clone(),
        log.clone(),
        dns,
        spool.clone(),
        delivery.clone(),
        state.clone(),
    )?);
    let control_group = config.control.group.as_ref().map(|g| g.gid);
    if let Some(gid) = control_group {
        spool.share_with_group(gid)?;
    }
    control::listen(&spool.control_socket(), control_group, svc.clone())?;
    watch_dnsbl_health(&svc).await;
    let saver = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(STATE_SAVE_INTERVAL).await;
            let state = saver.clone();
            let _ = tokio::task::spawn_blocking(move || state.save()).await;
        }
    });

    crate::policy_server::start(svc.clone()).await?;
    let limiter = Limiter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_client,
    );
    start_metrics(&svc, &limiter, mode).await?;
    let smtp_addrs = match mode {
        Mode::Gateway => config.server.listen.clone(),
        Mode::PolicyOnly => Vec::new(),
    };
    let mut listeners = Vec::new();
    for addr in &smtp_addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: *addr,
                source,
            })?;
        listeners.push(listener);
    }
    for listener in listeners {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        log.event("listen").kv("address", addr).emit();
        tokio::spawn(accept_loop(listener, svc.clone(), limiter.clone()));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signal)?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    log.event("stop").emit();
    state.save();
    let _ = std::fs::remove_file(spool.control_socket());
    Ok(())
}

/// Serves `/metrics`, `/healthz` and `/readyz` when `[metrics] listen` is
/// set; from then on every log line is counted.
async fn start_metrics(
    svc: &Arc<Services>,
    limiter: &Arc<Limiter>,
    mode: Mode,
) -> Result<(), ServeError> {
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
    let limiter = limiter.clone();
    let site = crate::metrics::site::Site {
        svc: svc.clone(),
        metrics,
        open_connections: move || limiter.open(),
        smtp_listeners: match mode {
            Mode::Gateway => svc.config.server.listen.len(),
            Mode::PolicyOnly => 0,
        },
    };
    tokio::spawn(crate::metrics::http::serve(listener, gate, site));
    Ok(())
}

/// How often the memory state backend is written to disk (and at stop).
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// Tests every DNSBL zone (RFC 5782) before the first client is served,
/// then again every `policy.dnsbl_health_interval`.
async fn watch_dnsbl_health(svc: &Arc<Services>) {
    if svc.config.dnsbl.is_empty() && svc.config.rhsbl.is_empty() {
        return;
    }
    let checks = svc.policy.checks.clone();
    let state = svc.abuse.state.clone();
    let round = move || {
        let (checks, state) = (checks.clone(), state.clone());
        async move {
            crate::dns::dnsbl::test_and_share(
                &checks.dns,
                &checks.config,
                &checks.health,
                &state,
                &checks.log,
            )
            .await;
        }
    };
    round().await;
    let interval = svc.config.policy.dnsbl_health_interval.0;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            round().await;
        }
    });
}

async fn accept_loop(listener: TcpListener, svc: Arc<Services>, limiter: Arc<Limiter>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment
                // rather than spin.
                svc.log.event("accept_error").kv("error", e).emit();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let client = crate::net::canonical_ip(peer.ip());
        let _ = stream.set_nodelay(true);
        match limiter.acquire(crate::net::client_network(client)) {
            Ok(permit) => {
                let svc = svc.clone();
                tokio::spawn(async move {
                    crate::smtp::session::run(&svc, stream, client).await;
                    drop(permit);
                });
            }
            Err(cap) => {
                tokio::spawn(refuse_connection(svc.clone(), stream, client, cap));
            }
        }
    }
}

/// `421 4.7.0` before the banner, logged, and the connection closed.
async fn refuse_connection(
    svc: Arc<Services>,
    mut stream: TcpStream,
    client: IpAddr,
    cap: Refusal,
) {
    let host = &svc.config.server.hostname;
    let (check, text) = match cap {
        Refusal::Total | Refusal::NotAllowed => (
            "max_connections",
            format!("{host} Error: too many connections"),
        ),
        Refusal::PerPeer => (
            "max_connections_per_client",
            format!(
                "{host} Error: too many connections from {}",
                crate::net::client_id(client)
            ),
        ),
    };
    let reply = Reply::new(421, "4.7.0", text);
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        stream.write_all(&wire).await?;
        stream.shutdown().await
    })
    .await;
    svc.log
        .event("reject")
        .kv("client", client)
        .kv("stage", "connect")
        .kv("check", check)
        .kv("action", "tempfail")
        .kv("reply", &reply)
        .emit();
}
