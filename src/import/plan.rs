//! What an import will write, before it is written: mxguard settings with
//! where each came from, DNS lists, list files to create, and what was left
//! out or has no translation. The translators fill a [`Plan`]; `render`
//! turns it into TOML.

/// The sections the import may write, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Relay,
    Policy,
    Checks,
    Lists,
    Limits,
    Abuse,
    Greylist,
    Tls,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Relay => "relay",
            Section::Policy => "policy",
            Section::Checks => "checks",
            Section::Lists => "lists",
            Section::Limits => "limits",
            Section::Abuse => "abuse",
            Section::Greylist => "greylist",
            Section::Tls => "tls",
        }
    }
}

/// A check's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Reject,
    Tempfail,
    Warn,
}

impl Act {
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Reject => "reject",
            Act::Tempfail => "tempfail",
            Act::Warn => "warn",
        }
    }

    /// The action for an SMTP reply code: 4xx tempfails, 5xx rejects.
    pub fn from_code(code: &str) -> Option<Act> {
        let code = code.trim();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match code.as_bytes()[0] {
            b'4' => Some(Act::Tempfail),
            b'5' => Some(Act::Reject),
            _ => None,
        }
    }
}

/// What a check does on a DNS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDnsError {
    Tempfail,
}

impl OnDnsError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDnsError::Tempfail => "tempfail",
        }
    }
}

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
    Strs(Vec<String>),
    /// A check's action.
    Check(Act),
}

impl Value {
    pub fn check(action: Act) -> Value {
        Value::Check(action)
    }
}

/// How sure a translation is: an exact one replaces an approximate one
/// of the same key; between equals, the first stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    Approximate,
    Exact,
}

/// One key to write, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub section: Section,
    pub key: String,
    pub value: Value,
    pub from: Vec<String>,
    pub notes: Vec<String>,
    fit: Fit,
}

/// One `[[dnsbl]]` or `[[rhsbl]]` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Zone {
    pub zone: String,
    pub codes: Vec<String>,
    pub action: Option<Act>,
    pub weight: Option<i64>,
    pub message: Option<String>,
    pub on_dns_error: Option<OnDnsError>,
    pub from: Vec<String>,
    pub notes: Vec<String>,
}

/// A list file mxguard needs that the sources do not have as they are:
/// its lines are written into the output for the user to save.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFile {
    /// File name, relative to the configuration file.
    pub name: &'static str,
    /// The key that names it, e.g. `lists.sender_blocklist`.
    pub key: &'static str,
    pub lines: Vec<String>,
}

/// Everything the import found.
#[derive(Debug, Default)]
pub struct Plan {
    entries: Vec<Entry>,
    pub dnsbl: Vec<Zone>,
    pub rhsbl: Vec<Zone>,
    pub files: Vec<NewFile>,
    /// Settings of this host the user writes themselves (`[server]`).
    pub host_hints: Vec<String>,
    /// Translated in effect by what mxguard always does.
    pub covered: Vec<String>,
    /// Dead or hijacked DNS lists, never imported.
    pub left_out: Vec<String>,
    /// No translation, with the reason.
    pub not_translated: Vec<String>,
}

impl Plan {
    /// Sets `section.key`. A second setting of the same key keeps the
    /// better fit (the first between equals) and says what it overrode.
    pub fn set(&mut self, section: Section, key: &str, value: Value, from: String, fit: Fit) {
        let Some(old) = self
            .entries
            .iter_mut()
            .find(|e| e.section == section && e.key == key)
        else {
            self.entries.push(Entry {
                section,
                key: key.to_string(),
                value,
                from: vec![from],
                notes: Vec::new(),
                fit,
            });
            return;
        };
        if old.value == value {
            if !old.from.contains(&from) {
                old.from.push(from);
            }
            return;
        }
        let shown = |v: &Value| crate::import::render::value(v);
        if fit > old.fit {
            let note = format!(
                "instead of {} from {}",
                shown(&old.value),
                old.from.join(", ")
            );
            old.value = value;
            old.from = vec![from];
            old.notes.push(note);
            old.fit = fit;
        } else {
            old.notes
                .push(format!("{from} would say {}: not taken", shown(&value)));
        }
    }

