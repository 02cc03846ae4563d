//! Spamhaus done right: a DQS key asked as `<reversed-ip>.<key>.<zone>`
//! and shown nowhere — not in a reply, a log line, `/metrics`, `mxguard
//! report`, `mxguard check` or `mxguard dnsbl-health` — and the three
//! "your resolver is refused" answers (127.255.255.252, .254, .255) each
//! turning its zone off with `event=dnsbl_refused` and the reason, a
//! metric, and `dnsbl-health`'s explanation; `config check` warns about a
//! public resolver in front of a Spamhaus zone. The fixture DNS answers
//! only the key-prefixed names, so a query without the key finds nothing.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use std::io::{Read, Write};
use std::process::Command;

/// The DQS key (its shape: 26 letters and digits).
const KEY: &str = "k3yq9zx7wv2m4t8p1r6s5n0abc";

/// One zone of each kind: `zen` lists 127.0.0.9 (and its test point
/// 127.0.0.2) under the key only, `dbl` the domain spammer.example; `open`, `typo` and `quota` answer every
/// query with the refusal of a public resolver, of a bad query, and of a
/// resolver over its quota.
fn zones() -> Vec<(String, String)> {
    let soa = "@ IN SOA ns.client.test. hostmaster.client.test. ( 1 3600 600 86400 60 )\n@ IN NS ns.client.test.\n";
    vec![
        (
            "zen.dq.spamhaus.net.".into(),
            format!(
                "$ORIGIN zen.dq.spamhaus.net.\n$TTL 60\n{soa}\
                 2.0.0.127.{KEY} IN A 127.0.0.2\n\
                 9.0.0.127.{KEY} IN A 127.0.0.4\n\
                 9.0.0.127.{KEY} IN TXT \"https://check.spamhaus.org/listed/?searchterm=127.0.0.9\"\n"
            ),
        ),
        (
            "open.dq.spamhaus.net.".into(),
            format!("$ORIGIN open.dq.spamhaus.net.\n$TTL 60\n{soa}*.{KEY} IN A 127.255.255.254\n"),
        ),
        (
            "typo.dq.spamhaus.net.".into(),
            format!("$ORIGIN typo.dq.spamhaus.net.\n$TTL 60\n{soa}*.{KEY} IN A 127.255.255.252\n"),
        ),
        (
            "dbl.dq.spamhaus.net.".into(),
            format!(
                "$ORIGIN dbl.dq.spamhaus.net.\n$TTL 60\n{soa}\
                 test.{KEY} IN A 127.0.1.2\n\
                 spammer.example.{KEY} IN A 127.0.1.2\n"
            ),
        ),
        (
            "quota.dq.spamhaus.net.".into(),
            format!("$ORIGIN quota.dq.spamhaus.net.\n$TTL 60\n{soa}*.{KEY} IN A 127.255.255.255\n"),
        ),
    ]
}

