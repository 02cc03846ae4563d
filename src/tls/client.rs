//! The client side of TLS, toward the downstream (delivery and recipient
//! callouts): `downstream.tls` and `downstream.tls_ca_file` loaded into a
//! [`DownstreamTls`] (the rustls configuration, and whether plaintext is
//! allowed when TLS cannot be had), and [`Encryption`], what one connection
//! ended up with, as the delivery log shows it (`tls=TLSv1_3`, or
//! `tls=none tls_reason="…"`). The server side (`[tls]`) is
//! [`super::server`].

use crate::config::{Downstream, DownstreamTls as Mode};
use crate::reload::FileError;
use crate::smtp::client::TlsPolicy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Where `verify` looks for the system's CA certificates when
/// `downstream.tls_ca_file` is not set, first found wins: Debian and
/// Ubuntu (package ca-certificates), Fedora and RHEL, Alpine and the BSDs.
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// `downstream.tls`, ready to use for every connection to the downstream.
#[derive(Clone)]
pub struct DownstreamTls {
    mode: Mode,
    config: Arc<rustls::ClientConfig>,
}

impl DownstreamTls {
    /// Builds the client configuration `downstream.tls` asks for; for
    /// `verify`, reads the CA certificates (`downstream.tls_ca_file`, else
    /// the system's). Errors name the key and the file.
    pub fn load(downstream: &Downstream) -> Result<DownstreamTls, FileError> {
        let config = match downstream.tls {
            Mode::Opportunistic | Mode::Required => any_certificate_config(),
            Mode::Verify => {
                let roots = match &downstream.tls_ca_file {
                    Some(file) => ca_file_roots(file)?,
                    None => system_roots()?,
                };
                verifying_config(roots)
            }
        };
        Ok(DownstreamTls {
            mode: downstream.tls,
            config,
        })
    }
}

impl TlsPolicy for DownstreamTls {
    fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    fn plaintext_allowed(&self) -> bool {
        self.mode == Mode::Opportunistic
    }

    fn name(&self) -> &'static str {
        match self.mode {
            Mode::Opportunistic => "opportunistic",
            Mode::Required => "required",
            Mode::Verify => "verify",
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Encryption without authentication, as RFC 7435 describes: any
/// certificate is accepted (the signatures of the handshake are still
/// checked). For `opportunistic` and `required`.
pub fn any_certificate_config() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        // The ring provider always supports the default versions.
        Err(e) => unreachable!("ring provider lacks TLS versions: {e}"),
    }
}

/// Trusts no certificate at all: the settings a library wants for a TLS
/// it is never asked to speak (hickory's DNS over TLS), without reading
/// the system's certificates (a host may have none).
pub fn trusting_nothing() -> rustls::ClientConfig {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        });
    match config {
        Ok(c) => c,
        Err(e) => unreachable!("ring provider lacks TLS versions: {e}"),
    }
}

/// The certificate must chain to one of `roots` and name the server.
fn verifying_config(roots: RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = match WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    {
        Ok(v) => v,
        // Only without roots (never: checked when read) or with CRLs
        // (none are given).
        Err(e) => unreachable!("no CA certificates: {e}"),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_webpki_verifier(verifier).with_no_client_auth());
    match config {
        Ok(c) => Arc::new(c),
        Err(e) => unreachable!("ring provider lacks TLS versions: {e}"),
    }
}

/// Every certificate of `path`, each one a trust anchor.
fn ca_file_roots(path: &Path) -> Result<RootCertStore, FileError> {
    const KEY: &str = "downstream.tls_ca_file";
    let mut roots = RootCertStore::empty();
    for cert in read_pem(KEY, path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(KEY, path, format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid(KEY, path, "no certificate in the file".into()));
    }
    Ok(roots)
}

/// The system's CA bundle; certificates webpki cannot use are passed
/// over, as every TLS client does with these bundles.
fn system_roots() -> Result<RootCertStore, FileError> {
    const KEY: &str = "downstream.tls";
    let Some(path) = SYSTEM_CA_BUNDLES.iter().map(Path::new).find(|p| p.exists()) else {
        return Err(FileError::Read {
            key: KEY,
            path: SYSTEM_CA_BUNDLES.join(", "),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "\"verify\" found no system CA certificates: name a file in downstream.tls_ca_file",
            ),
        });
    };
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(read_pem(KEY, path)?);
    if roots.is_empty() {
        return Err(invalid(KEY, path, "no certificate in the file".into()));
    }
    Ok(roots)
}

