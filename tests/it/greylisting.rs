//! Greylisting that big senders survive (`greylist.when = "suspicious"`,
//! the default): a large sender's pool — forward-confirmed names under a
//! suffix of the allow-list — passes from three addresses of a /19 at
//! once, a client with an SPF pass passes, a named client with nothing
//! against it passes; a client without a reverse name, or with a generic
//! one, waits; `mxguard greylist list` shows the one waiting and
//! `mxguard greylist pass` lets it through.

use crate::dns_fixture::DnsFixture;
use crate::harness::*;

/// Three addresses of 127.0.32.0/19 named under pool.bigsender.test, each
/// name resolving back.
fn pool_zones() -> Vec<(String, String)> {
    let pool = [
        ("32.0.127", "1", "a"),
        ("40.0.127", "7", "b"),
        ("63.0.127", "9", "c"),
    ];
    let mut zones: Vec<(String, String)> = pool
        .iter()
        .map(|(zone, host, name)| {
            let origin = format!("{zone}.in-addr.arpa.");
            let text = format!(
                "$ORIGIN {origin}\n$TTL 60\n@ IN SOA ns.client.test. h.client.test. 1 3600 600 86400 60\n\
                 {host} IN PTR out-{name}.pool.bigsender.test.\n"
            );
            (origin, text)
        })
        .collect();
    zones.push((
        "bigsender.test.".into(),
        "$ORIGIN bigsender.test.\n$TTL 60\n@ IN SOA ns.client.test. h.client.test. 1 3600 600 86400 60\n\
         out-a.pool IN A 127.0.32.1\nout-b.pool IN A 127.0.40.7\nout-c.pool IN A 127.0.63.9\n"
            .into(),
    ));
    zones
}

async fn rcpt_from(mx: &Mxguard, client: &str, sender: &str) -> String {
    let mut c = Client::greet_from(client, mx.addr, "sender.test").await;
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{sender}>")).await,
        "250 2.1.0 Ok\r\n"
    );
    let reply = c.cmd("RCPT TO:<alice@example.test>").await;
    c.cmd("QUIT").await;
    reply
}

#[tokio::test]
async fn only_suspicious_clients_wait_and_an_administrator_can_let_one_through() {
    let dns = DnsFixture::with_extra_zones(pool_zones());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("greylist-allow"),
        "# pools\npool.bigsender.test\n",
    )
    .unwrap();
    let sink = Sink::start(&dir.path().join("sink"), free_port(), &[]);
    let mx = Mxguard::start(
        dir.path(),
        &format!(
            "{}{}[checks]\ndmarc = \"off\"\nspf = \"warn\"\n\
             [greylist]\nenabled = true\nnetmask_v4 = 19\nallow_file = \"greylist-allow\"\n",
            relay_to(sink.port),
            dns.config()
        ),
    );
    // The pool: three addresses, three /24s, one /19, none waits.
    for client in ["127.0.32.1", "127.0.40.7", "127.0.63.9"] {
        assert_eq!(
            rcpt_from(&mx, client, "news@bigsender.test").await,
            "250 2.1.5 Ok\r\n",
            "{client}"
        );
    }
    // mail1.client.test, forward-confirmed, nothing against it.
    assert_eq!(
        rcpt_from(&mx, "127.0.0.11", "bob@sender.test").await,
        "250 2.1.5 Ok\r\n"
    );
    // 127.0.0.31's name does not resolve back, but SPF passes for
    // client.test (ip4:127.0.0.30/31).
    assert_eq!(
        rcpt_from(&mx, "127.0.0.31", "carol@client.test").await,
        "250 2.1.5 Ok\r\n"
    );
    // A generic name, and none at all: they wait.
    let generic = rcpt_from(&mx, "127.0.0.14", "dave@sender.test").await;
    assert!(
        generic
            .starts_with("451 4.7.1 <alice@example.test>: Recipient address rejected: Greylisted"),
        "{generic}"
    );
    let nameless = rcpt_from(&mx, "127.0.0.13", "erin@sender.test").await;
    assert!(nameless.starts_with("451 4.7.1 "), "{nameless}");

    let list = mx.cli(&["greylist", "list"]);
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains("127.0.0.0/19 <erin@sender.test> -> <alice@example.test> waiting "),
        "{list}"
    );
    assert!(list.contains("<dave@sender.test>"), "{list}");
    assert!(!list.contains("bigsender"), "{list}");

    let pass = mx.cli(&["greylist", "pass", "127.0.0.13"]);
    assert!(pass.status.success());
    assert_eq!(
        String::from_utf8(pass.stdout).unwrap(),
        "127.0.0.0/19 passes greylisting\n"
    );
    mx.wait_log(&["event=greylist_allow", "network=127.0.0.0/19", "by=admin"]);
    assert_eq!(
        rcpt_from(&mx, "127.0.0.13", "erin@sender.test").await,
        "250 2.1.5 Ok\r\n"
    );
    let bad = mx.cli(&["greylist", "pass", "not-an-address"]);
    assert_eq!(bad.status.code(), Some(2));
}
