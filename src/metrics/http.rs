//! The `/metrics` HTTP listener: `GET /metrics` answers the Prometheus text
//! format, anything else 404 (or 405 for other methods). One request per
//! connection, read within 5 seconds and 8 KiB, at most 8 scrapes at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SCRAPES: usize = 8;

/// Serves `listener` forever; `page` renders the metrics.
pub async fn serve<F, Fut>(listener: TcpListener, page: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + Send,
{
    let page = Arc::new(page);
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: too many scrapes at once
        };
        let page = page.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, answer(stream, &*page)).await;
            drop(slot);
        });
    }
}

/// What a request line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    BadMethod,
    Malformed,
}

/// Routes a request head (the bytes up to the blank line).
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(method), Some(path), Some(version)) if version.starts_with("HTTP/1.") => {
            match (method, path.split('?').next()) {
                ("GET", Some("/metrics")) => Route::Metrics,
                ("GET", _) => Route::NotFound,
                _ => Route::BadMethod,
            }
        }
        _ => Route::Malformed,
    }
}

async fn answer<F, Fut>(mut stream: TcpStream, page: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_REQUEST {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    let (status, body) = match (read, route(&head)) {
        (Ok(Ok(())), Route::Metrics) => ("200 OK", page().await),
        (Ok(Ok(())), Route::NotFound) => ("404 Not Found", "not found\n".to_string()),
        (Ok(Ok(())), Route::BadMethod) => ("405 Method Not Allowed", "only GET\n".to_string()),
        _ => ("400 Bad Request", "bad request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b"hello\r\n\r\n"), Route::Malformed);
        assert_eq!(route(b"\xff\xfe"), Route::Malformed);
    }
}
