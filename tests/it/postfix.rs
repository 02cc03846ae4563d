//! A real Postfix (Debian's package) as the primary mail server: its own
//! configuration, queue and log in a test directory, listening on one
//! loopback port, accepting mail for example.test only for the users in
//! its relay recipient table, and discarding what it accepts. Its smtpd
//! offers STARTTLS when given `smtpd_tls_*` settings (master.cf runs
//! tlsmgr, without which smtpd disables TLS).

use crate::harness::wait_for;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postfix {
    conf: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
";

impl Postfix {
    /// Writes the instance into `dir` and starts it on `port`.
    pub fn start(dir: &Path, port: u16, users: &[&str]) -> Postfix {
        Postfix::start_with(dir, port, users, "")
    }

    /// The same, with the main.cf settings of `extra_main_cf` (replacing
    /// those of the same name).
    pub fn start_with(dir: &Path, port: u16, users: &[&str], extra_main_cf: &str) -> Postfix {
        let conf = dir.join("conf");
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let log = dir.join("postfix.log");
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {q}\n\
             data_directory = {d}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             maillog_file = {log}\n\
             maillog_file_prefixes = {dir}\n\
             myhostname = primary.test\n\
             mydestination =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.1/32\n\
             relay_domains = example.test\n\
             relay_recipient_maps = texthash:{c}/relay_recipients\n\
             relay_transport = discard\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             smtpd_recipient_restrictions = reject_unauth_destination, reject_unlisted_recipient, permit\n",
            q = dir.join("queue").display(),
            d = dir.join("data").display(),
            c = conf.display(),
            log = log.display(),
            dir = dir.display(),
        );
        // Settings of `extra_main_cf` replace those above (Postfix would
        // take the last, with a warning in its log).
        let name = |line: &str| line.split_once('=').map(|(n, _)| n.trim().to_string());
        let replaced: Vec<String> = extra_main_cf.lines().filter_map(name).collect();
        let kept: String = main_cf
            .lines()
            .filter(|line| name(line).is_none_or(|n| !replaced.contains(&n)))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(conf.join("main.cf"), kept + extra_main_cf).unwrap();
        std::fs::write(
            conf.join("master.cf"),
            format!("127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_CF}"),
        )
        .unwrap();
        let table: String = users.iter().map(|u| format!("{u} ok\n")).collect();
        std::fs::write(conf.join("relay_recipients"), table).unwrap();
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(dir.join("data"))
            .status()
            .unwrap();
        assert!(chown.success());
        let postfix = Postfix { conf, port, log };
        postfix.up();
        postfix
    }

    /// Its smtpd's `QUEUEID: client=…` line for a message it took (it
    /// writes its log through postlogd, a moment after replying).
    pub fn client_line(&self, queue_id: &str) -> String {
        let needle = format!("{queue_id}: client=");
        wait_for("Postfix's client line", || {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            log.lines()
                .find(|l| l.contains(&needle))
                .map(str::to_string)
        })
    }

    /// Its configuration directory (for postcat, postqueue).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    fn postfix(&self, command: &str) -> std::process::ExitStatus {
        Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg(command)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("postfix (Debian package postfix) must be installed: run scripts/test")
    }

    pub fn up(&self) {
        assert!(self.postfix("start").success(), "postfix did not start");
        wait_for("postfix to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    pub fn down(&self) {
        self.postfix("stop");
        wait_for("postfix to stop listening", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .is_err()
                .then_some(())
        });
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.postfix("abort");
    }
}