fn sections(dns: &DnsFixture, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("dqs.key"), format!("{KEY}\n")).unwrap();
    format!(
        "[relay]\ndomains = [\"example.test\"]\n{}\
         [[dnsbl]]\nzone = \"zen.dq.spamhaus.net\"\nkey_file = \"dqs.key\"\n\
         [[dnsbl]]\nzone = \"open.dq.spamhaus.net\"\nkey = \"{KEY}\"\n\
         [[dnsbl]]\nzone = \"typo.dq.spamhaus.net\"\nkey = \"{KEY}\"\n\
         [[dnsbl]]\nzone = \"quota.dq.spamhaus.net\"\nkey = \"{KEY}\"\n\
         [[rhsbl]]\nzone = \"dbl.dq.spamhaus.net\"\nkey_file = \"dqs.key\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
        dns.config()
    )
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dqs_key_is_asked_with_and_shown_nowhere_and_refusals_are_explained() {
    let dns = DnsFixture::with_extra_zones(zones());
    let dir = tempfile::tempdir().unwrap();
    let sink = CaptureSink::start().await;
    let config = format!(
        "{}{}",
        sections(&dns, dir.path()),
        smtp_downstream(sink.addr.port())
    );
    let mx = Mxguard::start(dir.path(), &config);
    let open = mx.wait_log(&["event=dnsbl_refused", "zone=open.dq.spamhaus.net"]);
    assert!(
        open.contains(" health=refused reason=open_resolver "),
        "{open}"
    );
    assert!(open.contains("public or open resolver"), "{open}");
    let typo = mx.wait_log(&["event=dnsbl_refused", "zone=typo.dq.spamhaus.net"]);
    assert!(typo.contains(" reason=bad_query "), "{typo}");
    let quota = mx.wait_log(&["event=dnsbl_refused", "zone=quota.dq.spamhaus.net"]);
    assert!(quota.contains(" reason=over_quota "), "{quota}");
    assert!(quota.contains("over quota, excessive queries"), "{quota}");
    mx.wait_log(&[
        "event=dnsbl_health",
        "zone=zen.dq.spamhaus.net",
        "health=ok",
    ]);

    // Listed under the key: refused with the zone's name alone.
    let mut listed = Client::greet_from("127.0.0.9", mx.addr, "client.test").await;
    listed.cmd("MAIL FROM:<a@client.test>").await;
    let reply = listed.cmd("RCPT TO:<bob@example.test>").await;
    assert_eq!(
        reply,
        "554 5.7.1 Service unavailable; Client host [127.0.0.9] blocked using zen.dq.spamhaus.net\r\n"
    );
    listed.cmd("QUIT").await;
    // Not listed; the refusing zones are off and refuse nobody.
    let mut clean = Client::greet_from("127.0.0.10", mx.addr, "client.test").await;
    clean.cmd("MAIL FROM:<a@client.test>").await;
    assert_eq!(
        clean.cmd("RCPT TO:<bob@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    clean.cmd("DATA").await;
    clean.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    let queued = clean.reply().await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    clean.cmd("QUIT").await;
    let line = mx.wait_log(&["event=reject", "client=127.0.0.9"]);
    assert!(
        line.contains(" check=dnsbl:zen.dq.spamhaus.net action=reject "),
        "{line}"
    );
    mx.wait_log_count(&["event=disconnect"], 2);
    mx.wait_log(&["event=delivery", "status=sent"]);

    // The metric of a refused zone.
    let metrics_line = mx.wait_log(&["event=listen", "service=metrics"]);
    let addr = metrics_line
        .split("address=")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let page = http_get(&addr, "/metrics");
    assert!(
        page.contains(
            "mxguard_dnsbl_refused{zone=\"open.dq.spamhaus.net\",reason=\"open_resolver\"} 1\n"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "mxguard_dnsbl_refused{zone=\"typo.dq.spamhaus.net\",reason=\"bad_query\"} 1\n"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "mxguard_dnsbl_refused{zone=\"quota.dq.spamhaus.net\",reason=\"over_quota\"} 1\n"
        ),
        "{page}"
    );
    assert!(
        page.contains("mxguard_dnsbl_usable{zone=\"zen.dq.spamhaus.net\",health=\"ok\"} 1\n"),
        "{page}"
    );

    // dnsbl-health: non-zero, with the explanation.
    let health = mx.cli(&["dnsbl-health"]);
    let health_text = text(&health);
    assert_eq!(health.status.code(), Some(1), "{health_text}");
    assert!(
        health_text.contains(
            "mxguard: open.dq.spamhaus.net: refused (open_resolver): the list answers \
             127.255.255.254 (public or open resolver)"
        ),
        "{health_text}"
    );
    assert!(
        health_text.contains("mxguard: typo.dq.spamhaus.net: refused (bad_query)"),
        "{health_text}"
    );
    assert!(
        health_text.contains("zen.dq.spamhaus.net              ok"),
        "{health_text}"
    );

    // mxguard check and mxguard report.
    let check = mx.cli(&["check", "--client", "127.0.0.9", "--helo", "client.test"]);
    let check_text = text(&check);
    assert_eq!(check.status.code(), Some(1), "{check_text}");
    assert!(
        check_text.contains("blocked using zen.dq.spamhaus.net"),
        "{check_text}"
    );
    // An RHSBL with the key: the sender domain asked under it.
    let rhs = mx.cli(&[
        "check",
        "--client",
        "127.0.0.10",
        "--from",
        "a@spammer.example",
    ]);
    let rhs_text = text(&rhs);
    assert_eq!(rhs.status.code(), Some(1), "{rhs_text}");
    assert!(
        rhs_text.contains(
            "verdict: reject by rhsbl:dbl.dq.spamhaus.net: 554 5.7.1 Service unavailable; \
             Sender domain spammer.example blocked using dbl.dq.spamhaus.net"
        ),
        "{rhs_text}"
    );
    let log = std::fs::read_to_string(mx.log_path()).unwrap();
    let report = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .arg("report")
        .arg(mx.log_path())
        .output()
        .unwrap();
    let report_text = text(&report);
    assert!(report.status.success(), "{report_text}");
    assert!(report_text.contains("zen.dq.spamhaus.net"), "{report_text}");

    for (what, shown) in [
        ("a reply", reply.as_str()),
        ("the log", log.as_str()),
        ("/metrics", page.as_str()),
        ("dnsbl-health", health_text.as_str()),
        ("mxguard check", check_text.as_str()),
        ("mxguard check (RHSBL)", rhs_text.as_str()),
        ("mxguard report", report_text.as_str()),
    ] {
        assert!(!shown.contains(KEY), "{what} shows the DQS key:\n{shown}");
    }
}

#[test]
fn config_check_warns_of_a_public_resolver_in_front_of_spamhaus() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("public.toml");
    let config = |nameserver: &str, zone: &str| {
        format!(
            "[server]\nhostname = \"mx.test\"\n[spool]\ndir = \"spool\"\n\
             [dns]\nnameservers = [\"{nameserver}\"]\n[[dnsbl]]\nzone = \"{zone}\"\n"
        )
    };
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_mxguard"))
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap()
    };
    for public in ["8.8.8.8:53", "[2606:4700:4700::1111]:53", "9.9.9.9:53"] {
        let out = check(&config(public, "zen.spamhaus.org"));
        assert_eq!(out.status.code(), Some(0));
        let err = String::from_utf8_lossy(&out.stderr);
        let ip = public.rsplit_once(':').unwrap().0.trim_matches(['[', ']']);
        assert!(
            err.contains(&format!(
                "warning: dns.nameservers: {ip} is a public resolver, and Spamhaus refuses \
                 queries that come through one (it answers 127.255.255.254): zen.spamhaus.org"
            )),
            "{err}"
        );
    }
    for quiet in [
        config("127.0.0.1:53", "zen.spamhaus.org"),
        config("8.8.8.8:53", "bl.example.org"),
    ] {
        let out = check(&quiet);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{quiet}");
    }
}

#[test]
fn a_key_and_a_key_file_are_not_both_allowed_and_a_key_must_be_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_mxguard"))
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let head = "[server]\nhostname = \"mx.test\"\n[spool]\ndir = \"spool\"\n[[dnsbl]]\nzone = \"zen.dq.spamhaus.net\"\n";
    let (code, err) = check(&format!("{head}key = \"{KEY}\"\nkey_file = \"dqs.key\"\n"));
    assert_eq!(code, Some(78));
    assert!(
        err.contains(":8: dnsbl.key_file: `zen.dq.spamhaus.net`: set key or key_file, not both"),
        "{err}"
    );
    let (code, err) = check(&format!("{head}key = \"not a key\"\n"));
    assert_eq!(code, Some(78));
    assert!(
        err.contains("dnsbl.key: a DQS key is 1 to 63 letters and digits"),
        "{err}"
    );
    assert!(
        !err.contains("not a key"),
        "the bad key is not repeated: {err}"
    );
    let (code, err) = check(&format!("{head}key_file = \"missing.key\"\n"));
    assert_eq!(code, Some(78));
    assert!(
        err.contains(":7: dnsbl.key_file: `zen.dq.spamhaus.net`: "),
        "{err}"
    );
}
