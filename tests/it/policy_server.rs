//! The Postfix policy delegation server: a real Postfix asks mxguard with
//! `check_policy_service` and refuses what mxguard refuses, with mxguard's
//! code, enhanced status and text, and falls back to its default action
//! when mxguard is down; the protocol on a raw socket (reuse, malformed
//! requests); `mxguard policy-server` alone; exemptions, greylisting and
//! bans; warn mode; a Unix socket. Who may ask: bans and rate counts only
//! with `count_offences`; TCP peers outside `allow` closed unanswered; the
//! socket 0660 whatever the umask, open to its group only; per-peer caps
//! that keep one peer's idle sockets from shutting another out.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use crate::postfix::Postfix;
use std::io::{Read, Write};
use tokio::io::AsyncWriteExt;

/// mxguard's policy server at `listen`, with the fixture DNS, the DNSBL
/// bl.test (lists 127.0.0.20 and 127.0.0.21) and reverse DNS required.
fn policy_config(dns: &DnsFixture, listen: &str, extra: &str) -> String {
    policy_config_with(dns, &format!("listen = \"{listen}\"\n"), extra)
}

/// As [`policy_config`], with `policy` as the `[policy_server]` lines.
fn policy_config_with(dns: &DnsFixture, policy: &str, extra: &str) -> String {
    format!(
        r#"[policy_server]
{policy}
{dns}
[checks]
dmarc = "off"
reverse_dns = "reject"

[[dnsbl]]
zone = "bl.test"
codes = ["127.0.0.2-127.0.0.11"]
message = "Mail from {{client_ip}} refused: listed in {{zone}} ({{txt}})"
{extra}"#,
        dns = dns.config()
    )
}

/// mxguard's reply to 127.0.0.20.
const LISTED: &str = "554 5.7.1 Mail from 127.0.0.20 refused: listed in bl.test (listed for sending spam, see https://bl.test/lookup)";

/// The same reply from Postfix: code and enhanced status, then Postfix's
/// words for a refused recipient, then mxguard's text.
const POSTFIX_LISTED: &str = "554 5.7.1 <alice@example.test>: Recipient address rejected: Mail from 127.0.0.20 refused: listed in bl.test (listed for sending spam, see https://bl.test/lookup)";

/// swaks through Postfix from `source`; its transcript.
fn send(postfix: &Postfix, source: &str, to: &str) -> String {
    swaks(
        format!("127.0.0.1:{}", postfix.port).parse().unwrap(),
        &[
            "--local-interface",
            source,
            "--helo",
            "mail1.client.test",
            "--from",
            "someone@client.test",
            "--to",
            to,
        ],
    )
}

