//! The recipient callout: asks the downstream whether a mailbox exists with
//! `MAIL FROM:<probe>`, `RCPT TO:<address>`, `RSET` (pipelined when
//! offered), on a connection kept open for the next probe; every probe is
//! bounded by `recipients.callout_timeout`. The downstream asked is the
//! one delivery would use for the address's domain (its
//! `[[downstream.route]]`, else `downstream.targets`). STARTTLS as for
//! delivery (`downstream.tls`): `required` and `verify` never probe in
//! plaintext.

use crate::config::{Config, Downstream, Target};
use crate::reload::FileError;
use crate::smtp::client::{self as smtp_client, ClientError, Extensions, Peer};
use crate::smtp::conn::Conn;
use crate::smtp::link::{Endpoint, Link};
use crate::tls::client::DownstreamTls;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What the downstream said about a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Exists,
    /// A 5xx to RCPT, with the downstream's reply.
    Missing(String),
    /// Nobody can say now (unreachable, 4xx, timeout), and why.
    Unknown(String),
}

/// What a reply to the probe's RCPT says. Only "no such mailbox" replies
/// (550, 551, 553 with a 5.1.x status, or none) mean the address does not
/// exist; a full mailbox, a policy refusal of the probe or anything else is
/// not an answer about the address.
fn classify(code: u16, text: &str) -> Probe {
    let shown = format!("{code} {text}");
    let status = text.split(' ').next().unwrap_or("");
    let has_status =
        status.split('.').count() == 3 && status.starts_with(|c: char| c.is_ascii_digit());
    match code {
        200..=299 => Probe::Exists,
        550 | 551 | 553 if !has_status || status.starts_with("5.1.") => Probe::Missing(shown),
        _ => Probe::Unknown(shown),
    }
}

/// An open probe connection.
struct Open {
    conn: Conn<Link>,
    ext: Extensions,
    since: Instant,
    /// Whom it is open to.
    target: Target,
}

/// Idle connections older than this are not reused.
const IDLE_REUSE: Duration = Duration::from_secs(30);
/// Idle connections kept for reuse.
const IDLE_MAX: usize = 4;

pub struct Callout {
    /// The targets and routes of delivery.
    downstream: Downstream,
    helo: String,
    sender: String,
    connect_timeout: Duration,
    timeout: Duration,
    tls: DownstreamTls,
    idle: Mutex<Vec<Open>>,
}

/// Where a target listens, and whether it speaks LMTP; `None` for a
/// maildir (nobody to ask).
fn endpoint(target: &Target) -> Option<(Endpoint<'_>, bool)> {
    match target {
        Target::Smtp { host, port } => Some((Endpoint::Tcp { host, port: *port }, false)),
        Target::Lmtp { host, port } => Some((Endpoint::Tcp { host, port: *port }, true)),
        Target::LmtpUnix(path) => Some((Endpoint::Unix(path), true)),
        Target::Maildir(_) => None,
    }
}

/// How long a reused connection may take to answer before a fresh one is
/// tried instead.
const REUSED_TIMEOUT: Duration = Duration::from_secs(2);

