//! The checks against a real DNS server with fixture zones: `mxguard
//! check` for every reply, `mxguard dnsbl-health`, and SMTP sessions from
//! clients bound across 127.0.0.0/8, each with its own PTR and DNSBL data.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use std::process::Command;

fn checks_config(dns: &DnsFixture) -> String {
    format!(
        r#"[relay]
domains = ["example.test"]
{dns}
[checks]
reverse_dns = "tempfail"
forged_reverse_dns = "tempfail"
helo = "reject"
helo_dns = "tempfail"
sender_domain = "reject"
null_mx = "reject"
spf = "reject"

[[dnsbl]]
zone = "bl.test"
codes = ["127.0.0.2-127.0.0.11"]
message = "Mail from {{client_ip}} refused: listed in {{zone}} ({{txt}})"

[[dnsbl]]
zone = "all.test"

[[dnsbl]]
zone = "err.test"

[[dnsbl]]
zone = "timeout.test"

[[dnsbl]]
zone = "servfail.test"

[[rhsbl]]
zone = "rhs.test"

[[rhsbl]]
zone = "allrhs.test"
"#,
        dns = dns.config()
    )
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `mxguard check`; returns (exit code, report).
fn check(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn verdict(report: &str) -> &str {
    report
        .lines()
        .find(|l| l.starts_with("verdict: "))
        .unwrap_or("")
}

/// Client, options that differ from [`CLEAN`], exit code, verdict line.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], i32, &'a str);

const CLEAN: &[&str] = &[
    "--helo",
    "mail1.client.test",
    "--from",
    "a@client.test",
    "--rcpt",
    "user@example.test",
];

/// The resolver is built without the system's CA certificates (mxguard
/// never asks DNS over TLS): a host without any still runs the checks.
#[test]
fn checks_run_on_a_host_without_ca_certificates() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &checks_config(&dns));
    let (empty_file, empty_dir) = (dir.path().join("no-ca.pem"), dir.path().join("no-ca"));
    std::fs::write(&empty_file, "").unwrap();
    std::fs::create_dir(&empty_dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["check", "--config"])
        .arg(&config)
        .args(["--client", "127.0.0.11"])
        .args(CLEAN)
        .env("SSL_CERT_FILE", &empty_file)
        .env("SSL_CERT_DIR", &empty_dir)
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), verdict(&report)),
        (Some(0), "verdict: accept"),
        "{report}"
    );
}

