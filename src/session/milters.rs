//! The content filters of one session (`[[milter]]`): a milter session
//! per filter, opened at the first MAIL (a client refused before it never
//! costs a filter anything) and kept to the end of the SMTP session, told
//! each step as it happens — connect and HELO then, MAIL, each RCPT, DATA,
//! and at the end of DATA the headers and the body streamed from the spool
//! file — with the filters asked in order. What each reply means is
//! `policy::milter`'s; this file drives the filters, applies their
//! changes to the spooled message, and logs each one's word
//! (`event=milter milter=NAME action=… elapsed=…`).

use super::Session;
use crate::config::milter::Content;
use crate::milter::client::{Address, Connection, MilterError, Timeouts};
use crate::milter::codec::{self, Command, Modification};
use crate::policy::milter::{judge, unavailable, Said};
use crate::smtp::reply::Reply;
use crate::spool::{Envelope, Pending};
use crate::verdict::Refusal;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// The actions mxguard lets a filter take at the end of a message.
const ACTIONS: u32 = codec::SMFIF_ADDHDRS
    | codec::SMFIF_CHGBODY
    | codec::SMFIF_ADDRCPT
    | codec::SMFIF_DELRCPT
    | codec::SMFIF_CHGHDRS
    | codec::SMFIF_QUARANTINE
    | codec::SMFIF_CHGFROM
    | codec::SMFIF_ADDRCPT_PAR;

/// One filter in one session (its settings are the session's services'
/// `config.milter[i]`, for the filter at `i`).
struct Filter {
    slots: Arc<tokio::sync::Semaphore>,
    conn: Option<Connection>,
    /// Held while the connection is open (`milter.max_sessions`).
    permit: Option<OwnedSemaphorePermit>,
    /// Accepted the session: not asked again.
    done_session: bool,
    /// Accepted (or could not be asked about) this transaction.
    done_tx: bool,
    /// Told of a MAIL not yet ended by the end of a message or an abort.
    in_tx: bool,
    /// Its refusal of the connection or the HELO: every MAIL of the
    /// session hears it (the filter is not asked again).
    refused_session: Option<Reply>,
}

/// The filters of a session, and what they said of the transaction.
pub struct Milters {
    filters: Vec<Filter>,
    /// A filter said to drop this transaction's message (its name).
    discard: Option<String>,
    /// A filter said to drop every message of the session (its name).
    discard_session: Option<String>,
}

impl Milters {
    /// The filters whose `max_sessions` slots are `slots`, one each.
    pub fn new(slots: &[Arc<tokio::sync::Semaphore>]) -> Milters {
        let filters = (slots.iter())
            .map(|slots| Filter {
                slots: slots.clone(),
                conn: None,
                permit: None,
                done_session: false,
                done_tx: false,
                in_tx: false,
                refused_session: None,
            })
            .collect();
        Milters {
            filters,
            discard: None,
            discard_session: None,
        }
    }

    /// Whether no filter is configured (nothing to tell anyone).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether the end of this transaction's message concerns the
    /// filters: one is still to see it, or one said to drop it.
    pub fn concerned(&self) -> bool {
        self.discard.is_some()
            || (self.filters.iter()).any(|f| !f.done_session && !f.done_tx && f.conn.is_some())
    }
}

/// A message's fate once the filters have seen it.
pub enum Fate {
    /// Queue it (the filters' changes applied).
    Queue,
    /// Refused by the filter named.
    Refuse(Reply, String),
    /// Taken and dropped, as the filter named said.
    Discard(String),
    /// Taken into the quarantine: the filter named, its reason.
    Quarantine(String, String),
    /// The spool failed while applying changes.
    Spool(String),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    fn macros_connect(&self, name: Option<&str>) -> Vec<(String, String)> {
        let addr = self.client.to_string();
        vec![
            ("j".into(), self.hostname().to_string()),
            ("{daemon_name}".into(), "mxguard".into()),
            (
                "v".into(),
                concat!("mxguard ", env!("CARGO_PKG_VERSION")).into(),
            ),
            ("{client_addr}".into(), addr.clone()),
            ("{client_name}".into(), name.unwrap_or("unknown").into()),
            ("{client_port}".into(), self.port.to_string()),
            (
                "_".into(),
                format!("{} [{addr}]", name.unwrap_or("unknown")),
            ),
        ]
    }

