//! The RFC 7208 SPF test suite (openspf.org, release 2014.04) through
//! mxguard's own SPF evaluator (`mxguard::spf`, driven on the shared
//! resolver by `mxguard::dns::spf`): each section's zone data served by the
//! fixture DNS server (`DnsFixture::with_records`), each test evaluated by
//! `Dns::spf_mail_from` with the address canonicalised as the listener
//! does, and compared with the result(s) the suite accepts, and with its
//! explanation (`exp=`) when it names one (ignoring case: the suite writes
//! the nibbles of `%{ir}` in upper case, RFC 7208 section 7.4 in lower).
//!
//! How the zone data is served, as the suite's own drivers do:
//! - `SPF` (type 99) records: RFC 7208 removed the type, hickory has no
//!   record type for it, and mxguard never asks for it, so they are not
//!   served as type 99. Instead each is also served as a TXT record unless
//!   the name has TXT entries of its own (the suite's "auto-magic
//!   duplication"; `TXT: NONE` is such an entry that serves nothing). Not
//!   serving type 99 changes no result: the tests that mention type SPF
//!   (`spfonly`, `spftimeout`, `spfoverride`, `multispf2`, ...) expect the
//!   answer of a TXT-only implementation.
//! - `TIMEOUT`: the fixture never answers queries for that name, except for
//!   record types the name holds (so `spftimeout` still has its TXT).
//! - Strings are sent as bytes, characters up to U+00FF as one byte each
//!   (the suite's `\xEF\xBB\xBF` is the UTF-8 byte order mark).
//! - A null `mailfrom` is `postmaster@<helo>` (RFC 7208 section 2.4), as in
//!   mxguard's MAIL stage; for those tests the HELO identity check
//!   (`Dns::spf_helo`, the same `check_host()`) must agree.
//!
//! The suite file: `tests/fixtures/spf/rfc7208-tests.yml` (with its
//! license). Run with `--nocapture` to see the pass count.

use crate::dns_fixture::DnsFixture;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, TXT};
use hickory_server::proto::rr::{Name, RData, Record};
use mxguard::config::checks::Dns as DnsConfig;
use mxguard::config::duration::HumanDuration;
use mxguard::dns::Dns;
use mxguard::spf::{SpfResult, Verdict};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Tests the resolver cannot express, and why. They must still fail: the
/// test fails if any other test fails, or if one of these passes.
pub(crate) const CANNOT_EXPRESS: &[(&str, &str)] = &[(
    "null-text",
    "a TXT record with no strings at all (illegal, RDLENGTH 0) beside the SPF \
     record: hickory's message decoder refuses the whole response \
     (`unexpected record with length 0 in non-update message`, \
     DecodeError::InvalidEmptyRecord), so the TXT lookup fails: temperror \
     where the suite wants the other record's pass",
)];

/// One `---` document of the suite.
#[derive(Deserialize)]
pub(crate) struct Section {
    pub(crate) description: String,
    pub(crate) tests: BTreeMap<String, Case>,
    zonedata: BTreeMap<String, Vec<Value>>,
}

#[derive(Deserialize)]
pub(crate) struct Case {
    pub(crate) helo: String,
    pub(crate) host: String,
    pub(crate) mailfrom: String,
    pub(crate) result: Expected,
    /// The explanation of a fail, or `DEFAULT` (whatever the checker's own).
    explanation: Option<String>,
}

impl Case {
    /// The explanation the suite names, if it names one.
    pub(crate) fn explanation(&self) -> Option<&str> {
        self.explanation.as_deref().filter(|e| *e != "DEFAULT")
    }
}

/// `result`: one result, or a list of acceptable ones.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Expected {
    One(String),
    Any(Vec<String>),
}

impl Expected {
    pub(crate) fn results(&self) -> Vec<SpfResult> {
        match self {
            Expected::One(one) => vec![spf_result(one)],
            Expected::Any(any) => any.iter().map(|r| spf_result(r)).collect(),
        }
    }
}

pub(crate) fn spf_result(text: &str) -> SpfResult {
    match text {
        "pass" => SpfResult::Pass,
        "fail" => SpfResult::Fail,
        "softfail" => SpfResult::SoftFail,
        "neutral" => SpfResult::Neutral,
        "none" => SpfResult::None,
        "permerror" => SpfResult::PermError,
        "temperror" => SpfResult::TempError,
        other => panic!("unknown SPF result in the suite: {other}"),
    }
}

/// What one test gave.
struct Outcome {
    name: String,
    section: String,
    expected: Vec<SpfResult>,
    explanation: Option<String>,
    got: Verdict,
    /// For a null sender: the HELO identity check, when it disagrees.
    helo_disagrees: Option<SpfResult>,
}

