//! The file operations every postsuper action is made of: renames that never replace a file
//! (a queue ID names one message; replacing would lose one), removals that treat a file
//! already gone as someone else's work, and time stamps set through the open file.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::SystemTime;

use posthorn_queue::{QueueId, QueueLayout, QueueName};

use crate::args::{LOG_QUEUES, MESSAGE_QUEUES};

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replacing `to`, and
/// with `NotFound` when `from` is gone. A missing hash directory below a queue is created
/// first (mode 0700 as the queue's own; owned by whoever runs postsuper, see the crate doc).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match to.parent() {
            Some(dir) if !dir.exists() => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
                renameat2(from, to)
            }
            _ => Err(e),
        },
        r => r,
    }
}

fn renameat2(from: &Path, to: &Path) -> io::Result<()> {
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        from,
        nix::fcntl::AT_FDCWD,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(io::Error::from)
}

/// Removes a file; `Ok(false)` when it was not there.
pub fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the modification time of the file at `path` (its retry time in `deferred/`).
/// `Ok(false)` when the file is gone.
pub fn set_mtime(path: &Path, t: SystemTime) -> io::Result<bool> {
    // Setting explicit times needs ownership, not write permission: a read-only open does.
    match File::open(path) {
        Ok(f) => f.set_modified(t).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the defer, bounce and trace logs of message `id`.
pub fn remove_logs(layout: &QueueLayout, id: &QueueId) -> io::Result<()> {
    for q in LOG_QUEUES {
        let p = layout.path(q, id);
        remove(&p).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {}", p.display(), crate::report::describe(&e)),
            )
        })?;
    }
    Ok(())
}

/// Whether a message file `id` exists in a message queue or in `corrupt/`. Looked for twice,
/// so that a message renamed from one queue to another while we look is still seen.
pub fn message_exists(layout: &QueueLayout, id: &QueueId) -> bool {
    (0..2).any(|_| {
        MESSAGE_QUEUES
            .iter()
            .map(|&q| layout.path(q, id))
            .chain(std::iter::once(
                layout.dir(QueueName::Corrupt).join(id.as_str()),
            ))
            .any(|p| fs::symlink_metadata(p).is_ok())
    })
}

/// How `path` is shown in messages: relative to the queue directory.
pub fn show(layout: &QueueLayout, path: &Path) -> String {
    path.strip_prefix(layout.root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_never_replaces_and_creates_hash_dirs() {
        let t = tempfile::tempdir().unwrap();
        let l = QueueLayout::new(t.path().join("q"), &["deferred".into()], 1);
        l.create_tree(&posthorn_queue::DirOwner::default()).unwrap();
        let id = QueueId::new(SystemTime::now(), 9);
        let a = l.path(QueueName::Incoming, &id);
        let b = l.path(QueueName::Hold, &id);
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"b");
        fs::remove_dir_all(l.dir(QueueName::Deferred)).unwrap();
        let d = l.path(QueueName::Deferred, &id);
        rename_noreplace(&a, &d).unwrap();
        assert_eq!(fs::read(&d).unwrap(), b"a");
        let e = rename_noreplace(&a, &d).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(message_exists(&l, &id));
        assert!(remove(&d).unwrap() && remove(&b).unwrap());
        assert!(!message_exists(&l, &id));
        assert!(!remove(&d).unwrap());
        assert!(!set_mtime(&d, SystemTime::now()).unwrap());
        assert_eq!(
            show(&l, &d),
            format!("deferred/{}/{id}", id.hash_chars(1)[0])
        );
    }
}
