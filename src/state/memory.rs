//! The in-process state backend: a map of keys to values or event logs,
//! each with an expiry, bounded per family of keys, saved to
//! `<spool.dir>/state` (a line per key, written aside, fsynced and renamed)
//! periodically and at shutdown, so bans and what the callout learned
//! survive a restart.
//!
//! A family is what a key starts with: `ban`, `offence`, `grey`, `rcpt`,
//! … — and for rate counters the counter's kind (`rate:sender_messages`).
//! Each family holds at most `state.max_entries` keys: beyond, its expired
//! keys go, then the tenth that expires soonest; a flood of one kind (a
//! client sending MAIL with random senders fills `rate:sender_messages`)
//! never pushes out another (bans, known mailboxes), and memory stays
//! bounded. Rate counters are not saved (like Postfix's anvil, their
//! windows start empty after a restart), so such a flood costs the
//! periodic save nothing; the file is written only when a saved family
//! changed.
//!
//! File format, one key per line, fields separated by tabs:
//! `KEY EXPIRES v VALUE` for a value, `KEY EXPIRES l T1,T2,…` for the event
//! times of a sliding-window counter. Tabs, newlines and backslashes in
//! keys and values are escaped with a backslash. A line that does not
//! parse is skipped.

use super::StateError;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    Value(String),
    /// Event times (Unix seconds), oldest first.
    Log(VecDeque<u64>),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Unix time after which the entry is gone.
    expires: u64,
    data: Data,
}

/// The family a key belongs to (see the module documentation).
fn family(key: &str) -> &str {
    let first = key.find(':').unwrap_or(key.len());
    if &key[..first] != "rate" {
        return &key[..first];
    }
    match key[first + 1..].find(':') {
        Some(second) => &key[..first + 1 + second],
        None => key,
    }
}

/// Whether a family is written to the state file.
fn saved(family: &str) -> bool {
    family != "rate" && !family.starts_with("rate:")
}

/// The entries, and how many of each family there are.
#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    families: HashMap<String, usize>,
}

