//! Aggregation: each log line's fields fold into running counts, so memory
//! grows with the distinct keys (clients, senders, replies…), never with
//! the length of the log. What is counted:
//!
//! - a **connection** is a session that ended (`disconnect`), or one refused
//!   before its session began (`reject` at `stage=connect`; `pregreet` is
//!   refused inside a session, which then logs its `disconnect`);
//! - a **message accepted** is an `accept` (one queued message, `size`
//!   bytes, delivered to each recipient in its `to`, a list as
//!   [`crate::log::join_addresses`] writes it);
//! - a **refusal** is one `reject`: one refused connection, HELO, MAIL,
//!   RCPT (one recipient attempt), DATA or command. `action=reject` (5xx)
//!   counts as rejected, and so does `action=drop` (a banned client's
//!   connection closed without a reply); `action=tempfail` (4xx) counts as
//!   tempfailed;
//! - warn mode's `would_reject` lines are counted apart, never as refusals.

use super::parse::Fields;
use super::stamp;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::AddAssign;

/// Traffic in one period (the whole log, a day, an hour of the day).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub connections: u64,
    pub accepted: u64,
    pub bytes: u64,
    pub rejected: u64,
    pub tempfailed: u64,
}

impl AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.connections += o.connections;
        self.accepted += o.accepted;
        self.bytes += o.bytes;
        self.rejected += o.rejected;
        self.tempfailed += o.tempfailed;
    }
}

/// Refusals of one kind (a check, a client, a stage…).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    pub rejected: u64,
    pub tempfailed: u64,
}

impl Refusals {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Rejected => self.rejected += 1,
            Kind::Tempfailed => self.tempfailed += 1,
        }
    }
}

/// A DNS list's refusals, and its hits in warn mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ZoneCounts {
    pub refusals: Refusals,
    pub warned: u64,
}

/// A client network: IPv4 /24, IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    V4(u32),
    V6(u64),
}

