//! [`Link`]: the client's connection to a downstream, over TCP or a unix
//! socket (Dovecot's LMTP listens on one), one stream type for the
//! client's [`Conn`](super::conn::Conn).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Where a downstream listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Tcp { host: &'a str, port: u16 },
    Unix(&'a Path),
}

impl std::fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// An open connection to an [`Endpoint`].
pub enum Link {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0}: {1}")]
    Failed(String, io::Error),
    #[error("connect to {0}: timeout")]
    Timeout(String),
}

impl Link {
    /// Connects within `timeout`.
    pub async fn connect(to: Endpoint<'_>, timeout: Duration) -> Result<Link, ConnectError> {
        let connect = async {
            match to {
                Endpoint::Tcp { host, port } => {
                    let stream = TcpStream::connect((host, port)).await?;
                    // Without it, Nagle and delayed ACK cost ~40 ms a message.
                    let _ = stream.set_nodelay(true);
                    Ok(Link::Tcp(stream))
                }
                Endpoint::Unix(path) => UnixStream::connect(path).await.map(Link::Unix),
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Err(_) => Err(ConnectError::Timeout(to.to_string())),
            Ok(Err(e)) => Err(ConnectError::Failed(to.to_string(), e)),
            Ok(Ok(link)) => Ok(link),
        }
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Link::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Link::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Link::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Tcp(s) => Pin::new(s).poll_flush(cx),
            Link::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Link::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
