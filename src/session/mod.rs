//! One SMTP conversation, from the banner to the close: the RFC 5321 state
//! machine (HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, HELP, VRFY,
//! STARTTLS), every client-controlled limit with its reply and log line,
//! and the hand-off of a finished message to the spool. The session speaks
//! SMTP; every decision about the client, its envelope and its message is
//! the pipeline's (`policy::pipeline`). Generic over the stream, so tests
//! drive it from memory as well as over sockets. This file holds the
//! conversation loop and its limits; [`greeting`] the moments before the
//! banner and STARTTLS, [`transaction`] HELO to DATA, [`receiving`] the
//! message on its way to the spool.

mod greeting;
mod milters;
pub mod receiving;
mod transaction;

use crate::config::BanAction;
use crate::lifecycle::Phase;
use crate::policy::pipeline::{Front, Pipeline};
use crate::policy::session_checks::SessionChecks;
use crate::services::Services;
use crate::smtp::address::{Domain, Mailbox, Path};
use crate::smtp::command::{self, Command, CommandError, MailParams, RcptParams};
use crate::smtp::conn::{Conn, ConnError, Line};
use crate::smtp::reply::Reply;
use crate::verdict::Refusal;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Longest command line, CRLF included (RFC 5321 section 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// Decoded DATA goes to the spool file in pieces of this size, so a
/// session holds at most this much of a message in memory.
const SPOOL_CHUNK: usize = 256 * 1024;

/// Whether the conversation goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// The mail transaction between MAIL and the end of DATA.
struct Transaction {
    from: Path,
    params: MailParams,
    rcpts: Vec<Mailbox>,
    /// The accepted recipients given DSN parameters, with them.
    rcpt_dsn: Vec<(String, RcptParams)>,
}

/// What the session counts, for its summary line.
#[derive(Default)]
struct Counts {
    /// Messages queued.
    accepted: u32,
    /// Refusals with a 5xx, and with a 4xx.
    rejected: u32,
    tempfailed: u32,
    /// Recipients of the queued messages, and their bytes.
    rcpts: u32,
    bytes: u64,
    /// The last refusal's reply.
    last_reject: Option<String>,
}

impl Counts {
    fn refused(&mut self, reply: &Reply) {
        if reply.code >= 500 {
            self.rejected += 1;
        } else {
            self.tempfailed += 1;
        }
        self.last_reject = Some(reply.to_string());
    }
}

struct Session<'a, S> {
    svc: &'a Services,
    /// The pipeline of the session's services, asked at every stage.
    pipeline: Pipeline<'a>,
    conn: Conn<S>,
    client: IpAddr,
    /// The client's port (the `{client_port}` of the content filters).
    port: u16,
    helo: Option<String>,
    esmtp: bool,
    tx: Option<Transaction>,
    errors: u32,
    commands: u32,
    counts: Counts,
    checks: SessionChecks,
    /// Recipients refused as unknown (for `recipients.max_unknown`).
    unknown: u32,
    /// Trusted or excepted: never limited, greylisted or banned.
    exempt: bool,
    /// Offences of this session (`ban.events`), counted at its end.
    offences: Vec<String>,
    /// Held while the client is tarpitted.
    tarpit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The end of the session's lifetime (`limits.session_timeout`).
    deadline: Instant,
    /// The server's phase: a stop ends the session between transactions.
    phase: crate::lifecycle::Watch,
    /// Warnings already logged (check and reply), so each is logged once
    /// per session; a new sender's would-reject has another reply.
    warned: HashSet<String>,
    /// The content filters' sessions (`[[milter]]`).
    milters: milters::Milters,
}

/// Runs a whole session on `stream` for a client at `client`.
///
/// The session's state is boxed and its stages' futures are boxed while
/// they run: what a connection holds while it waits for a command — most
/// connections, most of the time — is the state itself and the small
/// future of the wait, not room for the largest stage (an async fn keeps
/// its arguments, and the locals it moved away, in its future: a session
/// built here and moved by value into `serve` would be kept three times).
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(svc: &Services, stream: S, peer: SocketAddr) {
    if let Some(session) = Box::pin(open(svc, stream, peer)).await {
        session.serve().await;
    }
}

