//! Prometheus metrics. Counters are fed by the decision log: every line
//! mxguard logs is also counted here ([`Metrics::observe`]), so the metrics,
//! the log and `mxguard report` can never disagree. Gauges (open
//! connections, queue, DNSBL health, bans, state errors) are read when
//! scraped ([`scrape`]); DNS query latency is a histogram filled by the
//! resolver. The log also tells [`ready`] (the `/readyz` checks) how many
//! SMTP listeners are bound and when a delivery last succeeded. [`http`]
//! serves them all, [`site`] says what with.

pub mod http;
pub mod ready;
pub mod scrape;
pub mod site;

use crate::dns::latency::Histogram;
use crate::log::Fields;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counters derived from log lines: family name → (labels → value).
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    /// SMTP listeners that logged `event=listen` (no `service=`), less
    /// those that logged `event=unlisten`.
    smtp_listeners: AtomicUsize,
    /// When a delivery last succeeded (Unix seconds; 0: not yet).
    last_delivery: AtomicU64,
}

/// What each counter family means (HELP lines).
const FAMILIES: &[(&str, &str)] = &[
    ("mxguard_events_total", "Log lines written, by event"),
    (
        "mxguard_connections_total",
        "SMTP connections served to the end",
    ),
    ("mxguard_messages_total", "Messages, by outcome"),
    ("mxguard_accepted_bytes_total", "Bytes of accepted messages"),
    (
        "mxguard_accepted_recipients_total",
        "Recipients of accepted messages",
    ),
    (
        "mxguard_rejections_total",
        "Refusals, by stage, check and action (reject or tempfail)",
    ),
    (
        "mxguard_would_reject_total",
        "Refusals a check in warn mode would have made",
    ),
    (
        "mxguard_session_limits_total",
        "Sessions ended by a limit, by check",
    ),
    (
        "mxguard_delivery_attempts_total",
        "Delivery results per recipient, by status",
    ),
    (
        "mxguard_quarantined_total",
        "Messages moved to the quarantine",
    ),
    ("mxguard_bans_total", "Bans decided, by reason"),
    (
        "mxguard_greylist_passes_total",
        "Greylisted triplets that passed",
    ),
    (
        "mxguard_milter_actions_total",
        "Content filters' words on messages (and default actions when one could not be asked), by filter and action",
    ),
];

/// `key="value"` with Prometheus escaping.
fn label(key: &str, value: &str) -> String {
    let mut out = format!("{key}=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{k="v",…}`, or nothing for no labels.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| label(k, v)).collect();
    if inner.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", inner.join(","))
    }
}

impl Metrics {
    fn add(&self, family: &'static str, labels: String, by: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters
            .entry(family)
            .or_default()
            .entry(labels)
            .or_insert(0) += by;
    }

