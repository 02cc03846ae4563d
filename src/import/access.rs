//! Postfix access tables (access(5)) as the import reads them: the text
//! source of a `hash:`, `btree:`, `lmdb:`, `cdb:`, `dbm:`, `sdbm:` or
//! `texthash:` table (the table's file name, without `.db`), `cidr:`
//! tables, `regexp:` and `pcre:` tables (`/pattern/flags action`; entries
//! inside `if`…`endif` are conditional and not taken), and `inline:{ key =
//! value, … }`. Each entry comes with its action: allow, reject, tempfail,
//! dunno, or something else.

use super::maincf::{logical_lines, split_list};
use super::Reader;
use std::path::Path;

/// What an entry's action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `OK`, `permit`, an all-numerical result.
    Allow,
    /// `REJECT`, `reject`, `5NN text`: with its text when it has one.
    Reject(Option<String>),
    /// `DEFER`, `DEFER_IF_*`, `defer`, `4NN text`.
    Tempfail,
    Dunno,
    /// Anything else (`DISCARD`, `HOLD`, `FILTER`, a restriction, …).
    Other,
}

/// An entry's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A lookup key of a hash, cidr or inline table.
    Plain(String),
    /// A regexp or pcre pattern and its flags.
    Regex { pattern: String, flags: String },
    /// An entry that cannot be taken as it is, and why.
    Unusable(&'static str),
}

/// One entry of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: Key,
    pub action: Action,
    /// The entry as written, for comments.
    pub written: String,
}

/// A table's entries, or why it cannot be read. `kind` is its type
/// (`hash`, `cidr`, …).
pub struct Table {
    pub kind: String,
    /// The file read (or `inline`), for comments.
    pub name: String,
    pub entries: Vec<Entry>,
}

/// Reads the table `spec` (`type:name`).
pub fn read(spec: &str, read: Reader) -> Result<Table, String> {
    let spec = spec.strip_prefix("proxy:").unwrap_or(spec);
    let Some((kind, name)) = spec.split_once(':') else {
        return Err("it is not a type:name table".into());
    };
    let text = match kind {
        "hash" | "btree" | "lmdb" | "cdb" | "dbm" | "sdbm" | "texthash" | "cidr" | "regexp"
        | "pcre" => read(Path::new(name)).map_err(|e| format!("cannot read {name}: {e}"))?,
        "inline" => {
            let inner = name.trim();
            let inner = inner
                .strip_prefix('{')
                .and_then(|i| i.strip_suffix('}'))
                .unwrap_or(inner);
            let entries = split_list_pairs(inner)
                .into_iter()
                .map(|(key, value)| Entry {
                    line: 0,
                    key: Key::Plain(key.clone()),
                    action: action(&value),
                    written: format!("{key}={value}"),
                })
                .collect();
            return Ok(Table {
                kind: kind.into(),
                name: "inline".into(),
                entries,
            });
        }
        _ => return Err(format!("{kind}: tables are not read by the import")),
    };
    let lines = logical_lines(&text)
        .map_err(|line| format!("{name}:{line}: a continuation line before any entry"))?;
    let entries = if matches!(kind, "regexp" | "pcre") {
        regex_entries(lines)
    } else {
        lines
            .into_iter()
            .map(|(line, text)| {
                let (key, value) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
                Entry {
                    line,
                    key: Key::Plain(key.to_string()),
                    action: action(value),
                    written: text.split_whitespace().collect::<Vec<_>>().join(" "),
                }
            })
            .collect()
    };
    Ok(Table {
        kind: kind.into(),
        name: name.into(),
        entries,
    })
}

/// `key = value` pairs of an inline table, split like a Postfix list.
fn split_list_pairs(inner: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let items = split_list(inner);
    let mut i = 0;
    while i < items.len() {
        // `key=value`, or `key = value` split over three items.
        let item = &items[i];
        if let Some((k, v)) = item.split_once('=') {
            let value = if v.trim().is_empty() {
                i += 1;
                items.get(i).cloned().unwrap_or_default()
            } else {
                v.to_string()
            };
            pairs.push((k.trim().to_string(), value.trim().to_string()));
        } else if items.get(i + 1).is_some_and(|n| n == "=") {
            pairs.push((item.clone(), items.get(i + 2).cloned().unwrap_or_default()));
            i += 2;
        } else if let Some(v) = items.get(i + 1).and_then(|n| n.strip_prefix('=')) {
            pairs.push((item.clone(), v.to_string()));
            i += 1;
        } else {
            pairs.push((item.clone(), String::new()));
        }
        i += 1;
    }
    pairs
}

