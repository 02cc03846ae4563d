//! Abuse defense over real connections: the seed's bot banned and let in
//! again, bans across a restart and from the command line, exemptions,
//! pregreet, every rate limit, greylisting edges and the tarpit cap. Time
//! moves with the server's test clock (`clock advance`), never by sleeping.

use crate::dns_fixture::DnsFixture;
use crate::harness::{Client, Mxguard};

const RELAY: &str = "[relay]\ndomains = [\"example.test\"]\ntrusted_networks = [\"127.0.0.99\"]\n";

/// A session of the seed's bot: `.` and blank lines until thrown out.
async fn bot_session(mx: &Mxguard, source: &str) -> Vec<String> {
    let mut c = Client::connect_from(source, mx.addr).await;
    let banner = c.reply().await;
    assert!(banner.starts_with("220 "), "{banner}");
    vec![
        c.cmd(".").await,
        c.cmd("").await,
        c.cmd(".").await,
        c.rest().await,
    ]
}

async fn banner_from(mx: &Mxguard, source: &str) -> String {
    Client::connect_from(source, mx.addr).await.reply().await
}

#[tokio::test]
async fn the_bot_is_banned_refused_and_let_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{RELAY}[limits]\nmax_errors = 3\n\
         [ban]\nmax_retry = 2\nfind_time = \"10m\"\nban_time = \"1h\"\nmax_ban_time = \"3h\"\n"
    );
    let mx = Mxguard::start(dir.path(), &config);
    let bot = "127.0.0.60";
    let first = bot_session(&mx, bot).await;
    assert_eq!(first[0], "502 5.5.2 Error: command not recognized\r\n");
    assert_eq!(first[1], "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(first[2], "502 5.5.2 Error: command not recognized\r\n");
    assert_eq!(first[3], "421 4.7.0 mx.test Error: too many errors\r\n");
    mx.wait_log(&[
        "event=offence",
        "client=127.0.0.60",
        "check=max_errors",
        "count=1",
    ]);
    // One strike is not a ban.
    assert!(banner_from(&mx, bot).await.starts_with("220 "));
    bot_session(&mx, bot).await;
    let ban = mx.wait_log(&["event=ban", "client=127.0.0.60"]);
    assert!(ban.contains("reason=max_errors level=1 for=3600s"), "{ban}");

    // Refused right after accept, before any DNS or banner.
    let refused = banner_from(&mx, bot).await;
    assert!(
        refused.starts_with("421 4.7.0 mx.test Error: 127.0.0.60 temporarily blocked until "),
        "{refused}"
    );
    mx.wait_log(&[
        "event=reject",
        "stage=connect",
        "check=ban",
        "client=127.0.0.60",
    ]);
    // Nobody else is.
    assert!(banner_from(&mx, "127.0.0.61").await.starts_with("220 "));
    let list = mx.cli(&["ban", "list"]);
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.starts_with("127.0.0.60 until="), "{list}");
    assert!(list.contains("level=1 reason=max_errors"), "{list}");

    // The ban ends.
    mx.advance_clock(3601);
    assert!(banner_from(&mx, bot).await.starts_with("220 "));
    assert_eq!(mx.cli(&["ban", "list"]).stdout, b"");

    // A repeat offender's ban doubles.
    bot_session(&mx, bot).await;
    bot_session(&mx, bot).await;
    let again = mx.wait_log(&["event=ban", "client=127.0.0.60", "level=2"]);
    assert!(again.contains("for=7200s"), "{again}");
}

