//! Just enough m4 to read a sendmail `.mc` file: macro calls `NAME(…)`
//! whose arguments are split at top-level commas, `` `quoted' `` text
//! (quotes nest; one level is removed, as m4 does), unquoted leading
//! whitespace of an argument dropped, `dnl` (deletes through the end of
//! the line) and `#` comments (to the end of the line, also inside an
//! argument, where m4 would keep them). Nothing is expanded: the import
//! reads what the file says.

/// One macro call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub name: String,
    pub args: Vec<String>,
    /// Where the name is.
    pub line: usize,
    /// The call as written, on one line.
    pub text: String,
}

/// What a `.mc` file says, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Call(Call),
    /// A line with text outside any call (raw sendmail.cf lines, stray
    /// words).
    Text {
        line: usize,
    },
}

/// Input m4 would not read either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct M4Error {
    pub line: usize,
    pub message: String,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skips to the end of the line; with `newline`, past it too.
    fn skip_line(&mut self, newline: bool) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                if newline {
                    self.bump();
                }
                return;
            }
            self.bump();
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            name.push(c);
            self.bump();
        }
        name
    }

    /// The text inside a quote whose opening `` ` `` was just read.
    fn quoted(&mut self) -> Result<String, M4Error> {
        let opened = self.line;
        let mut depth = 1;
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(M4Error {
                        line: opened,
                        message: "the quote opened here (`) is never closed (')".into(),
                    })
                }
                Some('`') => {
                    depth += 1;
                    text.push('`');
                }
                Some('\'') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(text);
                    }
                    text.push('\'');
                }
                Some(c) => text.push(c),
            }
        }
    }

    /// The arguments of a call whose `(` was just read.
    fn args(&mut self, name: &str, opened: usize) -> Result<Vec<String>, M4Error> {
        let mut args = Vec::new();
        let mut arg = String::new();
        let mut depth = 0usize;
        let mut at_start = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(M4Error {
                    line: opened,
                    message: format!("the `(` of {name} opened here is never closed"),
                });
            };
            if c == '`' {
                self.bump();
                arg.push_str(&self.quoted()?);
                at_start = false;
            } else if c == '#' {
                self.skip_line(false);
            } else if c.is_ascii_alphabetic() || c == '_' {
                let word = self.name();
                if word == "dnl" {
                    self.skip_line(true);
                } else {
                    arg.push_str(&word);
                    at_start = false;
                }
            } else {
                self.bump();
                match c {
                    ')' if depth == 0 => {
                        args.push(arg.trim_end().to_string());
                        return Ok(args);
                    }
                    ',' if depth == 0 => {
                        args.push(std::mem::take(&mut arg).trim_end().to_string());
                        at_start = true;
                    }
                    c if c.is_whitespace() && at_start => {}
                    c => {
                        if c == '(' {
                            depth += 1;
                        } else if c == ')' {
                            depth -= 1;
                        }
                        arg.push(c);
                        at_start = false;
                    }
                }
            }
        }
    }
}

/// Reads a `.mc` file's text.
pub fn parse(text: &str) -> Result<Vec<Item>, M4Error> {
    let mut lx = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    };
    let mut items = Vec::new();
    // The line of text outside calls seen last, reported once.
    let mut text_line = 0;
    let mut text = |items: &mut Vec<Item>, line: usize| {
        if text_line != line {
            text_line = line;
            items.push(Item::Text { line });
        }
    };
    while let Some(c) = lx.peek() {
        let line = lx.line;
        if c == '`' {
            lx.bump();
            lx.quoted()?;
            text(&mut items, line);
        } else if c == '#' {
            lx.skip_line(false);
        } else if c.is_whitespace() {
            lx.bump();
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = lx.pos;
            let name = lx.name();
            if name == "dnl" {
                lx.skip_line(true);
            } else if lx.peek() != Some('(') {
                text(&mut items, line);
            } else {
                lx.bump();
                let args = lx.args(&name, line)?;
                let written: String = lx.chars[start..lx.pos].iter().collect();
                items.push(Item::Call(Call {
                    name,
                    args,
                    line,
                    text: written.split_whitespace().collect::<Vec<_>>().join(" "),
                }));
            }
        } else {
            lx.bump();
            text(&mut items, line);
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(text: &str) -> Vec<Call> {
        parse(text)
            .unwrap()
            .into_iter()
            .filter_map(|i| match i {
                Item::Call(c) => Some(c),
                Item::Text { .. } => None,
            })
            .collect()
    }

    #[test]
    fn quoted_arguments_lose_one_level_of_quotes() {
        let c = calls(
            "FEATURE(`dnsbl', `zen.spamhaus.org', `\"550 Mail from \" $&{client_addr} \" refused\"', `t')dnl\n",
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "FEATURE");
        assert_eq!(
            c[0].args,
            vec![
                "dnsbl",
                "zen.spamhaus.org",
                "\"550 Mail from \" $&{client_addr} \" refused\"",
                "t"
            ]
        );
        let nested = calls("define(`x', `a `quoted' word, (and parens)')");
        assert_eq!(nested[0].args, vec!["x", "a `quoted' word, (and parens)"]);
    }

    #[test]
    fn unquoted_arguments_commas_parens_and_whitespace() {
        let c = calls("FEATURE(dnsbl,\n    bl.test, f(a,b) )\n");
        assert_eq!(c[0].args, vec!["dnsbl", "bl.test", "f(a,b)"]);
        assert_eq!(c[0].text, "FEATURE(dnsbl, bl.test, f(a,b) )");
        assert_eq!(calls("MAILER()")[0].args, vec![""]);
    }

    #[test]
    fn dnl_and_comments() {
        let items = parse(
            "divert(-1)dnl anything\n# a comment FEATURE(`x')\ndnl FEATURE(`y')\nFEATURE(`z', # note\n `w')\nxdnl\n",
        )
        .unwrap();
        let names: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::Call(c) => format!("{}:{}", c.line, c.args.join("|")),
                Item::Text { line } => format!("{line}:text"),
            })
            .collect();
        assert_eq!(names, vec!["1:-1", "4:z|w", "6:text"]);
    }

    #[test]
    fn unbalanced_input_names_the_line() {
        let err = parse("dnl\nFEATURE(`dnsbl', `bl.test)\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("quote"), "{}", err.message);
        let err = parse("\n\nFEATURE(`dnsbl'\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("FEATURE"), "{}", err.message);
    }

    #[test]
    fn raw_text_is_reported_once_per_line() {
        let items =
            parse("LOCAL_RULESETS\nSLocal_check_mail\nR$* $: x\nMAILER(`smtp') x\n").unwrap();
        let lines: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::Call(c) => format!("{}:{}", c.line, c.name),
                Item::Text { line } => format!("{line}"),
            })
            .collect();
        assert_eq!(lines, vec!["1", "2", "3", "4:MAILER", "4"]);
    }
}
