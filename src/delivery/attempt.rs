//! One delivery attempt of one queued message: its recipients split by
//! route (`[[downstream.route]]`), each route's targets in order until one
//! answers, per-recipient results honoured (delivered, deferred, failed),
//! the state saved, and the message removed when done. When a recipient
//! failed for good or the queue lifetime ran out, a bounce (DSN) is queued
//! to the sender only if it is verified for the message (SPF pass, or an
//! aligned DKIM pass), `delivery.dsn` allows it and the sender asked for
//! it (RFC 3461 NOTIFY); otherwise the message
//! goes to the quarantine. Never a bounce to a sender that could be forged.

use super::{maildir, Context};
use crate::config::{Dsn, Target};
use crate::smtp::client::Encryption;
use crate::smtp::client::{self as smtp_client, RcptResult};
use crate::smtp::link::Endpoint;
use crate::spool::{DeliveryState, Entry, QueueId, SpoolError};
use std::time::Duration;

/// What the scheduler does with the message next.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Removed or quarantined (or gone from the queue).
    Done,
    /// Try again at this Unix time.
    Retry(u64),
    /// Removed, and a bounce to its verified sender queued under this ID.
    Bounced(QueueId),
}

/// Wait before attempt `attempts + 1`: doubling from `min`, at most `max`.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    min.checked_mul(factor).unwrap_or(max).min(max)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// One attempt at the message `id`; `fresh`: its entry as its commit
/// wrote it, when this is its first attempt (else it is read from the
/// spool).
pub async fn run(ctx: &Context, id: &QueueId, fresh: Option<Entry>) -> Outcome {
    let downstream = &ctx.config.downstream;
    let spool = ctx.spool.clone();
    let read_id = id.clone();
    let read = match fresh {
        Some(entry) => Ok(Ok(entry)),
        None => tokio::task::spawn_blocking(move || spool.read(&read_id)).await,
    };
    let entry = match read {
        Ok(Ok(entry)) => entry,
        Ok(Err(SpoolError::NotFound(_))) => return Outcome::Done,
        Ok(Err(SpoolError::Format { id: _, source })) => {
            // A queue file that cannot be read will never deliver: keep it
            // for a person to look at, out of the queue.
            let state = DeliveryState {
                last_error: Some(format!("unreadable queue file: {source}")),
                ..DeliveryState::default()
            };
            return quarantine(ctx, id, state, "", Vec::new()).await;
        }
        Ok(Err(e)) => {
            ctx.log
                .event("spool_error")
                .kv("queue_id", id)
                .kv("error", e)
                .emit();
            return Outcome::Retry(crate::time::unix_now() + downstream.retry_max.0.as_secs());
        }
        Err(e) => {
            ctx.log
                .event("spool_error")
                .kv("queue_id", id)
                .kv("error", e)
                .emit();
            return Outcome::Retry(crate::time::unix_now() + downstream.retry_max.0.as_secs());
        }
    };
    let mut state = entry.state.clone();
    let pending: Vec<String> = state
        .pending(&entry.envelope)
        .into_iter()
        .map(str::to_string)
        .collect();
    if !pending.is_empty() {
        deliver(ctx, &entry, &pending, &mut state).await;
    }
    // Like Postfix's maximal_queue_lifetime: checked after an attempt, so
    // "0s" means "try once".
    let now = crate::time::unix_now();
    if now >= entry.envelope.arrival + downstream.max_queue_lifetime.0.as_secs() {
        let why = format!(
            "queue lifetime expired; last error: {}",
            state.last_error.as_deref().unwrap_or("none")
        );
        for rcpt in state
            .pending(&entry.envelope)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            log_result(ctx, id, &rcpt, "-", "expired", &why, None);
            state.failed.push((rcpt, why.clone()));
        }
    }
    finish(ctx, id, &entry, state, now).await
}

/// Delivers each route's recipients (`[[downstream.route]]` by their
/// domain, the global targets for the others); records each recipient's
/// result in `state`.
async fn deliver(ctx: &Context, entry: &Entry, pending: &[String], state: &mut DeliveryState) {
    let downstream = &ctx.config.downstream;
    let mut routes: Vec<(&[Target], Vec<String>)> = Vec::new();
    for rcpt in pending {
        let targets = downstream.targets_for(&crate::smtp::address::routing_domain(rcpt));
        match routes.iter_mut().find(|(t, _)| std::ptr::eq(*t, targets)) {
            Some((_, rcpts)) => rcpts.push(rcpt.clone()),
            None => routes.push((targets, vec![rcpt.clone()])),
        }
    }
    let needs_smtputf8 = needs_smtputf8(ctx, entry).await;
    for (targets, rcpts) in routes {
        deliver_route(ctx, entry, targets, &rcpts, needs_smtputf8, state).await;
    }
}

