//! The configuration of the checks: `[policy]`, `[dns]`, `[checks]`,
//! `[lists]`, `[[dnsbl]]` and `[[rhsbl]]`. Every check is off unless
//! configured; each takes an action (`"reject"`, `"tempfail"`, `"warn"`,
//! `"off"`) or a table with a `weight` that adds to the session score.

use super::duration::HumanDuration;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// What a check does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Reject,
    Tempfail,
    /// Log "would reject" with the exact reply, let the mail pass.
    Warn,
    #[default]
    Off,
}

/// What a check does when its DNS lookup fails (timeout, SERVFAIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDnsError {
    Tempfail,
    Ignore,
}

/// One check's setting: `"reject"`, or `{ action = "…", weight = 2.5,
/// on_dns_error = "ignore" }`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CheckSetting {
    pub action: Action,
    /// When set, the check adds this to the score instead of acting.
    pub weight: Option<f64>,
    pub on_dns_error: Option<OnDnsError>,
}

impl CheckSetting {
    /// From the keys of a table: a weight without an action only scores,
    /// no action and no weight means reject.
    fn from_parts(
        action: Option<Action>,
        weight: Option<f64>,
        on_dns_error: Option<OnDnsError>,
    ) -> CheckSetting {
        let default = if weight.is_some() {
            Action::Off
        } else {
            Action::Reject
        };
        CheckSetting {
            action: action.unwrap_or(default),
            weight,
            on_dns_error,
        }
    }

    pub fn is_off(&self) -> bool {
        self.action == Action::Off && self.weight.is_none()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingTable {
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    on_dns_error: Option<OnDnsError>,
}

impl<'de> Deserialize<'de> for CheckSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = CheckSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an action (\"reject\", \"tempfail\", \"warn\", \"off\") or a table such as { weight = 2 }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<CheckSetting, E> {
                let action = Action::deserialize(de::value::StrDeserializer::<E>::new(text))
                    .map_err(|_| {
                        E::custom(format!(
                            "`{text}` is not an action (reject, tempfail, warn, off)"
                        ))
                    })?;
                Ok(CheckSetting {
                    action,
                    ..CheckSetting::default()
                })
            }
            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<CheckSetting, M::Error> {
                let t = SettingTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if t.weight.is_some_and(|w| !w.is_finite()) {
                    return Err(de::Error::custom("weight must be a finite number"));
                }
                Ok(CheckSetting::from_parts(t.action, t.weight, t.on_dns_error))
            }
        }
        d.deserialize_any(V)
    }
}

/// `policy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    /// Dry run: every reject and tempfail is only logged.
    Warn,
}

/// `policy.reject_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RejectAt {
    /// Connect, HELO and MAIL rejections are answered at RCPT, so the log
    /// line carries the whole envelope (Postfix's smtpd_delay_reject).
    #[default]
    Rcpt,
    Immediate,
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub mode: Mode,
    pub reject_at: RejectAt,
    /// A session whose score reaches this is refused.
    pub reject_score: f64,
    pub dnsbl_health_interval: HumanDuration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Enforce,
            reject_at: RejectAt::Rcpt,
            reject_score: 10.0,
            dnsbl_health_interval: HumanDuration(Duration::from_secs(1800)),
        }
    }
}

/// `[dns]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Empty: the system resolver configuration (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    pub timeout: HumanDuration,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            nameservers: Vec::new(),
            timeout: HumanDuration(Duration::from_secs(3)),
        }
    }
}

/// `[checks]`: one setting per check.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// The client address has no PTR record.
    pub reverse_dns: CheckSetting,
    /// The PTR name does not resolve back to the client address.
    pub forged_reverse_dns: CheckSetting,
    /// The PTR name looks generic or dynamic (address digits in it).
    pub generic_reverse_dns: CheckSetting,
    /// HELO syntax: invalid, not fully qualified, bare IP, wrong literal,
    /// our own name or address.
    pub helo: CheckSetting,
    /// The HELO name does not resolve.
    pub helo_dns: CheckSetting,
    /// The HELO name is not the client's PTR name.
    pub helo_ptr_mismatch: CheckSetting,
    /// SPF of the HELO name fails.
    pub helo_spf: CheckSetting,
    /// The MAIL FROM domain has no MX, A or AAAA.
    pub sender_domain: CheckSetting,
    /// The MAIL FROM domain publishes a null MX (RFC 7505).
    pub null_mx: CheckSetting,
    /// SPF of the MAIL FROM domain fails.
    pub spf: CheckSetting,
    /// SPF of the MAIL FROM domain soft-fails.
    pub spf_softfail: CheckSetting,
    pub sender_blocklist: CheckSetting,
    pub recipient_blocklist: CheckSetting,
    /// At the end of DATA: DKIM, SPF and DMARC verified, an
    /// Authentication-Results header added; the action applies when DMARC
    /// fails for a domain whose policy is `p=reject`. Off: no verification.
    /// The one check on by default (as `"warn"`).
    pub dmarc: WarnByDefault,
    /// ARC sealers (domains) whose valid chain turns a DMARC failure into
    /// a warning: the mailing lists and forwarders that vouch for what
    /// they forward (RFC 8617).
    pub arc_trusted_sealers: Vec<String>,
    /// A file of forwarders (an IP address or network, or a domain that
    /// a forward-confirmed client name ends in, per line), whose mail
    /// skips the SPF refusal; reloaded when it changes.
    pub forwarders: Option<PathBuf>,
}

