//! The TOML schema: every section and key mxguard reads, with its default.
//! Unknown keys are refused (`deny_unknown_fields`); values that cannot be
//! right (a bad address, duration or target) fail while deserialising, so
//! the error carries the position of the offending key.
//!
//! Size: about 700 lines of code, one struct per TOML section with its
//! defaults; kept in one file so the schema reads like the reference in
//! docs/configuration.md.

use super::duration::HumanDuration;
pub use crate::message::intake::LongLines;
pub use crate::smtp::data::BareLineEndings;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub tls: Option<Tls>,
    pub relay: Relay,
    pub recipients: Recipients,
    pub downstream: Downstream,
    pub spool: Spool,
    pub limits: Limits,
    pub log: Log,
    pub policy: super::checks::Policy,
    pub dns: super::checks::Dns,
    pub checks: super::checks::Checks,
    pub lists: super::checks::Lists,
    pub dnsbl: Vec<super::checks::ListZone>,
    pub rhsbl: Vec<super::checks::ListZone>,
    pub delivery: Delivery,
    pub abuse: super::abuse::Abuse,
    pub ban: super::abuse::Ban,
    pub greylist: super::abuse::Greylist,
    pub state: super::abuse::State,
    pub metrics: Metrics,
    pub policy_server: PolicyServer,
    pub control: Control,
    /// `[[milter]]`: content filters, asked in order.
    pub milter: Vec<super::milter::Milter>,
}

/// `[control]`: the control socket `<spool.dir>/control.sock`, through
/// which `mxguard queue flush`, `mxguard ban` and `mxguard reload` reach
/// the server.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// A group whose members may use the socket (mode 0660); without one
    /// only mxguard's own user can (0600).
    pub group: Option<Group>,
}

/// `[metrics]`: Prometheus `/metrics`, `/healthz` and `/readyz` over HTTP,
/// when `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub listen: Option<SocketAddr>,
    /// Peers that may connect; others are closed at once.
    pub allow: Vec<Network>,
    /// `/readyz` fails when a queued message is older than this and no
    /// delivery succeeded for as long (`"0s"`: never).
    pub ready_max_queue_age: HumanDuration,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: None,
            allow: loopback_networks(),
            ready_max_queue_age: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

impl Metrics {
    /// What `mxguard config check` warns about: a listener on an address
    /// other hosts can reach while `allow` still lets only this host in.
    pub fn warning(&self) -> Option<String> {
        let addr = self.listen?;
        let unreachable = !addr.ip().is_loopback() && self.allow == loopback_networks();
        unreachable.then(|| {
            format!(
                "metrics.listen: {addr} is not a loopback address, but metrics.allow lets only \
                 this host in: add your Prometheus server's address to metrics.allow"
            )
        })
    }
}

/// `[policy_server]`: the Postfix policy delegation service, when `listen`
/// is set: `"127.0.0.1:10040"` or `"unix:/run/mxguard/policy.sock"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyServer {
    pub listen: Option<PolicyListen>,
    /// TCP peers that may connect; others are closed before a byte is
    /// read. (Who reaches a unix socket is its mode and group's business.)
    pub allow: Vec<Network>,
    /// The group a unix socket is given (its mode is 0660): Postfix's
    /// `smtpd` user must be in it.
    pub group: Option<Group>,
    /// Whether requests count toward bans and rate limits: what a request
    /// claims about a client is then believed enough to punish it.
    pub count_offences: bool,
    /// Connections at once per TCP client address or unix socket user.
    pub max_connections_per_peer: NonZeroUsize,
}

/// Postfix's `default_process_limit`: one policy connection per `smtpd`.
const DEFAULT_CONNECTIONS_PER_PEER: NonZeroUsize = NonZeroUsize::new(100).unwrap();

impl Default for PolicyServer {
    fn default() -> Self {
        PolicyServer {
            listen: None,
            allow: loopback_networks(),
            group: None,
            count_offences: false,
            max_connections_per_peer: DEFAULT_CONNECTIONS_PER_PEER,
        }
    }
}

impl PolicyServer {
    /// What `mxguard config check` warns about: a TCP listener on an
    /// address other hosts can reach.
    pub fn warning(&self) -> Option<String> {
        let Some(PolicyListen::Tcp(addr)) = self.listen else {
            return None;
        };
        (!addr.ip().is_loopback()).then(|| {
            format!(
                "policy_server.listen: {addr} is not a loopback address: any peer \
                 policy_server.allow lets in can ask about any client and feed greylisting; \
                 prefer a loopback address or a unix socket"
            )
        })
    }
}

