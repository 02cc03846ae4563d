//! What the primary behind mxguard gets besides the message: SMTPUTF8
//! mail (from Python's smtplib, to a UTF-8 mailbox of the recipient table)
//! arriving byte for byte at a real Postfix with `smtputf8_enable = yes`,
//! and quarantined, never downgraded, at a downstream without it; the
//! original client told to Postfix by XCLIENT or XFORWARD; the sender's DSN
//! parameters passed on.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use crate::postfix::Postfix;
use std::process::Command;

const FROM: &str = "j\u{f6}rg@b\u{fc}cher.example";
const TO: &str = "\u{7528}\u{6237}@example.test";
const MESSAGE: &str = "From: J\u{f6}rg <j\u{f6}rg@b\u{fc}cher.example>\r\n\
                       Date: Mon, 7 Dec 2026 05:00:00 +0000\r\n\
                       Message-ID: <utf8@b\u{fc}cher.example>\r\n\
                       To: \u{7528}\u{6237}@example.test\r\n\
                       Subject: Gr\u{fc}\u{df}e\r\n\r\nK\u{f6}rper \u{2713}\r\n";

/// Postfix keeps what it accepts on hold, for postcat to show.
const HOLD: &str = "smtpd_recipient_restrictions = reject_unauth_destination, \
                    reject_unlisted_recipient, check_recipient_access static:HOLD, permit\n";