    /// Adds `item` to the list `section.key` (once), noting `from`.
    pub fn push(&mut self, section: Section, key: &str, item: String, from: String) {
        match self
            .entries
            .iter_mut()
            .find(|e| e.section == section && e.key == key)
        {
            Some(entry) => {
                if let Value::Strs(items) = &mut entry.value {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                if !entry.from.contains(&from) {
                    entry.from.push(from);
                }
            }
            None => self.entries.push(Entry {
                section,
                key: key.to_string(),
                value: Value::Strs(vec![item]),
                from: vec![from],
                notes: Vec::new(),
                fit: Fit::Exact,
            }),
        }
    }

    /// Adds a note to `section.key`, if it is set.
    pub fn note(&mut self, section: Section, key: &str, note: String) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.section == section && e.key == key)
        {
            if !entry.notes.contains(&note) {
                entry.notes.push(note);
            }
        }
    }

    /// The entries, grouped by section in writing order, each section in
    /// the order its keys were first set.
    pub fn entries(&self) -> Vec<&Entry> {
        let mut sorted: Vec<&Entry> = self.entries.iter().collect();
        sorted.sort_by_key(|e| e.section);
        sorted
    }

    /// Adds a DNS list; the same table twice becomes one, with both origins.
    pub fn add_zone(&mut self, rhs: bool, zone: Zone) {
        let list = if rhs {
            &mut self.rhsbl
        } else {
            &mut self.dnsbl
        };
        let same = |z: &Zone| {
            z.zone == zone.zone
                && z.codes == zone.codes
                && z.action == zone.action
                && z.weight == zone.weight
                && z.message == zone.message
                && z.on_dns_error == zone.on_dns_error
        };
        match list.iter_mut().find(|z| same(z)) {
            Some(old) => {
                for from in zone.from {
                    if !old.from.contains(&from) {
                        old.from.push(from);
                    }
                }
            }
            None => list.push(zone),
        }
    }

    /// The lines of a new list file (created empty on first use).
    pub fn file(&mut self, name: &'static str, key: &'static str) -> &mut Vec<String> {
        let index = match self.files.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.files.push(NewFile {
                    name,
                    key,
                    lines: Vec::new(),
                });
                self.files.len() - 1
            }
        };
        &mut self.files[index].lines
    }

    pub fn not_translated(&mut self, text: String) {
        if !self.not_translated.contains(&text) {
            self.not_translated.push(text);
        }
    }

    pub fn covered(&mut self, text: String) {
        if !self.covered.contains(&text) {
            self.covered.push(text);
        }
    }

    pub fn left_out(&mut self, text: String) {
        if !self.left_out.contains(&text) {
            self.left_out.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_fit_replaces_approximate_and_says_so() {
        let mut plan = Plan::default();
        let key = "sender_domain";
        plan.set(
            Section::Checks,
            key,
            Value::check(Act::Reject),
            "a".into(),
            Fit::Approximate,
        );
        plan.set(
            Section::Checks,
            key,
            Value::check(Act::Tempfail),
            "b".into(),
            Fit::Exact,
        );
        plan.set(
            Section::Checks,
            key,
            Value::check(Act::Reject),
            "c".into(),
            Fit::Approximate,
        );
        let entries = plan.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].value, Value::check(Act::Tempfail));
        assert_eq!(entries[0].from, vec!["b".to_string()]);
        assert_eq!(
            entries[0].notes,
            vec![
                "instead of \"reject\" from a".to_string(),
                "c would say \"reject\": not taken".to_string()
            ]
        );
    }

    #[test]
    fn same_value_merges_origins_and_lists_stay_unique() {
        let mut plan = Plan::default();
        for from in ["x", "y"] {
            plan.set(
                Section::Checks,
                "helo",
                Value::check(Act::Reject),
                from.into(),
                Fit::Approximate,
            );
            plan.push(Section::Relay, "domains", "a.test".into(), from.into());
        }
        let entries = plan.entries();
        assert_eq!(entries[0].section, Section::Relay);
        assert_eq!(entries[0].value, Value::Strs(vec!["a.test".into()]));
        assert_eq!(entries[1].from, vec!["x".to_string(), "y".to_string()]);
    }

    #[test]
    fn codes_give_actions() {
        assert_eq!(Act::from_code("450"), Some(Act::Tempfail));
        assert_eq!(Act::from_code("554"), Some(Act::Reject));
        assert_eq!(Act::from_code("250"), None);
        assert_eq!(Act::from_code("5x0"), None);
    }
}
