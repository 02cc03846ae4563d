//! End to end with real peers: swaks → mxguard → smtp-sink.

use crate::harness::*;

#[test]
fn swaks_message_reaches_smtp_sink_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(dir.path(), &relay_to(sink.port));
    let body =
        "Subject: hello\r\nMessage-ID: <e2e-1@client.test>\r\n\r\nline one\r\n.leading dot\r\n";
    let out = swaks(
        mx.addr,
        &[
            "--from",
            "alice@client.test",
            "--to",
            "bob@example.test",
            "--helo",
            "client.test",
            "--data",
            body,
        ],
    );
    assert!(out.contains("<-  250 2.0.0 Ok: queued as "), "{out}");
    let accept = mx.wait_log(&["event=accept", "from=<alice@client.test>"]);
    let id = accept
        .split("queue_id=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(
        accept.contains("client=127.0.0.1 helo=client.test"),
        "{accept}"
    );
    mx.wait_log(&["event=delivery", &format!("queue_id={id}"), "status=sent"]);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m.contains("X-Helo-Args: mx.test\n"), "{m}");
    assert!(m.contains("X-Mail-Args: <alice@client.test>"), "{m}");
    assert!(m.contains("X-Rcpt-Args: <bob@example.test>\n"), "{m}");
    // smtp-sink stores lines with LF and dots unstuffed; exact wire bytes
    // are checked against the capture sink in the delivery tests.
    let ours = format!(
        "Received: from client.test ([127.0.0.1])\n\tby mx.test (mxguard) with ESMTP id {id}\n\tfor <bob@example.test>; "
    );
    let start = m
        .find(&ours)
        .unwrap_or_else(|| panic!("no Received header of ours in {m}"));
    let after = &m[start..];
    let end_of_received = after.find(" +0000\n").unwrap() + " +0000\n".len();
    assert_eq!(
        &after[end_of_received..],
        // swaks ends DATA with CRLF . CRLF after the body's own CRLF; the
        // sink adds one newline of its own.
        format!("{}\n\n", body.replace("\r\n", "\n")),
        "the message after our Received header must be the client's"
    );
    mx.wait_log(&["event=removed", &format!("queue_id={id}")]);
}

#[test]
fn swaks_relay_attempt_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), "[relay]\ndomains = [\"example.test\"]\n");
    let out = swaks(
        mx.addr,
        &[
            "--from",
            "spammer@client.test",
            "--to",
            "victim@elsewhere.test",
        ],
    );
    assert!(
        out.contains("<** 554 5.7.1 <victim@elsewhere.test>: Relay access denied"),
        "{out}"
    );
    let line = mx.wait_log(&["event=reject", "check=relay"]);
    assert!(
        line.contains(" stage=rcpt check=relay action=reject helo="),
        "{line}"
    );
    assert!(
        line.contains(" from=<spammer@client.test> to=<victim@elsewhere.test> reply=\"554 5.7.1"),
        "{line}"
    );
}

#[test]
fn embedded_default_delivers_to_maildir() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded default listens on 127.0.0.1:2525; only one test uses it.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .arg("serve")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the embedded default to listen", || {
        std::net::TcpStream::connect("127.0.0.1:2525").ok()
    });
    let out = swaks(
        "127.0.0.1:2525".parse().unwrap(),
        &["--to", "someone@localhost"],
    );
    let maildir = dir.path().join("mxguard-data/Maildir/new");
    let file = wait_for("a message in the Maildir", || {
        std::fs::read_dir(&maildir)
            .ok()?
            .flatten()
            .next()
            .map(|e| e.path())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("for <someone@localhost>;"), "{text}");
    assert!(text.contains("This is a test mailing"), "{text}");
}
