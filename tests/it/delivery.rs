//! Delivery to the downstream: outage and recovery, per-recipient results,
//! quarantine instead of bounces, LMTP, and the exact bytes on the wire.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;

fn send(addr: std::net::SocketAddr, from: &str, to: &str, subject: &str) -> String {
    swaks(
        addr,
        &[
            "--from",
            from,
            "--to",
            to,
            "--header",
            &format!("Subject: {subject}"),
        ],
    )
}

#[test]
fn downstream_outage_then_recovery_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mx = Mxguard::start(dir.path(), &relay_to(port));
    for i in 0..3 {
        let out = send(
            mx.addr,
            "a@client.test",
            "b@example.test",
            &format!("outage {i}"),
        );
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    }
    mx.wait_log_count(&["event=delivery", "status=deferred"], 3);
    let list = String::from_utf8(mx.cli(&["queue", "list"]).stdout).unwrap();
    assert!(list.contains("-- 3 message(s) in the queue"), "{list}");
    assert!(list.contains("b@example.test  (pending)"), "{list}");
    assert!(list.contains("last error: smtp://127.0.0.1"), "{list}");

    let sink = Sink::start(&dir.path().join("sink"), port, &[]);
    let flush = mx.cli(&["queue", "flush"]);
    assert!(flush.status.success());
    assert_eq!(
        String::from_utf8_lossy(&flush.stdout),
        "queue flush requested\n"
    );
    mx.wait_log_count(&["event=delivery", "status=sent"], 3);
    mx.wait_log_count(&["event=removed"], 3);
    let messages = sink.messages();
    assert_eq!(messages.len(), 3);
    for i in 0..3 {
        assert!(messages
            .iter()
            .any(|m| m.contains(&format!("Subject: outage {i}"))));
    }
    let list = String::from_utf8(mx.cli(&["queue", "list"]).stdout).unwrap();
    assert!(list.contains("-- 0 message(s) in the queue"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_recipient_results_and_quarantine_without_bounce() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CaptureSink::start().await;
    sink.on_rcpt(|addr| match addr {
        a if a.starts_with("later@") => "451 4.2.0 mailbox busy".into(),
        a if a.starts_with("gone@") => "550 5.1.1 no such user".into(),
        _ => "250 2.1.5 Ok".into(),
    });
    // sender.test's SPF fails for 127.0.0.1: the sender is not verified.
    let dns = DnsFixture::start();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n{}{}",
            dns.config(),
            smtp_downstream(sink.addr.port())
        ),
    );
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<forged@sender.test>").await;
    for rcpt in ["ok@example.test", "later@example.test", "gone@example.test"] {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{rcpt}>")).await,
            "250 2.1.5 Ok\r\n"
        );
    }
    c.cmd("DATA").await;
    c.send(b"Subject: three\r\n\r\n..dot line\r\nend\r\n.\r\n")
        .await;
    let queued = c.reply().await;
    let id = queued.trim().rsplit(' ').next().unwrap().to_string();
    c.cmd("QUIT").await;

    mx.wait_log(&["event=delivery", "to=ok@example.test", "status=sent"]);
    mx.wait_log(&[
        "event=delivery",
        "to=gone@example.test",
        "status=failed",
        "550 5.1.1",
    ]);
    mx.wait_log(&[
        "event=delivery",
        "to=later@example.test",
        "status=deferred",
        "451 4.2.0",
    ]);
    // The results are logged before the delivery state is saved.
    let show = wait_for("the saved delivery state", || {
        let show = String::from_utf8(mx.cli(&["queue", "show", &id]).stdout).unwrap();
        show.contains("failed: gone@example.test").then_some(show)
    });
    assert!(show.contains("delivered: ok@example.test"), "{show}");
    assert!(
        show.contains("failed: gone@example.test 550 5.1.1 no such user"),
        "{show}"
    );

    // Exact bytes: our Received header, then the client's message with
    // dot-stuffing redone on the wire.
    let first = &sink.captured()[0];
    let raw = String::from_utf8_lossy(&first.raw);
    assert!(
        raw.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (mxguard) with ESMTP id "
        ),
        "{raw:?}"
    );
    assert!(
        raw.ends_with("\r\nSubject: three\r\n\r\n..dot line\r\nend\r\n"),
        "{raw:?}"
    );

    // Retry: only the deferred recipient is tried again; then the message
    // goes to the quarantine because one recipient failed for good.
    sink.on_rcpt(|_| "250 2.1.5 Ok".into());
    assert!(mx.cli(&["queue", "flush"]).status.success());
    mx.wait_log(&["event=delivery", "to=later@example.test", "status=sent"]);
    let q = mx.wait_log(&["event=quarantine", &format!("queue_id={id}")]);
    assert!(q.contains("to=gone@example.test"), "{q}");
    let captured = sink.captured();
    assert_eq!(captured.len(), 2);
    assert_eq!(captured[1].rcpts, vec!["later@example.test".to_string()]);
    assert!(mx.spool().join("quarantine").join(&id).exists());
    // Nothing was ever sent to the (unverified) sender.
    assert!(captured
        .iter()
        .all(|m| !m.rcpts.iter().any(|r| r.contains("sender.test"))));
    assert!(captured
        .iter()
        .all(|m| m.from.contains("<forged@sender.test>")));
}

