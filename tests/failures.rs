//! Delivery failures and master behaviour end to end: a full mailbox, failing and
//! temporarily failing alias commands, expiry after `maximal_queue_lifetime`,
//! `soft_bounce`, `mailq`/`newaliases` as names of the `sendmail` binary, a `posthorn
//! reload` with broken master.cf entries, and a service's `maxproc` limit.
//!
//! The instances run unprivileged (as `nobody` when the tests run as root). Where a
//! failure notice must not land in the mailbox under test, the sender is a virtual
//! Maildir address (`alice@virt.test`), so the notice can be read on its own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use posthorn_testkit::{Instance, queue_id_for, read_text};

const T: Duration = Duration::from_secs(20);

/// The virtual sender whose Maildir receives the notices.
const ALICE: &str = "alice@virt.test";

/// A message with every header cleanup would otherwise add, and `body` as its body.
fn message(subject: &str, body: &str) -> String {
    format!(
        "Subject: {subject}\nFrom: Sender <sender@example.org>\nTo: someone@example.org\n\
         Message-ID: <{subject}@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\n{body}"
    )
}

/// Runs sendmail with `args` and `msg`; panics unless it exits 0.
fn send(inst: &Instance, args: &[&str], msg: &str) {
    let out = inst.sendmail(args, msg);
    assert!(
        out.status.success(),
        "sendmail {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The default sender's address (the run-as user, qualified with `$myorigin`).
fn me_addr(inst: &Instance) -> String {
    format!("{}@mail.example.test", inst.user())
}

/// alice's Maildir (see [`ALICE`]).
fn alice_maildir(inst: &Instance) -> PathBuf {
    inst.mail.join("alice")
}

/// Waits for the first message in the Maildir `dir` and returns it as text.
fn wait_for_maildir(inst: &Instance, dir: &Path) -> String {
    let ok = inst.wait_until(T, || !inst.maildir(dir).is_empty());
    assert!(
        ok,
        "nothing arrived in {}; log:\n{}",
        dir.display(),
        inst.log_text()
    );
    let msgs = inst.maildir(dir);
    String::from_utf8_lossy(&msgs[0].1).into_owned()
}

/// `text` with every run of white space (folded header lines included) made one space.
fn unfold(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks a failure notice: subject, per-recipient report fields and the diagnostic.
fn check_notice(notice: &str, rcpt: &str, status: &str, reason: &str) {
    assert!(
        notice.contains("\nSubject: Undelivered Mail Returned to Sender\n"),
        "{notice}"
    );
    assert!(
        notice.contains("\nFrom: MAILER-DAEMON@mail.example.test (Mail Delivery System)\n"),
        "{notice}"
    );
    assert!(
        notice.contains(&format!("\nFinal-Recipient: rfc822; {rcpt}\n")),
        "{notice}"
    );
    assert!(notice.contains("\nAction: failed\n"), "{notice}");
    assert!(
        notice.contains(&format!("\nStatus: {status}\n")),
        "{notice}"
    );
    assert!(
        unfold(notice).contains(&unfold(&format!("Diagnostic-Code: x-posthorn; {reason}"))),
        "no diagnostic {reason:?} in:\n{notice}"
    );
}

/// The log line for `rcpt` of message `qid` that ends with `tail` (status code, status,
/// reason), waiting for it; checks its start (process, queue ID, recipient, relay) and
/// returns it. The delivery agent writes it (`relay=local` from posthorn/local, ...);
/// qmgr writes the results it decides itself (`relay=none`).
fn check_result(inst: &Instance, qid: &str, rcpt: &str, relay: &str, tail: &str) -> String {
    let head = format!("{qid}: to=<{rcpt}>");
    let find = || {
        inst.log_text()
            .lines()
            .find(|l| l.contains(&head) && l.ends_with(tail))
            .map(str::to_string)
    };
    assert!(
        inst.wait_until(T, || find().is_some()),
        "no line with {head:?} ending in {tail:?}; log:\n{}",
        inst.log_text()
    );
    let line = find().unwrap_or_default();
    let writer = match relay {
        "none" => "qmgr",
        agent => agent,
    };
    assert!(line.contains(&format!("posthorn/{writer}[")), "{line}");
    assert!(
        line.contains(&format!("{head}, relay={relay}, delay=")),
        "{line}"
    );
    assert!(line.contains(", delays="), "{line}");
    line
}

/// Makes `p` executable (mode 0755).
fn executable(p: &Path) {
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn mailbox_over_its_size_limit_bounces_and_stays_unchanged() {
    // Postfix's local(8) refuses a mailbox_size_limit below message_size_limit, so both
    // are 20000 here: a 5 KB message fits the message limit, but not the ~18 KB mailbox.
    let mut inst = Instance::new("mailbox_size_limit = 20000\nmessage_size_limit = 20000\n");
    inst.add_main_cf(&inst.virtual_cf(&format!("{ALICE}=alice/")));
    let me = inst.user();
    let mut old = String::from("From old@example.org  Thu Jan  1 00:00:00 1970\nSubject: old\n\n");
    while old.len() < 18_000 {
        old.push_str("an old line of mail that keeps the mailbox nearly full.\n");
    }
    old.push('\n');
    let mbox = inst.write_file(&format!("mail/{me}"), &old);
    fs::set_permissions(&mbox, fs::Permissions::from_mode(0o600)).unwrap();
    let before = fs::read(&mbox).unwrap();
    inst.start();

    let body: String = (0..80)
        .map(|i| format!("line {i:02} of a five kilobyte message .............................\n"))
        .collect();
    assert!(body.len() >= 5000, "{}", body.len());
    let rcpt = format!("{me}@localhost");
    send(
        &inst,
        &["-f", ALICE, &rcpt],
        &message("mailbox-full", &body),
    );
    inst.log_line("message-id=<mailbox-full@example.org>");
    let qid = queue_id_for(&inst.log_text(), "message-id=<mailbox-full@example.org>");
    let reason = format!(
        "cannot update mailbox {} for user {me}. error writing message: File too large",
        mbox.display()
    );
    check_result(
        &inst,
        &qid,
        &rcpt,
        "local",
        &format!(", dsn=5.2.2, status=bounced ({reason})"),
    );
    inst.expect_log(&format!("{qid}: sender non-delivery notification: "), T);
    let notice = wait_for_maildir(&inst, &alice_maildir(&inst));
    check_notice(&notice, &rcpt, "5.2.2", &reason);
    // The returned message is the one that did not fit.
    assert!(
        notice.contains("line 79 of a five kilobyte message"),
        "{notice}"
    );
    inst.expect_log(&format!("{qid}: removed"), T);
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    // Nothing of the refused message is left in the mailbox.
    assert!(fs::read(&mbox).unwrap() == before, "the mailbox changed");
    assert_eq!(inst.maildir(&alice_maildir(&inst)).len(), 1, "one notice");
    inst.stop();
}

#[test]
fn failing_alias_command_bounces_with_its_output() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf(&format!("{ALICE}=alice/")));
    let script = inst.write_file("bin/fail.sh", "#!/bin/sh\necho no such thing\nexit 1\n");
    executable(&script);
    inst.setup_aliases(&format!("tofail: \"|{}\"\n", script.display()));
    inst.start();
    send(
        &inst,
        &["-f", ALICE, "tofail@localhost"],
        &message("cmd-fails", "hello\n"),
    );
    inst.log_line("message-id=<cmd-fails@example.org>");
    let qid = queue_id_for(&inst.log_text(), "message-id=<cmd-fails@example.org>");
    // Postfix's pipe_command(): the status, the command, and its output on one line.
    let reason = format!(
        "Command died with status 1: \"{}\". Command output: no such thing",
        script.display()
    );
    check_result(
        &inst,
        &qid,
        "tofail@localhost",
        "local",
        &format!(", dsn=5.3.0, status=bounced ({reason})"),
    );
    inst.expect_log(&format!("{qid}: sender non-delivery notification: "), T);
    let notice = wait_for_maildir(&inst, &alice_maildir(&inst));
    check_notice(&notice, "tofail@localhost", "5.3.0", &reason);
    assert!(notice.contains("\nTo: alice@virt.test\n"), "{notice}");
    inst.expect_log(&format!("{qid}: removed"), T);
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    // A bounce, not a retry: one attempt only.
    let log = inst.log_text();
    assert_eq!(log.matches("to=<tofail@localhost>").count(), 1, "{log}");
    inst.stop();
}

#[test]
fn alias_command_tempfail_defers_then_flush_delivers_once() {
    // Long retry times: only the flush can bring the message back within the test.
    let mut inst = Instance::new(
        "queue_run_delay = 300s\nminimal_backoff_time = 300s\nmaximal_backoff_time = 300s\n",
    );
    let out = inst.root().join("out/got.txt");
    inst.write_file("out/.keep", "");
    let script = inst.write_file("bin/deliver.sh", "#!/bin/sh\nexit 75\n");
    executable(&script);
    inst.setup_aliases(&format!("tocmd: \"|{}\"\n", script.display()));
    inst.start();
    send(
        &inst,
        &["tocmd@localhost"],
        &message("cmd-tempfail", "line one\n"),
    );
    inst.log_line("message-id=<cmd-tempfail@example.org>");
    let qid = queue_id_for(&inst.log_text(), "message-id=<cmd-tempfail@example.org>");
    // EX_TEMPFAIL: Postfix's sys_exits table says 4.3.0 "temporary failure".
    check_result(
        &inst,
        &qid,
        "tocmd@localhost",
        "local",
        ", dsn=4.3.0, status=deferred (temporary failure)",
    );
    // Deferred: the message in deferred/, its reasons in the defer log.
    let ok = inst.wait_until(T, || {
        inst.queue_count("deferred") == 1 && inst.queue_count("defer") == 1
    });
    assert!(
        ok,
        "deferred={} defer={}; log:\n{}",
        inst.queue_count("deferred"),
        inst.queue_count("defer"),
        inst.log_text()
    );
    assert!(!inst.log_text().contains("status=sent"));
    assert!(!inst.log_text().contains("non-delivery notification"));

    // The command works now (replaced in one rename: never half a script).
    let fixed = inst.write_file(
        "bin/deliver.sh.new",
        &format!("#!/bin/sh\ncat >> {}\nexit 0\n", out.display()),
    );
    executable(&fixed);
    fs::rename(&fixed, &script).unwrap();
    // Nothing happens by itself: the next retry is 300 s away.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!inst.log_text().contains("status=sent"));
    assert_eq!(inst.queue_count("deferred"), 1);
    let fl = inst.posthorn(&["flush"]);
    assert!(
        fl.status.success(),
        "flush: {}",
        String::from_utf8_lossy(&fl.stderr)
    );
    check_result(
        &inst,
        &qid,
        "tocmd@localhost",
        "local",
        &format!(
            ", dsn=2.0.0, status=sent (delivered to command: {})",
            script.display()
        ),
    );
    inst.expect_log(&format!("{qid}: removed"), T);
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    assert!(
        inst.wait_until(T, || inst.queue_count("defer") == 0),
        "defer log left behind"
    );
    let got = read_text(&out);
    assert_eq!(got.matches("\nline one\n").count(), 1, "{got}");
    assert!(
        got.starts_with(&format!("From {}  ", me_addr(&inst))),
        "{got}"
    );
    let log = inst.log_text();
    let sent = log
        .lines()
        .filter(|l| {
            l.contains(&format!("{qid}: to=<tocmd@localhost>")) && l.contains("status=sent")
        })
        .count();
    assert_eq!(sent, 1, "{log}");
    inst.stop();
}

#[test]
fn deferred_mail_expires_and_returns_to_sender() {
    // maximal_queue_lifetime takes days without a unit: 2s is two seconds. A uid below
    // virtual_minimum_uid makes virtual(8) defer every delivery (4.3.5).
    let mut inst = Instance::new("");
    let mut v = inst.virtual_cf("bob@virt.test=bob/");
    v.push_str("virtual_minimum_uid = 4000000000\n");
    inst.add_main_cf(&v);
    inst.add_main_cf("maximal_queue_lifetime = 2s\nqueue_run_delay = 1s\n");
    let me = inst.user();
    inst.start();
    send(
        &inst,
        &["bob@virt.test"],
        &message("expiry", "this will never arrive\n"),
    );
    inst.log_line("message-id=<expiry@example.org>");
    let qid = queue_id_for(&inst.log_text(), "message-id=<expiry@example.org>");
    let reason = "mail system configuration error";
    check_result(
        &inst,
        &qid,
        "bob@virt.test",
        "virtual",
        &format!(", dsn=4.3.5, status=deferred ({reason})"),
    );
    // The notice goes to the sender's (local) mailbox.
    let mbox = inst.mail.join(&me);
    inst.wait_for_text(&mbox, "Undelivered Mail Returned to Sender");
    inst.expect_log(&format!("{qid}: sender non-delivery notification: "), T);
    inst.expect_log(&format!("{qid}: removed"), T);
    // The notice returns the message (written once the whole notice is in the mailbox).
    let notice = inst.wait_for_text(&mbox, "\nthis will never arrive\n");
    check_notice(&notice, "bob@virt.test", "4.3.5", reason);
    assert!(notice.starts_with("From MAILER-DAEMON  "), "{notice}");
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    assert!(
        inst.wait_until(T, || inst.queue_count("defer") == 0),
        "defer log left behind"
    );
    assert!(inst.maildir(&inst.mail.join("bob")).is_empty());
    // Postfix's qmgr says it once per message (qmgr_active.c), and log readers
    // (pflogsumm's "returned to sender" count) look for exactly this line. It comes
    // before the notice is sent, so it is in the log by now.
    let want = format!(
        "{qid}: from=<{}>, status=expired, returned to sender",
        me_addr(&inst)
    );
    let log = inst.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("posthorn/qmgr[") && l.ends_with(&want)),
        "no line ending in {want:?}; log:\n{log}"
    );
    inst.stop();
}

