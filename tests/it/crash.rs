//! Crash safety: messages sent by concurrent clients while the server is
//! killed with SIGKILL at pseudo-random moments; every message that got a
//! 250 reaches the downstream (a Maildir, synced) after the last restart.

use crate::harness::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUNDS: usize = 5;
const CLIENTS: usize = 6;

/// A small deterministic generator, so a failing run can be repeated.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// One reply's last line, or `None` when the connection broke.
async fn read_reply(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            return Some(line);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends messages one after another until the connection breaks;
/// records the Message-IDs that got 250.
async fn client(
    addr: std::net::SocketAddr,
    name: String,
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
) {
    let Ok(Ok(stream)) = tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(addr)).await
    else {
        return;
    };
    let mut buf = Vec::new();
    let mut stream = stream;
    if read_reply(&mut stream, &mut buf).await.is_none() {
        return;
    }
    for i in 0..1000 {
        let msgid = format!("<{name}-{i}@crash.test>");
        // EHLO alone, then the transaction pipelined (RFC 2920).
        for (script, replies) in [
            (&b"EHLO crash.test\r\n"[..], 1),
            (
                b"MAIL FROM:<c@crash.test>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n",
                3,
            ),
        ] {
            if stream.write_all(script).await.is_err() {
                return;
            }
            for _ in 0..replies {
                if read_reply(&mut stream, &mut buf).await.is_none() {
                    return;
                }
            }
        }
        let body = format!(
            "Message-ID: {msgid}\r\nSubject: crash\r\n\r\n{}\r\n.\r\n",
            "x".repeat(2000)
        );
        if stream.write_all(body.as_bytes()).await.is_err() {
            return;
        }
        match read_reply(&mut stream, &mut buf).await {
            Some(r) if r.starts_with("250 ") => {
                acked.lock().unwrap().push(msgid);
                count.fetch_add(1, Ordering::SeqCst);
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let mut mx = Mxguard::start(
        dir.path(),
        &format!(
            "[downstream]\ntargets = [\"maildir:{}\"]\nretry_min = \"1s\"\nretry_max = \"1s\"\n",
            maildir.display()
        ),
    );
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut seed = 0x5eed_cafe_f00d_u64;
    for round in 0..ROUNDS {
        let count = Arc::new(AtomicUsize::new(0));
        let kill_after = 20 + (next(&mut seed) % 60) as usize;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            tasks.push(tokio::spawn(client(
                mx.addr,
                format!("r{round}c{c}"),
                acked.clone(),
                count.clone(),
            )));
        }
        wait_for("acknowledged messages before the kill", || {
            (count.load(Ordering::SeqCst) >= kill_after).then_some(())
        });
        mx.kill9();
        for t in tasks {
            let _ = t.await;
        }
        mx.restart();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "only {} messages acknowledged",
        acked.len()
    );
    let delivered = wait_for("every acknowledged message in the Maildir", || {
        let found: HashSet<String> = std::fs::read_dir(maildir.join("new"))
            .ok()?
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| {
                let line = text.lines().find(|l| l.starts_with("Message-ID: "))?;
                Some(line.trim_start_matches("Message-ID: ").trim().to_string())
            })
            .collect();
        acked.iter().all(|id| found.contains(id)).then_some(found)
    });
    assert!(delivered.len() >= acked.len());
    mx.kill9();
}