#[test]
fn lmtp_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &["-L"]);
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[downstream]\ntargets = [\"lmtp://127.0.0.1:{}\"]\n",
            sink.port
        ),
    );
    let out = swaks(
        mx.addr,
        &[
            "--from",
            "a@client.test",
            "--to",
            "b@example.test,c@example.test",
        ],
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    mx.wait_log(&["event=delivery", "to=b@example.test", "status=sent"]);
    mx.wait_log(&["event=delivery", "to=c@example.test", "status=sent"]);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("X-Client-Proto: LMTP"),
        "{}",
        messages[0]
    );
}

#[test]
fn second_target_used_when_first_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let dead = free_port();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[downstream]\ntargets = [\"smtp://127.0.0.1:{dead}\", \"smtp://127.0.0.1:{}\"]\n",
            sink.port
        ),
    );
    send(mx.addr, "a@client.test", "b@example.test", "failover");
    mx.wait_log(&[
        "event=delivery",
        &format!("relay=smtp://127.0.0.1:{dead}"),
        "status=deferred",
    ]);
    mx.wait_log(&[
        "event=delivery",
        &format!("relay=smtp://127.0.0.1:{}", sink.port),
        "status=sent",
    ]);
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn queue_lifetime_zero_tries_once_then_quarantines() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let dns = DnsFixture::start();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n{}[downstream]\ntargets = [\"smtp://127.0.0.1:{dead}\"]\nmax_queue_lifetime = \"0s\"\n",
            dns.config()
        ),
    );
    let out = swaks(
        mx.addr,
        &["--from", "a@client.test", "--to", "b@example.test"],
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    mx.wait_log(&["event=delivery", "status=deferred"]);
    let expired = mx.wait_log(&["event=delivery", "to=b@example.test", "status=expired"]);
    assert!(
        expired.contains("queue lifetime expired; last error: smtp://127.0.0.1"),
        "{expired}"
    );
    let q = mx.wait_log(&["event=quarantine", "to=b@example.test"]);
    let id = q
        .split("queue_id=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let show = String::from_utf8(mx.cli(&["queue", "show", id]).stdout).unwrap();
    assert!(
        show.contains("failed: b@example.test queue lifetime expired"),
        "{show}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_sender_gets_a_dsn_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CaptureSink::start().await;
    sink.on_rcpt(|addr| match addr {
        a if a.starts_with("gone@") => "550 5.1.1 <gone@example.test>: no such user".into(),
        _ => "250 2.1.5 Ok".into(),
    });
    let dns = DnsFixture::start();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n{}{}",
            dns.config(),
            smtp_downstream(sink.addr.port())
        ),
    );
    // client.test's SPF passes for 127.0.0.11: a real correspondent's typo.
    let mut c = Client::greet_from("127.0.0.11", mx.addr, "mail1.client.test").await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    c.cmd("RCPT TO:<gone@example.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: typo\r\nMessage-ID: <typo@client.test>\r\n\r\nsecret body\r\n.\r\n")
        .await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as"));
    c.cmd("QUIT").await;

    let line = mx.wait_log(&["event=dsn", "to=<a@client.test>"]);
    assert!(line.contains("verified=spf=pass"), "{line}");
    mx.wait_log(&["event=delivery", "to=a@client.test", "status=sent"]);
    let captured = sink.captured();
    let dsn = captured
        .iter()
        .find(|m| m.from == "MAIL FROM:<>")
        .expect("a DSN reached the downstream");
    assert_eq!(dsn.rcpts, vec!["a@client.test".to_string()]);
    let text = String::from_utf8_lossy(&dsn.raw);
    assert!(
        text.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{text}"
    );
    assert!(
        text.contains(
            "Final-Recipient: rfc822; gone@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{text}"
    );
    assert!(text.contains("Message-ID: <typo@client.test>"), "{text}");
    assert!(!text.contains("secret body"), "{text}");
    assert!(!mx
        .log_lines()
        .iter()
        .any(|l| l.contains("event=quarantine")));

    // The same typo from a domain without SPF and without a signature:
    // nobody can say the sender is real, so no bounce, only the quarantine.
    let mut c = Client::greet_from("127.0.0.11", mx.addr, "mail1.client.test").await;
    c.cmd("MAIL FROM:<a@addronly.client.test>").await;
    c.cmd("RCPT TO:<gone@example.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: unverifiable\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as"));
    c.cmd("QUIT").await;
    mx.wait_log(&["event=quarantine", "from=<a@addronly.client.test>"]);
    let to_sender = sink
        .captured()
        .iter()
        .filter(|m| m.rcpts.iter().any(|r| r.contains("addronly")))
        .count();
    assert_eq!(to_sender, 0, "nothing is ever sent to an unverified sender");
}