#[test]
fn check_command_gives_every_reply() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &checks_config(&dns));
    let with = |client: &str, overrides: &[(&str, &str)]| {
        let mut args: Vec<String> = vec!["--client".into(), client.into()];
        for pair in CLEAN.chunks(2) {
            let value = overrides
                .iter()
                .find(|(k, _)| *k == pair[0])
                .map_or(pair[1], |(_, v)| v);
            args.push(pair[0].into());
            args.push(value.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check(&config, &args)
    };

    let (code, report) = with("127.0.0.11", &[]);
    assert_eq!((code, verdict(&report)), (0, "verdict: accept"), "{report}");
    // The dead and broken lists are disabled, the refusing one refused:
    // none could reject.
    assert!(report.contains("all.test                     health disabled lists the RFC 5782 negative test point 127.0.0.1"), "{report}");
    assert!(
        report.contains("err.test                     health refused the list answers 127.255.255.254 (public or open resolver)"),
        "{report}"
    );
    assert!(
        report.contains(
            "timeout.test                 health unknown test point lookup failed: timeout"
        ),
        "{report}"
    );
    assert!(
        report.contains("bl.test                      health ok"),
        "{report}"
    );
    assert!(report.contains("zone disabled"), "{report}");

    let cases: &[Case] = &[
        ("127.0.0.20", &[], 1, "verdict: reject by dnsbl:bl.test: 554 5.7.1 Mail from 127.0.0.20 refused: listed in bl.test (listed for sending spam, see https://bl.test/lookup)"),
        ("127.0.0.13", &[("--from", "a@addronly.client.test")], 75, "verdict: tempfail by reverse_dns: 450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.13]"),
        ("127.0.0.12", &[("--from", "a@addronly.client.test")], 75, "verdict: tempfail by forged_reverse_dns: 450 4.7.25 Client host rejected: IP name possibly forged [127.0.0.12]"),
        ("127.0.0.50", &[("--from", "a@addronly.client.test")], 75, "verdict: tempfail by reverse_dns: 451 4.7.1 Client host rejected: IP name lookup failed [127.0.0.50]"),
        ("127.0.0.11", &[("--helo", "localhost")], 1, "verdict: reject by helo: 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"),
        ("127.0.0.11", &[("--helo", "[127.0.0.99]")], 1, "verdict: reject by helo: 550 5.7.1 <[127.0.0.99]>: Helo command rejected: address literal does not match your address [127.0.0.11]"),
        ("127.0.0.11", &[("--helo", "nowhere.client.test")], 75, "verdict: tempfail by helo_dns: 450 4.7.1 <nowhere.client.test>: Helo command rejected: Host not found"),
        ("127.0.0.11", &[("--from", "x@nullmx.sender.test")], 1, "verdict: reject by null_mx: 550 5.7.27 <x@nullmx.sender.test>: Sender address rejected: Domain does not accept mail (null MX)"),
        ("127.0.0.11", &[("--from", "x@nowhere.client.test")], 1, "verdict: reject by sender_domain: 550 5.1.8 <x@nowhere.client.test>: Sender address rejected: Domain not found"),
        ("127.0.0.11", &[("--from", "x@host.servfail.test")], 75, "verdict: tempfail by sender_domain: 451 4.1.8 <x@host.servfail.test>: Sender address rejected: Domain lookup failed"),
        ("127.0.0.11", &[("--from", "x@sender.test")], 1, "verdict: reject by spf: 550 5.7.23 <x@sender.test>: Sender address rejected: SPF check failed"),
        ("127.0.0.11", &[("--from", "x@spammer.sender.test")], 1, "verdict: reject by rhsbl:rhs.test: 554 5.7.1 Service unavailable; Sender domain spammer.sender.test blocked using rhs.test"),
        ("127.0.0.11", &[("--rcpt", "user@elsewhere.test")], 1, "verdict: reject by relay: 554 5.7.1 <user@elsewhere.test>: Relay access denied"),
        // Relay control answers first, as in a session, even for a client whose reverse lookup fails.
        ("127.0.0.50", &[("--from", "a@addronly.client.test"), ("--rcpt", "user@elsewhere.test")], 1, "verdict: reject by relay: 554 5.7.1 <user@elsewhere.test>: Relay access denied"),
    ];
    for (client, overrides, want_code, want) in cases {
        let (code, report) = with(client, overrides);
        assert_eq!(verdict(&report), *want, "{client} {overrides:?}:\n{report}");
        assert_eq!(code, *want_code, "{client} {overrides:?}:\n{report}");
    }
}

#[test]
fn dnsbl_health_command() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &checks_config(&dns));
    let out = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["dnsbl-health", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a disabled zone is reported: {table}"
    );
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows[0], "zone                             health    reason");
    assert_eq!(rows[1], "bl.test                          ok        ");
    assert_eq!(rows[2], "all.test                         disabled  lists the RFC 5782 negative test point 127.0.0.1 (127.0.0.2)");
    assert_eq!(rows[3], "err.test                         refused   the list answers 127.255.255.254 (public or open resolver): it refuses queries that come through a public resolver; set dns.nameservers to a resolver of your own, or use a DQS key");
    assert!(
        rows[4].starts_with(
            "timeout.test                     unknown   test point lookup failed: timeout"
        ),
        "{table}"
    );
    assert!(
        rows[5].starts_with("servfail.test                    unknown   test point lookup failed"),
        "{table}"
    );
    assert_eq!(rows[6], "rhs.test                         ok        ");
    assert_eq!(rows[7], "allrhs.test                      disabled  lists the RFC 5782 negative test point INVALID (127.0.0.2)");
}

