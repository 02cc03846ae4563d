//! The checks of one SMTP session: each stage's checks start as soon as
//! their input is known (connect at accept, HELO at HELO, MAIL at MAIL) and
//! run in the background while the conversation goes on; the pipeline
//! waits for the stages it needs when the session must answer
//! ([`Evidence`]). The transaction's SPF verdict is kept for DMARC at the
//! end of DATA, which thus judges with the result the MAIL check saw.

use super::checks::Checks;
use super::pipeline::{Evidence, Upto};
use super::sender::spf_sender;
use crate::dns::spf::{MailFromSpf, SpfOnce};
use crate::smtp::address::Path;
use crate::verdict::CheckResult;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// One stage's checks: not started, running, or finished.
///
/// A running stage is a task whose lookups live in a box of their own: a
/// finished task's memory stays allocated until its handle is read, and an
/// idle connection keeps its handles; boxed, what stays is the task's small
/// header and the results, not the lookups' state (several KiB).
enum Slot {
    Empty,
    Running(JoinHandle<Vec<CheckResult>>),
    Done(Vec<CheckResult>),
}

impl Slot {
    fn start(future: impl std::future::Future<Output = Vec<CheckResult>> + Send + 'static) -> Slot {
        Slot::Running(tokio::spawn(Box::pin(future)))
    }

    /// Waits for a running stage.
    async fn finish(&mut self) {
        if let Slot::Running(handle) = self {
            // A check task that failed (it should not) counts as no result.
            let results = handle.await.unwrap_or_default();
            *self = Slot::Done(results);
        }
    }

    /// The results of a finished stage (none while running).
    fn done(&self) -> &[CheckResult] {
        match self {
            Slot::Done(results) => results,
            _ => &[],
        }
    }

    fn clear(&mut self) {
        if let Slot::Running(handle) = self {
            handle.abort();
        }
        *self = Slot::Empty;
    }
}

pub struct SessionChecks {
    checks: Arc<Checks>,
    client: IpAddr,
    /// False for trusted and excepted clients: the client checks are skipped.
    enabled: bool,
    connect: Slot,
    helo: Slot,
    mail: Slot,
    /// The transaction's HELO name and SPF identity, and its SPF verdict.
    identity: Option<(String, String)>,
    spf: Arc<SpfOnce>,
}

impl SessionChecks {
    /// Starts the connect checks unless the client is exempt.
    pub fn start(checks: Arc<Checks>, client: IpAddr, enabled: bool) -> SessionChecks {
        let connect = if enabled && checks.has_connect_checks() {
            Slot::start(checks.clone().connect(client))
        } else {
            Slot::Empty
        };
        SessionChecks {
            checks,
            client,
            enabled,
            connect,
            helo: Slot::Empty,
            mail: Slot::Empty,
            identity: None,
            spf: Arc::default(),
        }
    }

    pub fn on_helo(&mut self, helo: &str) {
        self.helo.clear();
        self.mail.clear();
        if self.enabled {
            self.helo = Slot::start(self.checks.clone().helo(self.client, helo.to_string()));
        }
    }

    pub fn on_mail(&mut self, helo: &str, from: &Path) {
        self.mail.clear();
        self.spf = Arc::default();
        self.identity = Some((helo.to_string(), spf_sender(from, helo)));
        if self.enabled {
            self.mail = Slot::start(self.checks.clone().mail(
                self.client,
                helo.to_string(),
                from.clone(),
                self.spf.clone(),
            ));
        }
    }

    /// The last transaction's SPF identity and verdict: the one its MAIL
    /// check saw, or evaluated now (the check off, the client exempt).
    pub async fn spf(&self, our_hostname: &str) -> Option<MailFromSpf> {
        let (helo, sender) = self.identity.as_ref()?;
        let dns = &self.checks.dns;
        let verdict = self
            .spf
            .mail_from(dns, self.client, helo, our_hostname, sender)
            .await;
        Some(MailFromSpf {
            helo: helo.clone(),
            sender: sender.clone(),
            verdict,
        })
    }

    /// The transaction ended (RSET, end of DATA): MAIL results go.
    pub fn end_transaction(&mut self) {
        self.mail.clear();
    }
}

impl Evidence for SessionChecks {
    /// Waits for the stages up to `upto` and gives their results.
    async fn results(&mut self, upto: Upto) -> Vec<&CheckResult> {
        self.connect.finish().await;
        if upto >= Upto::Helo {
            self.helo.finish().await;
        }
        if upto >= Upto::Mail {
            self.mail.finish().await;
        }
        let mut results: Vec<&CheckResult> = self.connect.done().iter().collect();
        if upto >= Upto::Helo {
            results.extend(self.helo.done());
        }
        if upto >= Upto::Mail {
            results.extend(self.mail.done());
        }
        results
    }
}

impl Drop for SessionChecks {
    fn drop(&mut self) {
        self.connect.clear();
        self.helo.clear();
        self.mail.clear();
    }
}
