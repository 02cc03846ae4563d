//! `mxguard import postfix|sendmail|qmail FILE…`: translates the seeds'
//! configurations into mxguard TOML on standard output.
//!
//! Each translator ([`postfix`], [`sendmail`], [`qmail`]) fills a
//! [`plan::Plan`] — settings with their origin, DNS lists, list files,
//! and what was covered, left out ([`dead`] lists) or not translated —
//! and [`render`] writes it. The output has no `[server]`, `[downstream]`,
//! `[spool]`, `[log]` or `[dns]`: those belong to the host, not to the
//! policy being imported.
//!
//! mxguard's lists are files. A source file mxguard reads as it is (a
//! qmail `badmailfrom` of addresses and `@domain`s) is named by its
//! absolute path; lists that need converting (qregex patterns wrapped in
//! `/…/`, Postfix access tables) are new files named relative to the
//! configuration, whose lines the output carries in `#|NAME| ` comment
//! lines with the `sed` command that writes them. Nothing but standard
//! output is written, and the same input gives the same bytes.

mod access;
mod codes;
mod dead;
mod entries;
mod m4;
mod maincf;
mod plan;
mod postfix;
mod qmail;
mod render;
mod reply;
mod restrictions;
mod sendmail;

use std::path::{Path, PathBuf};

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
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    UnknownFile { file: String, message: String },
}

/// One file to translate.
#[derive(Debug, Clone)]
pub struct Input {
    /// The name as given on the command line, for comments and errors.
    pub name: String,
    /// Where it is (absolute when it could be found), for references to
    /// it and to the files it names.
    pub path: PathBuf,
    pub text: String,
}

/// Reads a file a source refers to (a Postfix access table, a sendmail
/// class file): the disk for [`translate`], nothing for [`translate_text`].
pub type Reader<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// The mxguard TOML for `files`, with comments for what has no
/// translation.
pub fn translate(source: Source, files: &[PathBuf]) -> Result<String, ImportError> {
    let inputs = files
        .iter()
        .map(|f| read_input(f))
        .collect::<Result<Vec<_>, _>>()?;
    translate_inputs(source, &inputs, &|path: &Path| {
        std::fs::read_to_string(path)
    })
}

/// The translation of inputs already read; files they name are read
/// with `read`.
pub fn translate_inputs(
    source: Source,
    inputs: &[Input],
    read: Reader,
) -> Result<String, ImportError> {
    let mut plan = plan::Plan::default();
    match source {
        Source::Postfix => postfix::translate(inputs, read, &mut plan)?,
        Source::Sendmail => sendmail::translate(inputs, read, &mut plan)?,
        Source::Qmail => qmail::translate(inputs, &mut plan)?,
    }
    let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    Ok(render::render(source, &names, &plan))
}

/// One file's text, translated without reading anything else (for the
/// fuzzer and tests): the files it names cannot be read.
pub fn translate_text(source: Source, name: &str, text: &str) -> Result<String, ImportError> {
    let input = Input {
        name: name.to_string(),
        path: PathBuf::from(name),
        text: text.to_string(),
    };
    translate_inputs(source, &[input], &|_: &Path| {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not read by translate_text",
        ))
    })
}

fn read_input(file: &Path) -> Result<Input, ImportError> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read {
        file: name.clone(),
        source,
    })?;
    let text = utf8(&name, bytes)?;
    let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    Ok(Input { name, path, text })
}

/// The text of a file, or an error naming the line that is not UTF-8.
pub(crate) fn utf8(name: &str, bytes: Vec<u8>) -> Result<String, ImportError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ImportError::Syntax {
            file: name.to_string(),
            line: good.iter().filter(|&&b| b == b'\n').count() + 1,
            message: "not UTF-8 text".into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_cannot_be_read_are_named() {
        let err =
            translate(Source::Qmail, &[PathBuf::from("/nonexistent/badmailfrom")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/badmailfrom: cannot read:"),
            "{err}"
        );
        let err = utf8("main.cf", b"a = b\nc = \xff\n".to_vec()).unwrap_err();
        assert_eq!(err.to_string(), "main.cf:2: not UTF-8 text");
    }

    #[test]
    fn same_input_same_bytes() {
        let text = "myhostname = mx.example.test\nmydestination = example.test\n\
                    smtpd_recipient_restrictions = reject_rbl_client bl.test\n";
        let a = translate_text(Source::Postfix, "main.cf", text).unwrap();
        let b = translate_text(Source::Postfix, "main.cf", text).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(
            "# mxguard configuration translated from Postfix by\n#   mxguard import postfix main.cf\n"
        ));
    }
}
