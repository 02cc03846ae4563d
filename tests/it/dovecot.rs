//! Dovecot (Debian's dovecot-lmtpd) as the mail store behind mxguard: its
//! own configuration, run directory and log in a test directory, LMTP on
//! a unix socket (its default way), mailboxes in Maildirs owned by
//! `nobody`, users from a passwd-file (anyone else "doesn't exist").

use crate::harness::wait_for;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Dovecot {
    child: Child,
    /// The LMTP socket.
    pub socket: PathBuf,
    mail: PathBuf,
}

impl Dovecot {
    /// Starts Dovecot in `dir` for `users` (full addresses).
    pub fn start(dir: &Path, users: &[&str]) -> Dovecot {
        let run = dir.join("run");
        let mail = dir.join("mail");
        for sub in [&run, &mail, &dir.join("state")] {
            std::fs::create_dir_all(sub).unwrap();
        }
        // The delivery process runs as nobody: it must reach its mail.
        let mut ancestor = Some(dir);
        while let Some(d) = ancestor.filter(|d| d.starts_with(std::env::temp_dir())) {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
            ancestor = d.parent();
        }
        let chown = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(&mail)
            .status()
            .unwrap();
        assert!(chown.success());
        let passwd: String = users
            .iter()
            .map(|u| format!("{u}::65534:65534::{}::\n", mail.join(u).display()))
            .collect();
        std::fs::write(dir.join("users"), passwd).unwrap();
        let config = dir.join("dovecot.conf");
        std::fs::write(
            &config,
            format!(
                "base_dir = {run}\nstate_dir = {state}\nprotocols = lmtp\nssl = no\n\
                 log_path = {dir}/dovecot.log\nmail_location = maildir:~/Maildir\n\
                 passdb {{\n  driver = passwd-file\n  args = {dir}/users\n}}\n\
                 userdb {{\n  driver = passwd-file\n  args = {dir}/users\n}}\n\
                 service lmtp {{\n  unix_listener lmtp {{\n    mode = 0600\n  }}\n}}\n\
                 service anvil {{\n  chroot =\n}}\n",
                run = run.display(),
                state = dir.join("state").display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot (Debian package dovecot-lmtpd) must be installed: run scripts/test");
        let socket = run.join("lmtp");
        wait_for("Dovecot's LMTP socket", || {
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
        Dovecot {
            child,
            socket,
            mail,
        }
    }

    /// The messages in `user`'s inbox.
    pub fn inbox(&self, user: &str) -> Vec<String> {
        crate::harness::files_in(&self.mail.join(user).join("Maildir").join("new"))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM lets the master stop
        // its own children.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
