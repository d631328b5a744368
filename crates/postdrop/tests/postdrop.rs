//! postdrop as a program: a record stream on stdin becomes one committed maildrop file, and
//! every bad stream leaves nothing behind.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use posthorn_queue::file::{Envelope, FLAG_EXTRACT_RECIPIENTS, QueueFile, Recipient, is_complete};
use posthorn_queue::record::{RecordWriter, kind};
use posthorn_queue::{DirOwner, QueueLayout, QueueName};

struct Instance {
    _tmp: tempfile::TempDir,
    etc: PathBuf,
    layout: QueueLayout,
}

fn instance(extra_main_cf: &str) -> Instance {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let queue = tmp.path().join("queue");
    std::fs::write(
        etc.join("main.cf"),
        format!(
            "queue_directory = {}\nmaillog_file = {}\n{extra_main_cf}",
            queue.display(),
            tmp.path().join("maillog").display()
        ),
    )
    .unwrap();
    let layout = QueueLayout::new(&queue, &["deferred".into(), "defer".into()], 1);
    layout.create_tree(&DirOwner::default()).unwrap();
    Instance {
        _tmp: tmp,
        etc,
        layout,
    }
}

fn postdrop(inst: &Instance, input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postdrop"))
        .arg("-c")
        .arg(&inst.etc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // postdrop may refuse early and close its end: a write error here is fine.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn maildrop_entries(inst: &Instance) -> Vec<PathBuf> {
    std::fs::read_dir(inst.layout.dir(QueueName::Maildrop))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn envelope() -> Envelope {
    Envelope {
        arrival: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000)),
        full_name: Some("Alice Example".into()),
        sender: "alice@example.org".into(),
        attrs: vec![("rewrite_context".into(), "local".into())],
        envid: Some("env-42".into()),
        ret: Some("HDRS".into()),
        recipients: vec![
            Recipient {
                address: "bob@example.com".into(),
                notify: Some("SUCCESS,DELAY".into()),
                ..Default::default()
            },
            Recipient {
                address: "carol".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// The record stream sendmail sends: envelope, M, content, X, E (optionally cut short).
fn submission(env: &Envelope, content: &[u8], with_end: bool) -> Vec<u8> {
    let mut w = RecordWriter::new(Vec::new(), 0);
    env.write_records(&mut w).unwrap();
    w.put(kind::MESG, b"").unwrap();
    w.put_content(content).unwrap();
    w.put(kind::XTRA, b"").unwrap();
    if with_end {
        w.put(kind::END, b"").unwrap();
    }
    w.into_inner()
}

#[test]
fn a_submission_becomes_a_committed_maildrop_file() {
    let inst = instance("");
    let content = b"Subject: hello\n\nline one\n..\nlast\n";
    let before = SystemTime::now() - Duration::from_secs(1);
    let out = postdrop(&inst, &submission(&envelope(), content, true));
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let ids = inst.layout.list(QueueName::Maildrop).unwrap();
    assert_eq!(ids.len(), 1);
    let path = inst.layout.path(QueueName::Maildrop, &ids[0]);
    let meta = std::fs::metadata(&path).unwrap();
    assert!(is_complete(&meta));
    assert_eq!(meta.permissions().mode() & 0o777, 0o744);
    let qf = QueueFile::open(&path).unwrap();
    let e = &qf.envelope;
    // postdrop stamps its own time, not the caller's.
    assert!(e.arrival.unwrap() >= before, "{:?}", e.arrival);
    assert_eq!(e.full_name.as_deref(), Some("Alice Example"));
    assert_eq!(e.sender, "alice@example.org");
    assert_eq!(
        e.attrs,
        [("rewrite_context".to_string(), "local".to_string())]
    );
    assert_eq!(
        (e.envid.as_deref(), e.ret.as_deref()),
        (Some("env-42"), Some("HDRS"))
    );
    let rcpts: Vec<_> = e
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.notify.as_deref(), r.done))
        .collect();
    assert_eq!(
        rcpts,
        [
            ("bob@example.com", Some("SUCCESS,DELAY"), false),
            ("carol", None, false)
        ]
    );
    assert_eq!(e.size.recipients, 2);
    assert_eq!(e.size.flags, 0);
    assert_eq!(e.size.content_size, content.len() as u64);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut qf.content(), &mut got).unwrap();
    assert_eq!(got, content);
}

#[test]
fn extract_recipients_attribute_becomes_the_size_record_flag() {
    let inst = instance("");
    let mut env = envelope();
    env.recipients.clear();
    env.attrs.push(("extract_recipients".into(), "1".into()));
    let out = postdrop(
        &inst,
        &submission(&env, b"To: bob@example.com\n\nhi\n", true),
    );
    assert!(out.status.success(), "{out:?}");
    let ids = inst.layout.list(QueueName::Maildrop).unwrap();
    let qf = QueueFile::open(&inst.layout.path(QueueName::Maildrop, &ids[0])).unwrap();
    assert_eq!(qf.envelope.size.flags, FLAG_EXTRACT_RECIPIENTS);
    assert!(qf.envelope.recipients.is_empty());
    assert_eq!(qf.envelope.attr("extract_recipients"), None);
}

#[test]
fn a_truncated_stream_leaves_no_file() {
    let inst = instance("");
    let full = submission(&envelope(), b"Subject: x\n\nbody\n", true);
    for cut in [full.len() - 6, full.len() - 3, 30, 0] {
        let out = postdrop(&inst, &full[..cut]);
        assert_eq!(out.status.code(), Some(65), "cut at {cut}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("postdrop: fatal: uid="), "{err}");
        assert!(
            maildrop_entries(&inst).is_empty(),
            "cut at {cut}: {:?}",
            maildrop_entries(&inst)
        );
    }
}

#[test]
fn forbidden_records_are_refused() {
    let inst = instance("");
    let good = submission(&envelope(), b"x\n", true);
    let mut bad_kinds = Vec::new();
    for (k, payload) in [
        (kind::DONE, &b"bob@x"[..]),
        (kind::SIZE, b"1 2 3 4"),
        (kind::ATTR, b"trace_flags=8"),
        (kind::LOG, b"x"),
    ] {
        let mut v = Vec::new();
        posthorn_queue::record::encode(k, payload, &mut v);
        v.extend_from_slice(&good);
        let out = postdrop(&inst, &v);
        assert_eq!(out.status.code(), Some(65), "{:?}: {out:?}", k as char);
        bad_kinds.push(String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(maildrop_entries(&inst).is_empty());
    }
    assert!(
        bad_kinds[0].contains("unexpected record type 'D' in the envelope"),
        "{bad_kinds:?}"
    );
    assert!(
        bad_kinds[2].contains("attribute not allowed: trace_flags=8"),
        "{bad_kinds:?}"
    );
    // A damaged record (CRC) is refused too.
    let mut damaged = good.clone();
    damaged[20] ^= 1;
    let out = postdrop(&inst, &damaged);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(maildrop_entries(&inst).is_empty());
}

#[test]
fn content_over_message_size_limit_is_refused() {
    let inst = instance("message_size_limit = 100\n");
    let out = postdrop(&inst, &submission(&envelope(), &[b'a'; 100], true));
    assert!(out.status.success(), "{out:?}");
    let out = postdrop(&inst, &submission(&envelope(), &[b'a'; 101], true));
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("message file too big"),
        "{out:?}"
    );
    assert_eq!(inst.layout.list(QueueName::Maildrop).unwrap().len(), 1);
}

#[test]
fn pickup_is_woken_up() {
    let inst = instance("");
    let sock = inst.layout.public_socket("pickup");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = postdrop(&inst, &submission(&envelope(), b"x\n", true));
    assert!(out.status.success(), "{out:?}");
    // postdrop has exited, so its connection is already queued: never block here.
    listener.set_nonblocking(true).unwrap();
    let (mut conn, _) = listener.accept().expect("postdrop sent no trigger");
    conn.set_nonblocking(false).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut conn, &mut got).unwrap();
    assert_eq!(got, b"W");
}

#[test]
fn mail_config_selects_the_instance_and_bad_config_is_78() {
    let inst = instance("");
    let mut child = Command::new(env!("CARGO_BIN_EXE_postdrop"))
        .env("MAIL_CONFIG", &inst.etc)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&submission(&envelope(), b"x\n", true))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(inst.layout.list(QueueName::Maildrop).unwrap().len(), 1);

    let out = Command::new(env!("CARGO_BIN_EXE_postdrop"))
        .args(["-c", "/nonexistent/posthorn"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_postdrop"))
        .arg("-z")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn a_signal_removes_the_unfinished_file() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let inst = instance("");
    let full = submission(&envelope(), b"Subject: x\n\nbody\n", true);
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_postdrop"))
            .arg("-c")
            .arg(&inst.etc)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&full[..40]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while maildrop_entries(&inst).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "postdrop created no file"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(out.status.code(), Some(75), "{sig:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("interrupted by signal"),
            "{out:?}"
        );
        assert!(
            maildrop_entries(&inst).is_empty(),
            "{:?}",
            maildrop_entries(&inst)
        );
    }
}

#[test]
fn an_unwritable_maildrop_is_73() {
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipped: root can write any directory");
        return;
    }
    let inst = instance("");
    let md = inst.layout.dir(QueueName::Maildrop);
    std::fs::set_permissions(&md, std::fs::Permissions::from_mode(0o500)).unwrap();
    let out = postdrop(&inst, &submission(&envelope(), b"x\n", true));
    std::fs::set_permissions(&md, std::fs::Permissions::from_mode(0o730)).unwrap();
    assert_eq!(out.status.code(), Some(73), "{out:?}");
}
