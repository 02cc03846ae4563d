//! The report as every format shows it: the counts of a [`Summary`] put in
//! order as sections, each a list of named numbers or a sorted table (top
//! lists cut to [`TOP`] rows). The text, JSON and HTML writers only lay
//! these out.

use super::stamp;
use super::summary::{Refusals, Summary, Traffic};
use std::collections::HashMap;

/// Rows kept in a top list.
pub const TOP: usize = 10;

/// Lines read, and what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    pub read: u64,
    /// Neither a text nor a JSON log line (or too long to be one).
    pub skipped: u64,
    /// Log lines outside `--since`/`--until`.
    pub out_of_range: u64,
}

/// The whole report.
pub struct Report {
    /// First and last time counted.
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// `--since` and `--until`.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub sections: Vec<Section>,
}

pub struct Section {
    /// The JSON key, and the HTML id.
    pub id: &'static str,
    pub title: &'static str,
    pub body: Body,
}

pub enum Body {
    Stats(Vec<Stat>),
    Table(Table),
}

/// One named number.
pub struct Stat {
    pub id: &'static str,
    pub label: &'static str,
    pub value: u64,
}

pub struct Table {
    /// The name of the key column.
    pub key: &'static str,
    /// The names of the number columns.
    pub columns: &'static [&'static str],
    pub rows: Vec<Row>,
    /// How many keys there were (more than `rows` for a cut top list).
    pub distinct: usize,
}

pub struct Row {
    pub key: String,
    pub values: Vec<u64>,
}

const TRAFFIC: &[&str] = &["connections", "accepted", "bytes", "rejected", "tempfailed"];
const REFUSALS: &[&str] = &["rejected", "tempfailed"];

fn traffic(t: &Traffic) -> Vec<u64> {
    vec![t.connections, t.accepted, t.bytes, t.rejected, t.tempfailed]
}

fn refusals(r: &Refusals) -> Vec<u64> {
    vec![r.rejected, r.tempfailed]
}

impl Report {
    pub fn new(s: &Summary, lines: Lines, since: Option<i64>, until: Option<i64>) -> Report {
        let count = |n: &u64| vec![*n];
        let deliveries = |status: &str| s.deliveries.get(status).copied().unwrap_or(0);
        let stat = |id, label, value| Stat { id, label, value };
        let sections = vec![
            section(
                "totals",
                "Grand totals",
                Body::Stats(vec![
                    stat("connections", "connections", s.traffic.connections),
                    stat("connections_tls", "connections with TLS", s.tls_connections),
                    stat("messages_accepted", "messages accepted", s.traffic.accepted),
                    stat(
                        "recipients_accepted",
                        "recipients of accepted messages",
                        s.recipients_accepted,
                    ),
                    stat("bytes_accepted", "bytes accepted", s.traffic.bytes),
                    stat("rejected", "refusals rejected (5xx)", s.traffic.rejected),
                    stat(
                        "tempfailed",
                        "refusals tempfailed (4xx)",
                        s.traffic.tempfailed,
                    ),
                    stat(
                        "would_reject",
                        "would reject (warn mode)",
                        s.would_reject.values().sum(),
                    ),
                    stat(
                        "limits",
                        "sessions ended by a limit",
                        s.limits.values().sum(),
                    ),
                ]),
            ),
            section(
                "deliveries",
                "Deliveries",
                Body::Stats(vec![
                    stat("sent", "recipients delivered", deliveries("sent")),
                    stat("deferred", "deferrals", deliveries("deferred")),
                    stat("failed", "recipients failed", deliveries("failed")),
                    stat("expired", "recipients expired", deliveries("expired")),
                    stat("quarantined", "messages quarantined", s.quarantined),
                    stat("dsn", "bounces (DSN) sent", s.dsn),
                ]),
            ),
            section(
                "per_day",
                "Traffic per day",
                Body::Table(Table {
                    key: "date",
                    columns: TRAFFIC,
                    distinct: s.days.len(),
                    rows: s
                        .days
                        .iter()
                        .map(|(day, t)| Row {
                            key: stamp::date(*day),
                            values: traffic(t),
                        })
                        .collect(),
                }),
            ),
            section(
                "per_hour",
                "Traffic per hour of the day (UTC, all days)",
                Body::Table(Table {
                    key: "hour",
                    columns: TRAFFIC,
                    distinct: 24,
                    rows: s
                        .hours
                        .iter()
                        .enumerate()
                        .map(|(hour, t)| Row {
                            key: format!("{hour:02}"),
                            values: traffic(t),
                        })
                        .collect(),
                }),
            ),
            table(
                "rejections_by_stage",
                "Refusals by stage",
                "stage",
                REFUSALS,
                all(&s.by_stage, refusals),
            ),
            table(
                "rejections_by_check",
                "Refusals by check",
                "check",
                REFUSALS,
                all(&s.by_check, refusals),
            ),
            table(
                "rejections_by_reply",
                "Top refusals by reply",
                "reply",
                &["count"],
                top(&s.by_reply, count),
            ),
            table(
                "dnsbl_zones",
                "DNS lists (dnsbl, rhsbl)",
                "zone",
                &["rejected", "tempfailed", "would_reject"],
                all(&s.by_zone, |z| {
                    vec![z.refusals.rejected, z.refusals.tempfailed, z.warned]
                }),
            ),
            table(
                "top_rejected_clients",
                "Top refused clients",
                "client",
                REFUSALS,
                top(&s.clients, refusals),
            ),
            table(
                "top_rejected_networks",
                "Top refused networks (IPv4 /24, IPv6 /64)",
                "network",
                REFUSALS,
                top(&s.networks, refusals),
            ),
            table(
                "top_senders_accepted",
                "Top senders, accepted",
                "sender",
                &["messages"],
                top(&s.senders_accepted, count),
            ),
            table(
                "top_recipients_accepted",
                "Top recipients, accepted",
                "recipient",
                &["messages"],
                top(&s.recipients_accepted_by, count),
            ),
            table(
                "top_senders_rejected",
                "Top senders, refused",
                "sender",
                REFUSALS,
                top(&s.senders_refused, refusals),
            ),
            table(
                "top_recipients_rejected",
                "Top recipients, refused",
                "recipient",
                REFUSALS,
                top(&s.recipients_refused, refusals),
            ),
            table(
                "would_reject_by_check",
                "Would reject (warn mode), by check",
                "check",
                &["count"],
                all(&s.would_reject, count),
            ),
            table(
                "limits_by_check",
                "Sessions ended by a limit, by check",
                "check",
                &["sessions"],
                all(&s.limits, count),
            ),
            table(
                "events",
                "Log lines by event",
                "event",
                &["count"],
                all(&s.events, count),
            ),
            section(
                "lines",
                "Log lines read",
                Body::Stats(vec![
                    stat("read", "lines read", lines.read),
                    stat(
                        "counted",
                        "lines counted",
                        lines
                            .read
                            .saturating_sub(lines.skipped + lines.out_of_range),
                    ),
                    stat("skipped", "not mxguard log lines", lines.skipped),
                    stat(
                        "out_of_range",
                        "outside --since/--until",
                        lines.out_of_range,
                    ),
                ]),
            ),
        ];
        Report {
            first: s.first,
            last: s.last,
            since,
            until,
            sections,
        }
    }