impl Network {
    fn of(ip: IpAddr) -> Network {
        match ip {
            IpAddr::V4(v4) => Network::V4(u32::from(v4) & 0xffff_ff00),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Network::of(IpAddr::V4(v4)),
                None => Network::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Network::V4(n) => write!(f, "{}/24", std::net::Ipv4Addr::from(n)),
            Network::V6(n) => write!(f, "{}/64", std::net::Ipv6Addr::from(u128::from(n) << 64)),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Rejected,
    Tempfailed,
}

/// Everything counted so far.
#[derive(Debug, Default)]
pub struct Summary {
    /// The first and last time counted (ms since the epoch).
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub traffic: Traffic,
    /// Connections with a `tls=` in their `disconnect`.
    pub tls_connections: u64,
    /// Recipients of accepted messages.
    pub recipients_accepted: u64,
    /// By day number (days since 1970-01-01).
    pub days: BTreeMap<i64, Traffic>,
    /// By hour of the day (UTC), over all days.
    pub hours: [Traffic; 24],
    pub by_stage: HashMap<String, Refusals>,
    pub by_check: HashMap<String, Refusals>,
    /// By reply, with what differs per client (addresses, numbers) masked.
    pub by_reply: HashMap<String, u64>,
    /// `dnsbl:ZONE` and `rhsbl:ZONE` checks.
    pub by_zone: HashMap<String, ZoneCounts>,
    pub clients: HashMap<String, Refusals>,
    pub networks: HashMap<Network, Refusals>,
    pub senders_accepted: HashMap<String, u64>,
    pub recipients_accepted_by: HashMap<String, u64>,
    pub senders_refused: HashMap<String, Refusals>,
    pub recipients_refused: HashMap<String, Refusals>,
    /// `would_reject` (warn mode), by check.
    pub would_reject: HashMap<String, u64>,
    /// Sessions ended by a limit (`limit`, `dictionary_attack`), by check.
    pub limits: HashMap<String, u64>,
    /// `delivery` lines by status (sent, deferred, failed, expired).
    pub deliveries: HashMap<String, u64>,
    pub quarantined: u64,
    pub dsn: u64,
    /// Every event, by name, known to the report or not.
    pub events: HashMap<String, u64>,
    /// Reused for masking replies.
    scratch: String,
}

impl Summary {
    /// Counts one log line written at `at` (ms since the epoch).
    pub fn add(&mut self, f: &Fields<'_>, at: i64) {
        self.first = Some(self.first.map_or(at, |t| t.min(at)));
        self.last = Some(self.last.map_or(at, |t| t.max(at)));
        bump(&mut self.events, &f.event, 1);
        let delta = match f.event.as_ref() {
            "disconnect" => {
                if f.tls.as_deref().is_some_and(|t| !t.is_empty()) {
                    self.tls_connections += 1;
                }
                Traffic {
                    connections: 1,
                    ..Traffic::default()
                }
            }
            "accept" => self.accept(f),
            "reject" => self.refusal(f),
            "would_reject" => {
                let check = f.check.as_deref().unwrap_or("");
                bump(&mut self.would_reject, check, 1);
                if let Some(zone) = zone_entry(&mut self.by_zone, check) {
                    zone.warned += 1;
                }
                Traffic::default()
            }
            "limit" | "dictionary_attack" => {
                bump(&mut self.limits, f.check.as_deref().unwrap_or(""), 1);
                Traffic::default()
            }
            "delivery" => {
                bump(&mut self.deliveries, f.status.as_deref().unwrap_or(""), 1);
                Traffic::default()
            }
            "quarantine" => {
                self.quarantined += 1;
                Traffic::default()
            }
            "dsn" => {
                self.dsn += 1;
                Traffic::default()
            }
            _ => Traffic::default(),
        };
        self.traffic += delta;
        *self.days.entry(stamp::day_of(at)).or_default() += delta;
        self.hours[stamp::hour_of(at)] += delta;
    }

    fn accept(&mut self, f: &Fields<'_>) -> Traffic {
        bump(&mut self.senders_accepted, sender(f.from.as_deref()), 1);
        for rcpt in crate::log::split_addresses(f.to.as_deref().unwrap_or("")) {
            let rcpt = mailbox(&rcpt);
            if !rcpt.is_empty() {
                self.recipients_accepted += 1;
                bump(&mut self.recipients_accepted_by, rcpt, 1);
            }
        }
        Traffic {
            accepted: 1,
            bytes: f.size.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0),
            ..Traffic::default()
        }
    }

    fn refusal(&mut self, f: &Fields<'_>) -> Traffic {
        let reply = f.reply.as_deref().unwrap_or("");
        let kind = match f.action.as_deref() {
            Some("tempfail") => Kind::Tempfailed,
            Some("reject" | "drop") => Kind::Rejected,
            _ if reply.starts_with('4') => Kind::Tempfailed,
            _ => Kind::Rejected,
        };
        let stage = f.stage.as_deref().unwrap_or("");
        let check = f.check.as_deref().unwrap_or("");
        refuse(&mut self.by_stage, stage, kind);
        refuse(&mut self.by_check, check, kind);
        if let Some(zone) = zone_entry(&mut self.by_zone, check) {
            zone.refusals.add(kind);
        }
        mask_reply(reply, &mut self.scratch);
        bump(&mut self.by_reply, &self.scratch, 1);
        if let Some(client) = f.client.as_deref() {
            refuse(&mut self.clients, client, kind);
            if let Ok(ip) = client.parse::<IpAddr>() {
                self.networks.entry(Network::of(ip)).or_default().add(kind);
            }
        }
        if let Some(from) = f.from.as_deref() {
            refuse(&mut self.senders_refused, sender(Some(from)), kind);
        }
        if let Some(to) = f.to.as_deref() {
            refuse(&mut self.recipients_refused, mailbox(to), kind);
        }
        let (rejected, tempfailed) = match kind {
            Kind::Rejected => (1, 0),
            Kind::Tempfailed => (0, 1),
        };
        Traffic {
            connections: u64::from(stage == "connect" && check != "pregreet"),
            rejected,
            tempfailed,
            ..Traffic::default()
        }
    }
}

/// Adds `n` to `key`'s count, allocating only for a new key.
fn bump(map: &mut HashMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(count) => *count += n,
        None => {
            map.insert(key.to_owned(), n);
        }
    }
}

fn refuse(map: &mut HashMap<String, Refusals>, key: &str, kind: Kind) {
    match map.get_mut(key) {
        Some(r) => r.add(kind),
        None => map.entry(key.to_owned()).or_default().add(kind),
    }
}

fn zone_entry<'m>(
    map: &'m mut HashMap<String, ZoneCounts>,
    check: &str,
) -> Option<&'m mut ZoneCounts> {
    if !(check.starts_with("dnsbl:") || check.starts_with("rhsbl:")) {
        return None;
    }
    if !map.contains_key(check) {
        map.insert(check.to_owned(), ZoneCounts::default());
    }
    map.get_mut(check)
}

/// A mailbox without its angle brackets.
fn mailbox(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(text)
}

/// A sender as shown: its mailbox, `<>` for the null sender.
fn sender(from: Option<&str>) -> &str {
    match from.map(mailbox) {
        Some("") | None => "<>",
        Some(m) => m,
    }
}

/// Longest reply kept as a key: a client can make replies long.
const MAX_REPLY: usize = 200;

