//! Postfix `main.cf` as the import reads it: `name = value` lines; a line
//! that starts with whitespace continues the one before; blank lines and
//! lines whose first non-blank character is `#` are ignored. Values are
//! expanded where simple — `$name`, `${name}`, `$(name)`, `${name?text}`,
//! `${name:text}`, `${name?{text}:{text}}` — from the file, or from the
//! Postfix defaults of the parameters the import reads. A reference that
//! cannot be expanded stays as written and is reported by name. The
//! parameters read are remembered, so the others can be reported.

use super::{ImportError, Input};
use std::collections::{BTreeMap, BTreeSet};

/// Expansions deeper than this are taken for a loop.
const MAX_DEPTH: usize = 10;
/// Lookups one expansion may make, and the longest value it may build.
const MAX_LOOKUPS: usize = 1_000;
const MAX_LEN: usize = 65_536;

/// One parameter as written.
#[derive(Debug, Clone)]
pub struct Param {
    pub value: String,
    /// The file (as named on the command line) and line it is set on.
    pub file: String,
    pub line: usize,
}

impl Param {
    /// `name = value (file:line)` as written, for comments.
    pub fn written(&self, name: &str) -> String {
        assignment(name, &self.value, &format!("{}:{}", self.file, self.line))
    }
}

/// `name = value (where)`, or `name = (where)` for an empty value.
fn assignment(name: &str, value: &str, place: &str) -> String {
    if value.is_empty() {
        format!("{name} = ({place})")
    } else {
        format!("{name} = {value} ({place})")
    }
}

/// A value after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub text: String,
    /// References left as written: not set, or a loop.
    pub unresolved: Vec<String>,
}

/// The lines of a Postfix configuration or table joined into logical
/// lines: (first line number, text). `Err(line)` for a continuation line
/// with nothing to continue.
pub fn logical_lines(text: &str) -> Result<Vec<(usize, String)>, usize> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with(char::is_whitespace) {
            match out.last_mut() {
                Some((_, line)) => {
                    line.push(' ');
                    line.push_str(trimmed);
                }
                None => return Err(i + 1),
            }
        } else {
            out.push((i + 1, trimmed.to_string()));
        }
    }
    Ok(out)
}

/// Splits a list value at commas and whitespace; `{ … }` stays one item
/// (without its braces), as in Postfix 3.
pub fn split_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '{' => {
                depth += 1;
                item.push(c);
            }
            '}' if depth > 0 => {
                depth -= 1;
                item.push(c);
            }
            c if depth == 0 && (c == ',' || c.is_whitespace()) => {
                if !item.is_empty() {
                    items.push(std::mem::take(&mut item));
                }
            }
            c => item.push(c),
        }
    }
    if !item.is_empty() {
        items.push(item);
    }
    items
        .into_iter()
        .map(
            |i| match i.strip_prefix('{').and_then(|i| i.strip_suffix('}')) {
                Some(inner) => inner.trim().to_string(),
                None => i,
            },
        )
        .collect()
}

/// The parameters of one or more main.cf files (a later file's setting
/// wins, as a later line does in one file).
pub struct MainCf {
    params: BTreeMap<String, Param>,
    /// The directory of the first file: `$config_directory`.
    config_directory: String,
    used: BTreeSet<String>,
}

