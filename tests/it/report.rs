//! `mxguard report`: the real binary on hand-written logs (text and JSON
//! lines, a syslog prefix, a gzip-rotated file, a junk line) with every
//! number of every section checked in the text and JSON output; on the log
//! of a real session; and its HTML drawn by headless Chromium.

use crate::harness::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .join(name)
}

fn report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .arg("report")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The day before's log, rotated and compressed as logrotate leaves it
/// (named `.gz`, the report goes by content), next to today's.
fn rotated_logs(dir: &Path) -> (String, String) {
    let gz = dir.join("mx.log.1.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(fixture("mx.log.1")).unwrap())
        .unwrap();
    enc.finish().unwrap();
    (
        gz.display().to_string(),
        fixture("mx.log").display().to_string(),
    )
}

/// A stats section: (id, label in text, value).
type Stats = Vec<(&'static str, &'static str, u64)>;

/// A table section: title in text, key column, number columns, rows.
struct Table {
    id: &'static str,
    title: &'static str,
    key: &'static str,
    columns: &'static [&'static str],
    distinct: usize,
    rows: Vec<(&'static str, Vec<u64>)>,
}

const REFUSALS: &[&str] = &["rejected", "tempfailed"];
const TRAFFIC: &[&str] = &["connections", "accepted", "bytes", "rejected", "tempfailed"];

fn totals() -> Stats {
    vec![
        ("connections", "connections", 15),
        ("connections_tls", "connections with TLS", 2),
        ("messages_accepted", "messages accepted", 4),
        ("recipients_accepted", "recipients of accepted messages", 5),
        ("bytes_accepted", "bytes accepted", 16_656),
        ("rejected", "refusals rejected (5xx)", 11),
        ("tempfailed", "refusals tempfailed (4xx)", 3),
        ("would_reject", "would reject (warn mode)", 2),
        ("limits", "sessions ended by a limit", 2),
    ]
}

fn deliveries() -> Stats {
    vec![
        ("sent", "recipients delivered", 4),
        ("deferred", "deferrals", 1),
        ("failed", "recipients failed", 1),
        ("expired", "recipients expired", 0),
        ("quarantined", "messages quarantined", 1),
        ("dsn", "bounces (DSN) sent", 0),
    ]
}

fn lines() -> Stats {
    vec![
        ("read", "lines read", 49),
        ("counted", "lines counted", 48),
        ("skipped", "not mxguard log lines", 1),
        ("out_of_range", "outside --since/--until", 0),
    ]
}

fn per_hour() -> Vec<(&'static str, Vec<u64>)> {
    const HOURS: [&str; 24] = [
        "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14",
        "15", "16", "17", "18", "19", "20", "21", "22", "23",
    ];
    let mut rows: Vec<_> = HOURS.iter().map(|h| (*h, vec![0; 5])).collect();
    for (hour, values) in [
        (8, [2, 0, 0, 3, 0]),
        (9, [2, 1, 2048, 2, 0]),
        (10, [3, 1, 4096, 1, 1]),
        (11, [2, 0, 0, 1, 1]),
        (14, [2, 1, 10_000, 1, 0]),
        (15, [2, 1, 512, 1, 0]),
        (17, [1, 0, 0, 0, 0]),
        (18, [1, 0, 0, 2, 0]),
        (23, [0, 0, 0, 0, 1]),
    ] {
        rows[hour].1 = values.to_vec();
    }
    rows
}

fn tables() -> Vec<Table> {
    let t = |id, title, key, columns, distinct, rows| Table {
        id,
        title,
        key,
        columns,
        distinct,
        rows,
    };
    let one = |n: u64| vec![n];
    vec![
        t(
            "per_day",
            "Traffic per day",
            "date",
            TRAFFIC,
            2,
            vec![
                ("2026-11-28", vec![5, 2, 12_048, 4, 1]),
                ("2026-11-29", vec![10, 2, 4608, 7, 2]),
            ],
        ),
        t(
            "per_hour",
            "Traffic per hour of the day (UTC, all days)",
            "hour",
            TRAFFIC,
            24,
            per_hour(),
        ),
        t(
            "rejections_by_stage",
            "Refusals by stage",
            "stage",
            REFUSALS,
            4,
            vec![
                ("rcpt", vec![7, 2]),
                ("connect", vec![2, 1]),
                ("helo", vec![1, 0]),
                ("mail", vec![1, 0]),
            ],
        ),
        t(
            "rejections_by_check",
            "Refusals by check",
            "check",
            REFUSALS,
            10,
            vec![
                ("relay", vec![3, 0]),
                ("dnsbl:zen.example", vec![1, 1]),
                ("recipient_table", vec![2, 0]),
                ("ban", vec![1, 0]),
                ("connection_rate", vec![0, 1]),
                ("greylist", vec![0, 1]),
                ("helo", vec![1, 0]),
                ("pregreet", vec![1, 0]),
                ("rhsbl:dbl.example", vec![1, 0]),
                ("sender_blocklist", vec![1, 0]),
            ],
        ),
        t(
            "rejections_by_reply",
            "Top refusals by reply",
            "reply",
            &["count"],
            11,
            vec![
                ("554 5.7.1 <*>: Relay access denied", one(3)),
                (
                    "550 5.1.1 <*>: Recipient address rejected: User unknown",
                    one(2),
                ),
                (
                    "421 4.7.0 mx.test Error: * temporarily blocked until *",
                    one(1),
                ),
                (
                    "421 4.7.0 mx.test Error: too many connections from *",
                    one(1),
                ),
                (
                    "451 4.7.1 <*>: Recipient address rejected: Greylisted, try again in * seconds",
                    one(1),
                ),
                (
                    "451 4.7.1 Service unavailable; zen.example lookup failed for [*]",
                    one(1),
                ),
                (
                    "504 5.5.2 <*>: Helo command rejected: need fully-qualified hostname",
                    one(1),
                ),
                (
                    "550 5.7.1 <*>: Sender address rejected: Access denied",
                    one(1),
                ),
                ("554 5.5.1 Protocol error", one(1)),
                (
                    "554 5.7.1 Service unavailable; Client host [*] blocked using zen.example",
                    one(1),
                ),
            ],
        ),
        t(
            "dnsbl_zones",
            "DNS lists (dnsbl, rhsbl)",
            "zone",
            &["rejected", "tempfailed", "would_reject"],
            3,
            vec![
                ("dnsbl:zen.example", vec![1, 1, 0]),
                ("dnsbl:bl.trial.example", vec![0, 0, 1]),
                ("rhsbl:dbl.example", vec![1, 0, 0]),
            ],
        ),
        t(
            "top_rejected_clients",
            "Top refused clients",
            "client",
            REFUSALS,
            9,
            vec![
                ("192.0.2.7", vec![3, 0]),
                ("203.0.113.77", vec![2, 1]),
                ("2001:db8:5:6::1", vec![2, 0]),
                ("192.0.2.200", vec![1, 0]),
                ("192.0.2.8", vec![1, 0]),
                ("192.0.2.99", vec![1, 0]),
                ("198.51.100.30", vec![0, 1]),
                ("2001:db8:5:6:ffff::9", vec![0, 1]),
                ("203.0.113.5", vec![1, 0]),
            ],
        ),
        t(
            "top_rejected_networks",
            "Top refused networks (IPv4 /24, IPv6 /64)",
            "network",
            REFUSALS,
            4,
            vec![
                ("192.0.2.0/24", vec![6, 0]),
                ("203.0.113.0/24", vec![3, 1]),
                ("2001:db8:5:6::/64", vec![2, 1]),
                ("198.51.100.0/24", vec![0, 1]),
            ],
        ),
        t(
            "top_senders_accepted",
            "Top senders, accepted",
            "sender",
            &["messages"],
            2,
            vec![
                ("alice@partner.test", one(3)),
                ("news@partner.test", one(1)),
            ],
        ),
        t(
            "top_recipients_accepted",
            "Top recipients, accepted",
            "recipient",
            &["messages"],
            3,
            vec![
                ("bob@example.test", one(3)),
                ("carol@example.test", one(1)),
                ("dave@example.test", one(1)),
            ],
        ),
        t(
            "top_senders_rejected",
            "Top senders, refused",
            "sender",
            REFUSALS,
            5,
            vec![
                ("a@b.test", vec![3, 0]),
                ("promo@spam.test", vec![2, 1]),
                ("someone@v6.test", vec![2, 0]),
                ("info@newcorp.test", vec![0, 1]),
                ("spam@spam.test", vec![1, 0]),
            ],
        ),
        t(
            "top_recipients_rejected",
            "Top recipients, refused",
            "recipient",
            REFUSALS,
            6,
            vec![
                ("bob@example.test", vec![2, 0]),
                ("carol@example.test", vec![0, 2]),
                ("x@elsewhere.test", vec![2, 0]),
                ("ghost@example.test", vec![1, 0]),
                ("nobody@example.test", vec![1, 0]),
                ("y@elsewhere.test", vec![1, 0]),
            ],
        ),
        t(
            "would_reject_by_check",
            "Would reject (warn mode), by check",
            "check",
            &["count"],
            2,
            vec![("dnsbl:bl.trial.example", one(1)), ("spf", one(1))],
        ),
        t(
            "limits_by_check",
            "Sessions ended by a limit, by check",
            "check",
            &["sessions"],
            2,
            vec![("max_errors", one(1)), ("max_unknown", one(1))],
        ),
        t(
            "events",
            "Log lines by event",
            "event",
            &["count"],
            13,
            vec![
                ("reject", one(14)),
                ("disconnect", one(13)),
                ("delivery", one(6)),
                ("accept", one(4)),
                ("listen", one(2)),
                ("would_reject", one(2)),
                ("ban", one(1)),
                ("dictionary_attack", one(1)),
                ("future_event", one(1)),
                ("limit", one(1)),
                ("offence", one(1)),
                ("quarantine", one(1)),
                ("tarpit", one(1)),
            ],
        ),
    ]
}

/// The lines of the text section headed `title` (after its underline, to
/// the blank line), and the heading as written.
fn text_section<'t>(text: &'t str, title: &str) -> (&'t str, Vec<&'t str>) {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == title || l.starts_with(&format!("{title} (top ")))
        .unwrap_or_else(|| panic!("no section {title:?} in\n{text}"));
    assert!(lines[at + 1].chars().all(|c| c == '-'), "{title}");
    let body = lines[at + 2..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect();
    (lines[at], body)
}

