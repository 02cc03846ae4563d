//! Any message start: removing our Authentication-Results headers never
//! panics, never grows the message, and leaves the body as it was.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::smtp::headers::strip_our_auth_results;

fuzz_target!(|message: &[u8]| {
    let out = strip_our_auth_results(message, "mx.test");
    assert!(out.len() <= message.len());
    if let Some(i) = message.windows(4).position(|w| w == b"\r\n\r\n") {
        assert!(out.ends_with(&message[i + 2..]));
    }
});
