//! Any text as a Postfix main.cf, a sendmail .mc, or a qmail control file
//! (under each name the import knows): translated, or refused with an
//! error naming the line, never a panic; and what it writes is always a
//! configuration mxguard loads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::config::Config;
use mxguard::import::{translate_text, Source};

const INPUTS: &[(Source, &str)] = &[
    (Source::Postfix, "main.cf"),
    (Source::Sendmail, "mx.mc"),
    (Source::Qmail, "badmailfrom"),
    (Source::Qmail, "badmailto"),
    (Source::Qmail, "rcpthosts"),
    (Source::Qmail, "badhelo"),
];

fuzz_target!(|text: &str| {
    for (source, name) in INPUTS {
        if let Ok(toml) = translate_text(*source, name, text) {
            if let Err(e) = Config::from_toml(&toml, "import.toml", std::path::Path::new("/")) {
                panic!("{e}\n{toml}");
            }
        }
    }
});