#[test]
fn postfix_refuses_with_mxguards_reply_and_accepts_clean_clients() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let mut mx = Mxguard::start(dir.path(), &policy_config(&dns, "127.0.0.1:0", ""));
    let policy = mx.policy_listen();
    let postfix = Postfix::start_with(
        &dir.path().join("postfix"),
        free_port(),
        &["alice@example.test"],
        &format!(
            "smtpd_peername_lookup = no\n\
             smtpd_recipient_restrictions = reject_unauth_destination, \
             check_policy_service {{ inet:{policy}, default_action=DUNNO }}, \
             reject_unlisted_recipient, permit\n"
        ),
    );

    // A client in the DNSBL: Postfix refuses with mxguard's code, enhanced
    // status and text, and logs it.
    let listed = send(&postfix, "127.0.0.20", "alice@example.test");
    assert!(
        listed.contains(&format!("<** {POSTFIX_LISTED}")),
        "{listed}"
    );
    let line = mx.wait_log(&["event=reject", "client=127.0.0.20", "service=policy"]);
    for part in [
        "helo=mail1.client.test",
        "from=<someone@client.test>",
        "to=<alice@example.test>",
        "stage=rcpt",
        "check=dnsbl:bl.test",
        "action=reject",
        "reply=\"554 5.7.1 Mail from 127.0.0.20 refused",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let logged = format!(
        "NOQUEUE: reject: RCPT from unknown[127.0.0.20]: {POSTFIX_LISTED}; from=<someone@client.test> to=<alice@example.test>"
    );
    wait_for("Postfix to log the reject", || {
        let log = std::fs::read_to_string(&postfix.log).unwrap_or_default();
        log.contains(&logged).then_some(())
    });

    // A clean client: DUNNO, and Postfix takes the message.
    let clean = send(&postfix, "127.0.0.30", "alice@example.test");
    assert!(clean.contains("<-  250 2.1.5 Ok"), "{clean}");
    assert!(clean.contains("<-  250 2.0.0 Ok: queued as"), "{clean}");

    // A PTR lookup that fails (SERVFAIL) is DEFER_IF_PERMIT: deferred when
    // Postfix would accept, but Postfix's own later reject still wins.
    let deferred = send(&postfix, "127.0.0.50", "alice@example.test");
    assert!(
        deferred.contains(
            "<** 450 4.7.1 <alice@example.test>: Recipient address rejected: Client host rejected: IP name lookup failed [127.0.0.50]"
        ),
        "{deferred}"
    );
    mx.wait_log(&[
        "event=reject",
        "client=127.0.0.50",
        "check=reverse_dns",
        "action=defer_if_permit",
        "service=policy",
    ]);
    let unknown = send(&postfix, "127.0.0.50", "nobody@example.test");
    assert!(
        unknown.contains("<** 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in relay recipient table"),
        "{unknown}"
    );
    // The clean client's requests were never refused nor logged.
    assert!(!mx
        .log_lines()
        .iter()
        .any(|l| l.contains("client=127.0.0.30")));

    // mxguard down: Postfix falls back to the documented default_action
    // (DUNNO), and mail flows without mxguard's checks.
    mx.terminate();
    let unchecked = send(&postfix, "127.0.0.20", "alice@example.test");
    assert!(
        unchecked.contains("<-  250 2.0.0 Ok: queued as"),
        "{unchecked}"
    );
}

/// A raw policy client.
struct PolicyClient {
    stream: std::net::TcpStream,
}

impl PolicyClient {
    fn connect(addr: &str) -> PolicyClient {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        // A bound on a server that would not answer; never reached when
        // the server behaves.
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        PolicyClient { stream }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One answer: the bytes up to the empty line.
    fn answer(&mut self) -> String {
        let mut answer = Vec::new();
        let mut byte = [0u8];
        while !answer.ends_with(b"\n\n") {
            let n = self.stream.read(&mut byte).unwrap();
            assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&answer));
            answer.push(byte[0]);
        }
        String::from_utf8(answer).unwrap()
    }

    /// Everything up to the server's close (a reset, when the server
    /// closed with bytes of ours unread).
    fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        rest
    }
}

fn rcpt_request(client: &str) -> String {
    rcpt_request_in(client, "1234.5678.9.0")
}

/// A RCPT request of the mail transaction `instance`.
fn rcpt_request_in(client: &str, instance: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address={client}\nclient_name=unknown\nreverse_client_name=unknown\n\
         helo_name=mail1.client.test\nsender=someone@client.test\n\
         recipient=alice@example.test\nrecipient_count=0\nqueue_id=\n\
         instance={instance}\nsize=0\nccert_subject=\nunknown_attribute=x=y\n\n"
    )
}

