//! Lookup tables as the policy engine opens them: `posthorn_tables` tables, the system
//! passwd database (`unix:passwd.byname`, also behind `proxy:`), and tables whose file is
//! missing at start-up (opened again at each lookup until they work).

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use posthorn_tables::{Lookup, Table, TableError, split_table_list};

/// One open lookup table.
#[derive(Debug)]
pub(crate) enum Map {
    /// A `posthorn_tables` table (`hash:`, `inline:`, `static:`).
    Table(Table),
    /// `unix:passwd.byname`: local user names from the passwd database.
    Passwd,
    /// A table whose file could not be opened at start-up; every lookup tries again and
    /// fails (the caller defers) until the open succeeds.
    Retry {
        /// The spec as written.
        spec: String,
        /// The table once an open succeeded.
        opened: OnceLock<Table>,
    },
}

/// How to treat a table file that cannot be opened at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Fail: the configuration is broken (restriction lists).
    Strict,
    /// Log a warning and open it again at each lookup (recipient tables, domain lists);
    /// lookups fail until then.
    Retry,
}

impl Map {
    /// Opens `spec`. A `proxy:` prefix is dropped (posthorn has no proxymap: the table is
    /// opened directly). Unsupported table types are always errors.
    pub(crate) fn open(spec: &str, mode: OpenMode) -> Result<Map, TableError> {
        let spec = spec.trim();
        let inner = spec.strip_prefix("proxy:").unwrap_or(spec);
        if let Some(name) = inner.strip_prefix("unix:") {
            return match name {
                "passwd.byname" => Ok(Map::Passwd),
                _ => Err(TableError::BadSpec(format!(
                    "unsupported lookup table \"{spec}\" (posthorn supports unix:passwd.byname)"
                ))),
            };
        }
        match Table::open(inner) {
            Ok(table) => Ok(Map::Table(table)),
            Err(err @ (TableError::Io { .. } | TableError::Corrupt { .. }))
                if mode == OpenMode::Retry =>
            {
                log::warn!("{spec}: {err}; lookups will fail until the table can be opened");
                Ok(Map::Retry {
                    spec: inner.to_owned(),
                    opened: OnceLock::new(),
                })
            }
            Err(err) => Err(err),
        }
    }
}

impl Lookup for Map {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        match self {
            Map::Table(table) => table.lookup(key),
            Map::Passwd => passwd_lookup(key),
            Map::Retry { spec, opened } => {
                if let Some(table) = opened.get() {
                    return table.lookup(key);
                }
                let table = Table::open(spec)?;
                log::info!("{spec}: table is available now");
                table.lookup(key).inspect(|_| {
                    let _ = opened.set(table);
                })
            }
        }
    }
}

/// Looks a user name up in the passwd database; keys with `@` are never user names.
fn passwd_lookup(key: &str) -> Result<Option<String>, TableError> {
    if key.is_empty() || key.contains('@') {
        return Ok(None);
    }
    match posthorn_sys::user_by_name(key) {
        Ok(found) => Ok(found.map(|account| {
            format!(
                "{}:*:{}:{}:{}:{}:{}",
                account.name,
                account.uid,
                account.gid,
                account.gecos,
                account.home.display(),
                account.shell.display()
            )
        })),
        Err(err) => Err(TableError::Io {
            path: PathBuf::from("/etc/passwd"),
            source: io::Error::other(err.to_string()),
        }),
    }
}

/// A main.cf table list: the first table with an answer wins; a failing table stops the
/// search with its error (as Postfix's `maps_find`).
#[derive(Debug, Default)]
pub(crate) struct MapList {
    /// The tables, in lookup order.
    maps: Vec<Map>,
}

impl MapList {
    /// Opens the tables of a main.cf value such as `proxy:unix:passwd.byname $alias_maps`.
    /// Errors carry the failing spec.
    pub(crate) fn open(value: &str, mode: OpenMode) -> Result<MapList, (String, TableError)> {
        let mut maps = Vec::new();
        for spec in split_table_list(value) {
            maps.push(Map::open(&spec, mode).map_err(|e| (spec.clone(), e))?);
        }
        Ok(MapList { maps })
    }

    /// Whether the list has no tables (the parameter is empty).
    pub(crate) fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

impl Lookup for MapList {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        for map in &self.maps {
            if let Some(value) = map.lookup(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_knows_root_and_not_addresses() {
        let map = Map::open("proxy:unix:passwd.byname", OpenMode::Strict).unwrap();
        assert!(map.lookup("root").unwrap().is_some());
        assert_eq!(map.lookup("root@example.com").unwrap(), None);
        assert_eq!(map.lookup("no-such-user-posthorn-test").unwrap(), None);
    }

    #[test]
    fn unsupported_types_fail_in_every_mode() {
        assert!(Map::open("unix:group.byname", OpenMode::Retry).is_err());
        assert!(Map::open("btree:/etc/x", OpenMode::Retry).is_err());
        assert!(Map::open("ldap:/etc/x.cf", OpenMode::Strict).is_err());
    }

    #[test]
    fn missing_file_is_retried_until_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("rcpt");
        let spec = format!("hash:{}", source.display());
        assert!(Map::open(&spec, OpenMode::Strict).is_err());
        let map = Map::open(&spec, OpenMode::Retry).unwrap();
        assert!(map.lookup("a@b").is_err());
        let db = dir.path().join("rcpt.db");
        posthorn_tables::build_hash(&db, vec![("a@b".to_owned(), "x".to_owned())]).unwrap();
        assert_eq!(map.lookup("a@b").unwrap().as_deref(), Some("x"));
        assert_eq!(map.lookup("c@d").unwrap(), None);
    }

    #[test]
    fn list_answers_with_first_hit() {
        let list = MapList::open("inline:{ a=1 }, inline:{ a=2, b=3 }", OpenMode::Strict).unwrap();
        assert_eq!(list.lookup("a").unwrap().as_deref(), Some("1"));
        assert_eq!(list.lookup("b").unwrap().as_deref(), Some("3"));
        assert_eq!(list.lookup("c").unwrap(), None);
        assert!(MapList::open("", OpenMode::Strict).unwrap().is_empty());
        let (spec, _) = MapList::open("inline:{ a=1 } nope:x", OpenMode::Strict).unwrap_err();
        assert_eq!(spec, "nope:x");
    }
}
