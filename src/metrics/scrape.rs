//! One `/metrics` page: the log-fed counters, then the gauges read now —
//! open connections, the queue (size and oldest message, from the queue
//! IDs, which encode the arrival time), DNSBL health per zone, bans in
//! force, state-store failures — and the DNS latency histogram.

use super::{gauge, labels, render_dns, Metrics};
use crate::services::Services;

/// Renders the page for a gateway with `open_connections` sessions.
pub async fn page(svc: &Services, metrics: &Metrics, open_connections: usize) -> String {
    let mut out = String::with_capacity(8 * 1024);
    metrics.render_counters(&mut out);
    gauge(
        &mut out,
        "mxguard_connections_open",
        "gauge",
        "SMTP connections open now",
        &[(String::new(), open_connections as f64)],
    );
    let spool = svc.spool.clone();
    let queue = tokio::task::spawn_blocking(move || spool.list())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let now = crate::time::now();
    let oldest = queue
        .iter()
        .map(|id| id.age(now).as_secs())
        .max()
        .unwrap_or(0);
    gauge(
        &mut out,
        "mxguard_queue_messages",
        "gauge",
        "Messages in the queue",
        &[(String::new(), queue.len() as f64)],
    );
    gauge(
        &mut out,
        "mxguard_queue_oldest_age_seconds",
        "gauge",
        "Age of the oldest message in the queue",
        &[(String::new(), oldest as f64)],
    );
    let zones = svc.config.dnsbl.iter().chain(&svc.config.rhsbl);
    let health: Vec<(String, f64)> = zones
        .map(|z| {
            let h = svc.policy.checks.health.get(&z.zone);
            let usable = if h.usable() { 1.0 } else { 0.0 };
            (labels(&[("zone", &z.zone), ("health", h.label())]), usable)
        })
        .collect();
    gauge(
        &mut out,
        "mxguard_dnsbl_usable",
        "gauge",
        "Whether a DNS list may refuse mail (1), with its RFC 5782 health",
        &health,
    );
    let refused: Vec<(String, f64)> = svc
        .config
        .dnsbl
        .iter()
        .chain(&svc.config.rhsbl)
        .filter_map(|z| match svc.policy.checks.health.get(&z.zone) {
            crate::dns::dnsbl::Health::Refused(refusal) => Some((
                labels(&[("zone", &z.zone), ("reason", refusal.name())]),
                1.0,
            )),
            _ => None,
        })
        .collect();
    gauge(
        &mut out,
        "mxguard_dnsbl_refused",
        "gauge",
        "A DNS list that refuses this host's resolver (bad_query, open_resolver, over_quota): off",
        &refused,
    );
    let state = &svc.abuse.state;
    if let Ok(bans) = crate::abuse::bans::list(&state.store).await {
        gauge(
            &mut out,
            "mxguard_bans_active",
            "gauge",
            "Clients banned now",
            &[(String::new(), bans.len() as f64)],
        );
    }
    gauge(
        &mut out,
        "mxguard_state_errors_total",
        "counter",
        "State-store operations that failed",
        &[(String::new(), state.errors() as f64)],
    );
    render_dns(&mut out);
    out
}
