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

/// The property tests' configuration: low limits, no lookups.
const CONFIG: &str = include_str!("../../tests/fixtures/sessions/offline.toml");

fn services() -> &'static Arc<Services> {
    static SERVICES: OnceLock<Arc<Services>> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mxguard-fuzz-session-{}", std::process::id()));
        let config = Config::from_toml(CONFIG, "fuzz.toml", &dir).expect("fuzz config");
        Arc::new(Services::offline(config).expect("fuzz services"))
    })
}

fuzz_target!(|input: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    let session = mxguard::session::replay(services(), input, "192.0.2.1".parse().expect("ip"));
    let out = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), session).await })
        .expect("the session hung");
    if let Err(e) = check_stream(&out) {
        panic!("{e}");
    }
    let finals = out
        .split(|&b| b == b'\n')
        .filter(|line| line.get(3) == Some(&b' '))
        .count();
    assert!(finals <= lines + 2, "{finals} replies for {lines} lines");
});
