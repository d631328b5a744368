//! Owns the text of a log record: severity words, the sanitised message, the timestamp and the
//! `Mmm dd hh:mm:ss host syslog_name/process[pid]: text` layout of file and stderr lines.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest message text kept in one record, in bytes; Postfix's `MSG_LOGGER_RECLEN` ("unlimited
/// logging is a liability"). Longer text is cut at a character boundary.
pub(crate) const MAX_TEXT: usize = 2000;

/// The severity of one record, in Postfix's terms (`msg_info` .. `msg_panic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// `-v` output (`debug!`/`trace!`): written only when verbose, with no prefix.
    Verbose,
    /// `info!`: the text as is.
    Info,
    /// `warn!`: `warning: text`.
    Warning,
    /// `error!`: `error: text`.
    Error,
    /// [`crate::fatal`]: `fatal: text`, then the process exits.
    Fatal,
    /// [`crate::panic_msg`]: `panic: text`, then the process exits.
    Panic,
}

impl Severity {
    /// Maps a `log` crate level to a Postfix severity.
    pub(crate) fn from_level(level: log::Level) -> Self {
        match level {
            log::Level::Error => Severity::Error,
            log::Level::Warn => Severity::Warning,
            log::Level::Info => Severity::Info,
            log::Level::Debug | log::Level::Trace => Severity::Verbose,
        }
    }

    /// The word Postfix puts before the text, with its `": "`; empty for informational records.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Severity::Verbose | Severity::Info => "",
            Severity::Warning => "warning: ",
            Severity::Error => "error: ",
            Severity::Fatal => "fatal: ",
            Severity::Panic => "panic: ",
        }
    }

    /// True for the severities that commands also print on stderr (`also_stderr`).
    pub(crate) fn is_problem(self) -> bool {
        !matches!(self, Severity::Verbose | Severity::Info)
    }
}

/// Returns `prefix + text` made safe for a one-line record: trailing line ends dropped, control
/// characters (CR, LF, TAB, NUL, DEL, C1) replaced by `?` as Postfix's `printable()` does, and
/// the text cut to [`MAX_TEXT`] bytes.
pub(crate) fn body(severity: Severity, text: &str) -> String {
    let text = text.trim_end_matches(['\r', '\n']);
    let mut out = String::with_capacity(severity.prefix().len() + text.len().min(MAX_TEXT));
    out.push_str(severity.prefix());
    let mut kept = 0;
    for c in text.chars() {
        let c = if c.is_control() { '?' } else { c };
        kept += c.len_utf8();
        if kept > MAX_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

/// Builds one complete file/stderr line, newline included, ready for a single write(2).
pub(crate) fn line(stamp: &str, host: &str, tag: &str, pid: u32, body: &str) -> String {
    format!("{stamp} {host} {tag}[{pid}]: {body}\n")
}

/// Formats `now` shifted by `offset_secs` as `Mmm dd hh:mm:ss`, the way Postfix's
/// `msg_logger_print` does with `strftime("%b %d %H:%M:%S")`: the day is zero-padded (`Nov 05`).
pub(crate) fn timestamp(now: SystemTime, offset_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX / 2),
    } + offset_secs;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (_, month, day) = civil_from_days(days);
    let name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{name} {day:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Converts days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn timestamp_layout() {
        // 2025-11-25 15:40:05 UTC
        assert_eq!(timestamp(at(1_764_085_205), 0), "Nov 25 15:40:05");
        // 2025-11-05 03:04:09 UTC: day zero-padded like strftime %d.
        assert_eq!(timestamp(at(1_762_311_849), 0), "Nov 05 03:04:09");
        assert_eq!(timestamp(at(0), 0), "Jan 01 00:00:00");
        // Offsets move across midnight and month ends.
        assert_eq!(timestamp(at(0), -1), "Dec 31 23:59:59");
        assert_eq!(timestamp(at(1_709_164_800), 3600), "Feb 29 01:00:00");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    }

    #[test]
    fn body_prefix_and_sanitising() {
        assert_eq!(body(Severity::Info, "ABC: removed"), "ABC: removed");
        assert_eq!(body(Severity::Warning, "disk low"), "warning: disk low");
        assert_eq!(body(Severity::Error, "x"), "error: x");
        assert_eq!(body(Severity::Fatal, "x"), "fatal: x");
        assert_eq!(body(Severity::Panic, "x"), "panic: x");
        assert_eq!(body(Severity::Verbose, "x"), "x");
        assert_eq!(body(Severity::Info, "a\nb\tc\0d\u{7f}\n"), "a?b?c?d?");
        assert_eq!(body(Severity::Info, "héllo <ü@x>"), "héllo <ü@x>");
    }

    #[test]
    fn body_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let b = body(Severity::Warning, &long);
        assert_eq!(b.len(), "warning: ".len() + MAX_TEXT);
        let b = body(Severity::Info, &format!("a{long}"));
        assert_eq!(b.len(), MAX_TEXT - 1);
    }

    #[test]
    fn line_layout() {
        assert_eq!(
            line(
                "Nov 25 15:40:05",
                "mx",
                "posthorn/smtpd",
                1234,
                "connect from x"
            ),
            "Nov 25 15:40:05 mx posthorn/smtpd[1234]: connect from x\n"
        );
    }
}
