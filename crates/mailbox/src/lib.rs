//! posthorn-mailbox: the last step of local delivery, shared by the `local` and `virtual`
//! daemons. It writes one message into an mbox file, a Maildir, a plain file (a `/file`
//! destination from aliases or `.forward`) or the standard input of a command.
//!
//! # Inputs
//! - The message content as a [`std::io::Read`]: headers, blank line, body, with LF line
//!   endings (as the queue file stores it).
//! - An [`Envelope`]: the sender (for the `From ` line), the arrival time, and the header
//!   lines to prepend (`Return-Path:`, `Delivered-To:`, ...), each without its newline.
//! - Per destination options: [`MboxOptions`] (locks, `mailbox_size_limit`) and
//!   [`CommandOptions`] (shell, directory, environment, `command_time_limit`).
//!
//! # Outputs
//! `Ok` once the message is on stable storage (files) or the command exited 0, else a
//! [`DeliveryError`] that says defer ([`DeliveryError::Temporary`]) or bounce
//! ([`DeliveryError::Permanent`]), with an RFC 3463 status code and a Postfix-style reason
//! such as `cannot update mailbox /var/mail/joe for user joe. error writing message: File too
//! large`. A few conditions are logged as warnings through the `log` facade (a dotlock that
//! cannot be created in a directory the recipient may not write, a temporary file that cannot
//! be removed).
//!
//! # Privileges
//! None of its own. The caller has already switched its effective uid/gid to the recipient
//! (or to `default_privs`); every file is opened, created and locked with those rights, so
//! file system permissions and quotas apply to the recipient. Commands inherit them.
//!
//! # Formats (as Postfix's `mail_copy()`)
//! | destination | `From ` line | prepended lines | `>From ` quoting | blank line at end |
//! | --- | --- | --- | --- | --- |
//! | mbox, file | yes | yes | yes | yes |
//! | Maildir | no | yes | no | no |
//! | command | yes | yes | no | no |
//!
//! The `From ` line is Postfix's: `From SENDER  DATE` with two spaces, `MAILER-DAEMON` for the
//! null sender, the local part quoted as in RFC 5322 when needed, and `DATE` in `asctime()`
//! form in local time (`TZ`, else `/etc/localtime`). posthorn takes the time from
//! [`Envelope::arrival`]; Postfix prints the delivery time, so a caller who wants that passes
//! `SystemTime::now()`. A message that does not end in a newline gets one.
//!
//! # Durability (where the fsyncs are)
//! - mbox / file: `fdatasync` of the mailbox after the append, before `Ok`. Any failure
//!   (read, write, size limit, sync) truncates the file back to its size before the delivery,
//!   so no half message is ever left behind.
//! - Maildir: `fdatasync` of `tmp/NAME`, hard link to `new/NAME,S=SIZE`, `fsync` of `new/`
//!   (Postfix skips this one). Newly created Maildir directories are made durable by an
//!   `fsync` of their parent.
//!
//! # Errors
//! Errno values map to status codes as in Postfix's `mbox_dsn()`: `EAGAIN`/`ESTALE` 4.2.0,
//! `ENOSPC` 4.3.0, `EDQUOT`/`EFBIG` 5.2.2 (mailbox full), otherwise 5.2.0 when opening and
//! 5.3.0 when writing. Where posthorn differs from Postfix, it defers instead of bouncing:
//! a mailbox that is not a regular file, is a symlink, has several hard links or another owner
//! (4.2.0); a read error on the message content (4.3.0: the queue file is ours to fix); a
//! command that exceeds its time limit (4.3.0).

mod command;
mod copy;
mod localtime;
mod lock;
mod maildir;
mod mbox;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;

pub use command::deliver_command;
pub use lock::STALE_LOCK_AGE;
pub use maildir::deliver_maildir;
pub use mbox::{deliver_file, deliver_mbox};

/// The envelope information that ends up in the delivered copy.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The envelope sender; `""` is the null sender (written as `MAILER-DAEMON`).
    pub sender: &'a str,
    /// The time the message arrived; used for the mbox `From ` line.
    pub arrival: SystemTime,
    /// Header lines to put before the message (`Return-Path: <s>`, `Delivered-To: r`), each
    /// without its newline. CR and LF inside a line are replaced by spaces.
    pub prepend: &'a [String],
}

/// Why a delivery failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// A temporary failure: defer the recipient and try again later.
    #[error("{reason} (dsn={dsn})")]
    Temporary {
        /// RFC 3463 status code, class 4 (e.g. "4.2.0").
        dsn: &'static str,
        /// Human-readable reason, Postfix style.
        reason: String,
    },
    /// A permanent failure: bounce the recipient.
    #[error("{reason} (dsn={dsn})")]
    Permanent {
        /// RFC 3463 status code, class 5 (e.g. "5.2.2" mailbox full).
        dsn: &'static str,
        /// Human-readable reason, Postfix style.
        reason: String,
    },
}

