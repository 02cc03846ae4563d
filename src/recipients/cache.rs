//! What the callout learned, kept in the state store: `rcpt:ADDRESS` →
//! `exists CHECKED` or `missing CHECKED` (Unix time of the answer), living
//! as long as `recipients.positive_ttl` or `negative_ttl`. The store keeps
//! it across restarts (the memory backend saves it in the spool) and
//! shares it with the fleet (Redis), so a backup MX still knows the
//! mailboxes while the primary is down.

use crate::config::Config;
use crate::state::{State, Unavailable};
use std::sync::Arc;

/// One cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub exists: bool,
    /// Unix time of the answer.
    pub checked: u64,
}

impl Known {
    fn parse(value: &str) -> Option<Known> {
        let (state, checked) = value.split_once(' ')?;
        let exists = match state {
            "exists" => true,
            "missing" => false,
            _ => return None,
        };
        Some(Known {
            exists,
            checked: checked.parse().ok()?,
        })
    }

    fn value(&self) -> String {
        let state = if self.exists { "exists" } else { "missing" };
        format!("{state} {}", self.checked)
    }
}

pub struct RecipientCache {
    config: Arc<Config>,
    state: Arc<State>,
}

fn key(address: &str) -> String {
    format!("rcpt:{address}")
}

impl RecipientCache {
    pub fn new(config: Arc<Config>, state: Arc<State>) -> RecipientCache {
        RecipientCache { config, state }
    }

    pub async fn get(&self, address: &str) -> Result<Option<Known>, Unavailable> {
        Ok(self
            .state
            .get(&key(address))
            .await?
            .as_deref()
            .and_then(Known::parse))
    }

    pub async fn put(&self, address: &str, known: Known) -> Result<(), Unavailable> {
        let r = &self.config.recipients;
        let ttl = if known.exists {
            r.positive_ttl.0
        } else {
            r.negative_ttl.0
        };
        let age = crate::time::unix_now().saturating_sub(known.checked);
        let left = ttl.saturating_sub(std::time::Duration::from_secs(age));
        self.state.put(&key(address), &known.value(), left).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for known in [
            Known {
                exists: true,
                checked: 100,
            },
            Known {
                exists: false,
                checked: 7,
            },
        ] {
            assert_eq!(Known::parse(&known.value()), Some(known));
        }
        assert_eq!(Known::parse("maybe 1"), None);
        assert_eq!(Known::parse("exists"), None);
    }
}