impl MainCf {
    pub fn parse(inputs: &[Input]) -> Result<MainCf, ImportError> {
        let mut params = BTreeMap::new();
        for input in inputs {
            let syntax = |line: usize, message: String| ImportError::Syntax {
                file: input.name.clone(),
                line,
                message,
            };
            let lines = logical_lines(&input.text).map_err(|line| {
                syntax(
                    line,
                    "a continuation line (it starts with whitespace) before any parameter".into(),
                )
            })?;
            for (line, text) in lines {
                let Some((name, value)) = text.split_once('=') else {
                    return Err(syntax(line, format!("`{text}` has no `=`")));
                };
                let name = name.trim();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(syntax(line, format!("`{name}` is not a parameter name")));
                }
                params.insert(
                    name.to_string(),
                    Param {
                        value: value.trim().to_string(),
                        file: input.name.clone(),
                        line,
                    },
                );
            }
        }
        let config_directory = inputs
            .first()
            .and_then(|i| i.path.parent())
            .map(|p| p.display().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| ".".into());
        Ok(MainCf {
            params,
            config_directory,
            used: BTreeSet::new(),
        })
    }

    /// The parameter as written in the file, if it is (marked as read).
    pub fn raw(&mut self, name: &str) -> Option<Param> {
        let param = self.params.get(name)?.clone();
        self.used.insert(name.to_string());
        Some(param)
    }

    /// Whether the file sets `name`.
    pub fn is_set(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    /// Where `name` comes from: `name (main.cf:12)` or `name (Postfix
    /// default)`.
    pub fn origin(&self, name: &str) -> String {
        match self.params.get(name) {
            Some(p) => format!("{name} ({}:{})", p.file, p.line),
            None => format!("{name} (Postfix default)"),
        }
    }

    /// `name = value` as written, or the default, for comments.
    pub fn shown(&mut self, name: &str) -> String {
        let value = self.get(name).map(|e| e.text).unwrap_or_default();
        let place = match self.params.get(name) {
            Some(p) => format!("{}:{}", p.file, p.line),
            None => "Postfix default".into(),
        };
        assignment(name, &value, &place)
    }

    /// The expanded value of `name`: from the file, else its Postfix
    /// default when the import knows it.
    pub fn get(&mut self, name: &str) -> Option<Expanded> {
        let mut ex = Expander {
            lookups: 0,
            unresolved: Vec::new(),
        };
        let mut text = String::new();
        if !ex.lookup(self, name, 0, &mut text) {
            return None;
        }
        Some(Expanded {
            text,
            unresolved: ex.unresolved,
        })
    }

    /// The expanded value of `name` split into its items.
    pub fn list(&mut self, name: &str) -> Option<(Vec<String>, Vec<String>)> {
        self.get(name).map(|e| (split_list(&e.text), e.unresolved))
    }

    /// The parameters set in the files that nothing read.
    pub fn unused(&self) -> Vec<(String, Param)> {
        self.params
            .iter()
            .filter(|(name, _)| !self.used.contains(*name))
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect()
    }

    /// The value as written, else the Postfix default.
    fn value_of(&mut self, name: &str) -> Option<String> {
        if let Some(p) = self.params.get(name) {
            self.used.insert(name.to_string());
            return Some(p.value.clone());
        }
        let default = match name {
            "config_directory" => return Some(self.config_directory.clone()),
            "mydomain" => {
                let host = self.params.get("myhostname")?.value.clone();
                self.used.insert("myhostname".into());
                return host.split_once('.').map(|(_, d)| d.to_string());
            }
            "mydestination" => "$myhostname, localhost.$mydomain, localhost",
            "relay_domains" | "stress" => "",
            "unknown_client_reject_code"
            | "unknown_hostname_reject_code"
            | "unknown_address_reject_code" => "450",
            "invalid_hostname_reject_code" => "501",
            "non_fqdn_reject_code" => "504",
            "maps_rbl_reject_code" | "access_map_reject_code" => "554",
            "smtpd_delay_reject" => "yes",
            "soft_bounce" => "no",
            "postscreen_dnsbl_threshold" => "1",
            "postscreen_dnsbl_action" | "postscreen_greet_action" => "ignore",
            "postscreen_greet_wait" => "${stress?{2}:{6}}s",
            "anvil_rate_time_unit" => "60s",
            "parent_domain_matches_subdomains" => {
                "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, \
                 qmqpd_authorized_clients, relay_domains, smtpd_access_maps"
            }
            "smtpd_relay_restrictions" => {
                "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
            }
            _ => return None,
        };
        Some(default.to_string())
    }
}

struct Expander {
    lookups: usize,
    unresolved: Vec<String>,
}

impl Expander {
    fn give_up(&mut self, what: &str, out: &mut String, written: &str) {
        if !self.unresolved.iter().any(|u| u == what) {
            self.unresolved.push(what.to_string());
        }
        out.push_str(written);
    }

