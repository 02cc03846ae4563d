//! Delivery into a Maildir: the message is written to `tmp/`, fsync'ed,
//! renamed into `new/`, and `new/` fsync'ed, so a message the queue lets go
//! of is on disk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique file name in the Maildir convention: `time.MmicrosPpidQn.host`.
fn unique_name(hostname: &str) -> String {
    let now = SystemTime::now()
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

fn write(dir: &Path, hostname: &str, message: &[u8]) -> std::io::Result<PathBuf> {
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let name = unique_name(hostname);
    let tmp = dir.join("tmp").join(&name);
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    file.write_all(message)?;
    file.sync_all()?;
    let dest = dir.join("new").join(&name);
    fs::rename(&tmp, &dest)?;
    File::open(dir.join("new"))?.sync_all()?;
    Ok(dest)
}

/// Delivers one copy of `message` into the Maildir at `dir`.
pub async fn deliver(dir: &Path, hostname: &str, message: &[u8]) -> std::io::Result<()> {
    let (dir, hostname, message) = (dir.to_path_buf(), hostname.to_string(), message.to_vec());
    match tokio::task::spawn_blocking(move || write(&dir, &hostname, &message)).await {
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
        let path = write(dir.path(), "mx.example", b"Subject: x\r\n\r\nhi\r\n").unwrap();
        assert!(path.starts_with(dir.path().join("new")));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}
