//! The server side of TLS (STARTTLS toward our clients): the certificates
//! of `[tls]` — the default `cert`/`key` pair and each
//! `[[tls.certificate]]` — held in [`Certificates`], which rustls asks for
//! the certificate of each handshake, chosen by the name the client sends
//! (SNI). The certificates can change under the running server while the
//! rustls configuration stays the same object: [`Certificates::check`]
//! re-reads the pairs whose files changed (a certbot renewal re-points the
//! `live/` symlinks), every `tls.check_interval` ([`ServerTls::start`]);
//! [`ServerTls::reload`] re-reads every pair now (the control socket's
//! `tls reload`). A pair that does not load keeps the one in use.
//!
//! Size: under 560 lines of code; the rest are the tests of reloads and
//! SNI that need the certificate fixtures built here.

use crate::config;
use crate::log::Logger;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// Why a certificate and its key could not be loaded. `name` is the
/// configuration key of the pair: `tls`, or `tls.certificate[N]` (counted
/// from 0).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{name}.cert: {path}: {message}")]
    Cert {
        name: String,
        path: String,
        message: String,
    },
    #[error("{name}.key: {path}: {message}")]
    Key {
        name: String,
        path: String,
        message: String,
    },
    #[error("{name}.key: {key} does not match {name}.cert {cert}")]
    Mismatch {
        name: String,
        key: String,
        cert: String,
    },
    #[error("tls: needs cert and key, or at least one [[tls.certificate]]")]
    Nothing,
    #[error("tls: {0}")]
    Config(rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `[tls]`, ready for STARTTLS: the rustls configuration (always the same
/// object) and the certificates behind it (which change).
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    certificates: Arc<Certificates>,
    check_interval: Duration,
}

impl ServerTls {
    /// Reads every certificate and key of `[tls]`; any that does not load
    /// (unreadable, not PEM, a key that does not match its certificate) is
    /// an error naming its key. An expired certificate is not: see
    /// [`ServerTls::warnings`].
    pub fn load(tls: &config::Tls) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let certificates = Arc::new(Certificates::load(tls, provider.clone())?);
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        Ok(ServerTls {
            config: Arc::new(config),
            certificates,
            check_interval: tls.check_interval.0,
        })
    }

    /// The configuration every STARTTLS handshake uses.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// One line for each certificate in use that has expired (it is served
    /// all the same: a client that checks refuses it, one that does not is
    /// better off with TLS than without).
    pub fn warnings(&self) -> Vec<String> {
        let in_use = self.certificates.in_use();
        let now = now_utc();
        self.certificates
            .pairs
            .iter()
            .zip(in_use.iter())
            .filter_map(|(pair, served)| {
                let not_after = served.not_after.as_deref()?;
                (not_after < now.as_str())
                    .then(|| expiry_warning(&pair.name, &pair.cert, not_after))
            })
            .collect()
    }

    /// How often the files are looked at (`tls.check_interval`).
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    /// Logs [`ServerTls::warnings`] (when these certificates come into use:
    /// at start, after a reload).
    pub fn warn(&self, log: &Logger) {
        for warning in self.warnings() {
            log.event("warning").kv("warning", warning).emit();
        }
    }

    /// Swaps in the pairs whose files changed since they were read (and
    /// load), logging each change and failure.
    pub async fn check(&self, log: &Logger) {
        let certificates = self.certificates.clone();
        let results = tokio::task::spawn_blocking(move || certificates.check())
            .await
            .unwrap_or_default();
        for result in &results {
            result.log(log);
        }
    }

    /// Re-reads every certificate and key now (whether or not the files
    /// look changed), swaps in those that changed and load, logs each
    /// change and failure, and says what happened to each. What the
    /// control socket's `tls reload` (and a reload signal) calls.
    pub async fn reload(&self, log: &Logger) -> Vec<Reloaded> {
        let certificates = self.certificates.clone();
        let results = tokio::task::spawn_blocking(move || certificates.reload())
            .await
            .unwrap_or_default();
        for result in &results {
            result.log(log);
        }
        results
    }
}

/// One certificate and key pair of the configuration.
#[derive(Debug)]
struct Pair {
    /// Its configuration key, for errors and logs.
    name: String,
    /// The names it is served for (none for the `[tls]` pair: it is the
    /// default).
    names: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

/// A pair as loaded, served to clients.
#[derive(Debug, Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    /// The certificate's notAfter, `2026-11-29T15:01:55Z`.
    not_after: Option<String>,
}

