//! `mxguard report`: the daily summary pflogsumm gives Postfix admins,
//! read from mxguard's own log (stub: being written).

use std::path::PathBuf;

/// What to report on, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Log files (plain or gzip); none: standard input.
    pub logs: Vec<PathBuf>,
    /// Only lines at or after this time (ISO 8601 date or date-time, UTC).
    pub since: Option<String>,
    /// Only lines before this time.
    pub until: Option<String>,
    pub format: Format,
    /// Write here instead of standard output.
    pub output: Option<PathBuf>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Html,
}

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("not written yet")]
    Unimplemented,
}

/// Reads the logs and writes the report.
pub fn run(_options: &Options) -> Result<(), ReportError> {
    Err(ReportError::Unimplemented)
}
