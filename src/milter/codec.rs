//! The milter protocol's packets, without I/O: what the MTA sends
//! ([`Command`], written by [`encode`]) and what a milter answers
//! ([`Response`], read by [`Decoder`] from any split of the bytes).
//!
//! A packet is a 4-octet big-endian length (of what follows), a command
//! octet, and its data: NUL-terminated strings, 32-bit big-endian numbers,
//! or raw octets. The decoder refuses a length over [`MAX_PACKET`] before
//! allocating anything, an unknown response code, and malformed data (a
//! string without its NUL, missing numbers). Text the MTA acts on (header
//! names, addresses, ESMTP arguments, reply and quarantine text) must be
//! UTF-8, else the packet is refused ([`DecodeError::NotUtf8`]); header
//! values and body chunks are kept as octets, losslessly. A header name
//! must be printable ASCII without a colon, and an address or its
//! arguments must have no control character, so neither can carry a line
//! break into the message or the envelope.

use std::net::SocketAddr;

/// The protocol version we speak (sendmail 8.14 and later, libmilter 1.0).
pub const VERSION: u32 = 6;
/// The largest packet accepted from a milter (its length field).
pub const MAX_PACKET: usize = 1 << 20;

/// Actions a milter may ask for at negotiation (`SMFIF_*`).
pub const SMFIF_ADDHDRS: u32 = 0x01;
pub const SMFIF_CHGBODY: u32 = 0x02;
pub const SMFIF_ADDRCPT: u32 = 0x04;
pub const SMFIF_DELRCPT: u32 = 0x08;
pub const SMFIF_CHGHDRS: u32 = 0x10;
pub const SMFIF_QUARANTINE: u32 = 0x20;
pub const SMFIF_CHGFROM: u32 = 0x40;
pub const SMFIF_ADDRCPT_PAR: u32 = 0x80;
pub const SMFIF_SETSYMLIST: u32 = 0x100;

/// Protocol steps a milter does not want, or will not answer (`SMFIP_*`).
pub const SMFIP_NOCONNECT: u32 = 0x1;
pub const SMFIP_NOHELO: u32 = 0x2;
pub const SMFIP_NOMAIL: u32 = 0x4;
pub const SMFIP_NORCPT: u32 = 0x8;
pub const SMFIP_NOBODY: u32 = 0x10;
pub const SMFIP_NOHDRS: u32 = 0x20;
pub const SMFIP_NOEOH: u32 = 0x40;
pub const SMFIP_NR_HDR: u32 = 0x80;
pub const SMFIP_NOUNKNOWN: u32 = 0x100;
pub const SMFIP_NODATA: u32 = 0x200;
pub const SMFIP_SKIP: u32 = 0x400;
pub const SMFIP_RCPT_REJ: u32 = 0x800;
pub const SMFIP_NR_CONN: u32 = 0x1000;
pub const SMFIP_NR_HELO: u32 = 0x2000;
pub const SMFIP_NR_MAIL: u32 = 0x4000;
pub const SMFIP_NR_RCPT: u32 = 0x8000;
pub const SMFIP_NR_DATA: u32 = 0x10000;
pub const SMFIP_NR_UNKN: u32 = 0x20000;
pub const SMFIP_NR_EOH: u32 = 0x40000;
pub const SMFIP_NR_BODY: u32 = 0x80000;
pub const SMFIP_HDR_LEADSPC: u32 = 0x100000;