fn check_text_stats(text: &str, title: &str, stats: &Stats) {
    let (_, body) = text_section(text, title);
    let got: Vec<(String, u64)> = body
        .iter()
        .map(|l| {
            let (label, value) = l.trim().rsplit_once(' ').unwrap();
            (label.trim().to_string(), value.parse().unwrap())
        })
        .collect();
    let want: Vec<(String, u64)> = stats
        .iter()
        .map(|(_, label, v)| (label.to_string(), *v))
        .collect();
    assert_eq!(got, want, "{title}");
}

fn check_text_table(text: &str, table: &Table) {
    let (heading, body) = text_section(text, table.title);
    if table.distinct > table.rows.len() {
        assert_eq!(
            heading,
            format!(
                "{} (top {} of {})",
                table.title,
                table.rows.len(),
                table.distinct
            )
        );
    }
    let header: Vec<&str> = body[0].split_whitespace().collect();
    let mut want_header = table.columns.to_vec();
    want_header.push(table.key);
    assert_eq!(header, want_header, "{}", table.title);
    let got: Vec<(String, Vec<u64>)> = body[1..]
        .iter()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let (values, key) = words.split_at(table.columns.len());
            (
                key.join(" "),
                values.iter().map(|v| v.parse().unwrap()).collect(),
            )
        })
        .collect();
    let want: Vec<(String, Vec<u64>)> = table
        .rows
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(got, want, "{}", table.title);
}

