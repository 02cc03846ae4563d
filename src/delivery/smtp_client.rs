//! The SMTP and LMTP client that hands messages to the downstream:
//! EHLO/LHLO, opportunistic STARTTLS (falling back to plaintext when the
//! handshake fails), MAIL, RCPT and DATA pipelined when offered, a result
//! per recipient (LMTP: one final reply per recipient), dot-stuffing on the
//! way out. Every read has a timeout and every reply a size bound.

use crate::smtp::conn::{Conn, ConnError, Line};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A downstream host and how to talk to it.
#[derive(Clone, Copy)]
pub struct Peer<'a> {
    pub host: &'a str,
    pub port: u16,
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
    pub message: &'a [u8],
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
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("connect to {0}: timeout")]
    ConnectTimeout(String),
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("malformed reply from downstream")]
    Malformed,
    #[error("downstream said {0}")]
    Refused(String),
    #[error("TLS handshake with downstream failed: {0}")]
    Tls(ConnError),
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

pub async fn read_reply(
    conn: &mut Conn<TcpStream>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
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
    conn: &mut Conn<TcpStream>,
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
        self.0.iter().any(|e| e.split(' ').next() == Some(name))
    }
}

async fn hello(conn: &mut Conn<TcpStream>, req: &Peer<'_>) -> Result<Extensions, ClientError> {
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

/// Delivers to one host; with STARTTLS when offered, and once more in
/// plaintext when the TLS handshake fails.
pub async fn deliver(
    req: &Request<'_>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Vec<RcptResult>, ClientError> {
    match deliver_once(req, Some(tls)).await {
        Err(ClientError::Tls(_)) => deliver_once(req, None).await,
        other => other,
    }
}

/// Connects, reads the greeting and says EHLO/LHLO; with `tls`, upgrades
/// when STARTTLS is offered and says EHLO again.
pub async fn open(
    peer: &Peer<'_>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Conn<TcpStream>, Extensions), ClientError> {
    let addr = format!("{}:{}", peer.host, peer.port);
    let connect = TcpStream::connect((peer.host, peer.port));
    let stream = match tokio::time::timeout(peer.connect_timeout, connect).await {
        Err(_) => return Err(ClientError::ConnectTimeout(addr)),
        Ok(Err(e)) => return Err(ClientError::Connect(addr, e)),
        Ok(Ok(s)) => s,
    };
    // Without it, Nagle and delayed ACK cost ~40 ms per message.
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    let t = peer.command_timeout;
    let greeting = read_reply(&mut conn, t).await?;
    if !greeting.is_ok() {
        return Err(ClientError::Refused(format!(
            "{} {}",
            greeting.code, greeting.text
        )));
    }
    let mut ext = hello(&mut conn, peer).await?;
    if let (Some(config), true) = (tls, ext.has("STARTTLS")) {
        let reply = command(&mut conn, "STARTTLS", t).await?;
        if reply.code == 220 {
            let name = rustls::pki_types::ServerName::try_from(peer.host.to_string())
                .map_err(|_| ClientError::Tls(ConnError::Closed))?;
            conn.connect_tls(config, name, t)
                .await
                .map_err(ClientError::Tls)?;
            ext = hello(&mut conn, peer).await?;
        }
    }
    Ok((conn, ext))
}

async fn deliver_once(
    req: &Request<'_>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Vec<RcptResult>, ClientError> {
    let (mut conn, ext) = open(&req.peer, tls).await?;
    let results = transaction(&mut conn, req, &ext).await?;
    conn.write(b"QUIT\r\n");
    let _ = conn.flush(req.peer.command_timeout).await;
    conn.shutdown().await;
    Ok(results)
}

/// MAIL, RCPT…, DATA and the message; a result for every recipient.
async fn transaction(
    conn: &mut Conn<TcpStream>,
    req: &Request<'_>,
    ext: &Extensions,
) -> Result<Vec<RcptResult>, ClientError> {
    let t = req.peer.command_timeout;
    let mut mail = format!("MAIL FROM:{}", req.from);
    if req.body_8bit && ext.has("8BITMIME") {
        mail.push_str(" BODY=8BITMIME");
    }
    if ext.has("SIZE") {
        mail.push_str(&format!(" SIZE={}", req.message.len()));
    }
    let pipelining = ext.has("PIPELINING");
    let mut batch = vec![mail];
    batch.extend(req.rcpts.iter().map(|r| format!("RCPT TO:<{r}>")));
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
/// `.`, a chunk at a time (no second copy of the whole message).
async fn send_dot_stuffed(
    conn: &mut Conn<TcpStream>,
    message: &[u8],
    t: Duration,
) -> Result<(), ClientError> {
    let mut line_start = true;
    let mut out = Vec::with_capacity(SEND_CHUNK + SEND_CHUNK / 8);
    for chunk in message.chunks(SEND_CHUNK) {
        out.clear();
        stuff(chunk, &mut line_start, &mut out);
        conn.write(&out);
        conn.flush(t).await?;
    }
    conn.write(end_of_data(message));
    conn.flush(t).await?;
    Ok(())
}

/// Appends `chunk` with a dot doubled at every line start.
fn stuff(chunk: &[u8], line_start: &mut bool, out: &mut Vec<u8>) {
    for &b in chunk {
        if *line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        *line_start = b == b'\n';
    }
}

/// What ends the data: the final dot, after a CRLF if the message lacks one.
fn end_of_data(message: &[u8]) -> &'static [u8] {
    if message.is_empty() || message.ends_with(b"\r\n") {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot_stuff(message: &[u8], chunk: usize) -> Vec<u8> {
        let (mut out, mut line_start) = (Vec::new(), true);
        for part in message.chunks(chunk.max(1)) {
            stuff(part, &mut line_start, &mut out);
        }
        out.extend_from_slice(end_of_data(message));
        out
    }

    #[test]
    fn dot_stuffing_across_chunks() {
        for chunk in [1, 2, 3, 100] {
            assert_eq!(
                dot_stuff(b"a\r\n.b\r\n.\r\n", chunk),
                b"a\r\n..b\r\n..\r\n.\r\n"
            );
            assert_eq!(dot_stuff(b".x", chunk), b"..x\r\n.\r\n");
        }
        assert_eq!(dot_stuff(b"", 1), b".\r\n");
    }
}
