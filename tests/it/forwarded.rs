//! Forwarded mail: a mailing list's ARC seal (RFC 8617, made by the test
//! with mail-auth's `ArcSealer` and an Ed25519 key it publishes in the
//! fixture DNS) that vouches for a message failing DMARC when its sealer
//! is in `checks.arc_trusted_sealers`, never when the chain is broken; and
//! the forwarders of `checks.forwarders`, by network and by name, whose
//! mail skips the SPF refusal.

use crate::authentication::{base64, send};
use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};

/// The zone of one domain: SPF, an MX, and maybe a DKIM key at
/// `selector._domainkey` and a DMARC record.
fn zone(
    domain: &str,
    spf: &str,
    key: Option<(&str, &[u8])>,
    dmarc: Option<&str>,
) -> (String, String) {
    let mut text = format!(
        "$ORIGIN {domain}.\n$TTL 60\n@ IN SOA ns.client.test. hostmaster.client.test. ( 1 3600 600 86400 60 )\n\
         @ IN NS ns.client.test.\n@ IN MX 10 mail1.client.test.\n@ IN TXT \"{spf}\"\n"
    );
    if let Some((selector, public)) = key {
        text.push_str(&format!(
            "{selector}._domainkey IN TXT \"v=DKIM1; k=ed25519; p={}\"\n",
            base64(public)
        ));
    }
    if let Some(dmarc) = dmarc {
        text.push_str(&format!("_dmarc IN TXT \"{dmarc}\"\n"));
    }
    (format!("{domain}."), text)
}

/// A fresh Ed25519 key: its PKCS#8 form and its public key.
fn key() -> (Vec<u8>, Vec<u8>) {
    let der = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&der).unwrap().public_key();
    (der, public)
}

/// The keys of the author's domain and of the two lists, and the DNS
/// that publishes them: origin.test (SPF allows only 192.0.2.1, DMARC
/// `p=reject`), lists.test and other-lists.test (ARC sealers).
struct World {
    origin: Vec<u8>,
    lists: Vec<u8>,
    other: Vec<u8>,
    dns: DnsFixture,
}

impl World {
    fn new() -> World {
        let (origin, origin_public) = key();
        let (lists, lists_public) = key();
        let (other, other_public) = key();
        let dns = DnsFixture::with_extra_zones(vec![
            zone(
                "origin.test",
                "v=spf1 ip4:192.0.2.1 -all",
                Some(("s1", &origin_public)),
                Some("v=DMARC1; p=reject"),
            ),
            zone(
                "lists.test",
                "v=spf1 ip4:127.0.0.1 -all",
                Some(("arc", &lists_public)),
                None,
            ),
            zone(
                "other-lists.test",
                "v=spf1 ip4:127.0.0.1 -all",
                Some(("arc", &other_public)),
                None,
            ),
        ]);
        World {
            origin,
            lists,
            other,
            dns,
        }
    }
}

/// The author's message as its domain signs it (DKIM, origin.test).
fn authored(key_der: &[u8], from: &str) -> String {
    let message = format!(
        "From: <{from}>\r\nTo: <list@lists.test>\r\nSubject: meeting\r\n\r\nSee you at ten.\r\n"
    );
    let signature = DkimSigner::from_key(Ed25519Key::from_pkcs8_der(key_der).unwrap())
        .domain("origin.test")
        .selector("s1")
        .headers(["From", "To", "Subject"])
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

/// What a mailing list does: tags the subject and adds a footer (the
/// author's DKIM signature no longer verifies), then seals the message
/// with `sealer`'s key as the first ARC set.
fn forward_and_seal(original: &str, sealer: &str, key_der: &[u8]) -> String {
    let forwarded = original.replace("Subject: meeting", "Subject: [team] meeting")
        + "-- \r\nteam mailing list\r\n";
    let parsed = AuthenticatedMessage::parse(forwarded.as_bytes()).unwrap();
    seal(&parsed, sealer, key_der, &ArcOutput::default())
}

/// A second forwarder: verifies the chain so far (it must pass) and
/// seals the message again, as the next ARC set.
async fn reseal(dns: &DnsFixture, message: &str, sealer: &str, key_der: &[u8]) -> String {
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.addr.port();
    let server = NameServerConfig::new(dns.addr.ip(), true, vec![udp]);
    let mut opts = ResolverOpts::default();
    opts.ndots = 0;
    let authenticator =
        MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![server]), opts).unwrap();
    let parsed = AuthenticatedMessage::parse(message.as_bytes()).unwrap();
    let chain = authenticator.verify_arc(&parsed).await;
    assert_eq!(chain.result(), &DkimResult::Pass);
    seal(&parsed, sealer, key_der, &chain)
}

