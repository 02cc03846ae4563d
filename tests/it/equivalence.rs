//! One decision: for a matrix of client profiles on a DNS of its own, the
//! real SMTP session, `mxguard check` (run against the same server, so with
//! its live state) and the policy server give the same verdict with the
//! same reply code and text — but for the stages a front end names as not
//! its own (the policy server leaves relay control, spam traps and
//! recipient verification to Postfix, and answers for the other stages).

use crate::dns_fixture::DnsFixture;
use crate::harness::*;

const REVERSE: &str = "$ORIGIN 127.in-addr.arpa.\n$TTL 60\n\
@ IN SOA ns.eq.test. hostmaster.eq.test. ( 1 3600 600 86400 60 )\n@ IN NS ns.eq.test.\n\
11.1.0 IN PTR h11.eq.test.\n12.1.0 IN PTR forged.eq.test.\n20.1.0 IN PTR h20.eq.test.\n\
21.1.0 IN PTR h21.eq.test.\n22.1.0 IN PTR h22.eq.test.\n31.1.0 IN PTR h31.eq.test.\n\
32.1.0 IN PTR h32.eq.test.\n40.1.0 IN PTR h40.eq.test.\n50.1.0 IN PTR h50.eq.test.\n";

const HOSTS: &str = "$ORIGIN eq.test.\n$TTL 60\n\
@ IN SOA ns.eq.test. hostmaster.eq.test. ( 1 3600 600 86400 60 )\n@ IN NS ns.eq.test.\n\
ns IN A 127.0.0.53\n@ IN MX 10 h11.eq.test.\n@ IN TXT \"v=spf1 ip4:127.0.1.0/24 -all\"\n\
h11 IN A 127.0.1.11\nforged IN A 127.0.1.99\nh20 IN A 127.0.1.20\nh21 IN A 127.0.1.21\n\
h22 IN A 127.0.1.22\nh31 IN A 127.0.1.31\nh32 IN A 127.0.1.32\nh40 IN A 127.0.1.40\nh50 IN A 127.0.1.50\n\
spf IN MX 10 h11.eq.test.\nspf IN TXT \"v=spf1 -all\"\n";

const LISTS: &str = "$ORIGIN bl.test.\n$TTL 60\n\
@ IN SOA ns.eq.test. hostmaster.eq.test. ( 1 3600 600 86400 60 )\n@ IN NS ns.eq.test.\n\
2.0.0.127 IN A 127.0.0.2\n20.1.0.127 IN A 127.0.0.2\n22.1.0.127 IN A 127.0.0.2\n";

const ALLOW: &str = "$ORIGIN wl.test.\n$TTL 60\n\
@ IN SOA ns.eq.test. hostmaster.eq.test. ( 1 3600 600 86400 60 )\n@ IN NS ns.eq.test.\n\
2.0.0.127 IN A 127.0.0.2\n21.1.0.127 IN A 127.0.0.2\n";

const ROOT: &str = "$ORIGIN test.\n$TTL 60\n\
@ IN SOA ns.eq.test. hostmaster.eq.test. ( 1 3600 600 86400 60 )\n@ IN NS ns.eq.test.\n";

fn zones() -> Vec<(String, String)> {
    [
        ("127.in-addr.arpa.", REVERSE),
        ("eq.test.", HOSTS),
        ("bl.test.", LISTS),
        ("wl.test.", ALLOW),
        ("test.", ROOT),
    ]
    .into_iter()
    .map(|(o, t)| (o.to_string(), t.to_string()))
    .collect()
}

fn config(dns: &DnsFixture, dir: &std::path::Path, policy_port: u16) -> String {
    std::fs::write(dir.join("recipients"), "user@example.test\n").unwrap();
    std::fs::write(dir.join("traps"), "trap@example.test\n").unwrap();
    std::fs::write(dir.join("badmailfrom"), "spammer@eq.test\n").unwrap();
    std::fs::write(dir.join("exceptions"), "127.0.1.22 partner\n").unwrap();
    std::fs::write(dir.join("forwarders"), "h32.eq.test\n").unwrap();
    format!(
        r#"[relay]
domains = ["example.test"]
[recipients]
table = "recipients"
spamtraps = "traps"
[lists]
sender_blocklist = "badmailfrom"
client_exceptions = "exceptions"
{dns}
[checks]
dmarc = "off"
reverse_dns = "tempfail"
forged_reverse_dns = "tempfail"
helo = "reject"
sender_domain = "reject"
spf = "reject"
sender_blocklist = "reject"
forwarders = "forwarders"

[[dnsbl]]
zone = "bl.test"

[[dnsbl]]
zone = "wl.test"
weight = -10

[greylist]
enabled = true
when = "always"
delay = "5m"

[limits]
messages_per_hour = 40

[policy_server]
listen = "127.0.0.1:{policy_port}"
allow = ["127.0.0.0/8"]
"#,
        dns = dns.config()
    )
}

