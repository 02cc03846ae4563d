//! The relay battery: every address trick gets a 5xx at RCPT and nothing
//! reaches the downstream.

use crate::harness::*;

const TRICKS: &[&str] = &[
    "<victim%elsewhere.test@example.test>",
    "<elsewhere.test!victim@example.test>",
    "<\"victim@elsewhere.test\"@example.test>",
    "<@example.test:victim@elsewhere.test>",
    "<@elsewhere.test:victim@example.test>",
    "<victim@[127.0.0.1]>",
    "<victim@[IPv6:::1]>",
    "<victim@elsewhere.test.>",
    "<victim@example.test.elsewhere.test>",
    "<victim@elsewhere.test>",
];

#[tokio::test]
async fn address_tricks_never_relay() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[limits]\nmax_errors = 100\n{}",
            smtp_downstream(sink.port)
        ),
    );
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<spammer@client.test>").await,
        "250 2.1.0 Ok\r\n"
    );
    for trick in TRICKS {
        let reply = c.cmd(&format!("RCPT TO:{trick}")).await;
        assert!(
            reply.starts_with("554 5.7.1 <") && reply.ends_with(">: Relay access denied\r\n"),
            "{trick}: {reply}"
        );
    }
    assert_eq!(
        c.cmd("DATA").await,
        "554 5.5.1 Error: no valid recipients\r\n"
    );
    // A trailing dot on our own domain is the same domain.
    assert_eq!(
        c.cmd("RCPT TO:<user@Example.TEST.>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok\r\n");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    mx.wait_log_count(
        &["event=reject", "check=relay", "action=reject"],
        TRICKS.len(),
    );
    mx.wait_log(&["event=disconnect", "accepted=0"]);
    assert!(sink.messages().is_empty());
    assert!(!mx.log_lines().iter().any(|l| l.contains("event=delivery")));
}

#[tokio::test]
async fn trusted_networks_relay_anywhere_but_not_tricks() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\ntrusted_networks = [\"127.0.0.2/32\"]\n{}",
            smtp_downstream(sink.port)
        ),
    );
    let mut trusted = Client::greet_from("127.0.0.2", mx.addr, "app.test").await;
    trusted.cmd("MAIL FROM:<app@example.test>").await;
    assert_eq!(
        trusted.cmd("RCPT TO:<someone@elsewhere.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    let trick = trusted.cmd("RCPT TO:<a%b.test@elsewhere.test>").await;
    assert!(trick.starts_with("554 5.7.1"), "{trick}");

    let mut stranger = Client::greet_from("127.0.0.3", mx.addr, "bot.test").await;
    stranger.cmd("MAIL FROM:<bot@bot.test>").await;
    let denied = stranger.cmd("RCPT TO:<someone@elsewhere.test>").await;
    assert_eq!(
        denied,
        "554 5.7.1 <someone@elsewhere.test>: Relay access denied\r\n"
    );
}
