//! Recipient verification without backscatter: whether a mailbox at our
//! domains exists, asked of the sources in order — the table file
//! ([`table`]), then the downstream itself ([`callout`]), whose answers are
//! cached with their own lifetimes ([`cache`]) so a backup MX still knows
//! the mailboxes while the primary is down. A recipient nobody can confirm
//! gets `450 4.1.1` (or is accepted for catch-all domains); one a source
//! says does not exist gets `550 5.1.1`. Also the spam traps, whose blocks
//! (`trap:IP`) live in the state store like the cache.

pub mod cache;
pub mod callout;
pub mod table;

use crate::config::{Action, Config};
use crate::lists::AddressList;
use crate::log::Logger;
use crate::reload::FileError;
use crate::smtp::address::Mailbox;
use crate::smtp::reply::Reply;
use crate::state::{State, Unavailable};
use crate::verdict::Refusal;
use cache::{Known, RecipientCache};
use callout::{Callout, Probe};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use table::RecipientTable;

pub struct Verifier {
    config: Arc<Config>,
    table: Option<RecipientTable>,
    callout: Option<Callout>,
    pub cache: RecipientCache,
    spamtraps: Option<AddressList>,
    /// Where spam-trap blocks live.
    state: Arc<State>,
    /// Addresses being refreshed in the background (one probe each).
    refreshing: Mutex<HashSet<String>>,
    log: Arc<Logger>,
}

fn unknown(mailbox: &Mailbox, check: &'static str, why: &str) -> Refusal {
    Refusal::new(
        check,
        Reply::new(
            550,
            "5.1.1",
            format!("<{mailbox}>: Recipient address rejected: {why}"),
        ),
    )
}

impl Verifier {
    pub fn new(
        config: Arc<Config>,
        state: Arc<State>,
        log: Arc<Logger>,
    ) -> Result<Verifier, FileError> {
        let r = &config.recipients;
        let table = r.table.as_deref().map(RecipientTable::open).transpose()?;
        let spamtraps = r
            .spamtraps
            .as_deref()
            .map(|p| AddressList::open("recipients.spamtraps", p))
            .transpose()?;
        let callout = r.callout.then(|| Callout::new(&config)).transpose()?;
        Ok(Verifier {
            table,
            callout,
            cache: RecipientCache::new(config.clone(), state.clone()),
            spamtraps,
            state,
            refreshing: Mutex::new(HashSet::new()),
            log,
            config,
        })
    }

    /// Whether a mailbox at our domains exists: `Ok` to accept, else the
    /// refusal (`550 5.1.1` unknown, `450 4.1.1` unverifiable).
    pub async fn verify(self: &Arc<Self>, mailbox: &Mailbox) -> Result<(), Refusal> {
        if let Some(table) = &self.table {
            if table.contains(mailbox, &self.log) {
                return Ok(());
            }
            if self.callout.is_none() {
                return Err(unknown(mailbox, "recipient_table", "User unknown"));
            }
        }
        let Some(callout) = &self.callout else {
            return Ok(());
        };
        // Boxed: the cache's and the callout's futures are built only
        // where a callout is configured, not into every RCPT's future.
        Box::pin(self.verify_by_callout(callout, mailbox)).await
    }

