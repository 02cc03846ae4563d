//! `/readyz`: whether this mxguard can do its job now. Each problem is one
//! line of the answer; none is ready. Checked on every request:
//!
//! - `stopping`: the server is draining its sessions to stop;
//! - `listeners`: every SMTP listener is bound (counted from their
//!   `event=listen` and `event=unlisten` lines; the policy listener is
//!   bound before the metrics listener starts);
//! - `spool`: a probe file can be created, fsynced and removed in
//!   `<spool.dir>/tmp/` (off the async threads);
//! - `state`: the state backend answers, unless `state.on_error = "open"`
//!   (then a failing backend refuses no one);
//! - `queue`: not stuck, that is not both a message older than
//!   `metrics.ready_max_queue_age` and no delivery succeeded for as long.

use super::Metrics;
use crate::config::OnStateError;
use crate::services::Services;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What keeps mxguard from being ready; empty when it is. `smtp`: it
/// should have the SMTP listeners of `server.listen` and
/// `server.proxy_listen` (not in `policy-server` mode).
pub async fn problems(svc: &Services, metrics: &Metrics, smtp: bool) -> Vec<String> {
    let wanted = if smtp {
        svc.config.server.listen.len() + svc.config.server.proxy_listen.len()
    } else {
        0
    };
    let bound = metrics.smtp_listeners();
    let listeners =
        (bound < wanted).then(|| format!("listeners: {bound} of {wanted} SMTP listeners bound"));
    let stopping = (svc.phase.phase() != crate::lifecycle::Phase::Serving)
        .then(|| "stopping: draining the sessions".to_string());
    [
        stopping,
        listeners,
        spool_problem(&svc.config.spool.dir).await,
        state_problem(svc).await,
        queue_problem(svc, metrics).await,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Probe files made so far, for unique names.
static PROBES: AtomicU64 = AtomicU64::new(0);

async fn spool_problem(spool: &Path) -> Option<String> {
    let tmp = spool.join("tmp");
    let dir = tmp.clone();
    let probed = tokio::task::spawn_blocking(move || probe(&dir)).await;
    match probed {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("spool: cannot write {}: {e}", tmp.display())),
        Err(e) => Some(format!("spool: the probe of {} failed: {e}", tmp.display())),
    }
}

/// Creates, writes, fsyncs and removes a file in `dir` (blocking).
fn probe(dir: &Path) -> std::io::Result<()> {
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("readyz.{}.{n}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let written = file.write_all(b"ready\n").and_then(|()| file.sync_all());
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

async fn state_problem(svc: &Services) -> Option<String> {
    if svc.config.state.on_error == OnStateError::Open {
        return None;
    }
    let answered = svc.abuse.state.store.get("readyz").await;
    answered.err().map(|e| format!("state: {e}"))
}

async fn queue_problem(svc: &Services, metrics: &Metrics) -> Option<String> {
    let limit = svc.config.metrics.ready_max_queue_age.0.as_secs();
    if limit == 0 {
        return None;
    }
    let spool = svc.spool.clone();
    let queue = match tokio::task::spawn_blocking(move || spool.list()).await {
        Ok(Ok(queue)) => queue,
        Ok(Err(e)) => return Some(format!("queue: {e}")),
        Err(e) => return Some(format!("queue: the listing failed: {e}")),
    };
    let now = crate::time::now();
    let oldest = queue.iter().map(|id| id.age(now).as_secs()).max()?;
    let since_delivery = metrics
        .last_delivery()
        .map(|at| crate::time::unix_now().saturating_sub(at));
    let stuck = oldest > limit && since_delivery.is_none_or(|s| s > limit);
    stuck.then(|| {
        format!(
            "queue: a message has waited more than {limit}s and no delivery succeeded for as long"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_leaves_nothing_and_fails_where_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        probe(dir.path()).unwrap();
        probe(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let err = probe(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
