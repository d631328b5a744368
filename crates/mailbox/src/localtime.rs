//! Local time for the mbox `From ` line: `asctime(localtime(t))` computed in safe Rust.
//!
//! libc's `localtime_r` may not be called outside `posthorn-sys`, so this module reads the
//! time zone itself: `TZ` (a POSIX rule like `EST5EDT,M3.2.0,M11.1.0`, a zone name under
//! `TZDIR` or /usr/share/zoneinfo, or `:path`), else /etc/localtime, in the TZif format of
//! RFC 8536 including its footer rule for times after the last transition. Anything that
//! cannot be read means UTC, which only changes the informational date in the `From ` line.
//! The zone is read once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `t` as `asctime()` writes it, without the newline: `Wed Nov 25 15:40:05 2026`.
pub(crate) fn asctime(t: SystemTime) -> String {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    let secs = unix_seconds(t);
    let zone = ZONE.get_or_init(Zone::from_environment);
    format_asctime(secs.saturating_add(zone.offset_at(secs)))
}

/// Whole seconds since the epoch, rounded towards minus infinity.
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// Formats seconds since the epoch (already shifted to local time) like `asctime()`.
fn format_asctime(local: i64) -> String {
    let days = local.div_euclid(86_400);
    let sod = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        WEEKDAYS[weekday(days)],
        MONTHS[(month - 1) as usize],
        day,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        year
    )
}

/// Day of the week of a day number (0 = Sunday); 1970-01-01 was a Thursday.
fn weekday(days: i64) -> usize {
    // rem_euclid(7) is in 0..7, so the cast cannot truncate.
    (days + 4).rem_euclid(7) as usize
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1-12, day 1-31) of a day number.
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

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A time zone: how far local time is ahead of UTC at any instant.
#[derive(Debug, Clone, PartialEq)]
enum Zone {
    /// A zone read from a TZif file.
    Tzif(Tzif),
    /// A POSIX TZ rule.
    Rule(PosixTz),
}

impl Zone {
    const UTC: Zone = Zone::Rule(PosixTz { std: 0, dst: None });

    /// The zone named by `TZ`, else /etc/localtime, else UTC.
    fn from_environment() -> Zone {
        let zoneinfo = std::env::var_os("TZDIR")
            .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
        match std::env::var("TZ") {
            Err(std::env::VarError::NotPresent) => {
                Zone::from_file(Path::new("/etc/localtime")).unwrap_or(Zone::UTC)
            }
            Err(std::env::VarError::NotUnicode(_)) => Zone::UTC,
            Ok(tz) => Zone::from_tz(&tz, &zoneinfo).unwrap_or(Zone::UTC),
        }
    }

    /// Interprets a `TZ` value.
    fn from_tz(tz: &str, zoneinfo: &Path) -> Option<Zone> {
        let (spec, colon) = match tz.strip_prefix(':') {
            Some(rest) => (rest, true),
            None => (tz, false),
        };
        if spec.is_empty() {
            return None;
        }
        if spec.starts_with('/') {
            return Zone::from_file(Path::new(spec));
        }
        if !spec.split('/').any(|part| part == "..")
            && let Some(zone) = Zone::from_file(&zoneinfo.join(spec))
        {
            return Some(zone);
        }
        if colon {
            return None;
        }
        PosixTz::parse(spec).map(Zone::Rule)
    }

    fn from_file(path: &Path) -> Option<Zone> {
        let data = std::fs::read(path).ok()?;
        Tzif::parse(&data).map(Zone::Tzif)
    }

    /// Seconds east of UTC at `t` (seconds since the epoch).
    fn offset_at(&self, t: i64) -> i64 {
        match self {
            Zone::Tzif(z) => z.offset_at(t),
            Zone::Rule(r) => r.offset_at(t),
        }
    }
}

/// The parts of a TZif file needed to find an offset.
#[derive(Debug, Clone, PartialEq)]
struct Tzif {
    /// Transition times, ascending.
    times: Vec<i64>,
    /// For each transition, the index into `offsets` of the local time type that starts.
    types: Vec<usize>,
    /// UT offset (seconds east) of each local time type.
    offsets: Vec<i64>,
    /// Rule for times after the last transition (version 2+ footer).
    footer: Option<PosixTz>,
}

/// A big-endian reader over a byte slice that fails instead of panicking.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self) -> Option<usize> {
        self.u32().and_then(|n| usize::try_from(n).ok())
    }
}

