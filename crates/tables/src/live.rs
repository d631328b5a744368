//! `hash:` tables that follow rebuilds of their file: what `Table::open("hash:...")` holds.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use crate::hash::{HashTable, source_path_for};
use crate::{Lookup, TableError};

/// An open `hash:` table that follows rebuilds: what `Table::open("hash:/path")` holds.
///
/// Each lookup `stat`s the `.db` file once; when its identity (device, inode, size, mtime,
/// ctime) changed, the new file is read and checked and replaces the snapshot. Snapshots
/// handed out by [`HashDb::snapshot`] stay valid and unchanged. If the file has vanished or
/// cannot be stat'ed (e.g. after a chroot), the current snapshot keeps serving; if the new
/// file is corrupt or unreadable, the lookup fails (callers defer) and the next lookup retries.
pub struct HashDb {
    /// The `.db` file.
    db_path: PathBuf,
    /// The snapshot in use.
    current: RwLock<Arc<HashTable>>,
}

impl HashDb {
    /// Opens `db_path` (e.g. `/etc/aliases.db`).
    pub fn open(db_path: &Path) -> Result<HashDb, TableError> {
        let table = HashTable::open(db_path)?;
        Ok(HashDb {
            db_path: db_path.to_owned(),
            current: RwLock::new(Arc::new(table)),
        })
    }

    /// The `.db` file.
    pub fn path(&self) -> &Path {
        &self.db_path
    }

    /// The source file the `.db` is built from (the path without `.db`).
    pub fn source_path(&self) -> PathBuf {
        source_path_for(&self.db_path)
    }

    /// Looks `key` up in the newest table (case-insensitively).
    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.snapshot()?.get(key).map(str::to_owned))
    }

    /// The newest snapshot, after checking for a rebuild.
    pub fn snapshot(&self) -> Result<Arc<HashTable>, TableError> {
        let current = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        let Ok(meta) = fs::metadata(&self.db_path) else {
            return Ok(current);
        };
        if current.id == Some(FileId::of(&meta)) {
            return Ok(current);
        }
        match HashTable::open(&self.db_path) {
            Ok(table) => {
                let table = Arc::new(table);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&table);
                Ok(table)
            }
            Err(TableError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(current)
            }
            Err(err) => Err(err),
        }
    }

    /// Whether the source file is newer than the `.db` file (Postfix warns "database ... is
    /// older than source file"). False when either cannot be stat'ed.
    pub fn source_is_newer(&self) -> bool {
        let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        match (mtime(&self.source_path()), mtime(&self.db_path)) {
            (Some(src), Some(db)) => src > db,
            _ => false,
        }
    }
}

impl fmt::Debug for HashDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashDb")
            .field("db_path", &self.db_path)
            .finish_non_exhaustive()
    }
}

impl Lookup for HashDb {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        HashDb::lookup(self, key)
    }
}

/// What identifies one version of a file: a rebuild changes at least the inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileId {
    /// Device number.
    dev: u64,
    /// Inode number.
    ino: u64,
    /// Size in bytes.
    size: u64,
    /// Modification time.
    mtime: Option<SystemTime>,
    /// Status change time (seconds, nanoseconds).
    ctime: (i64, i64),
}

impl FileId {
    /// The identity recorded in `meta`.
    pub(crate) fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.modified().ok(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::db_path_for;
    use crate::{Table, build_hash, postmap};
    use std::fs::File;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn rebuild_is_seen_without_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("virtual");
        let db = db_path_for(&src);
        build_hash(&db, pairs(&[("a", "1"), ("b", "x")])).unwrap();
        let live = HashDb::open(&db).unwrap();
        let table = Table::open(&format!("hash:{}", src.display())).unwrap();
        let old = live.snapshot().unwrap();
        assert_eq!(live.lookup("a").unwrap().as_deref(), Some("1"));
        assert_eq!(table.lookup("a").unwrap().as_deref(), Some("1"));

        // Same size, same key count: only the inode tells the versions apart.
        build_hash(&db, pairs(&[("a", "2"), ("b", "y")])).unwrap();
        assert_eq!(live.lookup("a").unwrap().as_deref(), Some("2"));
        assert_eq!(table.lookup("A").unwrap().as_deref(), Some("2"));
        // An earlier snapshot is unchanged.
        assert_eq!(old.get("a"), Some("1"));

        // A rebuilt but corrupt file is an error, and the next good rebuild recovers.
        fs::write(dir.path().join("bad"), b"garbage").unwrap();
        fs::rename(dir.path().join("bad"), &db).unwrap();
        assert!(matches!(live.lookup("a"), Err(TableError::Corrupt { .. })));
        build_hash(&db, pairs(&[("a", "3")])).unwrap();
        assert_eq!(live.lookup("a").unwrap().as_deref(), Some("3"));

        // A vanished file keeps the last good table serving.
        fs::remove_file(&db).unwrap();
        assert_eq!(live.lookup("a").unwrap().as_deref(), Some("3"));
    }

    #[test]
    fn source_newer_than_db() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m");
        fs::write(&src, "a 1\n").unwrap();
        postmap(&src).unwrap();
        let live = HashDb::open(&db_path_for(&src)).unwrap();
        assert_eq!(live.source_path(), src);
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(past)
            .unwrap();
        assert!(!live.source_is_newer());
        let future = SystemTime::now() + std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(future)
            .unwrap();
        assert!(live.source_is_newer());
    }
}
