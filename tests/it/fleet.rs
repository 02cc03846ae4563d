//! Fleet mode: two mxguard processes sharing a real redis-server. A ban, a
//! greylist pass and a learned recipient made through one are honoured by
//! the other; Redis killed mid-run, mail still flows (fail-open) and the
//! shared state is back when Redis returns; `on_error = "closed"` refuses.

use crate::harness::*;
use crate::redis_server::RedisServer;

/// MX for example.test with callout to `downstream`, greylisting, quick
/// bans, and the shared state in `redis`.
fn fleet_config(redis: &str, downstream: u16, on_error: &str) -> String {
    format!(
        "[relay]\ndomains = [\"example.test\"]\n\
         [recipients]\ncallout = true\ncallout_timeout = \"2s\"\n{}\
         [limits]\nmax_errors = 2\n[ban]\nmax_retry = 1\n\
         [greylist]\nenabled = true\nwhen = \"always\"\ndelay = \"5m\"\n\
         [state]\nbackend = \"{redis}\"\nprefix = \"fleet-test:\"\ntimeout = \"300ms\"\non_error = \"{on_error}\"\n",
        smtp_downstream(downstream)
    )
}

async fn rcpt_from(mx: &Mxguard, source: &str, to: &str) -> String {
    let mut c = Client::greet_from(source, mx.addr, "client.test").await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    let reply = c.cmd(&format!("RCPT TO:<{to}>")).await;
    c.cmd("QUIT").await;
    reply
}

async fn banner_from(mx: &Mxguard, source: &str) -> String {
    Client::connect_from(source, mx.addr).await.reply().await
}

/// A whole message from `source` to alice; the reply to the end of DATA.
async fn send_from(mx: &Mxguard, source: &str) -> String {
    let mut c = Client::greet_from(source, mx.addr, "client.test").await;
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test>").await, "250 2.1.0 Ok\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(b"Subject: through the fleet\r\n\r\nhello\r\n.\r\n")
        .await;
    let queued = c.reply().await;
    c.cmd("QUIT").await;
    queued
}

/// Polls (bounded) until `from` connecting to `mx` gets a reply starting
/// with `want`: the server reconnects to Redis on its own schedule.
async fn eventually_banner(mx: &Mxguard, from: &str, want: &str) {
    for _ in 0..200 {
        if banner_from(mx, from).await.starts_with(want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{from} never got {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_bans_greylist_and_recipients_through_redis() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let primary = CaptureSink::start().await;
    primary.on_rcpt(|to| {
        if to == "alice@example.test" {
            "250 2.1.5 Ok".into()
        } else {
            "550 5.1.1 no such user".into()
        }
    });
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = Mxguard::start(
        &a_dir,
        &fleet_config(&redis.url(), primary.addr.port(), "open"),
    );
    // B cannot reach the primary at all: whatever it knows, it learned
    // through Redis.
    let b = Mxguard::start(&b_dir, &fleet_config(&redis.url(), free_port(), "open"));
    let client = "127.0.0.40";

    // Through A: alice exists, nobody does (asked of the primary), and
    // the triplet for alice is greylisted.
    let first = rcpt_from(&a, client, "alice@example.test").await;
    assert!(
        first.starts_with("451 4.7.1 <alice@example.test>: Recipient address rejected: Greylisted"),
        "{first}"
    );
    let nobody = rcpt_from(&a, client, "nobody@example.test").await;
    assert!(
        nobody.starts_with("550 5.1.1 <nobody@example.test>"),
        "{nobody}"
    );

    // Five minutes later (on both hosts' clocks), the retry reaches B.
    a.advance_clock(300);
    b.advance_clock(300);
    assert_eq!(
        rcpt_from(&b, client, "alice@example.test").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        rcpt_from(&b, client, "nobody@example.test").await,
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown (cached answer of the downstream)\r\n"
    );
    b.wait_log(&["event=greylist_pass", "to=<alice@example.test>"]);

    // A bot thrown out by A is banned on B too.
    let bot = "127.0.0.41";
    let mut c = Client::connect_from(bot, a.addr).await;
    c.reply().await;
    c.cmd(".").await;
    c.cmd(".").await;
    c.rest().await;
    a.wait_log(&["event=ban", "client=127.0.0.41"]);
    let refused = banner_from(&b, bot).await;
    assert!(
        refused.starts_with("421 4.7.0 mx.test Error: 127.0.0.41 temporarily blocked"),
        "{refused}"
    );
    // And `mxguard ban list` on B shows it, straight from Redis.
    let list = String::from_utf8(b.cli(&["ban", "list"]).stdout).unwrap();
    assert!(list.starts_with("127.0.0.41 until="), "{list}");

    // Redis dies: mail still flows through A (fail-open), with a warning.
    redis.kill();
    assert!(send_from(&a, client)
        .await
        .starts_with("250 2.0.0 Ok: queued as "));
    a.wait_log(&["event=state_error", "on_error=open"]);
    wait_for("the message at the primary", || {
        (!primary.captured().is_empty()).then_some(())
    });
    // B serves newcomers too, even the banned bot while it cannot know.
    assert!(banner_from(&b, "127.0.0.42").await.starts_with("220 "));

    // Redis returns with what it had: the ban holds again on both hosts.
    redis.restart();
    eventually_banner(&b, bot, "421 4.7.0 ").await;
    eventually_banner(&a, bot, "421 4.7.0 ").await;
    a.wait_log(&["event=state_recovered"]);
}

#[tokio::test]
async fn on_error_closed_refuses_while_redis_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("redis://127.0.0.1:{}/0", free_port());
    let mx = Mxguard::start(dir.path(), &fleet_config(&dead, free_port(), "closed"));
    assert_eq!(
        banner_from(&mx, "127.0.0.43").await,
        "421 4.3.0 mx.test Error: temporary failure of the shared state, try again later\r\n"
    );
    mx.wait_log(&[
        "event=reject",
        "stage=connect",
        "check=state",
        "client=127.0.0.43",
    ]);
    mx.wait_log(&["event=state_error", "on_error=closed"]);
    // The same outage with the default, fail-open: served.
    std::fs::create_dir_all(dir.path().join("open")).unwrap();
    let open = Mxguard::start(
        &dir.path().join("open"),
        &fleet_config(&dead, free_port(), "open"),
    );
    assert!(banner_from(&open, "127.0.0.43").await.starts_with("220 "));
}
