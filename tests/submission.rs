//! sendmail submission details end to end: `message_size_limit`, DSN options (`-N`, `-R`,
//! `-V`), the null sender and double bounces, sendmail's exit statuses, 8-bit and large
//! messages, and the `mailq` listing of a deferred message.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use posthorn_testkit::{Instance, queue_id_for, read_text};

const T: Duration = Duration::from_secs(20);

/// The default sender: the run-as user qualified with `$myorigin` (local, so notices come
/// back to the run-as user's mbox).
fn me_addr(inst: &Instance) -> String {
    format!("{}@mail.example.test", inst.user())
}

fn mbox(inst: &Instance) -> PathBuf {
    inst.mail.join(inst.user())
}

fn sent_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "sendmail ({what}): {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A body of about `kbytes` KB in 80-column lines.
fn body_of(kbytes: usize) -> String {
    (0..kbytes * 1024 / 80)
        .map(|i| format!("line {i:06} {}\n", "z".repeat(67)))
        .collect()
}

#[test]
fn message_over_message_size_limit_is_refused_at_submission() {
    // Postfix's postdrop limits the queue file to message_size_limit: sendmail reports
    // "SENDER(UID): message file too big" and exits with EX_UNAVAILABLE (69), nothing queued.
    let mut inst = Instance::new("message_size_limit = 2000\n");
    inst.start();
    let me = inst.user();
    let msg = format!("Subject: too big\n\n{}", body_of(10));
    assert!(msg.len() > 10_000);
    let out = inst.sendmail(&[&format!("{me}@localhost")], &msg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 10 KB message must be refused");
    assert!(err.contains("message file too big"), "{err}");
    assert_eq!(inst.queue_count("maildrop"), 0);
    assert_eq!(
        out.status.code(),
        Some(69),
        "Postfix's sendmail exits with EX_UNAVAILABLE for \"message file too big\"; stderr: {err}"
    );
    inst.stop();
}

#[test]
fn oversized_mail_in_maildrop_is_returned_to_the_sender_by_pickup() {
    // Submitted while the mail system is down and the limit is higher: the file waits in
    // maildrop/. Then the limit goes down and the system starts: cleanup refuses the
    // message (5.3.4 message file too big), and pickup returns it to its sender. The limit
    // is 6000 rather than 2000 so that the notice itself (about 2.3 KB) fits under it.
    let mut inst = Instance::new("");
    let me = inst.user();
    // Started once (the queue exists), then down while the message is submitted.
    inst.start();
    inst.stop();
    let msg = format!(
        "Subject: big one\nMessage-ID: <big-one@example.org>\n\n{}",
        body_of(10)
    );
    let out = inst.sendmail(&[&format!("{me}@localhost")], &msg);
    sent_ok(&out, "while stopped");
    assert_eq!(inst.queue_count("maildrop"), 1, "waits in maildrop");
    inst.add_main_cf("message_size_limit = 6000\n");
    inst.start();
    let text = inst.wait_for_text(&mbox(&inst), "Undelivered Mail Returned to Sender");
    inst.expect_log("message rejected: 5.3.4 message file too big", T);
    inst.expect_log("sender non-delivery notification: ", T);
    assert!(text.starts_with("From MAILER-DAEMON  "), "{text}");
    assert!(text.contains("\nReturn-Path: <>\n"), "{text}");
    assert!(
        text.contains(&format!("\nFinal-Recipient: rfc822; {me}@localhost\n")),
        "{text}"
    );
    assert!(text.contains("\nStatus: 5.3.4\n"), "{text}");
    assert!(
        text.contains("Diagnostic-Code: x-posthorn; message file too big"),
        "{text}"
    );
    assert!(text.contains("Subject: big one"), "{text}");
    // Only the headers come back, and the message was never delivered.
    assert!(!text.contains("line 000001 "), "{text}");
    assert!(
        inst.wait_until(T, || inst.queue_empty()),
        "queue not empty; log:\n{}",
        inst.log_text()
    );
    // The message itself was never queued for delivery.
    let log = inst.log_text();
    assert!(!log.contains(&format!("to=<{me}@localhost>")), "{log}");
    // The notice is addressed (header and envelope) to the qualified sender, as every
    // other notice is.
    assert!(
        text.contains(&format!("\nTo: {}\n", me_addr(&inst))),
        "the notice's To: header must be the qualified sender:\n{text}"
    );
    inst.stop();
}

#[test]
fn notify_success_sends_a_delivery_report() {
    let mut inst = Instance::new("");
    inst.start();
    let me = inst.user();
    let rcpt = format!("{me}@localhost");
    let out = inst.sendmail(
        &["-N", "success,failure", &rcpt],
        "Subject: dsn-success\nMessage-ID: <dsn-success@example.org>\n\nhello\n",
    );
    sent_ok(&out, "-N success,failure");
    let text = inst.wait_for_text(&mbox(&inst), "Successful Mail Delivery Report");
    let qid = queue_id_for(&inst.log_text(), "message-id=<dsn-success@example.org>");
    inst.expect_log(&format!("{qid}: sender delivery status notification: "), T);
    // The message itself first, then the report.
    let report = &text[text.find("\nFrom MAILER-DAEMON  ").expect("report") + 1..];
    assert!(
        text.starts_with(&format!("From {}  ", me_addr(&inst))),
        "{text}"
    );
    assert!(report.contains("\nReturn-Path: <>\n"), "{report}");
    assert!(
        report.contains("\nContent-Type: multipart/report; report-type=delivery-status;"),
        "{report}"
    );
    assert!(
        report.contains("Your message was successfully delivered to the destination(s)"),
        "{report}"
    );
    assert!(
        report.contains(&format!("\nFinal-Recipient: rfc822; {rcpt}\n")),
        "{report}"
    );
    assert!(report.contains("\nAction: delivered\n"), "{report}");
    assert!(report.contains("\nStatus: 2.0.0\n"), "{report}");
    assert!(inst.wait_until(T, || inst.queue_empty()));
    inst.stop();
}

#[test]
fn notify_never_sends_no_bounce() {
    let mut inst = Instance::new("");
    inst.start();
    let out = inst.sendmail(
        &["-N", "never", "no-such-user-nn@localhost"],
        "Subject: never\nMessage-ID: <never@example.org>\n\nhello\n",
    );
    sent_ok(&out, "-N never");
    let line = inst.log_line("to=<no-such-user-nn@localhost>");
    assert!(
        line.ends_with(", dsn=5.1.1, status=bounced (unknown user: \"no-such-user-nn\")"),
        "{line}"
    );
    let qid = queue_id_for(&inst.log_text(), "message-id=<never@example.org>");
    inst.expect_log(&format!("{qid}: removed"), T);
    // Give a notice every chance to arrive: none may.
    std::thread::sleep(Duration::from_secs(3));
    let log = inst.log_text();
    assert!(!log.contains("notification:"), "{log}");
    assert!(
        !mbox(&inst).exists() || read_text(&mbox(&inst)).is_empty(),
        "{}",
        read_text(&mbox(&inst))
    );
    assert!(inst.queue_empty());
    inst.stop();
}

#[test]
fn ret_hdrs_returns_headers_only_and_full_is_the_default() {
    let mut inst = Instance::new("");
    inst.start();
    let out = inst.sendmail(
        &["-R", "hdrs", "no-such-user-h@localhost"],
        "Subject: ret-hdrs\n\nsecret body text one\n",
    );
    sent_ok(&out, "-R hdrs");
    let text = inst.wait_for_text(&mbox(&inst), "Undelivered Mail Returned to Sender");
    assert!(
        text.contains(
            "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nSubject: ret-hdrs\n"), "{text}");
    assert!(!text.contains("secret body text one"), "{text}");
    assert!(!text.contains("message/rfc822"), "{text}");

    // Without -R: the whole message (message/rfc822).
    let out = inst.sendmail(
        &["no-such-user-f@localhost"],
        "Subject: ret-full\n\nsecret body text two\n",
    );
    sent_ok(&out, "no -R");
    let text = inst.wait_for_text(&mbox(&inst), "secret body text two");
    let second = &text[text.rfind("\nFrom MAILER-DAEMON  ").unwrap()..];
    assert!(
        second.contains("Content-Description: Undelivered Message\nContent-Type: message/rfc822\n"),
        "{second}"
    );
    assert!(second.contains("\nSubject: ret-full\n"), "{second}");
    assert!(!second.contains("text/rfc822-headers"), "{second}");
    assert!(inst.wait_until(T, || inst.queue_empty()));
    inst.stop();
}

#[test]
fn envid_is_reported_as_original_envelope_id() {
    let mut inst = Instance::new("");
    inst.start();
    let out = inst.sendmail(
        &["-V", "ENV-4242.x", "no-such-user-v@localhost"],
        "Subject: envid\n\nx\n",
    );
    sent_ok(&out, "-V");
    let text = inst.wait_for_text(&mbox(&inst), "Undelivered Mail Returned to Sender");
    assert!(
        text.contains(
            "\nReporting-MTA: dns; mail.example.test\nOriginal-Envelope-Id: ENV-4242.x\n"
        ),
        "{text}"
    );
    inst.stop();
}

#[test]
fn null_sender_bounce_becomes_a_double_bounce_to_postmaster() {
    let mut inst = Instance::new("");
    let me = inst.user();
    inst.setup_aliases(&format!("postmaster: {me}\n"));
    inst.start();
    let out = inst.sendmail(
        &["-f", "<>", "no-such-user-n@localhost"],
        "Subject: from nobody\nMessage-ID: <null-sender@example.org>\n\nnull body\n",
    );
    sent_ok(&out, "-f <>");
    let qid = queue_id_for(
        &inst.log_line("message-id=<null-sender@example.org>"),
        "message-id=",
    );
    inst.expect_log(&format!("{qid}: from=<>, size="), T);
    inst.expect_log(&format!("{qid}: postmaster non-delivery notification: "), T);
    let text = inst.wait_for_text(&mbox(&inst), "no-such-user-n@localhost");
    // Sent from double-bounce@$myorigin to 2bounce_notice_recipient (postmaster, an alias).
    assert!(
        text.starts_with("From double-bounce@mail.example.test  "),
        "{text}"
    );
    assert!(
        text.contains("\nReturn-Path: <double-bounce@mail.example.test>\nDelivered-To: postmaster@mail.example.test\n"),
        "{text}"
    );
    assert!(
        text.contains("\nFinal-Recipient: rfc822; no-such-user-n@localhost\n"),
        "{text}"
    );
    assert!(text.contains("\nStatus: 5.1.1\n"), "{text}");
    assert!(
        inst.wait_until(T, || inst.queue_empty()),
        "log:\n{}",
        inst.log_text()
    );
    // Nobody else got anything: no notice went to the (null) sender.
    let log = inst.log_text();
    assert!(!log.contains("sender non-delivery notification"), "{log}");
    assert_eq!(text.matches("\nFrom ").count() + 1, 1, "{text}");
    inst.stop();
}

#[test]
fn double_bounce_has_postfix_postmaster_copy_subject() {
    // Postfix's postmaster copy of a bounce (2bounce) is "Subject: Postmaster Copy:
    // Undelivered Mail" (bounce_template.c: the failure template's postmaster subject).
    let mut inst = Instance::new("");
    let me = inst.user();
    inst.setup_aliases(&format!("postmaster: {me}\n"));
    inst.start();
    let out = inst.sendmail(
        &["-f", "<>", "no-such-user-p@localhost"],
        "Subject: from nobody\n\nnull body\n",
    );
    sent_ok(&out, "-f <>");
    let text = inst.wait_for_text(&mbox(&inst), "no-such-user-p@localhost");
    assert!(
        text.contains("\nSubject: Postmaster Copy: Undelivered Mail\n"),
        "{text}"
    );
    inst.stop();
}

#[test]
fn undeliverable_double_bounce_is_discarded_not_looped() {
    // 2bounce_notice_recipient does not exist: the double bounce (from
    // double-bounce@$myorigin) fails too. Postfix then discards it ("undeliverable postmaster
    // notification discarded"); it must not bounce to double-bounce@, whose bounce would be
    // a new double bounce, and so on forever.
    let mut inst = Instance::new("2bounce_notice_recipient = nobody-there-2b\n");
    inst.start();
    let out = inst.sendmail(
        &["-f", "<>", "no-such-user-d@localhost"],
        "Subject: loop seed\n\nx\n",
    );
    sent_ok(&out, "-f <>");
    inst.expect_log("to=<nobody-there-2b@mail.example.test>", T);
    // Let any loop show itself.
    std::thread::sleep(Duration::from_secs(3));
    let log = inst.log_text();
    inst.stop();
    let notices = log
        .matches("postmaster non-delivery notification: ")
        .count();
    let bounced = log.matches("status=bounced").count();
    // The message bounces, its double bounce bounces, and that is the end.
    assert!(
        notices == 1 && bounced == 2,
        "{notices} double bounces and {bounced} bounced deliveries in 3 s \
         (a notification loop); first lines of the log:\n{}",
        log.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(inst.queue_empty(), "queue not empty");
}

#[test]
fn sendmail_exit_statuses() {
    let inst = Instance::new("");
    // No recipients and no -t: EX_USAGE.
    let out = inst.sendmail(&[], "Subject: x\n\nx\n");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "sendmail: fatal: Recipient addresses must be specified on the command line or via the -t option"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unknown option: EX_USAGE with the usage text.
    let out = inst.sendmail(&["-Z", "someone@localhost"], "");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid option") && err.contains("usage"),
        "{err}"
    );
    // -bv (address verification) is not there yet: EX_UNAVAILABLE.
    let out = inst.sendmail(&["-bv", "someone@localhost"], "");
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    // Nothing was queued by any of them.
    assert_eq!(inst.queue_count("maildrop"), 0);
}

#[test]
fn eight_bit_and_large_messages_arrive_byte_exact_in_a_maildir() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/"));
    inst.start();
    let md = inst.mail.join("alice");

    // 8-bit: UTF-8 and bytes that are not UTF-8, in headers and body.
    let mut small: Vec<u8> = b"Subject: 8bit Gr\xc3\xbc\xc3\x9fe\nFrom: sender@example.org\n\
        Message-ID: <eightbit@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\
        MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n\
        Content-Transfer-Encoding: 8bit\n\n"
        .to_vec();
    small
        .extend_from_slice(b"K\xe4se und \xdcbel\n\xff\xfe\x80\x81 raw bytes\n\x01\x7f controls\n");
    small.extend_from_slice("Gr\u{fc}\u{df}e aus K\u{f6}ln \u{2603}\n".as_bytes());
    let out = inst.sendmail_bytes(
        &[
            "-B",
            "8BITMIME",
            "-f",
            "sender@example.org",
            "alice@virt.test",
        ],
        &small,
    );
    sent_ok(&out, "8-bit");

    // 2 MB, with a long line, a line of two dots, a lone dot (-i) and a From_ line.
    let mut big = String::from(
        "Subject: big\nFrom: sender@example.org\nMessage-ID: <big@example.org>\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0000\n\nFrom the start\n..\n.\n",
    );
    big.push_str(&"L".repeat(5000));
    big.push('\n');
    while big.len() < 2 * 1024 * 1024 {
        big.push_str(&body_of(64));
    }
    big.push_str("the end\n");
    let out = inst.sendmail_bytes(
        &["-i", "-f", "sender@example.org", "alice@virt.test"],
        big.as_bytes(),
    );
    sent_ok(&out, "2 MB");

    assert!(
        inst.wait_until(T, || inst.maildir(&md).len() == 2),
        "log:\n{}",
        inst.log_text()
    );
    let log = inst.log_text();
    for (id, content) in [
        ("eightbit@example.org", &small),
        ("big@example.org", &big.into_bytes()),
    ] {
        let qid = queue_id_for(&log, &format!("message-id=<{id}>"));
        let got = inst
            .maildir(&md)
            .into_iter()
            .map(|(_, c)| c)
            .find(|c| c.windows(id.len()).any(|w| w == id.as_bytes()))
            .unwrap_or_else(|| panic!("no message {id} in the maildir"));
        let head = format!(
            "Return-Path: <sender@example.org>\nDelivered-To: alice@virt.test\n\
             Received: by mail.example.test (posthorn, from userid {})\n\tid {qid}\n\
             \tfor <alice@virt.test>; ",
            inst.uid()
        );
        assert!(
            got.starts_with(head.as_bytes()),
            "{id}: starts with {:?}",
            String::from_utf8_lossy(&got[..got.len().min(400)])
        );
        let after = &got[head.len()..];
        let nl = after.iter().position(|&b| b == b'\n').unwrap();
        let rest = &after[nl + 1..];
        assert_eq!(rest.len(), content.len(), "{id}: length differs");
        assert!(rest == content.as_slice(), "{id}: content differs");
    }
    inst.expect_log("status=sent (delivered to maildir)", T);
    assert!(inst.wait_until(T, || inst.queue_empty()));
    inst.stop();
}

