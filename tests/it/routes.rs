//! Delivery and callouts by route: Dovecot's LMTP over its unix socket
//! with a reply per recipient, and `[[downstream.route]]` sending each
//! recipient domain to its own downstream (the callout asking the same).

use crate::dovecot::Dovecot;
use crate::harness::*;

/// Sends one message from a client to `rcpts` (each must get 250).
async fn send(mx: &Mxguard, rcpts: &[&str], body: &str) {
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<sender@client.test>").await,
        "250 2.1.0 Ok\r\n"
    );
    for rcpt in rcpts {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{rcpt}>")).await,
            "250 2.1.5 Ok\r\n",
            "{rcpt}"
        );
    }
    assert!(c.cmd("DATA").await.starts_with("354 "));
    let queued = c.cmd(&format!("{body}.")).await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued as"), "{queued}");
    c.cmd("QUIT").await;
}

#[tokio::test]
async fn dovecot_lmtp_over_its_unix_socket_stores_the_message_with_a_reply_per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(&dir.path().join("dovecot"), &["alice@example.test"]);
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[downstream]\n\
             targets = [\"lmtp:unix:{}\"]\nretry_min = \"1h\"\nretry_max = \"2h\"\n",
            dovecot.socket.display()
        ),
    );
    let body = "Subject: to the store\r\n\r\nline one\r\n..a dot\r\n";
    send(&mx, &["alice@example.test", "carol@example.test"], body).await;
    let relay = format!("relay=lmtp:unix:{}", dovecot.socket.display());
    let sent = mx.wait_log(&["event=delivery", "to=alice@example.test", "status=sent"]);
    assert!(sent.contains(&relay), "{sent}");
    assert!(
        sent.contains("tls=none tls_reason=\"local socket\""),
        "{sent}"
    );
    let failed = mx.wait_log(&["event=delivery", "to=carol@example.test", "status=failed"]);
    assert!(failed.contains("reply=\"550 5.1.1"), "{failed}");
    let inbox = dovecot.inbox("alice@example.test");
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0].ends_with("Subject: to the store\n\nline one\n.a dot\n"),
        "{}",
        inbox[0]
    );
}

#[tokio::test]
async fn each_domain_goes_to_its_route_and_the_callout_asks_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = Dovecot::start(&dir.path().join("dovecot"), &["alice@example.org"]);
    let main = Sink::start(&dir.path().join("main"), free_port(), &[]);
    let other = Sink::start(&dir.path().join("other"), free_port(), &[]);
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\", \"example.org\", \"Example.NET.\"]\n\
             [recipients]\ncallout = true\ncallout_timeout = \"5s\"\n\
             [downstream]\ntargets = [\"smtp://127.0.0.1:{}\"]\n\
             retry_min = \"1h\"\nretry_max = \"2h\"\n\
             [[downstream.route]]\ndomains = [\"example.org\"]\ntargets = [\"lmtp:unix:{}\"]\n\
             [[downstream.route]]\ndomains = [\"EXAMPLE.net\"]\ntargets = [\"smtp://127.0.0.1:{}\"]\n",
            main.port,
            dovecot.socket.display(),
            other.port
        ),
    );
    // The callout for example.org asks Dovecot, which knows alice only.
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<sender@client.test>").await;
    let nobody = c.cmd("RCPT TO:<nobody@example.org>").await;
    assert!(
        nobody.starts_with("550 5.1.1 <nobody@example.org>"),
        "{nobody}"
    );
    assert!(nobody.contains("User doesn't exist"), "{nobody}");
    c.cmd("QUIT").await;

    send(
        &mx,
        &["alice@example.org", "bob@example.test", "dan@example.net"],
        "Subject: split\r\n\r\nthree ways\r\n",
    )
    .await;
    for (rcpt, relay) in [
        (
            "alice@example.org",
            format!("lmtp:unix:{}", dovecot.socket.display()),
        ),
        (
            "bob@example.test",
            format!("smtp://127.0.0.1:{}", main.port),
        ),
        (
            "dan@example.net",
            format!("smtp://127.0.0.1:{}", other.port),
        ),
    ] {
        let line = mx.wait_log(&["event=delivery", &format!("to={rcpt}"), "status=sent"]);
        assert!(line.contains(&format!("relay={relay} ")), "{line}");
    }
    let (main, other) = (main.messages(), other.messages());
    assert_eq!((main.len(), other.len()), (1, 1));
    assert!(
        main[0].contains("X-Rcpt-Args: <bob@example.test>"),
        "{}",
        main[0]
    );
    assert!(!main[0].contains("dan@") && !main[0].contains("alice@"));
    assert!(
        other[0].contains("X-Rcpt-Args: <dan@example.net>"),
        "{}",
        other[0]
    );
    assert_eq!(dovecot.inbox("alice@example.org").len(), 1);
}
