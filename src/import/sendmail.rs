//! A sendmail `.mc` file: `FEATURE(`dnsbl', …)` and `FEATURE(`enhdnsbl',
//! …)` become `[[dnsbl]]` tables — the message with `$&{client_addr}` as
//! `{client_ip}` and its reply code taken off (mxguard answers 554 5.7.1,
//! or 4xx when the code was 4xx), the `t` argument (tempfail when the DNS
//! lookup fails) as `on_dns_error`, enhdnsbl's return values
//! (`127.0.0.2.`, `127.0.0.$-.`) as `codes`. Also `require_rdns`,
//! `delay_checks`, `greet_pause`, `RELAY_DOMAIN`, `LOCAL_DOMAIN`,
//! `RELAY_DOMAIN_FILE` and a few `define`s; everything else is reported.

use super::m4::{self, Call, Item};
use super::plan::{Act, Fit, OnDnsError, Plan, Section, Value, Zone};
use super::{codes, dead, reply, ImportError, Input, Reader};
use std::path::Path;

/// Translates `.mc` files.
pub fn translate(inputs: &[Input], read: Reader, plan: &mut Plan) -> Result<(), ImportError> {
    for input in inputs {
        let items = m4::parse(&input.text).map_err(|e| ImportError::Syntax {
            file: input.name.clone(),
            line: e.line,
            message: e.message,
        })?;
        // Text between divert(-1) and the next divert is thrown away by m4.
        let mut discarding = false;
        for item in items {
            match item {
                Item::Text { line } => {
                    if !discarding {
                        let original = input.text.lines().nth(line - 1).unwrap_or("").trim();
                        plan.not_translated(format!(
                            "{original} ({}:{line}): text outside the macros (raw \
                             sendmail.cf lines) has no translation",
                            input.name
                        ));
                    }
                }
                Item::Call(call) if call.name == "divert" => {
                    discarding = arg(&call, 0) == "-1";
                }
                Item::Call(call) => {
                    let mut t = Translation {
                        plan,
                        input,
                        read,
                        call: &call,
                    };
                    t.call();
                }
            }
        }
    }
    Ok(())
}

fn arg(call: &Call, i: usize) -> &str {
    call.args.get(i).map_or("", |a| a.trim())
}

struct Translation<'a> {
    plan: &'a mut Plan,
    input: &'a Input,
    read: Reader<'a>,
    call: &'a Call,
}

