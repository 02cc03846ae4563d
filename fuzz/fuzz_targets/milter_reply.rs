//! Any bytes from a milter, fed to the decoder whole, one octet at a time
//! and in chunks of a size taken from the input: never a panic, the same
//! responses and the same error however the bytes arrive, and every reply
//! code a 4xx or 5xx with its text starting with it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::milter::codec::{decode_in_chunks as decode, Response};

fuzz_target!(|bytes: &[u8]| {
    let whole = decode(bytes, bytes.len());
    let chunk = bytes.first().map_or(1, |&b| usize::from(b % 29) + 1);
    assert_eq!(whole, decode(bytes, 1));
    assert_eq!(whole, decode(bytes, chunk));
    for r in &whole.0 {
        if let Response::ReplyCode { code, text } = r {
            assert!((400..600).contains(code));
            assert!(text.starts_with(&code.to_string()));
        }
    }
});
