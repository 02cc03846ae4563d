//! Delivery from the spool to the downstream: the scheduler that decides
//! which queued message is tried when (this file), one attempt at one
//! message ([`attempt`]), and the targets it may go to (the SMTP layer's
//! client, `smtp::client`, for SMTP and LMTP, its connections kept open
//! between messages by [`pool`]; [`maildir`]).
//!
//! The scheduler keeps, for every queued message, the time of its next
//! attempt; new messages come from sessions through a [`Handle`], due ones
//! are handed to at most `downstream.concurrency` attempts at once, and a
//! flush (from `mxguard queue flush`) makes everything due now. A reload
//! gives it a new [`Context`] for the attempts to come; a stop lets the
//! attempts in flight finish and starts no more (what is not done stays
//! queued).

pub mod attempt;
pub mod dsn;
pub mod maildir;
pub mod pool;

use crate::config::Config;
use crate::log::Logger;
use crate::spool::{Entry, QueueId, Spool};
use attempt::Outcome;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

enum Request {
    Enqueue(Box<Entry>),
    Flush,
    Reconfigure(Arc<Context>),
    /// Start no more attempts; answer once those in flight are done.
    Drain(tokio::sync::oneshot::Sender<()>),
}

/// Tells the scheduler about new messages and flushes.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Request>,
}

impl Handle {
    /// A message was just committed to the spool (`entry`: as the
    /// commit wrote it, so its first attempt need not read it back).
    pub fn enqueue(&self, entry: Entry) {
        let _ = self.tx.send(Request::Enqueue(Box::new(entry)));
    }

    /// Make every queued message due now.
    pub fn flush(&self) {
        let _ = self.tx.send(Request::Flush);
    }

    /// Attempts from now on use `ctx` (a reload).
    pub fn reconfigure(&self, ctx: Arc<Context>) {
        let _ = self.tx.send(Request::Reconfigure(ctx));
    }

    /// Starts no more attempts; completes once the attempts in flight are
    /// done (at once when there is no scheduler).
    pub async fn drain(&self) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.tx.send(Request::Drain(done)).is_ok() {
            let _ = finished.await;
        }
    }

    /// A handle with no scheduler behind it: messages stay in the spool.
    pub fn detached() -> Handle {
        let (tx, _) = mpsc::unbounded_channel();
        Handle { tx }
    }
}

/// What attempts need, shared by all of them.
pub struct Context {
    pub config: Arc<Config>,
    pub spool: Arc<Spool>,
    pub log: Arc<Logger>,
    /// STARTTLS toward the downstream (`downstream.tls`).
    pub tls: crate::tls::client::DownstreamTls,
    /// To verify a sender before it may get a bounce.
    pub dns: Arc<crate::dns::Dns>,
    /// Connections kept open between messages.
    pub pool: pool::Pool,
}

/// How many just-committed messages' entries are kept for their first
/// attempt (a few hundred bytes each); beyond, an attempt reads its entry
/// from the spool.
const FRESH_MAX: usize = 1000;

/// Next attempt times, with stale heap entries skipped on pop; and the
/// entries of messages not yet attempted, as their commit wrote them.
#[derive(Default)]
struct Schedule {
    heap: BinaryHeap<Reverse<(u64, QueueId)>>,
    next: HashMap<QueueId, u64>,
    fresh: HashMap<QueueId, Entry>,
}

