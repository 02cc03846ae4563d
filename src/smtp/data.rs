//! The DATA decoder (sans-IO): finds the end of the message, which is only
//! ever `<CRLF>.<CRLF>`, undoes dot-stuffing, enforces the size limit, and
//! refuses or normalises bare CR and LF so nothing can be smuggled past a
//! downstream that reads line ends differently (SMTP smuggling). And the
//! encoder the relay sends with ([`stuff`], [`end_of_data`]).

use serde::Deserialize;

/// What to do with a bare CR or LF inside DATA (`server.bare_line_endings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Read to the real end of data, then refuse the message (550 5.5.2).
    Reject,
    /// Turn every bare CR or LF into CRLF, as Postfix can.
    Normalize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After a real CRLF (or right after the DATA command).
    LineStart,
    /// Saw `.` at a line start.
    Dot,
    /// Saw `.` CR at a line start.
    DotCr,
    /// Inside a line.
    Mid,
    /// Saw CR inside a line.
    Cr,
}

/// What the client sent, once the end of data is reached.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The message, CRLF line ends, dot-stuffing removed.
    Message(Vec<u8>),
    /// Larger than the limit; the content was discarded.
    TooBig,
    /// A bare CR or LF was seen and the configuration refuses them.
    BareLineEnding,
}

/// Streams DATA bytes in, one [`DataDecoder::feed`] call per read.
pub struct DataDecoder {
    state: State,
    mode: BareLineEndings,
    max_size: u64,
    size: u64,
    bare: bool,
    out: Vec<u8>,
}

impl DataDecoder {
    pub fn new(max_size: u64, mode: BareLineEndings) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            mode,
            max_size,
            size: 0,
            bare: false,
            out: Vec::with_capacity(16 * 1024),
        }
    }

    /// Consumes bytes up to and including the end-of-data marker. Returns
    /// how many bytes were consumed and whether the end was reached; bytes
    /// after the marker (pipelined commands) are left to the caller.
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                self.emit(&input[i..i + run]);
                i += run;
                if i == input.len() {
                    break;
                }
            }
            let b = input[i];
            i += 1;
            if self.step(b) {
                return (i, true);
            }
        }
        (i, false)
    }

    /// Handles one byte; true at the end of data.
    fn step(&mut self, b: u8) -> bool {
        match self.state {
            State::LineStart if b == b'.' => self.state = State::Dot,
            State::LineStart | State::Mid => self.in_line(b),
            State::Dot if b == b'\r' => self.state = State::DotCr,
            // Dot-stuffing: the leading dot is dropped.
            State::Dot => self.in_line(b),
            State::DotCr if b == b'\n' => return true,
            State::DotCr => {
                self.state = State::Cr;
                return self.step(b);
            }
            State::Cr if b == b'\n' => {
                self.emit(b"\r\n");
                self.state = State::LineStart;
            }
            State::Cr => {
                self.bare_line_end();
                self.state = State::Mid;
                return self.step(b);
            }
        }
        false
    }

    fn in_line(&mut self, b: u8) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                self.bare_line_end();
                self.state = State::Mid;
            }
            _ => {
                self.emit(&[b]);
                self.state = State::Mid;
            }
        }
    }

    /// A CR or LF that is not part of a CRLF pair. In normalize mode it
    /// becomes CRLF, but the decoder stays mid-line: a `.` after it can
    /// never end the data, because the client did not send `<CRLF>.`.
    fn bare_line_end(&mut self) {
        self.bare = true;
        if self.mode == BareLineEndings::Normalize {
            self.emit(b"\r\n");
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.size <= self.max_size {
            self.out.extend_from_slice(bytes);
        } else if !self.out.is_empty() {
            self.out = Vec::new();
        }
    }

    /// Bytes of message content seen so far (after unstuffing).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Decoded bytes held, not yet taken.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Takes the decoded bytes held so far (to write them out), or nothing
    /// once the message is known to be refused.
    pub fn take(&mut self) -> Vec<u8> {
        let refused =
            self.size > self.max_size || (self.bare && self.mode == BareLineEndings::Reject);
        let out = std::mem::take(&mut self.out);
        if refused {
            Vec::new()
        } else {
            out
        }
    }

    /// The verdict on the whole message; call once the end was reached.
    pub fn finish(self) -> DataOutcome {
        if self.size > self.max_size {
            DataOutcome::TooBig
        } else if self.bare && self.mode == BareLineEndings::Reject {
            DataOutcome::BareLineEnding
        } else {
            DataOutcome::Message(self.out)
        }
    }
}

/// The encoder, for the relay: appends `chunk` of a message with a dot
/// doubled at every line start (`line_start` carried from one chunk to the
/// next, true at the start of the message), a line at a time (a byte at a
/// time was 4 % of an accepted message's CPU).
pub fn stuff(chunk: &[u8], line_start: &mut bool, out: &mut Vec<u8>) {
    for line in crate::lines::of(chunk) {
        if *line_start && line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        *line_start = line.last() == Some(&b'\n');
    }
}

