//! `--format json`: one object with every section, written by hand (the
//! report needs no JSON library): `period`, then each section by its id;
//! named numbers as an object, tables as `{"distinct": N, "rows": [{key
//! column: "…", number columns: n…}]}`.

use super::stamp;
use super::view::{Body, Report};
use std::fmt::Write as _;

pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str("{\"period\":{");
    for (i, (name, time)) in [
        ("first", report.first),
        ("last", report.last),
        ("since", report.since),
        ("until", report.until),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, name);
        out.push(':');
        match time {
            Some(t) => string(&mut out, &stamp::iso(t)),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    for section in &report.sections {
        out.push_str(",\n");
        string(&mut out, section.id);
        out.push(':');
        match &section.body {
            Body::Stats(stats) => {
                out.push('{');
                for (i, stat) in stats.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(&mut out, stat.id);
                    let _ = write!(out, ":{}", stat.value);
                }
                out.push('}');
            }
            Body::Table(table) => {
                let _ = write!(out, "{{\"distinct\":{},\"rows\":[", table.distinct);
                for (i, row) in table.rows.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('{');
                    string(&mut out, table.key);
                    out.push(':');
                    string(&mut out, &row.key);
                    for (name, value) in table.columns.iter().zip(&row.values) {
                        out.push(',');
                        string(&mut out, name);
                        let _ = write!(out, ":{value}");
                    }
                    out.push('}');
                }
                out.push_str("]}");
            }
        }
    }
    out.push_str("}\n");
    out
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut String, value: &str) {
    out.push('"');
    crate::log::escape_into(out, value);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::summary::Summary;
    use super::super::view::Lines;
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é\u{2028}");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\u{2028}\"");
    }

    #[test]
    fn an_empty_report_is_one_object_with_every_section() {
        let report = Report::new(&Summary::default(), Lines::default(), Some(0), None);
        let json = render(&report);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["period"]["since"], "1970-01-01T00:00:00Z");
        assert!(value["period"]["first"].is_null());
        for section in &report.sections {
            assert!(!value[section.id].is_null(), "{}", section.id);
        }
        assert_eq!(value["per_hour"]["rows"][23]["hour"], "23");
        assert_eq!(value["totals"]["connections"], 0);
    }
}