/// The session of a connection the connect stage admits (exempt clients
/// always are); `None` when it was refused (and closed).
async fn open<'a, S: AsyncRead + AsyncWrite + Unpin>(
    svc: &'a Services,
    stream: S,
    peer: SocketAddr,
) -> Option<Box<Session<'a, S>>> {
    let client = peer.ip();
    let pipeline = svc.pipeline(Front::Session);
    let exemption = pipeline.exemption(client);
    if let Some(why) = &exemption {
        svc.log
            .event("exempt")
            .ip("client", client)
            .kv("reason", why)
            .emit();
    }
    let conn = Conn::new(stream);
    if exemption.is_none() {
        if let Some(refusal) = Box::pin(pipeline.admit(client)).await.refusal {
            refuse_at_connect(svc, conn, client, refusal).await;
            return None;
        }
    }
    let checks = SessionChecks::start(svc.policy.checks.clone(), client, exemption.is_none());
    Some(Box::new(Session {
        svc,
        pipeline,
        conn,
        client,
        port: peer.port(),
        helo: None,
        esmtp: false,
        tx: None,
        errors: 0,
        commands: 0,
        counts: Counts::default(),
        checks,
        unknown: 0,
        exempt: exemption.is_some(),
        offences: Vec::new(),
        tarpit: None,
        deadline: Instant::now() + svc.config.limits.session_timeout.0,
        phase: svc.phase.clone(),
        warned: HashSet::new(),
        milters: milters::Milters::new(&svc.milter_slots),
    }))
}

/// A connection the connect stage refused: its reply (none when a ban
/// drops it), the connection closed, the refusal logged.
async fn refuse_at_connect<S: AsyncRead + AsyncWrite + Unpin>(
    svc: &Services,
    mut conn: Conn<S>,
    client: IpAddr,
    refusal: Refusal,
) {
    let drop = refusal.check == "ban" && svc.config.ban.action == BanAction::Drop;
    if !drop {
        conn.write_reply(&refusal.reply);
        let _ = conn.flush(svc.config.limits.command_timeout.0).await;
    }
    conn.shutdown().await;
    svc.log
        .event("reject")
        .ip("client", client)
        .text("stage", "connect")
        .text("check", &refusal.check)
        .text("action", if drop { "drop" } else { refusal.action() })
        .kv("reply", &refusal.reply)
        .emit();
}

