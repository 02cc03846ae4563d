//! The RFC 7208 suite (see `spf_suite.rs`) through two front ends of
//! mxguard, each section's zone data on the fixture DNS:
//! - `mxguard check --client HOST --helo HELO --from MAILFROM`: the result
//!   on its `spf` line, and the explanation it shows for a fail;
//! - a real SMTP session from each test's client address (put on the
//!   loopback of a network namespace of the test's own) to a server with
//!   `checks.spf = "warn"` listening on `[::]`, so that an IPv4 client
//!   arrives as `::ffff:a.b.c.d`, as on a dual-stack host: the message is
//!   accepted, delivered to a capture sink, and its `Authentication-Results`
//!   header gives `spf=`, the verdict the MAIL check saw and DMARC used.
//!
//! The tests the resolver cannot express fail here too; the ones whose
//! sender the SMTP front door refuses are named with their reason in
//! [`NOT_SMTP`].

use crate::dns_fixture::DnsFixture;
use crate::harness::{in_network_namespace, smtp_downstream, CaptureSink, Client, Mxguard};
use crate::spf_suite::{
    load_suite, serve, spf_result, Case, Section, CANNOT_EXPRESS, LOOKUP_TIMEOUT,
};
use mxguard::spf::SpfResult;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Tests whose MAIL FROM no front end takes, and why: the SMTP address
/// parser refuses the sender (`501 5.1.7` in a session, exit 2 from
/// `mxguard check`), so no SPF is evaluated at all; the suite's `none` is
/// what the evaluator gives them (`spf_suite.rs` runs them).
const NOT_SMTP: &[(&str, &str)] = &[
    (
        "emptylabel",
        "`lyme.eater@A...example.com`: a domain with empty labels is no RFC 5321 domain",
    ),
    (
        "toolonglabel",
        "`lyme.eater@A1234…0123.example.com`: a 64-octet label is no RFC 5321 domain",
    ),
];

/// The sender as an SMTP path: the null sender `<>`, a local part that is
/// no dot-atom quoted.
fn smtp_path(mailfrom: &str) -> String {
    let Some((local, domain)) = mailfrom.rsplit_once('@') else {
        return "<>".to_string();
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !local.is_empty()
        && local
            .split('.')
            .all(|a| !a.is_empty() && a.chars().all(atext));
    if dot_atom {
        format!("<{local}@{domain}>")
    } else {
        let quoted = local.replace('\\', "\\\\").replace('"', "\\\"");
        format!("<\"{quoted}\"@{domain}>")
    }
}

/// The result (and the report's line) of one `spf=` a front end showed.
fn shown_result(text: &str) -> Option<SpfResult> {
    let start = text.find("spf=")? + 4;
    let word: String = text[start..]
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    Some(spf_result(&word))
}

/// `[dns]` for the fixture, with the suite's lookup timeout.
fn dns_config(fixture: &DnsFixture) -> String {
    format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"{}ms\"\n",
        fixture.addr,
        LOOKUP_TIMEOUT.as_millis()
    )
}

