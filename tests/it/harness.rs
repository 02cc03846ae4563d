//! Test harness: the real `mxguard` binary in a temporary directory, a real
//! Postfix `smtp-sink` as downstream, swaks as a real client, and a raw
//! SMTP client for byte-level tests. Every wait is bounded by a deadline
//! and waits for a condition (a log line, a port, a file), never a fixed time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns `Some`, or panics after `DEADLINE`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on a thread of its own inside a new network namespace whose
/// loopback is up and also carries the IPv6 addresses `extra` (each /64),
/// for tests of many client addresses; processes started from `f` are in
/// that namespace too. Needs root, as CI runs.
pub fn in_network_namespace<T: Send + 'static>(
    extra: &'static [&'static str],
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare only moves this thread into a new namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) (run the tests as root): {}",
            std::io::Error::last_os_error()
        );
        let ip = |args: &[&str]| {
            let status = Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2)");
            assert!(status.success(), "ip {args:?}");
        };
        ip(&["link", "set", "lo", "up"]);
        for addr in extra {
            ip(&[
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                "lo",
                "nodad",
            ]);
        }
        f()
    })
    .join()
    .unwrap()
}

/// A free loopback port (bound, then released for the test to use), never
/// one handed out before in this run: two tests given the same port would
/// each find "their" server listening — the other's (seen with two
/// Postfix instances, one of which could not bind).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no loopback port not handed out before in 1000 tries");
}

/// A running `mxguard serve` (or `mxguard policy-server`) on a config
/// written into `dir`.
pub struct Mxguard {
    child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The SMTP listener (the policy listener for `policy-server`, unless
    /// it is a unix socket).
    pub addr: SocketAddr,
    starts: usize,
    /// `serve` or `policy-server`.
    command: &'static str,
    /// The file mode creation mask the server starts with, if not ours.
    umask: Option<libc::mode_t>,
}

impl Mxguard {
    /// `sections` is TOML for everything but `[server]` (which gets
    /// `server_extra` lines), `[spool]` and `[log]`.
    pub fn start_with(dir: &Path, server_extra: &str, sections: &str) -> Mxguard {
        Mxguard::launch("serve", dir, server_extra, sections)
    }

    /// `mxguard policy-server`: `sections` must set `[policy_server]`;
    /// `addr` is the policy listener.
    pub fn start_policy_server(dir: &Path, sections: &str) -> Mxguard {
        Mxguard::launch("policy-server", dir, "", sections)
    }

    /// `mxguard policy-server` started with the file mode creation mask
    /// `umask`.
    pub fn start_policy_server_with_umask(
        dir: &Path,
        sections: &str,
        umask: libc::mode_t,
    ) -> Mxguard {
        Mxguard::launch_with("policy-server", dir, "", sections, Some(umask))
    }

    fn launch(command: &'static str, dir: &Path, server_extra: &str, sections: &str) -> Mxguard {
        Mxguard::launch_with(command, dir, server_extra, sections, None)
    }

    fn launch_with(
        command: &'static str,
        dir: &Path,
        server_extra: &str,
        sections: &str,
        umask: Option<libc::mode_t>,
    ) -> Mxguard {
        let config = dir.join("mxguard.toml");
        std::fs::write(&config, config_text(server_extra, sections)).unwrap();
        let mut mx = Mxguard {
            child: None,
            dir: dir.to_path_buf(),
            config,
            addr: "127.0.0.1:0".parse().unwrap(),
            starts: 0,
            command,
            umask,
        };
        mx.restart();
        mx
    }

    /// Writes a new configuration file (the server reads it on SIGHUP).
    pub fn rewrite_config(&self, server_extra: &str, sections: &str) {
        let text = config_text(server_extra, sections);
        let new = self.config.with_extension("new");
        std::fs::write(&new, text).unwrap();
        std::fs::rename(&new, &self.config).unwrap();
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
    }

    /// Waits (bounded) for the server to exit; its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_for("mxguard to exit", || child.try_wait().ok().flatten());
        self.child = None;
        status
    }
}

