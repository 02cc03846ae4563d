//! The wall clock, read in one place, and the two date formats mxguard
//! writes: RFC 5322 for headers and ISO 8601 (UTC) for logs.
//!
//! Every time-dependent decision (bans, rate windows, greylisting, cache
//! lifetimes, retries) reads [`now`] or [`unix_now`]. Tests move this clock
//! forward with [`advance`] instead of sleeping (and may [`freeze`] it
//! first, for steps of exactly a second); a running server lets its
//! control socket do that only when it was built with the `test-clock`
//! feature (test builds only) and started with `MXGUARD_TEST_CLOCK=1`.

use crate::decimal::Decimal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds added to the system clock by [`advance`].
static OFFSET: AtomicU64 = AtomicU64::new(0);

/// The Unix second the clock stopped at ([`freeze`]), 0 while it runs.
static FROZEN: AtomicU64 = AtomicU64::new(0);

/// The current time, as every decision sees it.
pub fn now() -> SystemTime {
    let frozen = FROZEN.load(Ordering::Relaxed);
    let base = match frozen {
        0 => SystemTime::now(),
        secs => UNIX_EPOCH + Duration::from_secs(secs),
    };
    base.checked_add(Duration::from_secs(OFFSET.load(Ordering::Relaxed)))
        .unwrap_or(base)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    since_epoch(now()).as_secs()
}

/// The longest the clock may be moved forward in all (a century).
const MAX_OFFSET: u64 = 100 * 365 * 86_400;

/// Moves the clock forward by `by` (tests only; time never goes back).
pub fn advance(by: Duration) {
    let _ = OFFSET.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
        Some(o.saturating_add(by.as_secs()).min(MAX_OFFSET))
    });
}

/// Stops the clock at the current second (tests only): from then on it
/// moves only by [`advance`], so a test's steps of a second are exact
/// however long the test takes between them.
pub fn freeze() {
    let secs = since_epoch(SystemTime::now()).as_secs().max(1);
    let _ = FROZEN.compare_exchange(0, secs, Ordering::Relaxed, Ordering::Relaxed);
}

/// Whether this process lets its control socket move the clock: never in
/// a build without the `test-clock` feature (a release build), whatever
/// the environment says.
pub fn test_clock_enabled() -> bool {
    cfg!(feature = "test-clock") && std::env::var_os("MXGUARD_TEST_CLOCK").is_some_and(|v| v == "1")
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    weekday: usize,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn parts(t: SystemTime) -> Parts {
    let d = since_epoch(t);
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil(days);
    Parts {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday.
        weekday: ((days + 4) % 7) as usize,
        hour: secs % 86_400 / 3600,
        minute: secs % 3600 / 60,
        second: secs % 60,
        millis: d.subsec_millis(),
    }
}

/// `Sun, 29 Nov 2026 15:01:55 +0000`.
pub fn rfc5322(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let p = parts(t);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[p.weekday],
        p.day,
        MONTHS[(p.month - 1) as usize],
        p.year,
        p.hour,
        p.minute,
        p.second
    )
}

/// A Unix time in seconds as a [`SystemTime`]; one too far in the future
/// for the platform (read from a file, say) becomes the year 2038.
pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(i32::MAX as u64))
}

/// [`iso8601`] of a Unix time in seconds.
pub fn iso8601_unix(secs: u64) -> String {
    iso8601(from_unix(secs))
}

/// `Nov 29 15:01:55` (RFC 3164, for syslog; days padded with a space).
pub fn rfc3164(t: SystemTime) -> String {
    let p = parts(t);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(p.month - 1) as usize],
        p.day,
        p.hour,
        p.minute,
        p.second
    )
}

/// `2026-11-29T15:01:55.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_iso8601(&mut out, t);
    out
}

/// A duration in seconds to the millisecond, rounded: `0.042s` (the log's
/// durations, written without a float or a string of their own).
pub struct Seconds(pub Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digits written in place: every session's last line has one.
        let millis = (self.0.as_nanos() + 500_000) / 1_000_000;
        let millis = u64::try_from(millis).unwrap_or(u64::MAX);
        f.write_str(Decimal::of(millis / 1000).as_str())?;
        let mut text = *b".000s";
        put_digits(&mut text, 4, 3, millis % 1000);
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

/// Writes `value`'s last `width` decimal digits into `text`, ending before
/// `end`, with leading zeros.
fn put_digits(text: &mut [u8], end: usize, width: usize, value: u64) {
    let mut rest = value;
    for at in (end - width..end).rev() {
        text[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

/// Appends `t` as [`iso8601`] writes it, digits written in place: every
/// log line starts with one.
pub fn push_iso8601(out: &mut String, t: SystemTime) {
    let p = parts(t);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    for (value, end, width) in [
        (u64::try_from(p.year).unwrap_or(0), 4, 4),
        (u64::from(p.month), 7, 2),
        (u64::from(p.day), 10, 2),
        (p.hour, 13, 2),
        (p.minute, 16, 2),
        (p.second, 19, 2),
        (u64::from(p.millis), 23, 3),
    ] {
        put_digits(&mut text, end, width, value);
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_964_515_123);
        assert_eq!(rfc5322(t), "Sun, 29 Nov 2026 15:01:55 +0000");
        assert_eq!(iso8601(t), "2026-11-29T15:01:55.123Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3164(t), "Nov 29 15:01:55");
        assert_eq!(rfc3164(UNIX_EPOCH), "Jan  1 00:00:00");
        for (nanos, written) in [
            (0, "0.000s"),
            (1_499_999, "0.001s"),
            (1_500_000, "0.002s"),
            (42_000_000, "0.042s"),
            (61_999_600_000, "62.000s"),
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(Seconds(d).to_string(), written);
            assert_eq!(format!("{:.3}s", d.as_secs_f64()), written);
        }
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
