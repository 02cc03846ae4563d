//! The checks of one SMTP session: each stage's checks start as soon as
//! their input is known (connect at accept, HELO at HELO, MAIL at MAIL) and
//! run in the background while the conversation goes on; the session asks
//! for a decision over the stages it needs when it must answer.

use super::stages::Checks;
use crate::smtp::address::Path;
use crate::verdict::{decide, CheckResult, Decision};
use std::collections::HashSet;
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

    async fn finish(&mut self) -> &[CheckResult] {
        if let Slot::Running(handle) = self {
            // A check task that failed (it should not) counts as no result.
            let results = handle.await.unwrap_or_default();
            *self = Slot::Done(results);
        }
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

/// Which stages a decision covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upto {
    Helo,
    Mail,
}

pub struct SessionChecks {
    checks: Arc<Checks>,
    client: IpAddr,
    /// False for trusted and excepted clients: the client checks are skipped.
    enabled: bool,
    connect: Slot,
    helo: Slot,
    mail: Slot,
    /// Warnings already logged (check and reply), so each is logged once
    /// per session; a new sender's would-reject has another reply.
    warned: HashSet<String>,
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
            warned: HashSet::new(),
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
        if self.enabled {
            self.mail = Slot::start(self.checks.clone().mail(
                self.client,
                helo.to_string(),
                from.clone(),
            ));
        }
    }

    /// The transaction ended (RSET, end of DATA): MAIL results go.
    pub fn end_transaction(&mut self) {
        self.mail.clear();
    }

    /// The decision over the connect checks alone (for the tarpit); its
    /// warnings are not marked as logged.
    pub async fn connect_decision(&mut self) -> Decision {
        let policy = &self.checks.config.policy;
        let results = self.connect.finish().await;
        decide(
            results,
            policy.mode,
            policy.reject_score,
            &self.client.to_string(),
        )
    }

    /// Whether a DNS allow list (a `[[dnsbl]]` with a negative weight)
    /// lists the client.
    pub async fn allow_listed(&mut self) -> bool {
        allow_listed(self.connect.finish().await)
    }

    /// Waits for the stages up to `upto` and decides over their results.
    /// Returns the decision and the warnings not logged before.
    pub async fn decide(&mut self, upto: Upto) -> (Decision, Vec<crate::verdict::Refusal>) {
        let mut results: Vec<CheckResult> = self.connect.finish().await.to_vec();
        results.extend_from_slice(self.helo.finish().await);
        if upto == Upto::Mail {
            results.extend_from_slice(self.mail.finish().await);
        }
        let policy = &self.checks.config.policy;
        let mut decision = decide(
            &results,
            policy.mode,
            policy.reject_score,
            &self.client.to_string(),
        );
        let fresh: Vec<crate::verdict::Refusal> = std::mem::take(&mut decision.warnings)
            .into_iter()
            .filter(|w| self.warned.insert(format!("{} {}", w.check, w.reply)))
            .collect();
        (decision, fresh)
    }
}

/// Whether a DNS allow list (a `[[dnsbl]]` with a negative weight) lists
/// the client, among these results.
pub fn allow_listed(results: &[CheckResult]) -> bool {
    results.iter().any(|r| {
        r.check.starts_with("dnsbl:")
            && r.setting.weight.is_some_and(|w| w < 0.0)
            && matches!(r.outcome, crate::verdict::Outcome::Hit(_))
    })
}

impl Drop for SessionChecks {
    fn drop(&mut self) {
        self.connect.clear();
        self.helo.clear();
        self.mail.clear();
    }
}