#[tokio::test]
async fn bans_survive_a_restart_and_the_command_line_manages_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut mx = Mxguard::start(dir.path(), RELAY);
    // Through the running server (control socket).
    let added = mx.cli(&["ban", "add", "127.0.0.62", "--for", "2h"]);
    assert!(added.status.success(), "{added:?}");
    let added = String::from_utf8(added.stdout).unwrap();
    assert!(added.starts_with("127.0.0.62 until="), "{added}");
    assert!(added.contains("level=1 reason=manual"), "{added}");
    assert!(banner_from(&mx, "127.0.0.62")
        .await
        .starts_with("421 4.7.0 "));

    mx.terminate();
    mx.restart();
    assert!(banner_from(&mx, "127.0.0.62")
        .await
        .starts_with("421 4.7.0 "));

    // With the server stopped, the saved state is edited.
    mx.terminate();
    let removed = mx.cli(&["ban", "remove", "127.0.0.62"]);
    assert!(removed.status.success(), "{removed:?}");
    let added = mx.cli(&["ban", "add", "127.0.0.63"]);
    assert!(added.status.success(), "{added:?}");
    mx.restart();
    assert!(banner_from(&mx, "127.0.0.62").await.starts_with("220 "));
    assert!(banner_from(&mx, "127.0.0.63")
        .await
        .starts_with("421 4.7.0 "));
    let list = String::from_utf8(mx.cli(&["ban", "list"]).stdout).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.starts_with("127.0.0.63 "), "{list}");

    for bad_length in ["soon", "0s", "4000d"] {
        let bad = mx.cli(&["ban", "add", "127.0.0.64", "--for", bad_length]);
        assert_eq!(bad.status.code(), Some(2), "{bad_length}");
        assert!(String::from_utf8_lossy(&bad.stderr).contains("--for: "));
    }
}

#[test]
fn the_control_socket_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), RELAY);
    assert_eq!(
        mx.control("ban add 127.0.0.5 soon"),
        "error usage: ban add IP SECONDS (more than 0)\n"
    );
    assert_eq!(
        mx.control("ban add not-an-ip 60"),
        "error usage: ban add IP SECONDS (more than 0)\n"
    );
    assert_eq!(mx.control("ban remove x"), "error usage: ban remove IP\n");
    assert_eq!(mx.control("\u{1}\u{ff}garbage"), "error unknown command\n");
    assert_eq!(mx.control(&"x".repeat(3000)), "error command too long\n");
    assert_eq!(mx.control("ban list"), "ok\n");
}

#[tokio::test]
async fn banned_clients_can_be_dropped_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &format!("{RELAY}[ban]\naction = \"drop\"\n"));
    assert!(mx.cli(&["ban", "add", "127.0.0.67"]).status.success());
    let mut c = Client::connect_from("127.0.0.67", mx.addr).await;
    assert_eq!(c.rest().await, "");
    let line = mx.wait_log(&["event=reject", "client=127.0.0.67", "check=ban"]);
    assert!(line.contains("action=drop"), "{line}");
}