fn read_pem(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let error = |e: pem::Error| match e {
        pem::Error::Io(source) => FileError::Read {
            key,
            path: path.display().to_string(),
            source,
        },
        other => invalid(key, path, other.to_string()),
    };
    CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)
}

fn invalid(key: &'static str, path: &Path, message: String) -> FileError {
    FileError::Read {
        key,
        path: path.display().to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, message),
    }
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DownstreamTls as Mode;
    use crate::smtp::client::server_name;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use std::path::PathBuf;

    /// A CA, and a certificate it signed for `names` (an IP address becomes
    /// an IP SAN); PEM.
    fn ca_and_leaf(names: &[&str]) -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
    }

    fn downstream(mode: Mode, ca_file: Option<PathBuf>) -> Downstream {
        Downstream {
            tls: mode,
            tls_ca_file: ca_file,
            ..Downstream::default()
        }
    }

    /// A handshake over an in-memory pipe against a server with `cert`:
    /// the client's result.
    async fn handshake(
        client: &DownstreamTls,
        name: &str,
        cert: &str,
        key: &str,
    ) -> Result<(), String> {
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let server = tokio::spawn(async move { acceptor.accept(b).await.map(|_| ()) });
        let connector = tokio_rustls::TlsConnector::from(client.config());
        let result = connector
            .connect(server_name(name).unwrap(), a)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = server.await;
        result
    }

    #[tokio::test]
    async fn verify_checks_the_chain_and_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, leaf, key) = ca_and_leaf(&["mail.example.test", "127.0.0.1"]);
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca).unwrap();
        let verify = DownstreamTls::load(&downstream(Mode::Verify, Some(ca_file))).unwrap();
        assert!(!verify.plaintext_allowed());
        assert_eq!(
            handshake(&verify, "mail.example.test", &leaf, &key).await,
            Ok(())
        );
        // An IP literal target is checked against the IP SANs.
        assert_eq!(handshake(&verify, "127.0.0.1", &leaf, &key).await, Ok(()));
        let wrong = handshake(&verify, "other.example.test", &leaf, &key).await;
        let wrong = wrong.unwrap_err();
        assert!(
            wrong.contains("certificate not valid for name \"other.example.test\""),
            "{wrong}"
        );
        let wrong_ip = handshake(&verify, "127.0.0.2", &leaf, &key).await;
        let wrong_ip = wrong_ip.unwrap_err();
        assert!(
            wrong_ip.contains("certificate not valid for name \"127.0.0.2\""),
            "{wrong_ip}"
        );
        // A certificate from another CA (of the same name: the signature
        // is found bad).
        let (_, stranger, stranger_key) = ca_and_leaf(&["mail.example.test"]);
        let unknown = handshake(&verify, "mail.example.test", &stranger, &stranger_key).await;
        let unknown = unknown.unwrap_err();
        assert!(unknown.starts_with("invalid peer certificate"), "{unknown}");
        // required: any certificate, but never plaintext.
        let required = DownstreamTls::load(&downstream(Mode::Required, None)).unwrap();
        assert!(!required.plaintext_allowed());
        assert_eq!(
            handshake(&required, "other.example.test", &stranger, &stranger_key).await,
            Ok(())
        );
        let opportunistic = DownstreamTls::load(&Downstream::default()).unwrap();
        assert!(opportunistic.plaintext_allowed());
    }

    #[test]
    fn ca_file_errors_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let load = |contents: Option<&str>| {
            let path = dir.path().join("ca.pem");
            let _ = std::fs::remove_file(&path);
            if let Some(text) = contents {
                std::fs::write(&path, text).unwrap();
            }
            match DownstreamTls::load(&downstream(Mode::Verify, Some(path.clone()))) {
                Ok(_) => panic!("{contents:?} loaded"),
                Err(e) => e.to_string().replace(&path.display().to_string(), "PATH"),
            }
        };
        assert_eq!(
            load(Some("")),
            "downstream.tls_ca_file: PATH: no certificate in the file"
        );
        let (_, _, key) = ca_and_leaf(&["x.test"]);
        assert_eq!(
            load(Some(&key)),
            "downstream.tls_ca_file: PATH: no certificate in the file"
        );
        assert!(
            load(None).starts_with("downstream.tls_ca_file: PATH: No such file"),
            "{}",
            load(None)
        );
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(load(Some(broken)).starts_with("downstream.tls_ca_file: PATH: "));
    }
}
