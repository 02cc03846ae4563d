//! mxguard in front of the real content filters (`filters`): rspamd refuses
//! GTUBE at the end of DATA with its own reply and marks clean mail, which
//! reaches the downstream with rspamd's headers; clamav-milter refuses
//! EICAR, in the body or attached; both in order, and either one stopped
//! mid-run gives the configured default action. Sent by swaks.

use crate::filters::{end_of_data_reply, Clamav, Rspamd, EICAR, GTUBE};
use crate::harness::*;

fn config(sink: &CaptureSink, milters: &[(&str, &str, &str)]) -> String {
    let mut out = relay_to(sink.addr.port());
    for (name, address, action) in milters {
        out.push_str(&format!(
            "[[milter]]\nname = \"{name}\"\naddress = \"{address}\"\ndefault_action = \"{action}\"\n"
        ));
    }
    out
}

/// Sends with swaks; the reply to the end of DATA, or the first refusal.
fn send(mx: &Mxguard, args: &[&str]) -> String {
    let envelope = [
        "--from",
        "bob@sender.test",
        "--to",
        "user@example.test",
        "--helo",
        "client.test",
    ];
    end_of_data_reply(&swaks(mx.addr, &[&envelope[..], args].concat()))
}

/// The header block of the `n`th message the sink got, once delivered.
fn delivered_header(mx: &Mxguard, sink: &CaptureSink, n: usize) -> String {
    mx.wait_log_count(&["event=delivery", "status=sent"], n + 1);
    let raw = String::from_utf8_lossy(&sink.captured()[n].raw).into_owned();
    raw.split_once("\r\n\r\n")
        .map_or(raw.clone(), |(h, _)| h.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rspamd_refuses_gtube_before_the_250_and_marks_clean_mail() {
    let dir = tempfile::tempdir().unwrap();
    let rspamd = Rspamd::start(&dir.path().join("rspamd"));
    let sink = CaptureSink::start().await;
    std::fs::create_dir(dir.path().join("mx")).unwrap();
    let mx = Mxguard::start(
        &dir.path().join("mx"),
        &config(&sink, &[("rspamd", &rspamd.address(), "accept")]),
    );
    let body = format!("spam\n{GTUBE}\n");
    let gtube = tokio::task::block_in_place(|| send(&mx, &["--body", &body]));
    assert_eq!(gtube, "554 5.7.1 Gtube pattern");
    mx.wait_log(&["event=reject", "stage=data", "check=milter:rspamd"]);
    mx.wait_log(&["event=milter", "milter=rspamd", "action=reject", "elapsed="]);

    let clean = tokio::task::block_in_place(|| send(&mx, &["--body", "Hello, lunch tomorrow?"]));
    assert!(clean.starts_with("250 2.0.0 Ok: queued as"), "{clean}");
    let header = tokio::task::block_in_place(|| delivered_header(&mx, &sink, 0));
    for name in [
        "X-Spamd-Result: default: False",
        "X-Rspamd-Server: ",
        "X-Spam-Status: No",
    ] {
        assert!(header.contains(name), "{name}: {header}");
    }
    assert!(header.contains("Received: from client.test"), "{header}");
    assert_eq!(sink.captured().len(), 1, "the GTUBE message went nowhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamav_refuses_eicar_in_the_body_and_attached() {
    let dir = tempfile::tempdir().unwrap();
    let clamav = Clamav::start(&dir.path().join("clamav"));
    let sink = CaptureSink::start().await;
    std::fs::create_dir(dir.path().join("mx")).unwrap();
    let mx = Mxguard::start(
        &dir.path().join("mx"),
        &config(&sink, &[("clamav", &clamav.address(), "tempfail")]),
    );
    let file = dir.path().join("eicar.com");
    std::fs::write(&file, EICAR).unwrap();
    let attach = format!("@{}", file.display());
    let (plain, attached, clean) = tokio::task::block_in_place(|| {
        (
            send(&mx, &["--body", &format!("{EICAR}\n")]),
            send(&mx, &["--body", "see attached", "--attach", &attach]),
            send(&mx, &["--body", "Hello, lunch tomorrow?"]),
        )
    });
    assert_eq!(plain, "550 5.7.1 Command rejected");
    assert_eq!(attached, plain);
    assert!(clean.starts_with("250 2.0.0 Ok: queued as"), "{clean}");
    let header = tokio::task::block_in_place(|| delivered_header(&mx, &sink, 0));
    assert!(header.contains("X-Virus-Status: Clean"), "{header}");
    let refusals = mx.wait_log_count(&["event=reject", "check=milter:clamav"], 2);
    assert!(refusals[0].contains("reply=\"550 5.7.1 Command rejected\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_filters_in_order_and_a_stopped_one_gets_its_default_action() {
    let dir = tempfile::tempdir().unwrap();
    let mut clamav = Clamav::start(&dir.path().join("clamav"));
    let mut rspamd = Rspamd::start(&dir.path().join("rspamd"));
    let sink = CaptureSink::start().await;
    std::fs::create_dir(dir.path().join("mx")).unwrap();
    let mx = Mxguard::start(
        &dir.path().join("mx"),
        &config(
            &sink,
            &[
                ("clamav", &clamav.address(), "accept"),
                ("rspamd", &rspamd.address(), "tempfail"),
            ],
        ),
    );
    let hello = ["--body", "Hello, lunch tomorrow?"];
    let first = tokio::task::block_in_place(|| send(&mx, &hello));
    assert!(first.starts_with("250 2.0.0 Ok: queued as"), "{first}");
    let header = tokio::task::block_in_place(|| delivered_header(&mx, &sink, 0));
    assert!(header.contains("X-Virus-Status: Clean"), "{header}");
    assert!(header.contains("X-Spam-Status: No"), "{header}");

    // ClamAV stopped: its default is accept, so mail goes on, scored.
    clamav.stop();
    let second = tokio::task::block_in_place(|| send(&mx, &hello));
    assert!(second.starts_with("250 2.0.0 Ok: queued as"), "{second}");
    mx.wait_log(&[
        "event=milter",
        "milter=clamav",
        "action=default_accept",
        "error=",
    ]);
    let header = tokio::task::block_in_place(|| delivered_header(&mx, &sink, 1));
    assert!(!header.contains("X-Virus-Status"), "{header}");
    assert!(header.contains("X-Spam-Status: No"), "{header}");

    // rspamd stopped too: its default is tempfail, heard at MAIL.
    rspamd.stop();
    let third = tokio::task::block_in_place(|| send(&mx, &hello));
    assert_eq!(third, "451 4.7.1 Service unavailable - try again later");
    mx.wait_log(&["event=milter", "milter=rspamd", "action=default_tempfail"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamav_shown_no_body_takes_the_shorter_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let clamav = Clamav::start(&dir.path().join("clamav"));
    let sink = CaptureSink::start().await;
    std::fs::create_dir(dir.path().join("mx")).unwrap();
    let mut sections = config(&sink, &[("clamav", &clamav.address(), "tempfail")]);
    sections.push_str("content = \"headers\"\n");
    let mx = Mxguard::start(&dir.path().join("mx"), &sections);
    // libmilter takes a message without body chunks; the virus in the
    // body is not seen, so it passes (what `content` is for: a filter
    // that judges the header alone).
    let reply = tokio::task::block_in_place(|| send(&mx, &["--body", &format!("{EICAR}\n")]));
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    let line = mx.wait_log(&["event=milter", "milter=clamav", "stage=end_of_message"]);
    assert!(!line.contains("default_"), "{line}");
    let header = tokio::task::block_in_place(|| delivered_header(&mx, &sink, 0));
    assert!(header.contains("X-Virus-Status: Clean"), "{header}");
}