#[test]
fn mailq_lists_a_deferred_message() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/"));
    // A uid below virtual_minimum_uid defers; long backoffs keep it in deferred/.
    inst.add_main_cf(
        "virtual_minimum_uid = 4000000000\nminimal_backoff_time = 300s\n\
         maximal_backoff_time = 600s\nqueue_run_delay = 300s\n",
    );
    inst.start();
    let out = inst.command("mailq").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Mail queue is empty\n"
    );

    let out = inst.sendmail(
        &["-f", "sender@example.org", "alice@virt.test"],
        "Subject: later\nMessage-ID: <later@example.org>\n\nx\n",
    );
    sent_ok(&out, "deferred");
    inst.expect_log("status=deferred (mail system configuration error)", T);
    assert!(
        inst.wait_until(T, || inst.queue_count("deferred") == 1),
        "log:\n{}",
        inst.log_text()
    );
    let log = inst.log_text();
    let qid = queue_id_for(&log, "message-id=<later@example.org>");
    let size_line = inst.log_line(&format!("{qid}: from=<sender@example.org>, size="));
    let size: u64 = size_line
        .split("size=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let out = inst.command("mailq").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(
        lines[0],
        "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
    );
    // "%-17s %8ld %19.19s %s": ID, size, asctime without the year, sender.
    let first = lines[1];
    assert_eq!(&first[..18], format!("{qid:<17} "), "{text}");
    assert_eq!(&first[18..27], format!("{size:>8} "), "{text}");
    let date = &first[27..46];
    let b = date.as_bytes();
    assert!(
        b[3] == b' ' && b[7] == b' ' && b[10] == b' ' && b[13] == b':' && b[16] == b':',
        "arrival time {date:?}"
    );
    assert_eq!(&first[46..], " sender@example.org", "{text}");
    // The reason, right-aligned in parentheses ending at column 78.
    let reason = "(mail system configuration error)";
    assert_eq!(
        lines[2],
        format!("{}{reason}", " ".repeat(78 - reason.len()))
    );
    assert_eq!(lines[3], format!("{}alice@virt.test", " ".repeat(47)));
    assert_eq!(lines[4], "");
    assert_eq!(lines[5], "-- 0 Kbytes in 1 Request.");
    assert_eq!(lines[6], "");
    // sendmail -bp is the same listing.
    let bp = inst.command("sendmail").arg("-bp").output().unwrap();
    assert!(bp.status.success());
    assert_eq!(String::from_utf8_lossy(&bp.stdout), text);
    inst.stop();
}
