//! `mxguard queue list | show ID | flush | delete ID`: the administrator's
//! view of the spool, like `mailq`, `postcat -q`, `postqueue -f` and
//! `postsuper -d`. Reads the files directly; flush asks the running server
//! through the control socket.

use crate::spool::{QueueId, Spool, SpoolError};
use std::fmt::Write as _;

/// A queue command that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("`{0}` is not a queue ID (20 hexadecimal digits, as `mxguard queue list` shows)")]
    BadId(String),
    #[error("{0}")]
    Spool(#[from] SpoolError),
    #[error("control socket: {0}")]
    Control(std::io::Error),
}

fn parse_id(text: &str) -> Result<QueueId, QueueError> {
    QueueId::parse(text).ok_or_else(|| QueueError::BadId(text.to_string()))
}

fn date(unix: u64) -> String {
    crate::time::iso8601_unix(unix)
}

/// One paragraph per message: ID, size, arrival, sender, then recipients
/// with their state, and the last error.
pub fn list(spool: &Spool) -> Result<String, QueueError> {
    let mut out = String::new();
    let ids = spool.list()?;
    for id in &ids {
        let entry = match spool.read(id) {
            Ok(e) => e,
            // Delivered while we were listing.
            Err(SpoolError::NotFound(_)) => continue,
            Err(e) => {
                let _ = writeln!(out, "{id}  (unreadable: {e})\n");
                continue;
            }
        };
        let env = &entry.envelope;
        let _ = writeln!(
            out,
            "{id}  {:>9}  {}  {}",
            entry.size,
            date(env.arrival),
            env.from
        );
        for rcpt in &env.rcpts {
            let status = if entry.state.delivered.contains(rcpt) {
                "delivered"
            } else if entry.state.failed.iter().any(|(r, _)| r == rcpt) {
                "failed"
            } else {
                "pending"
            };
            let _ = writeln!(out, "    {rcpt}  ({status})");
        }
        if let Some(e) = &entry.state.last_error {
            let _ = writeln!(out, "    last error: {e}");
        }
        if entry.state.attempts > 0 {
            let _ = writeln!(
                out,
                "    attempts: {}, next: {}",
                entry.state.attempts,
                date(entry.state.next_attempt)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "-- {} message(s) in the queue", ids.len());
    Ok(out)
}

/// The whole queue file (envelope and message) and its delivery state.
pub fn show(spool: &Spool, id: &str) -> Result<Vec<u8>, QueueError> {
    let id = parse_id(id)?;
    let entry = match spool.read(&id) {
        Err(SpoolError::NotFound(_)) => spool.read_quarantined(&id)?,
        other => other?,
    };
    let file = std::fs::read(&entry.path).map_err(|source| {
        QueueError::Spool(SpoolError::Io {
            path: entry.path.display().to_string(),
            source,
        })
    })?;
    let body = (entry.body as usize).min(file.len());
    let mut out = file[..body].to_vec();
    let state = entry.state.render();
    if !state.is_empty() {
        out.extend_from_slice(b"-- delivery state\n");
        out.extend_from_slice(state.as_bytes());
    }
    out.extend_from_slice(b"-- message\n");
    out.extend_from_slice(&file[body..]);
    Ok(out)
}

/// Asks the running server to try every message now. Without a running
/// server, marks every message due, for the next start.
pub fn flush(spool: &Spool) -> Result<String, QueueError> {
    match crate::control::request(&spool.control_socket(), "flush").map_err(QueueError::Control)? {
        Some(answer) if answer == "ok" => Ok("queue flush requested".to_string()),
        Some(answer) => Ok(format!("server answered: {answer}")),
        None => {
            for id in spool.list()? {
                if let Ok(mut entry) = spool.read(&id) {
                    entry.state.next_attempt = 0;
                    spool.save_state(&id, &entry.state)?;
                }
            }
            Ok("mxguard is not running: every message is due at its next start".to_string())
        }
    }
}

/// Removes one message from the queue.
pub fn delete(spool: &Spool, id: &str) -> Result<String, QueueError> {
    let id = parse_id(id)?;
    spool.remove(&id)?;
    Ok(format!("{id}: deleted"))
}
