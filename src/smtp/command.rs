//! The SMTP command parser: one line in (without its CRLF), one [`Command`]
//! or a [`CommandError`] out. No I/O, no state, never panics on any bytes.

use super::address::{parse_path, AddressError, Path};

/// A parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    Mail {
        from: Path,
        params: MailParams,
    },
    Rcpt {
        to: Path,
        params: RcptParams,
    },
    /// `RCPT TO:<Postmaster>` without a domain, which RFC 5321 section
    /// 4.5.1 requires a server to accept for its own postmaster.
    RcptPostmaster,
    Data,
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    Expn,
    StartTls,
    /// A command we know but do not offer (BDAT, AUTH, ETRN, TURN…).
    NotImplemented(String),
}

/// The ESMTP parameters of MAIL FROM that we support.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body_8bit: bool,
    /// `SMTPUTF8` (RFC 6531): addresses and headers may be UTF-8.
    pub smtputf8: bool,
    /// `RET=FULL` or `RET=HDRS` (RFC 3461), upper case.
    pub ret: Option<String>,
    /// `ENVID=` (RFC 3461), as written (xtext).
    pub envid: Option<String>,
}

/// The ESMTP parameters of RCPT TO that we support (RFC 3461's DSN ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NEVER`, or some of `SUCCESS,FAILURE,DELAY`; upper case.
    pub notify: Option<String>,
    /// `ORCPT=addr-type;xtext`, as written.
    pub orcpt: Option<String>,
}

impl RcptParams {
    /// Whether the sender wants to hear of a failure (RFC 3461: without
    /// NOTIFY, it does).
    pub fn wants_failure_notice(&self) -> bool {
        self.notify
            .as_deref()
            .is_none_or(|n| n.split(',').any(|k| k == "FAILURE"))
    }
}

/// The DSN parameters of a transaction (RFC 3461), passed on to a
/// downstream that offers DSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnRequest {
    /// `FULL` or `HDRS`.
    pub ret: Option<String>,
    pub envid: Option<String>,
    /// The recipients given NOTIFY or ORCPT, with them.
    pub rcpts: Vec<(String, RcptParams)>,
}

impl DsnRequest {
    /// The DSN parameters given with `rcpt`.
    pub fn rcpt(&self, rcpt: &str) -> Option<&RcptParams> {
        self.rcpts.iter().find(|(r, _)| r == rcpt).map(|(_, p)| p)
    }
}

/// Why a line is not a command we can act on; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("empty command line")]
    Empty,
    #[error("command not recognized")]
    Unknown,
    #[error("syntax error in {0} arguments")]
    Syntax(&'static str),
    #[error("bad sender address: {0}")]
    BadSender(AddressError),
    #[error("bad recipient address: {0}")]
    BadRecipient(AddressError),
    #[error("unsupported parameter {0}")]
    UnsupportedParam(String),
    #[error("line is not text")]
    NotText,
}

/// Parses one command line (CRLF already removed).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::NotText)?;
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(CommandError::NotText);
    }
    let line = line.trim_end_matches([' ', '\t']);
    if line.trim().is_empty() {
        return Err(CommandError::Empty);
    }
    let (verb, args) = match line.split_once([' ', '\t']) {
        Some((v, a)) => (v, a.trim_start_matches([' ', '\t'])),
        None => (line, ""),
    };
    // The verb in upper case on the stack: the longest known is 8 letters.
    let mut upper = [0u8; 8];
    let known = match upper.get_mut(..verb.len()) {
        Some(slot) => {
            slot.copy_from_slice(verb.as_bytes());
            slot.make_ascii_uppercase();
            &*slot
        }
        None => b"",
    };
    let no_args = |cmd: Command, name: &'static str| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax(name))
        }
    };
    match known {
        b"HELO" => greeting(args, "HELO").map(Command::Helo),
        b"EHLO" => greeting(args, "EHLO").map(Command::Ehlo),
        b"MAIL" => parse_mail(args),
        b"RCPT" => parse_rcpt(args),
        b"DATA" => no_args(Command::Data, "DATA"),
        b"RSET" => no_args(Command::Rset, "RSET"),
        b"QUIT" => no_args(Command::Quit, "QUIT"),
        b"STARTTLS" => no_args(Command::StartTls, "STARTTLS"),
        b"NOOP" => Ok(Command::Noop),
        b"HELP" => Ok(Command::Help),
        b"VRFY" if !args.is_empty() => Ok(Command::Vrfy),
        b"VRFY" => Err(CommandError::Syntax("VRFY")),
        b"EXPN" => Ok(Command::Expn),
        b"BDAT" | b"AUTH" | b"ETRN" | b"TURN" | b"ATRN" | b"SEND" | b"SOML" | b"SAML" => {
            Ok(Command::NotImplemented(verb.to_ascii_uppercase()))
        }
        _ => Err(CommandError::Unknown),
    }
}

