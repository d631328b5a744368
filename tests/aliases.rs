//! Aliases, `.forward` and related local(8) behaviour end to end: alias to a user, to a
//! file, to a command, `:include:` lists, `owner-` aliases, alias loops, address extensions,
//! `.forward` files, `Delivered-To:` loop detection and `allow_mail_to_commands`.
//!
//! The instances run unprivileged (as `nobody` when the tests run as root), so the local
//! recipient is the run-as user, the alias database belongs to that user (its commands and
//! files run with that user's rights) and `.forward` files come from a `forward_path` inside
//! the instance.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use posthorn_testkit::{Instance, queue_id_for, read_text};

const T: Duration = Duration::from_secs(20);

/// A message with every header cleanup would otherwise add, so that what arrives is
/// predictable byte for byte.
fn message(subject: &str) -> String {
    format!(
        "Subject: {subject}\nFrom: Sender <sender@example.org>\nTo: someone@example.org\n\
         Message-ID: <{subject}@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\n\
         line one\nFrom the body\n.dot line\n"
    )
}

/// Submits `msg` to `rcpt` from the default sender (the run-as user, qualified with
/// `$myorigin`, so that bounces come back to the local mailbox).
fn send(inst: &Instance, rcpt: &str, msg: &str) {
    let out = inst.sendmail(&[rcpt], msg);
    assert!(
        out.status.success(),
        "sendmail {rcpt}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The default sender's address.
fn me_addr(inst: &Instance) -> String {
    format!("{}@mail.example.test", inst.user())
}

/// Whether `s` has the shape of `asctime()` output: `Wed Nov 25 16:23:23 2026`.
fn is_asctime(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 24
        && b[0].is_ascii_uppercase()
        && b[1..3].iter().all(u8::is_ascii_lowercase)
        && b[3] == b' '
        && b[4].is_ascii_uppercase()
        && b[5..7].iter().all(u8::is_ascii_lowercase)
        && b[7] == b' '
        && (b[8] == b' ' || b[8].is_ascii_digit())
        && b[9].is_ascii_digit()
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b' '
        && digits(20..24)
}

/// Replaces the dates a delivery writes (the `From ` line's and the `Received:` header's)
/// with `DATE`, after checking their shape, so that the rest can be compared byte for byte.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if let Some(rest) = body.strip_prefix("From ")
            && let Some((who, date)) = rest.split_once("  ")
            && !who.contains(' ')
        {
            assert!(is_asctime(date), "From line date {date:?} in {body:?}");
            out.push_str(&format!("From {who}  DATE{nl}"));
        } else if body.starts_with("\tfor <")
            && let Some((head, date)) = body.split_once(">; ")
        {
            assert!(
                date.ends_with(')') || date.chars().last().is_some_and(|c| c.is_ascii_digit()),
                "Received date {date:?}"
            );
            out.push_str(&format!("{head}>; DATE{nl}"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The lines every delivered copy of a locally submitted message starts with after
/// `Return-Path:` (and `Delivered-To:`): cleanup's `Received:` header.
fn received(inst: &Instance, qid: &str, rcpt: &str) -> String {
    format!(
        "Received: by mail.example.test (posthorn, from userid {})\n\tid {qid}\n\tfor <{rcpt}>; DATE\n",
        inst.uid()
    )
}

/// Number of messages in an mbox (lines starting with `From `; the body's are quoted).
fn mbox_count(text: &str) -> usize {
    text.split('\n').filter(|l| l.starts_with("From ")).count()
}

#[test]
fn alias_to_a_local_user() {
    let mut inst = Instance::new("");
    let me = inst.user();
    inst.setup_aliases(&format!("# test aliases\npostmaster: {me}\n"));
    inst.start();
    let msg = message("alias-user");
    send(&inst, "postmaster@localhost", &msg);
    let mbox = inst.mail.join(&me);
    let text = inst.wait_for_text(&mbox, "\nline one\n");
    let line = inst.log_line("to=<postmaster@localhost>");
    let qid = queue_id_for(&inst.log_text(), "message-id=<alias-user@example.org>");
    let sender = me_addr(&inst);
    let want = format!(
        "From {sender}  DATE\nReturn-Path: <{sender}>\nDelivered-To: postmaster@localhost\n{}{}\n",
        received(&inst, &qid, "postmaster@localhost"),
        msg.replace("\nFrom the body", "\n>From the body")
    );
    assert_eq!(normalize(&text), want);
    // local logs once per queue-file recipient, with the alias as the recipient
    // (Postfix's local logs each expanded target: to=<USER@$myorigin>,
    // orig_to=<postmaster@localhost>).
    assert!(line.contains("posthorn/local["), "{line}");
    assert!(
        line.contains(&format!(
            "{qid}: to=<postmaster@localhost>, relay=local, delay="
        )),
        "{line}"
    );
    assert!(
        line.ends_with(", dsn=2.0.0, status=sent (delivered to mailbox)"),
        "{line}"
    );
    assert!(!line.contains("orig_to="), "{line}");
    inst.expect_log(&format!("{qid}: removed"), T);
    assert!(inst.wait_until(T, || inst.queue_empty()));
    inst.stop();
}

#[test]
fn alias_to_a_file_appends_in_mbox_format() {
    let mut inst = Instance::new("");
    let target = inst.root().join("out/file.mbox");
    inst.setup_aliases(&format!("tofile: {}\n", target.display()));
    // The file exists already with one message in it: the new one is appended.
    inst.write_file(
        "out/file.mbox",
        "From old@example.org  Thu Jan  1 00:00:00 1970\nSubject: old\n\nold\n\n",
    );
    inst.start();
    let msg = message("alias-file");
    send(&inst, "tofile@localhost", &msg);
    let text = inst.wait_for_text(&target, "\nline one\n");
    let line = inst.log_line("to=<tofile@localhost>");
    assert!(
        line.ends_with(&format!(
            ", dsn=2.0.0, status=sent (delivered to file: {})",
            target.display()
        )),
        "{line}"
    );
    let qid = queue_id_for(&inst.log_text(), "message-id=<alias-file@example.org>");
    let sender = me_addr(&inst);
    // From_ line with two spaces before the date, Return-Path, Delivered-To (the default
    // prepend_delivered_header lists file), >From quoting, and an empty line at the end.
    let want = format!(
        "From old@example.org  DATE\nSubject: old\n\nold\n\n\
         From {sender}  DATE\nReturn-Path: <{sender}>\nDelivered-To: tofile@localhost\n{}{}\n",
        received(&inst, &qid, "tofile@localhost"),
        msg.replace("\nFrom the body", "\n>From the body")
    );
    assert_eq!(normalize(&text), want);
    let first_new = text.lines().nth(5).unwrap();
    assert!(
        first_new.starts_with(&format!("From {sender}  "))
            && is_asctime(&first_new[sender.len() + 7..]),
        "{first_new}"
    );
    // The file keeps the rights of whoever created it (the alias table's owner here).
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&target).unwrap().uid(), inst.uid());
    inst.stop();
}

#[test]
fn alias_to_a_command_gets_the_message_and_its_environment() {
    let mut inst = Instance::new("");
    let out = inst.root().join("out");
    let script = inst.write_file(
        "bin/deliver.sh",
        &format!(
            "#!/bin/sh\nenv > {o}/env.txt\ncat > {o}/msg.txt\necho \"$@\" > {o}/args.txt\n",
            o = out.display()
        ),
    );
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    inst.write_file("out/.keep", "");
    inst.setup_aliases(&format!("tocmd: \"|{} one two\"\n", script.display()));
    inst.start();
    let msg = message("alias-cmd");
    send(&inst, "tocmd@localhost", &msg);
    let line = inst.log_line("to=<tocmd@localhost>");
    assert!(
        line.ends_with(&format!(
            ", dsn=2.0.0, status=sent (delivered to command: {} one two)",
            script.display()
        )),
        "{line}"
    );
    let got = read_text(&out.join("msg.txt"));
    let qid = queue_id_for(&inst.log_text(), "message-id=<alias-cmd@example.org>");
    let sender = me_addr(&inst);
    // Commands get the From_ line, Return-Path and Delivered-To, no >From quoting and no
    // trailing empty line.
    let want = format!(
        "From {sender}  DATE\nReturn-Path: <{sender}>\nDelivered-To: tocmd@localhost\n{}{msg}",
        received(&inst, &qid, "tocmd@localhost"),
    );
    assert_eq!(normalize(&got), want);
    assert_eq!(read_text(&out.join("args.txt")), "one two\n");
    let env = read_text(&out.join("env.txt"));
    let vars: Vec<&str> = env.lines().collect();
    let me = inst.user();
    for want in [
        format!("SENDER={sender}"),
        "RECIPIENT=tocmd@localhost".to_string(),
        "ORIGINAL_RECIPIENT=tocmd@localhost".to_string(),
        "LOCAL=tocmd".to_string(),
        "DOMAIN=localhost".to_string(),
        format!("USER={me}"),
        format!("LOGNAME={me}"),
        "PATH=/usr/bin:/bin".to_string(),
    ] {
        assert!(vars.contains(&want.as_str()), "no {want} in:\n{env}");
    }
    assert!(
        !vars.iter().any(|v| v.starts_with("EXTENSION=")),
        "no extension, no EXTENSION:\n{env}"
    );
    inst.stop();
}

#[test]
fn include_list_delivers_to_each_member() {
    let mut inst = Instance::new("allow_mail_to_files = alias, forward, include\n");
    let me = inst.user();
    let file = inst.root().join("out/list.mbox");
    let list = inst.write_file(
        "list.txt",
        &format!("# members\n{me}\n\n{}\n", file.display()),
    );
    inst.write_file("out/.keep", "");
    inst.setup_aliases(&format!("list: :include:{}\n", list.display()));
    inst.start();
    let msg = message("include-list");
    send(&inst, "list@localhost", &msg);
    let mbox = inst.mail.join(&me);
    let in_mbox = inst.wait_for_text(&mbox, "\nline one\n");
    let in_file = inst.wait_for_text(&file, "\nline one\n");
    let line = inst.log_line("to=<list@localhost>");
    assert!(line.contains(", relay=local, "), "{line}");
    assert!(line.contains(", dsn=2.0.0, status=sent ("), "{line}");
    let qid = queue_id_for(&inst.log_text(), "message-id=<include-list@example.org>");
    let sender = me_addr(&inst);
    let want = format!(
        "From {sender}  DATE\nReturn-Path: <{sender}>\nDelivered-To: list@localhost\n{}{}\n",
        received(&inst, &qid, "list@localhost"),
        msg.replace("\nFrom the body", "\n>From the body")
    );
    assert_eq!(normalize(&in_mbox), want);
    assert_eq!(normalize(&in_file), want);
    assert!(inst.wait_until(T, || inst.queue_empty()));
    inst.stop();
}

#[test]
fn include_list_file_targets_are_restricted_by_default() {
    // allow_mail_to_files defaults to "alias, forward": a /file in an :include: list bounces.
    let mut inst = Instance::new("");
    let me = inst.user();
    let file = inst.root().join("out/list.mbox");
    let list = inst.write_file("list.txt", &format!("{}\n", file.display()));
    inst.write_file("out/.keep", "");
    inst.setup_aliases(&format!("list: :include:{}\n", list.display()));
    inst.start();
    send(&inst, "list@localhost", &message("include-restricted"));
    let line = inst.log_line("to=<list@localhost>");
    assert!(
        line.ends_with(", dsn=5.7.1, status=bounced (mail to file is restricted)"),
        "{line}"
    );
    let bounce = inst.wait_for_text(&inst.mail.join(&me), "Undelivered Mail Returned to Sender");
    assert!(bounce.contains("\nStatus: 5.7.1\n"), "{bounce}");
    assert!(!file.exists(), "the file must not be written");
    inst.stop();
}

#[test]
fn owner_alias_becomes_the_envelope_sender() {
    let mut inst = Instance::new("");
    let me = inst.user();
    inst.setup_aliases(&format!("list2: {me}\nowner-list2: {me}\n"));
    inst.start();
    let msg = message("owner-alias");
    send(&inst, "list2@localhost", &msg);
    let text = inst.wait_for_text(&inst.mail.join(&me), "\nline one\n");
    let qid = queue_id_for(&inst.log_text(), "message-id=<owner-alias@example.org>");
    // Postfix: owner-NAME@$myorigin is the sender of everything delivered through NAME.
    let owner = "owner-list2@mail.example.test";
    let want = format!(
        "From {owner}  DATE\nReturn-Path: <{owner}>\nDelivered-To: list2@localhost\n{}{}\n",
        received(&inst, &qid, "list2@localhost"),
        msg.replace("\nFrom the body", "\n>From the body")
    );
    assert_eq!(normalize(&text), want);
    let line = inst.log_line("to=<list2@localhost>");
    assert!(
        line.ends_with("status=sent (delivered to mailbox)"),
        "{line}"
    );
    inst.stop();
}

#[test]
fn alias_loop_bounces_instead_of_looping() {
    let mut inst = Instance::new("");
    let me = inst.user();
    inst.setup_aliases("a: b\nb: a\n");
    inst.start();
    send(&inst, "a@localhost", &message("alias-loop"));
    let line = inst.log_line("to=<a@localhost>");
    assert!(
        line.ends_with(", dsn=5.4.6, status=bounced (mail forwarding loop for a@localhost)"),
        "{line}"
    );
    let qid = queue_id_for(&inst.log_text(), "message-id=<alias-loop@example.org>");
    inst.expect_log(&format!("{qid}: sender non-delivery notification: "), T);
    let mbox = inst.mail.join(&me);
    let text = inst.wait_for_text(&mbox, "Undelivered Mail Returned to Sender");
    assert!(text.starts_with("From MAILER-DAEMON  "), "{text}");
    assert!(
        text.contains("\nFinal-Recipient: rfc822; a@localhost\n"),
        "{text}"
    );
    assert!(text.contains("\nAction: failed\n"), "{text}");
    assert!(text.contains("\nStatus: 5.4.6\n"), "{text}");
    assert!(
        text.contains("Diagnostic-Code: x-posthorn; mail forwarding loop for a@localhost"),
        "{text}"
    );
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    // Delivered once, bounced once: no other attempt.
    let log = inst.log_text();
    assert_eq!(log.matches("to=<a@localhost>").count(), 1, "{log}");
    assert_eq!(mbox_count(&read_text(&mbox)), 1, "only the bounce");
    inst.stop();
}

#[test]
fn recipient_delimiter_extension_reaches_the_user() {
    let mut inst = Instance::new("recipient_delimiter = +\n");
    let me = inst.user();
    inst.start();
    let msg = message("extension");
    let rcpt = format!("{me}+tag@localhost");
    send(&inst, &rcpt, &msg);
    let text = inst.wait_for_text(&inst.mail.join(&me), "\nline one\n");
    let qid = queue_id_for(&inst.log_text(), "message-id=<extension@example.org>");
    let sender = me_addr(&inst);
    let want = format!(
        "From {sender}  DATE\nReturn-Path: <{sender}>\nDelivered-To: {rcpt}\n{}{}\n",
        received(&inst, &qid, &rcpt),
        msg.replace("\nFrom the body", "\n>From the body")
    );
    assert_eq!(normalize(&text), want);
    let line = inst.log_line(&format!("to=<{rcpt}>"));
    assert!(
        line.ends_with("status=sent (delivered to mailbox)"),
        "{line}"
    );
    inst.stop();
}

#[test]
fn dot_forward_with_file_and_backslash_self() {
    let mut inst = Instance::new("");
    let me = inst.user();
    let file = inst.root().join("out/fwd.mbox");
    inst.write_file("out/.keep", "");
    let fwd = inst.write_file(
        &format!("forward/{me}"),
        &format!("# my forward\n{}\n\\{me}\n", file.display()),
    );
    fs::set_permissions(&fwd, fs::Permissions::from_mode(0o644)).unwrap();
    inst.add_main_cf(&format!(
        "forward_path = {}/forward/$user\n",
        inst.root().display()
    ));
    inst.start();
    let msg = message("dot-forward");
    let rcpt = format!("{me}@localhost");
    send(&inst, &rcpt, &msg);
    let in_mbox = inst.wait_for_text(&inst.mail.join(&me), "\nline one\n");
    let in_file = inst.wait_for_text(&file, "\nline one\n");
    let qid = queue_id_for(&inst.log_text(), "message-id=<dot-forward@example.org>");
    let sender = me_addr(&inst);
    let want = format!(
        "From {sender}  DATE\nReturn-Path: <{sender}>\nDelivered-To: {rcpt}\n{}{}\n",
        received(&inst, &qid, &rcpt),
        msg.replace("\nFrom the body", "\n>From the body")
    );
    assert_eq!(normalize(&in_mbox), want);
    assert_eq!(normalize(&in_file), want);
    let line = inst.log_line(&format!("to=<{rcpt}>"));
    assert!(line.contains(", dsn=2.0.0, status=sent ("), "{line}");
    assert_eq!(mbox_count(&in_mbox), 1);
    inst.stop();
}

#[test]
fn delivered_to_loop_is_bounced() {
    let mut inst = Instance::new("");
    let me = inst.user();
    inst.start();
    let rcpt = format!("{me}@localhost");
    let msg = format!("Delivered-To: {rcpt}\n{}", message("dt-loop"));
    send(&inst, &rcpt, &msg);
    let line = inst.log_line(&format!("to=<{rcpt}>"));
    assert!(
        line.ends_with(&format!(
            ", dsn=5.4.6, status=bounced (mail forwarding loop for {rcpt})"
        )),
        "{line}"
    );
    let mbox = inst.mail.join(&me);
    let text = inst.wait_for_text(&mbox, "Undelivered Mail Returned to Sender");
    assert!(text.starts_with("From MAILER-DAEMON  "), "{text}");
    assert!(text.contains("\nStatus: 5.4.6\n"), "{text}");
    assert!(
        text.contains(&format!("\nFinal-Recipient: rfc822; {rcpt}\n")),
        "{text}"
    );
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    // The message itself was not delivered: the mailbox holds the notice only.
    let text = read_text(&mbox);
    assert_eq!(mbox_count(&text), 1, "{text}");
    assert!(text.starts_with("From MAILER-DAEMON  "), "{text}");
    inst.stop();
}

#[test]
fn command_delivery_refused_when_not_allowed() {
    let mut inst = Instance::new("allow_mail_to_commands =\n");
    let me = inst.user();
    let out = inst.root().join("out/never.txt");
    inst.write_file("out/.keep", "");
    inst.setup_aliases(&format!(
        "tocmd: \"|/bin/sh -c 'cat > {}'\"\n",
        out.display()
    ));
    inst.start();
    send(&inst, "tocmd@localhost", &message("cmd-restricted"));
    let line = inst.log_line("to=<tocmd@localhost>");
    assert!(
        line.ends_with(", dsn=5.7.1, status=bounced (mail to command is restricted)"),
        "{line}"
    );
    let text = inst.wait_for_text(&inst.mail.join(&me), "Undelivered Mail Returned to Sender");
    assert!(text.contains("\nStatus: 5.7.1\n"), "{text}");
    assert!(
        text.contains("Diagnostic-Code: x-posthorn; mail to command is restricted"),
        "{text}"
    );
    assert!(!out.exists(), "the command must not run");
    assert!(inst.wait_until(T, || inst.queue_empty()), "queue not empty");
    inst.stop();
}
