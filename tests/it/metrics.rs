//! `/metrics` scraped after a scripted session: the counters the session
//! must have moved, the gauges, and the HTTP edges.

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
