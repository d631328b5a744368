//! Putting a new `.db` file in place: atomically, serialised with other writers, with the
//! ownership and permissions Postfix would give it.
//!
//! A table is written by posthorn_tables::build_hash into a private directory (mode 0700)
//! created next to the `.db` file, so no other user can reach the file while it is written
//! or while its mode is still wrong. It is then given its final mode and owner, fsync'd, and
//! renamed over the `.db` file (or hard-linked to its name when there is none, which fails
//! rather than replace a table that appeared in the meantime); finally the directory is
//! fsync'd. A reader sees the old table or the new one, never a mixture.
//!
//! Writers serialise with an exclusive flock(2) on the current `.db` file, held until its
//! replacement is in place; after taking the lock a writer checks that the name still
//! refers to the locked file and retries otherwise. So `postmap -i` and `postmap -d` (read,
//! change, write) never lose each other's changes, and a full rebuild is ordered with them.
//! Readers never lock.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use posthorn_tables::{HashTable, build_hash};
use tempfile::TempDir;

use crate::{Fatal, Tool, exit, os_error};

/// A finished table file in a private directory beside its destination.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The private directory; removed (with anything left in it) when dropped.
    _dir: TempDir,
    /// The table file inside it.
    file: PathBuf,
}

/// Mode and owner for a `.db` file that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewFile {
    /// Postfix's rule for a build from a source file: mode 0600 plus the source's group and
    /// other read bits, and, when run by root (without `-o`), the source's owner and group.
    FromSource {
        /// The source file's mode.
        mode: u32,
        /// The owner and group to give the file, when running as root.
        owner: Option<(u32, u32)>,
    },
    /// Mode 0644 less the umask, owned by the user running the command (`-p`, `-i`, or no
    /// source file to copy from).
    Default,
}

impl NewFile {
    /// The rule for a build from a source file with metadata `source`, given `-o`
    /// (`keep_root`) and `-p` (`default_mode`).
    pub(crate) fn from_source(
        source: Option<&Metadata>,
        keep_root: bool,
        default_mode: bool,
    ) -> NewFile {
        match source {
            Some(meta) if !default_mode => NewFile::FromSource {
                mode: meta.mode(),
                owner: (!keep_root && posthorn_sys::is_root()).then(|| (meta.uid(), meta.gid())),
            },
            _ => NewFile::Default,
        }
    }
}

/// Writes `entries` as a table file staged for `db`.
pub(crate) fn stage(
    db: &Path,
    entries: Vec<(String, String)>,
    tool: Tool,
) -> Result<Staged, Fatal> {
    let parent = parent_dir(db);
    let name = db
        .file_name()
        .ok_or_else(|| Fatal::new(exit::USAGE, format!("{}: not a file name", db.display())))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".new")
        .tempdir_in(parent)
        .map_err(|err| {
            let hint = if err.kind() == io::ErrorKind::PermissionDenied {
                format!(
                    " ({} writes the new table there and renames it over {}; run it as a \
                     user who may write that directory)",
                    tool.name(),
                    db.display()
                )
            } else {
                String::new()
            };
            Fatal::new(
                exit::CANTCREAT,
                format!(
                    "create a temporary directory in {}: {}{hint}",
                    parent.display(),
                    os_error(&err),
                ),
            )
        })?;
    let file = dir.path().join(name);
    // Duplicates were removed by the caller, so build_hash has nothing to warn about.
    build_hash(&file, entries).map_err(|err| write_error(db, &err.to_string()))?;
    Ok(Staged { _dir: dir, file })
}

/// Puts `staged` in place of `db`: an existing table keeps its mode and (for root) owner; a
/// new one is made as `new_file` says.
pub(crate) fn install(
    staged: Staged,
    db: &Path,
    new_file: NewFile,
    tool: Tool,
) -> Result<(), Fatal> {
    loop {
        match lock_existing(db, tool)? {
            Some(locked) => return replace(&staged, db, &locked.meta),
            None => {
                if create(&staged, db, new_file)? {
                    return Ok(());
                }
            }
        }
    }
}

/// The change of an [`edit`]: the table's new entries given its current contents, or None
/// to leave it alone.
pub(crate) type Change<'a> =
    dyn FnMut(Option<&HashTable>) -> Result<Option<Vec<(String, String)>>, Fatal> + 'a;

