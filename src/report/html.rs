//! `--format html`: one self-contained page (inline CSS, inline SVG
//! charts, no script, nothing fetched) with three charts — traffic per hour
//! stacked by outcome (`chart-hourly`), refusals by check (`chart-checks`),
//! top refused networks (`chart-networks`) — then every section as a
//! table. Everything from the log (clients choose their HELO and
//! addresses) is escaped.

use super::stamp;
use super::view::{Body, Report, Row, Table, TOP};
use std::fmt::Write as _;

const ACCEPTED: &str = "#2e7d32";
const REJECTED: &str = "#c62828";
const TEMPFAILED: &str = "#ef8f00";

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;color:#222;margin:2em auto;max-width:1100px;padding:0 1em}\
h1{margin-bottom:.2em}h2{font-size:1.1em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}th,td{padding:.15em .7em;border-bottom:1px solid #eee;text-align:left}\
.n{text-align:right;font-variant-numeric:tabular-nums}td.k{word-break:break-all}\
figure{margin:1em 0}figcaption{font-weight:bold;margin-bottom:.3em}\
svg text{font-size:11px;fill:#333}.none{color:#777}";

pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let span = |t: Option<i64>| t.map_or_else(|| "-".to_string(), stamp::iso);
    let period = format!("{} .. {}", span(report.first), span(report.last));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>mxguard report {period}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>mxguard report</h1>\n<p>Period: {period}"
    );
    if report.since.is_some() || report.until.is_some() {
        let _ = write!(
            out,
            " (--since {}, --until {})",
            span(report.since),
            span(report.until)
        );
    }
    out.push_str("</p>\n");
    charts(&mut out, report);
    for section in &report.sections {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}",
            section.id,
            esc(section.title)
        );
        match &section.body {
            Body::Stats(stats) => {
                out.push_str("</h2>\n<table>\n");
                for s in stats {
                    let _ = writeln!(
                        out,
                        "<tr><th>{}</th><td class=\"n\">{}</td></tr>",
                        esc(s.label),
                        s.value
                    );
                }
                out.push_str("</table>\n");
            }
            Body::Table(table) => {
                if table.distinct > table.rows.len() {
                    let _ = write!(out, " (top {} of {})", table.rows.len(), table.distinct);
                }
                out.push_str("</h2>\n");
                table_into(&mut out, table);
            }
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn table_into(out: &mut String, table: &Table) {
    if table.rows.is_empty() {
        out.push_str("<p class=\"none\">none</p>\n");
        return;
    }
    let _ = write!(out, "<table>\n<tr><th>{}</th>", esc(table.key));
    for name in table.columns {
        let _ = write!(out, "<th class=\"n\">{}</th>", esc(&name.replace('_', " ")));
    }
    out.push_str("</tr>\n");
    for row in &table.rows {
        let _ = write!(out, "<tr><td class=\"k\">{}</td>", esc(&row.key));
        for value in &row.values {
            let _ = write!(out, "<td class=\"n\">{value}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn charts(out: &mut String, report: &Report) {
    out.push_str("<section id=\"charts\">\n");
    let no_rows = Vec::new();
    let rows = |id| report.table(id).map_or(&no_rows, |t| &t.rows);
    figure(out, "Traffic per hour of the day (UTC)", |out| {
        hourly(out, rows("per_hour"))
    });
    figure(out, "Refusals by check", |out| {
        bars(out, "chart-checks", rows("rejections_by_check"))
    });
    figure(out, "Top refused networks", |out| {
        bars(out, "chart-networks", rows("top_rejected_networks"))
    });
    out.push_str("</section>\n");
}

fn figure(out: &mut String, caption: &str, chart: impl FnOnce(&mut String)) {
    let _ = write!(out, "<figure>\n<figcaption>{}</figcaption>\n", esc(caption));
    chart(out);
    out.push_str("</figure>\n");
}

/// Columns per hour, accepted / rejected / tempfailed stacked; `rows` are
/// the `per_hour` table's (connections, accepted, bytes, rejected,
/// tempfailed).
fn hourly(out: &mut String, rows: &[Row]) {
    const LEFT: f64 = 50.0;
    const TOP_: f64 = 30.0;
    const PLOT_W: f64 = 720.0;
    const PLOT_H: f64 = 220.0;
    let series = [
        (1, "accepted", ACCEPTED),
        (3, "rejected", REJECTED),
        (4, "tempfailed", TEMPFAILED),
    ];
    let value = |row: &Row, i: usize| row.values.get(i).copied().unwrap_or(0);
    let max = rows
        .iter()
        .map(|r| series.iter().map(|&(i, _, _)| value(r, i)).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let bottom = TOP_ + PLOT_H;
    let _ = writeln!(
        out,
        "<svg id=\"chart-hourly\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"traffic per hour\">",
        w = LEFT + PLOT_W + 20.0,
        h = bottom + 30.0
    );
    legend(
        out,
        LEFT,
        14.0,
        &series.map(|(_, name, color)| (name, color)),
    );
    let slot = PLOT_W / 24.0;
    for (hour, row) in rows.iter().enumerate().take(24) {
        let x = LEFT + hour as f64 * slot + slot * 0.15;
        let mut y = bottom;
        for &(i, name, color) in &series {
            let n = value(row, i);
            if n == 0 {
                continue;
            }
            let height = n as f64 / max as f64 * PLOT_H;
            y -= height;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{color}\">\
                 <title>{}:00 {name}: {n}</title></rect>",
                slot * 0.7,
                esc(&row.key)
            );
        }
        if hour % 3 == 0 {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                bottom + 16.0,
                esc(&row.key)
            );
        }
    }
    axes(out, LEFT, TOP_, PLOT_W, PLOT_H);
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{max}</text>\n\
         <text x=\"{:.1}\" y=\"{bottom:.1}\" text-anchor=\"end\">0</text>\n</svg>",
        LEFT - 6.0,
        TOP_ + 4.0,
        LEFT - 6.0
    );
}

/// Horizontal bars, rejected and tempfailed stacked, for the first [`TOP`]
/// rows of a table whose columns are (rejected, tempfailed).
fn bars(out: &mut String, id: &str, rows: &[Row]) {
    const LABEL_W: f64 = 260.0;
    const BAR_W: f64 = 480.0;
    const ROW_H: f64 = 22.0;
    const TOP_: f64 = 26.0;
    let rows = &rows[..rows.len().min(TOP)];
    let total = |r: &Row| r.values.iter().sum::<u64>();
    let max = rows.iter().map(total).max().unwrap_or(0).max(1);
    let plot_h = ROW_H * rows.len().max(1) as f64;
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\">",
        w = LABEL_W + BAR_W + 60.0,
        h = TOP_ + plot_h + 10.0
    );
    legend(
        out,
        LABEL_W,
        14.0,
        &[("rejected", REJECTED), ("tempfailed", TEMPFAILED)],
    );
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">none</text>",
            LABEL_W + 8.0,
            TOP_ + 15.0
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP_ + i as f64 * ROW_H;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LABEL_W - 6.0,
            y + 15.0,
            esc(&shorten(&row.key, 40))
        );
        let mut x = LABEL_W;
        for (n, (name, color)) in row
            .values
            .iter()
            .zip([("rejected", REJECTED), ("tempfailed", TEMPFAILED)])
        {
            if *n == 0 {
                continue;
            }
            let width = *n as f64 / max as f64 * BAR_W;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{color}\">\
                 <title>{} {name}: {n}</title></rect>",
                y + 3.0,
                ROW_H - 6.0,
                esc(&row.key)
            );
            x += width;
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 6.0,
            y + 15.0,
            total(row)
        );
    }
    axes(out, LABEL_W, TOP_, BAR_W, plot_h);
    out.push_str("</svg>\n");
}

