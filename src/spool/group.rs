//! Group commit of the queue directory: a message is durable only once
//! its directory entry is (an fsync of `queue/` after the rename), and
//! sessions that commit at the same time share one such fsync. Each commit
//! asks for a sync that *starts after* its rename: if one is running, it
//! waits for that one to end and the next to cover it; whoever finds none
//! running starts it, for every commit waiting. The `250` still comes only
//! after the message's own file and its entry are synced: nothing about
//! durability changes, only how many fsyncs it takes.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// How many syncs' outcomes are remembered for the commits that waited
/// for them (a commit woken later than that is told its sync failed,
/// which refuses the message with a 4xx: never a false 250).
const REMEMBERED: usize = 64;

/// The directory fsyncs of one directory, shared by its commits.
#[derive(Debug)]
pub struct DirSync {
    dir: PathBuf,
    state: Mutex<Syncs>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Syncs {
    /// The last sync started, and the last one ended (numbered from 1).
    started: u64,
    ended: u64,
    running: bool,
    /// Outcomes of the last syncs that ended: the number and the error.
    outcomes: VecDeque<(u64, Option<String>)>,
}

impl DirSync {
    pub fn new(dir: &Path) -> DirSync {
        DirSync {
            dir: dir.to_path_buf(),
            state: Mutex::new(Syncs::default()),
            done: Condvar::new(),
        }
    }

    /// The directory it syncs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Syncs> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once a directory fsync that started after this call has
    /// ended, with its outcome (blocking).
    pub fn sync(&self) -> std::io::Result<()> {
        let mut s = self.lock();
        let wanted = s.started + 1;
        loop {
            if s.ended >= wanted {
                return match s.outcomes.iter().find(|(n, _)| *n == wanted) {
                    Some((_, None)) => Ok(()),
                    Some((_, Some(e))) => Err(std::io::Error::other(e.clone())),
                    None => Err(std::io::Error::other("directory sync outcome forgotten")),
                };
            }
            if s.running {
                s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.running = true;
            s.started += 1;
            let number = s.started;
            drop(s);
            let outcome = File::open(&self.dir).and_then(|d| d.sync_all());
            s = self.lock();
            s.running = false;
            s.ended = number;
            s.outcomes
                .push_back((number, outcome.err().map(|e| e.to_string())));
            if s.outcomes.len() > REMEMBERED {
                s.outcomes.pop_front();
            }
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_commit_waits_for_a_sync_that_started_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DirSync::new(dir.path());
        sync.sync().unwrap();
        sync.sync().unwrap();
        let s = sync.lock();
        assert_eq!((s.started, s.ended, s.running), (2, 2, false));
    }

    #[test]
    fn concurrent_commits_share_syncs_and_all_get_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::new(dir.path()));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || (0..50).all(|_| sync.sync().is_ok()))
            })
            .collect();
        assert!(threads.into_iter().all(|t| t.join().unwrap()));
        let s = sync.lock();
        assert!(s.ended <= 16 * 50 && s.ended >= 50, "{}", s.ended);
        assert!(!s.running);
    }

    #[test]
    fn a_failed_sync_fails_the_commits_that_waited_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DirSync::new(&dir.path().join("gone"));
        let error = sync.sync().unwrap_err().to_string();
        assert!(error.contains("No such file"), "{error}");
    }
}
