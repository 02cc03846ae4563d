//! Garbage in, well-formed replies out: random bytes and random command
//! sequences fed to a session in memory. No panic, no hang, every reply
//! line well-formed, output bounded by the input.

use mxguard::config::Config;
use mxguard::log::Logger;
use mxguard::services::Services;
use mxguard::spool::Spool;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One set of services for every case (building DNS and TLS per case
/// would dominate the run); its spool lives in a directory kept for the run.
fn services() -> &'static Arc<Services> {
    static SERVICES: std::sync::OnceLock<Arc<Services>> = std::sync::OnceLock::new();
    SERVICES.get_or_init(|| build_services(&tempfile::tempdir().unwrap().keep()))
}

fn build_services(dir: &std::path::Path) -> Arc<Services> {
    let toml = "[relay]\ndomains = [\"example.test\"]\n[limits]\nmax_errors = 1000\nmax_message_size = 4096\nmax_recipients = 5\n[abuse]\ngreet_wait = \"0s\"\n[ban]\nmax_retry = 0\n";
    let config = Config::from_toml(toml, "props.toml", dir).unwrap();
    let spool = Arc::new(Spool::open(&config.spool.dir).unwrap());
    let dns = Arc::new(mxguard::dns::Dns::new(&config.dns).unwrap());
    let log = Arc::new(Logger::discard());
    let state = Arc::new(mxguard::state::State::scratch(&config, log.clone()));
    Arc::new(
        Services::new(
            Arc::new(config),
            log,
            dns,
            spool,
            mxguard::delivery::Handle::detached(),
            state,
        )
        .unwrap(),
    )
}

/// Runs a session on `input`; returns everything it wrote.
fn converse(svc: &Arc<Services>, input: Vec<u8>) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let svc = svc.clone();
        let session = tokio::spawn(async move {
            mxguard::smtp::session::run(&svc, server, "192.0.2.1".parse().unwrap()).await;
        });
        let writer = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(20), writer)
            .await
            .expect("the session hung");
        session.await.expect("the session panicked");
        out
    })
}

/// Every line is `ddd` + space or dash + text, CRLF-terminated; error
/// replies carry an enhanced status code of the same class.
fn assert_well_formed(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("replies are text");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        assert!(b.len() >= 4, "{line:?}");
        assert!(b[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(b[3] == b' ' || b[3] == b'-', "{line:?}");
        assert!(!line.contains('\r') && !line.contains('\n'));
        if b[0] == b'4' || b[0] == b'5' {
            assert!(
                line[4..].starts_with(&format!("{}.", b[0] as char)),
                "no enhanced code: {line:?}"
            );
        }
    }
}

fn command() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"EHLO client.test\r\n".to_vec()),
        Just(b"HELO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@client.test>\r\n".to_vec()),
        Just(b"MAIL FROM:<>\r\n".to_vec()),
        Just(b"RCPT TO:<u@example.test>\r\n".to_vec()),
        Just(b"RCPT TO:<u%x@example.test>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b"Subject: x\r\n\r\nbody\r\n.\r\n".to_vec()),
        Just(b"a\n.\nb\r.\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        Just(b"NOOP\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"STARTTLS\r\n".to_vec()),
        Just(vec![b'x'; 700]),
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,80}\r\n".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let svc = services();
        let len = input.len();
        let out = converse(svc, input);
        assert_well_formed(&out);
        // The banner, one bounded reply per input line, and a goodbye.
        prop_assert!(out.len() <= 300 + 200 * (len + 1));
    }

    #[test]
    fn random_command_sequences(cmds in proptest::collection::vec(command(), 0..40)) {
        let svc = services();
        let input: Vec<u8> = cmds.concat();
        let lines = input.iter().filter(|&&b| b == b'\n').count();
        let out = converse(svc, input);
        assert_well_formed(&out);
        let replies = std::str::from_utf8(&out).unwrap().split_terminator("\r\n").filter(|l| l.as_bytes()[3] == b' ').count();
        // Never more final replies than the banner plus one per line.
        prop_assert!(replies <= lines + 2, "{} replies for {} lines", replies, lines);
    }
}