    /// Counts one log line.
    pub fn observe(&self, fields: &Fields) {
        let event = fields.get("event");
        self.add("mxguard_events_total", labels(&[("event", event)]), 1);
        let f = |key| fields.get(key);
        match event {
            "disconnect" => self.add("mxguard_connections_total", String::new(), 1),
            "accept" => {
                self.add(
                    "mxguard_messages_total",
                    labels(&[("outcome", "accepted")]),
                    1,
                );
                self.add(
                    "mxguard_accepted_bytes_total",
                    String::new(),
                    f("size").parse().unwrap_or(0),
                );
                let rcpts = crate::log::split_addresses(f("to"))
                    .filter(|t| !t.is_empty())
                    .count();
                self.add(
                    "mxguard_accepted_recipients_total",
                    String::new(),
                    rcpts as u64,
                );
            }
            "reject" => self.add(
                "mxguard_rejections_total",
                labels(&[
                    ("stage", f("stage")),
                    ("check", f("check")),
                    ("action", f("action")),
                ]),
                1,
            ),
            "would_reject" => self.add(
                "mxguard_would_reject_total",
                labels(&[("stage", f("stage")), ("check", f("check"))]),
                1,
            ),
            "limit" | "dictionary_attack" => self.add(
                "mxguard_session_limits_total",
                labels(&[("check", f("check"))]),
                1,
            ),
            "delivery" => {
                if f("status") == "sent" {
                    let now = crate::time::unix_now();
                    self.last_delivery.store(now, Ordering::Relaxed);
                }
                self.add(
                    "mxguard_delivery_attempts_total",
                    labels(&[("status", f("status"))]),
                    1,
                )
            }
            "listen" if f("service").is_empty() => {
                self.smtp_listeners.fetch_add(1, Ordering::Relaxed);
            }
            "unlisten" => {
                let _ =
                    self.smtp_listeners
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            Some(n.saturating_sub(1))
                        });
            }
            "quarantine" => self.add("mxguard_quarantined_total", String::new(), 1),
            "ban" => self.add("mxguard_bans_total", labels(&[("reason", f("reason"))]), 1),
            "greylist_pass" => self.add("mxguard_greylist_passes_total", String::new(), 1),
            "milter" => self.add(
                "mxguard_milter_actions_total",
                labels(&[("milter", f("milter")), ("action", f("action"))]),
                1,
            ),
            _ => {}
        }
    }

    /// SMTP listeners bound now (those a reload closed are not counted).
    pub fn smtp_listeners(&self) -> usize {
        self.smtp_listeners.load(Ordering::Relaxed)
    }

    /// When a delivery last succeeded (Unix seconds), if one did since
    /// the metrics were started.
    pub fn last_delivery(&self) -> Option<u64> {
        Some(self.last_delivery.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// The counters in the Prometheus text format.
    pub fn render_counters(&self, out: &mut String) {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for (family, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            match counters.get(family) {
                Some(series) => {
                    for (labels, value) in series {
                        let _ = writeln!(out, "{family}{labels} {value}");
                    }
                }
                // Families without labels exist from the start, at 0.
                None if !family_has_labels(family) => {
                    let _ = writeln!(out, "{family} 0");
                }
                None => {}
            }
        }
    }
}

fn family_has_labels(family: &str) -> bool {
    matches!(
        family,
        "mxguard_events_total"
            | "mxguard_messages_total"
            | "mxguard_rejections_total"
            | "mxguard_would_reject_total"
            | "mxguard_session_limits_total"
            | "mxguard_delivery_attempts_total"
            | "mxguard_bans_total"
    )
}

impl crate::log::Observer for Metrics {
    fn observe(&self, fields: &Fields) {
        Metrics::observe(self, fields);
    }
}

/// One gauge (or externally kept counter) line with its HELP and TYPE.
pub fn gauge(out: &mut String, name: &str, kind: &str, help: &str, series: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in series {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The DNS latency histogram (which the resolver fills).
pub fn render_dns(out: &mut String) {
    render_histogram(
        &crate::dns::latency::LATENCY,
        "mxguard_dns_query_seconds",
        "Time taken by DNS queries (answers, failures and timeouts)",
        out,
    );
}

fn render_histogram(latency: &Histogram, name: &str, help: &str, out: &mut String) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, count) in latency.buckets() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let count = latency.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(
        out,
        "{name}_sum {}\n{name}_count {count}",
        latency.sum_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(pairs: &[(&'static str, &str)]) -> Fields {
        Fields::of(pairs)
    }

    #[test]
    fn log_lines_become_counters() {
        let m = Metrics::default();
        m.observe(&line(&[
            ("event", "accept"),
            ("to", "a@x,b@x"),
            ("size", "100"),
        ]));
        m.observe(&line(&[
            ("event", "reject"),
            ("stage", "rcpt"),
            ("check", "dnsbl:bl\"x"),
            ("action", "reject"),
        ]));
        m.observe(&line(&[("event", "delivery"), ("status", "sent")]));
        let mut out = String::new();
        m.render_counters(&mut out);
        assert!(
            out.contains("mxguard_messages_total{outcome=\"accepted\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("mxguard_accepted_recipients_total 2\n"),
            "{out}"
        );
        assert!(out.contains("mxguard_accepted_bytes_total 100\n"), "{out}");
        assert!(out.contains(
            "mxguard_rejections_total{stage=\"rcpt\",check=\"dnsbl:bl\\\"x\",action=\"reject\"} 1\n"
        ), "{out}");
        assert!(
            out.contains("mxguard_delivery_attempts_total{status=\"sent\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("mxguard_quarantined_total 0\n"), "{out}");
        assert!(
            out.contains("mxguard_events_total{event=\"accept\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn the_log_tells_listeners_and_deliveries() {
        let m = Metrics::default();
        m.observe(&line(&[("event", "listen"), ("address", "127.0.0.1:25")]));
        m.observe(&line(&[("event", "listen"), ("service", "metrics")]));
        m.observe(&line(&[("event", "delivery"), ("status", "deferred")]));
        assert_eq!(m.smtp_listeners(), 1);
        assert_eq!(m.last_delivery(), None);
        let before = crate::time::unix_now();
        m.observe(&line(&[("event", "delivery"), ("status", "sent")]));
        let after = crate::time::unix_now();
        let at = m.last_delivery().unwrap();
        assert!((before..=after).contains(&at), "{before} {at} {after}");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let mut out = String::new();
        render_histogram(&h, "x", "help", &mut out);
        assert!(out.contains("x_bucket{le=\"0.001\"} 0\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.5\"} 2\n"), "{out}");
        assert!(
            out.contains("x_bucket{le=\"+Inf\"} 2\nx_sum 0.303\nx_count 2\n"),
            "{out}"
        );
    }
}
