//! Criterion micro-benchmarks of the hot paths: command parsing, replies
//! (written and logged), the DATA decoder, the spool write (fsync'ed, as
//! before every 250) alone and by sessions committing at once (group
//! commit), the relay's dot-stuffing, a queue file new or reused (without fsyncs), a decision's log
//! line (buffered), the verdict over a stage's check results, a message's
//! milter packets, and what a hand-over to tokio's blocking pool costs
//! against the work it would carry (the last DATA piece's scan, a queued
//! body's read for delivery), which decides what runs in place.
//! Whole-system throughput is measured by the shared harness (bench/run.sh,
//! docs/BENCHMARKS.md).
//!
//! `cargo bench --bench hot_paths`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mxguard::config::{BareLineEndings, CheckSetting, Mode, OnDnsError};
use mxguard::smtp::command;
use mxguard::smtp::data::{self, DataDecoder};
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

/// The replies of a refused transaction as a session sends them: the EHLO
/// reply (eight lines) and a refusal, into the connection's output buffer,
/// and the refusal's log form.
fn replies(c: &mut Criterion) {
    let ehlo = Reply::plain(
        250,
        [
            "mx.example.test",
            "PIPELINING",
            "SIZE 26214400",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "DSN",
            "STARTTLS",
        ]
        .map(String::from)
        .to_vec(),
    );
    let refusal = Reply::new(
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.1] blocked using bl.test",
    );
    c.bench_function("write an EHLO reply and a refusal, log the refusal", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            black_box(&ehlo).write_to(&mut out);
            black_box(&refusal).write_to(&mut out);
            black_box(refusal.to_string())
        })
    });
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
    // The same message as the relay sends it: stuffed again.
    let mut decoder = DataDecoder::new(26_214_400, BareLineEndings::Reject);
    decoder.feed(&message);
    let plain = decoder.take();
    group.bench_function("encode 10 KB (the relay's dot-stuffing)", |b| {
        let mut out = Vec::with_capacity(plain.len() + plain.len() / 8 + 5);
        b.iter(|| {
            out.clear();
            let mut line_start = true;
            data::stuff(black_box(&plain), &mut line_start, &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

/// A queue entry's envelope, with a new ID.
fn bench_envelope() -> Envelope {
    Envelope {
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
    }
}

fn spool(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(dir.path()).expect("spool");
    let body = vec![b'x'; 10 * 1024];
    let mut group = c.benchmark_group("spool");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("write and fsync a 10 KB message", |b| {
        b.iter_batched(
            bench_envelope,
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

/// Eight sessions committing at the same moment: with group commit they
/// share the directory's fsyncs.
fn group_commit(c: &mut Criterion) {
    const SESSIONS: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(dir.path()).expect("spool");
    let body = vec![b'x'; 10 * 1024];
    let mut group = c.benchmark_group("spool");
    group.throughput(Throughput::Elements(SESSIONS as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("8 sessions commit a 10 KB message each at once", |b| {
        b.iter(|| {
            std::thread::scope(|scope| {
                for _ in 0..SESSIONS {
                    scope.spawn(|| {
                        let env = bench_envelope();
                        let mut pending = spool.start(&env, b"Received: from bench\r\n");
                        pending.append(&body).expect("append");
                        pending.commit(b"").expect("commit");
                        spool.remove(&env.id).expect("remove");
                    });
                }
            })
        })
    });
    group.finish();
}

/// A queue file's life without its fsyncs: written in `tmp/`, renamed
/// into `queue/`, and gone once delivered — a new file each time (created,
/// then removed) against a delivered one reused (`spool::recycle`). Run
/// long enough for the filesystem to hold many recently freed inodes, as
/// a server at a thousand messages a second does.
fn recycle(c: &mut Criterion) {
    use mxguard::spool::recycle::Recycler;
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let (tmp, queue) = (dir.path().join("tmp"), dir.path().join("queue"));
    std::fs::create_dir(&tmp).expect("tmp");
    std::fs::create_dir(&queue).expect("queue");
    let body = vec![b'x'; 10 * 1024];
    let mut group = c.benchmark_group("spool");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    let mut n = 0u64;
    group.bench_function("a 10 KB queue file in a new file, then removed", |b| {
        b.iter(|| {
            n += 1;
            let (written, queued) = (tmp.join(format!("N{n}")), queue.join(format!("N{n}")));
            let mut file = std::fs::File::create(&written).expect("create");
            file.write_all(&body).expect("write");
            drop(file);
            std::fs::rename(&written, &queued).expect("rename");
            std::fs::remove_file(&queued).expect("remove");
        })
    });
    let recycler = Recycler::new(&tmp);
    group.bench_function("a 10 KB queue file in a reused file, then kept", |b| {
        b.iter(|| {
            n += 1;
            let queued = queue.join(format!("N{n}"));
            let (mut file, written) = match recycler.take() {
                Some(reused) => reused,
                None => {
                    let path = tmp.join(format!("N{n}"));
                    (std::fs::File::create(&path).expect("create"), path)
                }
            };
            file.write_all(&body).expect("write");
            drop(file);
            std::fs::rename(&written, &queued).expect("rename");
            recycler.keep(&queued).expect("keep");
        })
    });
    group.finish();
}

/// An accept line, as a session logs one per message, to a file.
fn log_line(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = mxguard::config::Log {
        file: Some(dir.path().join("mxguard.log")),
        ..Default::default()
    };
    let log = mxguard::log::Logger::open(&config).expect("log");
    c.bench_function("log an accept line (buffered)", |b| {
        b.iter(|| {
            log.event("accept")
                .kv("client", "192.0.2.1")
                .kv("helo", "mail.example.org")
                .kv("from", "<someone.else@sender.example.org>")
                .kv("to", "user42@example.test")
                .kv("stage", "data")
                .kv("action", "accept")
                .kv("queue_id", "0123456789ABCDEF")
                .kv("size", 10_240)
                .kv("reply", "250 2.0.0 Ok: queued as 0123456789ABCDEF")
                .emit()
        })
    });
    log.flush();
}

/// What a message costs in milter packets: every step of a transaction
/// with ten header fields and a 10 KB body encoded, and the filter's
/// answers decoded.
fn milter(c: &mut Criterion) {
    use mxguard::milter::codec::{encode, Command, Decoder};
    let macros = vec![("i".to_string(), "0123456789ABCDEF".to_string())];
    let mail = vec!["<someone.else@sender.example.org>".to_string()];
    let rcpt = vec!["<user42@example.test>".to_string()];
    let body = vec![b'x'; 10 * 1024];
    // Seventeen "continue" packets: length 1, code 'c'.
    let continues: Vec<u8> = (0..17).flat_map(|_| [0, 0, 0, 1, b'c']).collect();
    c.bench_function("milter packets of a message", |b| {
        let mut out = Vec::with_capacity(16 * 1024);
        b.iter(|| {
            out.clear();
            let addr = Some("192.0.2.1:4711".parse().expect("address"));
            let connect = Command::Connect {
                hostname: "mail.example.org",
                addr,
            };
            encode(&connect, &mut out);
            encode(&Command::Helo("mail.example.org"), &mut out);
            encode(&Command::Mail(&mail), &mut out);
            encode(&Command::Rcpt(&rcpt), &mut out);
            encode(&Command::Data, &mut out);
            for _ in 0..10 {
                let value = &b"a header value of some length"[..];
                encode(
                    &Command::Header {
                        name: "X-Header",
                        value,
                    },
                    &mut out,
                );
            }
            encode(&Command::EndOfHeaders, &mut out);
            encode(&Command::Body(&body), &mut out);
            let stage = b'E';
            encode(
                &Command::Macros {
                    stage,
                    pairs: &macros,
                },
                &mut out,
            );
            encode(&Command::EndOfMessage, &mut out);
            let mut decoder = Decoder::new();
            decoder.feed(&continues);
            while let Ok(Some(r)) = decoder.next() {
                black_box(r);
            }
            black_box(out.len())
        })
    });
}

fn verdict(c: &mut Criterion) {
    let result = |check: &'static str, outcome: Outcome| CheckResult {
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

/// The generic-PTR test, run for every connection with a PTR name: a name
/// that carries the address and one that does not (the whole name read).
fn generic_ptr(c: &mut Criterion) {
    use mxguard::policy::rdns::looks_generic;
    let client = "192.0.2.1".parse().unwrap();
    let mut group = c.benchmark_group("generic PTR name");
    for (what, name) in [
        ("generic", "host-1-2-0-192.dyn.pool.broadband.example.net"),
        ("not generic", "mail-out-17.relay.mailservice.example.net"),
    ] {
        group.bench_function(what, |b| {
            b.iter(|| black_box(looks_generic(black_box(name), client)))
        });
    }
    group.finish();
}

/// A 10 KB message's last piece scanned and a 10 KB queued body read, each
/// in place on a runtime thread or handed to the blocking pool and back,
/// as a session and a delivery do: the difference is what the hand-over
/// costs (`session::receiving` scans a last piece of up to 32 KiB in place,
/// a delivery reads a just-committed body of up to 64 KiB in place).
fn hand_over(c: &mut Criterion) {
    use mxguard::config::LongLines;
    use mxguard::message::intake::Intake;
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .build()
        .expect("runtime");
    let mut piece = b"Subject: benchmark\r\nFrom: a@example.org\r\n\r\n".to_vec();
    while piece.len() < 10 * 1024 {
        piece.extend_from_slice(b"an ordinary line of the body, seventy-odd characters long.\r\n");
    }
    let scan = |piece: &[u8]| {
        let mut intake = Intake::new("mx.example.test", 64 * 1024, LongLines::Wrap, true);
        let mut tail = Vec::with_capacity(piece.len());
        intake.feed(piece, &mut tail);
        black_box(intake.finish(&mut tail));
        tail.len()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let queued = dir.path().join("queued");
    std::fs::write(&queued, &piece).expect("queue file");
    let file = std::fs::File::open(&queued).expect("open");
    let read = |file: &std::fs::File| {
        let mut body = vec![0; 10 * 1024];
        file.read_exact_at(&mut body, 0).expect("read");
        body.len()
    };
    type Work = Arc<dyn Fn() -> usize + Send + Sync>;
    let works: [(&str, Work); 2] = [
        ("scan a 10 KB last piece", Arc::new(move || scan(&piece))),
        ("read a 10 KB queued body", Arc::new(move || read(&file))),
    ];
    let mut group = c.benchmark_group("hand-over");
    group.throughput(Throughput::Elements(1));
    for (what, work) in works {
        group.bench_function(format!("{what} in place"), |b| {
            b.iter(|| {
                let work = work.clone();
                runtime.block_on(runtime.spawn(async move { work() }))
            })
        });
        group.bench_function(format!("{what} on a blocking thread"), |b| {
            b.iter(|| {
                let work = work.clone();
                let handed = async move { tokio::task::spawn_blocking(move || work()).await };
                runtime.block_on(runtime.spawn(handed))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    commands,
    replies,
    generic_ptr,
    data,
    spool,
    group_commit,
    recycle,
    log_line,
    verdict,
    milter,
    hand_over
);
criterion_main!(benches);
