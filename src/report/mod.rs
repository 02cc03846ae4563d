//! `mxguard report`: the daily summary pflogsumm gives Postfix admins,
//! read from mxguard's own log (see `docs/report.md`).
//!
//! ```text
//! input   files, gzip, stdin ──► line (reused buffer)
//! parse   line ──► Fields (text or JSON, syslog prefix or not)
//! stamp   times: ISO 8601, syslog dates, --since/--until
//! summary Fields ──► running counts (memory: distinct keys only)
//! view    counts ──► sections: named numbers and sorted tables
//! text, json, html ──► the report
//! ```

mod html;
mod input;
mod json;
mod parse;
mod stamp;
mod summary;
mod text;
mod view;

pub use parse::parse_line;
use std::path::PathBuf;

/// What to report on, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Log files (plain or gzip); none: standard input.
    pub logs: Vec<PathBuf>,
    /// Only lines at or after this time (ISO 8601 date or date-time, UTC).
    pub since: Option<String>,
    /// Only lines before this time.
    pub until: Option<String>,
    pub format: Format,
    /// Write here instead of standard output.
    pub output: Option<PathBuf>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Html,
}

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{option} {value:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")]
    BadTime { option: &'static str, value: String },
    #[error("cannot read {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot write {name}: {source}")]
    Write {
        name: String,
        source: std::io::Error,
    },
}

/// Reads the logs and writes the report.
pub fn run(options: &Options) -> Result<(), ReportError> {
    let since = bound("--since", options.since.as_deref())?;
    let until = bound("--until", options.until.as_deref())?;
    let now = i64::try_from(crate::time::unix_now())
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let mut tally = Tally {
        summary: summary::Summary::default(),
        lines: view::Lines::default(),
        since,
        until,
        now,
    };
    if options.logs.is_empty() {
        input::Input::stdin()?.for_each_line(|line| tally.line(line))?;
    }
    for path in &options.logs {
        input::Input::open(path)?.for_each_line(|line| tally.line(line))?;
    }
    let report = view::Report::new(&tally.summary, tally.lines, since, until);
    let rendered = match options.format {
        Format::Text => text::render(&report),
        Format::Json => json::render(&report),
        Format::Html => html::render(&report),
    };
    write(options.output.as_deref(), rendered.as_bytes())
}

/// `--since`/`--until`, as ms since the epoch.
fn bound(option: &'static str, value: Option<&str>) -> Result<Option<i64>, ReportError> {
    value
        .map(|v| {
            stamp::parse_option(v).ok_or_else(|| ReportError::BadTime {
                option,
                value: v.to_string(),
            })
        })
        .transpose()
}

/// Counts lines into a summary.
struct Tally {
    summary: summary::Summary,
    lines: view::Lines,
    since: Option<i64>,
    until: Option<i64>,
    /// For the year of syslog dates.
    now: i64,
}

impl Tally {
    fn line(&mut self, line: Option<&str>) {
        self.lines.read += 1;
        let now = self.now;
        let parsed = line.and_then(parse_line).and_then(|fields| {
            let at = fields.time?.resolve(now)?;
            Some((fields, at))
        });
        let Some((fields, at)) = parsed else {
            self.lines.skipped += 1;
            return;
        };
        if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
            self.lines.out_of_range += 1;
            return;
        }
        self.summary.add(&fields, at);
    }
}

fn write(output: Option<&std::path::Path>, bytes: &[u8]) -> Result<(), ReportError> {
    use std::io::Write as _;
    match output {
        Some(path) => std::fs::write(path, bytes).map_err(|source| ReportError::Write {
            name: path.display().to_string(),
            source,
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .map_err(|source| ReportError::Write {
                    name: "standard output".into(),
                    source,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(since: Option<&str>, until: Option<&str>, lines: &[&str]) -> Tally {
        let mut t = Tally {
            summary: summary::Summary::default(),
            lines: view::Lines::default(),
            since: bound("--since", since).unwrap(),
            until: bound("--until", until).unwrap(),
            now: stamp::parse_iso("2026-12-01T00:00:00Z").unwrap(),
        };
        for line in lines {
            t.line(Some(line));
        }
        t
    }

    const LINES: [&str; 5] = [
        "2026-11-28T23:59:59.999Z mxguard: event=disconnect client=192.0.2.1",
        "2026-11-29T00:00:00.000Z mxguard: event=disconnect client=192.0.2.2",
        "Nov 29 12:00:00 mx mxguard[7]: event=disconnect client=192.0.2.3",
        "2026-11-29T12:00:00.500Z mxguard: event=disconnect client=192.0.2.4",
        "2026-11-30T00:00:00.000Z mxguard: event=disconnect client=192.0.2.5",
    ];

    #[test]
    fn since_is_inclusive_and_until_exclusive() {
        let t = tally(Some("2026-11-29"), Some("2026-11-29T12:00:00Z"), &LINES);
        assert_eq!(t.summary.traffic.connections, 1);
        assert_eq!(t.lines.out_of_range, 4);
        let t = tally(Some("2026-11-29T12:00:00Z"), Some("2026-11-30"), &LINES);
        assert_eq!(t.summary.traffic.connections, 2, "the syslog line and .500");
        let t = tally(None, Some("2026-11-29"), &LINES);
        assert_eq!(t.summary.traffic.connections, 1);
        let t = tally(None, None, &LINES);
        assert_eq!(t.summary.traffic.connections, 5);
    }

    #[test]
    fn junk_and_unresolvable_lines_are_skipped() {
        let t = tally(
            None,
            None,
            &[
                "junk",
                "Feb 29 00:00:00 mx mxguard: event=disconnect",
                LINES[0],
            ],
        );
        assert_eq!((t.lines.read, t.lines.skipped), (3, 2));
    }

    #[test]
    fn bad_bounds_name_the_option() {
        let err = bound("--since", Some("yesterday")).unwrap_err();
        assert!(
            err.to_string().starts_with("--since \"yesterday\""),
            "{err}"
        );
        let options = Options {
            logs: vec![],
            since: None,
            until: Some("2026-13-01".into()),
            format: Format::Text,
            output: None,
        };
        let err = run(&options).unwrap_err();
        assert!(err.to_string().starts_with("--until"), "{err}");
    }
}