/// Read, change, write: calls `change` with the current table (None when there is no `.db`
/// file and `create` is set), under the lock, and installs what it returns. `change`
/// returning None leaves the table alone. Returns whether a table was written.
///
/// `change` may be called more than once, when another writer creates the table first.
pub(crate) fn edit(
    db: &Path,
    new_file: NewFile,
    tool: Tool,
    create_missing: bool,
    change: &mut Change<'_>,
) -> Result<bool, Fatal> {
    loop {
        match lock_existing(db, tool)? {
            Some(mut locked) => {
                let mut bytes = Vec::with_capacity(usize::try_from(locked.meta.len()).unwrap_or(0));
                locked.file.read_to_end(&mut bytes).map_err(|err| {
                    Fatal::new(
                        exit::IOERR,
                        format!("read {}: {}", db.display(), os_error(&err)),
                    )
                })?;
                let table = HashTable::from_bytes(db, Box::new(bytes)).map_err(Fatal::table)?;
                let Some(entries) = change(Some(&table))? else {
                    return Ok(false);
                };
                drop(table);
                let staged = stage(db, entries, tool)?;
                replace(&staged, db, &locked.meta)?;
                return Ok(true);
            }
            None if !create_missing => {
                let source = db.with_extension("");
                return Err(Fatal::new(
                    exit::NOINPUT,
                    format!(
                        "open database {}: No such file or directory (build it first: {} {})",
                        db.display(),
                        tool.name(),
                        source.display()
                    ),
                ));
            }
            None => {
                let Some(entries) = change(None)? else {
                    return Ok(false);
                };
                let staged = stage(db, entries, tool)?;
                if create(&staged, db, new_file)? {
                    return Ok(true);
                }
            }
        }
    }
}

/// The current `.db` file, open and exclusively locked.
struct Locked {
    /// The open file; closing it releases the lock.
    file: File,
    /// Its metadata, for the replacement's mode and owner.
    meta: Metadata,
}

/// Opens and locks the current `db`; None when there is no such file.
fn lock_existing(db: &Path, tool: Tool) -> Result<Option<Locked>, Fatal> {
    loop {
        let file = match File::open(db) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                let hint = if err.kind() == io::ErrorKind::PermissionDenied {
                    format!(
                        " (run {} as the owner of the table or as root)",
                        tool.name()
                    )
                } else {
                    String::new()
                };
                return Err(Fatal::new(
                    exit::NOINPUT,
                    format!("open database {}: {}{hint}", db.display(), os_error(&err)),
                ));
            }
        };
        file.lock().map_err(|err| {
            Fatal::new(
                exit::IOERR,
                format!("lock {}: {}", db.display(), os_error(&err)),
            )
        })?;
        let meta = file.metadata().map_err(|err| {
            Fatal::new(
                exit::IOERR,
                format!("fstat {}: {}", db.display(), os_error(&err)),
            )
        })?;
        // Another writer may have replaced the file while we waited for the lock.
        match fs::metadata(db) {
            Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
            _ => continue,
        }
        // Postfix updates the file in place, so it needs write permission on it: ask the
        // same, rather than replace a table that belongs to someone else.
        if let Err(err) = OpenOptions::new().write(true).open(db) {
            return Err(Fatal::new(
                exit::CANTCREAT,
                format!(
                    "open database {} for update: {} (run {} as the owner of the table or as root)",
                    db.display(),
                    os_error(&err),
                    tool.name()
                ),
            ));
        }
        return Ok(Some(Locked { file, meta }));
    }
}

/// Gives `staged` the mode and owner of the locked `old` file and renames it over `db`.
fn replace(staged: &Staged, db: &Path, old: &Metadata) -> Result<(), Fatal> {
    let owner = posthorn_sys::is_root().then(|| (old.uid(), old.gid()));
    finish(staged, db, old.mode() & 0o7777, owner)?;
    fs::rename(&staged.file, db).map_err(|err| write_error(db, &os_error(&err)))?;
    sync_dir(db)
}

/// Links `staged` to `db` if there is still no such file; false if there is one now.
fn create(staged: &Staged, db: &Path, new_file: NewFile) -> Result<bool, Fatal> {
    let (mode, owner) = match new_file {
        NewFile::FromSource { mode, owner } => (0o600 | (mode & 0o044), owner),
        NewFile::Default => {
            // build_hash created the file with mode 0666 less the umask.
            let current = fs::metadata(&staged.file)
                .map_err(|err| write_error(db, &os_error(&err)))?
                .mode();
            (0o644 & current, None)
        }
    };
    finish(staged, db, mode, owner)?;
    match fs::hard_link(&staged.file, db) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(err) => return Err(write_error(db, &os_error(&err))),
    }
    sync_dir(db)?;
    Ok(true)
}

