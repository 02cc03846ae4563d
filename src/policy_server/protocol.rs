//! The wire format of the Postfix policy delegation protocol
//! (SMTPD_POLICY_README), without I/O: a request is `name=value` lines,
//! each ended by a newline, and an empty line; the answer is one
//! `action=…` line and an empty line. [`Decoder`] takes the bytes of a
//! connection in pieces of any size and yields each request as it ends,
//! within bounds ([`MAX_LINE`], [`MAX_ATTRIBUTES`], [`MAX_REQUEST`]); what
//! breaks them, or the syntax, is a [`ProtocolError`], after which the
//! connection must be closed without an answer (Postfix then retries, or
//! applies `smtpd_policy_service_default_action`). [`Answer`] renders
//! mxguard's verdict as one line.

use crate::smtp::reply::Reply;

/// Longest attribute line, in bytes, its newline excluded.
pub const MAX_LINE: usize = 4096;
/// Most attribute lines in one request (Postfix 3.x sends about 30).
pub const MAX_ATTRIBUTES: usize = 100;
/// Most bytes in one request, newlines included.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Longest answer text (after `action=`): an SMTP reply line is at most
/// 512 bytes (RFC 5321 section 4.5.3.1.5).
pub const MAX_ANSWER: usize = 500;

/// Why a request cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("line {line}: no `=` in {start:?}")]
    NoEquals { line: usize, start: String },
    #[error("line {line}: empty attribute name")]
    EmptyName { line: usize },
    #[error("line {line}: longer than {MAX_LINE} bytes")]
    LineTooLong { line: usize },
    #[error("line {line}: not UTF-8")]
    NotUtf8 { line: usize },
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLarge,
}

/// The attributes of a request that mxguard reads; the others are
/// ignored. An attribute that was not sent is empty, as Postfix sends an
/// unavailable one; sent twice, the last value counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `smtpd_access_policy` from Postfix's SMTP server.
    pub request: String,
    /// `CONNECT`, `EHLO`, `HELO`, `MAIL`, `RCPT`, `DATA`, `END-OF-MESSAGE`,
    /// `VRFY`, `ETRN`.
    pub protocol_state: String,
    pub client_address: String,
    pub helo_name: String,
    /// Without angle brackets; empty for the null sender.
    pub sender: String,
    pub recipient: String,
    /// Names the mail transaction; the same for every request about it.
    pub instance: String,
}

impl Request {
    fn set(&mut self, name: &str, value: String) {
        let field = match name {
            "request" => &mut self.request,
            "protocol_state" => &mut self.protocol_state,
            "client_address" => &mut self.client_address,
            "helo_name" => &mut self.helo_name,
            "sender" => &mut self.sender,
            "recipient" => &mut self.recipient,
            "instance" => &mut self.instance,
            _ => return,
        };
        *field = value;
    }
}

/// Reads requests from a byte stream given in pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The line being read, without its newline.
    line: Vec<u8>,
    request: Request,
    /// Attribute lines of the request so far.
    lines: usize,
    /// Bytes of the request so far.
    size: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Whether part of a request has been read.
    pub fn in_progress(&self) -> bool {
        self.size > 0
    }

    /// Reads `input` up to the end of the next request. Returns how many
    /// bytes it used (all of them unless a request ended before: the rest
    /// belongs to the next one) and the request, if one ended.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Request>), ProtocolError> {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.take(rest)?;
                return Ok((input.len(), None));
            };
            self.take(&rest[..end])?;
            if self.size == MAX_REQUEST {
                return Err(ProtocolError::TooLarge);
            }
            self.size += 1;
            used += end + 1;
            if let Some(request) = self.end_line()? {
                return Ok((used, Some(request)));
            }
        }
        Ok((used, None))
    }

    /// Adds bytes to the line; the error is the limit the first byte too
    /// many breaks, however the bytes were split.
    fn take(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let line_room = MAX_LINE - self.line.len();
        let request_room = MAX_REQUEST - self.size;
        if bytes.len() > line_room.min(request_room) {
            return Err(if line_room <= request_room {
                ProtocolError::LineTooLong {
                    line: self.lines + 1,
                }
            } else {
                ProtocolError::TooLarge
            });
        }
        self.size += bytes.len();
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// A newline: the end of an attribute, or of the request.
    fn end_line(&mut self) -> Result<Option<Request>, ProtocolError> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            self.lines = 0;
            self.size = 0;
            return Ok(Some(std::mem::take(&mut self.request)));
        }
        self.lines += 1;
        let number = self.lines;
        if number > MAX_ATTRIBUTES {
            return Err(ProtocolError::TooManyAttributes);
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            let start: String = String::from_utf8_lossy(&line).chars().take(40).collect();
            return Err(ProtocolError::NoEquals {
                line: number,
                start,
            });
        };
        if eq == 0 {
            return Err(ProtocolError::EmptyName { line: number });
        }
        let value = line.split_off(eq + 1);
        line.truncate(eq);
        let not_utf8 = |_| ProtocolError::NotUtf8 { line: number };
        let name = String::from_utf8(line).map_err(not_utf8)?;
        let value = String::from_utf8(value).map_err(not_utf8)?;
        self.request.set(&name, value);
        Ok(None)
    }
}