#[test]
fn soft_bounce_defers_instead_of_bouncing() {
    let mut inst = Instance::new("soft_bounce = yes\n");
    let me = inst.user();
    inst.start();
    send(
        &inst,
        &["nosuchuser@localhost"],
        &message("soft-bounce", "hello\n"),
    );
    inst.log_line("message-id=<soft-bounce@example.org>");
    let qid = queue_id_for(&inst.log_text(), "message-id=<soft-bounce@example.org>");
    // Postfix: the reason stays, the status code's class becomes 4.
    let tail = ", dsn=4.1.1, status=deferred (unknown user: \"nosuchuser\")";
    check_result(&inst, &qid, "nosuchuser@localhost", "local", tail);
    // Retried (backoff 1-2 s here), and deferred again each time; never bounced.
    let needle = format!("{qid}: to=<nosuchuser@localhost>");
    let ok = inst.wait_until(T, || {
        inst.log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
            >= 2
    });
    assert!(ok, "no retry; log:\n{}", inst.log_text());
    let log = inst.log_text();
    for l in log.lines().filter(|l| l.contains(&needle)) {
        assert!(l.ends_with(tail), "{l}");
    }
    assert!(!log.contains("status=bounced"), "{log}");
    assert!(!log.contains("non-delivery notification"), "{log}");
    assert!(!log.contains(&format!("{qid}: removed")), "{log}");
    // Still queued, and no notice for the sender.
    assert!(
        inst.queue_count("deferred") + inst.queue_count("active") == 1,
        "log:\n{log}"
    );
    assert!(!read_text(&inst.mail.join(&me)).contains("Undelivered Mail"));
    inst.stop();
}

