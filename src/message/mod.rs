//! What mxguard does to a message's content on its way into the spool,
//! without I/O: the streaming [`intake`] (our own verdicts removed, the
//! header block capped, long lines wrapped or refused), the reading of
//! `Authentication-Results:` headers ([`auth_results`]), and the DKIM body
//! hashes computed in passing ([`body_hash`]).

pub mod auth_results;
pub mod body_hash;
pub mod intake;
