//! Garbage in, well-formed replies out: random bytes and random command
//! sequences fed to a session in memory. No panic, no hang, every reply
//! line well-formed, output bounded by the input. And the corpora the fuzz
//! targets found (session, configuration, SPF record, milter reply), replayed.

use mxguard::config::Config;
use mxguard::services::Services;
use mxguard::session::replay;
use mxguard::smtp::reply::check_stream;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Low limits and no lookups (the session fuzz target's too).
const CONFIG: &str = include_str!("../fixtures/sessions/offline.toml");

/// One set of services for every case (building DNS and TLS per case
/// would dominate the run); its spool lives in a directory kept for the run.
fn services() -> &'static Arc<Services> {
    static SERVICES: std::sync::OnceLock<Arc<Services>> = std::sync::OnceLock::new();
    SERVICES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let config = Config::from_toml(CONFIG, "offline.toml", &dir).unwrap();
        Arc::new(Services::offline(config).unwrap())
    })
}

/// Runs a session on `input`; returns everything it wrote.
fn converse(svc: &Arc<Services>, input: Vec<u8>) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session = replay(svc, &input, "192.0.2.1".parse().unwrap());
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), session).await })
        .expect("the session hung")
}

fn assert_well_formed(out: &[u8]) {
    if let Err(e) = check_stream(out) {
        panic!("{e}");
    }
}

/// The files of a fuzz corpus (fuzz/corpus/NAME), in name order.
fn corpus(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Every input of the session fuzz target's corpus, as a client's bytes:
/// well-formed replies, and the session ends.
#[test]
fn session_fuzz_corpus() {
    let svc = services();
    for file in corpus("session") {
        let input = std::fs::read(&file).unwrap();
        let out = converse(svc, input);
        if let Err(e) = check_stream(&out) {
            panic!("{}: {e}", file.display());
        }
    }
}

/// Every input of the configuration fuzz target's corpus: loaded, or
/// refused with an error naming the file; never a panic.
#[test]
fn config_fuzz_corpus() {
    for file in corpus("config") {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        if let Err(e) = Config::from_toml(&text, "fuzz.toml", Path::new("/")) {
            assert!(
                e.to_string().starts_with("fuzz.toml"),
                "{}: {e}",
                file.display()
            );
        }
    }
}

/// What the SPF fuzz target checks of one input: a record made of
/// `v=spf1 ` and the input, every TXT lookup answering with it (so
/// `include` and `redirect` recurse into it), every other lookup finding
/// something, reaches a verdict within 64 rounds of at most 10 questions.
fn spf_rounds(data: &[u8]) -> Result<(), String> {
    use mxguard::spf::eval::Step;
    use mxguard::spf::{Answer, Evaluation, Lookup, Params, Query};
    let mut record = b"v=spf1 ".to_vec();
    record.extend_from_slice(data);
    let mut evaluation = Evaluation::new(Params {
        ip: "192.0.2.1".parse().unwrap(),
        sender: "a@example.com".into(),
        helo: "mail.example.com".into(),
        receiver: "mx.test".into(),
        now: 1,
    });
    let mut step = evaluation.start();
    for _ in 0..64 {
        match step {
            Step::Done(verdict) => {
                return match verdict.explanation {
                    Some(e) if !e.is_ascii() => Err(format!("explanation {e:?}")),
                    _ => Ok(()),
                };
            }
            Step::Ask(queries) if queries.is_empty() || queries.len() > 10 => {
                return Err(format!("{} questions at once", queries.len()));
            }
            Step::Ask(queries) => {
                let answers = queries
                    .iter()
                    .map(|q| match q {
                        Query::Txt(_) => Answer::Txt(Lookup::Found(vec![record.clone()])),
                        Query::A(_) => {
                            Answer::Addresses(Lookup::Found(vec!["192.0.2.1".parse().unwrap()]))
                        }
                        Query::Aaaa(_) => Answer::Addresses(Lookup::NotFound),
                        Query::Mx(_) => Answer::Mx(Lookup::Found(vec!["mx.example.com".into()])),
                        Query::Ptr(_) => Answer::Ptr(Lookup::Found(vec!["example.com".into()])),
                    })
                    .collect();
                step = evaluation.resume(answers);
            }
        }
    }
    Err("no verdict after 64 rounds".into())
}

/// Every input of the SPF fuzz target's corpus: evaluated to a verdict.
#[test]
fn spf_fuzz_corpus() {
    for file in corpus("spf") {
        let data = std::fs::read(&file).unwrap();
        if let Err(e) = spf_rounds(&data) {
            panic!("{}: {e}", file.display());
        }
    }
}

/// Every input of the milter reply fuzz target's corpus (hand-written
/// seeds of each response and malformed packets, and what the fuzzer
/// found): decoded without a panic, alike whole and an octet at a time.
#[test]
fn milter_reply_fuzz_corpus() {
    let mut decoded = 0;
    for file in corpus("milter_reply") {
        let data = std::fs::read(&file).unwrap();
        let whole = mxguard::milter::codec::decode_in_chunks(&data, data.len());
        assert_eq!(
            whole,
            mxguard::milter::codec::decode_in_chunks(&data, 1),
            "{}",
            file.display()
        );
        decoded += whole.0.len();
    }
    assert!(decoded > 20, "the seeds decode: {decoded}");
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
