//! The SMTP listeners: one accept loop per address of `server.listen`.
//! Each connection gets the services in force when it arrives and a slot
//! under the connection caps (in total, per client: an IPv4 address or an
//! IPv6 /64); over a cap it hears `421 4.7.0` before the banner. A reload
//! binds the addresses newly listed and closes those no longer listed; a
//! stop closes them all (the port closes, new clients go elsewhere).

use crate::peers::{Caps, Refusal};
use crate::policy::pipeline::Front;
use crate::services::{Live, Services};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("server.listen: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Open SMTP connections, in total and per client network.
pub type ConnectionCaps = Caps<IpAddr>;

pub struct Listeners {
    live: Arc<Live>,
    caps: Arc<ConnectionCaps>,
    /// Accept loops by the address the configuration lists.
    open: HashMap<SocketAddr, JoinHandle<()>>,
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
    /// `event=listen`), closes those no longer listed. The addresses that
    /// could not be bound are returned; the others are served either way.
    pub async fn apply(&mut self, addrs: &[SocketAddr]) -> Vec<BindError> {
        if self.closed {
            return Vec::new();
        }
        let log = self.live.current().log.clone();
        let gone: Vec<SocketAddr> = self
            .open
            .keys()
            .filter(|addr| !addrs.contains(addr))
            .copied()
            .collect();
        for addr in gone {
            if let Some(task) = self.open.remove(&addr) {
                close(task).await;
                log.event("unlisten").kv("address", addr).emit();
            }
        }
        let mut failed = Vec::new();
        for addr in addrs {
            if self.open.contains_key(addr) {
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let bound = listener.local_addr().map_or(*addr, |a| a);
                    log.event("listen").kv("address", bound).emit();
                    let task =
                        tokio::spawn(accept_loop(listener, self.live.clone(), self.caps.clone()));
                    self.open.insert(*addr, task);
                }
                Err(source) => failed.push(BindError {
                    addr: *addr,
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

async fn accept_loop(listener: TcpListener, live: Arc<Live>, caps: Arc<ConnectionCaps>) {
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
        let client = crate::net::canonical_ip(peer.ip());
        let _ = stream.set_nodelay(true);
        match caps.acquire(crate::net::client_network(client)) {
            Ok(permit) => {
                tokio::spawn(async move {
                    crate::session::run(&svc, stream, client).await;
                    drop(permit);
                });
            }
            Err(cap) => {
                tokio::spawn(refuse_connection(svc, stream, client, cap));
            }
        }
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
        .kv("client", client)
        .kv("stage", "connect")
        .kv("check", check)
        .kv("action", "tempfail")
        .kv("reply", &reply)
        .emit();
}