impl Translation<'_> {
    /// `FEATURE(`x') (mx.mc:3)`
    fn origin(&self) -> String {
        format!(
            "{} ({}:{})",
            self.call.text, self.input.name, self.call.line
        )
    }

    fn not_translated(&mut self, why: &str) {
        let text = format!("{}: {why}", self.origin());
        self.plan.not_translated(text);
    }

    fn set(&mut self, section: Section, key: &str, value: Value) {
        let from = self.origin();
        self.plan.set(section, key, value, from, Fit::Exact);
    }

    fn call(&mut self) {
        let call = self.call;
        match call.name.as_str() {
            "FEATURE" => self.feature(),
            "define" => self.define(),
            "RELAY_DOMAIN" | "LOCAL_DOMAIN" => {
                for word in arg(call, 0).split_whitespace() {
                    self.domain(word);
                }
                if call.name == "RELAY_DOMAIN" {
                    self.relay_subdomains_note();
                }
            }
            "RELAY_DOMAIN_FILE" => self.domain_file(),
            "include" if arg(call, 0).ends_with("/m4/cf.m4") => {}
            "VERSIONID" | "OSTYPE" | "DOMAIN" | "MAILER" | "MASQUERADE_AS" | "MASQUERADE_DOMAIN"
            | "EXPOSED_USER" | "DAEMON_OPTIONS" | "CLIENT_OPTIONS" | "LOCAL_USER" | "MODIFY_MAILER_FLAGS"
            | "SMART_HOST" => self.not_translated(
                "a build, delivery or listener setting: mxguard's own are [server] and [downstream]",
            ),
            "include" => self.not_translated("the import reads only the files it is given"),
            _ => self.not_translated("no mxguard equivalent"),
        }
    }

    fn feature(&mut self) {
        let call = self.call;
        match arg(call, 0) {
            "dnsbl" => self.dnsbl(false),
            "enhdnsbl" => self.dnsbl(true),
            "require_rdns" => {
                self.set(Section::Checks, "reverse_dns", Value::check(Act::Reject));
                self.set(
                    Section::Checks,
                    "forged_reverse_dns",
                    Value::check(Act::Tempfail),
                );
                self.plan.note(
                    Section::Checks,
                    "forged_reverse_dns",
                    "require_rdns answers a forged reverse name with 4xx".into(),
                );
            }
            "delay_checks" => self.set(Section::Policy, "reject_at", Value::Str("rcpt".into())),
            "greet_pause" => self.greet_pause(),
            "relay_hosts_only" => {
                let text = format!(
                    "{}: mxguard's relay.domains name exact domains",
                    self.origin()
                );
                self.plan.covered(text);
            }
            "access_db" | "blacklist_recipients" => self.not_translated(
                "the access database is not read: translate its entries by hand \
                 (From: REJECT to lists.sender_blocklist, To: REJECT to \
                 lists.recipient_blocklist, Connect: OK or RELAY to \
                 lists.client_exceptions or relay.trusted_networks)",
            ),
            "nouucp"
            | "always_add_domain"
            | "use_cw_file"
            | "use_ct_file"
            | "mailertable"
            | "virtusertable"
            | "genericstable"
            | "local_procmail"
            | "smrsh"
            | "redirect"
            | "masquerade_envelope"
            | "masquerade_entire_domain"
            | "allmasquerade"
            | "local_lmtp"
            | "no_default_msa" => {
                self.not_translated("local delivery and addressing, not the SMTP front door")
            }
            _ => self.not_translated("no mxguard equivalent"),
        }
    }

    /// FEATURE(`dnsbl', zone, message, tempfail) and FEATURE(`enhdnsbl',
    /// zone, message, tempfail, return values…).
    fn dnsbl(&mut self, enhanced: bool) {
        let call = self.call;
        let name = crate::smtp::address::normalize_domain(arg(call, 1));
        if name.is_empty() {
            return self.not_translated(
                "no zone: sendmail once took blackholes.mail-abuse.org, the MAPS RBL, \
                 long a paid service; name the zone you use",
            );
        }
        if !crate::smtp::address::is_domain(&name) {
            return self.not_translated("the zone is not a DNS name");
        }
        if let Some(why) = dead::reason(&name) {
            let text = format!("{}: {why}", self.origin());
            return self.plan.left_out(text);
        }
        let mut zone = Zone {
            zone: name,
            from: vec![self.origin()],
            ..Zone::default()
        };
        match arg(call, 2) {
            "quarantine" | "discard" => {
                return self.not_translated(
                    "mxguard refuses listed clients; it never quarantines or discards \
                     mail it has accepted from them",
                )
            }
            "" => {
                zone.message = Some("Rejected: {client_ip} listed at {zone}".into());
                zone.notes
                    .push("the message is sendmail's default, which answered 550".into());
            }
            text => {
                let message = reply::sendmail(text);
                if let Some(code) = &message.code {
                    if Act::from_code(code) == Some(Act::Tempfail) {
                        zone.action = Some(Act::Tempfail);
                    } else if code != "554" {
                        zone.notes.push(format!(
                            "sendmail answered {code}; mxguard answers 554 5.7.1 with this text"
                        ));
                    }
                }
                if !message.dropped.is_empty() {
                    zone.notes.push(format!(
                        "left out of the message: {} (mxguard's messages know {{client_ip}}, \
                         {{zone}} and {{txt}})",
                        message.dropped.join(" ")
                    ));
                }
                if !message.text.is_empty() {
                    zone.message = Some(message.text);
                }
            }
        }
        match arg(call, 3) {
            "" => {}
            "t" => zone.on_dns_error = Some(OnDnsError::Tempfail),
            _ => {
                zone.on_dns_error = Some(OnDnsError::Tempfail);
                zone.notes.push(
                    "the text for a failed lookup is not kept: mxguard answers 451 4.7.1".into(),
                );
            }
        }
        if enhanced {
            let patterns: Vec<&str> = (4..call.args.len())
                .map(|i| arg(call, i))
                .filter(|p| !p.is_empty())
                .collect();
            for pattern in &patterns {
                match codes::sendmail(pattern) {
                    Some(ranges) => {
                        for range in ranges {
                            if !zone.codes.contains(&range) {
                                zone.codes.push(range);
                            }
                        }
                    }
                    None => zone.notes.push(format!(
                        "the return value {pattern} is not an address pattern mxguard \
                         can match and is left out"
                    )),
                }
            }
            if !patterns.is_empty() && zone.codes.is_empty() {
                return self.not_translated(
                    "none of its return values is an address pattern mxguard can match",
                );
            }
        }
        self.plan.add_zone(false, zone);
    }

    /// FEATURE(`greet_pause', MILLISECONDS): sendmail's pregreet test.
    fn greet_pause(&mut self) {
        match arg(self.call, 1).parse::<u64>() {
            Ok(ms) if ms > 0 => {
                let wait = if ms % 1000 == 0 {
                    format!("{}s", ms / 1000)
                } else {
                    format!("{ms}ms")
                };
                self.set(Section::Abuse, "greet_wait", Value::Str(wait));
            }
            _ => self.not_translated(
                "the pause is not a number of milliseconds (or is taken from the access \
                 database)",
            ),
        }
    }

    fn define(&mut self) {
        let value = arg(self.call, 1);
        let number = value.parse::<u64>().ok().filter(|n| *n > 0);
        match (arg(self.call, 0), number) {
            ("confMAX_MESSAGE_SIZE", Some(n)) => {
                self.set(Section::Limits, "max_message_size", Value::Int(n))
            }
            ("confMAX_RCPTS_PER_MESSAGE", Some(n)) => {
                self.set(Section::Limits, "max_recipients", Value::Int(n))
            }
            ("confMAX_DAEMON_CHILDREN", Some(n)) => {
                let from = self.origin();
                self.plan.set(
                    Section::Limits,
                    "max_connections",
                    Value::Int(n),
                    from,
                    Fit::Approximate,
                );
            }
            ("confDOMAIN_NAME", _) if !value.is_empty() => {
                let hint = format!(
                    "hostname = {}  ({})",
                    super::render::string(value),
                    self.origin()
                );
                self.plan.host_hints.push(hint);
            }
            ("confBAD_RCPT_THROTTLE", _) => self.not_translated(
                "mxguard does not slow down; recipients.max_unknown ends a session after \
                 that many unknown recipients",
            ),
            _ => self.not_translated("no mxguard equivalent"),
        }
    }

    fn domain(&mut self, word: &str) {
        let name = crate::smtp::address::normalize_domain(word);
        if crate::smtp::address::is_domain(&name) {
            let from = self.origin();
            self.plan.push(Section::Relay, "domains", name, from);
        } else {
            let text = format!("{word} in {}: not a domain name", self.origin());
            self.plan.not_translated(text);
        }
    }

    fn relay_subdomains_note(&mut self) {
        self.plan.note(
            Section::Relay,
            "domains",
            "sendmail also relays for subdomains of relay domains; mxguard only for the \
             domains named"
                .into(),
        );
    }

    /// RELAY_DOMAIN_FILE(`[-o] path'): a class file, words one or more a
    /// line, `#` comments.
    fn domain_file(&mut self) {
        let spec = arg(self.call, 0);
        let path = spec.strip_prefix("-o").map_or(spec, str::trim);
        match (self.read)(Path::new(path)) {
            Ok(text) => {
                for line in text.lines() {
                    let line = line.split('#').next().unwrap_or("");
                    for word in line.split_whitespace() {
                        self.domain(word);
                    }
                }
                self.relay_subdomains_note();
            }
            Err(e) => self.not_translated(&format!("cannot read {path}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{render, Source};
    use std::path::PathBuf;

    fn run_with(text: &str, read: Reader) -> String {
        let input = Input {
            name: "mx.mc".into(),
            path: PathBuf::from("/etc/mail/mx.mc"),
            text: text.into(),
        };
        let mut plan = Plan::default();
        translate(&[input], read, &mut plan).unwrap();
        let out = render::render(Source::Sendmail, &["mx.mc".into()], &plan);
        crate::config::Config::from_toml(&out, "import.toml", Path::new("/"))
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        out
    }

    fn run(text: &str) -> String {
        run_with(text, &|_: &Path| Err(std::io::ErrorKind::NotFound.into()))
    }

    #[test]
    fn dnsbl_lines_become_dnsbl_tables() {
        let out = run(
            "divert(-1)\nSome comment text\ndivert(0)dnl\n\
             FEATURE(`dnsbl', `zen.spamhaus.org', `\"550 Mail from \" $&{client_addr} \" refused - see https://www.spamhaus.org/query/ip/\" $&{client_addr}')dnl\n\
             FEATURE(`dnsbl',`bl.spamcop.net',`',`t')dnl\n\
             FEATURE(dnsbl, `relays.blackholes.us')dnl\n",
        );
        assert!(out.contains(
            "[[dnsbl]]\n# from: FEATURE(`dnsbl', `zen.spamhaus.org', `\"550 Mail from \" $&{client_addr} \" refused - see https://www.spamhaus.org/query/ip/\" $&{client_addr}') (mx.mc:4)\n\
             # note: sendmail answered 550; mxguard answers 554 5.7.1 with this text\n\
             zone = \"zen.spamhaus.org\"\n\
             message = \"Mail from {client_ip} refused - see https://www.spamhaus.org/query/ip/{client_ip}\"\n"
        ), "{out}");
        assert!(out.contains(
            "zone = \"bl.spamcop.net\"\nmessage = \"Rejected: {client_ip} listed at {zone}\"\non_dns_error = \"tempfail\"\n"
        ), "{out}");
        assert!(out.contains(
            "# dead list, left out: FEATURE(dnsbl, `relays.blackholes.us') (mx.mc:6): blackholes.us is gone"
        ), "{out}");
        assert!(!out.contains("zone = \"relays.blackholes.us\""), "{out}");
        assert!(!out.contains("Some comment text"), "{out}");
    }

    #[test]
    fn enhdnsbl_return_values_become_codes() {
        let out = run(
            "FEATURE(`enhdnsbl', `sbl.example', `\"421 Try later \" $&{client_addr}', `t', `127.0.0.2.', `127.0.0.$-.', `127.0.0.3.', `x.$*')\n\
             FEATURE(`enhdnsbl', `only.example', `', `', `bad')\n",
        );
        assert!(out.contains(
            "# note: the return value x.$* is not an address pattern mxguard can match and is left out\n\
             zone = \"sbl.example\"\ncodes = [\"127.0.0.2\", \"127.0.0.0-127.0.0.255\", \"127.0.0.3\"]\n\
             action = \"tempfail\"\nmessage = \"Try later {client_ip}\"\non_dns_error = \"tempfail\"\n"
        ), "{out}");
        assert!(out.contains("# not translated: FEATURE(`enhdnsbl', `only.example', `', `', `bad') (mx.mc:2): none of its return values"), "{out}");
    }

    #[test]
    fn checks_limits_and_domains() {
        let out = run_with(
            "FEATURE(`require_rdns')dnl\nFEATURE(`delay_checks')\nFEATURE(`greet_pause', `1500')\n\
             define(`confMAX_MESSAGE_SIZE', `10485760')dnl\ndefine(`confMAX_RCPTS_PER_MESSAGE', 50)\n\
             define(`confDOMAIN_NAME', `mx.example.com')\nRELAY_DOMAIN(`example.com example.org')\n\
             RELAY_DOMAIN_FILE(`-o /etc/mail/relay-domains')\nFEATURE(`access_db')\nMAILER(`smtp')\n\
             LOCAL_RULESETS\nFEATURE(`dnsbl')\n",
            &|p: &Path| {
                assert_eq!(p, Path::new("/etc/mail/relay-domains"));
                Ok("# ours\nexample.net other.example # too\n".into())
            },
        );
        for want in [
            "[relay]\n# from: RELAY_DOMAIN(`example.com example.org') (mx.mc:7); RELAY_DOMAIN_FILE(`-o /etc/mail/relay-domains') (mx.mc:8)\n\
             # note: sendmail also relays for subdomains of relay domains; mxguard only for the domains named\n\
             domains = [\"example.com\", \"example.org\", \"example.net\", \"other.example\"]\n",
            "[policy]\n# from: FEATURE(`delay_checks') (mx.mc:2)\nreject_at = \"rcpt\"\n",
            "reverse_dns = \"reject\"\n",
            "# note: require_rdns answers a forged reverse name with 4xx\nforged_reverse_dns = \"tempfail\"\n",
            "max_message_size = 10485760\n",
            "max_recipients = 50\n",
            "[abuse]\n# from: FEATURE(`greet_pause', `1500') (mx.mc:3)\ngreet_wait = \"1500ms\"\n",
            "#   hostname = \"mx.example.com\"  (define(`confDOMAIN_NAME', `mx.example.com') (mx.mc:6))\n",
            "# not translated: FEATURE(`access_db') (mx.mc:9): the access database is not read",
            "# not translated: MAILER(`smtp') (mx.mc:10): a build, delivery or listener setting",
            "# not translated: LOCAL_RULESETS (mx.mc:11): text outside the macros",
            "# not translated: FEATURE(`dnsbl') (mx.mc:12): no zone",
        ] {
            assert!(out.contains(want), "{want}\n---\n{out}");
        }
    }

    #[test]
    fn m4_errors_name_file_and_line() {
        let input = Input {
            name: "mx.mc".into(),
            path: PathBuf::from("mx.mc"),
            text: "dnl\nFEATURE(`dnsbl', `x\n".into(),
        };
        let err = translate(
            &[input],
            &|_: &Path| Err(std::io::ErrorKind::NotFound.into()),
            &mut Plan::default(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("mx.mc:2: the quote"), "{err}");
    }
}
