//! `downstream.tls`, against real peers: Postfix's smtp-sink, which does not
//! offer STARTTLS, and a real Postfix smtpd offering STARTTLS with a
//! certificate from a test CA. `required` and `verify` never send a message
//! (or a callout probe) in plaintext; every delivery line says what TLS it
//! had.

use crate::harness::*;
use crate::postfix::Postfix;
use std::path::Path;

/// A test CA (`ca.pem`) and a certificate it signed for `localhost`
/// (`cert.pem`, `key.pem`) in `dir`.
fn test_ca(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mxguard test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// A message from a@client.test to `to`, through swaks: its reply.
fn send(mx: &Mxguard, to: &str) -> String {
    swaks(mx.addr, &["--from", "a@client.test", "--to", to])
}

/// The recipients in `table` are known; others are asked of the
/// downstream (a callout).
fn front(dir: &Path, target: &str, tls: &str, table: &[&str]) -> Mxguard {
    let list: String = table.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join("recipients"), list).unwrap();
    Mxguard::start(
        dir,
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n\
             [recipients]\ntable = \"recipients\"\ncallout = true\ncallout_timeout = \"5s\"\n\
             [downstream]\ntargets = [\"{target}\"]\nretry_min = \"1h\"\nretry_max = \"2h\"\n{tls}"
        ),
    )
}

/// In a Postfix log: the transactions (a MAIL accepted, or a RCPT refused
/// before it), and how many of them were on a connection encrypted with
/// TLS 1.3 (each smtpd process serves one connection at a time).
fn transactions_over_tls(log: &str) -> (usize, usize) {
    let mut encrypted = std::collections::HashMap::new();
    let (mut all, mut over_tls) = (0, 0);
    for line in log.lines() {
        let Some((pid, what)) = line
            .split_once("postfix/smtpd[")
            .and_then(|(_, rest)| rest.split_once("]: "))
        else {
            continue;
        };
        if what.starts_with("connect from ") {
            encrypted.insert(pid, false);
        } else if what.contains("TLS connection established from ") && what.contains(": TLSv1.3 ") {
            encrypted.insert(pid, true);
        } else if what.contains(": client=") || what.starts_with("NOQUEUE: reject: RCPT ") {
            all += 1;
            over_tls += usize::from(encrypted.get(pid) == Some(&true));
        }
    }
    (all, over_tls)
}