    /// [`Verifier::verify`] of a mailbox the table does not hold: the
    /// cached answer of the downstream, or its answer now.
    async fn verify_by_callout(
        self: &Arc<Self>,
        callout: &Callout,
        mailbox: &Mailbox,
    ) -> Result<(), Refusal> {
        let r = &self.config.recipients;
        let address = format!(
            "{}@{}",
            mailbox.local_unquoted().to_lowercase(),
            mailbox.domain_name().unwrap_or("")
        );
        let now = crate::time::unix_now();
        let cached = self.cache.get(&address).await.map_err(|u| u.refusal())?;
        if let Some(known) = cached {
            let age = now.saturating_sub(known.checked);
            let (ttl, refresh) = if known.exists {
                (r.positive_ttl.0.as_secs(), r.positive_refresh.0.as_secs())
            } else {
                (r.negative_ttl.0.as_secs(), r.negative_refresh.0.as_secs())
            };
            if age < ttl {
                let first = age >= refresh
                    && self
                        .refreshing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(address.clone());
                if first {
                    let verifier = self.clone();
                    let address = address.clone();
                    tokio::spawn(async move {
                        verifier.refresh(&address).await;
                        verifier
                            .refreshing
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&address);
                    });
                }
                return if known.exists {
                    Ok(())
                } else {
                    Err(unknown(
                        mailbox,
                        "callout",
                        "User unknown (cached answer of the downstream)",
                    ))
                };
            }
        }
        // Boxed: the callout's SMTP conversation (kilobytes of future) is
        // built only when it runs, not carried by every RCPT's future.
        match Box::pin(callout.probe(&address)).await {
            Probe::Exists => {
                let known = Known {
                    exists: true,
                    checked: now,
                };
                // Not remembered when the store fails: the answer stands.
                let _ = self.cache.put(&address, known).await;
                Ok(())
            }
            Probe::Missing(reply) => {
                let known = Known {
                    exists: false,
                    checked: now,
                };
                let _ = self.cache.put(&address, known).await;
                Err(unknown(
                    mailbox,
                    "callout",
                    &format!("undeliverable address: downstream said: {reply}"),
                ))
            }
            // A failed refresh never demotes a positive answer, however old.
            Probe::Unknown(_) if cached.is_some_and(|k| k.exists) => Ok(()),
            Probe::Unknown(why) => {
                let domain = mailbox.domain_name().unwrap_or("");
                if r.accept_unverifiable.iter().any(|d| d == domain) {
                    self.log
                        .event("unverified_accept")
                        .kv("to", mailbox)
                        .kv("reason", &why)
                        .emit();
                    return Ok(());
                }
                Err(Refusal::new(
                    "callout",
                    Reply::new(
                        450,
                        "4.1.1",
                        format!(
                            "<{mailbox}>: Recipient address rejected: unverified address: {why}"
                        ),
                    ),
                ))
            }
        }
    }

    /// Asks again in the background; only a real answer replaces the entry.
    async fn refresh(&self, address: &str) {
        let Some(callout) = &self.callout else { return };
        let now = crate::time::unix_now();
        let exists = match callout.probe(address).await {
            Probe::Exists => true,
            Probe::Missing(_) => false,
            Probe::Unknown(_) => return,
        };
        let _ = self
            .cache
            .put(
                address,
                Known {
                    exists,
                    checked: now,
                },
            )
            .await;
    }

    /// The refusal for a client that hit a spam trap, while it lasts.
    pub async fn trapped(&self, client: IpAddr) -> Result<Option<Refusal>, Unavailable> {
        let Some(until) = self.state.get(&trap_key(client)).await? else {
            return Ok(None);
        };
        let until: u64 = until.parse().unwrap_or(0);
        if until <= crate::time::unix_now() {
            return Ok(None);
        }
        let text = format!(
            "Service unavailable; client [{client}] sent mail to a spam trap; blocked until {}",
            crate::time::iso8601_unix(until)
        );
        let reply = match self.config.recipients.spamtrap_action {
            Action::Reject => Reply::new(554, "5.7.1", text),
            _ => Reply::new(451, "4.7.1", text),
        };
        Ok(Some(Refusal::new("spamtrap", reply)))
    }

    /// The trap pattern `mailbox` matches, if it is a spam trap.
    fn trap(&self, mailbox: &Mailbox) -> Option<String> {
        let spamtraps = self.spamtraps.as_ref()?;
        let domain = mailbox.domain_name().unwrap_or("");
        let address = [&*mailbox.local_unquoted(), "@", domain].concat();
        spamtraps.find(&address, &self.log)
    }

    /// What [`Verifier::spring_trap`] would answer, blocking no one.
    pub fn is_trap(&self, mailbox: &Mailbox) -> Option<Refusal> {
        self.trap(mailbox)
            .map(|_| unknown(mailbox, "spamtrap", "User unknown"))
    }

    /// Whether `mailbox` is a spam trap; if so, its sender is blocked now.
    pub async fn spring_trap(&self, client: IpAddr, mailbox: &Mailbox) -> Option<Refusal> {
        let pattern = self.trap(mailbox)?;
        let block = self.config.recipients.spamtrap_block_time.0;
        let until = crate::time::unix_now() + block.as_secs();
        // The trap answers 550 even when the block cannot be stored. Boxed:
        // unboxed, the store call's future would be part of every RCPT's
        // future, and few recipients are traps.
        let (key, value) = (trap_key(client), until.to_string());
        let _ = Box::pin(self.state.put(&key, &value, block)).await;
        self.log
            .event("spamtrap")
            .kv("client", client)
            .kv("to", mailbox)
            .kv("pattern", pattern)
            .emit();
        Some(unknown(mailbox, "spamtrap", "User unknown"))
    }
}

fn trap_key(client: IpAddr) -> String {
    let mut key = String::with_capacity(44);
    key.push_str("trap:");
    crate::net::push_ip(&mut key, client);
    key
}
