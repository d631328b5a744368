//! sendmail, mailq and newaliases as programs, against a temporary instance.
//!
//! Submission needs the `postdrop` binary of the posthorn-postdrop package. Cargo builds it
//! only when that package is part of the build (`cargo test` in the workspace, or
//! `cargo build -p posthorn-postdrop` first); when it is not next to `sendmail`, the tests
//! that need it say so on stderr and pass without checking.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use posthorn_queue::file::{FLAG_EXTRACT_RECIPIENTS, QueueFile, is_complete};
use posthorn_queue::{DirOwner, QueueLayout, QueueName};

const SENDMAIL: &str = env!("CARGO_BIN_EXE_sendmail");

struct Instance {
    tmp: tempfile::TempDir,
    etc: PathBuf,
    layout: QueueLayout,
}

/// A temporary instance whose command_directory is `bin` (where postdrop is looked for).
fn instance_with(bin: &Path) -> Instance {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let queue = tmp.path().join("queue");
    let main_cf = format!(
        "queue_directory = {}\nmaillog_file = {}\ncommand_directory = {}\nalias_database = hash:{}\n",
        queue.display(),
        tmp.path().join("maillog").display(),
        bin.display(),
        etc.join("aliases").display()
    );
    std::fs::write(etc.join("main.cf"), main_cf).unwrap();
    let layout = QueueLayout::new(&queue, &["deferred".into(), "defer".into()], 1);
    layout.create_tree(&DirOwner::default()).unwrap();
    Instance { tmp, etc, layout }
}

fn bin_dir() -> PathBuf {
    Path::new(SENDMAIL).parent().unwrap().to_path_buf()
}

/// The instance, or None (with a note) when postdrop has not been built.
fn instance() -> Option<Instance> {
    if !bin_dir().join("postdrop").is_file() {
        eprintln!(
            "SKIPPED: no postdrop next to {SENDMAIL}; run `cargo build -p posthorn-postdrop` first"
        );
        return None;
    }
    Some(instance_with(&bin_dir()))
}

fn run(
    program: &str,
    inst: &Instance,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(program);
    cmd.arg("-C")
        .arg(&inst.etc)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("NAME").env_remove("MAIL_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // sendmail may stop reading (lone dot, or an early error): ignore EPIPE.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn the_one_file(inst: &Instance) -> QueueFile {
    let ids = inst.layout.list(QueueName::Maildrop).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let path = inst.layout.path(QueueName::Maildrop, &ids[0]);
    assert!(is_complete(&std::fs::metadata(&path).unwrap()));
    QueueFile::open(&path).unwrap()
}

fn content(qf: &QueueFile) -> Vec<u8> {
    let mut v = Vec::new();
    qf.content().read_to_end(&mut v).unwrap();
    v
}

#[test]
fn submit_with_recipients_sender_full_name_and_dsn() {
    let Some(inst) = instance() else { return };
    let input = b"From alice Thu Nov 20 10:00:00 2025\r\nSubject: hi\r\n\r\nbody\r\n..\r\n. \r\n.\r\nnot read\r\n";
    let out = run(
        SENDMAIL,
        &inst,
        &[
            "-f",
            "<alice@example.org>",
            "-F",
            "Alice Example",
            "-N",
            "success,delay",
            "-V",
            "env-1",
            "-R",
            "hdrs",
            "Bob <bob@example.com>, carol",
            "dave@example.net",
        ],
        input,
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let qf = the_one_file(&inst);
    let e = &qf.envelope;
    assert_eq!(e.sender, "alice@example.org");
    assert_eq!(e.full_name.as_deref(), Some("Alice Example"));
    assert_eq!(
        e.attrs,
        [("rewrite_context".to_string(), "local".to_string())]
    );
    assert_eq!(
        (e.envid.as_deref(), e.ret.as_deref()),
        (Some("env-1"), Some("HDRS"))
    );
    let rcpts: Vec<_> = e
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.notify.as_deref()))
        .collect();
    assert_eq!(
        rcpts,
        [
            ("bob@example.com", Some("SUCCESS,DELAY")),
            ("carol", Some("SUCCESS,DELAY")),
            ("dave@example.net", Some("SUCCESS,DELAY"))
        ]
    );
    assert_eq!((e.size.recipients, e.size.flags), (3, 0));
    assert_eq!(content(&qf), b"Subject: hi\n\nbody\n..\n. \n");
}

#[test]
fn submit_with_t_and_i_keeps_dots_and_sets_the_extract_flag() {
    let Some(inst) = instance() else { return };
    let input = b"To: bob@example.com\n\nfirst\n.\nsecond";
    let out = run(SENDMAIL, &inst, &["-ti", "-f", "<>"], input, &[]);
    assert!(out.status.success(), "{out:?}");
    let qf = the_one_file(&inst);
    assert_eq!(qf.envelope.sender, "");
    assert_eq!(qf.envelope.size.flags, FLAG_EXTRACT_RECIPIENTS);
    assert!(qf.envelope.recipients.is_empty());
    assert_eq!(qf.envelope.attr("extract_recipients"), None);
    assert_eq!(content(&qf), b"To: bob@example.com\n\nfirst\n.\nsecond\n");
}

