//! What the metrics listener ([`super::http`]) serves for a running
//! mxguard: the `/metrics` page of [`super::scrape`], the `/readyz` checks
//! of [`super::ready`].

use super::http::Pages;
use super::Metrics;
use crate::services::Live;
use std::sync::Arc;

/// A running mxguard's pages (of the configuration in force);
/// `open_connections` counts its SMTP sessions.
pub struct Site<F> {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub open_connections: F,
    /// Whether it has SMTP listeners (not in `policy-server` mode).
    pub smtp_listeners: bool,
}

impl<F: Fn() -> usize + Send + Sync + 'static> Pages for Site<F> {
    async fn metrics(&self) -> String {
        let open = (self.open_connections)();
        super::scrape::page(&self.live.current(), &self.metrics, open).await
    }

    async fn readiness(&self) -> Vec<String> {
        super::ready::problems(&self.live.current(), &self.metrics, self.smtp_listeners).await
    }
}
