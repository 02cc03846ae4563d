//! What a message's content can make mxguard do: a forged verdict in our
//! name never reaches the mailbox, however it is written or wherever in
//! the header block; a header block over the cap is refused; lines over
//! 998 octets are wrapped (nothing cut) or refused, and the downstream
//! never sees one.

use crate::harness::*;

/// Sends one message (DATA content without the final dot) and returns the
/// reply to it.
async fn send(mx: &Mxguard, content: &[u8]) -> String {
    let mut c = Client::at_data(mx.addr).await;
    c.send(content).await;
    c.send(b".\r\n").await;
    let reply = c.reply().await;
    c.cmd("QUIT").await;
    reply
}

fn maildir_config(dir: &std::path::Path) -> String {
    format!(
        "[relay]\ndomains = [\"example.test\"]\n[downstream]\ntargets = [\"maildir:{}\"]\n",
        dir.join("Maildir").display()
    )
}

/// The messages in the Maildir, waiting for `count` of them.
fn delivered(dir: &std::path::Path, count: usize) -> Vec<Vec<u8>> {
    let new = dir.join("Maildir/new");
    wait_for(&format!("{count} messages in the Maildir"), || {
        let mut files: Vec<_> = std::fs::read_dir(&new)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        (files.len() >= count).then(|| files.iter().map(|p| std::fs::read(p).unwrap()).collect())
    })
}

