//! The backup-MX story with a real Postfix as the primary: mxguard asks it
//! which mailboxes exist, remembers the answers across the primary's outage
//! and its own restart, and never accepts what it would have to bounce.
//! Also dictionary attacks, spam traps and the null sender.

use crate::harness::*;
use crate::postfix::Postfix;

async fn rcpt(mx: &Mxguard, to: &str) -> String {
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<someone@client.test>").await;
    let reply = c.cmd(&format!("RCPT TO:<{to}>")).await;
    c.cmd("QUIT").await;
    reply
}

async fn send(mx: &Mxguard, to: &str) -> String {
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<someone@client.test>").await;
    let reply = c.cmd(&format!("RCPT TO:<{to}>")).await;
    assert_eq!(reply, "250 2.1.5 Ok\r\n");
    c.cmd("DATA").await;
    c.send(b"Subject: for the primary\r\n\r\nhi\r\n.\r\n").await;
    let queued = c.reply().await;
    c.cmd("QUIT").await;
    queued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_mx_knows_the_mailboxes_while_the_primary_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let primary_port = free_port();
    let primary = Postfix::start(
        &dir.path().join("postfix"),
        primary_port,
        &["alice@example.test", "bob@example.test"],
    );
    let mut mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[recipients]\ncallout = true\ncallout_timeout = \"5s\"\n{}",
            smtp_downstream(primary_port)
        ),
    );

    // The primary is up: a valid recipient is accepted, an unknown one
    // refused at RCPT with the primary's own words.
    assert_eq!(rcpt(&mx, "alice@example.test").await, "250 2.1.5 Ok\r\n");
    assert_eq!(
        rcpt(&mx, "nobody@example.test").await,
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: undeliverable address: downstream said: 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in relay recipient table\r\n"
    );
    // Postfix writes its log through postlogd, a moment after replying.
    let primary_log = wait_for("the probe in Postfix's log", || {
        let log = std::fs::read_to_string(&primary.log).unwrap_or_default();
        log.contains(
            "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody@example.test>",
        )
        .then_some(log)
    });
    assert!(
        primary_log.contains("from=<> to=<nobody@example.test>"),
        "probes use the null sender"
    );
    assert!(send(&mx, "alice@example.test")
        .await
        .starts_with("250 2.0.0 Ok: queued as"));
    mx.wait_log(&["event=delivery", "to=alice@example.test", "status=sent"]);

    // The primary goes down: what was learned still holds; what was never
    // asked cannot be verified, so it is deferred, not accepted and bounced.
    primary.down();
    assert!(send(&mx, "alice@example.test")
        .await
        .starts_with("250 2.0.0 Ok: queued as"));
    mx.wait_log(&["event=delivery", "to=alice@example.test", "status=deferred"]);
    let bob = rcpt(&mx, "bob@example.test").await;
    assert!(
        bob.starts_with(
            "450 4.1.1 <bob@example.test>: Recipient address rejected: unverified address: "
        ),
        "{bob}"
    );
    assert!(rcpt(&mx, "nobody@example.test")
        .await
        .starts_with("550 5.1.1 <nobody@example.test>"));

    // mxguard restarts while the primary is still down: the cache is on disk.
    mx.terminate();
    mx.restart();
    assert_eq!(rcpt(&mx, "alice@example.test").await, "250 2.1.5 Ok\r\n");
    assert!(rcpt(&mx, "nobody@example.test")
        .await
        .starts_with("550 5.1.1 "));
    assert!(std::fs::read_to_string(mx.spool().join("state"))
        .unwrap()
        .contains("rcpt:alice@example.test\t"));

    // The primary returns: the queue drains into it.
    primary.up();
    assert!(mx.cli(&["queue", "flush"]).status.success());
    mx.wait_log_count(
        &["event=delivery", "to=alice@example.test", "status=sent"],
        2,
    );
    let list = String::from_utf8(mx.cli(&["queue", "list"]).stdout).unwrap();
    assert!(list.contains("-- 0 message(s) in the queue"), "{list}");
    assert_eq!(rcpt(&mx, "bob@example.test").await, "250 2.1.5 Ok\r\n");
}

#[tokio::test]
async fn dictionary_attack_spam_trap_and_null_sender() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("recipients"),
        "alice@example.test\nbob@example.test\ntrap@example.test\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("traps"), "trap@example.test\n").unwrap();
    let mx = Mxguard::start(
        dir.path(),
        "[relay]\ndomains = [\"example.test\"]\n[recipients]\ntable = \"recipients\"\nmax_unknown = 3\nspamtraps = \"traps\"\n",
    );

    // A dictionary attack: the third unknown recipient ends the session.
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert!(c
        .cmd("RCPT TO:<x1@example.test>")
        .await
        .starts_with("550 5.1.1 "));
    assert!(c
        .cmd("RCPT TO:<x2@example.test>")
        .await
        .starts_with("550 5.1.1 "));
    c.send(b"RCPT TO:<x3@example.test>\r\n").await;
    assert_eq!(
        c.rest().await,
        "550 5.1.1 <x3@example.test>: Recipient address rejected: User unknown\r\n421 4.7.0 mx.test Error: too many unknown recipients\r\n"
    );
    let line = mx.wait_log(&["event=dictionary_attack"]);
    assert!(
        line.contains("client=127.0.0.1") && line.contains("check=max_unknown action=disconnect"),
        "{line}"
    );

    // A spam trap: the trap gets a 5xx, the client nothing more for a while,
    // not even the recipients it had before the trap.
    let mut t = Client::greet_from("127.0.0.5", mx.addr, "bot.test").await;
    t.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        t.cmd("RCPT TO:<alice@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        t.cmd("RCPT TO:<trap@example.test>").await,
        "550 5.1.1 <trap@example.test>: Recipient address rejected: User unknown\r\n"
    );
    let blocked = t.cmd("RCPT TO:<bob@example.test>").await;
    assert!(
        blocked.starts_with(
            "451 4.7.1 Service unavailable; client [127.0.0.5] sent mail to a spam trap"
        ),
        "{blocked}"
    );
    assert!(t.cmd("DATA").await.starts_with("451 4.7.1 "));
    mx.wait_log(&["event=spamtrap", "client=127.0.0.5", "to=trap@example.test"]);
    let mut again = Client::greet_from("127.0.0.5", mx.addr, "bot.test").await;
    again.cmd("MAIL FROM:<a@client.test>").await;
    assert!(again
        .cmd("RCPT TO:<alice@example.test>")
        .await
        .starts_with("451 4.7.1 "));
    let mut other = Client::greet_from("127.0.0.6", mx.addr, "ok.test").await;
    other.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        other.cmd("RCPT TO:<alice@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );

    // A bounce has one recipient.
    let mut b = Client::greet_from("127.0.0.7", mx.addr, "mailer.test").await;
    b.cmd("MAIL FROM:<>").await;
    b.cmd("RCPT TO:<alice@example.test>").await;
    b.cmd("RCPT TO:<bob@example.test>").await;
    assert_eq!(
        b.cmd("DATA").await,
        "550 5.7.1 Error: a message from the null sender (a bounce) has exactly one recipient\r\n"
    );
    assert!(
        std::fs::read_dir(mx.spool().join("queue"))
            .unwrap()
            .next()
            .is_none(),
        "nothing was queued"
    );
}
