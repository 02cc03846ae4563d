//! Content filters (`[[milter]]`) with a scripted filter: every reply the
//! protocol has, honoured at its stage before our reply (a refused
//! recipient alone, a refused message before the 250), each modification
//! seen in the bytes that reach the downstream, a discard and a quarantine
//! taken without a bounce, a filter that is down, full or hangs getting its
//! `default_action`, a 20 MB message streamed in chunks with memory
//! bounded. The real filters are tested in `filters`.

use crate::fake_milter::{cont, reply_code, z, Answer, FakeMilter, Step};
use crate::harness::*;

fn config(sink: &CaptureSink, milters: &str) -> String {
    format!(
        "{}[limits]\nmax_message_size = 26214400\n{milters}",
        relay_to(sink.addr.port())
    )
}

fn milter(address: &str, extra: &str) -> String {
    format!("[[milter]]\nname = \"fake\"\naddress = \"{address}\"\n{extra}")
}

/// A capture sink as the downstream, the scripted filter, and mxguard
/// asking it with the `[[milter]]` settings `extra`.
async fn with_filter(
    script: impl Fn(&Step, &[Step]) -> Answer + Send + Sync + 'static,
    extra: &str,
) -> (CaptureSink, FakeMilter, tempfile::TempDir, Mxguard) {
    let sink = CaptureSink::start().await;
    let fake = FakeMilter::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &config(&sink, &milter(&fake.address(), extra)));
    (sink, fake, dir, mx)
}

/// One transaction: the replies to MAIL, each RCPT, DATA and the message.
async fn transaction(mx: &Mxguard, rcpts: &[&str], content: &str) -> Vec<String> {
    let mut c = Client::greet(mx.addr).await;
    let mut replies = vec![c.cmd("MAIL FROM:<a@client.test>").await];
    for rcpt in rcpts {
        replies.push(c.cmd(&format!("RCPT TO:<{rcpt}>")).await);
    }
    let data = c.cmd("DATA").await;
    let go = data.starts_with("354");
    replies.push(data);
    if go {
        c.send(content.as_bytes()).await;
        c.send(b".\r\n").await;
        replies.push(c.reply().await);
    }
    c.cmd("QUIT").await;
    replies.iter().map(|r| r.trim_end().to_string()).collect()
}