/// The certificates in use, one for each pair of the configuration (the
/// first is the default), replaced as a whole when any changes.
#[derive(Debug)]
pub struct Certificates {
    provider: Arc<CryptoProvider>,
    pairs: Vec<Pair>,
    in_use: RwLock<Arc<[Served]>>,
    /// The identity of each pair's files when they were last read; held
    /// while reading, so checks and reloads take turns.
    seen: Mutex<Vec<PairId>>,
}

impl Certificates {
    fn load(tls: &config::Tls, provider: Arc<CryptoProvider>) -> Result<Certificates, TlsError> {
        let mut pairs = Vec::new();
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            pairs.push(Pair {
                name: "tls".into(),
                names: Vec::new(),
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        for (i, entry) in tls.certificate.iter().enumerate() {
            pairs.push(Pair {
                name: format!("tls.certificate[{i}]"),
                names: entry.names.iter().map(|n| n.as_str().to_string()).collect(),
                cert: entry.cert.clone(),
                key: entry.key.clone(),
            });
        }
        let mut seen = Vec::new();
        let mut in_use = Vec::new();
        for pair in &pairs {
            seen.push(pair_id(pair));
            in_use.push(load_pair(pair, &provider)?);
        }
        if in_use.is_empty() {
            return Err(TlsError::Nothing);
        }
        Ok(Certificates {
            provider,
            pairs,
            in_use: RwLock::new(in_use.into()),
            seen: Mutex::new(seen),
        })
    }

    fn in_use(&self) -> Arc<[Served]> {
        self.in_use
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the pairs whose files changed since they were last read:
    /// the file a path leads to (through any symlinks), its device, inode,
    /// size or modification time.
    pub fn check(&self) -> Vec<Reloaded> {
        self.refresh(false)
    }

    /// Re-reads every pair now.
    pub fn reload(&self) -> Vec<Reloaded> {
        self.refresh(true)
    }

    fn refresh(&self, every: bool) -> Vec<Reloaded> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut in_use = self.in_use().to_vec();
        let mut changed = false;
        let now = now_utc();
        let mut results = Vec::new();
        for (i, pair) in self.pairs.iter().enumerate() {
            // The identity is taken before the files are read: a change
            // made while they are read is seen at the next check.
            let id = pair_id(pair);
            let outcome = if !every && seen.get(i) == Some(&id) {
                Outcome::Unchanged
            } else {
                if let Some(slot) = seen.get_mut(i) {
                    *slot = id;
                }
                match (load_pair(pair, &self.provider), in_use.get_mut(i)) {
                    (Ok(new), Some(old)) if new.key.cert != old.key.cert => {
                        let outcome = Outcome::Replaced {
                            expired: new.not_after.as_deref().is_some_and(|t| t < now.as_str()),
                            not_after: new.not_after.clone(),
                        };
                        *old = new;
                        changed = true;
                        outcome
                    }
                    (Ok(_), _) => Outcome::Unchanged,
                    (Err(e), _) => Outcome::Failed(e),
                }
            };
            results.push(Reloaded {
                name: pair.name.clone(),
                cert: pair.cert.clone(),
                outcome,
            });
        }
        if changed {
            *self.in_use.write().unwrap_or_else(PoisonError::into_inner) = in_use.into();
        }
        results
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = hello
            .server_name()
            .map_or(0, |host| choose(&self.pairs, host));
        self.in_use().get(index).map(|served| served.key.clone())
    }
}

/// The pair to serve to a client that asks for `host`: the first whose
/// names hold it, else the first with a wildcard that covers it, else the
/// default (the first pair).
fn choose(pairs: &[Pair], host: &str) -> usize {
    let host = host.strip_suffix('.').unwrap_or(host);
    let exact = pairs.iter().position(|pair| {
        pair.names
            .iter()
            .any(|name| !name.starts_with("*.") && name.eq_ignore_ascii_case(host))
    });
    exact
        .or_else(|| {
            pairs
                .iter()
                .position(|pair| pair.names.iter().any(|name| wildcard_covers(name, host)))
        })
        .unwrap_or(0)
}

/// Whether `*.example.org` covers `host`: one label, then the domain.
fn wildcard_covers(pattern: &str, host: &str) -> bool {
    let Some(domain) = pattern.strip_prefix("*.") else {
        return false;
    };
    host.split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(domain))
}

/// What re-reading one pair did.
#[derive(Debug)]
pub struct Reloaded {
    /// The pair's configuration key: `tls` or `tls.certificate[N]`.
    pub name: String,
    pub cert: PathBuf,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    /// The files did not change, or hold the certificate in use.
    Unchanged,
    /// A new certificate is served from now on.
    Replaced {
        not_after: Option<String>,
        expired: bool,
    },
    /// The new files do not load: the certificate in use stays.
    Failed(TlsError),
}

impl Reloaded {
    /// `event=tls_reload status=ok` for a new certificate (and a warning
    /// if it has expired), `status=failed` for one that does not load;
    /// nothing when unchanged.
    pub fn log(&self, log: &Logger) {
        match &self.outcome {
            Outcome::Unchanged => {}
            Outcome::Replaced { not_after, expired } => {
                log.event("tls_reload")
                    .kv("status", "ok")
                    .kv("name", &self.name)
                    .kv("cert", self.cert.display())
                    .opt("not_after", not_after.as_deref())
                    .emit();
                if let (true, Some(not_after)) = (expired, not_after) {
                    let warning = expiry_warning(&self.name, &self.cert, not_after);
                    log.event("warning").kv("warning", warning).emit();
                }
            }
            Outcome::Failed(e) => log
                .event("tls_reload")
                .kv("status", "failed")
                .kv("name", &self.name)
                .kv("cert", self.cert.display())
                .kv("error", e)
                .kv("action", "kept the certificate in use")
                .emit(),
        }
    }
}

/// The control socket's line: `tls unchanged`, `tls ok not_after=…`
/// (and ` expired`), `tls failed: …`.
impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Unchanged => write!(f, "{} unchanged", self.name),
            Outcome::Replaced { not_after, expired } => {
                write!(f, "{} ok", self.name)?;
                if let Some(t) = not_after {
                    write!(f, " not_after={t}")?;
                }
                if *expired {
                    f.write_str(" expired")?;
                }
                Ok(())
            }
            Outcome::Failed(e) => write!(f, "{} failed: {e}", self.name),
        }
    }
}

