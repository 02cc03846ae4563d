//! The SMTP and LMTP client that hands messages to the downstream (and
//! asks it about recipients): EHLO/LHLO, STARTTLS as a [`TlsPolicy`] says
//! (when plaintext is allowed: when offered, once more in plaintext when
//! the handshake fails; else never in plaintext), the original client told
//! with XCLIENT or XFORWARD when offered, MAIL (SMTPUTF8 and the DSN
//! parameters passed on when offered; a message that needs SMTPUTF8 never
//! goes to a downstream without it), RCPT and DATA
//! pipelined when offered, a result per recipient (LMTP: one final reply
//! per recipient), dot-stuffing on the way out. Over a unix socket (LMTP
//! to Dovecot) there is no STARTTLS: it never leaves the host. Every read has a timeout
//! and every reply a size bound; every connection says what it got of TLS
//! ([`Encryption`]).
//!
//! Size: about 570 lines of code and 40 of tests; the client is one
//! conversation (greeting to QUIT) and reads best in one file.

use super::command::DsnRequest;
use super::conn::{Conn, ConnError, Line};
use super::data::{end_of_data, stuff};
use super::link::{ConnectError, Endpoint, Link};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

/// What the client does about TLS (`downstream.tls`).
pub trait TlsPolicy {
    /// The configuration of the handshake (which certificates it accepts).
    fn config(&self) -> Arc<rustls::ClientConfig>;
    /// Whether a message may go in plaintext when TLS cannot be had (the
    /// downstream does not offer it, refuses it, or the handshake fails).
    fn plaintext_allowed(&self) -> bool;
    /// The policy's name, for errors (`required`).
    fn name(&self) -> &'static str;
}

/// What one connection to the downstream ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// TLS, with the protocol version as rustls names it (`TLSv1_3`).
    Tls(String),
    /// No TLS, and why (`not offered`, `handshake failed: …`).
    Plain(String),
}

impl Encryption {
    /// The `tls=` of a delivery line: the version, or `none`.
    pub fn version(&self) -> &str {
        match self {
            Encryption::Tls(version) => version,
            Encryption::Plain(_) => "none",
        }
    }

    /// The `tls_reason=` of a delivery line without TLS.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Encryption::Tls(_) => None,
            Encryption::Plain(why) => Some(why),
        }
    }
}

/// The name a target's certificate must carry: its host name, or for an IP
/// literal its address (checked against the IP SANs).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_string()).ok()
}

/// A downstream host and how to talk to it.
#[derive(Clone, Copy)]
pub struct Peer<'a> {
    pub endpoint: Endpoint<'a>,
    pub lmtp: bool,
    /// Our name in EHLO/LHLO.
    pub helo: &'a str,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// One message to one downstream host.
pub struct Request<'a> {
    pub peer: Peer<'a>,
    /// With angle brackets.
    pub from: &'a str,
    pub rcpts: &'a [String],
    pub body_8bit: bool,
    /// Received with `SMTPUTF8`: passed on to a downstream that offers it.
    pub smtputf8: bool,
    /// The message cannot go without SMTPUTF8 (an address or a header
    /// beyond ASCII): a downstream without it fails every recipient; it is
    /// never downgraded.
    pub needs_smtputf8: bool,
    /// The sender's DSN parameters, passed on to a downstream that offers
    /// DSN.
    pub dsn: &'a DsnRequest,
    /// The original client, told to a downstream that offers XCLIENT or
    /// XFORWARD (`None`: told nothing).
    pub origin: Option<Origin<'a>>,
    pub message: Message<'a>,
}

/// Who sent the message to us, for the downstream's logs and checks.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub addr: std::net::IpAddr,
    /// Verified host name, or `[UNAVAILABLE]`; `None`: not known.
    pub name: Option<&'a str>,
    pub helo: &'a str,
    pub esmtp: bool,
}

/// Where the message to send is: `len` octets at `offset` in the file at
/// `path` (the queue file), read a piece at a time as it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub path: &'a std::path::Path,
    pub offset: u64,
    pub len: u64,
    /// The file was just written (its pages are in memory): a small one
    /// is read in place instead of on a blocking thread.
    pub in_memory: bool,
}

/// The downstream's answer for one recipient, with its reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    Delivered(String),
    Deferred(String),
    Failed(String),
}