/// The config file of a section's `mxguard check` runs.
fn check_config(dir: &std::path::Path, fixture: &DnsFixture) -> std::path::PathBuf {
    let file = dir.join("mxguard.toml");
    let text = format!(
        "[server]\nhostname = \"mx.test\"\n[spool]\ndir = \"spool\"\n{}\
         [checks]\nspf = \"warn\"\ndmarc = \"off\"\n",
        dns_config(fixture)
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// What `mxguard check` says of one test: None if it passes, else why not.
fn check_case(config: &std::path::Path, name: &str, case: &Case) -> Option<String> {
    let from = smtp_path(&case.mailfrom);
    let out = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["check", "--config"])
        .arg(config)
        .args([
            "--client", &case.host, "--helo", &case.helo, "--from", &from,
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = report.lines().find(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some("mail") && words.next() == Some("spf")
    });
    let Some(line) = line else {
        let err = String::from_utf8_lossy(&out.stderr);
        return Some(format!("{name}: no spf line: {report}{err}"));
    };
    let got = shown_result(line);
    let explained = case.explanation().is_none_or(|want| {
        let shown = format!("explanation={want:?}").to_ascii_lowercase();
        line.to_ascii_lowercase().contains(&shown)
    });
    let passes = got.is_some_and(|r| case.result.results().contains(&r)) && explained;
    (!passes).then(|| format!("{name}: {line}"))
}

/// Names failing in `failures` that no list names, and listed names that
/// pass.
fn judge(
    failures: &[(String, String)],
    also_allowed: &[(&str, &str)],
) -> (Vec<String>, Vec<String>) {
    let allowed: BTreeSet<&str> = CANNOT_EXPRESS
        .iter()
        .chain(also_allowed)
        .map(|(n, _)| *n)
        .collect();
    let failing: BTreeSet<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    let unexpected = failures
        .iter()
        .filter(|(n, _)| !allowed.contains(n.as_str()))
        .map(|(_, why)| why.clone())
        .collect();
    let stale = allowed
        .into_iter()
        .filter(|n| !failing.contains(n))
        .map(str::to_string)
        .collect();
    (unexpected, stale)
}

#[test]
fn rfc7208_suite_through_mxguard_check() {
    let sections = load_suite();
    let fixtures: Vec<DnsFixture> = sections.iter().map(serve).collect();
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<std::path::PathBuf> = fixtures
        .iter()
        .enumerate()
        .map(|(i, fixture)| {
            let section_dir = dir.path().join(i.to_string());
            std::fs::create_dir(&section_dir).unwrap();
            check_config(&section_dir, fixture)
        })
        .collect();
    let cases: Vec<(&std::path::PathBuf, &String, &Case)> = sections
        .iter()
        .zip(&configs)
        .flat_map(|(section, config)| section.tests.iter().map(move |(n, c)| (config, n, c)))
        .collect();
    let total = cases.len();
    let failures = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((config, name, case)) = cases.get(i) else {
                    return;
                };
                if let Some(why) = check_case(config, name, case) {
                    failures.lock().unwrap().push((name.to_string(), why));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!(
        "SPF suite through mxguard check: {} of {total} tests pass",
        total - failures.len()
    );
    let (unexpected, stale) = judge(&failures, NOT_SMTP);
    assert!(unexpected.is_empty(), "failing:\n{}", unexpected.join("\n"));
    assert!(stale.is_empty(), "listed but passing: {stale:?}");
}

/// The client addresses of the suite, as sockets can bind them (an
/// IPv4-mapped address as its IPv4 address).
fn socket_address(host: &str) -> IpAddr {
    mxguard::net::canonical_ip(host.parse().unwrap())
}

/// Puts every client address of the suite on the namespace's loopback.
fn add_addresses(sections: &[Section]) {
    let hosts: BTreeSet<IpAddr> = sections
        .iter()
        .flat_map(|s| s.tests.values())
        .map(|c| socket_address(&c.host))
        .collect();
    for host in hosts {
        let (family, prefix) = if host.is_ipv4() {
            ("-4", 32)
        } else {
            ("-6", 128)
        };
        let mut args = vec![family, "addr", "add"];
        let addr = format!("{host}/{prefix}");
        args.extend([addr.as_str(), "dev", "lo"]);
        if host.is_ipv6() {
            args.push("nodad");
        }
        let status = Command::new("ip").args(&args).status().unwrap();
        assert!(status.success(), "ip {args:?}");
    }
}

/// One test through a session: the message's recipient is `<name>@rcpt.test`.
/// None when the message was accepted, else the refusal.
async fn send_case(mx: &Mxguard, name: &str, case: &Case) -> Option<String> {
    let source = socket_address(&case.host);
    let port = mx.addr.port();
    let target = match source {
        IpAddr::V4(_) => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        IpAddr::V6(_) => std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    };
    let mut c = Client::connect_from(&source.to_string(), target).await;
    let banner = c.reply().await;
    let steps = [
        format!("EHLO {}", case.helo),
        format!("MAIL FROM:{}", smtp_path(&case.mailfrom)),
        format!("RCPT TO:<{name}@rcpt.test>"),
        "DATA".to_string(),
    ];
    let mut transcript = banner.clone();
    for step in steps {
        let reply = c.cmd(&step).await;
        transcript.push_str(&format!("{step} -> {reply}"));
        if !(reply.starts_with('2') || reply.starts_with("354")) {
            return Some(transcript);
        }
    }
    let reply = c.cmd(&format!("Subject: {name}\r\n\r\nhi\r\n.")).await;
    c.cmd("QUIT").await;
    (!reply.starts_with("250")).then(|| format!("{transcript}end of DATA -> {reply}"))
}

/// A section's tests through one server; (name, why) of each that fails.
async fn session_section(section: &Section) -> Vec<(String, String)> {
    let fixture = serve(section);
    let sink = CaptureSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sections = format!(
        "[relay]\ndomains = [\"rcpt.test\"]\n{}[checks]\nspf = \"warn\"\ndmarc = \"warn\"\n{}",
        dns_config(&fixture),
        smtp_downstream(sink.addr.port())
    );
    let path = dir.path().to_path_buf();
    let mx = tokio::task::spawn_blocking(move || {
        Mxguard::start_with(&path, "listen = [\"[::]:0\"]\n", &sections)
    })
    .await
    .unwrap();
    let mut failures = Vec::new();
    let mut accepted = 0;
    for (name, case) in &section.tests {
        match send_case(&mx, name, case).await {
            Some(refused) => failures.push((name.clone(), format!("{name}: refused: {refused}"))),
            None => accepted += 1,
        }
    }
    let _mx = tokio::task::spawn_blocking(move || {
        if accepted > 0 {
            mx.wait_log_count(&["event=delivery", "status=sent"], accepted);
        }
        mx
    })
    .await
    .unwrap();
    for message in sink.captured() {
        let Some(name) = message
            .rcpts
            .first()
            .and_then(|r| r.strip_suffix("@rcpt.test"))
        else {
            continue;
        };
        let Some(case) = section.tests.get(name) else {
            continue;
        };
        let raw = String::from_utf8_lossy(&message.raw);
        let header: String = raw
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Authentication-Results: mx.test;"))
            .take_while(|l| !l.is_empty())
            .collect();
        let got = shown_result(&header);
        if !got.is_some_and(|r| case.result.results().contains(&r)) {
            failures.push((name.to_string(), format!("{name}: {header}")));
        }
    }
    failures
}

#[test]
fn rfc7208_suite_through_an_smtp_session() {
    let sections = load_suite();
    let (failures, total) = in_network_namespace(&[], move || {
        add_addresses(&sections);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let total: usize = sections.iter().map(|s| s.tests.len()).sum();
        let failures: Vec<(String, String)> = runtime.block_on(async {
            let runs = sections.iter().map(session_section);
            futures_util::future::join_all(runs)
                .await
                .into_iter()
                .flatten()
                .collect()
        });
        (failures, total)
    });
    println!(
        "SPF suite through an SMTP session: {} of {total} tests pass",
        total - failures.len()
    );
    let (unexpected, stale) = judge(&failures, NOT_SMTP);
    assert!(unexpected.is_empty(), "failing:\n{}", unexpected.join("\n"));
    assert!(stale.is_empty(), "listed but passing: {stale:?}");
}
