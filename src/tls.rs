//! TLS configuration: the server side of STARTTLS (the certificates of
//! `[tls]`) is [`server`]; the client side, toward the downstream
//! (`downstream.tls`), is [`client`]. The stream that is upgraded is the
//! SMTP layer's (`smtp::stream::MaybeTls`).

pub mod client;
pub mod server;

pub use server::TlsError;
