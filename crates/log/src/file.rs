//! Owns the `maillog_file` sink: an append-only file written one whole line per write(2), and
//! reopened when log rotation renames or removes it.
//!
//! Error policy: opening at start-up reports [`LogError::Open`]; later write or reopen failures
//! are returned to the caller, which falls back to stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::LogError;

/// How often, at most, the path is stat'ed to notice a rename or removal by log rotation.
const RESTAT_INTERVAL: Duration = Duration::from_secs(1);

/// An open `maillog_file`.
#[derive(Debug)]
pub(crate) struct FileSink {
    /// The configured path, reopened after rotation.
    path: PathBuf,
    /// The open file, or `None` after a failure until a reopen succeeds.
    file: Option<File>,
    /// Device and inode of `file`, compared with the path's to notice rotation.
    id: (u64, u64),
    /// When the path was last stat'ed (or a reopen last attempted).
    last_check: Instant,
    /// Minimum time between two stat calls; [`RESTAT_INTERVAL`] except in tests.
    restat_every: Duration,
}

impl FileSink {
    /// Opens (creating with mode 0644 if needed) `path` for appending; the parent directory
    /// must exist.
    pub(crate) fn open(path: &Path) -> Result<Self, LogError> {
        let (file, id) = open_append(path).map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file: Some(file),
            id,
            last_check: Instant::now(),
            restat_every: RESTAT_INTERVAL,
        })
    }

    /// The configured path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the minimum time between rotation checks (tests use zero).
    #[cfg(test)]
    pub(crate) fn set_restat_interval(&mut self, every: Duration) {
        self.restat_every = every;
    }

    /// Appends one complete line. `write_all` hands the whole buffer to a single write(2) and
    /// only loops on a short write, so with O_APPEND concurrent writers interleave at line
    /// boundaries.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.check_rotation()?;
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        let res = file.write_all(line);
        if res.is_err() {
            self.file = None;
        }
        res
    }

    /// At most once per `restat_every`: reopens the path when it no longer names the open file
    /// (renamed or removed by rotation), or when an earlier failure closed it.
    fn check_rotation(&mut self) -> io::Result<()> {
        let now = Instant::now();
        if now.duration_since(self.last_check) < self.restat_every {
            return Ok(());
        }
        self.last_check = now;
        let current = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        // A path whose folder is not visible (a daemon chrooted into the queue directory)
        // says nothing about rotation: keep writing to the file opened before the chroot.
        let folder_visible = self
            .path
            .parent()
            .is_none_or(|p| p.as_os_str().is_empty() || p.exists());
        if self.file.is_some() && (matches!(current, Ok(id) if id == self.id) || !folder_visible) {
            return Ok(());
        }
        match open_append(&self.path) {
            Ok((file, id)) => {
                self.file = Some(file);
                self.id = id;
                Ok(())
            }
            Err(e) => {
                self.file = None;
                Err(e)
            }
        }
    }
}

/// Opens `path` with O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, mode 0644, and returns the file with
/// its (device, inode).
fn open_append(path: &Path) -> io::Result<(File, (u64, u64))> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodir").join("maillog");
        let err = FileSink::open(&path).unwrap_err();
        assert!(err.to_string().contains("nodir/maillog"), "{err}");
    }

    #[test]
    fn appends_and_follows_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        let mut sink = FileSink::open(&path).unwrap();
        sink.set_restat_interval(Duration::ZERO);
        sink.write_line(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("maillog.1")).unwrap();
        sink.write_line(b"two\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        sink.write_line(b"three\n").unwrap();
        let old = std::fs::read_to_string(dir.path().join("maillog.1")).unwrap();
        assert_eq!(old, "one\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }

    #[test]
    fn rotation_is_noticed_only_after_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        let mut sink = FileSink::open(&path).unwrap();
        sink.set_restat_interval(Duration::from_secs(3600));
        std::fs::rename(&path, dir.path().join("maillog.1")).unwrap();
        sink.write_line(b"late\n").unwrap();
        let old = std::fs::read_to_string(dir.path().join("maillog.1")).unwrap();
        assert_eq!(old, "late\n");
        assert!(!path.exists());
    }
}
