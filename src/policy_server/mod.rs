//! The Postfix policy delegation server (SMTPD_POLICY_README): with
//! `[policy_server] listen` set, Postfix's `check_policy_service` asks
//! mxguard about each client, HELO name, sender and recipient, and mxguard
//! answers with the same checks and abuse defenses an SMTP session of its
//! own would run ([`decide`]), in the form of [`protocol`]:
//!
//! - no objection: `DUNNO` (Postfix goes on with its restrictions);
//! - a refusal: mxguard's reply as `NNN X.Y.Z text` (Postfix keeps the
//!   code and enhanced status, and puts its own `<address>: Recipient
//!   address rejected:` before the text; a 421 makes it disconnect, as
//!   mxguard would);
//! - a check that could not tell because a DNS lookup failed (and is set
//!   to tempfail then): `DEFER_IF_PERMIT X.Y.Z text`, so a later reject in
//!   Postfix still wins.
//!
//! Relay control and recipient verification are Postfix's business and
//! are not run.
//!
//! Who may ask: a TCP peer outside `policy_server.allow` (loopback by
//! default) is closed right after accept, before a byte is read, and
//! logged (`event=policy_refused`, at most once a minute per peer).
//! Connections are reused for many requests; each is bounded: at most
//! `limits.max_connections` at once and `policy_server.max_connections_per_peer`
//! per client address (TCP) or user (unix socket, from the peer's
//! credentials), counted after accept so that one peer's held sockets never
//! keep another out (more are closed at once, and logged the same way); the
//! first request must begin within [`FIRST_REQUEST_TIMEOUT`], a later one
//! within [`IDLE_TIMEOUT`], and each arrive whole within
//! `limits.command_timeout` of its first byte; a malformed request is
//! logged (`event=policy_error`) and closes the connection unanswered, as
//! the protocol asks.

mod decide;
pub mod protocol;

use crate::config::PolicyListen;
use crate::peers::{self, Caps, LogThrottle, Refusal};
use crate::services::{Live, Services};
use protocol::{Decoder, ProtocolError, Request};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::time::Instant;

/// How long a connection may wait between requests: longer than
/// Postfix's `smtpd_policy_service_max_idle` (300s), so that Postfix,
/// not mxguard, closes an idle connection and never finds it closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(330);

/// Why the policy server could not start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyServerError {
    #[error("policy_server.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("policy_server.listen: {0}")]
    Socket(#[from] crate::owned::SocketError),
}

/// How long a new connection may take to start its first request: Postfix
/// asks as soon as it connects, so a connection that says nothing is not
/// Postfix and gives its place back soon.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may wait: for the first byte of its first
/// request, for the first byte of a later one, and from it for the rest.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    first: Duration,
    idle: Duration,
    request: Duration,
}

impl Timeouts {
    fn new(config: &crate::config::Config) -> Timeouts {
        Timeouts {
            first: FIRST_REQUEST_TIMEOUT,
            idle: IDLE_TIMEOUT,
            request: config.limits.command_timeout.0,
        }
    }
}

/// Why a connection ended without its request.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("timeout: no whole request within {0:?}")]
    Timeout(Duration),
    #[error("connection closed inside a request")]
    Truncated,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Binds `[policy_server] listen` and serves it in the background.
pub async fn start(live: Arc<Live>) -> Result<(), PolicyServerError> {
    let svc = live.current();
    let Some(listen) = svc.config.policy_server.listen.clone() else {
        return Ok(());
    };
    let max_total = svc.config.limits.max_connections;
    let max_per_peer = svc.config.policy_server.max_connections_per_peer.get();
    match listen {
        PolicyListen::Tcp(addr) => {
            let listener =
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| PolicyServerError::Bind {
                        addr: addr.to_string(),
                        source,
                    })?;
            let shown = listener.local_addr().unwrap_or(addr);
            log_listen(&svc, shown.to_string());
            let caps = Caps::new(max_total, max_per_peer);
            tokio::spawn(accept_tcp(live.clone(), listener, caps));
        }
        PolicyListen::Unix(path) => {
            // 0660: Postfix's `smtpd` reaches it through the group.
            let gid = svc.config.policy_server.group.as_ref().map(|g| g.gid);
            let listener = crate::owned::bind_socket(&path, 0o660, gid)?;
            log_listen(&svc, format!("unix:{}", path.display()));
            let caps = Caps::new(max_total, max_per_peer);
            tokio::spawn(accept_unix(live.clone(), listener, caps));
        }
    }
    Ok(())
}

