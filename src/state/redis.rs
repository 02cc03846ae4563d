//! The Redis state backend, shared by an MX fleet: every key is stored as
//! the configured prefix followed by the key, and every key has a TTL
//! (`SET … EX` for values, `EXPIRE` for counters), so nothing outlives its
//! purpose. The sliding-window counter ([`Redis::hit`]) is a sorted set of
//! event times trimmed, counted and extended by one Lua script, hence
//! atomic across sessions and hosts; its semantics are exactly those of the
//! memory backend.
//!
//! Connecting is lazy: [`Redis::new`] only parses the URL, so the process
//! starts while Redis is down. The first operation creates a
//! [`ConnectionManager`] (one multiplexed connection shared by every
//! session). A connection-level failure (I/O error or timeout) drops it, and
//! the next operation starts a fresh one; when a connection *attempt* fails,
//! operations fail at once with [`StateError::NotConnected`] for
//! [`RETRY_INTERVAL`] rather than hammering a dead server. Every request is
//! bounded by the configured timeout (connecting included), so a dead or
//! unreachable Redis never makes a session hang.

use super::StateError;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, RedisError, RedisResult, Script};
use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// After a failed connection attempt, how long operations fail at once
/// before the next attempt.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Keys asked for per `SCAN` round trip (and values per `MGET`).
const SCAN_BATCH: usize = 500;

/// The sliding-window counter. KEYS[1] the counter; ARGV: the cutoff (events
/// scored at or below it have left the window), now, the limit, the window
/// in seconds, and a member unique to this event. Returns the count
/// including this event, or -1 when the window is full (the event is then
/// not recorded). A key holding something else is replaced, as in memory.
const HIT_SCRIPT: &str = r"
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then
  redis.call('DEL', key)
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
local count = redis.call('ZCARD', key)
if count >= tonumber(ARGV[3]) then
  return -1
end
redis.call('ZADD', key, ARGV[2], ARGV[5])
redis.call('EXPIRE', key, ARGV[4])
return count + 1
";

pub struct Redis {
    /// Boxed: a client is large, and [`super::Store`] holds a `Redis` inline.
    client: Box<Client>,
    prefix: String,
    timeout: Duration,
    link: Mutex<Link>,
    hit_script: Script,
    /// Distinguishes this process's counter events from other hosts'.
    instance: u64,
    /// Distinguishes this process's events within one second.
    sequence: AtomicU64,
}

/// The current connection, if any, and the retry throttle.
struct Link {
    /// Bumped for every new manager, so that the outcome of an operation
    /// on an old one cannot drop its successor.
    generation: u64,
    manager: Option<ConnectionManager>,
    /// Whether an operation has got an answer through `manager`.
    proven: bool,
    /// No connection attempt before this.
    retry_at: Option<Instant>,
}

impl Redis {
    /// Parses `url`; does not connect (nor need a runtime), so only a bad
    /// URL fails.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Redis, StateError> {
        let client = Box::new(Client::open(url)?);
        Ok(Redis {
            client,
            prefix: prefix.to_string(),
            timeout,
            link: Mutex::new(Link {
                generation: 0,
                manager: None,
                proven: false,
                retry_at: None,
            }),
            hit_script: Script::new(HIT_SCRIPT),
            instance: instance_id(),
            sequence: AtomicU64::new(0),
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StateError> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.key(key));
        match self.query::<Option<String>>(cmd).await {
            // A counter, not a value: as in memory, nothing.
            Err(StateError::Redis(e)) if e.code() == Some("WRONGTYPE") => Ok(None),
            other => other,
        }
    }

