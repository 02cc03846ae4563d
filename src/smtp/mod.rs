//! The SMTP protocol, without policy: the command parser ([`command`],
//! [`address`]), the DATA decoder ([`data`]), replies ([`reply`]), the
//! buffered connection ([`conn`]) over a stream that STARTTLS may upgrade
//! ([`stream`]), the trace header ([`received`]), and the SMTP/LMTP client
//! ([`client`]) over TCP or a unix socket ([`link`]). The conversation that uses them lives a layer up, in `session/`.

pub mod address;
pub mod client;
pub mod command;
pub mod conn;
pub mod data;
pub mod link;
pub mod received;
pub mod reply;
pub mod stream;