/// The default `allow` of the side listeners: this host only.
pub fn loopback_networks() -> Vec<Network> {
    vec![
        Network(ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::LOCALHOST,
            8,
        ))),
        Network(ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(
            std::net::Ipv6Addr::LOCALHOST,
            128,
        ))),
    ]
}

/// A Unix group named in the configuration, resolved when it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match group_id(&name) {
            Ok(Some(gid)) => Ok(Group { name, gid }),
            Ok(None) => Err(de::Error::custom(format!("unknown group {name:?}"))),
            Err(e) => Err(de::Error::custom(format!(
                "cannot look up group {name:?}: {e}"
            ))),
        }
    }
}

/// The ID of the group `name` (`getgrnam_r`), `None` when there is none.
fn group_id(name: &str) -> std::io::Result<Option<u32>> {
    let invalid =
        |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    let c_name = std::ffi::CString::new(name).map_err(|_| invalid("a NUL byte in the name"))?;
    // The buffer for the group's strings doubles while too small, to 1 MiB.
    let mut size = 4096;
    while size <= 1 << 20 {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: a plain C struct that getgrnam_r fills; all zeroes is a
        // valid value of it.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf` for its
        // length; afterwards `found` is null or points at `group`.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 => return Ok((!found.is_null()).then_some(group.gr_gid)),
            libc::ERANGE => size *= 2,
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
    Err(invalid("its entry is larger than 1 MiB"))
}

/// Where the policy server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl<'de> Deserialize<'de> for PolicyListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.is_empty() {
                return Ok(PolicyListen::Unix(PathBuf::from(path)));
            }
        } else if let Ok(addr) = s.parse() {
            return Ok(PolicyListen::Tcp(addr));
        }
        Err(de::Error::custom(format!(
            "`{s}` is neither an address and port (\"127.0.0.1:10040\") nor \"unix:/path\""
        )))
    }
}

/// `[delivery]`: what happens after a permanent failure.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    pub dsn: Dsn,
}

/// `delivery.dsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dsn {
    /// A bounce only to a sender verified for the message (SPF pass, or a
    /// DKIM pass aligned with the MAIL FROM domain); else the quarantine.
    #[default]
    Verified,
    /// Never a bounce: every failure goes to the quarantine.
    Never,
}

/// `[server]`: who we are and where we listen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Name in the banner, the `Received:` header and our HELO downstream.
    pub hostname: String,
    pub listen: Vec<SocketAddr>,
    /// What to do with a bare CR or LF inside DATA.
    pub bare_line_endings: BareLineEndings,
    /// Refuse clients that send commands before the reply they must wait
    /// for (Postfix's `smtpd_forbid_unauth_pipelining`).
    pub forbid_unauth_pipelining: bool,
    /// At an orderly stop, how long sessions may finish their transaction.
    pub drain_timeout: HumanDuration,
    /// Listeners behind a load balancer: every connection starts with a
    /// PROXY protocol header (v1 or v2) naming the real client.
    pub proxy_listen: Vec<SocketAddr>,
    /// The balancers allowed to send that header; a connection from
    /// anywhere else to a `proxy_listen` address is closed.
    pub proxy_from: Vec<Network>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            hostname: system_hostname(),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            bare_line_endings: BareLineEndings::Reject,
            forbid_unauth_pipelining: true,
            drain_timeout: HumanDuration(Duration::from_secs(20)),
            proxy_listen: Vec::new(),
            proxy_from: Vec::new(),
        }
    }
}

/// `[tls]`: when present, STARTTLS is offered. `cert` and `key` are the
/// default certificate; `[[tls.certificate]]` adds more, chosen by the
/// name the client asks for (SNI). Without `cert` and `key` the first
/// `[[tls.certificate]]` is the default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub certificate: Vec<TlsCertificate>,
    /// How often the certificate and key files are checked for a change
    /// (a renewal), and re-read when they changed.
    #[serde(default = "default_tls_check_interval")]
    pub check_interval: HumanDuration,
}

fn default_tls_check_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// One `[[tls.certificate]]`: a certificate chain and its key, served to
/// clients that ask for one of `names`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    #[serde(deserialize_with = "cert_names")]
    pub names: Vec<CertName>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A name a certificate is served for: a host name, or `*.` and a domain
