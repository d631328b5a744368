//! The `local` and `virtual` programs themselves, started the way master starts them (an
//! inherited listener named by `POSTHORN_LISTEN_FDS`, `MAIL_CONFIG`, `POSTHORN_UNPRIV=n`),
//! driven over `delivery_protocol` as qmgr would. Run as root, alias commands go through
//! the program's own run-as helper (`/proc/self/exe`).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use posthorn_proto::Conn;
use posthorn_proto::delivery::{Deliver, Outcome, PROTOCOL, Rcpt, Status, VERSION, decode_reply};
use posthorn_queue::file::{Envelope, NewQueueFile, Recipient, SizeRecord};
use posthorn_queue::record::kind;
use posthorn_queue::{DirOwner, QueueLayout, QueueName};

/// Kills the daemon when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, dir: &Path) -> (Daemon, std::path::PathBuf) {
    let sock = dir.join(format!("{program}.sock"));
    let listener = UnixListener::bind(&sock).unwrap();
    posthorn_sys::set_cloexec(&listener, false).unwrap();
    let exe = match program {
        "local" => env!("CARGO_BIN_EXE_local"),
        _ => env!("CARGO_BIN_EXE_virtual"),
    };
    let child = Command::new(exe)
        .args(["-n", program, "-t", "unix"])
        .env("MAIL_CONFIG", dir.join("etc"))
        .env("POSTHORN_LISTEN_FDS", listener.as_raw_fd().to_string())
        .env("POSTHORN_UNPRIV", "n")
        .spawn()
        .unwrap();
    drop(listener);
    (Daemon(child), sock)
}

fn queue(layout: &QueueLayout, rcpts: &[&str]) -> Deliver {
    let mut f = NewQueueFile::create(layout, QueueName::Active).unwrap();
    let env = Envelope {
        sender: "s@remote.test".into(),
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
    let body = b"Subject: hi\n\nhello\n";
    let m = f.put(kind::MESG, b"").unwrap();
    f.put_content(body).unwrap();
    f.put(kind::XTRA, b"").unwrap();
    let id = f
        .commit(SizeRecord {
            content_size: body.len() as u64,
            content_offset: m,
            recipients: rcpts.len() as u64,
            flags: 0,
        })
        .unwrap();
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

fn ask(sock: &Path, req: &Deliver) -> Vec<Status> {
    let mut conn = None;
    for _ in 0..100 {
        match Conn::connect(sock, PROTOCOL, VERSION, Some(Duration::from_secs(30))) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let mut conn = conn.expect("daemon answers");
    conn.send(&req.frame()).unwrap();
    conn.flush().unwrap();
    decode_reply(conn.read_frame().unwrap()).unwrap()
}

#[test]
fn local_and_virtual_programs_serve_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["etc", "mail", "out", "vmail"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for d in ["mail", "out", "vmail"] {
        fs::set_permissions(dir.join(d), fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let layout = QueueLayout::new(
        dir.join("queue"),
        &["deferred".to_string(), "defer".to_string()],
        1,
    );
    layout.create_tree(&DirOwner::default()).unwrap();
    let me = posthorn_sys::user_by_uid(posthorn_sys::uids().1)
        .unwrap()
        .unwrap();
    fs::write(
        dir.join("etc/aliases"),
        format!(
            "postmaster: {me}\npipe: \"|cat > {}/piped\"\n",
            dir.join("out").display(),
            me = me.name
        ),
    )
    .unwrap();
    posthorn_tables::postalias(&dir.join("etc/aliases")).unwrap();
    fs::write(
        dir.join("etc/main.cf"),
        format!(
            "queue_directory = {q}\nmaillog_file = {d}/maillog\nmyhostname = mail.example.test\n\
             mydomain = example.test\nmydestination = $myhostname, example.test\n\
             alias_maps = hash:{d}/etc/aliases\nmail_spool_directory = {d}/mail/\n\
             virtual_mailbox_base = {d}/vmail\nvirtual_mailbox_maps = inline:{{ @v.test=v/ }}\n\
             virtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\nvirtual_minimum_uid = 0\n",
            q = layout.root().display(),
            d = dir.display(),
            uid = me.uid,
            gid = me.gid,
        ),
    )
    .unwrap();

    let (_local, sock) = start("local", dir);
    let req = queue(
        &layout,
        &[
            "postmaster@example.test",
            "pipe@example.test",
            "nosuch@example.test",
        ],
    );
    let st = ask(&sock, &req);
    let got: Vec<(Outcome, &str, &str)> = st
        .iter()
        .map(|s| (s.outcome, s.dsn.as_str(), s.reason.as_str()))
        .collect();
    let cmd = format!(
        "delivered to command: cat > {}/piped",
        dir.join("out").display()
    );
    assert_eq!(
        got,
        vec![
            (Outcome::Sent, "2.0.0", "delivered to maildir"),
            (Outcome::Sent, "2.0.0", cmd.as_str()),
            (Outcome::Bounced, "5.1.1", "unknown user: \"nosuch\""),
        ]
    );
    assert!(st.iter().all(|s| s.relay == "local"));
    let new = dir.join("mail").join(&me.name).join("new");
    let files: Vec<_> = fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        fs::read_to_string(&files[0]).unwrap(),
        "Return-Path: <s@remote.test>\nDelivered-To: postmaster@example.test\nSubject: hi\n\nhello\n"
    );
    let piped = fs::read_to_string(dir.join("out/piped")).unwrap();
    assert!(piped.starts_with("From s@remote.test  "), "{piped}");
    assert!(piped.ends_with("\nReturn-Path: <s@remote.test>\nDelivered-To: pipe@example.test\nSubject: hi\n\nhello\n"), "{piped}");
    if posthorn_sys::is_root() {
        let nobody = posthorn_sys::user_by_name("nobody").unwrap().unwrap();
        assert_eq!(
            fs::metadata(dir.join("out/piped")).unwrap().uid(),
            nobody.uid
        );
    }

    let (_virtual, vsock) = start("virtual", dir);
    let req = queue(&layout, &["anyone@v.test"]);
    let st = ask(&vsock, &req);
    assert_eq!(
        (st[0].outcome, st[0].reason.as_str(), st[0].relay.as_str()),
        (Outcome::Sent, "delivered to maildir", "virtual")
    );
    assert_eq!(fs::read_dir(dir.join("vmail/v/new")).unwrap().count(), 1);
    let log = fs::read_to_string(dir.join("maillog")).unwrap_or_default();
    eprintln!("{log}");
    assert!(
        !log.contains("fatal:") && !log.contains("panic:") && !log.contains("error:"),
        "{log}"
    );
}
