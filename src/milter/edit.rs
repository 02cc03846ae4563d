//! A message's header as a milter sees it and changes it, pure: the fields
//! sent to a milter ([`fields`]) and the header edits it asks for applied
//! to the header block ([`apply`]). Header octets need not be UTF-8: values
//! are kept as octets (names, ASCII by RFC 5322, are read lossily).

use super::codec::Modification;

/// One field of a header block: its name and its lines as given.
struct Field {
    name: Vec<u8>,
    /// Every line of the field, with its line ending.
    raw: Vec<u8>,
}

/// A header block cut into fields, and what follows them (the empty line,
/// if the block has it, and anything after it) kept verbatim.
struct Block {
    fields: Vec<Field>,
    tail: Vec<u8>,
}

fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block.split_inclusive(|&b| b == b'\n')
}

fn is_continuation(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ') | Some(b'\t'))
}

fn is_empty_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// The name of a field whose first line is `line`: what comes before the
/// colon, without trailing blanks (obsolete syntax allows them); a line
/// without a colon is all name.
fn name_of(line: &[u8]) -> Vec<u8> {
    let end = line.iter().position(|&b| b == b':').unwrap_or(line.len());
    let mut name = &line[..end];
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = name {
        name = rest;
    }
    name.to_vec()
}

fn parse(block: &[u8]) -> Block {
    let mut fields: Vec<Field> = Vec::new();
    let mut used = 0;
    for line in lines(block) {
        if is_empty_line(line) {
            break;
        }
        match fields.last_mut() {
            Some(field) if is_continuation(line) => field.raw.extend_from_slice(line),
            _ => fields.push(Field {
                name: name_of(line),
                raw: line.to_vec(),
            }),
        }
        used += line.len();
    }
    Block {
        fields,
        tail: block[used..].to_vec(),
    }
}

/// The header fields of `header_block` as a milter is sent them: the name,
/// and the value after the colon with folded lines joined by `"\n"` (the
/// CR of each CRLF dropped, the continuation's leading blanks kept), the
/// final line ending dropped, and one leading space removed unless the
/// milter negotiated `SMFIP_HDR_LEADSPC` (`leading_space`).
pub fn fields(header_block: &[u8], leading_space: bool) -> Vec<(String, Vec<u8>)> {
    parse(header_block)
        .fields
        .into_iter()
        .map(|field| {
            let colon = field.raw.iter().position(|&b| b == b':');
            let after = colon.map_or(&[][..], |c| &field.raw[c + 1..]);
            let mut value = Vec::with_capacity(after.len());
            for line in lines(after) {
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                value.extend_from_slice(line);
                value.push(b'\n');
            }
            value.pop();
            if !leading_space && value.first() == Some(&b' ') {
                value.remove(0);
            }
            (String::from_utf8_lossy(&field.name).into_owned(), value)
        })
        .collect()
}

/// A field written out: `name: value` (no space added when the value
/// starts with a blank, as a milter with `SMFIP_HDR_LEADSPC` sends it),
/// each `"\n"` of the value a CRLF (a CR alone a space), a continuation
/// line that does not start with a blank given a tab (so a milter cannot
/// end the field, or the header, early), ending with CRLF.
fn render(name: &str, value: &[u8]) -> Field {
    let mut raw = name.as_bytes().to_vec();
    raw.push(b':');
    if !matches!(value.first(), Some(b' ' | b'\t')) {
        raw.push(b' ');
    }
    for (i, line) in value.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if i > 0 {
            raw.extend_from_slice(b"\r\n");
            if !is_continuation(line) {
                raw.push(b'\t');
            }
        }
        raw.extend(line.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
    }
    raw.extend_from_slice(b"\r\n");
    Field {
        name: name.as_bytes().to_vec(),
        raw,
    }
}