/// The attempt at this host failed as a whole; try the next target.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("malformed reply from downstream")]
    Malformed,
    #[error("queue file: {0}")]
    QueueFile(std::io::Error),
    #[error("downstream said {0}")]
    Refused(String),
    #[error("TLS handshake with downstream failed: {0}")]
    Tls(String),
    /// `downstream.tls` does not allow plaintext, and TLS could not be had.
    #[error("no TLS ({why}), and downstream.tls = {mode} never sends in plaintext")]
    TlsRequired { mode: &'static str, why: String },
}

/// A downstream reply: code and the text of all its lines.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    fn result(&self) -> RcptResult {
        let shown = format!("{} {}", self.code, self.text);
        match self.code {
            200..=299 => RcptResult::Delivered(shown),
            500..=599 => RcptResult::Failed(shown),
            _ => RcptResult::Deferred(shown),
        }
    }

    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

const MAX_REPLY_LINE: usize = 2048;
const MAX_REPLY_LINES: usize = 100;

pub async fn read_reply(conn: &mut Conn<Link>, timeout: Duration) -> Result<Reply, ClientError> {
    let mut text = Vec::new();
    for _ in 0..MAX_REPLY_LINES {
        let Line::Text(line) = conn.read_line(MAX_REPLY_LINE, timeout).await? else {
            return Err(ClientError::Malformed);
        };
        let line = String::from_utf8_lossy(&line);
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or(ClientError::Malformed)?;
        let rest = line.get(4..).unwrap_or("").to_string();
        let more = line.as_bytes().get(3) == Some(&b'-');
        text.push(rest);
        if !more {
            return Ok(Reply {
                code,
                text: text.join(" "),
            });
        }
    }
    Err(ClientError::Malformed)
}

async fn command(
    conn: &mut Conn<Link>,
    line: &str,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    conn.write(line.as_bytes());
    conn.write(b"\r\n");
    conn.flush(timeout).await?;
    read_reply(conn, timeout).await
}

/// Extensions from an EHLO/LHLO reply text, upper case.
pub struct Extensions(Vec<String>);

impl Extensions {
    pub fn has(&self, name: &str) -> bool {
        self.params(name).is_some()
    }

    /// The words after an extension's name (XCLIENT's attributes).
    fn params(&self, name: &str) -> Option<Vec<&str>> {
        self.0.iter().find_map(|e| {
            let mut words = e.split(' ');
            (words.next() == Some(name)).then(|| words.collect())
        })
    }
}

async fn hello(conn: &mut Conn<Link>, req: &Peer<'_>) -> Result<Extensions, ClientError> {
    let verb = if req.lmtp { "LHLO" } else { "EHLO" };
    conn.write(format!("{verb} {}\r\n", req.helo).as_bytes());
    conn.flush(req.command_timeout).await?;
    let mut lines = Vec::new();
    for _ in 0..MAX_REPLY_LINES {
        let Line::Text(line) = conn.read_line(MAX_REPLY_LINE, req.command_timeout).await? else {
            return Err(ClientError::Malformed);
        };
        let line = String::from_utf8_lossy(&line).to_string();
        let code = line.get(..3).unwrap_or("");
        let more = line.as_bytes().get(3) == Some(&b'-');
        if !code.starts_with('2') {
            if req.lmtp || more {
                return Err(ClientError::Refused(line));
            }
            // An SMTP server without ESMTP: plain HELO, no extensions.
            let reply = command(conn, &format!("HELO {}", req.helo), req.command_timeout).await?;
            return match reply.is_ok() {
                true => Ok(Extensions(Vec::new())),
                false => Err(ClientError::Refused(format!(
                    "{} {}",
                    reply.code, reply.text
                ))),
            };
        }
        lines.push(line.get(4..).unwrap_or("").to_ascii_uppercase());
        if !more {
            // The first line is the server's name, not an extension.
            lines.remove(0);
            return Ok(Extensions(lines));
        }
    }
    Err(ClientError::Malformed)
}

/// Why a connection without TLS has none (`tls_reason=`).
const NOT_OFFERED: &str = "not offered";
const NOT_REACHED: &str = "not reached";
/// A unix socket never leaves the host: no TLS is asked for, whatever
/// `downstream.tls` says.
const LOCAL_SOCKET: &str = "local socket";

/// One attempt at one host: a result per recipient, or why the host could
/// not take the message; and what the connection got of TLS.
pub struct Attempt {
    pub results: Result<Vec<RcptResult>, ClientError>,
    pub tls: Encryption,
    /// How the original client was told (`xclient`, `xforward`), if it was.
    pub origin_told: Option<&'static str>,
    /// It went over a connection kept open from an earlier message.
    pub reused: bool,
}