impl Entries {
    fn insert(&mut self, key: String, entry: Entry) {
        use std::collections::hash_map::Entry as Slot;
        match self.map.entry(key) {
            Slot::Occupied(mut old) => {
                old.insert(entry);
            }
            Slot::Vacant(new) => {
                // The family's name is copied only for its first key.
                let fam = family(new.key());
                match self.families.get_mut(fam) {
                    Some(n) => *n += 1,
                    None => {
                        self.families.insert(fam.to_string(), 1);
                    }
                }
                new.insert(entry);
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let removed = self.map.remove(key)?;
        self.forget(key);
        Some(removed)
    }

    /// One key of its family fewer.
    fn forget(&mut self, key: &str) {
        let fam = family(key);
        if let Some(n) = self.families.get_mut(fam) {
            *n -= 1;
            if *n == 0 {
                self.families.remove(fam);
            }
        }
    }

    /// Keeps the entries `keep` says to keep.
    fn retain(&mut self, mut keep: impl FnMut(&str, &Entry) -> bool) {
        let families = &mut self.families;
        self.map.retain(|k, e| {
            let kept = keep(k, e);
            if !kept {
                let fam = family(k);
                if let Some(n) = families.get_mut(fam) {
                    *n -= 1;
                    if *n == 0 {
                        families.remove(fam);
                    }
                }
            }
            kept
        });
    }

    fn count(&self, fam: &str) -> usize {
        self.families.get(fam).copied().unwrap_or(0)
    }

    /// Makes room in `key`'s family for a new key, if it is full: drops its
    /// expired keys; if that is not enough, the tenth that expires soonest
    /// (by expiry, then key: keys of one second and lifetime all expire
    /// together, and only a tenth of them goes).
    fn make_room(&mut self, key: &str, now: u64, max: usize) {
        let fam = family(key);
        if self.count(fam) < max || self.map.contains_key(key) {
            return;
        }
        self.retain(|k, e| e.expires > now || family(k) != fam);
        let count = self.count(fam);
        if count < max {
            return;
        }
        let mut soonest: Vec<(u64, String)> = self
            .map
            .iter()
            .filter(|(k, _)| family(k) == fam)
            .map(|(k, e)| (e.expires, k.clone()))
            .collect();
        soonest.sort_unstable();
        for (_, gone) in soonest.into_iter().take(count.div_ceil(10)) {
            self.remove(&gone);
        }
    }
}

pub struct Memory {
    /// Where it is saved; `None` for a scratch store that never is.
    path: Option<PathBuf>,
    entries: Mutex<Entries>,
    /// Keys per family at most.
    max: usize,
    /// A saved family changed since the last save.
    dirty: AtomicBool,
    /// One save at a time (the periodic one and the one at stop).
    saving: Mutex<()>,
}

impl Memory {
    /// Loads the saved state; a missing file is an empty state.
    pub fn load(path: PathBuf, max: usize) -> Result<Memory, StateError> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(StateError::File {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Ok(Memory::from_text(Some(path), &text, max))
    }

    /// The state a saved file's text describes (lines that do not parse are
    /// skipped, and so are keys beyond a family's `max`); saved to `path`
    /// when there is one.
    pub fn from_text(path: Option<PathBuf>, text: &str, max: usize) -> Memory {
        let mut entries = Entries::default();
        for (key, entry) in text.lines().filter_map(parse_line) {
            if entries.count(family(&key)) < max {
                entries.insert(key, entry);
            }
        }
        Memory {
            path,
            entries: Mutex::new(entries),
            max,
            dirty: AtomicBool::new(false),
            saving: Mutex::new(()),
        }
    }

    /// An empty store that is never saved (for the one-shot commands).
    pub fn scratch() -> Memory {
        Memory::from_text(None, "", usize::MAX)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, key: &str) {
        if saved(family(key)) {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    pub fn get(&self, key: &str, now: u64) -> Option<String> {
        match self.lock().map.get(key) {
            Some(Entry {
                expires,
                data: Data::Value(v),
            }) if *expires > now => Some(v.clone()),
            _ => None,
        }
    }

    pub fn put(&self, key: &str, value: &str, now: u64, ttl: Duration) {
        let entry = Entry {
            expires: now.saturating_add(ttl.as_secs()),
            data: Data::Value(value.to_string()),
        };
        let mut entries = self.lock();
        entries.make_room(key, now, self.max);
        entries.insert(key.to_string(), entry);
        drop(entries);
        self.changed(key);
    }

    pub fn remove(&self, key: &str) {
        if self.lock().remove(key).is_some() {
            self.changed(key);
        }
    }

    /// See [`super::Store::hit`].
    pub fn hit(&self, key: &str, now: u64, window: Duration, limit: u32) -> Option<u32> {
        let window = window.as_secs().max(1);
        let mut entries = self.lock();
        let mut times = match entries.remove(key) {
            Some(Entry {
                expires,
                data: Data::Log(times),
            }) if expires > now => times,
            _ => VecDeque::new(),
        };
        while times
            .front()
            .is_some_and(|&t| t.saturating_add(window) <= now)
        {
            times.pop_front();
        }
        let counted = if times.len() >= limit as usize {
            None
        } else {
            times.push_back(now);
            Some(times.len() as u32)
        };
        if !times.is_empty() {
            let expires = times.back().map_or(now, |&t| t.saturating_add(window));
            entries.make_room(key, now, self.max);
            entries.insert(
                key.to_string(),
                Entry {
                    expires,
                    data: Data::Log(times),
                },
            );
        }
        drop(entries);
        self.changed(key);
        counted
    }

    /// See [`super::Store::count`].
    pub fn count(&self, key: &str, now: u64, window: Duration) -> u32 {
        let window = window.as_secs().max(1);
        match self.lock().map.get(key) {
            Some(Entry {
                expires,
                data: Data::Log(times),
            }) if *expires > now => times
                .iter()
                .filter(|&&t| t.saturating_add(window) > now)
                .count() as u32,
            _ => 0,
        }
    }

    pub fn list(&self, prefix: &str, now: u64) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = self
            .lock()
            .map
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && e.expires > now)
            .filter_map(|(k, e)| match &e.data {
                Data::Value(v) => Some((k.clone(), v.clone())),
                Data::Log(_) => None,
            })
            .collect();
        found.sort();
        found
    }

    /// Writes the live entries of the saved families, if one changed
    /// since the last save.
    pub fn save(&self, now: u64) -> Result<(), StateError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        // Copied under the lock, written out without it: sessions wait
        // for a copy, not for the formatting.
        let snapshot: Vec<(String, Entry)> = {
            let mut entries = self.lock();
            entries.retain(|_, e| e.expires > now);
            entries
                .map
                .iter()
                .filter(|(k, _)| saved(family(k)))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        };
        let mut text = String::new();
        for (key, entry) in &snapshot {
            text.push_str(&format_line(key, entry));
        }
        let tmp = path.with_extension("tmp");
        let dir = path.parent().unwrap_or(Path::new("."));
        let _ = std::fs::remove_file(&tmp);
        let result = crate::owned::new_file(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| std::fs::File::open(dir)?.sync_all());
        result.map_err(|source| {
            self.dirty.store(true, Ordering::Relaxed);
            StateError::File {
                path: path.display().to_string(),
                source,
            }
        })
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            _ => return None,
        });
    }
    Some(out)
}