/// The command word of a line, upper case, when it looks like one (one to
/// ten ASCII letters): for messages about a line that may not parse.
pub fn verb(line: &[u8]) -> Option<String> {
    let word = line.split(|&b| b == b' ' || b == b'\t').next()?;
    (!word.is_empty() && word.len() <= 10 && word.iter().all(u8::is_ascii_alphabetic))
        .then(|| String::from_utf8_lossy(word).to_ascii_uppercase())
}

/// The name a client greets with: one word of printable ASCII (it goes
/// into our `Received:` header and every log line).
fn greeting(args: &str, name: &'static str) -> Result<String, CommandError> {
    let name_arg = args.split([' ', '\t']).next().unwrap_or("");
    if name_arg.is_empty()
        || name_arg.len() > 255
        || !name_arg.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(CommandError::Syntax(name));
    }
    Ok(name_arg.to_string())
}

/// Splits `FROM:<path> params` after the keyword, tolerating a space after
/// the colon as most servers do.
fn keyword_arg<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start_matches(' ');
    if rest.is_empty() {
        return None;
    }
    // A path in brackets may hold spaces inside a quoted local part.
    let end = if rest.starts_with('<') {
        rest.find('>').map(|i| i + 1)?
    } else {
        rest.find(' ').unwrap_or(rest.len())
    };
    Some((&rest[..end], rest[end..].trim_start_matches(' ')))
}

fn parse_mail(args: &str) -> Result<Command, CommandError> {
    let syntax = CommandError::Syntax("MAIL");
    let (path, params_text) = keyword_arg(args, "FROM:").ok_or(syntax.clone())?;
    let from = parse_path(path).map_err(CommandError::BadSender)?;
    let mut params = MailParams::default();
    for param in params_text.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => {
                let size = value.parse().map_err(|_| syntax.clone())?;
                params.size = Some(size);
            }
            "BODY" if value.eq_ignore_ascii_case("8BITMIME") => params.body_8bit = true,
            "BODY" if value.eq_ignore_ascii_case("7BIT") => params.body_8bit = false,
            "SMTPUTF8" if !param.contains('=') => params.smtputf8 = true,
            "RET" if params.ret.is_none() => {
                let ret = value.to_ascii_uppercase();
                if ret != "FULL" && ret != "HDRS" {
                    return Err(syntax);
                }
                params.ret = Some(ret);
            }
            // RFC 3461: at most 100 characters of xtext.
            "ENVID" if params.envid.is_none() => {
                if value.is_empty() || value.len() > 100 || !is_xtext(value) {
                    return Err(syntax);
                }
                params.envid = Some(value.to_string());
            }
            "RET" | "ENVID" => return Err(syntax),
            _ => return Err(CommandError::UnsupportedParam(truncate(param))),
        }
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command, CommandError> {
    let syntax = CommandError::Syntax("RCPT");
    let (path, params_text) = keyword_arg(args, "TO:").ok_or(syntax.clone())?;
    if path.eq_ignore_ascii_case("<postmaster>") && params_text.is_empty() {
        return Ok(Command::RcptPostmaster);
    }
    let to = parse_path(path).map_err(CommandError::BadRecipient)?;
    if to.mailbox.is_none() {
        return Err(CommandError::BadRecipient(AddressError::NoDomain));
    }
    let mut params = RcptParams::default();
    for param in params_text.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "NOTIFY" if params.notify.is_none() => {
                params.notify = Some(notify(value).ok_or(syntax.clone())?);
            }
            "ORCPT" if params.orcpt.is_none() => {
                let (kind, address) = value.split_once(';').ok_or(syntax.clone())?;
                let kind_ok = !kind.is_empty()
                    && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                // xtext, or UTF-8 for the `utf-8` type (RFC 6533).
                let address_ok = !address.is_empty()
                    && address.len() <= 500
                    && (is_xtext(address)
                        || (kind.eq_ignore_ascii_case("utf-8")
                            && !address.bytes().any(|b| b.is_ascii_control() || b == b' ')));
                if !kind_ok || !address_ok {
                    return Err(syntax);
                }
                params.orcpt = Some(value.to_string());
            }
            "NOTIFY" | "ORCPT" => return Err(syntax),
            _ => return Err(CommandError::UnsupportedParam(truncate(param))),
        }
    }
    Ok(Command::Rcpt { to, params })
}

/// A NOTIFY value (RFC 3461 4.1): `NEVER`, or a list of SUCCESS, FAILURE
/// and DELAY; upper case.
fn notify(value: &str) -> Option<String> {
    let value = value.to_ascii_uppercase();
    if value == "NEVER" {
        return Some(value);
    }
    let mut seen = Vec::new();
    for keyword in value.split(',') {
        if !["SUCCESS", "FAILURE", "DELAY"].contains(&keyword) || seen.contains(&keyword) {
            return None;
        }
        seen.push(keyword);
    }
    Some(value)
}

