//! A reload (SIGHUP, `mxguard reload`): the configuration file is read
//! again. If it does not validate, nothing changes: the error is logged
//! (`event=reload status=failed`, with its `file:line: key`) and the
//! server goes on as it was. Otherwise the services are built anew from it
//! — relay domains, recipient table and lists, checks and their actions,
//! DNSBLs, abuse settings, downstream targets, limits, TLS certificates —
//! the log is reopened (so logrotate works), the SMTP listeners are made
//! to match `server.listen` and `server.proxy_listen`, and new connections get the new services
//! while those in progress finish with the ones they began with. What only
//! a restart can change (the spool, the state backend, the metrics and
//! policy listeners, the control socket's group) is named in the log line
//! as `restart_needed=`.

use crate::config::{Config, ConfigError};
use crate::delivery;
use crate::listeners::{ConnectionCaps, Listeners};
use crate::services::{Live, Services, Shared};
use std::path::PathBuf;
use std::sync::Arc;

/// What a reload did.
#[derive(Debug)]
pub struct Outcome {
    /// `Err` with the reason when nothing changed.
    pub result: Result<(), String>,
    /// Keys that changed but need a restart to take effect.
    pub restart_needed: Vec<&'static str>,
    /// What went wrong without stopping the reload (an address that could
    /// not be bound, a log that could not be reopened).
    pub problems: Vec<String>,
}

impl Outcome {
    /// The answer of the control socket: `ok` or `error …`, then one line
    /// per note.
    pub fn answer(&self) -> String {
        let mut out = match &self.result {
            Ok(()) => "ok reloaded\n".to_string(),
            Err(why) => format!("error reload failed: {why}\n"),
        };
        if !self.restart_needed.is_empty() {
            out.push_str(&format!(
                "restart needed for: {}\n",
                self.restart_needed.join(", ")
            ));
        }
        for problem in &self.problems {
            out.push_str(problem);
            out.push('\n');
        }
        out
    }
}

