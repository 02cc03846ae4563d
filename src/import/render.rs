//! Writes a [`Plan`] as mxguard TOML: a header naming the command (no
//! date: the same input gives the same bytes), the sections with where
//! each key came from, the DNS lists, the list files to create, and one
//! comment line for each thing covered, left out or not translated.

use super::plan::{Entry, Plan, Value, Zone};
use super::Source;
use std::fmt::Write;

/// The TOML text of `plan`, imported from `names` (as given).
pub fn render(source: Source, names: &[String], plan: &Plan) -> String {
    let mut out = String::new();
    header(&mut out, source, names, plan);
    let mut section = None;
    for entry in plan.entries() {
        if section != Some(entry.section) {
            section = Some(entry.section);
            let _ = write!(out, "\n[{}]\n", entry.section.name());
        }
        write_entry(&mut out, entry);
    }
    for (table, zones) in [("dnsbl", &plan.dnsbl), ("rhsbl", &plan.rhsbl)] {
        for zone in zones {
            write_zone(&mut out, table, zone);
        }
    }
    write_files(&mut out, plan);
    let notes = [
        ("covered", &plan.covered),
        ("dead list, left out", &plan.left_out),
        ("not translated", &plan.not_translated),
    ];
    if notes.iter().any(|(_, list)| !list.is_empty()) {
        out.push('\n');
    }
    for (label, list) in notes {
        for text in list {
            let _ = writeln!(out, "# {label}: {}", comment(text));
        }
    }
    out
}

fn header(out: &mut String, source: Source, names: &[String], plan: &Plan) {
    let (kind, word) = match source {
        Source::Postfix => ("Postfix", "postfix"),
        Source::Sendmail => ("sendmail", "sendmail"),
        Source::Qmail => ("qmail", "qmail"),
    };
    let files: Vec<String> = names.iter().map(|n| shell_word(n)).collect();
    let _ = writeln!(out, "# mxguard configuration translated from {kind} by");
    let _ = writeln!(
        out,
        "#   {}",
        comment(&format!("mxguard import {word} {}", files.join(" ")))
    );
    out.push_str(
        "# Review it before use. \"# from:\" says where a setting came from; the\n\
         # last lines say what mxguard covers by itself (\"# covered:\"), which\n\
         # dead DNS lists were left out, and what was not translated, and why.\n\
         # Not written here, because they belong to this host: [server],\n\
         # [downstream], [spool], [log] and [dns] (see examples/mxguard.toml).\n",
    );
    if !plan.host_hints.is_empty() {
        out.push_str("# For [server]:\n");
        for hint in &plan.host_hints {
            let _ = writeln!(out, "#   {}", comment(hint));
        }
    }
    if !plan.files.is_empty() {
        out.push_str(
            "# Some lists need files that do not exist yet: their lines are at the\n\
             # end, with the command that writes each file.\n",
        );
    }
}

fn write_entry(out: &mut String, entry: &Entry) {
    let _ = writeln!(out, "# from: {}", comment(&entry.from.join("; ")));
    for note in &entry.notes {
        let _ = writeln!(out, "# note: {}", comment(note));
    }
    let _ = writeln!(out, "{} = {}", entry.key, value(&entry.value));
}

fn write_zone(out: &mut String, table: &str, zone: &Zone) {
    let _ = write!(out, "\n[[{table}]]\n");
    let _ = writeln!(out, "# from: {}", comment(&zone.from.join("; ")));
    for note in &zone.notes {
        let _ = writeln!(out, "# note: {}", comment(note));
    }
    let _ = writeln!(out, "zone = {}", string(&zone.zone));
    if zone.codes.len() > 4 {
        out.push_str("codes = [\n");
        for row in zone.codes.chunks(4) {
            let row: Vec<String> = row.iter().map(|c| string(c)).collect();
            let _ = writeln!(out, "    {},", row.join(", "));
        }
        out.push_str("]\n");
    } else if !zone.codes.is_empty() {
        let _ = writeln!(out, "codes = {}", strings(&zone.codes));
    }
    if let Some(action) = zone.action {
        let _ = writeln!(out, "action = {}", string(action.as_str()));
    }
    if let Some(weight) = zone.weight {
        let _ = writeln!(out, "weight = {weight}");
    }
    if let Some(message) = &zone.message {
        let _ = writeln!(out, "message = {}", string(message));
    }
    if let Some(on_dns_error) = zone.on_dns_error {
        let _ = writeln!(out, "on_dns_error = {}", string(on_dns_error.as_str()));
    }
}

