//! Postfix's smtpd restriction lists, item by item: each restriction
//! becomes an mxguard check, a DNS list, a list file made from its access
//! table, or a comment saying what mxguard does instead (see the table in
//! `postfix`). The reply code parameters decide between `"reject"` and
//! `"tempfail"`, `warn_if_reject` makes the next one `"warn"`, and
//! restriction classes are followed.
//!
//! Size: one arm per Postfix restriction (about 640 lines of code);
//! splitting the table would scatter one translation over several files.

use super::access::{self, Action, Key};
use super::maincf::split_list;
use super::plan::{Act, Fit, Section, Value, Zone};
use super::postfix::Postfix;
use super::{codes, dead, entries, reply};

/// Restriction classes may name each other; deeper than this is a loop.
const MAX_CLASS_DEPTH: usize = 4;

/// The action a reply code stands for, and the parameter to show when it
/// is worth showing.
struct Verdict {
    act: Act,
    why: Option<String>,
}

impl Postfix<'_> {
    /// The action of a restriction whose reply code is `code_param`.
    fn verdict(&mut self, code_param: &str, warn: bool) -> Verdict {
        if warn {
            return Verdict {
                act: Act::Warn,
                why: Some("warn_if_reject".into()),
            };
        }
        let code = self.cf.get(code_param).map(|e| e.text).unwrap_or_default();
        let mut act = Act::from_code(&code).unwrap_or(Act::Reject);
        let mut why =
            (act != Act::Reject || self.cf.is_set(code_param)).then(|| self.cf.shown(code_param));
        if act == Act::Reject && self.yes("soft_bounce") {
            act = Act::Tempfail;
            why = Some(self.cf.shown("soft_bounce"));
        }
        Verdict { act, why }
    }

    fn set_check(&mut self, key: &str, verdict: &Verdict, origin: &str, fit: Fit) {
        let from = match &verdict.why {
            Some(why) => format!("{origin}, {why}"),
            None => origin.to_string(),
        };
        self.plan
            .set(Section::Checks, key, Value::check(verdict.act), from, fit);
    }

    pub(super) fn restriction_list(&mut self, list: &str, depth: usize) {
        let Some((items, unresolved)) = self.cf.list(list) else {
            return;
        };
        let place = self.cf.origin(list);
        for name in unresolved {
            self.not_translated(format!("${name} in {place}: not set in main.cf"));
        }
        let mut warn = false;
        let mut i = 0;
        while i < items.len() {
            let name = items[i].to_ascii_lowercase();
            i += 1;
            if name == "warn_if_reject" {
                warn = true;
                continue;
            }
            let arg = if takes_arg(&name) {
                let arg = items.get(i).cloned();
                i += 1;
                arg
            } else {
                None
            };
            let written = match &arg {
                Some(a) => format!("{name} {a}"),
                None => name.clone(),
            };
            let origin = format!("{written} in {place}");
            if takes_arg(&name) && arg.is_none() {
                self.not_translated(format!("{origin}: it has no argument"));
            } else {
                self.restriction(&name, arg.as_deref().unwrap_or(""), warn, &origin, depth);
            }
            warn = false;
        }
    }

    fn restriction(&mut self, name: &str, arg: &str, warn: bool, origin: &str, depth: usize) {
        const NO_AUTH: &str = "mxguard has no SMTP AUTH: it is an MX, not a submission server";
        const NO_CERTS: &str = "mxguard does not authenticate clients by TLS certificate";
        match name {
            "permit_mynetworks" => self.mynetworks(origin),
            "reject_unauth_destination" | "defer_unauth_destination" => self.plan.covered(format!(
                "{origin}: mxguard's relay control refuses every domain but relay.domains \
                 to clients outside relay.trusted_networks (554 5.7.1 Relay access denied)"
            )),
            "reject_non_fqdn_recipient" | "reject_unknown_recipient_domain" => {
                self.plan.covered(format!(
                    "{origin}: only relay.domains are accepted, so other recipient domains \
                     are refused anyway"
                ))
            }
            "reject_multi_recipient_bounce" => self.plan.covered(format!(
                "{origin}: mxguard refuses a bounce with more than one recipient at DATA"
            )),
            "permit" | "dunno" | "permit_auth_destination" => self.plan.covered(format!(
                "{origin}: mxguard accepts mail for relay.domains that no check refuses"
            )),
            "reject_unknown_client_hostname" | "reject_unknown_client" => {
                let verdict = self.verdict("unknown_client_reject_code", warn);
                self.set_check("reverse_dns", &verdict, origin, Fit::Exact);
                self.set_check("forged_reverse_dns", &verdict, origin, Fit::Exact);
            }
            "reject_unknown_reverse_client_hostname" => {
                let verdict = self.verdict("unknown_client_reject_code", warn);
                self.set_check("reverse_dns", &verdict, origin, Fit::Exact);
            }
            "reject_invalid_helo_hostname" | "reject_invalid_hostname" => {
                let verdict = self.verdict("invalid_hostname_reject_code", warn);
                self.set_check("helo", &verdict, origin, Fit::Approximate);
                self.helo_note();
            }
            "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => {
                let verdict = self.verdict("non_fqdn_reject_code", warn);
                self.set_check("helo", &verdict, origin, Fit::Approximate);
                self.helo_note();
            }
            "reject_unknown_helo_hostname" | "reject_unknown_hostname" => {
                let verdict = self.verdict("unknown_hostname_reject_code", warn);
                self.set_check("helo_dns", &verdict, origin, Fit::Exact);
            }
            "reject_non_fqdn_sender" => {
                let verdict = self.verdict("non_fqdn_reject_code", warn);
                self.set_check("sender_domain", &verdict, origin, Fit::Approximate);
            }
            "reject_unknown_sender_domain" => {
                let verdict = self.verdict("unknown_address_reject_code", warn);
                self.set_check("sender_domain", &verdict, origin, Fit::Exact);
                let act = if warn {
                    Act::Warn
                } else if self.yes("soft_bounce") {
                    Act::Tempfail
                } else {
                    Act::Reject
                };
                let null_mx = Verdict {
                    act,
                    why: Some("a null MX is refused with 556 since Postfix 3.0".into()),
                };
                self.set_check("null_mx", &null_mx, origin, Fit::Exact);
            }
            "reject_rbl_client" => self.dnsbl(arg, false, warn, origin),
            "reject_rhsbl_sender" => self.dnsbl(arg, true, warn, origin),
            "reject_rhsbl_client"
            | "reject_rhsbl_reverse_client"
            | "reject_rhsbl_helo"
            | "reject_rhsbl_recipient" => self.not_translated(format!(
                "{origin}: mxguard's [[rhsbl]] looks up the sender's domain only"
            )),
            "permit_dnswl_client" | "permit_rhswl_client" => self.not_translated(format!(
                "{origin}: an allow list that skips every later restriction; in mxguard a \
                 [[dnsbl]] with a negative weight only lowers the score"
            )),
            "check_client_access" => self.client_access(arg, origin),
            "check_sender_access" => self.address_access(arg, true, warn, origin),
            "check_recipient_access" => self.address_access(arg, false, warn, origin),
            "check_policy_service" => self.policy_service(arg, warn, origin),
            "reject_unverified_recipient" => self.not_translated(format!(
                "{origin}: mxguard asks the downstream instead: recipients.callout = true \
                 (with an smtp:// or lmtp:// downstream.targets)"
            )),
            "reject_unlisted_recipient" => self.not_translated(format!(
                "{origin}: list the mailboxes in a recipients.table file, or set \
                 recipients.callout = true"
            )),
            "reject_unverified_sender" => self.not_translated(format!(
                "{origin}: mxguard does not probe senders (sender callouts send mail to \
                 forged addresses)"
            )),
            "reject_unlisted_sender" => self.not_translated(format!(
                "{origin}: mxguard does not look senders up in its recipient table"
            )),
            "reject_unauth_pipelining" => self.not_translated(format!(
                "{origin}: mxguard reads pipelined commands only as the client may send \
                 them; bots that talk first are caught by the pregreet test \
                 (abuse.greet_wait)"
            )),
            "sleep" => self.not_translated(format!(
                "{origin}: mxguard's pregreet test (abuse.greet_wait) waits before the banner"
            )),
            "permit_sasl_authenticated"
            | "reject_sender_login_mismatch"
            | "reject_authenticated_sender_login_mismatch"
            | "reject_known_sender_login_mismatch"
            | "reject_unauthenticated_sender_login_mismatch"
            | "reject_unauth_sender_login_mismatch"
            | "check_sasl_access" => self.not_translated(format!("{origin}: {NO_AUTH}")),
            "permit_tls_clientcerts"
            | "permit_tls_all_clientcerts"
            | "check_ccert_access"
            | "reject_plaintext_session" => self.not_translated(format!("{origin}: {NO_CERTS}")),
            "permit_mx_backup" => self.not_translated(format!(
                "{origin}: mxguard relays only for relay.domains: name there the domains \
                 it is a backup MX for"
            )),
            "reject" | "defer" | "defer_if_permit" | "defer_if_reject" => {
                self.not_translated(format!(
                    "{origin}: an unconditional verdict; mxguard refuses only what a check \
                     refuses"
                ))
            }
            _ if name.starts_with("check_") => {
                self.not_translated(format!("{origin}: mxguard has no table of this kind"))
            }
            _ if self.classes.iter().any(|c| c == name) && self.cf.is_set(name) => {
                if depth >= MAX_CLASS_DEPTH {
                    self.not_translated(format!(
                        "{origin}: restriction classes nested too deep (a loop?)"
                    ));
                } else {
                    self.restriction_list(name, depth + 1);
                }
            }
            _ => self.not_translated(format!("{origin}: not a restriction the import knows")),
        }
    }

    fn helo_note(&mut self) {
        self.plan.note(
            Section::Checks,
            "helo",
            "mxguard's helo check also refuses a bare IP, an address literal that is not \
             the client's, and its own name"
                .into(),
        );
    }

    fn mynetworks(&mut self, origin: &str) {
        let (networks, note) = match self.networks.clone() {
            Some(n) => n,
            None => {
                let n = self.read_mynetworks();
                self.networks = Some(n.clone());
                n
            }
        };
        let from = format!("{origin}, {}", self.cf.origin("mynetworks"));
        for network in networks {
            self.plan
                .push(Section::Relay, "trusted_networks", network, from.clone());
        }
        if let Some(note) = note {
            self.plan.note(Section::Relay, "trusted_networks", note);
        }
    }

    /// The networks of `mynetworks`, and a note on them.
    fn read_mynetworks(&mut self) -> (Vec<String>, Option<String>) {
        let origin = self.cf.origin("mynetworks");
        let Some((items, _)) = self.cf.list("mynetworks") else {
            let style = match self.cf.get("mynetworks_style") {
                Some(s) => s.text,
                None => {
                    let level = self
                        .cf
                        .get("compatibility_level")
                        .and_then(|l| l.text.split('.').next()?.trim().parse::<u32>().ok())
                        .unwrap_or(0);
                    if level >= 2 { "host" } else { "subnet" }.to_string()
                }
            };
            if style == "host" {
                let note = "mynetworks_style = host: Postfix also trusts this host's own \
                            addresses, which the import cannot know";
                return (vec!["127.0.0.0/8".into(), "::1".into()], Some(note.into()));
            }
            self.not_translated(format!(
                "mynetworks: not set, so Postfix trusts the networks of this host's \
                 interfaces (mynetworks_style = {style}); list them in relay.trusted_networks"
            ));
            return (Vec::new(), None);
        };
        let mut networks = Vec::new();
        for item in items {
            let clean = item.replace(['[', ']'], "");
            if item.starts_with('!') {
                self.not_translated(format!(
                    "{item} in {origin}: a negated network has no mxguard equivalent"
                ));
            } else if clean.parse::<crate::config::Network>().is_ok() {
                networks.push(clean);
            } else if item.contains(':') || item.starts_with('/') {
                self.not_translated(format!(
                    "{item} in {origin}: a table or file, whose networks are not read; \
                     add them to relay.trusted_networks"
                ));
            } else {
                self.not_translated(format!("{item} in {origin}: not a network"));
            }
        }
        (networks, None)
    }

    /// `reject_rbl_client zone[=codes]` and `reject_rhsbl_sender zone[=codes]`.
    fn dnsbl(&mut self, arg: &str, rhs: bool, warn: bool, origin: &str) {
        let (name, pattern) = arg
            .split_once('=')
            .map_or((arg, None), |(z, p)| (z, Some(p)));
        let Some(mut zone) = self.zone(name, pattern, origin) else {
            return;
        };
        let verdict = self.verdict("maps_rbl_reject_code", warn);
        if verdict.act != Act::Reject {
            zone.action = Some(verdict.act);
        }
        if let (Some(why), Some(from)) = (verdict.why, zone.from.first_mut()) {
            from.push_str(&format!(", {why}"));
        }
        if let Some(reply) = self.cf.raw("default_rbl_reply") {
            let (message, notes) = reply::postfix_rbl(&reply.value, rhs);
            zone.message = Some(message);
            zone.notes.extend(notes);
            zone.from
                .push(format!("default_rbl_reply ({}:{})", reply.file, reply.line));
        }
        if let Some(maps) = self.cf.raw("rbl_reply_maps") {
            self.not_translated(format!(
                "{}: per-list replies are not read; set each [[dnsbl]] message",
                maps.written("rbl_reply_maps")
            ));
        }
        self.plan.add_zone(rhs, zone);
    }

    /// A DNS list zone with its codes, or `None` (reported) when it is
    /// dead or cannot be translated.
    pub(super) fn zone(&mut self, name: &str, pattern: Option<&str>, origin: &str) -> Option<Zone> {
        let zone = crate::smtp::address::normalize_domain(name);
        if !crate::smtp::address::is_domain(&zone) {
            self.not_translated(format!("{origin}: `{name}` is not a DNS zone"));
            return None;
        }
        if let Some(why) = dead::reason(&zone) {
            self.plan.left_out(format!("{origin}: {why}"));
            return None;
        }
        let codes = match pattern {
            None => Vec::new(),
            Some(p) => match codes::postfix(p) {
                Some(codes) => codes,
                None => {
                    self.not_translated(format!(
                        "{origin}: the answer pattern `{p}` is not one mxguard can match"
                    ));
                    return None;
                }
            },
        };
        Some(Zone {
            zone,
            codes,
            from: vec![origin.to_string()],
            ..Zone::default()
        })
    }

    fn client_access(&mut self, spec: &str, origin: &str) {
        let table = match access::read(spec, self.read) {
            Ok(t) => t,
            Err(why) => return self.not_translated(format!("{origin}: {why}")),
        };
        let mut lines = Vec::new();
        for entry in &table.entries {
            let at = entry_place(&table, entry);
            match &entry.action {
                Action::Allow => match client_network(&entry.key, &table.kind) {
                    Ok(network) => lines.push(network),
                    Err(why) => self.not_translated(format!("{at}: {why}")),
                },
                Action::Reject(_) | Action::Tempfail => self.not_translated(format!(
                    "{at}: mxguard has no client block list: ban the client (mxguard ban \
                     add) or list it in a DNSBL of your own"
                )),
                Action::Dunno => self.plan.covered(format!(
                    "{at}: DUNNO leaves the client to the other checks, as mxguard does \
                     for every client it does not list"
                )),
                Action::Other => {
                    self.not_translated(format!("{at}: no mxguard equivalent for this action"))
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        let file = self
            .plan
            .file("client-exceptions", "lists.client_exceptions");
        file.push(format!("# from {}", table.name));
        file.extend(lines);
        self.plan.set(
            Section::Lists,
            "client_exceptions",
            Value::Str("client-exceptions".into()),
            format!("{origin}, its OK entries"),
            Fit::Exact,
        );
        self.plan.note(
            Section::Lists,
            "client_exceptions",
            "listed clients skip every client check (DNSBLs, reverse DNS), wherever the \
             table stood in the restriction list"
                .into(),
        );
    }

    /// `check_sender_access` (`senders`) and `check_recipient_access`.
    fn address_access(&mut self, spec: &str, senders: bool, warn: bool, origin: &str) {
        let table = match access::read(spec, self.read) {
            Ok(t) => t,
            Err(why) => return self.not_translated(format!("{origin}: {why}")),
        };
        let parents = self
            .cf
            .get("parent_domain_matches_subdomains")
            .is_some_and(|v| split_list(&v.text).iter().any(|i| i == "smtpd_access_maps"));
        let (key, file, check) = if senders {
            (
                "sender_blocklist",
                "sender-blocklist",
                "lists.sender_blocklist",
            )
        } else {
            (
                "recipient_blocklist",
                "recipient-blocklist",
                "lists.recipient_blocklist",
            )
        };
        let mut lines = Vec::new();
        let mut texts = false;
        for entry in &table.entries {
            let at = entry_place(&table, entry);
            match &entry.action {
                Action::Reject(text) => match address_lines(&entry.key, parents) {
                    Ok(more) => {
                        texts |= text.is_some();
                        lines.extend(more);
                    }
                    Err(why) => self.not_translated(format!("{at}: {why}")),
                },
                Action::Tempfail => self.not_translated(format!(
                    "{at}: a temporary refusal of one entry: mxguard's list has one \
                     action for all, checks.{key}"
                )),
                Action::Allow | Action::Dunno => self.not_translated(format!(
                    "{at}: mxguard has no allow list of addresses, and its block lists \
                     have no exceptions (the other entries still apply)"
                )),
                Action::Other => {
                    self.not_translated(format!("{at}: no mxguard equivalent for this action"))
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        let lines_out = self.plan.file(file, check);
        lines_out.push(format!("# from {}", table.name));
        lines_out.extend(lines);
        self.plan.set(
            Section::Lists,
            key,
            Value::Str(file.into()),
            format!("{origin}, its REJECT entries"),
            Fit::Exact,
        );
        if texts {
            self.plan.note(
                Section::Lists,
                key,
                "the texts of REJECT entries are not kept: mxguard answers with its own".into(),
            );
        }
        let verdict = self.verdict("access_map_reject_code", warn);
        self.set_check(key, &verdict, origin, Fit::Exact);
    }

    fn policy_service(&mut self, arg: &str, warn: bool, origin: &str) {
        let service = arg.to_ascii_lowercase();
        let act = if warn { Act::Warn } else { Act::Reject };
        if service.contains("spf") {
            self.plan.set(
                Section::Checks,
                "spf",
                Value::check(act),
                origin.to_string(),
                Fit::Approximate,
            );
            self.plan.note(
                Section::Checks,
                "spf",
                "guessed from the service's name: an SPF policy service (policyd-spf) \
                 refuses SPF fail; mxguard checks SPF itself"
                    .into(),
            );
        } else if service.contains("postgrey") || service.contains(":10023") {
            self.plan.set(
                Section::Greylist,
                "enabled",
                Value::Bool(true),
                origin.to_string(),
                Fit::Approximate,
            );
            self.plan.note(
                Section::Greylist,
                "enabled",
                "guessed from the service's name or port: postgrey; mxguard greylists \
                 itself"
                    .into(),
            );
        } else {
            self.not_translated(format!(
                "{origin}: mxguard cannot ask a policy service (it can be one for Postfix: \
                 [policy_server])"
            ));
        }
    }
}

/// Whether a restriction takes the next item as its argument.
fn takes_arg(name: &str) -> bool {
    name.starts_with("check_")
        || matches!(
            name,
            "reject_rbl_client"
                | "reject_rhsbl_client"
                | "reject_rhsbl_reverse_client"
                | "reject_rhsbl_helo"
                | "reject_rhsbl_sender"
                | "reject_rhsbl_recipient"
                | "permit_dnswl_client"
                | "permit_rhswl_client"
                | "sleep"
        )
}

/// `key action (table:line)` for comments.
fn entry_place(table: &access::Table, entry: &access::Entry) -> String {
    if entry.line == 0 {
        format!("{} ({})", entry.written, table.name)
    } else {
        format!("{} ({}:{})", entry.written, table.name, entry.line)
    }
}

/// The mxguard exception line (an address or network) for a client
/// access key.
fn client_network(key: &Key, kind: &str) -> Result<String, String> {
    let key = match key {
        Key::Plain(k) => k,
        Key::Regex { .. } => {
            return Err("a pattern: mxguard's exceptions are addresses and networks".into())
        }
        Key::Unusable(why) => return Err((*why).into()),
    };
    let clean = key.replace(['[', ']'], "");
    if clean.parse::<crate::config::Network>().is_ok() && (kind == "cidr" || !clean.contains('/')) {
        return Ok(clean);
    }
    // hash tables match 192.0.2 as 192.0.2.0/24, 2001:db8 as 2001:db8::/32.
    let v4: Vec<&str> = clean.split('.').collect();
    if (1..4).contains(&v4.len()) && v4.iter().all(|o| o.parse::<u8>().is_ok()) {
        let mut octets = v4.clone();
        octets.resize(4, "0");
        return Ok(format!("{}/{}", octets.join("."), 8 * v4.len()));
    }
    let v6: Vec<&str> = clean.split(':').collect();
    if (2..8).contains(&v6.len())
        && v6
            .iter()
            .all(|f| (1..=4).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        let network = format!("{}::/{}", v6.join(":"), 16 * v6.len());
        if network.parse::<crate::config::Network>().is_ok() {
            return Ok(network);
        }
    }
    Err("a host or domain name: mxguard's exceptions are addresses and networks".into())
}

/// The list lines for a sender or recipient access key.
fn address_lines(key: &Key, parents: bool) -> Result<Vec<String>, String> {
    let key = match key {
        Key::Plain(k) => k,
        Key::Regex { pattern, flags } if flags.is_empty() => {
            return entries::regex(pattern).map(|l| vec![l])
        }
        Key::Regex { flags, .. } => {
            return Err(format!(
                "the flags `{flags}` have no mxguard equivalent (its patterns are always \
                 case-insensitive)"
            ))
        }
        Key::Unusable(why) => return Err((*why).into()),
    };
    if key == "<>" {
        return Err("the null sender has no mxguard list entry".into());
    }
    if let Some(local) = key.strip_suffix('@') {
        if local.is_empty() || local.contains('@') {
            return Err("it is not an address".into());
        }
        return entries::regex(&format!("^{}@", regex::escape(local))).map(|l| vec![l]);
    }
    if key.contains('@') {
        return entries::exact(key).map(|l| vec![l]);
    }
    if let Some(domain) = key.strip_prefix('.') {
        if parents {
            return Err(
                "Postfix never looks it up: parent_domain_matches_subdomains \
                        includes smtpd_access_maps"
                    .into(),
            );
        }
        return entries::subdomains(domain).map(|l| vec![l]);
    }
    let mut lines = vec![entries::domain(key)?];
    if parents {
        lines.push(entries::subdomains(key)?);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_keys() {
        let k = |s: &str| Key::Plain(s.into());
        assert_eq!(
            client_network(&k("192.0.2"), "hash"),
            Ok("192.0.2.0/24".into())
        );
        assert_eq!(
            client_network(&k("192.0.2.7"), "hash"),
            Ok("192.0.2.7".into())
        );
        assert!(client_network(&k("192.0.2.0/24"), "hash").is_err());
        assert_eq!(
            client_network(&k("192.0.2.0/24"), "cidr"),
            Ok("192.0.2.0/24".into())
        );
        assert_eq!(
            address_lines(&k("example.com"), false),
            Ok(vec!["@example.com".to_string()])
        );
        assert_eq!(
            address_lines(&k(".example.com"), false),
            Ok(vec!["/\\.example\\.com$/".to_string()])
        );
    }
}
