//! `-d`, `-h`, `-H` and `-r`: deleting, holding, releasing and requeueing messages, by queue
//! ID or `ALL`, safely while the mail system runs.
//!
//! Every change is one `rename(2)` or `unlink(2)` of a complete queue file (its owner-execute
//! bit set); postsuper never rewrites a queue file. Renames never replace a file. When qmgr
//! moves a message at the same moment, exactly one of the two renames succeeds; the loser
//! sees `ENOENT`. postsuper then looks for the message again in the other queues (twice, as
//! Postfix does); qmgr logs `warning: ID: cannot move to active: No such file or directory`
//! and forgets the message, which is harmless.
//!
//! A message in `active/` belongs to qmgr, which records each delivered recipient through
//! the descriptor it keeps open and then removes the file or moves it to `deferred/` by
//! name. Renaming it away meanwhile would let qmgr's final move miss it. So while qmgr runs (its trigger socket accepts connections), `-h` and `-r`
//! wait up to [`ACTIVE_WAIT`] for qmgr to let go of the message (delete it when done, or move
//! it to `deferred/`), then act on it where it went; what is still active after that is
//! left alone with a warning, and postsuper exits 75 (EX_TEMPFAIL). `-d` removes an active
//! message at once, as Postfix does: deliveries already under way finish, and qmgr then
//! finds the file gone and forgets the message (removing its defer log).
//! When qmgr is not running, `active/` holds only files a stopped qmgr left, and they are
//! renamed like any other.
//!
//! Incomplete files (still being written, or abandoned by a crashed writer) are never
//! touched here; `-s` and `-p` deal with abandoned ones.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use posthorn_queue::file::is_complete;
use posthorn_queue::{QueueId, QueueLayout, QueueName};

use crate::args::Op;
use crate::fsops::{remove, remove_logs, rename_noreplace, set_mtime, show};
use crate::report::{describe, info, warn};
use crate::walk::{Kind, walk};

/// How long `-h` and `-r` wait for qmgr to finish with messages in `active/`.
pub const ACTIVE_WAIT: Duration = Duration::from_secs(10);
/// How often the waiting looks again.
const POLL: Duration = Duration::from_millis(100);

/// What became of one attempt on one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Done (and reported).
    Done,
    /// Not there (any more), or not a complete queue file.
    Missing,
    /// In `active/` while qmgr runs: try again later.
    Busy,
    /// Not done, and reported why.
    Refused,
}

/// The state of a run of message operations.
pub struct Messages<'a> {
    layout: &'a QueueLayout,
    counts: [usize; 4],
    busy: Vec<(Op, QueueId)>,
    qmgr_running: Option<bool>,
}

impl<'a> Messages<'a> {
    /// Operations on the queue of `layout`.
    pub fn new(layout: &'a QueueLayout) -> Self {
        Messages {
            layout,
            counts: [0; 4],
            busy: Vec::new(),
            qmgr_running: None,
        }
    }

    /// How many messages `op` has handled.
    pub fn count(&self, op: Op) -> usize {
        self.counts[index(op)]
    }

    /// Applies `op` to the message named `text`, looking in `queues` in order.
    pub fn by_id(&mut self, op: Op, queues: &[QueueName], text: &str) -> io::Result<()> {
        let Ok(id) = QueueId::parse(text) else {
            warn(format!("invalid mail queue id: {text}"));
            return Ok(());
        };
        if self.find(op, queues, &id)? == Outcome::Busy {
            self.busy.push((op, id));
        }
        Ok(())
    }

