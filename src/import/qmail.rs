//! qmail control files, told apart by their names: `badmailfrom` (an exact
//! address or `@domain` per line, and with the qregex patch regexes)
//! becomes `lists.sender_blocklist`; `badmailto` (qregex: regexes) and
//! `badrcptto` (exact addresses) `lists.recipient_blocklist`; `rcpthosts`
//! `relay.domains`. `badhelo` has no mxguard equivalent and is reported.
//!
//! A line with a regex character (`^$*+?[](){}|\`) is a regex, matched
//! anywhere in the address as qregex does, and written `/…/`; other lines
//! are exact addresses or `@domain`. mxguard reads a file written only in
//! its own forms as it is, so such a file is named by its path; any other
//! becomes a new file whose lines the output carries.

use super::entries;
use super::plan::{Act, Fit, Plan, Section, Value};
use super::{ImportError, Input};

/// What a control file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Senders,
    Recipients,
    RcptHosts,
    BadHelo,
}

/// The role of a file by its name (the last path component).
fn role(name: &str) -> Option<Role> {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base {
        "badmailfrom" => Some(Role::Senders),
        "badmailto" | "badrcptto" => Some(Role::Recipients),
        "rcpthosts" => Some(Role::RcptHosts),
        "badhelo" => Some(Role::BadHelo),
        _ => None,
    }
}

/// The entries of a control file: (line number, entry), without blank
/// lines and `#` comments.
fn entries_of(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// One badmailfrom/badmailto line as an mxguard list line.
fn address_line(entry: &str) -> Result<String, String> {
    const REGEX_CHARS: &[char] = &[
        '^', '$', '*', '+', '?', '[', ']', '(', ')', '{', '}', '|', '\\',
    ];
    if entry.starts_with('!') {
        Err(
            "a qregex negation (an exception to the other patterns) has no mxguard equivalent"
                .into(),
        )
    } else if entry.contains(REGEX_CHARS) {
        entries::regex(entry)
    } else if let Some(domain) = entry.strip_prefix('@') {
        entries::domain(domain)
    } else if entry.contains('@') {
        entries::exact(entry)
    } else {
        Err("it is neither an address, @domain nor a regex".into())
    }
}

/// Translates the control files.
pub fn translate(inputs: &[Input], plan: &mut Plan) -> Result<(), ImportError> {
    let mut roles = Vec::new();
    for input in inputs {
        let role = role(&input.name).ok_or_else(|| ImportError::UnknownFile {
            file: input.name.clone(),
            message: "a qmail control file is known by its name: badmailfrom, badmailto, \
                      badrcptto, rcpthosts or badhelo"
                .into(),
        })?;
        roles.push((role, input));
    }
    for (role, key, file, check) in [
        (
            Role::Senders,
            "sender_blocklist",
            "sender-blocklist",
            "sender_blocklist",
        ),
        (
            Role::Recipients,
            "recipient_blocklist",
            "recipient-blocklist",
            "recipient_blocklist",
        ),
    ] {
        let files: Vec<&Input> = roles
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, i)| *i)
            .collect();
        if !files.is_empty() {
            address_list(plan, &files, key, file);
            let names: Vec<&str> = files.iter().map(|i| i.name.as_str()).collect();
            plan.set(
                Section::Checks,
                check,
                Value::check(Act::Reject),
                format!("{} (qmail refuses them with 553)", names.join(", ")),
                Fit::Exact,
            );
        }
    }
    for (role, input) in &roles {
        match role {
            Role::RcptHosts => rcpthosts(plan, input),
            Role::BadHelo => {
                for (line, entry) in entries_of(&input.text) {
                    plan.not_translated(format!(
                        "{entry} ({}:{line}): mxguard has no list of refused HELO names; \
                         its checks.helo refuses invalid and not fully qualified names \
                         and its own name",
                        input.name
                    ));
                }
            }
            Role::Senders | Role::Recipients => {}
        }
    }
    Ok(())
}

/// The block list from `files`: the file itself when mxguard reads it as
/// it is, else a new file.
fn address_list(plan: &mut Plan, files: &[&Input], key: &'static str, file: &'static str) {
    let mut lines = Vec::new();
    let mut as_is = files.len() == 1;
    for input in files {
        if files.len() > 1 {
            lines.push(format!("# {}", input.name));
        }
        for (line, entry) in entries_of(&input.text) {
            match address_line(entry) {
                Ok(text) => {
                    as_is &= text.eq_ignore_ascii_case(entry);
                    lines.push(text);
                }
                Err(why) => {
                    as_is = false;
                    plan.not_translated(format!("{entry} ({}:{line}): {why}", input.name));
                }
            }
        }
    }
    let from = files
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match files.first() {
        Some(input) if as_is => {
            plan.set(
                Section::Lists,
                key,
                Value::Str(input.path.display().to_string()),
                format!("{from}, read as it is"),
                Fit::Exact,
            );
        }
        _ => {
            plan.set(
                Section::Lists,
                key,
                Value::Str(file.into()),
                format!("{from}, converted: create the file from the block at the end"),
                Fit::Exact,
            );
            plan.file(
                file,
                match key {
                    "sender_blocklist" => "lists.sender_blocklist",
                    _ => "lists.recipient_blocklist",
                },
            )
            .extend(lines);
        }
    }
}

