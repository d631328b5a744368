//! posthorn-tables: lookup tables in Postfix's spirit, and aliases(5) files.
//!
//! Role: every daemon that maps a key to a value through a main.cf table parameter
//! (`alias_maps`, `virtual_alias_maps`, `virtual_mailbox_maps`, `transport_maps`, ...) opens it
//! here, and the `postmap`/`postalias`/`newaliases` commands build `hash:` files here.
//!
//! Inputs: table specs as written in main.cf (`static:value`, `inline:{ k=v, {k = v w} }`,
//! `hash:/etc/postfix/virtual`, lists of them via [`split_table_list`]), postmap(1) source text
//! ([`parse_map_source`]) and aliases(5) text ([`parse_aliases`]).
//! Outputs: lookup results ([`Lookup`], [`Table`], [`TableList`], [`lookup_address_with`]) and
//! compiled `.db` files ([`build_hash`], [`postmap`], [`postalias`]).
//!
//! Keys are matched case-insensitively everywhere: queries are lowercased, and `hash:` files
//! store lowercased keys. Postfix folds case by default and `postmap -f` turns folding off;
//! posthorn always folds (no `-f`).
//!
//! # The `hash:` file format (version 1)
//!
//! One file, `<source>.db`, read whole and checked before use (see [`HashTable`]). All
//! integers are little-endian.
//!
//! ```text
//! header (40 bytes)
//!   0  magic      8  b"PHHASHDB"
//!   8  version    u32  1
//!  12  flags      u32  bit 0: keys are lowercased (always set)
//!  16  count      u32  number of records
//!  20  nslots     u32  slots in the index, a power of two, > count (load <= 1/2)
//!  24  body_len   u64  bytes after the header
//!  32  body_crc   u32  CRC-32 (IEEE, crc32fast) of the body
//!  36  header_crc u32  CRC-32 of header bytes 0..36
//! body
//!   index    nslots x { tag u32 = high 32 bits of FNV-1a-64(key), offset u32 (0xFFFFFFFF = empty) }
//!   records  count x { key_len u32, value_len u32, key bytes, value bytes } in source order
//! ```
//!
//! A lookup hashes the folded key, starts at slot `hash & (nslots - 1)` and probes linearly
//! until an empty slot; `offset` is relative to the start of the records area. Records are
//! UTF-8. Tables are rebuilt by writing `<db>.tmp.<pid>`, fsync, rename over `<db>`, fsync of
//! the directory, so a reader sees the old or the new table, never a torn one; an open
//! [`Table`] notices the new file with one `stat` per lookup and switches to it.
//!
//! The table file is memory-mapped read-only (`posthorn_sys::map_readonly`, the one audited
//! `unsafe` call): pages are shared between processes and loaded on demand. Its contract
//! (never modified in place) holds because tables are only ever replaced by rename.
//! [`HashTable::from_bytes`] also takes any other byte owner (tests use a `Vec`).
//!
//! Performance note: building a 200,000-key table and looking up every key takes well under
//! two seconds in a debug build (see the `two_hundred_thousand_keys` test).
//!
//! Error policy: nothing here panics on input. Syntax errors carry file and line
//! (`file, line N: message`, as Postfix prints them); a damaged `.db` file is
//! [`TableError::Corrupt`].

mod address;
mod aliases;
mod builder;
mod hash;
mod live;
mod source;
mod spec;

use std::borrow::Cow;
use std::path::PathBuf;

pub use address::{
    AddressLookup, AddressMatch, lookup_address, lookup_address_match, lookup_address_with,
    split_local_part,
};
pub use aliases::{AliasEntry, join_alias_targets, parse_aliases, postalias, split_alias_targets};
pub use builder::{build_hash, postmap};
pub use hash::{HashIter, HashTable};
pub use live::HashDb;
pub use source::parse_map_source;
pub use spec::{InlineTable, Table, TableList, split_table_list};

/// Why a table could not be opened, built or consulted.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// An I/O error on a table or source file (including "table not built" hints).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A syntax error in a source file (postmap or aliases text).
    #[error("{file}, line {line}: {message}")]
    Syntax {
        /// The source file name (as given by the caller).
        file: String,
        /// The 1-based line number where the logical line starts.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A malformed or unsupported table spec such as `btree:/x` or `inline:{a}`.
    #[error("{0}")]
    BadSpec(String),
    /// A compiled `.db` file that fails its checks (truncated, bad checksum, bad layout).
    #[error("{}: corrupt table: {reason} (rebuild it with postmap or postalias)", path.display())]
    Corrupt {
        /// The `.db` file.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
}

/// Something that maps a key to a value: a single table, a list, or a compiled file.
pub trait Lookup {
    /// Looks `key` up (case-insensitively); `Ok(None)` when there is no entry.
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError>;
}

/// Folds a key to lowercase the way every table stores it; borrows when already folded.
pub(crate) fn fold(key: &str) -> Cow<'_, str> {
    if key.is_ascii() {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(key.to_ascii_lowercase())
        } else {
            Cow::Borrowed(key)
        }
    } else {
        let lower = key.to_lowercase();
        if lower == key {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(lower)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Table>();
        shared::<TableList>();
        shared::<HashTable>();
        shared::<TableError>();
    }

    #[test]
    fn fold_borrows_when_possible() {
        assert!(matches!(fold("abc@x.org"), Cow::Borrowed(_)));
        assert_eq!(fold("AbC@X.org"), "abc@x.org");
        assert_eq!(fold("ÄRGER"), "ärger");
        assert!(matches!(fold("ärger"), Cow::Borrowed(_)));
    }

    #[test]
    fn error_display_has_file_and_line() {
        let e = TableError::Syntax {
            file: "/etc/aliases".into(),
            line: 7,
            message: "need name:value pair".into(),
        };
        assert_eq!(e.to_string(), "/etc/aliases, line 7: need name:value pair");
        let e = TableError::Corrupt {
            path: "/x.db".into(),
            reason: "body checksum mismatch".into(),
        };
        assert!(
            e.to_string()
                .starts_with("/x.db: corrupt table: body checksum mismatch")
        );
    }
}
