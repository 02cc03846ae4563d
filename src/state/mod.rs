//! Shared state: bans, rate counters, greylist triplets, the callout cache
//! and DNSBL health, behind one interface with two backends — in-process
//! ([`memory`], persisted in the spool directory) and Redis ([`redis`],
//! shared by an MX fleet). [`Store`] is the raw interface, whose errors the
//! `mxguard ban` command reports; [`State`] is what sessions use: it turns
//! a backend failure into "nothing known" (`state.on_error = "open"`) or
//! into [`Unavailable`] (`"closed"`), logs the first failure of an outage
//! and the recovery, and counts failures.
//!
//! Every key has a lifetime; values are short strings whose format belongs
//! to the module that writes them. A sliding-window counter ([`Store::hit`])
//! serves rate limits and offence counting alike.

pub mod memory;
pub mod redis;

use crate::config::{Backend, Config, OnStateError};
use crate::log::Logger;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why the backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: not connected yet")]
    NotConnected,
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// The backend is failing and `state.on_error = "closed"`: the client gets
/// a temporary refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl Unavailable {
    /// What the client hears.
    pub fn refusal(&self) -> crate::verdict::Refusal {
        crate::verdict::Refusal::new(
            "state",
            crate::smtp::reply::Reply::new(
                451,
                "4.3.0",
                "Error: temporary failure of the shared state, try again later",
            ),
        )
    }
}

/// One of the two backends.
pub enum Store {
    Memory(memory::Memory),
    Redis(redis::Redis),
}

impl Store {
    /// The backend `[state]` names; the memory backend loads
    /// `<spool.dir>/state`.
    pub fn open(config: &Config) -> Result<Store, StateError> {
        match &config.state.backend {
            Backend::Memory => Ok(Store::Memory(memory::Memory::load(
                state_file(config),
                config.state.max_entries,
            )?)),
            Backend::Redis(url) => Ok(Store::Redis(redis::Redis::new(
                url,
                &config.state.prefix,
                config.state.timeout.0,
            )?)),
        }
    }

    // Each Redis call is boxed: its future (the connection's, kilobytes)
    // is then built only for Redis, not carried by every future that
    // asks the memory backend (every rate, ban and trap check).

    /// The value at `key`, if it has not expired.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StateError> {
        match self {
            Store::Memory(m) => Ok(m.get(key, crate::time::unix_now())),
            Store::Redis(r) => Box::pin(r.get(key)).await,
        }
    }

    /// Sets `key` to `value` for `ttl` (at least a second).
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StateError> {
        let ttl = ttl.max(Duration::from_secs(1));
        match self {
            Store::Memory(m) => {
                m.put(key, value, crate::time::unix_now(), ttl);
                Ok(())
            }
            Store::Redis(r) => Box::pin(r.put(key, value, ttl)).await,
        }
    }

    pub async fn remove(&self, key: &str) -> Result<(), StateError> {
        match self {
            Store::Memory(m) => {
                m.remove(key);
                Ok(())
            }
            Store::Redis(r) => Box::pin(r.remove(key)).await,
        }
    }

    /// Counts one event at `key` in a sliding window of `window`: the
    /// number of events in the window including this one, or `None` when
    /// `limit` events are already there (this one is then not counted).
    /// Atomic, so concurrent sessions (or hosts) never both get the last
    /// slot.
    pub async fn hit(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
    ) -> Result<Option<u32>, StateError> {
        let now = crate::time::unix_now();
        match self {
            Store::Memory(m) => Ok(m.hit(key, now, window, limit)),
            Store::Redis(r) => Box::pin(r.hit(key, now, window, limit)).await,
        }
    }

    /// The events at `key` in the sliding window of `window`, without
    /// counting one (what [`Store::hit`] would see).
    pub async fn count(&self, key: &str, window: Duration) -> Result<u32, StateError> {
        let now = crate::time::unix_now();
        match self {
            Store::Memory(m) => Ok(m.count(key, now, window)),
            Store::Redis(r) => Box::pin(r.count(key, now, window)).await,
        }
    }

    /// Every live key starting with `prefix`, with its value.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, StateError> {
        match self {
            Store::Memory(m) => Ok(m.list(prefix, crate::time::unix_now())),
            Store::Redis(r) => Box::pin(r.list(prefix)).await,
        }
    }

    /// Writes the memory backend to disk if it changed (blocking); Redis
    /// keeps its own.
    pub fn save(&self) -> Result<(), StateError> {
        match self {
            Store::Memory(m) => m.save(crate::time::unix_now()),
            Store::Redis(_) => Ok(()),
        }
    }
}

