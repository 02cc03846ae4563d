//! The policy pipeline over real DNS: a UDP name server on loopback (in
//! this process) answers every A query with 127.0.0.2 — every client is
//! listed everywhere, but for the RFC 5782 negative test point — and
//! everything else with NXDOMAIN, after a set delay. Measured: the connect checks (reverse DNS and five DNSBLs) once
//! every answer is cached, and a new client's connect checks when each of
//! the five DNSBLs answers after 100 ms (they are looked up in parallel,
//! so the decision takes about 100 ms, not 500).
//!
//! `cargo bench --bench policy`

use criterion::{criterion_group, criterion_main, Criterion};
use hickory_server::proto::op::{Message, MessageType, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use mxguard::config::Config;
use mxguard::dns::dnsbl::test_all;
use mxguard::dns::Dns;
use mxguard::log::Logger;
use mxguard::policy::checks::Checks;
use mxguard::verdict::Outcome;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

const ZONES: usize = 5;

/// Starts the name server on `runtime`; its address.
fn name_server(runtime: &Runtime, delay: Duration) -> SocketAddr {
    let socket = runtime
        .block_on(UdpSocket::bind("127.0.0.1:0"))
        .expect("bind the name server");
    let addr = socket.local_addr().expect("name server address");
    let socket = Arc::new(socket);
    runtime.spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(bytes) = answer(query).to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            });
        }
    });
    addr
}

/// 127.0.0.2 for an A query (but the negative test point 127.0.0.1),
/// NXDOMAIN for anything else.
fn answer(query: Message) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.message_type = MessageType::Response;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    for q in &query.queries {
        let negative = q.name().to_ascii().starts_with("1.0.0.127.");
        if q.query_type() == RecordType::A && !negative {
            let record = Record::from_rdata(q.name().clone(), 300, RData::A(A::new(127, 0, 0, 2)));
            response.add_answer(record);
        } else {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
    }
    response.add_queries(query.queries);
    response
}

/// The connect checks of a gateway with five DNSBLs on `server`, the zones
/// tested as the server does before its first client.
fn checks(runtime: &Runtime, server: SocketAddr) -> Arc<Checks> {
    let mut text = format!(
        "[server]\nhostname = \"mx.example.test\"\n[relay]\ndomains = [\"example.test\"]\n\
         [downstream]\ntargets = [\"smtp://127.0.0.1:2525\"]\n\
         [dns]\nnameservers = [\"{server}\"]\ntimeout = \"3s\"\n"
    );
    for zone in 1..=ZONES {
        text.push_str(&format!("[[dnsbl]]\nzone = \"bl{zone}.test\"\n"));
    }
    let config = Config::from_toml(&text, "bench", Path::new("/")).expect("bench config");
    let dns = Dns::new(&config.dns).expect("resolver");
    let checks = Checks::new(
        Arc::new(config),
        Arc::new(dns),
        Arc::new(Logger::discard()),
        Arc::default(),
    )
    .expect("checks");
    let checks = Arc::new(checks);
    runtime.block_on(test_all(
        &checks.dns,
        &checks.config,
        &checks.health,
        &checks.log,
    ));
    checks
}

/// Runs the connect checks of `client`; panics unless all five lists hit.
async fn connect(checks: &Arc<Checks>, client: IpAddr) {
    let results = checks.clone().connect(client).await;
    let hits = results
        .iter()
        .filter(|r| r.check.starts_with("dnsbl:") && matches!(r.outcome, Outcome::Hit(_)))
        .count();
    assert_eq!(hits, ZONES, "every list answers: {results:?}");
}

fn policy(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("policy");

    let cached = checks(&runtime, name_server(&runtime, Duration::ZERO));
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    runtime.block_on(connect(&cached, client));
    group.bench_function("connect checks, 5 DNSBLs, answers cached", |b| {
        b.iter(|| runtime.block_on(connect(&cached, client)))
    });

    let slow = checks(&runtime, name_server(&runtime, Duration::from_millis(100)));
    let next = AtomicU32::new(0);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("new client, 5 DNSBLs answering after 100 ms", |b| {
        b.iter(|| {
            // A new client each time: nothing is cached.
            let n = next.fetch_add(1, Ordering::Relaxed);
            let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n));
            runtime.block_on(connect(&slow, client))
        })
    });
    group.finish();
}

criterion_group!(benches, policy);
criterion_main!(benches);