/// Sets the staged file's mode and owner and makes them durable.
fn finish(staged: &Staged, db: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), Fatal> {
    let file = &staged.file;
    let fail = |what: &str, err: io::Error| write_error(db, &format!("{what}: {}", os_error(&err)));
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(file, Some(uid), Some(gid))
            .map_err(|err| fail(&format!("chown {uid}:{gid}"), err))?;
    }
    // After chown, which may clear set-id bits.
    fs::set_permissions(file, fs::Permissions::from_mode(mode))
        .map_err(|err| fail(&format!("chmod {mode:o}"), err))?;
    File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(|err| fail("fsync", err))
}

/// Fsyncs the directory of `db`, so that the rename or link survives a crash.
fn sync_dir(db: &Path) -> Result<(), Fatal> {
    let dir = parent_dir(db);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| write_error(db, &format!("fsync {}: {}", dir.display(), os_error(&err))))
}

/// The directory that holds `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A failure to write the new `db`: the old table, if any, is unchanged.
fn write_error(db: &Path, why: &str) -> Fatal {
    Fatal::new(
        exit::CANTCREAT,
        format!(
            "cannot write {}: {} (the old table, if any, is unchanged)",
            db.display(),
            crate::os_error_text(why)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_table_takes_source_read_bits() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("secret.db");
        let staged = stage(&db, pairs(&[("a", "1")]), Tool::Postmap).unwrap();
        let new_file = NewFile::FromSource {
            mode: 0o100_640,
            owner: None,
        };
        install(staged, &db, new_file, Tool::Postmap).unwrap();
        assert_eq!(mode(&db), 0o640);
        assert_eq!(HashTable::open(&db).unwrap().get("a"), Some("1"));
        // Nothing is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn existing_table_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        build_hash(&db, pairs(&[("a", "1")])).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o604)).unwrap();
        let staged = stage(&db, pairs(&[("a", "2")]), Tool::Postmap).unwrap();
        install(staged, &db, NewFile::Default, Tool::Postmap).unwrap();
        assert_eq!(mode(&db), 0o604);
        assert_eq!(HashTable::open(&db).unwrap().get("a"), Some("2"));
    }

    #[test]
    fn edit_reads_changes_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let err = edit(&db, NewFile::Default, Tool::Postmap, false, &mut |_| {
            Ok(None)
        })
        .unwrap_err();
        assert_eq!(err.code, exit::NOINPUT);
        assert!(err.message.contains("build it first: postmap"), "{err}");

        let wrote = edit(&db, NewFile::Default, Tool::Postmap, true, &mut |t| {
            assert!(t.is_none());
            Ok(Some(pairs(&[("a", "1")])))
        })
        .unwrap();
        assert!(wrote);
        let before = fs::metadata(&db).unwrap().ino();
        let wrote = edit(&db, NewFile::Default, Tool::Postmap, true, &mut |t| {
            assert_eq!(t.unwrap().get("a"), Some("1"));
            Ok(None)
        })
        .unwrap();
        assert!(!wrote);
        assert_eq!(fs::metadata(&db).unwrap().ino(), before);
    }

    #[test]
    fn concurrent_edits_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        build_hash(&db, Vec::new()).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let db = &db;
                scope.spawn(move || {
                    for n in 0..10 {
                        edit(db, NewFile::Default, Tool::Postmap, true, &mut |t| {
                            let mut all: Vec<(String, String)> = t
                                .map(|t| t.iter().map(|(k, v)| (k.into(), v.into())).collect())
                                .unwrap_or_default();
                            all.push((format!("k{thread}-{n}"), "v".into()));
                            Ok(Some(all))
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(HashTable::open(&db).unwrap().len(), 40);
    }

    #[test]
    fn unwritable_directory_is_reported() {
        if posthorn_sys::is_root() {
            return; // root may write anywhere
        }
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
        let err = stage(&dir.path().join("t.db"), Vec::new(), Tool::Postmap).unwrap_err();
        assert_eq!(err.code, exit::CANTCREAT);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    }
}
