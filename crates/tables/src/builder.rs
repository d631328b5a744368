//! Building `hash:` files: `build_hash`, `postmap`, and the atomic write they share.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::hash::{
    EMPTY, FLAG_FOLDED, HEADER_LEN, MAGIC, SLOT_LEN, VERSION, db_path_for, fnv1a64, read_u32,
    record,
};
use crate::source::{parse_map_source, read_text};
use crate::{TableError, fold};

/// Builds the table `db_path` from `(key, value)` pairs; returns warnings.
///
/// Keys are lowercased. A duplicate key keeps the first value and adds a warning
/// `duplicate entry: "key"` (as postmap does). The file is written as `<db_path>.tmp.<pid>`,
/// fsync'd, renamed over `db_path`, and the directory fsync'd: readers see either the old
/// or the new table.
pub fn build_hash(
    db_path: &Path,
    entries: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, TableError> {
    build(
        db_path,
        entries.into_iter().map(|(k, v)| (k, v, None)),
        None,
    )
}

/// Builds `<source>.db` from postmap(1) source text; returns warnings (`file, line N: ...`).
pub fn postmap(source: &Path) -> Result<Vec<String>, TableError> {
    let text = read_text(source)?;
    let file = source.display().to_string();
    let entries = parse_map_source(&text, &file)?;
    build(
        &db_path_for(source),
        entries.into_iter().map(|(k, v, line)| (k, v, Some(line))),
        Some(&file),
    )
}

/// The builder shared by [`build_hash`], [`postmap`] and `postalias`.
pub(crate) fn build(
    db_path: &Path,
    entries: impl Iterator<Item = (String, String, Option<usize>)>,
    file: Option<&str>,
) -> Result<Vec<String>, TableError> {
    let too_large = || TableError::Io {
        path: db_path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "table too large (4 GiB limit)"),
    };
    let entries: Vec<_> = entries.collect();
    let nslots = (entries.len().max(4) * 2).next_power_of_two();
    if u32::try_from(nslots).is_err() {
        return Err(too_large());
    }
    let mask = nslots - 1;
    let mut slots = vec![0xFF_u8; nslots * SLOT_LEN];
    let mut records: Vec<u8> = Vec::new();
    let mut warnings = Vec::new();
    let mut count: u32 = 0;
    for (key, value, line) in entries {
        let key = fold(&key);
        let hash = fnv1a64(key.as_bytes());
        let tag = (hash >> 32) as u32;
        let mut slot = (hash as usize) & mask;
        let duplicate = loop {
            let at = slot * SLOT_LEN;
            let offset = read_u32(&slots, at + 4).unwrap_or(EMPTY);
            if offset == EMPTY {
                break false;
            }
            if read_u32(&slots, at) == Some(tag)
                && record(&records, offset as usize).is_some_and(|(k, _, _)| k == key.as_bytes())
            {
                break true;
            }
            slot = (slot + 1) & mask;
        };
        if duplicate {
            warnings.push(match (file, line) {
                (Some(file), Some(line)) => {
                    format!("{file}, line {line}: duplicate entry: \"{key}\"")
                }
                _ => format!("duplicate entry: \"{key}\""),
            });
            continue;
        }
        let offset = u32::try_from(records.len()).map_err(|_| too_large())?;
        let key_len = u32::try_from(key.len()).map_err(|_| too_large())?;
        let value_len = u32::try_from(value.len()).map_err(|_| too_large())?;
        if offset == EMPTY {
            return Err(too_large());
        }
        records.extend_from_slice(&key_len.to_le_bytes());
        records.extend_from_slice(&value_len.to_le_bytes());
        records.extend_from_slice(key.as_bytes());
        records.extend_from_slice(value.as_bytes());
        let at = slot * SLOT_LEN;
        slots[at..at + 4].copy_from_slice(&tag.to_le_bytes());
        slots[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
        count += 1;
    }
    if u32::try_from(records.len()).is_err() {
        return Err(too_large());
    }

    let mut crc = crc32fast::Hasher::new();
    crc.update(&slots);
    crc.update(&records);
    let body_crc = crc.finalize();
    let body_len = (slots.len() + records.len()) as u64;

    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&FLAG_FOLDED.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    // Checked above: nslots fits in u32.
    header.extend_from_slice(&(nslots as u32).to_le_bytes());
    header.extend_from_slice(&body_len.to_le_bytes());
    header.extend_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header);
    header.extend_from_slice(&header_crc.to_le_bytes());
    debug_assert_eq!(header.len(), HEADER_LEN);

    write_atomically(db_path, &[&header, &slots, &records])?;
    Ok(warnings)
}

/// Writes `parts` to `<path>.tmp.<pid>`, fsyncs, renames over `path`, fsyncs the directory.
fn write_atomically(path: &Path, parts: &[&[u8]]) -> Result<(), TableError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // The mode: the old table's, else Postfix's rule (owner read-write plus the source
    // file's group/other read bits), so a table of secrets never comes out world-readable.
    let mode = match fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(_) => {
            let source = fs::metadata(path.with_extension(""))
                .map(|m| m.permissions().mode())
                .unwrap_or(0o644);
            0o600 | (source & 0o044)
        }
    };
    let write = || -> io::Result<()> {
        // A leftover (or planted) temporary name is removed, never followed: unlink acts on
        // a symlink itself, and create_new refuses to open through one.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    };
    if let Err(source) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(TableError::Io { path: tmp, source });
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(TableError::Io {
            path: path.to_owned(),
            source,
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| TableError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashTable;

    #[test]
    fn postmap_builds_source_db_with_line_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("transport");
        fs::write(&src, "# t\nexample.org smtp:[relay]\nEXAMPLE.org dup\n").unwrap();
        let warnings = postmap(&src).unwrap();
        assert_eq!(
            warnings,
            vec![format!(
                "{}, line 3: duplicate entry: \"example.org\"",
                src.display()
            )]
        );
        let table = HashTable::open(&dir.path().join("transport.db")).unwrap();
        assert_eq!(table.get("example.org"), Some("smtp:[relay]"));
    }

    #[test]
    fn postmap_syntax_error_leaves_old_table() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m");
        fs::write(&src, "a 1\n").unwrap();
        postmap(&src).unwrap();
        fs::write(&src, "a 2\nbroken\n").unwrap();
        let err = postmap(&src).unwrap_err();
        assert!(matches!(err, TableError::Syntax { line: 2, .. }), "{err}");
        assert_eq!(
            HashTable::open(&db_path_for(&src)).unwrap().get("a"),
            Some("1")
        );
    }
}