/// Runs a whole session in memory: `input` is everything the client sends
/// before it closes its side; returns everything the server wrote. For the
/// property tests and the session fuzz target.
pub async fn replay(svc: &Services, input: &[u8], client: IpAddr) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut peer, stream) = tokio::io::duplex(1 << 16);
    let talk = async move {
        let _ = peer.write_all(input).await;
        let _ = peer.shutdown().await;
        let mut out = Vec::new();
        let _ = peer.read_to_end(&mut out).await;
        out
    };
    let ((), out) = tokio::join!(run(svc, stream, SocketAddr::new(client, 0)), talk);
    out
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    fn hostname(&self) -> &str {
        &self.svc.config.server.hostname
    }

    async fn serve(mut self: Box<Self>) {
        let started = tokio::time::Instant::now();
        let limits = &self.svc.config.limits;
        let timeout = limits.command_timeout.0;
        if Box::pin(self.before_banner()).await == Flow::Continue {
            self.conn.write(&self.svc.greetings.banner);
            self.converse().await;
        }
        let _ = self.conn.flush(timeout).await;
        self.conn.shutdown().await;
        if !self.milters.is_empty() {
            Box::pin(self.milters_quit()).await;
        }
        let ptr = self.svc.policy.checks.dns.known_ptr(self.client);
        self.svc
            .log
            .event("disconnect")
            .ip("client", self.client)
            .opt_text("ptr", ptr.as_deref())
            .opt_text("helo", self.helo.as_deref())
            .opt("tls", self.conn.tls_description())
            .num("commands", self.commands.into())
            .num("accepted", self.counts.accepted.into())
            .num("rejected", self.counts.rejected.into())
            .num("tempfailed", self.counts.tempfailed.into())
            .num("rcpts", self.counts.rcpts.into())
            .num("bytes", self.counts.bytes)
            .kv("duration", crate::time::Seconds(started.elapsed()))
            .opt_text("last_reject", self.counts.last_reject.as_deref())
            .emit();
        Box::pin(self.count_offences()).await;
    }

    /// Commands and replies, from the banner to the end.
    async fn converse(&mut self) {
        let limits = &self.svc.config.limits;
        let timeout = limits.command_timeout.0;
        loop {
            // Replies to pipelined commands go out together, once the
            // client's input is used up (RFC 2920); a tarpitted client
            // waits for each batch.
            if !self.conn.has_pending_input() {
                if self.tarpit.is_some() && self.conn.has_output() {
                    tokio::time::sleep(self.svc.config.abuse.tarpit_delay.0).await;
                }
                if self.conn.flush(timeout).await.is_err() {
                    break;
                }
            }
            if self.shutting_down() {
                break;
            }
            let now = self.phase.phase();
            let wait = timeout.min(self.deadline.saturating_duration_since(Instant::now()));
            let read = tokio::select! {
                read = self.conn.read_line(MAX_COMMAND_LINE, wait) => read,
                // The server began to stop: look again (reading is
                // cancel-safe).
                _ = self.phase.past(now) => continue,
            };
            let line = match read {
                Ok(line) => line,
                Err(ConnError::Timeout) => {
                    self.timed_out("timeout");
                    break;
                }
                Err(_) => break,
            };
            self.commands += 1;
            let flow = if self.commands > limits.max_commands {
                let text = format!("{} Error: too many commands", self.hostname());
                self.close("max_commands", Reply::new(421, "4.7.0", text))
            } else {
                match line {
                    Line::TooLong => self.protocol_error(
                        "command",
                        "line_length",
                        None,
                        Reply::new(500, "5.5.2", "Error: line too long"),
                    ),
                    Line::Text(text) => match self.improper_pipelining(&text) {
                        Some(flow) => flow,
                        None => self.command(&text).await,
                    },
                }
            };
            if flow == Flow::Close {
                break;
            }
        }
    }

    /// This session's offences, each kind once, toward a ban.
    async fn count_offences(&mut self) {
        if self.exempt {
            return;
        }
        if self.errors > 0 {
            self.offences.push("protocol_error".into());
        }
        let mut offences = std::mem::take(&mut self.offences);
        offences.sort();
        offences.dedup();
        for kind in offences {
            // A failing store already logged; nothing more to do here.
            let _ = self.svc.abuse.bans.offence(self.client, &kind).await;
        }
    }

    /// Whether the server's stop ends this session now: when draining,
    /// once it is between transactions; when stopping, at once. It hears
    /// `421 4.3.2`.
    fn shutting_down(&mut self) -> bool {
        match self.phase.phase() {
            Phase::Serving => false,
            Phase::Draining if self.tx.is_some() => false,
            _ => {
                let text = format!("{} Service shutting down", self.hostname());
                self.close("shutdown", Reply::new(421, "4.3.2", text));
                true
            }
        }
    }

    /// A wait ran out: `check`'s own timeout, or the whole session's
    /// lifetime when that is what ended first.
    fn timed_out(&mut self, check: &str) -> Flow {
        if Instant::now() >= self.deadline {
            let text = format!("{} Error: session lasted too long", self.hostname());
            return self.close("session_timeout", Reply::new(421, "4.4.2", text));
        }
        let text = format!("{} Error: timeout exceeded", self.hostname());
        self.close(check, Reply::new(421, "4.4.2", text))
    }

    /// A line the client sent without waiting for the reply it must wait
    /// for (RFC 2920): anything pipelined before PIPELINING was offered
    /// (before EHLO, or after HELO), after EHLO or HELO themselves, or
    /// message content sent with DATA, before the 354. Refused and the
    /// connection closed, as Postfix's `smtpd_forbid_unauth_pipelining`
    /// does: real clients wait; bots that blast a whole transaction do not.
    fn improper_pipelining(&mut self, line: &[u8]) -> Option<Flow> {
        if !self.svc.config.server.forbid_unauth_pipelining
            || self.exempt
            || !self.conn.has_pending_input()
        {
            return None;
        }
        let verb = command::verb(line);
        let ends_group = matches!(verb.as_deref(), Some("EHLO" | "HELO" | "DATA"));
        let exempt = matches!(verb.as_deref(), Some("QUIT" | "STARTTLS"));
        if exempt || (self.esmtp && !ends_group) {
            return None;
        }
        let text = match &verb {
            Some(verb) => format!("Error: improper command pipelining after {verb}"),
            None => "Error: improper command pipelining".to_string(),
        };
        self.errors += 1;
        self.refuse(
            "command",
            "pipelining",
            None,
            Reply::new(554, "5.5.0", text),
        );
        Some(Flow::Close)
    }

    /// Sends a final reply, logs it, and ends the session.
    fn close(&mut self, check: &str, reply: Reply) -> Flow {
        if self.svc.abuse.bans.counts(check) {
            self.offences.push(check.to_string());
        }
        self.conn.write_reply(&reply);
        self.log_decision("limit", "session", check, "disconnect", &reply, None);
        Flow::Close
    }

    fn ok(&mut self, reply: Reply) -> Flow {
        self.conn.write_reply(&reply);
        Flow::Continue
    }

    /// Sends an error reply and logs the decision.
    fn refuse(
        &mut self,
        stage: &'static str,
        check: &str,
        to: Option<&Path>,
        reply: Reply,
    ) -> Flow {
        self.conn.write_reply(&reply);
        self.log_decision("reject", stage, check, reply.action(), &reply, to);
        self.counts.refused(&reply);
        if self.svc.abuse.bans.counts(check) {
            self.offences.push(check.to_string());
        }
        Flow::Continue
    }

    /// A refusal for breaking the protocol; these count toward
    /// `max_errors` (policy refusals such as unknown users do not).
    fn protocol_error(
        &mut self,
        stage: &'static str,
        check: &str,
        to: Option<&Path>,
        reply: Reply,
    ) -> Flow {
        self.refuse(stage, check, to, reply);
        self.errors += 1;
        if self.errors >= self.svc.config.limits.max_errors {
            let text = format!("{} Error: too many errors", self.hostname());
            return self.close("max_errors", Reply::new(421, "4.7.0", text));
        }
        Flow::Continue
    }

    fn log_decision(
        &self,
        event: &'static str,
        stage: &'static str,
        check: &str,
        action: &'static str,
        reply: &Reply,
        to: Option<&Path>,
    ) {
        self.svc
            .log
            .event(event)
            .ip("client", self.client)
            // What mxguard decided comes before what the client sent, so
            // a filter anchored at `client=` (fail2ban) reads only ours.
            .text("stage", stage)
            .text("check", check)
            .text("action", action)
            .opt_text("helo", self.helo.as_deref())
            .opt("from", self.tx.as_ref().map(|t| &t.from))
            .opt("to", to)
            .kv("reply", reply)
            .emit();
    }

    /// Logs what a check in warn mode would have refused (`would_reject`),
    /// with the note saying why it only warns, if any.
    fn log_warning(&self, stage: &'static str, warning: &Refusal, to: Option<&Path>) {
        self.svc
            .log
            .event("would_reject")
            .ip("client", self.client)
            .kv("stage", stage)
            .kv("check", &warning.check)
            .kv("action", "warn")
            .opt("helo", self.helo.as_deref())
            .opt("from", self.tx.as_ref().map(|t| &t.from))
            .opt("to", to)
            .kv("reply", &warning.reply)
            .opt("note", warning.note.as_deref())
            .emit();
    }

    /// Handles one command line. The handlers that wait on something
    /// (checks, the state store, the spool, TLS) run boxed: their state
    /// exists only while they run, so the future an idle connection holds
    /// stays small (docs/BENCHMARKS.md, memory per idle connection).
    async fn command(&mut self, line: &[u8]) -> Flow {
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => return self.syntax_error(e),
        };
        match cmd {
            Command::Helo(name) => Box::pin(self.greet(name, false)).await,
            Command::Ehlo(name) => Box::pin(self.greet(name, true)).await,
            Command::Mail { from, params } => Box::pin(self.mail(from, params)).await,
            Command::Rcpt { to, params } => Box::pin(self.rcpt(to, params)).await,
            Command::RcptPostmaster => {
                let config = &self.svc.config;
                let domain = config
                    .relay
                    .domains
                    .first()
                    .unwrap_or(&config.server.hostname);
                let to = Path {
                    mailbox: Some(Mailbox {
                        local: "postmaster".into(),
                        domain: Domain::Name(domain.clone()),
                        domain_written: None,
                    }),
                    source_route: false,
                    utf8: false,
                };
                Box::pin(self.rcpt(to, RcptParams::default())).await
            }
            Command::Data => Box::pin(self.data()).await,
            Command::Rset => {
                self.tx = None;
                self.checks.end_transaction();
                if !self.milters.is_empty() {
                    Box::pin(self.milters_abort()).await;
                }
                self.ok(Reply::new(250, "2.0.0", "Ok"))
            }
            Command::Noop => self.ok(Reply::new(250, "2.0.0", "Ok")),
            Command::Quit => {
                self.conn.write_reply(&Reply::new(221, "2.0.0", "Bye"));
                Flow::Close
            }
            Command::Help => self.ok(Reply::new(
                214,
                "2.0.0",
                "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY STARTTLS",
            )),
            Command::Vrfy => self.ok(Reply::new(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::StartTls => Box::pin(self.starttls()).await,
            Command::Expn | Command::NotImplemented(_) => self.protocol_error(
                "command",
                "protocol",
                None,
                Reply::new(502, "5.5.1", "Error: command not implemented"),
            ),
        }
    }

    fn syntax_error(&mut self, e: CommandError) -> Flow {
        let (stage, reply) = match e {
            CommandError::Empty | CommandError::NotText => {
                ("command", Reply::new(500, "5.5.2", "Error: bad syntax"))
            }
            CommandError::Unknown => (
                "command",
                Reply::new(502, "5.5.2", "Error: command not recognized"),
            ),
            CommandError::Syntax(cmd) => {
                let usage = match cmd {
                    "HELO" => "Syntax: HELO hostname",
                    "EHLO" => "Syntax: EHLO hostname",
                    "MAIL" => "Syntax: MAIL FROM:<address>",
                    "RCPT" => "Syntax: RCPT TO:<address>",
                    "VRFY" => "Syntax: VRFY address",
                    _ => "Syntax error: no parameters allowed",
                };
                ("command", Reply::new(501, "5.5.4", usage))
            }
            CommandError::BadSender(_) => (
                "mail",
                Reply::new(501, "5.1.7", "Bad sender address syntax"),
            ),
            CommandError::BadRecipient(_) => (
                "rcpt",
                Reply::new(501, "5.1.3", "Bad recipient address syntax"),
            ),
            CommandError::UnsupportedParam(p) => (
                "command",
                Reply::new(555, "5.5.4", format!("Unsupported option: {p}")),
            ),
        };
        self.protocol_error(stage, "protocol", None, reply)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::services::Services;

    /// A connection waiting for a command holds its session's future: the
    /// session's state is boxed and each stage's future is boxed while it
    /// runs, so that future stays small (3 KiB when the session was kept in
    /// it up to three times; 1 KiB with the session boxed but built in it).
    #[tokio::test]
    async fn the_future_a_waiting_connection_holds_is_small() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[spool]\ndir = \"{}\"\n", dir.path().display());
        let config = Config::from_toml(&text, "test.toml", dir.path()).unwrap();
        let svc = Services::offline(config).unwrap();
        let (_client, stream) = tokio::io::duplex(64);
        let session = super::run(&svc, stream, "192.0.2.1:2525".parse().unwrap());
        let size = std::mem::size_of_val(&session);
        assert!(size <= 800, "{size} bytes");
    }
}
