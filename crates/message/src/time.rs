//! Local time without libc or extra crates: the `TZ` variable, TZif files (RFC 8536, versions
//! 1 to 4) and POSIX TZ strings, plus the date formats Postfix prints.
//!
//! Lookup order, as glibc does it: `TZ` unset -> `/etc/localtime`; `TZ=""` -> UTC;
//! `TZ=:name` or `TZ=name` -> the file `name` if absolute, else `$TZDIR/name` (default
//! `/usr/share/zoneinfo/name`), else `name` read as a POSIX TZ string; anything unusable -> UTC.
//! The zone of the process is parsed once and cached while `TZ` keeps its value (like libc's
//! `tzset`), so a daemon pays for the file read once.
//!
//! Every formatter takes an explicit offset so that tests (and callers that already know the
//! zone) never need to touch the process environment.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use posix::PosixTz;

mod posix;
mod tzif;

/// Why a TZif file or POSIX TZ string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TzError {
    /// The data ends before a structure that the header announced.
    #[error("TZif data truncated: need {need} bytes at offset {at}, have {have}")]
    Truncated {
        /// Bytes the next structure needs.
        need: usize,
        /// Offset where the structure starts.
        at: usize,
        /// Total length of the data.
        have: usize,
    },
    /// The data does not start with the "TZif" magic.
    #[error("not a TZif file (bad magic)")]
    BadMagic,
    /// The header announces no local time types (at least one is required).
    #[error("TZif data has no local time types")]
    NoTypes,
    /// A transition refers to a local time type that does not exist.
    #[error("TZif transition {index} uses local time type {type_index}, only {count} exist")]
    BadTypeIndex {
        /// Index of the transition.
        index: usize,
        /// Type index it names.
        type_index: u8,
        /// Number of types in the file.
        count: usize,
    },
    /// A local time type has an abbreviation index outside the abbreviation table.
    #[error("TZif abbreviation index {index} outside the {len}-byte table")]
    BadAbbrIndex {
        /// The index found.
        index: usize,
        /// Length of the abbreviation table.
        len: usize,
    },
    /// A local time type has the forbidden UT offset -2^31.
    #[error("TZif local time type has an invalid UT offset")]
    BadOffset,
    /// A POSIX TZ string does not follow the syntax.
    #[error("invalid POSIX TZ string {text:?}: {reason}")]
    BadPosix {
        /// The string as given.
        text: String,
        /// What was wrong.
        reason: &'static str,
    },
}

/// One local time type: offset east of UTC in seconds, DST flag, abbreviation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalType {
    utoff: i32,
    is_dst: bool,
    abbr: String,
}

impl LocalType {
    fn utc() -> LocalType {
        LocalType {
            utoff: 0,
            is_dst: false,
            abbr: "UTC".to_string(),
        }
    }
}

/// A time zone: TZif transitions and types, and an optional POSIX rule for later times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone {
    transitions: Vec<i64>,
    type_of: Vec<u8>,
    types: Vec<LocalType>,
    rule: Option<PosixTz>,
}

impl TimeZone {
    /// Coordinated Universal Time, abbreviation "UTC".
    pub fn utc() -> TimeZone {
        TimeZone {
            transitions: Vec::new(),
            type_of: Vec::new(),
            types: vec![LocalType::utc()],
            rule: None,
        }
    }

    /// Parses TZif data (versions 1 to 4; the 64-bit block and footer are used when present).
    pub fn from_tzif(data: &[u8]) -> Result<TimeZone, TzError> {
        tzif::parse(data)
    }

    /// Parses a POSIX TZ string (`EST5EDT`, `CET-1CEST,M3.5.0,M10.5.0/3`, `<+03>-3`).
    pub fn from_posix(text: &str) -> Result<TimeZone, TzError> {
        let rule = PosixTz::parse(text)?;
        Ok(TimeZone {
            transitions: Vec::new(),
            type_of: Vec::new(),
            types: vec![rule.std.clone()],
            rule: Some(rule),
        })
    }

    /// Reads and parses a TZif file.
    pub fn from_file(path: &Path) -> Option<TimeZone> {
        let data = std::fs::read(path).ok()?;
        TimeZone::from_tzif(&data).ok()
    }

    /// Resolves a `TZ` value the way glibc does (`None` = variable unset); falls back to UTC.
    pub fn from_tz_value(tz: Option<&OsStr>) -> TimeZone {
        let Some(value) = tz else {
            return TimeZone::from_file(Path::new("/etc/localtime")).unwrap_or_else(TimeZone::utc);
        };
        let Some(text) = value.to_str() else {
            return TimeZone::utc();
        };
        let name = text.strip_prefix(':').unwrap_or(text);
        if name.is_empty() {
            return TimeZone::utc();
        }
        if name.starts_with('/') {
            return TimeZone::from_file(Path::new(name)).unwrap_or_else(TimeZone::utc);
        }
        // Refuse names that climb out of the zoneinfo directory.
        if !name.split('/').any(|part| part == "..") {
            let dir = std::env::var_os("TZDIR")
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
            if let Some(zone) = TimeZone::from_file(&dir.join(name)) {
                return zone;
            }
        }
        TimeZone::from_posix(name).unwrap_or_else(|_| TimeZone::utc())
    }

