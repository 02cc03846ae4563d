//! Reading the authserv-id of an `Authentication-Results:` header field
//! (RFC 8601 section 2.2), so that a header claiming to be our own verdict
//! is recognised however it is written: folded, after comments, quoted,
//! in any case, with a trailing dot.
//!
//! ```text
//! authres-payload = [CFWS] authserv-id [ CFWS authres-version ] ...
//! authserv-id     = value            ; RFC 2045: token / quoted-string
//! ```

/// Whether a header field is `Authentication-Results` (the name as it
/// stands before the colon, obsolete spaces allowed).
pub fn is_auth_results(name: &[u8]) -> bool {
    name.trim_ascii()
        .eq_ignore_ascii_case(b"authentication-results")
}

/// Whether the value of an `Authentication-Results:` field speaks for
/// `hostname`: its authserv-id is `hostname` (case and a trailing dot
/// aside), or — for a value that does not parse — `hostname` appears in
/// it at all, so that no lenient reader downstream can find it there.
pub fn claims(value: &[u8], hostname: &str) -> bool {
    let ours = normalize(hostname.as_bytes());
    match authserv_id(value) {
        Some(id) => normalize(&id) == ours,
        None => {
            let unfolded = value.to_ascii_lowercase();
            !ours.is_empty() && unfolded.windows(ours.len()).any(|w| w == ours.as_slice())
        }
    }
}

/// Lower case, without one trailing dot.
fn normalize(id: &[u8]) -> Vec<u8> {
    let id = id.strip_suffix(b".").unwrap_or(id);
    id.to_ascii_lowercase()
}

/// The authserv-id of a field value (folded or not), unquoted; `None` when
/// the value does not start with one.
pub fn authserv_id(value: &[u8]) -> Option<Vec<u8>> {
    let mut at = skip_cfws(value, 0)?;
    match value.get(at)? {
        b'"' => {
            let mut id = Vec::new();
            at += 1;
            loop {
                match *value.get(at)? {
                    b'"' => break,
                    b'\\' => {
                        id.push(*value.get(at + 1)?);
                        at += 2;
                    }
                    b'\r' | b'\n' => at += 1,
                    b => {
                        id.push(b);
                        at += 1;
                    }
                }
            }
            Some(id).filter(|id| !id.is_empty())
        }
        _ => {
            let end = value[at..]
                .iter()
                .position(|&b| !is_token_byte(b))
                .map_or(value.len(), |i| at + i);
            Some(value[at..end].to_vec()).filter(|id| !id.is_empty())
        }
    }
}

/// RFC 2045 token characters: printable ASCII but tspecials (and any
/// UTF-8 byte, which RFC 8601 with RFC 6532 allows in the id).
fn is_token_byte(b: u8) -> bool {
    const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";
    b >= 0x80 || (b.is_ascii_graphic() && !TSPECIALS.contains(&b))
}

/// The position after comments and folding white space from `at`; `None`
/// when a comment never closes.
fn skip_cfws(value: &[u8], mut at: usize) -> Option<usize> {
    loop {
        match value.get(at) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => at += 1,
            Some(b'(') => at = skip_comment(value, at)?,
            _ => return Some(at),
        }
    }
}

/// The position after the comment opening at `at` (comments nest, and a
/// backslash quotes the next byte).
fn skip_comment(value: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *value.get(at)? {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            b'\\' => at += 1,
            _ => {}
        }
        at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> Option<String> {
        authserv_id(value.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    #[test]
    fn the_id_is_found_however_it_is_written() {
        assert_eq!(id(" mx.test; dkim=pass").as_deref(), Some("mx.test"));
        assert_eq!(
            id("\r\n\tmx.test;\r\n spf=pass").as_deref(),
            Some("mx.test")
        );
        assert_eq!(id(" (x) mx.test; none").as_deref(), Some("mx.test"));
        assert_eq!(
            id(" (a (nested) \\) one) mx.test 1; none").as_deref(),
            Some("mx.test")
        );
        assert_eq!(id(" \"mx.test\"; none").as_deref(), Some("mx.test"));
        assert_eq!(id(" \"m\\x.te\r\n st\"; none").as_deref(), Some("mx.te st"));
        assert_eq!(id(" mx.test.;").as_deref(), Some("mx.test."));
        assert_eq!(id(" ; none"), None);
        assert_eq!(id(" (never closed mx.test"), None);
        assert_eq!(id(" \"never closed"), None);
        assert_eq!(id(""), None);
    }

    #[test]
    fn a_claim_is_ours_in_any_case_and_with_a_trailing_dot() {
        for value in [
            " mx.test; dkim=pass",
            " MX.Test; dkim=pass",
            "\r\n mx.test;",
            " (x) mx.test;",
            " \"mx.test\";",
            " mx.test.;",
            " mx.test 1; none",
        ] {
            assert!(claims(value.as_bytes(), "mx.test"), "{value:?}");
        }
        for value in [
            " other.test; dkim=pass",
            " (mx.test) other.test; none",
            " mx.test.example; none",
            " xmx.test; none",
        ] {
            assert!(!claims(value.as_bytes(), "mx.test"), "{value:?}");
        }
    }

    #[test]
    fn a_value_that_does_not_parse_must_not_mention_us() {
        assert!(claims(b" ; mx.test dkim=pass", "mx.test"));
        assert!(claims(b" (unclosed MX.TEST", "mx.test"));
        assert!(!claims(b" ; dkim=pass", "mx.test"));
        assert!(is_auth_results(b"Authentication-Results"));
        assert!(is_auth_results(b"authentication-results \t"));
        assert!(!is_auth_results(b"X-Authentication-Results"));
    }
}