/// What ends the data: the final dot, after a CRLF if the message (of
/// `len` octets, ending with `tail`) lacks one.
pub fn end_of_data(len: u64, tail: [u8; 2]) -> &'static [u8] {
    if len == 0 || tail == *b"\r\n" {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], mode: BareLineEndings) -> (DataOutcome, usize) {
        let mut d = DataDecoder::new(1000, mode);
        let (used, done) = d.feed(input);
        assert!(done, "no end of data in {input:?}");
        (d.finish(), used)
    }

    fn message(input: &[u8]) -> Vec<u8> {
        match decode(input, BareLineEndings::Reject).0 {
            DataOutcome::Message(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        assert_eq!(message(b"a\r\nb\r\n.\r\nMAIL"), b"a\r\nb\r\n");
        assert_eq!(decode(b"a\r\n.\r\nMAIL", BareLineEndings::Reject).1, 6);
        assert_eq!(message(b".\r\n"), b"");
        let mut d = DataDecoder::new(1000, BareLineEndings::Reject);
        assert_eq!(d.feed(b"a\n.\nMAIL FROM:<x@y.z>\r\n"), (23, false));
        assert_eq!(d.feed(b"a\r.\rb\n.\r\nx"), (10, false));
    }

    #[test]
    fn dot_stuffing_is_undone() {
        assert_eq!(message(b"..leading\r\n...\r\n.\r\n"), b".leading\r\n..\r\n");
    }

    #[test]
    fn bare_line_ends_are_refused() {
        for input in [
            &b"a\n.\nb\r\n.\r\n"[..],
            b"a\r.\rb\r\n.\r\n",
            b"a\n.\r\nb\r\n.\r\n",
            b"x\ry\r\n.\r\n",
            b".\rx\r\n.\r\n",
        ] {
            assert_eq!(
                decode(input, BareLineEndings::Reject).0,
                DataOutcome::BareLineEnding
            );
        }
    }

    #[test]
    fn normalize_never_creates_an_end() {
        let (out, used) = decode(b"a\n.\nb\r\n.\r\n", BareLineEndings::Normalize);
        assert_eq!(used, 10);
        assert_eq!(out, DataOutcome::Message(b"a\r\n.\r\nb\r\n".to_vec()));
        let (out, _) = decode(b"a\n.\r\nb\r\n.\r\n", BareLineEndings::Normalize);
        assert_eq!(out, DataOutcome::Message(b"a\r\n.\r\nb\r\n".to_vec()));
        let (out, _) = decode(b"x\r\ry\r\n.\r\n", BareLineEndings::Normalize);
        assert_eq!(out, DataOutcome::Message(b"x\r\n\r\ny\r\n".to_vec()));
    }

    #[test]
    fn size_limit_keeps_reading_to_the_end() {
        let mut d = DataDecoder::new(10, BareLineEndings::Reject);
        let (_, done) = d.feed(b"0123456789abcdef\r\n");
        assert!(!done);
        let (_, done) = d.feed(b".\r\n");
        assert!(done);
        assert_eq!(d.finish(), DataOutcome::TooBig);
    }

    #[test]
    fn split_anywhere_gives_the_same_result() {
        let input = b"Subject: x\r\n..dot\r\na\nb\r\n.\r\n";
        let whole = decode(input, BareLineEndings::Normalize).0;
        for split in 0..input.len() {
            let mut d = DataDecoder::new(1000, BareLineEndings::Normalize);
            let (a, done) = d.feed(&input[..split]);
            assert!(!done && a == split);
            let (_, done) = d.feed(&input[split..]);
            assert!(done);
            assert_eq!(d.finish(), whole, "split at {split}");
        }
    }

    fn dot_stuff(message: &[u8], chunk: usize) -> Vec<u8> {
        let (mut out, mut line_start) = (Vec::new(), true);
        for part in message.chunks(chunk.max(1)) {
            stuff(part, &mut line_start, &mut out);
        }
        let tail = match message {
            [.., a, b] => [*a, *b],
            [b] => [0, *b],
            [] => [0, 0],
        };
        out.extend_from_slice(end_of_data(message.len() as u64, tail));
        out
    }

    #[test]
    fn dot_stuffing_across_chunks() {
        for chunk in [1, 2, 3, 100] {
            assert_eq!(
                dot_stuff(b"a\r\n.b\r\n.\r\n", chunk),
                b"a\r\n..b\r\n..\r\n.\r\n"
            );
            assert_eq!(dot_stuff(b".x", chunk), b"..x\r\n.\r\n");
        }
        assert_eq!(dot_stuff(b"", 1), b".\r\n");
    }

    proptest::proptest! {
        #[test]
        fn dot_stuffing_doubles_exactly_the_dots_that_start_a_line(
            message in proptest::collection::vec(
                proptest::sample::select(vec![b'.', b'\r', b'\n', b'a']),
                0..64,
            ),
            chunk in 1usize..9,
        ) {
            let mut expected = Vec::new();
            let mut line_start = true;
            for &b in &message {
                if line_start && b == b'.' {
                    expected.push(b'.');
                }
                expected.push(b);
                line_start = b == b'\n';
            }
            let stuffed = dot_stuff(&message, chunk);
            proptest::prop_assert_eq!(&stuffed[..expected.len()], &expected[..]);
        }
    }

    proptest::proptest! {
        #[test]
        fn what_the_encoder_stuffs_the_decoder_gives_back(
            lines in proptest::collection::vec(
                proptest::sample::select(vec!["", ".", "..", "a", ".a", "a.", "a\tb"]),
                0..12,
            ),
            chunk in 1usize..9,
        ) {
            let message: Vec<u8> = lines.iter().flat_map(|l| [l.as_bytes(), b"\r\n"].concat()).collect();
            let mut decoder = DataDecoder::new(1000, BareLineEndings::Reject);
            let stuffed = dot_stuff(&message, chunk);
            proptest::prop_assert_eq!(decoder.feed(&stuffed), (stuffed.len(), true));
            proptest::prop_assert_eq!(decoder.finish(), DataOutcome::Message(message));
        }
    }
}
