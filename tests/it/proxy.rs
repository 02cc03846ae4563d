//! Behind a load balancer: on a `server.proxy_listen` address the client
//! is the one the PROXY header names (v1 and v2, written by the test, and
//! through a real HAProxy), for the checks, the log and the Received
//! header; a header from outside `server.proxy_from`, or none, closes the
//! connection (logged); a health check is answered and not logged.

use crate::harness::*;
use std::process::{Child, Command, Stdio};

/// An MX for example.test behind a balancer on 127.0.0.1, relaying to
/// `sink`; 192.0.2.10 and 127.0.0.5 may relay anywhere, so a relayed
/// recipient shows which client the checks saw.
fn behind_balancer(dir: &std::path::Path, sink: &Sink) -> Mxguard {
    Mxguard::start_with(
        dir,
        "proxy_listen = [\"127.0.0.1:0\"]\nproxy_from = [\"127.0.0.1\"]\n",
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n\
             trusted_networks = [\"192.0.2.10\", \"127.0.0.5\"]\n{}",
            smtp_downstream(sink.port)
        ),
    )
}

fn v2_header(command: u8, addresses: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(if addresses.is_empty() { 0 } else { 0x11 });
    h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    h.extend_from_slice(addresses);
    h
}

/// Sends one message relayed to elsewhere.test after `header`; the reply
/// to RCPT.
async fn relay_through(addr: std::net::SocketAddr, header: &[u8]) -> String {
    let mut c = Client::connect(addr).await;
    c.send(header).await;
    let banner = c.reply().await;
    assert!(banner.starts_with("220 mx.test"), "{banner}");
    c.cmd("EHLO relay.client.test").await;
    c.cmd("MAIL FROM:<app@client.test>").await;
    let rcpt = c.cmd("RCPT TO:<someone@elsewhere.test>").await;
    if rcpt.starts_with("250") {
        assert_eq!(
            c.cmd("DATA").await,
            "354 2.0.0 End data with <CR><LF>.<CR><LF>\r\n"
        );
        let queued = c.cmd("Subject: proxied\r\n\r\nhello\r\n.").await;
        assert!(queued.starts_with("250 2.0.0 Ok: queued"), "{queued}");
    }
    c.cmd("QUIT").await;
    rcpt
}