    /// Applies `op` to every message in `queues`, wherever in a queue's hash levels it is.
    pub fn all(&mut self, op: Op, queues: &[QueueName]) -> io::Result<()> {
        // qmgr moves messages between queues while we walk them (deferred -> active ->
        // deferred): a message can be missed by one pass. So a rename that loses the race
        // looks for the message in the other queues, and passes repeat until one finds
        // nothing that was not handled already.
        let mut handled: std::collections::HashSet<QueueId> = std::collections::HashSet::new();
        for _pass in 0..5 {
            let mut fresh = 0;
            for &q in queues.iter().filter(|&&q| op.applies_to(q)) {
                // maildrop/ is writable by postdrop: never enter directories found there.
                for e in walk(&self.layout.dir(q), q != QueueName::Maildrop)? {
                    if e.kind != Kind::File {
                        continue;
                    }
                    let Some(id) = e.name.as_deref().and_then(|n| QueueId::parse(n).ok()) else {
                        continue;
                    };
                    if !handled.insert(id.clone()) {
                        continue;
                    }
                    fresh += 1;
                    let outcome = match self.apply(op, q, &id, &e.path)? {
                        Outcome::Missing => self.find(op, queues, &id)?,
                        other => other,
                    };
                    if outcome == Outcome::Busy {
                        self.busy.push((op, id));
                    }
                }
            }
            if fresh == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Waits for qmgr to finish with the messages that were in `active/` (see the module
    /// doc), handling each where it went. Returns how many are still active at the end.
    pub fn settle(&mut self) -> io::Result<usize> {
        if self.busy.is_empty() {
            return Ok(0);
        }
        info(format!(
            "waiting up to {}s for the queue manager to finish with {} in the active queue",
            ACTIVE_WAIT.as_secs(),
            crate::report::messages(self.busy.len())
        ));
        let deadline = Instant::now() + ACTIVE_WAIT;
        loop {
            std::thread::sleep(POLL);
            for (op, id) in std::mem::take(&mut self.busy) {
                // Follow the message to wherever qmgr puts it.
                if self.find(op, op.default_queues(), &id)? == Outcome::Busy {
                    self.busy.push((op, id));
                }
            }
            if self.busy.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        for (op, id) in &self.busy {
            warn(format!(
                "{id}: the queue manager is still delivering it (active queue); not {}: run the command again later",
                op.done_text()
            ));
        }
        Ok(self.busy.len())
    }

    /// Asks qmgr to look at what was released (`D`: deferred queue, now due) and requeued
    /// (`I`: incoming queue). A qmgr that is not running finds them when it starts.
    pub fn trigger_qmgr(&self) {
        let mut bytes = Vec::new();
        if self.count(Op::Requeue) > 0 {
            bytes.push(posthorn_proto::trigger::SCAN_INCOMING);
        }
        if self.count(Op::Release) > 0 {
            bytes.push(posthorn_proto::trigger::SCAN_DEFERRED);
        }
        if !bytes.is_empty() {
            let _ = posthorn_proto::trigger::send(&self.layout.public_socket("qmgr"), &bytes);
        }
    }

    /// Looks for `id` in `queues` (two passes: it may move while we look) and applies `op`.
    fn find(&mut self, op: Op, queues: &[QueueName], id: &QueueId) -> io::Result<Outcome> {
        for _ in 0..2 {
            for &q in queues.iter().filter(|&&q| op.applies_to(q)) {
                let path = self.layout.path(q, id);
                match self.apply(op, q, id, &path)? {
                    Outcome::Missing => {}
                    other => return Ok(other),
                }
            }
        }
        Ok(Outcome::Missing)
    }

    /// Applies `op` to the file `path`, which should be message `id` in queue `q`.
    fn apply(&mut self, op: Op, q: QueueName, id: &QueueId, path: &Path) -> io::Result<Outcome> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Missing),
            Err(e) => return Err(with_path(e, path)),
        };
        if !meta.is_file() || !is_complete(&meta) {
            return Ok(Outcome::Missing);
        }
        if q == QueueName::Active && op != Op::Delete && self.qmgr_running() {
            return Ok(Outcome::Busy);
        }
        let now = SystemTime::now();
        let outcome = match op {
            Op::Delete => {
                if remove(path).map_err(|e| with_path(e, path))? {
                    remove_logs(self.layout, id)?;
                    Outcome::Done
                } else {
                    Outcome::Missing
                }
            }
            Op::Hold => self.rename(op, id, path, QueueName::Hold)?,
            Op::Release => {
                // Due now, so qmgr retries it at once. Set while the file is still in
                // hold/, where nobody else looks at it.
                if set_mtime(path, now).map_err(|e| with_path(e, path))? {
                    self.rename(op, id, path, QueueName::Deferred)?
                } else {
                    Outcome::Missing
                }
            }
            Op::Requeue if q == QueueName::Incoming => {
                if set_mtime(path, now).map_err(|e| with_path(e, path))? {
                    Outcome::Done
                } else {
                    Outcome::Missing
                }
            }
            Op::Requeue => {
                let o = self.rename(op, id, path, QueueName::Incoming)?;
                if o == Outcome::Done {
                    // qmgr ignores the time of incoming files; Postfix resets it too.
                    let _ = set_mtime(&self.layout.path(QueueName::Incoming, id), now);
                }
                o
            }
        };
        if outcome == Outcome::Done {
            self.counts[index(op)] += 1;
            info(format!("{id}: {}", op.done_text()));
        }
        Ok(outcome)
    }

    /// Moves message `id` from `path` to queue `to`.
    fn rename(&self, op: Op, id: &QueueId, path: &Path, to: QueueName) -> io::Result<Outcome> {
        let dst = self.layout.path(to, id);
        match rename_noreplace(path, &dst) {
            Ok(()) => Ok(Outcome::Done),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::Missing),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                warn(format!(
                    "{id}: not {}: {} exists already, so two files have this queue ID; \
                     left in {}: compare them with postcat",
                    op.done_text(),
                    show(self.layout, &dst),
                    show(self.layout, path)
                ));
                Ok(Outcome::Refused)
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "rename {} to {}: {}",
                    path.display(),
                    dst.display(),
                    describe(&e)
                ),
            )),
        }
    }

    /// Whether qmgr runs: its trigger socket accepts a connection (which it reads as an
    /// empty trigger and closes). Asked once per run.
    fn qmgr_running(&mut self) -> bool {
        let socket = self.layout.public_socket("qmgr");
        *self.qmgr_running.get_or_insert_with(|| {
            match posthorn_proto::trigger::connect_nonblocking(&socket) {
                Ok(_) => true,
                // A full listen backlog: qmgr is there, just busy.
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            }
        })
    }
}

