//! The queue directory tree: state directories, hashing, owners and modes.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::QueueId;

/// A directory below `queue_directory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// Local submissions from postdrop, waiting for pickup.
    Maildrop,
    /// Messages put on hold by the administrator.
    Hold,
    /// New messages from cleanup, waiting for qmgr.
    Incoming,
    /// Messages qmgr is working on.
    Active,
    /// Messages waiting for a retry.
    Deferred,
    /// Damaged files, kept for inspection.
    Corrupt,
    /// Per-message logs of deferred recipients (reasons).
    Defer,
    /// Per-message logs of bounced recipients.
    Bounce,
    /// Per-message delivery traces.
    Trace,
    /// Copies kept by repair tools.
    Saved,
}

impl QueueName {
    /// Every queue directory, in creation order.
    pub const ALL: [QueueName; 10] = [
        QueueName::Maildrop,
        QueueName::Hold,
        QueueName::Incoming,
        QueueName::Active,
        QueueName::Deferred,
        QueueName::Corrupt,
        QueueName::Defer,
        QueueName::Bounce,
        QueueName::Trace,
        QueueName::Saved,
    ];

    /// The directory name, as in Postfix.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Maildrop => "maildrop",
            QueueName::Hold => "hold",
            QueueName::Incoming => "incoming",
            QueueName::Active => "active",
            QueueName::Deferred => "deferred",
            QueueName::Corrupt => "corrupt",
            QueueName::Defer => "defer",
            QueueName::Bounce => "bounce",
            QueueName::Trace => "trace",
            QueueName::Saved => "saved",
        }
    }

    /// Parses a directory name.
    pub fn parse(s: &str) -> Option<QueueName> {
        QueueName::ALL.into_iter().find(|q| q.as_str() == s)
    }

    /// The mode of this directory (Postfix's postfix-files).
    pub fn mode(self) -> u32 {
        match self {
            QueueName::Maildrop => 0o730,
            _ => 0o700,
        }
    }
}

/// Who should own the queue tree; `None` fields mean "leave as created".
#[derive(Clone, Copy, Debug, Default)]
pub struct DirOwner {
    /// `mail_owner`'s uid.
    pub uid: Option<u32>,
    /// `mail_owner`'s primary gid.
    pub gid: Option<u32>,
    /// `setgid_group`'s gid (group of `maildrop/` and `public/`).
    pub setgid_gid: Option<u32>,
}

/// The queue tree of one instance.
#[derive(Clone, Debug)]
pub struct QueueLayout {
    root: PathBuf,
    hashed: Vec<QueueName>,
    depth: usize,
}

