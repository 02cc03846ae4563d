//! TLS: the server side of STARTTLS (certificate and key from `[tls]`), and
//! [`MaybeTls`], a stream that is plaintext until it is upgraded. The client
//! side, toward the downstream (`downstream.tls`), is [`client`].

pub mod client;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::pem::PemObject;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert: {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key: {path}: {message}")]
    Key { path: String, message: String },
    #[error("tls: certificate and key do not fit together: {0}")]
    Config(rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads `[tls]` into a server configuration for STARTTLS.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        message: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// A stream that starts as plaintext and may become TLS.
pub enum MaybeTls<S> {
    Plain(S),
    Tls(Box<tokio_rustls::TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Protocol version and cipher suite, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384`.
    pub fn tls_description(&self) -> Option<String> {
        let MaybeTls::Tls(tls) = self else {
            return None;
        };
        let (version, suite) = match tls.as_ref() {
            tokio_rustls::TlsStream::Client(c) => {
                let conn = c.get_ref().1;
                (conn.protocol_version(), conn.negotiated_cipher_suite())
            }
            tokio_rustls::TlsStream::Server(s) => {
                let conn = s.get_ref().1;
                (conn.protocol_version(), conn.negotiated_cipher_suite())
            }
        };
        Some(format!(
            "{} {}",
            version.map(|v| format!("{v:?}")).unwrap_or_default(),
            suite
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default()
        ))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