/// The reply with what differs from client to client masked, so that the
/// same refusal counts once: `<…>` becomes `<*>`, `[…]` becomes `[*]`, any
/// other word with a digit (addresses, times, counts) `*`; the code and the
/// enhanced status stay.
fn mask_reply(reply: &str, out: &mut String) {
    out.clear();
    for (i, word) in reply.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let status = i == 1 && word.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if i == 0 || status {
            out.push_str(word);
        } else if let Some(open) = word.find(['<', '[']) {
            let close = if word.as_bytes()[open] == b'<' {
                '>'
            } else {
                ']'
            };
            out.push_str(&word[..open]);
            out.push_str(if close == '>' { "<*>" } else { "[*]" });
            if let Some(end) = word[open..].find(close) {
                out.push_str(&word[open + end + 1..]);
            }
        } else if word.bytes().any(|b| b.is_ascii_digit()) {
            out.push('*');
        } else {
            out.push_str(word);
        }
        if out.len() > MAX_REPLY {
            let mut cut = MAX_REPLY;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_line;
    use super::super::stamp::Time;
    use super::*;

    fn feed(lines: &[&str]) -> Summary {
        let mut s = Summary::default();
        for line in lines {
            let f = parse_line(line).expect(line);
            let Some(Time::Utc(at)) = f.time else {
                panic!("{line}")
            };
            s.add(&f, at);
        }
        s
    }

    mod props {
        use super::*;
        use crate::config::LogFormat;
        use crate::log::Logger;
        use proptest::prelude::*;

        /// An address as a session logs it: a dot-atom or a quoted local
        /// part (with commas, spaces, quotes and backslashes) at a domain.
        fn address() -> impl Strategy<Value = String> {
            let quoted = "[ -~]{0,10}".prop_map(|text| {
                let escaped: String = text
                    .chars()
                    .flat_map(|c| match c {
                        '"' | '\\' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                format!("\"{escaped}\"")
            });
            let local = prop_oneof!["[a-z0-9+_-]{1,8}(\\.[a-z0-9]{1,4})?", quoted];
            (local, "[a-z]{1,8}").prop_map(|(l, d)| format!("{l}@{d}.test"))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// The recipients an accept line lists are the ones the report
            /// counts, in both log formats.
            #[test]
            fn accepted_recipients_round_trip(
                rcpts in proptest::collection::vec(address(), 1..6),
                json in any::<bool>(),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("mx.log");
                let config = crate::config::Log {
                    file: Some(path.clone()),
                    format: if json { LogFormat::Json } else { LogFormat::Text },
                    ..crate::config::Log::default()
                };
                Logger::open(&config)
                    .unwrap()
                    .event("accept")
                    .kv("client", "192.0.2.1")
                    .kv("to", crate::log::join_addresses(&rcpts))
                    .kv("size", 10)
                    .emit();
                let line = std::fs::read_to_string(&path).unwrap();
                let f = parse_line(&line).unwrap();
                let Some(Time::Utc(at)) = f.time else { panic!("{line}") };
                let mut s = Summary::default();
                s.add(&f, at);
                prop_assert_eq!(s.recipients_accepted, rcpts.len() as u64);
                let mut want: HashMap<String, u64> = HashMap::new();
                for r in &rcpts {
                    *want.entry(r.clone()).or_default() += 1;
                }
                prop_assert_eq!(&s.recipients_accepted_by, &want);
            }
        }
    }

    #[test]
    fn masked_replies() {
        let mut out = String::new();
        for (reply, masked) in [
            (
                "554 5.7.1 <x@elsewhere.test>: Relay access denied",
                "554 5.7.1 <*>: Relay access denied",
            ),
            (
                "421 4.7.0 mx.test Error: 192.0.2.7 temporarily blocked until 2026-11-29T16:00:00.000Z",
                "421 4.7.0 mx.test Error: * temporarily blocked until *",
            ),
            (
                "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.example",
                "554 5.7.1 Service unavailable; Client host [*] blocked using zen.example",
            ),
            ("550 5.7.1 <unclosed", "550 5.7.1 <*>"),
            ("", ""),
        ] {
            mask_reply(reply, &mut out);
            assert_eq!(out, masked);
        }
        mask_reply(&format!("550 5.1.1 {}", "é".repeat(300)), &mut out);
        assert!(out.len() <= MAX_REPLY + '…'.len_utf8(), "{}", out.len());
        assert!(out.ends_with('…'));
    }

    #[test]
    fn networks() {
        let n = |s: &str| Network::of(s.parse().unwrap()).to_string();
        assert_eq!(n("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(n("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(n("::ffff:198.51.100.9"), "198.51.100.0/24");
    }

    #[test]
    fn a_content_filters_refusals_are_counted_under_its_name() {
        let s = feed(&[
            "2026-11-29T10:00:00.000Z mxguard: event=reject client=192.0.2.1 stage=data check=milter:rspamd action=reject reply=\"554 5.7.1 Gtube pattern\"",
            "2026-11-29T10:00:01.000Z mxguard: event=reject client=192.0.2.1 to=<a@example.test> stage=rcpt check=milter:clamav action=tempfail reply=\"451 4.7.1 Service unavailable - try again later\"",
            "2026-11-29T10:00:02.000Z mxguard: event=milter client=192.0.2.1 queue_id=Q1 milter=rspamd stage=end_of_message action=continue elapsed=0.010s",
        ]);
        assert_eq!(s.by_check["milter:rspamd"].rejected, 1);
        assert_eq!(s.by_check["milter:clamav"].tempfailed, 1);
        assert_eq!(s.by_stage["data"].rejected, 1);
    }

    #[test]
    fn counts_what_the_module_doc_says() {
        let s = feed(&[
            "2026-11-29T10:00:00.000Z mxguard: event=reject client=192.0.2.1 stage=connect check=ban action=drop reply=\"421 4.7.0 x\"",
            "2026-11-29T10:00:01.000Z mxguard: event=reject client=192.0.2.2 stage=connect check=pregreet action=reject reply=\"554 5.5.1 Protocol error\"",
            "2026-11-29T10:00:01.500Z mxguard: event=disconnect client=192.0.2.2 commands=0 accepted=0 refused=1",
            "2026-11-29T10:00:02.000Z mxguard: event=reject client=192.0.2.3 helo=h from=<s@x.test> to=<r@y.test> stage=rcpt check=dnsbl:bl.test action=tempfail reply=\"451 4.7.1 lookup failed\"",
            "2026-11-29T10:00:03.000Z mxguard: event=would_reject client=192.0.2.3 stage=helo check=dnsbl:bl.test action=warn reply=\"554 5.7.1 listed\"",
            "2026-11-29T11:00:00.000Z mxguard: event=accept client=192.0.2.4 helo=h from=<> to=a@example.test,b@example.test stage=data action=accept queue_id=Q1 size=1000 reply=\"250 2.0.0 Ok: queued as Q1\"",
            "2026-11-29T11:00:01.000Z mxguard: event=disconnect client=192.0.2.4 tls=TLSv1.3 commands=6 accepted=1 refused=0",
            "2026-11-29T11:00:02.000Z mxguard: event=limit client=192.0.2.4 stage=session check=timeout action=disconnect reply=\"421 4.4.2 timeout\"",
            "2026-11-29T11:00:03.000Z mxguard: event=delivery queue_id=Q1 to=a@example.test relay=smtp://x status=sent reply=\"250 ok\"",
            "2026-11-30T00:00:00.000Z mxguard: event=quarantine queue_id=Q2",
            "2026-11-30T00:00:01.000Z mxguard: event=something_new x=y",
        ]);
        assert_eq!(
            s.traffic,
            Traffic {
                connections: 3,
                accepted: 1,
                bytes: 1000,
                rejected: 2,
                tempfailed: 1
            }
        );
        assert_eq!(s.tls_connections, 1);
        assert_eq!(s.recipients_accepted, 2);
        assert_eq!(s.days.len(), 2);
        assert_eq!(s.days[&20_786].connections, 3);
        assert_eq!(s.days[&20_787], Traffic::default());
        assert_eq!(s.hours[10].connections, 2);
        assert_eq!(s.hours[11].accepted, 1);
        assert_eq!(
            s.by_stage["connect"],
            Refusals {
                rejected: 2,
                tempfailed: 0
            }
        );
        assert_eq!(s.by_check["ban"].rejected, 1);
        let zone = s.by_zone["dnsbl:bl.test"];
        assert_eq!((zone.refusals.tempfailed, zone.warned), (1, 1));
        assert_eq!(s.would_reject["dnsbl:bl.test"], 1);
        assert_eq!(s.limits["timeout"], 1);
        assert_eq!(s.deliveries["sent"], 1);
        assert_eq!(s.quarantined, 1);
        assert_eq!(s.senders_accepted["<>"], 1);
        assert_eq!(s.recipients_accepted_by["b@example.test"], 1);
        assert_eq!(s.senders_refused["s@x.test"].tempfailed, 1);
        assert_eq!(s.recipients_refused["r@y.test"].tempfailed, 1);
        assert_eq!(s.networks[&Network::V4(0xc000_0200)].rejected, 2);
        assert_eq!(s.events["something_new"], 1);
        assert_eq!(s.events.values().sum::<u64>(), 11);
        assert_eq!(
            s.first.map(stamp::iso).as_deref(),
            Some("2026-11-29T10:00:00Z")
        );
        assert_eq!(
            s.last.map(stamp::iso).as_deref(),
            Some("2026-11-30T00:00:01Z")
        );
    }
}
