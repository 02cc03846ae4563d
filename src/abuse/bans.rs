//! The built-in fail2ban: offences counted per client (an IPv4 address, or
//! an IPv6 /64: see [`super::client_id`]) in a sliding window of
//! `ban.find_time`; `ban.max_retry` of them earn a ban of `ban.ban_time`,
//! doubled for each repeat (remembered for `ban.max_ban_time` after a ban
//! ends) up to `ban.max_ban_time`. Bans live in the state store
//! (`ban:CLIENT` → `UNTIL LEVEL REASON`), so they survive a restart and
//! hold across a fleet. Exempt clients are the caller's business: they
//! never reach here.

use super::client_id;
use crate::config::Config;
use crate::log::Logger;
use crate::smtp::reply::Reply;
use crate::state::{State, Unavailable};
use crate::verdict::Refusal;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The longest ban anyone can ask for (ten years).
pub const LONGEST_BAN: Duration = Duration::from_secs(3650 * 86_400);

/// A ban in force (or remembered, for doubling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The client as keyed: an IPv4 address or an IPv6 /64.
    pub client: String,
    /// Unix time the ban ends.
    pub until: u64,
    /// 1 for a first ban, 2 after one repeat, …
    pub level: u32,
    pub reason: String,
}

impl Ban {
    fn parse(client: &str, value: &str) -> Option<Ban> {
        let mut words = value.splitn(3, ' ');
        Some(Ban {
            client: client.to_string(),
            until: words.next()?.parse().ok()?,
            level: words.next()?.parse().ok()?,
            reason: words.next().unwrap_or("").to_string(),
        })
    }

    fn value(&self) -> String {
        format!("{} {} {}", self.until, self.level, self.reason)
    }

    /// What the banned `client` hears from a server called `hostname`.
    pub fn refusal(&self, hostname: &str, client: IpAddr) -> Refusal {
        let until = crate::time::iso8601_unix(self.until);
        let text = format!("{hostname} Error: {client} temporarily blocked until {until}");
        Refusal::new("ban", Reply::new(421, "4.7.0", text))
    }
}

fn ban_key(client: &str) -> String {
    ["ban:", client].concat()
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
        self.recorded(&client_id(client))
            .await
            .map(|ban| ban.filter(|b| b.until > crate::time::unix_now()))
    }

    /// The ban stored for `id`, in force or remembered.
    async fn recorded(&self, id: &str) -> Result<Option<Ban>, Unavailable> {
        let value = self.state.get(&ban_key(id)).await?;
        Ok(value.and_then(|v| Ban::parse(id, &v)))
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
        let key = ["offence:", &client_id(client)].concat();
        let count = self.state.hit(&key, b.find_time.0, b.max_retry).await?;
        self.log
            .event("offence")
            .kv("client", client)
            .kv("check", kind)
            .kv("count", count.map_or(b.max_retry, |c| c))
            .kv("max_retry", b.max_retry)
            .emit();
        // Only the offence that fills the window bans: concurrent ones,
        // finding it already full (`None`), do not ban again.
        if count == Some(b.max_retry) {
            self.state.remove(&key).await?;
            self.ban(client, None, kind).await?;
        }
        Ok(())
    }

    /// Bans `client` for the next doubling of `ban.ban_time` (a ban in
    /// force is kept as it is), or — asked by the administrator — for
    /// `length` (at least a second, at most [`LONGEST_BAN`]), which does not
    /// count as a repeat.
    pub async fn ban(
        &self,
        client: IpAddr,
        length: Option<Duration>,
        reason: &str,
    ) -> Result<Ban, Unavailable> {
        let b = &self.config.ban;
        let id = client_id(client);
        let previous = self.recorded(&id).await?;
        let now = crate::time::unix_now();
        let (level, length) = match (length, previous) {
            (None, Some(active)) if active.until > now => return Ok(active),
            (None, previous) => {
                let level = previous.map_or(1, |p| p.level.saturating_add(1));
                (level, ban_length(b.ban_time.0, b.max_ban_time.0, level))
            }
            (Some(length), previous) => (
                previous.map_or(1, |p| p.level),
                length.clamp(Duration::from_secs(1), LONGEST_BAN),
            ),
        };
        let key = ban_key(&id);
        let ban = Ban {
            client: id,
            until: now.saturating_add(length.as_secs()),
            level,
            reason: reason.replace(char::is_whitespace, "_"),
        };
        // Remembered after it ends, so a repeat offender's next ban doubles.
        let keep = length.saturating_add(b.max_ban_time.0);
        self.state.put(&key, &ban.value(), keep).await?;
        self.log
            .event("ban")
            .kv("client", &ban.client)
            .kv("reason", &ban.reason)
            .kv("level", level)
            .kv("for", format!("{}s", length.as_secs()))
            .kv("until", crate::time::iso8601_unix(ban.until))
            .emit();
        Ok(ban)
    }

    /// Lifts the ban (and forgets the history) of `client`.
    pub async fn unban(&self, client: IpAddr) -> Result<(), Unavailable> {
        let id = client_id(client);
        self.state.remove(&ban_key(&id)).await?;
        self.state.remove(&format!("offence:{id}")).await?;
        self.log.event("unban").kv("client", id).emit();
        Ok(())
    }
}

/// `IP until=… level=N reason=…`, as `mxguard ban list` prints it.
pub fn describe(ban: &Ban) -> String {
    format!(
        "{} until={} level={} reason={}",
        ban.client,
        crate::time::iso8601_unix(ban.until),
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
        .filter_map(|(key, value)| Ban::parse(key.strip_prefix("ban:")?, &value))
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
        let client = "192.0.2.1";
        let ban = Ban {
            client: client.into(),
            until: 1234,
            level: 2,
            reason: "max_errors".into(),
        };
        assert_eq!(Ban::parse(client, &ban.value()), Some(ban));
        assert_eq!(Ban::parse(client, "x 1"), None);
    }
}
