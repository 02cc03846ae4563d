//! The Postfix policy delegation server (SMTPD_POLICY_README) (stub:
//! being written).

pub mod protocol;

use crate::services::Services;
use std::sync::Arc;

/// Why the policy server could not start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyServerError {
    #[error("policy_server.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Binds `[policy_server] listen` and serves it in the background.
pub async fn start(_svc: Arc<Services>) -> Result<(), PolicyServerError> {
    Ok(())
}