#[tokio::test]
async fn trusted_and_excepted_clients_are_never_banned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exceptions"), "127.0.0.98 partner\n").unwrap();
    let config = format!(
        "{RELAY}[limits]\nmax_errors = 3\n[ban]\nmax_retry = 1\n\
         [lists]\nclient_exceptions = \"exceptions\"\n"
    );
    let mx = Mxguard::start(dir.path(), &config);
    for client in ["127.0.0.99", "127.0.0.98"] {
        bot_session(&mx, client).await;
        bot_session(&mx, client).await;
        assert!(banner_from(&mx, client).await.starts_with("220 "));
    }
    // A control: the same abuse from anyone else is banned at once. Its
    // ban is logged after the exempt clients' sessions ended, so their
    // offences, had any been counted, would be in the log by now.
    bot_session(&mx, "127.0.0.97").await;
    mx.wait_log(&["event=ban", "client=127.0.0.97"]);
    let log = std::fs::read_to_string(mx.log_path()).unwrap();
    for exempt in ["127.0.0.99", "127.0.0.98"] {
        assert!(
            !log.contains(&format!("event=offence client={exempt}")),
            "{log}"
        );
        assert!(
            !log.contains(&format!("event=ban client={exempt}")),
            "{log}"
        );
    }
    let list = String::from_utf8(mx.cli(&["ban", "list"]).stdout).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
    // Nor can an administrator ban them by mistake.
    for exempt in ["127.0.0.99", "127.0.0.98"] {
        let refused = mx.cli(&["ban", "add", exempt]);
        assert_eq!(refused.status.code(), Some(75));
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            err.contains(exempt) && err.contains("never banned"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn pregreet_talkers_are_dropped_and_banned_polite_clients_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{RELAY}[abuse]\ngreet_wait = \"1s\"\n[ban]\nmax_retry = 2\n");
    let mx = Mxguard::start(dir.path(), &config);

    for round in 1..=2 {
        let mut talker = Client::connect_from("127.0.0.65", mx.addr).await;
        talker.send(b"EHLO bot.example\r\n").await;
        assert_eq!(talker.reply().await, "554 5.5.1 Protocol error\r\n");
        assert_eq!(talker.rest().await, "");
        mx.wait_log_count(
            &[
                "event=reject",
                "client=127.0.0.65",
                "stage=connect",
                "check=pregreet",
            ],
            round,
        );
    }
    mx.wait_log(&["event=ban", "client=127.0.0.65", "reason=pregreet"]);
    assert!(banner_from(&mx, "127.0.0.65")
        .await
        .starts_with("421 4.7.0 "));

    // A client that waits gets the banner and its mail through; it is
    // remembered, and its next connection is not tested again.
    let mut polite = Client::connect_from("127.0.0.66", mx.addr).await;
    assert_eq!(polite.reply().await, "220 mx.test ESMTP mxguard\r\n");
    assert!(polite
        .cmd("EHLO client.test")
        .await
        .starts_with("250-mx.test"));
    assert_eq!(polite.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    let mut again = Client::connect_from("127.0.0.66", mx.addr).await;
    again.send(b"EHLO client.test\r\n").await;
    assert_eq!(again.reply().await, "220 mx.test ESMTP mxguard\r\n");
    assert!(again.reply().await.starts_with("250-mx.test"));
    let log = std::fs::read_to_string(mx.log_path()).unwrap();
    assert!(
        !log.contains("client=127.0.0.66 stage=connect check=pregreet"),
        "{log}"
    );
}

/// MAIL and RCPT from `source`; the replies.
async fn transaction(mx: &Mxguard, source: &str, from: &str, rcpts: &[&str]) -> Vec<String> {
    let mut c = Client::greet_from(source, mx.addr, "client.test").await;
    let mut replies = vec![c.cmd(&format!("MAIL FROM:<{from}>")).await];
    for rcpt in rcpts {
        replies.push(c.cmd(&format!("RCPT TO:<{rcpt}>")).await);
    }
    c.cmd("QUIT").await;
    replies
}

#[tokio::test]
async fn every_rate_limit_with_its_reply() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{RELAY}[limits]\nconnections_per_minute = 2\nmessages_per_hour = 2\n\
         recipients_per_hour = 3\nsender_messages_per_hour = 3\nsender_recipients_per_hour = 4\n"
    );
    let mx = Mxguard::start(dir.path(), &config);
    let ok_mail = "250 2.1.0 Ok\r\n";
    let ok_rcpt = "250 2.1.5 Ok\r\n";

    // Connections per minute.
    assert!(banner_from(&mx, "127.0.0.70").await.starts_with("220 "));
    assert!(banner_from(&mx, "127.0.0.70").await.starts_with("220 "));
    assert_eq!(
        banner_from(&mx, "127.0.0.70").await,
        "421 4.7.0 mx.test Error: too many connections from 127.0.0.70\r\n"
    );
    mx.wait_log(&["event=reject", "client=127.0.0.70", "check=connection_rate"]);
    mx.advance_clock(61);
    assert!(banner_from(&mx, "127.0.0.70").await.starts_with("220 "));

    // Messages per hour from one client.
    let mut c = Client::greet_from("127.0.0.71", mx.addr, "client.test").await;
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").await, ok_mail);
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok\r\n");
    assert_eq!(c.cmd("MAIL FROM:<b@sender.test>").await, ok_mail);
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Ok\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<c@sender.test>").await,
        "450 4.7.1 Error: too much mail from 127.0.0.71\r\n"
    );
    mx.wait_log(&[
        "event=reject",
        "client=127.0.0.71",
        "stage=mail",
        "check=message_rate",
    ]);

    // Recipients per hour from one client.
    let r = transaction(
        &mx,
        "127.0.0.72",
        "d@sender.test",
        &[
            "u1@example.test",
            "u2@example.test",
            "u3@example.test",
            "u4@example.test",
        ],
    )
    .await;
    assert_eq!(r[1..4], [ok_rcpt, ok_rcpt, ok_rcpt]);
    assert_eq!(
        r[4],
        "450 4.7.1 Error: too many recipients from 127.0.0.72\r\n"
    );
    mx.wait_log(&["check=recipient_rate", "to=<u4@example.test>"]);

    // Per sender, whatever the client.
    for client in ["127.0.0.73", "127.0.0.74", "127.0.0.75"] {
        let r = transaction(&mx, client, "bulk@sender.test", &["u1@example.test"]).await;
        assert_eq!(r, [ok_mail, ok_rcpt]);
    }
    let r = transaction(&mx, "127.0.0.76", "bulk@sender.test", &[]).await;
    assert_eq!(
        r[0],
        "450 4.7.1 Error: too much mail from <bulk@sender.test>\r\n"
    );
    let r = transaction(
        &mx,
        "127.0.0.77",
        "many@sender.test",
        &["u1@example.test", "u2@example.test", "u3@example.test"],
    )
    .await;
    assert_eq!(r[1..], [ok_rcpt, ok_rcpt, ok_rcpt]);
    let r = transaction(
        &mx,
        "127.0.0.78",
        "many@sender.test",
        &["u4@example.test", "u5@example.test"],
    )
    .await;
    assert_eq!(r[1], ok_rcpt);
    assert_eq!(
        r[2],
        "450 4.7.1 Error: too many recipients from <many@sender.test>\r\n"
    );
    mx.wait_log(&["check=sender_recipient_rate", "client=127.0.0.78"]);

    // An hour later, the windows are empty again.
    mx.advance_clock(3600);
    let r = transaction(&mx, "127.0.0.71", "bulk@sender.test", &["u1@example.test"]).await;
    assert_eq!(r, [ok_mail, ok_rcpt]);

    // Trusted clients are not limited.
    for _ in 0..4 {
        assert!(banner_from(&mx, "127.0.0.99").await.starts_with("220 "));
    }
}

