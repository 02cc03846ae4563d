//! The abuse-defense sections of the configuration: `[abuse]` (pregreet,
//! tarpit), `[ban]` (the built-in fail2ban), `[greylist]` and `[state]`
//! (where shared state lives), with their defaults.

use super::duration::HumanDuration;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

fn secs(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(n))
}

/// `[abuse]`: the connection-time defenses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Abuse {
    /// How long to wait, before the banner, for a client that talks first
    /// (postscreen's pregreet test); `"0s"` disables it.
    pub greet_wait: HumanDuration,
    /// A client that waited politely skips the wait for this long.
    pub greet_pass_ttl: HumanDuration,
    /// A client whose connect score is above this is tarpitted (unset: no
    /// score-based tarpit).
    pub tarpit_score: Option<f64>,
    /// Tarpit clients that match a check in warn mode too.
    pub tarpit_on_warn: bool,
    /// How long each reply to a tarpitted client is held back.
    pub tarpit_delay: HumanDuration,
    /// Tarpitted connections at once; beyond it, such clients are served
    /// at full speed (`event=tarpit_full`), so a flood never holds every
    /// connection slot and a check in warn mode never costs a client its
    /// mail.
    pub tarpit_max: usize,
}

impl Default for Abuse {
    fn default() -> Self {
        Abuse {
            greet_wait: HumanDuration(Duration::from_secs(1)),
            greet_pass_ttl: secs(86_400),
            tarpit_score: None,
            tarpit_on_warn: false,
            tarpit_delay: secs(5),
            tarpit_max: 100,
        }
    }
}

impl Abuse {
    /// Whether any tarpit trigger is configured.
    pub fn tarpit_enabled(&self) -> bool {
        self.tarpit_score.is_some() || self.tarpit_on_warn
    }
}

/// `[ban]`: offences per client address, and the bans they earn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ban {
    /// Offences within `find_time` that earn a ban (0 disables banning).
    pub max_retry: u32,
    pub find_time: HumanDuration,
    /// The first ban; each repeat doubles it up to `max_ban_time`.
    pub ban_time: HumanDuration,
    pub max_ban_time: HumanDuration,
    /// `"reply"` (`421 4.7.0` then close) or `"drop"` (close at once).
    pub action: BanAction,
    /// What counts as an offence: `pregreet`, `max_errors`,
    /// `protocol_error` (a session with any), `dictionary_attack`,
    /// `spamtrap`, or the name of a check whose refusal counts
    /// (e.g. `dnsbl:zen.spamhaus.org`, `helo`, `sender_blocklist`).
    pub events: Vec<String>,
}

impl Default for Ban {
    fn default() -> Self {
        Ban {
            max_retry: 5,
            find_time: secs(600),
            ban_time: secs(3600),
            max_ban_time: secs(7 * 86_400),
            action: BanAction::Reply,
            events: [
                "pregreet",
                "pipelining",
                "max_errors",
                "dictionary_attack",
                "spamtrap",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// `ban.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanAction {
    Reply,
    Drop,
}

/// `[greylist]`: triplet greylisting at RCPT (off by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Greylist {
    pub enabled: bool,
    /// How long a new triplet must wait before a retry passes.
    pub delay: HumanDuration,
    /// How long after the first attempt a retry still counts.
    pub retry_window: HumanDuration,
    /// How long a passed triplet (and an allowed client) is remembered.
    pub allow_for: HumanDuration,
    /// Passed triplets after which the client network skips greylisting
    /// altogether (0: never).
    pub auto_allow_after: u32,
    /// Which clients are greylisted.
    pub when: GreylistWhen,
    /// The client network of a triplet: IPv4 prefix length.
    pub netmask_v4: u8,
    /// The client network of a triplet: IPv6 prefix length.
    pub netmask_v6: u8,
    /// Host name suffixes of large senders' pools, never greylisted
    /// (default: the list shipped in the binary).
    pub allow_file: Option<PathBuf>,
}

/// `greylist.when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GreylistWhen {
    /// Every client not allowed otherwise.
    Always,
    /// Only clients that look suspicious: no forward-confirmed or a
    /// generic reverse name, or a check of the connection or HELO hit;
    /// never a large sender's pool of the allow-list, or an SPF pass.
    #[default]
    Suspicious,
}

impl Default for Greylist {
    fn default() -> Self {
        Greylist {
            enabled: false,
            delay: secs(300),
            retry_window: secs(86_400),
            allow_for: secs(36 * 86_400),
            auto_allow_after: 5,
            when: GreylistWhen::Suspicious,
            netmask_v4: 24,
            netmask_v6: 64,
            allow_file: None,
        }
    }
}

/// `[state]`: where bans, counters, greylist entries, the callout cache
/// and DNSBL health live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    pub backend: Backend,
    pub on_error: OnStateError,
    /// Put before every Redis key, so fleets can share one Redis.
    pub prefix: String,
    /// Longest wait for one Redis operation.
    pub timeout: HumanDuration,
    /// The memory backend's keys per family (bans, offences, greylist
    /// triplets, known mailboxes, each kind of rate counter, …).
    pub max_entries: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            backend: Backend::Memory,
            on_error: OnStateError::Open,
            prefix: "mxguard:".into(),
            timeout: HumanDuration(Duration::from_millis(500)),
            max_entries: 100_000,
        }
    }
}

/// `state.backend`: `"memory"` or `"redis://host:port[/db]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis(String),
}

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "memory" {
            return Ok(Backend::Memory);
        }
        if (s.starts_with("redis://") || s.starts_with("rediss://"))
            && ::redis::Client::open(s.as_str()).is_ok()
        {
            return Ok(Backend::Redis(s));
        }
        Err(de::Error::custom(format!(
            "`{s}` is not a state backend (use \"memory\" or \"redis://host:port/db\")"
        )))
    }
}

/// `state.on_error`: what a Redis failure means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStateError {
    /// Carry on as if nothing was known (a warning is logged).
    Open,
    /// `451 4.3.0` until Redis answers again.
    Closed,
}
