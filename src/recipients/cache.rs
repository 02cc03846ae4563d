//! What the callout learned: for each address, whether it exists and when
//! that was last confirmed. Kept in memory, saved to
//! `<spool.dir>/recipient-cache` (a line per address, written aside and
//! renamed) so a restart, or an outage of the primary, keeps it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub exists: bool,
    /// Unix time of the answer.
    pub checked: u64,
}

pub struct RecipientCache {
    path: PathBuf,
    entries: Mutex<HashMap<String, Known>>,
    dirty: AtomicBool,
    /// One save at a time (the periodic one and the one at stop).
    saving: Mutex<()>,
}

/// Beyond this many addresses, the oldest answers are forgotten first.
const MAX_ENTRIES: usize = 200_000;

impl RecipientCache {
    /// Loads the saved cache; a missing file is an empty cache, a broken
    /// line is skipped.
    pub fn load(path: &Path) -> RecipientCache {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split(' ');
                let address = words.next()?;
                let exists = match words.next()? {
                    "exists" => true,
                    "missing" => false,
                    _ => return None,
                };
                let checked = words.next()?.parse().ok()?;
                Some((address.to_string(), Known { exists, checked }))
            })
            .collect();
        RecipientCache {
            path: path.to_path_buf(),
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(false),
            saving: Mutex::new(()),
        }
    }

    pub fn get(&self, address: &str) -> Option<Known> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(address).copied()
    }

    pub fn put(&self, address: &str, known: Known) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(address) {
            // Full: negative answers go first (a dictionary attack must not
            // push out the mailboxes a backup MX needs), then the oldest.
            entries.retain(|_, k| k.exists);
            if entries.len() >= MAX_ENTRIES / 2 {
                let mut ages: Vec<u64> = entries.values().map(|k| k.checked).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                entries.retain(|_, k| k.checked > cutoff);
            }
        }
        entries.insert(address.to_string(), known);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the cache if it changed since the last save (blocking).
    pub fn save(&self) -> std::io::Result<()> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let mut text = String::new();
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            for (address, k) in entries.iter() {
                let state = if k.exists { "exists" } else { "missing" };
                text.push_str(&format!("{address} {state} {}\n", k.checked));
            }
        }
        let tmp = self.path.with_extension("tmp");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .and_then(|()| std::fs::File::open(dir)?.sync_all());
        if result.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipient-cache");
        let cache = RecipientCache::load(&path);
        assert_eq!(cache.get("a@example.com"), None);
        cache.put(
            "a@example.com",
            Known {
                exists: true,
                checked: 100,
            },
        );
        cache.put(
            "b@example.com",
            Known {
                exists: false,
                checked: 200,
            },
        );
        cache.save().unwrap();
        std::fs::write(dir.path().join("junk"), "x").unwrap();
        let again = RecipientCache::load(&path);
        assert_eq!(
            again.get("a@example.com"),
            Some(Known {
                exists: true,
                checked: 100
            })
        );
        assert_eq!(
            again.get("b@example.com"),
            Some(Known {
                exists: false,
                checked: 200
            })
        );
    }
}