impl Checks {
    /// Every key of `[checks]`: the names those checks log and count
    /// under (`ban.events`). A unit test keeps it equal to the fields.
    pub const NAMES: &'static [&'static str] = &[
        "reverse_dns",
        "forged_reverse_dns",
        "generic_reverse_dns",
        "helo",
        "helo_dns",
        "helo_ptr_mismatch",
        "helo_spf",
        "sender_domain",
        "null_mx",
        "spf",
        "spf_softfail",
        "sender_blocklist",
        "recipient_blocklist",
        "dmarc",
    ];

    /// The keys of `[checks]` that are not checks of their own: they
    /// temper `dmarc` and `spf`.
    pub const TEMPERING: &'static [&'static str] = &["arc_trusted_sealers", "forwarders"];
}

/// A check setting whose default is `"warn"`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct WarnByDefault(pub CheckSetting);

impl Default for WarnByDefault {
    fn default() -> Self {
        WarnByDefault(CheckSetting {
            action: Action::Warn,
            ..CheckSetting::default()
        })
    }
}

/// `[lists]`: files, reloaded when they change.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Lists {
    /// "IP-or-CIDR [name]" per line: these clients skip the client checks.
    pub client_exceptions: Option<PathBuf>,
    /// Exact address, `@domain` or `/regex/` per line.
    pub sender_blocklist: Option<PathBuf>,
    pub recipient_blocklist: Option<PathBuf>,
}

/// One `[[dnsbl]]` or `[[rhsbl]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListZone {
    pub zone: String,
    /// Answers that count as listed; default: 127.0.0.0/8 but the error codes.
    #[serde(default)]
    pub codes: Vec<CodeRange>,
    #[serde(default)]
    pub action: Option<Action>,
    /// Adds to the score instead of acting; negative for allow lists.
    #[serde(default)]
    pub weight: Option<f64>,
    /// With `{client_ip}`, `{zone}`, `{txt}`, `{sender_domain}`.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub on_dns_error: Option<OnDnsError>,
    /// Whether IPv4 clients are looked up (`[[dnsbl]]` only): off for a
    /// list that covers only IPv6 addresses.
    #[serde(default = "yes")]
    pub ipv4: bool,
    /// Whether IPv6 clients are looked up (`[[dnsbl]]` only): off for a
    /// list that covers only IPv4 addresses, as most do.
    #[serde(default = "yes")]
    pub ipv6: bool,
    /// A Spamhaus DQS key: asked as `<reversed-ip>.<key>.<zone>`, and
    /// shown nowhere (the zone is named without it).
    #[serde(default)]
    pub key: Option<DqsKey>,
    /// A file holding the key (read when the configuration is loaded).
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
}

/// A DNS list's access key: one DNS label of letters and digits. Its
/// `Debug` hides it, so that no dump of the configuration shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DqsKey(String);

impl DqsKey {
    /// The key from its text (a file's content: surrounding white space
    /// dropped), if it is one.
    pub fn parse(text: &str) -> Result<DqsKey, String> {
        let key = text.trim();
        if key.is_empty() || key.len() > 63 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("a DQS key is 1 to 63 letters and digits".into());
        }
        Ok(DqsKey(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DqsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DqsKey(<hidden>)")
    }
}

impl<'de> Deserialize<'de> for DqsKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DqsKey::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

fn yes() -> bool {
    true
}

impl ListZone {
    /// Whether the list is asked about `client` (its family not skipped).
    pub fn covers(&self, client: std::net::IpAddr) -> bool {
        if client.is_ipv4() {
            self.ipv4
        } else {
            self.ipv6
        }
    }