#[test]
fn policy_server_command_speaks_the_protocol_and_closes_on_malformed_requests() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start_policy_server(
        dir.path(),
        &policy_config(&dns, "127.0.0.1:0", "[limits]\ncommand_timeout = \"30s\"\n"),
    );
    // No SMTP listener: the one listen line is the policy server's.
    let listening: Vec<String> = mx
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("event=listen"))
        .collect();
    assert_eq!(listening.len(), 1, "{listening:?}");
    let addr = mx.addr.to_string();
    assert_eq!(mx.policy_listen(), addr);

    // One connection, many requests; unknown attributes are ignored.
    let mut c = PolicyClient::connect(&addr);
    c.send(rcpt_request("127.0.0.20").as_bytes());
    assert_eq!(c.answer(), format!("action={LISTED}\n\n"));
    c.send(rcpt_request("127.0.0.30").as_bytes());
    assert_eq!(c.answer(), "action=DUNNO\n\n");
    // Several at once, and an unknown request type: DUNNO, logged.
    c.send(
        format!(
            "{}request=other_policy\nclient_address=127.0.0.20\n\n",
            rcpt_request("127.0.0.20")
        )
        .as_bytes(),
    );
    assert_eq!(c.answer(), format!("action={LISTED}\n\n"));
    assert_eq!(c.answer(), "action=DUNNO\n\n");
    mx.wait_log(&[
        "event=policy_skip",
        "client=127.0.0.1",
        "reason=\"unknown request type \\\"other_policy\\\"\"",
    ]);
    // States without checks: DUNNO, quietly.
    c.send(b"request=smtpd_access_policy\nprotocol_state=VRFY\nclient_address=127.0.0.20\n\n");
    assert_eq!(c.answer(), "action=DUNNO\n\n");
    drop(c);

    // Malformed requests: no answer, the connection closed, the error logged.
    let malformed: [(&[u8], &str); 4] = [
        (
            b"request=smtpd_access_policy\nGET / HTTP/1.0\n\n",
            "error=\"line 2: no `=` in \\\"GET / HTTP/1.0\\\"\"",
        ),
        (
            &[b"helo_name=".as_slice(), &[b'a'; 5000], b"\n\n"].concat(),
            "error=\"line 1: longer than 4096 bytes\"",
        ),
        (b"\xff\xfe\x00=\x80\n\n", "error=\"line 1: not UTF-8\""),
        (
            &"x=1\n".repeat(101).into_bytes(),
            "error=\"more than 100 attributes\"",
        ),
    ];
    for (i, (request, error)) in malformed.iter().enumerate() {
        let mut c = PolicyClient::connect(&addr);
        // A good request first: the bad one ends a connection in use.
        c.send(rcpt_request("127.0.0.30").as_bytes());
        assert_eq!(c.answer(), "action=DUNNO\n\n");
        c.send(request);
        assert_eq!(c.rest(), b"", "no answer to malformed request {i}");
        mx.wait_log_count(&["event=policy_error", "client=127.0.0.1", error], 1);
    }
    // A request cut off by the close is logged too.
    let mut c = PolicyClient::connect(&addr);
    c.send(b"request=smtpd_access_policy\nprotocol_state=RC");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.rest(), b"");
    mx.wait_log(&[
        "event=policy_error",
        "error=\"connection closed inside a request\"",
    ]);

    // The server still serves.
    let mut c = PolicyClient::connect(&addr);
    c.send(rcpt_request("127.0.0.30").as_bytes());
    assert_eq!(c.answer(), "action=DUNNO\n\n");
}

#[test]
fn warn_mode_only_logs_and_a_unix_socket_replaces_a_stale_one() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("policy.sock");
    // A socket left behind by an earlier run.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mx = Mxguard::start(
        dir.path(),
        &policy_config(
            &dns,
            &format!("unix:{}", socket.display()),
            "[policy]\nmode = \"warn\"\n",
        ),
    );
    assert_eq!(mx.policy_listen(), format!("unix:{}", socket.display()));
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let ask = |stream: &mut std::os::unix::net::UnixStream| {
        stream
            .write_all(rcpt_request("127.0.0.20").as_bytes())
            .unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8];
        while !answer.ends_with(b"\n\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1);
            answer.push(byte[0]);
        }
        String::from_utf8(answer).unwrap()
    };
    assert_eq!(ask(&mut stream), "action=DUNNO\n\n");
    let line = mx.wait_log(&["event=would_reject", "client=127.0.0.20"]);
    assert!(line.contains("check=dnsbl:bl.test"), "{line}");
    assert!(line.contains("action=warn"), "{line}");
    assert!(line.contains("service=policy"), "{line}");
    // The same transaction asks again (its next recipient): the warning
    // is not logged twice.
    assert_eq!(ask(&mut stream), "action=DUNNO\n\n");
    drop(stream);
    let mut c = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(ask(&mut c), "action=DUNNO\n\n");
    // A new connection is a new transaction for mxguard's memory.
    mx.wait_log_count(&["event=would_reject", "client=127.0.0.20"], 2);
    assert_eq!(
        mx.log_lines()
            .iter()
            .filter(|l| l.contains("event=would_reject"))
            .count(),
        2
    );
    assert!(!mx.log_lines().iter().any(|l| l.contains("event=reject")));
}

