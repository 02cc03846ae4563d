//! The readable parts of a queue entry: the [`Envelope`] written at the head
//! of the queue file, and the [`DeliveryState`] kept beside it once a
//! delivery attempt has happened. Both are `key: value` lines a person can
//! read with `cat` and `mxguard queue show`.

use super::id::QueueId;
use crate::smtp::command::{DsnRequest, RcptParams};
use std::fmt::Write as _;
use std::net::IpAddr;

/// The first line of every queue file.
pub const MAGIC: &str = "mxguard-queue-file 1";

/// Who sent the message and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: QueueId,
    /// Seconds since the Unix epoch.
    pub arrival: u64,
    pub client: IpAddr,
    pub helo: String,
    /// With angle brackets; `<>` for the null sender.
    pub from: String,
    pub body_8bit: bool,
    /// Mailboxes without angle brackets.
    pub rcpts: Vec<String>,
    /// Given with `SMTPUTF8`: addresses and headers may be UTF-8.
    pub smtputf8: bool,
    /// What the sender asked of delivery status notifications.
    pub dsn: DsnRequest,
    /// The client's verified name as the session knew it (XCLIENT's
    /// `NAME`: a forward-confirmed name, or `[UNAVAILABLE]`).
    pub client_name: Option<String>,
    /// Greeted with EHLO (ESMTP) rather than HELO.
    pub esmtp: bool,
}

/// Delivery progress of one queue entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryState {
    pub attempts: u32,
    /// Seconds since the Unix epoch; 0 means now.
    pub next_attempt: u64,
    pub delivered: Vec<String>,
    /// Recipient and the reason it can never be delivered.
    pub failed: Vec<(String, String)>,
    pub last_error: Option<String>,
}

/// A queue file that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("malformed queue file: {0}")]
pub struct FormatError(pub &'static str);

/// Values come from validated SMTP input; this keeps the format safe even so.
fn clean(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

impl Envelope {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256);
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(out, "id: {}", self.id);
        let _ = writeln!(out, "arrival: {}", self.arrival);
        let _ = writeln!(out, "client: {}", self.client);
        let _ = writeln!(out, "helo: {}", clean(&self.helo));
        let _ = writeln!(out, "from: {}", clean(&self.from));
        let _ = writeln!(
            out,
            "body: {}",
            if self.body_8bit { "8bitmime" } else { "7bit" }
        );
        for rcpt in &self.rcpts {
            let _ = writeln!(out, "rcpt: {}", clean(rcpt));
        }
        if self.smtputf8 {
            let _ = writeln!(out, "smtputf8: yes");
        }
        if !self.esmtp {
            let _ = writeln!(out, "proto: SMTP");
        }
        if let Some(name) = &self.client_name {
            let _ = writeln!(out, "client_name: {}", clean(name));
        }
        if let Some(ret) = &self.dsn.ret {
            let _ = writeln!(out, "ret: {}", clean(ret));
        }
        if let Some(envid) = &self.dsn.envid {
            let _ = writeln!(out, "envid: {}", clean(envid));
        }
        // A recipient holds no tab (the parser allows none in a path).
        for (rcpt, params) in &self.dsn.rcpts {
            let _ = writeln!(
                out,
                "rcpt_dsn: {}\t{}\t{}",
                clean(rcpt),
                clean(params.notify.as_deref().unwrap_or("-")),
                clean(params.orcpt.as_deref().unwrap_or("-"))
            );
        }
        out.push('\n');
        out
    }

    /// Parses a queue file; returns the envelope and where the message starts.
    pub fn parse(file: &[u8]) -> Result<(Envelope, usize), FormatError> {
        let end = file
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or(FormatError("no end of envelope"))?;
        let head =
            std::str::from_utf8(&file[..end]).map_err(|_| FormatError("envelope is not text"))?;
        let mut lines = head.lines();
        if lines.next() != Some(MAGIC) {
            return Err(FormatError("not a mxguard queue file"));
        }
        let (mut id, mut arrival, mut client, mut helo, mut from) = (None, None, None, None, None);
        let mut body_8bit = false;
        let mut rcpts = Vec::new();
        let (mut smtputf8, mut esmtp, mut client_name) = (false, true, None);
        let mut dsn = DsnRequest::default();
        for line in lines {
            let (key, value) = line
                .split_once(": ")
                .ok_or(FormatError("line without key"))?;
            match key {
                "id" => id = QueueId::parse(value),
                "arrival" => arrival = value.parse().ok(),
                "client" => client = value.parse().ok(),
                "helo" => helo = Some(value.to_string()),
                "from" => from = Some(value.to_string()),
                "body" => body_8bit = value == "8bitmime",
                "rcpt" => rcpts.push(value.to_string()),
                "smtputf8" => smtputf8 = value == "yes",
                "proto" => esmtp = value != "SMTP",
                "client_name" => client_name = Some(value.to_string()),
                "ret" => dsn.ret = Some(value.to_string()),
                "envid" => dsn.envid = Some(value.to_string()),
                "rcpt_dsn" => {
                    let mut fields = value.split('\t');
                    let rcpt = fields.next().unwrap_or("").to_string();
                    let mut given = || fields.next().filter(|f| *f != "-").map(str::to_string);
                    let (notify, orcpt) = (given(), given());
                    dsn.rcpts.push((rcpt, RcptParams { notify, orcpt }));
                }
                _ => {}
            }
        }
        let envelope = Envelope {
            id: id.ok_or(FormatError("bad or missing id"))?,
            arrival: arrival.ok_or(FormatError("bad or missing arrival"))?,
            client: client.ok_or(FormatError("bad or missing client"))?,
            helo: helo.unwrap_or_default(),
            from: from.ok_or(FormatError("missing from"))?,
            body_8bit,
            rcpts,
            smtputf8,
            dsn,
            client_name,
            esmtp,
        };
        if envelope.rcpts.is_empty() {
            return Err(FormatError("no recipients"));
        }
        Ok((envelope, end + 2))
    }
}

