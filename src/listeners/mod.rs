//! The SMTP listeners: one accept loop per address of `server.listen`
//! and of `server.proxy_listen` (behind a load balancer: the client is the
//! one the PROXY header names, see [`proxy`]). Each connection gets the
//! services in force when it arrives and a slot under the connection caps
//! (in total, per client: an IPv4 address or an IPv6 /64); over a cap it
//! hears `421 4.7.0` before the banner. A reload binds the addresses newly
//! listed and closes those no longer listed; a stop closes them all (the
//! port closes, new clients go elsewhere).

pub mod proxy;

use crate::peers::{Caps, Refusal};
use crate::policy::pipeline::Front;
use crate::services::{Live, Services};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{key}: cannot listen on {addr}: {source}")]
pub struct BindError {
    /// `server.listen` or `server.proxy_listen`.
    pub key: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// One address to listen on, and whether its connections come through a
/// load balancer (each starts with a PROXY header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listen {
    pub addr: SocketAddr,
    pub proxy: bool,
}

impl Listen {
    /// Every listener `server` asks for.
    pub fn all(server: &crate::config::Server) -> Vec<Listen> {
        let direct = server
            .listen
            .iter()
            .map(|&addr| Listen { addr, proxy: false });
        let proxied = (server.proxy_listen.iter()).map(|&addr| Listen { addr, proxy: true });
        direct.chain(proxied).collect()
    }
}

/// How long a balancer has to send the PROXY header.
const PROXY_HEADER_WAIT: Duration = Duration::from_secs(10);

/// Open SMTP connections, in total and per client network.
pub type ConnectionCaps = Caps<IpAddr>;

pub struct Listeners {
    live: Arc<Live>,
    caps: Arc<ConnectionCaps>,
    /// Accept loops by the address the configuration lists.
    open: HashMap<Listen, JoinHandle<()>>,
    /// Closed for good (the server is stopping): a reload binds nothing.
    closed: bool,
}

impl Listeners {
    pub fn new(live: Arc<Live>, caps: Arc<ConnectionCaps>) -> Listeners {
        Listeners {
            live,
            caps,
            open: HashMap::new(),
            closed: false,
        }
    }

    /// Listens on exactly `addrs`: binds those not bound yet (each logged
    /// `event=listen`, with `proxy=yes` behind a balancer), closes those no
    /// longer listed. The addresses that could not be bound are returned;
    /// the others are served either way.
    pub async fn apply(&mut self, addrs: &[Listen]) -> Vec<BindError> {
        if self.closed {
            return Vec::new();
        }
        let log = self.live.current().log.clone();
        let gone: Vec<Listen> = self
            .open
            .keys()
            .filter(|addr| !addrs.contains(addr))
            .copied()
            .collect();
        for addr in gone {
            if let Some(task) = self.open.remove(&addr) {
                close(task).await;
                log.event("unlisten").kv("address", addr.addr).emit();
            }
        }
        let mut failed = Vec::new();
        for addr in addrs {
            if self.open.contains_key(addr) {
                continue;
            }
            match TcpListener::bind(addr.addr).await {
                Ok(listener) => {
                    let bound = listener.local_addr().map_or(addr.addr, |a| a);
                    log.event("listen")
                        .kv("address", bound)
                        .opt("proxy", addr.proxy.then_some("yes"))
                        .emit();
                    let (live, caps) = (self.live.clone(), self.caps.clone());
                    let task = tokio::spawn(accept_loop(listener, addr.proxy, live, caps));
                    self.open.insert(*addr, task);
                }
                Err(source) => failed.push(BindError {
                    key: if addr.proxy {
                        "server.proxy_listen"
                    } else {
                        "server.listen"
                    },
                    addr: addr.addr,
                    source,
                }),
            }
        }
        failed
    }

    /// Closes every listener, for good: new connections are refused by
    /// the system, and a reload opens none again.
    pub async fn close_all(&mut self) {
        self.closed = true;
        for (_, task) in self.open.drain() {
            close(task).await;
        }
    }
}

/// Stops an accept loop; once this returns its socket is closed.
async fn close(task: JoinHandle<()>) {
    task.abort();
    let _ = task.await;
}

