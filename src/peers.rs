//! Who may use a listener and how much of it: the `allow` list of peer
//! networks (the policy server, the metrics endpoint), the connection caps
//! in total and per peer ([`Caps`], taken after accept, so that held
//! sockets from one peer never keep another's out; the SMTP listener's
//! caps per client too), and [`LogThrottle`],
//! which lets a refused peer be logged at most once a minute, so a scanner
//! cannot flood the log.

use crate::config::Network;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Whether `ip` is in one of the `allow` networks.
pub fn allowed(allow: &[Network], ip: IpAddr) -> bool {
    allow.iter().any(|net| net.contains(ip))
}

/// Why a connection was not served; its `reason=` in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is outside the `allow` networks.
    NotAllowed,
    /// The listener's connections at once are all taken.
    Total,
    /// This peer's connections at once are all taken.
    PerPeer,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::Total => "max_connections",
            Refusal::PerPeer => "max_connections_per_peer",
        }
    }
}

/// Open connections of one listener, in total and per peer (`K`: a client
/// address, a user ID); the caps can change while it serves (a reload).
pub struct Caps<K> {
    open: Mutex<Open<K>>,
    /// Woken when the last connection closes.
    idle: tokio::sync::Notify,
}

struct Open<K> {
    max_total: usize,
    max_per_peer: usize,
    total: usize,
    per_peer: HashMap<K, usize>,
    /// Connections granted since the start.
    granted: u64,
}

/// One open connection; released on drop.
pub struct Permit<K: Hash + Eq> {
    caps: Arc<Caps<K>>,
    peer: K,
}

impl<K: Hash + Eq + Clone> Caps<K> {
    pub fn new(max_total: usize, max_per_peer: usize) -> Arc<Caps<K>> {
        Arc::new(Caps {
            open: Mutex::new(Open {
                max_total,
                max_per_peer,
                total: 0,
                per_peer: HashMap::new(),
                granted: 0,
            }),
            idle: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open<K>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New caps for the connections to come (those open stay open).
    pub fn set_limits(&self, max_total: usize, max_per_peer: usize) {
        let mut open = self.lock();
        open.max_total = max_total;
        open.max_per_peer = max_per_peer;
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Connections granted since the start: a burst shows as its rise.
    pub fn granted(&self) -> u64 {
        self.lock().granted
    }

    /// Waits until no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// A slot for one more connection from `peer`, if both caps allow.
    pub fn acquire(self: &Arc<Self>, peer: K) -> Result<Permit<K>, Refusal> {
        let mut open = self.lock();
        if open.total >= open.max_total {
            return Err(Refusal::Total);
        }
        let max_per_peer = open.max_per_peer;
        let per = open.per_peer.entry(peer.clone()).or_insert(0);
        if *per >= max_per_peer {
            return Err(Refusal::PerPeer);
        }
        *per += 1;
        open.total += 1;
        open.granted += 1;
        Ok(Permit {
            caps: self.clone(),
            peer,
        })
    }
}

impl<K: Hash + Eq> Drop for Permit<K> {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(per) = open.per_peer.get_mut(&self.peer) {
            *per = per.saturating_sub(1);
            if *per == 0 {
                open.per_peer.remove(&self.peer);
            }
        }
        if open.total == 0 {
            self.caps.idle.notify_waiters();
        }
    }
}

/// How often one peer's refusals are logged at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Peers remembered by a [`LogThrottle`]: at most this many refusal lines
/// per [`LOG_INTERVAL`], however many peers are refused.
const LOG_PEERS: usize = 1024;

/// Which refused peers may be logged now: each at most once per
/// [`LOG_INTERVAL`]. Owned by one accept loop.
pub struct LogThrottle<K> {
    /// When each peer was last logged.
    logged: HashMap<K, Instant>,
}

impl<K> Default for LogThrottle<K> {
    fn default() -> LogThrottle<K> {
        LogThrottle {
            logged: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> LogThrottle<K> {
    /// Whether to log a refusal of `peer` at `now` (and if so, remember it).
    /// With [`LOG_PEERS`] peers logged within the interval, a new one is
    /// not logged until some of them age out.
    pub fn should_log(&mut self, peer: K, now: Instant) -> bool {
        let recent = |at: &Instant| now.saturating_duration_since(*at) < LOG_INTERVAL;
        if self.logged.get(&peer).is_some_and(recent) {
            return false;
        }
        if self.logged.len() >= LOG_PEERS && !self.logged.contains_key(&peer) {
            self.logged.retain(|_, at| recent(at));
            if self.logged.len() >= LOG_PEERS {
                return false;
            }
        }
        self.logged.insert(peer, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_networks_and_mapped_addresses() {
        let allow = crate::config::loopback_networks();
        assert!(allowed(&allow, "127.0.0.9".parse().unwrap()));
        assert!(allowed(&allow, "::1".parse().unwrap()));
        assert!(allowed(&allow, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!allowed(&allow, "192.0.2.1".parse().unwrap()));
        assert!(!allowed(&[], "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn caps_count_in_total_and_per_peer_and_release_on_drop() {
        let caps = Caps::new(3, 2);
        let first = caps.acquire(1u32).unwrap();
        let _second = caps.acquire(1).unwrap();
        assert_eq!(caps.acquire(1).err(), Some(Refusal::PerPeer));
        let _other = caps.acquire(2).unwrap();
        assert_eq!(caps.acquire(3).err(), Some(Refusal::Total));
        drop(first);
        assert!(caps.acquire(1).is_ok());
    }

    #[test]
    fn a_peer_is_logged_once_a_minute_and_the_table_is_bounded() {
        let start = Instant::now();
        let mut throttle = LogThrottle::default();
        assert!(throttle.should_log(1u32, start));
        assert!(!throttle.should_log(1, start + Duration::from_secs(59)));
        assert!(throttle.should_log(2, start + Duration::from_secs(59)));
        assert!(throttle.should_log(1, start + LOG_INTERVAL));
        let mut full = LogThrottle::default();
        for peer in 0..LOG_PEERS as u32 {
            assert!(full.should_log(peer, start));
        }
        let extra = LOG_PEERS as u32;
        assert!(!full.should_log(extra, start + Duration::from_secs(1)));
        // Once the others are a minute old, there is room again.
        assert!(full.should_log(extra, start + LOG_INTERVAL));
        assert_eq!(full.logged.len(), 1);
    }
}
