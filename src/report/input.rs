//! Where log lines come from: files (plain, or gzip whatever their name, as
//! rotated logs are) or standard input (`-`, or no file given), read line
//! by line through one reused buffer. Bytes that are not UTF-8 are read
//! lossily; a line longer than [`MAX_LINE`] is passed over whole, so memory
//! stays bounded whatever the input.

use super::ReportError;
use flate2::bufread::MultiGzDecoder;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::Path;

/// The longest line read (mxguard's lines are far shorter).
pub const MAX_LINE: usize = 64 * 1024;

const BUFFER: usize = 64 * 1024;

/// One source of log lines.
pub struct Input {
    /// How errors name it: the path, or "standard input".
    name: String,
    reader: Box<dyn BufRead>,
}

impl Input {
    /// The file at `path`, or standard input for `-`.
    pub fn open(path: &Path) -> Result<Input, ReportError> {
        if path.as_os_str() == "-" {
            return Input::new("standard input".into(), std::io::stdin());
        }
        let name = path.display().to_string();
        match std::fs::File::open(path) {
            Ok(file) => Input::new(name, file),
            Err(source) => Err(ReportError::Read { name, source }),
        }
    }

    /// Standard input.
    pub fn stdin() -> Result<Input, ReportError> {
        Input::open(Path::new("-"))
    }

    /// Reads through gzip when the data starts with gzip's magic bytes.
    fn new(name: String, raw: impl Read + 'static) -> Result<Input, ReportError> {
        let mut reader = BufReader::with_capacity(BUFFER, raw);
        let gzip = match reader.fill_buf() {
            Ok(head) => head.starts_with(&[0x1f, 0x8b]),
            Err(source) => return Err(ReportError::Read { name, source }),
        };
        let reader: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::with_capacity(
                BUFFER,
                MultiGzDecoder::new(reader),
            ))
        } else {
            Box::new(reader)
        };
        Ok(Input { name, reader })
    }

    /// Calls `each` with every line, without its line end; `None` for a
    /// line too long to be a log line.
    pub fn for_each_line(mut self, mut each: impl FnMut(Option<&str>)) -> Result<(), ReportError> {
        let mut line = Vec::with_capacity(1024);
        let mut overlong = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ReportError::Read {
                        name: self.name,
                        source,
                    })
                }
            };
            if chunk.is_empty() {
                if !line.is_empty() || overlong {
                    emit(&line, overlong, &mut each);
                }
                return Ok(());
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (take, used) = newline.map_or((chunk.len(), chunk.len()), |i| (i, i + 1));
            let room = MAX_LINE - line.len();
            overlong |= take > room;
            line.extend_from_slice(&chunk[..take.min(room)]);
            self.reader.consume(used);
            if newline.is_some() {
                emit(&line, overlong, &mut each);
                line.clear();
                overlong = false;
            }
        }
    }
}

fn emit(line: &[u8], overlong: bool, each: &mut impl FnMut(Option<&str>)) {
    if overlong {
        return each(None);
    }
    match std::str::from_utf8(line) {
        Ok(text) => each(Some(text)),
        Err(_) => each(Some(&String::from_utf8_lossy(line))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(bytes: &[u8]) -> Vec<Option<String>> {
        let input = Input::new("test".into(), std::io::Cursor::new(bytes.to_vec())).unwrap();
        let mut out = Vec::new();
        input
            .for_each_line(|l| out.push(l.map(str::to_string)))
            .unwrap();
        out
    }

    #[test]
    fn lines_with_and_without_a_last_newline() {
        assert_eq!(
            lines(b"a\nb\r\n\nc"),
            [
                Some("a".into()),
                Some("b\r".into()),
                Some("".into()),
                Some("c".into())
            ]
        );
        assert_eq!(lines(b""), []);
        assert_eq!(lines(b"\xff\xfeok\n"), [Some("\u{fffd}\u{fffd}ok".into())]);
    }

    #[test]
    fn long_lines_are_passed_over_whole() {
        let mut bytes = vec![b'x'; MAX_LINE * 3];
        bytes.extend_from_slice(b"\nnext\n");
        bytes.extend(vec![b'y'; MAX_LINE + 1]);
        assert_eq!(lines(&bytes), [None, Some("next".into()), None]);
        let exact = vec![b'z'; MAX_LINE];
        assert_eq!(lines(&exact)[0].as_ref().map(String::len), Some(MAX_LINE));
    }

    #[test]
    fn gzip_is_recognised_by_content_and_members_are_concatenated() {
        let mut gz = Vec::new();
        for part in [&b"one\ntw"[..], b"o\n"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            gz.extend(enc.finish().unwrap());
        }
        assert_eq!(lines(&gz), [Some("one".into()), Some("two".into())]);
        let mut broken = gz.clone();
        broken.truncate(12);
        let input = Input::new("x.gz".into(), std::io::Cursor::new(broken)).unwrap();
        let err = input.for_each_line(|_| {}).unwrap_err();
        assert!(err.to_string().contains("x.gz"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Input::open(Path::new("/nonexistent/mx.log")).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/mx.log"), "{err}");
    }
}