impl Schedule {
    fn set(&mut self, id: QueueId, at: u64) {
        self.next.insert(id.clone(), at);
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest time anything is due.
    fn earliest(&mut self) -> Option<u64> {
        while let Some(Reverse((at, id))) = self.heap.peek() {
            if self.next.get(id) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// A message just committed, due now.
    fn set_fresh(&mut self, entry: Entry) {
        let id = entry.envelope.id.clone();
        if self.fresh.len() < FRESH_MAX {
            self.fresh.insert(id.clone(), entry);
        }
        self.set(id, 0);
    }

    /// Takes one message due at `now`, if any, with its entry when it was
    /// committed since the last attempt.
    fn pop_due(&mut self, now: u64) -> Option<(QueueId, Option<Entry>)> {
        let at = self.earliest()?;
        if at > now {
            return None;
        }
        let Reverse((_, id)) = self.heap.pop()?;
        self.next.remove(&id);
        let fresh = self.fresh.remove(&id);
        Some((id, fresh))
    }
}

/// Starts the scheduler; it first picks up whatever the spool holds.
pub fn start(ctx: Arc<Context>) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(schedule(ctx, rx));
    Handle { tx }
}

/// Every queued message with its next attempt time (0 for all when
/// `due_now`, without reading their state).
async fn scan(ctx: &Context, due_now: bool) -> Vec<(QueueId, u64)> {
    let spool = ctx.spool.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        spool.list().map(|ids| {
            ids.into_iter()
                .map(|id| {
                    let next = if due_now {
                        0
                    } else {
                        spool.read_state(&id).next_attempt
                    };
                    (id, next)
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    match scanned {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            ctx.log.event("spool_error").kv("error", e).emit();
            Vec::new()
        }
        Err(e) => {
            ctx.log.event("spool_error").kv("error", e).emit();
            Vec::new()
        }
    }
}

async fn schedule(mut ctx: Arc<Context>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut plan = Schedule::default();
    for (id, at) in scan(&ctx, false).await {
        plan.set(id, at);
    }
    // Messages being attempted, by the task attempting them.
    let mut running: HashMap<tokio::task::Id, QueueId> = HashMap::new();
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    // Who waits for the attempts in flight to end, once draining.
    let mut drained: Option<tokio::sync::oneshot::Sender<()>> = None;
    loop {
        if drained.is_some() && tasks.is_empty() {
            if let Some(done) = drained.take() {
                let _ = done.send(());
            }
            return;
        }
        let now = crate::time::unix_now();
        let limit = if drained.is_some() {
            0
        } else {
            ctx.config.downstream.concurrency
        };
        while running.len() < limit {
            let Some((id, fresh)) = plan.pop_due(now) else {
                break;
            };
            if running.values().any(|r| *r == id) {
                continue;
            }
            let (task_ctx, task_id) = (ctx.clone(), id.clone());
            let handle = tasks.spawn(async move { attempt::run(&task_ctx, &task_id, fresh).await });
            running.insert(handle.id(), id);
        }
        let wait = match plan.earliest() {
            Some(at) if running.len() < limit => Duration::from_secs(at.saturating_sub(now).max(1)),
            _ => Duration::from_secs(3600),
        };
        tokio::select! {
            request = rx.recv() => match request {
                None => break,
                Some(Request::Enqueue(entry)) => plan.set_fresh(*entry),
                Some(Request::Flush) => {
                    for (id, at) in scan(&ctx, true).await {
                        plan.set(id, at);
                    }
                }
                Some(Request::Reconfigure(new)) => ctx = new,
                Some(Request::Drain(done)) => drained = Some(done),
            },
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => match done {
                Ok((task, outcome)) => {
                    let id = running.remove(&task);
                    match (id, outcome) {
                        (Some(id), Outcome::Retry(at)) => plan.set(id, at),
                        (_, Outcome::Bounced(dsn)) => plan.set(dsn, 0),
                        _ => {}
                    }
                }
                Err(e) => {
                    // A failed attempt task must not strand its message.
                    if let Some(id) = running.remove(&e.id()) {
                        ctx.log.event("delivery_error").kv("queue_id", &id).kv("error", &e).emit();
                        plan.set(id, now + ctx.config.downstream.retry_max.0.as_secs());
                    }
                }
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_skips_stale_entries() {
        let mut s = Schedule::default();
        let a = QueueId::generate();
        let b = QueueId::generate();
        s.set(a.clone(), 100);
        s.set(b.clone(), 50);
        s.set(a.clone(), 10);
        assert_eq!(s.earliest(), Some(10));
        let popped = |s: &mut Schedule, now| s.pop_due(now).map(|(id, _)| id);
        assert_eq!(popped(&mut s, 20), Some(a.clone()));
        assert_eq!(popped(&mut s, 20), None);
        assert_eq!(s.earliest(), Some(50));
        assert_eq!(popped(&mut s, 60), Some(b));
        assert_eq!(popped(&mut s, 1000), None, "the stale entry for a is gone");
    }

    fn entry(id: &QueueId) -> Entry {
        Entry {
            envelope: crate::spool::Envelope {
                id: id.clone(),
                ..crate::spool::test_envelope()
            },
            state: Default::default(),
            path: std::path::PathBuf::from("/nonexistent"),
            body: 100,
            size: 10,
            fresh: true,
        }
    }

    #[test]
    fn a_fresh_entry_goes_with_its_first_attempt_only() {
        let mut s = Schedule::default();
        let a = QueueId::generate();
        s.set_fresh(entry(&a));
        let (id, fresh) = s.pop_due(0).unwrap();
        assert_eq!(id, a);
        assert_eq!(fresh.map(|e| e.envelope.id), Some(a.clone()));
        s.set(a.clone(), 10);
        assert!(
            s.pop_due(10).unwrap().1.is_none(),
            "a retry reads the spool"
        );
    }

    #[test]
    fn fresh_entries_beyond_the_bound_are_read_from_the_spool() {
        let mut s = Schedule::default();
        let ids: Vec<QueueId> = (0..FRESH_MAX + 5).map(|_| QueueId::generate()).collect();
        for id in &ids {
            s.set_fresh(entry(id));
        }
        assert_eq!(s.fresh.len(), FRESH_MAX);
        let mut with_entry = 0;
        while let Some((_, fresh)) = s.pop_due(0) {
            with_entry += usize::from(fresh.is_some());
        }
        assert_eq!(with_entry, FRESH_MAX, "every message still attempted");
        assert!(s.fresh.is_empty());
    }
}
