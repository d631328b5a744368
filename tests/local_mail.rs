//! Local mail end to end: sendmail → postdrop → pickup → cleanup → qmgr → local/virtual,
//! against real instances started from main.cf/master.cf in temporary folders.

use std::fs;
use std::time::Duration;

use posthorn_testkit::{Instance, queue_id_for};

const T: Duration = Duration::from_secs(20);

#[test]
fn virtual_maildir_delivery_is_byte_exact() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/, bob@virt.test=bob"));
    inst.start();
    let msg = "Subject: hello\nFrom: Sender <sender@example.org>\nTo: alice@virt.test\nMessage-ID: <m1@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\nline one\n.hidden dot stays\nFrom the body\n";
    let out = inst.sendmail(&["-f", "sender@example.org", "alice@virt.test"], msg);
    assert!(
        out.status.success(),
        "sendmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = inst.mail.join("alice");
    assert!(
        inst.wait_until(T, || inst.maildir(&md).len() == 1),
        "not delivered; log:\n{}",
        inst.log_text()
    );
    inst.expect_log("status=sent (delivered to maildir)", T);
    inst.expect_log(": removed", T);
    let log = inst.log_text();
    let qid = queue_id_for(&log, "message-id=<m1@example.org>");
    let (_, got) = &inst.maildir(&md)[0];
    let got = String::from_utf8_lossy(got);
    let mut lines = got.lines();
    assert_eq!(lines.next(), Some("Return-Path: <sender@example.org>"));
    assert_eq!(lines.next(), Some("Delivered-To: alice@virt.test"));
    let recv = lines.next().unwrap();
    assert_eq!(
        recv,
        format!(
            "Received: by mail.example.test (posthorn, from userid {})",
            inst.uid()
        )
    );
    assert_eq!(lines.next(), Some(format!("\tid {qid}").as_str()));
    let for_line = lines.next().unwrap();
    assert!(
        for_line.starts_with("\tfor <alice@virt.test>; "),
        "{for_line}"
    );
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest.join("\n") + "\n",
        "Subject: hello\nFrom: Sender <sender@example.org>\nTo: alice@virt.test\nMessage-ID: <m1@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\nline one\n.hidden dot stays\nFrom the body\n"
    );
    assert!(inst.queue_empty());
    // The log line has Postfix's shape.
    let sent = log.lines().find(|l| l.contains("status=sent")).unwrap();
    assert!(sent.contains(&"posthorn/virtual[".to_string()), "{sent}");
    assert!(
        sent.contains(&format!(
            "{qid}: to=<alice@virt.test>, relay=virtual, delay="
        )),
        "{sent}"
    );
    assert!(
        sent.contains(", dsn=2.0.0, status=sent (delivered to maildir)"),
        "{sent}"
    );
    inst.stop();
}

#[test]
fn local_mbox_delivery_with_missing_headers_added() {
    let mut inst = Instance::new("");
    inst.start();
    let me = inst.user();
    let out = inst.sendmail(
        &["-F", "Test User", &format!("{me}@localhost")],
        "Subject: plain\n\nFrom here\n>From there\n",
    );
    assert!(
        out.status.success(),
        "sendmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mbox = inst.mail.join(&me);
    assert!(
        inst.wait_until(T, || fs::metadata(&mbox)
            .map(|m| m.len() > 0)
            .unwrap_or(false)),
        "no mbox; log:\n{}",
        inst.log_text()
    );
    inst.expect_log("status=sent (delivered to mailbox)", T);
    let text = fs::read_to_string(&mbox).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("From {me}@mail.example.test  ")),
        "{first}"
    );
    assert!(
        text.contains(&format!("\nReturn-Path: <{me}@mail.example.test>\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nDelivered-To: {me}@localhost\n")),
        "{text}"
    );
    assert!(text.contains("\nMessage-Id: <"), "{text}");
    assert!(text.contains("\nDate: "), "{text}");
    assert!(
        text.contains(&format!("\nFrom: Test User <{me}@mail.example.test>\n")),
        "{text}"
    );
    // Postfix quotes only lines that start with "From " (not mboxrd).
    assert!(text.contains("\n\n>From here\n>From there\n\n"), "{text}");
    inst.stop();
}