fn check_json_stats(json: &Value, id: &str, stats: &Stats) {
    let object = json[id].as_object().unwrap_or_else(|| panic!("{id}"));
    let got: Vec<(&str, u64)> = object
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap()))
        .collect();
    let want: Vec<(&str, u64)> = stats.iter().map(|(k, _, v)| (*k, *v)).collect();
    let (mut got, mut want) = (got, want);
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{id}");
}

fn check_json_table(json: &Value, table: &Table) {
    let section = &json[table.id];
    assert_eq!(section["distinct"], table.distinct, "{}", table.id);
    let rows = section["rows"].as_array().unwrap();
    let got: Vec<(String, Vec<u64>)> = rows
        .iter()
        .map(|row| {
            assert_eq!(
                row.as_object().unwrap().len(),
                1 + table.columns.len(),
                "{row}"
            );
            (
                row[table.key].as_str().unwrap().to_string(),
                table
                    .columns
                    .iter()
                    .map(|c| row[*c].as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    let want: Vec<(String, Vec<u64>)> = table
        .rows
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(got, want, "{}", table.id);
}

#[test]
fn report_text_has_every_section_right() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = rotated_logs(dir.path());
    let text = stdout(&report(&[&old, &new]));
    assert!(
        text.starts_with(
            "mxguard report\n==============\nPeriod:  2026-11-28T09:15:02Z .. 2026-11-29T19:00:00Z\n"
        ),
        "{text}"
    );
    check_text_stats(&text, "Grand totals", &totals());
    check_text_stats(&text, "Deliveries", &deliveries());
    check_text_stats(&text, "Log lines read", &lines());
    for table in tables() {
        check_text_table(&text, &table);
    }
    // The client's HELO is not in the report; nothing of it leaks.
    assert!(!text.contains("<b>"));
}

#[test]
fn report_json_has_every_section_right() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = rotated_logs(dir.path());
    let out = dir.path().join("report.json");
    let printed = stdout(&report(&[
        "--format",
        "json",
        "-o",
        out.to_str().unwrap(),
        &new,
        &old,
    ]));
    assert_eq!(printed, "", "-o writes the file, not standard output");
    let json: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["period"]["first"], "2026-11-28T09:15:02Z");
    assert_eq!(json["period"]["last"], "2026-11-29T19:00:00Z");
    assert!(json["period"]["since"].is_null());
    check_json_stats(&json, "totals", &totals());
    check_json_stats(&json, "deliveries", &deliveries());
    check_json_stats(&json, "lines", &lines());
    let tables = tables();
    for table in &tables {
        check_json_table(&json, table);
    }
    // Every section is one of those checked.
    let keys = json.as_object().unwrap().len();
    assert_eq!(keys, 1 + 3 + tables.len(), "period, 3 stats, the tables");
}

#[test]
fn since_and_until_cut_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = rotated_logs(dir.path());
    let out = report(&[
        "--format",
        "json",
        "--since",
        "2026-11-29",
        "--until",
        "2026-11-29T12:00:00Z",
        &old,
        &new,
    ]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["period"]["since"], "2026-11-29T00:00:00Z");
    assert_eq!(json["period"]["until"], "2026-11-29T12:00:00Z");
    assert_eq!(json["period"]["first"], "2026-11-29T08:00:00Z");
    assert_eq!(json["period"]["last"], "2026-11-29T11:30:01Z");
    let totals = &json["totals"];
    assert_eq!(totals["connections"], 6);
    assert_eq!(totals["messages_accepted"], 1);
    assert_eq!(totals["bytes_accepted"], 4096);
    assert_eq!(totals["rejected"], 4);
    assert_eq!(totals["tempfailed"], 2);
    let lines = &json["lines"];
    assert_eq!(
        (&lines["read"], &lines["counted"], &lines["skipped"]),
        (&Value::from(49), &Value::from(17), &Value::from(1))
    );
    assert_eq!(lines["out_of_range"], 31);
    assert_eq!(json["per_day"]["rows"].as_array().unwrap().len(), 1);
}

