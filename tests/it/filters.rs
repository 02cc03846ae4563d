//! Real content filters speaking the milter protocol, for tests of mxguard
//! as a milter client: rspamd (Debian's package) as a milter through its
//! proxy worker, and clamav-milter in front of a clamd whose database holds
//! only the EICAR test signature. Each runs in its own directory on a free
//! loopback port, as root, without network access (rspamd's modules that
//! look things up on the network are disabled and its resolver points at a
//! closed port) and without Redis. Both are checked here against a real
//! milter client, Postfix's smtpd.

use crate::harness::{free_port, swaks, wait_for};
use crate::postfix::Postfix;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The GTUBE test string: rspamd rejects a message containing it.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// The EICAR test string (68 bytes): clamd's only signature here.
pub const EICAR: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A process started in a process group of its own, so that every process
/// it forks (rspamd's workers) is killed with it.
struct Group(Child);

impl Group {
    /// Spawns `command`, its output (before it opens its own log) into
    /// the file `output`.
    fn spawn(command: &mut Command, output: &Path, what: &str) -> Group {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(output).unwrap();
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} must be installed (run scripts/test): {e}"));
        Group(child)
    }

    /// SIGKILL to the whole group; reaps the leader.
    fn kill(&mut self) {
        // SAFETY: signalling the process group of our own child.
        unsafe { libc::killpg(self.0.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.0.wait();
    }

    /// SIGTERM to the leader, which stops (and reaps) its own children:
    /// none is left a zombie for init to collect. Then, bounded, the
    /// SIGKILL of `kill` for whatever is left.
    fn terminate(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let start = std::time::Instant::now();
        while !self.exited() && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
    }

    /// Whether the leader has exited.
    fn exited(&mut self) -> bool {
        self.0.try_wait().ok().flatten().is_some()
    }
}

/// Waits until `port` on loopback refuses connections.
fn wait_refused(what: &str, port: u16) {
    wait_for(what, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

/// Waits until `port` on loopback accepts, failing early (with its
/// output and log) if `group` died.
fn wait_accepting(what: &str, port: u16, group: &mut Group, output: &Path, log: &Path) {
    wait_for(what, || {
        assert!(
            !group.exited(),
            "{what}: the process exited; its log:\n{}{}",
            std::fs::read_to_string(output).unwrap_or_default(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// rspamd as a milter: its proxy worker (`milter = yes`) scanning by itself
/// (`self_scan = yes`, no normal worker, no controller), on one loopback
/// port. Its configuration is the stock /etc/rspamd one (common.conf:
/// modules, scores, actions) with its own top level, `local.d` and
/// `override.d` in `dir`, and its database, run and log directories there.
/// Hyperscan is off and the public-suffix list is a small one, so it starts
/// in about a second instead of compiling for half a minute. Every message
/// gets the headers `X-Spamd-Result`, `X-Rspamd-Server`, `X-Rspamd-Queue-Id`
/// and `X-Spam-Status`; GTUBE is rejected.
pub struct Rspamd {
    group: Option<Group>,
    pub port: u16,
    pub log: PathBuf,
}

/// Modules that would look things up over the network (DNS, HTTP maps,
/// fuzzy storage) or want Redis: all off.
const RSPAMD_OFF: &[&str] = &[
    "arc",
    "asn",
    "bimi",
    "dcc",
    "dkim",
    "dmarc",
    "emails",
    "fuzzy_check",
    "greylist",
    "hfilter",
    "history_redis",
    "mid",
    "mime_types",
    "multimap",
    "mx_check",
    "neural",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "spf",
    "surbl",
    "url_redirector",
    "whitelist",
];

impl Rspamd {
    /// Writes the configuration into `dir` and starts rspamd on a free port.
    pub fn start(dir: &Path) -> Rspamd {
        Rspamd::start_with(dir, &[])
    }

    /// The same, with `local_d`: files (name, content) for its `local.d`,
    /// merged into the stock module settings (e.g. `("actions.conf",
    /// "add_header = 0.1;")`); a `milter_headers.conf` replaces the
    /// fixture's own (which sets the four headers above).
    pub fn start_with(dir: &Path, local_d: &[(&str, &str)]) -> Rspamd {
        let conf = dir.join("conf");
        for sub in ["conf/local.d", "conf/override.d", "db", "run", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for module in RSPAMD_OFF {
            std::fs::write(
                conf.join("override.d").join(format!("{module}.conf")),
                "enabled = false;\n",
            )
            .unwrap();
        }
        std::fs::write(
            conf.join("local.d/milter_headers.conf"),
            "use = [\"x-spamd-result\", \"x-rspamd-server\", \"x-rspamd-queue-id\", \
             \"x-spam-status\"];\nskip_local = false;\nskip_authenticated = false;\n",
        )
        .unwrap();
        for (name, content) in local_d {
            std::fs::write(conf.join("local.d").join(name), content).unwrap();
        }
        let tld = dir.join("effective_tld_names.dat");
        std::fs::write(&tld, "test\nexample\ncom\nnet\norg\n").unwrap();
        let port = free_port();
        let config = conf.join("rspamd.conf");
        std::fs::write(
            &config,
            format!(
                ".include \"$CONFDIR/common.conf\"\n\
                 options {{\n\
                 \x20 pidfile = \"$RUNDIR/rspamd.pid\";\n\
                 \x20 filters = \"chartable,regexp\";\n\
                 \x20 cache_file = \"$DBDIR/symbols.cache\";\n\
                 \x20 dynamic_conf = \"$DBDIR/rspamd_dynamic\";\n\
                 \x20 history_file = \"$DBDIR/rspamd.history\";\n\
                 \x20 control_socket = \"$DBDIR/rspamd.sock mode=0600\";\n\
                 \x20 stats_file = \"$DBDIR/stats.ucl\";\n\
                 \x20 hs_cache_dir = \"$DBDIR/\";\n\
                 \x20 disable_hyperscan = true;\n\
                 \x20 url_tld = \"{tld}\";\n\
                 \x20 tempdir = \"$RUNDIR\";\n\
                 \x20 allow_raw_input = true;\n\
                 \x20 task_timeout = 8s;\n\
                 \x20 dns {{ nameserver = [\"127.0.0.1:1\"]; timeout = 0.2s; retransmits = 1; }}\n\
                 }}\n\
                 logging {{\n\
                 \x20 type = \"file\";\n\
                 \x20 filename = \"$LOGDIR/rspamd.log\";\n\
                 \x20 level = \"info\";\n\
                 }}\n\
                 worker \"rspamd_proxy\" {{\n\
                 \x20 bind_socket = \"127.0.0.1:{port}\";\n\
                 \x20 milter = yes;\n\
                 \x20 timeout = 120s;\n\
                 \x20 count = 1;\n\
                 \x20 upstream \"local\" {{ default = yes; self_scan = yes; }}\n\
                 }}\n",
                tld = tld.display(),
            ),
        )
        .unwrap();
        let var = |name: &str, sub: &str| format!("{name}={}", dir.join(sub).display());
        let log = dir.join("log/rspamd.log");
        let mut group = Group::spawn(
            Command::new("/usr/bin/rspamd")
                .args(["-f", "-i", "-c"])
                .arg(&config)
                .args(["--var", &var("LOCAL_CONFDIR", "conf")])
                .args(["--var", &var("DBDIR", "db")])
                .args(["--var", &var("RUNDIR", "run")])
                .args(["--var", &var("LOGDIR", "log")]),
            &dir.join("rspamd.out"),
            "rspamd (Debian package rspamd)",
        );
        wait_accepting(
            "rspamd to listen",
            port,
            &mut group,
            &dir.join("rspamd.out"),
            &log,
        );
        // The main process listens before its proxy worker is up.
        wait_for("rspamd's proxy worker", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("starting rspamd_proxy process").then_some(())
        });
        Rspamd {
            group: Some(group),
            port,
            log,
        }
    }

    /// The milter address in mxguard's form.
    pub fn address(&self) -> String {
        format!("inet:127.0.0.1:{}", self.port)
    }

    /// Stops rspamd and its workers (SIGTERM: about a quarter of a
    /// second); returns once the port refuses.
    pub fn stop(&mut self) {
        if let Some(mut group) = self.group.take() {
            group.terminate();
        }
        wait_refused("rspamd to stop listening", self.port);
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        if let Some(mut group) = self.group.take() {
            group.terminate();
        }
    }
}

/// clamav-milter (`OnInfected Reject`, `AddHeader Replace`) on a loopback
/// port, in front of a clamd on a unix socket in `dir` whose database
/// directory holds only an EICAR signature written by the test (no
/// freshclam, nothing from /var/lib/clamav).
pub struct Clamav {
    clamd: Option<Group>,
    milter: Option<Group>,
    pub port: u16,
    pub log: PathBuf,
}

impl Clamav {
    /// Writes the database and configurations into `dir` and starts clamd,
    /// then clamav-milter on a free port.
    pub fn start(dir: &Path) -> Clamav {
        Clamav::start_with(dir, "")
    }

    /// The same, with the lines `milter_extra` appended to
    /// clamav-milter.conf (e.g. `RejectMsg Virus found: %v\n`; for an
    /// option already set, the last one counts).
    pub fn start_with(dir: &Path, milter_extra: &str) -> Clamav {
        let db = dir.join("db");
        let tmp = dir.join("tmp");
        for sub in [&db, &tmp] {
            std::fs::create_dir_all(sub).unwrap();
        }
        // A body signature (any file type) of the EICAR string: found in a
        // plain text body as in a base64-encoded attachment, once decoded.
        let hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            db.join("eicar.ndb"),
            format!("Eicar-Test-Signature:0:*:{hex}\n"),
        )
        .unwrap();
        let socket = dir.join("clamd.sock");
        let clamd_log = dir.join("clamd.log");
        let clamd_conf = dir.join("clamd.conf");
        std::fs::write(
            &clamd_conf,
            format!(
                "Foreground yes\nLocalSocket {socket}\nDatabaseDirectory {db}\n\
                 LogFile {log}\nPidFile {dir}/clamd.pid\nTemporaryDirectory {tmp}\n\
                 SelfCheck 0\n",
                socket = socket.display(),
                db = db.display(),
                log = clamd_log.display(),
                dir = dir.display(),
                tmp = tmp.display(),
            ),
        )
        .unwrap();
        let mut clamd = Group::spawn(
            Command::new("/usr/sbin/clamd").arg("-c").arg(&clamd_conf),
            &dir.join("clamd.out"),
            "clamd (Debian package clamav-daemon)",
        );
        wait_for("clamd's socket", || {
            assert!(
                !clamd.exited(),
                "clamd exited; its log:\n{}{}",
                std::fs::read_to_string(dir.join("clamd.out")).unwrap_or_default(),
                std::fs::read_to_string(&clamd_log).unwrap_or_default()
            );
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
        let port = free_port();
        let log = dir.join("clamav-milter.log");
        let milter_conf = dir.join("clamav-milter.conf");
        std::fs::write(
            &milter_conf,
            format!(
                "MilterSocket inet:{port}@127.0.0.1\nClamdSocket unix:{socket}\n\
                 Foreground yes\nPidFile {dir}/clamav-milter.pid\nLogFile {log}\n\
                 TemporaryDirectory {tmp}\nOnClean Accept\nOnInfected Reject\n\
                 OnFail Defer\nAddHeader Replace\nLogInfected Full\nLogClean Full\n\
                 {milter_extra}",
                socket = socket.display(),
                dir = dir.display(),
                log = log.display(),
                tmp = tmp.display(),
            ),
        )
        .unwrap();
        let mut milter = Group::spawn(
            Command::new("/usr/sbin/clamav-milter")
                .arg("-c")
                .arg(&milter_conf),
            &dir.join("clamav-milter.out"),
            "clamav-milter (Debian package clamav-milter)",
        );
        wait_accepting(
            "clamav-milter to listen",
            port,
            &mut milter,
            &dir.join("clamav-milter.out"),
            &log,
        );
        Clamav {
            clamd: Some(clamd),
            milter: Some(milter),
            port,
            log,
        }
    }

    /// The milter address in mxguard's form.
    pub fn address(&self) -> String {
        format!("inet:127.0.0.1:{}", self.port)
    }

    /// Kills clamav-milter and clamd; returns once the port refuses.
    pub fn stop(&mut self) {
        self.kill();
        wait_refused("clamav-milter to stop listening", self.port);
    }

    fn kill(&mut self) {
        for group in [self.milter.take(), self.clamd.take()]
            .into_iter()
            .flatten()
        {
            let mut group = group;
            group.kill();
        }
    }
}

impl Drop for Clamav {
    fn drop(&mut self) {
        self.kill();
    }
}

// What a real milter client makes of them: Postfix's smtpd, whose
// `smtpd_milters` takes the same `inet:127.0.0.1:PORT` form as mxguard.

/// Postfix keeps what it accepts on hold, for postcat to show.
const HOLD: &str = "smtpd_recipient_restrictions = reject_unauth_destination, \
                    reject_unlisted_recipient, check_recipient_access static:HOLD, permit\n";

/// A Postfix with `milters` (comma-separated) as its smtpd milters,
/// tempfailing while one of them is unavailable.
fn postfix_with(dir: &Path, milters: &str) -> Postfix {
    Postfix::start_with(
        &dir.join("postfix"),
        free_port(),
        &["alice@example.test"],
        &format!("smtpd_milters = {milters}\nmilter_default_action = tempfail\n{HOLD}"),
    )
}

/// Sends through `postfix` with swaks' `args`; the reply to the end of
/// DATA (`250 2.0.0 Ok: queued as …`, or the rejection), or the first
/// rejection before it.
fn send(postfix: &Postfix, args: &[&str]) -> String {
    let addr = format!("127.0.0.1:{}", postfix.port).parse().unwrap();
    let from_to = ["--from", "bob@sender.test", "--to", "alice@example.test"];
    end_of_data_reply(&swaks(addr, &[&from_to[..], args].concat()))
}

/// In a swaks transcript: the reply to the end of DATA, or the first
/// rejection before it.
pub fn end_of_data_reply(transcript: &str) -> String {
    let mut lines = transcript.lines().skip_while(|l| l.trim() != "-> .");
    let reply = match lines.nth(1) {
        Some(reply) => reply,
        None => transcript
            .lines()
            .find(|l| l.starts_with("<**"))
            .unwrap_or_else(|| panic!("no reply to DATA: {transcript}")),
    };
    reply
        .trim_start_matches("<-")
        .trim_start_matches("<**")
        .trim()
        .to_string()
}

/// The header of a message Postfix holds (queued as the ID in `reply`).
fn held_header(postfix: &Postfix, reply: &str) -> String {
    let id = reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not queued: {reply}"));
    let out = Command::new("/usr/sbin/postcat")
        .arg("-c")
        .arg(postfix.conf())
        .args(["-h", "-q", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rspamd_as_postfix_milter_rejects_gtube_and_marks_clean_mail() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let rspamd = Rspamd::start(&dir.path().join("rspamd"));
    eprintln!("rspamd started in {:?}", started.elapsed());
    let postfix = postfix_with(dir.path(), &rspamd.address());
    let gtube = send(&postfix, &["--body", &format!("spam\n{GTUBE}\n")]);
    eprintln!("GTUBE: {gtube}");
    assert_eq!(gtube, "554 5.7.1 Gtube pattern");
    let clean = send(&postfix, &["--body", "Hello Alice, lunch tomorrow?"]);
    let header = held_header(&postfix, &clean);
    eprintln!("clean: {clean}\n{header}");
    // Nothing looked up: no DNS request for either message.
    let log = std::fs::read_to_string(&rspamd.log).unwrap();
    assert_eq!(log.matches("dns req: 0,").count(), 2, "{log}");
    for name in [
        "X-Spamd-Result: default: False",
        "X-Rspamd-Server: ",
        "X-Rspamd-Queue-Id: ",
        "X-Spam-Status: No",
    ] {
        assert!(header.contains(name), "{name}: {header}");
    }
}

#[test]
fn rspamd_with_a_low_add_header_threshold_marks_clean_mail_as_spam() {
    let dir = tempfile::tempdir().unwrap();
    let rspamd = Rspamd::start_with(
        &dir.path().join("rspamd"),
        &[("actions.conf", "add_header = 0.1;\n")],
    );
    let postfix = postfix_with(dir.path(), &rspamd.address());
    let clean = send(&postfix, &["--body", "Hello Alice, lunch tomorrow?"]);
    let header = held_header(&postfix, &clean);
    eprintln!("add_header: {clean}\n{header}");
    assert!(header.contains("X-Spam: Yes"), "{header}");
    assert!(header.contains("X-Spam-Status: Yes"), "{header}");
}

#[test]
fn clamav_as_postfix_milter_rejects_eicar_and_marks_clean_mail() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let clamav = Clamav::start(&dir.path().join("clamav"));
    eprintln!("clamav started in {:?}", started.elapsed());
    let postfix = postfix_with(dir.path(), &clamav.address());
    let plain = send(&postfix, &["--body", &format!("{EICAR}\n")]);
    eprintln!("EICAR in the body: {plain}");
    let file = dir.path().join("eicar.com");
    std::fs::write(&file, EICAR).unwrap();
    let attached = send(
        &postfix,
        &[
            "--body",
            "see attached",
            "--attach",
            &format!("@{}", file.display()),
        ],
    );
    eprintln!("EICAR attached: {attached}");
    // clamav-milter rejects without a text of its own: Postfix says
    // its generic one.
    assert_eq!(plain, "550 5.7.1 Command rejected");
    assert_eq!(attached, plain);
    let clean = send(&postfix, &["--body", "Hello Alice, lunch tomorrow?"]);
    let header = held_header(&postfix, &clean);
    eprintln!("clean: {clean}\n{header}");
    assert!(header.contains("X-Virus-Scanned: "), "{header}");
    assert!(header.contains("X-Virus-Status: Clean"), "{header}");
    let log = std::fs::read_to_string(&clamav.log).unwrap();
    assert_eq!(log.matches("Eicar-Test-Signature").count(), 2, "{log}");
}

#[test]
fn clamav_with_a_reject_message_names_the_virus() {
    let dir = tempfile::tempdir().unwrap();
    let clamav = Clamav::start_with(&dir.path().join("clamav"), "RejectMsg Virus found: %v\n");
    let postfix = postfix_with(dir.path(), &clamav.address());
    let reply = send(&postfix, &["--body", &format!("{EICAR}\n")]);
    assert_eq!(
        reply,
        "550 5.7.1 Virus found: Eicar-Test-Signature.UNOFFICIAL"
    );
    let log = std::fs::read_to_string(&clamav.log).unwrap();
    assert_eq!(log.matches("Eicar-Test-Signature").count(), 1, "{log}");
}

#[test]
fn postfix_with_both_filters_tempfails_once_one_of_them_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut rspamd = Rspamd::start(&dir.path().join("rspamd"));
    let mut clamav = Clamav::start(&dir.path().join("clamav"));
    let postfix = postfix_with(
        dir.path(),
        &format!("{}, {}", rspamd.address(), clamav.address()),
    );
    let clean = send(&postfix, &["--body", "Hello Alice, lunch tomorrow?"]);
    let header = held_header(&postfix, &clean);
    assert!(header.contains("X-Spam-Status: No"), "{header}");
    assert!(header.contains("X-Virus-Status: Clean"), "{header}");
    clamav.stop();
    // Postfix connects to its milters with the client: it tempfails the
    // session from MAIL on.
    assert_eq!(
        send(&postfix, &["--body", "hello"]),
        "451 4.7.1 Service unavailable - try again later"
    );
    rspamd.stop();
    assert_eq!(
        send(&postfix, &["--body", "hello"]),
        "451 4.7.1 Service unavailable - try again later"
    );
}
