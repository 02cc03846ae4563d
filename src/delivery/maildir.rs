//! Delivery into a Maildir: the message is written to `tmp/` (0600, in
//! directories made 0700), fsync'ed,
//! renamed into `new/`, and `new/` fsync'ed, so a message the queue lets go
//! of is on disk.

use std::fs::{self, DirBuilder, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique file name in the Maildir convention: `time.MmicrosPpidQn.host`.
fn unique_name(hostname: &str) -> String {
    let now = crate::time::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host: String = hostname
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        host
    )
}

/// Copies the message from `source` (starting at byte `offset`).
fn write(dir: &Path, hostname: &str, source: &Path, offset: u64) -> std::io::Result<PathBuf> {
    // Missing directories are made 0700 and files 0600, as Dovecot makes
    // them; directories that exist are left as their owner set them.
    for sub in ["tmp", "new", "cur"] {
        DirBuilder::new()
            .recursive(true)
            .mode(crate::owned::DIR_MODE)
            .create(dir.join(sub))?;
    }
    let name = unique_name(hostname);
    let tmp = dir.join("tmp").join(&name);
    let mut input = File::open(source)?;
    input.seek(SeekFrom::Start(offset))?;
    let mut file = crate::owned::new_file(&tmp)?;
    if let Err(e) = std::io::copy(&mut input, &mut file).and_then(|_| file.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let dest = dir.join("new").join(&name);
    fs::rename(&tmp, &dest)?;
    File::open(dir.join("new"))?.sync_all()?;
    Ok(dest)
}

/// Delivers one copy of the message stored in `source` from byte `offset`
/// (the queue file, after its envelope) into the Maildir at `dir`.
pub async fn deliver(
    dir: &Path,
    hostname: &str,
    source: &Path,
    offset: u64,
) -> std::io::Result<()> {
    let (dir, hostname, source) = (
        dir.to_path_buf(),
        hostname.to_string(),
        source.to_path_buf(),
    );
    match tokio::task::spawn_blocking(move || write(&dir, &hostname, &source, offset)).await {
        Ok(r) => r.map(|_| ()),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lands_in_new() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("queued");
        fs::write(&source, b"envelope\n\nSubject: x\r\n\r\nhi\r\n").unwrap();
        let path = write(&dir.path().join("Maildir"), "mx.example", &source, 10).unwrap();
        assert!(path.starts_with(dir.path().join("Maildir/new")));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert!(fs::read_dir(dir.path().join("Maildir/tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}
