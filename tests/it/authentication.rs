//! Message authentication at the end of DATA: DKIM (an Ed25519 key made by
//! the test, published in the fixture DNS), SPF and DMARC (`p=reject`), the
//! Authentication-Results header, and forged ones removed.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A zone for signed.test with this public key and `p=reject`.
fn signed_zone(public_key: &[u8]) -> (String, String) {
    let text = format!(
        "$ORIGIN signed.test.\n$TTL 60\n@ IN SOA ns.client.test. hostmaster.client.test. ( 1 3600 600 86400 60 )\n\
         @ IN NS ns.client.test.\n@ IN MX 10 mail1.client.test.\n@ IN TXT \"v=spf1 ip4:127.0.0.11 -all\"\n\
         s1._domainkey IN TXT \"v=DKIM1; k=ed25519; p={}\"\n_dmarc IN TXT \"v=DMARC1; p=reject\"\n",
        base64(public_key)
    );
    ("signed.test.".to_string(), text)
}

fn sign(key_der: &[u8], message: &str) -> String {
    let key = Ed25519Key::from_pkcs8_der(key_der).unwrap();
    let signature = DkimSigner::from_key(key)
        .domain("signed.test")
        .selector("s1")
        .headers(["From", "To", "Subject"])
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

pub(crate) async fn send(mx: &Mxguard, client: &str, from: &str, message: &str) -> String {
    let mut c = Client::connect_from(client, mx.addr).await;
    c.reply().await;
    c.cmd("EHLO mail1.client.test").await;
    c.cmd(&format!("MAIL FROM:<{from}>")).await;
    c.cmd("RCPT TO:<user@example.test>").await;
    c.cmd("DATA").await;
    c.send(format!("{message}.\r\n").as_bytes()).await;
    let reply = c.reply().await;
    c.cmd("QUIT").await;
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_dmarc_and_the_authentication_results_header() {
    let key_der = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&key_der).unwrap().public_key();
    let dns = DnsFixture::with_extra_zones(vec![signed_zone(&public)]);
    let sink = CaptureSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n{}[checks]\ndmarc = \"reject\"\n{}",
            dns.config(),
            smtp_downstream(sink.addr.port())
        ),
    );
    let body =
        "From: <a@signed.test>\r\nTo: <user@example.test>\r\nSubject: signed\r\n\r\nhello\r\n";

    // Signed, from an address SPF allows: everything passes.
    let reply = send(&mx, "127.0.0.11", "a@signed.test", &sign(&key_der, body)).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    mx.wait_log(&["event=delivery", "status=sent"]);
    let delivered = String::from_utf8_lossy(&sink.captured()[0].raw).into_owned();
    let header = delivered
        .lines()
        .find(|l| l.starts_with("Authentication-Results: mx.test;"))
        .unwrap_or_default()
        .to_string();
    assert!(delivered.contains("dkim=pass"), "{delivered}");
    assert!(delivered.contains("spf=pass"), "{delivered}");
    assert!(delivered.contains("dmarc=pass"), "{delivered}");
    assert!(!header.is_empty(), "{delivered}");

    // Tampered after signing, from an address SPF refuses: DMARC fails and
    // the domain says p=reject.
    let tampered = sign(&key_der, body).replace("hello", "send money");
    let reply = send(&mx, "127.0.0.1", "a@signed.test", &tampered).await;
    assert_eq!(
        reply,
        "550 5.7.1 Message rejected: it fails the DMARC policy (p=reject) of signed.test\r\n"
    );
    mx.wait_log(&["event=reject", "check=dmarc", "action=reject"]);

    // Unsigned, no DMARC record, and a forged verdict in our name: accepted,
    // with our own header only.
    let forged = "Authentication-Results: mx.test; dkim=pass header.d=bank.test\r\nFrom: <a@client.test>\r\nSubject: plain\r\n\r\nhi\r\n";
    let reply = send(&mx, "127.0.0.11", "a@client.test", forged).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    mx.wait_log_count(&["event=delivery", "status=sent"], 2);
    let plain = String::from_utf8_lossy(&sink.captured()[1].raw).into_owned();
    assert_eq!(
        plain.matches("Authentication-Results: mx.test").count(),
        1,
        "{plain}"
    );
    assert!(!plain.contains("bank.test"), "{plain}");
    assert!(
        plain.contains("dmarc=none header.from=client.test"),
        "{plain}"
    );

    // A message larger than one DATA piece (256 KiB) was partly on disk
    // before the verdict: the header still goes on top, the body intact.
    let big_body = "x".repeat(998) + "\r\n";
    let big = format!(
        "From: <a@client.test>\r\nSubject: big\r\n\r\n{}",
        big_body.repeat(400)
    );
    let reply = send(&mx, "127.0.0.11", "a@client.test", &big).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    mx.wait_log_count(&["event=delivery", "status=sent"], 3);
    let delivered = String::from_utf8_lossy(&sink.captured()[2].raw).into_owned();
    let after_received = delivered
        .split_once("\r\nAuthentication-Results: mx.test;")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        after_received.contains("\r\nFrom: <a@client.test>\r\nSubject: big\r\n\r\n"),
        "header on top"
    );
    assert_eq!(delivered.matches(big_body.as_str()).count(), 400);

    // A signed message of many DATA pieces: its body is hashed as it
    // streams to disk, and the signature still verifies.
    let long_body = "y".repeat(500) + "  trailing \r\n";
    let signed_big = format!(
        "From: <a@signed.test>\r\nTo: <user@example.test>\r\nSubject: big signed\r\n\r\n{}",
        long_body.repeat(4000)
    );
    let reply = send(
        &mx,
        "127.0.0.11",
        "a@signed.test",
        &sign(&key_der, &signed_big),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    mx.wait_log_count(&["event=delivery", "status=sent"], 4);
    let delivered = String::from_utf8_lossy(&sink.captured()[3].raw).into_owned();
    let ours = delivered
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Authentication-Results: mx.test;"))
        .take_while(|l| !l.starts_with("DKIM-Signature"))
        .collect::<String>();
    assert!(ours.contains("dkim=pass"), "{ours}");
    assert!(ours.contains("dmarc=pass"), "{ours}");
}

