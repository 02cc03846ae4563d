//! Greylisting at RCPT: the triplet (client network — /24 for IPv4, /64
//! for IPv6 by default, `greylist.netmask_v4`/`_v6` —, sender, recipient) must be seen again between
//! `greylist.delay` and `greylist.retry_window` after its first attempt.
//! A passed triplet is remembered for `greylist.allow_for`; a network
//! with `greylist.auto_allow_after` passed triplets skips greylisting for
//! as long. Entries live in the state store (`grey:NET/LEN:SENDER/RCPT` →
//! `pass` or the first attempt's time, `greyok:NET`), so a retry through
//! another MX of the fleet passes too. The sender is normalised first, so
//! senders that change their address on every retry (VERP, SRS, BATV)
//! still pass; at most [`MAX_PENDING`] triplets wait per network, so a
//! flood of invented senders cannot fill the store.

use crate::config::Config;
use crate::log::Logger;
use crate::smtp::reply::Reply;
use crate::state::{State, Unavailable};
use crate::verdict::Refusal;
use std::net::IpAddr;
use std::sync::Arc;

/// Triplets waiting for a retry, per client network and retry window;
/// beyond it new triplets are refused without being remembered.
pub const MAX_PENDING: u32 = 10_000;

/// The sender as greylisting sees it: lower case, without a `+tag`, BATV
/// (`prvs=TAG=user`) or SRS (`SRS0=HASH=TT=domain=user`) wrapping, and with
/// every run of digits as `#` (VERP and per-message bounce addresses).
pub fn normalize_sender(sender: &str) -> String {
    let sender = sender.to_lowercase();
    let Some((local, domain)) = sender.rsplit_once('@') else {
        return sender;
    };
    let mut local = local.to_string();
    if let Some(rest) = local
        .strip_prefix("srs0=")
        .or_else(|| local.strip_prefix("srs1="))
    {
        // HASH=TT=orig-domain=orig-local
        let parts: Vec<&str> = rest.splitn(4, '=').collect();
        if let [_, _, orig_domain, orig_local] = parts.as_slice() {
            return normalize_sender(&format!("{orig_local}@{orig_domain}"));
        }
    }
    for batv in ["prvs=", "msprvs1=", "btv1=="] {
        if let Some(rest) = local.strip_prefix(batv) {
            local = rest.rsplit('=').next().unwrap_or(rest).to_string();
        }
    }
    if let Some((base, _tag)) = local.split_once('+') {
        local = base.to_string();
    }
    let mut out = String::with_capacity(local.len() + domain.len() + 1);
    let mut in_digits = false;
    for c in local.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out.push('@');
    out.push_str(domain);
    out
}

/// The network a client's retries may come from (a pool of outbound
/// servers shares it): its address cut to `v4` or `v6` bits
/// (`greylist.netmask_v4`, `netmask_v6`).
pub fn network(client: IpAddr, v4: u8, v6: u8) -> String {
    let net = match crate::net::canonical_ip(client) {
        IpAddr::V4(a) => ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, v4.min(32)).unwrap_or_default()),
        IpAddr::V6(a) => ipnet::IpNet::V6(ipnet::Ipv6Net::new(a, v6.min(128)).unwrap_or_default()),
    };
    net.trunc().to_string()
}

/// What the greylist says about one triplet at time `now`, given what is
/// stored for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Seen before and passed: accept (and remember longer).
    Known,
    /// A retry inside the window: accept, and remember it passed.
    Passed,
    /// Too early, or the first attempt (stored time to keep).
    Wait { first: u64 },
}

/// The greylisting decision, pure: `stored` is the triplet's value.
pub fn judge(stored: Option<&str>, now: u64, delay: u64, retry_window: u64) -> Verdict {
    match stored {
        Some("pass") => Verdict::Known,
        Some(first) => match first.parse::<u64>() {
            Ok(first) if now < first.saturating_add(delay) => Verdict::Wait { first },
            Ok(first) if now <= first.saturating_add(retry_window) => Verdict::Passed,
            _ => Verdict::Wait { first: now },
        },
        None => Verdict::Wait { first: now },
    }
}

pub struct Greylist {
    config: Arc<Config>,
    state: Arc<State>,
    log: Arc<Logger>,
}

impl Greylist {
    pub fn new(config: Arc<Config>, state: Arc<State>, log: Arc<Logger>) -> Greylist {
        Greylist { config, state, log }
    }

    pub fn enabled(&self) -> bool {
        self.config.greylist.enabled
    }

    /// The network of `client` as the configuration cuts it.
    pub fn network(&self, client: IpAddr) -> String {
        let g = &self.config.greylist;
        network(client, g.netmask_v4, g.netmask_v6)
    }

