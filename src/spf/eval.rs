//! `check_host()` (RFC 7208 sections 4 to 6, 7 and 8) as a state machine:
//! [`Evaluation::start`] and [`Evaluation::resume`] give a [`Step`], either
//! the DNS questions to answer next (several at once when they do not
//! depend on each other: the addresses of all MX or PTR names) or the
//! verdict. `include` is a nested evaluation on a stack of frames,
//! `redirect` replaces the frame's domain, and the explanation (`exp=`) of
//! a `fail` is fetched last, outside every limit. The client's validated
//! PTR names (the `ptr` mechanism, `%{p}`) are looked up once.
//!
//! Size: one state machine (under 800 lines), whose states and the answers
//! that move it read best together; the rest are its tests, each a small
//! zone answered in memory.

use super::macros::{MacroString, Values};
use super::record::{is_spf, same_prefix, Cidr, Mechanism, Qualifier, Record};
use super::{Answer, Lookup, Params, Query, SpfResult, Verdict};
use std::net::IpAddr;

/// Mechanisms and modifiers that look something up, per evaluation.
const MAX_LOOKUPS: u32 = 10;
/// Lookups that find nothing, per evaluation.
const MAX_VOIDS: u32 = 2;
/// MX names one `mx` may look at (more is a permerror).
const MAX_MX: usize = 10;
/// PTR names looked at (the others are ignored).
const MAX_PTR: usize = 10;

/// What the evaluation needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer these, in this order, with [`Evaluation::resume`].
    Ask(Vec<Query>),
    Done(Verdict),
}

