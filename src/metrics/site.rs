//! What the metrics listener ([`super::http`]) serves for a running
//! mxguard: the `/metrics` page of [`super::scrape`], the `/readyz` checks
//! of [`super::ready`].

use super::http::Pages;
use super::Metrics;
use crate::services::Services;
use std::sync::Arc;

/// A running mxguard's pages; `open_connections` counts its SMTP sessions.
pub struct Site<F> {
    pub svc: Arc<Services>,
    pub metrics: Arc<Metrics>,
    pub open_connections: F,
    /// The SMTP listeners it should have bound.
    pub smtp_listeners: usize,
}

impl<F: Fn() -> usize + Send + Sync + 'static> Pages for Site<F> {
    async fn metrics(&self) -> String {
        let open = (self.open_connections)();
        super::scrape::page(&self.svc, &self.metrics, open).await
    }

    async fn readiness(&self) -> Vec<String> {
        super::ready::problems(&self.svc, &self.metrics, self.smtp_listeners).await
    }
}
