//! `mxguard import`: the seeds' configurations in `tests/fixtures/import`,
//! translated by the real binary, checked by `mxguard config check`, then
//! served against the fixture DNS: the imported configuration refuses and
//! accepts what the original did.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(path)
}

fn mxguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mxguard"))
        .args(args)
        .output()
        .unwrap()
}

/// `mxguard import SOURCE FILES…`: its standard output, which must be
/// the same on a second run.
fn import(source: &str, files: &[&str]) -> String {
    let paths: Vec<String> = files
        .iter()
        .map(|f| fixture(f).display().to_string())
        .collect();
    let mut args = vec!["import", source];
    args.extend(paths.iter().map(String::as_str));
    let out = mxguard(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = mxguard(&args);
    assert_eq!(
        out.stdout, again.stdout,
        "the same input gives the same bytes"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_has(text: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(text.contains(want), "missing:\n{want}\n--- in:\n{text}");
    }
}

/// Saves the import as `dir/imported.toml` with the fixture's `[dns]`,
/// and runs each `sed` command it gives for the list files, as a user
/// would, in `dir`.
fn save(dir: &Path, toml: &str, dns: &DnsFixture) -> PathBuf {
    let config = dir.join("imported.toml");
    std::fs::write(&config, format!("{toml}\n{}", dns.config())).unwrap();
    for line in toml.lines() {
        if let Some(command) = line.strip_prefix("#   sed -n ") {
            let command = format!("sed -n {}", command.replace("CONFIG", "imported.toml"));
            let status = Command::new("sh")
                .args(["-c", &command])
                .current_dir(dir)
                .status()
                .unwrap();
            assert!(status.success(), "{command}");
        }
    }
    config
}

fn config_check(config: &Path) -> Output {
    mxguard(&["config", "check", config.to_str().unwrap()])
}

fn assert_config_ok(config: &Path) {
    let out = config_check(config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Greets from `client` as `helo`, gives `from`, and returns the reply to
/// `RCPT TO:<rcpt>` (every refusal before RCPT is answered there).
async fn rcpt(mx: &Mxguard, client: &str, helo: &str, from: &str, rcpt: &str) -> String {
    let mut c = Client::greet_from(client, mx.addr, helo).await;
    let mail = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    assert_eq!(mail, "250 2.1.0 Ok\r\n", "{client} {from}");
    let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    c.cmd("QUIT").await;
    reply
}

#[test]
fn errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mc = dir.path().join("broken.mc");
    std::fs::write(&mc, "dnl\nFEATURE(`dnsbl', `bl.test)\n").unwrap();
    let out = mxguard(&["import", "sendmail", mc.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: the quote opened here (`) is never closed (')",
            mc.display()
        )),
        "{err}"
    );
    let cf = dir.path().join("main.cf");
    std::fs::write(&cf, "myhostname = mx.example.test\nbroken line\n").unwrap();
    let out = mxguard(&["import", "postfix", cf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("{}:2: `broken line` has no `=`", cf.display())));
    let other = dir.path().join("smtproutes");
    std::fs::write(&other, ":mx.example.test\n").unwrap();
    let out = mxguard(&["import", "qmail", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a qmail control file is known by its name")
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn postfix_restrictions_behave_as_they_did() {
    let toml = import("postfix", &["postfix/main.cf"]);
    let postfix_dir = fixture("postfix").canonicalize().unwrap();
    assert_has(
        &toml,
        &[
            "# mxguard configuration translated from Postfix by\n#   mxguard import postfix ",
            "domains = [\"example.test\", \"localhost\"]\n",
            "trusted_networks = [\"127.0.0.1/32\", \"::1/128\", \"192.168.1.0/24\"]\n",
            "reverse_dns = \"tempfail\"\n",
            "forged_reverse_dns = \"tempfail\"\n",
            "sender_domain = \"tempfail\"\n",
            "spf = \"reject\"\n",
            "helo = \"reject\"\n",
            "reject_at = \"rcpt\"\n",
            "reject_score = 3\n",
            "zone = \"bl.test\"\ncodes = [\"127.0.0.2-127.0.0.11\"]\n\
             message = \"Mail from {client_ip} refused: listed in {zone}; {txt}\"\n",
            "zone = \"wl.test\"\ncodes = [\"127.0.0.2\"]\nweight = -2\n",
            "sender_blocklist = \"sender-blocklist\"\n",
            "client_exceptions = \"client-exceptions\"\n",
            &format!(
                "#|sender-blocklist| # from {}/sender_access\n",
                postfix_dir.display()
            ),
            "#|sender-blocklist| bad@client.test\n",
            "#|client-exceptions| 127.0.0.12/32\n",
            "# dead list, left out: reject_rbl_client dnsbl.sorbs.net",
            "# dead list, left out: reject_rbl_client relays.blackholes.us",
            "# dead list, left out: list.dsbl.org*1 in postscreen_dnsbl_sites",
            "# not translated: relay_recipient_maps = hash:/etc/postfix/relay_recipients",
        ],
    );
    for dead in ["sorbs.net\"", "blackholes.us\"", "dsbl.org\""] {
        assert!(!toml.contains(dead), "{dead} must not be a list:\n{toml}");
    }
    assert!(
        !toml.contains("\n[server]") && !toml.contains("\n[spool]") && !toml.contains("\n[log]")
    );

    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    // Before its list files exist, the configuration is refused by name.
    std::fs::write(dir.path().join("imported.toml"), &toml).unwrap();
    let out = config_check(&dir.path().join("imported.toml"));
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lists.client_exceptions") && err.contains("client-exceptions: No such file"),
        "{err}"
    );
    let config = save(dir.path(), &toml, &dns);
    assert_config_ok(&config);

    let mx = Mxguard::start(dir.path(), &format!("{toml}\n{}", dns.config()));
    let helo = "mail1.client.test";
    // A clean, forward-confirmed client whose sender passes SPF.
    assert_eq!(
        rcpt(
            &mx,
            "127.0.0.11",
            helo,
            "someone@client.test",
            "user@example.test"
        )
        .await,
        "250 2.1.5 Ok\r\n"
    );
    // Listed in the zen stand-in: default_rbl_reply's text, with the TXT.
    assert_eq!(
        rcpt(&mx, "127.0.0.20", helo, "someone@client.test", "user@example.test").await,
        "554 5.7.1 Mail from 127.0.0.20 refused: listed in bl.test; listed for sending spam, see https://bl.test/lookup\r\n"
    );
    // check_sender_access REJECT.
    assert_eq!(
        rcpt(
            &mx,
            "127.0.0.11",
            helo,
            "bad@client.test",
            "user@example.test"
        )
        .await,
        "554 5.7.1 <bad@client.test>: Sender address rejected: Access denied\r\n"
    );
    assert_eq!(
        rcpt(
            &mx,
            "127.0.0.11",
            helo,
            "x@bulk-mailer.example",
            "user@example.test"
        )
        .await,
        "554 5.7.1 <x@bulk-mailer.example>: Sender address rejected: Access denied\r\n"
    );
    // reject_unknown_client with unknown_client_reject_code = 450 …
    assert_eq!(
        rcpt(
            &mx,
            "127.0.0.31",
            helo,
            "x@addronly.client.test",
            "user@example.test"
        )
        .await,
        "450 4.7.25 Client host rejected: IP name possibly forged [127.0.0.31]\r\n"
    );
    // … but not for the partner check_client_access lets through.
    assert_eq!(
        rcpt(
            &mx,
            "127.0.0.12",
            helo,
            "x@addronly.client.test",
            "user@example.test"
        )
        .await,
        "250 2.1.5 Ok\r\n"
    );
    // reject_invalid_helo_hostname / reject_non_fqdn_helo_hostname.
    let reply = rcpt(
        &mx,
        "127.0.0.11",
        "nodots",
        "someone@client.test",
        "user@example.test",
    )
    .await;
    assert!(reply.starts_with("504 5.5.2"), "{reply}");
    // reject_unauth_destination.
    assert_eq!(
        rcpt(
            &mx,
            "127.0.0.11",
            helo,
            "someone@client.test",
            "user@elsewhere.test"
        )
        .await,
        "554 5.7.1 <user@elsewhere.test>: Relay access denied\r\n"
    );
}

#[tokio::test]
async fn sendmail_dnsbl_features_behave_as_they_did() {
    let toml = import("sendmail", &["sendmail/mx.mc"]);
    assert_has(
        &toml,
        &[
            "# mxguard configuration translated from sendmail by\n#   mxguard import sendmail ",
            "#   hostname = \"mx.example.test\"",
            "domains = [\"example.test\"]\n",
            "reverse_dns = \"reject\"\n",
            "forged_reverse_dns = \"tempfail\"\n",
            "max_recipients = 100\n",
            "zone = \"bl.test\"\n\
             message = \"Mail from {client_ip} refused - see https://bl.test/lookup?{client_ip}\"\n\
             on_dns_error = \"tempfail\"\n",
            "zone = \"ebl.test\"\ncodes = [\"127.0.0.2\", \"127.0.0.3\"]\n\
             message = \"Rejected {client_ip} found in ebl.test\"\non_dns_error = \"tempfail\"\n",
            "# dead list, left out: FEATURE(`dnsbl', `relays.blackholes.us'",
            "# not translated: FEATURE(`access_db'",
        ],
    );
    assert!(!toml.contains("zone = \"relays.blackholes.us\""), "{toml}");

    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    assert_config_ok(&save(dir.path(), &toml, &dns));
    let mx = Mxguard::start(dir.path(), &format!("{toml}\n{}", dns.config()));
    let helo = "mail1.client.test";
    let from = "someone@client.test";
    assert_eq!(
        rcpt(&mx, "127.0.0.11", helo, from, "user@example.test").await,
        "250 2.1.5 Ok\r\n"
    );
    assert_eq!(
        rcpt(&mx, "127.0.0.20", helo, from, "user@example.test").await,
        "554 5.7.1 Mail from 127.0.0.20 refused - see https://bl.test/lookup?127.0.0.20\r\n"
    );
    // enhdnsbl: 127.0.0.3 is one of its return values, 127.0.0.9 is not.
    assert_eq!(
        rcpt(&mx, "127.0.0.14", helo, from, "user@example.test").await,
        "554 5.7.1 Rejected 127.0.0.14 found in ebl.test\r\n"
    );
    assert_eq!(
        rcpt(&mx, "127.0.0.30", helo, from, "user@example.test").await,
        "250 2.1.5 Ok\r\n"
    );
    // require_rdns: no PTR at all is refused for good.
    assert_eq!(
        rcpt(&mx, "127.0.0.13", helo, from, "user@example.test").await,
        "550 5.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.13]\r\n"
    );
}

#[tokio::test]
async fn qmail_lists_behave_as_they_did() {
    let toml = import(
        "qmail",
        &[
            "qmail/badmailfrom",
            "qmail/badmailto",
            "qmail/rcpthosts",
            "qmail/badhelo",
        ],
    );
    let badmailfrom = fixture("qmail/badmailfrom").canonicalize().unwrap();
    assert_has(
        &toml,
        &[
            "domains = [\"example.test\"]\n",
            "sender_blocklist = \"reject\"\n",
            "recipient_blocklist = \"reject\"\n",
            &format!("sender_blocklist = \"{}\"\n", badmailfrom.display()),
            "recipient_blocklist = \"recipient-blocklist\"\n",
            "#|recipient-blocklist| /[a-z]+[0-9]+@example.test/\n",
            "#|recipient-blocklist| /^[0-9]+@example\\.test$/\n",
            "#|recipient-blocklist| nobody@example.test\n",
            "# not translated: localhost (",
        ],
    );

    let dns = DnsFixture::start();
    let dir = tempfile::tempdir().unwrap();
    assert_config_ok(&save(dir.path(), &toml, &dns));
    let mx = Mxguard::start(dir.path(), &format!("{toml}\n{}", dns.config()));
    let (client, helo) = ("127.0.0.1", "mail.client.test");
    assert_eq!(
        rcpt(
            &mx,
            client,
            helo,
            "spammer@example.net",
            "alice@example.test"
        )
        .await,
        "554 5.7.1 <spammer@example.net>: Sender address rejected: Access denied\r\n"
    );
    assert_eq!(
        rcpt(
            &mx,
            client,
            helo,
            "anyone@bulk-mailer.example",
            "alice@example.test"
        )
        .await,
        "554 5.7.1 <anyone@bulk-mailer.example>: Sender address rejected: Access denied\r\n"
    );
    for refused in [
        "abc123@example.test",
        "123@example.test",
        "nobody@example.test",
    ] {
        assert_eq!(
            rcpt(&mx, client, helo, "friend@client.test", refused).await,
            format!("550 5.7.1 <{refused}>: Recipient address rejected: Access denied\r\n")
        );
    }
    assert_eq!(
        rcpt(
            &mx,
            client,
            helo,
            "friend@client.test",
            "alice@example.test"
        )
        .await,
        "250 2.1.5 Ok\r\n"
    );
}