/// How long a reused connection may take to answer its RSET before a
/// new one is opened instead.
const REUSED_TIMEOUT: Duration = Duration::from_secs(2);

/// Delivers to one host, with TLS as `tls` says, on `reused` (a session
/// kept open from an earlier message, if it still answers RSET) or a new
/// connection. The session comes back when it can carry another message
/// (the transaction went through to its end, and XCLIENT did not make it
/// the original client's); the caller keeps it, or ends it with [`quit`].
pub async fn deliver(
    req: &Request<'_>,
    tls: &impl TlsPolicy,
    reused: Option<Session>,
) -> (Attempt, Option<Session>) {
    let mut was_reused = false;
    let ready = match reused {
        Some(mut session) => {
            let t = req.peer.command_timeout.min(REUSED_TIMEOUT);
            match command(&mut session.conn, "RSET", t).await {
                Ok(reply) if reply.is_ok() => {
                    was_reused = true;
                    Ok(session)
                }
                _ => open(&req.peer, tls).await,
            }
        }
        None => open(&req.peer, tls).await,
    };
    let mut session = match ready {
        Ok(session) => session,
        Err(failed) => {
            let attempt = Attempt {
                results: Err(failed.error),
                tls: failed.tls,
                origin_told: None,
                reused: false,
            };
            return (attempt, None);
        }
    };
    let origin_told = match req.origin {
        Some(origin) => match introduce(&mut session, &origin, &req.peer).await {
            Ok(told) => told,
            Err(error) => {
                let attempt = Attempt {
                    results: Err(error),
                    tls: session.tls,
                    origin_told: None,
                    reused: was_reused,
                };
                return (attempt, None);
            }
        },
        None => None,
    };
    let results = transaction(&mut session.conn, req, &session.ext).await;
    let attempt = Attempt {
        tls: session.tls.clone(),
        results,
        origin_told,
        reused: was_reused,
    };
    // A connection that failed halfway is out of step, and one told by
    // XCLIENT it serves that client stays that client's: neither is reused.
    let reusable = attempt.results.is_ok() && origin_told != Some("xclient");
    match reusable {
        true => (attempt, Some(session)),
        false => {
            if attempt.results.is_ok() {
                quit(session, req.peer.command_timeout).await;
            }
            (attempt, None)
        }
    }
}

/// Ends a session politely: QUIT, then close.
pub async fn quit(mut session: Session, timeout: Duration) {
    session.conn.write(b"QUIT\r\n");
    let _ = session.conn.flush(timeout).await;
    session.conn.shutdown().await;
}

/// Tells the downstream who the original client is, with XCLIENT (then
/// greets again with the client's HELO name, as the protocol wants) or
/// else XFORWARD, giving the attributes it offers. A downstream that
/// refuses gets the message anyway, without them.
async fn introduce(
    session: &mut Session,
    origin: &Origin<'_>,
    peer: &Peer<'_>,
) -> Result<Option<&'static str>, ClientError> {
    let (verb, offered) = match (
        session.ext.params("XCLIENT"),
        session.ext.params("XFORWARD"),
    ) {
        (Some(attrs), _) => ("XCLIENT", attrs),
        (None, Some(attrs)) => ("XFORWARD", attrs),
        (None, None) => return Ok(None),
    };
    let addr = match origin.addr {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("IPV6:{v6}"),
    };
    let proto = if origin.esmtp { "ESMTP" } else { "SMTP" };
    let mut line = verb.to_string();
    for (name, value) in [
        ("ADDR", Some(addr.as_str())),
        // Unknown is said as unknown: else the downstream would keep ours.
        ("NAME", Some(origin.name.unwrap_or("[UNAVAILABLE]"))),
        ("HELO", Some(origin.helo).filter(|h| !h.is_empty())),
        ("PROTO", Some(proto)),
    ] {
        if let (true, Some(value)) = (offered.contains(&name), value) {
            line.push_str(&format!(" {name}={}", xtext(value)));
        }
    }
    if line.len() == verb.len() {
        return Ok(None);
    }
    let t = peer.command_timeout;
    let reply = command(&mut session.conn, &line, t).await?;
    match (verb, reply.code) {
        ("XCLIENT", 220) => {
            // The session starts again, greeted with the client's own name
            // (as a proxy does), which the downstream then logs.
            let helo = Some(origin.helo).filter(|h| !h.is_empty());
            let again = Peer {
                helo: helo.unwrap_or(peer.helo),
                ..*peer
            };
            session.ext = hello(&mut session.conn, &again).await?;
            Ok(Some("xclient"))
        }
        ("XFORWARD", 250) => Ok(Some("xforward")),
        _ => Ok(None),
    }
}