/// The server's peak memory grows by less than this while a 20 MB signed
/// message is received, authenticated and delivered (it is never whole in
/// memory: DATA streams to the spool, DKIM hashes the body as it goes,
/// delivery streams from the queue file).
const BIG_MESSAGE_MEMORY_KB: u64 = 12 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_message_is_authenticated_and_delivered_in_bounded_memory() {
    let key_der = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&key_der).unwrap().public_key();
    let dns = DnsFixture::with_extra_zones(vec![signed_zone(&public)]);
    let sink = CaptureSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n{}[checks]\ndmarc = \"warn\"\n{}",
            dns.config(),
            smtp_downstream(sink.addr.port())
        ),
    );
    let small =
        "From: <a@signed.test>\r\nTo: <user@example.test>\r\nSubject: warm up\r\n\r\nhi\r\n";
    let reply = send(&mx, "127.0.0.11", "a@signed.test", &sign(&key_der, small)).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    mx.wait_log(&["event=delivery", "status=sent"]);
    let before = mx.memory_kb("VmHWM");

    let line = "z".repeat(998) + "\r\n";
    let body = line.repeat(20 * 1024 * 1024 / line.len());
    let big =
        format!("From: <a@signed.test>\r\nTo: <user@example.test>\r\nSubject: 20 MB\r\n\r\n{body}");
    let reply = send(&mx, "127.0.0.11", "a@signed.test", &sign(&key_der, &big)).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    mx.wait_log_count(&["event=delivery", "status=sent"], 2);
    let grown = mx.memory_kb("VmHWM").saturating_sub(before);
    assert!(
        grown < BIG_MESSAGE_MEMORY_KB,
        "peak memory grew by {grown} kB"
    );

    let delivered = &sink.captured()[1].raw;
    assert!(delivered.len() > 20_000_000);
    let head = String::from_utf8_lossy(&delivered[..4096]);
    let ours = head
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Authentication-Results: mx.test;"))
        .take_while(|l| !l.starts_with("DKIM-Signature"))
        .collect::<String>();
    assert!(ours.contains("dkim=pass"), "{ours}");
}

/// DMARC judges with the SPF verdict the MAIL check saw, not one of its
/// own: the sender domain's records may not be cached (TTL 0) and the DNS
/// server is gone before DATA, so that a second evaluation would be a
/// temperror (as `mxguard check`, run inside the server, then shows); the
/// Authentication-Results header still says the fail MAIL saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_judges_with_the_spf_verdict_the_mail_check_saw() {
    let zone = (
        "forged.test.".to_string(),
        "$ORIGIN forged.test.\n$TTL 0\n@ IN SOA ns.client.test. hostmaster.client.test. ( 1 3600 600 86400 0 )\n\
         @ IN NS ns.client.test.\n@ IN TXT \"v=spf1 -all\"\n_dmarc IN TXT \"v=DMARC1; p=none\"\n"
            .to_string(),
    );
    let dns = DnsFixture::with_extra_zones(vec![zone]);
    let sink = CaptureSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n{}[checks]\nspf = \"warn\"\ndmarc = \"warn\"\n{}",
            dns.config(),
            smtp_downstream(sink.addr.port())
        ),
    );
    let mut c = Client::connect_from("127.0.0.11", mx.addr).await;
    c.reply().await;
    c.cmd("EHLO mail1.client.test").await;
    assert_eq!(c.cmd("MAIL FROM:<a@forged.test>").await, "250 2.1.0 Ok\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<user@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    let line = mx.wait_log(&["event=would_reject", "check=spf"]);
    assert!(
        line.contains(
            "reply=\"550 5.7.23 <a@forged.test>: Sender address rejected: SPF check failed\""
        ),
        "{line}"
    );
    drop(dns);
    let check = mx.cli(&["check", "--client", "127.0.0.11", "--from", "a@forged.test"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("spf=temperror"), "{report}");

    c.cmd("DATA").await;
    c.send(b"From: <a@forged.test>\r\nTo: <user@example.test>\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        .await;
    let reply = c.reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    c.cmd("QUIT").await;
    mx.wait_log(&["event=delivery", "status=sent"]);
    let delivered = String::from_utf8_lossy(&sink.captured()[0].raw).into_owned();
    let ours: String = delivered
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Authentication-Results: mx.test;"))
        .take_while(|l| !l.starts_with("From:"))
        .collect();
    assert!(ours.contains("spf=fail"), "{ours}");
}
