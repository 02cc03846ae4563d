//! `mxguard import postfix|sendmail|qmail FILE…`: translates the seeds'
//! configurations into mxguard TOML (stub: being written).

use std::path::PathBuf;

/// Which kind of configuration the files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// `main.cf` (smtpd_*_restrictions, reject_rbl_client, …)
    Postfix,
    /// a sendmail `.mc` (FEATURE(dnsbl), FEATURE(enhdnsbl), …)
    Sendmail,
    /// qmail `badmailfrom` / `badmailto` files
    Qmail,
}

/// Why nothing could be translated.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not written yet")]
    Unimplemented,
}

/// The mxguard TOML for `files`, with comments for what has no
/// translation.
pub fn translate(_source: Source, _files: &[PathBuf]) -> Result<String, ImportError> {
    Err(ImportError::Unimplemented)
}
