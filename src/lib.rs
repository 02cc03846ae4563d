//! mxguard: an SMTP gateway that refuses spam, forged senders and bots
//! during the SMTP conversation, spools accepted mail durably and relays it
//! to the real mail server.
//!
//! The way of a connection and of a message, one module per box (see
//! ARCHITECTURE.md for the layers and what each may import):
//!
//! ```text
//! listeners   TCP accept, connection caps ──► session (per connection)
//! session     the SMTP conversation, over smtp (parser, DATA decoder,
//!             replies, conn); at each stage it asks
//!   └─ policy::pipeline  every decision, in order ──► Decision
//!   └─ end of DATA: message::intake ──► spool (fsync file + dir) ──► 250
//! delivery    scheduler ──► attempt ──► smtp::client (SMTP/LMTP) | maildir
//!             permanent failure ──► a DSN to a verified sender, else the
//!             quarantine
//! log         one key=value line per decision
//! ```
//!
//! The other front ends of the pipeline: [`policy_server`] (Postfix's
//! policy delegation) and [`dry_run`] (`mxguard check`). Around them:
//! [`config`], [`services`] (what connections share, [`reconfigure`] on
//! SIGHUP, [`lifecycle`] at a stop), [`server`] (start, signals), [`tls`],
//! [`control`] (the control socket), [`queue_admin`], [`ban_admin`],
//! [`greylist_admin`],
//! [`metrics`], [`report`], [`import`], and the helpers [`time`], [`net`],
//! [`owned`], [`peers`], [`lists`], [`reload`], [`memory`]; [`spf`] is SPF without I/O,
//! driven on the resolver by [`dns::spf`]; [`milter`] is the MTA side of
//! the milter protocol (a session with one milter, and its header edits).

pub mod abuse;
pub mod ban_admin;
pub mod config;
pub mod control;
pub mod decimal;
pub mod delivery;
pub mod dns;
pub mod dry_run;
pub mod greylist_admin;
pub mod import;
pub mod lifecycle;
pub mod lines;
pub mod listeners;
pub mod lists;
pub mod log;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod milter;
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
pub mod spf;
pub mod spool;
pub mod state;
pub mod time;
pub mod tls;
pub mod verdict;
