//! Queue IDs: 20 upper-case hex digits (arrival time in microseconds, the
//! process ID and a counter), sortable by arrival, unique across restarts,
//! and safe as file names: IDs from the command line are checked here
//! before they ever touch a path.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::UNIX_EPOCH;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl QueueId {
    /// A new ID for a message arriving now.
    pub fn generate() -> QueueId {
        let micros = crate::time::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        QueueId(format!(
            "{:012X}{:04X}{:04X}",
            micros & 0xFFFF_FFFF_FFFF,
            std::process::id() & 0xFFFF,
            count & 0xFFFF
        ))
    }

    /// Accepts only what [`QueueId::generate`] makes.
    pub fn parse(text: &str) -> Option<QueueId> {
        let valid = text.len() == 20
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        valid.then(|| QueueId(text.to_string()))
    }

    /// How long ago the message arrived, from the time in the ID (kept
    /// modulo 2^48 microseconds, about nine years).
    pub fn age(&self, now: std::time::SystemTime) -> std::time::Duration {
        let arrived = self
            .0
            .get(..12)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .unwrap_or(0);
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        std::time::Duration::from_micros(now.wrapping_sub(arrived) & 0xFFFF_FFFF_FFFF)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = QueueId::generate();
        let b = QueueId::generate();
        assert_ne!(a, b);
        assert_eq!(QueueId::parse(a.as_str()), Some(a));
        assert_eq!(QueueId::parse("../../etc/passwd"), None);
        assert_eq!(QueueId::parse("0123456789abcdef0123"), None);
    }
}