fn axes(out: &mut String, left: f64, top: f64, width: f64, height: f64) {
    let _ = writeln!(
        out,
        "<path d=\"M{left:.1} {top:.1}V{:.1}H{:.1}\" stroke=\"#555\" fill=\"none\"/>",
        top + height,
        left + width
    );
}

fn legend(out: &mut String, x: f64, y: f64, series: &[(&str, &str)]) {
    let mut x = x;
    for (name, color) in series {
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{name}</text>",
            y - 9.0,
            x + 14.0
        );
        x += 24.0 + 7.0 * name.len() as f64;
    }
}

/// At most `max` characters, `…` marking a cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Text safe in HTML and SVG content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_line;
    use super::super::stamp::Time;
    use super::super::summary::Summary;
    use super::super::view::Lines;
    use super::*;

    #[test]
    fn log_text_is_escaped_everywhere() {
        let mut s = Summary::default();
        let line = r#"2026-11-29T10:00:00.000Z mxguard: event=reject client="<script>alert(1)</script>" from="<a&b'\"@x>" to=<x@y> stage=rcpt check="c<img src=x>" action=reject reply="550 5.1.1 </svg><b>""#;
        let f = parse_line(line).unwrap();
        let Some(Time::Utc(at)) = f.time else {
            panic!()
        };
        s.add(&f, at);
        let html = render(&Report::new(&s, Lines::default(), None, None));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>"));
        assert_eq!(html.matches("</svg>").count(), 3);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("c&lt;img src=x&gt;"));
        assert!(html.contains("a&amp;b&#39;&quot;@x"));
    }

    #[test]
    fn charts_have_ids_and_drawings_even_when_empty() {
        let html = render(&Report::new(
            &Summary::default(),
            Lines::default(),
            None,
            None,
        ));
        for id in ["chart-hourly", "chart-checks", "chart-networks"] {
            let start = html.find(&format!("<svg id=\"{id}\"")).expect(id);
            let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
            assert!(svg.contains("<path "), "{id}");
        }
        // Self-contained: nothing to run, nothing to fetch.
        for outside in ["<script", "src=", "href=", "url(", "@import"] {
            assert!(!html.contains(outside), "{outside}");
        }
    }

    #[test]
    fn long_labels_are_shortened() {
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("ééé", 2), "éé…");
    }
}
