//! Maildir delivery (<https://cr.yp.to/proto/maildir.html>): write `tmp/NAME`, sync it,
//! hard-link it to `new/NAME,S=SIZE`, sync `new/`, remove the `tmp/` name.
//!
//! `NAME` is `SECONDS.MMICROSECONDSPPIDQCOUNTER.HOSTNAME`: seconds and microseconds of the
//! delivery, the process id and a per-process counter make it unique on this host, and the
//! host name (with `/` as `\057` and `:` as `\072`) across hosts. `,S=SIZE` is the file size
//! in bytes, which Dovecot and others use to skip a stat(2).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;

use crate::copy::Format;
use crate::mbox::{CopyFailure, copy_to};
use crate::{DeliveryError, Envelope, errno_of, io_error};

/// Delivers the message into the Maildir `dir` (its `tmp`, `new` and `cur` are created with
/// mode 0700 when missing, parents included) and returns the path of the file in `new/`. The
/// file holds the prepended lines and the message as is: no `From ` line, no quoting.
/// `size_limit` (0 = none) refuses larger files with 5.2.2.
pub fn deliver_maildir(
    dir: &Path,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    size_limit: u64,
) -> Result<PathBuf, DeliveryError> {
    deliver(dir, env, content, size_limit).map_err(|e| e.prefixed("maildir delivery failed: "))
}

fn deliver(
    dir: &Path,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    size_limit: u64,
) -> Result<PathBuf, DeliveryError> {
    let (mut file, tmp) = create_tmp(dir)?;
    let limit = (size_limit > 0).then_some((0, size_limit));
    let size = copy_to(&mut file, env, content, Format::MAILDIR, limit)
        .and_then(|size| file.sync_data().map(|()| size).map_err(CopyFailure::Write))
        .map_err(CopyFailure::into_error)?;
    drop(file);

    let new_dir = dir.join("new");
    let new = new_dir.join(format!("{},S={size}", tmp.name));
    link_into_new(dir, &tmp.path, &new)?;
    // The message counts as delivered only once its name in new/ is on disk.
    if let Err(e) = sync_dir(&new_dir) {
        let _ = std::fs::remove_file(&new);
        return Err(io_error(
            &e,
            "4.3.0",
            &format!("cannot sync directory {}", new_dir.display()),
        ));
    }
    Ok(new)
}

/// A file in `tmp/`, removed when this is dropped (after the link, or on failure).
struct TmpFile {
    path: PathBuf,
    /// The unique base name.
    name: String,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("remove {}: {}", self.path.display(), e),
        }
    }
}

/// Creates a new file in `dir/tmp/` with a unique name, making the Maildir if needed.
fn create_tmp(dir: &Path) -> Result<(File, TmpFile), DeliveryError> {
    let tmp_dir = dir.join("tmp");
    let mut made = false;
    let mut attempts = 0;
    loop {
        let name = unique_name();
        let path = tmp_dir.join(&name);
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match opened {
            Ok(file) => return Ok((file, TmpFile { path, name })),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !made => {
                make_maildir(dir)?;
                made = true;
            }
            // Only a clock stepping back together with a reused pid gets here.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 5 => {
                attempts += 1;
            }
            Err(e) => {
                return Err(io_error(
                    &e,
                    "5.2.0",
                    &format!("create maildir file {}", path.display()),
                ));
            }
        }
    }
}

/// Creates `dir` (and missing parents) and its `tmp`, `new` and `cur`, all mode 0700, and
/// syncs the directories that got new entries.
fn make_maildir(dir: &Path) -> Result<(), DeliveryError> {
    let failed = |path: &Path, e: &io::Error| {
        if errno_of(e) == Some(Errno::EACCES) {
            log::warn!("perhaps you need to create the maildirs in advance");
        }
        io_error(
            e,
            "5.2.0",
            &format!("create maildir directory {}", path.display()),
        )
    };
    let root_existed = dir.is_dir();
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(dir, &e))?;
    for sub in ["tmp", "new", "cur"] {
        let path = dir.join(sub);
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(&path, &e)),
        }
    }
    let mut to_sync = vec![dir];
    if !root_existed {
        to_sync.extend(dir.parent().filter(|p| !p.as_os_str().is_empty()));
    }
    for d in to_sync {
        sync_dir(d).map_err(|e| {
            io_error(
                &e,
                "4.3.0",
                &format!("cannot sync directory {}", d.display()),
            )
        })?;
    }
    Ok(())
}

/// Gives the message its name in `new/`: a hard link (which, unlike rename, never replaces
/// an existing file), or a rename where the file system has no hard links.
fn link_into_new(dir: &Path, tmp: &Path, new: &Path) -> Result<(), DeliveryError> {
    let mut result = std::fs::hard_link(tmp, new);
    if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        make_maildir(dir)?;
        result = std::fs::hard_link(tmp, new);
    }
    if let Err(e) = &result
        && matches!(
            errno_of(e),
            Some(Errno::EPERM | Errno::EOPNOTSUPP | Errno::EMLINK)
        )
        && !new.exists()
    {
        result = std::fs::rename(tmp, new);
    }
    result.map_err(|e| {
        io_error(
            &e,
            "5.2.0",
            &format!("create maildir file {}", new.display()),
        )
    })
}

