//! The SMTP front door: the command parser ([`command`], [`address`]), the
//! DATA decoder ([`data`]), replies ([`reply`]), the buffered connection
//! ([`conn`]), the trace header ([`received`]), a message on its way into
//! the spool ([`receiving`]) and the per-connection state machine
//! ([`session`]).

pub mod address;
pub mod command;
pub mod conn;
pub mod data;
pub mod received;
pub mod receiving;
pub mod reply;
pub mod session;