#[tokio::test]
async fn smtp_sessions_from_many_client_addresses() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let exceptions = dir.path().join("exceptions");
    std::fs::write(&exceptions, "# partners\n").unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "{}\n[lists]\nclient_exceptions = \"exceptions\"\n{}",
            checks_config(&dns),
            smtp_downstream(sink.port)
        ),
    );
    mx.wait_log(&["event=dnsbl_disabled", "zone=all.test"]);

    // A clean, forward-confirmed client is accepted: the wildcard list and
    // the silent list never reject anything.
    let mut clean = Client::greet_from("127.0.0.11", mx.addr, "mail1.client.test").await;
    assert_eq!(
        clean.cmd("MAIL FROM:<a@client.test>").await,
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        clean.cmd("RCPT TO:<user@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    clean.cmd("DATA").await;
    clean.send(b"Subject: clean\r\n\r\nhi\r\n.\r\n").await;
    assert!(clean.reply().await.starts_with("250 2.0.0 Ok: queued as"));

    // A listed client: refused at RCPT, every RCPT, with the whole envelope
    // in the log line.
    let mut listed = Client::greet_from("127.0.0.20", mx.addr, "mail1.client.test").await;
    assert_eq!(
        listed.cmd("MAIL FROM:<a@client.test>").await,
        "250 2.1.0 Ok\r\n"
    );
    let reply = "554 5.7.1 Mail from 127.0.0.20 refused: listed in bl.test (listed for sending spam, see https://bl.test/lookup)\r\n";
    assert_eq!(listed.cmd("RCPT TO:<user@example.test>").await, reply);
    assert_eq!(listed.cmd("RCPT TO:<other@example.test>").await, reply);
    listed.cmd("QUIT").await;
    let line = mx.wait_log(&[
        "event=reject",
        "client=127.0.0.20",
        "to=<user@example.test>",
    ]);
    assert!(
        line.contains("client=127.0.0.20 stage=rcpt check=dnsbl:bl.test action=reject helo=mail1.client.test from=<a@client.test> to=<user@example.test> reply="),
        "{line}"
    );

    // The exception file, edited while running, lets the next connection in.
    std::fs::write(&exceptions, "127.0.0.20 partner.client.test\n").unwrap();
    let mut excepted = Client::greet_from("127.0.0.20", mx.addr, "mail1.client.test").await;
    excepted.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        excepted.cmd("RCPT TO:<user@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    mx.wait_log(&["event=exempt", "client=127.0.0.20", "partner.client.test"]);

    // No PTR: a temporary refusal, so a real server retries.
    let mut unnamed = Client::greet_from("127.0.0.13", mx.addr, "mail1.client.test").await;
    // (A sender without SPF: an SPF failure would be a definitive 5xx.)
    unnamed.cmd("MAIL FROM:<a@addronly.client.test>").await;
    assert_eq!(
        unnamed.cmd("RCPT TO:<user@example.test>").await,
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.13]\r\n"
    );
    mx.wait_log(&["event=delivery", "status=sent"]);
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn warn_mode_logs_and_delivers() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[policy]\nmode = \"warn\"\n{}{}",
            checks_config(&dns),
            smtp_downstream(sink.port)
        ),
    );
    let mut listed = Client::greet_from("127.0.0.20", mx.addr, "mail1.client.test").await;
    listed.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        listed.cmd("RCPT TO:<user@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    listed.cmd("DATA").await;
    listed
        .send(b"Subject: would have been refused\r\n\r\nhi\r\n.\r\n")
        .await;
    assert!(listed.reply().await.starts_with("250 2.0.0 Ok: queued as"));
    let line = mx.wait_log(&["event=would_reject", "check=dnsbl:bl.test"]);
    assert!(line.contains(" check=dnsbl:bl.test action=warn "), "{line}");
    assert!(
        line.contains(" reply=\"554 5.7.1 Mail from 127.0.0.20 refused"),
        "{line}"
    );
    mx.wait_log(&["event=delivery", "status=sent"]);
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn immediate_mode_refuses_at_helo() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "[policy]\nreject_at = \"immediate\"\n{}",
            checks_config(&dns)
        ),
    );
    let mut listed = Client::connect_from("127.0.0.20", mx.addr).await;
    listed.reply().await;
    let reply = listed.cmd("EHLO mail1.client.test").await;
    assert!(
        reply.starts_with("554 5.7.1 Mail from 127.0.0.20 refused"),
        "{reply}"
    );
    assert_eq!(
        listed.cmd("MAIL FROM:<a@client.test>").await,
        "503 5.5.1 Error: send HELO/EHLO first\r\n"
    );
}