impl Outcome {
    fn passed(&self) -> bool {
        let explained = match (&self.explanation, &self.got.explanation) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        self.expected.contains(&self.got.result) && explained && self.helo_disagrees.is_none()
    }

    fn describe(&self) -> String {
        let helo = match self.helo_disagrees {
            Some(helo) => format!(", but spf_helo gave {helo:?}"),
            None => String::new(),
        };
        format!(
            "{} ({}): expected {:?} explained {:?}, got {:?}{helo}",
            self.name, self.section, self.expected, self.explanation, self.got
        )
    }
}

/// The suite, kept in the tree with its license (BSD-3-Clause).
const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spf/rfc7208-tests.yml"
);

/// The suite's sections (the comment block before the first `---` is an
/// empty document).
pub(crate) fn load_suite() -> Vec<Section> {
    let path = SUITE;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("SPF suite {path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("SPF suite {path}: {e}")))
        .filter(|doc| !doc.is_null())
        .map(|doc| serde_yaml::from_value(doc).unwrap_or_else(|e| panic!("SPF suite {path}: {e}")))
        .collect()
}

/// A suite string as DNS bytes: one byte per character up to U+00FF.
fn bytes(text: &str) -> Vec<u8> {
    match text.chars().map(u8::try_from).collect() {
        Ok(latin1) => latin1,
        Err(_) => text.as_bytes().to_vec(),
    }
}

/// A TXT/SPF value: one string, or a list of strings (of one record).
fn strings(value: &Value) -> Vec<Vec<u8>> {
    match value {
        Value::String(s) => vec![bytes(s)],
        Value::Sequence(parts) => parts.iter().flat_map(strings).collect(),
        other => panic!("TXT/SPF value {other:?}"),
    }
}

fn txt(value: &Value) -> RData {
    let parts = strings(value);
    RData::TXT(TXT::from_bytes(parts.iter().map(Vec::as_slice).collect()))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string: {value:?}"))
}

/// An owner name, encoded as mail-auth encodes the names it asks for, else
/// (a name hickory cannot parse, such as `foo:bar/baz.example.com`) label
/// by label as raw bytes.
fn owner(text: &str) -> Name {
    let fqdn = format!("{}.", text.trim_end_matches('.'));
    Name::from_str_relaxed(&fqdn).unwrap_or_else(|_| raw_name(&fqdn))
}

/// A name in record data, its case kept.
fn target(text: &str) -> Name {
    let fqdn = format!("{}.", text.trim_end_matches('.'));
    Name::from_ascii(&fqdn).unwrap_or_else(|_| owner(text))
}

fn raw_name(fqdn: &str) -> Name {
    let labels = fqdn.trim_end_matches('.').split('.').map(str::as_bytes);
    let mut name =
        Name::from_labels(labels).unwrap_or_else(|e| panic!("zone data name {fqdn:?}: {e}"));
    name.set_fqdn(true);
    name
}

/// Record data of one zone data entry other than TXT and SPF.
fn rdata(kind: &str, value: &Value) -> RData {
    match kind {
        "A" | "AAAA" => address(kind, text(value)),
        "MX" => {
            let (preference, exchange) = mx_pair(value).unwrap_or_else(|| panic!("MX {value:?}"));
            RData::MX(MX::new(preference, target(&exchange)))
        }
        "PTR" => RData::PTR(PTR(target(text(value)))),
        "CNAME" => RData::CNAME(CNAME(target(text(value)))),
        other => panic!("zone data entry {other}: {value:?}"),
    }
}

fn address(kind: &str, text: &str) -> RData {
    match (kind, text.parse()) {
        ("A", Ok(IpAddr::V4(v4))) => RData::A(A(v4)),
        ("AAAA", Ok(IpAddr::V6(v6))) => RData::AAAA(AAAA(v6)),
        _ => panic!("zone data entry {kind}: {text:?}"),
    }
}

/// `[preference, exchange]` of an MX entry.
fn mx_pair(value: &Value) -> Option<(u16, String)> {
    let pair = value.as_sequence()?;
    let preference = u16::try_from(pair.first()?.as_u64()?).ok()?;
    Some((preference, pair.get(1)?.as_str()?.to_string()))
}

/// The records of one zone data name, and whether it times out.
fn name_records(name: &str, entries: &[Value]) -> (Vec<Record>, bool) {
    let owner = owner(name);
    let mut timeout = false;
    let mut has_txt = false;
    let mut spf = Vec::new();
    let mut data = Vec::new();
    for entry in entries {
        let Some(map) = entry.as_mapping() else {
            assert_eq!(entry.as_str(), Some("TIMEOUT"), "{name}: {entry:?}");
            timeout = true;
            continue;
        };
        for (kind, value) in map {
            match (text(kind), value.as_str()) {
                ("TXT", Some("NONE")) => has_txt = true,
                ("TXT", _) => {
                    has_txt = true;
                    data.push(txt(value));
                }
                ("SPF", _) => spf.push(txt(value)),
                (kind, _) => data.push(rdata(kind, value)),
            }
        }
    }
    if !has_txt {
        data.extend(spf);
    }
    let records = data
        .into_iter()
        .map(|d| Record::from_rdata(owner.clone(), 300, d))
        .collect();
    (records, timeout)
}

/// The fixture DNS server for one section.
pub(crate) fn serve(section: &Section) -> DnsFixture {
    let mut records = Vec::new();
    let mut silent = Vec::new();
    for (name, entries) in &section.zonedata {
        let (mut held, timeout) = name_records(name, entries);
        records.append(&mut held);
        if timeout {
            silent.push(owner(name));
        }
    }
    DnsFixture::with_records(records, silent)
}

/// How long a lookup of the suite may take: its `TIMEOUT` names never
/// answer, and take that long to give their temperror; every other name is
/// answered at once, and this leaves room for a machine busy with the
/// other tests (at 500 ms, a starved fixture thread failed whole sections).
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A resolver asking the fixture, as configured by `[dns]`: one per
/// section, shared by its tests as mxguard shares one (building one takes
/// tens of milliseconds, too long to do per test while others wait).
fn resolver(fixture: &DnsFixture) -> Dns {
    let config = DnsConfig {
        nameservers: vec![fixture.addr],
        timeout: HumanDuration(LOOKUP_TIMEOUT),
    };
    Dns::new(&config).expect("resolver for the fixture")
}

/// Runs one test as mxguard would: the address canonicalised as by the
/// listener, a null sender as `postmaster@<helo>`.
async fn run_case(dns: &Dns, section: &str, name: &str, case: &Case) -> Outcome {
    let host: IpAddr = case
        .host
        .parse()
        .unwrap_or_else(|e| panic!("{name}: host {}: {e}", case.host));
    let ip = mxguard::net::canonical_ip(host);
    let null_sender = case.mailfrom.is_empty();
    let sender = if null_sender {
        format!("postmaster@{}", case.helo.trim_end_matches('.'))
    } else {
        case.mailfrom.clone()
    };
    let got = dns.spf_mail_from(ip, &case.helo, "mx.test", &sender).await;
    let helo_disagrees = if null_sender {
        let helo = dns.spf_helo(ip, &case.helo, "mx.test").await.result;
        (helo != got.result).then_some(helo)
    } else {
        None
    };
    Outcome {
        name: name.to_string(),
        section: section.to_string(),
        expected: case.result.results(),
        explanation: case.explanation().map(str::to_string),
        got,
        helo_disagrees,
    }
}

/// All tests of one section, concurrently.
async fn run_section(section: &Section, dns: &Dns) -> Vec<Outcome> {
    let cases = section
        .tests
        .iter()
        .map(|(name, case)| run_case(dns, &section.description, name, case));
    futures_util::future::join_all(cases).await
}

/// The failures not in [`CANNOT_EXPRESS`], and the listed ones that
/// pass or are not in the suite (test names are unique in the suite).
fn surprises(outcomes: &[Outcome]) -> (Vec<String>, Vec<&'static str>) {
    let names: BTreeSet<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names.len(),
        outcomes.len(),
        "test names repeat in the suite"
    );
    let known: BTreeSet<&str> = CANNOT_EXPRESS.iter().map(|(name, _)| *name).collect();
    let unexpected = outcomes
        .iter()
        .filter(|o| !o.passed() && !known.contains(o.name.as_str()))
        .map(Outcome::describe)
        .collect();
    let failing: BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.name.as_str())
        .collect();
    let stale = known.into_iter().filter(|n| !failing.contains(n)).collect();
    (unexpected, stale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7208_suite() {
    let started = Instant::now();
    let sections = load_suite();
    let fixtures: Vec<DnsFixture> = sections.iter().map(serve).collect();
    let resolvers: Vec<Dns> = fixtures.iter().map(resolver).collect();
    let runs = sections
        .iter()
        .zip(&resolvers)
        .map(|(section, dns)| run_section(section, dns));
    let outcomes: Vec<Outcome> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    println!(
        "SPF suite: {passed} of {} tests pass ({} the resolver cannot express, {:.1} s)",
        outcomes.len(),
        CANNOT_EXPRESS.len(),
        started.elapsed().as_secs_f64()
    );
    for outcome in outcomes.iter().filter(|o| !o.passed()) {
        println!("  failing: {}", outcome.describe());
    }
    let (unexpected, stale) = surprises(&outcomes);
    assert!(
        unexpected.is_empty(),
        "SPF tests failing, not in CANNOT_EXPRESS:\n{}",
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "in CANNOT_EXPRESS but passing (or not in the suite): {stale:?}"
    );
}
