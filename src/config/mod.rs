//! Configuration: the TOML schema ([`schema`]), durations ([`duration`]),
//! loading a file or the embedded default, resolving relative paths against
//! the file's directory, and validation whose errors name file, line and key.
//!
//! Size: under 550 lines of code (with the DNS lists' keys read from their
//! files); the rest are the tests of validation messages, kept beside the
//! checks that produce them.

pub mod abuse;
pub mod checks;
pub mod duration;
pub mod milter;
pub mod schema;

pub use abuse::{Backend, BanAction, GreylistWhen, OnStateError};
pub use checks::{Action, CheckSetting, Checks, ListZone, Mode, OnDnsError, RejectAt};
pub use schema::*;

use std::path::{Path, PathBuf};

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

impl Config {
    /// The embedded default: `mxguard serve` without a file. Paths are
    /// relative to the current directory.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        // No DNS at all: not even the message authentication of the end of
        // DATA, which is otherwise on (in warn mode) by default.
        Config::from_toml(
            "[checks]\ndmarc = \"off\"\n",
            "<embedded default>",
            Path::new("."),
        )
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut config = Config::from_toml(&text, &file, base)?;
        config
            .read_key_files()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: file.clone(),
                line: line_of_key(&text, key),
                key: key.to_string(),
                message,
            })?;
        Ok(config)
    }

    /// Reads each list's `key_file` into its `key`.
    fn read_key_files(&mut self) -> Result<(), (&'static str, String)> {
        for (key, zones) in [
            ("dnsbl.key_file", &mut self.dnsbl),
            ("rhsbl.key_file", &mut self.rhsbl),
        ] {
            for zone in zones.iter_mut() {
                let Some(path) = &zone.key_file else {
                    continue;
                };
                let text = std::fs::read_to_string(path)
                    .map_err(|e| (key, format!("`{}`: {}: {e}", zone.zone, path.display())))?;
                let parsed = checks::DqsKey::parse(&text)
                    .map_err(|e| (key, format!("`{}`: {}: {e}", zone.zone, path.display())))?;
                zone.key = Some(parsed);
            }
        }
        Ok(())
    }

    /// The warning for a Spamhaus zone asked through a public resolver,
    /// which Spamhaus refuses (it answers 127.255.255.254 to everything).
    pub fn public_resolver_warning(&self) -> Option<String> {
        let spamhaus = self
            .dnsbl
            .iter()
            .chain(&self.rhsbl)
            .find(|z| z.is_spamhaus())?;
        let public = self.dns.nameservers.iter().find(|ns| {
            checks::PUBLIC_RESOLVERS
                .iter()
                .any(|p| p.parse::<std::net::IpAddr>().ok() == Some(ns.ip()))
        })?;
        Some(format!(
            "dns.nameservers: {} is a public resolver, and Spamhaus refuses queries that come \
             through one (it answers 127.255.255.254): {} would be turned off at its first \
             health test; use a resolver of your own",
            public.ip(),
            spamhaus.zone
        ))
    }

    /// Parses `text`; relative paths are taken relative to `base`.
    pub fn from_toml(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = e
                .span()
                .map(|span| locate(text, span.start))
                .unwrap_or((None, String::from("(file)")));
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                key,
                message: e.message().to_string(),
            }
        })?;
        config.resolve_paths(base);
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: file.to_string(),
                line: line_of_key(text, key),
                key: key.to_string(),
                message,
            })?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.spool.dir);
        if let Some(tls) = &mut self.tls {
            for file in [&mut tls.cert, &mut tls.key].into_iter().flatten() {
                join(file);
            }
            for certificate in &mut tls.certificate {
                join(&mut certificate.cert);
                join(&mut certificate.key);
            }
        }
        if let Some(table) = &mut self.recipients.table {
            join(table);
        }
        if let Some(traps) = &mut self.recipients.spamtraps {
            join(traps);
        }
        if let Some(file) = &mut self.log.file {
            join(file);
        }
        let lists = &mut self.lists;
        for file in [
            &mut lists.client_exceptions,
            &mut lists.sender_blocklist,
            &mut lists.recipient_blocklist,
            &mut self.greylist.allow_file,
            &mut self.checks.forwarders,
        ]
        .into_iter()
        .flatten()
        {
            join(file);
        }
        let routes = self.downstream.route.iter_mut();
        for target in
            (self.downstream.targets.iter_mut()).chain(routes.flat_map(|r| &mut r.targets))
        {
            if let Target::Maildir(p) | Target::LmtpUnix(p) = target {
                join(p);
            }
        }
        if let Some(file) = &mut self.downstream.tls_ca_file {
            join(file);
        }
        for zone in self.dnsbl.iter_mut().chain(&mut self.rhsbl) {
            if let Some(file) = &mut zone.key_file {
                join(file);
            }
        }
    }

    /// Checks that need more than one value, or the value's meaning.
    /// `[abuse]`, `[ban]`, `[greylist]` and `[state]`.
    fn validate_abuse(&self) -> Result<(), (&'static str, String)> {
        let g = &self.greylist;
        if g.delay.0 > g.retry_window.0 {
            return Err((
                "greylist.delay",
                "must not be more than greylist.retry_window (nothing would ever pass)".into(),
            ));
        }
        if g.allow_for.0.is_zero() {
            return Err(("greylist.allow_for", "must be more than 0s".into()));
        }
        if !(8..=32).contains(&g.netmask_v4) {
            return Err(("greylist.netmask_v4", "must be from 8 to 32".into()));
        }
        if !(16..=128).contains(&g.netmask_v6) {
            return Err(("greylist.netmask_v6", "must be from 16 to 128".into()));
        }
        if self.state.timeout.0.is_zero() {
            return Err(("state.timeout", "must be more than 0s".into()));
        }
        if self.state.max_entries < 100 {
            return Err(("state.max_entries", "must be at least 100".into()));
        }
        let a = &self.abuse;
        if a.tarpit_max == 0 || a.tarpit_max > 1_000_000 {
            return Err(("abuse.tarpit_max", "must be from 1 to 1000000".into()));
        }
        if a.tarpit_score.is_some_and(|t| !t.is_finite()) {
            return Err(("abuse.tarpit_score", "must be a number".into()));
        }
        let b = &self.ban;
        if b.max_retry > 0 && (b.find_time.0.is_zero() || b.ban_time.0.is_zero()) {
            return Err((
                "ban.find_time",
                "ban.find_time and ban.ban_time must be more than 0s".into(),
            ));
        }
        for event in &b.events {
            if !self.is_ban_event(event) {
                return Err((
                    "ban.events",
                    format!(
                        "`{event}` is neither an offence (pregreet, pipelining, max_errors, \
                         protocol_error, dictionary_attack, spamtrap) nor the name of a check"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `[tls]`: a certificate comes with its key, and there is one.
    fn validate_tls(&self) -> Result<(), (&'static str, String)> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        match (&tls.cert, &tls.key) {
            (Some(_), None) => return Err(("tls.key", "is needed with tls.cert".into())),
            (None, Some(_)) => return Err(("tls.cert", "is needed with tls.key".into())),
            (None, None) if tls.certificate.is_empty() => {
                return Err((
                    "tls",
                    "needs cert and key, or at least one [[tls.certificate]]".into(),
                ))
            }
            _ => {}
        }
        if tls.check_interval.0 < std::time::Duration::from_secs(1) {
            return Err(("tls.check_interval", "must be at least 1s".into()));
        }
        Ok(())
    }

    /// Whether `name` is something `ban.events` can count.
    fn is_ban_event(&self, name: &str) -> bool {
        const NAMES: &[&str] = &[
            "pregreet",
            "pipelining",
            "session_timeout",
            "max_errors",
            "protocol_error",
            "dictionary_attack",
            "spamtrap",
            "max_commands",
            "relay",
            "recipient_table",
            "callout",
            "score",
            "greylist",
            "connection_rate",
            "message_rate",
            "recipient_rate",
            "sender_message_rate",
            "sender_recipient_rate",
        ];
        if NAMES.contains(&name) || Checks::NAMES.contains(&name) {
            return true;
        }
        let zone = |list: &[ListZone], z: &str| list.iter().any(|l| l.zone == z);
        match name.split_once(':') {
            Some(("dnsbl", z)) => zone(&self.dnsbl, z),
            Some(("rhsbl", z)) => zone(&self.rhsbl, z),
            _ => false,
        }
    }

    fn validate(&mut self) -> Result<(), (&'static str, String)> {
        let host = &self.server.hostname;
        if !crate::smtp::address::is_domain(host) {
            return Err(("server.hostname", format!("`{host}` is not a host name")));
        }
        let server = &self.server;
        if server.listen.is_empty() && server.proxy_listen.is_empty() {
            return Err((
                "server.listen",
                "needs at least one address (or server.proxy_listen)".into(),
            ));
        }
        if !server.proxy_listen.is_empty() && server.proxy_from.is_empty() {
            return Err((
                "server.proxy_from",
                "is needed with server.proxy_listen: the load balancers' addresses, \
                 the only peers whose PROXY header is believed"
                    .into(),
            ));
        }
        // Port 0 (any free port) is never the same address twice.
        let shared = |a: &&std::net::SocketAddr| a.port() != 0 && server.proxy_listen.contains(a);
        if let Some(addr) = server.listen.iter().find(shared) {
            return Err((
                "server.proxy_listen",
                format!("{addr} is also in server.listen: one address, one kind of listener"),
            ));
        }
        for domain in &mut self.relay.domains {
            let normal = crate::smtp::address::normalize_domain(domain);
            if !crate::smtp::address::is_domain(&normal) {
                return Err(("relay.domains", format!("`{domain}` is not a domain name")));
            }
            *domain = normal;
        }
        for sealer in &mut self.checks.arc_trusted_sealers {
            let normal = crate::smtp::address::normalize_domain(sealer);
            if !crate::smtp::address::is_domain(&normal) {
                let why = format!("`{sealer}` is not a domain name");
                return Err(("checks.arc_trusted_sealers", why));
            }
            *sealer = normal;
        }
        for (key, zones) in [
            ("dnsbl.zone", &mut self.dnsbl),
            ("rhsbl.zone", &mut self.rhsbl),
        ] {
            for zone in zones.iter_mut() {
                let normal = crate::smtp::address::normalize_domain(&zone.zone);
                if !crate::smtp::address::is_domain(&normal) {
                    return Err((key, format!("`{}` is not a DNS zone", zone.zone)));
                }
                zone.zone = normal;
            }
        }
        for (key, zones) in [
            ("dnsbl.key_file", &self.dnsbl),
            ("rhsbl.key_file", &self.rhsbl),
        ] {
            if let Some(zone) = zones
                .iter()
                .find(|z| z.key.is_some() && z.key_file.is_some())
            {
                return Err((
                    key,
                    format!("`{}`: set key or key_file, not both", zone.zone),
                ));
            }
        }
        for zone in &self.dnsbl {
            if !zone.ipv4 && !zone.ipv6 {
                return Err((
                    "dnsbl.ipv4",
                    format!(
                        "`{}`: with ipv4 and ipv6 both false it is never asked",
                        zone.zone
                    ),
                ));
            }
        }
        for zone in &self.rhsbl {
            if let Some(key) = [("rhsbl.ipv4", zone.ipv4), ("rhsbl.ipv6", zone.ipv6)]
                .into_iter()
                .find_map(|(key, on)| (!on).then_some(key))
            {
                return Err((
                    key,
                    format!(
                        "`{}`: an RHSBL looks up sender domains, not addresses",
                        zone.zone
                    ),
                ));
            }
        }
        if !self.policy.reject_score.is_finite() || self.policy.reject_score <= 0.0 {
            return Err(("policy.reject_score", "must be a number above 0".into()));
        }
        if self.dns.timeout.0.is_zero() {
            return Err(("dns.timeout", "must be more than 0s".into()));
        }
        if self.policy.dnsbl_health_interval.0 < std::time::Duration::from_secs(10) {
            return Err((
                "policy.dnsbl_health_interval",
                "must be at least 10s".into(),
            ));
        }
        if self.downstream.targets.is_empty() {
            return Err(("downstream.targets", "needs at least one target".into()));
        }
        for route in &mut self.downstream.route {
            if route.domains.is_empty() {
                return Err((
                    "downstream.route.domains",
                    "needs at least one domain".into(),
                ));
            }
            if route.targets.is_empty() {
                return Err((
                    "downstream.route.targets",
                    "needs at least one target".into(),
                ));
            }
            for domain in &mut route.domains {
                let normal = crate::smtp::address::normalize_domain(domain);
                if !crate::smtp::address::is_domain(&normal) {
                    let why = format!("`{domain}` is not a domain name");
                    return Err(("downstream.route.domains", why));
                }
                *domain = normal;
            }
        }
        let r = &mut self.recipients;
        let smtp_target = self
            .downstream
            .targets
            .iter()
            .any(|t| !matches!(t, Target::Maildir(_)));
        if r.callout && !smtp_target {
            return Err((
                "recipients.callout",
                "needs an smtp:// or lmtp:// downstream target to ask".into(),
            ));
        }
        if r.callout_timeout.0.is_zero() {
            return Err(("recipients.callout_timeout", "must be more than 0s".into()));
        }
        if r.positive_refresh.0 > r.positive_ttl.0 {
            return Err((
                "recipients.positive_refresh",
                "must not be more than recipients.positive_ttl".into(),
            ));
        }
        if r.negative_refresh.0 > r.negative_ttl.0 {
            return Err((
                "recipients.negative_refresh",
                "must not be more than recipients.negative_ttl".into(),
            ));
        }
        if !matches!(r.spamtrap_action, Action::Tempfail | Action::Reject) {
            return Err((
                "recipients.spamtrap_action",
                "must be \"tempfail\" or \"reject\"".into(),
            ));
        }
        if !r.probe_sender.is_empty()
            && crate::smtp::address::parse_mailbox(&r.probe_sender).is_err()
        {
            return Err((
                "recipients.probe_sender",
                format!("`{}` is not an address", r.probe_sender),
            ));
        }
        for domain in &mut r.accept_unverifiable {
            *domain = crate::smtp::address::normalize_domain(domain);
        }
        self.validate_abuse()?;
        milter::validate(&mut self.milter)?;
        self.validate_tls()?;
        if self.log.syslog && self.log.file.is_some() {
            return Err(("log.syslog", "cannot be combined with log.file".into()));
        }
        if self.downstream.retry_min.0.is_zero() {
            return Err(("downstream.retry_min", "must be more than 0s".into()));
        }
        if self.downstream.retry_max.0 < self.downstream.retry_min.0 {
            return Err((
                "downstream.retry_max",
                "must not be less than downstream.retry_min".into(),
            ));
        }
        if self.downstream.concurrency == 0 {
            return Err(("downstream.concurrency", "must be at least 1".into()));
        }
        if self.downstream.tls_ca_file.is_some() && self.downstream.tls != DownstreamTls::Verify {
            // A CA file that checks nothing would only look like security.
            return Err((
                "downstream.tls_ca_file",
                "is only used with downstream.tls = \"verify\"".into(),
            ));
        }
        let limits = &self.limits;
        let positive: [(&'static str, u64); 7] = [
            ("limits.max_message_size", limits.max_message_size),
            ("limits.max_header_size", limits.max_header_size),
            ("limits.max_recipients", limits.max_recipients as u64),
            ("limits.max_errors", limits.max_errors.into()),
            ("limits.max_commands", limits.max_commands.into()),
            ("limits.max_connections", limits.max_connections as u64),
            (
                "limits.max_connections_per_client",
                limits.max_connections_per_client as u64,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err((key, "must be at least 1".into()));
        }
        if limits.max_recipients > 10_000 {
            return Err(("limits.max_recipients", "must be at most 10000".into()));
        }
        let timeouts = [
            ("limits.command_timeout", limits.command_timeout.0),
            ("limits.data_timeout", limits.data_timeout.0),
            ("limits.session_timeout", limits.session_timeout.0),
            (
                "downstream.connect_timeout",
                self.downstream.connect_timeout.0,
            ),
            (
                "downstream.command_timeout",
                self.downstream.command_timeout.0,
            ),
        ];
        if let Some((key, _)) = timeouts.iter().find(|(_, v)| v.is_zero()) {
            return Err((key, "must be more than 0s".into()));
        }
        Ok(())
    }
}

/// Line number (1-based) and dotted key at byte `offset` of a TOML text.
fn locate(text: &str, offset: usize) -> (Option<usize>, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if let Some(header) = section_name(line.trim()) {
        return (Some(line_no), header);
    }
    let section = text[..line_start]
        .lines()
        .rev()
        .find_map(|l| section_name(l.trim()))
        .unwrap_or_default();
    let key = match line.split_once('=') {
        Some((k, _)) => k.trim().trim_matches('"').to_string(),
        None => String::new(),
    };
    let dotted = match (section.is_empty(), key.is_empty()) {
        (true, true) => "(file)".to_string(),
        (true, false) => key,
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    };
    (Some(line_no), dotted)
}

fn section_name(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_start_matches('[').trim().to_string())
}

/// The line where a dotted key (`section.key`) is written, if it is.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (want_section, want_key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(s) = section_name(trimmed) {
            section = s;
        } else if let Some((k, _)) = trimmed.split_once('=') {
            if section == want_section && k.trim() == want_key {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", Path::new("/etc/mxguard"))
    }

    #[test]
    fn embedded_default_is_the_spec() {
        let c = Config::embedded_default().unwrap();
        assert_eq!(c.server.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(c.relay.domains, vec!["localhost".to_string()]);
        assert_eq!(
            c.downstream.targets,
            vec![Target::Maildir("./mxguard-data/Maildir".into())]
        );
        assert_eq!(c.spool.dir, PathBuf::from("./mxguard-data/spool"));
        assert!(c.tls.is_none());
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let c = parse("[spool]\ndir = \"q\"\n[recipients]\ntable = \"/abs/r\"\n").unwrap();
        assert_eq!(c.spool.dir, PathBuf::from("/etc/mxguard/q"));
        assert_eq!(c.recipients.table, Some(PathBuf::from("/abs/r")));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[server]\nhostname = \"mx.example.com\"\nlisen = []\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("test.toml:3: server.lisen: unknown field `lisen`"),
            "{text}"
        );
    }

    #[test]
    fn a_list_family_switch_that_cannot_be_right_is_named() {
        let err = parse("[[dnsbl]]\nzone = \"bl.test\"\nipv4 = false\nipv6 = false\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("dnsbl.ipv4: `bl.test`: with ipv4 and ipv6 both false"),
            "{err}"
        );
        let err = parse("[[rhsbl]]\nzone = \"rhs.test\"\nipv6 = false\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("rhsbl.ipv6: `rhs.test`: an RHSBL looks up sender domains"),
            "{err}"
        );
        let ok = parse("[[dnsbl]]\nzone = \"bl.test\"\nipv6 = false\n").unwrap();
        assert!(ok.dnsbl[0].covers("192.0.2.1".parse().unwrap()));
        assert!(!ok.dnsbl[0].covers("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn a_proxy_listener_needs_its_balancers_and_its_own_address() {
        let err = parse("[server]\nproxy_listen = [\"127.0.0.1:2526\"]\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("server.proxy_from: is needed with server.proxy_listen"),
            "{err}"
        );
        let err = parse(
            "[server]\nlisten = [\"127.0.0.1:25\"]\nproxy_listen = [\"127.0.0.1:25\"]\n\
             proxy_from = [\"10.0.0.0/8\"]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("server.proxy_listen: 127.0.0.1:25 is also in server.listen"),
            "{err}"
        );
        let only_proxied = parse(
            "[server]\nlisten = []\nproxy_listen = [\"[::]:25\"]\nproxy_from = [\"10.0.0.5\"]\n",
        )
        .unwrap();
        assert!(only_proxied.server.proxy_from[0].contains("10.0.0.5".parse().unwrap()));
        let err = parse("[server]\nlisten = []\n").unwrap_err();
        assert!(err
            .to_string()
            .contains("server.listen: needs at least one"));
    }

    #[test]
    fn milters_are_named_and_their_errors_name_the_key() {
        let c = parse(
            "[[milter]]\naddress = \"inet:127.0.0.1:11332\"\n\
             [[milter]]\nname = \"clamav\"\naddress = \"unix:/run/clamav/milter.sock\"\n\
             default_action = \"tempfail\"\ncontent_timeout = \"5m\"\n",
        )
        .unwrap();
        assert_eq!(c.milter[0].name, "inet:127.0.0.1:11332");
        assert_eq!(c.milter[0].default_action, milter::DefaultAction::Accept);
        assert_eq!(c.milter[1].name, "clamav");
        assert_eq!(c.milter[1].content_timeout.0.as_secs(), 300);
        for (text, key) in [
            ("address = \"tcp:1.2.3.4\"", "milter.address"),
            ("address = \"inet:x:1\"\nname = \"a b\"", "milter.name"),
            (
                "address = \"inet:x:1\"\ncommand_timeout = \"0s\"",
                "milter.command_timeout",
            ),
            (
                "address = \"inet:x:1\"\nmax_sessions = 0",
                "milter.max_sessions",
            ),
            (
                "address = \"inet:x:1\"\ndefault_action = \"maybe\"",
                "default_action",
            ),
            ("address = \"inet:x:1\"\ncontent = \"body\"", "content"),
        ] {
            let err = parse(&format!("[[milter]]\n{text}\n")).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        let twice = "[[milter]]\naddress = \"inet:x:1\"\n[[milter]]\naddress = \"inet:x:1\"\n";
        let err = parse(twice).unwrap_err();
        assert!(err.to_string().contains("names two filters"), "{err}");
    }

    #[test]
    fn routes_and_unix_lmtp_targets() {
        let c = parse(
            "[downstream]\ntargets = [\"smtp://mail.example.com\"]\n\
             [[downstream.route]]\ndomains = [\"Example.ORG.\"]\n\
             targets = [\"lmtp:unix:/run/dovecot/lmtp\", \"maildir:spare\"]\n",
        )
        .unwrap();
        let org = c.downstream.targets_for("example.org");
        assert_eq!(org[0], Target::LmtpUnix("/run/dovecot/lmtp".into()));
        assert_eq!(org[0].to_string(), "lmtp:unix:/run/dovecot/lmtp");
        assert_eq!(org[1], Target::Maildir("/etc/mxguard/spare".into()));
        assert_eq!(
            c.downstream.targets_for("example.com")[0].to_string(),
            "smtp://mail.example.com:25"
        );
        let err = parse("[[downstream.route]]\ndomains = [\"a b\"]\ntargets = [\"smtp://x\"]\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("downstream.route.domains: `a b`"),
            "{err}"
        );
        let err =
            parse("[[downstream.route]]\ndomains = [\"a.test\"]\ntargets = []\n").unwrap_err();
        assert!(
            err.to_string().contains("downstream.route.targets"),
            "{err}"
        );
        let err = parse("[downstream]\ntargets = [\"lmtp:unix:\"]\n").unwrap_err();
        assert!(
            err.to_string().contains("`lmtp:unix:` needs a socket"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_is_named() {
        let err = parse("[limits]\ncommand_timeout = \"5 minutes\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("test.toml:2: limits.command_timeout:"),
            "{err}"
        );
        let err = parse("[downstream]\ntargets = [\"ftp://x\"]\n").unwrap_err();
        assert!(err.to_string().contains("downstream.targets"), "{err}");
        let err = parse("[relay]\ntrusted_networks = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(err.to_string().contains("relay.trusted_networks"), "{err}");
    }

    #[test]
    fn the_forwarded_mail_keys_are_normalized_resolved_and_named_when_wrong() {
        let c =
            parse("[checks]\narc_trusted_sealers = [\"Lists.Example.\"]\nforwarders = \"fw\"\n")
                .unwrap();
        assert_eq!(c.checks.arc_trusted_sealers, vec!["lists.example"]);
        assert_eq!(c.checks.forwarders, Some(PathBuf::from("/etc/mxguard/fw")));
        let err = parse("[checks]\narc_trusted_sealers = [\"not a domain\"]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.toml:2: checks.arc_trusted_sealers: `not a domain` is not a domain name"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let err = parse("[limits]\nmax_recipients = 0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.toml:2: limits.max_recipients: must be at least 1"
        );
        let err = parse("[relay]\ndomains = [\"bad domain\"]\n").unwrap_err();
        assert!(
            err.to_string().starts_with("test.toml:2: relay.domains:"),
            "{err}"
        );
        let err = parse("[downstream]\nretry_min = \"2h\"\nretry_max = \"1h\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("test.toml:3: downstream.retry_max"),
            "{err}"
        );
    }

    #[test]
    fn abuse_settings_that_cannot_work_are_refused() {
        let starts = |toml: &str, want: &str| {
            let err = parse(toml).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        };
        starts(
            "[greylist]\ndelay = \"2d\"\nretry_window = \"1d\"\n",
            "test.toml:2: greylist.delay: must not be more than",
        );
        starts("[state]\ntimeout = \"0s\"\n", "test.toml:2: state.timeout:");
        starts(
            "[greylist]\nnetmask_v4 = 33\n",
            "test.toml:2: greylist.netmask_v4: must be from 8 to 32",
        );
        starts(
            "[greylist]\nnetmask_v6 = 8\n",
            "test.toml:2: greylist.netmask_v6: must be from 16 to 128",
        );
        starts(
            "[greylist]\nwhen = \"sometimes\"\n",
            "test.toml:2: greylist.when: unknown variant `sometimes`",
        );
        starts(
            "[abuse]\ntarpit_max = 0\n",
            "test.toml:2: abuse.tarpit_max:",
        );
        starts(
            "[ban]\nevents = [\"pregret\"]\n",
            "test.toml:2: ban.events: `pregret` is neither",
        );
        starts(
            "[state]\nbackend = \"mysql://x\"\n",
            "test.toml:2: state.backend: `mysql://x` is not a state backend",
        );
        let ok = parse(
            "[[dnsbl]]\nzone = \"bl.example\"\n[ban]\nevents = [\"dnsbl:bl.example\", \"helo\"]\n",
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn downstream_tls_settings() {
        let c = parse("").unwrap();
        assert_eq!(c.downstream.tls, DownstreamTls::Opportunistic);
        let c = parse("[downstream]\ntls = \"verify\"\ntls_ca_file = \"ca.pem\"\n").unwrap();
        assert_eq!(c.downstream.tls, DownstreamTls::Verify);
        assert_eq!(
            c.downstream.tls_ca_file,
            Some(PathBuf::from("/etc/mxguard/ca.pem"))
        );
        let err = parse("[downstream]\ntls = \"always\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("test.toml:2: downstream.tls: unknown variant `always`"),
            "{err}"
        );
        let err =
            parse("[downstream]\ntls = \"required\"\ntls_ca_file = \"ca.pem\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.toml:3: downstream.tls_ca_file: is only used with downstream.tls = \"verify\""
        );
    }

    #[test]
    fn tls_certificates() {
        let c = parse("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, Some(PathBuf::from("/etc/mxguard/c.pem")));
        assert_eq!(tls.key, Some(PathBuf::from("/etc/mxguard/k.pem")));
        assert!(tls.certificate.is_empty());
        assert_eq!(tls.check_interval.0, std::time::Duration::from_secs(60));
        let c = parse(
            "[tls]\ncheck_interval = \"5s\"\n[[tls.certificate]]\n\
             names = [\"MX1.Example.com.\", \"*.example.org\"]\ncert = \"a.pem\"\nkey = \"/k/a.pem\"\n",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, None);
        assert_eq!(tls.check_interval.0, std::time::Duration::from_secs(5));
        let entry = &tls.certificate[0];
        let names: Vec<&str> = entry.names.iter().map(CertName::as_str).collect();
        assert_eq!(names, ["mx1.example.com", "*.example.org"]);
        assert_eq!(entry.cert, PathBuf::from("/etc/mxguard/a.pem"));
        assert_eq!(entry.key, PathBuf::from("/k/a.pem"));
    }

    #[test]
    fn tls_settings_that_cannot_work_are_refused() {
        let err = |toml: &str| parse(toml).unwrap_err().to_string();
        assert_eq!(
            err("[tls]\ncert = \"c.pem\"\n"),
            "test.toml: tls.key: is needed with tls.cert"
        );
        assert_eq!(
            err("[tls]\n"),
            "test.toml: tls: needs cert and key, or at least one [[tls.certificate]]"
        );
        assert_eq!(
            err("[tls]\ncert = \"c\"\nkey = \"k\"\ncheck_interval = \"0s\"\n"),
            "test.toml:4: tls.check_interval: must be at least 1s"
        );
        let text = err(
            "[[tls.certificate]]\nnames = [\"a.test\", \"*.*.test\"]\ncert = \"c\"\nkey = \"k\"\n",
        );
        assert!(
            text.starts_with("test.toml:2: tls.certificate.names: `*.*.test` is neither"),
            "{text}"
        );
        let text = err("[[tls.certificate]]\nnames = []\ncert = \"c\"\nkey = \"k\"\n");
        assert!(
            text.starts_with("test.toml:2: tls.certificate.names: needs at least one name"),
            "{text}"
        );
    }

    #[test]
    fn domains_are_normalised() {
        let c = parse("[relay]\ndomains = [\"Example.COM.\"]\n").unwrap();
        assert_eq!(c.relay.domains, vec!["example.com".to_string()]);
    }
}