    /// Appends the expanded value of `name`; false when it has none.
    fn lookup(&mut self, cf: &mut MainCf, name: &str, depth: usize, out: &mut String) -> bool {
        self.lookups += 1;
        if depth > MAX_DEPTH || self.lookups > MAX_LOOKUPS || out.len() > MAX_LEN {
            self.give_up(name, out, &format!("${name}"));
            return true;
        }
        match cf.value_of(name) {
            Some(value) => {
                self.expand(cf, &value, depth + 1, out);
                true
            }
            None => false,
        }
    }

    fn expand(&mut self, cf: &mut MainCf, text: &str, depth: usize, out: &mut String) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if out.len() > MAX_LEN {
                self.give_up("(value too long)", out, "");
                return;
            }
            let c = chars[i];
            i += 1;
            if c != '$' {
                out.push(c);
                continue;
            }
            match chars.get(i) {
                Some('$') => {
                    out.push('$');
                    i += 1;
                }
                Some(c) if c.is_ascii_alphanumeric() || *c == '_' => {
                    let start = i;
                    while chars
                        .get(i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        i += 1;
                    }
                    let name: String = chars[start..i].iter().collect();
                    if !self.lookup(cf, &name, depth, out) {
                        self.give_up(&name, out, &format!("${name}"));
                    }
                }
                Some(&open @ ('{' | '(')) => {
                    let close = if open == '{' { '}' } else { ')' };
                    let Some(end) = matching(&chars, i, open, close) else {
                        let rest: String = chars[i - 1..].iter().collect();
                        self.give_up(&rest, out, &rest);
                        return;
                    };
                    let inner: String = chars[i + 1..end].iter().collect();
                    let written: String = chars[i - 1..=end].iter().collect();
                    i = end + 1;
                    self.braced(cf, &inner, &written, depth, out);
                }
                _ => out.push('$'),
            }
        }
    }

    /// `${name}`, `${name?text}`, `${name:text}`, `${name?{a}:{b}}`.
    fn braced(
        &mut self,
        cf: &mut MainCf,
        inner: &str,
        written: &str,
        depth: usize,
        out: &mut String,
    ) {
        let split = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        let (name, rest) = inner.split_at(split);
        if name.is_empty() {
            return self.give_up(written, out, written);
        }
        if rest.is_empty() {
            if !self.lookup(cf, name, depth, out) {
                self.give_up(name, out, written);
            }
            return;
        }
        if depth > MAX_DEPTH || self.lookups > MAX_LOOKUPS {
            return self.give_up(name, out, written);
        }
        self.lookups += 1;
        let set = match cf.value_of(name) {
            Some(v) => {
                let mut value = String::new();
                self.expand(cf, &v, depth + 1, &mut value);
                !value.is_empty()
            }
            None => false,
        };
        let (when_set, when_unset) = if let Some(text) = rest.strip_prefix('?') {
            two_branches(text).unwrap_or_else(|| (text.to_string(), String::new()))
        } else if let Some(text) = rest.strip_prefix(':') {
            (String::new(), text.to_string())
        } else {
            return self.give_up(written, out, written);
        };
        let chosen = if set { when_set } else { when_unset };
        self.expand(cf, &chosen, depth + 1, out);
    }
}