#[test]
fn sendmail_binary_named_mailq_or_newaliases_acts_as_such() {
    let mut inst = Instance::new("");
    let me = inst.user();
    let mailq = inst.root().join("mailq");
    let newaliases = inst.root().join("newaliases");
    std::os::unix::fs::symlink(inst.bin.join("sendmail"), &mailq).unwrap();
    std::os::unix::fs::symlink(inst.bin.join("sendmail"), &newaliases).unwrap();
    // Runs a program by its path (argv[0] is that path), as the instance's user.
    let etc = inst.etc.clone();
    let run = |p: &Path| {
        let (uid, gid) = run_as_ids();
        std::process::Command::new(p)
            .env("MAIL_CONFIG", &etc)
            .uid(uid)
            .gid(gid)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run")
    };

    // newaliases: builds the database named by alias_database.
    let src = inst.write_file("aliases", &format!("# test\nviaq: {me}\n"));
    inst.add_main_cf(&format!(
        "alias_maps = hash:{0}\nalias_database = hash:{0}\n",
        src.display()
    ));
    let db = inst.root().join("aliases.db");
    assert!(!db.exists());
    let out = run(&newaliases);
    assert!(
        out.status.success(),
        "newaliases: {:?} {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists(), "newaliases did not build {}", db.display());

    inst.start();
    // mailq: lists the (empty) queue instead of waiting for a message on stdin.
    let out = run(&mailq);
    assert!(
        out.status.success(),
        "mailq: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Mail queue is empty\n"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(inst.queue_empty(), "mailq must not submit anything");

    // The database newaliases built is the one local(8) uses.
    send(
        &inst,
        &["viaq@localhost"],
        &message("via-newaliases", "x\n"),
    );
    let text = inst.wait_for_text(&inst.mail.join(&me), "\nDelivered-To: viaq@localhost\n");
    assert!(text.contains("Subject: via-newaliases\n"), "{text}");
    inst.stop();
}

/// The ids testkit runs an unprivileged instance's commands as: `nobody` when this test
/// runs as root, else our own.
fn run_as_ids() -> (u32, u32) {
    if posthorn_testkit::is_root() {
        let n = posthorn_sys::user_by_name("nobody")
            .unwrap()
            .expect("user nobody");
        (n.uid, n.gid)
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }
}

/// Appends `text` to the instance's master.cf; returns the line number its first line gets.
fn append_master_cf(inst: &Instance, text: &str) -> usize {
    let p = inst.etc.join("master.cf");
    let mut m = fs::read_to_string(&p).unwrap();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    let line = m.lines().count() + 1;
    m.push_str(text);
    fs::write(&p, m).unwrap();
    inst.chown_all();
    line
}

/// Runs `posthorn reload`; panics unless it exits 0.
fn reload(inst: &Instance) {
    let out = inst.posthorn(&["reload"]);
    assert!(
        out.status.success(),
        "reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends a message to the run-as user and waits until it is in the mailbox.
fn send_and_expect_delivery(inst: &Instance, subject: &str) {
    let me = inst.user();
    send(
        inst,
        &[&format!("{me}@localhost")],
        &message(subject, &format!("body of {subject}\n")),
    );
    inst.wait_for_text(&inst.mail.join(&me), &format!("\nbody of {subject}\n"));
}

#[test]
fn reload_with_broken_master_cf_entries_keeps_mail_flowing() {
    let mut inst = Instance::new("");
    inst.start();
    send_and_expect_delivery(&inst, "before-reload");
    let master_pid = read_text(&inst.queue.join("pid/master.pid"));

    // A bad type makes the whole master.cf unusable: the running configuration stays.
    let stock = fs::read_to_string(inst.etc.join("master.cf")).unwrap();
    let bad = append_master_cf(
        &inst,
        "bogus     nosuchtype -    -       n       -       1       bogus\n",
    );
    reload(&inst);
    let want = format!(
        "error: reload failed, keeping the running configuration: {}:{bad}: bad type value: \"nosuchtype\": expected inet, unix, unix-dgram, fifo or pass",
        inst.etc.join("master.cf").display()
    );
    let line = inst.log_line("reload failed");
    assert!(line.contains("posthorn/master["), "{line}");
    assert!(line.ends_with(&want), "want ...{want}\n got {line}");
    send_and_expect_delivery(&inst, "after-bad-reload");

    // A program that does not exist: the reload succeeds, master says why the service
    // does not run (at its first wakeup), and everything else keeps working.
    fs::write(inst.etc.join("master.cf"), &stock).unwrap();
    append_master_cf(
        &inst,
        "ghost     unix  -       -       n       1       1       /nonexistent/ghostd\n",
    );
    reload(&inst);
    inst.expect_log("reload -- version", T);
    let line = inst.log_line("cannot start /nonexistent/ghostd");
    assert!(line.contains("posthorn/master["), "{line}");
    assert!(
        line.contains("error: ghost: cannot start /nonexistent/ghostd: No such file or directory"),
        "{line}"
    );
    send_and_expect_delivery(&inst, "after-good-reload");
    // Still the same master, and each message delivered exactly once.
    assert_eq!(read_text(&inst.queue.join("pid/master.pid")), master_pid);
    let mbox = read_text(&inst.mail.join(inst.user()));
    for s in ["before-reload", "after-bad-reload", "after-good-reload"] {
        assert_eq!(
            mbox.matches(&format!("\nbody of {s}\n")).count(),
            1,
            "{mbox}"
        );
    }
    assert!(inst.posthorn(&["status"]).status.success());
    inst.stop();
}

/// The children of `ppid` whose command name is `comm`.
fn children_named(ppid: i32, comm: &str) -> usize {
    let Ok(rd) = fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces or ')'.
            let stat = read_text(&e.path().join("stat"));
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let name = &stat[open + 1..close];
            let ppid_field = stat[close + 1..].split_whitespace().nth(1);
            name == comm && ppid_field.and_then(|p| p.parse::<i32>().ok()) == Some(ppid)
        })
        .count()
}

#[test]
fn cleanup_maxproc_one_is_never_exceeded() {
    let mut inst = Instance::new("");
    let p = inst.etc.join("master.cf");
    let m = fs::read_to_string(&p).unwrap();
    let cleanup = m
        .lines()
        .find(|l| l.starts_with("cleanup "))
        .expect("cleanup in master.cf");
    let mut cols: Vec<&str> = cleanup.split_whitespace().collect();
    cols[6] = "1";
    let m = m.replace(cleanup, &cols.join(" "));
    fs::write(&p, m).unwrap();
    inst.chown_all();
    inst.start();
    let me = inst.user();
    let master: i32 = read_text(&inst.queue.join("pid/master.pid"))
        .trim()
        .parse()
        .expect("master.pid");

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (mut samples, mut most, mut seen) = (0usize, 0usize, 0usize);
            while !done.load(Ordering::SeqCst) || samples < 20 {
                let n = children_named(master, "cleanup");
                most = most.max(n);
                seen += usize::from(n > 0);
                samples += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (samples, most, seen)
        })
    };
    let rcpt = format!("{me}@localhost");
    std::thread::scope(|s| {
        for i in 0..10 {
            let (inst, rcpt) = (&inst, &rcpt);
            s.spawn(move || {
                send(inst, &[rcpt], &message(&format!("maxproc-{i}"), "hello\n"));
            });
        }
    });
    let mbox = inst.mail.join(&me);
    let all = inst.wait_until(T, || {
        read_text(&mbox).matches("\nSubject: maxproc-").count() == 10
    });
    done.store(true, Ordering::SeqCst);
    let (samples, most, seen) = sampler.join().unwrap();
    assert!(all, "not all delivered; log:\n{}", inst.log_text());
    assert!(samples >= 20, "{samples} samples");
    assert!(seen > 0, "never saw a cleanup process in {samples} samples");
    assert_eq!(most, 1, "more than one cleanup process at once");
    let log = inst.log_text();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(&format!("to=<{rcpt}>")) && l.contains("status=sent"))
            .count(),
        10,
        "{log}"
    );
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    inst.stop();
}
