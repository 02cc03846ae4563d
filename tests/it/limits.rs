//! Every client-controlled limit: its reply, and its log line.

use crate::harness::*;

fn start(dir: &std::path::Path, limits: &str) -> Mxguard {
    Mxguard::start(
        dir,
        &format!("[relay]\ndomains = [\"example.test\"]\n[limits]\n{limits}\n"),
    )
}

#[tokio::test]
async fn long_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "");
    let mut c = Client::greet(mx.addr).await;
    let long = format!("NOOP {}", "x".repeat(600));
    assert_eq!(c.cmd(&long).await, "500 5.5.2 Error: line too long\r\n");
    assert_eq!(
        c.cmd("NOOP").await,
        "250 2.0.0 Ok\r\n",
        "the session goes on after the long line"
    );
    let exact = format!("NOOP {}", "x".repeat(505));
    assert_eq!(exact.len() + 2, 512);
    assert_eq!(c.cmd(&exact).await, "250 2.0.0 Ok\r\n");
    mx.wait_log(&[
        "event=reject",
        "check=line_length",
        "reply=\"500 5.5.2 Error: line too long\"",
    ]);
}

#[tokio::test]
async fn too_many_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "max_recipients = 2");
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(c.cmd("RCPT TO:<a@example.test>").await, "250 2.1.5 Ok\r\n");
    assert_eq!(c.cmd("RCPT TO:<b@example.test>").await, "250 2.1.5 Ok\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<c@example.test>").await,
        "452 4.5.3 Error: too many recipients\r\n"
    );
    mx.wait_log(&[
        "event=reject",
        "to=<c@example.test>",
        "check=max_recipients",
        "action=tempfail",
    ]);
}

#[tokio::test]
async fn message_size_by_size_parameter_and_by_data() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "max_message_size = 1000");
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test> SIZE=1001").await,
        "552 5.3.4 Message size exceeds fixed limit\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test> SIZE=999").await,
        "250 2.1.0 Ok\r\n"
    );
    c.cmd("RCPT TO:<a@example.test>").await;
    c.cmd("DATA").await;
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "y".repeat(2000));
    c.send(big.as_bytes()).await;
    assert_eq!(c.reply().await, "552 5.3.4 Error: message file too big\r\n");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    mx.wait_log_count(&["event=reject", "check=message_size"], 2);
    assert!(std::fs::read_dir(mx.spool().join("queue"))
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test]
async fn max_errors_closes_with_421() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "max_errors = 3");
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd(".").await,
        "502 5.5.2 Error: command not recognized\r\n"
    );
    assert_eq!(c.cmd("").await, "500 5.5.2 Error: bad syntax\r\n");
    c.send(b".\r\n").await;
    let rest = c.rest().await;
    assert_eq!(
        rest,
        "502 5.5.2 Error: command not recognized\r\n421 4.7.0 mx.test Error: too many errors\r\n"
    );
    mx.wait_log(&[
        "event=limit",
        "check=max_errors",
        "action=disconnect",
        "reply=\"421 4.7.0 mx.test Error: too many errors\"",
    ]);
}

#[tokio::test]
async fn max_commands_closes_with_421() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "max_commands = 3");
    let mut c = Client::greet(mx.addr).await;
    c.cmd("NOOP").await;
    c.cmd("NOOP").await;
    c.send(b"NOOP\r\n").await;
    assert_eq!(
        c.rest().await,
        "421 4.7.0 mx.test Error: too many commands\r\n"
    );
    mx.wait_log(&["event=limit", "check=max_commands"]);
}

#[tokio::test]
async fn command_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "command_timeout = \"1s\"");
    let mut c = Client::greet(mx.addr).await;
    // The client says nothing more; the server must end it.
    assert_eq!(
        c.rest().await,
        "421 4.4.2 mx.test Error: timeout exceeded\r\n"
    );
    mx.wait_log(&["event=limit", "check=timeout", "reply=\"421 4.4.2"]);
}