async fn accept_loop(
    listener: TcpListener,
    proxied: bool,
    live: Arc<Live>,
    caps: Arc<ConnectionCaps>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment
                // rather than spin.
                live.current()
                    .log
                    .event("accept_error")
                    .kv("error", e)
                    .emit();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let svc = live.current();
        let _ = stream.set_nodelay(true);
        if proxied {
            tokio::spawn(behind_balancer(svc, stream, peer.ip(), caps.clone()));
        } else {
            serve(svc, stream, peer, &caps);
        }
    }
}

/// A session for `client`, under the caps.
fn serve(svc: Arc<Services>, stream: TcpStream, peer: SocketAddr, caps: &Arc<ConnectionCaps>) {
    let client = crate::net::canonical_ip(peer.ip());
    match caps.acquire(crate::net::client_network(client)) {
        Ok(permit) => {
            tokio::spawn(async move {
                crate::session::run(&svc, stream, SocketAddr::new(client, peer.port())).await;
                drop(permit);
            });
        }
        Err(cap) => {
            tokio::spawn(refuse_connection(svc, stream, client, cap));
        }
    }
}

/// A connection to a `server.proxy_listen` address: from a balancer of
/// `server.proxy_from`, with a PROXY header naming the client, or closed
/// (logged `event=proxy_refused`). A health check (no client) hears our
/// banner and is answered until it quits, unlogged.
async fn behind_balancer(
    svc: Arc<Services>,
    mut stream: TcpStream,
    balancer: IpAddr,
    caps: Arc<ConnectionCaps>,
) {
    let trusted = (svc.config.server.proxy_from.iter()).any(|net| net.contains(balancer));
    let origin = match trusted {
        true => proxy::read_header(&mut stream, PROXY_HEADER_WAIT).await,
        false => Err(proxy::ProxyError::Malformed(
            "sent from outside server.proxy_from".into(),
        )),
    };
    match origin {
        Ok(proxy::Origin::Client(client)) => serve(svc, stream, client, &caps),
        Ok(proxy::Origin::Local) => health_check(&svc, stream).await,
        Err(error) => {
            let reason = match trusted {
                true => error.to_string(),
                false => "untrusted source: not in server.proxy_from".to_string(),
            };
            svc.log
                .event("proxy_refused")
                .kv("peer", crate::net::canonical_ip(balancer))
                .kv("reason", reason)
                .emit();
        }
    }
}

/// A balancer's health check: our banner, `250` to HELO, EHLO, NOOP and
/// RSET, `221` to QUIT; a handful of commands at most, each within the
/// command timeout.
async fn health_check(svc: &Services, stream: TcpStream) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let host = &svc.config.server.hostname;
    let wait = svc.config.limits.command_timeout.0;
    let mut stream = BufReader::new(stream);
    let mut answer = format!("220 {host} ESMTP mxguard\r\n");
    for _ in 0..10 {
        let written = tokio::time::timeout(wait, stream.get_mut().write_all(answer.as_bytes()));
        if !matches!(written.await, Ok(Ok(()))) || answer.starts_with("221") {
            return;
        }
        let mut line = Vec::new();
        let mut limited = (&mut stream).take(512);
        let read = tokio::time::timeout(wait, limited.read_until(b'\n', &mut line));
        if !matches!(read.await, Ok(Ok(n)) if n > 0) {
            return;
        }
        let line = line.trim_ascii_end();
        let verb = crate::smtp::command::verb(line).unwrap_or_default();
        answer = match verb.as_str() {
            "HELO" | "EHLO" => format!("250 {host}\r\n"),
            "NOOP" | "RSET" => "250 2.0.0 Ok\r\n".to_string(),
            "QUIT" => "221 2.0.0 Bye\r\n".to_string(),
            _ => "502 5.5.2 Error: command not recognized\r\n".to_string(),
        };
    }
}

/// `421 4.7.0` before the banner (the pipeline words it), logged, and the
/// connection closed.
async fn refuse_connection(
    svc: Arc<Services>,
    mut stream: TcpStream,
    client: IpAddr,
    cap: Refusal,
) {
    let refusal = svc.pipeline(Front::Session).connection_cap(client, cap);
    let (check, reply) = (refusal.check, refusal.reply);
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        stream.write_all(&wire).await?;
        stream.shutdown().await
    })
    .await;
    svc.log
        .event("reject")
        .ip("client", client)
        .kv("stage", "connect")
        .kv("check", check)
        .kv("action", "tempfail")
        .kv("reply", &reply)
        .emit();
}
