//! Times in the report: milliseconds since the Unix epoch (UTC), read from
//! ISO 8601 timestamps, syslog dates (`Nov 29 15:13:06`, no year) and the
//! `--since`/`--until` options; and the calendar arithmetic to show them.

use crate::time::civil;

const MS_PER_DAY: i64 = 86_400_000;

/// When a log line was written, as far as the line itself says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    /// Milliseconds since the Unix epoch.
    Utc(i64),
    /// A syslog date: month, day and time of day, but no year.
    Syslog {
        month: u32,
        day: u32,
        ms_of_day: i64,
    },
}

impl Time {
    /// Milliseconds since the epoch. A syslog date takes the year of `now`
    /// (ms), or the year before when that would put it more than a day in
    /// the future (a December log read in January); `None` for a date that
    /// does not exist in that year (February 29).
    pub fn resolve(self, now: i64) -> Option<i64> {
        match self {
            Time::Utc(ms) => Some(ms),
            Time::Syslog {
                month,
                day,
                ms_of_day,
            } => {
                let (year, _, _) = civil(now.div_euclid(MS_PER_DAY));
                let at = |year| Some(days_from_civil(year, month, day)? * MS_PER_DAY + ms_of_day);
                match at(year) {
                    Some(ms) if ms <= now + MS_PER_DAY => Some(ms),
                    _ => at(year - 1),
                }
            }
        }
    }
}

/// Days since 1970-01-01 of a date, if the date exists.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The day number (days since 1970-01-01) of a time.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY)
}

/// The hour of the day (0–23, UTC) of a time.
pub fn hour_of(ms: i64) -> usize {
    (ms.rem_euclid(MS_PER_DAY) / 3_600_000) as usize
}

/// `2026-11-29` for a day number.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-29T15:13:06Z` (seconds; the report never needs more).
pub fn iso(ms: i64) -> String {
    let rest = ms.rem_euclid(MS_PER_DAY) / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(day_of(ms)),
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `--since`/`--until`: `YYYY-MM-DD` (midnight UTC) or
/// `YYYY-MM-DDTHH:MM:SS[.fff][Z]` (UTC).
pub fn parse_option(text: &str) -> Option<i64> {
    if text.len() == 10 {
        return Some(parse_date(text)? * MS_PER_DAY);
    }
    match text.strip_suffix(['Z', 'z']) {
        Some(t) => parse_iso(&format!("{t}Z")),
        None => parse_iso(&format!("{text}Z")),
    }
}

/// An ISO 8601 date-time with a zone: `2026-11-29T15:13:06.576Z` or
/// `…+01:00`; milliseconds since the epoch.
pub fn parse_iso(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let days = parse_date(text.get(..10)?)?;
    let time = parse_clock(b.get(11..19)?)?;
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some((b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, &c) in frac[..n.min(3)].iter().enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = two_digits(*h1, *h2)?;
            let m = two_digits(*m1, *m2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::from(h * 60 + m);
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    Some(days * MS_PER_DAY + time + millis - offset * 60_000)
}

/// The date of a syslog line (`Nov 29 15:13:06`, `Nov  9 15:13:06`), at the
/// start of `text`.
pub fn parse_syslog(text: &str) -> Option<Time> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = text.as_bytes();
    if b.len() < 15 || b[3] != b' ' || b[6] != b' ' {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[..3])? as u32 + 1;
    let day = match (b[4], b[5]) {
        (b' ', d) => two_digits(b'0', d)?,
        (d1, d2) => two_digits(d1, d2)?,
    };
    let ms_of_day = parse_clock(&b[7..15])?;
    Some(Time::Syslog {
        month,
        day,
        ms_of_day,
    })
}

/// `YYYY-MM-DD`: the day number.
fn parse_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = two_digits(b[0], b[1])? * 100 + two_digits(b[2], b[3])?;
    let month = two_digits(b[5], b[6])?;
    let day = two_digits(b[8], b[9])?;
    days_from_civil(i64::from(year), month, day)
}

/// `HH:MM:SS` as milliseconds into the day (a leap second counts as :59).
fn parse_clock(b: &[u8]) -> Option<i64> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let h = two_digits(b[0], b[1])?;
    let m = two_digits(b[3], b[4])?;
    let s = two_digits(b[6], b[7])?;
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(i64::from(h * 3600 + m * 60 + s.min(59)) * 1000)
}

fn two_digits(a: u8, b: u8) -> Option<u32> {
    if a.is_ascii_digit() && b.is_ascii_digit() {
        Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_964_515_123; // 2026-11-29T15:01:55.123Z

    #[test]
    fn iso_timestamps() {
        assert_eq!(parse_iso("2026-11-29T15:01:55.123Z"), Some(T));
        assert_eq!(parse_iso("2026-11-29T15:01:55Z"), Some(T - 123));
        assert_eq!(parse_iso("2026-11-29T15:01:55.123456Z"), Some(T));
        assert_eq!(parse_iso("2026-11-29T16:01:55.123+01:00"), Some(T));
        assert_eq!(parse_iso("2026-11-29T14:31:55.123-00:30"), Some(T));
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(0));
        for bad in [
            "2026-11-29T15:01:55",
            "2026-11-29 15:01:55Z",
            "2026-13-29T15:01:55Z",
            "2026-02-29T15:01:55Z",
            "2026-11-29T24:01:55Z",
            "2026-11-29T15:01:55.Z",
            "2026-11-29T15:01:55Zjunk",
            "2026-11-29T15:01:55+1:00",
            "２０26-11-29T15:01:55Z",
            "",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn options_take_a_date_or_a_date_time() {
        assert_eq!(parse_option("2026-11-29"), Some(T - 54_115_123));
        assert_eq!(parse_option("2026-11-29T15:01:55Z"), Some(T - 123));
        assert_eq!(parse_option("2026-11-29T15:01:55"), Some(T - 123));
        assert_eq!(parse_option("2000-02-29"), Some(951_782_400_000));
        for bad in [
            "2026-11-31",
            "yesterday",
            "2026-11-29T15:01",
            "29.11.2026",
            "",
        ] {
            assert_eq!(parse_option(bad), None, "{bad}");
        }
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-800_000, -1, 0, 59, 10_957, 20_786, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
        assert_eq!(date(day_of(T)), "2026-11-29");
        assert_eq!(hour_of(T), 15);
        assert_eq!(iso(T), "2026-11-29T15:01:55Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn syslog_dates_take_the_current_year_or_the_one_before() {
        let nov29 = parse_syslog("Nov 29 15:01:55 host mxguard[1]: x").unwrap();
        assert_eq!(nov29.resolve(T + 1000), Some(T - 123));
        let dec31 = parse_syslog("Dec 31 23:00:00").unwrap();
        let jan1 = T + 33 * 86_400_000; // 2027-01-01
        assert_eq!(
            dec31.resolve(jan1).map(iso).as_deref(),
            Some("2026-12-31T23:00:00Z")
        );
        let padded = parse_syslog("Nov  9 01:02:03").unwrap();
        assert_eq!(
            padded.resolve(T).map(iso).as_deref(),
            Some("2026-11-09T01:02:03Z")
        );
        let feb29 = parse_syslog("Feb 29 00:00:00").unwrap();
        assert_eq!(feb29.resolve(T), None);
        for bad in [
            "Nov 29 15:01",
            "Foo 29 15:01:55",
            "Nov 2x 15:01:55",
            "Nov 29 25:00:00",
        ] {
            assert_eq!(parse_syslog(bad), None, "{bad}");
        }
    }
}