fn write_files(out: &mut String, plan: &Plan) {
    if plan.files.is_empty() {
        return;
    }
    out.push_str(
        "\n# Files to create. Each block below is one file, named relative to\n\
         # this configuration: in its directory, write the file with the command\n\
         # above the block (CONFIG is the name you saved this configuration as).\n",
    );
    for file in &plan.files {
        let _ = writeln!(out, "#\n# {} = {}", file.key, string(file.name));
        let _ = writeln!(out, "#   sed -n 's/^#|{0}| //p' CONFIG > {0}", file.name);
        for line in &file.lines {
            let _ = writeln!(out, "#|{}| {}", file.name, comment(line));
        }
    }
    if plan.files.iter().any(|f| f.lines.is_empty()) {
        out.push_str("# (An empty block is an empty file.)\n");
    }
}

/// A value as TOML.
pub fn value(v: &Value) -> String {
    match v {
        Value::Str(s) => string(s),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Strs(items) => strings(items),
        Value::Check(action) => string(action.as_str()),
    }
}

fn strings(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A TOML basic string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text made fit for one comment line: TOML allows no control character
/// but tab there, so line ends become spaces and others are escaped.
pub fn comment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A file name as a shell word, quoted when it needs to be.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Act, Fit, OnDnsError, Plan, Section, Value, Zone};
    use super::*;

    #[test]
    fn strings_and_comments_stay_valid_toml() {
        assert_eq!(string("a\"b\\c\u{7}"), "\"a\\\"b\\\\c\\u0007\"");
        assert_eq!(comment("a\nb\u{0}c\td"), "a b\\u{0}c\td");
        let parsed: toml::Value = toml::from_str(&format!(
            "k = {}\n# {}\n",
            string("x\u{1f}\"y"),
            comment("z\u{7f}\r\n")
        ))
        .unwrap();
        assert_eq!(parsed["k"].as_str(), Some("x\u{1f}\"y"));
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/etc/postfix/main.cf"), "/etc/postfix/main.cf");
        assert_eq!(shell_word("my file"), "'my file'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn a_plan_is_written_in_order() {
        let mut plan = Plan::default();
        plan.set(
            Section::Checks,
            "helo",
            Value::check(Act::Reject),
            "reject_invalid_helo_hostname (main.cf:3)".into(),
            Fit::Approximate,
        );
        plan.push(
            Section::Relay,
            "domains",
            "example.test".into(),
            "mydestination (main.cf:1)".into(),
        );
        plan.add_zone(
            false,
            Zone {
                zone: "bl.test".into(),
                codes: vec!["127.0.0.2".into()],
                weight: Some(-2),
                on_dns_error: Some(OnDnsError::Tempfail),
                from: vec!["x".into()],
                ..Zone::default()
            },
        );
        plan.file("sender-blocklist", "lists.sender_blocklist")
            .push("@bulk.test".into());
        plan.not_translated("sleep 1 (main.cf:4): no".into());
        let text = render(Source::Postfix, &["main.cf".into()], &plan);
        assert!(text.starts_with(
            "# mxguard configuration translated from Postfix by\n#   mxguard import postfix main.cf\n"
        ));
        let relay = text.find("[relay]").unwrap();
        let checks = text.find("[checks]").unwrap();
        assert!(relay < checks, "{text}");
        assert!(text.contains(
            "[[dnsbl]]\n# from: x\nzone = \"bl.test\"\ncodes = [\"127.0.0.2\"]\nweight = -2\non_dns_error = \"tempfail\"\n"
        ));
        assert!(text.contains("#|sender-blocklist| @bulk.test\n"));
        assert!(text.ends_with("# not translated: sleep 1 (main.cf:4): no\n"));
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["checks"]["helo"].as_str(), Some("reject"));
    }
}
