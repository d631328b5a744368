//! Appending to an mbox file: the recipient's mailbox (`deliver_mbox`) and `/file`
//! destinations from aliases and `.forward` (`deliver_file`), as Postfix's local(8)
//! `mailbox.c` and `file.c` do it.
//!
//! Steps: dotlock, open (`O_APPEND|O_CREAT|O_NOFOLLOW`, mode 0600), check what was opened,
//! fcntl lock, check again, append, fdatasync; on any failure truncate back to the old size.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::copy::{Encoder, Format};
use crate::lock::{self, DotLock};
use crate::{
    DeliveryError, Envelope, MboxOptions, deliver_maildir, effective_user, errno_dsn, errno_of,
    errno_text, io_error, strerror,
};

/// Appends the message to the mbox file `path` (created if missing), with a `From ` line,
/// `>From ` quoting and a blank line at the end. The file must be a regular file with one
/// link, owned by the effective uid.
pub fn deliver_mbox(
    path: &Path,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    opts: &MboxOptions,
) -> Result<(), DeliveryError> {
    append(path, env, content, opts, Kind::Mailbox).map_err(|e| {
        e.prefixed(&format!(
            "cannot update mailbox {} for user {}. ",
            path.display(),
            effective_user()
        ))
    })
}

/// Delivers to a `/file` destination: mbox-style append as [`deliver_mbox`], or Maildir
/// delivery when `path` ends in `/`. Unlike a mailbox the file may have any owner and may be
/// a device such as /dev/null (then nothing is locked, truncated or synced), but an
/// executable file is refused (5.7.1), as in Postfix.
pub fn deliver_file(
    path: &Path,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    opts: &MboxOptions,
) -> Result<(), DeliveryError> {
    if path.as_os_str().as_bytes().ends_with(b"/") {
        return deliver_maildir(path, env, content, opts.size_limit).map(|_| ());
    }
    append(path, env, content, opts, Kind::File).map_err(|e| {
        e.prefixed(&format!(
            "cannot append message to file {}: ",
            path.display()
        ))
    })
}

/// Which rules apply to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A user's mailbox: regular file owned by the recipient; a dotlock that cannot be
    /// created for a reason other than permissions is an error.
    Mailbox,
    /// A `/file` destination: devices allowed, executables refused, dotlock optional.
    File,
}

/// The far future, for lock timeouts too large to add to `Instant::now()`.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

/// A temporary failure about the mailbox file itself.
fn refuse(reason: String) -> DeliveryError {
    DeliveryError::temporary("4.2.0", reason)
}

fn append(
    path: &Path,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    opts: &MboxOptions,
    kind: Kind,
) -> Result<(), DeliveryError> {
    let deadline = deadline_after(opts.lock_timeout);

    // Dotlock first, as Postfix does, but only for a regular file or one that is to be
    // created: never create /dev/null.lock.
    let _dotlock = if opts.dotlock && is_absent_or_regular(path) {
        take_dotlock(path, deadline, kind)?
    } else {
        None
    };

    let file = open(path)?;
    let meta = file
        .metadata()
        .map_err(|e| io_error(&e, "4.3.0", "cannot stat file"))?;
    let regular = meta.file_type().is_file();
    if !regular {
        if kind == Kind::Mailbox {
            return Err(refuse(format!(
                "destination {} is not a regular file",
                path.display()
            )));
        }
        // A device or FIFO: no locks, no size limit, no truncation, no fsync (Postfix drops
        // MAIL_COPY_TOFILE for these). Writes block again from here on.
        set_blocking(&file)?;
        return write_message(&file, env, content, None).map_err(CopyFailure::into_error);
    }
    check_regular(path, &meta, kind)?;
    if opts.fcntl_lock {
        lock::fcntl_lock(&file, deadline).map_err(|e| match e {
            Errno::EAGAIN | Errno::EACCES => refuse(format!(
                "unable to lock for exclusive access: {}",
                errno_text(Errno::EAGAIN)
            )),
            e => DeliveryError::from_dsn(
                errno_dsn(Some(e), "5.2.0"),
                format!("unable to lock for exclusive access: {}", errno_text(e)),
            ),
        })?;
    }
    // The file may have been renamed or unlinked while we waited for the lock.
    let meta = file
        .metadata()
        .map_err(|e| io_error(&e, "4.3.0", "cannot stat file"))?;
    let same = std::fs::symlink_metadata(path)
        .is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino());
    if meta.nlink() != 1 || !same {
        log::warn!("{}: file status changed unexpectedly", path.display());
        return Err(refuse(
            "target file status changed unexpectedly".to_string(),
        ));
    }

    let original = meta.len();
    let limit = (opts.size_limit > 0).then_some(opts.size_limit);
    let result = write_message(&file, env, content, limit.map(|l| (original, l)))
        .and_then(|()| file.sync_data().map_err(CopyFailure::Write));
    if let Err(failure) = result {
        // Never leave half a message: cut the file back while we still hold the locks.
        if let Err(e) = file.set_len(original) {
            log::warn!(
                "{}: cannot truncate to {} bytes after failed delivery: {}",
                path.display(),
                original,
                e
            );
        }
        return Err(failure.into_error());
    }
    Ok(())
}