fn rcpthosts(plan: &mut Plan, input: &Input) {
    for (line, entry) in entries_of(&input.text) {
        let from = format!("{}:{line}", input.name);
        let why = if entry.starts_with('.') {
            "it stands for every subdomain; mxguard's relay.domains names each domain"
        } else if crate::smtp::address::is_domain(&crate::smtp::address::normalize_domain(entry)) {
            plan.push(
                Section::Relay,
                "domains",
                crate::smtp::address::normalize_domain(entry),
                input.name.clone(),
            );
            continue;
        } else {
            "it is not a domain name"
        };
        plan.not_translated(format!("{entry} ({from}): {why}"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{render, Source};
    use super::*;
    use std::path::PathBuf;

    fn input(name: &str, text: &str) -> Input {
        Input {
            name: name.into(),
            path: PathBuf::from(format!("/etc/qmail/{name}")),
            text: text.into(),
        }
    }

    fn run(inputs: &[Input]) -> String {
        let mut plan = Plan::default();
        translate(inputs, &mut plan).unwrap();
        let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        let text = render::render(Source::Qmail, &names, &plan);
        crate::config::Config::from_toml(&text, "import.toml", std::path::Path::new("/"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        text
    }

    #[test]
    fn a_plain_badmailfrom_is_read_as_it_is() {
        let text = run(&[input(
            "badmailfrom",
            "spammer@example.net\n@bulk-mailer.example\n# comment\n\n",
        )]);
        assert!(
            text.contains("sender_blocklist = \"/etc/qmail/badmailfrom\"\n"),
            "{text}"
        );
        assert!(text.contains("[checks]\n# from: badmailfrom (qmail refuses them with 553)\nsender_blocklist = \"reject\"\n"), "{text}");
        assert!(!text.contains("#|"), "{text}");
    }

    #[test]
    fn qregex_patterns_are_wrapped_in_a_new_file() {
        let text = run(&[input(
            "badmailto",
            "[a-z]+[0-9]+@example.com\npostmaster@example.com\n!^good[0-9]@\n(broken\n",
        )]);
        assert!(
            text.contains("recipient_blocklist = \"recipient-blocklist\"\n"),
            "{text}"
        );
        assert!(text.contains("#   sed -n 's/^#|recipient-blocklist| //p' CONFIG > recipient-blocklist\n#|recipient-blocklist| /[a-z]+[0-9]+@example.com/\n#|recipient-blocklist| postmaster@example.com\n"), "{text}");
        assert!(
            text.contains("# not translated: !^good[0-9]@ (badmailto:3): a qregex negation"),
            "{text}"
        );
        assert!(
            text.contains("# not translated: (broken (badmailto:4): mxguard cannot use this regex"),
            "{text}"
        );
    }

    #[test]
    fn two_files_of_one_kind_share_a_new_file() {
        let text = run(&[
            input("badmailto", "^[0-9]+@\n"),
            input("badrcptto", "nobody@example.com\n"),
        ]);
        assert!(text.contains("#|recipient-blocklist| # badmailto\n#|recipient-blocklist| /^[0-9]+@/\n#|recipient-blocklist| # badrcptto\n#|recipient-blocklist| nobody@example.com\n"), "{text}");
    }

    #[test]
    fn rcpthosts_and_badhelo() {
        let text = run(&[
            input(
                "rcpthosts",
                "example.com\nExample.ORG.\n.example.net\nnot a domain\n",
            ),
            input("badhelo", "localhost\n"),
        ]);
        assert!(
            text.contains(
                "[relay]\n# from: rcpthosts\ndomains = [\"example.com\", \"example.org\"]\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# not translated: .example.net (rcpthosts:3): it stands for every subdomain"
            ),
            "{text}"
        );
        assert!(
            text.contains("# not translated: localhost (badhelo:1): mxguard has no list"),
            "{text}"
        );
    }

    #[test]
    fn unknown_files_are_refused_by_name() {
        let mut plan = Plan::default();
        let err = translate(&[input("smtproutes", "")], &mut plan).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("smtproutes: a qmail control file"),
            "{err}"
        );
    }
}
