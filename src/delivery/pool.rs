//! Connections to the downstream kept open between messages (a connection
//! cache, as Postfix's scache): after a transaction that went through, the
//! session waits here, per target, for the next message to the same
//! target, which checks it with RSET first. A session idles at most
//! `downstream.idle_timeout` (then it is ended with QUIT), at most
//! `downstream.max_idle` wait per target, and one carries at most
//! [`MAX_MESSAGES`] messages; `idle_timeout = "0s"` turns reuse off.

use crate::config::Downstream;
use crate::smtp::client::{self, Session};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Messages one connection carries before it is ended (a bound on what
/// one downstream process sees, as Postfix's reuse count limit).
pub const MAX_MESSAGES: u32 = 100;

/// An idle session, and how many messages it carried.
struct Idle {
    id: u64,
    session: Session,
    carried: u32,
}

/// The idle sessions, by target.
pub struct Pool {
    idle_timeout: Duration,
    max_idle: usize,
    command_timeout: Duration,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    by_target: HashMap<String, Vec<Idle>>,
    next_id: u64,
}

impl Pool {
    pub fn new(downstream: &Downstream) -> Pool {
        Pool {
            idle_timeout: downstream.idle_timeout.0,
            max_idle: downstream.max_idle,
            command_timeout: downstream.command_timeout.0,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
        inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently idle session to `target`, if any, with the
    /// number of messages it carried.
    pub fn take(&self, target: &str) -> (Option<Session>, u32) {
        let mut inner = Self::lock(&self.inner);
        match inner.by_target.get_mut(target).and_then(Vec::pop) {
            Some(idle) => (Some(idle.session), idle.carried),
            None => (None, 0),
        }
    }

    /// Gives back a session that has carried `carried` messages, this one
    /// included: kept for the next one, or ended (reuse off, the target's
    /// idle sessions full, or it carried its share).
    pub async fn put(&self, target: &str, carried: u32, session: Session) {
        if self.idle_timeout.is_zero() || carried >= MAX_MESSAGES {
            return client::quit(session, self.command_timeout).await;
        }
        let kept = {
            let mut inner = Self::lock(&self.inner);
            inner.next_id += 1;
            let id = inner.next_id;
            let idle = inner.by_target.entry(target.to_string()).or_default();
            if idle.len() >= self.max_idle {
                Err(session)
            } else {
                idle.push(Idle {
                    id,
                    session,
                    carried,
                });
                Ok(id)
            }
        };
        let id = match kept {
            Ok(id) => id,
            Err(session) => return client::quit(session, self.command_timeout).await,
        };
        // Ended when it idled its time, unless taken meanwhile.
        let (inner, target) = (Arc::downgrade(&self.inner), target.to_string());
        let (wait, timeout) = (self.idle_timeout, self.command_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(session) = expire(&inner, &target, id) {
                client::quit(session, timeout).await;
            }
        });
    }
}

/// Takes out the idle session `id` of `target`, if it is still there.
fn expire(inner: &Weak<Mutex<Inner>>, target: &str, id: u64) -> Option<Session> {
    let inner = inner.upgrade()?;
    let mut inner = Pool::lock(&inner);
    let idle = inner.by_target.get_mut(target)?;
    let at = idle.iter().position(|i| i.id == id)?;
    Some(idle.remove(at).session)
}