impl Tzif {
    /// Parses a TZif file (RFC 8536), preferring the 64-bit data of version 2 and later.
    fn parse(data: &[u8]) -> Option<Tzif> {
        let mut r = Bytes(data);
        let (version, counts) = Tzif::header(&mut r)?;
        if version == 0 {
            return Tzif::block(&mut r, counts, 4, None);
        }
        // Skip the version 1 block, then read the version 2 header and block.
        let [isut, isstd, leap, time, typ, chars] = counts;
        r.take(block_len(
            time,
            typ,
            chars,
            leap,
            isstd.checked_add(isut)?,
            4,
        )?)?;
        let (_, counts) = Tzif::header(&mut r)?;
        let mut tzif = Tzif::block(&mut r, counts, 8, None)?;
        let footer = r.0.strip_prefix(b"\n").and_then(|rest| {
            let end = rest.iter().position(|&b| b == b'\n')?;
            let text = std::str::from_utf8(&rest[..end]).ok()?;
            if text.is_empty() {
                None
            } else {
                PosixTz::parse(text)
            }
        });
        tzif.footer = footer;
        Some(tzif)
    }

    /// Reads the magic, version and the six counts.
    fn header(r: &mut Bytes<'_>) -> Option<(u8, [usize; 6])> {
        if r.take(4)? != b"TZif" {
            return None;
        }
        let version = r.take(1)?[0];
        r.take(15)?;
        let mut counts = [0; 6];
        for c in &mut counts {
            *c = r.count()?;
        }
        Some((if version == 0 { 0 } else { version - b'0' }, counts))
    }

    /// Reads one data block with `width`-byte transition times.
    fn block(
        r: &mut Bytes<'_>,
        counts: [usize; 6],
        width: usize,
        footer: Option<PosixTz>,
    ) -> Option<Tzif> {
        let [isut, isstd, leap, time, typ, chars] = counts;
        if typ == 0
            || block_len(time, typ, chars, leap, isstd.checked_add(isut)?, width)? > r.0.len()
        {
            return None;
        }
        let mut times = Vec::with_capacity(time);
        for _ in 0..time {
            let b = r.take(width)?;
            times.push(if width == 8 {
                i64::from_be_bytes(b.try_into().ok()?)
            } else {
                i64::from(i32::from_be_bytes(b.try_into().ok()?))
            });
        }
        let mut types = Vec::with_capacity(time);
        for &t in r.take(time)? {
            let t = usize::from(t);
            if t >= typ {
                return None;
            }
            types.push(t);
        }
        let mut offsets = Vec::with_capacity(typ);
        for _ in 0..typ {
            let b = r.take(6)?;
            offsets.push(i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])));
        }
        r.take(chars + leap * (width + 4) + isstd + isut)?;
        Some(Tzif {
            times,
            types,
            offsets,
            footer,
        })
    }

    fn offset_at(&self, t: i64) -> i64 {
        let after_last = self.times.last().is_none_or(|&last| t >= last);
        if after_last && let Some(rule) = &self.footer {
            return rule.offset_at(t);
        }
        match self.times.partition_point(|&x| x <= t) {
            // Before the first transition: time type 0 (RFC 8536, section 3.2).
            0 => self.offsets[0],
            n => self.offsets[self.types[n - 1]],
        }
    }
}

/// The size of a TZif data block, or `None` when the counts are absurd.
fn block_len(
    time: usize,
    typ: usize,
    chars: usize,
    leap: usize,
    flags: usize,
    width: usize,
) -> Option<usize> {
    let times = time.checked_mul(width + 1)?;
    let types = typ.checked_mul(6)?;
    let leaps = leap.checked_mul(width + 4)?;
    times
        .checked_add(types)?
        .checked_add(chars)?
        .checked_add(leaps)?
        .checked_add(flags)
}

/// A POSIX TZ rule: standard offset and optional daylight saving time.
#[derive(Debug, Clone, PartialEq)]
struct PosixTz {
    /// Standard time, seconds east of UTC.
    std: i64,
    dst: Option<Dst>,
}

/// The daylight saving part of a POSIX TZ rule.
#[derive(Debug, Clone, PartialEq)]
struct Dst {
    /// Daylight time, seconds east of UTC.
    offset: i64,
    /// When it starts, in local standard time.
    start: (DateRule, i64),
    /// When it ends, in local daylight time.
    end: (DateRule, i64),
}

/// The day of a transition in a POSIX TZ rule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DateRule {
    /// `Jn`: day 1-365, February 29 never counted.
    Julian1(i64),
    /// `n`: day 0-365, February 29 counted.
    Julian0(i64),
    /// `Mm.w.d`: day `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    Month { month: u32, week: i64, day: i64 },
}