/// What is logged (and `config check` prints) about an expired
/// certificate.
fn expiry_warning(name: &str, cert: &Path, not_after: &str) -> String {
    format!(
        "{name}.cert: {}: expired on {not_after}; served all the same",
        cert.display()
    )
}

/// Reads a pair: the certificate chain (PEM, end entity first), and the
/// private key, which must be the certificate's.
fn load_pair(pair: &Pair, provider: &CryptoProvider) -> Result<Served, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        name: pair.name.clone(),
        path: pair.cert.display().to_string(),
        message,
    };
    let key_err = |message: String| TlsError::Key {
        name: pair.name.clone(),
        path: pair.key.display().to_string(),
        message,
    };
    let cert_pem = std::fs::read(&pair.cert).map_err(|e| cert_err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate in the file".into()));
    }
    let key_pem = std::fs::read(&pair.key).map_err(|e| key_err(e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => key_err("no PEM private key in the file".into()),
        e => key_err(e.to_string()),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| key_err(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                name: pair.name.clone(),
                key: pair.key.display().to_string(),
                cert: pair.cert.display().to_string(),
            })
        }
        Err(e @ rustls::Error::InconsistentKeys(_)) => return Err(key_err(e.to_string())),
        Err(e) => return Err(cert_err(e.to_string())),
    }
    let not_after = certified.cert.first().and_then(|c| not_after(c));
    Ok(Served {
        key: Arc::new(certified),
        not_after,
    })
}

/// What a file is, as far as a change goes: the file its path leads to
/// (through any symlinks), its device and inode, size and modification
/// time. `None` when it cannot be looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    target: PathBuf,
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
}

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&target).ok()?;
    Some(FileId {
        target,
        device: meta.dev(),
        inode: meta.ino(),
        size: meta.size(),
        modified: (meta.mtime(), meta.mtime_nsec()),
    })
}

/// The certificate file's and the key file's identity.
type PairId = [Option<FileId>; 2];

fn pair_id(pair: &Pair) -> PairId {
    [file_id(&pair.cert), file_id(&pair.key)]
}

/// Now, as [`not_after`] writes times.
fn now_utc() -> String {
    let mut now = crate::time::iso8601(crate::time::now());
    now.truncate(19);
    now.push('Z');
    now
}

