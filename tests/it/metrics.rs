//! `/metrics` scraped after a scripted session: the counters the session
//! must have moved, the gauges, and the HTTP edges; who may connect, and
//! scrapes answered beside idle sockets; `/healthz` and `/readyz` as the
//! spool, the queue and the state store fail and recover.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use std::io::{Read, Write};

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn metrics_count_what_a_session_did() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let _sink = Sink::start(dir.path(), sink_port, &[]);
    let config = format!(
        "{}{}[[dnsbl]]\nzone = \"bl.test\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        relay_to(sink_port),
        dns.config()
    );
    let mx = Mxguard::start(dir.path(), &config);
    let line = mx.wait_log(&["event=listen", "service=metrics"]);
    let addr = line.split("address=").nth(1).unwrap().trim().to_string();

    // One accepted message for two recipients, one relay refusal, one
    // client refused by the DNSBL (127.0.0.20 is listed in bl.test).
    let mut c = Client::greet_from("127.0.0.30", mx.addr, "client.test").await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert!(c
        .cmd("RCPT TO:<x@elsewhere.test>")
        .await
        .starts_with("554 5.7.1"));
    c.cmd("RCPT TO:<bob@example.test>").await;
    c.cmd("RCPT TO:<carol@example.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    c.cmd("QUIT").await;
    let mut listed = Client::greet_from("127.0.0.20", mx.addr, "client.test").await;
    listed.cmd("MAIL FROM:<a@client.test>").await;
    assert!(listed
        .cmd("RCPT TO:<bob@example.test>")
        .await
        .starts_with("554 5.7.1"));
    listed.cmd("QUIT").await;
    mx.wait_log_count(&["event=delivery", "status=sent"], 2);
    mx.wait_log_count(&["event=disconnect"], 2);
    assert!(mx.cli(&["ban", "add", "192.0.2.9"]).status.success());

    let page = http_get(&addr, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Type: text/plain; version=0.0.4"),
        "{page}"
    );
    for want in [
        "mxguard_connections_total 2\n",
        "mxguard_messages_total{outcome=\"accepted\"} 1\n",
        "mxguard_accepted_recipients_total 2\n",
        "mxguard_rejections_total{stage=\"rcpt\",check=\"relay\",action=\"reject\"} 1\n",
        "mxguard_rejections_total{stage=\"rcpt\",check=\"dnsbl:bl.test\",action=\"reject\"} 1\n",
        "mxguard_delivery_attempts_total{status=\"sent\"} 2\n",
        "mxguard_connections_open 0\n",
        "mxguard_queue_messages 0\n",
        "mxguard_dnsbl_usable{zone=\"bl.test\",health=\"ok\"} 1\n",
        "mxguard_bans_active 1\n",
        "mxguard_bans_total{reason=\"manual\"} 1\n",
        "mxguard_state_errors_total 0\n",
        "# TYPE mxguard_dns_query_seconds histogram\n",
    ] {
        assert!(page.contains(want), "{want} in {page}");
    }
    // The DNS lookups were timed: the DNSBL test points and the client.
    let count: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("mxguard_dns_query_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 3, "{page}");

    assert!(http_get(&addr, "/").starts_with("HTTP/1.1 404 Not Found\r\n"));
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405 "), "{out}");
}

/// mxguard with metrics on a loopback port, `extra` in `[metrics]`; the
/// metrics address.
fn start_with_metrics(dir: &std::path::Path, extra: &str) -> (Mxguard, String) {
    let mx = Mxguard::start(
        dir,
        &format!("[metrics]\nlisten = \"127.0.0.1:0\"\n{extra}"),
    );
    let line = mx.wait_log(&["event=listen", "service=metrics"]);
    let addr = line.split("address=").nth(1).unwrap().trim().to_string();
    (mx, addr)
}

fn refusals(mx: &Mxguard) -> Vec<String> {
    mx.log_lines()
        .into_iter()
        .filter(|l| l.contains("event=metrics_refused"))
        .collect()
}

#[tokio::test]
async fn a_peer_outside_allow_is_closed_unanswered_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mx, addr) = start_with_metrics(dir.path(), "allow = [\"127.0.0.1\"]\n");
    for _ in 0..3 {
        let mut c = tcp_from("127.0.0.2", &addr).await;
        assert_eq!(until_closed(&mut c).await, b"");
    }
    // Served after the three refusals: they are all done with.
    let page = http_get(&addr, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    // A session after them is logged after them: once its line is
    // written, so is every line before it.
    let mut after = Client::connect(mx.addr).await;
    after.reply().await;
    after.cmd("QUIT").await;
    mx.wait_log(&["event=disconnect"]);
    let logged = refusals(&mx);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].ends_with(
            " event=metrics_refused client=127.0.0.2 reason=not_allowed service=metrics"
        ),
        "{logged:?}"
    );
}

