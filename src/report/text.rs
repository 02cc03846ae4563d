//! `--format text`: aligned sections, like pflogsumm's, for a terminal or a
//! cron mail. Control characters from the log are shown escaped, so a
//! client's HELO cannot drive the reader's terminal.

use super::stamp;
use super::view::{Body, Report, Stat, Table};
use std::borrow::Cow;
use std::fmt::Write as _;

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    heading(&mut out, "mxguard report", '=');
    let span = |t: Option<i64>| t.map_or_else(|| "-".to_string(), stamp::iso);
    let _ = writeln!(
        out,
        "Period:  {} .. {}",
        span(report.first),
        span(report.last)
    );
    if report.since.is_some() || report.until.is_some() {
        let _ = writeln!(
            out,
            "Limits:  --since {}  --until {}",
            span(report.since),
            span(report.until)
        );
    }
    for section in &report.sections {
        out.push('\n');
        match &section.body {
            Body::Stats(stats) => {
                heading(&mut out, section.title, '-');
                stats_into(&mut out, stats);
            }
            Body::Table(table) => {
                if table.distinct > table.rows.len() {
                    let title = format!(
                        "{} (top {} of {})",
                        section.title,
                        table.rows.len(),
                        table.distinct
                    );
                    heading(&mut out, &title, '-');
                } else {
                    heading(&mut out, section.title, '-');
                }
                table_into(&mut out, table);
            }
        }
    }
    out
}

fn heading(out: &mut String, title: &str, underline: char) {
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "{}",
        underline.to_string().repeat(title.chars().count())
    );
}

fn stats_into(out: &mut String, stats: &[Stat]) {
    let label = stats.iter().map(|s| s.label.len()).max().unwrap_or(0);
    let value = stats
        .iter()
        .map(|s| s.value.to_string().len())
        .max()
        .unwrap_or(0);
    for s in stats {
        let _ = writeln!(out, "  {:<label$}  {:>value$}", s.label, s.value);
    }
}

/// Numbers first, each right-aligned under its column name; the key last,
/// so that a long key (a reply) needs no cutting.
fn table_into(out: &mut String, table: &Table) {
    if table.rows.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let widest = table
                .rows
                .iter()
                .map(|r| r.values.get(i).map_or(0, |v| v.to_string().len()))
                .max()
                .unwrap_or(0);
            widest.max(name.len())
        })
        .collect();
    out.push(' ');
    for (name, width) in table.columns.iter().zip(&widths) {
        let _ = write!(out, " {name:>width$}");
    }
    let _ = writeln!(out, "  {}", table.key);
    for row in &table.rows {
        out.push(' ');
        for (value, width) in row.values.iter().zip(&widths) {
            let _ = write!(out, " {value:>width$}");
        }
        let _ = writeln!(out, "  {}", printable(&row.key));
    }
}

/// `text` with control characters escaped (`\u{1b}`).
fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::view::{Row, Section};
    use super::*;

    #[test]
    fn columns_line_up_and_control_characters_are_escaped() {
        let report = Report {
            first: Some(0),
            last: Some(86_400_000),
            since: None,
            until: None,
            sections: vec![Section {
                id: "top",
                title: "Top",
                body: Body::Table(Table {
                    key: "client",
                    columns: &["rejected", "tempfailed"],
                    rows: vec![
                        Row {
                            key: "a\u{1b}[31m".into(),
                            values: vec![123_456_789, 0],
                        },
                        Row {
                            key: "b".into(),
                            values: vec![5, 12],
                        },
                    ],
                    distinct: 3,
                }),
            }],
        };
        let text = render(&report);
        assert!(text.contains("Period:  1970-01-01T00:00:00Z .. 1970-01-02T00:00:00Z\n"));
        assert!(
            text.contains("Top (top 2 of 3)\n----------------\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "   rejected tempfailed  client\n  123456789          0  a\\u{1b}[31m\n          5         12  b\n"
            ),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'));
    }
}
