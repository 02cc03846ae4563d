//! The shared bench harness's `tx` and `garbage` modes (its `loadgen.py`),
//! in Rust on one thread: the same profiles (each client bound to its own
//! 127.x.y.z), the same lock-step transaction, the same bounds (a session
//! count and a duration, plus a grace) and the same JSON, so the harness's
//! `bench.py` reads it unchanged — at a fraction of the Python client's
//! CPU, so that on two cores the figures show the servers, not the client.
//! `bench/loadgen.sh` puts it in place of `loadgen.py` for those modes.
//! A third mode, `noop-milter`, is not a client: the content filter that
//! judges nothing, for `bench/milter.sh` (see `noop_milter.rs`).

use serde_json::{json, Map, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

mod noop_milter;

/// A client profile: its source addresses and what it says.
struct Profile {
    name: &'static str,
    pool: Vec<String>,
    helo: &'static str,
    mail: &'static str,
    rcpt: &'static str,
}

fn pool(prefix: &str, from: u32, to: u32) -> Vec<String> {
    (from..to).map(|n| format!("{prefix}{n}")).collect()
}

/// The harness's profiles (its `dns/gen-unbound-conf.py` data).
fn profiles() -> Vec<Profile> {
    let p = |name, pool, helo, mail, rcpt| Profile {
        name,
        pool,
        helo,
        mail,
        rcpt,
    };
    let user = "user{k}@example.test";
    vec![
        p(
            "clean",
            pool("127.0.1.", 1, 201),
            "mx-{n}.good.test",
            "sender{n}@good.test",
            user,
        ),
        p(
            "aonly",
            pool("127.0.1.", 1, 201),
            "mx-{n}.good.test",
            "someone@aonly.test",
            user,
        ),
        p(
            "forged",
            pool("127.0.2.", 1, 255),
            "mx-{n}.forged.test",
            "sender{n}@good.test",
            user,
        ),
        p(
            "noptr",
            pool("127.0.3.", 1, 255),
            "mx-{n}.noptr.test",
            "sender{n}@good.test",
            user,
        ),
        p(
            "listed",
            pool("127.0.4.", 1, 255),
            "mx-{n}.spam.test",
            "sender{n}@good.test",
            user,
        ),
        p(
            "testpoint",
            vec!["127.0.0.2".into()],
            "testpoint.good.test",
            "sender@good.test",
            "user1@example.test",
        ),
        p(
            "badhelo",
            pool("127.0.1.", 201, 255),
            "bogushost",
            "sender{n}@good.test",
            user,
        ),
        p(
            "badsender",
            pool("127.0.1.", 201, 255),
            "mx-{n}.good.test",
            "spammer{n}@nodns.test",
            user,
        ),
        p(
            "unknownrcpt",
            pool("127.0.1.", 201, 255),
            "mx-{n}.good.test",
            "sender{n}@good.test",
            "nosuchuser{k}@example.test",
        ),
        p(
            "relay",
            pool("127.0.1.", 201, 255),
            "mx-{n}.good.test",
            "sender{n}@good.test",
            "victim{k}@elsewhere.test",
        ),
    ]
}

/// The command line, as `loadgen.py` takes it (the options of tx and
/// garbage).
struct Args {
    mode: String,
    server: SocketAddr,
    profiles: String,
    concurrency: usize,
    count: u64,
    duration: f64,
    grace: f64,
    size: usize,
    users: u64,
    op_timeout: Duration,
    pregreet: bool,
    blank_lines: usize,
    garbage_wait: f64,
    out: Option<String>,
    label: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let mode = argv
        .next()
        .ok_or("usage: mxbench-loadgen tx|garbage|noop-milter [options]")?;
    if mode != "tx" && mode != "garbage" {
        return Err(format!(
            "mode {mode}: only tx and garbage (the others stay in loadgen.py)"
        ));
    }
    let mut a = Args {
        profiles: if mode == "garbage" { "listed" } else { "clean" }.into(),
        mode,
        server: SocketAddr::from(([127, 0, 0, 1], 25)),
        concurrency: 20,
        count: 100_000,
        duration: 20.0,
        grace: 30.0,
        size: 10240,
        users: 100,
        op_timeout: Duration::from_secs(30),
        pregreet: false,
        blank_lines: 3,
        garbage_wait: 3.0,
        out: None,
        label: None,
    };
    while let Some(flag) = argv.next() {
        if flag == "--pregreet" {
            a.pregreet = true;
            continue;
        }
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("{flag}: bad value {value}");
        match flag.as_str() {
            "--server" => a.server = value.parse().map_err(|_| format!("--server: {value}"))?,
            "--profiles" => a.profiles = value,
            "--concurrency" | "-c" => a.concurrency = value.parse().map_err(bad)?,
            "--count" | "-n" => a.count = value.parse().map_err(bad)?,
            "--duration" | "-d" => {
                a.duration = value.parse().map_err(|_| format!("{flag}: {value}"))?
            }
            "--grace" => a.grace = value.parse().map_err(|_| format!("{flag}: {value}"))?,
            "--size" => a.size = value.parse().map_err(bad)?,
            "--users" => a.users = value.parse().map_err(bad)?,
            "--op-timeout" => {
                let secs: f64 = value.parse().map_err(|_| format!("{flag}: {value}"))?;
                a.op_timeout = Duration::from_secs_f64(secs);
            }
            "--blank-lines" => a.blank_lines = value.parse().map_err(bad)?,
            "--garbage-wait" => {
                a.garbage_wait = value.parse().map_err(|_| format!("{flag}: {value}"))?
            }
            "--out" => a.out = Some(value),
            "--label" => a.label = Some(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

/// `clean:3,listed:1`: profile indexes, round robin by weight.
fn schedule(spec: &str, all: &[Profile]) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once(':').unwrap_or((part, "1"));
        let i = all
            .iter()
            .position(|p| p.name == name)
            .ok_or(format!("unknown profile {name}"))?;
        let weight: usize = weight
            .parse()
            .map_err(|_| format!("bad weight in {part}"))?;
        out.extend(std::iter::repeat_n(i, weight));
    }
    Ok(out)
}

/// Outcomes, reply samples and latencies, as `loadgen.py`'s `Stats`.
#[derive(Default)]
struct Stats {
    outcomes: BTreeMap<String, u64>,
    samples: BTreeMap<String, Vec<String>>,
    lat: Vec<f64>,
    dlat: Vec<f64>,
    lat_by: BTreeMap<String, Vec<f64>>,
    sessions: u64,
}

impl Stats {
    fn add(
        &mut self,
        outcome: String,
        line: Option<String>,
        t_sess: Option<f64>,
        t_dec: Option<f64>,
    ) {
        self.sessions += 1;
        *self.outcomes.entry(outcome.clone()).or_default() += 1;
        let samples = self.samples.entry(outcome.clone()).or_default();
        if let Some(line) = line {
            if samples.len() < 4 && !samples.contains(&line) {
                samples.push(line);
            }
        }
        if let Some(t) = t_sess {
            self.lat.push(t);
            self.lat_by.entry(outcome).or_default().push(t);
        }
        if let Some(t) = t_dec {
            self.dlat.push(t);
        }
    }

    fn summary(&self, elapsed: f64) -> Map<String, Value> {
        let mut m = Map::new();
        let per_s = |n: f64| round(n / elapsed, 2);
        m.insert("elapsed_s".into(), json!(round(elapsed, 3)));
        m.insert("sessions".into(), json!(self.sessions));
        m.insert("sessions_per_s".into(), json!(per_s(self.sessions as f64)));
        m.insert("outcomes".into(), json!(self.outcomes));
        let rates: BTreeMap<&String, f64> = self
            .outcomes
            .iter()
            .map(|(k, v)| (k, per_s(*v as f64)))
            .collect();
        m.insert("rate_per_s".into(), json!(rates));
        m.insert("latency_session".into(), latency(&self.lat));
        m.insert("latency_decision".into(), latency(&self.dlat));
        let by: BTreeMap<&String, Value> =
            self.lat_by.iter().map(|(k, v)| (k, latency(v))).collect();
        m.insert("latency_session_by_outcome".into(), json!(by));
        m.insert("reply_samples".into(), json!(self.samples));
        m
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn latency(v: &[f64]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = (p / 100.0 * (v.len() - 1) as f64).round() as usize;
        round(v[i.min(v.len() - 1)] * 1e3, 2)
    };
    json!({"n": v.len(), "p50_ms": pct(50.0), "p90_ms": pct(90.0), "p99_ms": pct(99.0),
           "max_ms": round(v[v.len() - 1] * 1e3, 2)})
}

/// A connection reading whole (multi-line) replies.
struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

/// A reply: its code and lines, or why there is none (`closed`, `timeout`).
type Reply = Result<(u16, Vec<String>), &'static str>;

impl Conn {
    async fn open(src: &str, to: SocketAddr, timeout: Duration) -> Result<Conn, String> {
        let src: IpAddr = src.parse().map_err(|_| "bad source".to_string())?;
        let socket = TcpSocket::new_v4().map_err(|e| kind(&e))?;
        socket.bind(SocketAddr::new(src, 0)).map_err(|e| kind(&e))?;
        let stream: TcpStream = match tokio::time::timeout(timeout, socket.connect(to)).await {
            Err(_) => return Err("timeout".into()),
            Ok(Err(e)) => return Err(kind(&e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Ok(Conn {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    async fn reply(&mut self, timeout: Duration) -> Reply {
        let mut lines = Vec::new();
        let read = async {
            loop {
                let mut line = Vec::new();
                match self.reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return Err("closed"),
                    Ok(_) => {}
                }
                let more = line.get(3) == Some(&b'-') && line.len() >= 4;
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                lines.push(text);
                if !more {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err("timeout"),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => {
                let code = lines
                    .last()
                    .and_then(|l| l.get(..3))
                    .and_then(|c| c.parse().ok());
                Ok((code.unwrap_or(0), lines))
            }
        }
    }

    async fn send(&mut self, data: &[u8]) {
        let _ = self.writer.write_all(data).await;
    }
}

/// The name of an I/O error as Python's exception would be named.
fn kind(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "ConnectionRefusedError".into(),
        std::io::ErrorKind::ConnectionReset => "ConnectionResetError".into(),
        _ => "OSError".into(),
    }
}

/// The harness's message: its header, then `size` octets of body lines.
fn message(mail: &str, rcpt: &str, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: <{mail}>\r\nTo: <{rcpt}>\r\nSubject: mxbench message {seq}\r\n\
         Date: Sat, 22 Nov 2025 08:00:00 +0000\r\nMessage-ID: <{seq}.{}@good.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
    )
    .into_bytes();
    m.extend_from_slice(body);
    m.extend_from_slice(b".\r\n");
    m
}

fn body(size: usize) -> Vec<u8> {
    let line: &[u8] =
        b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopq\r\n";
    let reps = (size / line.len()).max(1);
    let mut b = line.repeat(reps);
    if size >= 2 {
        b.truncate(size);
    }
    if !b.ends_with(b"\r\n") {
        let n = b.len();
        b.truncate(n.saturating_sub(2));
        b.extend_from_slice(b"\r\n");
    }
    b
}

struct Outcome {
    name: String,
    line: Option<String>,
    t_sess: Option<f64>,
    t_dec: Option<f64>,
}

fn outcome(name: String, line: Option<String>, t_sess: Option<f64>, t_dec: Option<f64>) -> Outcome {
    Outcome {
        name,
        line,
        t_sess,
        t_dec,
    }
}

/// One transaction of `profile`, lock-step as `loadgen.py`'s.
async fn session(a: &Args, profile: &Profile, seq: u64, body: &[u8]) -> Outcome {
    let src = &profile.pool[(seq % profile.pool.len() as u64) as usize];
    let n = src.rsplit('.').next().unwrap_or("0");
    let k = (seq % a.users.max(1) + 1).to_string();
    let fill = |t: &str| t.replace("{n}", n).replace("{k}", &k);
    let (helo, mail, rcpt) = (fill(profile.helo), fill(profile.mail), fill(profile.rcpt));
    let t0 = Instant::now();
    let to = a.op_timeout;
    let mut c = match Conn::open(src, a.server, to).await {
        Ok(c) => c,
        Err(e) => return outcome(format!("error:{e}@connect"), None, None, None),
    };
    let steps: [(&str, Option<Vec<u8>>); 6] = [
        ("connect", None),
        ("ehlo", Some(format!("EHLO {helo}\r\n").into_bytes())),
        ("mail", Some(format!("MAIL FROM:<{mail}>\r\n").into_bytes())),
        ("rcpt", Some(format!("RCPT TO:<{rcpt}>\r\n").into_bytes())),
        ("data", Some(b"DATA\r\n".to_vec())),
        ("dot", Some(message(&mail, &rcpt, seq, body))),
    ];
    for (stage, cmd) in steps {
        if let Some(cmd) = cmd {
            c.send(&cmd).await;
        }
        let (code, lines) = match c.reply(to).await {
            Ok(reply) => reply,
            Err(why) => return outcome(format!("error:{why}@{stage}"), None, None, None),
        };
        let ok = if stage == "data" {
            code == 354
        } else {
            (200..400).contains(&code)
        };
        if !ok {
            let t_dec = t0.elapsed().as_secs_f64();
            let kind = match code {
                500..=599 => "reject",
                400..=499 => "tempfail",
                _ => "bad",
            };
            c.send(b"QUIT\r\n").await;
            let _ = c.reply(to.min(Duration::from_secs(5))).await;
            let line = if stage == "ehlo" {
                lines.first()
            } else {
                lines.last()
            };
            let t_sess = t0.elapsed().as_secs_f64();
            return outcome(
                format!("{kind}@{stage}"),
                line.cloned(),
                Some(t_sess),
                Some(t_dec),
            );
        }
    }
    let t_dec = t0.elapsed().as_secs_f64();
    c.send(b"QUIT\r\n").await;
    let _ = c.reply(to).await;
    outcome(
        "accepted".into(),
        None,
        Some(t0.elapsed().as_secs_f64()),
        Some(t_dec),
    )
}

/// One botnet-style client: `.` and blank lines, before the banner with
/// `--pregreet`; what the server does about it.
async fn garbage(a: &Args, profile: &Profile, seq: u64) -> Outcome {
    let src = &profile.pool[(seq % profile.pool.len() as u64) as usize];
    let t0 = Instant::now();
    let mut c = match Conn::open(src, a.server, a.op_timeout).await {
        Ok(c) => c,
        Err(e) => return outcome(format!("error:{e}@connect"), None, None, None),
    };
    let mut junk = b".\r\n".to_vec();
    junk.extend(std::iter::repeat_n(b"\r\n".iter().copied(), a.blank_lines).flatten());
    let mut first = None;
    if a.pregreet {
        c.send(&junk).await;
    } else {
        match c.reply(a.op_timeout).await {
            Err(why) => return outcome(format!("error:{why}@banner"), None, None, None),
            Ok((code, lines)) => {
                let last = lines.last().cloned();
                if code >= 400 {
                    let t = Some(t0.elapsed().as_secs_f64());
                    return outcome(format!("banner{}xx", code / 100), last, t, None);
                }
                first = last;
                c.send(&junk).await;
            }
        }
    }
    let want = 1 + a.blank_lines + usize::from(a.pregreet);
    let end = Instant::now() + Duration::from_secs_f64(a.garbage_wait);
    let mut codes: Vec<String> = Vec::new();
    let mut result = "client_gave_up";
    while Instant::now() < end {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        match c.reply(left).await {
            Err("closed") => {
                codes.push("closed".into());
                result = "server_closed";
                break;
            }
            Err(_) => break,
            Ok((code, lines)) => {
                codes.push(code.to_string());
                if first.is_none() || code >= 400 {
                    first = lines.last().cloned();
                }
                if codes.len() >= want {
                    result = "all_answered";
                    break;
                }
            }
        }
    }
    let shown = codes.iter().take(6).cloned().collect::<Vec<_>>().join(",");
    let line = format!("{} | codes={shown}", first.unwrap_or_default());
    outcome(
        result.into(),
        Some(line),
        Some(t0.elapsed().as_secs_f64()),
        None,
    )
}

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

async fn run(a: Rc<Args>) -> Result<Map<String, Value>, String> {
    let all = Rc::new(profiles());
    let sched = Rc::new(schedule(&a.profiles, &all)?);
    let mixed = sched
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let stats = Rc::new(RefCell::new(Stats::default()));
    let counter = Rc::new(Cell::new(0u64));
    let body = Rc::new(body(a.size));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.duration);
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (a, all, sched, stats, counter, body) = (
            a.clone(),
            all.clone(),
            sched.clone(),
            stats.clone(),
            counter.clone(),
            body.clone(),
        );
        workers.push(tokio::task::spawn_local(async move {
            while counter.get() < a.count && Instant::now() < deadline {
                let seq = counter.get();
                counter.set(seq + 1);
                let profile = &all[sched[(seq % sched.len() as u64) as usize]];
                let o = match a.mode.as_str() {
                    "tx" => session(&a, profile, seq / sched.len() as u64, &body).await,
                    _ => garbage(&a, profile, seq).await,
                };
                let name = if mixed {
                    format!("{}:{}", profile.name, o.name)
                } else {
                    o.name
                };
                stats.borrow_mut().add(name, o.line, o.t_sess, o.t_dec);
            }
        }));
    }
    let bound = Duration::from_secs_f64(a.duration + a.grace);
    let mut unfinished = 0;
    for w in workers {
        let left = (start + bound).saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, w).await {
            Ok(_) => {}
            Err(_) => unfinished += 1,
        }
    }
    let mut out = stats.borrow().summary(start.elapsed().as_secs_f64());
    out.insert("unfinished_workers".into(), json!(unfinished));
    Ok(out)
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("noop-milter") {
        return noop_milter::main(&argv[1..]);
    }
    let args = match parse_args() {
        Ok(a) => Rc::new(a),
        Err(e) => {
            eprintln!("mxbench-loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mxbench-loadgen: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let cpu0 = cpu_seconds();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, run(args.clone()));
    let body = match result {
        Ok(body) => body,
        Err(e) => {
            eprintln!("mxbench-loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut out = Map::new();
    out.insert("mode".into(), json!(args.mode));
    out.insert("label".into(), json!(args.label));
    out.insert("server".into(), json!(args.server.to_string()));
    out.insert("profiles".into(), json!(args.profiles));
    out.insert("concurrency".into(), json!(args.concurrency));
    out.insert("size".into(), json!(args.size));
    out.insert("count_bound".into(), json!(args.count));
    out.insert("duration_bound".into(), json!(args.duration));
    out.insert("started".into(), json!(started));
    out.insert(
        "loadgen_cpu_s".into(),
        json!(round(cpu_seconds() - cpu0, 2)),
    );
    out.insert("event_loop".into(), json!("tokio (mxbench-loadgen)"));
    out.extend(body);
    let text = serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default();
    if let Some(path) = &args.out {
        if let Err(e) = std::fs::write(path, format!("{text}\n")) {
            eprintln!("mxbench-loadgen: {path}: {e}");
            return std::process::ExitCode::from(1);
        }
    }
    println!("{text}");
    std::process::ExitCode::SUCCESS
}