#[tokio::test]
async fn data_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "data_timeout = \"1s\"");
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    c.cmd("RCPT TO:<a@example.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: half a message\r\n").await;
    assert_eq!(
        c.rest().await,
        "421 4.4.2 mx.test Error: timeout exceeded\r\n"
    );
    mx.wait_log(&["event=limit", "check=data_timeout"]);
    assert!(std::fs::read_dir(mx.spool().join("queue"))
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test]
async fn connections_per_client_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(
        dir.path(),
        "max_connections_per_client = 2\nmax_connections = 3",
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect_from("127.0.0.1", mx.addr).await;
        assert!(c.reply().await.starts_with("220 mx.test ESMTP"));
        held.push(c);
    }
    let mut third = Client::connect_from("127.0.0.1", mx.addr).await;
    assert_eq!(
        third.rest().await,
        "421 4.7.0 mx.test Error: too many connections from 127.0.0.1\r\n"
    );
    mx.wait_log(&[
        "event=reject",
        "stage=connect",
        "check=max_connections_per_client",
    ]);

    let mut other = Client::connect_from("127.0.0.2", mx.addr).await;
    assert!(
        other.reply().await.starts_with("220 "),
        "another address is still welcome"
    );
    let mut fourth = Client::connect_from("127.0.0.3", mx.addr).await;
    assert_eq!(
        fourth.rest().await,
        "421 4.7.0 mx.test Error: too many connections\r\n"
    );
    mx.wait_log(&["event=reject", "stage=connect", "check=max_connections "]);

    // A closed connection frees its place.
    assert_eq!(held[0].cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    held.remove(0).rest().await;
    mx.wait_log(&["event=disconnect", "commands=1"]);
    let mut again = Client::connect_from("127.0.0.1", mx.addr).await;
    assert!(again.reply().await.starts_with("220 "));
}

#[tokio::test]
async fn sequence_errors_and_other_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "max_errors = 50");
    let mut c = Client::connect(mx.addr).await;
    c.reply().await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test>").await,
        "503 5.5.1 Error: send HELO/EHLO first\r\n"
    );
    assert_eq!(c.cmd("HELO client.test").await, "250 mx.test\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<a@example.test>").await,
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(
        c.cmd("DATA").await,
        "503 5.5.1 Error: need RCPT command\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").await, "250 2.1.0 Ok\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test>").await,
        "503 5.5.1 Error: nested MAIL command\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<not an address>").await,
        "501 5.1.3 Bad recipient address syntax\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<a@example.test> XTRACE=ON").await,
        "555 5.5.4 Unsupported option: XTRACE=ON\r\n"
    );
    assert_eq!(
        c.cmd("VRFY someone").await,
        "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    );
    assert_eq!(
        c.cmd("EXPN list").await,
        "502 5.5.1 Error: command not implemented\r\n"
    );
    assert_eq!(
        c.cmd("STARTTLS").await,
        "502 5.5.1 Error: command not implemented\r\n"
    );
    assert!(c.cmd("HELP").await.starts_with("214 2.0.0 "));
    assert_eq!(
        c.cmd("BDAT 10 LAST").await,
        "502 5.5.1 Error: command not implemented\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<bad address>").await,
        "501 5.1.7 Bad sender address syntax\r\n"
    );
    assert_eq!(
        c.cmd("QUIT now").await,
        "501 5.5.4 Syntax error: no parameters allowed\r\n"
    );
    let ehlo = c.cmd("EHLO client.test").await;
    assert_eq!(
        ehlo,
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 DSN\r\n"
    );
    // Pipelined commands are answered in order, in one go.
    c.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\nRSET\r\n").await;
    assert_eq!(c.reply().await, "250 2.1.0 Ok\r\n");
    assert_eq!(c.reply().await, "250 2.1.5 Ok\r\n");
    assert!(c.reply().await.starts_with("554 5.7.1 "));
    assert_eq!(c.reply().await, "250 2.0.0 Ok\r\n");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
}