/// (any one label in place of the `*`); lower case, without a final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertName(String);

impl CertName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CertName {
    type Err = String;
    fn from_str(text: &str) -> Result<CertName, String> {
        let name = crate::smtp::address::normalize_domain(text);
        let domain = name.strip_prefix("*.").unwrap_or(&name);
        if crate::smtp::address::is_domain(domain) {
            Ok(CertName(name))
        } else {
            Err(format!(
                "`{text}` is neither a host name nor `*.` and a domain"
            ))
        }
    }
}

fn cert_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<CertName>, D::Error> {
    let names = Vec::<String>::deserialize(deserializer)?;
    if names.is_empty() {
        return Err(de::Error::custom("needs at least one name"));
    }
    names
        .iter()
        .map(|n| n.parse().map_err(de::Error::custom))
        .collect()
}

/// `[relay]`: which mail we accept at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Relay {
    pub domains: Vec<String>,
    pub trusted_networks: Vec<Network>,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            domains: vec!["localhost".into()],
            trusted_networks: Vec::new(),
        }
    }
}

/// `[recipients]`: how recipients are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipients {
    pub table: Option<PathBuf>,
    /// Ask the downstream at RCPT time (`RCPT TO` probe) when the table
    /// does not know the address.
    pub callout: bool,
    pub callout_timeout: HumanDuration,
    /// MAIL FROM of the probe; empty for the null sender.
    pub probe_sender: String,
    pub positive_ttl: HumanDuration,
    pub positive_refresh: HumanDuration,
    pub negative_ttl: HumanDuration,
    pub negative_refresh: HumanDuration,
    /// Domains whose unverifiable recipients are accepted (catch-all
    /// domains); everywhere else they get 450 4.1.1.
    pub accept_unverifiable: Vec<String>,
    /// Unknown recipients in one session before `421 4.7.0` (0: no limit).
    pub max_unknown: u32,
    /// Spam trap addresses (exact, `@domain`, `/regex/`).
    pub spamtraps: Option<PathBuf>,
    pub spamtrap_block_time: HumanDuration,
    /// `"tempfail"` (default) or `"reject"` for a trapped client.
    pub spamtrap_action: super::checks::Action,
}

impl Default for Recipients {
    fn default() -> Self {
        let days = |d: u64| HumanDuration(Duration::from_secs(d * 86_400));
        let hours = |h: u64| HumanDuration(Duration::from_secs(h * 3600));
        Recipients {
            table: None,
            callout: false,
            callout_timeout: HumanDuration(Duration::from_secs(10)),
            probe_sender: String::new(),
            positive_ttl: days(31),
            positive_refresh: days(7),
            negative_ttl: days(3),
            negative_refresh: hours(3),
            accept_unverifiable: Vec::new(),
            max_unknown: 10,
            spamtraps: None,
            spamtrap_block_time: hours(1),
            spamtrap_action: super::checks::Action::Tempfail,
        }
    }
}

/// `[downstream]`: where accepted mail goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Downstream {
    pub targets: Vec<Target>,
    /// `[[downstream.route]]`: targets for some recipient domains (the
    /// first route naming a domain wins; `targets` for all others).
    pub route: Vec<Route>,
    pub max_queue_lifetime: HumanDuration,
    pub retry_min: HumanDuration,
    pub retry_max: HumanDuration,
    pub connect_timeout: HumanDuration,
    pub command_timeout: HumanDuration,
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// STARTTLS toward the downstream, for delivery and recipient callouts.
    pub tls: DownstreamTls,
    /// PEM CA certificates that `tls = "verify"` trusts (default: the
    /// system's bundle).
    pub tls_ca_file: Option<PathBuf>,
    /// Tell a downstream that offers XCLIENT or XFORWARD who the original
    /// client was.
    pub xclient: bool,
    /// How long a connection to a target stays open, idle, for the next
    /// message (`0s`: a connection per message).
    pub idle_timeout: HumanDuration,
    /// Idle connections kept per target.
    pub max_idle: usize,
}

/// `downstream.tls`: how much the connection to the downstream must be
/// protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DownstreamTls {
    /// STARTTLS when offered, any certificate; else (not offered, or the
    /// handshake failed) in plaintext.
    #[default]
    Opportunistic,
    /// STARTTLS, any certificate; never in plaintext (a downstream without
    /// it is a temporary failure).
    Required,
    /// As `Required`, and the certificate must chain to a trusted CA and
    /// name the target's host (or, for an IP literal, its address).
    Verify,
}