/// The message with one more ARC set by `sealer` (selector `arc`), whose
/// ARC-Authentication-Results say the SPF pass the author's server had.
fn seal(parsed: &AuthenticatedMessage, sealer: &str, key_der: &[u8], chain: &ArcOutput) -> String {
    let spf = SpfOutput::new("origin.test".into()).with_result(SpfResult::Pass);
    let results = AuthenticationResults::new(sealer).with_spf_mailfrom_result(
        &spf,
        "192.0.2.1".parse().unwrap(),
        "a@origin.test",
        "mail.origin.test",
    );
    let set = ArcSealer::from_key(Ed25519Key::from_pkcs8_der(key_der).unwrap())
        .domain(sealer)
        .selector("arc")
        .headers(["From", "To", "Subject", "DKIM-Signature"])
        .seal(parsed, &results, chain)
        .unwrap();
    format!(
        "{}{}",
        set.to_header(),
        String::from_utf8_lossy(parsed.raw_message())
    )
}

/// Our Authentication-Results header of a delivered message, unfolded.
fn our_results(delivered: &[u8]) -> String {
    let text = String::from_utf8_lossy(delivered);
    let mut lines = text
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Authentication-Results: mx.test;"));
    let first = lines.next().unwrap_or_default().to_string();
    lines
        .take_while(|l| l.starts_with([' ', '\t']))
        .fold(first, |all, l| all + " " + l.trim())
}

/// The part of a log line after its time stamp.
fn fields(line: &str) -> &str {
    line.split_once(" mxguard: ").map_or(line, |(_, rest)| rest)
}

const DMARC_REFUSAL: &str =
    "550 5.7.1 Message rejected: it fails the DMARC policy (p=reject) of origin.test\r\n";

