//! The control socket (`<spool.dir>/control.sock`): how `mxguard queue
//! flush` reaches the running server. One command per connection, one line
//! each way.

use crate::delivery;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ControlError {
    path: String,
    source: std::io::Error,
}

/// Binds the socket (replacing a stale one: the caller holds the spool
/// lock) and serves it in the background.
pub fn listen(path: &Path, delivery: delivery::Handle) -> Result<(), ControlError> {
    let io = |source| ControlError {
        path: path.display().to_string(),
        source,
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let delivery = delivery.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(read.take(256));
                let got =
                    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
                let answer = match got.ok().and_then(Result::ok).map(|_| line.trim()) {
                    Some("flush") => {
                        delivery.flush();
                        "ok\n"
                    }
                    _ => "error unknown command\n",
                };
                let _ = write.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// Sends one command to a running server; `Ok(None)` when none is running.
pub fn request(path: &Path, command: &str) -> std::io::Result<Option<String>> {
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream.take(256)).read_line(&mut answer)?;
    Ok(Some(answer.trim().to_string()))
}
