//! postsuper end to end: the built binary on queues built in temporary directories with
//! posthorn-queue, each effect checked through the queue itself.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use posthorn_queue::file::{self, Envelope, LogEntry, NewQueueFile, Recipient, SizeRecord};
use posthorn_queue::record::kind;
use posthorn_queue::{DirOwner, QueueId, QueueLayout, QueueName};

/// An instance: `etc/main.cf`, a queue, a log file.
struct Inst {
    _tmp: tempfile::TempDir,
    etc: PathBuf,
    l: QueueLayout,
    log: PathBuf,
}

fn inst() -> Inst {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let queue = tmp.path().join("queue");
    let log = tmp.path().join("maillog");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("main.cf"),
        format!(
            "queue_directory = {}\nmaillog_file = {}\n",
            queue.display(),
            log.display()
        ),
    )
    .unwrap();
    // main.cf's defaults: hash_queue_names = deferred, defer; hash_queue_depth = 1.
    let l = QueueLayout::new(&queue, &["deferred".into(), "defer".into()], 1);
    l.create_tree(&DirOwner::default()).unwrap();
    Inst {
        _tmp: tmp,
        etc,
        l,
        log,
    }
}

impl Inst {
    /// Queues a complete message in `q`.
    fn message(&self, q: QueueName) -> QueueId {
        let mut f = NewQueueFile::create(&self.l, q).unwrap();
        let env = Envelope {
            sender: "s@example.test".into(),
            arrival: Some(SystemTime::now()),
            recipients: vec![Recipient {
                address: "r@example.test".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        env.write_records(f.writer()).unwrap();
        let m = f.put(kind::MESG, b"").unwrap();
        let body = b"Subject: t\n\nhello\n";
        f.put_content(body).unwrap();
        f.put(kind::XTRA, b"").unwrap();
        f.commit(SizeRecord {
            content_size: body.len() as u64,
            content_offset: m,
            recipients: 1,
            flags: 0,
        })
        .unwrap()
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_postsuper"))
            .arg("-c")
            .arg(&self.etc)
            .args(args)
            .env_remove("MAIL_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, "");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {:?}\n{err}", out.status);
        err
    }

    fn at(&self, q: QueueName, id: &QueueId) -> bool {
        self.l.path(q, id).exists()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pretends qmgr runs: a listener on its trigger socket.
    fn fake_qmgr(&self) -> UnixListener {
        UnixListener::bind(self.l.public_socket("qmgr")).unwrap()
    }

    fn defer_log(&self, id: &QueueId) -> PathBuf {
        let e = LogEntry {
            recipient: "r@example.test".into(),
            orig: String::new(),
            dsn: "4.4.1".into(),
            reason: "connection refused".into(),
        };
        file::append_log(&self.l, QueueName::Defer, id, &[e]).unwrap();
        self.l.path(QueueName::Defer, id)
    }
}

fn set_mtime(p: &Path, t: SystemTime) {
    File::open(p).unwrap().set_modified(t).unwrap();
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Every trigger byte waiting on a fake qmgr socket.
fn triggers(l: &UnixListener) -> Vec<u8> {
    l.set_nonblocking(true).unwrap();
    let mut all = Vec::new();
    while let Ok((mut s, _)) = l.accept() {
        s.set_nonblocking(false).unwrap();
        let _ = s.read_to_end(&mut all);
    }
    all
}

#[test]
fn delete_by_id_removes_the_message_and_its_logs() {
    let i = inst();
    let id = i.message(QueueName::Deferred);
    let other = i.message(QueueName::Deferred);
    let log = i.defer_log(&id);
    let err = i.ok(&["-d", id.as_str()]);
    assert_eq!(
        err,
        format!("postsuper: {id}: removed\npostsuper: Deleted: 1 message\n")
    );
    assert!(!i.at(QueueName::Deferred, &id));
    assert!(!log.exists());
    assert!(i.at(QueueName::Deferred, &other));
    let logged = i.log_text();
    assert!(logged.contains("posthorn/postsuper["), "{logged}");
    assert!(logged.contains(&format!("]: {id}: removed")), "{logged}");
    assert!(logged.contains("]: Deleted: 1 message"), "{logged}");
    // Not there any more: nothing to say, as in Postfix.
    assert_eq!(i.ok(&["-d", id.as_str()]), "");
}

#[test]
fn delete_all_in_one_queue_leaves_the_others() {
    let i = inst();
    let d1 = i.message(QueueName::Deferred);
    let _d2 = i.message(QueueName::Deferred);
    let inc = i.message(QueueName::Incoming);
    let hold = i.message(QueueName::Hold);
    let log = i.defer_log(&d1);
    let err = i.ok(&["-d", "ALL", "deferred"]);
    assert!(err.ends_with("postsuper: Deleted: 2 messages\n"), "{err}");
    assert!(i.l.list(QueueName::Deferred).unwrap().is_empty());
    assert!(!log.exists());
    assert!(i.at(QueueName::Incoming, &inc) && i.at(QueueName::Hold, &hold));
    // Without a queue name, ALL means every message queue.
    let md = i.message(QueueName::Maildrop);
    let err = i.ok(&["-d", "ALL"]);
    assert!(err.ends_with("postsuper: Deleted: 3 messages\n"), "{err}");
    assert!(!i.at(QueueName::Maildrop, &md));
    for q in [QueueName::Incoming, QueueName::Hold, QueueName::Maildrop] {
        assert!(i.l.list(q).unwrap().is_empty(), "{q:?}");
    }
}

#[test]
fn delete_all_skips_files_still_being_written() {
    let i = inst();
    let writing = NewQueueFile::create(&i.l, QueueName::Incoming).unwrap();
    let done = i.message(QueueName::Incoming);
    let err = i.ok(&["-d", "ALL"]);
    assert!(err.ends_with("postsuper: Deleted: 1 message\n"), "{err}");
    assert!(writing.path().exists());
    assert!(!i.at(QueueName::Incoming, &done));
}

#[test]
fn hold_then_release_makes_the_message_due_now() {
    let i = inst();
    let id = i.message(QueueName::Deferred);
    // Deferred for an hour.
    set_mtime(
        &i.l.path(QueueName::Deferred, &id),
        SystemTime::now() + Duration::from_secs(3600),
    );
    let err = i.ok(&["-h", id.as_str()]);
    assert_eq!(
        err,
        format!("postsuper: {id}: placed on hold\npostsuper: Placed on hold: 1 message\n")
    );
    assert!(i.at(QueueName::Hold, &id) && !i.at(QueueName::Deferred, &id));
    // Holding again finds nothing to hold (hold/ is not a source for -h).
    assert_eq!(i.ok(&["-h", id.as_str()]), "");
    let q = i.fake_qmgr();
    let before = SystemTime::now() - Duration::from_secs(1);
    let err = i.ok(&["-H", id.as_str()]);
    assert_eq!(
        err,
        format!("postsuper: {id}: released from hold\npostsuper: Released from hold: 1 message\n")
    );
    let p = i.l.path(QueueName::Deferred, &id);
    let mtime = fs::metadata(&p).unwrap().modified().unwrap();
    assert!(mtime >= before && mtime <= SystemTime::now(), "{mtime:?}");
    assert_eq!(triggers(&q), b"D");
    // The file itself is untouched.
    assert!(file::QueueFile::open_read_only(&p).is_ok());
}

#[test]
fn hold_all_and_release_all() {
    let i = inst();
    let a = i.message(QueueName::Incoming);
    let b = i.message(QueueName::Deferred);
    let md = i.message(QueueName::Maildrop);
    let err = i.ok(&["-h", "ALL"]);
    assert!(
        err.ends_with("postsuper: Placed on hold: 2 messages\n"),
        "{err}"
    );
    assert!(i.at(QueueName::Hold, &a) && i.at(QueueName::Hold, &b));
    // Mail not yet checked by pickup is never mixed with checked mail.
    assert!(i.at(QueueName::Maildrop, &md));
    let err = i.ok(&["-H", "ALL"]);
    assert!(
        err.ends_with("postsuper: Released from hold: 2 messages\n"),
        "{err}"
    );
    assert!(i.at(QueueName::Deferred, &a) && i.at(QueueName::Deferred, &b));
}

#[test]
fn ids_from_standard_input() {
    let i = inst();
    let a = i.message(QueueName::Incoming);
    let b = i.message(QueueName::Hold);
    let out = i.run(&["-d", "-"], &format!("{a}\n\n  {b}  \nnot-an-id\n"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!i.at(QueueName::Incoming, &a) && !i.at(QueueName::Hold, &b));
    assert!(
        err.contains("postsuper: warning: invalid mail queue id: not-an-id\n"),
        "{err}"
    );
    assert!(err.ends_with("postsuper: Deleted: 2 messages\n"), "{err}");
}

#[test]
fn requeue_moves_to_incoming_and_triggers_qmgr() {
    let i = inst();
    let d = i.message(QueueName::Deferred);
    let h = i.message(QueueName::Hold);
    let md = i.message(QueueName::Maildrop);
    let q = i.fake_qmgr();
    let err = i.ok(&["-r", d.as_str(), "-r", h.as_str(), "-r", md.as_str()]);
    assert!(
        err.contains(&format!("postsuper: {d}: requeued\n")),
        "{err}"
    );
    assert!(err.ends_with("postsuper: Requeued: 2 messages\n"), "{err}");
    assert!(i.at(QueueName::Incoming, &d) && i.at(QueueName::Incoming, &h));
    assert!(i.at(QueueName::Maildrop, &md));
    assert_eq!(triggers(&q), b"I");
}

#[test]
fn active_message_is_held_directly_when_qmgr_is_not_running() {
    let i = inst();
    let id = i.message(QueueName::Active);
    // A stale socket file of a stopped instance does not count as a running qmgr.
    drop(i.fake_qmgr());
    i.ok(&["-h", id.as_str()]);
    assert!(i.at(QueueName::Hold, &id) && !i.at(QueueName::Active, &id));
}

#[test]
fn active_message_is_held_once_qmgr_lets_go() {
    let i = inst();
    let id = i.message(QueueName::Active);
    let _q = i.fake_qmgr();
    let (l, id2) = (i.l.clone(), id.clone());
    // "qmgr" finishes the delivery attempt a little later and defers the message.
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            l.path(QueueName::Active, &id2).exists(),
            "postsuper did not wait"
        );
        l.move_to(&id2, QueueName::Active, QueueName::Deferred)
            .unwrap();
    });
    let err = i.ok(&["-h", id.as_str()]);
    t.join().unwrap();
    assert!(err.contains("waiting up to 10s"), "{err}");
    assert!(
        err.ends_with("postsuper: Placed on hold: 1 message\n"),
        "{err}"
    );
    assert!(i.at(QueueName::Hold, &id));
}

#[test]
fn active_message_still_being_delivered_is_left_alone() {
    let i = inst();
    let id = i.message(QueueName::Active);
    let other = i.message(QueueName::Deferred);
    let _q = i.fake_qmgr();
    let start = Instant::now();
    let out = i.run(&["-h", "ALL"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(start.elapsed() >= Duration::from_secs(10));
    assert!(
        err.contains(&format!(
            "postsuper: warning: {id}: the queue manager is still delivering it (active queue); not placed on hold"
        )),
        "{err}"
    );
    assert!(i.at(QueueName::Active, &id));
    assert!(i.at(QueueName::Hold, &other));
}

#[test]
fn delete_of_an_active_message_does_not_wait() {
    let i = inst();
    let id = i.message(QueueName::Active);
    let _q = i.fake_qmgr();
    let start = Instant::now();
    let err = i.ok(&["-d", id.as_str()]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(err.contains(&format!("{id}: removed")), "{err}");
    assert!(!i.at(QueueName::Active, &id));
}

#[test]
fn a_move_never_replaces_another_file_with_the_same_id() {
    let i = inst();
    let id = i.message(QueueName::Deferred);
    fs::copy(
        i.l.path(QueueName::Deferred, &id),
        i.l.path(QueueName::Hold, &id),
    )
    .unwrap();
    fs::set_permissions(
        i.l.path(QueueName::Hold, &id),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let out = i.run(&["-h", id.as_str()], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists already"), "{err}");
    assert!(i.at(QueueName::Deferred, &id) && i.at(QueueName::Hold, &id));
}

#[test]
fn structure_check_repairs_the_queue() {
    let i = inst();
    // A message in the wrong hash directory.
    let id = i.message(QueueName::Deferred);
    let right = i.l.path(QueueName::Deferred, &id);
    let wrong_dir = if id.hash_chars(1)[0] == 'F' { "E" } else { "F" };
    let wrong =
        i.l.dir(QueueName::Deferred)
            .join(wrong_dir)
            .join(id.as_str());
    fs::rename(&right, &wrong).unwrap();
    // Temporary files: stale by age, abandoned by their writer, and one still written.
    let inc = i.l.dir(QueueName::Incoming);
    let stale = inc.join("tmp.1.2.0");
    fs::write(&stale, b"").unwrap();
    set_mtime(&stale, ago(2 * 86_400));
    let abandoned = inc.join("tmp.3.4.0");
    fs::write(&abandoned, b"").unwrap();
    set_mtime(&abandoned, ago(60));
    let busy = inc.join("tmp.5.6.0");
    fs::write(&busy, b"").unwrap();
    set_mtime(&busy, ago(60));
    let _lock = nix::fcntl::Flock::lock(
        File::open(&busy).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let fresh = inc.join("tmp.7.8.0");
    fs::write(&fresh, b"").unwrap();
    // An incomplete queue file (no execute bit) whose writer died: nobody holds its lock.
    let dead_path = i.l.path(QueueName::Incoming, &QueueId::new(ago(60), 777));
    fs::write(&dead_path, b"partial").unwrap();
    fs::set_permissions(&dead_path, fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&dead_path, ago(60));
    // A file whose name is no queue ID, a link, an unneeded hash directory.
    fs::write(inc.join("junk"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", i.l.dir(QueueName::Hold).join("link")).unwrap();
    fs::create_dir(i.l.dir(QueueName::Hold).join("A")).unwrap();
    // An old log of a message that is gone, and an old log of one that is queued.
    let gone = QueueId::new(ago(3 * 86_400), 4242);
    let orphan = i.defer_log(&gone);
    set_mtime(&orphan, ago(2 * 86_400));
    let kept = i.defer_log(&id);
    set_mtime(&kept, ago(2 * 86_400));

    let err = i.ok(&["-s"]);
    assert!(right.exists() && !wrong.exists(), "{err}");
    assert!(
        err.contains(&format!(
            "postsuper: warning: moved deferred/{wrong_dir}/{id} to deferred/{}/{id}: it was in the wrong hash directory\n",
            id.hash_chars(1)[0]
        )),
        "{err}"
    );
    assert!(!stale.exists() && !abandoned.exists(), "{err}");
    assert!(busy.exists() && fresh.exists(), "{err}");
    assert!(
        err.contains("removed stale temporary file incoming/tmp.1.2.0"),
        "{err}"
    );
    assert!(!dead_path.exists(), "{err}");
    assert!(
        err.contains("removed abandoned queue file incoming/"),
        "{err}"
    );
    assert!(!inc.join("junk").exists());
    assert_eq!(
        fs::read(i.l.dir(QueueName::Corrupt).join("junk")).unwrap(),
        b"x"
    );
    assert!(err.contains("moved incoming/junk to corrupt/junk: the name is not a queue ID"));
    assert!(fs::symlink_metadata(i.l.dir(QueueName::Hold).join("link")).is_err());
    assert!(!i.l.dir(QueueName::Hold).join("A").exists());
    assert!(
        i.l.dir(QueueName::Deferred).join("A").exists(),
        "wanted hash dirs stay"
    );
    assert!(!orphan.exists() && kept.exists(), "{err}");
    assert!(QueueId::parse(id.as_str()).is_ok());
    // A second run finds nothing left to repair.
    assert_eq!(i.ok(&["-s"]), "");
}

#[test]
fn purge_removes_temporary_files_only() {
    let i = inst();
    let id = i.message(QueueName::Deferred);
    let right = i.l.path(QueueName::Deferred, &id);
    let wrong_dir = if id.hash_chars(1)[0] == 'F' { "E" } else { "F" };
    let wrong =
        i.l.dir(QueueName::Deferred)
            .join(wrong_dir)
            .join(id.as_str());
    fs::rename(&right, &wrong).unwrap();
    let stale = i.l.dir(QueueName::Maildrop).join("tmp.9.9.0");
    fs::write(&stale, b"").unwrap();
    set_mtime(&stale, ago(2 * 86_400));
    fs::write(i.l.dir(QueueName::Incoming).join("junk"), b"").unwrap();
    let err = i.ok(&["-p"]);
    assert!(!stale.exists(), "{err}");
    assert!(wrong.exists() && i.l.dir(QueueName::Incoming).join("junk").exists());
    // No option at all means -s -p.
    i.ok(&[]);
    assert!(right.exists() && !wrong.exists());
}

#[test]
fn errors_are_one_fatal_line_with_sysexits_status() {
    let i = inst();
    for (args, code, needle) in [
        (
            vec!["-x"],
            64,
            "postsuper: fatal: invalid option '-x'; usage: postsuper",
        ),
        (
            vec!["-d", "ALL", "corrupt"],
            64,
            "postsuper: fatal: invalid directory name: corrupt",
        ),
        (vec!["-d"], 64, "postsuper: fatal: missing argument"),
    ] {
        let out = i.run(&args, "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.starts_with(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_postsuper"))
        .args(["-c", "/nonexistent/posthorn", "-s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.starts_with("postsuper: fatal: /nonexistent/posthorn/main.cf: "),
        "{err}"
    );
    assert!(err.trim_end().ends_with("with -c or MAIL_CONFIG"), "{err}");
    assert_eq!(err.lines().count(), 1);
    // A queue that was never created.
    fs::remove_dir_all(i.l.root()).unwrap();
    let out = i.run(&["-s"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("posthorn check"), "{err}");
}
