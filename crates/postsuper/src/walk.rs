//! Walking a queue directory as it is, not as the configuration says it should be: files in
//! any one-character subdirectory (a hash level, possibly the wrong one after a change of
//! `hash_queue_names` or `hash_queue_depth`), and everything else found there.
//!
//! Symbolic links are never followed (`lstat`), so a planted link cannot lead the walk, or
//! the repairs made from its result, out of the queue.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::report::describe;

/// The deepest hash level a queue can have (`QueueLayout` clamps `hash_queue_depth` to 5).
const MAX_LEVELS: usize = 5;

/// What kind of object an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory with a one-character name (a hash level); its contents come before it.
    HashDir,
    /// Any other directory (not entered).
    OtherDir,
    /// A symbolic link, FIFO, socket or device.
    Other,
}

/// One object found below a queue directory.
#[derive(Debug)]
pub struct Entry {
    /// Its path.
    pub path: PathBuf,
    /// Its file name, when it is valid UTF-8 (queue IDs always are).
    pub name: Option<String>,
    /// What it is.
    pub kind: Kind,
    /// How many directory levels below the queue directory it sits (0: at the top).
    pub level: usize,
    /// Its `lstat` data.
    pub meta: fs::Metadata,
}

/// Lists everything below `top`, descending into one-character subdirectories when
/// `recurse` is set, children before their directory. A missing `top` is empty; objects
/// that vanish while the walk runs (the mail system is running) are left out.
pub fn walk(top: &Path, recurse: bool) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk_into(top, 0, recurse, &mut out)?;
    Ok(out)
}

fn walk_into(dir: &Path, level: usize, recurse: bool, out: &mut Vec<Entry>) -> io::Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {}", dir.display(), describe(&e)),
            ));
        }
    };
    let mut names: Vec<_> = rd.filter_map(Result::ok).map(|e| e.file_name()).collect();
    names.sort();
    for os in names {
        let path = dir.join(&os);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {}", path.display(), describe(&e)),
                ));
            }
        };
        let name = os.to_str().map(str::to_string);
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            if recurse && level < MAX_LEVELS && name.as_ref().is_some_and(|n| n.len() == 1) {
                walk_into(&path, level + 1, recurse, out)?;
                Kind::HashDir
            } else {
                Kind::OtherDir
            }
        } else {
            Kind::Other
        };
        out.push(Entry {
            path,
            name,
            kind,
            level,
            meta,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_at_any_hash_level_and_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("deferred");
        fs::create_dir_all(top.join("A/B")).unwrap();
        fs::create_dir_all(top.join("long")).unwrap();
        fs::write(top.join("A/B/f1"), b"").unwrap();
        fs::write(top.join("A/f2"), b"").unwrap();
        fs::write(top.join("f3"), b"").unwrap();
        std::os::unix::fs::symlink("/etc", top.join("L")).unwrap();
        let got: Vec<(String, Kind, usize)> = walk(&top, true)
            .unwrap()
            .into_iter()
            .map(|e| (e.name.unwrap(), e.kind, e.level))
            .collect();
        assert_eq!(
            got,
            vec![
                ("f1".into(), Kind::File, 2),
                ("B".into(), Kind::HashDir, 1),
                ("f2".into(), Kind::File, 1),
                ("A".into(), Kind::HashDir, 0),
                ("L".into(), Kind::Other, 0),
                ("f3".into(), Kind::File, 0),
                ("long".into(), Kind::OtherDir, 0),
            ]
        );
        let flat = walk(&top, false).unwrap();
        assert_eq!(flat.iter().filter(|e| e.kind == Kind::File).count(), 1);
        assert!(walk(&t.path().join("missing"), true).unwrap().is_empty());
    }
}