#[test]
fn standard_input_is_read_when_no_file_is_given() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(["report", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::fs::read(fixture("mx.log")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&log));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["lines"]["read"], 31);
    assert_eq!(json["totals"]["connections"], 10);
}

#[test]
fn errors_name_the_file_or_the_option() {
    let out = report(&["/nonexistent/mx.log"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("mxguard: report: cannot read /nonexistent/mx.log: "),
        "{err}"
    );
    let out = report(&[
        "--since",
        "last tuesday",
        fixture("mx.log").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--since \"last tuesday\": expected YYYY-MM-DD"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.gz");
    let mut gz = Vec::new();
    let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
    enc.write_all(&std::fs::read(fixture("mx.log")).unwrap())
        .unwrap();
    enc.finish().unwrap();
    std::fs::write(&broken, &gz[..gz.len() / 2]).unwrap();
    let out = report(&[broken.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read ") && err.contains("broken.gz"),
        "{err}"
    );
}

/// A few real sessions, then a report on the server's own log: every line
/// it wrote is read, and the numbers are those of the sessions.
#[tokio::test]
async fn report_on_a_real_session_log() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(dir.path(), &relay_to(sink.port));
    let mut c = Client::greet(mx.addr).await;
    assert!(c
        .cmd("MAIL FROM:<alice@client.test>")
        .await
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<x@elsewhere.test>").await.starts_with("554"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    let queued = c.cmd("Subject: hi\r\n\r\nhello\r\n.").await;
    assert!(queued.starts_with("250"), "{queued}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
    let mut c = Client::greet_from("127.0.0.2", mx.addr, "bot.test").await;
    c.cmd("MAIL FROM:<spam@bot.test>").await;
    assert!(c.cmd("RCPT TO:<y@elsewhere.test>").await.starts_with("554"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    mx.wait_log_count(&["event=disconnect"], 2);
    mx.wait_log(&["event=delivery", "status=sent"]);
    let written = mx.log_lines().len();

    let out = report(&["--format", "json", mx.log_path().to_str().unwrap()]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        json["lines"]["skipped"], 0,
        "every line mxguard writes is read"
    );
    assert!(json["lines"]["read"].as_u64().unwrap() >= written as u64);
    let totals = &json["totals"];
    assert_eq!(totals["connections"], 2);
    assert_eq!(totals["messages_accepted"], 1);
    assert_eq!(totals["recipients_accepted"], 1);
    assert_eq!(totals["rejected"], 2);
    assert_eq!(totals["tempfailed"], 0);
    assert!(totals["bytes_accepted"].as_u64().unwrap() > 20);
    assert_eq!(json["deliveries"]["sent"], 1);
    let row = |id: &str, i: usize| json[id]["rows"][i].clone();
    assert_eq!(
        row("rejections_by_check", 0),
        serde_json::json!({"check": "relay", "rejected": 2, "tempfailed": 0})
    );
    assert_eq!(
        row("top_rejected_networks", 0),
        serde_json::json!({"network": "127.0.0.0/24", "rejected": 2, "tempfailed": 0})
    );
    assert_eq!(json["top_rejected_clients"]["distinct"], 2);
    assert_eq!(
        row("top_senders_accepted", 0)["sender"],
        "alice@client.test"
    );
    assert_eq!(
        row("top_recipients_accepted", 0)["recipient"],
        "bob@example.test"
    );
    assert_eq!(json["top_recipients_rejected"]["distinct"], 2);
    assert_eq!(
        row("rejections_by_reply", 0),
        serde_json::json!({"reply": "554 5.7.1 <*>: Relay access denied", "count": 2})
    );
}

/// Runs `cmd` and waits at most `limit` for it; kills it if it takes longer.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (Debian package chromium) must be installed: run scripts/test");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let start = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(out) => return out.unwrap(),
            Err(_) if start.elapsed() > limit => {
                // SAFETY: signalling our own child process.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("{cmd:?} did not finish within {limit:?}");
            }
            Err(_) => {}
        }
    }
}

fn chromium(profile: &Path, args: &[&str], page: &Path) -> Output {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(format!("file://{}", page.display()));
    run_bounded(&mut cmd, Duration::from_secs(90))
}

/// The SVG element `id` in `dom`, up to its end tag.
fn svg<'d>(dom: &'d str, id: &str) -> &'d str {
    let start = dom
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let len = dom[start..].find("</svg>").expect("svg end");
    &dom[start..start + len]
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = rotated_logs(dir.path());
    let page = dir.path().join("report.html");
    stdout(&report(&[
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
        &old,
        &new,
    ]));
    let html = std::fs::read_to_string(&page).unwrap();
    for outside in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(outside), "not self-contained: {outside}");
    }
    // The HELO `evil "helo" <b>x</b>` and replies are escaped or absent.
    assert!(!html.contains("<b>"));
    assert!(html.contains("&lt;*&gt;: Relay access denied"));

    let shot = dir.path().join("shot.png");
    let out = chromium(
        &dir.path().join("profile-shot"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
        &page,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10 * 1024, "a blank page? {} bytes", png.len());

    let out = chromium(&dir.path().join("profile-dom"), &["--dump-dom"], &page);
    let dom = stdout(&out);
    let hourly = svg(&dom, "chart-hourly");
    // One column segment per non-zero (hour, outcome), plus the legend.
    assert_eq!(hourly.matches("<rect").count(), 3 + 14, "{hourly}");
    let checks = svg(&dom, "chart-checks");
    assert_eq!(checks.matches("<rect").count(), 2 + 11, "{checks}");
    let networks = svg(&dom, "chart-networks");
    assert_eq!(networks.matches("<rect").count(), 2 + 6, "{networks}");
    for chart in [hourly, checks, networks] {
        assert!(chart.contains("<path"));
    }
    assert!(dom.contains("<section id=\"top_rejected_networks\">"));
}

/// Throughput on a large log (200 MB of the fixtures' lines, clients
/// spread over 100 000 addresses): printed, not asserted. Run with
/// `cargo test --release --test it report::large -- --ignored --nocapture`.
#[test]
#[ignore]
fn large_log_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    let mut lines = Vec::new();
    for name in ["mx.log.1", "mx.log"] {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut written, mut i) = (0u64, 0u32);
    while written < 200 << 20 {
        let n = i % 100_000;
        let client = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
        for line in &lines {
            let line = line.replace("192.0.2.7", &client);
            file.write_all(line.as_bytes()).unwrap();
            file.write_all(b"\n").unwrap();
            written += line.len() as u64 + 1;
        }
        i += 1;
    }
    file.flush().unwrap();
    drop(file);
    let start = Instant::now();
    let out = report(&["--format", "json", path.to_str().unwrap()]);
    let elapsed = start.elapsed();
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["lines"]["read"], u64::from(i) * lines.len() as u64);
    assert_eq!(
        json["top_rejected_clients"]["distinct"],
        8 + u64::from(i.min(100_000))
    );
    let mb = written as f64 / (1 << 20) as f64;
    println!(
        "report: {mb:.0} MB, {} lines in {elapsed:.2?}: {:.0} MB/s",
        json["lines"]["read"],
        mb / elapsed.as_secs_f64()
    );
}