    fn macros_helo(&self) -> Vec<(String, String)> {
        let version = self.conn.tls_description().and_then(|d| {
            let first = d.split_whitespace().next()?;
            Some(first.to_string())
        });
        version
            .map(|v| vec![("{tls_version}".into(), v)])
            .unwrap_or_default()
    }

    /// A filter could not be asked: logged, and its `default_action`.
    fn milter_failed(&mut self, index: usize, step: &str, error: &str) -> Said {
        let filter = &mut self.milters.filters[index];
        filter.conn = None;
        filter.permit = None;
        filter.in_tx = false;
        filter.done_tx = true;
        let settings = &self.svc.config.milter[index];
        self.svc
            .log
            .event("milter")
            .ip("client", self.client)
            .kv("milter", &settings.name)
            .kv("stage", step)
            .kv(
                "action",
                format!("default_{}", settings.default_action.as_str()),
            )
            .kv("error", error)
            .emit();
        unavailable(settings.default_action)
    }

    /// Opens the filter's milter session and tells it of the connection
    /// and the HELO; what it says of them.
    async fn milter_open(&mut self, index: usize) -> Said {
        let filter = &mut self.milters.filters[index];
        let Ok(permit) = filter.slots.clone().try_acquire_owned() else {
            return self.milter_failed(index, "connect", "over milter.max_sessions");
        };
        let s = &self.svc.config.milter[index];
        let timeouts = Timeouts {
            connect: s.connect_timeout.0,
            command: s.command_timeout.0,
            content: s.content_timeout.0,
        };
        let opened = match Address::parse(&s.address) {
            Ok(address) => Connection::open(&address, timeouts, ACTIONS).await,
            Err(e) => return self.milter_failed(index, "connect", &e.to_string()),
        };
        let mut conn = match opened {
            Ok(conn) => conn,
            Err(e) => return self.milter_failed(index, "connect", &e.to_string()),
        };
        // The client's name as the reverse-DNS check confirmed it.
        let name = self.svc.policy.checks.dns.known_name(self.client);
        let connect = self.macros_connect(name.as_deref());
        let hostname = name.unwrap_or_else(|| format!("[{}]", self.client));
        let addr = Some(std::net::SocketAddr::new(self.client, self.port));
        let said = conn
            .step(
                &connect,
                Command::Connect {
                    hostname: &hostname,
                    addr,
                },
            )
            .await;
        let helo = self.helo.clone().unwrap_or_default();
        let said = match said {
            Ok(r) if judge(&r) == Said::Go => {
                let macros = self.macros_helo();
                conn.step(&macros, Command::Helo(&helo)).await
            }
            other => other,
        };
        let filter = &mut self.milters.filters[index];
        filter.permit = Some(permit);
        filter.conn = Some(conn);
        self.milter_said(index, "connect", said)
    }

    /// A step's reply (or failure), as the session must take it.
    fn milter_said(
        &mut self,
        index: usize,
        step: &str,
        reply: Result<codec::Response, MilterError>,
    ) -> Said {
        let said = match reply {
            Ok(response) => judge(&response),
            Err(e) => return self.milter_failed(index, step, &e.to_string()),
        };
        let filter = &mut self.milters.filters[index];
        let session = step == "connect";
        match &said {
            // Said of the connection or HELO: the whole session; after,
            // the message.
            Said::Done if session => filter.done_session = true,
            Said::Done => filter.done_tx = true,
            Said::Refuse(reply) if session => {
                filter.done_session = true;
                filter.refused_session = Some(reply.clone());
            }
            Said::Discard => {
                filter.done_tx = true;
                filter.done_session |= session;
                let name = Some(self.svc.config.milter[index].name.clone());
                if session {
                    self.milters.discard_session = name.clone();
                }
                self.milters.discard = name;
            }
            _ => {}
        }
        if session && said != Said::Go {
            // Nothing more to tell it in this session.
            filter.conn = None;
            filter.permit = None;
        }
        said
    }

