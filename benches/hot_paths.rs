//! Criterion micro-benchmarks of the hot paths: command parsing, the DATA
//! decoder, the spool write (fsync'ed, as before every 250), and the
//! verdict over a stage's check results. Whole-system throughput is
//! measured by the shared harness (bench/run.sh, docs/BENCHMARKS.md).
//!
//! `cargo bench --bench hot_paths`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mxguard::config::{BareLineEndings, CheckSetting, Mode, OnDnsError};
use mxguard::smtp::command;
use mxguard::smtp::data::DataDecoder;
use mxguard::smtp::reply::Reply;
use mxguard::spool::{Envelope, QueueId, Spool};
use mxguard::verdict::{decide, CheckResult, Outcome, Stage};
use std::hint::black_box;
use std::time::Duration;

fn commands(c: &mut Criterion) {
    let lines: [&[u8]; 5] = [
        b"EHLO mail.example.org",
        b"MAIL FROM:<someone.else@sender.example.org> SIZE=10240 BODY=8BITMIME",
        b"RCPT TO:<user42@example.test>",
        b"DATA",
        b"QUIT",
    ];
    let mut group = c.benchmark_group("command");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse a transaction", |b| {
        b.iter(|| {
            for line in lines {
                let _ = black_box(command::parse(black_box(line)));
            }
        })
    });
    group.finish();
}

fn data(c: &mut Criterion) {
    let mut message = b"Subject: benchmark\r\nFrom: a@example.org\r\n\r\n".to_vec();
    while message.len() < 10 * 1024 {
        message.extend_from_slice(b"..a line of the body that starts with a dot, stuffed\r\n");
        message
            .extend_from_slice(b"an ordinary line of the body, seventy-odd characters long.\r\n");
    }
    message.extend_from_slice(b".\r\n");
    let mut group = c.benchmark_group("data");
    group.throughput(Throughput::Bytes(message.len() as u64));
    group.bench_function("decode 10 KB", |b| {
        b.iter(|| {
            let mut decoder = DataDecoder::new(26_214_400, BareLineEndings::Reject);
            let (used, done) = decoder.feed(black_box(&message));
            assert!(done && used == message.len());
            black_box(decoder.finish())
        })
    });
    group.finish();
}

fn spool(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(dir.path()).expect("spool");
    let body = vec![b'x'; 10 * 1024];
    let envelope = || Envelope {
        id: QueueId::generate(),
        arrival: 0,
        client: "192.0.2.1".parse().expect("address"),
        helo: "mail.example.org".into(),
        from: "<a@example.org>".into(),
        body_8bit: false,
        rcpts: vec!["<user1@example.test>".into()],
        smtputf8: false,
        dsn: Default::default(),
        client_name: None,
        esmtp: true,
    };
    let mut group = c.benchmark_group("spool");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("write and fsync a 10 KB message", |b| {
        b.iter_batched(
            envelope,
            |env| {
                let mut pending = spool.start(&env, b"Received: from bench\r\n");
                pending.append(&body).expect("append");
                pending.commit(b"").expect("commit");
                spool.remove(&env.id).expect("remove");
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn verdict(c: &mut Criterion) {
    let result = |check: &str, outcome: Outcome| CheckResult {
        check: check.into(),
        stage: Stage::Connect,
        setting: CheckSetting::default(),
        dns_error_default: OnDnsError::Ignore,
        outcome,
        detail: String::new(),
        elapsed: Duration::ZERO,
    };
    let results: Vec<CheckResult> = vec![
        result("reverse_dns", Outcome::Pass),
        result("forged_reverse_dns", Outcome::Pass),
        result(
            "dnsbl:bl.test",
            Outcome::Hit(Reply::new(554, "5.7.1", "listed")),
        ),
        result("helo", Outcome::Pass),
        result("sender_domain", Outcome::Pass),
    ];
    c.bench_function("verdict over five results", |b| {
        b.iter(|| {
            black_box(decide(
                black_box(&results),
                Mode::Enforce,
                10.0,
                "192.0.2.1",
            ))
        })
    });
}

criterion_group!(benches, commands, data, spool, verdict);
criterion_main!(benches);
