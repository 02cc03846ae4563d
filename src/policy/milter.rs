//! What a content filter's reply (`[[milter]]`) means for the SMTP
//! client, at any stage: go on, stop asking this filter, refuse with which
//! reply, or take the message only to drop or quarantine it; and what a
//! filter that cannot be asked gets (`default_action`). Pure: the session
//! drives the filters (`session::milters`) and applies what this says.

use crate::config::milter::DefaultAction;
use crate::milter::codec::Response;
use crate::smtp::reply::Reply;

/// A filter's word on one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Go on (continue, skip).
    Go,
    /// Accepted: this filter is not asked again (for the session when said
    /// before MAIL, else for the transaction).
    Done,
    /// Refused: the step gets this reply (a recipient only that recipient).
    Refuse(Reply),
    /// The message is taken (`250`) and dropped.
    Discard,
    /// The message is taken (`250`) and put in the quarantine, for this
    /// reason.
    Quarantine(String),
}

/// Sendmail's and Postfix's words for a filter's plain reject and
/// tempfail.
pub fn rejected() -> Reply {
    Reply::new(550, "5.7.1", "Command rejected")
}

pub fn tempfailed() -> Reply {
    Reply::new(451, "4.7.1", "Service unavailable - try again later")
}

/// The meaning of a final reply.
pub fn judge(response: &Response) -> Said {
    match response {
        Response::Accept => Said::Done,
        Response::Reject => Said::Refuse(rejected()),
        Response::Tempfail => Said::Refuse(tempfailed()),
        Response::ReplyCode { code, text } => Said::Refuse(reply_code(*code, text)),
        Response::Discard => Said::Discard,
        Response::Quarantine(reason) => Said::Quarantine(reason.clone()),
        _ => Said::Go,
    }
}

/// What a filter that could not be asked (down, too slow, broken, or over
/// its `max_sessions`) gets.
pub fn unavailable(action: DefaultAction) -> Said {
    match action {
        DefaultAction::Accept => Said::Done,
        DefaultAction::Tempfail => Said::Refuse(tempfailed()),
        DefaultAction::Reject => Said::Refuse(rejected()),
    }
}

/// A filter's own reply (`SMFIR_REPLYCODE`, e.g. `554 5.7.1 Gtube
/// pattern`, perhaps several lines) as the client will hear it: its code
/// (only 4xx or 5xx; anything else is a plain reject), an enhanced status
/// of the same class (the filter's, else x.7.1), its text without control
/// characters.
pub fn reply_code(code: u16, text: &str) -> Reply {
    let code = if (400..600).contains(&code) {
        code
    } else {
        550
    };
    let class = if code >= 500 { '5' } else { '4' };
    let mut status = None;
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        // Each line may repeat the code, with a space or a dash.
        let rest = match line.get(..3) {
            Some(c) if c.bytes().all(|b| b.is_ascii_digit()) => line.get(4..).unwrap_or_default(),
            _ => line,
        };
        let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
        let rest = if is_status(first, class) {
            status.get_or_insert_with(|| first.to_string());
            after
        } else {
            rest
        };
        let clean: String = rest.chars().filter(|c| !c.is_control()).collect();
        lines.push(clean.trim().to_string());
    }
    lines.retain(|l| !l.is_empty());
    if lines.is_empty() {
        lines.push("Command rejected".into());
    }
    Reply {
        code,
        status: Some(status.unwrap_or_else(|| format!("{class}.7.1")).into()),
        lines,
    }
}

/// `C.S.D` with the reply's class (RFC 3463).
fn is_status(word: &str, class: char) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && word.starts_with(class)
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_reply_is_heard_as_the_filter_wrote_it() {
        let reply = reply_code(554, "554 5.7.1 Gtube pattern");
        assert_eq!(reply.to_string(), "554 5.7.1 Gtube pattern");
    }

    #[test]
    fn a_reply_without_enhanced_status_gets_one_of_its_class() {
        assert_eq!(
            reply_code(451, "451 Try later").to_string(),
            "451 4.7.1 Try later"
        );
        assert_eq!(
            reply_code(550, "5.1.1 wrong class? no: kept").to_string(),
            "550 5.1.1 wrong class? no: kept"
        );
        assert_eq!(
            reply_code(450, "450 5.7.1 mismatched").to_string(),
            "450 4.7.1 5.7.1 mismatched"
        );
    }

    #[test]
    fn a_multi_line_reply_keeps_its_lines_and_loses_control_characters() {
        let reply = reply_code(550, "550-5.7.1 first\r\n550 5.7.1 second\x07");
        assert_eq!(reply.lines, vec!["first", "second"]);
        assert_eq!(reply.status.as_deref(), Some("5.7.1"));
        let mut wire = Vec::new();
        reply.write_to(&mut wire);
        assert!(crate::smtp::reply::check_stream(&wire).is_ok());
    }

    #[test]
    fn a_code_that_is_not_a_refusal_is_a_plain_reject() {
        assert_eq!(reply_code(250, "250 ok").code, 550);
    }

    #[test]
    fn each_final_reply_means_what_sendmail_says() {
        assert_eq!(judge(&Response::Continue), Said::Go);
        assert_eq!(judge(&Response::Accept), Said::Done);
        assert_eq!(judge(&Response::Reject), Said::Refuse(rejected()));
        assert_eq!(judge(&Response::Tempfail), Said::Refuse(tempfailed()));
        assert_eq!(judge(&Response::Discard), Said::Discard);
        assert_eq!(
            judge(&Response::Quarantine("virus".into())),
            Said::Quarantine("virus".into())
        );
    }

    #[test]
    fn a_filter_that_cannot_be_asked_gets_its_default_action() {
        assert_eq!(unavailable(DefaultAction::Accept), Said::Done);
        assert_eq!(
            unavailable(DefaultAction::Tempfail),
            Said::Refuse(tempfailed())
        );
        assert_eq!(unavailable(DefaultAction::Reject), Said::Refuse(rejected()));
    }
}
