//! `mxbench-loadgen noop-milter`: a content filter that judges nothing,
//! for `bench/milter.sh`. It speaks the filter side of the milter
//! protocol (version 6) as little as it can: the option negotiation, then
//! `continue` to every command that waits for a reply; macros (`D`) and
//! aborts (`A`) are taken silently, a quit (`Q`) ends the connection. What
//! it costs the MTA is therefore the protocol alone: a packet per step and
//! a round trip per step that waits for a reply.
//!
//! With `--no-reply` it also asks, in the negotiation, for every
//! `SMFIP_NR_*` flag the MTA offers (no reply to connect, HELO, MAIL,
//! RCPT, DATA, unknown commands, each header, the end of the headers and
//! each body chunk): only the end of the message then waits for a reply.
//!
//! A packet is a 4-byte big-endian length (of what follows), a command
//! byte and its data. Anything malformed or too large closes the
//! connection; nothing panics on what the peer sends.

use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The largest packet taken: a body chunk is at most 64 KiB (mxguard's
/// and libmilter's bound), so anything much larger is a broken peer.
const MAX_PACKET: usize = 256 * 1024;

/// The protocol version we answer with.
const VERSION: u32 = 6;

// The "no reply" protocol flags (libmilter's mfapi.h values).
const SMFIP_NR_HDR: u32 = 0x80;
const SMFIP_NR_CONN: u32 = 0x1000;
const SMFIP_NR_HELO: u32 = 0x2000;
const SMFIP_NR_MAIL: u32 = 0x4000;
const SMFIP_NR_RCPT: u32 = 0x8000;
const SMFIP_NR_DATA: u32 = 0x10000;
const SMFIP_NR_UNKN: u32 = 0x20000;
const SMFIP_NR_EOH: u32 = 0x40000;
const SMFIP_NR_BODY: u32 = 0x80000;

/// Every step that can go unanswered.
const NR_ALL: u32 = SMFIP_NR_HDR
    | SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY;

/// The reply `continue`: length 1, command `c`.
const CONTINUE: [u8; 5] = [0, 0, 0, 1, b'c'];

struct Options {
    listen: SocketAddr,
    no_reply: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 11333)),
        no_reply: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--no-reply" => o.no_reply = true,
            "--listen" => {
                let v = it.next().ok_or("--listen needs HOST:PORT")?;
                o.listen = v.parse().map_err(|_| format!("--listen: {v}"))?;
            }
            _ => return Err(format!("noop-milter: unknown option {flag}")),
        }
    }
    Ok(o)
}

/// The flag that leaves command `cmd` unanswered, or `None` for a command
/// that never gets a reply; `Some(0)` for one that always does (the end
/// of the message). `Err` for a command we do not know.
fn no_reply_flag(cmd: u8) -> Result<Option<u32>, ()> {
    Ok(match cmd {
        b'C' => Some(SMFIP_NR_CONN),
        b'H' => Some(SMFIP_NR_HELO),
        b'M' => Some(SMFIP_NR_MAIL),
        b'R' => Some(SMFIP_NR_RCPT),
        b'T' => Some(SMFIP_NR_DATA),
        b'U' => Some(SMFIP_NR_UNKN),
        b'L' => Some(SMFIP_NR_HDR),
        b'N' => Some(SMFIP_NR_EOH),
        b'B' => Some(SMFIP_NR_BODY),
        b'E' => Some(0),
        // Macros, abort, quit-and-new-connection: no reply.
        b'D' | b'A' | b'K' => None,
        _ => return Err(()),
    })
}

/// One milter connection, until the MTA quits or breaks the protocol.
async fn serve(stream: TcpStream, ask_no_reply: bool) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut packet = Vec::new();
    // The protocol flags agreed in the negotiation.
    let mut agreed: u32 = 0;
    loop {
        let mut len = [0u8; 4];
        if r.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_PACKET {
            return;
        }
        packet.resize(len, 0);
        if r.read_exact(&mut packet).await.is_err() {
            return;
        }
        let (cmd, data) = (packet[0], &packet[1..]);
        let reply: Vec<u8> = match cmd {
            b'O' => {
                // Version, actions, protocol flags offered: 3 × u32.
                let Some(offered) = data.get(8..12) else {
                    return;
                };
                let offered = u32::from_be_bytes([offered[0], offered[1], offered[2], offered[3]]);
                agreed = if ask_no_reply { offered & NR_ALL } else { 0 };
                let mut out = Vec::with_capacity(17);
                out.extend_from_slice(&13u32.to_be_bytes());
                out.push(b'O');
                out.extend_from_slice(&VERSION.to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes()); // no actions
                out.extend_from_slice(&agreed.to_be_bytes());
                out
            }
            b'Q' => return,
            _ => match no_reply_flag(cmd) {
                Err(()) => return,
                Ok(None) => continue,
                Ok(Some(flag)) if flag != 0 && agreed & flag != 0 => continue,
                Ok(Some(_)) => CONTINUE.to_vec(),
            },
        };
        if w.write_all(&reply).await.is_err() {
            return;
        }
    }
}

async fn run(o: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(o.listen).await?;
    eprintln!(
        "noop-milter: listening on {} ({})",
        o.listen,
        if o.no_reply {
            "no-reply steps asked for"
        } else {
            "a reply to every step"
        }
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of descriptors and the like: wait a moment, go on.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::task::spawn_local(serve(stream, o.no_reply));
    }
}

/// `noop-milter [--listen HOST:PORT] [--no-reply]`: serves until killed.
pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mxbench-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mxbench-loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxbench-loadgen noop-milter: {e}");
            ExitCode::from(1)
        }
    }
}