impl Qualifier {
    fn result(self) -> SpfResult {
        match self {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

/// One `check_host()` in progress: the top one, or an `include`'s.
struct Frame {
    domain: String,
    /// None until its TXT records are in.
    record: Option<Record>,
    /// The next directive to evaluate.
    next: usize,
    /// For an `include`'s evaluation: the include's qualifier.
    include: Option<Qualifier>,
    /// Reached through `redirect=` (then no record is a permerror).
    redirected: bool,
}

/// What the questions asked are for.
enum Waiting {
    Nothing,
    /// The TXT records of the top frame's domain.
    Record,
    /// `a`: the target's addresses.
    Addresses {
        qualifier: Qualifier,
        cidr: Cidr,
        name: String,
    },
    /// `mx`: the target's MX names.
    Exchanges {
        qualifier: Qualifier,
        cidr: Cidr,
        name: String,
    },
    /// `mx`: each MX name's addresses.
    ExchangeAddresses {
        qualifier: Qualifier,
        cidr: Cidr,
        name: String,
    },
    /// `exists`: the target's A records.
    Exists {
        qualifier: Qualifier,
        name: String,
    },
    /// The client's PTR names, then each one's addresses.
    PtrNames {
        then: Then,
    },
    PtrAddresses {
        names: Vec<String>,
        then: Then,
    },
    /// The TXT record of the `exp=` domain.
    Explanation,
}

/// Where to go on once the validated PTR names are known.
#[derive(Clone, Copy)]
enum Then {
    Evaluate,
    Explain,
}

/// The explanation of a `fail`, as far as it has got.
enum Explaining {
    /// The `exp=` domain-spec.
    Spec(MacroString),
    /// The explanation text found there.
    Text(MacroString),
}

/// How evaluating one directive went.
enum Flow {
    Next,
    Match(Qualifier),
    Stop(Step),
}

/// One evaluation of `check_host()`.
pub struct Evaluation {
    params: Params,
    /// `%{s}`, `%{l}`, `%{o}`: the local part `postmaster` when empty.
    sender: String,
    local: String,
    sender_domain: String,
    frames: Vec<Frame>,
    lookups: u32,
    voids: u32,
    /// The client's validated PTR names (lower case), once looked up.
    validated: Option<Vec<String>>,
    /// The PTR lookup found nothing (a void lookup for `ptr`).
    ptr_void: bool,
    waiting: Waiting,
    explaining: Option<Explaining>,
}

impl Evaluation {
    pub fn new(params: Params) -> Evaluation {
        let (local, domain) = match params.sender.rsplit_once('@') {
            Some((local, domain)) => (local.to_string(), domain.to_string()),
            None => (String::new(), params.sender.clone()),
        };
        let local = if local.is_empty() {
            "postmaster".to_string()
        } else {
            local
        };
        let sender_domain = domain.strip_suffix('.').unwrap_or(&domain).to_string();
        Evaluation {
            params,
            sender: format!("{local}@{sender_domain}"),
            local,
            sender_domain,
            frames: Vec::new(),
            lookups: 0,
            voids: 0,
            validated: None,
            ptr_void: false,
            waiting: Waiting::Nothing,
            explaining: None,
        }
    }

    /// The first step: the sender domain's TXT records, or `none` when
    /// the domain is no domain name (RFC 7208 4.3).
    pub fn start(&mut self) -> Step {
        let domain = self.sender_domain.clone();
        if let Some(why) = initial_domain_problem(&domain) {
            return self.finish(SpfResult::None, Some(format!("{domain:?}: {why}")));
        }
        self.frames.push(Frame {
            domain: domain.clone(),
            record: None,
            next: 0,
            include: None,
            redirected: false,
        });
        self.ask(vec![Query::Txt(domain)], Waiting::Record)
    }

    /// The next step, given the answers to the last questions.
    pub fn resume(&mut self, answers: Vec<Answer>) -> Step {
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Nothing);
        let mut answers = answers.into_iter();
        match waiting {
            Waiting::Nothing => self.finish(
                SpfResult::TempError,
                Some("an answer nobody asked for".into()),
            ),
            Waiting::Record => self.on_record(txt(answers.next())),
            Waiting::Addresses {
                qualifier,
                cidr,
                name,
            } => match addresses(answers.next()) {
                Lookup::Failed => self.failed(&name),
                Lookup::NotFound => self.void_then_run(),
                Lookup::Found(found) => {
                    if found.iter().any(|a| cidr.covers(*a, self.params.ip)) {
                        self.matched(qualifier)
                    } else {
                        self.run()
                    }
                }
            },
            Waiting::Exchanges {
                qualifier,
                cidr,
                name,
            } => match exchanges(answers.next()) {
                Lookup::Failed => self.failed(&name),
                Lookup::NotFound => self.void_then_run(),
                Lookup::Found(names) if names.len() > MAX_MX => self.finish(
                    SpfResult::PermError,
                    Some(format!("{name} has more than {MAX_MX} MX records")),
                ),
                Lookup::Found(names) => {
                    let queries: Vec<Query> = names
                        .iter()
                        .filter(|n| name_problem(n).is_none())
                        .map(|n| self.address_query(n))
                        .collect();
                    if queries.is_empty() {
                        return self.run();
                    }
                    let waiting = Waiting::ExchangeAddresses {
                        qualifier,
                        cidr,
                        name,
                    };
                    self.ask(queries, waiting)
                }
            },
            Waiting::ExchangeAddresses {
                qualifier,
                cidr,
                name,
            } => {
                let mut failed = false;
                for answer in answers {
                    match addresses(Some(answer)) {
                        Lookup::Found(found)
                            if found.iter().any(|a| cidr.covers(*a, self.params.ip)) =>
                        {
                            return self.matched(qualifier);
                        }
                        Lookup::Failed => failed = true,
                        _ => {}
                    }
                }
                if failed {
                    self.failed(&format!("an MX name of {name}"))
                } else {
                    self.run()
                }
            }
            Waiting::Exists { qualifier, name } => match addresses(answers.next()) {
                Lookup::Failed => self.failed(&name),
                Lookup::NotFound => self.void_then_run(),
                Lookup::Found(_) => self.matched(qualifier),
            },
            Waiting::PtrNames { then } => match ptr_names(answers.next()) {
                Lookup::Found(names) => {
                    let names: Vec<String> = names
                        .iter()
                        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                        .filter(|n| name_problem(n).is_none())
                        .take(MAX_PTR)
                        .collect();
                    if names.is_empty() {
                        self.validated = Some(Vec::new());
                        return self.then(then);
                    }
                    let queries = names.iter().map(|n| self.address_query(n)).collect();
                    self.ask(queries, Waiting::PtrAddresses { names, then })
                }
                Lookup::NotFound => {
                    self.ptr_void = true;
                    self.validated = Some(Vec::new());
                    self.then(then)
                }
                // A failed PTR lookup: no name validates (RFC 7208 5.5).
                Lookup::Failed => {
                    self.validated = Some(Vec::new());
                    self.then(then)
                }
            },
            Waiting::PtrAddresses { names, then } => {
                let ip = self.params.ip;
                let validated = names
                    .into_iter()
                    .zip(answers)
                    .filter(|(_, answer)| {
                        matches!(answer, Answer::Addresses(Lookup::Found(a)) if a.contains(&ip))
                    })
                    .map(|(name, _)| name)
                    .collect();
                self.validated = Some(validated);
                self.then(then)
            }
            Waiting::Explanation => {
                let text = match txt(answers.next()) {
                    Lookup::Found(records) if records.len() == 1 => records
                        .into_iter()
                        .next()
                        .and_then(|r| String::from_utf8(r).ok())
                        .filter(|t| t.is_ascii()),
                    _ => None,
                };
                let parsed = text
                    .and_then(|t| MacroString::parse(&t, super::macros::Context::Explanation).ok());
                match parsed {
                    Some(text) => {
                        self.explaining = Some(Explaining::Text(text));
                        self.explain()
                    }
                    None => self.finish(SpfResult::Fail, None),
                }
            }
        }
    }

    fn ask(&mut self, queries: Vec<Query>, waiting: Waiting) -> Step {
        self.waiting = waiting;
        Step::Ask(queries)
    }

    fn finish(&mut self, result: SpfResult, why: Option<String>) -> Step {
        self.waiting = Waiting::Nothing;
        Step::Done(Verdict {
            result,
            domain: self.sender_domain.clone(),
            explanation: None,
            why,
        })
    }

    fn failed(&mut self, name: &str) -> Step {
        self.finish(
            SpfResult::TempError,
            Some(format!("the lookup of {name} failed")),
        )
    }

    fn then(&mut self, then: Then) -> Step {
        match then {
            Then::Evaluate => self.run(),
            Then::Explain => self.explain(),
        }
    }

    /// A or AAAA, the client's family.
    fn address_query(&self, name: &str) -> Query {
        match self.params.ip {
            IpAddr::V4(_) => Query::A(name.to_string()),
            IpAddr::V6(_) => Query::Aaaa(name.to_string()),
        }
    }

    /// The TXT records of the top frame's domain are in.
    fn on_record(&mut self, lookup: Lookup<Vec<u8>>) -> Step {
        let Some(frame) = self.frames.last() else {
            return self.finish(SpfResult::TempError, Some("no domain".into()));
        };
        let domain = frame.domain.clone();
        let top = self.frames.len() == 1 && !frame.redirected;
        let records = match lookup {
            Lookup::Failed => return self.failed(&format!("the TXT records of {domain}")),
            Lookup::NotFound => Vec::new(),
            Lookup::Found(records) => records,
        };
        let spf: Vec<&Vec<u8>> = records.iter().filter(|r| is_spf(r)).collect();
        match spf.as_slice() {
            [] if top => self.finish(SpfResult::None, Some(format!("{domain}: no SPF record"))),
            [] => self.finish(
                SpfResult::PermError,
                Some(format!(
                    "{domain} (included or redirected to) has no SPF record"
                )),
            ),
            [one] => match Record::parse(one) {
                Ok(record) => {
                    if let Some(frame) = self.frames.last_mut() {
                        frame.record = Some(record);
                    }
                    self.run()
                }
                Err(e) => self.finish(SpfResult::PermError, Some(format!("{domain}: {e}"))),
            },
            several => self.finish(
                SpfResult::PermError,
                Some(format!("{domain} has {} SPF records", several.len())),
            ),
        }
    }

    /// Evaluates directives until one needs DNS, one matches, or the
    /// record ends (then `redirect=`, or neutral).
    fn run(&mut self) -> Step {
        loop {
            let Some(frame) = self.frames.last() else {
                return self.finish(SpfResult::TempError, Some("no frame".into()));
            };
            let Some(record) = &frame.record else {
                return self.finish(SpfResult::TempError, Some("no record".into()));
            };
            let Some(directive) = record.directives.get(frame.next).cloned() else {
                let redirect = record.redirect.clone();
                match redirect {
                    Some(target) => return self.redirect(target),
                    None => match self.complete(SpfResult::Neutral) {
                        Some(step) => return step,
                        None => continue,
                    },
                }
            };
            if self.validated.is_none() && needs_ptr(&directive.mechanism) {
                return self.ask(
                    vec![Query::Ptr(self.params.ip)],
                    Waiting::PtrNames {
                        then: Then::Evaluate,
                    },
                );
            }
            if let Some(frame) = self.frames.last_mut() {
                frame.next += 1;
            }
            match self.directive(directive.qualifier, directive.mechanism) {
                Flow::Next => {}
                Flow::Match(qualifier) => match self.complete(qualifier.result()) {
                    Some(step) => return step,
                    None => continue,
                },
                Flow::Stop(step) => return step,
            }
        }
    }

    fn directive(&mut self, qualifier: Qualifier, mechanism: Mechanism) -> Flow {
        let ip = self.params.ip;
        let matched = |yes: bool| {
            if yes {
                Flow::Match(qualifier)
            } else {
                Flow::Next
            }
        };
        match mechanism {
            Mechanism::All => Flow::Match(qualifier),
            Mechanism::Ip4 { network, len } => matched(match ip {
                IpAddr::V4(v4) => same_prefix(&network.octets(), &v4.octets(), len),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6 { network, len } => matched(match ip {
                IpAddr::V6(v6) => same_prefix(&network.octets(), &v6.octets(), len),
                IpAddr::V4(_) => false,
            }),
            Mechanism::A { domain, cidr } => {
                if let Some(stop) = self.count_lookup() {
                    return Flow::Stop(stop);
                }
                let Some(name) = self.target(domain.as_ref()) else {
                    return Flow::Next;
                };
                let query = self.address_query(&name);
                let waiting = Waiting::Addresses {
                    qualifier,
                    cidr,
                    name,
                };
                Flow::Stop(self.ask(vec![query], waiting))
            }
            Mechanism::Mx { domain, cidr } => {
                if let Some(stop) = self.count_lookup() {
                    return Flow::Stop(stop);
                }
                let Some(name) = self.target(domain.as_ref()) else {
                    return Flow::Next;
                };
                let query = Query::Mx(name.clone());
                let waiting = Waiting::Exchanges {
                    qualifier,
                    cidr,
                    name,
                };
                Flow::Stop(self.ask(vec![query], waiting))
            }
            Mechanism::Ptr(domain) => {
                if let Some(stop) = self.count_lookup() {
                    return Flow::Stop(stop);
                }
                if self.ptr_void {
                    if let Some(stop) = self.count_void() {
                        return Flow::Stop(stop);
                    }
                }
                let Some(target) = self.target(domain.as_ref()) else {
                    return Flow::Next;
                };
                let target = target.to_ascii_lowercase();
                let suffix = format!(".{target}");
                let validated = self.validated.as_deref().unwrap_or_default();
                matched(
                    validated
                        .iter()
                        .any(|n| *n == target || n.ends_with(&suffix)),
                )
            }
            Mechanism::Exists(domain) => {
                if let Some(stop) = self.count_lookup() {
                    return Flow::Stop(stop);
                }
                let Some(name) = self.target(Some(&domain)) else {
                    return Flow::Next;
                };
                let query = Query::A(name.clone());
                Flow::Stop(self.ask(vec![query], Waiting::Exists { qualifier, name }))
            }
            Mechanism::Include(domain) => {
                if let Some(stop) = self.count_lookup() {
                    return Flow::Stop(stop);
                }
                let Some(name) = self.target(Some(&domain)) else {
                    let why = "include: the target is no domain name";
                    return Flow::Stop(self.finish(SpfResult::PermError, Some(why.into())));
                };
                self.frames.push(Frame {
                    domain: name.clone(),
                    record: None,
                    next: 0,
                    include: Some(qualifier),
                    redirected: false,
                });
                Flow::Stop(self.ask(vec![Query::Txt(name)], Waiting::Record))
            }
        }
    }

    fn redirect(&mut self, target: MacroString) -> Step {
        if self.validated.is_none() && target.needs_ptr() {
            let then = Then::Evaluate;
            return self.ask(vec![Query::Ptr(self.params.ip)], Waiting::PtrNames { then });
        }
        if let Some(stop) = self.count_lookup() {
            return stop;
        }
        let Some(name) = self.target(Some(&target)) else {
            let why = "redirect: the target is no domain name";
            return self.finish(SpfResult::PermError, Some(why.into()));
        };
        if let Some(frame) = self.frames.last_mut() {
            frame.domain = name.clone();
            frame.record = None;
            frame.next = 0;
            frame.redirected = true;
        }
        self.ask(vec![Query::Txt(name)], Waiting::Record)
    }

    /// A directive matched: the frame's result, given to its include
    /// (whose parent then matches or goes on), or the verdict.
    fn matched(&mut self, qualifier: Qualifier) -> Step {
        match self.complete(qualifier.result()) {
            Some(step) => step,
            None => self.run(),
        }
    }

    /// The top frame ended with `result`. None: its parent goes on with
    /// its next directive.
    fn complete(&mut self, mut result: SpfResult) -> Option<Step> {
        loop {
            let frame = self.frames.pop()?;
            let Some(qualifier) = frame.include else {
                let exp = frame.record.as_ref().and_then(|r| r.exp.clone());
                self.frames.push(frame);
                return Some(match (result, exp) {
                    (SpfResult::Fail, Some(exp)) => {
                        self.explaining = Some(Explaining::Spec(exp));
                        self.explain()
                    }
                    _ => self.finish(result, None),
                });
            };
            match result {
                // The include matches: its parent's frame ends in turn.
                SpfResult::Pass => result = qualifier.result(),
                SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => return None,
                SpfResult::TempError => return Some(self.finish(result, None)),
                SpfResult::PermError | SpfResult::None => {
                    let why = format!("include:{} gave {result}", frame.domain);
                    return Some(self.finish(SpfResult::PermError, Some(why)));
                }
            }
        }
    }

    /// The explanation of a `fail`: the `exp=` domain's TXT record,
    /// expanded; anything wrong on the way and there is none.
    fn explain(&mut self) -> Step {
        let explaining = self.explaining.take();
        let needs_ptr = match &explaining {
            Some(Explaining::Spec(m) | Explaining::Text(m)) => m.needs_ptr(),
            None => false,
        };
        if needs_ptr && self.validated.is_none() {
            self.explaining = explaining;
            let then = Then::Explain;
            return self.ask(vec![Query::Ptr(self.params.ip)], Waiting::PtrNames { then });
        }
        match explaining {
            Some(Explaining::Spec(spec)) => match self.target(Some(&spec)) {
                Some(name) => self.ask(vec![Query::Txt(name)], Waiting::Explanation),
                None => self.finish(SpfResult::Fail, None),
            },
            Some(Explaining::Text(text)) => {
                let domain = self.current_domain();
                let ptr = self.ptr_name(&domain);
                let explanation = text.expand(&self.values(&domain, &ptr));
                let mut step = self.finish(SpfResult::Fail, None);
                if let Step::Done(verdict) = &mut step {
                    verdict.explanation = explanation.is_ascii().then_some(explanation);
                }
                step
            }
            None => self.finish(SpfResult::Fail, None),
        }
    }

    fn count_lookup(&mut self) -> Option<Step> {
        self.lookups += 1;
        (self.lookups > MAX_LOOKUPS).then(|| {
            let why = format!("more than {MAX_LOOKUPS} DNS lookups");
            self.finish(SpfResult::PermError, Some(why))
        })
    }

    fn count_void(&mut self) -> Option<Step> {
        self.voids += 1;
        (self.voids > MAX_VOIDS).then(|| {
            let why = format!("more than {MAX_VOIDS} lookups found nothing");
            self.finish(SpfResult::PermError, Some(why))
        })
    }

    fn void_then_run(&mut self) -> Step {
        match self.count_void() {
            Some(stop) => stop,
            None => self.run(),
        }
    }

    fn current_domain(&self) -> String {
        self.frames
            .last()
            .map_or_else(|| self.sender_domain.clone(), |f| f.domain.clone())
    }

    /// `%{p}`: a validated name equal to `domain`, else one under it,
    /// else any, else `unknown`.
    fn ptr_name(&self, domain: &str) -> String {
        let names = self.validated.as_deref().unwrap_or_default();
        let domain = domain.to_ascii_lowercase();
        let suffix = format!(".{domain}");
        names
            .iter()
            .find(|n| **n == domain)
            .or_else(|| names.iter().find(|n| n.ends_with(&suffix)))
            .or_else(|| names.first())
            .cloned()
            .unwrap_or_else(|| "unknown".to_string())
    }

    fn values<'a>(&'a self, domain: &'a str, ptr: &'a str) -> Values<'a> {
        Values {
            sender: &self.sender,
            local: &self.local,
            sender_domain: &self.sender_domain,
            domain,
            ip: self.params.ip,
            ptr,
            helo: &self.params.helo,
            receiver: &self.params.receiver,
            now: self.params.now,
        }
    }

    /// The target name of a mechanism or modifier (its domain-spec
    /// expanded, or the current domain), or None when it is no name a
    /// query can be made of (treated as a name that does not exist).
    fn target(&self, spec: Option<&MacroString>) -> Option<String> {
        let domain = self.current_domain();
        let name = match spec {
            None => domain,
            Some(spec) => {
                let ptr = self.ptr_name(&domain);
                spec.expand_name(&self.values(&domain, &ptr))
            }
        };
        name_problem(&name).is_none().then_some(name)
    }
}

fn needs_ptr(mechanism: &Mechanism) -> bool {
    match mechanism {
        Mechanism::Ptr(_) => true,
        Mechanism::A {
            domain: Some(d), ..
        }
        | Mechanism::Mx {
            domain: Some(d), ..
        }
        | Mechanism::Include(d)
        | Mechanism::Exists(d) => d.needs_ptr(),
        _ => false,
    }
}

/// Why a name cannot be asked for: empty, over 253 octets, an empty label
/// or one over 63 octets.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name.len() > 253 {
        Some("name longer than 253 octets")
    } else if name.split('.').any(str::is_empty) {
        Some("empty label")
    } else if name.split('.').any(|l| l.len() > 63) {
        Some("label longer than 63 octets")
    } else {
        None
    }
}