    /// `ttl` is at least a second (the caller sees to it; a shorter one is
    /// rounded up here too, since Redis refuses `EX 0`).
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StateError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        self.query::<()>(cmd).await
    }

    pub async fn remove(&self, key: &str) -> Result<(), StateError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key(key));
        self.query::<i64>(cmd).await.map(drop)
    }

    /// See [`super::Store::hit`]: an event at `t` is in the window while
    /// `t + window > now`.
    pub async fn hit(
        &self,
        key: &str,
        now: u64,
        window: Duration,
        limit: u32,
    ) -> Result<Option<u32>, StateError> {
        let window = window.as_secs().max(1);
        // Signed: before `window` seconds of the epoch nothing has left.
        let cutoff = i128::from(now) - i128::from(window);
        let member = format!(
            "{now}:{:016x}:{}",
            self.instance,
            self.sequence.fetch_add(1, Ordering::Relaxed)
        );
        let mut invocation = self.hit_script.prepare_invoke();
        invocation
            .key(self.key(key))
            .arg(cutoff.to_string())
            .arg(now)
            .arg(limit)
            .arg(window)
            .arg(member);
        let counted: i64 = self
            .run(|mut con| async move { invocation.invoke_async(&mut con).await })
            .await?;
        Ok(u32::try_from(counted).ok())
    }

    /// See [`super::Store::count`]: the events of the window, changing
    /// nothing.
    pub async fn count(&self, key: &str, now: u64, window: Duration) -> Result<u32, StateError> {
        let cutoff = i128::from(now) - i128::from(window.as_secs().max(1));
        let mut cmd = ::redis::cmd("ZCOUNT");
        cmd.arg(self.key(key)).arg(format!("({cutoff}")).arg("+inf");
        let n: i64 = self.query(cmd).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Every string key starting with `prefix` (after the configured one),
    /// without the configured prefix, with its value, sorted by key.
    /// Counters are skipped. Each round trip is bounded by the timeout,
    /// not the whole listing.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, String)>, StateError> {
        let full = self.key(prefix);
        let pattern = format!("{}*", escape_glob(&full));
        let mut keys = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = ::redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let (next, batch): (u64, Vec<Vec<u8>>) = self.query(cmd).await?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|k| String::from_utf8(k).ok())
                    .filter(|k| k.starts_with(&full)),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(SCAN_BATCH) {
            let mut cmd = ::redis::cmd("MGET");
            cmd.arg(chunk);
            // MGET answers nil for a key that is gone or is not a string.
            let values: Vec<Option<Vec<u8>>> = self.query(cmd).await?;
            for (key, value) in chunk.iter().zip(values) {
                let Some(value) = value.and_then(|v| String::from_utf8(v).ok()) else {
                    continue;
                };
                if let Some(short) = key.strip_prefix(&self.prefix) {
                    found.push((short.to_string(), value));
                }
            }
        }
        Ok(found)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn query<T: ::redis::FromRedisValue>(&self, cmd: Cmd) -> Result<T, StateError> {
        self.run(|mut con| async move { cmd.query_async(&mut con).await })
            .await
    }

    /// Runs one request on the connection within the timeout, and learns
    /// from its outcome whether the connection is to be replaced.
    async fn run<T, F, Fut>(&self, request: F) -> Result<T, StateError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, manager) = self.connection()?;
        let result = match tokio::time::timeout(self.timeout, request(manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_timeout() => Err(StateError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(StateError::Redis(e)),
            Err(_elapsed) => Err(StateError::Timeout(self.timeout)),
        };
        self.settle(generation, &result);
        result
    }

    fn lock(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current manager, or a new one (which connects on first use),
    /// unless a connection attempt failed too recently.
    fn connection(&self) -> Result<(u64, ConnectionManager), StateError> {
        let mut link = self.lock();
        if let Some(manager) = &link.manager {
            return Ok((link.generation, manager.clone()));
        }
        if link.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(StateError::NotConnected);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            // One attempt per connection: the retrying is ours, throttled.
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config((*self.client).clone(), config)?;
        link.generation += 1;
        link.manager = Some(manager.clone());
        link.proven = false;
        link.retry_at = None;
        Ok((link.generation, manager))
    }

    fn settle<T>(&self, generation: u64, result: &Result<T, StateError>) {
        let mut link = self.lock();
        if link.generation != generation {
            return;
        }
        match result {
            Err(e) if connection_failure(e) => {
                link.manager = None;
                // A connection that worked and broke is replaced at once;
                // one that never answered means Redis is unreachable.
                if !link.proven {
                    link.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                }
            }
            // An answer, even an error reply: the connection works.
            _ => link.proven = true,
        }
    }
}

/// Whether `e` says the connection (rather than one request) is bad.
fn connection_failure(e: &StateError) -> bool {
    match e {
        StateError::Timeout(_) | StateError::NotConnected => true,
        StateError::Redis(e) => is_connection_error(e),
        StateError::File { .. } => false,
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error()
}

/// `text` with the characters special in a `SCAN MATCH` pattern escaped.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A number unlikely to be shared with another process, here or on
/// another host.
fn instance_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// A redis-server on a loopback port, stopped on drop.
    struct Server {
        child: Child,
    }

    impl Server {
        async fn start(port: u16) -> Server {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let server = Server { child };
            let client = Client::open(url(port)).unwrap();
            for _ in 0..200 {
                if let Ok(mut con) = client.get_multiplexed_async_connection().await {
                    let pong: RedisResult<String> =
                        ::redis::cmd("PING").query_async(&mut con).await;
                    if pong.is_ok() {
                        return server;
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("redis-server on port {port} does not answer");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    async fn plain(port: u16) -> ::redis::aio::MultiplexedConnection {
        Client::open(url(port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn setup(prefix: &str) -> (Server, Redis, u16) {
        let port = free_port();
        let server = Server::start(port).await;
        let redis = Redis::new(&url(port), prefix, Duration::from_secs(2)).unwrap();
        (server, redis, port)
    }

    #[tokio::test]
    async fn values_round_trip_with_prefix_and_ttl() {
        let (_server, r, port) = setup("mx:").await;
        assert_eq!(r.get("a").await.unwrap(), None);
        r.put("a", "1 2", Duration::from_secs(100)).await.unwrap();
        assert_eq!(r.get("a").await.unwrap().as_deref(), Some("1 2"));

        let mut con = plain(port).await;
        let raw: Option<String> = ::redis::cmd("GET")
            .arg("mx:a")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(raw.as_deref(), Some("1 2"));
        let ttl: i64 = ::redis::cmd("TTL")
            .arg("mx:a")
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 100, "ttl {ttl}");

        r.remove("a").await.unwrap();
        assert_eq!(r.get("a").await.unwrap(), None);
        // Removing what is not there is fine.
        r.remove("a").await.unwrap();
    }

    #[tokio::test]
    async fn sliding_window_counts_and_refuses_at_the_limit() {
        let (_server, r, port) = setup("mx:").await;
        let hour = Duration::from_secs(3600);
        assert_eq!(r.hit("k", 1000, hour, 3).await.unwrap(), Some(1));
        assert_eq!(r.hit("k", 1100, hour, 3).await.unwrap(), Some(2));
        assert_eq!(r.hit("k", 1200, hour, 3).await.unwrap(), Some(3));
        // Full: refused and not counted.
        assert_eq!(r.hit("k", 4599, hour, 3).await.unwrap(), None);
        // Counting changes nothing.
        assert_eq!(r.count("k", 4599, hour).await.unwrap(), 3);
        assert_eq!(r.count("k", 4600, hour).await.unwrap(), 2);
        assert_eq!(r.count("none", 4600, hour).await.unwrap(), 0);
        // The first event leaves the window at 1000 + 3600.
        assert_eq!(r.hit("k", 4600, hour, 3).await.unwrap(), Some(3));
        // Long after: an empty window.
        assert_eq!(r.hit("k", 100_000, hour, 3).await.unwrap(), Some(1));
        assert_eq!(r.hit("z", 0, hour, 0).await.unwrap(), None);

        // Several events in one second all count.
        for n in 1..=4 {
            assert_eq!(r.hit("same", 50, hour, 10).await.unwrap(), Some(n));
        }
        // Early in the epoch nothing has left the window yet.
        assert_eq!(r.hit("same", 100, hour, 10).await.unwrap(), Some(5));

        let mut con = plain(port).await;
        let ttl: i64 = ::redis::cmd("TTL")
            .arg("mx:k")
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 3600, "ttl {ttl}");
        let exists: i64 = ::redis::cmd("EXISTS")
            .arg("mx:z")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(exists, 0);
    }

    #[tokio::test]
    async fn hits_are_atomic_across_clients() {
        let (_server, first, port) = setup("mx:").await;
        let second = Redis::new(&url(port), "mx:", Duration::from_secs(2)).unwrap();
        let hour = Duration::from_secs(3600);
        let (a, b) = tokio::join!(
            futures_util::future::join_all((0..20).map(|_| first.hit("c", 5000, hour, 7))),
            futures_util::future::join_all((0..20).map(|_| second.hit("c", 5000, hour, 7))),
        );
        let mut counted: Vec<u32> = a.into_iter().chain(b).filter_map(|r| r.unwrap()).collect();
        counted.sort_unstable();
        assert_eq!(counted, (1..=7).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn values_and_counters_replace_each_other_as_in_memory() {
        let (_server, r, _port) = setup("mx:").await;
        let hour = Duration::from_secs(3600);
        r.hit("x", 1000, hour, 5).await.unwrap();
        assert_eq!(r.get("x").await.unwrap(), None);
        r.put("x", "v", hour).await.unwrap();
        assert_eq!(r.get("x").await.unwrap().as_deref(), Some("v"));
        assert_eq!(r.hit("x", 1000, hour, 5).await.unwrap(), Some(1));
        assert_eq!(r.get("x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn list_finds_values_under_a_prefix() {
        let (_server, r, port) = setup("mx*:").await;
        let day = Duration::from_secs(86_400);
        r.put("ban:192.0.2.2", "300 2", day).await.unwrap();
        r.put("ban:192.0.2.1", "200 1", day).await.unwrap();
        r.put("ban*:odd", "star", day).await.unwrap();
        r.put("bank", "not a ban", day).await.unwrap();
        r.put("rcpt:a@example.com", "exists 1", day).await.unwrap();
        r.hit("ban:counter", 1000, day, 5).await.unwrap();
        // Same text without the configured prefix's star: not ours.
        let mut con = plain(port).await;
        let () = ::redis::cmd("SET")
            .arg("mxx:ban:192.0.2.3")
            .arg("foreign")
            .query_async(&mut con)
            .await
            .unwrap();

        assert_eq!(
            r.list("ban:").await.unwrap(),
            vec![
                ("ban:192.0.2.1".to_string(), "200 1".to_string()),
                ("ban:192.0.2.2".to_string(), "300 2".to_string()),
            ]
        );
        assert_eq!(
            r.list("ban*").await.unwrap(),
            vec![("ban*:odd".to_string(), "star".to_string())]
        );
        assert_eq!(r.list("").await.unwrap().len(), 5);
        assert!(r.list("none:").await.unwrap().is_empty());
    }

    #[test]
    fn operations_can_run_on_spawned_tasks() {
        fn send<T: Send>(_: &T) {}
        fn shared<T: Send + Sync>() {}
        shared::<Redis>();
        let r = Redis::new("redis://127.0.0.1/", "", Duration::from_secs(1)).unwrap();
        let hour = Duration::from_secs(3600);
        send(&r.get("k"));
        send(&r.put("k", "v", hour));
        send(&r.remove("k"));
        send(&r.hit("k", 1, hour, 1));
        send(&r.list("k"));
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
        assert!(Redis::new("not a url", "", Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn a_server_that_never_answers_does_not_hang_anyone() {
        // Connections are accepted by the kernel and then left unanswered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let r = Redis::new(&url(port), "mx:", Duration::from_millis(300)).unwrap();
        let hour = Duration::from_secs(3600);
        let first = tokio::time::timeout(Duration::from_secs(30), r.hit("k", 1, hour, 5)).await;
        assert!(
            matches!(first, Ok(Err(StateError::Timeout(_)))),
            "{first:?}"
        );
        // The attempt never got an answer: the next calls fail at once.
        assert!(matches!(r.get("k").await, Err(StateError::NotConnected)));
        drop(silent);
    }

    /// An operation until one succeeds, a bounded number of times.
    async fn until_ok(r: &Redis) -> bool {
        for _ in 0..200 {
            if r.put("p", "1", Duration::from_secs(60)).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    #[tokio::test]
    async fn starts_without_redis_and_connects_when_it_comes() {
        let port = free_port();
        let r = Redis::new(&url(port), "mx:", Duration::from_millis(500)).unwrap();
        assert!(r.get("a").await.is_err());
        // Throttled: fails at once without a new attempt.
        assert!(matches!(r.get("a").await, Err(StateError::NotConnected)));

        let server = Server::start(port).await;
        assert!(until_ok(&r).await, "never connected");
        assert_eq!(r.get("p").await.unwrap().as_deref(), Some("1"));

        // Redis goes away and comes back: the connection is replaced.
        drop(server);
        assert!(r.get("p").await.is_err());
        let _server = Server::start(port).await;
        assert!(until_ok(&r).await, "never reconnected");
        assert_eq!(r.get("p").await.unwrap().as_deref(), Some("1"));
    }
}
