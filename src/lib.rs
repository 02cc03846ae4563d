//! mxguard: an SMTP gateway that refuses spam, forged senders and bots
//! during the SMTP conversation, spools accepted mail durably and relays it
//! to the real mail server.
//!
//! The way of a connection, one module per box:
//!
//! ```text
//! server     TCP accept, connection caps ──► smtp::session (per connection)
//! smtp       parser (command, address), DATA decoder, replies, conn, session
//!   └─ asks  policy: relay control, recipients (table) ──► Refusal or Ok
//!   └─ end of DATA ──► spool: write, fsync file + dir ──► "250 queued as ID"
//! delivery   scheduler ──► attempt ──► smtp_client (SMTP/LMTP) | maildir
//!            permanent failure ──► quarantine (never a bounce)
//! log        one key=value line per decision
//! ```
//!
//! Around them: [`config`] (TOML schema and validation), [`services`] (what
//! sessions share), [`tls`], [`control`] (the control socket),
//! [`queue_admin`] (`mxguard queue`), [`time`] and [`net`] helpers,
//! [`peers`] (who may use the policy and metrics listeners).

pub mod abuse;
pub mod ban_admin;
pub mod config;
pub mod control;
pub mod delivery;
pub mod dns;
pub mod dry_run;
pub mod import;
pub mod lifecycle;
pub mod listeners;
pub mod lists;
pub mod log;
pub mod message;
pub mod metrics;
pub mod net;
pub mod owned;
pub mod peers;
pub mod policy;
pub mod policy_server;
pub mod queue_admin;
pub mod recipients;
pub mod reconfigure;
pub mod reload;
pub mod report;
pub mod server;
pub mod services;
pub mod session;
pub mod smtp;
pub mod spool;
pub mod state;
pub mod time;
pub mod tls;
pub mod verdict;
