//! `-s` (structure check and repair) and `-p` (purge stale temporary files).
//!
//! Found and repaired, each with a `warning:` line naming the path:
//! - a message or log file in the wrong hash subdirectory (after a change of
//!   `hash_queue_names` or `hash_queue_depth`, or a restore): moved where the configuration
//!   puts it; hash subdirectories no longer needed are removed when empty (`-s`);
//! - a file whose name is neither a queue ID nor a temporary name: moved to `corrupt/`,
//!   where nothing delivers it, for inspection (`-s`);
//! - symbolic links, FIFOs, sockets and devices: removed; other directories are removed
//!   when empty and reported otherwise (`-s`);
//! - a log (`defer/`, `bounce/`, `trace/`) older than a day whose message is in no queue
//!   (left when a message was deleted while qmgr was delivering it): removed (`-s`);
//! - `tmp.*` files (the names `NewQueueFile::create` uses before a file gets its queue ID)
//!   and incomplete queue files (no owner-execute bit), when their writer is gone (it no
//!   longer holds the file's lock) or they are more than a day old: removed (`-s`, `-p`).
//!   Such a file was never acknowledged to anyone, so no mail is lost. A file younger than
//!   ten seconds is left alone even without a lock: a writer takes its lock just after
//!   creating the file.
//!
//! Queue IDs carry the arrival time as well as the inode number, so unlike Postfix's `-s`
//! this does not rename files to match their inode number after a restore: a restored file
//! cannot collide with the ID of a new one.
//!
//! Safe while the mail system runs: daemons look for a message only where the
//! configuration puts it, so a misplaced file is nobody's until it is moved; everything
//! else removed here is something no running process will ever complete.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use posthorn_queue::file::{is_complete, writer_gone};
use posthorn_queue::{QueueId, QueueLayout, QueueName};

use crate::args::{LOG_QUEUES, MESSAGE_QUEUES};
use crate::fsops::{message_exists, remove, rename_noreplace, show};
use crate::report::{describe, warn};
use crate::walk::{Entry, Kind, walk};

/// Temporary and incomplete files older than this are stale whatever their lock says.
pub const STALE_AGE: Duration = Duration::from_secs(24 * 3600);
/// Younger files are never taken for abandoned (see the module doc).
pub const MIN_AGE: Duration = Duration::from_secs(10);
/// The characters of hash subdirectory names (`%05X` of the microseconds).
const HASH_CHARS: &str = "0123456789ABCDEF";

/// One run of `-s` and/or `-p`.
pub struct Repair<'a> {
    layout: &'a QueueLayout,
    structure: bool,
    purge: bool,
    now: SystemTime,
    /// How many problems were repaired.
    pub repaired: usize,
    /// How many problems were found and left for the administrator.
    pub left: usize,
}

impl<'a> Repair<'a> {
    /// A repair of `layout`: `structure` for `-s`, `purge` for `-p`.
    pub fn new(layout: &'a QueueLayout, structure: bool, purge: bool) -> Self {
        Repair {
            layout,
            structure,
            purge,
            now: SystemTime::now(),
            repaired: 0,
            left: 0,
        }
    }

    /// Checks `queues`: message queues first, so that messages are in place before their
    /// logs are checked for orphans.
    pub fn run(&mut self, queues: &[QueueName]) -> io::Result<()> {
        let msg = queues.iter().filter(|q| MESSAGE_QUEUES.contains(q));
        let logs = queues.iter().filter(|q| LOG_QUEUES.contains(q));
        for &q in msg.chain(logs) {
            self.queue(q)?;
        }
        Ok(())
    }