impl std::fmt::Display for DownstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            DownstreamTls::Opportunistic => "opportunistic",
            DownstreamTls::Required => "required",
            DownstreamTls::Verify => "verify",
        })
    }
}

impl Default for Downstream {
    fn default() -> Self {
        Downstream {
            targets: vec![Target::Maildir(PathBuf::from("mxguard-data/Maildir"))],
            route: Vec::new(),
            max_queue_lifetime: HumanDuration(Duration::from_secs(5 * 86_400)),
            retry_min: HumanDuration(Duration::from_secs(60)),
            retry_max: HumanDuration(Duration::from_secs(3600)),
            connect_timeout: HumanDuration(Duration::from_secs(30)),
            command_timeout: HumanDuration(Duration::from_secs(300)),
            concurrency: 20,
            tls: DownstreamTls::Opportunistic,
            tls_ca_file: None,
            xclient: true,
            idle_timeout: HumanDuration(Duration::from_secs(5)),
            max_idle: 10,
        }
    }
}

impl Downstream {
    /// The targets for recipients in `domain` (lower case, A-labels): those
    /// of the first route that names it, else the global ones.
    pub fn targets_for(&self, domain: &str) -> &[Target] {
        self.route
            .iter()
            .find(|r| r.domains.iter().any(|d| d == domain))
            .map_or(&self.targets, |r| &r.targets)
    }
}

/// One `[[downstream.route]]`: where mail for `domains` goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub domains: Vec<String>,
    pub targets: Vec<Target>,
}

/// `[spool]`: the durable queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spool {
    pub dir: PathBuf,
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            dir: PathBuf::from("mxguard-data/spool"),
        }
    }
}

/// `[limits]`: everything a client controls is bounded here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub max_commands: u32,
    pub command_timeout: HumanDuration,
    pub data_timeout: HumanDuration,
    /// The longest a whole session may last.
    pub session_timeout: HumanDuration,
    /// The largest header block a message may have.
    pub max_header_size: u64,
    /// Lines over 998 octets in a message: wrapped, or the message refused.
    pub long_lines: LongLines,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Rate limits per client address and per sender (0: none); trusted
    /// and excepted clients are not limited.
    pub connections_per_minute: u32,
    pub messages_per_hour: u32,
    pub recipients_per_hour: u32,
    pub sender_messages_per_hour: u32,
    pub sender_recipients_per_hour: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 26_214_400,
            max_recipients: 100,
            max_errors: 10,
            max_commands: 1000,
            command_timeout: HumanDuration(Duration::from_secs(300)),
            data_timeout: HumanDuration(Duration::from_secs(600)),
            session_timeout: HumanDuration(Duration::from_secs(20 * 60)),
            max_header_size: 1024 * 1024,
            long_lines: LongLines::Wrap,
            max_connections: 1000,
            max_connections_per_client: 20,
            connections_per_minute: 0,
            messages_per_hour: 0,
            recipients_per_hour: 0,
            sender_messages_per_hour: 0,
            sender_recipients_per_hour: 0,
        }
    }
}

