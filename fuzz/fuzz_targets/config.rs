//! Any text as a configuration file: loaded or refused with an error that
//! names a key, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::config::Config;

fuzz_target!(|text: &str| {
    let _ = Config::from_toml(text, "fuzz.toml", std::path::Path::new("/"));
});
