//! In-process delivery: real queue files in a temporary queue, delivered by the same
//! per-request code the daemons run, into temporary mailboxes; byte-exact checks.
//!
//! Run as root, the deliveries really switch ids (the virtual mailbox belongs to `nobody`,
//! alias commands run as `default_privs` through the `local` binary's helper mode). Since
//! switching ids affects the whole process, the tests take turns ([`serial`]).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use posthorn_config::Config;
use posthorn_local::aliases::AliasMaps;
use posthorn_local::deliver::{ForwardCopy, Forwarder};
use posthorn_local::settings::{LocalSettings, VirtualSettings};
use posthorn_local::status::StepResult;
use posthorn_local::{LocalAgent, Message, VirtualAgent, handle_request};
use posthorn_proto::delivery::{Deliver, Outcome, Rcpt, Status};
use posthorn_queue::file::{Envelope, NewQueueFile, Recipient, SizeRecord};
use posthorn_queue::record::kind;
use posthorn_queue::{DirOwner, QueueLayout, QueueName};
use posthorn_sys::Account;

static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

const BODY: &[u8] = b"Subject: hi\nFrom: s@remote.test\n\nFrom the start\nbody\n";

struct Env {
    tmp: tempfile::TempDir,
    layout: QueueLayout,
    me: Account,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let layout = QueueLayout::new(
            tmp.path().join("queue"),
            &["deferred".to_string(), "defer".to_string()],
            1,
        );
        layout.create_tree(&DirOwner::default()).unwrap();
        let me = posthorn_sys::user_by_uid(posthorn_sys::uids().1)
            .unwrap()
            .unwrap();
        Env { tmp, layout, me }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// A world-writable (sticky) directory.
    fn open_dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o1777)).unwrap();
        p
    }

    /// Writes a queue file into `active/`; returns the request for its recipients.
    fn queue(&self, sender: &str, rcpts: &[&str], body: &[u8]) -> Deliver {
        let mut f = NewQueueFile::create(&self.layout, QueueName::Active).unwrap();
        let env = Envelope {
            sender: sender.into(),
            arrival: Some(SystemTime::now()),
            recipients: rcpts
                .iter()
                .map(|a| Recipient {
                    address: (*a).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let offsets = env.write_records(f.writer()).unwrap();
        let m = f.put(kind::MESG, b"").unwrap();
        f.put_content(body).unwrap();
        f.put(kind::XTRA, b"").unwrap();
        let size = SizeRecord {
            content_size: body.len() as u64,
            content_offset: m,
            recipients: rcpts.len() as u64,
            flags: 0,
        };
        let id = f.commit(size).unwrap();
        Deliver {
            queue_name: "active".into(),
            queue_id: id.as_str().into(),
            nexthop: "example.test".into(),
            rcpts: rcpts
                .iter()
                .zip(offsets)
                .map(|(a, o)| Rcpt {
                    offset: o,
                    address: (*a).into(),
                    orig: String::new(),
                })
                .collect(),
            timing: Default::default(),
        }
    }

    fn local_agent(&self, extra: &str) -> LocalAgent {
        let text = format!(
            "myhostname = mail.example.test\nmydomain = example.test\nmyorigin = example.test\n\
             mydestination = example.test, localhost\nrecipient_delimiter = +\nalias_maps =\n\
             mail_spool_directory = {spool}\nforward_path = {home}/.forward-$user\n{extra}\n",
            spool = self.path("spool").display(),
            home = self.path("homes").display(),
        );
        let mut s = LocalSettings::from_config(&Config::parse_str(&text, "main.cf").unwrap());
        s.command.helper = env!("CARGO_BIN_EXE_local").to_string();
        LocalAgent::new(s)
    }
}

/// Records forwarded copies instead of talking to cleanup.
#[derive(Default)]
struct FakeCleanup {
    sent: Vec<(String, Vec<String>, String, Vec<u8>)>,
}

impl Forwarder for FakeCleanup {
    fn forward(&mut self, copy: &ForwardCopy<'_>, msg: &Message<'_>) -> StepResult {
        let mut content = copy
            .delivered_to
            .map(|d| format!("Delivered-To: {d}\n").into_bytes())
            .unwrap_or_default();
        msg.reader().read_to_end(&mut content).unwrap();
        self.sent.push((
            copy.sender.to_string(),
            copy.recipients.to_vec(),
            copy.orig.to_string(),
            content,
        ));
        Ok(format!("forwarded as FAKEID{}", self.sent.len()))
    }
}

fn run_local(env: &Env, agent: &LocalAgent, req: &Deliver, fwd: &mut FakeCleanup) -> Vec<Status> {
    handle_request(
        &env.layout,
        req,
        "local",
        agent.settings.memory_limit,
        &mut |m, r| agent.deliver(m, r, fwd),
    )
}

fn check(st: &Status, outcome: Outcome, dsn: &str, reason: &str) {
    assert_eq!(
        (st.outcome, st.dsn.as_str(), st.reason.as_str()),
        (outcome, dsn, reason),
        "{st:?}"
    );
}

/// Splits an mbox's `From ` line from the rest and checks its form:
/// `From SENDER  Www Mmm dd hh:mm:ss yyyy`.
fn from_line(mbox: &[u8], sender: &str) -> Vec<u8> {
    let text = String::from_utf8(mbox.to_vec()).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let prefix = format!("From {sender}  ");
    assert!(first.starts_with(&prefix), "{first:?}");
    let date = &first[prefix.len()..];
    assert_eq!(date.len(), 24, "{date:?}");
    assert_eq!(&date[3..4], " ");
    assert_eq!(&date[13..14], ":");
    rest.as_bytes().to_vec()
}

#[test]
fn mbox_in_spool_as_current_user() {
    let _g = serial();
    let env = Env::new();
    fs::create_dir_all(env.path("spool")).unwrap();
    let agent = env.local_agent("");
    let me = &env.me.name;
    let req = env.queue(
        "sender@remote.test",
        &[&format!("{me}+tag@Example.test")],
        BODY,
    );
    let st = run_local(&env, &agent, &req, &mut FakeCleanup::default());
    assert_eq!(st.len(), 1);
    check(&st[0], Outcome::Sent, "2.0.0", "delivered to mailbox");
    assert_eq!(
        (st[0].offset, st[0].relay.as_str()),
        (req.rcpts[0].offset, "local")
    );

    let mbox = fs::read(env.path("spool").join(me)).unwrap();
    let rest = from_line(&mbox, "sender@remote.test");
    let want = format!(
        "Return-Path: <sender@remote.test>\nDelivered-To: {me}+tag@example.test\nSubject: hi\nFrom: s@remote.test\n\n>From the start\nbody\n\n"
    );
    assert_eq!(String::from_utf8(rest).unwrap(), want);
    assert_eq!(
        fs::metadata(env.path("spool").join(me)).unwrap().uid(),
        env.me.uid
    );

    // A second message is appended after the first, the null sender as MAILER-DAEMON.
    let req = env.queue("", &[me.as_str()], b"Subject: two\n\nx\n");
    let st = run_local(&env, &agent, &req, &mut FakeCleanup::default());
    check(&st[0], Outcome::Sent, "2.0.0", "delivered to mailbox");
    let all = fs::read(env.path("spool").join(me)).unwrap();
    let second = &all[mbox.len()..];
    let rest = from_line(second, "MAILER-DAEMON");
    assert_eq!(
        String::from_utf8(rest).unwrap(),
        format!("Return-Path: <>\nDelivered-To: {me}@example.test\nSubject: two\n\nx\n\n")
    );
}

#[test]
fn maildir_home_mailbox_streamed_from_the_queue_file() {
    let _g = serial();
    let env = Env::new();
    // A home_mailbox path under the user's real home would touch it: use mail_spool_directory
    // with a trailing slash instead (Maildir per user in the spool), and stream large content.
    fs::create_dir_all(env.path("spool")).unwrap();
    let mut agent = env.local_agent(&format!(
        "mail_spool_directory = {}/\n",
        env.path("spool").display()
    ));
    agent.settings.memory_limit = 16;
    let me = &env.me.name;
    let big: Vec<u8> = [
        b"Subject: big\n\n".to_vec(),
        b"line of text\n".repeat(50_000),
    ]
    .concat();
    let req = env.queue("s@remote.test", &[me.as_str()], &big);
    let st = run_local(&env, &agent, &req, &mut FakeCleanup::default());
    check(&st[0], Outcome::Sent, "2.0.0", "delivered to maildir");
    let new = env.path("spool").join(me).join("new");
    let files: Vec<_> = fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let got = fs::read(&files[0]).unwrap();
    let head = format!("Return-Path: <s@remote.test>\nDelivered-To: {me}@example.test\n");
    assert_eq!(got, [head.as_bytes(), &big].concat());
}

#[test]
fn aliases_forwarding_owner_and_unknown_users() {
    let _g = serial();
    let env = Env::new();
    fs::create_dir_all(env.path("spool")).unwrap();
    let me = env.me.name.clone();
    let mut agent = env.local_agent("");
    agent.aliases = AliasMaps::open(&format!(
        "inline:{{ {{list = {me}, far@remote.test, other@remote.test}}, owner-list={me}, loop=loop2, loop2=loop }}"
    ));
    let mut fwd = FakeCleanup::default();
    let req = env.queue(
        "orig@remote.test",
        &[
            "list@example.test",
            "nobody-such@example.test",
            "loop@example.test",
        ],
        BODY,
    );
    let st = run_local(&env, &agent, &req, &mut fwd);
    check(&st[0], Outcome::Sent, "2.0.0", "forwarded as FAKEID1");
    check(
        &st[1],
        Outcome::Bounced,
        "5.1.1",
        "unknown user: \"nobody-such\"",
    );
    check(
        &st[2],
        Outcome::Bounced,
        "5.4.6",
        "mail forwarding loop for loop@example.test",
    );

    // One copy for both remote targets, from the owner, orig = the list, Delivered-To first.
    assert_eq!(fwd.sent.len(), 1);
    let (sender, rcpts, orig, content) = &fwd.sent[0];
    assert_eq!(sender, "owner-list@example.test");
    assert_eq!(rcpts, &["far@remote.test", "other@remote.test"]);
    assert_eq!(orig, "list@example.test");
    assert_eq!(
        content,
        &[b"Delivered-To: list@example.test\n".as_slice(), BODY].concat()
    );
    // The local member got it too, with the owner as Return-Path.
    let mbox = fs::read(env.path("spool").join(&me)).unwrap();
    let rest = from_line(&mbox, "owner-list@example.test");
    assert!(rest.starts_with(
        b"Return-Path: <owner-list@example.test>\nDelivered-To: list@example.test\nSubject: hi\n"
    ));
}

#[test]
fn delivered_to_loop_commands_and_files() {
    let _g = serial();
    let env = Env::new();
    fs::create_dir_all(env.path("spool")).unwrap();
    let out = env.open_dir("out");
    let mut agent = env.local_agent("");
    agent.aliases = AliasMaps::open(&format!(
        "inline:{{ {{pipe = |cat > {o}/cmd.txt; echo $RECIPIENT $SENDER $LOCAL > {o}/env.txt}}, file={o}/file.mbox, {{bad = |exit 67}} }}",
        o = out.display()
    ));
    let looping = [b"Delivered-To: Pipe@Example.test\n".as_slice(), BODY].concat();
    let req = env.queue("s@remote.test", &["pipe@example.test"], &looping);
    let st = run_local(&env, &agent, &req, &mut FakeCleanup::default());
    check(
        &st[0],
        Outcome::Bounced,
        "5.4.6",
        "mail forwarding loop for pipe@example.test",
    );

    let req = env.queue(
        "s@remote.test",
        &["pipe@example.test", "file@example.test", "bad@example.test"],
        BODY,
    );
    let st = run_local(&env, &agent, &req, &mut FakeCleanup::default());
    let cmd = format!(
        "cat > {o}/cmd.txt; echo $RECIPIENT $SENDER $LOCAL > {o}/env.txt",
        o = out.display()
    );
    check(
        &st[0],
        Outcome::Sent,
        "2.0.0",
        &format!("delivered to command: {cmd}"),
    );
    check(
        &st[1],
        Outcome::Sent,
        "2.0.0",
        &format!("delivered to file: {}/file.mbox", out.display()),
    );
    assert_eq!(
        (st[2].outcome, st[2].dsn.as_str()),
        (Outcome::Bounced, "5.1.1"),
        "{:?}",
        st[2]
    );

    // Commands get the From line and Return-Path, and Delivered-To (prepend_delivered_header
    // lists command); no >From quoting, no blank line at the end.
    let piped = fs::read(out.join("cmd.txt")).unwrap();
    let rest = from_line(&piped, "s@remote.test");
    assert_eq!(
        rest,
        [
            b"Return-Path: <s@remote.test>\nDelivered-To: pipe@example.test\n".as_slice(),
            BODY
        ]
        .concat()
    );
    assert_eq!(
        fs::read_to_string(out.join("env.txt")).unwrap(),
        "pipe@example.test s@remote.test pipe\n"
    );
    let filed = fs::read(out.join("file.mbox")).unwrap();
    let rest = from_line(&filed, "s@remote.test");
    assert_eq!(
        String::from_utf8(rest).unwrap(),
        "Return-Path: <s@remote.test>\nDelivered-To: file@example.test\nSubject: hi\nFrom: s@remote.test\n\n>From the start\nbody\n\n"
    );
    if posthorn_sys::is_root() {
        // Alias commands and files of a root-owned table run as default_privs.
        let nobody = posthorn_sys::user_by_name("nobody").unwrap().unwrap();
        assert_eq!(fs::metadata(out.join("cmd.txt")).unwrap().uid(), nobody.uid);
        assert_eq!(
            fs::metadata(out.join("file.mbox")).unwrap().uid(),
            nobody.uid
        );
    }
}

#[test]
fn dot_forward_of_the_user() {
    let _g = serial();
    let env = Env::new();
    fs::create_dir_all(env.path("spool")).unwrap();
    fs::create_dir_all(env.path("homes")).unwrap();
    let me = env.me.name.clone();
    let fwd_file = env.path("homes").join(format!(".forward-{me}"));
    fs::write(&fwd_file, format!("\\{me}, away@remote.test\n")).unwrap();
    fs::set_permissions(&fwd_file, fs::Permissions::from_mode(0o644)).unwrap();
    let agent = env.local_agent("");
    let mut fwd = FakeCleanup::default();
    let req = env.queue("s@remote.test", &[me.as_str()], BODY);
    let st = run_local(&env, &agent, &req, &mut fwd);
    check(&st[0], Outcome::Sent, "2.0.0", "forwarded as FAKEID1");
    assert_eq!(fwd.sent[0].1, vec!["away@remote.test"]);
    assert!(fs::read(env.path("spool").join(&me)).unwrap().len() > BODY.len());

    // A group-writable .forward is ignored: straight to the mailbox.
    fs::set_permissions(&fwd_file, fs::Permissions::from_mode(0o664)).unwrap();
    let mut fwd = FakeCleanup::default();
    let st = run_local(&env, &agent, &req, &mut fwd);
    check(&st[0], Outcome::Sent, "2.0.0", "delivered to mailbox");
    assert!(fwd.sent.is_empty());
}

#[test]
fn virtual_maildir_and_mbox() {
    let _g = serial();
    let env = Env::new();
    let base = env.open_dir("vmail");
    let ids = if posthorn_sys::is_root() {
        let n = posthorn_sys::user_by_name("nobody").unwrap().unwrap();
        format!(
            "virtual_uid_maps = static:{}\nvirtual_gid_maps = static:{}\nvirtual_minimum_uid = 100\n",
            n.uid, n.gid
        )
    } else {
        String::new()
    };
    let text = format!(
        "virtual_mailbox_base = {}\nrecipient_delimiter = +\n\
         virtual_mailbox_maps = inline:{{ v@virt.test=virt.test/v/, m@virt.test=virt.test/m, abs@virt.test=/etc/passwd }}\n{ids}",
        base.display()
    );
    let agent = VirtualAgent::new(VirtualSettings::from_config(
        &Config::parse_str(&text, "main.cf").unwrap(),
    ));
    let req = env.queue(
        "s@remote.test",
        &[
            "V+x@Virt.test",
            "m@virt.test",
            "who@virt.test",
            "abs@virt.test",
        ],
        BODY,
    );
    let st = handle_request(
        &env.layout,
        &req,
        "virtual",
        agent.settings.memory_limit,
        &mut |m, r| agent.deliver(m, r),
    );
    check(&st[0], Outcome::Sent, "2.0.0", "delivered to maildir");
    check(&st[1], Outcome::Sent, "2.0.0", "delivered to mailbox");
    check(
        &st[2],
        Outcome::Bounced,
        "5.1.1",
        "unknown user: \"who@virt.test\"",
    );
    check(
        &st[3],
        Outcome::Deferred,
        "4.3.5",
        "mail system configuration error",
    );
    assert_eq!(st[0].relay, "virtual");

    let new = base.join("virt.test/v/new");
    let files: Vec<_> = fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let want = [
        b"Return-Path: <s@remote.test>\nDelivered-To: v+x@virt.test\n".as_slice(),
        BODY,
    ]
    .concat();
    assert_eq!(fs::read(&files[0]).unwrap(), want);
    let mbox = fs::read(base.join("virt.test/m")).unwrap();
    let rest = from_line(&mbox, "s@remote.test");
    assert_eq!(
        String::from_utf8(rest).unwrap(),
        "Return-Path: <s@remote.test>\nDelivered-To: m@virt.test\nSubject: hi\nFrom: s@remote.test\n\n>From the start\nbody\n\n"
    );
    if posthorn_sys::is_root() {
        let n = posthorn_sys::user_by_name("nobody").unwrap().unwrap();
        assert_eq!(fs::metadata(&files[0]).unwrap().uid(), n.uid);
        assert_eq!(fs::metadata(base.join("virt.test/m")).unwrap().uid(), n.uid);
    }
}

#[test]
fn bad_requests_defer_everything() {
    let _g = serial();
    let env = Env::new();
    let agent = env.local_agent("");
    let mut req = env.queue("s@remote.test", &["a@example.test", "b@example.test"], BODY);
    let good_id = req.queue_id.clone();
    let mut fwd = FakeCleanup::default();

    req.queue_name = "incoming".into();
    let st = run_local(&env, &agent, &req, &mut fwd);
    assert_eq!(st.len(), 2);
    check(
        &st[1],
        Outcome::Deferred,
        "4.3.0",
        "bad queue name \"incoming\" in delivery request",
    );

    req.queue_name = "active".into();
    req.queue_id = "../../etc/passwd".into();
    let st = run_local(&env, &agent, &req, &mut fwd);
    assert!(
        st.iter()
            .all(|s| s.outcome == Outcome::Deferred && s.reason.contains("invalid queue ID")),
        "{st:?}"
    );

    fs::remove_file(env.layout.path(
        QueueName::Active,
        &posthorn_queue::QueueId::parse(&good_id).unwrap(),
    ))
    .unwrap();
    req.queue_id = good_id;
    let st = run_local(&env, &agent, &req, &mut fwd);
    assert!(
        st.iter()
            .all(|s| s.outcome == Outcome::Deferred
                && s.reason.starts_with("cannot read queue file: ")),
        "{st:?}"
    );
    assert!(Path::new(&env.layout.root()).exists());
}