#[tokio::test]
async fn greylisting_edges() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{RELAY}{}[[dnsbl]]\nzone = \"wl.test\"\nweight = -5\n\
         [greylist]\nenabled = true\nwhen = \"always\"\ndelay = \"5m\"\nretry_window = \"1d\"\nallow_for = \"36d\"\nauto_allow_after = 2\n",
        dns.config()
    );
    let mx = Mxguard::start(dir.path(), &config);
    // Steps of one second below: the clock must not also run on its own.
    mx.freeze_clock();
    let greylisted = |rcpt: &str, wait: u64| {
        format!("451 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, try again in {wait} seconds\r\n")
    };
    let ok = "250 2.1.5 Ok\r\n";
    let client = "127.0.0.80";
    let mx = &mx;
    let try_rcpt =
        |rcpt: &'static str| async move { transaction(mx, client, "s@sender.test", &[rcpt]).await };

    assert_eq!(
        try_rcpt("a@example.test").await[1],
        greylisted("a@example.test", 300)
    );
    mx.wait_log(&["event=reject", "check=greylist", "to=<a@example.test>"]);
    mx.advance_clock(299);
    // Too early: still waiting, and the first attempt's time is kept.
    assert_eq!(
        try_rcpt("a@example.test").await[1],
        greylisted("a@example.test", 1)
    );
    mx.advance_clock(1);
    assert_eq!(try_rcpt("a@example.test").await[1], ok);
    mx.wait_log(&["event=greylist_pass", "to=<a@example.test>", "waited=300s"]);
    // Passed triplets are remembered.
    mx.advance_clock(30 * 86_400);
    assert_eq!(try_rcpt("a@example.test").await[1], ok);

    // A retry after the window starts over.
    assert_eq!(
        try_rcpt("b@example.test").await[1],
        greylisted("b@example.test", 300)
    );
    mx.advance_clock(86_401);
    assert_eq!(
        try_rcpt("b@example.test").await[1],
        greylisted("b@example.test", 300)
    );
    mx.advance_clock(300);
    assert_eq!(try_rcpt("b@example.test").await[1], ok);

    // Two passed triplets: the whole /24 skips greylisting now.
    let r = transaction(mx, "127.0.0.81", "new@sender.test", &["c@example.test"]).await;
    assert_eq!(r[1], ok);

    // Trusted clients are never greylisted; nor is a DNSWL-listed one
    // (127.0.0.21 is in wl.test) — tested on a fresh server, whose /24 is
    // not allowed yet.
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &config);
    let r = transaction(&mx, "127.0.0.99", "s@sender.test", &["d@example.test"]).await;
    assert_eq!(r[1], ok);
    let r = transaction(&mx, "127.0.0.21", "s@sender.test", &["d@example.test"]).await;
    assert_eq!(r[1], ok);
    let r = transaction(&mx, "127.0.0.82", "s@sender.test", &["d@example.test"]).await;
    assert_eq!(r[1], greylisted("d@example.test", 300));
}

