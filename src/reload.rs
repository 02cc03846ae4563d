//! Files that take effect without a restart (recipient table, block lists,
//! client exceptions): parsed at start (a broken file is an error then),
//! re-checked at every use by their size, inode and modification time, and
//! re-parsed when they change. A broken new version keeps the last good one
//! and logs why, once per change.

use crate::log::Logger;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A file that cannot be used, with the line at fault.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{key}: {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: {path}:{line}: {message}")]
    Syntax {
        key: &'static str,
        path: String,
        line: usize,
        message: String,
    },
}

/// A parse error on one line, before the path is known.
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Parses a file's text into the value it stands for.
pub type Parser<T> = fn(&str) -> Result<T, LineError>;

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

struct Loaded<T> {
    value: Arc<T>,
    stamp: Option<Stamp>,
    /// The loaded file had entries: an empty new version is then taken for
    /// a file caught mid-rewrite, not an intent to clear the list.
    had_entries: bool,
}

/// A parsed file, kept current.
pub struct Reloadable<T> {
    /// The configuration key, for logs.
    key: &'static str,
    path: PathBuf,
    parse: Parser<T>,
    loaded: Mutex<Loaded<T>>,
}

/// The parsed file, and whether it had any entry.
fn load<T>(key: &'static str, path: &Path, parse: Parser<T>) -> Result<(T, bool), FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        key,
        path: path.display().to_string(),
        source,
    })?;
    let value = parse(&text).map_err(|e| FileError::Syntax {
        key,
        path: path.display().to_string(),
        line: e.line,
        message: e.message,
    })?;
    let had_entries = lines(&text).next().is_some();
    Ok((value, had_entries))
}

impl<T> Reloadable<T> {
    pub fn open(
        key: &'static str,
        path: &Path,
        parse: Parser<T>,
    ) -> Result<Reloadable<T>, FileError> {
        let stamp = stamp(path);
        let (value, had_entries) = load(key, path, parse)?;
        Ok(Reloadable {
            key,
            path: path.to_path_buf(),
            parse,
            loaded: Mutex::new(Loaded {
                value: Arc::new(value),
                stamp,
                had_entries,
            }),
        })
    }

    /// The current value, re-read first if the file changed.
    pub fn current(&self, log: &Logger) -> Arc<T> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamp(&self.path);
        if now != loaded.stamp {
            loaded.stamp = now;
            match load(self.key, &self.path, self.parse) {
                Ok((_, false)) if loaded.had_entries => log
                    .event("file_error")
                    .kv("key", self.key)
                    .kv("file", self.path.display())
                    .kv("error", "the file is now empty (caught mid-rewrite? write a new file and rename it)")
                    .kv("action", "kept last good version")
                    .emit(),
                Ok((value, had_entries)) => {
                    loaded.had_entries = had_entries;
                    log.event("file_reload")
                        .kv("key", self.key)
                        .kv("file", self.path.display())
                        .emit();
                    loaded.value = Arc::new(value);
                }
                Err(e) => log
                    .event("file_error")
                    .kv("key", self.key)
                    .kv("error", e)
                    .kv("action", "kept last good version")
                    .emit(),
            }
        }
        loaded.value.clone()
    }
}

/// The meaningful lines of a list file: `#` comments and blank lines
/// dropped, with 1-based line numbers.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str) -> Result<usize, LineError> {
        match lines(text).find(|(_, l)| *l == "bad") {
            Some((line, _)) => Err(LineError {
                line,
                message: "bad line".into(),
            }),
            None => Ok(lines(text).count()),
        }
    }

    #[test]
    fn reloads_on_change_and_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list");
        std::fs::write(&path, "a\n# comment\n\nb\n").unwrap();
        let r = Reloadable::open("test.list", &path, count).unwrap();
        let log = Logger::discard();
        assert_eq!(*r.current(&log), 2);
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(*r.current(&log), 3);
        std::fs::write(&path, "a\nbad\n").unwrap();
        assert_eq!(*r.current(&log), 3);
        std::fs::write(&path, "# emptied\n").unwrap();
        assert_eq!(
            *r.current(&log),
            3,
            "an emptied file is taken for one caught mid-rewrite"
        );
        std::fs::write(&path, "bad\n").unwrap();
        let err = Reloadable::open("test.list", &path, count).err().unwrap();
        assert!(err.to_string().ends_with("list:1: bad line"), "{err}");
    }
}
