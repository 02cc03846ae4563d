//! SMTP smuggling: a DATA stream with a fake end of data (`<LF>.<LF>`,
//! `<CR>.<CR>`, `<LF>.<CR><LF>`) followed by a second transaction. The
//! downstream receives one message or none, never two.

use crate::harness::*;

const FAKE_ENDS: &[&str] = &["\n.\n", "\r.\r", "\n.\r\n"];

fn smuggling_payload(fake_end: &str) -> String {
    format!(
        "Subject: first\r\n\r\nhello{fake_end}MAIL FROM:<ceo@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire money\r\n.\r\n"
    )
}

/// Sends the payload, then a clean sentinel message; returns the replies.
async fn run(mx: &Mxguard, fake_end: &str) -> (String, String) {
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<sender@client.test>").await;
    c.cmd("RCPT TO:<victim@example.test>").await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(smuggling_payload(fake_end).as_bytes()).await;
    let verdict = c.reply().await;
    // Nothing the client smuggled may be taken as a command: the next reply
    // answers our NOOP.
    let after = c.cmd("NOOP").await;
    assert_eq!(after, "250 2.0.0 Ok\r\n", "after {fake_end:?}");
    c.cmd("MAIL FROM:<sentinel@client.test>").await;
    c.cmd("RCPT TO:<victim@example.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: sentinel\r\n\r\nend\r\n.\r\n").await;
    let sentinel = c.reply().await;
    assert!(
        sentinel.starts_with("250 2.0.0 Ok: queued as"),
        "{sentinel}"
    );
    c.cmd("QUIT").await;
    (verdict, sentinel)
}

fn setup(dir: &std::path::Path, mode: &str) -> (Sink, Mxguard) {
    let sink = Sink::start(&dir.join("sink"), free_port(), &[]);
    let mx = Mxguard::start_with(
        dir,
        &format!("bare_line_endings = \"{mode}\""),
        &relay_to(sink.port),
    );
    (sink, mx)
}

#[tokio::test]
async fn bare_line_endings_refused_nothing_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, mx) = setup(dir.path(), "reject");
    for (i, fake_end) in FAKE_ENDS.iter().enumerate() {
        let (verdict, _) = run(&mx, fake_end).await;
        assert_eq!(verdict, "550 5.5.2 Error: bare <CR> or <LF> received\r\n");
        mx.wait_log_count(&["event=delivery", "status=sent"], i + 1);
    }
    mx.wait_log_count(
        &["check=bare_line_ending", "action=reject"],
        FAKE_ENDS.len(),
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), FAKE_ENDS.len(), "only the sentinels arrive");
    assert!(messages
        .iter()
        .all(|m| m.contains("Subject: sentinel") && !m.contains("smuggled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalized_bare_line_endings_make_one_clean_message() {
    let dir = tempfile::tempdir().unwrap();
    let sink = CaptureSink::start().await;
    let mx = Mxguard::start_with(
        dir.path(),
        "bare_line_endings = \"normalize\"",
        &relay_to(sink.addr.port()),
    );
    for (i, fake_end) in FAKE_ENDS.iter().enumerate() {
        let (verdict, _) = run(&mx, fake_end).await;
        assert!(verdict.starts_with("250 2.0.0 Ok: queued as"), "{verdict}");
        mx.wait_log_count(&["event=delivery", "status=sent"], 2 * (i + 1));
    }
    let messages = sink.captured();
    assert_eq!(
        messages.len(),
        2 * FAKE_ENDS.len(),
        "one message per payload, plus sentinels"
    );
    let smuggling: Vec<&Captured> = messages
        .iter()
        .filter(|m| m.raw.windows(14).any(|w| w == b"Subject: first"))
        .collect();
    assert_eq!(smuggling.len(), FAKE_ENDS.len());
    for m in smuggling {
        let raw = String::from_utf8_lossy(&m.raw);
        // The would-be second transaction is body text of the first, and
        // the fake end is a dot-stuffed line between clean CRLFs.
        assert!(
            raw.contains("hello\r\n..\r\nMAIL FROM:<ceo@example.test>\r\n"),
            "{raw:?}"
        );
        assert!(raw.contains("Subject: smuggled\r\n"), "{raw:?}");
        let bytes = &m.raw;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' => assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}: {raw:?}"),
                b'\r' => assert!(bytes.get(i + 1) == Some(&b'\n'), "bare CR at {i}: {raw:?}"),
                _ => {}
            }
        }
    }
}