#[test]
fn scores_allow_lists_and_block_lists() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("badmailfrom"),
        "spammer@client.test\n@bulk.client.test\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("badmailto"),
        "/^[a-z]+[0-9]+@example\\.test$/\n",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[relay]
domains = ["example.test"]
{dns}
[policy]
reject_score = 5
[checks]
generic_reverse_dns = {{ weight = 3 }}
helo_ptr_mismatch = {{ weight = 2 }}
helo_spf = "reject"
spf_softfail = {{ weight = 2 }}
sender_blocklist = "reject"
recipient_blocklist = "reject"
[lists]
sender_blocklist = "badmailfrom"
recipient_blocklist = "badmailto"

[[dnsbl]]
zone = "bl.test"
weight = 4

[[dnsbl]]
zone = "wl.test"
weight = -5
"#,
            dns = dns.config()
        ),
    );
    let run = |client: &str, helo: &str, from: &str, rcpt: &str| {
        check(
            &config,
            &[
                "--client", client, "--helo", helo, "--from", from, "--rcpt", rcpt,
            ],
        )
    };
    let generic = "ip-127-0-0-14.dyn.client.test";

    let (code, report) = run(
        "127.0.0.14",
        generic,
        "a@addronly.client.test",
        "user@example.test",
    );
    assert_eq!((code, verdict(&report)), (0, "verdict: accept"), "{report}");
    assert!(report.contains("score    3\n"), "{report}");

    // helo-ok.client.test resolves but is not the PTR name (+2).
    let (code, report) = run(
        "127.0.0.14",
        "helo-ok.client.test",
        "a@addronly.client.test",
        "user@example.test",
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        verdict(&report),
        "verdict: reject by score: 550 5.7.1 Service unavailable; client [127.0.0.14] blocked: score 5 reached 5 (generic_reverse_dns(3), helo_ptr_mismatch(2))"
    );

    // Listed (+4), HELO not the PTR name (+2), soft-failing SPF (+2).
    let (code, report) = run(
        "127.0.0.20",
        "helo-ok.client.test",
        "a@soft.client.test",
        "user@example.test",
    );
    assert_eq!(code, 1, "{report}");
    assert!(
        verdict(&report).contains(
            "score 8 reached 5 (dnsbl:bl.test(4), helo_ptr_mismatch(2), spf_softfail(2))"
        ),
        "{report}"
    );

    // The same, but also on the allow list (-5): accepted.
    let (code, report) = run(
        "127.0.0.21",
        "helo-ok.client.test",
        "a@soft.client.test",
        "user@example.test",
    );
    assert_eq!((code, verdict(&report)), (0, "verdict: accept"), "{report}");
    assert!(report.contains("score    3\n"), "{report}");

    let (code, report) = run(
        "127.0.0.30",
        "mail1.client.test",
        "a@addronly.client.test",
        "user@example.test",
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(verdict(&report), "verdict: reject by helo_spf: 550 5.7.23 <mail1.client.test>: Helo command rejected: SPF check failed");

    let (_, report) = run(
        "127.0.0.11",
        "mail1.client.test",
        "Spammer@client.test",
        "user@example.test",
    );
    assert_eq!(verdict(&report), "verdict: reject by sender_blocklist: 554 5.7.1 <Spammer@client.test>: Sender address rejected: Access denied");
    assert!(report.contains("matches spammer@client.test"), "{report}");
    let (_, report) = run(
        "127.0.0.11",
        "mail1.client.test",
        "x@bulk.client.test",
        "user@example.test",
    );
    assert!(
        verdict(&report).starts_with("verdict: reject by sender_blocklist"),
        "{report}"
    );

    let (_, report) = run(
        "127.0.0.11",
        "mail1.client.test",
        "a@addronly.client.test",
        "abc123@example.test",
    );
    assert_eq!(verdict(&report), "verdict: reject by recipient_blocklist: 550 5.7.1 <abc123@example.test>: Recipient address rejected: Access denied");
    let (code, _) = run(
        "127.0.0.11",
        "mail1.client.test",
        "a@addronly.client.test",
        "abc@example.test",
    );
    assert_eq!(code, 0);
}

