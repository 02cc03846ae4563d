//! Any message content, split at any point, through the intake: the same
//! verdict however the bytes arrive, and for the CRLF-only content the
//! DATA decoder gives, when the message is taken, the same output with no
//! line over 998 octets; no header field left in the header block claims
//! our host name.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mxguard::config::LongLines;
use mxguard::message::auth_results;
use mxguard::message::intake::{Flaw, Intake};

fn run(parts: &[&[u8]], long_lines: LongLines) -> (Vec<u8>, Option<Flaw>, u32) {
    let mut intake = Intake::new("mx.test", 4096, long_lines, true);
    let mut out = Vec::new();
    for part in parts {
        intake.feed(part, &mut out);
    }
    let finished = intake.finish(&mut out);
    (out, finished.flaw, finished.wrapped)
}

/// Only CRLF line ends, as the DATA decoder gives.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

/// Whether a line starts a header field (a printable name, a colon).
fn starts_field(line: &[u8]) -> bool {
    line.iter().position(|&b| b == b':').is_some_and(|colon| {
        let name = line[..colon].trim_ascii_end();
        !name.is_empty() && name.iter().all(u8::is_ascii_graphic)
    })
}

/// The header fields at the start of `out` (each with its continuations),
/// up to the empty line or the first line that is no header.
fn fields(out: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in out.split_inclusive(|&b| b == b'\n') {
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(field)) => field.extend_from_slice(line),
            _ if starts_field(line) => fields.push(line.to_vec()),
            _ => break,
        }
    }
    fields
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, bytes) = input;
    let split = (split as usize).min(bytes.len());
    for mode in [LongLines::Wrap, LongLines::Reject] {
        let whole = run(&[bytes], mode);
        let parts = run(&[&bytes[..split], &bytes[split..]], mode);
        assert_eq!(whole.1, parts.1);
        let (out, flaw, wrapped) = whole;
        if flaw.is_some() {
            continue;
        }
        // What the DATA decoder gives, and so all a taken message can be,
        // has CRLF line ends only: that output does not depend on how the
        // bytes arrive, and holds no line over 998 octets.
        if crlf_only(bytes) {
            assert_eq!((&out, wrapped), (&parts.0, parts.2));
            for line in out.split(|&b| b == b'\n') {
                assert!(line.strip_suffix(b"\r").unwrap_or(line).len() <= 998);
            }
        }
        for field in fields(&out) {
            if let Some(colon) = field.iter().position(|&b| b == b':') {
                assert!(
                    !(auth_results::is_auth_results(&field[..colon])
                        && auth_results::claims(&field[colon + 1..], "mx.test")),
                    "{:?}",
                    String::from_utf8_lossy(&field)
                );
            }
        }
    }
});