#[tokio::test]
async fn recipients_over_the_limit_are_not_protocol_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "max_recipients = 100\nmax_errors = 10");
    let mut c = Client::greet(mx.addr).await;
    let mut batch = String::from("MAIL FROM:<a@client.test>\r\n");
    for i in 0..115 {
        batch.push_str(&format!("RCPT TO:<user{i}@example.test>\r\n"));
    }
    c.send(batch.as_bytes()).await;
    assert_eq!(c.reply().await, "250 2.1.0 Ok\r\n");
    for i in 0..115 {
        let expected = if i < 100 {
            "250 2.1.5 Ok\r\n"
        } else {
            "452 4.5.3 Error: too many recipients\r\n"
        };
        assert_eq!(c.reply().await, expected, "recipient {i}");
    }
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(b"Subject: many\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as"));
}

#[tokio::test]
async fn a_trickled_command_line_still_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "command_timeout = \"1s\"");
    let mut c = Client::greet(mx.addr).await;
    // One byte every 300 ms: each read is quick, the line never ends in
    // time. The loop is bounded; the server must cut it short.
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(300));
    for b in b"NOOP NOOP NOOP NOOP NOOP\r\n".iter() {
        ticker.tick().await;
        if !c.try_send(&[*b]).await {
            break;
        }
    }
    assert_eq!(
        c.rest().await,
        "421 4.4.2 mx.test Error: timeout exceeded\r\n"
    );
}

#[test]
fn ipv6_clients_are_capped_by_their_64() {
    const ONE_64: [&str; 3] = ["fd00:64:1:1::a", "fd00:64:1:1::b", "fd00:64:1:1::c"];
    const OTHER_64: &str = "fd00:64:1:2::a";
    const ADDRESSES: &[&str] = &[ONE_64[0], ONE_64[1], ONE_64[2], OTHER_64];
    in_network_namespace(ADDRESSES, || {
        let dir = tempfile::tempdir().unwrap();
        let mx = Mxguard::start_with(
            dir.path(),
            "listen = [\"[::1]:0\"]",
            "[relay]\ndomains = [\"example.test\"]\n[limits]\nmax_connections_per_client = 2\n",
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut held = Vec::new();
            for source in &ONE_64[..2] {
                let mut c = Client::connect_from(source, mx.addr).await;
                assert!(c.reply().await.starts_with("220 mx.test ESMTP"));
                held.push(c);
            }
            // A third address of the same /64 is the same client.
            let mut third = Client::connect_from(ONE_64[2], mx.addr).await;
            assert_eq!(
                third.rest().await,
                "421 4.7.0 mx.test Error: too many connections from fd00:64:1:1::/64\r\n"
            );
            mx.wait_log(&[
                "event=reject",
                "client=fd00:64:1:1::c",
                "check=max_connections_per_client",
            ]);
            let mut other = Client::connect_from(OTHER_64, mx.addr).await;
            assert!(
                other.reply().await.starts_with("220 "),
                "another /64 is welcome"
            );
        });
    });
}

#[tokio::test]
async fn improper_pipelining_is_refused_and_real_pipelining_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "");
    // After HELO, PIPELINING was never offered.
    let mut c = Client::connect(mx.addr).await;
    c.reply().await;
    assert!(c.cmd("HELO client.test").await.starts_with("250 mx.test"));
    c.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<a@example.test>\r\n")
        .await;
    assert_eq!(
        c.rest().await,
        "554 5.5.0 Error: improper command pipelining after MAIL\r\n"
    );
    mx.wait_log(&[
        "event=reject",
        "stage=command",
        "check=pipelining",
        "reply=\"554 5.5.0 Error: improper command pipelining after MAIL\"",
    ]);

    // A whole transaction blasted with EHLO, before its reply.
    let mut c = Client::connect(mx.addr).await;
    c.reply().await;
    c.send(b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n")
        .await;
    assert_eq!(
        c.rest().await,
        "554 5.5.0 Error: improper command pipelining after EHLO\r\n"
    );

    // Message content sent with DATA, before the 354.
    let mut c = Client::greet(mx.addr).await;
    c.send(
        b"MAIL FROM:<a@client.test>\r\nRCPT TO:<a@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n",
    )
    .await;
    assert_eq!(
        c.rest().await,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.5.0 Error: improper command pipelining after DATA\r\n"
    );
    assert!(std::fs::read_dir(mx.spool().join("queue"))
        .unwrap()
        .next()
        .is_none());

    // After EHLO, a pipelined transaction is what RFC 2920 allows.
    let mut c = Client::greet(mx.addr).await;
    c.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        .await;
    for expected in ["250 2.1.0 Ok\r\n", "250 2.1.5 Ok\r\n", "250 2.1.5 Ok\r\n"] {
        assert_eq!(c.reply().await, expected);
    }
    assert!(c.reply().await.starts_with("354 "));
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as"));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
}