#[test]
fn default_sender_is_the_login_name_and_name_comes_from_the_environment() {
    let Some(inst) = instance() else { return };
    let Some(me) = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap() else {
        eprintln!("SKIPPED: this user has no password entry");
        return;
    };
    let out = run(
        SENDMAIL,
        &inst,
        &["-oi", "--", "bob"],
        b"x\n",
        &[("NAME", "Env Name")],
    );
    assert!(out.status.success(), "{out:?}");
    let qf = the_one_file(&inst);
    assert_eq!(qf.envelope.sender, me.name);
    assert_eq!(qf.envelope.full_name.as_deref(), Some("Env Name"));
    assert_eq!(qf.envelope.recipients[0].address, "bob");
    assert_eq!(qf.envelope.recipients[0].notify, None);
}

/// A command_directory whose `postqueue` prints its name and arguments, complains on
/// stderr and exits 3: mailq must run it in its place (exec: same status, same output).
fn fake_postqueue() -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("postqueue");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"$0 $*\"\necho 'postqueue: fatal: test' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn mailq_and_bp_run_postqueue_p() {
    let bin = fake_postqueue();
    let inst = instance_with(bin.path());
    let etc = inst.etc.display().to_string();
    for (program, args, want) in [
        (env!("CARGO_BIN_EXE_mailq"), &[][..], format!("-c {etc} -p")),
        (SENDMAIL, &["-bp"][..], format!("-c {etc} -p")),
        (
            SENDMAIL,
            &["-bp", "-v", "-v"][..],
            format!("-c {etc} -p -v -v"),
        ),
        (
            env!("CARGO_BIN_EXE_newaliases"),
            &["-bp"][..],
            format!("-c {etc} -p"),
        ),
    ] {
        let out = run(program, &inst, args, b"", &[]);
        assert_eq!(out.status.code(), Some(3), "{program} {args:?}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let (argv0, rest) = text.trim_end().split_once(' ').unwrap();
        assert!(argv0.ends_with("postqueue"), "{text}");
        assert_eq!(rest, want, "{program} {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("postqueue: fatal: test"),
            "{out:?}"
        );
    }
    // MAIL_CONFIG instead of -C: the same directory is passed on.
    let out = Command::new(env!("CARGO_BIN_EXE_mailq"))
        .env("MAIL_CONFIG", &inst.etc)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with(&format!("postqueue -c {etc} -p")),
        "{out:?}"
    );
    // Recipients are refused as before.
    let out = run(env!("CARGO_BIN_EXE_mailq"), &inst, &["bob"], b"", &[]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn mailq_without_postqueue_fails() {
    // A copy of mailq alone in a folder that is also command_directory: no postqueue.
    let bin = tempfile::tempdir().unwrap();
    let mailq = bin.path().join("mailq");
    std::fs::copy(env!("CARGO_BIN_EXE_mailq"), &mailq).unwrap();
    let inst = instance_with(bin.path());
    let out = run(mailq.to_str().unwrap(), &inst, &[], b"", &[]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mailq: fatal: execvp "), "{err}");
    assert!(
        err.contains("postqueue: No such file or directory"),
        "{err}"
    );
}

#[test]
fn postdrop_failure_is_passed_on_and_nothing_is_queued() {
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("postdrop");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncat >/dev/null\necho 'postdrop: fatal: test refusal' >&2\nexit 73\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inst = instance_with(bin.path());
    let out = run(SENDMAIL, &inst, &["bob"], b"Subject: x\n\nbody\n", &[]);
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postdrop: fatal: test refusal"), "{err}");
    assert!(err.contains("sendmail: fatal: "), "{err}");
    assert!(
        err.contains("exited with status 73; message not queued"),
        "{err}"
    );
    // A postdrop that dies from a signal, or exits with a non-sysexits code: 75.
    std::fs::write(&fake, "#!/bin/sh\nexit 1\n").unwrap();
    let out = run(SENDMAIL, &inst, &["bob"], b"x\n", &[]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    // A postdrop that refuses at once, before sendmail has written everything (EPIPE).
    std::fs::write(
        &fake,
        "#!/bin/sh\nexec 0<&-\necho 'postdrop: fatal: refused' >&2\nexit 65\n",
    )
    .unwrap();
    let big = vec![b'x'; 4 << 20];
    let out = run(SENDMAIL, &inst, &["bob"], &big, &[]);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exited with status 65"),
        "{out:?}"
    );
    assert!(inst.layout.list(QueueName::Maildrop).unwrap().is_empty());
}

#[test]
fn stand_alone_smtp_session_submits_through_postdrop() {
    let Some(inst) = instance() else { return };
    let input = b"EHLO client\r\nMAIL FROM:<alice@example.org> RET=HDRS ENVID=e+2B1\r\n\
        RCPT TO:<bob@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bob@example.com\r\n\
        DATA\r\nFrom nobody\r\nSubject: hi\r\n\r\n..dotted\r\n.\r\nQUIT\r\n";
    let out = run(SENDMAIL, &inst, &["-bs"], input, &[]);
    assert!(out.status.success(), "{out:?}");
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(replies.starts_with("220 "), "{replies}");
    assert!(replies.contains("250 2.0.0 Ok: queued as "), "{replies}");
    assert!(replies.ends_with("221 2.0.0 Bye\r\n"), "{replies}");
    let qf = the_one_file(&inst);
    let e = &qf.envelope;
    assert_eq!(e.sender, "alice@example.org");
    assert_eq!(e.full_name, None);
    assert_eq!(
        (e.envid.as_deref(), e.ret.as_deref()),
        (Some("e+1"), Some("HDRS"))
    );
    let r = &e.recipients;
    assert_eq!(r.len(), 1);
    assert_eq!(
        (
            r[0].address.as_str(),
            r[0].notify.as_deref(),
            r[0].orcpt.as_deref()
        ),
        (
            "bob@example.com",
            Some("SUCCESS,DELAY"),
            Some("rfc822;Bob@example.com")
        )
    );
    // Stored form: LF lines, dot-unstuffed, a leading "From " line kept.
    assert_eq!(content(&qf), b"From nobody\nSubject: hi\n\n.dotted\n");
}

#[test]
fn stand_alone_session_reports_a_failed_submission() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("postdrop");
    std::fs::write(&fake, "#!/bin/sh\ncat >/dev/null\nexit 75\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inst = instance_with(tmp.path());
    let input = b"HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nx\r\n.\r\n";
    let out = run(SENDMAIL, &inst, &["-bs"], input, &[]);
    assert!(out.status.success(), "{out:?}");
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.contains("451 4.3.0 Error: ") && replies.contains("message not queued"),
        "{replies}"
    );
}

#[test]
fn usage_errors_and_unimplemented_modes() {
    let inst = instance_with(&bin_dir());
    let out = run(SENDMAIL, &inst, &[], b"x\n", &[]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sendmail: fatal: Recipient addresses must be specified on the command line or via the -t option"), "{err}");
    let out = run(SENDMAIL, &inst, &["-bv", "bob"], b"", &[]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("sendmail: fatal: -bv mode is not implemented yet"),
        "{out:?}"
    );
    let out = run(SENDMAIL, &inst, &["-bs", "bob"], b"", &[]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(SENDMAIL, &inst, &["-z", "bob"], b"", &[]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(SENDMAIL, &inst, &["-q30m"], b"", &[]);
    assert_eq!(out.status.code(), Some(0));
    // -q with no qmgr listening: the mail system is down.
    let out = run(SENDMAIL, &inst, &["-q"], b"", &[]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Cannot flush mail queue - mail system is down")
    );
    let out = Command::new(SENDMAIL)
        .args(["-C", "/nonexistent/etc", "bob"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(inst.layout.list(QueueName::Maildrop).unwrap().is_empty());
}

#[test]
fn q_sends_the_scan_all_trigger_to_qmgr() {
    let inst = instance_with(&bin_dir());
    let listener =
        std::os::unix::net::UnixListener::bind(inst.layout.public_socket("qmgr")).unwrap();
    let out = run(SENDMAIL, &inst, &["-q"], b"", &[]);
    assert!(out.status.success(), "{out:?}");
    listener.set_nonblocking(true).unwrap();
    let (mut conn, _) = listener.accept().expect("no trigger sent");
    conn.set_nonblocking(false).unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"A");
}

#[test]
fn newaliases_builds_the_alias_database() {
    let inst = instance_with(&bin_dir());
    std::fs::write(
        inst.etc.join("aliases"),
        "postmaster: root\nroot: alice\nroot: bob\n",
    )
    .unwrap();
    let out = run(env!("CARGO_BIN_EXE_newaliases"), &inst, &[], b"", &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(inst.etc.join("aliases.db").is_file());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("newaliases: warning: ") && err.contains("duplicate"),
        "{err}"
    );
    // -oA names another source; sendmail -bi is the same mode.
    let other = inst.tmp.path().join("other");
    std::fs::write(&other, "x: y\n").unwrap();
    let out = run(
        SENDMAIL,
        &inst,
        &["-bi", &format!("-oA{}", other.display())],
        b"",
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(inst.tmp.path().join("other.db").is_file());
    std::fs::remove_file(inst.etc.join("aliases")).unwrap();
    let out = run(env!("CARGO_BIN_EXE_newaliases"), &inst, &[], b"", &[]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("newaliases: fatal: "),
        "{out:?}"
    );
}