#[tokio::test]
async fn a_scrape_is_answered_while_idle_sockets_sit_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mx, addr) = start_with_metrics(dir.path(), "");
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tcp_from("127.0.0.2", &addr).await);
    }
    // The peer's first 16 are held; the rest were closed (and logged once).
    mx.wait_log(&["event=metrics_refused"]);
    let page = http_get(&addr, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("\nmxguard_connections_open 0\n"), "{page}");
    let mut after = Client::connect(mx.addr).await;
    after.reply().await;
    after.cmd("QUIT").await;
    mx.wait_log(&["event=disconnect"]);
    let logged = refusals(&mx);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].ends_with(
            " event=metrics_refused client=127.0.0.2 reason=max_connections_per_peer service=metrics"
        ),
        "{logged:?}"
    );
    // Held open to the end.
    drop(idle);
}

/// The status line and the body of a `GET path`.
fn get(addr: &str, path: &str) -> (String, String) {
    let response = http_get(addr, path);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

fn ok(body: &str) -> (String, String) {
    ("HTTP/1.1 200 OK".to_string(), body.to_string())
}

fn unavailable(body: &str) -> (String, String) {
    (
        "HTTP/1.1 503 Service Unavailable".to_string(),
        body.to_string(),
    )
}

#[test]
fn readyz_fails_while_the_spool_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_mx, addr) = start_with_metrics(dir.path(), "");
    assert_eq!(get(&addr, "/healthz"), ok("ok\n"));
    assert_eq!(get(&addr, "/readyz"), ok("ready\n"));

    // Root writes through any permissions: make tmp/ a file instead.
    let tmp = dir.path().join("spool/tmp");
    let away = dir.path().join("spool/tmp.away");
    std::fs::rename(&tmp, &away).unwrap();
    std::fs::write(&tmp, "not a directory").unwrap();
    assert_eq!(
        get(&addr, "/readyz"),
        unavailable(&format!(
            "spool: cannot write {}: Not a directory (os error 20)\n",
            tmp.display()
        ))
    );
    assert_eq!(get(&addr, "/healthz"), ok("ok\n"));

    std::fs::remove_file(&tmp).unwrap();
    std::fs::rename(&away, &tmp).unwrap();
    assert_eq!(get(&addr, "/readyz"), ok("ready\n"));
    // The probes left nothing behind.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn readyz_fails_while_the_queue_is_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mx, addr) = start_with_metrics(dir.path(), &format!("\n{}", relay_to(port)));
    let out = swaks(
        mx.addr,
        &["--from", "a@client.test", "--to", "b@example.test"],
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    mx.wait_log(&["event=delivery", "status=deferred"]);
    // Deferred, but young.
    assert_eq!(get(&addr, "/readyz"), ok("ready\n"));

    mx.advance_clock(3601);
    let stuck =
        "queue: a message has waited more than 3600s and no delivery succeeded for as long\n";
    assert_eq!(get(&addr, "/readyz"), unavailable(stuck));

    let _sink = Sink::start(&dir.path().join("sink"), port, &[]);
    assert!(mx.cli(&["queue", "flush"]).status.success());
    mx.wait_log(&["event=delivery", "status=sent"]);
    assert_eq!(get(&addr, "/readyz"), ok("ready\n"));
}

#[test]
fn readyz_fails_while_a_closed_state_store_does_not_answer() {
    // Nothing listens on the Redis port; nothing asked Redis before.
    let dead = free_port();
    let refused = "state: redis: Connection refused (os error 111)\n";
    for (on_error, expected) in [("open", ok("ready\n")), ("closed", unavailable(refused))] {
        let dir = tempfile::tempdir().unwrap();
        let state = format!(
            "[state]\nbackend = \"redis://127.0.0.1:{dead}/0\"\non_error = \"{on_error}\"\n"
        );
        let (_mx, addr) = start_with_metrics(dir.path(), &format!("\n{state}"));
        assert_eq!(get(&addr, "/readyz"), expected, "on_error = {on_error}");
    }
}

#[test]
fn readyz_of_the_policy_server_alone_needs_no_smtp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start_policy_server(
        dir.path(),
        "[policy_server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let line = mx.wait_log(&["event=listen", "service=metrics"]);
    let addr = line.split("address=").nth(1).unwrap().trim().to_string();
    assert_eq!(get(&addr, "/readyz"), ok("ready\n"));
}
