//! `newaliases` / `sendmail -bi`: rebuilds each `hash:` alias database named in
//! `alias_database` (or by `-oA`) from its aliases(5) source with posthorn_tables::postalias.
//! A spec without a type is `hash:`, posthorn's only buildable type (Postfix's
//! `default_database_type`).

use std::path::Path;

use posthorn_tables::{TableError, postalias, split_table_list};

use crate::exit;

/// Why an alias database could not be rebuilt: the sysexits code and the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AliasError {
    /// 75 for I/O trouble, 78 for configuration or syntax errors.
    pub code: i32,
    /// The text after `newaliases: fatal: `.
    pub message: String,
}

/// Rebuilds every database in `alias_database`; `warn` receives each warning (duplicate
/// entries and the like). Stops at the first database that cannot be built.
pub fn rebuild(alias_database: &str, warn: &mut dyn FnMut(String)) -> Result<usize, AliasError> {
    let mut built = 0;
    for spec in split_table_list(alias_database) {
        let (kind, path) = match spec.split_once(':') {
            Some((k, p)) => (k, p),
            None => ("hash", spec.as_str()),
        };
        if kind != "hash" {
            return Err(AliasError {
                code: exit::CONFIG,
                message: format!(
                    "unsupported alias database type {kind}: in {spec:?} (newaliases builds hash: tables only)"
                ),
            });
        }
        if path.is_empty() {
            return Err(AliasError {
                code: exit::CONFIG,
                message: format!("alias database {spec:?} names no file"),
            });
        }
        let warnings = postalias(Path::new(path)).map_err(|e| AliasError {
            code: match e {
                TableError::Io { .. } | TableError::Corrupt { .. } => exit::TEMPFAIL,
                TableError::Syntax { .. } | TableError::BadSpec(_) => exit::CONFIG,
            },
            message: e.to_string(),
        })?;
        for w in warnings {
            warn(w);
        }
        built += 1;
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_hash_tables_and_reports_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("aliases");
        std::fs::write(&a, "postmaster: root\nroot: alice\nroot: bob\n").unwrap();
        let b = dir.path().join("more");
        std::fs::write(&b, "x: y\n").unwrap();
        let mut warnings = Vec::new();
        let spec = format!("hash:{}, {}", a.display(), b.display());
        let n = rebuild(&spec, &mut |w| warnings.push(w)).unwrap();
        assert_eq!(n, 2);
        assert!(dir.path().join("aliases.db").exists());
        assert!(dir.path().join("more.db").exists());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("duplicate"), "{warnings:?}");
        assert_eq!(rebuild("", &mut |_| {}).unwrap(), 0);
    }

    #[test]
    fn errors_carry_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = rebuild(&format!("hash:{}", missing.display()), &mut |_| {}).unwrap_err();
        assert_eq!(e.code, 75, "{e}");
        let e = rebuild("btree:/etc/aliases", &mut |_| {}).unwrap_err();
        assert_eq!(e.code, 78, "{e}");
    }
}
