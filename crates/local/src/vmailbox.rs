//! virtual(8) routing: the mailbox path and the uid/gid of a virtual recipient, from
//! `virtual_mailbox_maps`, `virtual_uid_maps` and `virtual_gid_maps` (each looked up with the
//! full address, then `@domain`, with `recipient_delimiter`), as a pure function over the
//! tables.
//!
//! Outcomes, as Postfix's virtual(8): not in `virtual_mailbox_maps` bounces (5.1.1
//! `unknown user: "ADDR"`); a lookup error defers (4.3.0); any configuration problem (no uid
//! or gid, a uid below `virtual_minimum_uid`, uid or gid 0 (unless the administrator set
//! `virtual_minimum_uid = 0`, as the root quickstart does), a path that is absolute, empty or
//! climbs out with `..`, an empty `virtual_mailbox_base`) defers with 4.3.5 "mail system
//! configuration error" and a `warning:` naming the problem.

use std::path::{Component, Path, PathBuf};

use posthorn_tables::{AddressLookup, Lookup, TableError, TableList, lookup_address_with};

use crate::status::Failure;

/// A table-list parameter opened once per process; a list that failed to open answers
/// every lookup with the error (the recipient is deferred) and is opened again by
/// [`OpenMaps::retry`].
#[derive(Debug)]
pub struct OpenMaps {
    param: &'static str,
    spec: String,
    tables: Result<TableList, String>,
}

impl OpenMaps {
    /// Opens the tables of parameter `param` (value `spec`).
    pub fn open(param: &'static str, spec: &str) -> OpenMaps {
        let tables = TableList::from_value(spec).map_err(|e| format!("{param}: {e}"));
        if let Err(e) = &tables {
            log::warn!("{e}");
        }
        OpenMaps {
            param,
            spec: spec.to_string(),
            tables,
        }
    }

    /// Opens the tables again if they failed to open before.
    pub fn retry(&mut self) {
        if self.tables.is_err() {
            *self = OpenMaps::open(self.param, &self.spec);
        }
    }

    /// Whether the parameter names no table at all.
    pub fn is_empty(&self) -> bool {
        self.spec.trim().is_empty()
    }
}

impl Lookup for OpenMaps {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        match &self.tables {
            Ok(t) => t.lookup(key),
            Err(e) => Err(TableError::BadSpec(e.clone())),
        }
    }
}

/// Where and as whom a virtual recipient's mail is delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualTarget {
    /// The mailbox: `virtual_mailbox_base` joined with the table's relative path.
    pub path: PathBuf,
    /// Whether it is a Maildir (the table's path ends in `/`), else an mbox file.
    pub maildir: bool,
    /// The owner's uid.
    pub uid: u32,
    /// The owner's gid.
    pub gid: u32,
}

/// The tables and settings virtual routing uses.
pub struct VirtualTables<'a> {
    /// `virtual_mailbox_maps`.
    pub mailbox: &'a dyn Lookup,
    /// `virtual_uid_maps`; `None` when the parameter is empty.
    pub uid: Option<&'a dyn Lookup>,
    /// `virtual_gid_maps`; `None` when the parameter is empty.
    pub gid: Option<&'a dyn Lookup>,
    /// `virtual_mailbox_base`.
    pub base: &'a Path,
    /// `recipient_delimiter`.
    pub delimiter: &'a str,
    /// `virtual_minimum_uid`.
    pub minimum_uid: u32,
    /// The ids to use when `virtual_uid_maps` / `virtual_gid_maps` are empty: the running
    /// user's when not root (the unprivileged mode, where ids cannot change anyway), `None`
    /// when root (then the maps are required, as in Postfix).
    pub unmapped_ids: Option<(u32, u32)>,
}