    /// The UTC offset (seconds east) and abbreviation in effect at `unix` seconds.
    pub fn offset_at(&self, unix: i64) -> (i32, String) {
        let t = self.type_at(unix);
        (t.utoff, t.abbr.clone())
    }

    /// Whether daylight saving time is in effect at `unix` seconds.
    pub fn is_dst_at(&self, unix: i64) -> bool {
        self.type_at(unix).is_dst
    }

    fn type_at(&self, unix: i64) -> &LocalType {
        let n = self.transitions.partition_point(|&x| x <= unix);
        let last = self.transitions.last().copied();
        match (n, last) {
            // No transitions: the footer rule (if any) governs all times.
            (_, None) => match &self.rule {
                Some(rule) => rule.type_at(unix),
                None => &self.types[0],
            },
            // Before the first transition: type 0 (RFC 8536, section 3.2).
            (0, Some(_)) => &self.types[0],
            (n, Some(last)) => {
                if n == self.transitions.len()
                    && unix > last
                    && let Some(rule) = &self.rule
                {
                    return rule.type_at(unix);
                }
                &self.types[usize::from(self.type_of[n - 1])]
            }
        }
    }
}

/// The process's local zone, cached while `TZ` keeps its value.
fn process_zone() -> Arc<TimeZone> {
    type Cache = Option<(Option<OsString>, Arc<TimeZone>)>;
    static CACHE: Mutex<Cache> = Mutex::new(None);
    let tz = std::env::var_os("TZ");
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((key, zone)) = cache.as_ref()
        && *key == tz
    {
        return Arc::clone(zone);
    }
    let zone = Arc::new(TimeZone::from_tz_value(tz.as_deref()));
    *cache = Some((tz, Arc::clone(&zone)));
    zone
}

/// Loads the process's zone now. Daemons call this before `chroot()`, where `/etc/localtime`
/// and the zoneinfo files are out of reach; the cached zone is used afterwards (as long as
/// `TZ` does not change).
pub fn init_local_zone() {
    let _ = process_zone();
}

/// The local UTC offset (seconds east of UTC) and zone abbreviation at `t`.
pub fn local_offset(t: SystemTime) -> (i32, String) {
    process_zone().offset_at(unix_seconds(t))
}

/// Seconds since the Unix epoch, rounded down (negative before 1970).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let secs = if d.subsec_nanos() > 0 {
                secs.saturating_add(1)
            } else {
                secs
            };
            -secs
        }
    }
}

/// Broken-down time at `t` shifted by `offset` seconds:
/// (year, month 1-12, day 1-31, hour, minute, second, weekday 0 = Sunday).
pub fn civil(t: SystemTime, offset: i32) -> (i32, u32, u32, u32, u32, u32, u32) {
    civil_unix(unix_seconds(t), offset)
}

/// [`civil`] for a Unix timestamp.
pub fn civil_unix(unix: i64, offset: i32) -> (i32, u32, u32, u32, u32, u32, u32) {
    let local = unix.saturating_add(i64::from(offset));
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let year = i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX });
    // The casts below are of values already reduced to small ranges.
    let hour = (secs / 3600) as u32;
    let min = (secs % 3600 / 60) as u32;
    let sec = (secs % 60) as u32;
    (year, month, day, hour, min, sec, weekday(days))
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Postfix's `mail_date()` with an explicit zone: `Wed, 25 Nov 2026 15:40:05 +0100 (CET)`.
///
/// The day of month is space-padded (`%e`) as in Postfix; the parenthesised abbreviation is
/// left out when `abbr` is empty.
pub fn mail_date_at(t: SystemTime, offset: i32, abbr: &str) -> String {
    let (year, month, day, hour, min, sec, wday) = civil(t, offset);
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    let mut out = format!(
        "{}, {day:>2} {} {year} {hour:02}:{min:02}:{sec:02} {sign}{:02}{:02}",
        WEEKDAYS[wday as usize],
        MONTHS[(month - 1) as usize],
        abs / 3600,
        abs % 3600 / 60,
    );
    if !abbr.is_empty() {
        out.push_str(" (");
        out.push_str(abbr);
        out.push(')');
    }
    out
}

