//! What mxguard creates on disk is its own, whatever the umask it was
//! started with: directories 0700, files 0600, sockets 0600 — or 0710 and
//! 0660 for a group named in the configuration (`control.group`), so its
//! members can reach a socket and nothing else. Sockets are bound inside a
//! private (0700) directory next to their place, given their mode, then
//! renamed into place, so no one can reach one while its mode is wider.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories mxguard keeps its data in.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files it writes.
pub const FILE_MODE: u32 = 0o600;

/// Why a group could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("unknown group `{0}`")]
    Unknown(String),
    #[error("group `{name}`: {source}")]
    Lookup {
        name: String,
        source: std::io::Error,
    },
}

/// Creates `dir` (and its parents) with `mode`, and gives an existing one
/// that mode too.
pub fn dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(mode))
}

/// A new file, only for its owner; fails if it exists.
pub fn new_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// The numeric id of the group `name`.
pub fn group_id(name: &str) -> Result<u32, GroupError> {
    let lookup = |source| GroupError::Lookup {
        name: name.to_string(),
        source,
    };
    let c_name = std::ffi::CString::new(name).map_err(|_| GroupError::Unknown(name.into()))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: getgrnam_r writes the entry into `group` and its strings
        // into `buf` (of the length given); `found` points at `group` or is
        // null. Nothing is kept past this call but the gid.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Err(GroupError::Unknown(name.into())),
            0 => return Ok(group.gr_gid),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            rc => return Err(lookup(std::io::Error::from_raw_os_error(rc))),
        }
    }
}

/// Gives `path` to group `gid` (keeping its owner).
pub fn chgrp(path: &Path, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// Binds a unix socket at `path` with `mode` (and group `gid`), replacing
/// whatever socket was there; the caller has checked it may.
pub fn bind_socket(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> std::io::Result<tokio::net::UnixListener> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.new", std::process::id()));
    let private = std::path::PathBuf::from(name);
    let _ = fs::remove_dir_all(&private);
    DirBuilder::new().mode(DIR_MODE).create(&private)?;
    let staging = private.join("socket");
    let placed = tokio::net::UnixListener::bind(&staging).and_then(|listener| {
        fs::set_permissions(&staging, Permissions::from_mode(mode))?;
        if let Some(gid) = gid {
            chgrp(&staging, gid)?;
        }
        fs::rename(&staging, path)?;
        Ok(listener)
    });
    let _ = fs::remove_dir_all(&private);
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
    async fn sockets_get_their_mode_before_they_appear() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let _old = tokio::net::UnixListener::bind(&path).unwrap();
        let gid = group_id("root").unwrap();
        let _listener = bind_socket(&path, 0o660, Some(gid)).unwrap();
        assert_eq!(mode(&path), 0o660);
        tokio::net::UnixStream::connect(&path)
            .await
            .expect("reachable where it was put");
        assert_eq!(fs::metadata(&path).unwrap().gid(), gid);
        assert!(matches!(
            group_id("no-such-group-here"),
            Err(GroupError::Unknown(_))
        ));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
