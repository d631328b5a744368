//! Rewriting main.cf or master.cf safely: one editor at a time, readers see the old or the new
//! file and never a partial one.
//!
//! Like Postfix's edit_file(3): the new text goes to `FILE.tmp`, which is locked (flock)
//! before anything is read, so concurrent `postconf -e` runs take turns and none loses
//! another's change; after locking, the lock holder checks that `FILE.tmp` is still the file
//! it locked (a previous holder may have renamed it into place) and starts over if not. The
//! new text is written, fsync'd, given the old file's mode (and owner, when allowed), and
//! renamed over the file; then the directory is fsync'd. An edit that changes nothing
//! writes nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::{EX_CANTCREAT, EX_CONFIG, EX_IOERR, Fatal, io_text};

/// Whether the file was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The edit produced the same text; the file was not touched.
    Unchanged,
    /// The new text replaced the file.
    Written,
}

/// How often to retry when the lock file was renamed away under us.
const LOCK_ATTEMPTS: usize = 100;

/// Removes the temporary file unless disarmed (after the rename).
struct TempGuard {
    /// The temporary file.
    path: PathBuf,
    /// Still to be removed.
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the file is ours (we hold its lock) and holds no data anyone needs.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads `path`, applies `edit` to its text and, when the text changed, replaces the file.
pub fn update(
    path: &Path,
    edit: impl FnOnce(&str) -> Result<String, Fatal>,
) -> Result<Outcome, Fatal> {
    let tmp = temp_path(path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut locked = lock_temp(&tmp, &dir)?;
    let mut guard = TempGuard {
        path: tmp.clone(),
        armed: true,
    };

    let (bytes, meta) = match fs::read(path).and_then(|b| Ok((b, fs::metadata(path)?))) {
        Ok(found) => found,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Fatal::new(
                EX_CONFIG,
                format!(
                    "open {} for reading: {} (create the file first, an empty one will do, or name another directory with -c)",
                    path.display(),
                    io_text(&e)
                ),
            ));
        }
        Err(e) => {
            return Err(Fatal::new(
                EX_CONFIG,
                format!("open {} for reading: {}", path.display(), io_text(&e)),
            ));
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Fatal::new(
            EX_CONFIG,
            format!(
                "{}: line {line}: text is not valid UTF-8; fix the file with a text editor",
                path.display()
            ),
        )
    })?;
    let new = edit(&text)?;
    if new == text {
        return Ok(Outcome::Unchanged);
    }

    let write_error = |what: &str, e: io::Error| {
        Fatal::new(
            EX_IOERR,
            format!(
                "{what} {}: {}; {} is unchanged",
                tmp.display(),
                io_text(&e),
                path.display()
            ),
        )
    };
    locked.set_len(0).map_err(|e| write_error("truncate", e))?;
    locked
        .write_all(new.as_bytes())
        .map_err(|e| write_error("write", e))?;
    locked
        .set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| write_error("chmod", e))?;
    let ours = locked.metadata().map_err(|e| write_error("stat", e))?;
    if ours.uid() != meta.uid() || ours.gid() != meta.gid() {
        // Keep the owner when we may (root); otherwise the file becomes ours, as with any
        // editor that writes a new file.
        let _ = std::os::unix::fs::fchown(&*locked, Some(meta.uid()), Some(meta.gid()));
    }
    locked.sync_all().map_err(|e| write_error("fsync", e))?;
    fs::rename(&tmp, path).map_err(|e| {
        Fatal::new(
            EX_IOERR,
            format!(
                "rename {} to {}: {}; {} is unchanged",
                tmp.display(),
                path.display(),
                io_text(&e),
                path.display()
            ),
        )
    })?;
    guard.armed = false;
    // The rename is durable once the directory is on disk.
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| {
        Fatal::new(
            EX_IOERR,
            format!("fsync {}: {}", dir.display(), io_text(&e)),
        )
    })?;
    drop(locked);
    Ok(Outcome::Written)
}

/// `FILE.tmp` next to `FILE`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Creates (or opens) and locks the temporary file, making sure the locked file is the one
/// that is still at `tmp`.
fn lock_temp(tmp: &Path, dir: &Path) -> Result<Flock<File>, Fatal> {
    for _ in 0..LOCK_ATTEMPTS {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(tmp)
            .map_err(|e| {
                let (code, hint) = match e.kind() {
                    io::ErrorKind::PermissionDenied => (
                        EX_CANTCREAT,
                        format!(
                            " (run postconf as a user who may write to {}, usually root)",
                            dir.display()
                        ),
                    ),
                    io::ErrorKind::NotFound => (
                        EX_CONFIG,
                        format!(
                            " (there is no directory {}; name the configuration directory with -c or MAIL_CONFIG)",
                            dir.display()
                        ),
                    ),
                    _ => (EX_CANTCREAT, String::new()),
                };
                Fatal::new(
                    code,
                    format!("open {}: {}{hint}", tmp.display(), io_text(&e)),
                )
            })?;
        let locked = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            Fatal::new(
                EX_IOERR,
                format!("lock {}: {}", tmp.display(), errno.desc()),
            )
        })?;
        let same = match (locked.metadata(), fs::metadata(tmp)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same {
            return Ok(locked);
        }
    }
    Err(Fatal::new(
        EX_IOERR,
        format!(
            "could not lock {}: it keeps being replaced; is another postconf looping?",
            tmp.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_rewrites_keeps_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("main.cf");
        fs::write(&path, "a = 1\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let outcome = update(&path, |text| Ok(format!("{text}b = 2\n"))).expect("update");
        assert_eq!(outcome, Outcome::Written);
        assert_eq!(fs::read_to_string(&path).expect("read"), "a = 1\nb = 2\n");
        let mode = fs::metadata(&path).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(!dir.path().join("main.cf.tmp").exists());
    }

    #[test]
    fn unchanged_text_is_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("main.cf");
        fs::write(&path, "a = 1\n").expect("write");
        let before = fs::metadata(&path).expect("stat").ino();
        let outcome = update(&path, |text| Ok(text.to_string())).expect("update");
        assert_eq!(outcome, Outcome::Unchanged);
        assert_eq!(fs::metadata(&path).expect("stat").ino(), before);
        assert!(!dir.path().join("main.cf.tmp").exists());
    }

    #[test]
    fn errors_leave_the_file_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("main.cf");
        let err = update(&path, |t| Ok(t.to_string())).expect_err("missing");
        assert_eq!(err.code, EX_CONFIG);
        assert!(
            err.message.contains("create the file first"),
            "{}",
            err.message
        );
        fs::write(&path, "a = 1\n").expect("write");
        let err = update(&path, |_| Err(Fatal::new(EX_CONFIG, "no"))).expect_err("edit fails");
        assert_eq!(err.message, "no");
        assert_eq!(fs::read_to_string(&path).expect("read"), "a = 1\n");
        assert!(!dir.path().join("main.cf.tmp").exists());
        fs::write(&path, b"a = \xff\n").expect("write");
        let err = update(&path, |t| Ok(t.to_string())).expect_err("not UTF-8");
        assert!(
            err.message.contains("line 1: text is not valid UTF-8"),
            "{}",
            err.message
        );
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("main.cf");
        fs::write(&path, "").expect("write");
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for k in 0..5 {
                        update(&path, |text| Ok(format!("{text}p{n}_{k} = x\n"))).expect("update");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 40, "{text}");
    }
}