/// RFC 3461's xtext: `+`, `=`, and what is not printable ASCII as `+HH`.
fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'+' | b'=' => out.push_str(&format!("+{b:02X}")),
            33..=126 => out.push(char::from(b)),
            _ => out.push_str(&format!("+{b:02X}")),
        }
    }
    out
}

/// A greeted connection to the downstream, encrypted as the policy asked.
pub struct Session {
    pub conn: Conn<Link>,
    pub ext: Extensions,
    pub tls: Encryption,
}

/// A connection that could not be opened, and how far TLS got.
pub struct Failed {
    pub error: ClientError,
    pub tls: Encryption,
}

/// Connects, reads the greeting, says EHLO/LHLO, and STARTTLS (then EHLO
/// again) when offered. Without TLS to be had, `opportunistic` carries on
/// in plaintext (after a failed handshake, on a new connection), the other
/// modes fail with [`ClientError::TlsRequired`] or [`ClientError::Tls`].
pub async fn open(peer: &Peer<'_>, tls: &impl TlsPolicy) -> Result<Session, Failed> {
    match open_once(peer, tls).await {
        Err(Failed {
            error: ClientError::Tls(why),
            ..
        }) if tls.plaintext_allowed() => {
            // Once more, in plaintext.
            let tls = Encryption::Plain(format!("handshake failed: {why}"));
            match greet(peer).await {
                Ok((conn, ext)) => Ok(Session { conn, ext, tls }),
                Err(error) => Err(Failed { error, tls }),
            }
        }
        other => other,
    }
}

/// One connection, with STARTTLS when offered.
async fn open_once(peer: &Peer<'_>, tls: &impl TlsPolicy) -> Result<Session, Failed> {
    let fail = |tls: Encryption| move |error: ClientError| Failed { error, tls };
    let (mut conn, ext) = greet(peer)
        .await
        .map_err(fail(Encryption::Plain(NOT_REACHED.into())))?;
    let Endpoint::Tcp { host, .. } = peer.endpoint else {
        let tls = Encryption::Plain(LOCAL_SOCKET.into());
        return Ok(Session { conn, ext, tls });
    };
    if !ext.has("STARTTLS") {
        return without_tls(peer, tls, conn, ext, NOT_OFFERED.into()).await;
    }
    let t = peer.command_timeout;
    let reply = command(&mut conn, "STARTTLS", t)
        .await
        .map_err(fail(Encryption::Plain("STARTTLS failed".into())))?;
    if reply.code != 220 {
        // The session goes on in plaintext (RFC 3207), if it may.
        let why = format!("STARTTLS refused: {} {}", reply.code, reply.text);
        return without_tls(peer, tls, conn, ext, why).await;
    }
    let handshake = match server_name(host) {
        Some(name) => conn
            .connect_tls(tls.config(), name, t)
            .await
            .map_err(|e| match e {
                ConnError::Handshake(e) => e.to_string(),
                other => other.to_string(),
            }),
        None => Err(format!("`{host}` is not a name TLS can check")),
    };
    if let Err(why) = handshake {
        return Err(Failed {
            error: ClientError::Tls(why.clone()),
            tls: Encryption::Plain(format!("handshake failed: {why}")),
        });
    }
    let version = conn
        .tls_description()
        .and_then(|d| d.split(' ').next().map(str::to_string))
        .unwrap_or_default();
    let encrypted = Encryption::Tls(version);
    let ext = hello(&mut conn, peer)
        .await
        .map_err(fail(encrypted.clone()))?;
    Ok(Session {
        conn,
        ext,
        tls: encrypted,
    })
}

/// No TLS to be had, for `why`: the session goes on in plaintext if the
/// policy allows it; else it ends here, with QUIT.
async fn without_tls(
    peer: &Peer<'_>,
    tls: &impl TlsPolicy,
    mut conn: Conn<Link>,
    ext: Extensions,
    why: String,
) -> Result<Session, Failed> {
    if tls.plaintext_allowed() {
        return Ok(Session {
            conn,
            ext,
            tls: Encryption::Plain(why),
        });
    }
    conn.write(b"QUIT\r\n");
    let _ = conn.flush(peer.command_timeout).await;
    conn.shutdown().await;
    Err(Failed {
        error: ClientError::TlsRequired {
            mode: tls.name(),
            why: why.clone(),
        },
        tls: Encryption::Plain(why),
    })
}