/// Postfix's `mail_date()` in the process's local zone.
pub fn mail_date_local(t: SystemTime) -> String {
    let (offset, abbr) = local_offset(t);
    mail_date_at(t, offset, &abbr)
}

/// `asctime(3)` without the newline, shifted by `offset`: `Wed Nov 25 15:40:05 2026`.
pub fn asctime_at(t: SystemTime, offset: i32) -> String {
    let (year, month, day, hour, min, sec, wday) = civil(t, offset);
    format!(
        "{} {} {day:>2} {hour:02}:{min:02}:{sec:02} {year}",
        WEEKDAYS[wday as usize],
        MONTHS[(month - 1) as usize],
    )
}

/// `asctime(localtime(t))` without the newline (mbox `From ` lines, mailq).
pub fn asctime_local(t: SystemTime) -> String {
    asctime_at(t, local_offset(t).0)
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian; Howard Hinnant's algorithms).

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both values are small and positive by construction.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Weekday of a day count since 1970-01-01 (a Thursday), 0 = Sunday.
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn month_len(year: i64, month: u32) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn civil_known_dates() {
        assert_eq!(civil_unix(0, 0), (1970, 1, 1, 0, 0, 0, 4));
        // 2026-11-25 15:40:05 UTC is a Wednesday.
        assert_eq!(civil_unix(1_795_621_205, 0), (2026, 11, 25, 15, 40, 5, 3));
        // Leap day and negative offsets across midnight.
        assert_eq!(civil_unix(951_782_400, 0), (2000, 2, 29, 0, 0, 0, 2));
        assert_eq!(civil_unix(951_782_400, -3600), (2000, 2, 28, 23, 0, 0, 1));
        assert_eq!(civil_unix(-1, 0), (1969, 12, 31, 23, 59, 59, 3));
        for days in [-800_000i64, -1, 0, 59, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn date_formats() {
        let t = at(1_795_621_205);
        assert_eq!(
            mail_date_at(t, 0, "UTC"),
            "Wed, 25 Nov 2026 15:40:05 +0000 (UTC)"
        );
        assert_eq!(
            mail_date_at(t, 3600, "CET"),
            "Wed, 25 Nov 2026 16:40:05 +0100 (CET)"
        );
        assert_eq!(
            mail_date_at(t, -(3 * 3600 + 1800), "NST"),
            "Wed, 25 Nov 2026 12:10:05 -0330 (NST)"
        );
        assert_eq!(mail_date_at(t, 0, ""), "Wed, 25 Nov 2026 15:40:05 +0000");
        // Single-digit days are space-padded, like Postfix's %e.
        let t = at(1_785_628_800); // 2026-08-02 00:00:00 UTC
        assert_eq!(
            mail_date_at(t, 0, "UTC"),
            "Sun,  2 Aug 2026 00:00:00 +0000 (UTC)"
        );
        assert_eq!(asctime_at(t, 0), "Sun Aug  2 00:00:00 2026");
        assert_eq!(asctime_at(at(1_795_621_205), 0), "Wed Nov 25 15:40:05 2026");
    }

    #[test]
    fn tz_value_fallbacks() {
        let utc = TimeZone::utc();
        assert_eq!(TimeZone::from_tz_value(Some(OsStr::new(""))), utc);
        assert_eq!(TimeZone::from_tz_value(Some(OsStr::new(":"))), utc);
        assert_eq!(
            TimeZone::from_tz_value(Some(OsStr::new("No/Such/Zone"))).offset_at(0),
            (0, "UTC".into())
        );
        assert_eq!(
            TimeZone::from_tz_value(Some(OsStr::new("/nonexistent/file"))).offset_at(0),
            (0, "UTC".into())
        );
        assert_eq!(
            TimeZone::from_tz_value(Some(OsStr::new("../../../etc/passwd"))).offset_at(0),
            (0, "UTC".into())
        );
        // Not a file name: read as a POSIX string.
        let posix = TimeZone::from_tz_value(Some(OsStr::new("<-07>7")));
        assert_eq!(posix.offset_at(0), (-7 * 3600, "-07".into()));
        assert_eq!(utc.offset_at(1_782_907_200), (0, "UTC".into()));
    }

    #[test]
    fn local_offset_is_sane() {
        // Whatever the machine's zone, the answer is a plausible offset and stable when cached.
        init_local_zone();
        let t = at(1_782_907_200);
        let first = local_offset(t);
        assert!(first.0.abs() <= 14 * 3600);
        assert_eq!(local_offset(t), first);
        assert_eq!(mail_date_local(t), mail_date_at(t, first.0, &first.1));
        assert_eq!(asctime_local(t), asctime_at(t, first.0));
    }

    #[test]
    fn negative_unix_seconds_round_down() {
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(1)), -1);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(2)), -2);
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1500)), 1);
    }
}
