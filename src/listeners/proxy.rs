//! The PROXY protocol (HAProxy's, versions 1 and 2) on the listeners of
//! `server.proxy_listen`: the header a load balancer sends before the
//! SMTP conversation, read exactly (not one octet of the client's SMTP is
//! consumed), bounded in size and time, and turned into the client it
//! names. Parsing is the `ppp` crate's; what to make of it is here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The largest header accepted: a v1 header is at most 107 octets; a v2
/// header is 16 plus addresses (at most 216) plus TLVs, which balancers
/// keep short.
const MAX_HEADER: usize = 1024;
/// The longest v1 header (the protocol's own bound).
const MAX_V1: usize = 107;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What the balancer said about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A proxied connection from this client.
    Client(SocketAddr),
    /// The balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`): a health
    /// check, not a client.
    Local,
}

/// Why a connection's header was not accepted; it is closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header (the connection did not start with one)")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("PROXY header longer than {MAX_HEADER} octets")]
    TooLong,
    #[error("PROXY header for a protocol other than TCP")]
    NotTcp,
    #[error("timeout waiting for the PROXY header")]
    Timeout,
    #[error("connection closed before the PROXY header ended")]
    Closed,
    #[error("{0}")]
    Io(std::io::Error),
}

/// Decodes one whole header (as [`read_header`] delimits it).
pub fn decode(header: &[u8]) -> Result<Origin, ProxyError> {
    use ppp::v2::{Addresses, Command, Protocol};
    let malformed = |e: &dyn std::fmt::Display| ProxyError::Malformed(e.to_string());
    match ppp::HeaderResult::parse(header) {
        ppp::HeaderResult::V1(Ok(h)) => match h.addresses {
            ppp::v1::Addresses::Unknown => Ok(Origin::Local),
            ppp::v1::Addresses::Tcp4(a) => Ok(Origin::Client(SocketAddr::new(
                IpAddr::V4(a.source_address),
                a.source_port,
            ))),
            ppp::v1::Addresses::Tcp6(a) => Ok(Origin::Client(SocketAddr::new(
                IpAddr::V6(a.source_address),
                a.source_port,
            ))),
        },
        ppp::HeaderResult::V1(Err(e)) => Err(malformed(&e)),
        ppp::HeaderResult::V2(Err(e)) => Err(malformed(&e)),
        ppp::HeaderResult::V2(Ok(h)) => {
            if h.command == Command::Local {
                return Ok(Origin::Local);
            }
            if h.protocol != Protocol::Stream {
                return Err(ProxyError::NotTcp);
            }
            match h.addresses {
                Addresses::IPv4(a) => Ok(Origin::Client(SocketAddr::new(
                    IpAddr::V4(a.source_address),
                    a.source_port,
                ))),
                Addresses::IPv6(a) => Ok(Origin::Client(SocketAddr::new(
                    IpAddr::V6(a.source_address),
                    a.source_port,
                ))),
                Addresses::Unspecified | Addresses::Unix(_) => Err(ProxyError::NotTcp),
            }
        }
    }
}

/// Reads the header at the start of `stream` within `wait`, and not one
/// octet more: v1 up to its CRLF, v2 up to the length it states.
pub async fn read_header<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
) -> Result<Origin, ProxyError> {
    let header = tokio::time::timeout(wait, read_raw(stream))
        .await
        .map_err(|_| ProxyError::Timeout)??;
    decode(&header)
}

async fn read_raw<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, ProxyError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ProxyError::Closed,
        _ => ProxyError::Io(e),
    };
    // Both versions' starts are 8 octets or more ("PROXY TC", "PROXY UN",
    // or the v2 signature).
    let mut header = vec![0u8; 8];
    stream.read_exact(&mut header).await.map_err(io)?;
    if header.starts_with(b"PROXY ") {
        while !header.ends_with(b"\r\n") {
            if header.len() >= MAX_V1 {
                return Err(ProxyError::TooLong);
            }
            header.push(stream.read_u8().await.map_err(io)?);
        }
        return Ok(header);
    }
    if !V2_SIGNATURE.starts_with(&header) {
        return Err(ProxyError::Missing);
    }
    header.resize(16, 0);
    stream.read_exact(&mut header[8..]).await.map_err(io)?;
    if !header.starts_with(V2_SIGNATURE) {
        return Err(ProxyError::Missing);
    }
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if 16 + length > MAX_HEADER {
        return Err(ProxyError::TooLong);
    }
    header.resize(16 + length, 0);
    stream.read_exact(&mut header[16..]).await.map_err(io)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    async fn read(input: &[u8]) -> (Result<Origin, ProxyError>, Vec<u8>) {
        let mut stream = input;
        let origin = read_header(&mut stream, Duration::from_secs(1)).await;
        (origin, stream.to_vec())
    }

    #[tokio::test]
    async fn a_v1_header_names_the_client_and_leaves_the_smtp_alone() {
        let (origin, rest) =
            read(b"PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\r\nEHLO x\r\n").await;
        assert_eq!(
            origin.unwrap(),
            Origin::Client("192.0.2.10:40000".parse().unwrap())
        );
        assert_eq!(rest, b"EHLO x\r\n");
        let (origin, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 5 25\r\n").await;
        assert_eq!(
            origin.unwrap(),
            Origin::Client("[2001:db8::7]:5".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn a_v2_header_names_the_client_and_leaves_the_smtp_alone() {
        let mut input = v2(
            1,
            0x11,
            &[192, 0, 2, 10, 198, 51, 100, 1, 0x9c, 0x40, 0, 25],
        );
        input.extend_from_slice(b"QUIT\r\n");
        let (origin, rest) = read(&input).await;
        assert_eq!(
            origin.unwrap(),
            Origin::Client("192.0.2.10:40000".parse().unwrap())
        );
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[tokio::test]
    async fn health_checks_are_local() {
        assert_eq!(read(&v2(0, 0, &[])).await.0.unwrap(), Origin::Local);
        assert_eq!(read(b"PROXY UNKNOWN\r\n").await.0.unwrap(), Origin::Local);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for (input, want) in [
            (&b"EHLO client.example\r\n"[..], "no PROXY header"),
            (b"PROXY TCP4 999.0.2.10 1.2.3.4 1 2\r\n", "malformed"),
            (b"PROXY TCP4 1.2.3.4", "closed"),
        ] {
            let error = read(input).await.0.unwrap_err().to_string();
            assert!(error.contains(want), "{input:?}: {error}");
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(
            read(long.as_bytes()).await.0,
            Err(ProxyError::TooLong)
        ));
        let mut huge = v2(1, 0x11, &[0; 12]);
        huge[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert!(matches!(read(&huge).await.0, Err(ProxyError::TooLong)));
        let udp = v2(1, 0x12, &[192, 0, 2, 10, 198, 51, 100, 1, 0, 1, 0, 25]);
        assert!(matches!(read(&udp).await.0, Err(ProxyError::NotTcp)));
    }
}