/// True when `path` does not exist or is a regular file (symlinks are not followed).
fn is_absent_or_regular(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type().is_file(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Takes the dotlock. A lock held by someone else past the deadline defers; a directory
/// where the recipient may not create files only earns a warning (Postfix does the same for
/// a /var/mail that is not writable by users), as does any failure for a `/file`.
fn take_dotlock(
    path: &Path,
    deadline: Instant,
    kind: Kind,
) -> Result<Option<DotLock>, DeliveryError> {
    match lock::dotlock(path, deadline) {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(refuse(format!(
            "unable to create lock file {}: {}",
            lock::dotlock_path(path).display(),
            strerror(&e)
        ))),
        Err(e)
            if kind == Kind::File
                || matches!(
                    errno_of(&e),
                    Some(Errno::EACCES | Errno::EPERM | Errno::EROFS)
                ) =>
        {
            log::warn!(
                "{}: cannot create dotlock: {}; continuing without it",
                lock::dotlock_path(path).display(),
                strerror(&e)
            );
            Ok(None)
        }
        Err(e) => Err(io_error(
            &e,
            "5.2.0",
            &format!(
                "unable to create lock file {}",
                lock::dotlock_path(path).display()
            ),
        )),
    }
}

/// Opens for appending, creating the file with mode 0600. `O_NOFOLLOW` refuses a symlink;
/// `O_NONBLOCK` keeps a FIFO without reader from hanging the open.
fn open(path: &Path) -> Result<File, DeliveryError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| {
            let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if symlink {
                refuse(format!("destination {} is a symbolic link", path.display()))
            } else {
                io_error(&e, "5.2.0", "cannot open file")
            }
        })
}

