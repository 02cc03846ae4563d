//! One session with a milter ([`Connection`]), over TCP or a unix socket
//! ([`Address`]): the negotiation, one step per SMTP command (skipped
//! without a word when the milter said it does not want it, not waited
//! for when it said it will not reply), and a message's content sent
//! header by header and body chunk by chunk, with the changes the milter
//! asks for at its end collected. Every write and every wait for an answer
//! has a timeout ([`Timeouts`]); a `Progress` from the milter starts the
//! wait again.
//!
//! After any error the session is out of step: drop it.

use super::codec::{self, Command, DecodeError, Decoder, Modification, Response};
use crate::smtp::link::{ConnectError, Endpoint, Link};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// The steps we let a milter skip or leave unanswered, and the protocol
/// extensions we support: every `SMFIP_*` flag.
pub const OFFERED_PROTOCOL: u32 = codec::SMFIP_NOCONNECT
    | codec::SMFIP_NOHELO
    | codec::SMFIP_NOMAIL
    | codec::SMFIP_NORCPT
    | codec::SMFIP_NOBODY
    | codec::SMFIP_NOHDRS
    | codec::SMFIP_NOEOH
    | codec::SMFIP_NR_HDR
    | codec::SMFIP_NOUNKNOWN
    | codec::SMFIP_NODATA
    | codec::SMFIP_SKIP
    | codec::SMFIP_RCPT_REJ
    | codec::SMFIP_NR_CONN
    | codec::SMFIP_NR_HELO
    | codec::SMFIP_NR_MAIL
    | codec::SMFIP_NR_RCPT
    | codec::SMFIP_NR_DATA
    | codec::SMFIP_NR_UNKN
    | codec::SMFIP_NR_EOH
    | codec::SMFIP_NR_BODY
    | codec::SMFIP_HDR_LEADSPC;

/// The largest body chunk sent: libmilter refuses packets over 65535
/// octets by default (and Postfix sends chunks of this size).
pub const BODY_CHUNK: usize = 65535;

/// Where a milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name or IP address (without brackets) and a port.
    Inet(String, u16),
    Unix(PathBuf),
}

/// Why a milter address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("milter address {0:?}: not inet:, inet6:, unix: or local:")]
    Kind(String),
    #[error("milter address {0:?}: no host")]
    NoHost(String),
    #[error("milter address {0:?}: no port, or not a port from 1 to 65535")]
    Port(String),
    #[error("milter address {0:?}: no path")]
    NoPath(String),
}