/// Whether a message received with SMTPUTF8 needs it downstream: an
/// address or a header beyond ASCII (a header that cannot be read counts
/// as one: the message is never downgraded).
async fn needs_smtputf8(ctx: &Context, entry: &Entry) -> bool {
    let env = &entry.envelope;
    if !env.smtputf8 {
        return false;
    }
    if !env.from.is_ascii() || env.rcpts.iter().any(|r| !r.is_ascii()) {
        return true;
    }
    let (stored, max) = (entry.clone(), ctx.config.limits.max_header_size);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let read = tokio::task::spawn_blocking(move || stored.header_block(max)).await;
    !matches!(read, Ok(Ok(header)) if header.is_ascii())
}

/// Tries `targets` in order for `pending`; records each recipient's
/// result in `state`.
async fn deliver_route(
    ctx: &Context,
    entry: &Entry,
    targets: &[Target],
    pending: &[String],
    needs_smtputf8: bool,
    state: &mut DeliveryState,
) {
    let env = &entry.envelope;
    let id = &env.id;
    let mut last_error = String::from("no target");
    for target in targets {
        // What the connection got of TLS (none for a maildir).
        let endpoint = match target {
            Target::Maildir(dir) => {
                let results =
                    maildir::deliver(dir, &ctx.config.server.hostname, &entry.path, entry.body)
                        .await
                        .map(|()| vec![RcptResult::Delivered("maildir".into()); pending.len()])
                        .map_err(|e| e.to_string());
                match record(ctx, id, target, pending, results, None, state) {
                    Ok(()) => return,
                    Err(e) => last_error = format!("{target}: {e}"),
                }
                continue;
            }
            Target::Smtp { host, port } | Target::Lmtp { host, port } => {
                Endpoint::Tcp { host, port: *port }
            }
            Target::LmtpUnix(path) => Endpoint::Unix(path),
        };
        let request = smtp_client::Request {
            peer: smtp_client::Peer {
                endpoint,
                lmtp: !matches!(target, Target::Smtp { .. }),
                helo: &ctx.config.server.hostname,
                connect_timeout: ctx.config.downstream.connect_timeout.0,
                command_timeout: ctx.config.downstream.command_timeout.0,
            },
            from: &env.from,
            rcpts: pending,
            body_8bit: env.body_8bit,
            smtputf8: env.smtputf8,
            needs_smtputf8,
            dsn: &env.dsn,
            origin: ctx
                .config
                .downstream
                .xclient
                .then_some(smtp_client::Origin {
                    addr: env.client,
                    name: env.client_name.as_deref(),
                    helo: &env.helo,
                    esmtp: env.esmtp,
                }),
            message: smtp_client::Message {
                path: &entry.path,
                offset: entry.body,
                len: entry.size,
                in_memory: entry.fresh,
            },
        };
        let key = target.to_string();
        let (idle, carried) = ctx.pool.take(&key);
        let (attempt, open) = smtp_client::deliver(&request, &ctx.tls, idle).await;
        if let Some(session) = open {
            let carried = if attempt.reused { carried + 1 } else { 1 };
            ctx.pool.put(&key, carried, session).await;
        }
        let results = attempt.results.map_err(|e| e.to_string());
        let link = Link {
            tls: &attempt.tls,
            origin: attempt.origin_told,
            reused: attempt.reused,
        };
        match record(ctx, id, target, pending, results, Some(&link), state) {
            Ok(()) => return,
            Err(e) => last_error = format!("{target}: {e}"),
        }
    }
    state.last_error = Some(last_error);
}

/// Logs and records one target's results; the error when the target
/// could not take the message at all (the next one is to be tried).
fn record(
    ctx: &Context,
    id: &QueueId,
    target: &Target,
    pending: &[String],
    results: Result<Vec<RcptResult>, String>,
    tls: Option<&Link>,
    state: &mut DeliveryState,
) -> Result<(), String> {
    let relay = target.to_string();
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            for rcpt in pending {
                log_result(ctx, id, rcpt, &relay, "deferred", &e, tls);
            }
            return Err(e);
        }
    };
    for (rcpt, result) in pending.iter().zip(results) {
        match result {
            RcptResult::Delivered(reply) => {
                log_result(ctx, id, rcpt, &relay, "sent", &reply, tls);
                state.delivered.push(rcpt.clone());
            }
            RcptResult::Deferred(reply) => {
                log_result(ctx, id, rcpt, &relay, "deferred", &reply, tls);
                state.last_error = Some(reply);
            }
            RcptResult::Failed(reply) => {
                log_result(ctx, id, rcpt, &relay, "failed", &reply, tls);
                state.failed.push((rcpt.clone(), reply));
            }
        }
    }
    Ok(())
}