    /// What [`Greylist::check`] would answer now, remembering nothing.
    pub async fn peek(
        &self,
        client: IpAddr,
        from: &str,
        to: &str,
    ) -> Result<Option<Refusal>, Unavailable> {
        let net = self.network(client);
        if self.state.get(&format!("greyok:{net}")).await?.is_some() {
            return Ok(None);
        }
        let stored = self.state.get(&triplet(&net, from, to)).await?;
        let g = &self.config.greylist;
        let now = crate::time::unix_now();
        Ok(
            match judge(
                stored.as_deref(),
                now,
                g.delay.0.as_secs(),
                g.retry_window.0.as_secs(),
            ) {
                Verdict::Known | Verdict::Passed => None,
                Verdict::Wait { first } => Some(self.refusal(to, first, now)),
            },
        )
    }

    fn refusal(&self, to: &str, first: u64, now: u64) -> Refusal {
        let delay = self.config.greylist.delay.0.as_secs();
        let wait = first.saturating_add(delay).saturating_sub(now).max(1);
        let reply = Reply::new(
            451,
            "4.7.1",
            format!("<{to}>: Recipient address rejected: Greylisted, try again in {wait} seconds"),
        );
        Refusal::new("greylist", reply)
    }

    /// `Ok(None)` to go on, or the `451 4.7.1` for this attempt.
    pub async fn check(
        &self,
        client: IpAddr,
        from: &str,
        to: &str,
    ) -> Result<Option<Refusal>, Unavailable> {
        let g = &self.config.greylist;
        let net = self.network(client);
        let allowed_key = format!("greyok:{net}");
        if self.state.get(&allowed_key).await?.is_some() {
            return Ok(None);
        }
        let key = triplet(&net, from, to);
        let now = crate::time::unix_now();
        let stored = self.state.get(&key).await?;
        if self.state.failing() {
            // Failing open: without its memory, greylisting would refuse
            // every message; mail flows instead.
            return Ok(None);
        }
        let (delay, window) = (g.delay.0.as_secs(), g.retry_window.0.as_secs());
        match judge(stored.as_deref(), now, delay, window) {
            Verdict::Known => {
                self.state.put(&key, "pass", g.allow_for.0).await?;
                Ok(None)
            }
            Verdict::Passed => {
                self.state.put(&key, "pass", g.allow_for.0).await?;
                self.log
                    .event("greylist_pass")
                    .kv("client", client)
                    .kv("from", format!("<{from}>"))
                    .kv("to", format!("<{to}>"))
                    .kv(
                        "waited",
                        format!("{}s", now.saturating_sub(stored_first(&stored))),
                    )
                    .emit();
                if g.auto_allow_after > 0 {
                    let passes = format!("greypasses:{net}");
                    let counted = self
                        .state
                        .hit(&passes, g.allow_for.0, g.auto_allow_after)
                        .await?;
                    if counted.is_none_or(|n| n >= g.auto_allow_after) {
                        self.state.put(&allowed_key, "1", g.allow_for.0).await?;
                    }
                }
                Ok(None)
            }
            Verdict::Wait { first } => {
                if first == now {
                    let pending = format!("greypending:{net}");
                    let room = self
                        .state
                        .hit(&pending, g.retry_window.0, MAX_PENDING)
                        .await?;
                    if room.is_some() {
                        // Kept one second past the window, whose last
                        // second still passes.
                        let ttl = g.retry_window.0 + std::time::Duration::from_secs(1);
                        self.state.put(&key, &first.to_string(), ttl).await?;
                    }
                    if self.state.failing() {
                        // Failing open: a triplet that cannot be
                        // remembered could never pass.
                        return Ok(None);
                    }
                }
                Ok(Some(self.refusal(to, first, now)))
            }
        }
    }
}

/// A triplet waiting for its retry (`mxguard greylist list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub network: String,
    /// Normalized, as greylisting keys it.
    pub sender: String,
    pub recipient: String,
    /// The first attempt (Unix time).
    pub first: u64,
}

impl Waiting {
    /// Reads a `grey:NET/LEN:SENDER/RCPT` entry holding a first attempt's
    /// time (a passed triplet holds `pass`: it waits no more).
    fn parse(key: &str, value: &str) -> Option<Waiting> {
        let first = value.parse().ok()?;
        let rest = key.strip_prefix("grey:")?;
        // NET is ADDRESS/PREFIX (an IPv6 address holds colons, never '/').
        let (address, rest) = rest.split_once('/')?;
        let (prefix, rest) = rest.split_once('/')?;
        let (length, rest) = rest.split_once(':')?;
        let length: usize = length.parse().ok()?;
        let sender = rest.get(..length)?;
        let recipient = rest.get(length..)?.strip_prefix('/')?;
        Some(Waiting {
            network: format!("{address}/{prefix}"),
            sender: sender.to_string(),
            recipient: recipient.to_string(),
            first,
        })
    }

    /// One line of `mxguard greylist list`.
    pub fn describe(&self, now: u64) -> String {
        format!(
            "{} <{}> -> <{}> waiting {}s",
            self.network,
            self.sender,
            self.recipient,
            now.saturating_sub(self.first)
        )
    }
}