/// One packet from the MTA to a milter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `O`: the version, the actions we allow, the steps a milter may skip.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `D`: macros for the command whose letter is `stage` (`b'C'`, `b'H'`,
    /// `b'M'`, `b'R'`, `b'T'`, `b'L'`, `b'N'`, `b'E'`).
    Macros {
        stage: u8,
        pairs: &'a [(String, String)],
    },
    /// `C`: the client's name and address (`None`: unknown, family `U`).
    Connect {
        hostname: &'a str,
        addr: Option<SocketAddr>,
    },
    /// `H`: the HELO/EHLO argument.
    Helo(&'a str),
    /// `M`: `<addr>` then the ESMTP arguments.
    Mail(&'a [String]),
    /// `R`: `<addr>` then the ESMTP arguments.
    Rcpt(&'a [String]),
    /// `T`
    Data,
    /// `L`: one header field (the value as [`super::edit::fields`] gives it).
    Header { name: &'a str, value: &'a [u8] },
    /// `N`
    EndOfHeaders,
    /// `B`: one body chunk (at most 64 KiB by convention).
    Body(&'a [u8]),
    /// `E`
    EndOfMessage,
    /// `A`: forget the message; no reply.
    Abort,
    /// `Q`: the end of the session; no reply.
    Quit,
}

impl Command<'_> {
    /// The command octet.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => b'O',
            Command::Macros { .. } => b'D',
            Command::Connect { .. } => b'C',
            Command::Helo(_) => b'H',
            Command::Mail(_) => b'M',
            Command::Rcpt(_) => b'R',
            Command::Data => b'T',
            Command::Header { .. } => b'L',
            Command::EndOfHeaders => b'N',
            Command::Body(_) => b'B',
            Command::EndOfMessage => b'E',
            Command::Abort => b'A',
            Command::Quit => b'Q',
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Appends `cmd` as one packet to `out`.
pub fn encode(cmd: &Command, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, cmd.code()]);
    match cmd {
        Command::OptNeg {
            version,
            actions,
            protocol,
        } => {
            for n in [version, actions, protocol] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Command::Macros { stage, pairs } => {
            out.push(*stage);
            for (name, value) in pairs.iter() {
                put_str(out, name.as_bytes());
                put_str(out, value.as_bytes());
            }
        }
        Command::Connect { hostname, addr } => {
            put_str(out, hostname.as_bytes());
            match addr {
                None => out.push(b'U'),
                Some(addr) => {
                    out.push(if addr.is_ipv4() { b'4' } else { b'6' });
                    out.extend_from_slice(&addr.port().to_be_bytes());
                    put_str(out, addr.ip().to_string().as_bytes());
                }
            }
        }
        Command::Helo(name) => put_str(out, name.as_bytes()),
        Command::Mail(args) | Command::Rcpt(args) => {
            for arg in args.iter() {
                put_str(out, arg.as_bytes());
            }
        }
        Command::Header { name, value } => {
            put_str(out, name.as_bytes());
            put_str(out, value);
        }
        Command::Body(chunk) => out.extend_from_slice(chunk),
        Command::Data
        | Command::EndOfHeaders
        | Command::EndOfMessage
        | Command::Abort
        | Command::Quit => {}
    }
    // Commands are ours: a body chunk is at most 64 KiB, strings are lines.
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// A change to the message a milter asks for at the end of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// `h`: a field appended to the header.
    AddHeader { name: String, value: Vec<u8> },
    /// `i`: a field inserted before the `index`-th (0: first).
    InsertHeader {
        index: u32,
        name: String,
        value: Vec<u8>,
    },
    /// `m`: the `index`-th (1-based) field of that name changed; an empty
    /// value deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: Vec<u8>,
    },
    /// `e`: a new envelope sender, with ESMTP arguments.
    ChangeFrom { addr: String, args: Option<String> },
    /// `+` (no arguments) or `2` (with them): a recipient added.
    AddRcpt { addr: String, args: Option<String> },
    /// `-`: a recipient removed.
    DelRcpt { addr: String },
    /// `b`: one chunk of a new body (chunks follow one another).
    ReplaceBody(Vec<u8>),
}

impl Modification {
    /// The `SMFIF_*` action a milter must have negotiated to ask for it.
    pub fn action(&self) -> u32 {
        match self {
            Modification::AddHeader { .. } | Modification::InsertHeader { .. } => SMFIF_ADDHDRS,
            Modification::ChangeHeader { .. } => SMFIF_CHGHDRS,
            Modification::ChangeFrom { .. } => SMFIF_CHGFROM,
            Modification::AddRcpt { args: None, .. } => SMFIF_ADDRCPT,
            Modification::AddRcpt { args: Some(_), .. } => SMFIF_ADDRCPT_PAR,
            Modification::DelRcpt { .. } => SMFIF_DELRCPT,
            Modification::ReplaceBody(_) => SMFIF_CHGBODY,
        }
    }

    /// What it is called in a log line (`add header`).
    pub fn name(&self) -> &'static str {
        match self {
            Modification::AddHeader { .. } => "add header",
            Modification::InsertHeader { .. } => "insert header",
            Modification::ChangeHeader { .. } => "change header",
            Modification::ChangeFrom { .. } => "change sender",
            Modification::AddRcpt { .. } => "add recipient",
            Modification::DelRcpt { .. } => "delete recipient",
            Modification::ReplaceBody(_) => "replace body",
        }
    }
}