/// Where the configuration comes from, and what a reload changes.
pub struct Reloader {
    /// The file given to `serve`; `None`: the embedded default.
    path: Option<PathBuf>,
    live: Arc<Live>,
    shared: Shared,
    caps: Arc<ConnectionCaps>,
    /// `None` in `policy-server` mode (no SMTP listener).
    listeners: Option<tokio::sync::Mutex<Listeners>>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        live: Arc<Live>,
        shared: Shared,
        caps: Arc<ConnectionCaps>,
        listeners: Option<Listeners>,
    ) -> Reloader {
        Reloader {
            path,
            live,
            shared,
            caps,
            listeners: listeners.map(tokio::sync::Mutex::new),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    fn load(&self) -> Result<Config, ConfigError> {
        match &self.path {
            Some(path) => Config::load(path),
            None => Config::embedded_default(),
        }
    }

    /// Binds the SMTP listeners of the configuration in force (at start).
    pub async fn listen(&self) -> Vec<crate::listeners::BindError> {
        let Some(listeners) = &self.listeners else {
            return Vec::new();
        };
        let addrs = crate::listeners::Listen::all(&self.live.current().config.server);
        listeners.lock().await.apply(&addrs).await
    }

    /// Stops listening (an orderly stop).
    pub async fn close_listeners(&self) {
        if let Some(listeners) = &self.listeners {
            listeners.lock().await.close_all().await;
        }
    }

    /// Reads the configuration again and applies it; logs and returns the
    /// outcome.
    pub async fn reload(&self) -> Outcome {
        let _one = self.busy.lock().await;
        let outcome = self.apply().await;
        let log = &self.shared.log;
        let line = log
            .event("reload")
            .kv(
                "status",
                if outcome.result.is_ok() {
                    "ok"
                } else {
                    "failed"
                },
            )
            .opt("error", outcome.result.as_ref().err())
            .opt(
                "restart_needed",
                (!outcome.restart_needed.is_empty()).then(|| outcome.restart_needed.join(",")),
            );
        let line = outcome
            .problems
            .iter()
            .fold(line, |line, problem| line.kv("problem", problem));
        line.emit();
        outcome
    }

    async fn apply(&self) -> Outcome {
        let failed = |why: String| Outcome {
            result: Err(why),
            restart_needed: Vec::new(),
            problems: Vec::new(),
        };
        let old = self.live.current();
        let loaded = self.load();
        // First of all, a new log file (logrotate's HUP), whatever else
        // goes wrong: as the new file says if it loads, else as before.
        let log_config = loaded.as_ref().map_or(&old.config.log, |c| &c.log);
        let mut problems = Vec::new();
        if let Err(e) = self.shared.log.reopen(log_config) {
            problems.push(format!("log: cannot reopen: {e}"));
        }
        let config = match loaded {
            Ok(config) => Arc::new(config),
            Err(e) => return failed(e.to_string()),
        };
        let restart_needed = needs_restart(&old.config, &config);
        let dns = if differs(&old.config.dns, &config.dns) {
            match crate::dns::Dns::new(&config.dns) {
                Ok(dns) => Arc::new(dns),
                Err(e) => return failed(e.to_string()),
            }
        } else {
            old.policy.checks.dns.clone()
        };
        // The same certificates as before: the same store, its files read
        // again (sessions that upgrade later get what is current).
        let tls = match (&old.tls, differs(&old.config.tls, &config.tls)) {
            (Some(tls), false) => {
                tls.reload(&self.shared.log).await;
                Some(tls.clone())
            }
            _ => None,
        };
        let services = match Services::new(config.clone(), dns.clone(), &self.shared, tls) {
            Ok(services) => services,
            Err(e) => return failed(e.to_string()),
        };
        let downstream_tls = match crate::tls::client::DownstreamTls::load(&config.downstream) {
            Ok(tls) => tls,
            Err(e) => return failed(e.to_string()),
        };
        // Lists not tested yet (new ones) are tested before they can
        // refuse anyone, as at start.
        let untested = config.dnsbl.iter().chain(&config.rhsbl).any(|zone| {
            matches!(
                self.shared.health.get(&zone.zone),
                crate::dns::dnsbl::Health::Unknown(_)
            )
        });
        if untested {
            crate::dns::dnsbl::test_and_share(
                &dns,
                &config,
                &self.shared.health,
                &self.shared.state,
                &self.shared.log,
            )
            .await;
        }
        self.shared
            .delivery
            .reconfigure(Arc::new(delivery::Context {
                config: config.clone(),
                spool: self.shared.spool.clone(),
                log: self.shared.log.clone(),
                tls: downstream_tls,
                dns,
                pool: delivery::pool::Pool::new(&config.downstream),
            }));
        self.caps.set_limits(
            config.limits.max_connections,
            config.limits.max_connections_per_client,
        );
        if let (Some(tls), true) = (&services.tls, differs(&old.config.tls, &config.tls)) {
            tls.warn(&self.shared.log);
        }
        self.live.replace(services);
        if let Some(listeners) = &self.listeners {
            let unbound = listeners
                .lock()
                .await
                .apply(&crate::listeners::Listen::all(&config.server))
                .await;
            problems.extend(unbound.iter().map(ToString::to_string));
        }
        Outcome {
            result: Ok(()),
            restart_needed,
            problems,
        }
    }
}

/// Whether two configuration values differ (by what they print as).
fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// The keys that changed between `old` and `new` and that only a restart
/// applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.spool.dir != new.spool.dir {
        keys.push("spool.dir");
    }
    if differs(&old.state, &new.state) {
        keys.push("state");
    }
    if old.metrics.listen != new.metrics.listen || differs(&old.metrics.allow, &new.metrics.allow) {
        keys.push("metrics");
    }
    if differs(&old.policy_server, &new.policy_server) {
        keys.push("policy_server");
    }
    if differs(&old.control, &new.control) {
        keys.push("control.group");
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, "test.toml", std::path::Path::new("/tmp")).unwrap()
    }

    #[test]
    fn what_only_a_restart_changes_is_named() {
        let old = config("[relay]\ndomains = [\"a.test\"]\n");
        let same_kind = config("[relay]\ndomains = [\"b.test\"]\n[limits]\nmax_recipients = 5\n");
        assert!(needs_restart(&old, &same_kind).is_empty());
        let moved = config(
            "[spool]\ndir = \"/var/other\"\n[state]\nbackend = \"redis://127.0.0.1:6379\"\n[metrics]\nlisten = \"127.0.0.1:9425\"\n",
        );
        assert_eq!(
            needs_restart(&old, &moved),
            ["spool.dir", "state", "metrics"]
        );
    }

    #[test]
    fn the_answer_says_what_happened() {
        let outcome = Outcome {
            result: Ok(()),
            restart_needed: vec!["spool.dir"],
            problems: vec!["server.listen: cannot listen on 192.0.2.1:25: x".into()],
        };
        assert_eq!(
            outcome.answer(),
            "ok reloaded\nrestart needed for: spool.dir\nserver.listen: cannot listen on 192.0.2.1:25: x\n"
        );
        let failed = Outcome {
            result: Err("mxguard.toml:3: relay.domains: bad".into()),
            restart_needed: Vec::new(),
            problems: Vec::new(),
        };
        assert_eq!(
            failed.answer(),
            "error reload failed: mxguard.toml:3: relay.domains: bad\n"
        );
    }
}