    /// A filter's refusal, logged as the check `milter:NAME`.
    fn refused(&self, index: usize, reply: Reply) -> Refusal {
        let name = &self.svc.config.milter[index].name;
        Refusal::new(format!("milter:{name}"), reply)
    }

    /// The filters hear of MAIL (opened first when new); a refusal from
    /// any of them refuses it.
    pub(super) async fn milters_mail(&mut self, from: &str, args: Vec<String>) -> Option<Refusal> {
        self.milters.discard = self.milters.discard_session.clone();
        let mut command = vec![format!("<{from}>")];
        command.extend(args);
        let macros = vec![("{mail_addr}".to_string(), from.to_string())];
        for index in 0..self.milters.filters.len() {
            let filter = &mut self.milters.filters[index];
            filter.done_tx = false;
            if let Some(reply) = filter.refused_session.clone() {
                return Some(self.refused(index, reply));
            }
            if filter.done_session {
                continue;
            }
            if filter.conn.is_none() {
                match self.milter_open(index).await {
                    Said::Refuse(reply) => return Some(self.refused(index, reply)),
                    Said::Go => {}
                    _ => continue,
                }
            }
            let filter = &mut self.milters.filters[index];
            let Some(conn) = filter.conn.as_mut() else {
                continue;
            };
            filter.in_tx = true;
            let reply = conn.step(&macros, Command::Mail(&command)).await;
            if let Said::Refuse(reply) = self.milter_said(index, "mail", reply) {
                return Some(self.refused(index, reply));
            }
        }
        None
    }

    /// Each filter still asking hears of a recipient; one refusal refuses
    /// that recipient only.
    pub(super) async fn milters_rcpt(&mut self, to: &str, args: Vec<String>) -> Option<Refusal> {
        let mut command = vec![format!("<{to}>")];
        command.extend(args);
        let macros = vec![("{rcpt_addr}".to_string(), to.to_string())];
        self.milters_step("rcpt", &macros, Command::Rcpt(&command))
            .await
    }

    /// DATA, before the 354.
    pub(super) async fn milters_data(&mut self, id: &str) -> Option<Refusal> {
        let macros = vec![("i".to_string(), id.to_string())];
        self.milters_step("data", &macros, Command::Data).await
    }

    async fn milters_step(
        &mut self,
        step: &str,
        macros: &[(String, String)],
        command: Command<'_>,
    ) -> Option<Refusal> {
        for index in 0..self.milters.filters.len() {
            let filter = &mut self.milters.filters[index];
            if filter.done_session || filter.done_tx {
                continue;
            }
            let Some(conn) = filter.conn.as_mut() else {
                continue;
            };
            let reply = conn.step(macros, command).await;
            if let Said::Refuse(reply) = self.milter_said(index, step, reply) {
                return Some(self.refused(index, reply));
            }
        }
        None
    }

    /// The transaction ended before the end of its message (RSET, a new
    /// MAIL after a refusal, QUIT): the filters told of it forget it.
    pub(super) async fn milters_abort(&mut self) {
        for filter in &mut self.milters.filters {
            if !std::mem::take(&mut filter.in_tx) {
                continue;
            }
            if let Some(conn) = filter.conn.as_mut() {
                if conn.abort().await.is_err() {
                    filter.conn = None;
                    filter.permit = None;
                }
            }
        }
    }

    /// The end of the session: each filter hears QUIT.
    pub(super) async fn milters_quit(&mut self) {
        self.milters_abort().await;
        for filter in &mut self.milters.filters {
            if let Some(conn) = filter.conn.take() {
                conn.quit().await;
            }
            filter.permit = None;
        }
    }

