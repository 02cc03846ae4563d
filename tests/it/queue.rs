//! `mxguard queue list | show | delete | flush` against a real spool.

use crate::harness::*;

#[test]
fn queue_commands() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mx = Mxguard::start(dir.path(), &relay_to(port));
    for subject in ["keep me", "delete me"] {
        let out = swaks(
            mx.addr,
            &[
                "--from",
                "a@client.test",
                "--to",
                "b@example.test",
                "--header",
                &format!("Subject: {subject}"),
            ],
        );
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    }
    mx.wait_log_count(&["event=delivery", "status=deferred"], 2);
    let ids: Vec<String> = mx
        .log_lines()
        .iter()
        .filter(|l| l.contains("event=accept"))
        .map(|l| {
            l.split("queue_id=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let list = String::from_utf8(mx.cli(&["queue", "list"]).stdout).unwrap();
    for id in &ids {
        assert!(list.contains(id.as_str()), "{list}");
    }
    assert!(list.contains("<a@client.test>"), "{list}");
    assert!(list.contains("attempts: 1"), "{list}");

    // The delivery line is logged as the attempt's state is saved: wait
    // for the file rather than race it.
    let show = wait_for("the attempt in the state file", || {
        let show = mx.cli(&["queue", "show", &ids[1]]);
        assert!(show.status.success());
        let show = String::from_utf8(show.stdout).unwrap();
        show.contains("-- delivery state\nattempts: 1\n")
            .then_some(show)
    });
    assert!(show.starts_with("mxguard-queue-file 1\n"), "{show}");
    assert!(show.contains("rcpt: b@example.test\n"), "{show}");
    assert!(show.contains("-- delivery state\nattempts: 1\n"), "{show}");
    assert!(show.contains("-- message\nReceived: from "), "{show}");
    assert!(show.contains("Subject: delete me"), "{show}");

    let delete = mx.cli(&["queue", "delete", &ids[1]]);
    assert!(delete.status.success());
    assert_eq!(
        String::from_utf8_lossy(&delete.stdout),
        format!("{}: deleted\n", ids[1])
    );
    let list = String::from_utf8(mx.cli(&["queue", "list"]).stdout).unwrap();
    assert!(
        list.contains("-- 1 message(s) in the queue") && !list.contains(ids[1].as_str()),
        "{list}"
    );

    let missing = mx.cli(&["queue", "show", &ids[1]]);
    assert_eq!(missing.status.code(), Some(1));
    let bad = mx.cli(&["queue", "show", "../../etc/passwd"]);
    assert_eq!(bad.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a queue ID"));

    // Delivery after a flush: the deleted message never goes out.
    let sink = Sink::start(&dir.path().join("sink"), port, &[]);
    assert!(mx.cli(&["queue", "flush"]).status.success());
    mx.wait_log(&[
        "event=delivery",
        &format!("queue_id={}", ids[0]),
        "status=sent",
    ]);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: keep me"));
}

#[test]
fn flush_without_a_running_server_marks_messages_due() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut mx = Mxguard::start(dir.path(), &relay_to(port));
    swaks(
        mx.addr,
        &["--from", "a@client.test", "--to", "b@example.test"],
    );
    mx.wait_log(&["event=delivery", "status=deferred"]);
    mx.kill9();
    let flush = mx.cli(&["queue", "flush"]);
    assert!(flush.status.success());
    assert!(String::from_utf8_lossy(&flush.stdout).contains("mxguard is not running"));
    let sink = Sink::start(&dir.path().join("sink"), port, &[]);
    mx.restart();
    mx.wait_log(&["event=delivery", "status=sent"]);
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn a_second_server_on_the_same_spool_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), "");
    std::fs::write(
        mx.spool().join("tmp").join("in-flight"),
        b"a message being received",
    )
    .unwrap();
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["serve", "--config"])
        .arg(&mx.config)
        .output()
        .unwrap();
    // It waited for the lock (15 s), saying whom for, then gave up.
    assert_eq!(second.status.code(), Some(69));
    let err = String::from_utf8_lossy(&second.stderr);
    let holder = format!(
        "another mxguard (pid {}) is still serving this spool",
        mx.pid()
    );
    assert!(err.contains(&holder), "{err}");
    mx.wait_log(&[
        "event=spool_locked",
        &format!("pid={}", mx.pid()),
        "action=waiting",
    ]);
    // Neither the refused server nor `mxguard queue` touched the live spool.
    assert!(mx.cli(&["queue", "list"]).status.success());
    assert!(mx.spool().join("tmp").join("in-flight").exists());
}

#[test]
fn an_unreadable_queue_file_goes_to_the_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(dir.path(), "");
    let id = "0123456789ABCDEF0123";
    std::fs::write(
        mx.spool().join("queue").join(id),
        b"not a queue file\n\nat all",
    )
    .unwrap();
    assert!(mx.cli(&["queue", "flush"]).status.success());
    let line = mx.wait_log(&["event=quarantine", &format!("queue_id={id}")]);
    assert!(line.contains("unreadable queue file"), "{line}");
    assert!(mx.spool().join("quarantine").join(id).exists());
    assert!(!mx.spool().join("queue").join(id).exists());
}
