//! Lines of mxguard's address lists (an exact address, `@domain` or
//! `/regex/` per line), made from qmail and Postfix entries and checked the
//! way mxguard will read them: a `#` starts a comment there, and a regex
//! must compile as a case-insensitive, linear-time pattern.

/// The compiled size mxguard allows a list regex (see `lists`).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why an entry cannot be a line of an mxguard list.
fn unfit(text: &str) -> Option<&'static str> {
    if text.contains('#') {
        Some("mxguard list files take `#` for the start of a comment")
    } else if text.chars().any(char::is_control) {
        Some("it holds control characters")
    } else {
        None
    }
}

/// `user@domain` as a list line.
pub fn exact(address: &str) -> Result<String, String> {
    if let Some(why) = unfit(address) {
        return Err(why.into());
    }
    match address.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty() && !address.contains(char::is_whitespace) && is_domain(domain) =>
        {
            Ok(address.to_ascii_lowercase())
        }
        _ => Err("it is not an address".into()),
    }
}

/// Every address at `domain` (exactly that domain), as a list line.
pub fn domain(domain: &str) -> Result<String, String> {
    if is_domain(domain) {
        Ok(format!(
            "@{}",
            crate::smtp::address::normalize_domain(domain)
        ))
    } else {
        Err("it is not a domain name".into())
    }
}

/// A regex as a list line, `/pattern/`, if mxguard can use it.
pub fn regex(pattern: &str) -> Result<String, String> {
    if let Some(why) = unfit(pattern) {
        return Err(why.into());
    }
    if pattern.trim().is_empty() {
        return Err("an empty pattern would match every address".into());
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("").trim().to_string();
            format!("mxguard cannot use this regex ({first})")
        })?;
    Ok(format!("/{pattern}/"))
}

/// The regex, as a list line, for every address in a subdomain of
/// `domain` (not the domain itself).
pub fn subdomains(domain: &str) -> Result<String, String> {
    if !is_domain(domain) {
        return Err("it is not a domain name".into());
    }
    // A host name's only regex character is the dot.
    let name = crate::smtp::address::normalize_domain(domain);
    regex(&format!(r"\.{}$", name.replace('.', r"\.")))
}

fn is_domain(name: &str) -> bool {
    crate::smtp::address::is_domain(&crate::smtp::address::normalize_domain(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_mxguard_reads_them() {
        assert_eq!(
            exact("Spammer@Example.NET"),
            Ok("spammer@example.net".into())
        );
        assert!(exact("no-at-sign").is_err());
        assert!(exact("a b@example.net").is_err());
        assert!(exact("a#b@example.net").unwrap_err().contains("comment"));
        assert!(exact("@example.net").is_err());
        assert_eq!(domain("Bulk.Example."), Ok("@bulk.example".into()));
        assert!(domain("not a domain").is_err());
        assert_eq!(
            regex("[a-z]+[0-9]+@example.com"),
            Ok("/[a-z]+[0-9]+@example.com/".into())
        );
        assert!(regex("(unclosed").unwrap_err().contains("cannot use"));
        assert!(regex("(?=lookahead)").is_err());
        assert!(regex("").is_err());
        assert_eq!(subdomains("example.com"), Ok(r"/\.example\.com$/".into()));
        assert_eq!(
            subdomains("bulk-mail.example"),
            Ok(r"/\.bulk-mail\.example$/".into())
        );
    }
}
