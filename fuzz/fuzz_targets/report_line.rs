//! Any bytes as a line of an mxguard log for `mxguard report`: its fields
//! or `None`, never a panic; what is read is an event with a time.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::report::parse_line;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Some(fields) = parse_line(&line) {
        assert!(fields.time.is_some());
        assert!(!fields.event.is_empty());
        assert!(fields
            .event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
});