impl DateRule {
    /// The day number of this date in `year`.
    fn day(self, year: i64) -> i64 {
        let jan1 = days_from_civil(year, 1, 1);
        match self {
            DateRule::Julian1(n) => jan1 + n - 1 + i64::from(is_leap(year) && n >= 60),
            DateRule::Julian0(n) => jan1 + n,
            DateRule::Month { month, week, day } => {
                let first = days_from_civil(year, month, 1);
                // weekday() is below 7, so the cast is lossless.
                let delta = (day - weekday(first) as i64).rem_euclid(7);
                let mut d = first + delta + (week - 1) * 7;
                if d >= first + days_in_month(year, month) {
                    d -= 7;
                }
                d
            }
        }
    }
}

impl PosixTz {
    /// Parses a rule such as `CET-1CEST,M3.5.0,M10.5.0/3` or `<+0330>-3:30`.
    fn parse(s: &str) -> Option<PosixTz> {
        let mut p = Parser(s.as_bytes());
        p.name()?;
        let std = -p.offset()?;
        if p.0.is_empty() {
            return Some(PosixTz { std, dst: None });
        }
        p.name()?;
        let offset = if p.0.first().is_some_and(|&b| b != b',') {
            -p.offset()?
        } else {
            std + 3600
        };
        let (start, end) = if p.0.is_empty() {
            // The rule POSIX leaves to the implementation; glibc uses the US one.
            let mut d = Parser(b",M3.2.0,M11.1.0");
            (d.transition()?, d.transition()?)
        } else {
            (p.transition()?, p.transition()?)
        };
        if !p.0.is_empty() {
            return None;
        }
        Some(PosixTz {
            std,
            dst: Some(Dst { offset, start, end }),
        })
    }

    fn offset_at(&self, t: i64) -> i64 {
        let Some(dst) = &self.dst else {
            return self.std;
        };
        let (year, _, _) = civil_from_days(t.saturating_add(self.std).div_euclid(86_400));
        let start = dst.start.0.day(year) * 86_400 + dst.start.1 - self.std;
        let end = dst.end.0.day(year) * 86_400 + dst.end.1 - dst.offset;
        let in_dst = if start <= end {
            start <= t && t < end
        } else {
            !(end <= t && t < start)
        };
        if in_dst { dst.offset } else { self.std }
    }
}

/// A cursor over a POSIX TZ string.
struct Parser<'a>(&'a [u8]);

