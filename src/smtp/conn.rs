//! A buffered SMTP connection, used by the server session and the delivery
//! client alike: bounded line reads with timeouts, streaming DATA into a
//! [`DataDecoder`], an output buffer flushed when the peer's pipelined input
//! is used up, and the STARTTLS upgrade that throws away any plaintext
//! received before the handshake.

use super::data::DataDecoder;
use super::stream::MaybeTls;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// Why reading or writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection closed by peer")]
    Closed,
    #[error("timeout")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The result of reading one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Without its line end (CRLF, or a lone LF).
    Text(Vec<u8>),
    /// Longer than the limit; it was read to its end and thrown away.
    TooLong,
}

/// Read size while waiting for a command (through a buffer on the stack:
/// see [`read_unbuffered`]).
const COMMAND_CHUNK: usize = 1024;
/// Read size during DATA, into the input buffer itself.
const DATA_CHUNK: usize = 16 * 1024;

/// What a read waits for, which decides where its bytes land first.
#[derive(Clone, Copy)]
enum Awaiting {
    /// A command: the client may stay silent for minutes.
    Command,
    /// Message data, arriving in bulk.
    Data,
}

pub struct Conn<S> {
    stream: Option<MaybeTls<S>>,
    input: Vec<u8>,
    /// Start of unread bytes in `input`.
    pos: usize,
    output: Vec<u8>,
}