impl Callout {
    /// Fails when `downstream.tls = "verify"` cannot read its CA
    /// certificates.
    pub fn new(config: &Config) -> Result<Callout, FileError> {
        let r = &config.recipients;
        Ok(Callout {
            downstream: config.downstream.clone(),
            helo: config.server.hostname.clone(),
            sender: r.probe_sender.clone(),
            connect_timeout: config.downstream.connect_timeout.0,
            timeout: r.callout_timeout.0,
            tls: DownstreamTls::load(&config.downstream)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Asks whether `address` exists.
    pub async fn probe(&self, address: &str) -> Probe {
        match tokio::time::timeout(self.timeout, self.probe_inner(address)).await {
            Ok(probe) => probe,
            Err(_) => Probe::Unknown("callout timed out".into()),
        }
    }

    async fn probe_inner(&self, address: &str) -> Probe {
        let domain = crate::smtp::address::routing_domain(address);
        let targets: Vec<&Target> = (self.downstream.targets_for(&domain).iter())
            .filter(|t| endpoint(t).is_some())
            .collect();
        let reused = {
            let mut idle = self.idle.lock().await;
            idle.retain(|o| o.since.elapsed() < IDLE_REUSE);
            let mine = idle.iter().rposition(|o| targets.contains(&&o.target));
            mine.map(|i| idle.swap_remove(i))
        };
        if let Some(open) = reused {
            // A reused connection may have been closed by the downstream;
            // then ask on a fresh one.
            let quick = self.timeout.min(REUSED_TIMEOUT);
            if let Ok(Ok(probe)) = tokio::time::timeout(quick, self.ask(open, address)).await {
                return probe;
            }
        }
        let mut last = String::from("no smtp:// or lmtp:// target");
        // Each target gets its share of the probe's time.
        let share = self.timeout / (targets.len().max(1) as u32);
        for target in targets.iter().copied() {
            let Some((endpoint, lmtp)) = endpoint(target) else {
                continue;
            };
            let peer = Peer {
                endpoint,
                lmtp,
                helo: &self.helo,
                connect_timeout: self.connect_timeout.min(share),
                command_timeout: self.timeout,
            };
            match smtp_client::open(&peer, &self.tls).await {
                Ok(session) => {
                    let open = Open {
                        conn: session.conn,
                        ext: session.ext,
                        since: Instant::now(),
                        target: target.clone(),
                    };
                    return self
                        .ask(open, address)
                        .await
                        .unwrap_or_else(|e| Probe::Unknown(e.to_string()));
                }
                Err(failed) => last = format!("{endpoint}: {}", failed.error),
            }
        }
        Probe::Unknown(last)
    }

    /// One probe on an open connection, which goes back to the pool if it
    /// is still usable.
    async fn ask(&self, mut open: Open, address: &str) -> Result<Probe, ClientError> {
        let t = self.timeout;
        // A UTF-8 address is asked about only with SMTPUTF8: without it, a
        // refusal would say nothing about the mailbox.
        let utf8 = match (address.is_ascii(), open.ext.has("SMTPUTF8")) {
            (true, _) => "",
            (false, true) => " SMTPUTF8",
            (false, false) => {
                let why = "the downstream does not offer SMTPUTF8 to ask about a UTF-8 address";
                return Ok(Probe::Unknown(why.into()));
            }
        };
        let lines = [
            format!("MAIL FROM:<{}>{utf8}", self.sender),
            format!("RCPT TO:<{address}>"),
            "RSET".to_string(),
        ];
        let mut replies = Vec::with_capacity(3);
        if open.ext.has("PIPELINING") {
            for line in &lines {
                open.conn.write(line.as_bytes());
                open.conn.write(b"\r\n");
            }
            open.conn.flush(t).await?;
            for _ in &lines {
                replies.push(smtp_client::read_reply(&mut open.conn, t).await?);
            }
        } else {
            for line in &lines {
                open.conn.write(line.as_bytes());
                open.conn.write(b"\r\n");
                open.conn.flush(t).await?;
                replies.push(smtp_client::read_reply(&mut open.conn, t).await?);
            }
        }
        let (mail, rcpt, rset) = (&replies[0], &replies[1], &replies[2]);
        let probe = if !mail.is_ok() {
            Probe::Unknown(format!("probe sender refused: {} {}", mail.code, mail.text))
        } else {
            classify(rcpt.code, &rcpt.text)
        };
        if rset.is_ok() {
            open.since = Instant::now();
            let mut idle = self.idle.lock().await;
            if idle.len() < IDLE_MAX {
                idle.push(open);
            }
        }
        Ok(probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mailbox_errors_mean_missing() {
        assert_eq!(classify(250, "2.1.5 Ok"), Probe::Exists);
        assert!(matches!(
            classify(550, "5.1.1 <x@example.com>: User unknown"),
            Probe::Missing(_)
        ));
        assert!(matches!(classify(550, "User unknown"), Probe::Missing(_)));
        assert!(matches!(
            classify(553, "5.1.3 bad address"),
            Probe::Missing(_)
        ));
        assert!(matches!(
            classify(552, "5.2.2 Mailbox full"),
            Probe::Unknown(_)
        ));
        assert!(matches!(
            classify(554, "5.7.1 Access denied"),
            Probe::Unknown(_)
        ));
        assert!(matches!(
            classify(550, "5.7.1 Client host rejected"),
            Probe::Unknown(_)
        ));
        assert!(matches!(
            classify(450, "4.1.1 try later"),
            Probe::Unknown(_)
        ));
    }
}
