//! The `Received:` trace header (RFC 5321 section 4.4) mxguard prepends to
//! every accepted message.

use std::net::IpAddr;
use std::time::SystemTime;

/// What the header says about one transaction.
pub struct Trace<'a> {
    pub helo: &'a str,
    pub client: IpAddr,
    pub hostname: &'a str,
    pub esmtp: bool,
    /// The transaction was given SMTPUTF8 (RFC 6531's `UTF8SMTP`).
    pub smtputf8: bool,
    pub tls: bool,
    pub id: &'a str,
    /// Named only when there is exactly one, as Postfix does.
    pub rcpts: &'a [String],
    pub time: SystemTime,
}

/// The header, folded, CRLF-terminated.
pub fn header(t: &Trace) -> String {
    let literal = match t.client {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    let with = match (t.smtputf8, t.esmtp, t.tls) {
        (true, _, true) => "UTF8SMTPS",
        (true, _, false) => "UTF8SMTP",
        (false, true, true) => "ESMTPS",
        (false, true, false) => "ESMTP",
        (false, false, true) => "SMTPS",
        (false, false, false) => "SMTP",
    };
    let helo = if t.helo.is_empty() { "unknown" } else { t.helo };
    let mut out = format!(
        "Received: from {helo} ({literal})\r\n\tby {} (mxguard) with {with} id {}",
        t.hostname, t.id
    );
    if let [only] = t.rcpts {
        out.push_str(&format!("\r\n\tfor <{only}>"));
    }
    out.push_str(&format!("; {}\r\n", crate::time::rfc5322(t.time)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn one_recipient_is_named() {
        let rcpts = vec!["b@example.com".to_string()];
        let h = header(&Trace {
            helo: "client.example",
            client: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example.com",
            esmtp: true,
            smtputf8: false,
            tls: true,
            id: "ABC",
            rcpts: &rcpts,
            time: UNIX_EPOCH + Duration::from_secs(1_795_964_515),
        });
        assert_eq!(
            h,
            "Received: from client.example ([192.0.2.1])\r\n\tby mx.example.com (mxguard) with ESMTPS id ABC\r\n\tfor <b@example.com>; Sun, 29 Nov 2026 15:01:55 +0000\r\n"
        );
    }
}