#[tokio::test]
async fn improper_pipelining_counts_toward_a_ban() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        "[relay]\ndomains = [\"example.test\"]\n[ban]\nmax_retry = 2\n",
    );
    for _ in 0..2 {
        let mut c = Client::connect_from("127.0.0.77", mx.addr).await;
        c.reply().await;
        c.send(b"EHLO bot.test\r\nMAIL FROM:<a@bot.test>\r\n").await;
        assert!(c.rest().await.starts_with("554 5.5.0"));
    }
    mx.wait_log(&["event=ban", "client=127.0.0.77", "reason=pipelining"]);
    let mut c = Client::connect_from("127.0.0.77", mx.addr).await;
    assert!(c.reply().await.starts_with("421 4.7.0"));
}

#[tokio::test]
async fn a_session_has_a_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(
        dir.path(),
        "session_timeout = \"1s\"\ncommand_timeout = \"1h\"\ndata_timeout = \"1h\"",
    );
    // Waiting for a command: the session's end comes first.
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.rest().await,
        "421 4.4.2 mx.test Error: session lasted too long\r\n"
    );
    mx.wait_log(&["event=limit", "check=session_timeout", "action=disconnect"]);
    // Inside DATA too; nothing is queued.
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    c.cmd("RCPT TO:<a@example.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: never finished\r\n").await;
    assert_eq!(
        c.rest().await,
        "421 4.4.2 mx.test Error: session lasted too long\r\n"
    );
    assert!(std::fs::read_dir(mx.spool().join("queue"))
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test]
async fn greetings_are_printable_ascii() {
    let dir = tempfile::tempdir().unwrap();
    let mx = start(dir.path(), "");
    let mut c = Client::connect(mx.addr).await;
    c.reply().await;
    assert_eq!(
        c.cmd("EHLO h\u{e9}las.test").await,
        "501 5.5.4 Syntax: EHLO hostname\r\n"
    );
    assert!(c.cmd("EHLO helas.test").await.starts_with("250-mx.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_senders_cannot_grow_the_state_without_bound() {
    const SENDERS: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let mut mx = start(
        dir.path(),
        "sender_messages_per_hour = 5\nmax_commands = 100000\n[state]\nmax_entries = 500",
    );
    let mut c = Client::greet(mx.addr).await;
    // Warm up, so the allocator's first growth is not counted.
    let batch = |from: usize, to: usize| {
        (from..to)
            .map(|i| format!("MAIL FROM:<random-{i}@flood.test>\r\nRSET\r\n"))
            .collect::<String>()
    };
    for (from, to) in [(0, 1000), (1000, SENDERS)] {
        if from == 1000 {
            c.cmd("NOOP").await;
        }
        let before = mx.memory_kb("VmRSS");
        for chunk_start in (from..to).step_by(500) {
            c.send(batch(chunk_start, (chunk_start + 500).min(to)).as_bytes())
                .await;
            for _ in chunk_start..(chunk_start + 500).min(to) {
                assert_eq!(c.reply().await, "250 2.1.0 Ok\r\n");
                assert_eq!(c.reply().await, "250 2.0.0 Ok\r\n");
            }
        }
        if from == 1000 {
            let grown = mx.memory_kb("VmRSS").saturating_sub(before);
            assert!(
                grown < 4096,
                "{SENDERS} random senders grew the process by {grown} kB"
            );
        }
    }
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    mx.terminate();
    // Rate counters are not saved: the flood left nothing to write.
    let state = std::fs::read_to_string(mx.spool().join("state")).unwrap_or_default();
    assert!(!state.contains("rate:"), "{} bytes of state", state.len());
}