/// One problem found by [`QueueLayout::check_tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeProblem {
    /// The path with the problem.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl QueueLayout {
    /// A layout rooted at `root`, hashing the queues named in `hash_queue_names`.
    /// Unknown names are ignored (configuration validation reports them).
    pub fn new(root: impl Into<PathBuf>, hash_queue_names: &[String], depth: usize) -> Self {
        let hashed = hash_queue_names
            .iter()
            .filter_map(|n| QueueName::parse(n.trim()))
            .collect();
        QueueLayout {
            root: root.into(),
            hashed,
            // Queue IDs give five hex characters of hash (the %05X microseconds).
            depth: depth.clamp(1, 5),
        }
    }

    /// The layout main.cf describes (`queue_directory`, `hash_queue_names`,
    /// `hash_queue_depth`).
    pub fn from_config(cfg: &posthorn_config::Config) -> Self {
        Self::from_config_at(cfg, cfg.get_path("queue_directory"))
    }

    /// The configured layout rooted at `root` instead (`/` inside a chroot).
    pub fn from_config_at(cfg: &posthorn_config::Config, root: impl Into<PathBuf>) -> Self {
        let depth = usize::try_from(cfg.get_int("hash_queue_depth")).unwrap_or(1);
        QueueLayout::new(root, &cfg.get_list("hash_queue_names"), depth)
    }

    /// `queue_directory`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The top directory of queue `q`.
    pub fn dir(&self, q: QueueName) -> PathBuf {
        self.root.join(q.as_str())
    }

    /// Whether queue `q` is hashed.
    pub fn is_hashed(&self, q: QueueName) -> bool {
        self.hashed.contains(&q)
    }

    /// The directory that holds `id` in queue `q` (with hash levels when hashed).
    pub fn dir_for(&self, q: QueueName, id: &QueueId) -> PathBuf {
        let mut p = self.dir(q);
        if self.is_hashed(q) {
            for c in id.hash_chars(self.depth) {
                p.push(c.to_string());
            }
        }
        p
    }

    /// The path of message `id` in queue `q`.
    pub fn path(&self, q: QueueName, id: &QueueId) -> PathBuf {
        self.dir_for(q, id).join(id.as_str())
    }

    /// The socket of a private service (`private/NAME`).
    pub fn private_socket(&self, service: &str) -> PathBuf {
        self.root.join("private").join(service)
    }

    /// The socket of a public service (`public/NAME`).
    pub fn public_socket(&self, service: &str) -> PathBuf {
        self.root.join("public").join(service)
    }

    /// The `pid/` directory (master's pid file and lock).
    pub fn pid_dir(&self) -> PathBuf {
        self.root.join("pid")
    }

    /// Moves message `id` from queue `from` to queue `to` (a rename; see the crate's
    /// durability contract). Returns the new path.
    pub fn move_to(&self, id: &QueueId, from: QueueName, to: QueueName) -> io::Result<PathBuf> {
        let dst = self.path(to, id);
        match fs::rename(self.path(from, id), &dst) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && !dst.parent().is_some_and(Path::exists) =>
            {
                self.create_hash_dirs(to)?;
                fs::rename(self.path(from, id), &dst)?;
            }
            r => r?,
        }
        Ok(dst)
    }

    /// Lists the message files in queue `q` (all hash levels), sorted by ID.
    /// Names that are not queue IDs (temporary files) are skipped.
    pub fn list(&self, q: QueueName) -> io::Result<Vec<QueueId>> {
        let mut out = Vec::new();
        let levels = if self.is_hashed(q) { self.depth } else { 0 };
        collect(&self.dir(q), levels, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn create_hash_dirs(&self, q: QueueName) -> io::Result<()> {
        if !self.is_hashed(q) {
            return Ok(());
        }
        let mut dirs = vec![self.dir(q)];
        for _ in 0..self.depth {
            let mut next = Vec::new();
            for d in &dirs {
                for c in "0123456789ABCDEF".chars() {
                    let sub = d.join(c.to_string());
                    mkdir(&sub, q.mode())?;
                    next.push(sub);
                }
            }
            dirs = next;
        }
        Ok(())
    }

    /// Creates every directory of the tree that is missing (with hash levels), with
    /// Postfix's modes, and gives them to `owner` where set. Existing directories keep their
    /// owner and mode: [`QueueLayout::check_tree`] reports and `fix` repairs those.
    pub fn create_tree(&self, owner: &DirOwner) -> io::Result<()> {
        mkdir(&self.root, 0o755)?;
        for q in QueueName::ALL {
            let fresh = !self.dir(q).exists();
            mkdir(&self.dir(q), q.mode())?;
            self.create_hash_dirs(q)?;
            if fresh {
                self.fix_one(q, owner)?;
            }
        }
        for (name, mode, gid) in [
            ("private", 0o700, owner.gid),
            ("public", 0o710, owner.setgid_gid),
        ] {
            let p = self.root.join(name);
            let fresh = !p.exists();
            mkdir(&p, mode)?;
            if fresh {
                chown_tree(&p, owner.uid, gid, mode, 0)?;
            }
        }
        mkdir(&self.root.join("pid"), 0o755)
    }

    /// The expected (uid, gid, mode) of every top-level directory.
    fn expected(&self, owner: &DirOwner) -> Vec<(PathBuf, Option<u32>, Option<u32>, u32)> {
        let mut v = Vec::new();
        for q in QueueName::ALL {
            let gid = if q == QueueName::Maildrop {
                owner.setgid_gid
            } else {
                owner.gid
            };
            v.push((self.dir(q), owner.uid, gid, q.mode()));
        }
        v.push((self.root.join("private"), owner.uid, owner.gid, 0o700));
        v.push((self.root.join("public"), owner.uid, owner.setgid_gid, 0o710));
        v
    }

    fn fix_one(&self, q: QueueName, owner: &DirOwner) -> io::Result<()> {
        let gid = if q == QueueName::Maildrop {
            owner.setgid_gid
        } else {
            owner.gid
        };
        chown_tree(
            &self.dir(q),
            owner.uid,
            gid,
            q.mode(),
            if self.is_hashed(q) { self.depth } else { 0 },
        )
    }

    /// Reports directories whose owner or mode differ from what `owner` asks.
    pub fn check_tree(&self, owner: &DirOwner) -> Vec<TreeProblem> {
        let mut out = Vec::new();
        for (path, uid, gid, mode) in self.expected(owner) {
            match fs::metadata(&path) {
                Err(e) => out.push(TreeProblem {
                    path,
                    message: e.to_string(),
                }),
                Ok(m) => {
                    let mut wrong = Vec::new();
                    if uid.is_some_and(|u| u != m.uid()) {
                        wrong.push(format!("owner uid {} (want {})", m.uid(), uid.unwrap_or(0)));
                    }
                    if gid.is_some_and(|g| g != m.gid()) {
                        wrong.push(format!("group gid {} (want {})", m.gid(), gid.unwrap_or(0)));
                    }
                    if m.mode() & 0o7777 != mode {
                        wrong.push(format!("mode {:o} (want {:o})", m.mode() & 0o7777, mode));
                    }
                    if !wrong.is_empty() {
                        out.push(TreeProblem {
                            path,
                            message: wrong.join(", "),
                        });
                    }
                }
            }
        }
        out
    }

    /// Repairs owners and modes of the whole tree (`posthorn set-permissions`).
    pub fn fix_tree(&self, owner: &DirOwner) -> io::Result<()> {
        self.create_tree(owner)?;
        for q in QueueName::ALL {
            self.fix_one(q, owner)?;
        }
        chown_tree(&self.root.join("private"), owner.uid, owner.gid, 0o700, 0)?;
        chown_tree(
            &self.root.join("public"),
            owner.uid,
            owner.setgid_gid,
            0o710,
            0,
        )?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }
}

fn mkdir(p: &Path, mode: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(mode).create(p) {
        Ok(()) => fs::set_permissions(p, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("mkdir {}: {e}", p.display()),
        )),
    }
}