fn config(world: &World, sink: &CaptureSink, checks: &str) -> String {
    format!(
        "[relay]\ndomains = [\"example.test\"]\n{}[checks]\ndmarc = \"reject\"\n{checks}{}",
        world.dns.config(),
        smtp_downstream(sink.addr.port())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_message_failing_dmarc_is_accepted_when_a_trusted_sealer_vouches_and_refused_otherwise(
) {
    let world = World::new();
    let sink = CaptureSink::start().await;
    let trusting_dir = tempfile::tempdir().unwrap();
    let trusting = Mxguard::start(
        trusting_dir.path(),
        &config(&world, &sink, "arc_trusted_sealers = [\"Lists.Test\"]\n"),
    );
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = Mxguard::start(plain_dir.path(), &config(&world, &sink, ""));
    let sealed = forward_and_seal(
        &authored(&world.origin, "a@origin.test"),
        "lists.test",
        &world.lists,
    );

    // From the list's server (127.0.0.1, not in origin.test's SPF), with
    // the author's signature broken: DMARC fails. Without a trusted
    // sealer, refused.
    let reply = send(&plain, "127.0.0.1", "a@origin.test", &sealed).await;
    assert_eq!(reply, DMARC_REFUSAL);
    plain.wait_log(&["event=reject", "check=dmarc", "action=reject"]);

    // Sealed by lists.test, which this server trusts: a warning, and
    // delivered with arc=pass beside the failures it forgives.
    let reply = send(&trusting, "127.0.0.1", "a@origin.test", &sealed).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    let line = trusting.wait_log(&["event=would_reject", "check=dmarc"]);
    assert_eq!(
        fields(&line),
        "event=would_reject client=127.0.0.1 stage=data check=dmarc action=warn \
         helo=mail1.client.test \
         reply=\"550 5.7.1 Message rejected: it fails the DMARC policy (p=reject) of origin.test\" \
         note=\"ARC from lists.test vouched\""
    );
    trusting.wait_log(&["event=delivery", "status=sent"]);
    let results = our_results(&sink.captured()[0].raw);
    assert!(
        results.contains("dkim=neutral (body hash did not verify) header.d=origin.test"),
        "{results}"
    );
    assert!(results.contains("spf=fail"), "{results}");
    assert!(
        results.contains("arc=pass smtp.remote-ip=127.0.0.1"),
        "{results}"
    );
    assert!(results.contains("dmarc=fail"), "{results}");

    // Forwarded twice: what counts is the latest seal. Sealed last by
    // lists.test (after other-lists.test): vouched for.
    let authored_by = || authored(&world.origin, "a@origin.test");
    let first = forward_and_seal(&authored_by(), "other-lists.test", &world.other);
    let twice = reseal(&world.dns, &first, "lists.test", &world.lists).await;
    let reply = send(&trusting, "127.0.0.1", "a@origin.test", &twice).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    trusting.wait_log_count(&["event=delivery", "status=sent"], 2);
    let results = our_results(&sink.captured()[1].raw);
    assert!(results.contains("arc=pass"), "{results}");

    // Sealed last by other-lists.test, which this server does not trust
    // (lists.test sealed it before): refused.
    let first = forward_and_seal(&authored_by(), "lists.test", &world.lists);
    let twice = reseal(&world.dns, &first, "other-lists.test", &world.other).await;
    let reply = send(&trusting, "127.0.0.1", "a@origin.test", &twice).await;
    assert_eq!(reply, DMARC_REFUSAL);
    trusting.wait_log(&["event=reject", "check=dmarc", "action=reject"]);
    assert_eq!(sink.captured().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_arc_chain_vouches_for_nothing_even_from_a_trusted_sealer() {
    let world = World::new();
    let sink = CaptureSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &config(&world, &sink, "arc_trusted_sealers = [\"lists.test\"]\n"),
    );

    // Changed after the list sealed it: the seal no longer covers the
    // body, so the chain fails and DMARC's refusal stands.
    let sealed = forward_and_seal(
        &authored(&world.origin, "a@origin.test"),
        "lists.test",
        &world.lists,
    );
    let tampered = sealed.replace("See you at ten.", "Wire the money.");
    let reply = send(&mx, "127.0.0.1", "a@origin.test", &tampered).await;
    assert_eq!(reply, DMARC_REFUSAL);
    let line = mx.wait_log(&["event=reject", "check=dmarc"]);
    assert!(
        fields(&line)
            .starts_with("event=reject client=127.0.0.1 stage=data check=dmarc action=reject"),
        "{line}"
    );

    // The same tampering on a message whose author's domain publishes no
    // DMARC policy: delivered, and the header says the chain failed.
    let unguarded = forward_and_seal(
        &authored(&world.origin, "a@client.test"),
        "lists.test",
        &world.lists,
    )
    .replace("See you at ten.", "Wire the money.");
    let reply = send(&mx, "127.0.0.1", "a@client.test", &unguarded).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");
    mx.wait_log(&["event=delivery", "status=sent"]);
    let results = our_results(&sink.captured()[0].raw);
    assert!(results.contains("arc=fail"), "{results}");
    assert!(results.contains("dmarc=none"), "{results}");
    assert_eq!(sink.captured().len(), 1);
}

/// RCPT from `client` for a sender of origin.test (whose SPF allows only
/// 192.0.2.1).
async fn rcpt_from(mx: &Mxguard, client: &str) -> String {
    let mut c = Client::greet_from(client, mx.addr, "mail1.client.test").await;
    assert_eq!(c.cmd("MAIL FROM:<a@origin.test>").await, "250 2.1.0 Ok\r\n");
    let reply = c.cmd("RCPT TO:<user@example.test>").await;
    c.cmd("QUIT").await;
    reply
}

/// What `mxguard check` says of the MAIL stage's SPF check for `client`.
fn spf_line(mx: &Mxguard, client: &str) -> String {
    let out = mx.cli(&["check", "--client", client, "--from", "a@origin.test"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    report
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("mail") && words.next() == Some("spf")
        })
        .unwrap_or_else(|| panic!("no SPF line in {report}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarders_listed_by_network_or_by_name_pass_spf_where_an_unlisted_client_is_refused() {
    let world = World::new();
    let sink = CaptureSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let forwarders = dir.path().join("forwarders");
    // 127.0.0.12 by its address; 127.0.0.11 by its forward-confirmed
    // name, mail1.client.test.
    std::fs::write(&forwarders, "# forwarders\n127.0.0.12\nclient.test\n").unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &config(
            &world,
            &sink,
            "spf = \"reject\"\nforwarders = \"forwarders\"\n",
        ),
    );
    let refused = "550 5.7.23 <a@origin.test>: Sender address rejected: SPF check failed\r\n";

    assert_eq!(rcpt_from(&mx, "127.0.0.12").await, "250 2.1.5 Ok\r\n");
    assert_eq!(rcpt_from(&mx, "127.0.0.11").await, "250 2.1.5 Ok\r\n");
    // The same sender from a client not listed (no PTR): refused.
    assert_eq!(rcpt_from(&mx, "127.0.0.13").await, refused);
    let line = mx.wait_log(&["event=reject", "client=127.0.0.13", "check=spf"]);
    assert!(
        fields(&line)
            .starts_with("event=reject client=127.0.0.13 stage=rcpt check=spf action=reject"),
        "{line}"
    );

    // `mxguard check` says why: the entry that matched.
    let by_network = spf_line(&mx, "127.0.0.12");
    assert!(
        by_network.contains(" pass ") && by_network.contains("forwarder 127.0.0.12; spf=fail"),
        "{by_network}"
    );
    let by_name = spf_line(&mx, "127.0.0.11");
    assert!(
        by_name.contains(" pass ") && by_name.contains("forwarder client.test; spf=fail"),
        "{by_name}"
    );
    let unlisted = spf_line(&mx, "127.0.0.13");
    assert!(unlisted.contains("REJECT 550 5.7.23"), "{unlisted}");

    // DMARC still judges a forwarder's mail: unsigned from origin.test,
    // whose SPF fails, refused at the end of DATA.
    let unsigned = "From: <a@origin.test>\r\nTo: <user@example.test>\r\nSubject: hi\r\n\r\nhi\r\n";
    let reply = send(&mx, "127.0.0.12", "a@origin.test", unsigned).await;
    assert_eq!(reply, DMARC_REFUSAL);

    // The file is read again when it changes.
    std::fs::write(
        &forwarders,
        "# forwarders\n127.0.0.12\nclient.test\n127.0.0.13/32\n",
    )
    .unwrap();
    assert_eq!(rcpt_from(&mx, "127.0.0.13").await, "250 2.1.5 Ok\r\n");
    mx.wait_log(&["event=file_reload", "key=checks.forwarders"]);
}
