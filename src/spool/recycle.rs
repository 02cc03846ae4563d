//! Queue files reused instead of created: a delivered message's file is
//! moved into `tmp/` and emptied, and the next message is written into it.
//! Creating a file costs the filesystem an inode allocation — on ext4
//! without a journal, a scan past every inode freed in the last seconds,
//! which at a thousand messages a second was a sixth of mxguard's CPU —
//! and removing it the inode's release; a reused file costs a rename and
//! a truncation. Only names are kept here, in memory: `tmp/` is emptied
//! at start, so after a crash the recycled files are simply removed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How many empty files are kept for reuse; beyond, delivered files are
/// removed.
const KEPT: usize = 256;

/// The emptied files waiting in `tmp/` to be written again.
#[derive(Debug)]
pub struct Recycler {
    tmp: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    /// Names the recycled files in `tmp/` (`R<pid>-1`, `R<pid>-2`, …),
    /// never twice in one run.
    named: AtomicU64,
}

impl Recycler {
    pub fn new(tmp: &Path) -> Recycler {
        Recycler {
            tmp: tmp.to_path_buf(),
            free: Mutex::new(Vec::new()),
            named: AtomicU64::new(0),
        }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty file to write a new message into, and its path in `tmp/`
    /// (blocking); None when there is none to reuse.
    pub fn take(&self) -> Option<(File, PathBuf)> {
        loop {
            let path = self.free().pop()?;
            // Emptied when it was kept; emptied again if it is not (without
            // a truncation's inode update when it is), so that nothing of
            // an earlier message can ever show through.
            let opened = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .and_then(|file| match file.metadata()?.len() {
                    0 => Ok(file),
                    _ => file.set_len(0).map(|()| file),
                });
            match opened {
                Ok(file) => return Some((file, path)),
                // Gone (nothing else removes them, but be sure): the next.
                Err(_) => continue,
            }
        }
    }

    /// Takes `path` (a delivered message's file) out of the queue for
    /// reuse: moved into `tmp/` first (a crash then leaves nothing in the
    /// queue), then emptied. Ok(false) when enough files are kept already
    /// (the caller removes it); NotFound when it is not there.
    pub fn keep(&self, path: &Path) -> std::io::Result<bool> {
        if self.free().len() >= KEPT {
            return Ok(false);
        }
        let n = self.named.fetch_add(1, Ordering::Relaxed) + 1;
        let kept = self.tmp.join(format!("R{}-{n}", std::process::id()));
        std::fs::rename(path, &kept)?;
        let emptied = OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&kept);
        match emptied {
            Ok(_) => self.free().push(kept),
            // Out of the queue already: removed instead of kept.
            Err(_) => {
                let _ = std::fs::remove_file(&kept);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_kept_file_leaves_the_queue_and_comes_back_empty() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let queued = dir.path().join("ID");
        std::fs::write(&queued, b"an old message").unwrap();
        let r = Recycler::new(&tmp);
        assert!(r.keep(&queued).unwrap());
        assert!(!queued.exists(), "out of the queue");
        let (mut file, path) = r.take().expect("one kept");
        assert!(path.starts_with(&tmp));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        file.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(r.take().is_none(), "taken once");
    }

    #[test]
    fn a_kept_file_written_meanwhile_is_emptied_when_taken() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recycler::new(dir.path());
        let p = dir.path().join("m");
        std::fs::write(&p, b"x").unwrap();
        r.keep(&p).unwrap();
        let kept = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&kept, b"something").unwrap();
        let (_file, path) = r.take().unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), 0);
    }

    #[test]
    fn a_missing_file_is_not_found_and_a_full_recycler_declines() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recycler::new(dir.path());
        let missing = r.keep(&dir.path().join("gone")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        for i in 0..KEPT {
            let p = dir.path().join(format!("m{i}"));
            std::fs::write(&p, b"x").unwrap();
            assert!(r.keep(&p).unwrap());
        }
        let p = dir.path().join("one more");
        std::fs::write(&p, b"x").unwrap();
        assert!(!r.keep(&p).unwrap());
        assert!(p.exists(), "left to the caller to remove");
    }

    #[test]
    fn a_kept_file_removed_meanwhile_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recycler::new(dir.path());
        let p = dir.path().join("m");
        std::fs::write(&p, b"x").unwrap();
        r.keep(&p).unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        assert!(r.take().is_none());
    }
}
