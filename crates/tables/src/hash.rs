//! `hash:` tables: the compiled `.db` file format and its checked reader.
//!
//! The format is described in the crate documentation. [`HashTable`] is one checked,
//! immutable snapshot of a file; the builder is in `builder.rs`, and [`crate::HashDb`]
//! (`live.rs`) follows rebuilds.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::live::FileId;
use crate::{Lookup, TableError, fold};

/// First eight bytes of every posthorn hash table.
pub(crate) const MAGIC: [u8; 8] = *b"PHHASHDB";
/// The format version this code writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Header flag: keys are stored lowercased.
pub(crate) const FLAG_FOLDED: u32 = 1;
/// Size of the fixed header.
pub(crate) const HEADER_LEN: usize = 40;
/// Size of one index slot: tag u32 + record offset u32.
pub(crate) const SLOT_LEN: usize = 8;
/// Record offset of an empty slot.
pub(crate) const EMPTY: u32 = u32::MAX;

/// One checked, immutable snapshot of a compiled `hash:` file.
///
/// Opening reads the whole file and verifies magic, version, both CRCs and the complete
/// index/record layout, so that later lookups cannot go wrong on a damaged file.
pub struct HashTable {
    /// The `.db` file this snapshot came from (for messages).
    path: PathBuf,
    /// The file's bytes (a `Vec<u8>` today; any owner of bytes, e.g. a mapping, works).
    data: Box<dyn AsRef<[u8]> + Send + Sync>,
    /// Number of records.
    count: usize,
    /// Number of index slots (a power of two).
    nslots: usize,
    /// Byte offset of the records area.
    records_start: usize,
    /// Identity of the file when it was opened, to notice a rebuild.
    pub(crate) id: Option<FileId>,
    /// The open file: keeps the inode alive so its number cannot be reused by a rebuild.
    _file: Option<File>,
}

impl HashTable {
    /// Opens and checks a compiled table, e.g. `/etc/aliases.db`.
    ///
    /// A missing file is an [`TableError::Io`] (kind `NotFound`) whose message names the
    /// postmap/postalias/newaliases command that builds it.
    pub fn open(db_path: &Path) -> Result<HashTable, TableError> {
        let io_err = |source| TableError::Io {
            path: db_path.to_owned(),
            source,
        };
        let mut file = File::open(db_path).map_err(|err| io_err(not_built_hint(db_path, err)))?;
        let meta = file.metadata().map_err(io_err)?;
        // Tables are memory-mapped (posthorn-sys holds the one unsafe call); an empty file
        // cannot be mapped and is read instead (it is rejected as corrupt either way).
        let data: Box<dyn AsRef<[u8]> + Send + Sync> = if meta.len() > 0 {
            Box::new(posthorn_sys::map_readonly(&file).map_err(io_err)?)
        } else {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io_err)?;
            Box::new(bytes)
        };
        let mut table = HashTable::from_bytes(db_path, data)?;
        table.id = Some(FileId::of(&meta));
        table._file = Some(file);
        Ok(table)
    }

    /// Checks `bytes` as a table read from `path`; the hook for a memory mapping of the file.
    pub fn from_bytes(
        path: &Path,
        data: Box<dyn AsRef<[u8]> + Send + Sync>,
    ) -> Result<HashTable, TableError> {
        let layout = validate((*data).as_ref()).map_err(|reason| TableError::Corrupt {
            path: path.to_owned(),
            reason,
        })?;
        Ok(HashTable {
            path: path.to_owned(),
            data,
            count: layout.count,
            nslots: layout.nslots,
            records_start: layout.records_start,
            id: None,
            _file: None,
        })
    }

    /// Returns the value for `key` (matched case-insensitively), borrowed from the table.
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = fold(key);
        let bytes = (*self.data).as_ref();
        let hash = fnv1a64(key.as_bytes());
        let tag = (hash >> 32) as u32;
        let mask = self.nslots - 1;
        // Truncation is intended: the low bits pick the first slot.
        let mut slot = (hash as usize) & mask;
        for _ in 0..self.nslots {
            let at = HEADER_LEN + slot * SLOT_LEN;
            let offset = read_u32(bytes, at + 4)?;
            if offset == EMPTY {
                return None;
            }
            if read_u32(bytes, at)? == tag {
                let (k, v, _) = record(bytes, self.records_start + offset as usize)?;
                if k == key.as_bytes() {
                    return std::str::from_utf8(v).ok();
                }
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// All `(key, value)` pairs in source order; keys are lowercased.
    pub fn iter(&self) -> HashIter<'_> {
        HashIter {
            bytes: (*self.data).as_ref(),
            pos: self.records_start,
            remaining: self.count,
        }
    }

    /// The `.db` file this table was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for HashTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashTable")
            .field("path", &self.path)
            .field("count", &self.count)
            .field("nslots", &self.nslots)
            .finish_non_exhaustive()
    }
}

impl Lookup for HashTable {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.get(key).map(str::to_owned))
    }
}

