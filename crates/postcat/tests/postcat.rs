//! postcat end to end: the built binary on queue files written with posthorn-queue in
//! temporary directories. Times are fixed by the file's own time record and `TZ=UTC`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use posthorn_queue::file::{self, Envelope, LogEntry, NewQueueFile, Recipient, SizeRecord};
use posthorn_queue::record::kind;
use posthorn_queue::{DirOwner, QueueId, QueueLayout, QueueName};

const CONTENT: &[u8] = b"Subject: hello\nFrom: Alice <alice@example.com>\n\nHello.\n";

struct Inst {
    tmp: tempfile::TempDir,
    etc: PathBuf,
    l: QueueLayout,
}

fn inst() -> Inst {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let queue = tmp.path().join("queue");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("main.cf"),
        format!("queue_directory = {}\n", queue.display()),
    )
    .unwrap();
    let l = QueueLayout::new(&queue, &["deferred".into(), "defer".into()], 1);
    l.create_tree(&DirOwner::default()).unwrap();
    Inst { tmp, etc, l }
}

impl Inst {
    /// The message of the golden file, deferred, with a defer log entry for bob.
    fn golden_message(&self) -> QueueId {
        let mut f = NewQueueFile::create(&self.l, QueueName::Deferred).unwrap();
        let env = Envelope {
            arrival: Some(UNIX_EPOCH + Duration::new(1_795_000_000, 5_000)),
            full_name: Some("Alice".into()),
            sender: "alice@example.com".into(),
            attrs: vec![("log_client".into(), "localhost[127.0.0.1]".into())],
            envid: Some("ENV1".into()),
            ret: Some("HDRS".into()),
            recipients: vec![
                Recipient {
                    address: "bob@example.net".into(),
                    orig: Some("bob@example.com".into()),
                    notify: Some("FAILURE,DELAY".into()),
                    ..Default::default()
                },
                Recipient {
                    address: "carol@example.com".into(),
                    orcpt: Some("rfc822;carol@example.com".into()),
                    done: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        env.write_records(f.writer()).unwrap();
        let m = f.put(kind::MESG, b"").unwrap();
        f.put_content(CONTENT).unwrap();
        f.put(kind::XTRA, b"").unwrap();
        let id = f
            .commit(SizeRecord {
                content_size: CONTENT.len() as u64,
                content_offset: m,
                recipients: 2,
                flags: 0,
            })
            .unwrap();
        let e = LogEntry {
            recipient: "bob@example.net".into(),
            orig: "bob@example.com".into(),
            dsn: "4.4.1".into(),
            reason: "connect to example.net[192.0.2.1]:25: Connection refused".into(),
        };
        file::append_log(&self.l, QueueName::Defer, &id, &[e]).unwrap();
        id
    }

    /// The label postcat -q gives message `id` in the deferred queue.
    fn label(&self, id: &QueueId) -> String {
        format!("deferred/{}/{id}", id.hash_chars(1)[0])
    }

    /// A copy of the message file outside the queue.
    fn copy(&self, id: &QueueId, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::copy(self.l.path(QueueName::Deferred, id), &p).unwrap();
        p
    }
}

fn postcat(args: &[&std::ffi::OsStr], stdin: &[u8]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_postcat"))
        .args(args)
        .env("TZ", "UTC")
        .env_remove("MAIL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    postcat(&args, b"")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn golden() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/default.ref");
    fs::read_to_string(p).unwrap()
}

#[test]
fn default_output_matches_the_golden_file() {
    let i = inst();
    let id = i.golden_message();
    let out = run(&["-c", i.etc.to_str().unwrap(), "-q", id.as_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let want = golden().replace("@FILE@", &i.label(&id));
    assert_eq!(text(&out.stdout), want);
}

#[test]
fn envelope_header_and_body_alone() {
    let i = inst();
    let id = i.golden_message();
    let etc = i.etc.to_str().unwrap();
    let get = |flags: &str| {
        let out = run(&["-c", etc, flags, "-q", id.as_str()]);
        assert!(out.status.success(), "{flags}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let content = String::from_utf8(CONTENT.to_vec()).unwrap();
    let full = golden().replace("@FILE@", &i.label(&id));
    assert_eq!(get("-e"), full.replace(&content, ""));
    assert_eq!(
        get("-h"),
        "Subject: hello\nFrom: Alice <alice@example.com>\n"
    );
    assert_eq!(get("-b"), "\nHello.\n");
    assert_eq!(get("-bh"), content);
}

#[test]
fn a_file_outside_the_queue_and_standard_input() {
    let i = inst();
    let id = i.golden_message();
    let p = i.copy(&id, "copy");
    let out = run(&[p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = text(&out.stdout);
    let label = p.display().to_string();
    assert!(
        got.starts_with(&format!("*** ENVELOPE RECORDS {label} ***\n")),
        "{got}"
    );
    // Without -q the logs are not looked up.
    assert!(
        got.contains("\nbob@example.net: pending\ncarol@example.com: done\n"),
        "{got}"
    );
    let out = postcat(&[], &fs::read(&p).unwrap());
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("*** ENVELOPE RECORDS stdin ***\n"));
    assert!(text(&out.stdout).ends_with("*** RECORD CHECK stdin: ok, 16 records ***\n"));
}

#[test]
fn offsets_and_decimal_types() {
    let i = inst();
    let id = i.golden_message();
    let p = i.copy(&id, "f");
    let out = run(&["-od", p.to_str().unwrap()]);
    let got = text(&out.stdout);
    let lines: Vec<&str> = got.lines().collect();
    assert!(
        lines[1].starts_with("        0  67 message_size: "),
        "{got}"
    );
    let hello = lines.iter().find(|l| l.ends_with("Hello.")).unwrap();
    assert!(hello.starts_with(&format!("{:9} ", hello[..9].trim().parse::<u64>().unwrap())));
    assert_eq!(&hello[10..14], " 78 ", "{hello}");
}

#[test]
fn a_truncated_file_is_described_not_crashed_on() {
    let i = inst();
    let id = i.golden_message();
    let p = i.copy(&id, "cut");
    let bytes = fs::read(&p).unwrap();
    let at = bytes.windows(6).position(|w| w == b"Hello.").unwrap();
    fs::write(&p, &bytes[..at + 3]).unwrap();
    let out = run(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let (got, err) = (text(&out.stdout), text(&out.stderr));
    // What could be read is shown.
    assert!(got.contains("recipient: bob@example.net\n"), "{got}");
    assert!(got.contains("*** MESSAGE CONTENTS "), "{got}");
    let reason = err
        .strip_prefix(&format!(
            "postcat: warning: {}: corrupt queue file: ",
            p.display()
        ))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(reason.starts_with("truncated record at offset "), "{err}");
    assert!(
        got.ends_with(&format!(
            "*** RECORD CHECK {}: corrupt queue file: {} ***\n",
            p.display(),
            reason.trim_end()
        )),
        "{got}"
    );
}

#[test]
fn a_flipped_byte_is_described_with_its_record() {
    let i = inst();
    let id = i.golden_message();
    let p = i.copy(&id, "flip");
    let mut bytes = fs::read(&p).unwrap();
    let at = bytes
        .windows(15)
        .position(|w| w == b"bob@example.net")
        .unwrap();
    bytes[at] ^= 0x01;
    fs::write(&p, &bytes).unwrap();
    let out = run(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    let (got, err) = (text(&out.stdout), text(&out.stderr));
    assert!(got.contains("dsn_notify_flags: FAILURE,DELAY\n"), "{got}");
    assert!(!got.contains("\nrecipient: bob"), "{got}");
    assert!(
        err.contains(": corrupt queue file: CRC mismatch in record 'R' at offset "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn not_a_queue_file_and_an_incomplete_one() {
    let i = inst();
    let junk = i.tmp.path().join("junk");
    fs::write(&junk, b"From: someone\n\nnot a queue file\n").unwrap();
    let out = run(&[junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!(
            "postcat: warning: {}: input is not a valid queue file\n",
            junk.display()
        )
    );
    let id = i.golden_message();
    let p = i.copy(&id, "incomplete");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&["-e", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(text(&out.stderr).contains("incomplete queue file (mode 0600)"));
    assert!(text(&out.stdout).contains("not marked complete (mode 0600)"));
}

#[test]
fn queue_ids_that_cannot_be_shown() {
    let i = inst();
    let etc = i.etc.to_str().unwrap();
    let out = run(&["-c", etc, "-q", "NOT-AN-ID"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).starts_with("postcat: fatal: bad mail queue ID: NOT-AN-ID"));
    let missing = QueueId::new(UNIX_EPOCH + Duration::from_secs(1_795_000_000), 1);
    let out = run(&["-c", etc, "-q", missing.as_str()]);
    assert_eq!(out.status.code(), Some(66));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("postcat: fatal: queue file {missing}: not found")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    let out = run(&["-q", "-c", "/nonexistent", missing.as_str()]);
    assert_eq!(out.status.code(), Some(78));
    let out = run(&["/nonexistent/file"]);
    assert_eq!(out.status.code(), Some(66));
    assert_eq!(
        text(&out.stderr),
        "postcat: fatal: open /nonexistent/file: No such file or directory\n"
    );
}