    pub fn setting(&self) -> CheckSetting {
        CheckSetting::from_parts(self.action, self.weight, self.on_dns_error)
    }

    /// The zone queries are made under: `<key>.<zone>` with a key, else
    /// the zone. Never for display: the zone is `zone`.
    pub fn query_zone(&self) -> std::borrow::Cow<'_, str> {
        match &self.key {
            Some(key) => format!("{}.{}", key.as_str(), self.zone).into(),
            None => std::borrow::Cow::Borrowed(&self.zone),
        }
    }

    /// `text` with the key, if any, replaced by `<key>`: for what a lookup
    /// error says, which may quote the name asked for.
    pub fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(key) => text.replace(key.as_str(), "<key>"),
            None => text.to_string(),
        }
    }

    /// Whether this is one of Spamhaus's zones (public mirrors or DQS).
    pub fn is_spamhaus(&self) -> bool {
        self.zone.ends_with("spamhaus.org") || self.zone.ends_with("spamhaus.net")
    }
}

/// Well-known public resolvers (Google, Cloudflare, Quad9, OpenDNS,
/// Level3, Verisign, AdGuard, Comodo, Yandex), which Spamhaus refuses to
/// answer (127.255.255.254).
pub const PUBLIC_RESOLVERS: &[&str] = &[
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    "1.1.1.1",
    "1.0.0.1",
    "1.1.1.2",
    "1.0.0.2",
    "1.1.1.3",
    "1.0.0.3",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    "9.9.9.9",
    "149.112.112.112",
    "9.9.9.10",
    "9.9.9.11",
    "2620:fe::fe",
    "2620:fe::9",
    "2620:fe::10",
    "2620:fe::11",
    "208.67.222.222",
    "208.67.220.220",
    "2620:119:35::35",
    "2620:119:53::53",
    "4.2.2.1",
    "4.2.2.2",
    "64.6.64.6",
    "64.6.65.6",
    "94.140.14.14",
    "94.140.15.15",
    "8.26.56.26",
    "8.20.247.20",
    "77.88.8.8",
    "77.88.8.1",
];

/// `"127.0.0.2"` or `"127.0.0.2-127.0.0.11"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl CodeRange {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }
}

impl FromStr for CodeRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an address or range like \"127.0.0.2-127.0.0.11\"");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let last: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        if first > last {
            return Err(bad());
        }
        Ok(CodeRange { first, last })
    }
}

impl<'de> Deserialize<'de> for CodeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    /// The field names serde knows for a struct: it hands them to
    /// `deserialize_struct`, where this deserializer keeps them.
    struct Fields(std::cell::Cell<&'static [&'static str]>);

    impl<'de> serde::Deserializer<'de> for &Fields {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only a struct"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(serde::de::Error::custom("fields taken"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    #[test]
    fn the_names_of_the_checks_are_the_keys_of_the_section() {
        let fields = Fields(std::cell::Cell::new(&[]));
        let _ = <super::Checks as serde::Deserialize>::deserialize(&fields);
        let keys = [super::Checks::NAMES, super::Checks::TEMPERING].concat();
        assert_eq!(fields.0.get(), keys);
    }

    use super::*;

    #[derive(Deserialize)]
    struct T {
        a: CheckSetting,
        b: CheckSetting,
        c: CheckSetting,
    }

    #[test]
    fn settings_as_string_or_table() {
        let t: T = toml::from_str(
            "a = \"tempfail\"\nb = { weight = 2.5 }\nc = { action = \"warn\", on_dns_error = \"ignore\" }\n",
        )
        .unwrap();
        assert_eq!(t.a.action, Action::Tempfail);
        assert_eq!(
            t.b,
            CheckSetting {
                action: Action::Off,
                weight: Some(2.5),
                on_dns_error: None
            }
        );
        assert_eq!(t.c.on_dns_error, Some(OnDnsError::Ignore));
        assert!(toml::from_str::<T>("a = \"nope\"\nb = \"off\"\nc = \"off\"\n").is_err());
    }

    #[test]
    fn code_ranges() {
        let r: CodeRange = "127.0.0.2-127.0.0.11".parse().unwrap();
        assert!(r.contains("127.0.0.4".parse().unwrap()));
        assert!(!r.contains("127.0.0.12".parse().unwrap()));
        let one: CodeRange = "127.0.0.2".parse().unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!("127.0.0.9-127.0.0.2".parse::<CodeRange>().is_err());
    }
}