#[test]
fn exemptions_greylisting_and_bans_apply_as_in_a_session() {
    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start_policy_server(
        dir.path(),
        &policy_config(
            &dns,
            "127.0.0.1:0",
            "[relay]\ntrusted_networks = [\"127.0.0.21/32\"]\n\
             [greylist]\nenabled = true\nwhen = \"always\"\ndelay = \"5m\"\n",
        ),
    );
    let mut c = PolicyClient::connect(&mx.addr.to_string());
    // 127.0.0.21 is in bl.test, but trusted: no check, no greylisting.
    c.send(rcpt_request("127.0.0.21").as_bytes());
    assert_eq!(c.answer(), "action=DUNNO\n\n");

    // A clean client is greylisted at its first attempt, then passes.
    c.send(rcpt_request("127.0.0.30").as_bytes());
    assert_eq!(
        c.answer(),
        "action=451 4.7.1 <alice@example.test>: Recipient address rejected: Greylisted, try again in 300 seconds\n\n"
    );
    let line = mx.wait_log(&["event=reject", "client=127.0.0.30", "check=greylist"]);
    assert!(line.contains("action=tempfail"), "{line}");
    mx.advance_clock(300);
    c.send(rcpt_request("127.0.0.30").as_bytes());
    assert_eq!(c.answer(), "action=DUNNO\n\n");

    // Banned: mxguard's 421, after which Postfix disconnects the client.
    assert!(mx.control("ban add 127.0.0.30 600").starts_with("ok"));
    c.send(rcpt_request("127.0.0.30").as_bytes());
    let banned = c.answer();
    assert!(
        banned.starts_with("action=421 4.7.0 mx.test Error: 127.0.0.30 temporarily blocked until "),
        "{banned}"
    );
    mx.wait_log(&["event=reject", "client=127.0.0.30", "check=ban"]);
}

/// A CONNECT request (Postfix asks it from `smtpd_client_restrictions`).
fn connect_request(client: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address={client}\n\
         instance=\n\n"
    )
}

/// Refusals and requests from one client, with bans after two DNSBL
/// refusals and one connection a minute: what they leave behind.
async fn offences_and_rates(dir: &std::path::Path, count_offences: bool) -> Mxguard {
    let dns = DnsFixture::start();
    let mx = Mxguard::start(
        dir,
        &policy_config_with(
            &dns,
            &format!("listen = \"127.0.0.1:0\"\ncount_offences = {count_offences}\n"),
            "[ban]\nmax_retry = 2\nevents = [\"dnsbl:bl.test\"]\n\
             [limits]\nconnections_per_minute = 1\n",
        ),
    );
    let mut c = PolicyClient::connect(&mx.policy_listen());
    // Two transactions refused for a listed client: two offences, if
    // they count; then a third request.
    for instance in ["1.1", "1.2"] {
        c.send(rcpt_request_in("127.0.0.20", instance).as_bytes());
        assert_eq!(c.answer(), format!("action={LISTED}\n\n"));
    }
    c.send(rcpt_request_in("127.0.0.20", "1.3").as_bytes());
    let third = c.answer();
    // A clean client's connections, claimed twice.
    c.send(connect_request("127.0.0.30").as_bytes());
    assert_eq!(c.answer(), "action=DUNNO\n\n");
    c.send(connect_request("127.0.0.30").as_bytes());
    let second_connect = c.answer();
    // The clean client itself connects to the gateway.
    let mut session = Client::connect_from("127.0.0.30", mx.addr).await;
    let banner = session.reply().await;
    let bans = String::from_utf8(mx.cli(&["ban", "list"]).stdout).unwrap();
    if count_offences {
        assert!(
            third.starts_with(
                "action=421 4.7.0 mx.test Error: 127.0.0.20 temporarily blocked until "
            ),
            "{third}"
        );
        assert_eq!(
            second_connect,
            "action=421 4.7.0 mx.test Error: too many connections from 127.0.0.30\n\n"
        );
        assert_eq!(
            banner,
            "421 4.7.0 mx.test Error: too many connections from 127.0.0.30\r\n"
        );
        assert!(bans.contains("127.0.0.20"), "{bans}");
    } else {
        assert_eq!(third, format!("action={LISTED}\n\n"));
        assert_eq!(second_connect, "action=DUNNO\n\n");
        assert!(banner.starts_with("220 mx.test ESMTP"), "{banner}");
        assert_eq!(bans, "");
    }
    mx
}

