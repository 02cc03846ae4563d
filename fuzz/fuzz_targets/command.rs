//! Any bytes as an SMTP command line: parsed or refused, never a panic;
//! a parsed path prints back as something that parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::smtp::address::parse_path;
use mxguard::smtp::command::{parse, Command};

fuzz_target!(|line: &[u8]| {
    if let Ok(Command::Mail { from: path, .. } | Command::Rcpt { to: path, .. }) = parse(line) {
        let printed = path.to_string();
        let again = parse_path(&printed).expect("a parsed path prints as a valid path");
        assert_eq!(again.mailbox, path.mailbox);
    }
});
