//! The built-in fail2ban: offences counted per client address in a sliding
//! window of `ban.find_time`; `ban.max_retry` of them earn a ban of
//! `ban.ban_time`, doubled for each repeat (remembered for
//! `ban.max_ban_time` after a ban ends) up to `ban.max_ban_time`. Bans live
//! in the state store (`ban:IP` → `UNTIL LEVEL REASON`), so they survive a
//! restart and hold across a fleet. Exempt clients are the caller's
//! business: they never reach here.

use crate::config::Config;
use crate::log::Logger;
use crate::state::{State, Unavailable};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A ban in force (or remembered, for doubling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub client: IpAddr,
    /// Unix time the ban ends.
    pub until: u64,
    /// 1 for a first ban, 2 after one repeat, …
    pub level: u32,
    pub reason: String,
}

impl Ban {
    fn parse(client: IpAddr, value: &str) -> Option<Ban> {
        let mut words = value.splitn(3, ' ');
        Some(Ban {
            client,
            until: words.next()?.parse().ok()?,
            level: words.next()?.parse().ok()?,
            reason: words.next().unwrap_or("").to_string(),
        })
    }

    fn value(&self) -> String {
        format!("{} {} {}", self.until, self.level, self.reason)
    }
}

fn ban_key(client: IpAddr) -> String {
    format!("ban:{client}")
}

/// Length of ban number `level` (1-based): doubling, capped.
pub fn ban_length(first: Duration, max: Duration, level: u32) -> Duration {
    let doublings = level.saturating_sub(1).min(32);
    first
        .saturating_mul(1u32 << doublings.min(31))
        .min(max.max(first))
}

pub struct Bans {
    config: Arc<Config>,
    state: Arc<State>,
    log: Arc<Logger>,
}

impl Bans {
    pub fn new(config: Arc<Config>, state: Arc<State>, log: Arc<Logger>) -> Bans {
        Bans { config, state, log }
    }

    /// The ban on `client` in force now, if any.
    pub async fn active(&self, client: IpAddr) -> Result<Option<Ban>, Unavailable> {
        let value = self.state.get(&ban_key(client)).await?;
        let now = crate::time::unix_now();
        Ok(value
            .and_then(|v| Ban::parse(client, &v))
            .filter(|b| b.until > now))
    }

    /// Whether offences of this kind count (`ban.events`).
    pub fn counts(&self, kind: &str) -> bool {
        self.config.ban.max_retry > 0 && self.config.ban.events.iter().any(|e| e == kind)
    }

    /// Records one offence; the one that reaches `ban.max_retry` bans.
    pub async fn offence(&self, client: IpAddr, kind: &str) -> Result<(), Unavailable> {
        if !self.counts(kind) {
            return Ok(());
        }
        let b = &self.config.ban;
        let key = format!("offence:{client}");
        let count = self.state.hit(&key, b.find_time.0, b.max_retry).await?;
        self.log
            .event("offence")
            .kv("client", client)
            .kv("kind", kind)
            .kv("count", count.map_or(b.max_retry, |c| c))
            .kv("max_retry", b.max_retry)
            .emit();
        if count.is_none_or(|c| c >= b.max_retry) {
            self.state.remove(&key).await?;
            self.ban(client, None, kind).await?;
        }
        Ok(())
    }

    /// Bans `client` for `length`, or for the next doubling of
    /// `ban.ban_time` when `None`.
    pub async fn ban(
        &self,
        client: IpAddr,
        length: Option<Duration>,
        reason: &str,
    ) -> Result<Ban, Unavailable> {
        let b = &self.config.ban;
        let key = ban_key(client);
        let previous = self.state.get(&key).await?;
        let level = previous
            .and_then(|v| Ban::parse(client, &v))
            .map_or(1, |p| p.level.saturating_add(1));
        let length = length.unwrap_or_else(|| ban_length(b.ban_time.0, b.max_ban_time.0, level));
        let now = crate::time::unix_now();
        let ban = Ban {
            client,
            until: now.saturating_add(length.as_secs()),
            level,
            reason: reason.replace(char::is_whitespace, "_"),
        };
        // Remembered after it ends, so a repeat offender's next ban doubles.
        let keep = length.saturating_add(b.max_ban_time.0);
        self.state.put(&key, &ban.value(), keep).await?;
        self.log
            .event("ban")
            .kv("client", client)
            .kv("reason", &ban.reason)
            .kv("level", level)
            .kv("for", format!("{}s", length.as_secs()))
            .kv(
                "until",
                crate::time::iso8601(std::time::UNIX_EPOCH + Duration::from_secs(ban.until)),
            )
            .emit();
        Ok(ban)
    }

    /// Lifts the ban (and forgets the history) of `client`.
    pub async fn unban(&self, client: IpAddr) -> Result<(), Unavailable> {
        self.state.remove(&ban_key(client)).await?;
        self.state.remove(&format!("offence:{client}")).await?;
        self.log.event("unban").kv("client", client).emit();
        Ok(())
    }
}

/// `IP until=… level=N reason=…`, as `mxguard ban list` prints it.
pub fn describe(ban: &Ban) -> String {
    format!(
        "{} until={} level={} reason={}",
        ban.client,
        crate::time::iso8601(std::time::UNIX_EPOCH + Duration::from_secs(ban.until)),
        ban.level,
        ban.reason
    )
}

/// Every ban in force in `store`, soonest to end first.
pub async fn list(store: &crate::state::Store) -> Result<Vec<Ban>, crate::state::StateError> {
    let now = crate::time::unix_now();
    let mut bans: Vec<Ban> = store
        .list("ban:")
        .await?
        .into_iter()
        .filter_map(|(key, value)| {
            let client = key.strip_prefix("ban:")?.parse().ok()?;
            Ban::parse(client, &value)
        })
        .filter(|b| b.until > now)
        .collect();
    bans.sort_by_key(|b| b.until);
    Ok(bans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_double_up_to_the_maximum() {
        let hour = Duration::from_secs(3600);
        let max = Duration::from_secs(5 * 3600);
        assert_eq!(ban_length(hour, max, 1), hour);
        assert_eq!(ban_length(hour, max, 2), 2 * hour);
        assert_eq!(ban_length(hour, max, 3), 4 * hour);
        assert_eq!(ban_length(hour, max, 4), max);
        assert_eq!(ban_length(hour, max, 400), max);
        // A maximum below the first ban never shortens it.
        assert_eq!(ban_length(hour, Duration::ZERO, 3), hour);
    }

    #[test]
    fn ban_values_round_trip() {
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let ban = Ban {
            client,
            until: 1234,
            level: 2,
            reason: "max_errors".into(),
        };
        assert_eq!(Ban::parse(client, &ban.value()), Some(ban));
        assert_eq!(Ban::parse(client, "x 1"), None);
    }
}
