//! STARTTLS: offered with `[tls]`, plaintext pipelined after STARTTLS is
//! never answered, the client must EHLO again, and swaks can deliver over it.

use crate::harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tls_config(dir: &std::path::Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[relay]\ndomains = [\"example.test\"]\n"
        .to_string()
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &tls_config(dir.path()));
    let mut c = Client::connect(mx.addr).await;
    c.reply().await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(
        ehlo.contains("250-STARTTLS\r\n") || ehlo.contains("250 STARTTLS\r\n"),
        "{ehlo}"
    );
    // The injection: a command in the same packet as STARTTLS.
    c.send(b"STARTTLS\r\nNOOP\r\n").await;
    assert_eq!(c.reply().await, "220 2.0.0 Ready to start TLS\r\n");
    let stream = c.into_stream();
    let connector =
        tokio_rustls::TlsConnector::from(mxguard::tls::client::any_certificate_config());
    let name = rustls::pki_types::ServerName::try_from("mx.test").unwrap();
    let mut tls = connector
        .connect(name, stream)
        .await
        .expect("TLS handshake");
    // The first thing we read after the handshake answers what we send
    // now, not the injected NOOP; and the session starts over.
    tls.write_all(b"MAIL FROM:<a@client.test>\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "503 5.5.1 Error: send HELO/EHLO first\r\n"
    );
    tls.write_all(b"EHLO client.test\r\n").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    let ehlo = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        ehlo.starts_with("250-mx.test\r\n") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    tls.write_all(b"STARTTLS\r\n").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "554 5.5.1 Error: TLS already active\r\n"
    );
    tls.write_all(b"QUIT\r\n").await.unwrap();
    let n = tls.read(&mut buf).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "221 2.0.0 Bye\r\n");
    let line = mx.wait_log(&["event=disconnect", "tls="]);
    assert!(line.contains("TLSv1_3"), "{line}");
    assert!(!mx
        .log_lines()
        .iter()
        .any(|l| l.contains("check=protocol") && l.contains("NOOP")));
}

#[test]
fn swaks_delivers_over_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(
        dir.path(),
        &(tls_config(dir.path()) + &smtp_downstream(sink.port)),
    );
    let out = swaks(
        mx.addr,
        &["--tls", "--from", "a@client.test", "--to", "b@example.test"],
    );
    assert!(out.contains("<~  250 2.0.0 Ok: queued as"), "{out}");
    mx.wait_log(&["event=delivery", "status=sent"]);
    let m = &sink.messages()[0];
    assert!(m.contains("(mxguard) with ESMTPS id"), "{m}");
}

#[test]
fn delivery_uses_starttls_when_the_downstream_offers_it() {
    let outer = tempfile::tempdir().unwrap();
    let (down_dir, front_dir) = (outer.path().join("downstream"), outer.path().join("front"));
    std::fs::create_dir_all(&down_dir).unwrap();
    std::fs::create_dir_all(&front_dir).unwrap();
    let downstream = Mxguard::start(
        &down_dir,
        &(tls_config(&down_dir) + "[downstream]\ntargets = [\"maildir:Maildir\"]\n"),
    );
    let front = Mxguard::start(&front_dir, &relay_to(downstream.addr.port()));
    let out = swaks(
        front.addr,
        &["--from", "a@client.test", "--to", "b@example.test"],
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let line = front.wait_log(&["event=delivery", "status=sent"]);
    assert!(line.contains(" tls=TLSv1_3 "), "{line}");
    let line = downstream.wait_log(&["event=disconnect", "helo=mx.test"]);
    assert!(line.contains("tls=\"TLSv1_3"), "{line}");
    let maildir = down_dir.join("Maildir/new");
    let file = wait_for("the message in the downstream's Maildir", || {
        std::fs::read_dir(&maildir)
            .ok()?
            .flatten()
            .next()
            .map(|e| e.path())
    });
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.starts_with(
            "Received: from mx.test ([127.0.0.1])\r\n\tby mx.test (mxguard) with ESMTPS id "
        ),
        "{text}"
    );
}