/// The configuration file the harness writes: `[server]` (with
/// `server_extra`), `[spool]` and `[log]` around `sections`.
fn config_text(server_extra: &str, sections: &str) -> String {
    {
        // Tests that do not set up DNS must not look anything up: the one
        // check on by default (message authentication) is turned off.
        let sections = if sections.contains("[checks]") {
            sections.to_string()
        } else {
            format!("{sections}\n[checks]\ndmarc = \"off\"\n")
        };
        // The pregreet wait would hold every test connection for a second.
        let sections = if sections.contains("[abuse]") {
            sections
        } else {
            format!("{sections}\n[abuse]\ngreet_wait = \"0s\"\n")
        };
        let listen = if server_extra.lines().any(|l| l.starts_with("listen =")) {
            ""
        } else {
            "listen = [\"127.0.0.1:0\"]\n"
        };
        format!(
            "[server]\nhostname = \"mx.test\"\n{listen}{server_extra}\n\
             [spool]\ndir = \"spool\"\n[log]\nfile = \"mxguard.log\"\n{sections}\n"
        )
    }
}

impl Mxguard {
    /// As [`Mxguard::start`], the server started with `umask`.
    pub fn start_with_umask(dir: &Path, umask: libc::mode_t, sections: &str) -> Mxguard {
        Mxguard::launch_with("serve", dir, "", sections, Some(umask))
    }

    pub fn start(dir: &Path, sections: &str) -> Mxguard {
        Mxguard::start_with(dir, "", sections)
    }

    /// Starts the server (again) and waits for its listen line.
    pub fn restart(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mxguard"));
        command
            .args([self.command, "--config"])
            .arg(&self.config)
            .env("MXGUARD_TEST_CLOCK", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(mask) = self.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask is async-signal-safe and touches no memory.
            unsafe {
                command.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
        let child = command.spawn().unwrap();
        self.child = Some(child);
        self.starts += 1;
        let want = self.starts;
        let line = wait_for("mxguard to listen", || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    panic!("mxguard exited with {status}: {err}");
                }
            }
            self.log_lines()
                .into_iter()
                .filter(|l| l.contains("event=listen") && !l.contains(" proxy=yes"))
                .filter(|l| {
                    if self.command == "policy-server" {
                        l.contains(" service=policy")
                    } else {
                        !l.contains(" service=")
                    }
                })
                .nth(want - 1)
        });
        // A unix socket (`policy_listen` tells its path) has no address.
        let address = listen_address(&line);
        if !address.starts_with("unix:") {
            self.addr = address.parse().unwrap();
        }
    }

    /// The address of the policy server's listener (its last start).
    pub fn policy_listen(&self) -> String {
        let line = self
            .log_lines()
            .into_iter()
            .rfind(|l| l.contains("event=listen") && l.contains(" service=policy"))
            .expect("a policy server listens");
        listen_address(&line).to_string()
    }

    /// The address of the (first) `server.proxy_listen` listener.
    pub fn proxy_listen(&self) -> SocketAddr {
        let line = self.wait_log(&["event=listen", " proxy=yes"]);
        listen_address(&line).parse().unwrap()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A `kB` figure of the server's /proc status (`VmRSS`, `VmHWM`).
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// SIGTERM, and wait for the process to end (it saves its state).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("mxguard.log")
    }

    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits for a log line containing every needle; returns it.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        wait_for(&format!("a log line with {needles:?}"), || {
            self.log_lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
        })
    }

    /// Waits until `count` log lines contain every needle.
    pub fn wait_log_count(&self, needles: &[&str], count: usize) -> Vec<String> {
        wait_for(&format!("{count} log lines with {needles:?}"), || {
            let found: Vec<String> = self
                .log_lines()
                .into_iter()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .collect();
            (found.len() >= count).then_some(found)
        })
    }

    /// Runs `mxguard ARGS --config <ours>`-style commands.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mxguard"));
        cmd.arg(args[0])
            .arg("--config")
            .arg(&self.config)
            .args(&args[1..]);
        cmd.output().unwrap()
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Sends one line to the server's control socket; its answer.
    pub fn control(&self, command: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.spool().join("control.sock"))
            .expect("control socket");
        s.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Moves the server's clock forward (it runs with MXGUARD_TEST_CLOCK=1).
    pub fn advance_clock(&self, secs: u64) {
        let answer = self.control(&format!("clock advance {secs}"));
        assert_eq!(answer, "ok\n");
    }

    /// Stops the server's clock: it moves only by `advance_clock`, so a
    /// step of one second is exact however slow the machine.
    pub fn freeze_clock(&self) {
        assert_eq!(self.control("clock freeze"), "ok\n");
    }
}

