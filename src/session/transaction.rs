//! The mail transaction of a session, command by command: HELO/EHLO, MAIL,
//! RCPT (each asking the pipeline), and DATA, from its 354 to the 250
//! that only a message durable in the spool gets.

use super::milters::Fate;
use super::receiving::{ReceiveError, Received, Receiving};
use super::{Flow, Session, Transaction, SPOOL_CHUNK};
use crate::lifecycle::Phase;
use crate::message::intake::{Flaw, Intake};
use crate::policy::pipeline::Upto;
use crate::smtp::address::Path;
use crate::smtp::command::{DsnRequest, MailParams, RcptParams};
use crate::smtp::conn::ConnError;
use crate::smtp::data::{DataDecoder, DataOutcome};
use crate::smtp::received::{self, Trace};
use crate::smtp::reply::Reply;
use crate::spool::{Entry, Envelope, QueueId};
use crate::verdict::Refusal;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    pub(super) async fn greet(&mut self, name: String, esmtp: bool) -> Flow {
        self.tx = None;
        self.checks.on_helo(&name);
        if self.pipeline.refuses_at_once() {
            if let Some(refusal) = self.decide(Upto::Helo, None).await {
                self.helo = None;
                return self.refuse("helo", &refusal.check, None, refusal.reply);
            }
        }
        self.helo = Some(name);
        self.esmtp = esmtp;
        let greetings = &self.svc.greetings;
        let reply = match (esmtp, self.svc.tls.is_some() && !self.conn.is_tls()) {
            (false, _) => &greetings.helo,
            (true, false) => &greetings.ehlo,
            (true, true) => &greetings.ehlo_starttls,
        };
        self.conn.write(reply);
        Flow::Continue
    }

    /// The verdict of the connect, HELO (and MAIL) checks; warnings not
    /// logged yet are logged now, with `to` when there is one.
    pub(super) async fn decide(&mut self, upto: Upto, to: Option<&Path>) -> Option<Refusal> {
        let decision = self
            .pipeline
            .envelope(self.client, &mut self.checks, upto)
            .await;
        let stage = if upto == Upto::Helo { "helo" } else { "rcpt" };
        self.warn(decision.warnings, stage, to);
        decision.refusal
    }

    /// Logs each warning (a check in warn mode that would refuse) once per
    /// session.
    pub(super) fn warn(&mut self, warnings: Vec<Refusal>, stage: &'static str, to: Option<&Path>) {
        for warning in warnings {
            if self
                .warned
                .insert(format!("{} {}", warning.check, warning.reply))
            {
                self.log_warning(stage, &warning, to);
            }
        }
    }

    pub(super) async fn mail(&mut self, from: Path, params: MailParams) -> Flow {
        if self.helo.is_none() {
            let reply = Reply::new(503, "5.5.1", "Error: send HELO/EHLO first");
            return self.protocol_error("mail", "protocol", None, reply);
        }
        if self.tx.is_some() {
            let reply = Reply::new(503, "5.5.1", "Error: nested MAIL command");
            return self.protocol_error("mail", "protocol", None, reply);
        }
        if from.utf8 && !params.smtputf8 {
            return self.refuse("mail", "smtputf8", None, non_ascii(&from));
        }
        if params
            .size
            .is_some_and(|s| s > self.svc.config.limits.max_message_size)
        {
            let reply = Reply::new(552, "5.3.4", "Message size exceeds fixed limit");
            return self.refuse("mail", "message_size", None, reply);
        }
        if let Some(refusal) = self.pipeline.mail(self.client, &from).await.refusal {
            return self.refuse("mail", &refusal.check, None, refusal.reply);
        }
        let helo = self.helo.as_deref().unwrap_or_default();
        self.checks.on_mail(helo, &from);
        self.tx = Some(Transaction {
            from,
            params,
            rcpts: Vec::new(),
            rcpt_dsn: Vec::new(),
        });
        if self.pipeline.refuses_at_once() {
            if let Some(refusal) = self.decide(Upto::Mail, None).await {
                let flow = self.refuse("mail", &refusal.check, None, refusal.reply);
                self.tx = None;
                self.checks.end_transaction();
                return flow;
            }
        }
        if let (false, Some(tx)) = (self.milters.is_empty(), &self.tx) {
            let from = tx.from.mailbox.as_ref().map(ToString::to_string);
            let (from, args) = (from.unwrap_or_default(), mail_args(&tx.params));
            // Boxed, as each milter call: its future (kilobytes) is built
            // only when milters are configured, not in every MAIL's.
            Box::pin(self.milters_abort()).await;
            if let Some(refused) = Box::pin(self.milters_mail(&from, args)).await {
                let flow = self.refuse("mail", &refused.check, None, refused.reply);
                self.tx = None;
                self.checks.end_transaction();
                return flow;
            }
        }
        self.ok(Reply::new(250, "2.1.0", "Ok"))
    }

    pub(super) async fn rcpt(&mut self, to: Path, params: RcptParams) -> Flow {
        let Some(tx) = &self.tx else {
            let reply = Reply::new(503, "5.5.1", "Error: need MAIL command");
            return self.protocol_error("rcpt", "protocol", Some(&to), reply);
        };
        if to.utf8 && !tx.params.smtputf8 {
            return self.refuse("rcpt", "smtputf8", Some(&to), non_ascii(&to));
        }
        if tx.rcpts.len() >= self.svc.config.limits.max_recipients {
            let reply = Reply::new(452, "4.5.3", "Error: too many recipients");
            return self.refuse("rcpt", "max_recipients", Some(&to), reply);
        }
        let decision = self
            .pipeline
            .rcpt(self.client, &tx.from, &to, &mut self.checks)
            .await;
        self.warn(decision.warnings, "rcpt", Some(&to));
        if let Some(refusal) = decision.refusal {
            if decision.unknown_recipient {
                return self.unknown_recipient(&to, refusal);
            }
            return self.refuse("rcpt", &refusal.check, Some(&to), refusal.reply);
        }
        if !self.milters.is_empty() {
            let mailbox = to.mailbox.as_ref().map(ToString::to_string);
            let (mailbox, args) = (mailbox.unwrap_or_default(), rcpt_args(&params));
            if let Some(refused) = Box::pin(self.milters_rcpt(&mailbox, args)).await {
                return self.refuse("rcpt", &refused.check, Some(&to), refused.reply);
            }
        }
        if let (Some(tx), Some(mailbox)) = (&mut self.tx, to.mailbox) {
            if params != RcptParams::default() {
                tx.rcpt_dsn.push((mailbox.to_string(), params));
            }
            tx.rcpts.push(mailbox);
        }
        self.ok(Reply::new(250, "2.1.5", "Ok"))
    }

    /// A recipient that does not exist: refused, and counted; too many in
    /// one session is a dictionary attack, which ends it.
    pub(super) fn unknown_recipient(&mut self, to: &Path, refusal: Refusal) -> Flow {
        self.refuse("rcpt", &refusal.check, Some(to), refusal.reply);
        let limit = self.svc.config.recipients.max_unknown;
        self.unknown += 1;
        if limit == 0 || self.unknown < limit {
            return Flow::Continue;
        }
        let text = format!("{} Error: too many unknown recipients", self.hostname());
        let reply = Reply::new(421, "4.7.0", text);
        self.conn.write_reply(&reply);
        self.offences.push("dictionary_attack".into());
        self.log_decision(
            "dictionary_attack",
            "rcpt",
            "max_unknown",
            "disconnect",
            &reply,
            Some(to),
        );
        Flow::Close
    }

    pub(super) async fn data(&mut self) -> Flow {
        let transaction = self.tx.as_ref().map(|tx| (tx.from.clone(), tx.rcpts.len()));
        let decision = self
            .pipeline
            .data(self.client, transaction.as_ref().map(|(f, n)| (f, *n)))
            .await;
        if let Some(refusal) = decision.refusal {
            // Recipients accepted before the trap was hit get nothing either.
            self.tx = None;
            self.checks.end_transaction();
            return self.refuse("data", &refusal.check, None, refusal.reply);
        }
        let reply = match &self.tx {
            None => Some(Reply::new(503, "5.5.1", "Error: need RCPT command")),
            Some(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
            }
            Some(_) => None,
        };
        if let Some(reply) = reply {
            return self.protocol_error("data", "protocol", None, reply);
        }
        let Some(envelope) = self.envelope() else {
            return Flow::Continue;
        };
        if !self.milters.is_empty() {
            if let Some(refused) = Box::pin(self.milters_data(envelope.id.as_str())).await {
                self.tx = None;
                self.checks.end_transaction();
                return self.refuse("data", &refused.check, None, refused.reply);
            }
        }
        self.conn
            .write_reply(&Reply::new(354, "2.0.0", "End data with <CR><LF>.<CR><LF>"));
        let limits = &self.svc.config.limits;
        if self.conn.flush(limits.command_timeout.0).await.is_err() {
            return Flow::Close;
        }
        let trace = received::header(&Trace {
            helo: &envelope.helo,
            client: self.client,
            hostname: self.hostname(),
            esmtp: self.esmtp,
            smtputf8: envelope.smtputf8,
            tls: self.conn.is_tls(),
            id: envelope.id.as_str(),
            rcpts: &envelope.rcpts,
            time: crate::time::now(),
        });
        let config = &self.svc.config;
        let intake = Intake::new(
            self.hostname(),
            limits.max_header_size,
            limits.long_lines,
            !config.checks.dmarc.0.is_off(),
        );
        let mut receiving =
            Receiving::new(self.svc.spool.start(&envelope, trace.as_bytes()), intake);
        let mut decoder =
            DataDecoder::new(limits.max_message_size, config.server.bare_line_endings);
        let deadline = (Instant::now() + limits.data_timeout.0).min(self.deadline);
        loop {
            let read = tokio::select! {
                read = self.conn.read_data(&mut decoder, deadline, SPOOL_CHUNK) => read,
                // The drain time is up: the message is not taken.
                _ = self.phase.past(Phase::Draining) => {
                    self.shutting_down();
                    return Flow::Close;
                }
            };
            match read {
                Ok(true) => break,
                Ok(false) => receiving.take(decoder.take()).await,
                Err(ConnError::Timeout) => return self.timed_out("data_timeout"),
                Err(_) => return Flow::Close,
            }
        }
        self.tx = None;
        self.checks.end_transaction();
        let size = decoder.size();
        match decoder.finish() {
            DataOutcome::Message(rest) => match receiving.finish(rest).await {
                Ok(received) => self.authenticate_and_queue(envelope, received, size).await,
                Err(ReceiveError::Spool(error)) => self.spool_failed(error),
                Err(ReceiveError::Flaw(Flaw::HeaderTooBig)) => {
                    let reply =
                        Reply::new(552, "5.3.4", "Error: message header size exceeds limit");
                    self.refuse("data", "max_header_size", None, reply)
                }
                Err(ReceiveError::Flaw(Flaw::LongLine)) => {
                    let reply =
                        Reply::new(500, "5.5.2", "Error: message line longer than 998 octets");
                    self.refuse("data", "long_lines", None, reply)
                }
            },
            DataOutcome::TooBig => {
                let reply = Reply::new(552, "5.3.4", "Error: message file too big");
                self.refuse("data", "message_size", None, reply)
            }
            DataOutcome::BareLineEnding => {
                let reply = Reply::new(550, "5.5.2", "Error: bare <CR> or <LF> received");
                self.protocol_error("data", "bare_line_ending", None, reply)
            }
        }
    }

    /// The envelope of the current transaction, with a new queue ID.
    pub(super) fn envelope(&self) -> Option<Envelope> {
        let tx = self.tx.as_ref()?;
        Some(Envelope {
            id: QueueId::generate(),
            arrival: crate::time::unix_now(),
            client: self.client,
            helo: self.helo.clone().unwrap_or_default(),
            from: tx.from.to_string(),
            body_8bit: tx.params.body_8bit,
            rcpts: tx.rcpts.iter().map(ToString::to_string).collect(),
            smtputf8: tx.params.smtputf8,
            dsn: DsnRequest {
                ret: tx.params.ret.clone(),
                envid: tx.params.envid.clone(),
                rcpts: tx.rcpt_dsn.clone(),
            },
            client_name: self.svc.policy.checks.dns.known_name(self.client),
            esmtp: self.esmtp,
        })
    }

    /// DKIM, SPF, ARC and DMARC at the end of DATA (when `checks.dmarc` is on):
    /// the Authentication-Results header, and the DMARC verdict, with the
    /// transaction's SPF verdict (evaluated once, for the MAIL check too).
    pub(super) async fn authenticate_and_queue(
        &mut self,
        envelope: Envelope,
        mut received: Received,
        size: u64,
    ) -> Flow {
        let setting = self.svc.config.checks.dmarc.0;
        let hashes = received.finished.body_hashes.take();
        let (Some(hashes), false) = (hashes, setting.is_off()) else {
            return self.queue(envelope, received, size, Vec::new()).await;
        };
        let digests = hashes.finish();
        // DMARC judges with the SPF verdict the MAIL check saw.
        let Some(mail_from) = self.checks.spf(self.hostname()).await else {
            return self.queue(envelope, received, size, Vec::new()).await;
        };
        let auth = self
            .svc
            .policy
            .checks
            .dns
            .authenticate(
                self.client,
                self.hostname(),
                &mail_from,
                &received.finished.header_block,
                &digests,
            )
            .await;
        let decision = self
            .pipeline
            .dmarc(auth.dmarc_rejects.as_deref(), &auth.arc, &auth.header);
        for warning in &decision.warnings {
            self.log_warning("data", warning, None);
        }
        if let Some(refusal) = decision.refusal {
            return self.refuse("data", &refusal.check, None, refusal.reply);
        }
        let header = crate::message::intake::fold_header(auth.header.as_bytes());
        self.queue(envelope, received, size, header).await
    }

    /// Makes the message durable; answers 250 only once it is on disk.
    /// With content filters still to ask, the message is made whole in
    /// `tmp/` first, shown to them, changed as they say, and then queued,
    /// quarantined, dropped or refused.
    pub(super) async fn queue(
        &mut self,
        mut envelope: Envelope,
        received: Received,
        size: u64,
        header: Vec<u8>,
    ) -> Flow {
        let Received {
            pending,
            tail,
            finished,
        } = received;
        let wrapped = finished.wrapped;
        if !self.milters.concerned() {
            let written =
                tokio::task::spawn_blocking(move || pending.commit_with(&header, &tail)).await;
            return match written {
                Ok(Ok(entry)) => self.queued(entry, size, wrapped),
                Ok(Err(e)) => self.spool_failed(e.to_string()),
                Err(e) => self.spool_failed(e.to_string()),
            };
        }
        let completed = tokio::task::spawn_blocking(move || {
            let mut pending = pending;
            let written = pending.complete(&header, &tail);
            (pending, written)
        })
        .await;
        let mut pending = match completed {
            Ok((pending, Ok(()))) => Some(pending),
            Ok((_, Err(e))) => return self.spool_failed(e.to_string()),
            Err(e) => return self.spool_failed(e.to_string()),
        };
        let fate = Box::pin(self.milters_message(&mut pending, &mut envelope)).await;
        let Some(pending) = pending else {
            return self.spool_failed("the message was lost".into());
        };
        match fate {
            Fate::Queue => {
                let written = tokio::task::spawn_blocking(move || pending.commit_completed()).await;
                match written {
                    Ok(Ok(entry)) => self.queued(entry, size, wrapped),
                    Ok(Err(e)) => self.spool_failed(e.to_string()),
                    Err(e) => self.spool_failed(e.to_string()),
                }
            }
            Fate::Refuse(reply, name) => {
                drop(pending);
                self.refuse("data", &format!("milter:{name}"), None, reply)
            }
            Fate::Discard(name) => {
                drop(pending);
                self.taken_aside("discard", &envelope, &name, None)
            }
            Fate::Quarantine(name, reason) => {
                let why = format!("milter {name}: {reason}");
                let task_why = why.clone();
                let written =
                    tokio::task::spawn_blocking(move || pending.commit_quarantined(&task_why))
                        .await;
                match written {
                    Ok(Ok(())) => self.taken_aside("quarantine", &envelope, &name, Some(&why)),
                    Ok(Err(e)) => self.spool_failed(e.to_string()),
                    Err(e) => self.spool_failed(e.to_string()),
                }
            }
            Fate::Spool(error) => self.spool_failed(error),
        }
    }

    /// A message queued: counted, logged, and its 250.
    fn queued(&mut self, entry: Entry, size: u64, wrapped: u32) -> Flow {
        let envelope = &entry.envelope;
        let id = &envelope.id;
        self.counts.accepted += 1;
        self.counts.rcpts += envelope.rcpts.len() as u32;
        self.counts.bytes += size;
        let reply = Reply::new(250, "2.0.0", format!("Ok: queued as {id}"));
        self.svc
            .log
            .event("accept")
            .ip("client", self.client)
            .kv("helo", &envelope.helo)
            .kv("from", &envelope.from)
            .kv("to", crate::log::join_addresses(&envelope.rcpts))
            .kv("stage", "data")
            .kv("action", "accept")
            .kv("queue_id", id)
            .kv("size", size)
            .opt("wrapped", (wrapped > 0).then_some(wrapped))
            .kv("reply", &reply)
            .emit();
        self.svc.delivery.enqueue(entry);
        self.ok(reply)
    }

    /// A message a content filter had dropped (`discard`) or quarantined:
    /// the client hears the same 250 as for a queued one (it is taken:
    /// nothing may bounce), the log says where it went.
    fn taken_aside(
        &mut self,
        event: &'static str,
        envelope: &Envelope,
        milter: &str,
        reason: Option<&str>,
    ) -> Flow {
        let reply = Reply::new(250, "2.0.0", format!("Ok: queued as {}", envelope.id));
        self.svc
            .log
            .event(event)
            .ip("client", self.client)
            .kv("helo", &envelope.helo)
            .kv("from", &envelope.from)
            .kv("to", crate::log::join_addresses(&envelope.rcpts))
            .kv("stage", "data")
            .kv("queue_id", &envelope.id)
            .kv("milter", milter)
            .opt("reason", reason)
            .kv("reply", &reply)
            .emit();
        self.ok(reply)
    }

    pub(super) fn spool_failed(&mut self, error: String) -> Flow {
        self.svc
            .log
            .event("spool_error")
            .ip("client", self.client)
            .kv("error", error)
            .emit();
        let reply = Reply::new(451, "4.3.0", "Error: queue file write error");
        self.refuse("data", "spool", None, reply)
    }
}

/// MAIL's parameters as a content filter is told them.
fn mail_args(params: &MailParams) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(size) = params.size {
        args.push(format!("SIZE={size}"));
    }
    if params.body_8bit {
        args.push("BODY=8BITMIME".into());
    }
    if params.smtputf8 {
        args.push("SMTPUTF8".into());
    }
    args.extend(params.ret.as_ref().map(|r| format!("RET={r}")));
    args.extend(params.envid.as_ref().map(|e| format!("ENVID={e}")));
    args
}

/// RCPT's parameters as a content filter is told them.
fn rcpt_args(params: &RcptParams) -> Vec<String> {
    let notify = params.notify.as_ref().map(|n| format!("NOTIFY={n}"));
    let orcpt = params.orcpt.as_ref().map(|o| format!("ORCPT={o}"));
    notify.into_iter().chain(orcpt).collect()
}

/// The refusal of an address beyond ASCII in a transaction begun without
/// `SMTPUTF8` (RFC 6531 3.5).
fn non_ascii(path: &Path) -> Reply {
    let text = format!("{path}: Error: non-ASCII address needs MAIL FROM with SMTPUTF8");
    Reply::new(553, "5.6.7", text)
}
