//! The control socket (`<spool.dir>/control.sock`): how `mxguard queue
//! flush` and `mxguard ban` reach the running server. One command line per
//! connection; the answer is lines of text up to the close, the first
//! starting with `ok` or `error`. Commands: `flush`, `ban list`,
//! `ban add IP SECONDS`, `ban remove IP`, `reload` (as SIGHUP, answering
//! with the outcome), `check` (`mxguard check` judged with the server's
//! live state: `ok` and the report), `tls reload` (re-read every certificate and key of
//! `[tls]` now; after `ok`, a line for each pair: `NAME unchanged`, `NAME
//! ok not_after=TIME`, `NAME failed: ERROR`, with NAME `tls` or
//! `tls.certificate[N]`), and — only in a test build
//! (feature `test-clock`) started with `MXGUARD_TEST_CLOCK=1` — `clock
//! advance SECONDS`. The socket is mxguard's alone (0600), or its group's
//! (0660) with `control.group`.

use crate::reconfigure::Reloader;
use crate::services::{Live, Services};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(#[from] crate::owned::SocketError);

/// Binds the socket (replacing a stale one: the caller holds the spool
/// lock), 0600 — or 0660 for group `gid` — and serves it in the background.
pub fn listen(
    path: &Path,
    gid: Option<u32>,
    live: Arc<Live>,
    reloader: Arc<Reloader>,
) -> Result<(), ControlError> {
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    let listener = crate::owned::bind_socket(path, mode, gid)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (live, reloader) = (live.clone(), reloader.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                // The whole line is read (up to a bound) even when it is
                // too long, so the client is not reset before it reads the
                // answer.
                let mut line = Vec::new();
                let mut reader = tokio::io::BufReader::new(read.take(MAX_READ));
                let got = tokio::time::timeout(
                    Duration::from_secs(5),
                    reader.read_until(b'\n', &mut line),
                )
                .await;
                let answer = match got.ok().and_then(Result::ok) {
                    None | Some(0) => "error no command\n".to_string(),
                    Some(_) if line.len() > MAX_COMMAND => "error command too long\n".to_string(),
                    Some(_) => {
                        let command = String::from_utf8_lossy(&line);
                        // Only the line end goes: a trial's empty last
                        // fields are tabs at its end.
                        let command = command.trim_end_matches(['\r', '\n']);
                        match command.trim() {
                            "reload" => reloader.reload().await.answer(),
                            _ if command.starts_with("check\t") => {
                                check(&live.current(), command).await
                            }
                            other => answer(&live.current(), other).await,
                        }
                    }
                };
                let _ = write.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// `check` (from `mxguard check`): the trial judged with this server's
/// configuration and live state; `ok` and the report.
async fn check(svc: &Services, command: &str) -> String {
    let fields: Vec<&str> = command.split('\t').skip(1).collect();
    let Some(trial) = crate::dry_run::Trial::from_fields(&fields) else {
        return "error usage: check CLIENT HELO FROM RCPT (tab-separated)\n".into();
    };
    let cx = crate::dry_run::Context {
        config: &svc.config,
        policy: &svc.policy,
        abuse: &svc.abuse,
        state: crate::dry_run::StateSource::Live,
        test_dnsbls: false,
    };
    match crate::dry_run::run(&cx, &trial).await {
        Ok((report, _)) => format!("ok\n{report}"),
        Err(e) => format!("error {e}\n"),
    }
}

/// The answer to one command.
async fn answer(svc: &Services, command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let bans = &svc.abuse.bans;
    let failed = "error the state store is unavailable\n".to_string();
    match words.as_slice() {
        ["flush"] => {
            svc.delivery.flush();
            "ok\n".into()
        }
        ["ban", "list"] => match crate::abuse::bans::list(&svc.abuse.state.store).await {
            Ok(list) => {
                let mut out = String::from("ok\n");
                for ban in list {
                    out.push_str(&crate::abuse::bans::describe(&ban));
                    out.push('\n');
                }
                out
            }
            Err(e) => format!("error {e}\n"),
        },
        ["ban", "add", ip, secs] => match (ip.parse::<IpAddr>(), secs.parse::<u64>()) {
            (Ok(ip), Ok(secs)) if secs > 0 => {
                let ip = crate::net::canonical_ip(ip);
                if let Some(why) = svc.policy.exemption(ip) {
                    return format!("error {ip} is never banned: {why}\n");
                }
                match bans
                    .ban(ip, Some(Duration::from_secs(secs)), "manual")
                    .await
                {
                    Ok(ban) => format!("ok\n{}\n", crate::abuse::bans::describe(&ban)),
                    Err(_) => failed,
                }
            }
            _ => "error usage: ban add IP SECONDS (more than 0)\n".into(),
        },
        ["ban", "remove", ip] => match ip.parse::<IpAddr>() {
            Ok(ip) => match bans.unban(crate::net::canonical_ip(ip)).await {
                Ok(()) => "ok\n".into(),
                Err(_) => failed,
            },
            Err(_) => "error usage: ban remove IP\n".into(),
        },
        ["greylist", "list"] => match crate::abuse::greylist::waiting(&svc.abuse.state.store).await
        {
            Ok(list) => {
                let now = crate::time::unix_now();
                let lines: String = list.iter().map(|w| w.describe(now) + "\n").collect();
                format!("ok\n{lines}")
            }
            Err(e) => format!("error {e}\n"),
        },
        ["greylist", "pass", target] => match crate::abuse::greylist::client_of(target) {
            Some(client) => match svc.abuse.greylist.let_through(client).await {
                Ok(net) => format!("ok\n{net} passes greylisting\n"),
                Err(_) => failed,
            },
            None => "error usage: greylist pass IP|NETWORK\n".into(),
        },
        ["tls", "reload"] => match &svc.tls {
            Some(tls) => {
                let mut out = String::from("ok\n");
                for result in tls.reload(&svc.log).await {
                    out.push_str(&format!("{result}\n"));
                }
                out
            }
            None => "error TLS is not configured ([tls])\n".into(),
        },
        #[cfg(feature = "test-clock")]
        ["clock", "advance", secs] if crate::time::test_clock_enabled() => {
            match secs.parse::<u64>() {
                Ok(secs) => {
                    crate::time::advance(Duration::from_secs(secs));
                    "ok\n".into()
                }
                Err(_) => "error usage: clock advance SECONDS\n".into(),
            }
        }
        #[cfg(feature = "test-clock")]
        ["clock", "freeze"] if crate::time::test_clock_enabled() => {
            crate::time::freeze();
            "ok\n".into()
        }
        _ => "error unknown command\n".into(),
    }
}

/// The longest command line (a `check` carries four addresses), and how
/// much of a longer one is read and thrown away.
const MAX_COMMAND: usize = 2048;
const MAX_READ: u64 = 64 * 1024;

/// Longest answer read back (a long ban list).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Why a running server did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("control socket: {0}")]
    Control(std::io::Error),
    #[error("the running server answered: {0}")]
    Refused(String),
}

/// Why an administrator's command (`mxguard ban`, `mxguard greylist`)
/// could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Server(#[from] AskError),
    #[error("{0} is in relay.trusted_networks and is never banned")]
    Exempt(std::net::IpAddr),
    #[error("state: {0}")]
    State(#[from] crate::state::StateError),
    #[error("the state store is unavailable (the log says why)")]
    Unavailable,
    #[error("log.file: {0}")]
    Log(std::io::Error),
}

/// Asks the server running on `spool_dir`'s control socket; what follows
/// its `ok`, or `Ok(None)` when no server runs there.
pub async fn ask_server(spool_dir: &Path, line: String) -> Result<Option<String>, AskError> {
    let socket = crate::spool::Spool::control_socket_in(spool_dir);
    let answer = tokio::task::spawn_blocking(move || request(&socket, &line))
        .await
        .map_err(|e| AskError::Control(std::io::Error::other(e)))?
        .map_err(AskError::Control)?;
    match answer {
        None => Ok(None),
        Some(answer) => match answer.strip_prefix("ok") {
            Some(rest) => Ok(Some(rest.trim_start_matches('\n').to_string())),
            None => Err(AskError::Refused(answer)),
        },
    }
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
    stream.take(MAX_ANSWER + 1).read_to_string(&mut answer)?;
    if answer.len() as u64 > MAX_ANSWER {
        return Err(std::io::Error::other(format!(
            "the answer is longer than {MAX_ANSWER} bytes"
        )));
    }
    Ok(Some(answer.trim_end().to_string()))
}