/// One packet from a milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `O`: the milter's version, the actions it wants, the steps it skips
    /// (macro lists that may follow are ignored).
    Negotiated {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `c`
    Continue,
    /// `a`
    Accept,
    /// `r`
    Reject,
    /// `t`
    Tempfail,
    /// `d`
    Discard,
    /// `s`: no more of this step (body chunks).
    Skip,
    /// `p`: still working; restarts the timeout.
    Progress,
    /// `y`: a 4xx or 5xx reply, its text as the milter gave it (`554 5.7.1
    /// Gtube pattern`, multi-line replies with their CRLFs).
    ReplyCode { code: u16, text: String },
    /// `q`: put the message in quarantine, with a reason (at the end of a
    /// message, before the final answer).
    Quarantine(String),
    /// A change to the message.
    Modification(Modification),
}

impl Response {
    /// Ends a step: everything but progress, a quarantine and the
    /// modifications (which come before the final answer at the end of a
    /// message), and negotiation.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Response::Progress
                | Response::Quarantine(_)
                | Response::Modification(_)
                | Response::Negotiated { .. }
        )
    }
}

/// Why a milter's bytes were refused. The stream is out of step after one:
/// the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {0} octets (at most {max})", max = MAX_PACKET)]
    TooLong(usize),
    #[error("empty packet")]
    Empty,
    #[error("unknown response code 0x{0:02x}")]
    UnknownCode(u8),
    #[error("response '{code}': {1}", code = char::from(*.0))]
    Malformed(u8, &'static str),
    #[error("response '{code}': text not UTF-8", code = char::from(*.0))]
    NotUtf8(u8),
    #[error("reply code not 4xx or 5xx: {0:?}")]
    BadReplyCode(String),
}

/// Reads milter responses from bytes as they arrive, in any split.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds bytes read from the milter.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Octets fed and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete response, `None` until one has arrived whole.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Response>, DecodeError> {
        let Some(head) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_PACKET {
            return Err(DecodeError::TooLong(len));
        }
        if len == 0 {
            return Err(DecodeError::Empty);
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let response = parse(self.buf[4], &self.buf[5..4 + len]);
        self.buf.drain(..4 + len);
        response.map(Some)
    }
}

/// The responses in `bytes` fed to a [`Decoder`] `chunk` octets at a time,
/// up to the end or the first error: for the property tests and the
/// `milter_reply` fuzz target, which compare them across splits.
pub fn decode_in_chunks(bytes: &[u8], chunk: usize) -> (Vec<Response>, Option<DecodeError>) {
    let mut decoder = Decoder::new();
    let mut got = Vec::new();
    for part in bytes.chunks(chunk.max(1)) {
        decoder.feed(part);
        loop {
            match decoder.next() {
                Ok(Some(r)) => got.push(r),
                Ok(None) => break,
                Err(e) => return (got, Some(e)),
            }
        }
    }
    (got, None)
}

/// The data of one packet, read front to back.
struct Fields<'a> {
    code: u8,
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let Some(nul) = self.data.iter().position(|&b| b == 0) else {
            return Err(DecodeError::Malformed(self.code, "string without NUL"));
        };
        let (s, rest) = (&self.data[..nul], &self.data[nul + 1..]);
        self.data = rest;
        Ok(s)
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8(self.code))
    }

    /// A header field name: not empty, printable ASCII without a colon
    /// (so it cannot smuggle a line break or a second field into the
    /// header).
    fn header_name(&mut self) -> Result<String, DecodeError> {
        let name = self.text()?;
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(DecodeError::Malformed(self.code, "bad header name"));
        }
        Ok(name)
    }

    /// An address or its ESMTP arguments: no control characters (no line
    /// break to smuggle into an envelope).
    fn envelope(&mut self) -> Result<String, DecodeError> {
        let text = self.text()?;
        if text.bytes().any(|b| b < 32 || b == 127) {
            return Err(DecodeError::Malformed(self.code, "control character"));
        }
        Ok(text)
    }

    fn number(&mut self) -> Result<u32, DecodeError> {
        let Some((n, rest)) = self.data.split_first_chunk::<4>() else {
            return Err(DecodeError::Malformed(self.code, "number cut short"));
        };
        self.data = rest;
        Ok(u32::from_be_bytes(*n))
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(self.code, "trailing data"))
        }
    }
}