/// Why the checked domain is none of SPF's business (RFC 7208 4.3): no
/// valid name, or a single label, or an address literal.
fn initial_domain_problem(domain: &str) -> Option<&'static str> {
    if domain.starts_with('[') {
        return Some("an address literal");
    }
    if let Some(problem) = name_problem(domain) {
        return Some(problem);
    }
    (!domain.contains('.')).then_some("not a multi-label domain name")
}

fn txt(answer: Option<Answer>) -> Lookup<Vec<u8>> {
    match answer {
        Some(Answer::Txt(lookup)) => lookup,
        _ => Lookup::Failed,
    }
}

fn addresses(answer: Option<Answer>) -> Lookup<IpAddr> {
    match answer {
        Some(Answer::Addresses(lookup)) => lookup,
        _ => Lookup::Failed,
    }
}

fn exchanges(answer: Option<Answer>) -> Lookup<String> {
    match answer {
        Some(Answer::Mx(lookup)) => lookup,
        _ => Lookup::Failed,
    }
}

fn ptr_names(answer: Option<Answer>) -> Lookup<String> {
    match answer {
        Some(Answer::Ptr(lookup)) => lookup,
        _ => Lookup::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// DNS data for the machine: anything not here does not exist.
    #[derive(Default)]
    struct Zone(HashMap<Query, Answer>);

    impl Zone {
        fn txt(mut self, name: &str, records: &[&str]) -> Zone {
            let records = records.iter().map(|r| r.as_bytes().to_vec()).collect();
            self.0
                .insert(Query::Txt(name.into()), Answer::Txt(Lookup::Found(records)));
            self
        }

        fn a(mut self, name: &str, ips: &[&str]) -> Zone {
            let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = ips
                .iter()
                .map(|ip| ip.parse().unwrap())
                .partition(IpAddr::is_ipv4);
            for (query, ips) in [(Query::A(name.into()), v4), (Query::Aaaa(name.into()), v6)] {
                if !ips.is_empty() {
                    self.0.insert(query, Answer::Addresses(Lookup::Found(ips)));
                }
            }
            self
        }

        fn mx(mut self, name: &str, exchanges: &[&str]) -> Zone {
            let names = exchanges.iter().map(|e| e.to_string()).collect();
            self.0
                .insert(Query::Mx(name.into()), Answer::Mx(Lookup::Found(names)));
            self
        }

        fn ptr(mut self, ip: &str, names: &[&str]) -> Zone {
            let names = names.iter().map(|e| e.to_string()).collect();
            self.0.insert(
                Query::Ptr(ip.parse().unwrap()),
                Answer::Ptr(Lookup::Found(names)),
            );
            self
        }

        fn failing(mut self, query: Query) -> Zone {
            let answer = match &query {
                Query::Txt(_) => Answer::Txt(Lookup::Failed),
                Query::A(_) | Query::Aaaa(_) => Answer::Addresses(Lookup::Failed),
                Query::Mx(_) => Answer::Mx(Lookup::Failed),
                Query::Ptr(_) => Answer::Ptr(Lookup::Failed),
            };
            self.0.insert(query, answer);
            self
        }

        fn answer(&self, query: &Query) -> Answer {
            self.0.get(query).cloned().unwrap_or(match query {
                Query::Txt(_) => Answer::Txt(Lookup::NotFound),
                Query::A(_) | Query::Aaaa(_) => Answer::Addresses(Lookup::NotFound),
                Query::Mx(_) => Answer::Mx(Lookup::NotFound),
                Query::Ptr(_) => Answer::Ptr(Lookup::NotFound),
            })
        }

        /// Runs an evaluation to its end: the verdict and every round of
        /// questions.
        fn check(&self, ip: &str, sender: &str) -> (Verdict, Vec<Vec<Query>>) {
            let mut evaluation = Evaluation::new(Params {
                ip: ip.parse().unwrap(),
                sender: sender.into(),
                helo: "mail.example.org".into(),
                receiver: "mx.test".into(),
                now: 1_700_000_000,
            });
            let mut rounds = Vec::new();
            let mut step = evaluation.start();
            for _ in 0..100 {
                match step {
                    Step::Done(verdict) => return (verdict, rounds),
                    Step::Ask(queries) => {
                        let answers = queries.iter().map(|q| self.answer(q)).collect();
                        rounds.push(queries);
                        step = evaluation.resume(answers);
                    }
                }
            }
            panic!("no verdict after 100 rounds");
        }

        fn result(&self, ip: &str, sender: &str) -> SpfResult {
            self.check(ip, sender).0.result
        }
    }

    #[test]
    fn a_domain_without_an_spf_record_gives_none_and_a_domain_literal_asks_nothing() {
        let zone = Zone::default().txt("example.com", &["google-site-verification=x"]);
        assert_eq!(zone.result("192.0.2.1", "a@example.com"), SpfResult::None);
        let (verdict, rounds) = zone.check("192.0.2.1", "a@[192.0.2.1]");
        assert_eq!(verdict.result, SpfResult::None);
        assert!(rounds.is_empty());
        assert_eq!(zone.result("192.0.2.1", "a@localhost"), SpfResult::None);
    }

    #[test]
    fn the_first_matching_mechanism_decides_and_nothing_matching_is_neutral() {
        let zone = Zone::default()
            .txt(
                "example.com",
                &["v=spf1 ip4:192.0.2.0/24 ~ip4:198.51.100.1 -all"],
            )
            .txt("neutral.example.com", &["v=spf1 ip4:192.0.2.1"]);
        assert_eq!(zone.result("192.0.2.7", "a@example.com"), SpfResult::Pass);
        assert_eq!(
            zone.result("198.51.100.1", "a@example.com"),
            SpfResult::SoftFail
        );
        assert_eq!(zone.result("203.0.113.1", "a@example.com"), SpfResult::Fail);
        assert_eq!(
            zone.result("203.0.113.1", "a@neutral.example.com"),
            SpfResult::Neutral
        );
    }

    #[test]
    fn the_ptr_mechanism_matches_the_domain_itself_once_its_name_validates() {
        let zone = Zone::default()
            .txt("example.com", &["v=spf1 ptr -all"])
            .ptr("192.0.2.1", &["example.com."])
            .a("example.com", &["192.0.2.1"])
            .ptr("192.0.2.2", &["example.com"]);
        assert_eq!(zone.result("192.0.2.1", "a@example.com"), SpfResult::Pass);
        // The PTR name does not resolve back to 192.0.2.2: not validated.
        assert_eq!(zone.result("192.0.2.2", "a@example.com"), SpfResult::Fail);
    }

    #[test]
    fn ip6_never_matches_an_ipv4_client_nor_ip4_an_ipv6_one() {
        let zone = Zone::default()
            .txt("example.com", &["v=spf1 ip6:::/0 ip4:0.0.0.0/0"])
            .txt(
                "six.example.com",
                &["v=spf1 ip4:0.0.0.0/0 ip6:2001:db8::/32 -all"],
            );
        assert_eq!(zone.result("192.0.2.1", "a@example.com"), SpfResult::Pass);
        let zone = zone.txt("example.com", &["v=spf1 ip6:::/0"]);
        assert_eq!(
            zone.result("192.0.2.1", "a@example.com"),
            SpfResult::Neutral
        );
        assert_eq!(
            zone.result("2001:db8::1", "a@six.example.com"),
            SpfResult::Pass
        );
        assert_eq!(
            zone.result("2001:db9::1", "a@six.example.com"),
            SpfResult::Fail
        );
    }

    #[test]
    fn a_syntax_error_anywhere_is_a_permerror_before_anything_is_looked_up() {
        let zone = Zone::default().txt("example.com", &["v=spf1 a:mail.example.com -all moo"]);
        let (verdict, rounds) = zone.check("192.0.2.1", "a@example.com");
        assert_eq!(verdict.result, SpfResult::PermError);
        assert_eq!(rounds.len(), 1, "only the TXT record was asked for");
        assert!(verdict.why.unwrap().contains("moo"));
    }

    #[test]
    fn two_spf_records_are_a_permerror() {
        let zone = Zone::default().txt("example.com", &["v=spf1 -all", "V=SPF1 +all"]);
        assert_eq!(
            zone.result("192.0.2.1", "a@example.com"),
            SpfResult::PermError
        );
    }

    #[test]
    fn a_failed_lookup_is_a_temperror_but_a_failed_ptr_lookup_only_does_not_match() {
        let zone = Zone::default()
            .txt("example.com", &["v=spf1 a:broken.example.com -all"])
            .failing(Query::A("broken.example.com".into()))
            .txt("ptr.example.com", &["v=spf1 ptr -all"])
            .failing(Query::Ptr("192.0.2.1".parse().unwrap()));
        assert_eq!(
            zone.result("192.0.2.1", "a@example.com"),
            SpfResult::TempError
        );
        assert_eq!(
            zone.result("192.0.2.1", "a@ptr.example.com"),
            SpfResult::Fail
        );
        let zone = zone.failing(Query::Txt("example.com".into()));
        assert_eq!(
            zone.result("192.0.2.1", "a@example.com"),
            SpfResult::TempError
        );
    }

    #[test]
    fn an_include_matches_only_when_its_domain_passes() {
        let zone = Zone::default()
            .txt("pass.example.com", &["v=spf1 ip4:192.0.2.1 -all"])
            .txt("none.example.com", &["not spf"])
            .txt("a.example.com", &["v=spf1 -include:pass.example.com ~all"])
            .txt("b.example.com", &["v=spf1 include:none.example.com -all"]);
        assert_eq!(zone.result("192.0.2.1", "x@a.example.com"), SpfResult::Fail);
        assert_eq!(
            zone.result("192.0.2.2", "x@a.example.com"),
            SpfResult::SoftFail
        );
        assert_eq!(
            zone.result("192.0.2.1", "x@b.example.com"),
            SpfResult::PermError
        );
    }

    #[test]
    fn the_eleventh_lookup_is_a_permerror_and_the_tenth_is_not() {
        let record = |n: usize| format!("v=spf1 {}ip4:192.0.2.1 -all", "a ".repeat(n));
        let zone = Zone::default()
            .txt("ten.example.com", &[&record(10)])
            .txt("eleven.example.com", &[&record(11)])
            .a("ten.example.com", &["198.51.100.1"])
            .a("eleven.example.com", &["198.51.100.1"]);
        assert_eq!(
            zone.result("192.0.2.1", "x@ten.example.com"),
            SpfResult::Pass
        );
        assert_eq!(
            zone.result("192.0.2.1", "x@eleven.example.com"),
            SpfResult::PermError
        );
        let loop_zone = Zone::default()
            .txt("a.example.com", &["v=spf1 include:b.example.com"])
            .txt("b.example.com", &["v=spf1 include:a.example.com"]);
        assert_eq!(
            loop_zone.result("192.0.2.1", "x@a.example.com"),
            SpfResult::PermError
        );
    }

    #[test]
    fn a_third_lookup_that_finds_nothing_is_a_permerror() {
        let zone = Zone::default()
            .txt(
                "two.example.com",
                &["v=spf1 a:n1.example.com mx:n2.example.com ?all"],
            )
            .txt(
                "three.example.com",
                &["v=spf1 a:n1.example.com mx:n2.example.com exists:n3.example.com ?all"],
            );
        assert_eq!(
            zone.result("192.0.2.1", "x@two.example.com"),
            SpfResult::Neutral
        );
        assert_eq!(
            zone.result("192.0.2.1", "x@three.example.com"),
            SpfResult::PermError
        );
    }

    #[test]
    fn the_addresses_of_all_mx_names_are_asked_at_once_and_eleven_names_are_a_permerror() {
        let zone = Zone::default()
            .txt("example.com", &["v=spf1 mx -all"])
            .mx("example.com", &["mx1.example.com", "mx2.example.com", ""])
            .a("mx2.example.com", &["192.0.2.2"]);
        let (verdict, rounds) = zone.check("192.0.2.2", "x@example.com");
        assert_eq!(verdict.result, SpfResult::Pass);
        assert_eq!(
            rounds.last().unwrap(),
            &vec![
                Query::A("mx1.example.com".into()),
                Query::A("mx2.example.com".into())
            ]
        );
        let names: Vec<String> = (0..11).map(|i| format!("mx{i}.example.com")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let zone = zone.mx("example.com", &names);
        assert_eq!(
            zone.result("192.0.2.2", "x@example.com"),
            SpfResult::PermError
        );
    }

    #[test]
    fn only_ten_ptr_names_are_looked_at() {
        let mut names: Vec<String> = (0..10).map(|i| format!("h{i}.other.test")).collect();
        names.push("mail.example.com".into());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let zone = Zone::default()
            .txt("example.com", &["v=spf1 ptr ?all"])
            .ptr("192.0.2.1", &names)
            .a("mail.example.com", &["192.0.2.1"]);
        let (verdict, rounds) = zone.check("192.0.2.1", "x@example.com");
        assert_eq!(verdict.result, SpfResult::Neutral);
        assert_eq!(rounds.last().unwrap().len(), 10);
    }

    #[test]
    fn redirect_takes_the_targets_result_and_explanation_but_an_include_does_not() {
        let zone = Zone::default()
            .txt(
                "e1.example.com",
                &["v=spf1 exp=exp1.example.com redirect=e2.example.com"],
            )
            .txt("e2.example.com", &["v=spf1 -all exp=exp2.example.com"])
            .txt(
                "e3.example.com",
                &["v=spf1 include:e2.example.com -all exp=exp3.example.com"],
            )
            .txt("exp1.example.com", &["No-see-um"])
            .txt("exp2.example.com", &["See me."])
            .txt("exp3.example.com", &["%{l} from %{c} to %{d} at %{r}"]);
        let (verdict, _) = zone.check("192.0.2.1", "x@e1.example.com");
        assert_eq!(verdict.result, SpfResult::Fail);
        assert_eq!(verdict.explanation.as_deref(), Some("See me."));
        let (verdict, _) = zone.check("192.0.2.1", "x@e3.example.com");
        assert_eq!(
            verdict.explanation.as_deref(),
            Some("x from 192.0.2.1 to e3.example.com at mx.test")
        );
        let redirect_to_nothing =
            Zone::default().txt("example.com", &["v=spf1 redirect=none.example.com"]);
        assert_eq!(
            redirect_to_nothing.result("192.0.2.1", "x@example.com"),
            SpfResult::PermError
        );
    }

    #[test]
    fn an_explanation_that_cannot_be_had_leaves_the_fail_without_one() {
        for exp in [&["one", "two"][..], &["The %{x}-files."], &["caf\u{e9}"]] {
            let zone = Zone::default()
                .txt("example.com", &["v=spf1 -all exp=why.example.com"])
                .txt("why.example.com", exp);
            let (verdict, _) = zone.check("192.0.2.1", "x@example.com");
            assert_eq!(verdict.result, SpfResult::Fail);
            assert_eq!(verdict.explanation, None, "{exp:?}");
        }
    }

    #[test]
    fn the_p_macro_prefers_a_validated_name_under_the_domain() {
        let zone = Zone::default()
            .txt(
                "e7.example.com",
                &["v=spf1 exists:%{p}.should.example.com -all"],
            )
            .ptr("192.0.2.42", &["mx.example.com", "mx.e7.example.com"])
            .a("mx.example.com", &["192.0.2.42"])
            .a("mx.e7.example.com", &["192.0.2.42"])
            .a("mx.e7.example.com.should.example.com", &["127.0.0.2"]);
        assert_eq!(
            zone.result("192.0.2.42", "x@e7.example.com"),
            SpfResult::Pass
        );
        assert_eq!(
            zone.result("192.0.2.43", "x@e7.example.com"),
            SpfResult::Fail
        );
    }

    #[test]
    fn a_sender_without_a_local_part_is_postmaster() {
        let zone = Zone::default()
            .txt("example.net", &["v=spf1 -all exp=exp.example.net"])
            .txt("exp.example.net", &["%{l}"]);
        let (verdict, _) = zone.check("192.0.2.1", "@example.net");
        assert_eq!(verdict.explanation.as_deref(), Some("postmaster"));
    }

    #[test]
    fn exists_asks_for_a_records_even_for_an_ipv6_client() {
        let zone = Zone::default()
            .txt("example.com", &["v=spf1 exists:%{ir}.%{v}.list.example.com -all"])
            .a(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.list.example.com",
                &["127.0.0.2"],
            );
        assert_eq!(zone.result("2001:db8::1", "x@example.com"), SpfResult::Pass);
    }
}