/// Iterator over a [`HashTable`]'s entries in source order.
#[derive(Debug)]
pub struct HashIter<'a> {
    /// The whole file.
    bytes: &'a [u8],
    /// Offset of the next record.
    pos: usize,
    /// Records left.
    remaining: usize,
}

impl<'a> Iterator for HashIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let (k, v, end) = record(self.bytes, self.pos)?;
        self.pos = end;
        self.remaining -= 1;
        Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// `<source>.db`.
pub(crate) fn db_path_for(source: &Path) -> PathBuf {
    let mut name = source.as_os_str().to_owned();
    name.push(".db");
    name.into()
}

/// `<db>` without its `.db` suffix (unchanged if there is none).
pub(crate) fn source_path_for(db_path: &Path) -> PathBuf {
    let text = db_path.to_string_lossy();
    match text.strip_suffix(".db") {
        Some(source) => PathBuf::from(source),
        None => db_path.to_owned(),
    }
}

/// Adds "run postmap" advice to a NotFound error; other errors pass through.
fn not_built_hint(db_path: &Path, err: io::Error) -> io::Error {
    if err.kind() != io::ErrorKind::NotFound {
        return err;
    }
    let source = source_path_for(db_path);
    let source = source.display();
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "table not built: run \"postmap {source}\" (\"postalias {source}\" or \
             \"newaliases\" for an aliases file)"
        ),
    )
}

/// The parts of the header that lookups need, after validation.
struct Layout {
    /// Number of records.
    count: usize,
    /// Number of index slots.
    nslots: usize,
    /// Offset of the records area.
    records_start: usize,
}

/// Checks a table file (header, checksums, structure); the error is the reason for
/// [`TableError::Corrupt`].
fn validate(b: &[u8]) -> Result<Layout, String> {
    if b.len() < HEADER_LEN {
        return Err(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            b.len()
        ));
    }
    if b[..8] != MAGIC {
        return Err("not a posthorn hash table (bad magic)".to_owned());
    }
    let field = |at| read_u32(b, at).ok_or_else(|| "truncated header".to_owned());
    if crc32fast::hash(&b[..36]) != field(36)? {
        return Err("header checksum mismatch".to_owned());
    }
    let version = field(8)?;
    if version != VERSION {
        return Err(format!(
            "unsupported format version {version} (expected {VERSION})"
        ));
    }
    let flags = field(12)?;
    if flags != FLAG_FOLDED {
        return Err(format!("unsupported flags {flags:#x}"));
    }
    let count = field(16)? as usize;
    let nslots = field(20)? as usize;
    let body_len = b
        .get(24..32)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| "truncated header".to_owned())?;
    let actual = (b.len() - HEADER_LEN) as u64;
    if body_len != actual {
        return Err(format!(
            "size mismatch: header says {body_len} body bytes, file has {actual}"
        ));
    }
    if crc32fast::hash(&b[HEADER_LEN..]) != field(32)? {
        return Err("body checksum mismatch".to_owned());
    }
    if !nslots.is_power_of_two() || count >= nslots {
        return Err(format!("bad index size {nslots} for {count} records"));
    }
    let records_start = nslots
        .checked_mul(SLOT_LEN)
        .and_then(|n| n.checked_add(HEADER_LEN))
        .filter(|&n| n <= b.len())
        .ok_or_else(|| format!("index of {nslots} slots does not fit in the file"))?;

    // The body's CRC already rules out damage; what is left to check is the structure a
    // writer could get wrong: the records exactly fill the rest of the file, and every used
    // slot points into the records area. This stays cheap (no per-record UTF-8 check or
    // offset search): lookups and iteration bounds-check every read and verify UTF-8 on
    // the bytes they return, so a table that passes can still never cause a bad read.
    let mut pos = records_start;
    for n in 0..count {
        let (_, _, end) = record(b, pos).ok_or_else(|| format!("record {n} runs past the end"))?;
        pos = end;
    }
    if pos != b.len() {
        return Err(format!(
            "{} stray bytes after the last record",
            b.len() - pos
        ));
    }
    let records_len = b.len() - records_start;
    let mut used = 0;
    for slot in 0..nslots {
        let offset = read_u32(b, HEADER_LEN + slot * SLOT_LEN + 4).ok_or("index truncated")?;
        if offset == EMPTY {
            continue;
        }
        if offset as usize >= records_len {
            return Err(format!("index slot {slot} points outside the records"));
        }
        used += 1;
    }
    if used != count {
        return Err(format!("index holds {used} entries, header says {count}"));
    }
    Ok(Layout {
        count,
        nslots,
        records_start,
    })
}

/// Reads the record at `at`: `(key, value, end offset)`, or None if it runs past the end.
pub(crate) fn record(b: &[u8], at: usize) -> Option<(&[u8], &[u8], usize)> {
    let key_len = read_u32(b, at)? as usize;
    let value_len = read_u32(b, at.checked_add(4)?)? as usize;
    let key_start = at.checked_add(8)?;
    let value_start = key_start.checked_add(key_len)?;
    let end = value_start.checked_add(value_len)?;
    Some((
        b.get(key_start..value_start)?,
        b.get(value_start..end)?,
        end,
    ))
}