const MESSAGE: &str = "From: <a@client.test>\r\nSubject: hello\r\nX-Old: one\r\n\r\nbody line\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_is_refused_alone_with_the_filters_words() {
    let (sink, fake, _dir, mx) = with_filter(
        |step, _| match step {
            Step::Rcpt(args) if args[0] == "<bad@example.test>" => {
                Answer::Send(vec![reply_code("550 5.7.1 not this one")])
            }
            _ => cont(),
        },
        "",
    )
    .await;
    let replies = transaction(&mx, &["bad@example.test", "good@example.test"], MESSAGE).await;
    assert_eq!(replies[1], "550 5.7.1 not this one");
    assert!(replies[2].starts_with("250 2.1.5"), "{replies:?}");
    assert!(
        replies[4].starts_with("250 2.0.0 Ok: queued as"),
        "{replies:?}"
    );
    mx.wait_log(&["event=reject", "check=milter:fake", "to=<bad@example.test>"]);
    mx.wait_log(&["event=delivery", "status=sent"]);
    assert_eq!(sink.captured()[0].rcpts, vec!["good@example.test"]);
    // The filter was told of the connection, HELO, MAIL and each RCPT, with
    // the macros of each stage.
    let steps = &fake.steps()[0];
    let macros = |stage| {
        steps.iter().find_map(|s| match s {
            Step::Macros(c, pairs) if *c == stage => Some(pairs.clone()),
            _ => None,
        })
    };
    let connect = macros('C').unwrap();
    assert!(connect.contains(&("{client_addr}".into(), "127.0.0.1".into())));
    assert!(connect.contains(&("j".into(), "mx.test".into())));
    assert!(connect
        .iter()
        .any(|(k, v)| k == "{client_port}" && v != "0"));
    let mail = macros('M').unwrap();
    assert!(mail.contains(&("{mail_addr}".into(), "a@client.test".into())));
    assert!(steps.contains(&Step::Helo("client.test".into())));
    assert!(steps.contains(&Step::Mail(vec!["<a@client.test>".into()])));
    let id = replies[4].rsplit(' ').next().unwrap().to_string();
    assert_eq!(macros('E').unwrap(), vec![("i".into(), id)]);
    assert!(steps.contains(&Step::Header("Subject".into(), "hello".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_by_a_filter_is_refused_before_the_250() {
    let (_sink, _fake, _dir, mx) = with_filter(
        |step, _| match step {
            Step::EndOfMessage => Answer::Send(vec![reply_code("554 5.7.1 Gtube pattern")]),
            _ => cont(),
        },
        "",
    )
    .await;
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert_eq!(replies[3], "554 5.7.1 Gtube pattern");
    let line = mx.wait_log(&["event=reject", "stage=data", "check=milter:fake"]);
    assert!(line.contains("reply=\"554 5.7.1 Gtube pattern\""), "{line}");
    mx.wait_log(&["event=milter", "milter=fake", "action=reject", "elapsed="]);
    assert!(files_in(&mx.spool().join("queue")).is_empty());
    assert!(files_in(&mx.spool().join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_and_reject_at_data_and_mail_are_heard_at_that_command() {
    let (_sink, _fake, _dir, mx) = with_filter(
        |step, _| match step {
            Step::Mail(args) if args[0] == "<a@client.test>" => cont(),
            Step::Mail(_) => Answer::Send(vec![(b'r', vec![])]),
            Step::Data => Answer::Send(vec![(b't', vec![])]),
            _ => cont(),
        },
        "",
    )
    .await;
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert_eq!(
        replies[2],
        "451 4.7.1 Service unavailable - try again later"
    );
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<other@client.test>").await.trim_end(),
        "550 5.7.1 Command rejected"
    );
    c.cmd("QUIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_refuses_the_helo_refuses_every_mail_of_the_session() {
    let (_sink, fake, _dir, mx) = with_filter(
        |step, _| match step {
            Step::Helo(_) => Answer::Send(vec![reply_code("554 5.7.1 go away")]),
            _ => cont(),
        },
        "",
    )
    .await;
    let mut c = Client::greet(mx.addr).await;
    for _ in 0..2 {
        let reply = c.cmd("MAIL FROM:<a@client.test>").await;
        assert_eq!(reply.trim_end(), "554 5.7.1 go away");
    }
    c.cmd("QUIT").await;
    // Asked once: the connection and HELO were not told again.
    let steps = fake.steps();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(
        !steps[0].iter().any(|s| matches!(s, Step::Mail(_))),
        "{steps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rset_aborts_the_filters_transaction_and_quit_ends_its_session() {
    let (_sink, fake, _dir, mx) = with_filter(|_, _| cont(), "").await;
    let mut c = Client::greet(mx.addr).await;
    assert!(c.cmd("MAIL FROM:<a@client.test>").await.starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<user@example.test>")
        .await
        .starts_with("250"));
    assert!(c.cmd("RSET").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<b@client.test>").await.starts_with("250"));
    c.cmd("QUIT").await;
    wait_for("the filter to hear QUIT", || {
        fake.steps()[0].contains(&Step::Quit).then_some(())
    });
    let steps: Vec<Step> = (fake.steps().remove(0).into_iter())
        .filter(|s| !matches!(s, Step::Macros(..)))
        .collect();
    assert_eq!(
        steps,
        vec![
            Step::Connect("[127.0.0.1]".into()),
            Step::Helo("client.test".into()),
            Step::Mail(vec!["<a@client.test>".into()]),
            Step::Rcpt(vec!["<user@example.test>".into()]),
            Step::Abort,
            Step::Mail(vec!["<b@client.test>".into()]),
            Step::Abort,
            Step::Quit,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_modification_reaches_the_downstream() {
    let (sink, _fake, _dir, mx) = with_filter(
        |step, _| match step {
            Step::EndOfMessage => {
                let mut change = 1u32.to_be_bytes().to_vec();
                change.extend(z("X-Old"));
                change.extend(z("two"));
                let mut insert = 0u32.to_be_bytes().to_vec();
                insert.extend(z("X-First"));
                insert.extend(z("top"));
                let mut add = z("X-Added");
                add.extend(z("yes"));
                Answer::Send(vec![
                    (b'h', add),
                    (b'm', change),
                    (b'i', insert),
                    (b'e', z("<new@client.test>")),
                    (b'+', z("<added@example.test>")),
                    (b'-', z("<user@example.test>")),
                    (b'b', b"new body\r\n".to_vec()),
                    (b'p', vec![]),
                    (b'a', vec![]),
                ])
            }
            _ => cont(),
        },
        "",
    )
    .await;
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert!(
        replies[3].starts_with("250 2.0.0 Ok: queued as"),
        "{replies:?}"
    );
    mx.wait_log(&["event=delivery", "status=sent"]);
    let got = &sink.captured()[0];
    assert_eq!(got.from, "MAIL FROM:<new@client.test>");
    assert_eq!(got.rcpts, vec!["added@example.test"]);
    let raw = String::from_utf8_lossy(&got.raw).into_owned();
    let (header, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(header.starts_with("X-First: top\r\nReceived: "), "{header}");
    assert!(header.contains("\r\nX-Old: two\r\n"), "{header}");
    assert!(!header.contains("X-Old: one"), "{header}");
    assert!(header.ends_with("\r\nX-Added: yes"), "{header}");
    assert_eq!(body, "new body\r\n");
    mx.wait_log(&["event=milter", "action=accept", "changes=7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_message_is_taken_and_dropped_and_a_quarantined_one_kept() {
    let (sink, _fake, _dir, mx) = with_filter(
        |step, seen| match step {
            Step::EndOfMessage
                if seen.contains(&Step::Header("Subject".into(), "drop me".into())) =>
            {
                Answer::Send(vec![(b'd', vec![])])
            }
            Step::EndOfMessage => {
                Answer::Send(vec![(b'q', z("looks like a virus")), (b'c', vec![])])
            }
            _ => cont(),
        },
        "",
    )
    .await;
    let dropped = MESSAGE.replace("hello", "drop me");
    let replies = transaction(&mx, &["user@example.test"], &dropped).await;
    assert!(
        replies[3].starts_with("250 2.0.0 Ok: queued as"),
        "{replies:?}"
    );
    mx.wait_log(&["event=discard", "milter=fake"]);
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert!(
        replies[3].starts_with("250 2.0.0 Ok: queued as"),
        "{replies:?}"
    );
    let id = replies[3].rsplit(' ').next().unwrap().to_string();
    mx.wait_log(&[
        "event=quarantine",
        &format!("queue_id={id}"),
        "reason=\"milter fake: looks like a virus\"",
    ]);
    let quarantined = mx.spool().join("quarantine").join(&id);
    let kept = std::fs::read_to_string(&quarantined).unwrap();
    assert!(kept.ends_with("\r\nbody line\r\n"), "{kept}");
    let state = std::fs::read_to_string(mx.spool().join(format!("quarantine/{id}.state"))).unwrap();
    assert!(state.contains("milter fake: looks like a virus"), "{state}");
    assert!(files_in(&mx.spool().join("queue")).is_empty());
    assert!(sink.captured().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_is_down_gets_its_default_action() {
    let sink = CaptureSink::start().await;
    let down = format!("inet:127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &config(&sink, &milter(&down, "")));
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert!(
        replies[3].starts_with("250 2.0.0 Ok: queued as"),
        "{replies:?}"
    );
    mx.wait_log(&[
        "event=milter",
        "milter=fake",
        "action=default_accept",
        "error=",
    ]);
    mx.wait_log(&["event=delivery", "status=sent"]);

    let dir = tempfile::tempdir().unwrap();
    let extra = "default_action = \"tempfail\"\n";
    let mx = Mxguard::start(dir.path(), &config(&sink, &milter(&down, extra)));
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.test>").await.trim_end(),
        "451 4.7.1 Service unavailable - try again later"
    );
    c.cmd("QUIT").await;
    mx.wait_log(&[
        "event=reject",
        "stage=mail",
        "check=milter:fake",
        "action=tempfail",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_max_sessions_gets_the_default_action() {
    let extra = "default_action = \"reject\"\nmax_sessions = 1\n";
    let (_sink, _fake, _dir, mx) = with_filter(|_, _| cont(), extra).await;
    let mut first = Client::greet(mx.addr).await;
    assert!(first
        .cmd("MAIL FROM:<a@client.test>")
        .await
        .starts_with("250"));
    let mut second = Client::greet(mx.addr).await;
    assert_eq!(
        second.cmd("MAIL FROM:<a@client.test>").await.trim_end(),
        "550 5.7.1 Command rejected"
    );
    mx.wait_log(&["event=milter", "error=\"over milter.max_sessions\""]);
    // The first session's end frees its slot.
    first.cmd("QUIT").await;
    second.cmd("RSET").await;
    wait_for("the slot to be free", || {
        mx.log_lines()
            .iter()
            .any(|l| l.contains("event=disconnect") && l.contains("accepted=0"))
            .then_some(())
    });
    assert!(second
        .cmd("MAIL FROM:<a@client.test>")
        .await
        .starts_with("250"));
    second.cmd("QUIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_filter_holds_only_its_own_session_until_content_timeout() {
    let extra = "content_timeout = \"3s\"\n";
    let (_sink, fake, _dir, mx) = with_filter(
        |step, seen| match step {
            Step::EndOfMessage if seen.contains(&Step::Header("Subject".into(), "slow".into())) => {
                Answer::Hang
            }
            _ => cont(),
        },
        extra,
    )
    .await;
    let mut slow = Client::at_data(mx.addr).await;
    slow.send(MESSAGE.replace("hello", "slow").as_bytes()).await;
    slow.send(b".\r\n").await;
    wait_for("the filter to hang", || {
        (fake.steps().iter())
            .any(|s| s.contains(&Step::EndOfMessage))
            .then_some(())
    });
    // Meanwhile another session's message goes through.
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert!(
        replies[3].starts_with("250 2.0.0 Ok: queued as"),
        "{replies:?}"
    );
    assert!(
        !mx.log_lines()
            .iter()
            .any(|l| l.contains("action=default_accept")),
        "the hung filter timed out before the other session was done"
    );
    // Then the hung one gets the default action (accept).
    let reply = slow.reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    let line = mx.wait_log(&[
        "event=milter",
        "action=default_accept",
        "stage=end_of_message",
    ]);
    assert!(line.contains("error="), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_message_is_streamed_to_the_filter_in_chunks_with_memory_bounded() {
    let (_sink, fake, _dir, mx) = with_filter(|_, _| cont(), "").await;
    let before = mx.memory_kb("VmHWM");
    let line = format!("{}\r\n", "x".repeat(998));
    let body = line.repeat(20 * 1024 * 1024 / line.len());
    let mut c = Client::at_data(mx.addr).await;
    c.send(b"Subject: big\r\n\r\n").await;
    c.send(body.as_bytes()).await;
    c.send(b".\r\n").await;
    let reply = c.reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    c.cmd("QUIT").await;
    let steps = &fake.steps()[0];
    let chunks: Vec<usize> = (steps.iter())
        .filter_map(|s| match s {
            Step::Body(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert!(
        chunks.iter().all(|n| *n <= 65535),
        "{:?}",
        chunks.iter().max()
    );
    assert_eq!(chunks.iter().sum::<usize>(), body.len());
    let grown = mx.memory_kb("VmHWM").saturating_sub(before);
    assert!(grown < 12 * 1024, "peak memory grew by {grown} kB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_filters_for_new_sessions() {
    let sink = CaptureSink::start().await;
    let fake = FakeMilter::start(|step, _| match step {
        Step::EndOfMessage => Answer::Send(vec![reply_code("554 5.7.1 filtered")]),
        _ => cont(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), &config(&sink, ""));
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert!(replies[3].starts_with("250 2.0.0"), "{replies:?}");

    mx.rewrite_config("", &config(&sink, &milter(&fake.address(), "")));
    mx.signal(libc::SIGHUP);
    mx.wait_log(&["event=reload", "status=ok"]);
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert_eq!(replies[3], "554 5.7.1 filtered");
    // mxguard check says what it cannot judge.
    let check = mx.cli(&["check", "--client", "127.0.0.1", "--from", "a@client.test"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("not judged: the content filters ([[milter]])"),
        "{out}"
    );

    mx.rewrite_config("", &config(&sink, ""));
    mx.signal(libc::SIGHUP);
    mx.wait_log_count(&["event=reload", "status=ok"], 2);
    let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
    assert!(replies[3].starts_with("250 2.0.0"), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_sees_only_the_stages_its_content_setting_names() {
    for (content, headers, body) in [
        ("whole", true, true),
        ("headers", true, false),
        ("envelope", false, false),
    ] {
        let extra = format!("content = \"{content}\"\n");
        let (_sink, fake, _dir, mx) = with_filter(|_, _| cont(), &extra).await;
        let replies = transaction(&mx, &["user@example.test"], MESSAGE).await;
        assert!(
            replies[3].starts_with("250 2.0.0"),
            "{content}: {replies:?}"
        );
        let steps = fake.steps().remove(0);
        let saw = |f: fn(&Step) -> bool| steps.iter().any(f);
        assert!(saw(|s| matches!(s, Step::Rcpt(_))), "{content}: {steps:?}");
        assert_eq!(
            saw(|s| matches!(s, Step::Header(..))),
            headers,
            "{content}: {steps:?}"
        );
        assert_eq!(
            saw(|s| matches!(s, Step::Body(_))),
            body,
            "{content}: {steps:?}"
        );
        assert!(saw(|s| *s == Step::EndOfMessage), "{content}: {steps:?}");
    }
}