fn index(op: Op) -> usize {
    match op {
        Op::Requeue => 0,
        Op::Delete => 1,
        Op::Hold => 2,
        Op::Release => 3,
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {}", path.display(), describe(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_queue::DirOwner;
    use posthorn_queue::file::NewQueueFile;

    fn layout() -> (tempfile::TempDir, QueueLayout) {
        let t = tempfile::tempdir().unwrap();
        let l = QueueLayout::new(t.path().join("q"), &["deferred".into()], 1);
        l.create_tree(&DirOwner::default()).unwrap();
        (t, l)
    }

    /// A complete (mode 0700) file under message `id`'s name in `q`; content is not read.
    fn complete(l: &QueueLayout, q: QueueName, inode: u64) -> QueueId {
        use std::os::unix::fs::PermissionsExt;
        let id = QueueId::new(SystemTime::now(), inode);
        let p = l.path(q, &id);
        fs::write(&p, b"x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        id
    }

    #[test]
    fn files_still_being_written_are_never_touched() {
        let (_t, l) = layout();
        let f = NewQueueFile::create(&l, QueueName::Incoming).unwrap();
        let id = f.id().clone();
        let mut m = Messages::new(&l);
        for op in [Op::Delete, Op::Hold, Op::Requeue] {
            m.by_id(op, op.default_queues(), id.as_str()).unwrap();
            assert_eq!(m.count(op), 0, "{op:?}");
        }
        assert!(f.path().exists());
    }

    #[test]
    fn active_messages_wait_for_a_running_qmgr_only() {
        let (_t, l) = layout();
        let a = complete(&l, QueueName::Active, 1);
        let b = complete(&l, QueueName::Active, 2);
        let _qmgr = std::os::unix::net::UnixListener::bind(l.public_socket("qmgr")).unwrap();
        let mut m = Messages::new(&l);
        m.by_id(Op::Hold, Op::Hold.default_queues(), a.as_str())
            .unwrap();
        m.by_id(Op::Requeue, Op::Requeue.default_queues(), b.as_str())
            .unwrap();
        assert_eq!(m.busy.len(), 2);
        assert!(l.path(QueueName::Active, &a).exists());
        m.by_id(Op::Delete, Op::Delete.default_queues(), a.as_str())
            .unwrap();
        assert_eq!(m.count(Op::Delete), 1);
        assert!(!l.path(QueueName::Active, &a).exists());
        // Without qmgr, active/ files are nobody's and are moved at once.
        let (_t2, l2) = layout();
        let c = complete(&l2, QueueName::Active, 3);
        let mut m = Messages::new(&l2);
        m.by_id(Op::Requeue, Op::Requeue.default_queues(), c.as_str())
            .unwrap();
        assert!(m.busy.is_empty());
        assert!(l2.path(QueueName::Incoming, &c).exists());
        assert_eq!(m.count(Op::Requeue), 1);
    }
}