/// Routes one virtual recipient.
pub fn route_virtual(t: &VirtualTables<'_>, address: &str) -> Result<VirtualTarget, Failure> {
    let address = address.to_lowercase();
    let find = |table: &dyn Lookup, param: &str| {
        lookup_address_with(table, &address, t.delimiter, AddressLookup::VIRTUAL).map_err(|e| {
            log::warn!("{param} lookup of {address}: {e}");
            Failure::defer("4.3.0", format!("{param} lookup failure"))
        })
    };
    let Some(mailbox) = find(t.mailbox, "virtual_mailbox_maps")? else {
        return Err(Failure::bounce(
            "5.1.1",
            format!("unknown user: \"{address}\""),
        ));
    };
    let config = |what: String| {
        log::warn!("recipient {address}: {what}");
        Failure::config_error()
    };
    let mailbox = mailbox.trim();
    let rel = Path::new(mailbox);
    if mailbox.is_empty()
        || rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(config(format!(
            "bad mailbox path \"{mailbox}\" in virtual_mailbox_maps (must be relative to virtual_mailbox_base)"
        )));
    }
    if t.base.as_os_str().is_empty() {
        return Err(config("virtual_mailbox_base is not set".to_string()));
    }
    let id =
        |table: Option<&dyn Lookup>, param: &str, fallback: Option<u32>| -> Result<u32, Failure> {
            let Some(table) = table else {
                return fallback.ok_or_else(|| config(format!("{param} is empty")));
            };
            let Some(value) = find(table, param)? else {
                return Err(config(format!("not found in {param}")));
            };
            match value.trim().parse::<u32>() {
                Ok(n) if n > 0 || t.minimum_uid == 0 => Ok(n),
                _ => Err(config(format!("bad value \"{value}\" in {param}"))),
            }
        };
    let uid = id(t.uid, "virtual_uid_maps", t.unmapped_ids.map(|p| p.0))?;
    if t.uid.is_some() && uid < t.minimum_uid {
        return Err(config(format!(
            "uid {uid} in virtual_uid_maps is below virtual_minimum_uid {}",
            t.minimum_uid
        )));
    }
    let gid = id(t.gid, "virtual_gid_maps", t.unmapped_ids.map(|p| p.1))?;
    let maildir = mailbox.ends_with('/');
    let mut path = t.base.join(rel).into_os_string();
    if maildir {
        path.push("/");
    }
    Ok(VirtualTarget {
        path: PathBuf::from(path),
        maildir,
        uid,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_tables::Table;

    fn table(spec: &str) -> Table {
        Table::open(spec).unwrap()
    }

    #[test]
    fn decisions() {
        let mb = table(
            "inline:{ a@v.test=v.test/a/, b@v.test=v.test/b, @w.test=w.test/all/, abs@v.test=/etc/x, up@v.test=../x, low@v.test=v.test/low }",
        );
        let uids = table("inline:{ low@v.test=50, @v.test=5000, @w.test=5001 }");
        let gids = table("static:5000");
        let base = Path::new("/var/vmail");
        let t = VirtualTables {
            mailbox: &mb,
            uid: Some(&uids),
            gid: Some(&gids),
            base,
            delimiter: "+",
            minimum_uid: 100,
            unmapped_ids: None,
        };
        assert_eq!(
            route_virtual(&t, "A+ext@V.test").unwrap(),
            VirtualTarget {
                path: "/var/vmail/v.test/a/".into(),
                maildir: true,
                uid: 5000,
                gid: 5000
            }
        );
        assert_eq!(
            route_virtual(&t, "b@v.test").unwrap(),
            VirtualTarget {
                path: "/var/vmail/v.test/b".into(),
                maildir: false,
                uid: 5000,
                gid: 5000
            }
        );
        assert_eq!(route_virtual(&t, "anyone@w.test").unwrap().uid, 5001);
        assert_eq!(
            route_virtual(&t, "c@v.test").unwrap_err(),
            Failure::bounce("5.1.1", "unknown user: \"c@v.test\"")
        );
        for bad in ["abs@v.test", "up@v.test", "low@v.test"] {
            assert_eq!(
                route_virtual(&t, bad).unwrap_err(),
                Failure::config_error(),
                "{bad}"
            );
        }
        let t2 = VirtualTables { gid: None, ..t };
        assert_eq!(
            route_virtual(&t2, "b@v.test").unwrap_err(),
            Failure::config_error()
        );
        let t3 = VirtualTables {
            uid: None,
            gid: None,
            unmapped_ids: Some((1000, 1001)),
            ..t
        };
        assert_eq!(
            route_virtual(&t3, "b@v.test").unwrap(),
            VirtualTarget {
                path: "/var/vmail/v.test/b".into(),
                maildir: false,
                uid: 1000,
                gid: 1001
            }
        );
        let t4 = VirtualTables {
            base: Path::new(""),
            ..t
        };
        assert_eq!(
            route_virtual(&t4, "b@v.test").unwrap_err(),
            Failure::config_error()
        );
        let broken = OpenMaps::open("virtual_uid_maps", "hash:/nonexistent/x");
        let t6 = VirtualTables {
            uid: Some(&broken),
            ..t
        };
        assert_eq!(
            route_virtual(&t6, "b@v.test").unwrap_err(),
            Failure::defer("4.3.0", "virtual_uid_maps lookup failure")
        );
        assert!(OpenMaps::open("x", " ").is_empty());
        let zero = table("static:0");
        let t5 = VirtualTables {
            gid: Some(&zero),
            ..t
        };
        assert_eq!(
            route_virtual(&t5, "b@v.test").unwrap_err(),
            Failure::config_error()
        );
        // Root mailboxes only when the administrator asks for them.
        let t7 = VirtualTables {
            uid: Some(&zero),
            gid: Some(&zero),
            minimum_uid: 0,
            ..t
        };
        assert_eq!(route_virtual(&t7, "b@v.test").unwrap().uid, 0);
    }
}