/// Sends MESSAGE from FROM to TO with SMTPUTF8 through Python's smtplib;
/// what it printed (`sent`, or the error).
fn smtplib_send(addr: std::net::SocketAddr) -> String {
    let script = format!(
        "import smtplib, sys\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=20)\n\
         s.ehlo('client.test')\n\
         try:\n    s.sendmail({from:?}, [{to:?}], {message:?}.encode(), \
         mail_options=['SMTPUTF8', 'BODY=8BITMIME'])\n    print('sent')\n\
         except Exception as e:\n    print(e)\n\
         s.quit()\n",
        port = addr.port(),
        from = FROM,
        to = TO,
        message = MESSAGE,
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 must be installed: run scripts/test");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// MX for example.test with TO and alice in its recipient table,
/// delivering to `target`.
fn front(dir: &std::path::Path, target: &str, downstream_extra: &str) -> Mxguard {
    std::fs::write(
        dir.join("recipients"),
        format!("{TO}\nalice@example.test\n"),
    )
    .unwrap();
    Mxguard::start(
        dir,
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[recipients]\ntable = \"recipients\"\n\
             [downstream]\ntargets = [\"{target}\"]\nretry_min = \"1h\"\nretry_max = \"2h\"\n\
             {downstream_extra}"
        ),
    )
}

/// What `postcat` shows of a message Postfix holds (`-e`: envelope,
/// `-h`/`-b`: header and body).
fn postcat(postfix: &Postfix, queue_id: &str, what: &str) -> String {
    let out = Command::new("/usr/sbin/postcat")
        .arg("-c")
        .arg(postfix.conf())
        .args([what, "-q", queue_id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The queue ID in a downstream's `250 2.0.0 Ok: queued as ID` reply.
fn downstream_queue_id(delivery_line: &str) -> String {
    let rest = delivery_line.split("queued as ").nth(1).expect("queued as");
    rest.trim_end_matches('"')
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn smtputf8_mail_reaches_a_postfix_that_takes_it_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let postfix = Postfix::start_with(
        &dir.path().join("postfix"),
        port,
        &[TO],
        &format!("smtputf8_enable = yes\n{HOLD}"),
    );
    let mx = front(dir.path(), &format!("smtp://127.0.0.1:{port}"), "");
    assert_eq!(smtplib_send(mx.addr).trim(), "sent");
    let accept = mx.wait_log(&["event=accept", "stage=data"]);
    assert!(accept.contains(&format!("from=\"<{FROM}>\"")), "{accept}");
    assert!(accept.contains(&format!("to=\"{TO}\"")), "{accept}");
    let sent = mx.wait_log(&["event=delivery", "status=sent"]);
    assert!(sent.contains(&format!("to=\"{TO}\" ")), "{sent}");
    let id = downstream_queue_id(&sent);
    let envelope = postcat(&postfix, &id, "-e");
    assert!(envelope.contains(&format!("sender: {FROM}")), "{envelope}");
    assert!(envelope.contains(&format!("recipient: {TO}")), "{envelope}");
    let content = postcat(&postfix, &id, "-hb");
    let ours = MESSAGE.replace("\r\n", "\n");
    assert!(content.ends_with(&ours), "{content}");
    assert!(
        content.contains("by mx.test (mxguard) with UTF8SMTP id"),
        "{content}"
    );
}

#[tokio::test]
async fn smtputf8_mail_is_never_downgraded_for_a_downstream_without_it() {
    let dir = tempfile::tempdir().unwrap();
    // smtp-sink does not offer SMTPUTF8.
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = front(dir.path(), &format!("smtp://127.0.0.1:{}", sink.port), "");
    assert_eq!(smtplib_send(mx.addr).trim(), "sent");
    let failed = mx.wait_log(&["event=delivery", "status=failed"]);
    assert!(
        failed.contains("reply=\"550 5.6.7 the downstream does not offer SMTPUTF8"),
        "{failed}"
    );
    // The sender is not verified: no bounce to it, the message is kept.
    let kept = mx.wait_log(&["event=quarantine"]);
    assert!(kept.contains(&format!("to=\"{TO}\"")), "{kept}");
    assert!(!mx.log_lines().iter().any(|l| l.contains("event=dsn")));
    assert!(sink.messages().is_empty());
    // An ASCII message given SMTPUTF8 needs nothing of it: it goes.
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test> SMTPUTF8").await;
    c.cmd("RCPT TO:<alice@example.test>").await;
    c.cmd("DATA").await;
    assert!(c
        .cmd("Subject: plain\r\n\r\nascii\r\n.")
        .await
        .starts_with("250 "));
    mx.wait_log(&["event=delivery", "to=alice@example.test", "status=sent"]);
}

#[tokio::test]
async fn a_utf8_address_without_smtputf8_is_refused_and_unknown_ones_too() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = front(dir.path(), &format!("smtp://127.0.0.1:{}", sink.port), "");
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{FROM}>")).await,
        format!("553 5.6.7 <{FROM}>: Error: non-ASCII address needs MAIL FROM with SMTPUTF8\r\n")
    );
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").await, "250 2.1.0 Ok\r\n");
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{TO}>")).await,
        format!("553 5.6.7 <{TO}>: Error: non-ASCII address needs MAIL FROM with SMTPUTF8\r\n")
    );
    c.cmd("RSET").await;
    c.cmd(&format!("MAIL FROM:<{FROM}> SMTPUTF8")).await;
    // The table holds the mailbox with its domain as written: the same in
    // A-labels is the same mailbox; another UTF-8 one is unknown.
    assert_eq!(c.cmd(&format!("RCPT TO:<{TO}>")).await, "250 2.1.5 Ok\r\n");
    let other = c.cmd("RCPT TO:<\u{7528}@example.test>").await;
    assert!(
        other.starts_with("550 5.1.1 <\u{7528}@example.test>"),
        "{other}"
    );
    mx.wait_log(&["event=reject", "check=smtputf8", "stage=mail"]);
    c.cmd("QUIT").await;
    mx.wait_log(&["event=disconnect"]);
    // The report reads UTF-8 addresses back as they were logged.
    let report = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["report", "--format", "json"])
        .arg(mx.log_path())
        .output()
        .unwrap();
    let text = String::from_utf8(report.stdout).unwrap();
    assert!(text.contains(TO), "{text}");
}