/// An MX for example.test relaying to a real Postfix on `port`, keeping
/// idle connections for `idle`.
fn front_of_postfix(dir: &std::path::Path, port: u16, idle: &str) -> Mxguard {
    Mxguard::start(
        dir,
        &format!(
            "{}idle_timeout = \"{idle}\"\n",
            relay_to(port).replace("[downstream]\n", "[downstream]\nxclient = false\n")
        ),
    )
}

/// Postfix's `disconnect from` lines of the sessions that said anything
/// (not the harness's probe for its port), once there are `count`.
fn postfix_sessions(postfix: &crate::postfix::Postfix, count: usize) -> Vec<String> {
    wait_for("Postfix's disconnect lines", || {
        let log = std::fs::read_to_string(&postfix.log).unwrap_or_default();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("]: disconnect from localhost") && !l.contains("commands=0/0"))
            .map(str::to_string)
            .collect();
        (lines.len() >= count).then_some(lines)
    })
}

#[test]
fn one_connection_carries_the_messages_that_follow_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let postfix =
        crate::postfix::Postfix::start(&dir.path().join("postfix"), port, &["alice@example.test"]);
    let mx = front_of_postfix(dir.path(), port, "60s");
    for n in 1..=3 {
        let out = send(
            mx.addr,
            "a@client.test",
            "alice@example.test",
            &format!("m{n}"),
        );
        assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
        mx.wait_log_count(&["event=delivery", "status=sent"], n);
    }
    let sent = mx.wait_log_count(&["event=delivery", "status=sent"], 3);
    assert!(!sent[0].contains("reused="), "{}", sent[0]);
    assert!(sent[1].contains(" reused=yes "), "{}", sent[1]);
    assert!(sent[2].contains(" reused=yes "), "{}", sent[2]);
    // One connection carried the three (besides the harness's probe for
    // the port); it is still open.
    let log = std::fs::read_to_string(&postfix.log).unwrap_or_default();
    assert_eq!(log.matches("]: connect from localhost").count(), 2, "{log}");
    assert_eq!(
        log.matches("]: disconnect from localhost").count(),
        1,
        "{log}"
    );
    // Stopped, mxguard leaves it: two RSETs, before the second and third.
    drop(mx);
    let sessions = postfix_sessions(&postfix, 1);
    assert!(sessions[0].contains(" mail=3 "), "{}", sessions[0]);
    assert!(sessions[0].contains(" rset=2 "), "{}", sessions[0]);
}

#[test]
fn an_idle_connection_is_ended_with_quit_after_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let postfix =
        crate::postfix::Postfix::start(&dir.path().join("postfix"), port, &["alice@example.test"]);
    let mx = front_of_postfix(dir.path(), port, "1s");
    let out = send(mx.addr, "a@client.test", "alice@example.test", "once");
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    mx.wait_log(&["event=delivery", "status=sent"]);
    let sessions = postfix_sessions(&postfix, 1);
    assert!(sessions[0].contains(" quit=1 "), "{}", sessions[0]);
    assert!(!sessions[0].contains("rset="), "{}", sessions[0]);
}