/// Where the memory backend persists itself.
pub fn state_file(config: &Config) -> PathBuf {
    config.spool.dir.join("state")
}

/// The store as sessions use it: failures absorbed per `state.on_error`.
pub struct State {
    pub store: Store,
    on_error: OnStateError,
    log: Arc<Logger>,
    /// Whether the backend is failing now (one log line per outage).
    failing: AtomicBool,
    /// Operations that failed, since start.
    errors: AtomicU64,
}

impl State {
    /// A state that starts empty and is never saved, for one-shot
    /// commands that build the policy (`mxguard check`, `config check`).
    pub fn scratch(config: &Config, log: Arc<Logger>) -> State {
        State::new(Store::Memory(memory::Memory::scratch()), config, log)
    }

    /// A state whose every failure is an [`Unavailable`] (for commands
    /// that must report failures rather than carry on).
    pub fn closed(store: Store, log: Arc<Logger>) -> State {
        State::with(store, OnStateError::Closed, log)
    }

    pub fn new(store: Store, config: &Config, log: Arc<Logger>) -> State {
        State::with(store, config.state.on_error, log)
    }

    fn with(store: Store, on_error: OnStateError, log: Arc<Logger>) -> State {
        State {
            store,
            on_error,
            log,
            failing: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        }
    }

    fn outcome<T>(
        &self,
        what: &str,
        result: Result<T, StateError>,
        open: T,
    ) -> Result<T, Unavailable> {
        match result {
            Ok(value) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    self.log
                        .event("state_recovered")
                        .kv("failed_operations", self.errors.load(Ordering::Relaxed))
                        .emit();
                }
                Ok(value)
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    let mode = match self.on_error {
                        OnStateError::Open => "open",
                        OnStateError::Closed => "closed",
                    };
                    self.log
                        .event("state_error")
                        .kv("operation", what)
                        .kv("on_error", mode)
                        .kv("error", e)
                        .emit();
                }
                match self.on_error {
                    OnStateError::Open => Ok(open),
                    OnStateError::Closed => Err(Unavailable),
                }
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let got = self.store.get(key).await;
        self.outcome("get", got, None)
    }

    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), Unavailable> {
        let done = self.store.put(key, value, ttl).await;
        self.outcome("put", done, ())
    }

    pub async fn remove(&self, key: &str) -> Result<(), Unavailable> {
        let done = self.store.remove(key).await;
        self.outcome("remove", done, ())
    }

    /// As [`Store::hit`]; when the backend fails open, the event is let
    /// through (`Some(0)`).
    pub async fn hit(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
    ) -> Result<Option<u32>, Unavailable> {
        let counted = self.store.hit(key, window, limit).await;
        self.outcome("hit", counted, Some(0))
    }

    /// As [`Store::count`]; a failing backend counts nothing.
    pub async fn count(&self, key: &str, window: Duration) -> Result<u32, Unavailable> {
        let counted = self.store.count(key, window).await;
        self.outcome("count", counted, 0)
    }

    /// Operations that failed since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Whether the backend is failing now.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Saves the memory backend, logging a failure.
    pub fn save(&self) {
        if let Err(e) = self.store.save() {
            self.log
                .event("state_error")
                .kv("operation", "save")
                .kv("error", e)
                .emit();
        }
    }
}