fn queued(mx: &Mxguard) -> String {
    String::from_utf8(mx.cli(&["queue", "list"]).stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_never_sends_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = front(
        dir.path(),
        &format!("smtp://127.0.0.1:{}", sink.port),
        "tls = \"required\"\n",
        &["bob@example.test"],
    );
    // The callout does not probe in plaintext: the address cannot be
    // verified (smtp-sink, asked in plaintext, would have said 250).
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    let port = sink.port;
    assert_eq!(
        c.cmd("RCPT TO:<carol@example.test>").await,
        format!(
            "450 4.1.1 <carol@example.test>: Recipient address rejected: unverified address: \
             127.0.0.1:{port}: no TLS (not offered), and downstream.tls = required never sends in plaintext\r\n"
        )
    );
    c.cmd("QUIT").await;

    // A message is accepted, and stays queued: deferred, never sent.
    let out = send(&mx, "bob@example.test");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let line = mx.wait_log(&["event=delivery", "to=bob@example.test"]);
    assert!(
        line.contains(&format!(
            " relay=smtp://127.0.0.1:{port} status=deferred tls=none tls_reason=\"not offered\" \
             reply=\"no TLS (not offered), and downstream.tls = required never sends in plaintext\""
        )),
        "{line}"
    );
    // The attempt is over (its line is written): nothing reached the sink.
    assert_eq!(sink.messages().len(), 0);
    let list = queued(&mx);
    assert!(list.contains("-- 1 message(s) in the queue"), "{list}");
    assert!(list.contains("bob@example.test  (pending)"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_sends_in_plaintext_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = front(
        dir.path(),
        &format!("smtp://127.0.0.1:{}", sink.port),
        "",
        &["bob@example.test"],
    );
    // The probe goes in plaintext, as the message does.
    let mut c = Client::greet(mx.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        c.cmd("RCPT TO:<carol@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    c.cmd("QUIT").await;
    let out = send(&mx, "bob@example.test");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let line = mx.wait_log(&["event=delivery", "to=bob@example.test"]);
    assert!(
        line.contains(" status=sent tls=none tls_reason=\"not offered\" reply=\"250 "),
        "{line}"
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("To: bob@example.test"),
        "{}",
        messages[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_the_certificate_of_a_real_postfix() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    test_ca(&certs);
    let port = free_port();
    let postfix = Postfix::start_with(
        &dir.path().join("postfix"),
        port,
        &["alice@example.test", "bob@example.test"],
        &format!(
            "smtpd_tls_cert_file = {c}/cert.pem\nsmtpd_tls_key_file = {c}/key.pem\n\
             smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n",
            c = certs.display()
        ),
    );
    let verify = format!(
        "tls = \"verify\"\ntls_ca_file = \"{}\"\n",
        certs.join("ca.pem").display()
    );

    // The certificate names `localhost`, the target: the probe and the
    // message go over TLS, checked against the test CA.
    let good_dir = dir.path().join("good");
    std::fs::create_dir_all(&good_dir).unwrap();
    let good = front(
        &good_dir,
        &format!("smtp://localhost:{port}"),
        &verify,
        &["bob@example.test"],
    );
    let mut c = Client::greet(good.addr).await;
    c.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        c.cmd("RCPT TO:<alice@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(c
        .cmd("RCPT TO:<nobody@example.test>")
        .await
        .starts_with("550 5.1.1 <nobody@example.test>: Recipient address rejected: undeliverable address: downstream said: 550 5.1.1 "));
    c.cmd("QUIT").await;
    let out = send(&good, "bob@example.test");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let line = good.wait_log(&["event=delivery", "to=bob@example.test"]);
    assert!(
        line.contains(&format!(
            " relay=smtp://localhost:{port} status=sent tls=TLSv1_3 reply=\"250 2.0.0 Ok: queued as "
        )),
        "{line}"
    );
    assert!(!line.contains("tls_reason"), "{line}");
    // Postfix took the message, and every connection was encrypted.
    let log = wait_for("the message in Postfix's log", || {
        let log = std::fs::read_to_string(&postfix.log).unwrap_or_default();
        log.contains("to=<bob@example.test>, relay=none")
            .then_some(log)
    });
    assert!(log.contains("from=<a@client.test>"), "{log}");
    assert_eq!(
        transactions_over_tls(&log),
        (3, 3),
        "two probes and the message: {log}"
    );

    // The same server, named by its address, which its certificate does
    // not carry: nothing is probed or sent, the message waits.
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = front(
        &bad_dir,
        &format!("smtp://127.0.0.1:{port}"),
        &verify,
        &["alice@example.test"],
    );
    let mut c = Client::greet(bad.addr).await;
    c.cmd("MAIL FROM:<b@client.test>").await;
    let reply = c.cmd("RCPT TO:<bob@example.test>").await;
    assert!(
        reply.starts_with(&format!(
            "450 4.1.1 <bob@example.test>: Recipient address rejected: unverified address: \
             127.0.0.1:{port}: TLS handshake with downstream failed: invalid peer certificate: \
             certificate not valid for name \"127.0.0.1\""
        )),
        "{reply}"
    );
    c.cmd("QUIT").await;
    let out = swaks(
        bad.addr,
        &["--from", "b@client.test", "--to", "alice@example.test"],
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let line = bad.wait_log(&["event=delivery", "to=alice@example.test"]);
    assert!(
        line.contains(
            " status=deferred tls=none tls_reason=\"handshake failed: invalid peer certificate: \
             certificate not valid for name \\\"127.0.0.1\\\""
        ),
        "{line}"
    );
    assert!(queued(&bad).contains("-- 1 message(s) in the queue"));
    let log = std::fs::read_to_string(&postfix.log).unwrap();
    assert!(!log.contains("b@client.test"), "{log}");
}

#[test]
fn a_ca_file_without_certificates_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "").unwrap();
    let file = dir.path().join("mxguard.toml");
    std::fs::write(
        &file,
        "[downstream]\ntargets = [\"smtp://127.0.0.1:25\"]\ntls = \"verify\"\ntls_ca_file = \"ca.pem\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "mxguard: {}: downstream.tls_ca_file: {}: no certificate in the file\n",
            file.display(),
            dir.path().join("ca.pem").display()
        )
    );
}