/// One profile: who, what it sends, and whether the policy server judges
/// the stage that decides it.
struct Profile {
    name: &'static str,
    client: &'static str,
    helo: &'static str,
    from: &'static str,
    rcpt: &'static str,
    /// The reply (`NNN X.Y.Z text`), or `None` for accepted.
    reply: Option<&'static str>,
    /// The deciding stage is Postfix's own (relay control, traps,
    /// recipient verification), which the policy server does not judge.
    postfix_decides: bool,
}

const PROFILES: &[Profile] = &[
    Profile { name: "clean", client: "127.0.1.11", helo: "h11.eq.test", from: "a@eq.test", rcpt: "user@example.test", reply: None, postfix_decides: false },
    Profile { name: "DNSBL-listed", client: "127.0.1.20", helo: "h20.eq.test", from: "a@eq.test", rcpt: "user@example.test", reply: Some("554 5.7.1 Service unavailable; Client host [127.0.1.20] blocked using bl.test"), postfix_decides: false },
    Profile { name: "DNSWL-listed", client: "127.0.1.21", helo: "h21.eq.test", from: "new@eq.test", rcpt: "user@example.test", reply: None, postfix_decides: false },
    Profile { name: "no PTR", client: "127.0.1.13", helo: "h11.eq.test", from: "a@eq.test", rcpt: "user@example.test", reply: Some("450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.1.13]"), postfix_decides: false },
    Profile { name: "forged PTR", client: "127.0.1.12", helo: "h11.eq.test", from: "a@eq.test", rcpt: "user@example.test", reply: Some("450 4.7.25 Client host rejected: IP name possibly forged [127.0.1.12]"), postfix_decides: false },
    Profile { name: "bad HELO", client: "127.0.1.11", helo: "localhost", from: "a@eq.test", rcpt: "user@example.test", reply: Some("504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"), postfix_decides: false },
    Profile { name: "unknown sender domain", client: "127.0.1.11", helo: "h11.eq.test", from: "a@nowhere.test", rcpt: "user@example.test", reply: Some("550 5.1.8 <a@nowhere.test>: Sender address rejected: Domain not found"), postfix_decides: false },
    Profile { name: "SPF fail", client: "127.0.1.11", helo: "h11.eq.test", from: "a@spf.eq.test", rcpt: "user@example.test", reply: Some("550 5.7.23 <a@spf.eq.test>: Sender address rejected: SPF check failed"), postfix_decides: false },
    Profile { name: "forwarder (its SPF fail forgiven)", client: "127.0.1.32", helo: "h32.eq.test", from: "a@spf.eq.test", rcpt: "user@example.test", reply: Some("451 4.7.1 <user@example.test>: Recipient address rejected: Greylisted, try again in N seconds"), postfix_decides: false },
    Profile { name: "blocked sender", client: "127.0.1.11", helo: "h11.eq.test", from: "spammer@eq.test", rcpt: "user@example.test", reply: Some("554 5.7.1 <spammer@eq.test>: Sender address rejected: Access denied"), postfix_decides: false },
    Profile { name: "unknown recipient", client: "127.0.1.11", helo: "h11.eq.test", from: "a@eq.test", rcpt: "nobody@example.test", reply: Some("550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"), postfix_decides: true },
    Profile { name: "trap recipient", client: "127.0.1.31", helo: "h31.eq.test", from: "a@eq.test", rcpt: "trap@example.test", reply: Some("550 5.1.1 <trap@example.test>: Recipient address rejected: User unknown"), postfix_decides: true },
    Profile { name: "banned client", client: "127.0.1.40", helo: "h40.eq.test", from: "a@eq.test", rcpt: "user@example.test", reply: Some("421 4.7.0 mx.test Error: 127.0.1.40 temporarily blocked until"), postfix_decides: false },
    Profile { name: "greylisted triplet", client: "127.0.1.11", helo: "h11.eq.test", from: "grey@eq.test", rcpt: "user@example.test", reply: Some("451 4.7.1 <user@example.test>: Recipient address rejected: Greylisted, try again in N seconds"), postfix_decides: false },
    Profile { name: "over a rate", client: "127.0.1.50", helo: "h50.eq.test", from: "a@eq.test", rcpt: "user@example.test", reply: Some("450 4.7.1 Error: too much mail from 127.0.1.50"), postfix_decides: false },
    Profile { name: "exception-listed", client: "127.0.1.22", helo: "h22.eq.test", from: "a@eq.test", rcpt: "user@example.test", reply: None, postfix_decides: false },
];