    /// The whole message, in `tmp/`, shown to each filter still asking, in
    /// order; each one's changes are applied before the next sees it.
    pub(super) async fn milters_message(
        &mut self,
        pending: &mut Option<Pending>,
        envelope: &mut Envelope,
    ) -> Fate {
        if let Some(name) = self.milters.discard.take() {
            return Fate::Discard(name);
        }
        let macros = vec![("i".to_string(), envelope.id.to_string())];
        let max_header = self.svc.config.limits.max_header_size + (256 << 10);
        let max_body = self.svc.config.limits.max_message_size;
        for index in 0..self.milters.filters.len() {
            let filter = &self.milters.filters[index];
            if filter.done_session || filter.done_tx || filter.conn.is_none() {
                continue;
            }
            let started = Instant::now();
            let Some(taken) = pending.take() else {
                return Fate::Spool("the message was lost".into());
            };
            let opened = tokio::task::spawn_blocking(move || {
                let read = read_message(&taken, max_header);
                (taken, read)
            })
            .await;
            let (taken, read) = match opened {
                Ok(both) => both,
                Err(e) => return Fate::Spool(e.to_string()),
            };
            let scratch = taken.scratch("body");
            *pending = Some(taken);
            let (header, body, replaced) = match read {
                Ok(all) => all,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&scratch).await;
                    return Fate::Spool(e);
                }
            };
            let mut replaced = tokio::fs::File::from_std(replaced);
            let filter = &mut self.milters.filters[index];
            let Some(conn) = filter.conn.as_mut() else {
                let _ = tokio::fs::remove_file(&scratch).await;
                continue;
            };
            filter.in_tx = false;
            let content = self.svc.config.milter[index].content;
            let leading_space = conn.protocol() & codec::SMFIP_HDR_LEADSPC != 0;
            let fields = match content {
                Content::Envelope => Vec::new(),
                _ => crate::milter::edit::fields(&header, leading_space),
            };
            let body: Box<dyn AsyncRead + Unpin + Send> = match content {
                Content::Whole => Box::new(tokio::fs::File::from_std(body)),
                _ => Box::new(tokio::io::empty()),
            };
            // Progress notices restart the filter's own timeout; the
            // session's lifetime bounds it all the same.
            let end = tokio::time::timeout_at(
                self.deadline,
                conn.message(&macros, &fields, body, &mut replaced, max_body),
            )
            .await
            .unwrap_or(Err(MilterError::Timeout("limits.session_timeout")));
            drop(replaced);
            let fate = match end {
                Err(e) => {
                    let said = self.milter_failed(index, "end_of_message", &e.to_string());
                    match said {
                        Said::Refuse(reply) => {
                            let name = self.svc.config.milter[index].name.clone();
                            Some(Fate::Refuse(reply, name))
                        }
                        _ => None,
                    }
                }
                Ok(end) => {
                    let name = self.svc.config.milter[index].name.clone();
                    let said = judge(&end.response);
                    let quarantine = end.quarantine.clone();
                    let changes = end.modifications.len() + usize::from(end.body_replaced);
                    self.log_milter(&name, envelope, &said, changes, started);
                    match said {
                        Said::Refuse(reply) => Some(Fate::Refuse(reply, name)),
                        Said::Discard => Some(Fate::Discard(name)),
                        Said::Quarantine(reason) => Some(Fate::Quarantine(name, reason)),
                        Said::Go | Said::Done => {
                            let applied = apply(
                                pending,
                                envelope,
                                &header,
                                &end.modifications,
                                end.body_replaced.then_some(scratch.clone()),
                            )
                            .await;
                            match (applied, quarantine) {
                                (Err(e), _) => Some(Fate::Spool(e)),
                                (Ok(()), Some(reason)) => Some(Fate::Quarantine(name, reason)),
                                (Ok(()), None) => None,
                            }
                        }
                    }
                }
            };
            let _ = tokio::fs::remove_file(&scratch).await;
            if let Some(fate) = fate {
                return fate;
            }
        }
        Fate::Queue
    }

    fn log_milter(
        &self,
        name: &str,
        envelope: &Envelope,
        said: &Said,
        changes: usize,
        started: Instant,
    ) {
        let (action, reply) = match said {
            Said::Go => ("continue", None),
            Said::Done => ("accept", None),
            Said::Refuse(reply) => (reply.action(), Some(reply)),
            Said::Discard => ("discard", None),
            Said::Quarantine(_) => ("quarantine", None),
        };
        self.svc
            .log
            .event("milter")
            .ip("client", self.client)
            .kv("queue_id", &envelope.id)
            .kv("milter", name)
            .kv("stage", "end_of_message")
            .kv("action", action)
            .opt("changes", (changes > 0).then_some(changes))
            .opt("reply", reply)
            .kv("elapsed", crate::time::Seconds(started.elapsed()))
            .emit();
    }
}

