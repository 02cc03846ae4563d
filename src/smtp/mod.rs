//! The SMTP front door: the command parser ([`command`], [`address`]), the
//! DATA decoder ([`data`]), replies ([`reply`]), the buffered connection
//! ([`conn`]), the trace header ([`received`]) and the per-connection state
//! machine ([`session`]).

pub mod address;
pub mod command;
pub mod conn;
pub mod data;
pub mod headers;
pub mod received;
pub mod reply;
pub mod session;