#[tokio::test]
async fn requests_neither_ban_nor_count_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mx = offences_and_rates(dir.path(), false).await;
    assert!(!mx.log_lines().iter().any(|l| l.contains("event=offence")));
}

#[tokio::test]
async fn requests_ban_and_count_with_count_offences() {
    let dir = tempfile::tempdir().unwrap();
    let mx = offences_and_rates(dir.path(), true).await;
    mx.wait_log(&["event=ban", "client=127.0.0.20"]);
}

/// A request with no checks to run: mxguard answers `DUNNO` without a
/// lookup.
const VRFY_REQUEST: &[u8] =
    b"request=smtpd_access_policy\nprotocol_state=VRFY\nclient_address=192.0.2.1\n\n";

#[tokio::test]
async fn a_peer_outside_allow_is_closed_unanswered_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mx = Mxguard::start_policy_server(
        dir.path(),
        "[policy_server]\nlisten = \"127.0.0.1:0\"\nallow = [\"192.0.2.0/24\"]\n",
    );
    let mut c = tcp_from("127.0.0.1", &mx.addr.to_string()).await;
    c.write_all(VRFY_REQUEST).await.unwrap();
    assert_eq!(until_closed(&mut c).await, b"");
    let line = mx.wait_log(&["event=policy_refused"]);
    assert!(
        line.ends_with(" event=policy_refused client=127.0.0.1 reason=not_allowed service=policy"),
        "{line}"
    );
}

#[tokio::test]
async fn idle_sockets_of_one_peer_do_not_keep_another_out() {
    let dir = tempfile::tempdir().unwrap();
    // Room for three connections: two for each peer.
    let mx = Mxguard::start_policy_server(
        dir.path(),
        "[policy_server]\nlisten = \"127.0.0.1:0\"\nmax_connections_per_peer = 2\n\
         [limits]\nmax_connections = 3\n",
    );
    let addr = mx.addr.to_string();
    // 127.0.0.2 holds two silent connections; its third is closed at once
    // (so the two before it were accepted).
    let _held = [
        tcp_from("127.0.0.2", &addr).await,
        tcp_from("127.0.0.2", &addr).await,
    ];
    let mut third = tcp_from("127.0.0.2", &addr).await;
    assert_eq!(until_closed(&mut third).await, b"");
    let line = mx.wait_log(&["event=policy_refused"]);
    assert!(
        line.ends_with(
            " event=policy_refused client=127.0.0.2 reason=max_connections_per_peer service=policy"
        ),
        "{line}"
    );
    // Another peer is still served.
    let mut other = tcp_from("127.0.0.3", &addr).await;
    assert_eq!(
        policy_ask(&mut other, VRFY_REQUEST).await,
        "action=DUNNO\n\n"
    );
}

