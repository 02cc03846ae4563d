//! SPF (RFC 7208), sans-IO: the record's syntax ([`record`]), macros
//! ([`macros`]) and `check_host()` as a state machine ([`eval`]) that asks
//! for DNS answers and is given them, so that it can be tested without a
//! network and driven by any resolver. The limits of section 4.6.4 are
//! kept here: ten mechanisms or modifiers that look something up, two void
//! lookups, ten MX names, ten PTR names. No DNS, configuration or policy.

pub mod eval;
pub mod macros;
pub mod record;

pub use eval::Evaluation;

use std::net::IpAddr;

/// The result of `check_host()` (RFC 7208 section 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfResult {
    None,
    Neutral,
    Pass,
    Fail,
    SoftFail,
    TempError,
    PermError,
}

impl SpfResult {
    /// The result's name as RFC 7208 and RFC 8601 write it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for SpfResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is checked: the client, and the identity (`local@domain`; the
/// HELO identity and the null sender are `postmaster@<helo>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The client address, an IPv4-mapped IPv6 address already as IPv4.
    pub ip: IpAddr,
    pub sender: String,
    pub helo: String,
    /// This host's name (`%{r}`).
    pub receiver: String,
    /// Seconds since the epoch (`%{t}`).
    pub now: u64,
}

/// A DNS question. Names have no final dot and are whatever octets the
/// record and its macros made (`foo:bar/baz.example.com` is a name):
/// each label 1 to 63 octets, at most 253 in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    Txt(String),
    A(String),
    Aaaa(String),
    Mx(String),
    /// The PTR records of the client address.
    Ptr(IpAddr),
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(Vec<T>),
    /// NXDOMAIN, or the name has no records of the type (a "void lookup").
    NotFound,
    /// Timeout, SERVFAIL, or any other error.
    Failed,
}

/// The answer to one [`Query`], of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Each TXT record, its strings joined.
    Txt(Lookup<Vec<u8>>),
    /// A or AAAA records.
    Addresses(Lookup<IpAddr>),
    /// The MX exchanges' names (the root, a null MX, as an empty name).
    Mx(Lookup<String>),
    /// PTR names.
    Ptr(Lookup<String>),
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub result: SpfResult,
    /// The domain checked (the MAIL FROM domain, or the HELO name).
    pub domain: String,
    /// For `fail`, the domain's explanation (`exp=`), if it gave a valid one.
    pub explanation: Option<String>,
    /// Why an error or `none` (for the log and `mxguard check`).
    pub why: Option<String>,
}

impl Verdict {
    /// A verdict reached without evaluating (a timeout, say).
    pub fn of(result: SpfResult, domain: &str, why: impl Into<String>) -> Verdict {
        Verdict {
            result,
            domain: domain.to_string(),
            explanation: None,
            why: Some(why.into()),
        }
    }
}
