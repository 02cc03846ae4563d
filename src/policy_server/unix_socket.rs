//! The policy server's unix socket, made so that it is never open to more
//! than its owner and group: mode 0660 (and `policy_server.group`, when
//! set) whatever the process umask. It is bound in a private directory
//! beside its path (mode 0700: no one else can reach it while its mode is
//! still the umask's), given its mode and group there (a chown only when
//! it does not have the group already, as in a set-group-ID directory),
//! then renamed onto its path, replacing a stale socket (never a file that
//! is not a socket).

use super::PolicyServerError;
use crate::config::Group;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// The socket's mode: read and write for its owner and group.
pub const MODE: u32 = 0o660;

/// Binds the socket at `path`.
pub fn bind(path: &Path, group: Option<&Group>) -> Result<UnixListener, PolicyServerError> {
    let failed = bind_error(path);
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => {
            return Err(PolicyServerError::NotASocket {
                path: path.display().to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let private = private_dir(path).map_err(failed)?;
    let bound = bind_in(&private, path, group);
    // Empty once the socket moved out; else it holds the socket that failed.
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// Binds in `private`, sets the mode and group, and moves the socket to
/// `path`.
fn bind_in(
    private: &Path,
    path: &Path,
    group: Option<&Group>,
) -> Result<UnixListener, PolicyServerError> {
    let failed = bind_error(path);
    let staged = private.join("socket");
    let listener = UnixListener::bind(&staged).map_err(failed)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(MODE)).map_err(failed)?;
    if let Some(group) = group {
        give_to(&staged, group).map_err(|source| PolicyServerError::Group {
            group: group.name.clone(),
            path: path.display().to_string(),
            source,
        })?;
    }
    std::fs::rename(&staged, path).map_err(failed)?;
    Ok(listener)
}

/// Gives the socket at `path` to `group`, unless it has it already (a
/// set-group-ID directory gives it, without the chown a system call
/// filter may forbid).
fn give_to(path: &Path, group: &Group) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.gid() == group.gid {
        return Ok(());
    }
    std::os::unix::fs::chown(path, None, Some(group.gid))
}

fn bind_error(path: &Path) -> impl Fn(std::io::Error) -> PolicyServerError + Copy + '_ {
    move |source| PolicyServerError::Bind {
        addr: format!("unix:{}", path.display()),
        source,
    }
}

/// A new directory only this process's user can enter, beside `path` (on
/// the same file system, for the rename). One left by a crashed process
/// of the same ID is replaced.
fn private_dir(path: &Path) -> std::io::Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "policy".into(), |n| n.to_string_lossy().into_owned());
    let dir = parent.join(format!(".{name}.{}.bind", std::process::id()));
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    match builder.create(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_dir_all(&dir)?;
            builder.create(&dir)?;
        }
        created => created?,
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_is_0660_replaces_a_stale_one_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let group = Group {
            name: "root".into(),
            gid: 0,
        };
        let listener = bind(&path, Some(&group)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660);
        assert_eq!(meta.gid(), 0);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["policy.sock"]);
        // It is the listener's socket.
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        listener.accept().await.unwrap();
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.sock");
        std::fs::write(&path, "data").unwrap();
        let err = bind(&path, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "policy_server.listen: {} exists and is not a socket",
                path.display()
            )
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