impl Parser<'_> {
    /// A zone abbreviation: letters, or anything between `<` and `>`.
    fn name(&mut self) -> Option<()> {
        if let Some(rest) = self.0.strip_prefix(b"<") {
            let end = rest.iter().position(|&b| b == b'>')?;
            self.0 = &rest[end + 1..];
            return (end > 0).then_some(());
        }
        let n = self
            .0
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        self.0 = &self.0[n..];
        (n >= 3).then_some(())
    }

    fn number(&mut self) -> Option<i64> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return None;
        }
        let text = std::str::from_utf8(&self.0[..n]).ok()?;
        self.0 = &self.0[n..];
        text.parse().ok()
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, west-positive as POSIX writes it.
    fn offset(&mut self) -> Option<i64> {
        let sign = match self.0.first() {
            Some(b'-') => {
                self.0 = &self.0[1..];
                -1
            }
            Some(b'+') => {
                self.0 = &self.0[1..];
                1
            }
            _ => 1,
        };
        let mut secs = self.number()? * 3600;
        for unit in [60, 1] {
            match self.0.strip_prefix(b":") {
                Some(rest) => {
                    self.0 = rest;
                    secs += self.number()? * unit;
                }
                None => break,
            }
        }
        Some(sign * secs)
    }

    /// `,date[/time]`.
    fn transition(&mut self) -> Option<(DateRule, i64)> {
        self.0 = self.0.strip_prefix(b",")?;
        let rule = match self.0.first()? {
            b'J' => {
                self.0 = &self.0[1..];
                let n = self.number()?;
                (1..=365).contains(&n).then_some(DateRule::Julian1(n))?
            }
            b'M' => {
                self.0 = &self.0[1..];
                let month = self.number()?;
                self.0 = self.0.strip_prefix(b".")?;
                let week = self.number()?;
                self.0 = self.0.strip_prefix(b".")?;
                let day = self.number()?;
                if !(1..=12).contains(&month) || !(1..=5).contains(&week) || day > 6 {
                    return None;
                }
                DateRule::Month {
                    month: u32::try_from(month).ok()?,
                    week,
                    day,
                }
            }
            _ => {
                let n = self.number()?;
                (0..=365).contains(&n).then_some(DateRule::Julian0(n))?
            }
        };
        let time = match self.0.strip_prefix(b"/") {
            Some(rest) => {
                self.0 = rest;
                self.offset()?
            }
            None => 7200,
        };
        Some((rule, time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds since the epoch of a UTC date and time.
    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s
    }

    #[test]
    fn asctime_format() {
        assert_eq!(format_asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(
            format_asctime(utc(2026, 11, 25, 15, 40, 5)),
            "Wed Nov 25 15:40:05 2026"
        );
        assert_eq!(
            format_asctime(utc(2000, 2, 29, 23, 59, 59)),
            "Tue Feb 29 23:59:59 2000"
        );
        assert_eq!(format_asctime(-1), "Wed Dec 31 23:59:59 1969");
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn negative_times_round_down() {
        let t = UNIX_EPOCH - std::time::Duration::from_millis(500);
        assert_eq!(unix_seconds(t), -1);
    }

    #[test]
    fn posix_rule_northern() {
        let z = PosixTz::parse("EST5EDT,M3.2.0,M11.1.0").unwrap();
        // 2026: DST from Sun Mar 8 02:00 EST (07:00Z) to Sun Nov 1 02:00 EDT (06:00Z).
        assert_eq!(z.offset_at(utc(2026, 3, 8, 6, 59, 59)), -5 * 3600);
        assert_eq!(z.offset_at(utc(2026, 3, 8, 7, 0, 0)), -4 * 3600);
        assert_eq!(z.offset_at(utc(2026, 11, 1, 5, 59, 59)), -4 * 3600);
        assert_eq!(z.offset_at(utc(2026, 11, 1, 6, 0, 0)), -5 * 3600);
        // Default rule when only the names are given.
        assert_eq!(PosixTz::parse("EST5EDT").unwrap(), z);
    }

    #[test]
    fn posix_rule_southern_and_odd_forms() {
        let z = PosixTz::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(z.offset_at(utc(2026, 7, 1, 0, 0, 0)), 10 * 3600);
        assert_eq!(z.offset_at(utc(2026, 1, 1, 0, 0, 0)), 11 * 3600);
        let z = PosixTz::parse("<+0330>-3:30").unwrap();
        assert_eq!(z.offset_at(0), 3 * 3600 + 1800);
        let z = PosixTz::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // Last Sunday of March 2026 is the 29th; 01:00Z.
        assert_eq!(z.offset_at(utc(2026, 3, 29, 0, 59, 59)), 3600);
        assert_eq!(z.offset_at(utc(2026, 3, 29, 1, 0, 0)), 7200);
        let z = PosixTz::parse("XXX3YYY,J60/0,300").unwrap();
        assert_eq!(z.offset_at(utc(2024, 3, 1, 3, 0, 0)), -2 * 3600);
        assert_eq!(z.offset_at(utc(2024, 2, 29, 12, 0, 0)), -3 * 3600);
        for bad in [
            "",
            "AB1",
            "EST",
            "EST5EDT,M13.1.0,M11.1.0",
            "EST5EDT,M3.2.0",
            "<>1",
        ] {
            assert_eq!(PosixTz::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn tzif_new_york_if_installed() {
        let Some(zone) = Zone::from_tz("America/New_York", Path::new("/usr/share/zoneinfo")) else {
            return;
        };
        assert_eq!(zone.offset_at(utc(2026, 1, 15, 12, 0, 0)), -5 * 3600);
        assert_eq!(zone.offset_at(utc(2026, 7, 1, 12, 0, 0)), -4 * 3600);
        // Beyond the transitions of any file: the footer rule decides.
        assert_eq!(zone.offset_at(utc(2150, 7, 1, 12, 0, 0)), -4 * 3600);
        assert_eq!(zone.offset_at(utc(2150, 12, 1, 12, 0, 0)), -5 * 3600);
        let t = utc(2026, 11, 25, 15, 40, 5);
        assert_eq!(
            format_asctime(t + zone.offset_at(t)),
            "Wed Nov 25 10:40:05 2026"
        );
        // Before standard time: local mean time -4:56:02.
        assert_eq!(zone.offset_at(utc(1850, 1, 1, 0, 0, 0)), -17_762);
    }

    #[test]
    fn tz_values() {
        let dir = Path::new("/nonexistent");
        assert_eq!(
            Zone::from_tz("UTC0", dir),
            Some(Zone::Rule(PosixTz { std: 0, dst: None }))
        );
        assert_eq!(Zone::from_tz(":Nowhere/Zone", dir), None);
        assert_eq!(Zone::from_tz("", dir), None);
        assert_eq!(Zone::from_tz("../../etc/passwd", dir), None);
    }

    #[test]
    fn garbage_tzif_is_refused() {
        assert_eq!(Tzif::parse(b""), None);
        assert_eq!(Tzif::parse(b"TZif2"), None);
        let mut data = b"TZif2".to_vec();
        data.extend_from_slice(&[0; 15]);
        data.extend_from_slice(&[0xff; 24]);
        assert_eq!(Tzif::parse(&data), None);
    }
}
