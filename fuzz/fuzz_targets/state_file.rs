//! Any text as the memory state file: loaded without a panic, every value
//! it lists readable, and counters usable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::state::memory::Memory;
use std::time::Duration;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let m = Memory::from_text(None, text, 1000);
    for (key, value) in m.list("", 0) {
        assert_eq!(m.get(&key, 0).as_deref(), Some(value.as_str()));
        let _ = m.hit(&key, u64::MAX, Duration::from_secs(u64::MAX), 3);
    }
    let _ = m.save(0);
});
