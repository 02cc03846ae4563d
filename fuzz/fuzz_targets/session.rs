//! Any bytes from a client, as one SMTP session in memory (the services of
//! the property tests: low limits, nothing looked up): the session ends,
//! every reply line is well-formed, and there are never more final replies
//! than the banner, a goodbye and one per line sent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::config::Config;
use mxguard::services::Services;
use mxguard::smtp::reply::check_stream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The property tests' configuration (tests/it/props.rs).
const CONFIG: &str = "[relay]\ndomains = [\"example.test\"]\n[limits]\nmax_errors = 1000\nmax_message_size = 4096\nmax_recipients = 5\n[abuse]\ngreet_wait = \"0s\"\n[ban]\nmax_retry = 0\n[checks]\ndmarc = \"off\"\n[dns]\nnameservers = [\"127.0.0.1:9\"]\n";

fn services() -> &'static Arc<Services> {
    static SERVICES: OnceLock<Arc<Services>> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mxguard-fuzz-session-{}", std::process::id()));
        let config = Config::from_toml(CONFIG, "fuzz.toml", &dir).expect("fuzz config");
        Arc::new(Services::offline(config).expect("fuzz services"))
    })
}

fuzz_target!(|input: &[u8]| {
    let svc = services().clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    let input = input.to_vec();
    let out = runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let session = tokio::spawn(async move {
            mxguard::smtp::session::run(&svc, server, "192.0.2.1".parse().expect("ip")).await;
        });
        let talk = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(20), talk)
            .await
            .expect("the session hung");
        session.await.expect("the session panicked");
        out
    });
    if let Err(e) = check_stream(&out) {
        panic!("{e}");
    }
    let finals = out
        .split(|&b| b == b'\n')
        .filter(|line| line.get(3) == Some(&b' '))
        .count();
    assert!(finals <= lines + 2, "{finals} replies for {lines} lines");
});
