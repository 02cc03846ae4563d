//! Delivery status notifications (RFC 3464, `multipart/report`), made only
//! for a sender verified for the message — the rest of the time a failed
//! message goes to the quarantine, so mxguard never bounces to a forged
//! sender.

use crate::spool::Envelope;
use std::fmt::Write as _;

/// The headers of the original message (up to the first empty line),
/// bounded so a bounce never carries a whole message back.
fn original_headers(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 2);
    &message[..end.min(64 * 1024)]
}

/// The DSN for `failed` recipients (address, the downstream's reply).
pub fn build(
    hostname: &str,
    envelope: &Envelope,
    failed: &[(String, String)],
    message: &[u8],
    id: &str,
) -> Vec<u8> {
    let boundary = format!("{id}/{hostname}");
    let now = crate::time::rfc5322(crate::time::now());
    let arrival = crate::time::rfc5322(crate::time::from_unix(envelope.arrival));
    let sender = envelope.from.trim_start_matches('<').trim_end_matches('>');
    let mut out = String::new();
    let _ = write!(
        out,
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {now}\r\n\
         Message-ID: <{id}.dsn@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         It was accepted by {hostname}; the mail server behind it refused it:\r\n\
         \r\n"
    );
    for (rcpt, why) in failed {
        let _ = write!(out, "<{rcpt}>: {why}\r\n");
    }
    let _ = write!(
        out,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         X-Mxguard-Queue-ID: {}\r\n\
         Arrival-Date: {arrival}\r\n",
        envelope.id
    );
    for (rcpt, why) in failed {
        let status = why
            .split(' ')
            .nth(1)
            .filter(|s| s.starts_with("5.") && s.split('.').count() == 3)
            .unwrap_or("5.0.0");
        let _ = write!(
            out,
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {why}\r\n"
        );
    }
    let _ = write!(
        out,
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    );
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(original_headers(message));
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_report() {
        let envelope = Envelope {
            arrival: 1_795_964_515,
            from: "<a@client.example>".into(),
            rcpts: vec!["gone@example.com".into()],
            ..crate::spool::test_envelope()
        };
        let failed = vec![(
            "gone@example.com".to_string(),
            "550 5.1.1 no such user".to_string(),
        )];
        let dsn = String::from_utf8(build(
            "mx.example",
            &envelope,
            &failed,
            b"Subject: hi\r\nX: y\r\n\r\nbody\r\n",
            "ID1",
        ))
        .unwrap();
        assert!(dsn.contains("To: <a@client.example>\r\n"));
        assert!(dsn.contains("Content-Type: multipart/report; report-type=delivery-status; boundary=\"ID1/mx.example\""));
        assert!(dsn.contains("\r\nFinal-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(dsn.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\nX: y\r\n\r\n--ID1/mx.example--\r\n"));
        assert!(!dsn.contains("body"), "the body is not sent back");
        assert!(dsn.lines().all(|l| !l.contains('\n')));
    }
}