#[test]
fn sendmail_t_takes_recipients_from_headers_and_removes_bcc() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/, bob@virt.test=bob"));
    inst.start();
    let msg = "To: Alice <alice@virt.test>\nBcc: bob@virt.test\nSubject: t\n\nbody\n.\nnot read\n";
    let out = inst.sendmail(&["-t"], msg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (inst.mail.join("alice"), inst.mail.join("bob"));
    assert!(
        inst.wait_until(T, || inst.maildir(&a).len() == 1
            && fs::metadata(&b).is_ok()),
        "log:\n{}",
        inst.log_text()
    );
    let alice = String::from_utf8_lossy(&inst.maildir(&a)[0].1).into_owned();
    assert!(!alice.contains("Bcc"), "{alice}");
    assert!(
        alice.ends_with("\nbody\n"),
        "a lone dot ends the input: {alice}"
    );
    let bob = fs::read_to_string(&b).unwrap();
    assert!(!bob.contains("Bcc:"), "{bob}");
    inst.stop();
}

#[test]
fn unknown_user_bounces_to_sender() {
    let mut inst = Instance::new("");
    inst.start();
    let me = inst.user();
    let out = inst.sendmail(&["no-such-user-zz@localhost"], "Subject: lost\n\nhello\n");
    assert!(out.status.success());
    inst.expect_log("status=bounced (unknown user: \"no-such-user-zz\")", T);
    inst.expect_log("sender non-delivery notification:", T);
    let mbox = inst.mail.join(&me);
    assert!(
        inst.wait_until(T, || fs::read_to_string(&mbox)
            .is_ok_and(|t| t.contains("Undelivered Mail Returned to Sender"))),
        "log:\n{}",
        inst.log_text()
    );
    let text = fs::read_to_string(&mbox).unwrap();
    assert!(text.starts_with("From MAILER-DAEMON  "), "{text}");
    assert!(text.contains("Return-Path: <>"), "{text}");
    assert!(
        text.contains("Content-Type: multipart/report; report-type=delivery-status;"),
        "{text}"
    );
    assert!(
        text.contains("Final-Recipient: rfc822; no-such-user-zz@localhost"),
        "{text}"
    );
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("Subject: lost"), "{text}");
    assert!(inst.wait_until(T, || inst.queue_empty()));
    inst.stop();
}

#[test]
fn deferred_mail_is_retried_after_the_problem_is_fixed() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/, bob@virt.test=bob"));
    // A uid below virtual_minimum_uid is a configuration error: defer, don't bounce.
    inst.add_main_cf("virtual_minimum_uid = 4000000000\n");
    inst.start();
    let out = inst.sendmail(&["alice@virt.test"], "Subject: later\n\nx\n");
    assert!(out.status.success());
    inst.expect_log("status=deferred", T);
    assert!(
        inst.wait_until(T, || inst.queue_count("deferred") == 1),
        "log:\n{}",
        inst.log_text()
    );
    let defer_logs = inst.queue_count("defer");
    assert_eq!(defer_logs, 1, "a defer log holds the reason");
    // It is retried (backoff 1-2 s in the test config) and deferred again.
    let before = inst.log_text().matches("status=deferred").count();
    assert!(
        inst.wait_until(T, || inst.log_text().matches("status=deferred").count()
            > before),
        "no retry; log:\n{}",
        inst.log_text()
    );
    // Fix the configuration, reload, flush: delivered.
    inst.add_main_cf("virtual_minimum_uid = 0\n");
    let r = inst.posthorn(&["reload"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    inst.expect_log("reload -- version", T);
    std::thread::sleep(Duration::from_millis(300));
    let f = inst.posthorn(&["flush"]);
    assert!(f.status.success(), "{}", String::from_utf8_lossy(&f.stderr));
    let md = inst.mail.join("alice");
    assert!(
        inst.wait_until(T, || inst.maildir(&md).len() == 1),
        "log:\n{}",
        inst.log_text()
    );
    assert!(
        inst.wait_until(T, || inst.queue_empty() && inst.queue_count("defer") == 0),
        "log:\n{}",
        inst.log_text()
    );
    inst.stop();
}