/// A Postfix primary with `main_cf` (holding what it takes), and an MX in
/// front of it whose reverse-DNS check (in warn mode) confirms client
/// names, for the log and for the primary.
fn primary_with(dir: &std::path::Path, dns: &DnsFixture, main_cf: &str) -> (Postfix, Mxguard) {
    let port = free_port();
    let postfix = Postfix::start_with(
        &dir.join("postfix"),
        port,
        &["alice@example.test"],
        &format!("{main_cf}\n{HOLD}"),
    );
    let mx = front(
        dir,
        &format!("smtp://127.0.0.1:{port}"),
        &format!(
            "{}[checks]\ndmarc = \"off\"\nforged_reverse_dns = \"warn\"\n",
            dns.config()
        ),
    );
    (postfix, mx)
}

/// One message from `client` greeting as `helo`; the delivery line of it.
async fn relay_from(mx: &Mxguard, client: &str, helo: &str) -> String {
    let mut c = Client::greet_from(client, mx.addr, helo).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    c.cmd("RCPT TO:<alice@example.test>").await;
    c.cmd("DATA").await;
    let queued = c.cmd("Subject: via\r\n\r\nhi\r\n.").await;
    let ours = queued
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .expect("queued");
    c.cmd("QUIT").await;
    mx.wait_log(&[
        "event=delivery",
        &format!("queue_id={}", ours.trim_end()),
        "status=sent",
    ])
}

#[tokio::test]
async fn postfix_behind_mxguard_sees_the_original_client_through_xclient() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let (postfix, mx) = primary_with(
        dir.path(),
        &dns,
        "smtpd_authorized_xclient_hosts = 127.0.0.1",
    );
    // 127.0.0.11 is mail1.client.test and back; 127.0.0.7 has no PTR.
    for (client, helo, name) in [
        ("127.0.0.11", "mail1.client.test", "mail1.client.test"),
        ("127.0.0.7", "client.helo.test", "unknown"),
    ] {
        let sent = relay_from(&mx, client, helo).await;
        assert!(sent.contains(" origin=xclient "), "{sent}");
        // XCLIENT made the connection that client's: it is not reused.
        assert!(!sent.contains("reused="), "{sent}");
        let id = downstream_queue_id(&sent);
        let client_line = postfix.client_line(&id);
        assert!(
            client_line.ends_with(&format!("client={name}[{client}]")),
            "{client_line}"
        );
        let header = postcat(&postfix, &id, "-h");
        assert!(
            header.contains(&format!("Received: from {helo} ({name} [{client}])")),
            "Postfix's Received header names the original client: {header}"
        );
    }
}

#[tokio::test]
async fn dsn_parameters_are_passed_on_to_a_downstream_that_offers_dsn() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = front(
        dir.path(),
        &format!("smtp://127.0.0.1:{}", sink.port),
        "xclient = false\n",
    );
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test> RET=HDRS ENVID=QQ314159")
            .await,
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER ORCPT=rfc822;alice@example.test")
            .await,
        "250 2.1.5 Ok\r\n"
    );
    c.cmd("DATA").await;
    assert!(c
        .cmd("Subject: dsn\r\n\r\nhi\r\n.")
        .await
        .starts_with("250 "));
    let sent = mx.wait_log(&["event=delivery", "status=sent"]);
    assert!(
        !sent.contains("origin="),
        "downstream.xclient = false: {sent}"
    );
    let message = &sink.messages()[0];
    assert!(
        message.contains("X-Mail-Args: <a@client.test> RET=HDRS ENVID=QQ314159"),
        "{message}"
    );
    assert!(
        message.contains(
            "X-Rcpt-Args: <alice@example.test> NOTIFY=NEVER ORCPT=rfc822;alice@example.test"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn postfix_that_takes_xforward_only_logs_the_original_client() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let (postfix, mx) = primary_with(
        dir.path(),
        &dns,
        "smtpd_authorized_xforward_hosts = 127.0.0.1",
    );
    let sent = relay_from(&mx, "127.0.0.11", "mail1.client.test").await;
    assert!(sent.contains(" origin=xforward "), "{sent}");
    // XFORWARD is for the log (XCLIENT, for the primary's checks too).
    let client_line = postfix.client_line(&downstream_queue_id(&sent));
    assert!(
        client_line
            .ends_with("client=localhost[127.0.0.1], orig_client=mail1.client.test[127.0.0.11]"),
        "{client_line}"
    );
}