/// The `address=` of an `event=listen` line.
fn listen_address(line: &str) -> &str {
    let rest = line.split("address=").nth(1).unwrap();
    rest.split_whitespace().next().unwrap()
}

impl Drop for Mxguard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Postfix's smtp-sink, dumping each message to a file.
pub struct Sink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Sink {
    pub fn start(dir: &Path, port: u16, extra: &[&str]) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let template = format!("{}/%M.", dir.display());
        let child = Command::new("smtp-sink")
            .args(["-u", "root", "-d", &template])
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (Debian package postfix) must be installed: run scripts/test");
        wait_for("smtp-sink to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Sink {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Every message the sink received (its X- headers, then the message).
    pub fn messages(&self) -> Vec<String> {
        files_in(&self.dir)
    }
}

/// The contents of every file in `dir`, by name (none when it is missing).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect()
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs swaks against `addr`; returns its transcript.
pub fn swaks(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("swaks")
        .args(["--server", &addr.to_string(), "--timeout", "20"])
        .args(args)
        .output()
        .expect("swaks (Debian package swaks) must be installed: run scripts/test");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A raw SMTP client for byte-level tests.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_from("127.0.0.1", addr).await
    }

    /// Connects from a chosen loopback address, e.g. `127.0.0.2` (or an
    /// IPv6 address the test has put on its loopback).
    pub async fn connect_from(source: &str, addr: SocketAddr) -> Client {
        let source: std::net::IpAddr = source.parse().unwrap();
        let socket = match source {
            std::net::IpAddr::V4(_) => TcpSocket::new_v4().unwrap(),
            std::net::IpAddr::V6(_) => TcpSocket::new_v6().unwrap(),
        };
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends if the server still listens; false once it has closed.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads one whole reply (all its lines); empty at end of stream.
    pub async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                return reply;
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&line).into_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
                .await
                .expect("server did not answer in time")
                .unwrap_or(0);
            if n == 0 {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command line and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Connects from `source`, reads the banner and says `EHLO helo`
    /// (whatever the answer).
    pub async fn greet_from(source: &str, addr: SocketAddr, helo: &str) -> Client {
        let mut c = Client::connect_from(source, addr).await;
        c.reply().await;
        c.cmd(&format!("EHLO {helo}")).await;
        c
    }

    /// Reads the banner and says EHLO.
    pub async fn greet(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        let banner = c.reply().await;
        assert!(banner.starts_with("220 "), "{banner}");
        let ehlo = c.cmd("EHLO client.test").await;
        assert!(ehlo.starts_with("250-mx.test"), "{ehlo}");
        c
    }

    /// Greeted, with a transaction from a@client.test to
    /// user@example.test at the 354.
    pub async fn at_data(addr: SocketAddr) -> Client {
        let mut c = Client::greet(addr).await;
        assert!(c.cmd("MAIL FROM:<a@client.test>").await.starts_with("250"));
        assert!(c
            .cmd("RCPT TO:<user@example.test>")
            .await
            .starts_with("250"));
        assert!(c.cmd("DATA").await.starts_with("354"));
        c
    }

    /// The rest of the stream, until the server closes it.
    pub async fn rest(&mut self) -> String {
        let mut out = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut rest))
            .await
            .expect("server did not close in time");
        out.push_str(&String::from_utf8_lossy(&rest));
        out
    }

    pub fn into_stream(self) -> TcpStream {
        assert!(
            self.buf.is_empty(),
            "unread input before handing over the stream"
        );
        self.stream
    }
}

/// MX for example.test, relaying to the downstream at `port`.
pub fn relay_to(port: u16) -> String {
    format!(
        "[relay]\ndomains = [\"example.test\"]\n{}",
        smtp_downstream(port)
    )
}