fn header_block(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.split_once("\r\n\r\n")
        .map_or(text.to_string(), |(h, _)| h.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_verdicts_in_our_name_never_reach_the_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &maildir_config(dir.path()));
    let forgeries = [
        "Authentication-Results: mx.test; dkim=pass header.d=bank.test\r\n",
        "Authentication-Results:\r\n mx.test; dkim=pass header.d=bank.test\r\n",
        "Authentication-Results: (x) mx.test; dkim=pass header.d=bank.test\r\n",
        "Authentication-Results: \"mx.test\"; dkim=pass header.d=bank.test\r\n",
        "Authentication-Results: mx.test.; dkim=pass header.d=bank.test\r\n",
        "AUTHENTICATION-RESULTS: MX.Test; dkim=pass header.d=bank.test\r\n",
        "Authentication-Results : mx.test 1;\r\n\tdkim=pass header.d=bank.test\r\n",
        "Authentication-Results: ; mx.test dkim=pass header.d=bank.test\r\n",
    ];
    // The last one after 300 KiB of other headers (more than one DATA piece).
    let padding = format!("X-Pad: {}\r\n", "p".repeat(900)).repeat(340);
    for (i, forged) in forgeries.iter().enumerate() {
        let pad = if i == forgeries.len() - 1 {
            padding.as_str()
        } else {
            ""
        };
        let message = format!(
            "From: <a@client.test>\r\n{pad}{forged}Authentication-Results: other.test; spf=pass\r\nSubject: {i}\r\n\r\nAuthentication-Results: mx.test; the body is left alone\r\n"
        );
        let reply = send(&mx, message.as_bytes()).await;
        assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{i}: {reply}");
    }
    let messages = delivered(dir.path(), forgeries.len());
    for message in &messages {
        let headers = header_block(message);
        let text = String::from_utf8_lossy(message);
        assert!(!headers.contains("bank.test"), "{headers}");
        let ours = headers
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("authentication-results"))
            .collect::<Vec<_>>();
        assert_eq!(
            ours,
            ["Authentication-Results: other.test; spf=pass"],
            "{headers}"
        );
        assert!(
            text.ends_with("\r\n\r\nAuthentication-Results: mx.test; the body is left alone\r\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_over_the_cap_is_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "{}[limits]\nmax_header_size = 65536\n",
            maildir_config(dir.path())
        ),
    );
    let message = format!(
        "From: <a@client.test>\r\n{}Subject: big\r\n\r\nbody\r\n",
        format!("X-Pad: {}\r\n", "p".repeat(900)).repeat(80)
    );
    let reply = send(&mx, message.as_bytes()).await;
    assert_eq!(
        reply,
        "552 5.3.4 Error: message header size exceeds limit\r\n"
    );
    mx.wait_log(&[
        "event=reject",
        "stage=data",
        "check=max_header_size",
        "action=reject",
    ]);
    // Under the cap, the same client is served.
    let small = b"From: <a@client.test>\r\nSubject: small\r\n\r\nbody\r\n";
    assert!(send(&mx, small).await.starts_with("250 2.0.0"));
    let messages = delivered(dir.path(), 1);
    assert!(String::from_utf8_lossy(&messages[0]).contains("Subject: small"));
    // Nothing of the refused message is left: what tmp/ holds is the
    // delivered message's file, kept emptied for reuse once it is removed.
    mx.wait_log(&["event=removed"]);
    let left: Vec<(std::path::PathBuf, u64)> = std::fs::read_dir(mx.spool().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::metadata(&p).unwrap().len()))
        .filter(|(_, len)| *len > 0)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn longest_line(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_reach_the_downstream_wrapped_with_nothing_cut() {
    let sink = CaptureSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &relay_to(sink.addr.port()));
    let body_line = "0123456789".repeat(500);
    let subject = "word ".repeat(600);
    let message =
        format!("From: <a@client.test>\r\nSubject: {subject}\r\n\r\n{body_line}\r\nend\r\n");
    let reply = send(&mx, message.as_bytes()).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    mx.wait_log(&["event=accept", "wrapped="]);
    mx.wait_log(&["event=delivery", "status=sent"]);
    let raw = sink.captured()[0].raw.clone();
    // 998 octets and the CR at most before each LF, on the wire.
    assert!(longest_line(&raw) <= 999, "{}", longest_line(&raw));
    let text = String::from_utf8(raw).unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(headers
        .replace("\r\n ", " ")
        .contains(&format!("Subject: {subject}")));
    assert_eq!(body.replace("\r\n", ""), format!("{body_line}end"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_can_be_refused_instead() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "{}[limits]\nlong_lines = \"reject\"\n",
            maildir_config(dir.path())
        ),
    );
    let message = format!("From: <a@client.test>\r\n\r\n{}\r\n", "x".repeat(5000));
    let reply = send(&mx, message.as_bytes()).await;
    assert_eq!(
        reply,
        "500 5.5.2 Error: message line longer than 998 octets\r\n"
    );
    mx.wait_log(&["event=reject", "stage=data", "check=long_lines"]);
    let exact = format!("From: <a@client.test>\r\n\r\n{}\r\n", "x".repeat(998));
    assert!(send(&mx, exact.as_bytes()).await.starts_with("250 2.0.0"));
    let messages = delivered(dir.path(), 1);
    assert!(messages[0].ends_with(format!("\r\n\r\n{}\r\n", "x".repeat(998)).as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cannot_extend_our_headers_nor_hide_a_header_from_us() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &maildir_config(dir.path()));
    // A folded first line would continue our Received: header.
    let folded = b" ; dkim=pass header.d=bank.test\r\nFrom: <a@bank.test>\r\n\r\nhi\r\n";
    // A line that is no header (`X Bad`) before a forged verdict: readers
    // that take it for a header read on.
    let hidden = b"Subject: x\r\nX Bad: y\r\nAuthentication-Results: mx.test; dkim=pass header.d=bank.test\r\n\r\nhi\r\n";
    for message in [&folded[..], &hidden[..]] {
        assert!(send(&mx, message).await.starts_with("250 2.0.0"));
    }
    for message in delivered(dir.path(), 2) {
        let headers = header_block(&message);
        assert!(!headers.contains("bank.test"), "{headers}");
        // Our own headers end where they should: at an empty line.
        assert!(
            headers.starts_with("Received: from client.test"),
            "{headers}"
        );
    }
}