impl Address {
    /// Postfix's and sendmail's forms: `inet:host:port`, `inet:[::1]:port`,
    /// `inet6:…`, `inet:port@host` (sendmail), `unix:/path`, `local:/path`.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| AddressError::Kind(text.into()))?;
        match kind.to_ascii_lowercase().as_str() {
            "unix" | "local" if rest.is_empty() => Err(AddressError::NoPath(text.into())),
            "unix" | "local" => Ok(Address::Unix(PathBuf::from(rest))),
            "inet" | "inet6" => {
                let (host, port) = match rest.split_once('@') {
                    Some((port, host)) => (host, port),
                    None => rest
                        .rsplit_once(':')
                        .ok_or_else(|| AddressError::Port(text.into()))?,
                };
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                if host.is_empty() {
                    return Err(AddressError::NoHost(text.into()));
                }
                match port.parse::<u16>() {
                    Ok(port) if port > 0 => Ok(Address::Inet(host.to_string(), port)),
                    _ => Err(AddressError::Port(text.into())),
                }
            }
            _ => Err(AddressError::Kind(text.into())),
        }
    }

    fn endpoint(&self) -> Endpoint<'_> {
        match self {
            Address::Inet(host, port) => Endpoint::Tcp { host, port: *port },
            Address::Unix(path) => Endpoint::Unix(path),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Address::Inet(host, port) if host.contains(':') => write!(f, "inet:[{host}]:{port}"),
            Address::Inet(host, port) => write!(f, "inet:{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// How long we wait for a milter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect.
    pub connect: Duration,
    /// For the negotiation and each envelope and header step (writing the
    /// command, then each answer).
    pub command: Duration,
    /// For each body chunk and the end of the message.
    pub content: Duration,
}

/// Why a session with a milter failed.
#[derive(Debug, thiserror::Error)]
pub enum MilterError {
    #[error("milter {0}")]
    Connect(#[from] ConnectError),
    #[error("milter timeout at {0}")]
    Timeout(&'static str),
    #[error("milter I/O error at {0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("milter closed the connection at {0}")]
    Closed(&'static str),
    #[error("milter protocol error at {0}: {1}")]
    Protocol(&'static str, DecodeError),
    #[error("milter protocol error at {0}: {1}")]
    Unexpected(&'static str, String),
    #[error("milter replaced the body with more than {0} octets")]
    ReplacedTooLarge(u64),
    #[error(
        "milter asked for more than {MAX_CHANGES} changes or {MAX_CHANGE_OCTETS} octets of them"
    )]
    TooManyChanges,
    #[error("reading the body for the milter: {0}")]
    Body(std::io::Error),
    #[error("writing the body the milter replaced: {0}")]
    ReplacedBody(std::io::Error),
}

/// How a message's content ended with a milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOfMessage {
    /// The final answer: at the end of the message, or earlier when the
    /// milter decided during the header or body (then nothing else is set).
    pub response: Response,
    /// The changes asked for, in order, other than the body (the
    /// envelope's and the header's: apply the header's with
    /// [`super::edit::apply`]).
    pub modifications: Vec<Modification>,
    /// A new body was written to `replaced_body`.
    pub body_replaced: bool,
    /// The milter asked for the message to be quarantined, with this reason.
    pub quarantine: Option<String>,
    /// What the milter asked for without having negotiated it (by
    /// [`Modification::name`], or `quarantine`): not done, for the log.
    pub refused: Vec<&'static str>,
}

impl EndOfMessage {
    fn early(response: Response) -> EndOfMessage {
        EndOfMessage {
            response,
            modifications: Vec::new(),
            body_replaced: false,
            quarantine: None,
            refused: Vec::new(),
        }
    }
}

/// What one command is in the protocol: the flag that skips it, the flag
/// that leaves it unanswered (`u32::MAX`: never answered), whether it is
/// content, its name for errors.
struct Step {
    skip: u32,
    no_reply: u32,
    content: bool,
    name: &'static str,
}

/// The most changes (other than a new body) one message may get, and
/// their octets: a header block is at most a few MiB, so a filter asking
/// for more is broken, and is not given the memory.
pub const MAX_CHANGES: usize = 10_000;
pub const MAX_CHANGE_OCTETS: usize = 4 << 20;

/// The octets a change (other than a new body) keeps in memory.
fn octets(m: &Modification) -> usize {
    match m {
        Modification::AddHeader { name, value }
        | Modification::InsertHeader { name, value, .. }
        | Modification::ChangeHeader { name, value, .. } => name.len() + value.len(),
        Modification::ChangeFrom { addr, args } | Modification::AddRcpt { addr, args } => {
            addr.len() + args.as_ref().map_or(0, String::len)
        }
        Modification::DelRcpt { addr } => addr.len(),
        Modification::ReplaceBody(_) => 0,
    }
}

/// The `no_reply` of the commands a milter never answers.
const NEVER_ANSWERED: u32 = u32::MAX;

impl Step {
    fn answered(&self, protocol: u32) -> bool {
        self.no_reply != NEVER_ANSWERED && protocol & self.no_reply == 0
    }
}

fn step_of(cmd: &Command) -> Step {
    let (skip, no_reply, content, name) = match cmd {
        Command::OptNeg { .. } => (0, 0, false, "negotiation"),
        Command::Macros { .. } => (0, NEVER_ANSWERED, false, "macros"),
        Command::Connect { .. } => (
            codec::SMFIP_NOCONNECT,
            codec::SMFIP_NR_CONN,
            false,
            "connect",
        ),
        Command::Helo(_) => (codec::SMFIP_NOHELO, codec::SMFIP_NR_HELO, false, "helo"),
        Command::Mail(_) => (codec::SMFIP_NOMAIL, codec::SMFIP_NR_MAIL, false, "mail"),
        Command::Rcpt(_) => (codec::SMFIP_NORCPT, codec::SMFIP_NR_RCPT, false, "rcpt"),
        Command::Data => (codec::SMFIP_NODATA, codec::SMFIP_NR_DATA, false, "data"),
        Command::Header { .. } => (codec::SMFIP_NOHDRS, codec::SMFIP_NR_HDR, false, "header"),
        Command::EndOfHeaders => (
            codec::SMFIP_NOEOH,
            codec::SMFIP_NR_EOH,
            false,
            "end of headers",
        ),
        Command::Body(_) => (codec::SMFIP_NOBODY, codec::SMFIP_NR_BODY, true, "body"),
        Command::EndOfMessage => (0, 0, true, "end of message"),
        Command::Abort => (0, NEVER_ANSWERED, false, "abort"),
        Command::Quit => (0, NEVER_ANSWERED, false, "quit"),
    };
    Step {
        skip,
        no_reply,
        content,
        name,
    }
}

/// One session with a milter.
pub struct Connection {
    link: Link,
    decoder: Decoder,
    timeouts: Timeouts,
    version: u32,
    actions: u32,
    protocol: u32,
    out: Vec<u8>,
}

impl Connection {
    /// Connects within `timeouts.connect` and negotiates: protocol version
    /// 6, the modifications we allow (`actions`, `SMFIF_*`), every step
    /// skippable ([`OFFERED_PROTOCOL`]). A milter answering with version 2
    /// or later is taken with what it asked for; the actions it gets are
    /// those it asked for among `actions`; a protocol flag we did not
    /// offer is an error.
    pub async fn open(
        address: &Address,
        timeouts: Timeouts,
        actions: u32,
    ) -> Result<Connection, MilterError> {
        let link = Link::connect(address.endpoint(), timeouts.connect).await?;
        let mut conn = Connection {
            link,
            decoder: Decoder::new(),
            timeouts,
            version: codec::VERSION,
            actions: 0,
            protocol: 0,
            out: Vec::new(),
        };
        let offer = Command::OptNeg {
            version: codec::VERSION,
            actions,
            protocol: OFFERED_PROTOCOL,
        };
        conn.out.clear();
        codec::encode(&offer, &mut conn.out);
        let step = "negotiation";
        conn.write(step, timeouts.command).await?;
        match conn.read(step, timeouts.command).await? {
            Response::Negotiated {
                version,
                actions: asked,
                protocol,
            } => {
                if version < 2 {
                    return Err(MilterError::Unexpected(step, format!("version {version}")));
                }
                if protocol & !OFFERED_PROTOCOL != 0 {
                    return Err(MilterError::Unexpected(
                        step,
                        format!("protocol flags 0x{protocol:x} beyond 0x{OFFERED_PROTOCOL:x}"),
                    ));
                }
                conn.version = version.min(codec::VERSION);
                conn.actions = asked & actions;
                conn.protocol = protocol;
                Ok(conn)
            }
            other => Err(MilterError::Unexpected(step, format!("{other:?}"))),
        }
    }

    /// Whether the milter does not want a step (`SMFIP_NO*`). A milter of
    /// version 2 or 3 never gets DATA, which it does not know.
    pub fn skips(&self, flag: u32) -> bool {
        self.protocol & flag != 0 || (flag == codec::SMFIP_NODATA && self.version < 4)
    }

    /// The modifications the milter may ask for (`SMFIF_*`).
    pub fn actions(&self) -> u32 {
        self.actions
    }

    /// The protocol flags the milter asked for (`SMFIP_*`), e.g. whether
    /// it wants rejected recipients (`SMFIP_RCPT_REJ`) or header values
    /// with their leading space (`SMFIP_HDR_LEADSPC`).
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// The protocol version agreed (2 to 6).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// One step: `macros` (if any, for `cmd`'s letter) and `cmd`, and the
    /// milter's final answer (`Continue`, `Accept`, `Reject`, `Tempfail`,
    /// `Discard`, `Skip` or `ReplyCode`). A step the milter skips is not
    /// sent and a step it does not answer is not waited for: both give
    /// `Continue`, as do `Macros`, `Abort` and `Quit`, which have no
    /// answer. Progress restarts the wait (`command`, or `content` for a
    /// body chunk and the end of the message). A modification or a
    /// quarantine (valid only at the end of a message, see
    /// [`Connection::message`]) is an error.
    pub async fn step(
        &mut self,
        macros: &[(String, String)],
        cmd: Command<'_>,
    ) -> Result<Response, MilterError> {
        let step = step_of(&cmd);
        if let Command::OptNeg { .. } = cmd {
            return Err(MilterError::Unexpected(step.name, "sent by open".into()));
        }
        if step.skip != 0 && self.skips(step.skip) {
            return Ok(Response::Continue);
        }
        let timeout = if step.content {
            self.timeouts.content
        } else {
            self.timeouts.command
        };
        self.out.clear();
        if !macros.is_empty() && !matches!(cmd, Command::Macros { .. }) {
            let pairs = Command::Macros {
                stage: cmd.code(),
                pairs: macros,
            };
            codec::encode(&pairs, &mut self.out);
        }
        codec::encode(&cmd, &mut self.out);
        self.write(step.name, timeout).await?;
        // Macros, abort and quit are never answered; a step the milter
        // negotiated as unanswered (SMFIP_NR_*) is not either.
        if !step.answered(self.protocol) {
            return Ok(Response::Continue);
        }
        loop {
            match self.read(step.name, timeout).await? {
                Response::Progress => continue,
                r @ (Response::Modification(_)
                | Response::Quarantine(_)
                | Response::Negotiated { .. }) => {
                    return Err(MilterError::Unexpected(step.name, format!("{r:?}")));
                }
                r => return Ok(r),
            }
        }
    }

    /// A message's content, after DATA: each of `header_fields` (as
    /// [`super::edit::fields`] gives them, with the leading space the
    /// milter negotiated), the end of the header, the body read from
    /// `body` (as on the wire, CRLF line endings, without dot-stuffing) in
    /// chunks of at most [`BODY_CHUNK`] octets and never whole in memory,
    /// then the end of the message with `macros`; and what the milter
    /// answers to it.
    ///
    /// Call it only while the milter still wants the message (not after
    /// it decided at MAIL, RCPT or DATA). A `Skip` to a header field stops
    /// the header fields, to a body chunk the body. Any other answer than
    /// `Continue` (or `Skip`) to a header field, the end of the header or
    /// a body chunk ends the message there: it is returned alone (send
    /// [`Connection::abort`] before another message). At the end of the
    /// message, modifications are collected until the final answer; a new
    /// body is written to `replaced_body` (more than `max_replaced` octets:
    /// [`MilterError::ReplacedTooLarge`]); what the milter had not
    /// negotiated is not done but named in [`EndOfMessage::refused`].
    pub async fn message(
        &mut self,
        macros: &[(String, String)],
        header_fields: &[(String, Vec<u8>)],
        mut body: impl AsyncRead + Unpin,
        replaced_body: &mut (impl AsyncWrite + Unpin),
        max_replaced: u64,
    ) -> Result<EndOfMessage, MilterError> {
        for (name, value) in header_fields {
            if self.skips(codec::SMFIP_NOHDRS) {
                break;
            }
            match self.step(&[], Command::Header { name, value }).await? {
                Response::Continue => {}
                Response::Skip => break,
                r => return Ok(EndOfMessage::early(r)),
            }
        }
        let r = self.step(&[], Command::EndOfHeaders).await?;
        if !matches!(r, Response::Continue | Response::Skip) {
            return Ok(EndOfMessage::early(r));
        }
        if !self.skips(codec::SMFIP_NOBODY) {
            let mut chunk = vec![0u8; BODY_CHUNK];
            loop {
                let len = fill(&mut body, &mut chunk)
                    .await
                    .map_err(MilterError::Body)?;
                if len == 0 {
                    break;
                }
                match self.step(&[], Command::Body(&chunk[..len])).await? {
                    Response::Continue => {}
                    Response::Skip => break,
                    r => return Ok(EndOfMessage::early(r)),
                }
            }
        }
        self.end_of_message(macros, replaced_body, max_replaced)
            .await
    }

    async fn end_of_message(
        &mut self,
        macros: &[(String, String)],
        replaced_body: &mut (impl AsyncWrite + Unpin),
        max_replaced: u64,
    ) -> Result<EndOfMessage, MilterError> {
        let step = "end of message";
        self.out.clear();
        if !macros.is_empty() {
            let pairs = Command::Macros {
                stage: b'E',
                pairs: macros,
            };
            codec::encode(&pairs, &mut self.out);
        }
        codec::encode(&Command::EndOfMessage, &mut self.out);
        let timeout = self.timeouts.content;
        self.write(step, timeout).await?;
        let mut end = EndOfMessage::early(Response::Continue);
        let mut replaced = 0u64;
        let mut kept = 0usize;
        loop {
            let response = self.read(step, timeout).await?;
            if matches!(
                response,
                Response::Modification(_) | Response::Quarantine(_)
            ) {
                if let Response::Modification(m) = &response {
                    kept += octets(m);
                }
                let count = end.modifications.len() + end.refused.len();
                if count >= MAX_CHANGES || kept > MAX_CHANGE_OCTETS {
                    return Err(MilterError::TooManyChanges);
                }
            }
            match response {
                Response::Progress => {}
                Response::Quarantine(_) if self.actions & codec::SMFIF_QUARANTINE == 0 => {
                    end.refused.push("quarantine");
                }
                Response::Quarantine(reason) => end.quarantine = Some(reason),
                Response::Modification(m) if self.actions & m.action() == 0 => {
                    end.refused.push(m.name());
                }
                Response::Modification(Modification::ReplaceBody(chunk)) => {
                    replaced += chunk.len() as u64;
                    if replaced > max_replaced {
                        return Err(MilterError::ReplacedTooLarge(max_replaced));
                    }
                    replaced_body
                        .write_all(&chunk)
                        .await
                        .map_err(MilterError::ReplacedBody)?;
                    end.body_replaced = true;
                }
                Response::Modification(m) => end.modifications.push(m),
                r @ Response::Negotiated { .. } => {
                    return Err(MilterError::Unexpected(step, format!("{r:?}")));
                }
                r => {
                    end.response = r;
                    break;
                }
            }
        }
        if end.body_replaced {
            replaced_body
                .flush()
                .await
                .map_err(MilterError::ReplacedBody)?;
        }
        Ok(end)
    }

    /// Tells the milter to forget the current message (no answer).
    pub async fn abort(&mut self) -> Result<(), MilterError> {
        self.step(&[], Command::Abort).await.map(|_| ())
    }

    /// Ends the session: QUIT, and the connection closed (errors ignored).
    pub async fn quit(mut self) {
        let _ = self.step(&[], Command::Quit).await;
        let _ = tokio::time::timeout(self.timeouts.command, self.link.shutdown()).await;
    }

    /// Writes `self.out` within `timeout`.
    async fn write(&mut self, step: &'static str, timeout: Duration) -> Result<(), MilterError> {
        match tokio::time::timeout(timeout, self.link.write_all(&self.out)).await {
            Err(_) => Err(MilterError::Timeout(step)),
            Ok(Err(e)) => Err(MilterError::Io(step, e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The next response, whole within `timeout`.
    async fn read(
        &mut self,
        step: &'static str,
        timeout: Duration,
    ) -> Result<Response, MilterError> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(r) = self
                .decoder
                .next()
                .map_err(|e| MilterError::Protocol(step, e))?
            {
                return Ok(r);
            }
            let n = match tokio::time::timeout_at(deadline, self.link.read(&mut buf)).await {
                Err(_) => return Err(MilterError::Timeout(step)),
                Ok(Err(e)) => return Err(MilterError::Io(step, e)),
                Ok(Ok(0)) => return Err(MilterError::Closed(step)),
                Ok(Ok(n)) => n,
            };
            self.decoder.feed(&buf[..n]);
        }
    }
}

/// Reads into `buf` until it is full or the input ends; the octets read.
async fn fill(input: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match input.read(&mut buf[len..]).await? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
