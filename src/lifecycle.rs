//! The server's phase, as every connection sees it: serving; draining
//! (SIGTERM or SIGINT: no new connections, each session may finish the
//! mail transaction it is in, then hears `421 4.3.2`); stopping (the drain
//! time is up, or a second signal came: every session hears `421 4.3.2`
//! now). One [`Lifecycle`] is the switch, any number of [`Watch`]es read it.

use tokio::sync::watch;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    Draining,
    Stopping,
}

/// The switch, held by the server.
pub struct Lifecycle {
    tx: watch::Sender<Phase>,
}

/// What a connection reads the phase through.
#[derive(Clone)]
pub struct Watch {
    rx: watch::Receiver<Phase>,
}

impl Lifecycle {
    pub fn new() -> Lifecycle {
        Lifecycle {
            tx: watch::Sender::new(Phase::Serving),
        }
    }

    /// Moves to `phase` (never back).
    pub fn enter(&self, phase: Phase) {
        self.tx.send_if_modified(|now| {
            let later = matches!(
                (*now, phase),
                (Phase::Serving, Phase::Draining | Phase::Stopping)
                    | (Phase::Draining, Phase::Stopping)
            );
            if later {
                *now = phase;
            }
            later
        });
    }

    pub fn watch(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

impl Watch {
    /// A watch that stays in [`Phase::Serving`] (sessions without a
    /// server: the property tests, the fuzz target).
    pub fn serving() -> Watch {
        let (tx, rx) = watch::channel(Phase::Serving);
        // The sender is gone: the value stays.
        drop(tx);
        Watch { rx }
    }

    pub fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    /// Waits until the phase is past `phase`; forever when it never will
    /// be (the switch is gone).
    pub async fn past(&mut self, phase: Phase) {
        let rank = |p: Phase| p as u8;
        if self
            .rx
            .wait_for(|now| rank(*now) > rank(phase))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward_and_watchers_see_them() {
        let life = Lifecycle::new();
        let mut watch = life.watch();
        assert_eq!(watch.phase(), Phase::Serving);
        life.enter(Phase::Draining);
        watch.past(Phase::Serving).await;
        assert_eq!(watch.phase(), Phase::Draining);
        life.enter(Phase::Serving);
        assert_eq!(watch.phase(), Phase::Draining, "never back");
        life.enter(Phase::Stopping);
        watch.past(Phase::Draining).await;
        assert_eq!(watch.phase(), Phase::Stopping);
        let idle = Watch::serving();
        assert_eq!(idle.phase(), Phase::Serving);
    }
}