#[test]
fn check_without_a_server_reads_the_state_file_and_says_what_it_cannot_judge() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[relay]\ndomains = [\"example.test\"]\n[spool]\ndir = \"spool\"\n{}[checks]\ndmarc = \"off\"\n",
            dns.config()
        ),
    );
    let args = [
        "--client",
        "127.0.0.11",
        "--helo",
        "mail1.client.test",
        "--from",
        "a@client.test",
        "--rcpt",
        "user@example.test",
    ];
    // No server and no state file: nothing of the state can be judged.
    let (code, report) = check(&config, &args);
    assert_eq!((code, verdict(&report)), (0, "verdict: accept"), "{report}");
    assert!(report.contains("state    none\n"), "{report}");
    assert!(
        report.contains("not judged: bans, spam traps, greylisting, rate limits: no running server and no state file"),
        "{report}"
    );
    assert!(
        report.contains(
            "not judged: message authentication (DKIM, SPF, DMARC): it needs the message"
        ),
        "{report}"
    );
    // A ban written to the state file (no server running) is seen.
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["ban", "--config"])
        .arg(&config)
        .args(["add", "127.0.0.11", "--for", "1h"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, report) = check(&config, &args);
    assert_eq!(code, 75, "{report}");
    assert!(
        verdict(&report).starts_with("verdict: tempfail by ban: 421 4.7.0"),
        "{report}"
    );
    let state = dir.path().join("spool/state");
    assert!(
        report.contains(&format!("state    {}\n", state.display())),
        "{report}"
    );
    assert!(
        report.contains(
            "not judged: rate limits: no running server, and the state file keeps no rate counters"
        ),
        "{report}"
    );
    assert!(report.contains("(delivered before the banner)"), "{report}");
}

#[test]
fn a_dnsbl_is_not_asked_about_a_family_it_does_not_cover() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let with = |family: &str| {
        let config = write_config(
            dir.path(),
            &format!(
                "[relay]\ndomains = [\"example.test\"]\n{}\n[[dnsbl]]\nzone = \"bl.test\"\n{family} = false\n",
                dns.config()
            ),
        );
        let mut args = vec!["--client", "127.0.0.20"];
        args.extend_from_slice(CLEAN);
        check(&config, &args)
    };
    // 127.0.0.20 is listed in bl.test; a list said to cover no IPv4
    // address is not asked about it.
    let (code, report) = with("ipv4");
    assert_eq!((code, verdict(&report)), (0, "verdict: accept"), "{report}");
    assert!(report.contains("not asked: ipv4 = false"), "{report}");
    // Skipping IPv6 changes nothing for an IPv4 client.
    let (code, report) = with("ipv6");
    assert_eq!(code, 1, "{report}");
    assert!(
        verdict(&report).starts_with("verdict: reject by dnsbl:bl.test: 554 5.7.1 "),
        "{report}"
    );
}