/// Accepts TCP connections: a peer outside `policy_server.allow`, or over
/// a cap, is closed before a byte is read. Each connection is served with
/// the services in force when it arrives.
async fn accept_tcp(live: Arc<Live>, listener: TcpListener, caps: Arc<Caps<IpAddr>>) {
    let mut throttle = LogThrottle::default();
    loop {
        let accepted = listener.accept().await;
        let svc = live.current();
        let timeouts = Timeouts::new(&svc.config);
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&svc, e).await;
                continue;
            }
        };
        let client = crate::net::canonical_ip(peer.ip());
        let admitted = if peers::allowed(&svc.config.policy_server.allow, client) {
            caps.acquire(client)
        } else {
            Err(Refusal::NotAllowed)
        };
        match admitted {
            Ok(permit) => {
                let _ = stream.set_nodelay(true);
                let peer = client.to_string();
                tokio::spawn(serve(svc.clone(), stream, peer, timeouts, permit));
            }
            Err(refusal) => {
                drop(stream);
                if throttle.should_log(client, Instant::now()) {
                    log_refused(&svc, &client.to_string(), None, refusal);
                }
            }
        }
    }
}

/// Accepts unix socket connections, capped per peer user.
async fn accept_unix(live: Arc<Live>, listener: UnixListener, caps: Arc<Caps<u32>>) {
    let mut throttle = LogThrottle::default();
    loop {
        let accepted = listener.accept().await;
        let svc = live.current();
        let timeouts = Timeouts::new(&svc.config);
        let (stream, uid) = match accepted.and_then(|(s, _)| s.peer_cred().map(|c| (s, c.uid()))) {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&svc, e).await;
                continue;
            }
        };
        match caps.acquire(uid) {
            Ok(permit) => {
                let peer = "local".to_string();
                tokio::spawn(serve(svc.clone(), stream, peer, timeouts, permit));
            }
            Err(refusal) => {
                drop(stream);
                if throttle.should_log(uid, Instant::now()) {
                    log_refused(&svc, "local", Some(uid), refusal);
                }
            }
        }
    }
}

fn log_listen(svc: &Services, address: String) {
    svc.log
        .event("listen")
        .kv("address", address)
        .kv("service", "policy")
        .emit();
}

/// `event=policy_refused`: a connection closed unread (at most once a
/// minute per peer).
fn log_refused(svc: &Services, client: &str, uid: Option<u32>, refusal: Refusal) {
    svc.log
        .event("policy_refused")
        .kv("client", client)
        .opt("uid", uid)
        .kv("reason", refusal.reason())
        .kv("service", "policy")
        .emit();
}

/// Out of file descriptors and the like: wait a moment rather than spin.
async fn accept_error(svc: &Services, e: std::io::Error) {
    svc.log
        .event("accept_error")
        .kv("error", e)
        .kv("service", "policy")
        .emit();
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One policy connection: requests answered in turn until the client
/// closes, idles out or breaks the protocol. `_permit` is its place under
/// the connection caps.
async fn serve<S: AsyncRead + AsyncWrite + Unpin, P>(
    svc: Arc<Services>,
    mut stream: S,
    peer: String,
    timeouts: Timeouts,
    _permit: P,
) {
    let mut decider = decide::Decider::new(svc.clone(), peer.clone());
    let mut decoder = Decoder::new();
    let mut buffer = Vec::new();
    let mut wait = timeouts.first;
    loop {
        let read = read_request(
            &mut stream,
            &mut decoder,
            &mut buffer,
            wait,
            timeouts.request,
        );
        let request = match read.await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                svc.log
                    .event("policy_error")
                    .kv("client", &peer)
                    .kv("error", e)
                    .kv("service", "policy")
                    .emit();
                return;
            }
        };
        wait = timeouts.idle;
        let answer = decider.answer(&request).await.encode();
        let written =
            tokio::time::timeout(timeouts.request, stream.write_all(answer.as_bytes())).await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}

