//! The recipient table file: one address or `@domain` per line, `#`
//! comments. Reloaded when the file changes (checked at lookup, so an edit
//! takes effect for the very next RCPT); a broken file keeps the last good
//! table and logs why, once per change.

use crate::log::Logger;
use crate::smtp::address::{is_domain, parse_mailbox, Mailbox};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Why a table file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: `{text}` is neither an address nor @domain")]
    Syntax {
        path: String,
        line: usize,
        text: String,
    },
}

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

struct Loaded {
    entries: Arc<HashSet<String>>,
    stamp: Option<Stamp>,
}

/// A hot-reloaded recipient table.
pub struct RecipientTable {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl RecipientTable {
    /// Loads the table; an unreadable or broken file is an error at start.
    pub fn open(path: &Path) -> Result<RecipientTable, TableError> {
        let stamp = stamp(path);
        let entries = parse_file(path)?;
        Ok(RecipientTable {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                entries: Arc::new(entries),
                stamp,
            }),
        })
    }

    /// The current entries, reloading first if the file changed.
    fn entries(&self, log: &Logger) -> Arc<HashSet<String>> {
        let mut loaded = match self.loaded.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = stamp(&self.path);
        if now != loaded.stamp {
            loaded.stamp = now;
            match parse_file(&self.path) {
                Ok(entries) => {
                    log.event("table_reload")
                        .kv("table", self.path.display())
                        .kv("entries", entries.len())
                        .emit();
                    loaded.entries = Arc::new(entries);
                }
                Err(e) => log
                    .event("table_error")
                    .kv("table", self.path.display())
                    .kv("error", e)
                    .kv("action", "kept last good table")
                    .emit(),
            }
        }
        loaded.entries.clone()
    }

    /// Whether the table lists the mailbox or its `@domain`.
    pub fn contains(&self, mailbox: &Mailbox, log: &Logger) -> bool {
        let Some(domain) = mailbox.domain_name() else {
            return false;
        };
        let entries = self.entries(log);
        let address = format!("{}@{}", mailbox.local_unquoted().to_lowercase(), domain);
        entries.contains(&address) || entries.contains(&format!("@{domain}"))
    }
}

fn parse_file(path: &Path) -> Result<HashSet<String>, TableError> {
    let text = std::fs::read_to_string(path).map_err(|source| TableError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut entries = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let syntax = || TableError::Syntax {
            path: path.display().to_string(),
            line: i + 1,
            text: line.chars().take(80).collect(),
        };
        let entry = match line.strip_prefix('@') {
            Some(domain) => {
                let domain = crate::smtp::address::normalize_domain(domain);
                if !is_domain(&domain) {
                    return Err(syntax());
                }
                format!("@{domain}")
            }
            None => {
                let m = parse_mailbox(line).map_err(|_| syntax())?;
                let domain = m.domain_name().ok_or_else(syntax)?;
                format!("{}@{}", m.local_unquoted().to_lowercase(), domain)
            }
        };
        entries.insert(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::parse_mailbox;

    #[test]
    fn lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipients");
        std::fs::write(&path, "# users\nAlice@Example.com\n@catchall.example\n\n").unwrap();
        let table = RecipientTable::open(&path).unwrap();
        let log = Logger::discard();
        let has = |t: &RecipientTable, a: &str| t.contains(&parse_mailbox(a).unwrap(), &log);
        assert!(has(&table, "alice@example.com"));
        assert!(has(&table, "ALICE@EXAMPLE.COM"));
        assert!(!has(&table, "bob@example.com"));
        assert!(has(&table, "anyone@catchall.example"));

        std::fs::write(&path, "bob@example.com\n").unwrap();
        assert!(has(&table, "bob@example.com"));
        assert!(!has(&table, "alice@example.com"));

        std::fs::write(&path, "bob@example.com\nthis is not an address\n").unwrap();
        assert!(
            has(&table, "bob@example.com"),
            "a broken file keeps the last good table"
        );
    }

    #[test]
    fn broken_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipients");
        std::fs::write(&path, "ok@example.com\nnot-an-address\n").unwrap();
        let err = RecipientTable::open(&path).err().unwrap().to_string();
        assert!(
            err.ends_with(":2: `not-an-address` is neither an address nor @domain"),
            "{err}"
        );
    }
}