impl DeliveryError {
    /// True when the failure is permanent (bounce), false when temporary (defer).
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent { .. })
    }

    /// The RFC 3463 status code, e.g. "4.2.0".
    pub fn dsn(&self) -> &str {
        match self {
            DeliveryError::Temporary { dsn, .. } | DeliveryError::Permanent { dsn, .. } => dsn,
        }
    }

    /// The human-readable reason (what Postfix logs inside `status=deferred (...)`).
    pub fn reason(&self) -> &str {
        match self {
            DeliveryError::Temporary { reason, .. } | DeliveryError::Permanent { reason, .. } => {
                reason
            }
        }
    }

    /// Builds a temporary or permanent error from the class digit of `dsn` ('4' = temporary).
    pub(crate) fn from_dsn(dsn: &'static str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        if dsn.starts_with('4') {
            DeliveryError::Temporary { dsn, reason }
        } else {
            DeliveryError::Permanent { dsn, reason }
        }
    }

    /// A temporary error with the given status code.
    pub(crate) fn temporary(dsn: &'static str, reason: impl Into<String>) -> Self {
        DeliveryError::Temporary {
            dsn,
            reason: reason.into(),
        }
    }

    /// The same error with `prefix` put in front of its reason.
    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        match self {
            DeliveryError::Temporary { dsn, reason } => DeliveryError::Temporary {
                dsn,
                reason: format!("{prefix}{reason}"),
            },
            DeliveryError::Permanent { dsn, reason } => DeliveryError::Permanent {
                dsn,
                reason: format!("{prefix}{reason}"),
            },
        }
    }
}

/// Options for mbox and `/file` deliveries (`mailbox_delivery_lock`, `mailbox_size_limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxOptions {
    /// Take a `PATH.lock` dotlock (skipped with a warning where the directory is not writable).
    pub dotlock: bool,
    /// Take an fcntl(2) write lock on the whole file.
    pub fcntl_lock: bool,
    /// Refuse (5.2.2) when the file would grow beyond this many bytes; 0 = no limit.
    pub size_limit: u64,
    /// How long to keep retrying busy locks before deferring (4.2.0).
    pub lock_timeout: Duration,
}

impl Default for MboxOptions {
    /// Postfix's Linux defaults: `fcntl, dotlock`, 51200000 bytes, 20 attempts 1s apart.
    fn default() -> Self {
        MboxOptions {
            dotlock: true,
            fcntl_lock: true,
            size_limit: 51_200_000,
            lock_timeout: Duration::from_secs(20),
        }
    }
}

/// Options for delivery to a command (`|command` destinations, `mailbox_command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOptions {
    /// The shell that runs `shell -c command` (`local_command_shell`, normally /bin/sh).
    pub shell: PathBuf,
    /// The working directory of the command (`command_execution_directory`, else home).
    pub cwd: PathBuf,
    /// The complete environment of the command; nothing else is inherited except a default
    /// `PATH=/usr/bin:/bin` that an entry here may override.
    pub env: Vec<(String, String)>,
    /// Kill the command (and its process group) after this long (`command_time_limit`).
    pub time_limit: Duration,
}

/// Maps an errno to a status code the way Postfix's `mbox_dsn()` does.
pub(crate) fn errno_dsn(err: Option<Errno>, default: &'static str) -> &'static str {
    match err {
        Some(Errno::EAGAIN | Errno::ESTALE) => "4.2.0",
        Some(Errno::ENOSPC) => "4.3.0",
        Some(Errno::EDQUOT | Errno::EFBIG) => "5.2.2",
        _ => default,
    }
}

/// The errno behind an I/O error, if it came from the operating system.
pub(crate) fn errno_of(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw)
}

/// An I/O error as `strerror()` prints it ("File too large"), without Rust's "(os error N)".
pub(crate) fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(n) => match text.strip_suffix(&format!(" (os error {n})")) {
            Some(plain) => plain.to_string(),
            None => text,
        },
        None => text,
    }
}

/// An errno value as `strerror()` prints it.
pub(crate) fn errno_text(e: Errno) -> String {
    strerror(&io::Error::from(e))
}

/// A delivery error from an I/O error: status code from the errno, `default` otherwise.
pub(crate) fn io_error(e: &io::Error, default: &'static str, what: &str) -> DeliveryError {
    DeliveryError::from_dsn(
        errno_dsn(errno_of(e), default),
        format!("{what}: {}", strerror(e)),
    )
}

/// The login name of the effective uid, for "cannot update mailbox X for user Y".
pub(crate) fn effective_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping_follows_postfix_mbox_dsn() {
        assert_eq!(errno_dsn(Some(Errno::EAGAIN), "5.2.0"), "4.2.0");
        assert_eq!(errno_dsn(Some(Errno::ENOSPC), "5.2.0"), "4.3.0");
        assert_eq!(errno_dsn(Some(Errno::EFBIG), "4.3.0"), "5.2.2");
        assert_eq!(errno_dsn(Some(Errno::EDQUOT), "4.3.0"), "5.2.2");
        assert_eq!(errno_dsn(Some(Errno::EACCES), "5.2.0"), "5.2.0");
        assert_eq!(errno_dsn(None, "4.3.0"), "4.3.0");
    }

    #[test]
    fn error_accessors_and_class() {
        let e = DeliveryError::from_dsn("5.2.2", "mailbox full");
        assert!(e.is_permanent());
        assert_eq!(e.dsn(), "5.2.2");
        assert_eq!(e.reason(), "mailbox full");
        let e = DeliveryError::from_dsn("4.2.0", "busy").prefixed("mailbox x: ");
        assert!(!e.is_permanent());
        assert_eq!(e.reason(), "mailbox x: busy");
        assert_eq!(e.to_string(), "mailbox x: busy (dsn=4.2.0)");
    }

    #[test]
    fn strerror_has_no_os_error_suffix() {
        let e = io::Error::from_raw_os_error(libc::EFBIG);
        assert_eq!(strerror(&e), "File too large");
        assert_eq!(
            errno_text(Errno::EAGAIN),
            "Resource temporarily unavailable"
        );
        assert_eq!(strerror(&io::Error::other("x")), "x");
    }
}
