//! The milter protocol (sendmail's mail filter API, version 6), MTA side:
//! the packets without I/O ([`codec`]), the header edits a milter asks for
//! ([`edit`], pure), and one session with a milter over TCP or a unix
//! socket ([`client`]). What to send and what to do with the answers is
//! decided a layer up.

pub mod client;
pub mod codec;
pub mod edit;