/// The client address an administrator names: an address, or a network
/// (its first address stands for it).
pub fn client_of(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<ipnet::IpNet>().ok().map(|n| n.network()))
}

/// Every triplet waiting for its retry, oldest first.
pub async fn waiting(
    store: &crate::state::Store,
) -> Result<Vec<Waiting>, crate::state::StateError> {
    let mut list: Vec<Waiting> = (store.list("grey:").await?.iter())
        .filter_map(|(key, value)| Waiting::parse(key, value))
        .collect();
    list.sort_by_key(|w| w.first);
    Ok(list)
}

impl Greylist {
    /// Lets the network of `client` through from now on, for
    /// `greylist.allow_for` (`mxguard greylist pass`); the network.
    pub async fn let_through(&self, client: IpAddr) -> Result<String, Unavailable> {
        let net = self.network(client);
        let allow_for = self.config.greylist.allow_for.0;
        self.state
            .put(&format!("greyok:{net}"), "1", allow_for)
            .await?;
        self.log
            .event("greylist_allow")
            .kv("network", &net)
            .kv("by", "admin")
            .kv("for", format!("{}s", allow_for.as_secs()))
            .emit();
        Ok(net)
    }
}

/// The state key of a triplet: the client's network, the normalized
/// sender, the recipient.
fn triplet(net: &str, from: &str, to: &str) -> String {
    let sender = normalize_sender(from);
    format!("grey:{net}/{}:{sender}/{}", sender.len(), to.to_lowercase())
}

fn stored_first(stored: &Option<String>) -> u64 {
    stored.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = |ip: &str, v4, v6| network(ip.parse().unwrap(), v4, v6);
        assert_eq!(net("192.0.2.77", 24, 64), "192.0.2.0/24");
        assert_eq!(net("2001:db8:1:2:3:4:5:6", 24, 64), "2001:db8:1:2::/64");
        assert_eq!(net("::ffff:10.1.2.3", 24, 64), "10.1.2.0/24");
        // rspamd's pools: /19.
        assert_eq!(net("198.51.100.200", 19, 64), "198.51.96.0/19");
        assert_eq!(net("2001:db8:1:2:3:4:5:6", 24, 48), "2001:db8:1::/48");
    }

    #[test]
    fn waiting_triplets_are_read_back_from_their_keys() {
        let key = triplet(
            "2001:db8:1:2::/64",
            "Bob+x@Example.org",
            "Alice@example.test",
        );
        let waiting = Waiting::parse(&key, "1000").unwrap();
        assert_eq!(
            waiting,
            Waiting {
                network: "2001:db8:1:2::/64".into(),
                sender: "bob@example.org".into(),
                recipient: "alice@example.test".into(),
                first: 1000,
            }
        );
        assert_eq!(
            waiting.describe(1300),
            "2001:db8:1:2::/64 <bob@example.org> -> <alice@example.test> waiting 300s"
        );
        // A sender holding a slash is cut by its length, not its slashes.
        let odd = triplet("192.0.2.0/24", "a/b@example.org", "c@example.test");
        assert_eq!(Waiting::parse(&odd, "5").unwrap().sender, "a/b@example.org");
        assert_eq!(Waiting::parse(&key, "pass"), None);
        assert_eq!(Waiting::parse("grey:junk", "5"), None);
    }

    #[test]
    fn senders_are_normalized() {
        let n = normalize_sender;
        assert_eq!(n("Bob@Example.ORG"), "bob@example.org");
        assert_eq!(n("bob+list-42@example.org"), "bob@example.org");
        assert_eq!(
            n("bounce-1234-5678@lists.example"),
            "bounce-#-#@lists.example"
        );
        assert_eq!(n("prvs=1234abcd=bob@example.org"), "bob@example.org");
        assert_eq!(
            n("SRS0=HHH=TT=example.org=bob@forwarder.example"),
            "bob@example.org"
        );
        assert_eq!(n(""), "");
        assert_eq!(n("nodomain"), "nodomain");
    }

    #[test]
    fn greylist_edges() {
        let (delay, window) = (300, 86_400);
        assert_eq!(
            judge(None, 1000, delay, window),
            Verdict::Wait { first: 1000 }
        );
        // Too early: the first attempt's time is kept.
        assert_eq!(
            judge(Some("1000"), 1299, delay, window),
            Verdict::Wait { first: 1000 }
        );
        assert_eq!(judge(Some("1000"), 1300, delay, window), Verdict::Passed);
        assert_eq!(judge(Some("1000"), 87_400, delay, window), Verdict::Passed);
        // Too late: starts over.
        assert_eq!(
            judge(Some("1000"), 87_401, delay, window),
            Verdict::Wait { first: 87_401 }
        );
        assert_eq!(judge(Some("pass"), 5, delay, window), Verdict::Known);
        assert_eq!(
            judge(Some("junk"), 5, delay, window),
            Verdict::Wait { first: 5 }
        );
    }
}