#[tokio::test]
async fn the_client_is_the_one_a_v1_or_v2_header_names() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = behind_balancer(dir.path(), &sink);
    let proxied = mx.proxy_listen();

    let v1 = b"PROXY TCP4 192.0.2.10 198.51.100.25 40000 25\r\n";
    assert_eq!(relay_through(proxied, v1).await, "250 2.1.5 Ok\r\n");
    let v2 = v2_header(1, &[192, 0, 2, 10, 198, 51, 100, 25, 0x9c, 0x40, 0, 25]);
    assert_eq!(relay_through(proxied, &v2).await, "250 2.1.5 Ok\r\n");
    // Another client behind the balancer is not trusted to relay.
    let other = b"PROXY TCP4 192.0.2.11 198.51.100.25 40000 25\r\n";
    assert_eq!(
        relay_through(proxied, other).await,
        "554 5.7.1 <someone@elsewhere.test>: Relay access denied\r\n"
    );
    // The balancer itself (127.0.0.1) is no client on the direct listener.
    assert_eq!(
        relay_through(mx.addr, b"").await,
        "554 5.7.1 <someone@elsewhere.test>: Relay access denied\r\n"
    );

    mx.wait_log_count(&["event=disconnect", "client=192.0.2.10"], 2);
    mx.wait_log(&["event=reject", "client=192.0.2.11", "check=relay"]);
    mx.wait_log_count(&["event=accept", "client=192.0.2.10"], 2);
    let delivered = mx.wait_log_count(&["event=delivery", "status=sent"], 2);
    assert_eq!(delivered.len(), 2);
    for message in sink.messages() {
        assert!(
            message.contains("from relay.client.test ([192.0.2.10])"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_header_from_outside_proxy_from_or_none_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = behind_balancer(dir.path(), &sink);
    let proxied = mx.proxy_listen();

    // Anyone may write a header; only the balancer is believed.
    let mut forged = Client::connect_from("127.0.0.2", proxied).await;
    forged
        .send(b"PROXY TCP4 192.0.2.10 198.51.100.25 40000 25\r\n")
        .await;
    assert_eq!(forged.rest().await, "", "no banner for a forged header");
    mx.wait_log(&[
        "event=proxy_refused",
        "peer=127.0.0.2",
        "reason=\"untrusted source: not in server.proxy_from\"",
    ]);

    // The balancer itself without a header: SMTP where a header belongs.
    let mut bare = Client::connect(proxied).await;
    bare.send(b"EHLO client.test\r\n").await;
    assert_eq!(bare.rest().await, "");
    mx.wait_log(&["event=proxy_refused", "peer=127.0.0.1", "no PROXY header"]);
    assert!(!mx
        .log_lines()
        .iter()
        .any(|l| l.contains("event=disconnect") && l.contains("192.0.2.10")));
}

#[tokio::test]
async fn a_health_check_is_answered_and_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = behind_balancer(dir.path(), &sink);
    let mut check = Client::connect(mx.proxy_listen()).await;
    check.send(&v2_header(0, &[])).await;
    assert_eq!(check.reply().await, "220 mx.test ESMTP mxguard\r\n");
    assert_eq!(check.cmd("EHLO haproxy.check").await, "250 mx.test\r\n");
    assert_eq!(check.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    assert_eq!(check.rest().await, "");
    // A session after it is logged; the check before it was not.
    relay_through(mx.addr, b"").await;
    let lines = mx.wait_log_count(&["event=disconnect"], 1);
    assert!(lines[0].contains("client=127.0.0.1"), "{lines:?}");
    assert!(!mx.log_lines().iter().any(|l| l.contains("haproxy.check")));
}

/// HAProxy (Debian's package) in TCP mode in front of the proxy listener,
/// sending the PROXY header version `version`.
struct Haproxy {
    child: Child,
    port: u16,
}

impl Haproxy {
    fn start(dir: &std::path::Path, backend: std::net::SocketAddr, version: u8) -> Haproxy {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let send = if version == 2 {
            "send-proxy-v2"
        } else {
            "send-proxy"
        };
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 100\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend smtp\n  bind 127.0.0.1:{port}\n  default_backend mx\n\
                 backend mx\n  server mx {backend} {send}\n"
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (Debian package haproxy) must be installed: run scripts/test");
        wait_for("haproxy to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Haproxy { child, port }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn through_a_real_haproxy_the_client_is_the_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = behind_balancer(dir.path(), &sink);
    for version in [1, 2] {
        let haproxy = Haproxy::start(
            &dir.path().join(format!("haproxy{version}")),
            mx.proxy_listen(),
            version,
        );
        let front = std::net::SocketAddr::from(([127, 0, 0, 1], haproxy.port));
        let mut c = Client::connect_from("127.0.0.5", front).await;
        assert!(c.reply().await.starts_with("220 mx.test"));
        c.cmd("EHLO relay.client.test").await;
        c.cmd("MAIL FROM:<app@client.test>").await;
        // 127.0.0.5 may relay; the balancer (127.0.0.1) may not.
        assert_eq!(
            c.cmd("RCPT TO:<someone@elsewhere.test>").await,
            "250 2.1.5 Ok\r\n"
        );
        c.cmd("QUIT").await;
        mx.wait_log_count(
            &["event=disconnect", "client=127.0.0.5"],
            usize::from(version),
        );
    }
    assert!(!mx
        .log_lines()
        .iter()
        .any(|l| l.contains("event=proxy_refused")));
}