/// The notAfter of a DER certificate, `2026-11-29T15:01:55Z` (so that
/// times compare as text).
fn not_after(cert: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
    // OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE {
    // notBefore, notAfter }, … }, … }
    let (0x30, cert, _) = der_element(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der_element(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = der_element(tbs)?;
    if tag == 0xa0 {
        rest = der_element(rest)?.2; // the serial number
    }
    rest = der_element(rest)?.2; // the signature algorithm
    rest = der_element(rest)?.2; // the issuer
    let (0x30, validity, _) = der_element(rest)? else {
        return None;
    };
    let after_not_before = der_element(validity)?.2;
    let (tag, time, _) = der_element(after_not_before)?;
    let time = std::str::from_utf8(time).ok()?;
    let digits = time.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (tag, digits.len()) {
        // UTCTime: YYMMDDHHMMSS, years 1950 to 2049.
        (0x17, 12) if digits < "50" => format!("20{digits}"),
        (0x17, 12) => format!("19{digits}"),
        // GeneralizedTime: YYYYMMDDHHMMSS.
        (0x18, 14) => digits.to_string(),
        _ => return None,
    };
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

/// One DER element at the start of `input`: its tag, its contents and
/// what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`, with common name `cn`, valid
    /// until `until` (year, month, day); its PEM files in `dir`.
    fn make(dir: &Path, stem: &str, cn: &str, until: (i32, u8, u8)) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec![format!("{cn}.test")]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn tls(cert: &Path, key: &Path) -> config::Tls {
        config::Tls {
            cert: Some(cert.to_path_buf()),
            key: Some(key.to_path_buf()),
            certificate: Vec::new(),
            check_interval: config::duration::HumanDuration(Duration::from_secs(60)),
        }
    }

    fn pair(names: &[&str]) -> Pair {
        Pair {
            name: "tls".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
        }
    }

    #[test]
    fn names_exact_then_wildcard_then_the_default() {
        let pairs = [
            pair(&[]),
            pair(&["*.example.org", "b.test"]),
            pair(&["mx.example.org", "a.test"]),
        ];
        assert_eq!(choose(&pairs, "a.test"), 2);
        assert_eq!(choose(&pairs, "A.Test."), 2, "case and a final dot");
        assert_eq!(choose(&pairs, "b.test"), 1);
        assert_eq!(
            choose(&pairs, "mx.example.org"),
            2,
            "an exact name wins over a wildcard listed before it"
        );
        assert_eq!(choose(&pairs, "mx2.EXAMPLE.org"), 1);
        assert_eq!(
            choose(&pairs, "example.org"),
            0,
            "the wildcard needs a label"
        );
        assert_eq!(choose(&pairs, "a.b.example.org"), 0, "and only one");
        assert_eq!(choose(&pairs, "c.test"), 0);
        assert!(!wildcard_covers("*.example.org", ".example.org"));
        assert!(!wildcard_covers("a.example.org", "a.example.org"));
    }

    #[test]
    fn not_after_is_read_from_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        for (until, want) in [
            ((2049, 12, 31), "2049-12-31T00:00:00Z"),
            ((2050, 1, 2), "2050-01-02T00:00:00Z"),
            ((1999, 6, 30), "1999-06-30T00:00:00Z"),
        ] {
            let (cert, _) = make(dir.path(), "c", "a", until);
            let der = CertificateDer::from_pem_file(&cert).unwrap();
            assert_eq!(not_after(&der).as_deref(), Some(want));
        }
        assert_eq!(not_after(b"\x30\x03\x02\x01"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = make(dir.path(), "a", "a", (2100, 1, 1));
        let (_, other_key) = make(dir.path(), "b", "b", (2100, 1, 1));
        let err = ServerTls::load(&tls(&cert, &other_key)).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "tls.key: {} does not match tls.cert {}",
                other_key.display(),
                cert.display()
            )
        );
        let mut config = tls(&cert, &cert);
        config.cert = None;
        config.key = None;
        config.certificate.push(config::TlsCertificate {
            names: vec!["a.test".parse().unwrap()],
            cert: cert.clone(),
            key: other_key.clone(),
        });
        let err = ServerTls::load(&config).err().unwrap().to_string();
        assert!(err.starts_with("tls.certificate[0].key: "), "{err}");
        let err = ServerTls::load(&tls(&cert, &cert))
            .err()
            .unwrap()
            .to_string();
        assert!(err.ends_with(": no PEM private key in the file"), "{err}");
        assert!(err.starts_with("tls.key: "), "{err}");
    }

    #[test]
    fn an_expired_certificate_is_served_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make(dir.path(), "old", "old", (2001, 2, 3));
        let tls = ServerTls::load(&tls(&cert, &key)).unwrap();
        assert_eq!(
            tls.warnings(),
            [format!(
                "tls.cert: {}: expired on 2001-02-03T00:00:00Z; served all the same",
                cert.display()
            )]
        );
    }

    /// certbot's layout: `live/NAME/*.pem` symlinks into `archive/NAME/`,
    /// re-pointed to new files `cert{n}`; with `stray_key`, the key is
    /// another certificate's.
    fn certbot_swap(dir: &Path, n: u32, stray_key: bool) {
        let archive = dir.join("archive");
        let live = dir.join("live");
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        make(
            &archive,
            &format!("cert{n}"),
            &format!("cn{n}"),
            (2100, 1, 1),
        );
        if stray_key {
            let (_, key) = make(&archive, "stray", "stray", (2100, 1, 1));
            std::fs::rename(key, archive.join(format!("cert{n}.key"))).unwrap();
        }
        for (link, file) in [("fullchain.pem", "crt"), ("privkey.pem", "key")] {
            let tmp = live.join(format!("{link}.new"));
            std::os::unix::fs::symlink(format!("../archive/cert{n}.{file}"), &tmp).unwrap();
            std::fs::rename(&tmp, live.join(link)).unwrap();
        }
    }

    fn served_cn(certificates: &Certificates) -> String {
        let in_use = certificates.in_use();
        let der = in_use[0].key.cert[0].to_vec();
        // rcgen writes the common name as a UTF8String after its OID.
        ["cn1", "cn2", "cn3", "cn4"]
            .into_iter()
            .find(|cn| der.windows(3).any(|w| w == cn.as_bytes()))
            .unwrap_or("?")
            .to_string()
    }

    #[test]
    fn a_changed_file_is_seen_through_its_symlink_and_read_once() {
        let dir = tempfile::tempdir().unwrap();
        certbot_swap(dir.path(), 1, false);
        let live = dir.path().join("live");
        let tls =
            ServerTls::load(&tls(&live.join("fullchain.pem"), &live.join("privkey.pem"))).unwrap();
        let certificates = &tls.certificates;
        assert!(matches!(
            certificates.check()[0].outcome,
            Outcome::Unchanged
        ));
        certbot_swap(dir.path(), 2, false);
        let results = certificates.check();
        assert!(
            matches!(&results[0].outcome, Outcome::Replaced { not_after: Some(t), expired: false } if t == "2100-01-01T00:00:00Z"),
            "{results:?}"
        );
        assert_eq!(served_cn(certificates), "cn2");
        assert!(matches!(
            certificates.check()[0].outcome,
            Outcome::Unchanged
        ));
        // A new version whose key is another certificate's: the one in use
        // stays, the failure is said once, and the files are read again
        // when they change again.
        certbot_swap(dir.path(), 3, true);
        let results = certificates.check();
        assert!(
            matches!(
                &results[0].outcome,
                Outcome::Failed(TlsError::Mismatch { .. })
            ),
            "{results:?}"
        );
        assert_eq!(served_cn(certificates), "cn2");
        assert!(matches!(
            certificates.check()[0].outcome,
            Outcome::Unchanged
        ));
        certbot_swap(dir.path(), 4, false);
        assert!(matches!(
            certificates.check()[0].outcome,
            Outcome::Replaced { .. }
        ));
        assert_eq!(served_cn(certificates), "cn4");
        // reload reads the files even when they look the same.
        assert!(matches!(
            certificates.reload()[0].outcome,
            Outcome::Unchanged
        ));
    }

    #[test]
    fn the_same_path_rewritten_in_place_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make(dir.path(), "c", "cn1", (2100, 1, 1));
        let tls = ServerTls::load(&tls(&cert, &key)).unwrap();
        let before = file_id(&cert).unwrap();
        make(dir.path(), "c", "cn2", (2100, 1, 1));
        // File times are coarse: set one that differs for certain.
        let earlier = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        for file in [&cert, &key] {
            let f = std::fs::File::options().write(true).open(file).unwrap();
            f.set_modified(earlier).unwrap();
        }
        let after = file_id(&cert).unwrap();
        assert_eq!(after.inode, before.inode, "rewritten in place");
        assert_ne!(after, before);
        assert!(matches!(
            tls.certificates.check()[0].outcome,
            Outcome::Replaced { .. }
        ));
        assert_eq!(served_cn(&tls.certificates), "cn2");
    }
}
