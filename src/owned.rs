//! What mxguard creates on disk is its own, whatever the umask it was
//! started with: directories 0700, files 0600, sockets 0600 — or 0710 and
//! 0660 for a group named in the configuration (`control.group`,
//! `policy_server.group`), so its members can reach a socket and nothing
//! else. Sockets are bound inside a
//! private (0700) directory next to their place, given their mode, then
//! renamed into place, so no one can reach one while its mode is wider.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories mxguard keeps its data in.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files it writes.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) with `mode`, and gives an existing one
/// that mode too.
pub fn dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(mode))
}

/// Creates `dir` (and its parents) with `mode` if missing; an existing one
/// is left as it is.
pub fn new_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// A new file, only for its owner; fails if it exists.
pub fn new_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Gives `path` to group `gid` (keeping its owner), unless it has it
/// already (a set-group-ID directory gives it without the chown that a
/// system call filter may forbid).
pub fn chgrp(path: &Path, gid: u32) -> std::io::Result<()> {
    if fs::symlink_metadata(path)?.gid() == gid {
        return Ok(());
    }
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// Why a socket could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{0} exists and is not a socket")]
    NotASocket(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Binds a unix socket at `path` with `mode` (and group `gid`), replacing
/// a stale socket there — never a file that is not one. It is bound in a
/// private directory beside `path` (on the same file system, for the
/// rename), given its mode and group there, then renamed into place.
pub fn bind_socket(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> Result<tokio::net::UnixListener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => return Err(SocketError::NotASocket(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.bind", std::process::id()));
    let private = std::path::PathBuf::from(name);
    // One left by a crashed process of the same ID goes first.
    let _ = fs::remove_dir_all(&private);
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(&private)
        .map_err(io)?;
    let staging = private.join("socket");
    let placed = tokio::net::UnixListener::bind(&staging).and_then(|listener| {
        fs::set_permissions(&staging, Permissions::from_mode(mode))?;
        if let Some(gid) = gid {
            chgrp(&staging, gid)?;
        }
        fs::rename(&staging, path)?;
        Ok(listener)
    });
    // Empty once the socket moved out; else it holds the one that failed.
    let _ = fs::remove_dir_all(&private);
    placed.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn modes_do_not_depend_on_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let wide = tmp.path().join("wide");
        fs::create_dir(&wide).unwrap();
        fs::set_permissions(&wide, Permissions::from_mode(0o777)).unwrap();
        dir(&wide.join("a/b"), DIR_MODE).unwrap();
        dir(&wide, DIR_MODE).unwrap();
        assert_eq!(mode(&wide), 0o700);
        assert_eq!(mode(&wide.join("a/b")), 0o700);
        new_file(&wide.join("f")).unwrap();
        assert_eq!(mode(&wide.join("f")), 0o600);
        assert!(new_file(&wide.join("f")).is_err(), "never an existing file");
    }

    #[tokio::test]
    async fn a_socket_gets_its_mode_replaces_a_stale_one_and_leaves_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = bind_socket(&path, 0o660, Some(0)).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660);
        assert_eq!(meta.gid(), 0);
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["s.sock"]);
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        listener.accept().await.unwrap();
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        fs::write(&path, "data").unwrap();
        let err = bind_socket(&path, 0o600, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} exists and is not a socket", path.display())
        );
        assert_eq!(fs::read(&path).unwrap(), b"data");
    }
}