/// Reads up to [`COMMAND_CHUNK`] bytes onto the end of `input` through a
/// buffer that lives on the stack of each poll, so a connection waiting for
/// its next command holds no read buffer (idle connections are most of a
/// busy server's connections); `input` grows by what arrived.
fn read_unbuffered<'a, R: AsyncRead + Unpin>(
    stream: &'a mut R,
    input: &'a mut Vec<u8>,
) -> impl std::future::Future<Output = io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); COMMAND_CHUNK];
        let mut buf = ReadBuf::uninit(&mut scratch);
        std::task::ready!(std::pin::Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
        input.extend_from_slice(buf.filled());
        std::task::Poll::Ready(Ok(buf.filled().len()))
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream: Some(MaybeTls::Plain(stream)),
            input: Vec::new(),
            pos: 0,
            output: Vec::new(),
        }
    }

    fn stream(&mut self) -> Result<&mut MaybeTls<S>, ConnError> {
        self.stream.as_mut().ok_or(ConnError::Closed)
    }

    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(MaybeTls::is_tls)
    }

    pub fn tls_description(&self) -> Option<String> {
        self.stream.as_ref().and_then(MaybeTls::tls_description)
    }

    /// Bytes received and not yet consumed (pipelined input).
    pub fn has_pending_input(&self) -> bool {
        self.pos < self.input.len()
    }

    /// Replies queued and not yet sent.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Waits up to `wait` for the client to send something: `Ok(true)` if
    /// it did (kept as input), `Ok(false)` if it stayed silent.
    pub async fn wait_for_input(&mut self, wait: Duration) -> Result<bool, ConnError> {
        match self.fill(Awaiting::Command, Instant::now() + wait).await {
            Ok(()) => Ok(true),
            Err(ConnError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Throws away unread input (plaintext before a TLS handshake).
    pub fn discard_input(&mut self) {
        self.input.clear();
        self.pos = 0;
    }

    /// Reads what arrives (a command chunk or a data chunk at most); fails at
    /// `deadline` or end of stream.
    /// Cancel-safe: dropped before it completes, it has read nothing (the
    /// session may stop waiting for a client when the server stops).
    async fn fill(&mut self, awaiting: Awaiting, deadline: Instant) -> Result<(), ConnError> {
        if self.pos == self.input.len() {
            // Everything was consumed: drop the buffer rather than keep a
            // large one alive while the connection idles.
            self.input = Vec::new();
            self.pos = 0;
        } else if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(ConnError::Closed);
        };
        let read = match awaiting {
            Awaiting::Command => {
                tokio::time::timeout_at(deadline, read_unbuffered(stream, &mut self.input)).await
            }
            Awaiting::Data => {
                self.input.reserve(DATA_CHUNK);
                tokio::time::timeout_at(deadline, stream.read_buf(&mut self.input)).await
            }
        };
        match read {
            Err(_) => Err(ConnError::Timeout),
            Ok(Err(e)) => Err(ConnError::Io(e)),
            Ok(Ok(0)) => Err(ConnError::Closed),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Reads one line of at most `limit` octets including its CRLF; the
    /// whole line must arrive within `timeout` (no trickling).
    pub async fn read_line(&mut self, limit: usize, timeout: Duration) -> Result<Line, ConnError> {
        let deadline = Instant::now() + timeout;
        let mut discarding = false;
        loop {
            let unread = &self.input[self.pos..];
            if let Some(lf) = unread.iter().position(|&b| b == b'\n') {
                let end = if lf > 0 && unread[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                let too_long = discarding || lf + 1 > limit;
                let line = if too_long {
                    Vec::new()
                } else {
                    unread[..end].to_vec()
                };
                self.pos += lf + 1;
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Text(line)
                });
            }
            if unread.len() >= limit {
                discarding = true;
                self.pos = self.input.len();
            }
            self.fill(Awaiting::Command, deadline).await?;
        }
    }

    /// Feeds input to `decoder` until the end of data (true) or until it
    /// holds `flush_at` decoded bytes (false: write them out, call again).
    /// What follows the end stays buffered for the next command. The end
    /// must come before `deadline`, so a client cannot hold a slot by
    /// trickling bytes.
    pub async fn read_data(
        &mut self,
        decoder: &mut DataDecoder,
        deadline: Instant,
        flush_at: usize,
    ) -> Result<bool, ConnError> {
        loop {
            let (used, done) = decoder.feed(&self.input[self.pos..]);
            self.pos += used;
            if done {
                return Ok(true);
            }
            if decoder.buffered() >= flush_at {
                return Ok(false);
            }
            self.fill(Awaiting::Data, deadline).await?;
        }
    }

    /// Queues bytes to send.
    pub fn write(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Queues a reply.
    pub fn write_reply(&mut self, reply: &super::reply::Reply) {
        reply.write_to(&mut self.output);
    }

    /// Sends everything queued.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), ConnError> {
        if self.output.is_empty() {
            return Ok(());
        }
        let output = std::mem::take(&mut self.output);
        let stream = self.stream()?;
        let sent = tokio::time::timeout(timeout, async {
            stream.write_all(&output).await?;
            stream.flush().await
        })
        .await;
        match sent {
            Err(_) => Err(ConnError::Timeout),
            Ok(r) => r.map_err(ConnError::Io),
        }
    }

    /// Server side of STARTTLS: unread plaintext is discarded first.
    pub async fn accept_tls(
        &mut self,
        config: Arc<rustls::ServerConfig>,
        timeout: Duration,
    ) -> Result<(), ConnError> {
        self.discard_input();
        let Some(MaybeTls::Plain(plain)) = self.stream.take() else {
            return Err(ConnError::Closed);
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        match tokio::time::timeout(timeout, acceptor.accept(plain)).await {
            Err(_) => Err(ConnError::Timeout),
            Ok(Err(e)) => Err(ConnError::Handshake(e)),
            Ok(Ok(tls)) => {
                self.stream = Some(MaybeTls::Tls(Box::new(tls.into())));
                Ok(())
            }
        }
    }

    /// Client side of STARTTLS.
    pub async fn connect_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
        timeout: Duration,
    ) -> Result<(), ConnError> {
        self.discard_input();
        let Some(MaybeTls::Plain(plain)) = self.stream.take() else {
            return Err(ConnError::Closed);
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(timeout, connector.connect(server_name, plain)).await {
            Err(_) => Err(ConnError::Timeout),
            Ok(Err(e)) => Err(ConnError::Handshake(e)),
            Ok(Ok(tls)) => {
                self.stream = Some(MaybeTls::Tls(Box::new(tls.into())));
                Ok(())
            }
        }
    }

    /// Closes the write side, ignoring errors (the peer may be gone).
    pub async fn shutdown(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Poll;

    #[tokio::test]
    async fn lines_and_limits() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut conn = Conn::new(server);
        let mut client = client;
        let long = vec![b'x'; 600];
        client.write_all(b"HELO a\r\nNOOP\n").await.unwrap();
        client.write_all(&long).await.unwrap();
        client.write_all(b"\r\nQUIT\r\n").await.unwrap();
        drop(client);
        let t = Duration::from_secs(5);
        assert_eq!(
            conn.read_line(512, t).await.unwrap(),
            Line::Text(b"HELO a".to_vec())
        );
        assert!(conn.has_pending_input());
        assert_eq!(
            conn.read_line(512, t).await.unwrap(),
            Line::Text(b"NOOP".to_vec())
        );
        assert_eq!(conn.read_line(512, t).await.unwrap(), Line::TooLong);
        assert_eq!(
            conn.read_line(512, t).await.unwrap(),
            Line::Text(b"QUIT".to_vec())
        );
        assert!(matches!(
            conn.read_line(512, t).await,
            Err(ConnError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_connection_waiting_for_a_command_holds_no_read_buffer() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut conn = Conn::new(server);
        let t = Duration::from_secs(5);
        client.write_all(b"EHLO a\r\n").await.unwrap();
        let line = conn.read_line(512, t).await.unwrap();
        assert_eq!(line, Line::Text(b"EHLO a".to_vec()));
        {
            // Waits for the next command, which has not come.
            let mut read = std::pin::pin!(conn.read_line(512, t));
            let polled =
                std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx).is_pending()));
            assert!(polled.await);
        }
        assert_eq!(conn.input.capacity(), 0);
    }

    #[tokio::test]
    async fn a_line_longer_than_a_read_is_put_together() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut conn = Conn::new(server);
        let long = vec![b'x'; 3 * COMMAND_CHUNK + 17];
        client.write_all(&long).await.unwrap();
        client.write_all(b"\r\nQUIT\r\n").await.unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(conn.read_line(8192, t).await.unwrap(), Line::Text(long));
        let quit = conn.read_line(512, t).await.unwrap();
        assert_eq!(quit, Line::Text(b"QUIT".to_vec()));
    }

    #[tokio::test]
    async fn exactly_the_limit_is_allowed() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut conn = Conn::new(server);
        let mut line = vec![b'a'; 510];
        line.extend_from_slice(b"\r\n");
        client.write_all(&line).await.unwrap();
        client.write_all(&line[1..]).await.unwrap();
        client.write_all(b"a").await.unwrap();
        client.write_all(&line).await.unwrap();
        let t = Duration::from_secs(5);
        assert!(matches!(conn.read_line(512, t).await.unwrap(), Line::Text(l) if l.len() == 510));
        assert!(matches!(conn.read_line(512, t).await.unwrap(), Line::Text(l) if l.len() == 509));
        assert_eq!(conn.read_line(512, t).await.unwrap(), Line::TooLong);
    }
}