/// Connects, reads the greeting and says EHLO/LHLO.
async fn greet(peer: &Peer<'_>) -> Result<(Conn<Link>, Extensions), ClientError> {
    let stream = Link::connect(peer.endpoint, peer.connect_timeout).await?;
    let mut conn = Conn::new(stream);
    let greeting = read_reply(&mut conn, peer.command_timeout).await?;
    if !greeting.is_ok() {
        return Err(ClientError::Refused(format!(
            "{} {}",
            greeting.code, greeting.text
        )));
    }
    let ext = hello(&mut conn, peer).await?;
    Ok((conn, ext))
}

/// MAIL, RCPT…, DATA and the message; a result for every recipient.
async fn transaction(
    conn: &mut Conn<Link>,
    req: &Request<'_>,
    ext: &Extensions,
) -> Result<Vec<RcptResult>, ClientError> {
    let t = req.peer.command_timeout;
    let utf8 = ext.has("SMTPUTF8");
    if req.needs_smtputf8 && !utf8 {
        let why = "550 5.6.7 the downstream does not offer SMTPUTF8, which the message needs \
                   (it is never downgraded)";
        return Ok(vec![RcptResult::Failed(why.into()); req.rcpts.len()]);
    }
    let mut mail = format!("MAIL FROM:{}", req.from);
    if req.body_8bit && ext.has("8BITMIME") {
        mail.push_str(" BODY=8BITMIME");
    }
    if req.smtputf8 && utf8 {
        mail.push_str(" SMTPUTF8");
    }
    if ext.has("SIZE") {
        mail.push_str(&format!(" SIZE={}", req.message.len));
    }
    let dsn = ext.has("DSN");
    if dsn {
        if let Some(ret) = &req.dsn.ret {
            mail.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = &req.dsn.envid {
            mail.push_str(&format!(" ENVID={envid}"));
        }
    }
    let pipelining = ext.has("PIPELINING");
    let mut batch = vec![mail];
    batch.extend(req.rcpts.iter().map(|r| {
        let mut line = format!("RCPT TO:<{r}>");
        if let (true, Some(params)) = (dsn, req.dsn.rcpt(r)) {
            if let Some(notify) = &params.notify {
                line.push_str(&format!(" NOTIFY={notify}"));
            }
            if let Some(orcpt) = &params.orcpt {
                line.push_str(&format!(" ORCPT={orcpt}"));
            }
        }
        line
    }));
    batch.push("DATA".to_string());

    let mut replies = Vec::with_capacity(batch.len());
    if pipelining {
        for line in &batch {
            conn.write(line.as_bytes());
            conn.write(b"\r\n");
        }
        conn.flush(t).await?;
        for _ in &batch {
            replies.push(read_reply(conn, t).await?);
        }
    } else {
        for (i, line) in batch.iter().enumerate() {
            let reply = command(conn, line, t).await?;
            let stop = !reply.is_ok() && (i == 0 || i == batch.len() - 1);
            replies.push(reply);
            let last_rcpt = i == batch.len() - 2;
            let none_accepted = last_rcpt && !replies[1..].iter().any(Reply::is_ok);
            if stop || none_accepted {
                break;
            }
        }
    }
    let mail_reply = &replies[0];
    if !mail_reply.is_ok() {
        return Ok(vec![mail_reply.result(); req.rcpts.len()]);
    }
    let mut results: Vec<RcptResult> = (0..req.rcpts.len())
        .map(|i| {
            replies
                .get(i + 1)
                .map_or(RcptResult::Deferred("no reply".into()), Reply::result)
        })
        .collect();
    let accepted: Vec<usize> = (0..req.rcpts.len())
        .filter(|i| matches!(results[*i], RcptResult::Delivered(_)))
        .collect();
    if accepted.is_empty() {
        return Ok(results);
    }
    let data_reply = match replies.get(req.rcpts.len() + 1) {
        Some(r) => r,
        None => return Err(ClientError::Malformed),
    };
    if data_reply.code != 354 {
        for &i in &accepted {
            results[i] = match data_reply.result() {
                RcptResult::Delivered(text) => RcptResult::Deferred(text),
                other => other,
            };
        }
        return Ok(results);
    }
    send_dot_stuffed(conn, req.message, t).await?;
    // LMTP answers once per accepted recipient, SMTP once for all. A
    // connection lost halfway through LMTP's answers keeps the ones given,
    // so those recipients are not sent the message again.
    let finals = if req.peer.lmtp { accepted.len() } else { 1 };
    let mut final_replies = Vec::with_capacity(finals);
    for _ in 0..finals {
        match read_reply(conn, t).await {
            Ok(reply) => final_replies.push(reply),
            Err(e) if final_replies.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    for (n, &i) in accepted.iter().enumerate() {
        let reply = if req.peer.lmtp {
            final_replies.get(n)
        } else {
            final_replies.first()
        };
        results[i] = reply.map_or(
            RcptResult::Deferred("connection lost before the reply".into()),
            Reply::result,
        );
    }
    Ok(results)
}

/// How much of a message is stuffed and sent at a time.
const SEND_CHUNK: usize = 64 * 1024;

/// Sends the message with leading dots doubled, CRLF-terminated, then
/// `.`, read from its file and sent a chunk at a time (never the whole
/// message in memory); the final dot goes with the last chunk.
async fn send_dot_stuffed(
    conn: &mut Conn<Link>,
    message: Message<'_>,
    t: Duration,
) -> Result<(), ClientError> {
    // Buffers the size of the message when it is smaller than a chunk.
    let chunk_size = usize::try_from(message.len).map_or(SEND_CHUNK, |l| l.min(SEND_CHUNK));
    let mut reader = ChunkReader {
        file: None,
        path: message.path.to_path_buf(),
        at: message.offset,
        chunk: vec![0u8; chunk_size],
        // One chunk of a file in memory costs less to copy here than the
        // hand-over to a blocking thread and back.
        in_place: message.in_memory && message.len <= SEND_CHUNK as u64,
    };
    let mut left = message.len;
    let mut line_start = true;
    let mut out = Vec::with_capacity(chunk_size + chunk_size / 8 + 5);
    // The last two octets sent, to know whether the message ended a line.
    let mut tail = [0u8; 2];
    let mut sent = 0u64;
    while left > 0 {
        let want = usize::try_from(left).map_or(chunk_size, |l| l.min(chunk_size));
        let n;
        (reader, n) = reader.next(want).await.map_err(ClientError::QueueFile)?;
        if n == 0 {
            return Err(ClientError::QueueFile(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "shorter than its message",
            )));
        }
        let chunk = &reader.chunk[..n];
        out.clear();
        stuff(chunk, &mut line_start, &mut out);
        tail = match n {
            1 => [tail[1], chunk[0]],
            _ => [chunk[n - 2], chunk[n - 1]],
        };
        sent += n as u64;
        left -= n as u64;
        if left == 0 {
            out.extend_from_slice(end_of_data(sent, tail));
        }
        conn.write(&out);
        conn.flush(t).await?;
    }
    if sent == 0 {
        conn.write(end_of_data(0, tail));
        conn.flush(t).await?;
    }
    Ok(())
}

/// The queue file read a chunk at a time on a blocking thread, one
/// hand-over per chunk (the first also opens it); or, for a small file
/// just written, in place.
struct ChunkReader {
    file: Option<std::fs::File>,
    path: std::path::PathBuf,
    /// Where the next chunk starts in the file.
    at: u64,
    chunk: Vec<u8>,
    in_place: bool,
}

impl ChunkReader {
    /// Reads up to `want` octets (at most a chunk) into `chunk`; fewer
    /// only at the end of the file.
    async fn next(mut self, want: usize) -> std::io::Result<(ChunkReader, usize)> {
        if self.in_place {
            let n = self.read(want)?;
            return Ok((self, n));
        }
        let task = tokio::task::spawn_blocking(move || {
            let n = self.read(want)?;
            Ok((self, n))
        });
        task.await.map_err(std::io::Error::other)?
    }

    fn read(&mut self, want: usize) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = match &self.file {
            Some(file) => file,
            None => self.file.insert(std::fs::File::open(&self.path)?),
        };
        let want = want.min(self.chunk.len());
        let mut n = 0;
        while n < want {
            match file.read_at(&mut self.chunk[n..want], self.at + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_log_says() {
        let tls = Encryption::Tls("TLSv1_3".into());
        assert_eq!((tls.version(), tls.reason()), ("TLSv1_3", None));
        let plain = Encryption::Plain("not offered".into());
        assert_eq!(
            (plain.version(), plain.reason()),
            ("none", Some("not offered"))
        );
    }

    #[test]
    fn xclient_values_are_xtext() {
        assert_eq!(xtext("mail.example.com"), "mail.example.com");
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("[UNAVAILABLE]"), "[UNAVAILABLE]");
    }
}
