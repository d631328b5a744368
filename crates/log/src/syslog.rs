//! Owns the syslog sink: libc `openlog(3)`/`syslog(3)` through `nix::syslog`, facility names as
//! main.cf's `syslog_facility` spells them, and Postfix's severity-to-priority mapping.

use std::ffi::{CStr, CString};
use std::sync::{Mutex, PoisonError};

use nix::syslog::{Facility, LogFlags, Priority, Severity as SysSeverity, openlog, syslog};

use crate::LogError;
use crate::format::Severity;

/// Idents handed to `openlog`, which keeps the pointer: each distinct ident is leaked once and
/// reused, so a process leaks at most a few short strings (one per `set_process` name).
static IDENTS: Mutex<Vec<&'static CStr>> = Mutex::new(Vec::new());

/// The syslog sink: the facility every record is sent with.
#[derive(Debug)]
pub(crate) struct SyslogSink {
    /// Facility from `syslog_facility`.
    facility: Facility,
}

impl SyslogSink {
    /// Parses `facility` and calls `openlog(ident, LOG_PID|LOG_NDELAY, facility)`, so the
    /// socket to /dev/log is open before any chroot.
    pub(crate) fn open(ident: &str, facility: &str) -> Result<Self, LogError> {
        let facility =
            parse_facility(facility).ok_or_else(|| LogError::UnknownFacility(facility.into()))?;
        let sink = SyslogSink { facility };
        sink.set_ident(ident)?;
        Ok(sink)
    }

    /// Re-runs `openlog` with a new ident; glibc keeps an already connected socket, so this
    /// works after chroot too.
    pub(crate) fn set_ident(&self, ident: &str) -> Result<(), LogError> {
        openlog(
            Some(static_ident(ident)),
            LogFlags::LOG_PID | LogFlags::LOG_NDELAY,
            self.facility,
        )
        .map_err(LogError::Openlog)
    }

    /// Sends one record; `body` already carries the severity word. syslog(3) reports nothing
    /// useful on failure (no daemon listening), so there is nothing to return.
    pub(crate) fn write(&self, severity: Severity, body: &str) {
        let _ = syslog(Priority::new(priority(severity), self.facility), body);
    }
}

/// Postfix's `msg_syslog` mapping: info, warning, error, then critical for fatal and panic.
/// `-v` output is logged at info, as Postfix's `msg_info` does.
fn priority(severity: Severity) -> SysSeverity {
    match severity {
        Severity::Verbose | Severity::Info => SysSeverity::LOG_INFO,
        Severity::Warning => SysSeverity::LOG_WARNING,
        Severity::Error => SysSeverity::LOG_ERR,
        Severity::Fatal | Severity::Panic => SysSeverity::LOG_CRIT,
    }
}

/// Maps a `syslog_facility` name (case-insensitive) to a facility.
fn parse_facility(name: &str) -> Option<Facility> {
    let f = match name.to_ascii_lowercase().as_str() {
        "mail" => Facility::LOG_MAIL,
        "user" => Facility::LOG_USER,
        "daemon" => Facility::LOG_DAEMON,
        "auth" | "security" => Facility::LOG_AUTH,
        "syslog" => Facility::LOG_SYSLOG,
        "lpr" => Facility::LOG_LPR,
        "news" => Facility::LOG_NEWS,
        "uucp" => Facility::LOG_UUCP,
        "kern" => Facility::LOG_KERN,
        "local0" => Facility::LOG_LOCAL0,
        "local1" => Facility::LOG_LOCAL1,
        "local2" => Facility::LOG_LOCAL2,
        "local3" => Facility::LOG_LOCAL3,
        "local4" => Facility::LOG_LOCAL4,
        "local5" => Facility::LOG_LOCAL5,
        "local6" => Facility::LOG_LOCAL6,
        "local7" => Facility::LOG_LOCAL7,
        _ => return None,
    };
    Some(f)
}

/// Returns a `'static` C copy of `ident` (NUL bytes replaced by `?`), leaking it the first time.
fn static_ident(ident: &str) -> &'static CStr {
    let owned =
        CString::new(ident.replace('\0', "?")).unwrap_or_else(|_| CString::from(c"posthorn")); // no NUL left after the replace
    let mut idents = IDENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = idents.iter().find(|s| **s == owned.as_c_str()) {
        return found;
    }
    let leaked: &'static CStr = Box::leak(owned.into_boxed_c_str());
    idents.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities() {
        assert!(matches!(parse_facility("mail"), Some(Facility::LOG_MAIL)));
        assert!(matches!(
            parse_facility("LOCAL3"),
            Some(Facility::LOG_LOCAL3)
        ));
        assert!(parse_facility("mailx").is_none());
        assert!(matches!(
            SyslogSink::open("posthorn/test", "bogus"),
            Err(LogError::UnknownFacility(f)) if f == "bogus"
        ));
    }

    #[test]
    fn idents_are_reused() {
        let a = static_ident("posthorn/x");
        let b = static_ident("posthorn/x");
        assert!(std::ptr::eq(a, b));
        assert_eq!(static_ident("a\0b").to_str().unwrap(), "a?b");
    }

    #[test]
    fn priorities() {
        assert_eq!(priority(Severity::Info), SysSeverity::LOG_INFO);
        assert_eq!(priority(Severity::Warning), SysSeverity::LOG_WARNING);
        assert_eq!(priority(Severity::Error), SysSeverity::LOG_ERR);
        assert_eq!(priority(Severity::Fatal), SysSeverity::LOG_CRIT);
        assert_eq!(priority(Severity::Panic), SysSeverity::LOG_CRIT);
    }
}
