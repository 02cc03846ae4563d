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

/// How many failed syncs are remembered for the commits that waited for
/// them (a commit woken after more failures than that is told its sync
/// failed, which refuses the message with a 4xx: never a false 250). Only
/// failures are kept: a commit slow to wake after many good syncs is
/// still told the truth.
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
    /// The last syncs that failed: the number and the error.
    failures: VecDeque<(u64, String)>,
    /// Failures of syncs numbered below this are forgotten.
    forgotten_below: u64,
}

impl Syncs {
    /// The outcome of sync number `wanted`, once it has ended.
    fn outcome(&self, wanted: u64) -> Option<std::io::Result<()>> {
        if self.ended < wanted {
            return None;
        }
        if wanted < self.forgotten_below {
            return Some(Err(std::io::Error::other(
                "directory sync outcome forgotten",
            )));
        }
        Some(match self.failures.iter().find(|(n, _)| *n == wanted) {
            Some((_, e)) => Err(std::io::Error::other(e.clone())),
            None => Ok(()),
        })
    }

    /// Records the end of sync number `number`.
    fn ended(&mut self, number: u64, outcome: std::io::Result<()>) {
        self.running = false;
        self.ended = number;
        if let Err(e) = outcome {
            self.failures.push_back((number, e.to_string()));
            if self.failures.len() > REMEMBERED {
                if let Some((oldest, _)) = self.failures.pop_front() {
                    self.forgotten_below = oldest + 1;
                }
            }
        }
    }
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
            if let Some(outcome) = s.outcome(wanted) {
                return outcome;
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
            s.ended(number, outcome);
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
    fn a_commit_woken_after_many_syncs_still_hears_its_own_outcome() {
        let mut s = Syncs::default();
        for n in 1..=1000 {
            let failed = n % 10 == 0;
            s.ended(
                n,
                if failed {
                    Err(std::io::Error::other("EIO"))
                } else {
                    Ok(())
                },
            );
        }
        assert!(s.outcome(1001).is_none(), "not ended yet");
        assert!(s.outcome(999).unwrap().is_ok());
        assert!(s.outcome(990).unwrap().is_err());
        // 100 failures happened; the 64 latest are remembered (from 370 on).
        assert!(
            s.outcome(371).unwrap().is_ok(),
            "a good sync is never forgotten"
        );
        assert!(s.outcome(370).unwrap().is_err());
        let forgotten = s.outcome(5).unwrap().unwrap_err().to_string();
        assert!(forgotten.contains("forgotten"), "{forgotten}");
    }

    #[test]
    fn a_failed_sync_fails_the_commits_that_waited_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let sync = DirSync::new(&dir.path().join("gone"));
        let error = sync.sync().unwrap_err().to_string();
        assert!(error.contains("No such file"), "{error}");
    }
}
