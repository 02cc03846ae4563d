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
//! are not run. Connections are reused for many requests; each is bounded:
//! at most `limits.max_connections` at once (more wait to be accepted), a
//! request must arrive whole within `limits.command_timeout` of its first
//! byte, an idle connection is closed after [`IDLE_TIMEOUT`], and a
//! malformed request is logged (`event=policy_error`) and closes the
//! connection unanswered, as the protocol asks.

mod decide;
pub mod protocol;

use crate::config::PolicyListen;
use crate::services::Services;
use protocol::{Decoder, ProtocolError, Request};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
    #[error("policy_server.listen: {path} exists and is not a socket")]
    NotASocket { path: String },
}

/// How long a connection may wait: for the first byte of a request, and
/// from it for the rest.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle: Duration,
    request: Duration,
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
pub async fn start(svc: Arc<Services>) -> Result<(), PolicyServerError> {
    let Some(listen) = svc.config.policy_server.listen.clone() else {
        return Ok(());
    };
    let max = svc
        .config
        .limits
        .max_connections
        .min(Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
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
            tokio::spawn(async move {
                loop {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            let peer = crate::net::canonical_ip(peer.ip()).to_string();
                            tokio::spawn(serve(svc.clone(), stream, peer, slot));
                        }
                        Err(e) => accept_error(&svc, e).await,
                    }
                }
            });
        }
        PolicyListen::Unix(path) => {
            let listener = bind_unix(&path)?;
            log_listen(&svc, format!("unix:{}", path.display()));
            tokio::spawn(async move {
                loop {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            tokio::spawn(serve(svc.clone(), stream, "local".into(), slot));
                        }
                        Err(e) => accept_error(&svc, e).await,
                    }
                }
            });
        }
    }
    Ok(())
}

fn log_listen(svc: &Services, address: String) {
    svc.log
        .event("listen")
        .kv("address", address)
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

/// Binds the socket at `path`, replacing a stale one (never a file that
/// is not a socket), open to every local user: Postfix's `smtpd` runs as
/// its own user; the directory's permissions decide who gets there.
fn bind_unix(path: &Path) -> Result<UnixListener, PolicyServerError> {
    let shown = || format!("unix:{}", path.display());
    let failed = |source| PolicyServerError::Bind {
        addr: shown(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(failed)?,
        Ok(_) => {
            return Err(PolicyServerError::NotASocket {
                path: path.display().to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let listener = UnixListener::bind(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(failed)?;
    Ok(listener)
}

/// One policy connection: requests answered in turn until the client
/// closes, idles out or breaks the protocol.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    svc: Arc<Services>,
    mut stream: S,
    peer: String,
    _slot: OwnedSemaphorePermit,
) {
    let timeouts = Timeouts {
        idle: IDLE_TIMEOUT,
        request: svc.config.limits.command_timeout.0,
    };
    let mut decider = decide::Decider::new(svc.clone(), peer.clone());
    let mut decoder = Decoder::new();
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut decoder, &mut buffer, timeouts).await {
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
        let answer = decider.answer(&request).await.encode();
        let written =
            tokio::time::timeout(timeouts.request, stream.write_all(answer.as_bytes())).await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}

/// The next request; `None` when the client closed (or idled out)
/// between requests. `buffer` holds bytes read past the last request.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut Decoder,
    buffer: &mut Vec<u8>,
    timeouts: Timeouts,
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
            request_deadline = Instant::now().checked_add(timeouts.request);
        }
        let wait = if in_request {
            request_deadline
        } else {
            Instant::now().checked_add(timeouts.idle)
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
            Err(_) if in_request => return Err(ReadError::Timeout(timeouts.request)),
            Err(_) => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Timeouts = Timeouts {
        idle: Duration::from_secs(300),
        request: Duration::from_secs(300),
    };

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
        let first = read_request(&mut server, &mut decoder, &mut buffer, LONG).await;
        assert_eq!(first.unwrap().unwrap().protocol_state, "RCPT");
        let second = read_request(&mut server, &mut decoder, &mut buffer, LONG).await;
        assert_eq!(second.unwrap().unwrap().protocol_state, "DATA");
        writer.await.unwrap();
        // The client has closed inside the third request.
        let third = read_request(&mut server, &mut decoder, &mut buffer, LONG).await;
        assert!(matches!(third, Err(ReadError::Truncated)), "{third:?}");
    }

    #[tokio::test]
    async fn a_close_between_requests_is_the_end() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let (mut decoder, mut buffer) = (Decoder::new(), Vec::new());
        let read = read_request(&mut server, &mut decoder, &mut buffer, LONG).await;
        assert!(matches!(read, Ok(None)), "{read:?}");
    }

    #[tokio::test]
    async fn a_request_must_arrive_whole_in_time_and_idling_ends_quietly() {
        // The client stays connected and silent: only a deadline ends the wait.
        let short = Timeouts {
            idle: Duration::from_secs(300),
            request: Duration::from_millis(20),
        };
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"request=smtpd_").await.unwrap();
        let (mut decoder, mut buffer) = (Decoder::new(), Vec::new());
        let read = read_request(&mut server, &mut decoder, &mut buffer, short).await;
        assert!(matches!(read, Err(ReadError::Timeout(_))), "{read:?}");
        let idle = Timeouts {
            idle: Duration::from_millis(20),
            request: Duration::from_secs(300),
        };
        let (_client, mut server) = tokio::io::duplex(64);
        let (mut decoder, mut buffer) = (Decoder::new(), Vec::new());
        let read = read_request(&mut server, &mut decoder, &mut buffer, idle).await;
        assert!(matches!(read, Ok(None)), "{read:?}");
    }
}