/// fsync(2) of a directory, so that the names it holds survive a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `SECONDS.MMICROSECONDSPPIDQCOUNTER.HOSTNAME`, unique for every call on this host.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hostname()
    )
}

/// This host's name, made safe for Maildir file names.
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| match nix::unistd::gethostname() {
        Ok(name) if !name.is_empty() => safe_hostname(&name.to_string_lossy()),
        Ok(_) => "localhost".to_string(),
        Err(e) => {
            log::warn!("gethostname: {}", crate::errno_text(e));
            "localhost".to_string()
        }
    })
}

/// The Maildir spec's escapes: `/` becomes `\057` and `:` becomes `\072`.
fn safe_hostname(name: &str) -> String {
    name.replace('/', "\\057").replace(':', "\\072")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MSG: &str = "From: a@b\nSubject: hi\n\nFrom the body\n";

    fn prepend() -> Vec<String> {
        vec![
            "Return-Path: <a@b>".to_string(),
            "Delivered-To: c@d".to_string(),
        ]
    }

    fn deliver_bytes(dir: &Path, content: &[u8], limit: u64) -> Result<PathBuf, DeliveryError> {
        let p = prepend();
        let env = Envelope {
            sender: "a@b",
            arrival: SystemTime::now(),
            prepend: &p,
        };
        deliver_maildir(dir, &env, &mut &content[..], limit)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn creates_dirs_and_delivers_exact_content() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("home/bob/Maildir");
        let path = deliver_bytes(&dir, MSG.as_bytes(), 0).unwrap();
        for sub in ["tmp", "new", "cur"] {
            let meta = std::fs::metadata(dir.join(sub)).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{sub}");
        }
        assert_eq!(path.parent().unwrap(), dir.join("new"));
        let want = format!("Return-Path: <a@b>\nDelivered-To: c@d\n{MSG}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!(",S={}", want.len())), "{name}");
        assert!(
            name.contains(&format!("P{}Q", std::process::id())),
            "{name}"
        );
        assert!(name.contains(".M"), "{name}");
        assert!(!name.contains(':') && !name.contains('/'), "{name}");
        assert!(names(&dir.join("tmp")).is_empty());
        assert!(names(&dir.join("cur")).is_empty());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn two_deliveries_get_distinct_names() {
        let top = tempfile::tempdir().unwrap();
        let dir = format!("{}/Maildir/", top.path().display());
        let a = deliver_bytes(Path::new(&dir), MSG.as_bytes(), 0).unwrap();
        let b = deliver_bytes(Path::new(&dir), MSG.as_bytes(), 0).unwrap();
        assert_ne!(a, b);
        assert_eq!(names(&top.path().join("Maildir/new")).len(), 2);
        assert!(names(&top.path().join("Maildir/tmp")).is_empty());
    }

    #[test]
    fn missing_newline_is_added() {
        let top = tempfile::tempdir().unwrap();
        let path = deliver_bytes(top.path(), b"Subject: x\n\nbody", 0).unwrap();
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            "Return-Path: <a@b>\nDelivered-To: c@d\nSubject: x\n\nbody\n"
        );
    }

    #[test]
    fn size_limit_refuses_and_leaves_nothing() {
        let top = tempfile::tempdir().unwrap();
        let err = deliver_bytes(top.path(), MSG.as_bytes(), 20).unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.dsn(), "5.2.2");
        assert_eq!(
            err.reason(),
            "maildir delivery failed: error writing message: File too large"
        );
        assert!(names(&top.path().join("tmp")).is_empty());
        assert!(names(&top.path().join("new")).is_empty());
    }

    #[test]
    fn read_error_defers_and_leaves_nothing() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("bad queue file"))
            }
        }
        let top = tempfile::tempdir().unwrap();
        let env = Envelope {
            sender: "",
            arrival: SystemTime::now(),
            prepend: &[],
        };
        let err = deliver_maildir(top.path(), &env, &mut Failing, 0).unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.dsn(), "4.3.0");
        assert!(names(&top.path().join("tmp")).is_empty());
        assert!(names(&top.path().join("new")).is_empty());
    }

    #[test]
    fn not_a_directory_fails() {
        let top = tempfile::tempdir().unwrap();
        let file = top.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let err = deliver_bytes(&file, MSG.as_bytes(), 0).unwrap_err();
        assert!(
            err.reason().starts_with("maildir delivery failed: "),
            "{err}"
        );
    }

    #[test]
    fn hostname_escapes() {
        assert_eq!(safe_hostname("a/b:c.example"), "a\\057b\\072c.example");
        assert!(!hostname().is_empty());
    }
}
