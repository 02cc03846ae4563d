//! An MX that stays up, with the real binary and real signals: SIGHUP
//! reloads (never an exit; a broken file keeps the old configuration;
//! listeners follow; logrotate gets a new file), SIGTERM lets the
//! transaction in progress finish and exits 0, a second signal stops at
//! once, and a start right after `kill -9` always succeeds with nothing
//! acknowledged lost.

use crate::harness::*;
use std::collections::HashSet;

fn maildir(dir: &std::path::Path) -> String {
    format!(
        "[downstream]\ntargets = [\"maildir:{}\"]\n",
        dir.join("Maildir").display()
    )
}

fn relay(domains: &[&str], dir: &std::path::Path) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[relay]\ndomains = [{}]\n{}",
        domains.join(", "),
        maildir(dir)
    )
}

/// The messages in the Maildir's `new/`.
fn delivered(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("Maildir/new"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_relay_domain_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &relay(&["example.test"], dir.path()));
    let pid = mx.pid();
    let mut before = Client::greet(mx.addr).await;

    mx.rewrite_config("", &relay(&["example.test", "new.test"], dir.path()));
    mx.signal(libc::SIGHUP);
    mx.wait_log(&["event=reload", "status=ok"]);

    let mut after = Client::greet(mx.addr).await;
    after.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(after.cmd("RCPT TO:<x@new.test>").await, "250 2.1.5 Ok\r\n");
    assert_eq!(mx.pid(), pid, "the same process");
    assert_eq!(
        mx.log_lines()
            .iter()
            .filter(|l| l.contains("event=listen"))
            .count(),
        1,
        "started once"
    );
    // A session from before keeps the configuration it began with, and
    // its mail goes through.
    before.cmd("MAIL FROM:<a@client.test>").await;
    assert!(before
        .cmd("RCPT TO:<x@new.test>")
        .await
        .starts_with("554 5.7.1"));
    assert_eq!(
        before.cmd("RCPT TO:<x@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(before.cmd("DATA").await.starts_with("354"));
    before.send(b"Subject: before\r\n\r\nhi\r\n.\r\n").await;
    assert!(before.reply().await.starts_with("250 2.0.0 Ok: queued as"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_the_old_configuration_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &relay(&["example.test"], dir.path()));
    mx.rewrite_config("", "[relay]\ndomains = 7\n");
    mx.signal(libc::SIGHUP);
    let line = mx.wait_log(&["event=reload", "status=failed"]);
    let text = std::fs::read_to_string(&mx.config).unwrap();
    let at = text.lines().position(|l| l == "domains = 7").unwrap() + 1;
    let error = format!("mxguard.toml:{at}: relay.domains: invalid type: integer `7`");
    assert!(line.contains(&error), "{line}");
    // Still serving, on the old configuration.
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(c.cmd("RCPT TO:<x@example.test>").await, "250 2.1.5 Ok\r\n");

    // `mxguard reload` reads the file first and says the same (exit 78);
    // the control socket's answer says it too.
    let out = mx.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&error));
    let said = mx.control("reload");
    assert!(said.starts_with("error reload failed: "), "{said}");
    assert!(said.contains(&error), "{said}");
    // Fixed, it takes.
    mx.rewrite_config("", &relay(&["other.test"], dir.path()));
    let out = mx.cli(&["reload"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok reloaded\n");
    assert!(out.status.success());
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(c.cmd("RCPT TO:<x@other.test>").await, "250 2.1.5 Ok\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_follow_the_configuration_and_a_restart_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &relay(&["example.test"], dir.path()));
    let second = free_port();
    let both = format!("listen = [\"127.0.0.1:0\", \"127.0.0.1:{second}\"]");
    mx.rewrite_config(&both, &relay(&["example.test"], dir.path()));
    assert_eq!(mx.control("reload"), "ok reloaded\n");
    mx.wait_log(&["event=listen", &format!("address=127.0.0.1:{second}")]);
    let added = std::net::SocketAddr::from(([127, 0, 0, 1], second));
    assert!(Client::connect(added)
        .await
        .reply()
        .await
        .starts_with("220 "));
    assert!(Client::connect(mx.addr)
        .await
        .reply()
        .await
        .starts_with("220 "));

    // Back to one: the other closes. A new spool needs a restart.
    mx.rewrite_config("", &relay(&["example.test"], dir.path()));
    let text = std::fs::read_to_string(&mx.config).unwrap();
    let moved = text.replace("[spool]\ndir = \"spool\"", "[spool]\ndir = \"elsewhere\"");
    assert_ne!(text, moved);
    std::fs::write(&mx.config, moved).unwrap();
    assert_eq!(
        mx.control("reload"),
        "ok reloaded\nrestart needed for: spool.dir\n"
    );
    mx.wait_log(&["event=unlisten", &format!("address=127.0.0.1:{second}")]);
    mx.wait_log(&["event=reload", "status=ok", "restart_needed=spool.dir"]);
    assert!(tokio::net::TcpStream::connect(added).await.is_err());
    assert!(Client::connect(mx.addr)
        .await
        .reply()
        .await
        .starts_with("220 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_moves_the_log_away_and_a_hup_opens_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &relay(&["example.test"], dir.path()));
    let rotated = dir.path().join("mxguard.log.1");
    std::fs::rename(mx.log_path(), &rotated).unwrap();
    // logrotate's postrotate; the configuration file is not even valid.
    std::fs::write(&mx.config, "[relay]\ndomains = 7\n").unwrap();
    mx.signal(libc::SIGHUP);
    mx.wait_log(&["event=reload", "status=failed"]);
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    mx.wait_log(&["event=disconnect", "commands=2"]);
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("event=listen"));
    assert!(
        !old.contains("event=reload"),
        "new lines go to the new file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_transaction_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut mx = Mxguard::start(dir.path(), &relay(&["example.test"], dir.path()));
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    c.cmd("RCPT TO:<x@example.test>").await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Message-ID: <drain@client.test>\r\nSubject: half\r\n")
        .await;
    // An idle session, between transactions: told at once.
    let mut idle = Client::greet(mx.addr).await;

    mx.signal(libc::SIGTERM);
    mx.wait_log(&["event=stop", "phase=draining"]);
    assert_eq!(
        idle.rest().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    assert!(
        tokio::net::TcpStream::connect(mx.addr).await.is_err(),
        "no new connection"
    );
    c.send(b"\r\nthe rest\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as"));
    assert_eq!(
        c.rest().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    assert_eq!(mx.wait_exit().code(), Some(0));
    let mail = delivered(dir.path());
    assert_eq!(mail.len(), 1, "delivered before the exit");
    assert!(mail[0].contains("Message-ID: <drain@client.test>"));
    assert!(mx
        .log_lines()
        .iter()
        .any(|l| l.contains("event=stop phase=stopped")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_at_its_timeout_and_a_second_signal_ends_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sections = relay(&["example.test"], dir.path());
    let mut mx = Mxguard::start_with(dir.path(), "drain_timeout = \"1s\"", &sections);
    // A transaction that never ends: cut at the drain timeout, not taken.
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    c.cmd("RCPT TO:<x@example.test>").await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: never finished\r\n").await;
    mx.signal(libc::SIGTERM);
    assert_eq!(
        c.rest().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    assert_eq!(mx.wait_exit().code(), Some(0));
    assert!(delivered(dir.path()).is_empty());

    // With a long drain, a second SIGTERM stops at once.
    let dir = tempfile::tempdir().unwrap();
    let sections = relay(&["example.test"], dir.path());
    let mut mx = Mxguard::start_with(dir.path(), "drain_timeout = \"1h\"", &sections);
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    mx.signal(libc::SIGTERM);
    mx.wait_log(&["event=stop", "phase=draining"]);
    mx.signal(libc::SIGTERM);
    assert_eq!(mx.wait_exit().code(), Some(0));
    mx.wait_log(&["event=stop", "phase=now"]);
    let rest = c.rest().await;
    assert!(rest.is_empty() || rest.starts_with("421 4.3.2"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_right_after_kill_9_always_succeeds_and_nothing_acknowledged_is_lost() {
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut mx = Mxguard::start(dir.path(), &relay(&["example.test"], dir.path()));
    let mut acknowledged = HashSet::new();
    for round in 0..ROUNDS {
        let mut c = Client::greet(mx.addr).await;
        c.cmd("MAIL FROM:<a@client.test>").await;
        c.cmd("RCPT TO:<x@example.test>").await;
        assert!(c.cmd("DATA").await.starts_with("354"));
        let id = format!("<round-{round}@client.test>");
        c.send(format!("Message-ID: {id}\r\n\r\nround {round}\r\n.\r\n").as_bytes())
            .await;
        assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as"));
        acknowledged.insert(id);
        // Killed at once, started at once: the start waits for the lock of
        // a process still dying, never refuses.
        mx.kill9();
        mx.restart();
    }
    let found = wait_for("every acknowledged message in the Maildir", || {
        let found: HashSet<String> = delivered(dir.path())
            .iter()
            .filter_map(|m| {
                let line = m.lines().find(|l| l.starts_with("Message-ID: "))?;
                Some(line.trim_start_matches("Message-ID: ").to_string())
            })
            .collect();
        acknowledged.is_subset(&found).then_some(found)
    });
    assert_eq!(found.len(), ROUNDS);
    for message in delivered(dir.path()) {
        let round = message
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <round-"))
            .and_then(|l| l.split('@').next())
            .unwrap();
        assert!(
            message.ends_with(&format!("\r\n\r\nround {round}\r\n")),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_fails_late_still_reopens_the_log_and_a_stopping_server_opens_no_port() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocked"), "@spam.test\n").unwrap();
    let sections = format!(
        "{}[lists]\nsender_blocklist = \"blocked\"\n[checks]\nsender_blocklist = \"reject\"\ndmarc = \"off\"\n",
        relay(&["example.test"], dir.path())
    );
    let mut mx = Mxguard::start(dir.path(), &sections);
    // The file parses, but a list it names is gone: the reload fails after
    // the log was reopened.
    std::fs::rename(mx.log_path(), dir.path().join("mxguard.log.1")).unwrap();
    std::fs::remove_file(dir.path().join("blocked")).unwrap();
    mx.signal(libc::SIGHUP);
    let line = mx.wait_log(&["event=reload", "status=failed"]);
    assert!(line.contains("lists.sender_blocklist"), "{line}");

    // Stopping: a reload binds no listener again.
    std::fs::write(dir.path().join("blocked"), "@spam.test\n").unwrap();
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    mx.signal(libc::SIGTERM);
    mx.wait_log(&["event=stop", "phase=draining"]);
    assert_eq!(mx.control("reload"), "ok reloaded\n");
    assert!(tokio::net::TcpStream::connect(mx.addr).await.is_err());
    c.cmd("RSET").await;
    assert!(c.rest().await.starts_with("421 4.3.2"));
    assert_eq!(mx.wait_exit().code(), Some(0));
}