    /// The table of the section `id`.
    pub fn table(&self, id: &str) -> Option<&Table> {
        self.sections.iter().find_map(|s| match &s.body {
            Body::Table(t) if s.id == id => Some(t),
            _ => None,
        })
    }
}

fn section(id: &'static str, title: &'static str, body: Body) -> Section {
    Section { id, title, body }
}

fn table(
    id: &'static str,
    title: &'static str,
    key: &'static str,
    columns: &'static [&'static str],
    (rows, distinct): (Vec<Row>, usize),
) -> Section {
    section(
        id,
        title,
        Body::Table(Table {
            key,
            columns,
            rows,
            distinct,
        }),
    )
}

/// Every key, the largest total first (then by key).
fn all<K: ToString, V>(map: &HashMap<K, V>, values: impl Fn(&V) -> Vec<u64>) -> (Vec<Row>, usize) {
    sorted(map, values, usize::MAX)
}

/// The [`TOP`] keys with the largest totals.
fn top<K: ToString, V>(map: &HashMap<K, V>, values: impl Fn(&V) -> Vec<u64>) -> (Vec<Row>, usize) {
    sorted(map, values, TOP)
}

fn sorted<K: ToString, V>(
    map: &HashMap<K, V>,
    values: impl Fn(&V) -> Vec<u64>,
    keep: usize,
) -> (Vec<Row>, usize) {
    let mut rows: Vec<(u64, Row)> = map
        .iter()
        .map(|(k, v)| {
            let values = values(v);
            let row = Row {
                key: k.to_string(),
                values,
            };
            (row.values.iter().sum(), row)
        })
        .collect();
    rows.sort_unstable_by(|(a, ra), (b, rb)| b.cmp(a).then_with(|| ra.key.cmp(&rb.key)));
    rows.truncate(keep);
    (rows.into_iter().map(|(_, row)| row).collect(), map.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_lists_are_cut_and_ordered() {
        let mut map = HashMap::new();
        for i in 0..25u64 {
            map.insert(format!("k{i:02}"), i % 12);
        }
        let (rows, distinct) = top(&map, |n| vec![*n]);
        assert_eq!(distinct, 25);
        let keys: Vec<_> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            ["k11", "k23", "k10", "k22", "k09", "k21", "k08", "k20", "k07", "k19"]
        );
        assert_eq!(rows[0].values, [11]);
    }

    #[test]
    fn every_section_has_a_unique_id() {
        let report = Report::new(&Summary::default(), Lines::default(), None, None);
        let mut ids: Vec<_> = report.sections.iter().map(|s| s.id).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(report.table("per_hour").map(|t| t.rows.len()), Some(24));
    }
}
