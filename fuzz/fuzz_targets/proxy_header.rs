//! Any bytes as a PROXY protocol header (v1 or v2): a client, a health
//! check or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::listeners::proxy::decode;

fuzz_target!(|header: &[u8]| {
    let _ = decode(header);
});