/// `[log]`: where the decision log goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// Append to this file; standard error when absent.
    pub file: Option<PathBuf>,
    pub format: LogFormat,
    /// Send lines to syslog (facility mail) instead.
    pub syslog: bool,
    /// The local syslog socket.
    pub syslog_socket: PathBuf,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            file: None,
            format: LogFormat::Text,
            syslog: false,
            syslog_socket: PathBuf::from("/dev/log"),
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A downstream target: `smtp://host:port`, `lmtp://host:port`,
/// `lmtp:unix:/path` (Dovecot's socket) or `maildir:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Smtp { host: String, port: u16 },
    Lmtp { host: String, port: u16 },
    LmtpUnix(PathBuf),
    Maildir(PathBuf),
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("maildir:") {
            if path.is_empty() {
                return Err(
                    "`maildir:` needs a directory, e.g. \"maildir:/var/mail/Maildir\"".into(),
                );
            }
            return Ok(Target::Maildir(PathBuf::from(path)));
        }
        if let Some(path) = s.strip_prefix("lmtp:unix:") {
            if path.is_empty() {
                return Err(
                    "`lmtp:unix:` needs a socket, e.g. \"lmtp:unix:/run/dovecot/lmtp\"".into(),
                );
            }
            return Ok(Target::LmtpUnix(PathBuf::from(path)));
        }
        let (scheme, rest, default_port) = if let Some(r) = s.strip_prefix("smtp://") {
            ("smtp", r, 25)
        } else if let Some(r) = s.strip_prefix("lmtp://") {
            ("lmtp", r, 24)
        } else {
            return Err(format!(
                "`{s}` is not a target (use smtp://host:port, lmtp://host:port, \
                 lmtp:unix:/path or maildir:/path)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = split_host_port(rest, default_port)
            .ok_or_else(|| format!("`{s}` has no valid host and port"))?;
        Ok(match scheme {
            "smtp" => Target::Smtp { host, port },
            _ => Target::Lmtp { host, port },
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Target::Smtp { host, port } => write!(f, "smtp://{}", join_host_port(host, *port)),
            Target::Lmtp { host, port } => write!(f, "lmtp://{}", join_host_port(host, *port)),
            Target::LmtpUnix(p) => write!(f, "lmtp:unix:{}", p.display()),
            Target::Maildir(p) => write!(f, "maildir:{}", p.display()),
        }
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if rest.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (s, default_port),
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    valid.then(|| (host.to_string(), port))
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// An IP network in CIDR form; a bare address means that one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub ipnet::IpNet);

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&crate::net::canonical_ip(ip))
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Network(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Network(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("`{s}` is not an IP address or network (e.g. \"192.0.2.0/24\")"))
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// The machine's host name, or `localhost` when it cannot be read.
fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if !name.is_empty() => name.to_string(),
        _ => "localhost".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            "smtp://10.0.0.5:25".parse(),
            Ok(Target::Smtp {
                host: "10.0.0.5".into(),
                port: 25
            })
        );
        assert_eq!(
            "lmtp://[::1]:24".parse(),
            Ok(Target::Lmtp {
                host: "::1".into(),
                port: 24
            })
        );
        assert_eq!(
            "smtp://mail.example.com".parse(),
            Ok(Target::Smtp {
                host: "mail.example.com".into(),
                port: 25
            })
        );
        assert_eq!("maildir:/m".parse(), Ok(Target::Maildir("/m".into())));
        assert!("http://x".parse::<Target>().is_err());
        assert!("smtp://a b:25".parse::<Target>().is_err());
        assert!("smtp://host:99999".parse::<Target>().is_err());
    }

    #[test]
    fn groups_are_resolved_by_name() {
        let root: Group = toml::from_str::<PolicyServer>("group = \"root\"")
            .unwrap()
            .group
            .unwrap();
        assert_eq!(
            root,
            Group {
                name: "root".into(),
                gid: 0
            }
        );
        let err = toml::from_str::<PolicyServer>("group = \"no-such-group-here\"").unwrap_err();
        assert_eq!(err.message(), "unknown group \"no-such-group-here\"");
    }

    #[test]
    fn listeners_on_network_addresses_are_warned_about() {
        let policy = |text: &str| toml::from_str::<PolicyServer>(text).unwrap().warning();
        assert_eq!(policy("listen = \"127.0.0.1:10040\""), None);
        assert_eq!(policy("listen = \"[::1]:10040\""), None);
        assert_eq!(policy("listen = \"unix:/run/p.sock\""), None);
        assert_eq!(policy(""), None);
        let wide = policy("listen = \"0.0.0.0:10040\"").unwrap();
        assert!(
            wide.starts_with("policy_server.listen: 0.0.0.0:10040 is not a loopback address"),
            "{wide}"
        );
        let metrics = |text: &str| toml::from_str::<Metrics>(text).unwrap().warning();
        assert_eq!(metrics("listen = \"127.0.0.1:9425\""), None);
        assert_eq!(
            metrics("listen = \"192.0.2.1:9425\"\nallow = [\"192.0.2.9\"]"),
            None
        );
        let closed = metrics("listen = \"192.0.2.1:9425\"").unwrap();
        assert!(
            closed.starts_with("metrics.listen: 192.0.2.1:9425 is not a loopback address, but"),
            "{closed}"
        );
    }

    #[test]
    fn networks() {
        let n: Network = "192.0.2.7/24".parse().unwrap();
        assert!(n.contains("192.0.2.200".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        let one: Network = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        let v4: Network = "127.0.0.0/8".parse().unwrap();
        assert!(v4.contains("::ffff:127.0.0.9".parse().unwrap()));
        assert!("nonsense".parse::<Network>().is_err());
    }
}
