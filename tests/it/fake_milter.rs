//! A scripted milter (the filter's side of the protocol, written here from
//! the protocol's description, independent of mxguard's client): it records
//! every step it is told and answers as the test's script says — for the
//! replies real filters cannot be made to give on demand (a recipient
//! refused, a discard, a quarantine, each modification, a filter that
//! hangs). The real filters (rspamd, clamav-milter) are in `filters`.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One step the filter was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Macros for the command letter, as name=value pairs.
    Macros(char, Vec<(String, String)>),
    Connect(String),
    Helo(String),
    Mail(Vec<String>),
    Rcpt(Vec<String>),
    Data,
    Header(String, String),
    EndOfHeaders,
    /// A body chunk's length.
    Body(usize),
    EndOfMessage,
    Abort,
    Quit,
}

/// What the filter does after a step.
pub enum Answer {
    /// These packets (command letter, payload), e.g. `(b'c', vec![])`.
    Send(Vec<(u8, Vec<u8>)>),
    /// Nothing, ever (a hung filter); the connection stays open.
    Hang,
}

pub type Script = Arc<dyn Fn(&Step, &[Step]) -> Answer + Send + Sync>;

pub struct FakeMilter {
    pub port: u16,
    /// Every step of every connection, in order, per connection.
    pub seen: Arc<Mutex<Vec<Vec<Step>>>>,
}

pub fn cont() -> Answer {
    Answer::Send(vec![(b'c', Vec::new())])
}

/// `s` as NUL-terminated bytes.
pub fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A reply code packet: `554 5.7.1 text`.
pub fn reply_code(text: &str) -> (u8, Vec<u8>) {
    (b'y', z(text))
}

impl FakeMilter {
    /// Listens on a free loopback port; `script` answers every step that
    /// wants an answer (all but macros, abort and quit).
    pub async fn start(
        script: impl Fn(&Step, &[Step]) -> Answer + Send + Sync + 'static,
    ) -> FakeMilter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut all = s.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                tokio::spawn(serve(stream, s.clone(), index, script.clone()));
            }
        });
        FakeMilter { port, seen }
    }

    pub fn address(&self) -> String {
        format!("inet:127.0.0.1:{}", self.port)
    }

    /// All steps of all connections.
    pub fn steps(&self) -> Vec<Vec<Step>> {
        self.seen.lock().unwrap().clone()
    }
}

fn strings(payload: &[u8]) -> Vec<String> {
    let mut parts: Vec<String> = payload
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if payload.ends_with(&[0]) {
        parts.pop();
    }
    parts
}

async fn serve(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Vec<Step>>>>,
    index: usize,
    script: Script,
) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        assert!((1..1 << 20).contains(&len), "packet length {len}");
        let mut packet = vec![0u8; len];
        if stream.read_exact(&mut packet).await.is_err() {
            return;
        }
        let (cmd, payload) = (packet[0], &packet[1..]);
        let step = match cmd {
            b'O' => {
                // Version 6, every action, no step skipped, all replied.
                let mut reply = vec![b'O'];
                reply.extend_from_slice(&6u32.to_be_bytes());
                reply.extend_from_slice(&0x1ffu32.to_be_bytes());
                reply.extend_from_slice(&0u32.to_be_bytes());
                write(&mut stream, &reply).await;
                continue;
            }
            b'D' => {
                let stage = payload.first().copied().unwrap_or(b'?') as char;
                let parts = strings(payload.get(1..).unwrap_or_default());
                let pairs = parts
                    .chunks(2)
                    .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
                    .collect();
                Step::Macros(stage, pairs)
            }
            b'C' => Step::Connect(strings(payload).first().cloned().unwrap_or_default()),
            b'H' => Step::Helo(strings(payload).first().cloned().unwrap_or_default()),
            b'M' => Step::Mail(strings(payload)),
            b'R' => Step::Rcpt(strings(payload)),
            b'T' => Step::Data,
            b'L' => {
                let parts = strings(payload);
                Step::Header(parts[0].clone(), parts.get(1).cloned().unwrap_or_default())
            }
            b'N' => Step::EndOfHeaders,
            b'B' => Step::Body(payload.len()),
            b'E' => Step::EndOfMessage,
            b'A' => Step::Abort,
            b'Q' => Step::Quit,
            other => panic!("unknown milter command {other}"),
        };
        let before = {
            let mut all = seen.lock().unwrap();
            all[index].push(step.clone());
            all[index].clone()
        };
        match step {
            Step::Quit => return,
            Step::Macros(..) | Step::Abort => continue,
            _ => {}
        }
        match script(&step, &before) {
            Answer::Send(packets) => {
                for (cmd, payload) in packets {
                    let mut bytes = vec![cmd];
                    bytes.extend_from_slice(&payload);
                    write(&mut stream, &bytes).await;
                }
            }
            Answer::Hang => {
                // Read on (and drop) until the client gives up.
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
                return;
            }
        }
    }
}

async fn write(stream: &mut TcpStream, packet: &[u8]) {
    let mut bytes = (packet.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(packet);
    let _ = stream.write_all(&bytes).await;
}