/// Removes, quarantines or reschedules the message after an attempt.
async fn finish(
    ctx: &Context,
    id: &QueueId,
    entry: &Entry,
    mut state: DeliveryState,
    now: u64,
) -> Outcome {
    let spool = ctx.spool.clone();
    let task_id = id.clone();
    if !state.pending(&entry.envelope).is_empty() {
        let downstream = &ctx.config.downstream;
        state.attempts += 1;
        let wait = backoff(
            state.attempts,
            downstream.retry_min.0,
            downstream.retry_max.0,
        );
        state.next_attempt = now + wait.as_secs();
        let next = state.next_attempt;
        let saved =
            match tokio::task::spawn_blocking(move || spool.save_state(&task_id, &state)).await {
                // Deleted by the administrator meanwhile: nothing left to do.
                Ok(Err(SpoolError::NotFound(_))) => return Outcome::Done,
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
        if let Err(e) = saved {
            ctx.log
                .event("spool_error")
                .kv("queue_id", id)
                .kv("error", e)
                .emit();
        }
        return Outcome::Retry(next);
    }
    // Before its first attempt ended, a message has no state file.
    let may_have_state = !entry.fresh;
    if state.failed.is_empty() {
        match blocking(move || spool.remove_delivered(&task_id, may_have_state)).await {
            Ok(()) => {
                ctx.log.event("removed").kv("queue_id", id).emit();
                return Outcome::Done;
            }
            Err(e) => return keep_for_retry(ctx, id, state, now, e).await,
        }
    }
    // The recipients whose sender wants to hear of a failure (RFC 3461:
    // all but those given NOTIFY without FAILURE).
    let dsn = &entry.envelope.dsn;
    let notices: Vec<(String, String)> = (state.failed.iter())
        .filter(|(rcpt, _)| dsn.rcpt(rcpt).is_none_or(|p| p.wants_failure_notice()))
        .cloned()
        .collect();
    let verified = match notices.is_empty() {
        true => None,
        false => bounce_allowed(ctx, entry).await,
    };
    if let Some(verified) = verified {
        match queue_dsn(ctx, entry, &notices).await {
            Ok(dsn_id) => {
                let (spool, task_id) = (ctx.spool.clone(), id.clone());
                if let Err(e) =
                    blocking(move || spool.remove_delivered(&task_id, may_have_state)).await
                {
                    ctx.log
                        .event("spool_error")
                        .kv("queue_id", id)
                        .kv("error", e)
                        .emit();
                }
                ctx.log
                    .event("dsn")
                    .kv("queue_id", id)
                    .kv("dsn_id", &dsn_id)
                    .kv("to", &entry.envelope.from)
                    .kv("verified", verified)
                    .emit();
                return Outcome::Bounced(dsn_id);
            }
            Err(e) => ctx
                .log
                .event("spool_error")
                .kv("queue_id", id)
                .kv("error", e)
                .emit(),
        }
    }
    let failed: Vec<String> = state.failed.iter().map(|(r, _)| r.clone()).collect();
    quarantine(ctx, id, state, &entry.envelope.from, failed).await
}

/// How the sender was verified, when it may get a bounce: `delivery.dsn =
/// "verified"`, not the null sender, and SPF pass or an aligned DKIM pass.
async fn bounce_allowed(ctx: &Context, entry: &Entry) -> Option<String> {
    let env = &entry.envelope;
    if ctx.config.delivery.dsn != Dsn::Verified || env.from == "<>" {
        return None;
    }
    let sender = env.from.trim_start_matches('<').trim_end_matches('>');
    let helo = if env.helo.is_empty() {
        "unknown"
    } else {
        env.helo.as_str()
    };
    let (stored, max) = (entry.clone(), ctx.config.limits.max_header_size);
    let message = || async move {
        let read = tokio::task::spawn_blocking(move || {
            crate::message::intake::authentication_input(stored.open_message()?, max)
        });
        read.await.ok()?.ok()?
    };
    ctx.dns
        .sender_verified(
            env.client,
            helo,
            &ctx.config.server.hostname,
            sender,
            message,
        )
        .await
}

/// Queues the DSN (from the null sender to the original sender).
async fn queue_dsn(
    ctx: &Context,
    entry: &Entry,
    failed: &[(String, String)],
) -> Result<QueueId, String> {
    let hostname = &ctx.config.server.hostname;
    let envelope = crate::spool::Envelope {
        id: QueueId::generate(),
        arrival: crate::time::unix_now(),
        client: std::net::IpAddr::from([127, 0, 0, 1]),
        helo: hostname.clone(),
        from: "<>".into(),
        body_8bit: false,
        rcpts: vec![entry
            .envelope
            .from
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()],
        // The original sender may be a UTF-8 address.
        smtputf8: entry.envelope.smtputf8,
        dsn: Default::default(),
        client_name: None,
        esmtp: true,
    };
    // The original headers go back to the sender, within a bound.
    let stored = entry.clone();
    let headers = match tokio::task::spawn_blocking(move || stored.header_block(64 * 1024)).await {
        Ok(Ok(headers)) => headers,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(e) => return Err(e.to_string()),
    };
    let report = super::dsn::build(
        hostname,
        &entry.envelope,
        failed,
        &headers,
        envelope.id.as_str(),
    );
    let (spool, dsn_id) = (ctx.spool.clone(), envelope.id.clone());
    blocking(move || spool.commit(&envelope, &[&report])).await?;
    Ok(dsn_id)
}

/// Moves the message to the quarantine; on failure it stays queued.
async fn quarantine(
    ctx: &Context,
    id: &QueueId,
    state: DeliveryState,
    from: &str,
    failed: Vec<String>,
) -> Outcome {
    let (spool, task_id, task_state) = (ctx.spool.clone(), id.clone(), state.clone());
    match blocking(move || spool.quarantine(&task_id, &task_state)).await {
        Ok(()) => {
            ctx.log
                .event("quarantine")
                .kv("queue_id", id)
                .kv("from", from)
                .kv("to", crate::log::join_addresses(&failed))
                .kv("reason", quarantine_reason(&state))
                .kv(
                    "bounce",
                    "none (sender not verified, delivery.dsn = never, or NOTIFY without FAILURE)",
                )
                .emit();
            Outcome::Done
        }
        Err(e) => keep_for_retry(ctx, id, state, crate::time::unix_now(), e).await,
    }
}

/// Why a message is quarantined: the first permanent failure, else the
/// last error.
fn quarantine_reason(state: &DeliveryState) -> String {
    match (state.failed.first(), &state.last_error) {
        (Some((rcpt, why)), _) => format!("{rcpt}: {why}"),
        (None, Some(e)) => e.clone(),
        (None, None) => "permanent delivery failure".to_string(),
    }
}

/// The message could not be removed or moved: record what is known and
/// try again later, so nothing is stranded or delivered twice.
async fn keep_for_retry(
    ctx: &Context,
    id: &QueueId,
    mut state: DeliveryState,
    now: u64,
    error: String,
) -> Outcome {
    ctx.log
        .event("spool_error")
        .kv("queue_id", id)
        .kv("error", error)
        .emit();
    state.next_attempt = now + ctx.config.downstream.retry_min.0.as_secs();
    let next = state.next_attempt;
    let (spool, task_id) = (ctx.spool.clone(), id.clone());
    let _ = blocking(move || spool.save_state(&task_id, &state)).await;
    Outcome::Retry(next)
}

/// One `delivery` line; over SMTP/LMTP with `tls=` (the version, or `none`
/// and `tls_reason=`), `origin=` when the client was told, `reused=yes`
/// on a connection kept open.
fn log_result(
    ctx: &Context,
    id: &QueueId,
    rcpt: &str,
    relay: &str,
    status: &str,
    reply: &str,
    link: Option<&Link>,
) {
    let tls = link.map(|l| l.tls);
    ctx.log
        .event("delivery")
        .kv("queue_id", id)
        .kv("to", rcpt)
        .kv("relay", relay)
        .kv("status", status)
        .opt("tls", tls.map(Encryption::version))
        .opt("tls_reason", tls.and_then(Encryption::reason))
        .opt("origin", link.and_then(|l| l.origin))
        .opt("reused", link.filter(|l| l.reused).map(|_| "yes"))
        .kv("reply", reply)
        .emit();
}

/// What a connection to an SMTP or LMTP target got: its TLS, how the
/// original client was told (`xclient`, `xforward`), and whether it was
/// kept open from an earlier message.
struct Link<'a> {
    tls: &'a Encryption,
    origin: Option<&'static str>,
    reused: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let min = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(1, min, max), Duration::from_secs(60));
        assert_eq!(backoff(2, min, max), Duration::from_secs(120));
        assert_eq!(backoff(4, min, max), Duration::from_secs(480));
        assert_eq!(backoff(7, min, max), max);
        assert_eq!(backoff(200, min, max), max);
    }
}
