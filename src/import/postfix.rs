//! Postfix `main.cf`: the smtpd restriction lists, the parameters that
//! shape them (reply codes, `mynetworks`, the domains), postscreen's DNSBL
//! weights and greeting test, and a few limits. The translation table:
//!
//! | Postfix | mxguard |
//! |---|---|
//! | `mydestination`, `relay_domains`, `virtual_*_domains` | `relay.domains` |
//! | `permit_mynetworks` with `mynetworks` | `relay.trusted_networks` |
//! | `reject_unauth_destination` | covered: relay control |
//! | `reject_unknown_client_hostname` | `checks.reverse_dns` and `forged_reverse_dns` (`unknown_client_reject_code`) |
//! | `reject_unknown_reverse_client_hostname` | `checks.reverse_dns` |
//! | `reject_invalid_helo_hostname`, `reject_non_fqdn_helo_hostname` | `checks.helo` |
//! | `reject_unknown_helo_hostname` | `checks.helo_dns` (`unknown_hostname_reject_code`) |
//! | `reject_unknown_sender_domain` | `checks.sender_domain` (`unknown_address_reject_code`), `checks.null_mx` |
//! | `reject_non_fqdn_sender` | `checks.sender_domain` (when nothing better sets it) |
//! | `reject_rbl_client zone[=codes]` | `[[dnsbl]]` (`maps_rbl_reject_code`, `default_rbl_reply`) |
//! | `reject_rhsbl_sender zone[=codes]` | `[[rhsbl]]` |
//! | `check_client_access` … `OK` | `lists.client_exceptions` (a new file) |
//! | `check_sender_access`, `check_recipient_access` … `REJECT` | `lists.sender_blocklist`, `lists.recipient_blocklist` (new files) |
//! | `check_policy_service` (SPF, postgrey) | `checks.spf`, `greylist.enabled` (guessed from the name) |
//! | `warn_if_reject` | the next check as `"warn"` |
//! | `postscreen_dnsbl_sites`, `_threshold`, `_action` | `[[dnsbl]]` weights, `policy.reject_score` |
//! | `postscreen_greet_action`, `_wait` | `abuse.greet_wait` |
//! | `smtpd_delay_reject` | `policy.reject_at` |
//! | `soft_bounce = yes` | every `"reject"` becomes `"tempfail"` |
//! | `message_size_limit`, `smtpd_recipient_limit`, `smtpd_hard_error_limit`, `smtpd_client_*_limit` | `[limits]` |
//! | `smtpd_tls_cert_file`, `smtpd_tls_key_file` | `[tls]` |
//!
//! Everything else — other restrictions, other parameters, table entries
//! with other actions — is reported as not translated, with the reason.
//!
//! Size: under 560 lines of code; the translation table above and the
//! tests of every row make up the rest.

use super::maincf::{split_list, MainCf};
use super::plan::{Fit, Plan, Section, Value};
use super::{ImportError, Input, Reader};

/// The restriction lists read, in the order Postfix applies them.
const RESTRICTION_LISTS: &[&str] = &[
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
];

/// Translates main.cf files.
pub fn translate(inputs: &[Input], read: Reader, plan: &mut Plan) -> Result<(), ImportError> {
    let cf = MainCf::parse(inputs)?;
    let mut t = Postfix {
        cf,
        plan,
        read,
        classes: Vec::new(),
        networks: None,
    };
    t.host();
    t.domains();
    t.limits();
    t.delay_reject();
    t.tls();
    if let Some((classes, _)) = t.cf.list("smtpd_restriction_classes") {
        t.classes = classes;
    }
    for list in RESTRICTION_LISTS {
        t.restriction_list(list, 0);
    }
    t.postscreen();
    t.recipient_maps();
    t.unused();
    Ok(())
}

/// A translation in progress.
pub(super) struct Postfix<'a> {
    pub(super) cf: MainCf,
    pub(super) plan: &'a mut Plan,
    pub(super) read: Reader<'a>,
    /// `smtpd_restriction_classes`.
    pub(super) classes: Vec<String>,
    /// `mynetworks` as translated, and a note on it, once read.
    pub(super) networks: Option<(Vec<String>, Option<String>)>,
}