impl DeliveryState {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "attempts: {}", self.attempts);
        let _ = writeln!(out, "next_attempt: {}", self.next_attempt);
        for rcpt in &self.delivered {
            let _ = writeln!(out, "delivered: {}", clean(rcpt));
        }
        for (rcpt, why) in &self.failed {
            let _ = writeln!(out, "failed: {} {}", clean(rcpt), clean(why));
        }
        if let Some(e) = &self.last_error {
            let _ = writeln!(out, "last_error: {}", clean(e));
        }
        out
    }

    /// Parses a state file; unknown or broken lines are skipped, so a damaged
    /// state never loses the message (at worst a recipient gets it twice).
    pub fn parse(text: &str) -> DeliveryState {
        let mut state = DeliveryState::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            match key {
                "attempts" => state.attempts = value.parse().unwrap_or(0),
                "next_attempt" => state.next_attempt = value.parse().unwrap_or(0),
                "delivered" => state.delivered.push(value.to_string()),
                "failed" => {
                    let (rcpt, why) = value.split_once(' ').unwrap_or((value, ""));
                    state.failed.push((rcpt.to_string(), why.to_string()));
                }
                "last_error" => state.last_error = Some(value.to_string()),
                _ => {}
            }
        }
        state
    }

    /// Recipients of `envelope` neither delivered nor failed.
    pub fn pending<'a>(&self, envelope: &'a Envelope) -> Vec<&'a str> {
        envelope
            .rcpts
            .iter()
            .filter(|r| !self.delivered.contains(r) && !self.failed.iter().any(|(f, _)| f == *r))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            body_8bit: true,
            rcpts: vec!["b@example.com".into(), "c@example.com".into()],
            ..crate::spool::test_envelope()
        }
    }

    #[test]
    fn utf8_dsn_and_origin_survive_the_round_trip() {
        let mut e = envelope();
        e.rcpts.push("用户@xn--fsqu00a.xn--0zwm56d".into());
        e.smtputf8 = true;
        e.esmtp = false;
        e.client_name = Some("mail.client.example".into());
        e.dsn = DsnRequest {
            ret: Some("HDRS".into()),
            envid: Some("QQ314159".into()),
            rcpts: vec![(
                "b@example.com".into(),
                RcptParams {
                    notify: Some("NEVER".into()),
                    orcpt: None,
                },
            )],
        };
        let (parsed, _) = Envelope::parse(e.render().as_bytes()).unwrap();
        assert_eq!(parsed, e);
        assert_eq!(
            parsed.dsn.rcpt("b@example.com").unwrap().notify.as_deref(),
            Some("NEVER")
        );
        assert!(parsed.dsn.rcpt("c@example.com").is_none());
    }

    #[test]
    fn envelope_round_trip() {
        let e = envelope();
        let mut file = e.render().into_bytes();
        file.extend_from_slice(b"Subject: hi\r\n\r\nbody\r\n");
        let (parsed, start) = Envelope::parse(&file).unwrap();
        assert_eq!(parsed, e);
        assert_eq!(&file[start..], b"Subject: hi\r\n\r\nbody\r\n");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Envelope::parse(b"").is_err());
        assert!(Envelope::parse(b"hello\n\nworld").is_err());
        assert!(Envelope::parse(format!("{MAGIC}\nid: x\n\n").as_bytes()).is_err());
    }

    #[test]
    fn state_round_trip_and_pending() {
        let e = envelope();
        let s = DeliveryState {
            attempts: 2,
            next_attempt: 1_700_000_600,
            delivered: vec!["b@example.com".into()],
            failed: vec![],
            last_error: Some("451 4.3.0 try later".into()),
        };
        let parsed = DeliveryState::parse(&s.render());
        assert_eq!(parsed, s);
        assert_eq!(parsed.pending(&e), vec!["c@example.com"]);
    }
}
