//! The alias database as local(8) uses it: `alias_maps` opened once per process, lookups that
//! also say who owns the table that answered (that owner's rights, or `default_privs` for
//! root, apply to `|command` and `/file` targets), and `:include:` files read with the
//! rights of whoever expands them.
//!
//! Error policy: a table that cannot be opened makes every lookup fail (the recipient is
//! deferred with "alias database unavailable", and the cause is logged), and is opened again
//! before the next request; a `hash:` table that is rebuilt is picked up by posthorn-tables.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use posthorn_sys::Account;
use posthorn_tables::{Table, TableList};

use crate::forward::{read_limited, strerror, too_large};
use crate::privilege::as_account;

/// A successful alias lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasHit {
    /// The value: targets in aliases(5) syntax (split with `split_alias_targets`).
    pub value: String,
    /// The uid owning the table that answered (0 for `inline:`/`static:` tables, which
    /// come from main.cf).
    pub owner: u32,
}

/// `alias_maps`, opened.
#[derive(Debug)]
pub struct AliasMaps {
    spec: String,
    tables: Result<TableList, String>,
}

impl AliasMaps {
    /// Opens the tables of an `alias_maps` value (errors are kept and reported by lookups).
    pub fn open(spec: &str) -> AliasMaps {
        let tables = TableList::from_value(spec).map_err(|e| e.to_string());
        if let Err(e) = &tables {
            log::warn!("alias_maps {spec}: {e}");
        }
        AliasMaps {
            spec: spec.to_string(),
            tables,
        }
    }

    /// Opens the tables again if they failed to open before.
    pub fn retry(&mut self) {
        if self.tables.is_err() {
            *self = AliasMaps::open(&self.spec);
        }
    }

    /// Looks `key` up in each table in turn (keys fold case).
    pub fn lookup(&self, key: &str) -> Result<Option<AliasHit>, String> {
        let tables = self.tables.as_ref().map_err(Clone::clone)?;
        for table in tables.tables() {
            let value = table
                .lookup(key)
                .map_err(|e| format!("alias_maps lookup of \"{key}\": {e}"))?;
            if let Some(value) = value {
                let owner = match table {
                    Table::Hash(db) => std::fs::metadata(db.path()).map(|m| m.uid()).unwrap_or(0),
                    _ => 0,
                };
                return Ok(Some(AliasHit { value, owner }));
            }
        }
        Ok(None)
    }
}

/// A `:include:` file that was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncludeFile {
    /// Its text (targets as in a `.forward` file).
    pub text: String,
    /// Its owner's uid: that user's rights (or `default_privs` for root) apply to the
    /// commands and files it lists.
    pub owner: u32,
}

/// Why a `:include:` file could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncludeError {
    /// It does not exist: bounce.
    Missing(String),
    /// Any other problem: defer (it may be fixed).
    Other(String),
}

/// Reads a `:include:` file with the rights of `reader` (the privileges of the alias or
/// `.forward` that names it). It must be a regular file.
pub fn read_include_as(path: &Path, reader: &Account) -> Result<IncludeFile, IncludeError> {
    let what = |e: &io::Error| {
        format!(
            "cannot open include file {}: {}",
            path.display(),
            strerror(e)
        )
    };
    let read = as_account(reader.uid, reader.gid, || {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    IncludeError::Missing(what(&e))
                } else {
                    IncludeError::Other(what(&e))
                }
            })?;
        let meta = file.metadata().map_err(|e| IncludeError::Other(what(&e)))?;
        if !meta.is_file() {
            return Err(IncludeError::Other(format!(
                "include file {} is not a regular file",
                path.display()
            )));
        }
        let (text, cut) = read_limited(file).map_err(|e| IncludeError::Other(what(&e)))?;
        Ok((
            IncludeFile {
                text,
                owner: meta.uid(),
            },
            cut,
        ))
    })
    .map_err(IncludeError::Other)??;
    // Logged with our own rights again (the log file may need reopening).
    if read.1 {
        log::warn!("{}", too_large(path));
    }
    Ok(read.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_report_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("aliases");
        std::fs::write(&src, "root: admin\nlist: :include:/x\n").unwrap();
        posthorn_tables::postalias(&src).unwrap();
        let maps = AliasMaps::open(&format!(
            "inline:{{ postmaster=root }}, hash:{}",
            src.display()
        ));
        assert_eq!(
            maps.lookup("Postmaster").unwrap(),
            Some(AliasHit {
                value: "root".into(),
                owner: 0
            })
        );
        let me = posthorn_sys::uids().1;
        assert_eq!(
            maps.lookup("ROOT").unwrap(),
            Some(AliasHit {
                value: "admin".into(),
                owner: me
            })
        );
        assert_eq!(maps.lookup("nobody-here").unwrap(), None);
    }

    #[test]
    fn broken_tables_fail_lookups_until_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("aliases");
        let mut maps = AliasMaps::open(&format!("hash:{}", src.display()));
        assert!(maps.lookup("root").is_err());
        std::fs::write(&src, "root: admin\n").unwrap();
        posthorn_tables::postalias(&src).unwrap();
        maps.retry();
        assert_eq!(maps.lookup("root").unwrap().unwrap().value, "admin");
    }

    #[test]
    fn include_files() {
        let dir = tempfile::tempdir().unwrap();
        let me = posthorn_sys::user_by_uid(posthorn_sys::uids().1)
            .unwrap()
            .unwrap();
        let p = dir.path().join("members");
        std::fs::write(&p, "a@x\nb@y\n").unwrap();
        assert_eq!(
            read_include_as(&p, &me).unwrap(),
            IncludeFile {
                text: "a@x\nb@y\n".into(),
                owner: me.uid
            }
        );
        assert!(
            matches!(read_include_as(&dir.path().join("none"), &me), Err(IncludeError::Missing(m)) if m.contains("cannot open include file") && m.ends_with("No such file or directory"))
        );
        assert!(
            matches!(read_include_as(dir.path(), &me), Err(IncludeError::Other(m)) if m.contains("not a regular file"))
        );
    }
}