fn chown_tree(
    p: &Path,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
    levels: usize,
) -> io::Result<()> {
    std::os::unix::fs::chown(p, uid, gid)?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    if levels > 0 {
        for e in fs::read_dir(p)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                chown_tree(&e.path(), uid, gid, mode, levels - 1)?;
            }
        }
    }
    Ok(())
}

fn collect(dir: &Path, levels: usize, out: &mut Vec<QueueId>) -> io::Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if levels > 0 {
            if name.len() == 1 && e.file_type()?.is_dir() {
                collect(&e.path(), levels - 1, out)?;
            }
        } else if let Ok(id) = QueueId::parse(name) {
            out.push(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn tree_hash_and_move() {
        let tmp = tempfile::tempdir().unwrap();
        let l = QueueLayout::new(
            tmp.path().join("q"),
            &["deferred".into(), "defer".into()],
            1,
        );
        l.create_tree(&DirOwner::default()).unwrap();
        assert!(l.dir(QueueName::Deferred).join("A").is_dir());
        assert!(!l.dir(QueueName::Active).join("A").exists());
        let id = QueueId::new(SystemTime::now(), 42);
        fs::write(l.path(QueueName::Active, &id), b"x").unwrap();
        let p = l
            .move_to(&id, QueueName::Active, QueueName::Deferred)
            .unwrap();
        assert_eq!(
            p.parent().unwrap().parent().unwrap(),
            l.dir(QueueName::Deferred)
        );
        assert_eq!(l.list(QueueName::Deferred).unwrap(), vec![id.clone()]);
        assert!(l.list(QueueName::Active).unwrap().is_empty());
        let m = fs::metadata(l.dir(QueueName::Maildrop)).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o730);
        assert!(l.check_tree(&DirOwner::default()).is_empty());
        fs::set_permissions(l.dir(QueueName::Active), fs::Permissions::from_mode(0o755)).unwrap();
        let probs = l.check_tree(&DirOwner::default());
        assert_eq!(probs.len(), 1, "{probs:?}");
        l.fix_tree(&DirOwner::default()).unwrap();
        assert!(l.check_tree(&DirOwner::default()).is_empty());
    }
}
