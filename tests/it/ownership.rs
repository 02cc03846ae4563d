//! What mxguard creates is its own, whatever the umask: the spool
//! directories 0700, queue, state and lock files 0600, Maildir files 0600
//! in 0700 directories, the log 0640, the control socket 0600 — or 0660
//! with the spool directory 0710 (set-group-ID) for `control.group`;
//! commands such as `mxguard queue` change none of them.

use crate::harness::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

async fn send(mx: &Mxguard, to: &str) {
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert!(c.cmd(&format!("RCPT TO:<{to}>")).await.starts_with("250"));
    c.cmd("DATA").await;
    c.send(b"Subject: modes\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_sockets_are_ours_whatever_the_umask() {
    for umask in [0o000, 0o022] {
        let dir = tempfile::tempdir().unwrap();
        // Mail to example.test goes to a downstream that is down (it stays
        // queued); mail to local.test into a Maildir.
        let closed = free_port();
        let mx = Mxguard::start_with_umask(
            dir.path(),
            umask,
            &format!(
                "[relay]\ndomains = [\"example.test\"]\n[downstream]\ntargets = [\"smtp://127.0.0.1:{closed}\"]\nretry_min = \"1h\"\nretry_max = \"2h\"\n"
            ),
        );
        mx.wait_log(&["event=warning", "TEST BUILD"]);
        send(&mx, "user@example.test").await;
        mx.wait_log(&["event=delivery", "status=deferred"]);
        let spool = mx.spool();
        for sub in ["", "queue", "tmp", "quarantine"] {
            assert_eq!(
                mode(&spool.join(sub)),
                0o700,
                "umask {umask:o}: spool/{sub}"
            );
        }
        let queued = wait_for("the message and its delivery state", || {
            let files: Vec<_> = std::fs::read_dir(spool.join("queue"))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .collect();
            (files.len() == 2).then_some(files)
        });
        for file in &queued {
            assert_eq!(mode(file), 0o600, "umask {umask:o}: {}", file.display());
        }
        assert_eq!(mode(&spool.join("lock")), 0o600);
        assert_eq!(mode(&spool.join("control.sock")), 0o600);
        assert_eq!(mode(&mx.log_path()), 0o640);
        assert!(mx.control("ban add 192.0.2.9 600").starts_with("ok"));
        let mut mx = mx;
        mx.terminate();
        assert_eq!(mode(&spool.join("state")), 0o600, "umask {umask:o}: state");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_files_are_the_owners_alone() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail/Maildir");
    let mx = Mxguard::start_with_umask(
        dir.path(),
        0o000,
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[downstream]\ntargets = [\"maildir:{}\"]\n",
            maildir.display()
        ),
    );
    send(&mx, "user@example.test").await;
    mx.wait_log(&["event=delivery", "status=sent"]);
    for sub in ["", "new", "cur", "tmp"] {
        assert_eq!(mode(&maildir.join(sub)), 0o700, "Maildir/{sub}");
    }
    let delivered = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    assert_eq!(mode(&delivered.path()), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_group_gets_the_socket_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start_with_umask(
        dir.path(),
        0o000,
        "[relay]\ndomains = [\"example.test\"]\n[control]\ngroup = \"daemon\"\n",
    );
    let spool = mx.spool();
    let daemon = std::fs::metadata(&spool).unwrap().gid();
    assert_ne!(daemon, 0);
    // Set-group-ID: the socket made in it gets the group without a chown.
    assert_eq!(mode(&spool), 0o2710);
    assert_eq!(mode(&spool.join("control.sock")), 0o660);
    assert_eq!(
        std::fs::metadata(spool.join("control.sock")).unwrap().gid(),
        daemon
    );
    assert_eq!(mode(&spool.join("queue")), 0o700);
    assert_eq!(mx.control("ban list"), "ok\n");
    // A command run by root (`mxguard queue`) leaves the modes alone.
    assert!(mx.cli(&["queue", "list"]).status.success());
    assert_eq!(mode(&spool), 0o2710);

    // An unknown group is a configuration error naming the key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[control]\ngroup = \"no-such-group-here\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2: control.group: unknown group \"no-such-group-here\""),
        "{err}"
    );
}
