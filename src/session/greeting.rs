//! A session's first moments and its encryption: the pregreet test and the
//! tarpit before the banner, and STARTTLS.

use super::{Flow, Session};
use crate::smtp::reply::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// The pregreet test, then the tarpit decision.
    pub(super) async fn before_banner(&mut self) -> Flow {
        if self.exempt {
            return Flow::Continue;
        }
        let svc = self.svc;
        let (abuse, pipeline) = (&svc.abuse, &self.pipeline);
        let must_wait = match abuse.must_wait_for_greeting(self.client).await {
            Ok(must) => must,
            Err(unavailable) => {
                let refusal = pipeline.refusal_before_banner(unavailable.refusal());
                return self.close(&refusal.check, refusal.reply);
            }
        };
        if must_wait {
            match self
                .conn
                .wait_for_input(self.svc.config.abuse.greet_wait.0)
                .await
            {
                Ok(true) => {
                    let refusal = pipeline.pregreet();
                    self.offences.push(refusal.check.to_string());
                    self.conn.write_reply(&refusal.reply);
                    let reply = &refusal.reply;
                    self.log_decision("reject", "connect", &refusal.check, "reject", reply, None);
                    self.counts.refused(reply);
                    return Flow::Close;
                }
                Ok(false) => {
                    let _ = abuse.greeting_passed(self.client).await;
                }
                Err(_) => return Flow::Close,
            }
        }
        let config = &svc.config.abuse;
        let Some((reason, score)) = pipeline.tarpit(&mut self.checks).await else {
            return Flow::Continue;
        };
        match abuse.enter_tarpit() {
            Some(permit) => {
                self.tarpit = Some(permit);
                self.svc
                    .log
                    .event("tarpit")
                    .ip("client", self.client)
                    .kv("score", score)
                    .kv("reason", reason)
                    .emit();
                Flow::Continue
            }
            None => {
                // Served at full speed rather than refused: a check in
                // warn mode must never cost a client its mail.
                self.svc
                    .log
                    .event("tarpit_full")
                    .ip("client", self.client)
                    .kv("score", score)
                    .kv("tarpit_max", config.tarpit_max)
                    .emit();
                Flow::Continue
            }
        }
    }

    pub(super) async fn starttls(&mut self) -> Flow {
        let Some(config) = self.svc.tls.as_ref().map(|t| t.config()) else {
            let reply = Reply::new(502, "5.5.1", "Error: command not implemented");
            return self.protocol_error("starttls", "protocol", None, reply);
        };
        if self.conn.is_tls() {
            let reply = Reply::new(554, "5.5.1", "Error: TLS already active");
            return self.protocol_error("starttls", "protocol", None, reply);
        }
        if self.tx.is_some() {
            let reply = Reply::new(503, "5.5.1", "Error: MAIL transaction in progress");
            return self.protocol_error("starttls", "protocol", None, reply);
        }
        self.conn
            .write_reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        let timeout = self.svc.config.limits.command_timeout.0;
        if self.conn.flush(timeout).await.is_err() {
            return Flow::Close;
        }
        // Anything pipelined after STARTTLS was sent in plaintext and is
        // dropped unanswered: accept_tls discards it before the handshake.
        if let Err(e) = self.conn.accept_tls(config, timeout).await {
            self.svc
                .log
                .event("tls_error")
                .ip("client", self.client)
                .kv("error", e)
                .emit();
            return Flow::Close;
        }
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        Flow::Continue
    }
}
