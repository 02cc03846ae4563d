//! The log as the operator meets it: the summary line of each connection,
//! lines sent to syslog, and the fail2ban filter in contrib/ checked with
//! Debian's `fail2ban-regex` against a sample log and against a log a real
//! mxguard wrote.

use crate::harness::*;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;

/// `fail2ban-regex LOG contrib/…/mxguard.conf`: (lines, matched).
fn fail2ban_regex(log: &Path) -> (usize, usize) {
    let filter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/filter.d/mxguard.conf");
    let out = Command::new("fail2ban-regex")
        .arg(log)
        .arg(&filter)
        .output()
        .expect("fail2ban-regex (apt-get install fail2ban)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    // "Lines: 12 lines, 0 ignored, 9 matched, 3 missed"
    let line = text
        .lines()
        .find(|l| l.starts_with("Lines: "))
        .unwrap_or_else(|| panic!("no summary in: {text}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 4, "{line}");
    (numbers[0], numbers[2])
}

/// `fail2ban-regex -o ip LOG …/mxguard.conf`: what fail2ban would ban, one
/// entry per matched line, in log order.
fn fail2ban_addresses(log: &Path) -> Vec<String> {
    let filter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/filter.d/mxguard.conf");
    let out = Command::new("fail2ban-regex")
        .args(["-o", "ip"])
        .arg(log)
        .arg(&filter)
        .output()
        .expect("fail2ban-regex (apt-get install fail2ban)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_fail2ban_filter_matches_bans_and_bot_lines_only() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fail2ban/sample.log");
    // 19 lines: bans (file and syslog, IPv4 and IPv6 /64s), protocol
    // errors (IPv4 and IPv6), max_errors, a dictionary attack, pregreet,
    // improper pipelining;
    // not a relay refusal, an accept, a disconnect summary, nor the lines
    // whose client-controlled HELO, sender or recipient says `check=…`
    // (nor such a line in the field order of older versions).
    assert_eq!(fail2ban_regex(&sample), (19, 12));
    assert_eq!(
        fail2ban_addresses(&sample),
        [
            "192.0.2.7",
            "192.0.2.7",
            "192.0.2.7",
            "192.0.2.7",
            // The network mxguard banned, not one address of it.
            "2001:db8:1:2::/64",
            "203.0.113.9",
            "203.0.113.10",
            "192.0.2.99",
            "192.0.2.98",
            "2001:db8:1:2::77",
            "2001:db8:5:6::/64",
            "203.0.113.22",
        ]
    );
}

#[tokio::test]
async fn a_real_bot_session_feeds_fail2ban_and_the_summary_line_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let _sink = Sink::start(dir.path(), sink_port, &[]);
    let config = format!(
        "{}[limits]\nmax_errors = 2\n[ban]\nmax_retry = 1\n",
        relay_to(sink_port)
    );
    let mx = Mxguard::start(dir.path(), &config);

    // A client with one message, one refused relay attempt and one
    // unknown command.
    let mut c = Client::greet_from("127.0.0.50", mx.addr, "client.test").await;
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").await, "250 2.1.0 Ok\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<x@elsewhere.test>").await,
        "554 5.7.1 <x@elsewhere.test>: Relay access denied\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<carol@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    c.cmd("DATA").await;
    c.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as "));
    assert!(c.cmd("XYZZY").await.starts_with("502 5.5.2"));
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    let summary = mx.wait_log(&["event=disconnect", "client=127.0.0.50"]);
    for field in [
        "helo=client.test",
        "commands=8",
        "accepted=1",
        "rejected=2",
        "tempfailed=0",
        "rcpts=2",
        "last_reject=\"502 5.5.2 Error: command not recognized\"",
    ] {
        assert!(summary.contains(field), "{field} in {summary}");
    }
    let bytes: u64 = summary
        .split(" bytes=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes > 20, "{summary}");
    assert!(summary.contains(" duration="), "{summary}");

    // The seed's bot, thrown out and banned.
    let mut bot = Client::connect_from("127.0.0.51", mx.addr).await;
    bot.reply().await;
    bot.cmd(".").await;
    bot.cmd("").await;
    bot.rest().await;
    mx.wait_log(&["event=ban", "client=127.0.0.51"]);

    // A client whose sender and recipient say `check=…`: its relay
    // refusals are ordinary ones.
    let mut sly = Client::greet_from("127.0.0.52", mx.addr, "sly.test").await;
    assert_eq!(
        sly.cmd("MAIL FROM:<\"x check=protocol\"@sly.test>").await,
        "250 2.1.0 Ok\r\n"
    );
    assert!(sly
        .cmd("RCPT TO:<\"y check=max_errors \"@elsewhere.test>")
        .await
        .starts_with("554 5.7.1 "));
    assert_eq!(sly.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    let sly_line = mx.wait_log(&["event=reject", "client=127.0.0.52"]);
    assert!(
        sly_line.contains(
            " check=relay action=reject helo=sly.test from=\"<\\\"x check=protocol\\\"@sly.test>\""
        ),
        "{sly_line}"
    );
    mx.wait_log(&["event=disconnect", "client=127.0.0.52"]);

    // The bot's two 50x lines, its max_errors line and its ban match, and
    // so does the good client's unknown command (a protocol error); its
    // relay refusal, accept and summary do not, nor anything of the sly
    // client's.
    let (lines, matched) = fail2ban_regex(&mx.log_path());
    let log = std::fs::read_to_string(mx.log_path()).unwrap();
    assert_eq!((lines, matched), (log.lines().count(), 5), "{log}");
    let mut banned = fail2ban_addresses(&mx.log_path());
    banned.sort();
    assert_eq!(
        banned,
        [
            "127.0.0.50",
            "127.0.0.51",
            "127.0.0.51",
            "127.0.0.51",
            "127.0.0.51"
        ],
        "{log}"
    );
}

#[test]
fn lines_go_to_syslog_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&socket_path).unwrap();
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let config = dir.path().join("mxguard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhostname = \"mx.test\"\nlisten = [\"127.0.0.1:0\"]\n[spool]\ndir = \"spool\"\n\
             [log]\nsyslog = true\nsyslog_socket = \"{}\"\n[abuse]\ngreet_wait = \"0s\"\n[checks]\ndmarc = \"off\"\n",
            socket_path.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["serve", "--config"])
        .arg(&config)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = syslog.recv(&mut buf).expect("a datagram from mxguard");
    let _ = child.kill();
    let _ = child.wait();
    let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
    // <mail.info>Nov 29 15:13:06 mxguard[PID]: event=listen address=…
    assert!(datagram.starts_with("<22>"), "{datagram}");
    let pid = child.id();
    assert!(
        datagram.contains(&format!(" mxguard[{pid}]: event=listen address=127.0.0.1:")),
        "{datagram}"
    );
    let stamp = &datagram[4..19];
    assert_eq!(stamp.as_bytes()[6], b' ', "{datagram}");
    assert_eq!(&stamp[9..10], ":", "{datagram}");
}