fn parse(code: u8, data: &[u8]) -> Result<Response, DecodeError> {
    let mut f = Fields { code, data };
    let bare = |r: Response| {
        if data.is_empty() {
            Ok(r)
        } else {
            Err(DecodeError::Malformed(code, "unexpected data"))
        }
    };
    let modification = |m: Modification| Ok(Response::Modification(m));
    match code {
        b'O' => {
            let version = f.number()?;
            let actions = f.number()?;
            let protocol = f.number()?;
            Ok(Response::Negotiated {
                version,
                actions,
                protocol,
            })
        }
        b'c' => bare(Response::Continue),
        b'a' => bare(Response::Accept),
        b'r' => bare(Response::Reject),
        b't' => bare(Response::Tempfail),
        b'd' => bare(Response::Discard),
        b's' => bare(Response::Skip),
        b'p' => bare(Response::Progress),
        b'y' => {
            let text = f.text()?;
            f.end()?;
            let code = reply_code(&text).ok_or(DecodeError::BadReplyCode(text.clone()))?;
            Ok(Response::ReplyCode { code, text })
        }
        b'q' => {
            let reason = f.text()?;
            f.end()?;
            Ok(Response::Quarantine(reason))
        }
        b'h' => {
            let name = f.header_name()?;
            let value = f.bytes()?.to_vec();
            f.end()?;
            modification(Modification::AddHeader { name, value })
        }
        b'i' | b'm' => {
            let index = f.number()?;
            let name = f.header_name()?;
            let value = f.bytes()?.to_vec();
            f.end()?;
            modification(if code == b'i' {
                Modification::InsertHeader { index, name, value }
            } else {
                Modification::ChangeHeader { index, name, value }
            })
        }
        b'e' | b'2' | b'+' => {
            let addr = f.envelope()?;
            let args = if code == b'+' || f.data.is_empty() {
                None
            } else {
                Some(f.envelope()?)
            };
            f.end()?;
            modification(if code == b'e' {
                Modification::ChangeFrom { addr, args }
            } else {
                Modification::AddRcpt { addr, args }
            })
        }
        b'-' => {
            let addr = f.envelope()?;
            f.end()?;
            modification(Modification::DelRcpt { addr })
        }
        b'b' => modification(Modification::ReplaceBody(data.to_vec())),
        other => Err(DecodeError::UnknownCode(other)),
    }
}