    fn queue(&mut self, q: QueueName) -> io::Result<()> {
        // The configured depth, read off the path of any ID.
        let probe = QueueId::new(UNIX_EPOCH, 1);
        let depth = self
            .layout
            .dir_for(q, &probe)
            .strip_prefix(self.layout.dir(q))
            .map(|p| p.components().count())
            .unwrap_or(0);
        for e in walk(&self.layout.dir(q), q != QueueName::Maildrop)? {
            match e.kind {
                Kind::File => self.file(q, &e)?,
                Kind::HashDir => {
                    let wanted =
                        e.level < depth && e.name.as_deref().is_some_and(|n| HASH_CHARS.contains(n));
                    if self.structure && !wanted && fs::remove_dir(&e.path).is_ok() {
                        self.fixed(format!("removed unneeded subdirectory {}", self.show(&e.path)));
                    }
                }
                Kind::OtherDir if self.structure => match fs::remove_dir(&e.path) {
                    Ok(()) => self.fixed(format!("removed unexpected directory {}", self.show(&e.path))),
                    Err(_) => self.unfixed(format!(
                        "unexpected directory {} is not empty: move its contents away and remove it",
                        self.show(&e.path)
                    )),
                },
                Kind::Other if self.structure => {
                    if remove(&e.path)? {
                        self.fixed(format!(
                            "removed {}: not a regular file",
                            self.show(&e.path)
                        ));
                    }
                }
                Kind::OtherDir | Kind::Other => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, q: QueueName, e: &Entry) -> io::Result<()> {
        let age = e
            .meta
            .modified()
            .ok()
            .and_then(|m| self.now.duration_since(m).ok())
            .unwrap_or_default();
        let name = e.name.as_deref().unwrap_or("");
        if name.starts_with("tmp.") {
            if (self.structure || self.purge) && abandoned(&e.path, age) && remove(&e.path)? {
                self.fixed(format!(
                    "removed stale temporary file {}",
                    self.show(&e.path)
                ));
            }
            return Ok(());
        }
        let Ok(id) = QueueId::parse(name) else {
            if self.structure {
                self.quarantine(e)?;
            }
            return Ok(());
        };
        let is_message = MESSAGE_QUEUES.contains(&q);
        if is_message && !is_complete(&e.meta) {
            if (self.structure || self.purge) && abandoned(&e.path, age) && remove(&e.path)? {
                self.fixed(format!(
                    "removed abandoned queue file {}: incomplete, and its writer is gone",
                    self.show(&e.path)
                ));
            }
            return Ok(());
        }
        if !self.structure {
            return Ok(());
        }
        let expected = self.layout.path(q, &id);
        if e.path != expected {
            match rename_noreplace(&e.path, &expected) {
                Ok(()) => self.fixed(format!(
                    "moved {} to {}: it was in the wrong hash directory",
                    self.show(&e.path),
                    self.show(&expected)
                )),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    self.unfixed(format!(
                        "{} not moved to {}, which exists already: two files have this queue ID; compare them with postcat",
                        self.show(&e.path),
                        self.show(&expected)
                    ));
                    return Ok(());
                }
                Err(err) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!(
                            "rename {} to {}: {}",
                            e.path.display(),
                            expected.display(),
                            describe(&err)
                        ),
                    ));
                }
            }
        }
        if !is_message && age > STALE_AGE && !message_exists(self.layout, &id) && remove(&expected)?
        {
            self.fixed(format!(
                "removed {}: the log of a message that is no longer queued",
                self.show(&expected)
            ));
        }
        Ok(())
    }

    /// Moves a file whose name is not a queue ID to `corrupt/`, under a name not yet used.
    fn quarantine(&mut self, e: &Entry) -> io::Result<()> {
        let base = e
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let corrupt = self.layout.dir(QueueName::Corrupt);
        for n in 0..100 {
            let dst = if n == 0 {
                corrupt.join(&base)
            } else {
                corrupt.join(format!("{base}.{n}"))
            };
            match rename_noreplace(&e.path, &dst) {
                Ok(()) => {
                    self.fixed(format!(
                        "moved {} to {}: the name is not a queue ID",
                        self.show(&e.path),
                        self.show(&dst)
                    ));
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!(
                            "rename {} to {}: {}",
                            e.path.display(),
                            dst.display(),
                            describe(&err)
                        ),
                    ));
                }
            }
        }
        self.unfixed(format!(
            "{}: the name is not a queue ID; not moved: corrupt/ holds too many files named like it",
            self.show(&e.path)
        ));
        Ok(())
    }

    fn show(&self, p: &Path) -> String {
        show(self.layout, p)
    }

    fn fixed(&mut self, msg: String) {
        self.repaired += 1;
        warn(msg);
    }

    fn unfixed(&mut self, msg: String) {
        self.left += 1;
        warn(msg);
    }
}

/// Whether a temporary or incomplete file will never be completed (see the module doc).
fn abandoned(path: &Path, age: Duration) -> bool {
    age > STALE_AGE || (age > MIN_AGE && writer_gone(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_queue::DirOwner;

    #[test]
    fn age_rules_for_abandoned_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("tmp.1");
        fs::write(&p, b"").unwrap();
        assert!(!abandoned(&p, Duration::from_secs(1)), "too young to judge");
        assert!(
            abandoned(&p, Duration::from_secs(60)),
            "nobody holds its lock"
        );
        let _lock = nix::fcntl::Flock::lock(
            fs::File::open(&p).unwrap(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        assert!(
            !abandoned(&p, Duration::from_secs(60)),
            "its writer is alive"
        );
        assert!(abandoned(&p, STALE_AGE + Duration::from_secs(1)));
    }

    #[test]
    fn logs_follow_the_hash_layout_and_young_orphans_stay() {
        let t = tempfile::tempdir().unwrap();
        let l = QueueLayout::new(t.path().join("q"), &["defer".into()], 1);
        l.create_tree(&DirOwner::default()).unwrap();
        let id = QueueId::new(SystemTime::now(), 5);
        // Written while defer/ was not hashed.
        let flat = l.dir(QueueName::Defer).join(id.as_str());
        fs::write(&flat, b"log").unwrap();
        let mut r = Repair::new(&l, true, false);
        r.run(&[QueueName::Defer]).unwrap();
        assert_eq!(r.repaired, 1);
        assert!(!flat.exists());
        // Its message is gone, but the log is young: it may be a race, so it stays.
        assert_eq!(fs::read(l.path(QueueName::Defer, &id)).unwrap(), b"log");
    }
}
