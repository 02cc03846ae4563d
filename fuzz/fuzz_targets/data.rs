//! Any DATA stream, split at any point: the decoder ends only at CRLF.CRLF
//! and gives the same result however the bytes arrive.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::config::BareLineEndings;
use mxguard::smtp::data::{DataDecoder, DataOutcome};

fn decode(parts: &[&[u8]], mode: BareLineEndings) -> Option<(usize, DataOutcome)> {
    let mut d = DataDecoder::new(1 << 16, mode);
    let mut used = 0;
    for part in parts {
        let (n, done) = d.feed(part);
        used += n;
        if done {
            return Some((used, d.finish()));
        }
    }
    None
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, bytes) = input;
    let split = (split as usize).min(bytes.len());
    for mode in [BareLineEndings::Reject, BareLineEndings::Normalize] {
        let whole = decode(&[bytes], mode);
        let parts = decode(&[&bytes[..split], &bytes[split..]], mode);
        assert_eq!(whole, parts);
        if let Some((used, outcome)) = whole {
            assert!(used >= 3 && bytes[..used].ends_with(b".\r\n"));
            assert!(used == 3 || bytes[..used].ends_with(b"\r\n.\r\n"));
            if let DataOutcome::Message(m) = outcome {
                // What reaches the downstream has only CRLF line ends.
                for (i, &b) in m.iter().enumerate() {
                    if b == b'\n' {
                        assert!(i > 0 && m[i - 1] == b'\r');
                    }
                    if b == b'\r' {
                        assert_eq!(m.get(i + 1), Some(&b'\n'));
                    }
                }
            }
        }
    }
});
