//! Any bytes as a queue file or a state file: parsed or refused, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::spool::{DeliveryState, Envelope};

fuzz_target!(|bytes: &[u8]| {
    if let Ok((envelope, start)) = Envelope::parse(bytes) {
        assert!(start <= bytes.len());
        let _ = DeliveryState::default().pending(&envelope);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = DeliveryState::parse(text).render();
    }
});
