//! Reply texts written for sendmail or Postfix, as mxguard message
//! templates (`{client_ip}`, `{zone}`, `{txt}`, `{sender_domain}`):
//! sendmail's `"550 Mail from " $&{client_addr} " refused"`, Postfix's
//! `default_rbl_reply`, and the reply code they start with, which mxguard
//! writes itself.

/// A reply's code and its text: `550 5.7.1 text` → (`550`, ` text`); an
/// enhanced code goes too, with or without the reply code.
pub fn split_reply(text: &str) -> (Option<String>, &str) {
    let digits = text.len() >= 3 && text.as_bytes()[..3].iter().all(u8::is_ascii_digit);
    let after = text.get(3..).unwrap_or("");
    let (code, rest) = if digits && (after.is_empty() || after.starts_with([' ', '-'])) {
        (
            Some(text[..3].to_string()),
            after.trim_start_matches([' ', '-']),
        )
    } else {
        (None, text)
    };
    let enhanced = rest.split_once(' ').map_or(rest, |(first, _)| first);
    let parts: Vec<&str> = enhanced.split('.').collect();
    let is_enhanced = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if is_enhanced {
        (code, &rest[enhanced.len()..])
    } else {
        (code, rest)
    }
}

/// A message split from its reply code.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub code: Option<String>,
    pub text: String,
    /// Macros mxguard cannot fill in.
    pub dropped: Vec<String>,
}

/// A sendmail error text: `"550 Mail from " $&{client_addr} " refused"`:
/// quoted strings joined, `$&{client_addr}` as `{client_ip}`.
pub fn sendmail(arg: &str) -> Message {
    let mut text = String::new();
    let mut dropped = Vec::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => text.extend(chars.next()),
                        c => text.push(c),
                    }
                }
            }
            '$' => {
                let mut macro_text = String::from("$");
                if chars.peek() == Some(&'&') {
                    macro_text.extend(chars.next());
                }
                match chars.next() {
                    Some('{') => {
                        macro_text.push('{');
                        for c in chars.by_ref() {
                            macro_text.push(c);
                            if c == '}' {
                                break;
                            }
                        }
                    }
                    Some(c) => macro_text.push(c),
                    None => {}
                }
                let name = macro_text
                    .trim_start_matches(['$', '&'])
                    .trim_start_matches('{')
                    .trim_end_matches('}');
                if name == "client_addr" {
                    text.push_str("{client_ip}");
                } else {
                    dropped.push(macro_text);
                }
            }
            c if c.is_whitespace() => {}
            c => text.push(c),
        }
    }
    let (code, rest) = split_reply(text.trim());
    Message {
        code,
        text: rest.trim().to_string(),
        dropped,
    }
}

/// `default_rbl_reply` as an mxguard message, and notes on what changed.
pub fn postfix_rbl(template: &str, rhs: bool) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut out = String::new();
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '$' {
            out.push(c);
            continue;
        }
        let (name, conditional) = match chars.get(i) {
            Some('$') => {
                out.push('$');
                i += 1;
                continue;
            }
            Some('{') | Some('(') => {
                let close = if chars[i] == '{' { '}' } else { ')' };
                let Some(end) = chars[i..].iter().position(|&c| c == close) else {
                    out.extend(&chars[i - 1..]);
                    break;
                };
                let inner: String = chars[i + 1..i + end].iter().collect();
                i += end + 1;
                match inner.find(['?', ':']) {
                    Some(at) => (inner[..at].to_string(), Some(inner[at..].to_string())),
                    None => (inner, None),
                }
            }
            _ => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    i += 1;
                }
                (chars[start..i].iter().collect(), None)
            }
        };
        let value = match name.as_str() {
            "client_address" => Some("{client_ip}".to_string()),
            "rbl_domain" => Some("{zone}".into()),
            "rbl_reason" | "rbl_txt" => Some("{txt}".into()),
            "rbl_class" => Some(if rhs { "Sender address" } else { "Client host" }.into()),
            "rbl_what" => Some(
                if rhs {
                    "{sender_domain}"
                } else {
                    "{client_ip}"
                }
                .into(),
            ),
            "rbl_code" => Some(String::new()),
            _ => None,
        };
        match (conditional, value) {
            (None, Some(v)) => out.push_str(&v),
            (Some(cond), Some(_)) if cond.starts_with('?') => {
                let (inner, _) = postfix_rbl(&cond[1..], rhs);
                out.push_str(&inner);
                notes.push(format!(
                    "${{{name}{cond}}} is always written: mxguard's message has no \
                     conditions"
                ));
            }
            (Some(cond), Some(_)) => {
                notes.push(format!(
                    "${{{name}{cond}}} is left out: mxguard's message has no conditions"
                ));
            }
            (_, None) => notes.push(format!(
                "${name} is left out: mxguard's messages know {{client_ip}}, {{zone}}, \
                 {{txt}} and {{sender_domain}}"
            )),
        }
    }
    let (_, text) = split_reply(out.trim());
    (text.trim().to_string(), notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        assert_eq!(split_reply("550 5.7.1 no"), (Some("550".into()), " no"));
        assert_eq!(split_reply("550 no"), (Some("550".into()), "no"));
        assert_eq!(split_reply("5501 x"), (None, "5501 x"));
        assert_eq!(split_reply("554"), (Some("554".into()), ""));
        assert_eq!(split_reply("5.7.1 x"), (None, " x"));
        assert_eq!(split_reply("Mail from x"), (None, "Mail from x"));
    }

    #[test]
    fn messages() {
        let m = sendmail(
            r#""550 Mail from " $&{client_addr} " refused - see https://www.spamhaus.org/query/ip/" $&{client_addr}"#,
        );
        assert_eq!(m.code.as_deref(), Some("550"));
        assert_eq!(
            m.text,
            "Mail from {client_ip} refused - see https://www.spamhaus.org/query/ip/{client_ip}"
        );
        let m = sendmail(r#""451 4.7.1 Try later, " $&{client_name} " \"x\"""#);
        assert_eq!(m.code.as_deref(), Some("451"));
        assert_eq!(m.text, "Try later,  \"x\"");
        assert_eq!(m.dropped, vec!["$&{client_name}".to_string()]);
        let m = sendmail(r#""Go away""#);
        assert_eq!((m.code, m.text.as_str()), (None, "Go away"));
    }

    #[test]
    fn postfix_rbl_replies() {
        assert_eq!(
            postfix_rbl("$rbl_code 5.7.1 Listed: $client_address", false).0,
            "Listed: {client_ip}"
        );
        let (text, notes) = postfix_rbl(
            "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using \
             $rbl_domain${rbl_reason?; $rbl_reason}${rbl_reason:}",
            false,
        );
        assert_eq!(
            text,
            "Service unavailable; Client host [{client_ip}] blocked using {zone}; {txt}"
        );
        assert_eq!(notes.len(), 2);
        assert_eq!(postfix_rbl("$$5 ${unclosed", true).0, "$5 ${unclosed");
    }
}