impl Postfix<'_> {
    pub(super) fn not_translated(&mut self, text: String) {
        self.plan.not_translated(text);
    }

    pub(super) fn yes(&mut self, name: &str) -> bool {
        self.cf
            .get(name)
            .is_some_and(|v| v.text.trim().eq_ignore_ascii_case("yes"))
    }

    fn host(&mut self) {
        if let Some(host) = self.cf.get("myhostname") {
            if host.unresolved.is_empty() && !host.text.is_empty() {
                let hint = format!(
                    "hostname = {}  ({})",
                    super::render::string(&host.text),
                    self.cf.origin("myhostname")
                );
                self.plan.host_hints.push(hint);
            }
        }
    }

    fn domains(&mut self) {
        for param in [
            "mydestination",
            "relay_domains",
            "virtual_alias_domains",
            "virtual_mailbox_domains",
        ] {
            if param.starts_with("virtual") && !self.cf.is_set(param) {
                continue;
            }
            let Some((items, _)) = self.cf.list(param) else {
                continue;
            };
            let origin = self.cf.origin(param);
            let mut pushed = false;
            for item in items {
                let name = crate::smtp::address::normalize_domain(&item);
                if item.contains('$') {
                    self.not_translated(format!(
                        "{item} in {origin}: {} not set in main.cf (Postfix takes \
                         $myhostname from the system); add the domain to relay.domains",
                        references(&item)
                    ));
                } else if item.contains(':') || item.starts_with('/') {
                    self.not_translated(format!(
                        "{item} in {origin}: a table or file, whose domains are not read; \
                         add them to relay.domains"
                    ));
                } else if crate::smtp::address::is_domain(&name) {
                    self.plan
                        .push(Section::Relay, "domains", name, origin.clone());
                    pushed = true;
                } else {
                    self.not_translated(format!("{item} in {origin}: not a domain name"));
                }
            }
            let parents = self
                .cf
                .get("parent_domain_matches_subdomains")
                .is_some_and(|v| split_list(&v.text).iter().any(|i| i == "relay_domains"));
            if pushed && param == "relay_domains" && parents {
                self.plan.note(
                    Section::Relay,
                    "domains",
                    "Postfix also relays for subdomains of relay_domains \
                     (parent_domain_matches_subdomains); mxguard only for the domains named"
                        .into(),
                );
            }
        }
    }

    /// A positive whole number set in main.cf, or a report of why not.
    fn number(&mut self, name: &str) -> Option<u64> {
        if !self.cf.is_set(name) {
            return None;
        }
        let value = self.cf.get(name)?.text;
        match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                let shown = self.cf.shown(name);
                self.not_translated(format!(
                    "{shown}: not a limit mxguard can have (it needs a whole number above 0)"
                ));
                None
            }
        }
    }

    fn limits(&mut self) {
        for (param, key) in [
            ("message_size_limit", "max_message_size"),
            ("smtpd_recipient_limit", "max_recipients"),
            ("smtpd_hard_error_limit", "max_errors"),
            (
                "smtpd_client_connection_count_limit",
                "max_connections_per_client",
            ),
        ] {
            if let Some(n) = self.number(param) {
                let from = self.cf.origin(param);
                self.plan
                    .set(Section::Limits, key, Value::Int(n), from, Fit::Exact);
            }
        }
        let unit = self
            .cf
            .get("anvil_rate_time_unit")
            .and_then(|u| postfix_seconds(&u.text));
        for (param, key, per_hour) in [
            (
                "smtpd_client_connection_rate_limit",
                "connections_per_minute",
                false,
            ),
            ("smtpd_client_message_rate_limit", "messages_per_hour", true),
            (
                "smtpd_client_recipient_rate_limit",
                "recipients_per_hour",
                true,
            ),
        ] {
            let Some(n) = self.number(param) else {
                continue;
            };
            let value = match (unit, per_hour) {
                (Some(60), false) => Some((n, Fit::Exact)),
                (Some(60), true) => n.checked_mul(60).map(|v| (v, Fit::Approximate)),
                (Some(3600), true) => Some((n, Fit::Exact)),
                _ => None,
            };
            let origin = self.cf.origin(param);
            match value {
                Some((v, fit)) => {
                    let shown = self.cf.shown("anvil_rate_time_unit");
                    self.plan.set(
                        Section::Limits,
                        key,
                        Value::Int(v),
                        format!("{origin} per {shown}"),
                        fit,
                    );
                }
                None => {
                    let shown = self.cf.shown("anvil_rate_time_unit");
                    self.not_translated(format!(
                        "{origin}: counted per {shown}, which mxguard's {key} cannot express"
                    ));
                }
            }
        }
    }

    fn delay_reject(&mut self) {
        if !self.cf.is_set("smtpd_delay_reject") {
            return;
        }
        let at = if self.yes("smtpd_delay_reject") {
            "rcpt"
        } else {
            "immediate"
        };
        let from = self.cf.shown("smtpd_delay_reject");
        self.plan.set(
            Section::Policy,
            "reject_at",
            Value::Str(at.into()),
            from,
            Fit::Exact,
        );
    }

    fn tls(&mut self) {
        if self.cf.raw("smtpd_tls_cert_file").is_none() {
            return;
        }
        let level = self
            .cf
            .get("smtpd_tls_security_level")
            .map(|l| l.text.trim().to_string())
            .unwrap_or_default();
        let offered = matches!(level.as_str(), "may" | "encrypt") || self.yes("smtpd_use_tls");
        let cert = self
            .cf
            .get("smtpd_tls_cert_file")
            .unwrap_or(super::maincf::Expanded {
                text: String::new(),
                unresolved: Vec::new(),
            });
        let key = match self.cf.raw("smtpd_tls_key_file") {
            Some(_) => self.cf.get("smtpd_tls_key_file"),
            None => Some(cert.clone()),
        };
        let origin = self.cf.origin("smtpd_tls_cert_file");
        match key {
            Some(key)
                if offered
                    && !cert.text.is_empty()
                    && !key.text.is_empty()
                    && cert.unresolved.is_empty()
                    && key.unresolved.is_empty() =>
            {
                let key_origin = self.cf.origin("smtpd_tls_key_file");
                self.plan.set(
                    Section::Tls,
                    "cert",
                    Value::Str(cert.text),
                    origin,
                    Fit::Exact,
                );
                self.plan.set(
                    Section::Tls,
                    "key",
                    Value::Str(key.text),
                    key_origin,
                    Fit::Exact,
                );
                if level == "encrypt" {
                    self.plan.note(
                        Section::Tls,
                        "cert",
                        "smtpd_tls_security_level = encrypt: mxguard offers STARTTLS \
                         but does not require it (an MX must not, RFC 3207)"
                            .into(),
                    );
                }
            }
            _ => {
                let shown = self.cf.shown("smtpd_tls_cert_file");
                self.not_translated(format!(
                    "{shown}: TLS is not offered by this configuration \
                     (smtpd_tls_security_level is not may or encrypt), or its files \
                     are not known"
                ));
            }
        }
    }

    fn postscreen(&mut self) {
        self.postscreen_dnsbl();
        if !self.cf.is_set("postscreen_greet_action") {
            return;
        }
        let action = self
            .cf
            .get("postscreen_greet_action")
            .map(|a| a.text.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let shown = self.cf.shown("postscreen_greet_action");
        if !matches!(action.as_str(), "enforce" | "drop") {
            return self.plan.covered(format!(
                "{shown}: postscreen only logs clients that talk first; mxguard's \
                 pregreet test (abuse.greet_wait) refuses them"
            ));
        }
        let wait = self.cf.get("postscreen_greet_wait").map(|w| w.text);
        match wait.as_deref().and_then(postfix_seconds) {
            Some(secs) if secs > 0 => {
                let from = format!("{shown}, {}", self.cf.shown("postscreen_greet_wait"));
                self.plan.set(
                    Section::Abuse,
                    "greet_wait",
                    Value::Str(format!("{secs}s")),
                    from,
                    Fit::Exact,
                );
            }
            _ => {
                let wait = self.cf.shown("postscreen_greet_wait");
                self.not_translated(format!("{wait}: not a time mxguard can wait"));
            }
        }
    }

    fn postscreen_dnsbl(&mut self) {
        let Some((sites, _)) = self.cf.list("postscreen_dnsbl_sites") else {
            return;
        };
        let place = self.cf.origin("postscreen_dnsbl_sites");
        let action = self
            .cf
            .get("postscreen_dnsbl_action")
            .map(|a| a.text.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !matches!(action.as_str(), "enforce" | "drop") {
            let shown = self.cf.shown("postscreen_dnsbl_action");
            let sites = self.cf.shown("postscreen_dnsbl_sites");
            return self.not_translated(format!(
                "{sites}: with {shown} postscreen only logs the score; to refuse at it in \
                 mxguard, add [[dnsbl]] tables with these weights and set \
                 policy.reject_score"
            ));
        }
        let threshold = self
            .cf
            .get("postscreen_dnsbl_threshold")
            .and_then(|t| t.text.trim().parse::<u64>().ok())
            .filter(|t| *t > 0);
        let Some(threshold) = threshold else {
            let shown = self.cf.shown("postscreen_dnsbl_threshold");
            return self.not_translated(format!(
                "{place}: {shown} is not a score mxguard can refuse at (a whole number \
                 above 0)"
            ));
        };
        let mut any = false;
        for site in sites {
            let origin = format!("{site} in {place}");
            let (rest, weight) = match site.rsplit_once('*') {
                Some((rest, w)) => match w.parse::<i64>() {
                    Ok(w) => (rest, w),
                    Err(_) => {
                        self.not_translated(format!("{origin}: `{w}` is not a weight"));
                        continue;
                    }
                },
                None => (site.as_str(), 1),
            };
            let (name, pattern) = rest
                .split_once('=')
                .map_or((rest, None), |(z, p)| (z, Some(p)));
            if let Some(mut zone) = self.zone(name, pattern, &origin) {
                zone.weight = Some(weight);
                self.plan.add_zone(false, zone);
                any = true;
            }
        }
        if !any {
            return;
        }
        let from = format!(
            "{}, {}",
            self.cf.shown("postscreen_dnsbl_threshold"),
            self.cf.shown("postscreen_dnsbl_action")
        );
        self.plan.set(
            Section::Policy,
            "reject_score",
            Value::Int(threshold),
            from,
            Fit::Exact,
        );
        self.plan.note(
            Section::Policy,
            "reject_score",
            "postscreen refused at connect (when master.cf ran it); mxguard refuses at \
             RCPT, and adds the weights of its other scoring checks"
                .into(),
        );
        for param in [
            "postscreen_dnsbl_whitelist_threshold",
            "postscreen_dnsbl_allowlist_threshold",
        ] {
            if let Some(p) = self.cf.raw(param) {
                self.not_translated(format!(
                    "{}: mxguard has no score below which later tests are skipped",
                    p.written(param)
                ));
            }
        }
    }

    fn recipient_maps(&mut self) {
        for param in ["relay_recipient_maps", "local_recipient_maps"] {
            if let Some(p) = self.cf.raw(param) {
                self.not_translated(format!(
                    "{}: mxguard's recipients.table is a file of user@domain and @domain \
                     lines: write the table's keys there, or set recipients.callout = true \
                     to ask the downstream",
                    p.written(param)
                ));
            }
        }
        if let Some(p) = self.cf.raw("smtpd_helo_required") {
            if p.value.trim().eq_ignore_ascii_case("yes") {
                self.plan.covered(format!(
                    "smtpd_helo_required = yes ({}:{}): mxguard always wants HELO or EHLO \
                     before MAIL",
                    p.file, p.line
                ));
            }
        }
    }

    fn unused(&mut self) {
        for (name, param) in self.cf.unused() {
            let why =
                if name.starts_with("smtp_") || name.starts_with("lmtp_") || name == "relayhost" {
                    "Postfix's SMTP client, for delivery: mxguard delivers to [downstream]"
                } else if LOCAL.contains(&name.as_str())
                    || ["alias_", "mailbox_", "virtual_", "local_", "queue_"]
                        .iter()
                        .any(|p| name.starts_with(p))
                {
                    "Postfix's local delivery or installation"
                } else {
                    "no mxguard equivalent"
                };
            self.not_translated(format!("{}: {why}", param.written(&name)));
        }
    }
}

/// Parameters about local delivery or the installation.
const LOCAL: &[&str] = &[
    "append_dot_mydomain",
    "biff",
    "command_directory",
    "compatibility_level",
    "daemon_directory",
    "data_directory",
    "home_mailbox",
    "html_directory",
    "inet_protocols",
    "mail_owner",
    "mailq_path",
    "manpage_directory",
    "myorigin",
    "newaliases_path",
    "readme_directory",
    "recipient_delimiter",
    "sample_directory",
    "sendmail_path",
    "setgid_group",
    "transport_maps",
];

/// The `$name` references left in `text`, for messages: "$a is", "$a, $b
/// are".
fn references(text: &str) -> String {
    let names: Vec<String> = text
        .split('$')
        .skip(1)
        .map(|rest| {
            let name: String = rest
                .trim_start_matches(['{', '('])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            format!("${name}")
        })
        .collect();
    let verb = if names.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", names.join(", "))
}

/// A Postfix time (`60s`, `1m`, `60`: seconds by default) in seconds.
fn postfix_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(per)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{render, Source};
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// main.cf text and the tables it names, translated and loaded.
    fn run_with(text: &str, tables: &[(&str, &str)]) -> String {
        let tables: BTreeMap<String, String> = tables
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let read = move |p: &Path| {
            tables
                .get(&p.display().to_string())
                .cloned()
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        };
        let input = Input {
            name: "main.cf".into(),
            path: PathBuf::from("/etc/postfix/main.cf"),
            text: text.into(),
        };
        let mut plan = Plan::default();
        translate(&[input], &read, &mut plan).unwrap();
        let out = render::render(Source::Postfix, &["main.cf".into()], &plan);
        crate::config::Config::from_toml(&out, "import.toml", Path::new("/"))
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        out
    }

    fn run(text: &str) -> String {
        run_with(text, &[])
    }

    fn has(out: &str, wanted: &[&str]) {
        for want in wanted {
            assert!(out.contains(want), "missing:\n{want}\n--- in:\n{out}");
        }
    }

    #[test]
    fn the_seed_restriction_list() {
        let out = run(
            "myhostname = mx.example.org\nmydomain = example.org\nmydestination = $mydomain\n\
             mynetworks = 127.0.0.0/8 [::1]/128, 192.168.1.0/24\n\
             smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination,\n\
             \treject_rbl_client zen.spamhaus.org=127.0.0.[2..11], reject_rbl_client dnsbl.sorbs.net,\n\
             \treject_rbl_client relays.blackholes.us, reject_unknown_client,\n\
             \tcheck_policy_service unix:private/policy-spf, reject_unknown_sender_domain\n",
        );
        has(
            &out,
            &[
                "#   hostname = \"mx.example.org\"  (myhostname (main.cf:1))\n",
                "[relay]\n# from: mydestination (main.cf:3)\ndomains = [\"example.org\"]\n",
                "trusted_networks = [\"127.0.0.0/8\", \"::1/128\", \"192.168.1.0/24\"]\n",
                "# from: reject_unknown_client in smtpd_recipient_restrictions (main.cf:5), \
                 unknown_client_reject_code = 450 (Postfix default)\nreverse_dns = \"tempfail\"\n",
                "forged_reverse_dns = \"tempfail\"\n",
                "# note: guessed from the service's name: an SPF policy service (policyd-spf) \
                 refuses SPF fail; mxguard checks SPF itself\nspf = \"reject\"\n",
                "unknown_address_reject_code = 450 (Postfix default)\nsender_domain = \"tempfail\"\n",
                "null_mx = \"reject\"\n",
                "[[dnsbl]]\n# from: reject_rbl_client zen.spamhaus.org=127.0.0.[2..11] in \
                 smtpd_recipient_restrictions (main.cf:5)\nzone = \"zen.spamhaus.org\"\n\
                 codes = [\"127.0.0.2-127.0.0.11\"]\n",
                "# covered: reject_unauth_destination in smtpd_recipient_restrictions (main.cf:5): \
                 mxguard's relay control",
                "# dead list, left out: reject_rbl_client dnsbl.sorbs.net in \
                 smtpd_recipient_restrictions (main.cf:5): SORBS",
                "# dead list, left out: reject_rbl_client relays.blackholes.us in \
                 smtpd_recipient_restrictions (main.cf:5): blackholes.us",
            ],
        );
        assert!(!out.contains("zone = \"dnsbl.sorbs.net\""), "{out}");
        assert!(!out.contains("zone = \"relays.blackholes.us\""), "{out}");
    }

    #[test]
    fn reply_codes_warn_and_soft_bounce() {
        let out = run(
            "unknown_client_reject_code = 550\nsmtpd_client_restrictions = \
             reject_unknown_reverse_client_hostname, warn_if_reject reject_rbl_client bl.test\n\
             smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, \
             reject_unknown_helo_hostname\nsmtpd_sender_restrictions = reject_non_fqdn_sender\n",
        );
        has(
            &out,
            &[
                "unknown_client_reject_code = 550 (main.cf:1)\nreverse_dns = \"reject\"\n",
                "# from: reject_invalid_helo_hostname in smtpd_helo_restrictions (main.cf:3); \
                 reject_non_fqdn_helo_hostname in smtpd_helo_restrictions (main.cf:3)\n",
                "helo = \"reject\"\n",
                "helo_dns = \"tempfail\"\n",
                "sender_domain = \"reject\"\n",
                "zone = \"bl.test\"\naction = \"warn\"\n",
            ],
        );
        let soft = run("soft_bounce = yes\nsmtpd_sender_restrictions = reject_non_fqdn_sender\n");
        has(
            &soft,
            &["soft_bounce = yes (main.cf:1)\nsender_domain = \"tempfail\"\n"],
        );
    }

    #[test]
    fn the_better_translation_of_a_check_wins() {
        let out = run(
            "smtpd_sender_restrictions = reject_non_fqdn_sender, reject_unknown_sender_domain\n",
        );
        has(
            &out,
            &[
                "# note: instead of \"reject\" from reject_non_fqdn_sender in \
                 smtpd_sender_restrictions (main.cf:1)\nsender_domain = \"tempfail\"\n",
            ],
        );
    }

    #[test]
    fn access_tables_become_list_files() {
        let out = run_with(
            "smtpd_sender_restrictions = check_sender_access hash:/etc/postfix/sender_access\n\
             smtpd_recipient_restrictions = check_client_access cidr:/etc/postfix/clients.cidr,\n\
             \x20 check_client_access hash:/etc/postfix/clients,\n\
             \x20 check_recipient_access pcre:/etc/postfix/rcpt.pcre, reject_unauth_destination\n",
            &[
                (
                    "/etc/postfix/sender_access",
                    "spammer@example.net REJECT\nbulk.example 554 go away\n.sub.example REJECT\n\
                     postmaster@ REJECT\ngood@bulk.example OK\nlater@example.net DEFER\n<> REJECT\n",
                ),
                (
                    "/etc/postfix/clients.cidr",
                    "192.0.2.25/32 OK\n198.51.100.0/24 OK\n203.0.113.0/24 REJECT\n[2001:db8::]/32 OK\n",
                ),
                (
                    "/etc/postfix/clients",
                    "10.1 OK\n2001:db8:1 OK\nmail.partner.example OK\n10.9.9.9 DUNNO\n",
                ),
                ("/etc/postfix/rcpt.pcre", "/^[a-z]+[0-9]+@example\\.com$/ REJECT\n/x/i REJECT\n"),
            ],
        );
        has(
            &out,
            &[
                "client_exceptions = \"client-exceptions\"\n",
                "sender_blocklist = \"sender-blocklist\"\n",
                "recipient_blocklist = \"recipient-blocklist\"\n",
                "# from: check_sender_access hash:/etc/postfix/sender_access in \
                 smtpd_sender_restrictions (main.cf:1)\nsender_blocklist = \"reject\"\n",
                "#|sender-blocklist| # from /etc/postfix/sender_access\n\
                 #|sender-blocklist| spammer@example.net\n\
                 #|sender-blocklist| @bulk.example\n\
                 #|sender-blocklist| /\\.bulk\\.example$/\n\
                 #|sender-blocklist| /^postmaster@/\n",
                "#|client-exceptions| # from /etc/postfix/clients.cidr\n\
                 #|client-exceptions| 192.0.2.25/32\n#|client-exceptions| 198.51.100.0/24\n\
                 #|client-exceptions| 2001:db8::/32\n\
                 #|client-exceptions| # from /etc/postfix/clients\n\
                 #|client-exceptions| 10.1.0.0/16\n#|client-exceptions| 2001:db8:1::/48\n",
                "#|recipient-blocklist| /^[a-z]+[0-9]+@example\\.com$/\n",
                "# note: the texts of REJECT entries are not kept",
                "# not translated: .sub.example REJECT (/etc/postfix/sender_access:3): Postfix never looks it up",
                "# not translated: good@bulk.example OK (/etc/postfix/sender_access:5): mxguard has no allow list",
                "# not translated: later@example.net DEFER (/etc/postfix/sender_access:6): a temporary refusal",
                "# not translated: <> REJECT (/etc/postfix/sender_access:7): the null sender",
                "# not translated: 203.0.113.0/24 REJECT (/etc/postfix/clients.cidr:3): mxguard has no client block list",
                "# not translated: mail.partner.example OK (/etc/postfix/clients:3): a host or domain name",
                "# covered: 10.9.9.9 DUNNO (/etc/postfix/clients:4): DUNNO leaves",
                "# not translated: /x/i REJECT (/etc/postfix/rcpt.pcre:2): the flags `i`",
            ],
        );
    }

    #[test]
    fn unreadable_tables_are_reported() {
        let out = run("smtpd_sender_restrictions = check_sender_access hash:/nope, check_sender_access ldap:/x.cf\n");
        has(
            &out,
            &[
                "# not translated: check_sender_access hash:/nope in smtpd_sender_restrictions (main.cf:1): cannot read /nope",
                "# not translated: check_sender_access ldap:/x.cf in smtpd_sender_restrictions (main.cf:1): ldap: tables are not read",
            ],
        );
        assert!(!out.contains("[lists]"), "{out}");
    }

    #[test]
    fn postscreen_weights_and_greeting() {
        let out = run(
            "postscreen_dnsbl_sites = zen.spamhaus.org*3, b.barracudacentral.org=127.0.0.2*2,\n\
             \x20 list.dnswl.org=127.0.[0..255].[1..3]*-2, dnsbl.sorbs.net*1\n\
             postscreen_dnsbl_threshold = 3\npostscreen_dnsbl_action = enforce\n\
             postscreen_greet_action = enforce\n",
        );
        has(
            &out,
            &[
                "[policy]\n# from: postscreen_dnsbl_threshold = 3 (main.cf:3), \
                 postscreen_dnsbl_action = enforce (main.cf:4)\n",
                "reject_score = 3\n",
                "zone = \"zen.spamhaus.org\"\nweight = 3\n",
                "zone = \"b.barracudacentral.org\"\ncodes = [\"127.0.0.2\"]\nweight = 2\n",
                "zone = \"list.dnswl.org\"\ncodes = [\n    \"127.0.0.1-127.0.0.3\", \
                 \"127.0.1.1-127.0.1.3\", \"127.0.2.1-127.0.2.3\", \"127.0.3.1-127.0.3.3\",\n",
                " \"127.0.255.1-127.0.255.3\",\n]\nweight = -2\n",
                "weight = -2\n",
                "# dead list, left out: dnsbl.sorbs.net*1 in postscreen_dnsbl_sites",
                "[abuse]\n# from: postscreen_greet_action = enforce (main.cf:5), \
                 postscreen_greet_wait = 6s (Postfix default)\ngreet_wait = \"6s\"\n",
            ],
        );
        let ignored = run("postscreen_dnsbl_sites = zen.spamhaus.org*3\n");
        has(
            &ignored,
            &[
                "# not translated: postscreen_dnsbl_sites = zen.spamhaus.org*3 (main.cf:1): with \
               postscreen_dnsbl_action = ignore (Postfix default) postscreen only logs",
            ],
        );
        assert!(!ignored.contains("\n[[dnsbl]]\n"), "{ignored}");
    }

    #[test]
    fn dnsbl_reply_and_rhsbl() {
        let out = run(
            "default_rbl_reply = $rbl_code Service unavailable; $rbl_class [$rbl_what] blocked \
             using $rbl_domain${rbl_reason?; $rbl_reason} $helo_name\n\
             maps_rbl_reject_code = 450\nrbl_reply_maps = hash:/etc/postfix/rbl_reply\n\
             smtpd_sender_restrictions = reject_rhsbl_sender dbl.example=127.0.1.[2..99], \
             reject_rhsbl_helo dbl.example, reject_rbl_client bl.test=bad\n",
        );
        has(
            &out,
            &[
                "[[rhsbl]]\n",
                "zone = \"dbl.example\"\ncodes = [\"127.0.1.2-127.0.1.99\"]\naction = \"tempfail\"\n\
                 message = \"Service unavailable; Sender address [{sender_domain}] blocked using \
                 {zone}; {txt}\"\n",
                "# note: ${rbl_reason?; $rbl_reason} is always written",
                "# note: $helo_name is left out",
                "maps_rbl_reject_code = 450 (main.cf:2); default_rbl_reply (main.cf:1)\n",
                "# not translated: rbl_reply_maps = hash:/etc/postfix/rbl_reply (main.cf:3): \
                 per-list replies are not read",
                "# not translated: reject_rhsbl_helo dbl.example in smtpd_sender_restrictions \
                 (main.cf:4): mxguard's [[rhsbl]] looks up the sender's domain only",
                "# not translated: reject_rbl_client bl.test=bad in smtpd_sender_restrictions \
                 (main.cf:4): the answer pattern `bad`",
            ],
        );
    }

    #[test]
    fn domains_networks_limits_and_other_parameters() {
        let out = run(
            "mydestination = $myhostname, localhost, hash:/etc/postfix/domains\n\
             relay_domains = example.net\nvirtual_alias_domains = alias.example\n\
             mynetworks = 10.0.0.0/8 !10.1.0.0/16 /etc/postfix/networks\n\
             smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, \
             reject_unauth_destination\n\
             message_size_limit = 10240000\nsmtpd_recipient_limit = 0\nsmtpd_hard_error_limit = 5\n\
             smtpd_client_connection_rate_limit = 30\nsmtpd_client_message_rate_limit = 10\n\
             smtpd_delay_reject = no\nsmtpd_helo_required = yes\nalias_maps = hash:/etc/aliases\n\
             relayhost =\nsmtpd_milters = inet:localhost:8891\n\
             relay_recipient_maps = hash:/etc/postfix/relay_recipients\nsmtpd_tls_cert_file = /etc/ssl/mx.pem\n\
             smtpd_tls_security_level = may\nsmtpd_restriction_classes = strict\nstrict = reject_unknown_helo_hostname\n\
             smtpd_helo_restrictions = strict, bogus_thing, sleep\n",
        );
        has(
            &out,
            &[
                "domains = [\"localhost\", \"example.net\", \"alias.example\"]\n",
                "# note: Postfix also relays for subdomains of relay_domains",
                "trusted_networks = [\"10.0.0.0/8\"]\n",
                "[policy]\n# from: smtpd_delay_reject = no (main.cf:11)\nreject_at = \"immediate\"\n",
                "max_message_size = 10240000\n",
                "max_errors = 5\n",
                "connections_per_minute = 30\n",
                "messages_per_hour = 600\n",
                "[tls]\n# from: smtpd_tls_cert_file (main.cf:17)\ncert = \"/etc/ssl/mx.pem\"\n\
                 # from: smtpd_tls_key_file (Postfix default)\nkey = \"/etc/ssl/mx.pem\"\n",
                "helo_dns = \"tempfail\"\n",
                "# not translated: $myhostname in mydestination (main.cf:1): $myhostname is not set",
                "# not translated: hash:/etc/postfix/domains in mydestination (main.cf:1): a table or file",
                "# not translated: !10.1.0.0/16 in mynetworks (main.cf:4): a negated network",
                "# not translated: /etc/postfix/networks in mynetworks (main.cf:4): a table or file",
                "# not translated: smtpd_recipient_limit = 0 (main.cf:7): not a limit",
                "# not translated: permit_sasl_authenticated in smtpd_relay_restrictions (main.cf:5): \
                 mxguard has no SMTP AUTH",
                "# not translated: bogus_thing in smtpd_helo_restrictions (main.cf:21): not a restriction",
                "# not translated: sleep in smtpd_helo_restrictions (main.cf:21): it has no argument",
                "# not translated: relay_recipient_maps = hash:/etc/postfix/relay_recipients (main.cf:16): \
                 mxguard's recipients.table",
                "# covered: smtpd_helo_required = yes (main.cf:12)",
                "# not translated: alias_maps = hash:/etc/aliases (main.cf:13): Postfix's local delivery",
                "# not translated: relayhost = (main.cf:14): Postfix's SMTP client",
                "# not translated: smtpd_milters = inet:localhost:8891 (main.cf:15): no mxguard equivalent",
            ],
        );
    }

    #[test]
    fn mynetworks_style_when_mynetworks_is_not_set() {
        let host =
            run("compatibility_level = 3.6\nsmtpd_recipient_restrictions = permit_mynetworks\n");
        has(
            &host,
            &[
                "# note: mynetworks_style = host: Postfix also trusts this host's own addresses",
                "trusted_networks = [\"127.0.0.0/8\", \"::1\"]\n",
            ],
        );
        let subnet = run("smtpd_recipient_restrictions = permit_mynetworks\n");
        has(
            &subnet,
            &[
                "# not translated: mynetworks: not set, so Postfix trusts the networks",
                "# not translated: localhost.$mydomain in mydestination (Postfix default): \
                 $mydomain is not set in main.cf",
                "# from: mydestination (Postfix default)\ndomains = [\"localhost\"]\n",
            ],
        );
    }

    #[test]
    fn times() {
        assert_eq!(postfix_seconds("60s"), Some(60));
        assert_eq!(postfix_seconds("2m"), Some(120));
        assert_eq!(postfix_seconds("15"), Some(15));
        assert_eq!(postfix_seconds("1y"), None);
        assert_eq!(references("localhost.$mydomain"), "$mydomain is");
        assert_eq!(references("${a}.$b"), "$a, $b are");
    }
}