/// A recipient whose quoted local part holds a comma is one recipient, in
/// the accept line (escaped) and in the report. (The JSON log format is
/// checked by the property test in src/report/summary.rs.)
#[tokio::test]
async fn a_comma_inside_an_address_is_not_two_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(dir.path(), &relay_to(sink.port));
    let mut c = Client::greet(mx.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@client.test>").await,
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<\"a,b\"@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<carol@example.test>").await,
        "250 2.1.5 Ok\r\n"
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    let queued = c.cmd("Subject: hi\r\n\r\nhello\r\n.").await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued as"), "{queued}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
    let accept = mx.wait_log(&["event=accept"]);
    assert!(
        accept.contains(r#" to="\"a\\,b\"@example.test,carol@example.test" "#),
        "{accept}"
    );
    mx.wait_log_count(&["event=delivery", "status=sent"], 2);

    let out = report(&["--format", "json", mx.log_path().to_str().unwrap()]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["lines"]["skipped"], 0);
    assert_eq!(json["totals"]["messages_accepted"], 1);
    assert_eq!(json["totals"]["recipients_accepted"], 2);
    let mut rcpts: Vec<&str> = json["top_recipients_accepted"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recipient"].as_str().unwrap())
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, ["\"a,b\"@example.test", "carol@example.test"]);
    assert_eq!(json["deliveries"]["sent"], 2);
}