/// mxguard's verdict, as Postfix takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `DUNNO`: no objection; Postfix goes on with its restrictions.
    Dunno,
    /// `DEFER_IF_PERMIT X.Y.Z text`: a temporary refusal only if nothing
    /// after it in Postfix rejects (for DNS lookups that failed).
    DeferIfPermit(Reply),
    /// `NNN X.Y.Z text`: this exact refusal.
    Refuse(Reply),
}

impl Answer {
    /// The wire form: `action=…` and the empty line.
    pub fn encode(&self) -> String {
        let action = match self {
            Answer::Dunno => "DUNNO".to_string(),
            Answer::DeferIfPermit(reply) => {
                let text = reply.lines.join(" ");
                match &reply.status {
                    Some(status) => one_line(&format!("DEFER_IF_PERMIT {status} {text}")),
                    None => one_line(&format!("DEFER_IF_PERMIT {text}")),
                }
            }
            Answer::Refuse(reply) => one_line(&reply.to_string()),
        };
        format!("action={action}\n\n")
    }
}

/// Control characters (CR and LF above all) as spaces, cut to
/// [`MAX_ANSWER`] bytes on a character boundary.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ANSWER));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_ANSWER {
            break;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RCPT: &[u8] = b"request=smtpd_access_policy\nprotocol_state=RCPT\n\
        protocol_name=ESMTP\nclient_address=192.0.2.7\nclient_name=unknown\n\
        helo_name=mail.example.org\nsender=a@example.org\n\
        recipient=b@example.test\ninstance=1a2b.3c4d.0\nsize=0\n\n";

    fn decode_all(input: &[u8]) -> Result<Vec<Request>, ProtocolError> {
        let mut decoder = Decoder::new();
        let mut requests = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (used, request) = decoder.decode(rest)?;
            requests.extend(request);
            rest = &rest[used..];
        }
        Ok(requests)
    }

    #[test]
    fn reads_the_attributes_it_uses_and_ignores_the_others() {
        let requests = decode_all(RCPT).unwrap();
        assert_eq!(
            requests,
            vec![Request {
                request: "smtpd_access_policy".into(),
                protocol_state: "RCPT".into(),
                client_address: "192.0.2.7".into(),
                helo_name: "mail.example.org".into(),
                sender: "a@example.org".into(),
                recipient: "b@example.test".into(),
                instance: "1a2b.3c4d.0".into(),
            }]
        );
    }

    #[test]
    fn values_keep_their_equals_signs_and_empty_values_are_empty() {
        let requests =
            decode_all(b"sender=SRS0=HHH=TT=example.org=a@fwd.test\nrecipient=\n\n").unwrap();
        assert_eq!(requests[0].sender, "SRS0=HHH=TT=example.org=a@fwd.test");
        assert_eq!(requests[0].recipient, "");
        assert_eq!(requests[0].request, "", "not sent is empty");
    }

    #[test]
    fn one_connection_carries_many_requests_in_any_pieces() {
        let mut stream = RCPT.to_vec();
        stream.extend_from_slice(b"request=smtpd_access_policy\r\nprotocol_state=DATA\r\n\r\n");
        let whole = decode_all(&stream).unwrap();
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].protocol_state, "DATA", "CRLF is tolerated");
        // Byte by byte: the same two requests, each as soon as it ends.
        let mut decoder = Decoder::new();
        let mut seen = Vec::new();
        for (i, byte) in stream.iter().enumerate() {
            let (used, request) = decoder.decode(std::slice::from_ref(byte)).unwrap();
            assert_eq!(used, 1);
            if let Some(request) = request {
                seen.push((i, request));
            }
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, RCPT.len() - 1);
        assert_eq!(seen[1].0, stream.len() - 1);
        assert_eq!(vec![seen[0].1.clone(), seen[1].1.clone()], whole);
        // A request that ends mid-buffer leaves the rest unused.
        let mut decoder = Decoder::new();
        let (used, request) = decoder.decode(&stream).unwrap();
        assert_eq!((used, request.is_some()), (RCPT.len(), true));
        assert!(!decoder.in_progress());
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert_eq!(
            decode_all(b"request=smtpd_access_policy\nGET / HTTP/1.0\n\n"),
            Err(ProtocolError::NoEquals {
                line: 2,
                start: "GET / HTTP/1.0".into()
            })
        );
        assert_eq!(
            decode_all(b"=value\n\n"),
            Err(ProtocolError::EmptyName { line: 1 })
        );
        assert_eq!(
            decode_all(b"helo_name=\xff\xfe\n\n"),
            Err(ProtocolError::NotUtf8 { line: 1 })
        );
        assert_eq!(
            decode_all(b"na\xffme=x\n\n"),
            Err(ProtocolError::NotUtf8 { line: 1 })
        );
    }

    #[test]
    fn limits_hold_however_the_bytes_arrive() {
        let mut long = b"helo_name=".to_vec();
        long.resize(MAX_LINE, b'a');
        let mut ok = long.clone();
        ok.extend_from_slice(b"\n\n");
        assert_eq!(decode_all(&ok).unwrap()[0].helo_name.len(), MAX_LINE - 10);
        long.extend_from_slice(b"a\n\n");
        assert_eq!(
            decode_all(&long),
            Err(ProtocolError::LineTooLong { line: 1 })
        );
        // Without a newline, the line is refused as soon as it is too long.
        let mut decoder = Decoder::new();
        assert!(decoder.decode(&[b'x'; MAX_LINE]).is_ok());
        assert_eq!(
            decoder.decode(b"x"),
            Err(ProtocolError::LineTooLong { line: 1 })
        );

        let many: Vec<u8> = (0..=MAX_ATTRIBUTES)
            .flat_map(|i| format!("x{i}=1\n").into_bytes())
            .collect();
        assert_eq!(decode_all(&many), Err(ProtocolError::TooManyAttributes));
        let at_limit: Vec<u8> = (0..MAX_ATTRIBUTES)
            .flat_map(|i| format!("x{i}=1\n").into_bytes())
            .chain(*b"\n")
            .collect();
        assert_eq!(decode_all(&at_limit).unwrap().len(), 1);

        let line = format!("x={}\n", "v".repeat(MAX_LINE - 2));
        let big = line.repeat(MAX_REQUEST / line.len() + 1);
        assert_eq!(decode_all(big.as_bytes()), Err(ProtocolError::TooLarge));
    }

    #[test]
    fn limits_count_per_request() {
        let request: Vec<u8> = (0..MAX_ATTRIBUTES)
            .flat_map(|i| format!("x{i}=1\n").into_bytes())
            .chain(*b"\n")
            .collect();
        assert_eq!(decode_all(&request.repeat(3)).unwrap().len(), 3);
    }

    #[test]
    fn an_empty_line_alone_is_an_empty_request() {
        assert_eq!(decode_all(b"\n").unwrap(), vec![Request::default()]);
    }

    #[test]
    fn answers_are_one_line() {
        assert_eq!(Answer::Dunno.encode(), "action=DUNNO\n\n");
        let reply = Reply::new(554, "5.7.1", "listed\r\nin bl.test");
        assert_eq!(
            Answer::Refuse(reply).encode(),
            "action=554 5.7.1 listed  in bl.test\n\n"
        );
        let reply = Reply::new(451, "4.7.1", "lookup failed");
        assert_eq!(
            Answer::DeferIfPermit(reply).encode(),
            "action=DEFER_IF_PERMIT 4.7.1 lookup failed\n\n"
        );
        let mut multi = Reply::new(550, "5.7.1", "one");
        multi.lines.push("two".into());
        assert_eq!(
            Answer::Refuse(multi).encode(),
            "action=550 5.7.1 one two\n\n"
        );
        let long = Answer::Refuse(Reply::new(550, "5.7.1", "é".repeat(400))).encode();
        assert!(
            long.len() <= "action=\n\n".len() + MAX_ANSWER,
            "{}",
            long.len()
        );
        assert!(long.ends_with("é\n\n"));
    }
}