/// A downstream section for an smtp-sink at `port`.
pub fn smtp_downstream(port: u16) -> String {
    format!("[downstream]\ntargets = [\"smtp://127.0.0.1:{port}\"]\nretry_min = \"1h\"\nretry_max = \"2h\"\n")
}

/// One message as the capture sink saw it on the wire.
#[derive(Debug, Clone)]
pub struct Captured {
    pub from: String,
    pub rcpts: Vec<String>,
    /// DATA bytes exactly as sent, dot-stuffing included, without the final `.`.
    pub raw: Vec<u8>,
}

type RcptRule = Box<dyn Fn(&str) -> String + Send + Sync>;

/// An in-process SMTP server that records exact bytes and answers RCPT by a
/// rule; for the few tests that must inspect bytes or steer per-recipient
/// replies (smtp-sink normalises line ends and answers all alike).
pub struct CaptureSink {
    pub addr: SocketAddr,
    pub messages: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
    rule: std::sync::Arc<std::sync::Mutex<RcptRule>>,
}

impl CaptureSink {
    pub async fn start() -> CaptureSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let rule: RcptRule = Box::new(|_| "250 2.1.5 Ok".to_string());
        let rule = std::sync::Arc::new(std::sync::Mutex::new(rule));
        let (m, r) = (messages.clone(), rule.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(capture_session(stream, m.clone(), r.clone()));
            }
        });
        CaptureSink {
            addr,
            messages,
            rule,
        }
    }

    /// Sets the reply to `RCPT TO:<addr>` (the argument is the bare address).
    pub fn on_rcpt(&self, rule: impl Fn(&str) -> String + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Box::new(rule);
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.messages.lock().unwrap().clone()
    }
}

async fn capture_session(
    stream: TcpStream,
    messages: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
    rule: std::sync::Arc<std::sync::Mutex<RcptRule>>,
) {
    let mut c = Client {
        stream,
        buf: Vec::new(),
    };
    c.send(b"220 capture ESMTP\r\n").await;
    let mut from = String::new();
    let mut rcpts = Vec::new();
    let mut accepted = 0;
    loop {
        let line = c.line().await;
        if line.is_empty() {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") || upper.starts_with("LHLO") {
            "250-capture\r\n250-PIPELINING\r\n250 8BITMIME".to_string()
        } else if upper.starts_with("MAIL") {
            from = line.trim_end().to_string();
            rcpts.clear();
            accepted = 0;
            "250 2.1.0 Ok".to_string()
        } else if upper.starts_with("RCPT") {
            let addr = line
                .trim_end()
                .trim_start_matches(|c| c != '<')
                .trim_matches(['<', '>']);
            let reply = (rule.lock().unwrap())(addr);
            if reply.starts_with('2') {
                accepted += 1;
            }
            rcpts.push(addr.to_string());
            reply
        } else if upper.starts_with("DATA") {
            if accepted == 0 {
                "554 5.5.1 no valid recipients".to_string()
            } else {
                c.send(b"354 go ahead\r\n").await;
                let mut raw = Vec::new();
                loop {
                    let l = c.line().await;
                    if l.is_empty() || l == ".\r\n" {
                        break;
                    }
                    raw.extend_from_slice(l.as_bytes());
                }
                messages.lock().unwrap().push(Captured {
                    from: from.clone(),
                    rcpts: rcpts.clone(),
                    raw,
                });
                "250 2.0.0 captured".to_string()
            }
        } else if upper.starts_with("QUIT") {
            c.send(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            "250 2.0.0 Ok".to_string()
        };
        c.send(format!("{reply}\r\n").as_bytes()).await;
    }
}

/// A TCP connection to `addr` from the loopback address `source`.
pub async fn tcp_from(source: &str, addr: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// What the server sends until it closes: nothing, for a connection
/// closed unanswered (a reset counts as a close).
pub async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    match read.expect("the server did not close the connection in time") {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    rest
}

/// Asks a policy server one request on `stream`; the answer, up to its
/// empty line.
pub async fn policy_ask(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8];
    while !answer.ends_with(b"\n\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .expect("no answer in time")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.push(byte[0]);
    }
    String::from_utf8(answer).unwrap()
}