fn format_line(key: &str, entry: &Entry) -> String {
    let (kind, data) = match &entry.data {
        Data::Value(v) => ("v", escape(v)),
        Data::Log(times) => (
            "l",
            times
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    format!("{}\t{}\t{kind}\t{data}\n", escape(key), entry.expires)
}

fn parse_line(line: &str) -> Option<(String, Entry)> {
    let mut fields = line.splitn(4, '\t');
    let key = unescape(fields.next()?)?;
    let expires = fields.next()?.parse().ok()?;
    let data = match (fields.next()?, fields.next()?) {
        ("v", value) => Data::Value(unescape(value)?),
        ("l", times) => Data::Log(
            times
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        ),
        _ => return None,
    };
    Some((key, Entry { expires, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> Memory {
        Memory::load(dir.path().join("state"), 1000).unwrap()
    }

    #[test]
    fn values_expire() {
        let dir = tempfile::tempdir().unwrap();
        let m = store(&dir);
        m.put("a", "1", 100, Duration::from_secs(10));
        assert_eq!(m.get("a", 109).as_deref(), Some("1"));
        assert_eq!(m.get("a", 110), None);
        m.remove("a");
        assert_eq!(m.get("a", 100), None);
    }

    #[test]
    fn sliding_window_counts_and_refuses_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let m = store(&dir);
        let hour = Duration::from_secs(3600);
        assert_eq!(m.hit("k", 1000, hour, 3), Some(1));
        assert_eq!(m.hit("k", 1100, hour, 3), Some(2));
        assert_eq!(m.hit("k", 1200, hour, 3), Some(3));
        // Full: refused and not counted.
        assert_eq!(m.hit("k", 4599, hour, 3), None);
        // The first event leaves the window at 1000 + 3600.
        assert_eq!(m.hit("k", 4600, hour, 3), Some(3));
        // Long after: an empty window.
        assert_eq!(m.hit("k", 100_000, hour, 3), Some(1));
        // Counting changes nothing.
        assert_eq!(m.count("k", 100_000, hour), 1);
        assert_eq!(m.count("k", 100_000, hour), 1);
        assert_eq!(m.count("k", 103_600, hour), 0);
        assert_eq!(m.count("nothing", 0, hour), 0);
        assert_eq!(m.hit("z", 0, hour, 0), None);
    }

    #[test]
    fn survives_save_and_load_with_awkward_keys() {
        let dir = tempfile::tempdir().unwrap();
        let m = store(&dir);
        let day = Duration::from_secs(86_400);
        m.put("ban:192.0.2.1", "200 1", 100, day);
        m.put("rcpt:\"a\\\tb\"@example.com", "exists 100", 100, day);
        m.put("gone", "x", 100, Duration::from_secs(1));
        m.hit("offence:192.0.2.1", 100, day, 5);
        m.hit("offence:192.0.2.1", 150, day, 5);
        m.save(150).unwrap();
        let again = store(&dir);
        assert_eq!(again.get("ban:192.0.2.1", 150).as_deref(), Some("200 1"));
        assert_eq!(
            again.get("rcpt:\"a\\\tb\"@example.com", 150).as_deref(),
            Some("exists 100")
        );
        assert_eq!(again.get("gone", 150), None);
        assert_eq!(again.hit("offence:192.0.2.1", 160, day, 5), Some(3));
        assert_eq!(
            again.list("ban:", 150),
            vec![("ban:192.0.2.1".to_string(), "200 1".to_string())]
        );
    }

    #[test]
    fn broken_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("state"),
            "ok\t999\tv\tyes\nbad\tx\tv\tno\nbad2\t999\tq\tno\nbad3\t999\tl\t1,x\n\\q\t999\tv\tz\n",
        )
        .unwrap();
        let m = store(&dir);
        assert_eq!(m.get("ok", 1).as_deref(), Some("yes"));
        assert_eq!(m.list("", 1).len(), 1);
    }

    #[test]
    fn keys_are_counted_by_family() {
        assert_eq!(family("ban:192.0.2.1"), "ban");
        assert_eq!(
            family("rate:sender_messages:a@b.test"),
            "rate:sender_messages"
        );
        assert_eq!(family("rate:connections:192.0.2.1"), "rate:connections");
        assert_eq!(family("grey:192.0.2.0/24:x"), "grey");
        assert_eq!(family("odd"), "odd");
        assert!(saved("ban") && saved("rcpt") && !saved("rate:messages"));
    }

    #[test]
    fn a_flood_of_one_family_never_pushes_out_another() {
        let dir = tempfile::tempdir().unwrap();
        let m = store(&dir);
        let day = Duration::from_secs(86_400);
        let hour = Duration::from_secs(3600);
        for i in 0..10 {
            m.put(&format!("ban:192.0.2.{i}"), "x", 100, day);
        }
        for i in 0..5000 {
            m.hit(
                &format!("rate:sender_messages:{i}@random.test"),
                100 + i,
                hour,
                10,
            );
        }
        let entries = m.lock();
        assert!(entries.count("rate:sender_messages") <= 1000);
        assert_eq!(entries.count("ban"), 10);
        assert_eq!(entries.map.len(), entries.families.values().sum::<usize>());
        drop(entries);
        assert_eq!(m.list("ban:", 200).len(), 10);
    }

    #[test]
    fn a_full_family_loses_a_tenth_even_when_all_expire_together() {
        let dir = tempfile::tempdir().unwrap();
        let m = Memory::load(dir.path().join("state"), 100).unwrap();
        let hour = Duration::from_secs(3600);
        for i in 0..101 {
            m.put(&format!("grey:{i:03}"), "1", 100, hour);
        }
        assert_eq!(
            m.lock().count("grey"),
            91,
            "100 at the cap, a tenth gone, one added"
        );
    }

    #[test]
    fn rate_counters_are_not_saved_and_do_not_make_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let m = store(&dir);
        let hour = Duration::from_secs(3600);
        m.hit("rate:sender_messages:a@b.test", 100, hour, 10);
        m.save(100).unwrap();
        assert!(!dir.path().join("state").exists(), "nothing saved changed");
        m.put("ban:192.0.2.1", "x", 100, hour);
        m.save(100).unwrap();
        let text = std::fs::read_to_string(dir.path().join("state")).unwrap();
        assert!(text.starts_with("ban:192.0.2.1\t"), "{text}");
        assert!(!text.contains("rate:"), "{text}");
    }
}