/// The checks on an opened regular file.
fn check_regular(path: &Path, meta: &Metadata, kind: Kind) -> Result<(), DeliveryError> {
    if meta.nlink() != 1 {
        return Err(refuse(format!(
            "destination {} has too many links ({} hard links)",
            path.display(),
            meta.nlink()
        )));
    }
    match kind {
        Kind::Mailbox => {
            let euid = nix::unistd::geteuid().as_raw();
            if meta.uid() != euid {
                log::warn!(
                    "{}: mailbox is owned by uid {}, not by the recipient (uid {})",
                    path.display(),
                    meta.uid(),
                    euid
                );
                return Err(refuse(format!(
                    "destination {} is not owned by recipient",
                    path.display()
                )));
            }
        }
        Kind::File => {
            if meta.mode() & 0o111 != 0 {
                return Err(DeliveryError::Permanent {
                    dsn: "5.7.1",
                    reason: "file is executable".to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Clears `O_NONBLOCK` again (it was only for the open).
fn set_blocking(file: &File) -> Result<(), DeliveryError> {
    let flags = fcntl(file, FcntlArg::F_GETFL)
        .map_err(|e| io_error(&e.into(), "4.3.0", "cannot get file flags"))?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(file, FcntlArg::F_SETFL(flags))
        .map_err(|e| io_error(&e.into(), "4.3.0", "cannot set file flags"))?;
    Ok(())
}

/// How a copy failed.
#[derive(Debug)]
pub(crate) enum CopyFailure {
    /// Reading the message content failed.
    Read(io::Error),
    /// Writing the destination failed (or the size limit was reached: `EFBIG`).
    Write(io::Error),
}

impl CopyFailure {
    /// The delivery error, in Postfix's words.
    pub(crate) fn into_error(self) -> DeliveryError {
        match self {
            CopyFailure::Read(e) => DeliveryError::temporary(
                "4.3.0",
                format!("error reading message: {}", strerror(&e)),
            ),
            CopyFailure::Write(e) => io_error(&e, "5.3.0", "error writing message"),
        }
    }
}

/// Writes the mbox copy of the message to `out`. With `limit = Some((start, max))` the
/// destination, which already holds `start` bytes, may not grow beyond `max` bytes: the write
/// that would cross it fails with `EFBIG`, as RLIMIT_FSIZE makes it fail for Postfix.
pub(crate) fn write_message(
    mut out: &File,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    limit: Option<(u64, u64)>,
) -> Result<(), CopyFailure> {
    copy_to(&mut out, env, content, Format::MBOX, limit).map(|_| ())
}

/// Streams the copy in `format` to `out`; see [`write_message`] for `limit`. Returns the
/// number of bytes written.
pub(crate) fn copy_to(
    out: &mut dyn Write,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    format: Format,
    limit: Option<(u64, u64)>,
) -> Result<u64, CopyFailure> {
    let mut encoder = Encoder::new(env, content, format);
    let mut buf = Vec::with_capacity(80 * 1024);
    let mut written: u64 = 0;
    loop {
        buf.clear();
        let more = encoder.fill(&mut buf).map_err(CopyFailure::Read)?;
        let len = buf.len() as u64;
        if let Some((start, max)) = limit
            && start.saturating_add(written).saturating_add(len) > max
        {
            return Err(CopyFailure::Write(io::Error::from_raw_os_error(
                libc::EFBIG,
            )));
        }
        out.write_all(&buf).map_err(CopyFailure::Write)?;
        written += len;
        if !more {
            return Ok(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::from_line;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    fn opts() -> MboxOptions {
        MboxOptions {
            dotlock: true,
            fcntl_lock: true,
            size_limit: 0,
            lock_timeout: Duration::from_secs(5),
        }
    }

    fn arrival() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_621_205)
    }

    fn prepend() -> Vec<String> {
        vec![
            "Return-Path: <alice@example.org>".to_string(),
            "Delivered-To: bob@example.com".to_string(),
        ]
    }

    fn deliver(
        path: &Path,
        sender: &str,
        content: &[u8],
        o: &MboxOptions,
    ) -> Result<(), DeliveryError> {
        let p = prepend();
        let env = Envelope {
            sender,
            arrival: arrival(),
            prepend: &p,
        };
        deliver_mbox(path, &env, &mut &content[..], o)
    }

    /// The exact bytes expected for one delivered message.
    fn expected(sender: &str, body: &str) -> String {
        format!(
            "{}Return-Path: <alice@example.org>\nDelivered-To: bob@example.com\n{body}\n",
            from_line(sender, arrival())
        )
    }

    const MSG: &str = "Subject: hi\n\nhello\n";

    #[test]
    fn new_mbox_is_created_with_exact_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        deliver(&path, "alice@example.org", MSG.as_bytes(), &opts()).unwrap();
        let got = std::fs::read_to_string(&path).unwrap();
        assert_eq!(got, expected("alice@example.org", MSG));
        assert!(got.starts_with("From alice@example.org  "));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("bob.lock").exists());
    }

    #[test]
    fn append_to_existing_mbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        deliver(&path, "alice@example.org", MSG.as_bytes(), &opts()).unwrap();
        deliver(&path, "", b"Subject: 2\n\nsecond\n", &opts()).unwrap();
        let got = std::fs::read_to_string(&path).unwrap();
        let want = expected("alice@example.org", MSG) + &expected("", "Subject: 2\n\nsecond\n");
        assert_eq!(got, want);
    }

    #[test]
    fn from_lines_are_quoted_in_headers_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        let msg =
            "From old@example.org Mon Jan 1\nSubject: x\n\nFrom here\n>From there\nFrom\nA From \n";
        deliver(&path, "a@b", msg.as_bytes(), &opts()).unwrap();
        let quoted = ">From old@example.org Mon Jan 1\nSubject: x\n\n>From here\n>From there\nFrom\nA From \n";
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected("a@b", quoted)
        );
    }

    #[test]
    fn null_sender_is_mailer_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        deliver(&path, "", MSG.as_bytes(), &opts()).unwrap();
        let got = std::fs::read_to_string(&path).unwrap();
        assert!(got.starts_with("From MAILER-DAEMON  "), "{got}");
        assert_eq!(got, expected("", MSG));
    }

    #[test]
    fn missing_final_newline_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        deliver(&path, "a@b", b"Subject: x\n\nno newline", &opts()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected("a@b", "Subject: x\n\nno newline\n")
        );
    }

    #[test]
    fn size_limit_refuses_and_leaves_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        deliver(&path, "a@b", MSG.as_bytes(), &opts()).unwrap();
        let before = std::fs::read(&path).unwrap();
        let o = MboxOptions {
            size_limit: before.len() as u64 + 50,
            ..opts()
        };
        let err = deliver(&path, "a@b", MSG.as_bytes(), &o).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.dsn(), "5.2.2");
        let want = format!(
            "cannot update mailbox {} for user {}. error writing message: File too large",
            path.display(),
            effective_user()
        );
        assert_eq!(err.reason(), want);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Exactly at the limit is allowed.
        let one = expected("a@b", MSG).len() as u64;
        let o = MboxOptions {
            size_limit: before.len() as u64 + one,
            ..opts()
        };
        deliver(&path, "a@b", MSG.as_bytes(), &o).unwrap();
    }

    #[test]
    fn symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("bob");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = deliver(&link, "a@b", MSG.as_bytes(), &opts()).unwrap_err();
        assert!(!err.is_permanent());
        assert!(err.reason().contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read(&real).unwrap(), b"");
        // A dangling symlink must not create its target either.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let err = deliver(&dangling, "a@b", MSG.as_bytes(), &opts()).unwrap_err();
        assert!(err.reason().contains("is a symbolic link"), "{err}");
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn hard_linked_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        std::fs::write(&path, b"").unwrap();
        std::fs::hard_link(&path, dir.path().join("other")).unwrap();
        let err = deliver(&path, "a@b", MSG.as_bytes(), &opts()).unwrap_err();
        assert!(!err.is_permanent());
        assert!(err.reason().contains("too many links"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = deliver(dir.path(), "a@b", MSG.as_bytes(), &opts()).unwrap_err();
        assert!(
            err.reason().contains("cannot open file: Is a directory"),
            "{err}"
        );
    }

    #[test]
    fn busy_dotlock_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        let lock = dir.path().join("bob.lock");
        std::fs::write(&lock, b"").unwrap();
        let remover = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::remove_file(lock).unwrap();
            })
        };
        let start = Instant::now();
        deliver(&path, "a@b", MSG.as_bytes(), &opts()).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        remover.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected("a@b", MSG)
        );
        assert!(!lock.exists());
    }

    #[test]
    fn busy_dotlock_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        let lock = dir.path().join("bob.lock");
        std::fs::write(&lock, b"").unwrap();
        let o = MboxOptions {
            lock_timeout: Duration::from_millis(200),
            ..opts()
        };
        let start = Instant::now();
        let err = deliver(&path, "a@b", MSG.as_bytes(), &o).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(!err.is_permanent());
        assert_eq!(err.dsn(), "4.2.0");
        assert!(err.reason().contains("unable to create lock file"), "{err}");
        assert!(!path.exists());
        // Someone else's lock is left alone.
        assert!(lock.exists());
    }

    /// Holds an fcntl lock on `path` from another process (python3) for `hold`; returns
    /// once the lock is taken, or `None` where python3 is not installed.
    fn hold_fcntl_lock(path: &Path, hold: Duration) -> Option<std::process::Child> {
        use std::io::BufRead;
        let script = format!(
            "import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep({})\n",
            hold.as_secs_f64()
        );
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n");
        Some(child)
    }

    #[test]
    fn busy_fcntl_lock_is_waited_for_or_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        std::fs::write(&path, b"").unwrap();
        let Some(mut holder) = hold_fcntl_lock(&path, Duration::from_millis(400)) else {
            return;
        };
        let start = Instant::now();
        deliver(&path, "a@b", MSG.as_bytes(), &opts()).unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        holder.wait().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected("a@b", MSG)
        );

        let mut holder = hold_fcntl_lock(&path, Duration::from_secs(3)).unwrap();
        let o = MboxOptions {
            lock_timeout: Duration::from_millis(200),
            ..opts()
        };
        let err = deliver(&path, "a@b", MSG.as_bytes(), &o).unwrap_err();
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert_eq!(err.dsn(), "4.2.0");
        assert!(
            err.reason()
                .ends_with("unable to lock for exclusive access: Resource temporarily unavailable"),
            "{err}"
        );
        assert!(!dir.path().join("bob.lock").exists());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected("a@b", MSG)
        );
    }

    /// Yields `good` bytes, then fails.
    struct Broken {
        good: Vec<u8>,
    }

    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.good.len());
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn read_error_truncates_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        deliver(&path, "a@b", MSG.as_bytes(), &opts()).unwrap();
        let before = std::fs::read(&path).unwrap();
        let p = prepend();
        let env = Envelope {
            sender: "a@b",
            arrival: arrival(),
            prepend: &p,
        };
        let mut broken = Broken {
            good: vec![b'x'; 200_000],
        };
        let err = deliver_mbox(&path, &env, &mut broken, &opts()).unwrap_err();
        assert!(!err.is_permanent());
        assert!(
            err.reason()
                .ends_with("error reading message: disk on fire"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!dir.path().join("bob.lock").exists());
    }

    #[test]
    fn wrong_owner_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        std::fs::write(&path, b"").unwrap();
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(12345)), None).unwrap();
        let err = deliver(&path, "a@b", MSG.as_bytes(), &opts()).unwrap_err();
        assert!(!err.is_permanent());
        assert!(err.reason().contains("is not owned by recipient"), "{err}");
    }

    #[test]
    fn locks_can_be_switched_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob");
        std::fs::write(dir.path().join("bob.lock"), b"").unwrap();
        let o = MboxOptions {
            dotlock: false,
            fcntl_lock: false,
            ..opts()
        };
        deliver(&path, "a@b", MSG.as_bytes(), &o).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected("a@b", MSG)
        );
    }

    fn deliver_to_file(path: &Path, content: &[u8]) -> Result<(), DeliveryError> {
        let p = prepend();
        let env = Envelope {
            sender: "a@b",
            arrival: arrival(),
            prepend: &p,
        };
        deliver_file(path, &env, &mut &content[..], &opts())
    }

    #[test]
    fn file_append_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        deliver_to_file(&path, MSG.as_bytes()).unwrap();
        deliver_to_file(&path, b"From x\n\nbody").unwrap();
        let want = expected("a@b", MSG) + &expected("a@b", ">From x\n\nbody\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
    }

    #[test]
    fn file_ending_in_slash_is_a_maildir() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}/Maildir/", dir.path().display());
        deliver_to_file(Path::new(&path), MSG.as_bytes()).unwrap();
        let new: Vec<_> = std::fs::read_dir(dir.path().join("Maildir/new"))
            .unwrap()
            .collect();
        assert_eq!(new.len(), 1);
        let got = std::fs::read_to_string(new[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(
            got,
            format!("Return-Path: <alice@example.org>\nDelivered-To: bob@example.com\n{MSG}")
        );
    }

    #[test]
    fn file_may_be_dev_null_but_not_executable() {
        deliver_to_file(Path::new("/dev/null"), MSG.as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = deliver_to_file(&path, MSG.as_bytes()).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.dsn(), "5.7.1");
        assert_eq!(
            err.reason(),
            format!(
                "cannot append message to file {}: file is executable",
                path.display()
            )
        );
    }

    #[test]
    fn unwritable_directory_skips_dotlock() {
        if nix::unistd::geteuid().is_root() {
            return; // root may write anywhere; nothing to test
        }
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let path = spool.join("bob");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o555)).unwrap();
        let result = deliver(&path, "a@b", MSG.as_bytes(), &opts());
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            expected("a@b", MSG)
        );
    }
}
