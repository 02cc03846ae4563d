//! A real DNS server for the tests: hickory-server on 127.0.0.1 (UDP and
//! TCP, one port), serving the zone files in `tests/fixtures/zones` plus any
//! zones a test adds, or records built by a test ([`DnsFixture::with_records`]).
//! Some names never answer normally: everything under `servfail.test.` (and
//! the PTR of 127.0.0.50) gets SERVFAIL, everything under `timeout.test.`
//! gets no answer at all, and so do a test's silent names. It runs on its
//! own thread and runtime, so sync and async tests and the spawned mxguard
//! binary can all use it.

use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use hickory_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

struct Handler {
    catalog: Catalog,
    servfail: Vec<LowerName>,
    timeout: LowerName,
    /// Names that never answer, except for the record types they hold.
    silent: Vec<(LowerName, Vec<RecordType>)>,
}

impl Handler {
    fn new(catalog: Catalog, silent: Vec<(LowerName, Vec<RecordType>)>) -> Handler {
        Handler {
            catalog,
            // Also the PTR of 127.0.0.50, for a failing reverse lookup.
            servfail: vec![lower("servfail.test."), lower("50.0.0.127.in-addr.arpa.")],
            timeout: lower("timeout.test."),
            silent,
        }
    }

    /// Whether a query goes unanswered (the client times out).
    fn is_silent(&self, name: &LowerName, query_type: RecordType) -> bool {
        self.timeout.zone_of(name)
            || self
                .silent
                .iter()
                .any(|(silent, held)| silent == name && !held.contains(&query_type))
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        if let Ok(info) = request.request_info() {
            let name = info.query.name();
            if self.servfail.iter().any(|z| z.zone_of(name)) {
                let msg = MessageResponseBuilder::new(&request.queries, None)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                if let Ok(sent) = response.send_response(msg).await {
                    return sent;
                }
            }
            if self.is_silent(name, info.query.query_type()) {
                // No answer: the client must time out.
                return ResponseInfo::from(Header {
                    metadata: Metadata::response_from_request(&request.metadata),
                    counts: HeaderCounts::default(),
                });
            }
        }
        self.catalog.handle_request::<R, T>(request, response).await
    }
}

fn lower(name: &str) -> LowerName {
    LowerName::from(Name::from_ascii(name).unwrap())
}

/// Parses a zone text (RFC 1035 master file) for `origin`.
fn zone(origin: &str, text: &str) -> Arc<InMemoryZoneHandler<TokioRuntimeProvider>> {
    let (origin, records) = Parser::new(text, None, Some(Name::from_ascii(origin).unwrap()))
        .parse()
        .unwrap_or_else(|e| panic!("fixture zone {origin}: {e}"));
    Arc::new(
        InMemoryZoneHandler::new(origin, records, ZoneType::Primary, AxfrPolicy::Deny).unwrap(),
    )
}

/// A root zone holding `records` (and its SOA, for negative answers);
/// identical records are one record, as in any zone.
fn root_zone(records: Vec<Record>) -> Arc<InMemoryZoneHandler<TokioRuntimeProvider>> {
    let root = Name::root();
    let soa = SOA::new(
        Name::from_ascii("ns.fixture.test.").unwrap(),
        Name::from_ascii("hostmaster.fixture.test.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    let mut zone = InMemoryZoneHandler::empty(root.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let mut unique: Vec<Record> = Vec::new();
    for record in records {
        if !unique.contains(&record) {
            unique.push(record);
        }
    }
    for record in std::iter::once(Record::from_rdata(root, 3600, RData::SOA(soa))).chain(unique) {
        let text = record.to_string();
        assert!(zone.upsert_mut(record, 1), "fixture record refused: {text}");
    }
    Arc::new(zone)
}

/// The fixture zones: every `tests/fixtures/zones/<origin>zone` file.
fn fixture_zones() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zones");
    let mut zones = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(origin) = file.strip_suffix("zone") {
            zones.push((
                origin.to_string(),
                std::fs::read_to_string(entry.path()).unwrap(),
            ));
        }
    }
    zones
}

pub struct DnsFixture {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsFixture {
    /// The fixture zones.
    pub fn start() -> DnsFixture {
        DnsFixture::with_zones(fixture_zones())
    }

    /// Exactly these zones: (origin with trailing dot, zone text).
    /// The fixture zones and these.
    pub fn with_extra_zones(extra: Vec<(String, String)>) -> DnsFixture {
        let mut zones = fixture_zones();
        zones.extend(extra);
        DnsFixture::with_zones(zones)
    }

    pub fn with_zones(zones: Vec<(String, String)>) -> DnsFixture {
        DnsFixture::serve(move || {
            let mut catalog = Catalog::new();
            for (origin, text) in &zones {
                catalog.upsert(lower(origin), vec![zone(origin, text)]);
            }
            Handler::new(catalog, Vec::new())
        })
    }

    /// Exactly these records, all in one root zone (so under any names),
    /// and `silent` names that never answer a query for a record type they
    /// hold no records of (a server that drops those queries: the client
    /// times out). Panics if a record does not fit the zone (such as a
    /// CNAME beside other records).
    pub fn with_records(records: Vec<Record>, silent: Vec<Name>) -> DnsFixture {
        let silent = silent
            .iter()
            .map(|name| {
                let held = records
                    .iter()
                    .filter(|r| LowerName::from(&r.name) == LowerName::from(name))
                    .map(|r| r.record_type())
                    .collect();
                (LowerName::from(name), held)
            })
            .collect();
        // Built here, so that a refused record panics in the test.
        let zone = root_zone(records);
        DnsFixture::serve(move || {
            let mut catalog = Catalog::new();
            catalog.upsert(LowerName::from(Name::root()), vec![zone]);
            Handler::new(catalog, silent)
        })
    }

    /// Runs the server on its own thread, with the handler built there.
    fn serve(handler: impl FnOnce() -> Handler + Send + 'static) -> DnsFixture {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let handler = handler();
                let (udp, tcp) = loop {
                    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let port = tcp.local_addr().unwrap().port();
                    if let Ok(udp) = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await {
                        break (udp, tcp);
                    }
                };
                let addr = udp.local_addr().unwrap();
                let mut server = Server::new(handler);
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 64);
                ready_tx.send(addr).unwrap();
                let _ = stop_rx.await;
                let _ = server.shutdown_gracefully().await;
            });
        });
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("fixture DNS server did not start");
        DnsFixture {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The `[dns]` section pointing at this server.
    pub fn config(&self) -> String {
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"500ms\"\n",
            self.addr
        )
    }
}

impl Drop for DnsFixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