/// RFC 3461's xtext: printable ASCII but `+` and `=`, which are written
/// `+HH`.
fn is_xtext(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = bytes.get(i + 1..i + 3).unwrap_or(b"");
                if hex.len() != 2 || !hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'A'..=b'F')) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            33..=126 => i += 1,
            _ => return false,
        }
    }
    true
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            parse(b"ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"noop whatever"), Ok(Command::Noop));
        let Ok(Command::Mail { from, params }) =
            parse(b"MAIL FROM: <a@example.com> SIZE=1000 BODY=8BITMIME")
        else {
            panic!("MAIL not parsed");
        };
        assert_eq!(from.to_string(), "<a@example.com>");
        assert_eq!(
            params,
            MailParams {
                size: Some(1000),
                body_8bit: true,
                ..MailParams::default()
            }
        );
        assert!(matches!(
            parse(b"RCPT TO:<\"a b\"@example.com>"),
            Ok(Command::Rcpt { .. })
        ));
        assert_eq!(
            parse(b"BDAT 10 LAST"),
            Ok(Command::NotImplemented("BDAT".into()))
        );
    }

    #[test]
    fn utf8_and_dsn_parameters() {
        let Ok(Command::Mail { from, params }) = parse(
            "MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8 RET=hdrs ENVID=QQ314159+2B1"
                .as_bytes(),
        ) else {
            panic!("MAIL not parsed");
        };
        assert!(from.utf8 && params.smtputf8);
        assert_eq!(params.ret.as_deref(), Some("HDRS"));
        assert_eq!(params.envid.as_deref(), Some("QQ314159+2B1"));
        let Ok(Command::Rcpt { to, params }) =
            parse(b"RCPT TO:<b@example.com> NOTIFY=failure,DELAY ORCPT=rfc822;b@example.com")
        else {
            panic!("RCPT not parsed");
        };
        assert_eq!(to.to_string(), "<b@example.com>");
        assert_eq!(params.notify.as_deref(), Some("FAILURE,DELAY"));
        assert_eq!(params.orcpt.as_deref(), Some("rfc822;b@example.com"));
        assert!(params.wants_failure_notice());
        let Ok(Command::Rcpt { params, .. }) = parse(b"RCPT TO:<b@example.com> NOTIFY=NEVER")
        else {
            panic!("RCPT not parsed");
        };
        assert!(!params.wants_failure_notice());
        assert!(RcptParams::default().wants_failure_notice());
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b""), Err(CommandError::Empty));
        assert_eq!(parse(b"   "), Err(CommandError::Empty));
        assert_eq!(parse(b"."), Err(CommandError::Unknown));
        assert_eq!(parse(b"EHLO"), Err(CommandError::Syntax("EHLO")));
        assert_eq!(parse(b"DATA now"), Err(CommandError::Syntax("DATA")));
        assert_eq!(parse(b"MAIL TO:<a@b.c>"), Err(CommandError::Syntax("MAIL")));
        assert_eq!(parse(b"MAIL FROM:"), Err(CommandError::Syntax("MAIL")));
        assert!(matches!(
            parse(b"RCPT TO:<>"),
            Err(CommandError::BadRecipient(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a@b.c> XYZZY=1"),
            Err(CommandError::UnsupportedParam(_))
        ));
        for bad in [
            &b"RCPT TO:<a@b.c> NOTIFY=NEVER,SUCCESS"[..],
            b"RCPT TO:<a@b.c> NOTIFY=FAILURE,FAILURE",
            b"RCPT TO:<a@b.c> NOTIFY=",
            b"RCPT TO:<a@b.c> NOTIFY=NEVER NOTIFY=NEVER",
            b"RCPT TO:<a@b.c> ORCPT=a@b.c",
            b"RCPT TO:<a@b.c> ORCPT=rfc822;a=b",
            b"RCPT TO:<a@b.c> ORCPT=rfc822;a+2",
        ] {
            assert_eq!(parse(bad), Err(CommandError::Syntax("RCPT")), "{bad:?}");
        }
        for bad in [
            &b"MAIL FROM:<a@b.c> RET=ALL"[..],
            b"MAIL FROM:<a@b.c> ENVID=",
            b"MAIL FROM:<a@b.c> RET=FULL RET=HDRS",
        ] {
            assert_eq!(parse(bad), Err(CommandError::Syntax("MAIL")), "{bad:?}");
        }
        assert!(matches!(
            parse(b"MAIL FROM:<a@b.c> SMTPUTF8=yes"),
            Err(CommandError::UnsupportedParam(_))
        ));
        assert_eq!(
            parse(b"MAIL FROM:<a@b.c> SIZE=x"),
            Err(CommandError::Syntax("MAIL"))
        );
        assert_eq!(parse(b"\xff\xfe"), Err(CommandError::NotText));
        assert_eq!(
            parse("HELO h\u{e9}las.test".as_bytes()),
            Err(CommandError::Syntax("HELO"))
        );
        assert_eq!(
            parse("EHLO \u{2028}x".as_bytes()),
            Err(CommandError::Syntax("EHLO"))
        );
        assert_eq!(verb(b"ehlo x").as_deref(), Some("EHLO"));
        assert_eq!(verb(b"DATA").as_deref(), Some("DATA"));
        assert_eq!(verb(b"."), None);
        assert_eq!(verb(b""), None);
        assert_eq!(verb(b"\xffHELO"), None);
        assert_eq!(parse(b"NOOP\x00"), Err(CommandError::NotText));
    }
}
