//! Mailbox locks, as mail readers expect them: a `PATH.lock` dotlock file created with
//! `O_EXCL`, and an fcntl(2) write lock on the open file. Both are retried until a deadline;
//! a dotlock older than [`STALE_LOCK_AGE`] is taken to be left over from a crash and removed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

/// A dotlock file older than this is removed (Postfix's `stale_lock_time` idea).
pub const STALE_LOCK_AGE: Duration = Duration::from_secs(300);

/// How long to wait between two attempts at a busy lock.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// A held dotlock; dropping it removes the lock file.
#[derive(Debug)]
pub(crate) struct DotLock {
    path: PathBuf,
}

#[cfg(test)]
impl DotLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("remove lock file {}: {}", self.path.display(), e);
        }
    }
}

/// `target` with ".lock" appended.
pub(crate) fn dotlock_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Creates `target.lock`, retrying while another process holds it until `deadline`.
/// A timeout is reported as an `AlreadyExists` error.
pub(crate) fn dotlock(target: &Path, deadline: Instant) -> io::Result<DotLock> {
    let path = dotlock_path(target);
    loop {
        // create_new is O_CREAT|O_EXCL: it never follows a symlink at `path`.
        let attempt = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match attempt {
            Ok(_) => return Ok(DotLock { path }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if is_stale(&path) {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            log::warn!("removed stale lock file {}", path.display());
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
                if !wait_until(deadline) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// True when the lock file was last modified more than [`STALE_LOCK_AGE`] ago.
fn is_stale(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|mtime| SystemTime::now().duration_since(mtime).ok())
        .is_some_and(|age| age > STALE_LOCK_AGE)
}

/// Takes an exclusive fcntl(2) lock on all of `file`, retrying until `deadline`.
/// The lock is released when the file is closed.
pub(crate) fn fcntl_lock(file: &File, deadline: Instant) -> Result<(), Errno> {
    let whole_file = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        match fcntl(file, FcntlArg::F_SETLK(&whole_file)) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e @ (Errno::EAGAIN | Errno::EACCES)) => {
                if !wait_until(deadline) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sleeps one retry delay (less if the deadline is closer); false when the deadline passed.
fn wait_until(deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    sleep(RETRY_DELAY.min(deadline - now));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotlock_is_exclusive_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mbox");
        let lock = dotlock(&target, Instant::now()).unwrap();
        assert_eq!(lock.path(), dir.path().join("mbox.lock"));
        assert!(lock.path().exists());
        let start = Instant::now();
        let err = dotlock(&target, start + Duration::from_millis(250)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(start.elapsed() >= Duration::from_millis(250));
        drop(lock);
        assert!(!dir.path().join("mbox.lock").exists());
        dotlock(&target, Instant::now()).unwrap();
    }

    #[test]
    fn stale_dotlock_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mbox");
        let stale = File::create(dotlock_path(&target)).unwrap();
        stale
            .set_modified(SystemTime::now() - STALE_LOCK_AGE - Duration::from_secs(10))
            .unwrap();
        let lock = dotlock(&target, Instant::now()).unwrap();
        assert!(lock.path().exists());
    }

    #[test]
    fn fcntl_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        fcntl_lock(&file, Instant::now()).unwrap();
        // The same process may lock again (POSIX locks are per process).
        fcntl_lock(&file, Instant::now()).unwrap();
    }
}
