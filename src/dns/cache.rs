//! Answers kept for the checks until they expire: a bounded map from a key
//! (a query name, a client address) to a value and the instant it stops
//! being valid. hickory's own cache answers a hit with a copy of the whole
//! DNS message, its TTLs rewritten, after hashing the query through its
//! admission policy (6 % of the CPU of a refused transaction in a storm
//! profile). What is kept here is only what a check reads, until the TTL
//! the DNS gave it.
//! Bounded by starting over: a full map is cleared, as a flood of distinct
//! names must cost no more memory than `max` entries.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Values by key, each until its own expiry.
pub struct Expiring<K, V> {
    entries: Mutex<HashMap<K, Kept<V>>>,
    max: usize,
}

/// A value and when it stops being valid.
struct Kept<V> {
    until: Instant,
    value: V,
}

impl<K: Hash + Eq, V: Clone> Expiring<K, V> {
    /// At most `max` entries (a full map starts over).
    pub fn new(max: usize) -> Expiring<K, V> {
        Expiring {
            entries: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Kept<V>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key` if it is still valid at `now`.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock()
            .get(key)
            .filter(|kept| now < kept.until)
            .map(|kept| kept.value.clone())
    }

    /// Looks at the value for `key` whether or not it has expired (what a
    /// check learned, for the log).
    pub fn peek<Q, R>(&self, key: &Q, look: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(key).map(|kept| look(&kept.value))
    }

    /// Changes the value for `key`, if there is one.
    pub fn update<Q>(&self, key: &Q, change: impl FnOnce(&mut V))
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(kept) = self.lock().get_mut(key) {
            change(&mut kept.value);
        }
    }

    /// Keeps `value` for `key` until `until`; nothing when that is not
    /// after `now` (a TTL of zero is not to be kept).
    pub fn insert(&self, key: K, value: V, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.max && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, Kept { until, value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> Instant {
        // One origin for the whole test: instants are only compared.
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_secs(secs)
    }

    #[test]
    fn a_value_is_returned_until_its_expiry_and_not_after() {
        let cache: Expiring<String, u32> = Expiring::new(10);
        cache.insert("a.test".into(), 7, at(60), at(0));
        assert_eq!(cache.get("a.test", at(0)), Some(7));
        assert_eq!(cache.get("a.test", at(59)), Some(7));
        assert_eq!(cache.get("a.test", at(60)), None);
        assert_eq!(cache.get("b.test", at(0)), None);
    }

    #[test]
    fn a_value_that_expires_now_is_not_kept() {
        let cache: Expiring<String, u32> = Expiring::new(10);
        cache.insert("a.test".into(), 7, at(5), at(5));
        assert_eq!(cache.peek("a.test", |v| *v), None);
    }

    #[test]
    fn an_expired_value_can_still_be_looked_at_and_changed() {
        let cache: Expiring<String, u32> = Expiring::new(10);
        cache.insert("a.test".into(), 7, at(60), at(0));
        cache.update("a.test", |v| *v += 1);
        assert_eq!(cache.get("a.test", at(61)), None);
        assert_eq!(cache.peek("a.test", |v| *v), Some(8));
    }

    #[test]
    fn a_full_map_starts_over_for_a_new_key_but_not_for_a_known_one() {
        let cache: Expiring<u32, u32> = Expiring::new(2);
        cache.insert(1, 1, at(60), at(0));
        cache.insert(2, 2, at(60), at(0));
        cache.insert(2, 20, at(60), at(0));
        assert_eq!(cache.get(&1, at(0)), Some(1));
        assert_eq!(cache.get(&2, at(0)), Some(20));
        cache.insert(3, 3, at(60), at(0));
        assert_eq!(cache.get(&1, at(0)), None);
        assert_eq!(cache.get(&2, at(0)), None);
        assert_eq!(cache.get(&3, at(0)), Some(3));
    }
}