/// The policy server on a unix socket `policy.sock` in `dir`.
fn unix_config(dir: &std::path::Path, policy_extra: &str) -> String {
    format!(
        "[policy_server]\nlisten = \"unix:{}\"\n{policy_extra}",
        dir.join("policy.sock").display()
    )
}

/// Asks the policy server at `socket` one request, as root; the answer.
fn ask_unix(socket: &std::path::Path, request: &[u8]) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8];
    while !answer.ends_with(b"\n\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed early");
        answer.push(byte[0]);
    }
    String::from_utf8(answer).unwrap()
}

#[test]
fn a_unix_socket_is_0660_whatever_the_umask() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for umask in [0o000, 0o022] {
        let dir = tempfile::tempdir().unwrap();
        let mx = Mxguard::start_policy_server_with_umask(
            dir.path(),
            &unix_config(dir.path(), ""),
            umask,
        );
        let socket = dir.path().join("policy.sock");
        let meta = std::fs::symlink_metadata(&socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660, "umask {umask:03o}");
        // Nothing else was left beside it.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["mxguard.log", "mxguard.toml", "policy.sock", "spool"]
        );
        assert_eq!(ask_unix(&socket, VRFY_REQUEST), "action=DUNNO\n\n");
        drop(mx);
    }
}

/// python3 as nobody:nogroup and no other group, running `script`.
fn as_nobody(script: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", script])
        .args(args);
    command
}

/// Connects to the socket `argv[1]`, asks `argv[2]`: prints the answer,
/// or why it could not connect.
const ASK_AS_NOBODY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.strerror)
    sys.exit(0)
s.settimeout(30)
s.sendall(sys.argv[2].encode())
answer = b""
while not answer.endswith(b"\n\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
sys.stdout.write(answer.decode())
"#;

/// Opens `argv[2]` silent connections to the socket `argv[1]`; prints
/// whether the server closed the last one, then holds them all until its
/// standard input closes.
const HOLD_AS_NOBODY: &str = r#"
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    held.append(s)
held[-1].settimeout(30)
try:
    print("closed" if held[-1].recv(1) == b"" else "answered", flush=True)
except socket.timeout:
    print("still open", flush=True)
sys.stdin.read()
"#;

#[test]
fn only_the_socket_group_can_connect_and_each_user_is_capped() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // nobody may pass through the test directory: only the socket's own
    // permissions stand in the way.
    let traversable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(dir.path(), traversable).unwrap();
    let socket = dir.path().join("policy.sock");
    let socket_arg = socket.to_str().unwrap();
    let request = std::str::from_utf8(VRFY_REQUEST).unwrap();

    // Without a group: the socket is root's and root's group's alone.
    let mut mx = Mxguard::start_policy_server(dir.path(), &unix_config(dir.path(), ""));
    let out = as_nobody(ASK_AS_NOBODY, &[socket_arg, request])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "connect: Permission denied\n"
    );
    mx.terminate();

    // Given to nogroup: nobody (in it) is answered; two connections at
    // once for each user, three in all.
    let config = std::fs::read_to_string(&mx.config).unwrap().replace(
        "[policy_server]\n",
        "[limits]\nmax_connections = 3\n\
         [policy_server]\ngroup = \"nogroup\"\nmax_connections_per_peer = 2\n",
    );
    std::fs::write(&mx.config, config).unwrap();
    mx.restart();
    let out = as_nobody(ASK_AS_NOBODY, &[socket_arg, request])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "action=DUNNO\n\n");

    // nobody holds two silent connections; its third is closed at once.
    let mut hold = as_nobody(HOLD_AS_NOBODY, &[socket_arg, "3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufReader::new(hold.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said, "closed\n");
    let line = mx.wait_log(&["event=policy_refused"]);
    assert!(
        line.ends_with(
            " event=policy_refused client=local uid=65534 reason=max_connections_per_peer service=policy"
        ),
        "{line}"
    );
    // root still gets the last place.
    assert_eq!(ask_unix(&socket, VRFY_REQUEST), "action=DUNNO\n\n");
    drop(hold.stdin.take());
    hold.wait().unwrap();
}