/// A reply as compared: the greylisting wait (seconds, which pass between
/// the front ends' turns) and a ban's end time are not part of it.
fn normalized(reply: &str) -> String {
    let reply = reply.trim_end();
    if let Some((head, _)) = reply.split_once("try again in ") {
        return format!("{head}try again in N seconds");
    }
    if let Some((head, _)) = reply.split_once(" until ") {
        return format!("{head} until");
    }
    reply.to_string()
}

/// The SMTP session's verdict: the first refusal, or `None` for a 250.
async fn by_session(mx: &Mxguard, p: &Profile) -> Option<String> {
    let mut c = Client::connect_from(p.client, mx.addr).await;
    let banner = c.reply().await;
    if !banner.starts_with("220 ") {
        return Some(normalized(&banner));
    }
    for line in [
        format!("EHLO {}", p.helo),
        format!("MAIL FROM:<{}>", p.from),
        format!("RCPT TO:<{}>", p.rcpt),
    ] {
        let reply = c.cmd(&line).await;
        if !reply.starts_with('2') {
            return Some(normalized(&reply));
        }
    }
    c.cmd("QUIT").await;
    None
}

/// `mxguard check`'s verdict (asking the running server).
fn by_check(mx: &Mxguard, p: &Profile) -> (Option<String>, String) {
    let out = mx.cli(&[
        "check", "--client", p.client, "--helo", p.helo, "--from", p.from, "--rcpt", p.rcpt,
    ]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let verdict = report
        .lines()
        .find_map(|l| l.strip_prefix("verdict: "))
        .unwrap_or_else(|| {
            panic!(
                "no verdict: {report}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let reply = (verdict != "accept").then(|| {
        let (_, reply) = verdict.split_once(": ").unwrap();
        normalized(reply)
    });
    (reply, report)
}

/// The policy server's answer to a RCPT request: the reply it refuses
/// with, or `None` for DUNNO.
async fn by_policy_server(port: u16, p: &Profile) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={}\n\
         helo_name={}\nsender={}\nrecipient={}\ninstance={}\n\n",
        p.client, p.helo, p.from, p.rcpt, p.name
    );
    let answer = policy_ask(&mut stream, request.as_bytes()).await;
    let action = answer.trim().strip_prefix("action=").unwrap().to_string();
    (action != "DUNNO").then(|| normalized(action.trim_start_matches("DEFER_IF_PERMIT ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_the_check_and_the_policy_server_decide_alike() {
    let dns = DnsFixture::with_zones(zones());
    let dir = tempfile::tempdir().unwrap();
    let policy_port = free_port();
    let mx = Mxguard::start(dir.path(), &config(&dns, dir.path(), policy_port));
    mx.wait_log(&["event=listen", "service=policy"]);

    // The state some profiles need: the clean triplet passed greylisting
    // (greylisted, then retried after the delay), a ban, a rate used up.
    let clean = &PROFILES[0];
    assert!(by_session(&mx, clean).await.unwrap().contains("Greylisted"));
    mx.advance_clock(301);
    assert_eq!(by_session(&mx, clean).await, None);
    assert!(mx.control("ban add 127.0.1.40 3600").starts_with("ok"));
    let mut flood = Client::connect_from("127.0.1.50", mx.addr).await;
    flood.reply().await;
    flood.cmd("EHLO h50.eq.test").await;
    for _ in 0..40 {
        assert_eq!(flood.cmd("MAIL FROM:<a@eq.test>").await, "250 2.1.0 Ok\r\n");
        assert_eq!(flood.cmd("RSET").await, "250 2.0.0 Ok\r\n");
    }
    flood.cmd("QUIT").await;

    for p in PROFILES {
        // Read-only first, the session (which may spring a trap) last.
        let expected = p.reply.map(str::to_string);
        let (check, report) = by_check(&mx, p);
        assert_eq!(check, expected, "{}: mxguard check\n{report}", p.name);
        let policy = by_policy_server(policy_port, p).await;
        if p.postfix_decides {
            // Not the policy server's to judge: it answers for the other
            // stages only (here greylisting), never with this refusal.
            assert_ne!(
                policy, expected,
                "{}: the policy server leaves it to Postfix",
                p.name
            );
        } else {
            assert_eq!(policy, expected, "{}: policy server", p.name);
        }
        let session = by_session(&mx, p).await;
        assert_eq!(session, expected, "{}: SMTP session", p.name);
    }
}
