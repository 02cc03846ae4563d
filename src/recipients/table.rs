//! The recipient table file: one address or `@domain` per line, `#`
//! comments; reloaded on change (see [`crate::reload`]).

use crate::log::Logger;
use crate::reload::{lines, FileError, LineError, Reloadable};
use crate::smtp::address::{is_domain, normalize_domain, parse_mailbox, Mailbox};
use std::collections::HashSet;
use std::path::Path;

/// A hot-reloaded recipient table.
pub struct RecipientTable(Reloadable<HashSet<String>>);

impl RecipientTable {
    /// Loads the table; an unreadable or broken file is an error at start.
    pub fn open(path: &Path) -> Result<RecipientTable, FileError> {
        Reloadable::open("recipients.table", path, parse).map(RecipientTable)
    }

    /// Whether the table lists the mailbox or its `@domain`.
    pub fn contains(&self, mailbox: &Mailbox, log: &Logger) -> bool {
        let Some(domain) = mailbox.domain_name() else {
            return false;
        };
        let entries = self.0.current(log);
        let address = format!("{}@{}", mailbox.local_unquoted().to_lowercase(), domain);
        entries.contains(&address) || entries.contains(&format!("@{domain}"))
    }
}

fn parse(text: &str) -> Result<HashSet<String>, LineError> {
    let mut entries = HashSet::new();
    for (line, entry) in lines(text) {
        let syntax = || LineError {
            line,
            message: format!(
                "`{}` is neither an address nor @domain",
                entry.chars().take(80).collect::<String>()
            ),
        };
        let normal = match entry.strip_prefix('@') {
            Some(domain) => {
                let domain = normalize_domain(domain);
                if !is_domain(&domain) {
                    return Err(syntax());
                }
                format!("@{domain}")
            }
            None => {
                let m = parse_mailbox(entry).map_err(|_| syntax())?;
                let domain = m.domain_name().ok_or_else(syntax)?;
                format!("{}@{}", m.local_unquoted().to_lowercase(), domain)
            }
        };
        entries.insert(normal);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipients");
        std::fs::write(&path, "# users\nAlice@Example.com\n@catchall.example\n\n").unwrap();
        let table = RecipientTable::open(&path).unwrap();
        let log = Logger::discard();
        let has = |t: &RecipientTable, a: &str| t.contains(&parse_mailbox(a).unwrap(), &log);
        assert!(has(&table, "alice@example.com"));
        assert!(has(&table, "ALICE@EXAMPLE.COM"));
        assert!(!has(&table, "bob@example.com"));
        assert!(has(&table, "anyone@catchall.example"));
        std::fs::write(&path, "bob@example.com\n").unwrap();
        assert!(has(&table, "bob@example.com"));
        assert!(!has(&table, "alice@example.com"));
    }

    #[test]
    fn broken_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipients");
        std::fs::write(&path, "ok@example.com\nnot-an-address\n").unwrap();
        let err = RecipientTable::open(&path).err().unwrap().to_string();
        assert!(
            err.ends_with(":2: `not-an-address` is neither an address nor @domain"),
            "{err}"
        );
    }
}
