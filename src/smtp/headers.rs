//! Header edits on a received message: removing `Authentication-Results:`
//! headers that claim our host name (RFC 8601 section 5), so that nothing
//! from outside can pose as our own verdict to the mail server behind us.

/// The message with every Authentication-Results header whose authserv-id
/// is `hostname` removed (with its folded continuation lines). Only the
/// header block at the start of `message` is looked at.
pub fn strip_our_auth_results(message: &[u8], hostname: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    let mut dropping = false;
    while pos < message.len() {
        let end = message[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(message.len(), |i| pos + i + 2);
        let line = &message[pos..end];
        if line == b"\r\n" {
            // The end of the header block: the rest goes as it is.
            out.extend_from_slice(&message[pos..]);
            return out;
        }
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            dropping = claims(line, hostname);
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out
}

/// `Authentication-Results: <hostname>` (any case, any spacing).
fn claims(line: &[u8], hostname: &str) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    if !line[..colon]
        .trim_ascii()
        .eq_ignore_ascii_case(b"authentication-results")
    {
        return false;
    }
    let value = line[colon + 1..].trim_ascii_start();
    let id_end = value
        .iter()
        .position(|b| *b == b';' || b.is_ascii_whitespace())
        .unwrap_or(value.len());
    value[..id_end].eq_ignore_ascii_case(hostname.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_claims_go() {
        let message = b"Received: x\r\nAuthentication-Results: MX.test; dkim=pass\r\n  header.d=evil.test\r\nAuthentication-Results: other.test; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.test; in the body stays\r\n";
        let out = strip_our_auth_results(message, "mx.test");
        assert_eq!(
            out,
            b"Received: x\r\nAuthentication-Results: other.test; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.test; in the body stays\r\n"
        );
        assert_eq!(strip_our_auth_results(b"", "mx.test"), b"");
    }
}