fn regex_entries(lines: Vec<(usize, String)>) -> Vec<Entry> {
    let mut depth = 0usize;
    let mut entries = Vec::new();
    for (line, text) in lines {
        let first = text.split_whitespace().next().unwrap_or("");
        let (key, value) = if first.eq_ignore_ascii_case("if") {
            depth += 1;
            (Key::Unusable("an if…endif block is not followed"), "")
        } else if first.eq_ignore_ascii_case("endif") {
            depth = depth.saturating_sub(1);
            continue;
        } else if depth > 0 {
            (
                Key::Unusable("it is inside an if…endif block, which is not followed"),
                "",
            )
        } else if text.starts_with('!') {
            (
                Key::Unusable("a negated pattern has no mxguard equivalent"),
                "",
            )
        } else {
            match split_pattern(&text) {
                Some((pattern, flags, value)) => (Key::Regex { pattern, flags }, value),
                None => (Key::Unusable("it is not a /pattern/ entry"), ""),
            }
        };
        let action = if value.is_empty() {
            Action::Other
        } else {
            action(value)
        };
        entries.push(Entry {
            line,
            key,
            action,
            written: text.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    entries
}

/// `/pattern/flags action` → (pattern, flags, action).
fn split_pattern(text: &str) -> Option<(String, String, &str)> {
    let rest = text.strip_prefix('/')?;
    let mut escaped = false;
    let end = rest.char_indices().find_map(|(i, c)| {
        if escaped {
            escaped = false;
            None
        } else if c == '\\' {
            escaped = true;
            None
        } else if c == '/' {
            Some(i)
        } else {
            None
        }
    })?;
    let pattern = rest[..end].to_string();
    let after = &rest[end + 1..];
    let (flags, value) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
    Some((pattern, flags.to_string(), value.trim()))
}

/// The action an access table's value stands for.
pub fn action(value: &str) -> Action {
    let value = value.trim();
    let (first, rest) = value
        .split_once(char::is_whitespace)
        .map_or((value, ""), |(f, r)| (f, r.trim()));
    let text = (!rest.is_empty()).then(|| rest.to_string());
    let upper = first.to_ascii_uppercase();
    let numeric = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
    if numeric && first.len() == 3 && first.starts_with('5') {
        Action::Reject(text)
    } else if numeric && first.len() == 3 && first.starts_with('4') {
        Action::Tempfail
    } else if numeric || upper == "OK" || upper == "PERMIT" {
        Action::Allow
    } else if upper == "REJECT" {
        Action::Reject(text)
    } else if upper == "DEFER" || upper.starts_with("DEFER_IF_") {
        Action::Tempfail
    } else if upper == "DUNNO" {
        Action::Dunno
    } else {
        Action::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(spec: &str, text: &'static str) -> Table {
        read(spec, &move |_: &Path| Ok(text.to_string())).unwrap()
    }

    #[test]
    fn actions() {
        assert_eq!(action("OK"), Action::Allow);
        assert_eq!(action("permit"), Action::Allow);
        assert_eq!(action("REJECT"), Action::Reject(None));
        assert_eq!(
            action("REJECT go away  now"),
            Action::Reject(Some("go away  now".into()))
        );
        assert_eq!(
            action("554 5.7.1 no"),
            Action::Reject(Some("5.7.1 no".into()))
        );
        assert_eq!(action("450 later"), Action::Tempfail);
        assert_eq!(action("DEFER_IF_PERMIT x"), Action::Tempfail);
        assert_eq!(action("dunno"), Action::Dunno);
        assert_eq!(action("12345"), Action::Allow);
        assert_eq!(action("DISCARD"), Action::Other);
        assert_eq!(action(""), Action::Other);
    }

    #[test]
    fn hash_sources_with_continuations() {
        let t = table(
            "hash:/etc/postfix/access",
            "# comment\nspammer@example.net REJECT\nexample.org\n   REJECT spam\n192.0.2 OK\n",
        );
        assert_eq!(t.name, "/etc/postfix/access");
        let keys: Vec<(usize, &Key, &Action)> = t
            .entries
            .iter()
            .map(|e| (e.line, &e.key, &e.action))
            .collect();
        assert_eq!(
            keys,
            vec![
                (
                    2,
                    &Key::Plain("spammer@example.net".into()),
                    &Action::Reject(None)
                ),
                (
                    3,
                    &Key::Plain("example.org".into()),
                    &Action::Reject(Some("spam".into()))
                ),
                (5, &Key::Plain("192.0.2".into()), &Action::Allow),
            ]
        );
    }

    #[test]
    fn regexp_tables() {
        let t = table(
            "pcre:/etc/postfix/sender.pcre",
            "/^[0-9]+@/ REJECT\n/a\\/b/i 550 no\nif /x/\n/inner/ REJECT\nendif\n!/neg/ REJECT\nbare\n",
        );
        let keys: Vec<&Key> = t.entries.iter().map(|e| &e.key).collect();
        assert_eq!(
            keys[0],
            &Key::Regex {
                pattern: "^[0-9]+@".into(),
                flags: String::new()
            }
        );
        assert_eq!(
            keys[1],
            &Key::Regex {
                pattern: "a\\/b".into(),
                flags: "i".into()
            }
        );
        assert!(matches!(keys[2], Key::Unusable(_)));
        assert!(matches!(keys[3], Key::Unusable(w) if w.contains("inside")));
        assert!(matches!(keys[4], Key::Unusable(w) if w.contains("negated")));
        assert!(matches!(keys[5], Key::Unusable(_)));
        assert_eq!(t.entries.len(), 6);
    }

    #[test]
    fn inline_and_unreadable_tables() {
        let t = read(
            "inline:{ 192.0.2.1=OK, { 198.51.100.0 = REJECT no } }",
            &|_: &Path| Err(std::io::ErrorKind::NotFound.into()),
        )
        .unwrap();
        let pairs: Vec<(&Key, &Action)> = t.entries.iter().map(|e| (&e.key, &e.action)).collect();
        assert_eq!(pairs[0], (&Key::Plain("192.0.2.1".into()), &Action::Allow));
        assert_eq!(pairs.len(), 2);
        let err = read("mysql:/etc/postfix/x.cf", &|_: &Path| Ok(String::new())).err();
        assert_eq!(
            err.as_deref(),
            Some("mysql: tables are not read by the import")
        );
        let err = read("hash:/nope", &|_: &Path| {
            Err(std::io::ErrorKind::NotFound.into())
        })
        .err();
        assert!(err.unwrap().starts_with("cannot read /nope"));
    }
}