/// The index of the bracket closing the one at `open_at`.
fn matching(chars: &[char], open_at: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in chars.iter().enumerate().skip(open_at) {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// `{a}:{b}` → (a, b).
fn two_branches(text: &str) -> Option<(String, String)> {
    let chars: Vec<char> = text.trim().chars().collect();
    if chars.first() != Some(&'{') {
        return None;
    }
    let end_a = matching(&chars, 0, '{', '}')?;
    if chars.get(end_a + 1) != Some(&':') || chars.get(end_a + 2) != Some(&'{') {
        return None;
    }
    let end_b = matching(&chars, end_a + 2, '{', '}')?;
    if end_b + 1 != chars.len() {
        return None;
    }
    Some((
        chars[1..end_a].iter().collect(),
        chars[end_a + 3..end_b].iter().collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cf(text: &str) -> MainCf {
        MainCf::parse(&[Input {
            name: "main.cf".into(),
            path: PathBuf::from("/etc/postfix/main.cf"),
            text: text.into(),
        }])
        .unwrap()
    }

    #[test]
    fn continuation_lines_and_comments() {
        let mut c =
            cf("# comment\na = one,\n    two\n  # indented comment\n\tthree\n\nb=x\nb = y\n");
        assert_eq!(c.get("a").unwrap().text, "one, two three");
        assert_eq!(c.list("a").unwrap().0, vec!["one", "two", "three"]);
        assert_eq!(c.get("b").unwrap().text, "y");
        assert_eq!(c.origin("b"), "b (main.cf:8)");
        assert_eq!(c.origin("zz"), "zz (Postfix default)");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let parse = |text: &str| {
            MainCf::parse(&[Input {
                name: "main.cf".into(),
                path: PathBuf::from("main.cf"),
                text: text.into(),
            }])
            .err()
            .unwrap()
            .to_string()
        };
        assert_eq!(
            parse("a = 1\nno equals sign\n"),
            "main.cf:2: `no equals sign` has no `=`"
        );
        assert!(parse("  indented = 1\n").starts_with("main.cf:1: a continuation line"));
        assert!(parse("bad name = 1\n").starts_with("main.cf:1: `bad name` is not"));
    }

    #[test]
    fn references_are_expanded() {
        let mut c = cf(
            "myhostname = mx.example.com\nmydestination = $myhostname, localhost.$mydomain, ${x}, $(y)\n\
             x = X\ny = Y\nuse = ${x?set} ${nothing?set} ${nothing:unset} ${x:unset}\n\
             two = ${x?{a}:{b}} ${nothing?{a}:{b}}\nloop = $loop\nmissing = $nope $$ $\n\
             odd = ${x€} ${x\n",
        );
        assert_eq!(
            c.get("mydestination").unwrap().text,
            "mx.example.com, localhost.example.com, X, Y"
        );
        assert_eq!(c.get("use").unwrap().text, "set  unset ");
        assert_eq!(c.get("two").unwrap().text, "a b");
        let looped = c.get("loop").unwrap();
        assert_eq!(looped.unresolved, vec!["loop".to_string()]);
        let missing = c.get("missing").unwrap();
        assert_eq!(missing.text, "$nope $ $");
        assert_eq!(missing.unresolved, vec!["nope".to_string()]);
        let odd = c.get("odd").unwrap();
        assert_eq!(odd.text, "${x€} ${x");
        assert_eq!(odd.unresolved.len(), 2);
        assert_eq!(c.get("config_directory").unwrap().text, "/etc/postfix");
        assert_eq!(c.get("postscreen_greet_wait").unwrap().text, "6s");
        assert!(c.get("not_a_default").is_none());
        let unused: Vec<String> = c.unused().into_iter().map(|(n, _)| n).collect();
        assert_eq!(unused, Vec::<String>::new());
    }

    #[test]
    fn expansion_is_bounded() {
        let mut text = String::from("a0 = x\n");
        for i in 1..30 {
            let prev = format!("$a{}", i - 1);
            text.push_str(&format!("a{i} = {}\n", [prev.as_str(); 8].join("")));
        }
        let mut c = cf(&text);
        let e = c.get("a29").unwrap();
        assert!(!e.unresolved.is_empty());
        assert!(e.text.len() < 2 * MAX_LEN);
        let mut empty = String::from("e0 =\n");
        for i in 1..30 {
            empty.push_str(&format!("e{i} = {}\n", format!("$e{}", i - 1).repeat(8)));
        }
        let mut c = cf(&empty);
        assert!(!c.get("e29").unwrap().unresolved.is_empty());
    }

    #[test]
    fn lists_keep_braced_items() {
        assert_eq!(
            split_list("check_policy_service { inet:127.0.0.1:10023, timeout=10s }, permit"),
            vec![
                "check_policy_service",
                "inet:127.0.0.1:10023, timeout=10s",
                "permit"
            ]
        );
        assert_eq!(split_list(" a ,, b\tc "), vec!["a", "b", "c"]);
    }
}