/// Reads a little-endian u32 at `at`, or None past the end.
pub(crate) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// FNV-1a, 64 bits: simple, stable across builds and platforms, good enough for an index
/// whose keys are chosen by the administrator.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build_hash;
    use std::fs;
    use std::time::Instant;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn round_trip_with_folding_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("virtual.db");
        let warnings = build_hash(
            &db,
            pairs(&[
                ("Foo@Example.org", "bar"),
                ("empty", ""),
                ("foo@example.org", "second"),
                ("ünï", "códe"),
            ]),
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec!["duplicate entry: \"foo@example.org\"".to_owned()]
        );
        let table = HashTable::open(&db).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.get("FOO@example.ORG"), Some("bar"));
        assert_eq!(table.get("empty"), Some(""));
        assert_eq!(table.get("ÜNÏ"), Some("códe"));
        assert_eq!(table.get("nope"), None);
        let all: Vec<_> = table.iter().collect();
        assert_eq!(
            all,
            vec![("foo@example.org", "bar"), ("empty", ""), ("ünï", "códe")]
        );
        assert_eq!(table.lookup("Empty").unwrap().as_deref(), Some(""));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("virtual.db")]);
    }

    #[test]
    fn empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("e.db");
        build_hash(&db, Vec::new()).unwrap();
        let table = HashTable::open(&db).unwrap();
        assert!(table.is_empty());
        assert_eq!(table.get("x"), None);
        assert_eq!(table.iter().count(), 0);
    }

    #[test]
    fn missing_db_names_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("aliases.db");
        let err = HashTable::open(&db).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("postmap "), "{text}");
        assert!(text.contains("newaliases"), "{text}");
        assert!(
            matches!(err, TableError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
    }

    /// Builds a small table and returns its bytes.
    fn small_table_bytes(dir: &Path) -> Vec<u8> {
        let db = dir.join("small.db");
        build_hash(
            &db,
            pairs(&[("alpha", "one"), ("beta", "two"), ("gamma", "three")]),
        )
        .unwrap();
        fs::read(&db).unwrap()
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = small_table_bytes(dir.path());
        let db = dir.path().join("cut.db");
        for len in 0..bytes.len() {
            fs::write(&db, &bytes[..len]).unwrap();
            match HashTable::open(&db) {
                Err(TableError::Corrupt { path, .. }) => assert_eq!(path, db),
                other => panic!("truncated to {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = small_table_bytes(dir.path());
        for at in 0..bytes.len() {
            for bit in [0x01_u8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bit;
                let result = HashTable::from_bytes(Path::new("x.db"), Box::new(damaged));
                assert!(
                    matches!(result, Err(TableError::Corrupt { .. })),
                    "byte {at} bit {bit:#x}: {result:?}"
                );
            }
        }
    }

    /// Recomputes both CRCs, so that layout checks (not checksums) must catch damage.
    fn reseal(bytes: &mut [u8]) {
        let body_crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[32..36].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&bytes[..36]);
        bytes[36..40].copy_from_slice(&header_crc.to_le_bytes());
    }

    #[test]
    fn damage_with_valid_checksums_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = small_table_bytes(dir.path());
        for at in 8..32 {
            for value in [0x00_u8, 0x01, 0x7F, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[at] = value;
                reseal(&mut damaged);
                if let Ok(table) = HashTable::from_bytes(Path::new("x.db"), Box::new(damaged)) {
                    let _ = table.get("alpha");
                    let _ = table.iter().count();
                }
            }
        }
        for at in HEADER_LEN..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] = damaged[at].wrapping_add(0x41);
            reseal(&mut damaged);
            if let Ok(table) = HashTable::from_bytes(Path::new("x.db"), Box::new(damaged)) {
                for key in ["alpha", "beta", "gamma", "delta"] {
                    let _ = table.get(key);
                }
                let _ = table.iter().count();
            }
        }
    }

    #[test]
    fn foreign_file_is_corrupt() {
        let err = HashTable::from_bytes(Path::new("/etc/aliases.db"), Box::new(vec![0_u8; 4096]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/aliases.db: corrupt table: not a posthorn hash table (bad magic) \
             (rebuild it with postmap or postalias)"
        );
    }

    #[test]
    fn two_hundred_thousand_keys() {
        const N: usize = 200_000;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("big.db");
        let started = Instant::now();
        let entries = (0..N).map(|i| {
            (
                format!("User{i}@Example{}.org", i % 97),
                format!("mailbox/{i}/"),
            )
        });
        assert!(build_hash(&db, entries).unwrap().is_empty());
        let built = started.elapsed();
        let table = HashTable::open(&db).unwrap();
        assert_eq!(table.len(), N);
        for i in 0..N {
            let key = format!("user{i}@example{}.org", i % 97);
            let expected = format!("mailbox/{i}/");
            assert_eq!(table.get(&key), Some(expected.as_str()), "{key}");
        }
        assert_eq!(table.get("user200000@example0.org"), None);
        eprintln!("200k keys: build {built:?}, total {:?}", started.elapsed());
    }
}