/// The next request; `None` when the client closed (or sent nothing for
/// `idle`) between requests. `buffer` holds bytes read past the last
/// request.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut Decoder,
    buffer: &mut Vec<u8>,
    idle: Duration,
    request: Duration,
) -> Result<Option<Request>, ReadError> {
    // From the request's first byte on, the whole request within its
    // timeout; before, the idle timeout (`None`: a timeout too long to
    // have an end).
    let mut in_request = false;
    let mut request_deadline = None;
    loop {
        if !buffer.is_empty() {
            let (used, request) = decoder.decode(buffer)?;
            buffer.drain(..used);
            if let Some(request) = request {
                return Ok(Some(request));
            }
        }
        if decoder.in_progress() && !in_request {
            in_request = true;
            request_deadline = Instant::now().checked_add(request);
        }
        let wait = if in_request {
            request_deadline
        } else {
            Instant::now().checked_add(idle)
        };
        let read = stream.read_buf(buffer);
        let read = match wait {
            Some(at) => tokio::time::timeout_at(at, read).await,
            None => Ok(read.await),
        };
        match read {
            Ok(Ok(0)) if decoder.in_progress() => return Err(ReadError::Truncated),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) if in_request => return Err(ReadError::Timeout(request)),
            Err(_) => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(300);
    const SHORT: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn requests_are_read_whole_and_in_turn() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            client
                .write_all(
                    b"request=smtpd_access_policy\nprotocol_state=RCPT\n\nprotocol_state=DATA\n",
                )
                .await
                .unwrap();
            client.write_all(b"\n").await.unwrap();
            client.write_all(b"protocol_state=MAIL\n").await.unwrap();
        });
        let (mut decoder, mut buffer) = (Decoder::new(), Vec::new());
        let first = read_request(&mut server, &mut decoder, &mut buffer, LONG, LONG).await;
        assert_eq!(first.unwrap().unwrap().protocol_state, "RCPT");
        let second = read_request(&mut server, &mut decoder, &mut buffer, LONG, LONG).await;
        assert_eq!(second.unwrap().unwrap().protocol_state, "DATA");
        writer.await.unwrap();
        // The client has closed inside the third request.
        let third = read_request(&mut server, &mut decoder, &mut buffer, LONG, LONG).await;
        assert!(matches!(third, Err(ReadError::Truncated)), "{third:?}");
    }

    #[tokio::test]
    async fn a_close_between_requests_is_the_end() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let (mut decoder, mut buffer) = (Decoder::new(), Vec::new());
        let read = read_request(&mut server, &mut decoder, &mut buffer, LONG, LONG).await;
        assert!(matches!(read, Ok(None)), "{read:?}");
    }

    #[tokio::test]
    async fn a_request_must_arrive_whole_in_time_and_idling_ends_quietly() {
        // The client stays connected and silent: only a deadline ends the wait.
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"request=smtpd_").await.unwrap();
        let (mut decoder, mut buffer) = (Decoder::new(), Vec::new());
        let read = read_request(&mut server, &mut decoder, &mut buffer, LONG, SHORT).await;
        assert!(matches!(read, Err(ReadError::Timeout(_))), "{read:?}");
        let (_client, mut server) = tokio::io::duplex(64);
        let (mut decoder, mut buffer) = (Decoder::new(), Vec::new());
        let read = read_request(&mut server, &mut decoder, &mut buffer, SHORT, LONG).await;
        assert!(matches!(read, Ok(None)), "{read:?}");
    }

    /// Services for a connection that makes no lookup (its requests have
    /// no checks), the spool in `dir`.
    fn offline(dir: &std::path::Path) -> Arc<Services> {
        let text = format!("[spool]\ndir = \"{}\"\n", dir.display());
        let config = crate::config::Config::from_toml(&text, "test.toml", dir).unwrap();
        Arc::new(Services::offline(config).unwrap())
    }

    #[tokio::test]
    async fn a_connection_silent_from_the_start_is_closed_after_the_first_wait() {
        let dir = tempfile::tempdir().unwrap();
        let timeouts = Timeouts {
            first: SHORT,
            idle: LONG,
            request: LONG,
        };
        // Silent: closed once the first wait is over, though idle is long.
        let (mut client, server) = tokio::io::duplex(64);
        serve(offline(dir.path()), server, "local".into(), timeouts, ()).await;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"");
        // A connection that asks is answered, and served until it leaves.
        let (mut client, server) = tokio::io::duplex(64);
        let served = tokio::spawn(serve(
            offline(dir.path()),
            server,
            "local".into(),
            timeouts,
            (),
        ));
        client
            .write_all(
                b"request=smtpd_access_policy\nprotocol_state=VRFY\nclient_address=192.0.2.1\n\n",
            )
            .await
            .unwrap();
        let mut answer = [0u8; 14];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"action=DUNNO\n\n");
        drop(client);
        served.await.unwrap();
    }
}
