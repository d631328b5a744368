//! Owns the text of a log record: severity words, the sanitised message, the timestamp and the
//! `Mmm dd hh:mm:ss host syslog_name/process[pid]: text` layout of file and stderr lines.

use std::time::SystemTime;

use posthorn_message::time::civil;

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

/// Formats `now` shifted by `offset_secs` (seconds east of UTC) as `Mmm dd hh:mm:ss`, the way
/// Postfix's `msg_logger_print` does with `strftime("%b %d %H:%M:%S")`: the day is zero-padded
/// (`Nov 05`).
pub(crate) fn timestamp(now: SystemTime, offset_secs: i32) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, month, day, hour, min, sec, _) = civil(now, offset_secs);
    // `month` is 1..=12; the modulo keeps any value in range.
    let name = MONTHS[(month as usize + 11) % 12];
    format!("{name} {day:02} {hour:02}:{min:02}:{sec:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

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
        // Local zones: 2025-11-25 15:40:05 UTC is 16:40:05 in Paris, 10:40:05 in New York.
        assert_eq!(timestamp(at(1_764_085_205), 3600), "Nov 25 16:40:05");
        assert_eq!(timestamp(at(1_764_085_205), -5 * 3600), "Nov 25 10:40:05");
        // Before 1970 (a clock set wrong) still gives a valid date.
        assert_eq!(
            timestamp(UNIX_EPOCH - Duration::from_secs(86_400), 0),
            "Dec 31 00:00:00"
        );
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
