//! The metrics HTTP listener: `GET /metrics` answers the Prometheus text
//! format; `GET /healthz` `200 ok` while the process serves; `GET /readyz`
//! `200 ready`, or `503` with one problem a line (see [`super::ready`]);
//! anything else 404 (or 405 for other methods).
//!
//! Idle sockets are cheap and harmless, so a scrape is answered however
//! many sit open: a peer outside `metrics.allow` (loopback by default) is
//! closed at once and logged (`event=metrics_refused`, at most once a
//! minute per peer); connections are counted after accept, at most
//! [`MAX_CONNECTIONS`] at once and [`MAX_PER_PEER`] per peer address (more
//! are closed at once, logged the same way); one request per connection,
//! its head read within [`HEAD_TIMEOUT`] and 8 KiB.

use crate::config::Network;
use crate::log::Logger;
use crate::peers::{self, Caps, LogThrottle, Refusal};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const MAX_REQUEST: usize = 8 * 1024;
/// How long a connection may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection may last in all: head, page, answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections at once from one peer address.
pub const MAX_PER_PEER: usize = 16;

/// What the listener serves.
pub trait Pages: Send + Sync + 'static {
    /// The `/metrics` page.
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// What keeps the process from being ready, one problem an entry.
    fn readiness(&self) -> impl Future<Output = Vec<String>> + Send;
}

/// Who may connect, and where refusals are logged.
pub struct Gate {
    pub allow: Vec<Network>,
    pub log: Arc<Logger>,
}

/// Serves `listener` forever.
pub async fn serve<P: Pages>(listener: TcpListener, gate: Gate, pages: P) {
    let pages = Arc::new(pages);
    let caps = Caps::new(MAX_CONNECTIONS, MAX_PER_PEER);
    let mut throttle = LogThrottle::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let client = crate::net::canonical_ip(peer.ip());
        let admitted = if peers::allowed(&gate.allow, client) {
            caps.acquire(client)
        } else {
            Err(Refusal::NotAllowed)
        };
        match admitted {
            Ok(permit) => {
                let pages = pages.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &*pages)).await;
                    drop(permit);
                });
            }
            Err(refusal) => {
                drop(stream);
                if throttle.should_log(client, Instant::now()) {
                    log_refused(&gate.log, client, refusal);
                }
            }
        }
    }
}

/// `event=metrics_refused`: a connection closed unread.
fn log_refused(log: &Logger, client: IpAddr, refusal: Refusal) {
    log.event("metrics_refused")
        .kv("client", client)
        .kv("reason", refusal.reason())
        .kv("service", "metrics")
        .emit();
}

/// What a request line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Health,
    Ready,
    NotFound,
    BadMethod,
    Malformed,
}

/// Routes a request head (the bytes up to the blank line).
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(method), Some(path), Some(version)) if version.starts_with("HTTP/1.") => {
            match (method, path.split('?').next()) {
                ("GET", Some("/metrics")) => Route::Metrics,
                ("GET", Some("/healthz")) => Route::Health,
                ("GET", Some("/readyz")) => Route::Ready,
                ("GET", _) => Route::NotFound,
                _ => Route::BadMethod,
            }
        }
        _ => Route::Malformed,
    }
}

async fn answer<P: Pages>(mut stream: TcpStream, pages: &P) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_REQUEST {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    let route = match read {
        Ok(Ok(())) => route(&head),
        _ => Route::Malformed,
    };
    let (status, body) = respond(route, pages).await;
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The status line's words and the body for `route`.
async fn respond<P: Pages>(route: Route, pages: &P) -> (&'static str, String) {
    match route {
        Route::Metrics => ("200 OK", pages.metrics().await),
        Route::Health => ("200 OK", "ok\n".to_string()),
        Route::Ready => {
            let problems = pages.readiness().await;
            if problems.is_empty() {
                ("200 OK", "ready\n".to_string())
            } else {
                ("503 Service Unavailable", problems.join("\n") + "\n")
            }
        }
        Route::NotFound => ("404 Not Found", "not found\n".to_string()),
        Route::BadMethod => ("405 Method Not Allowed", "only GET\n".to_string()),
        Route::Malformed => ("400 Bad Request", "bad request\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /healthz HTTP/1.1\r\n\r\n"), Route::Health);
        assert_eq!(route(b"GET /readyz HTTP/1.0\r\n\r\n"), Route::Ready);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b"hello\r\n\r\n"), Route::Malformed);
        assert_eq!(route(b"\xff\xfe"), Route::Malformed);
    }
}