#[tokio::test]
async fn tarpit_takes_listed_clients_up_to_its_cap() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{RELAY}{}[[dnsbl]]\nzone = \"bl.test\"\nweight = 3\n\
         [abuse]\ngreet_wait = \"0s\"\ntarpit_score = 1.0\ntarpit_delay = \"100ms\"\ntarpit_max = 1\n",
        dns.config()
    );
    let mx = Mxguard::start(dir.path(), &config);
    // 127.0.0.20 is listed in bl.test: tarpitted, and served (slowly).
    let mut slow = Client::connect_from("127.0.0.20", mx.addr).await;
    assert_eq!(slow.reply().await, "220 mx.test ESMTP mxguard\r\n");
    mx.wait_log(&[
        "event=tarpit",
        "client=127.0.0.20",
        "score=3",
        "reason=score",
    ]);
    // The only tarpit slot is taken: another listed client is served at
    // full speed (the tarpit never refuses mail).
    let second = banner_from(&mx, "127.0.0.20").await;
    assert_eq!(second, "220 mx.test ESMTP mxguard\r\n");
    mx.wait_log(&["event=tarpit_full", "client=127.0.0.20", "tarpit_max=1"]);
    // Clean clients are served as usual, never tarpitted.
    assert!(banner_from(&mx, "127.0.0.30").await.starts_with("220 "));
    assert_eq!(slow.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    assert_eq!(slow.rest().await, "");
    // The slot is free again once the slow client has gone.
    mx.wait_log_count(&["event=disconnect", "client=127.0.0.20"], 2);
    let mut third = Client::connect_from("127.0.0.20", mx.addr).await;
    assert_eq!(third.reply().await, "220 mx.test ESMTP mxguard\r\n");
    mx.wait_log_count(&["event=tarpit", "client=127.0.0.20", "reason=score"], 2);
    let log = std::fs::read_to_string(mx.log_path()).unwrap();
    assert!(!log.contains("event=tarpit client=127.0.0.30"), "{log}");
}