/// The code of a milter's reply text: three digits, the first 4 or 5, then
/// a space, a hyphen or the end.
fn reply_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    let digits = b.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !matches!(digits[0], b'4' | b'5') {
        return None;
    }
    if !matches!(b.get(3), None | Some(b' ') | Some(b'-')) {
        return None;
    }
    text[..3].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(cmd: Command) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&cmd, &mut out);
        out
    }

    fn packet(code: u8, data: &[u8]) -> Vec<u8> {
        let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(code);
        p.extend_from_slice(data);
        p
    }

    fn decode(code: u8, data: &[u8]) -> Result<Option<Response>, DecodeError> {
        let mut d = Decoder::new();
        d.feed(&packet(code, data));
        d.next()
    }

    fn ok(code: u8, data: &[u8]) -> Response {
        decode(code, data).unwrap().unwrap()
    }

    #[test]
    fn optneg_is_three_numbers() {
        let cmd = Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        };
        assert_eq!(
            bytes(cmd),
            [0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff]
        );
    }

    #[test]
    fn macros_are_the_stage_then_pairs() {
        let pairs = [
            ("j".to_string(), "mx".to_string()),
            ("{daemon_name}".into(), "".into()),
        ];
        let out = bytes(Command::Macros {
            stage: b'C',
            pairs: &pairs,
        });
        assert_eq!(out, packet(b'D', b"Cj\0mx\0{daemon_name}\0\0"));
    }

    #[test]
    fn connect_carries_family_port_and_address() {
        let v4 = Command::Connect {
            hostname: "mail.example.com",
            addr: Some("192.0.2.1:2525".parse().unwrap()),
        };
        assert_eq!(
            bytes(v4),
            packet(b'C', b"mail.example.com\x004\x09\xdd192.0.2.1\0")
        );
        let v6 = Command::Connect {
            hostname: "[2001:db8::1]",
            addr: Some("[2001:db8::1]:25".parse().unwrap()),
        };
        assert_eq!(
            bytes(v6),
            packet(b'C', b"[2001:db8::1]\x006\x00\x192001:db8::1\0")
        );
        let unknown = Command::Connect {
            hostname: "unknown",
            addr: None,
        };
        assert_eq!(bytes(unknown), packet(b'C', b"unknown\0U"));
    }

    #[test]
    fn envelope_commands_are_nul_terminated_strings() {
        assert_eq!(bytes(Command::Helo("client")), packet(b'H', b"client\0"));
        let mail = ["<a@example.com>".to_string(), "SIZE=10".into()];
        assert_eq!(
            bytes(Command::Mail(&mail)),
            packet(b'M', b"<a@example.com>\0SIZE=10\0")
        );
        let rcpt = ["<b@example.net>".to_string()];
        assert_eq!(
            bytes(Command::Rcpt(&rcpt)),
            packet(b'R', b"<b@example.net>\0")
        );
    }

    #[test]
    fn content_commands() {
        let header = Command::Header {
            name: "Subject",
            value: b"caf\xe9\n  folded",
        };
        assert_eq!(bytes(header), packet(b'L', b"Subject\0caf\xe9\n  folded\0"));
        assert_eq!(bytes(Command::Body(b"a\0b\r\n")), packet(b'B', b"a\0b\r\n"));
        for (cmd, code) in [
            (Command::Data, b'T'),
            (Command::EndOfHeaders, b'N'),
            (Command::EndOfMessage, b'E'),
            (Command::Abort, b'A'),
            (Command::Quit, b'Q'),
        ] {
            assert_eq!(bytes(cmd), packet(code, b""));
        }
    }

    #[test]
    fn negotiation_reply_with_macro_lists_after_it() {
        let mut data = [6u32, 0x13, 0x80].map(u32::to_be_bytes).concat();
        data.extend_from_slice(b"\0\0\0\x01{auth_authen}\0");
        assert_eq!(
            ok(b'O', &data),
            Response::Negotiated {
                version: 6,
                actions: 0x13,
                protocol: 0x80
            }
        );
        assert!(matches!(
            decode(b'O', &[0, 0, 0, 6, 0, 0]),
            Err(DecodeError::Malformed(b'O', _))
        ));
    }

    #[test]
    fn bare_responses() {
        for (code, r) in [
            (b'c', Response::Continue),
            (b'a', Response::Accept),
            (b'r', Response::Reject),
            (b't', Response::Tempfail),
            (b'd', Response::Discard),
            (b's', Response::Skip),
            (b'p', Response::Progress),
        ] {
            assert_eq!(ok(code, b""), r);
            assert!(decode(code, b"x").is_err());
        }
    }

    #[test]
    fn reply_codes_kept_verbatim() {
        assert_eq!(
            ok(b'y', b"554 5.7.1 Gtube pattern\0"),
            Response::ReplyCode {
                code: 554,
                text: "554 5.7.1 Gtube pattern".into()
            }
        );
        let multi = "450-4.7.1 first\r\n450 4.7.1 second";
        assert_eq!(
            ok(b'y', format!("{multi}\0").as_bytes()),
            Response::ReplyCode {
                code: 450,
                text: multi.into()
            }
        );
        assert_eq!(
            ok(b'y', b"421\0"),
            Response::ReplyCode {
                code: 421,
                text: "421".into()
            }
        );
        for bad in [&b"250 ok\0"[..], b"55 x\0", b"5541\0", b"abc\0", b""] {
            assert!(decode(b'y', bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode(b'y', b"554 no nul"),
            Err(DecodeError::Malformed(b'y', "string without NUL"))
        );
        assert_eq!(decode(b'y', b"554 \xff\0"), Err(DecodeError::NotUtf8(b'y')));
    }

    #[test]
    fn quarantine_reason() {
        assert_eq!(ok(b'q', b"virus\0"), Response::Quarantine("virus".into()));
    }

    #[test]
    fn header_modifications() {
        assert_eq!(
            ok(b'h', b"X-Spam\0yes\0"),
            Response::Modification(Modification::AddHeader {
                name: "X-Spam".into(),
                value: b"yes".to_vec()
            })
        );
        assert_eq!(
            ok(b'i', b"\0\0\0\x02X-A\0a\xe9\0"),
            Response::Modification(Modification::InsertHeader {
                index: 2,
                name: "X-A".into(),
                value: b"a\xe9".to_vec()
            })
        );
        assert_eq!(
            ok(b'm', b"\0\0\0\x01Subject\0\0"),
            Response::Modification(Modification::ChangeHeader {
                index: 1,
                name: "Subject".into(),
                value: vec![]
            })
        );
        assert!(decode(b'm', b"\0\0\0\x01Subject\0").is_err());
        assert!(decode(b'm', b"\0\0\x01").is_err());
        assert!(decode(b'h', b"X\0v\0extra").is_err());
    }

    #[test]
    fn header_names_that_could_break_the_header_are_refused() {
        for name in [
            &b""[..],
            b"X: y",
            b"X\r\nBcc",
            b"X Y",
            b"X\x7f",
            b"caf\xc3\xa9",
        ] {
            let mut data = name.to_vec();
            data.extend_from_slice(b"\0v\0");
            assert!(decode(b'h', &data).is_err(), "{name:?}");
            let mut indexed = vec![0, 0, 0, 1];
            indexed.extend_from_slice(&data);
            assert!(decode(b'i', &indexed).is_err(), "{name:?}");
            assert!(decode(b'm', &indexed).is_err(), "{name:?}");
        }
    }

    #[test]
    fn envelope_addresses_with_line_breaks_are_refused() {
        assert!(decode(b'+', b"<a@b>\r\nRCPT TO:<c@d>\0").is_err());
        assert!(decode(b'-', b"<a@b>\n\0").is_err());
        assert!(decode(b'e', b"<a@b>\0SIZE=1\r\n\0").is_err());
        assert!(decode(b'2', b"<a@b>\0\tX=1\0").is_err());
        assert!(decode(b'+', "<ü@example.com>\0".as_bytes()).is_ok());
    }

    #[test]
    fn envelope_modifications() {
        let m = |code, data: &[u8]| match ok(code, data) {
            Response::Modification(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            m(b'e', b"<n@example.com>\0"),
            Modification::ChangeFrom {
                addr: "<n@example.com>".into(),
                args: None
            }
        );
        assert_eq!(
            m(b'e', b"<n@example.com>\0SIZE=1\0"),
            Modification::ChangeFrom {
                addr: "<n@example.com>".into(),
                args: Some("SIZE=1".into())
            }
        );
        assert_eq!(
            m(b'+', b"<r@example.com>\0"),
            Modification::AddRcpt {
                addr: "<r@example.com>".into(),
                args: None
            }
        );
        assert_eq!(
            m(b'2', b"<r@example.com>\0NOTIFY=NEVER\0"),
            Modification::AddRcpt {
                addr: "<r@example.com>".into(),
                args: Some("NOTIFY=NEVER".into())
            }
        );
        assert_eq!(
            m(b'-', b"<r@example.com>\0"),
            Modification::DelRcpt {
                addr: "<r@example.com>".into()
            }
        );
        assert_eq!(
            m(b'b', b"new\r\nbody"),
            Modification::ReplaceBody(b"new\r\nbody".to_vec())
        );
        assert!(decode(b'-', b"<r@example.com>").is_err());
    }

    #[test]
    fn unknown_codes_are_errors() {
        assert_eq!(decode(b'Z', b""), Err(DecodeError::UnknownCode(b'Z')));
        assert_eq!(decode(b'4', b""), Err(DecodeError::UnknownCode(b'4')));
    }

    #[test]
    fn truncated_input_waits_for_more() {
        let mut stream = packet(b'h', b"X-Spam\0yes\0");
        stream.extend(packet(b'c', b""));
        for split in 0..stream.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            d.feed(&stream[..split]);
            while let Some(r) = d.next().unwrap() {
                got.push(r);
            }
            d.feed(&stream[split..]);
            while let Some(r) = d.next().unwrap() {
                got.push(r);
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[1], Response::Continue);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn oversized_length_is_refused_before_the_data() {
        let mut d = Decoder::new();
        d.feed(&[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(d.next(), Err(DecodeError::TooLong(0x7fff_ffff)));
        let mut d = Decoder::new();
        d.feed(&((MAX_PACKET + 1) as u32).to_be_bytes());
        assert!(matches!(d.next(), Err(DecodeError::TooLong(_))));
        let mut d = Decoder::new();
        d.feed(&[0, 0, 0, 0]);
        assert_eq!(d.next(), Err(DecodeError::Empty));
    }

    #[test]
    fn largest_packet_is_accepted() {
        let body = vec![b'x'; MAX_PACKET - 1];
        assert_eq!(
            ok(b'b', &body),
            Response::Modification(Modification::ReplaceBody(body))
        );
    }
}