/// The message's header block (up to and with its empty line; at most
/// `max` octets), the file positioned at its body, and a new scratch file
/// (mode 0600) for a body the filter may replace it with (blocking).
fn read_message(
    pending: &Pending,
    max: u64,
) -> Result<(Vec<u8>, std::fs::File, std::fs::File), String> {
    use std::io::{Read, Seek, SeekFrom};
    let scratch = pending.scratch("body");
    let _ = std::fs::remove_file(&scratch);
    let replaced =
        crate::owned::new_file(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut file = pending.message().map_err(|e| e.to_string())?;
    let start = file.stream_position().map_err(|e| e.to_string())?;
    let mut block = Vec::new();
    (&mut file)
        .take(max)
        .read_to_end(&mut block)
        .map_err(|e| e.to_string())?;
    if let Some(end) = block.windows(4).position(|w| w == b"\r\n\r\n") {
        block.truncate(end + 4);
    }
    file.seek(SeekFrom::Start(start + block.len() as u64))
        .map_err(|e| e.to_string())?;
    Ok((block, file, replaced))
}

/// A filter's changes: the envelope's (sender, recipients), the header's,
/// a new body; the message written again once, if anything changed.
async fn apply(
    pending: &mut Option<Pending>,
    envelope: &mut Envelope,
    header: &[u8],
    modifications: &[Modification],
    body: Option<std::path::PathBuf>,
) -> Result<(), String> {
    if modifications.is_empty() && body.is_none() {
        return Ok(());
    }
    for change in modifications {
        match change {
            Modification::ChangeFrom { addr, .. } => {
                if let Some(addr) = bare(addr) {
                    envelope.from = format!("<{addr}>");
                } else if addr.trim() == "<>" {
                    envelope.from = "<>".into();
                }
            }
            Modification::AddRcpt { addr, .. } => {
                if let Some(addr) = bare(addr) {
                    if !envelope.rcpts.iter().any(|r| r.eq_ignore_ascii_case(&addr)) {
                        envelope.rcpts.push(addr);
                    }
                }
            }
            Modification::DelRcpt { addr } => {
                if let Some(addr) = bare(addr) {
                    envelope.rcpts.retain(|r| !r.eq_ignore_ascii_case(&addr));
                    envelope
                        .dsn
                        .rcpts
                        .retain(|(r, _)| !r.eq_ignore_ascii_case(&addr));
                }
            }
            _ => {}
        }
    }
    let edited = crate::milter::edit::apply(header, modifications);
    let Some(mut taken) = pending.take() else {
        return Err("the message was lost".into());
    };
    let envelope_now = envelope.clone();
    let old = header.len() as u64;
    let done = tokio::task::spawn_blocking(move || {
        let written = taken.rewrite(&envelope_now, &edited, old, body.as_deref());
        (taken, written)
    })
    .await;
    match done {
        Ok((taken, written)) => {
            *pending = Some(taken);
            written.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// An address a filter gave (`<a@b>` or `a@b`), if it is one mxguard can
/// put in an envelope: no spaces or control characters.
fn bare(addr: &str) -> Option<String> {
    let addr = addr.trim();
    let addr = addr
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(addr);
    let fine = !addr.is_empty() && !addr.chars().any(|c| c.is_whitespace() || c.is_control());
    fine.then(|| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::bare;

    #[test]
    fn a_filter_address_is_taken_with_or_without_brackets() {
        assert_eq!(bare("<a@b.test>").as_deref(), Some("a@b.test"));
        assert_eq!(bare("a@b.test").as_deref(), Some("a@b.test"));
    }

    #[test]
    fn a_filter_address_with_spaces_or_nothing_is_not_taken() {
        assert_eq!(bare("<a b@c>"), None);
        assert_eq!(bare("<>"), None);
        assert_eq!(bare("a\r\nRCPT@x"), None);
    }
}