/// `header_block` (CRLF line endings, with or without the empty line that
/// ends it, kept as given) with the header edits among `edits` applied in
/// order; other modifications are ignored.
///
/// - `AddHeader`: appended after the last field.
/// - `InsertHeader`: before the `index`-th field (0: first; past the end:
///   appended).
/// - `ChangeHeader`: the `index`-th (1-based; 0 counts as 1) field of that
///   name, case-insensitively, replaced; an empty value deletes it; with
///   no such field, a non-empty value is appended (as sendmail does).
pub fn apply(header_block: &[u8], edits: &[Modification]) -> Vec<u8> {
    let mut block = parse(header_block);
    if let Some(last) = block.fields.last_mut() {
        if !last.raw.ends_with(b"\n") {
            last.raw.extend_from_slice(b"\r\n");
        }
    }
    for edit in edits {
        match edit {
            Modification::AddHeader { name, value } => block.fields.push(render(name, value)),
            Modification::InsertHeader { index, name, value } => {
                let at = (*index as usize).min(block.fields.len());
                block.fields.insert(at, render(name, value));
            }
            Modification::ChangeHeader { index, name, value } => {
                let nth = (*index).max(1) as usize;
                let found = block
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.name.eq_ignore_ascii_case(name.as_bytes()))
                    .nth(nth - 1)
                    .map(|(i, _)| i);
                match found {
                    Some(i) if value.is_empty() => {
                        block.fields.remove(i);
                    }
                    Some(i) => block.fields[i] = render(name, value),
                    None if value.is_empty() => {}
                    None => block.fields.push(render(name, value)),
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(header_block.len());
    for field in &block.fields {
        out.extend_from_slice(&field.raw);
    }
    out.extend_from_slice(&block.tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &[u8] =
        b"Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n\r\n";

    fn add(name: &str, value: &str) -> Modification {
        Modification::AddHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    fn insert(index: u32, name: &str, value: &str) -> Modification {
        Modification::InsertHeader {
            index,
            name: name.into(),
            value: value.into(),
        }
    }

    fn change(index: u32, name: &str, value: &str) -> Modification {
        Modification::ChangeHeader {
            index,
            name: name.into(),
            value: value.into(),
        }
    }

    fn edited(block: &[u8], edits: &[Modification]) -> String {
        String::from_utf8(apply(block, edits)).unwrap()
    }

    #[test]
    fn fields_join_folded_lines_with_newlines_and_drop_one_leading_space() {
        let got = fields(BLOCK, false);
        let want: Vec<(String, Vec<u8>)> = vec![
            ("Received".into(), b"from a\n\tby b".to_vec()),
            ("Subject".into(), b"hello".to_vec()),
            ("X-Tag".into(), b"one".to_vec()),
            ("x-tag".into(), b"two".to_vec()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn fields_keep_the_leading_space_when_the_milter_asks_for_it() {
        let got = fields(b"Subject:  two spaces\r\nEmpty:\r\n", true);
        assert_eq!(got[0].1, b"  two spaces");
        assert_eq!(got[1].1, b"");
        let got = fields(b"Subject:  two spaces\r\n", false);
        assert_eq!(got[0].1, b" two spaces");
    }

    #[test]
    fn fields_keep_eight_bit_values_as_octets() {
        let got = fields(b"Subject: caf\xe9\r\n", false);
        assert_eq!(got, vec![("Subject".to_string(), b"caf\xe9".to_vec())]);
    }

    #[test]
    fn fields_stop_at_the_empty_line() {
        let got = fields(b"A: 1\r\n\r\nB: 2\r\n", false);
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn no_edits_give_the_block_back_unchanged() {
        assert_eq!(apply(BLOCK, &[]), BLOCK);
        let bare = b"A: 1\r\n B\r\n";
        assert_eq!(apply(bare, &[]), bare);
    }

    #[test]
    fn an_added_header_goes_after_the_last_field_before_the_empty_line() {
        let got = edited(BLOCK, &[add("X-Spam", "yes")]);
        assert!(got.ends_with("x-tag: two\r\nX-Spam: yes\r\n\r\n"), "{got}");
    }

    #[test]
    fn an_added_header_on_a_block_without_the_empty_line_ends_the_block() {
        assert_eq!(edited(b"A: 1\r\n", &[add("B", "2")]), "A: 1\r\nB: 2\r\n");
        assert_eq!(edited(b"A: 1", &[add("B", "2")]), "A: 1\r\nB: 2\r\n");
        assert_eq!(edited(b"", &[add("B", "2")]), "B: 2\r\n");
    }

    #[test]
    fn an_inserted_header_at_index_zero_comes_first() {
        let got = edited(BLOCK, &[insert(0, "X-First", "1")]);
        assert!(
            got.starts_with("X-First: 1\r\nReceived: from a\r\n\tby b\r\n"),
            "{got}"
        );
    }

    #[test]
    fn an_inserted_header_index_counts_fields_not_lines() {
        let got = edited(BLOCK, &[insert(1, "X-Second", "2")]);
        assert!(
            got.starts_with("Received: from a\r\n\tby b\r\nX-Second: 2\r\nSubject"),
            "{got}"
        );
    }

    #[test]
    fn an_inserted_header_past_the_end_is_appended() {
        let got = edited(BLOCK, &[insert(99, "X-Last", "z")]);
        assert!(got.ends_with("x-tag: two\r\nX-Last: z\r\n\r\n"), "{got}");
    }

    #[test]
    fn a_changed_header_is_the_nth_of_its_name_case_insensitively() {
        let got = edited(BLOCK, &[change(2, "X-TAG", "deux")]);
        assert!(got.contains("X-Tag: one\r\nX-TAG: deux\r\n\r\n"), "{got}");
    }

    #[test]
    fn a_changed_header_with_an_empty_value_is_deleted() {
        let got = edited(BLOCK, &[change(1, "Received", "")]);
        assert!(got.starts_with("Subject: hello\r\n"), "{got}");
        assert_eq!(
            edited(BLOCK, &[change(3, "X-Tag", "")]),
            String::from_utf8_lossy(BLOCK)
        );
    }

    #[test]
    fn a_changed_header_that_does_not_exist_is_added() {
        let got = edited(BLOCK, &[change(1, "X-New", "v")]);
        assert!(got.ends_with("X-New: v\r\n\r\n"), "{got}");
    }

    #[test]
    fn index_zero_of_a_change_counts_as_the_first() {
        let got = edited(BLOCK, &[change(0, "Subject", "new")]);
        assert!(got.contains("Subject: new\r\n"), "{got}");
    }

    #[test]
    fn newlines_in_a_value_are_written_as_crlf_folds() {
        let got = edited(b"", &[add("X-Long", "a\n\tb\r\n c")]);
        assert_eq!(got, "X-Long: a\r\n\tb\r\n c\r\n");
    }

    #[test]
    fn a_value_cannot_start_a_new_field_or_end_the_header() {
        let got = edited(b"\r\nbody", &[add("X-Evil", "a\nBcc: x\n\nbody")]);
        assert_eq!(got, "X-Evil: a\r\n\tBcc: x\r\n\t\r\n\tbody\r\n\r\nbody");
    }

    #[test]
    fn a_lone_carriage_return_in_a_value_becomes_a_space() {
        assert_eq!(edited(b"", &[add("X", "a\rb\r\n c")]), "X: a b\r\n c\r\n");
    }

    #[test]
    fn a_value_with_a_leading_space_gets_no_second_one() {
        assert_eq!(edited(b"", &[add("X", " v")]), "X: v\r\n");
    }

    #[test]
    fn edits_apply_in_order() {
        let got = edited(
            BLOCK,
            &[
                add("X-Tag", "three"),
                change(3, "x-tag", ""),
                change(1, "x-tag", "1"),
            ],
        );
        assert!(
            got.ends_with("Subject: hello\r\nx-tag: 1\r\nx-tag: two\r\n\r\n"),
            "{got}"
        );
    }

    #[test]
    fn eight_bit_octets_survive_edits() {
        let block = b"Subject: caf\xe9\r\n\r\n";
        let edits = [
            add("X", "ok"),
            Modification::ChangeHeader {
                index: 1,
                name: "Subject".into(),
                value: b"[SPAM] caf\xe9".to_vec(),
            },
        ];
        assert_eq!(
            apply(block, &edits),
            b"Subject: [SPAM] caf\xe9\r\nX: ok\r\n\r\n"
        );
    }
}
