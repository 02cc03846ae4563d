//! The Redis state backend (stub: being written).

use super::StateError;
use std::time::Duration;

pub struct Redis {
    _url: String,
}

impl Redis {
    pub fn new(url: &str, _prefix: &str, _timeout: Duration) -> Result<Redis, StateError> {
        Ok(Redis { _url: url.into() })
    }
    pub async fn get(&self, _key: &str) -> Result<Option<String>, StateError> {
        Err(StateError::NotConnected)
    }
    pub async fn put(&self, _key: &str, _value: &str, _ttl: Duration) -> Result<(), StateError> {
        Err(StateError::NotConnected)
    }
    pub async fn remove(&self, _key: &str) -> Result<(), StateError> {
        Err(StateError::NotConnected)
    }
    pub async fn hit(
        &self,
        _key: &str,
        _now: u64,
        _window: Duration,
        _limit: u32,
    ) -> Result<Option<u32>, StateError> {
        Err(StateError::NotConnected)
    }
    pub async fn list(&self, _prefix: &str) -> Result<Vec<(String, String)>, StateError> {
        Err(StateError::NotConnected)
    }
}
