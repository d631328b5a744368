//! smtpd's protocol end to end (issue 3): a real instance with master.cf's `smtp inet`
//! service on a loopback port, spoken to by the testkit's strict SMTP client. Covers the
//! greeting and EHLO keywords, every command's replies and enhanced status codes (RFC 5321,
//! RFC 3463), relay control and unknown local users, DATA and BDAT (dot-stuffing, the
//! Received: header, delivery to a local mbox), DSN parameters stored in the queue file, and
//! Postfix's log lines (`connect from`, `ID: client=`, `NOQUEUE: reject:`, `disconnect from`).

use std::time::Duration;

use posthorn_testkit::Instance;
use posthorn_testkit::smtp::{Client, Reply, ehlo_session, local_user, mbox, queue_id, started};

const T: Duration = Duration::from_secs(20);

/// The client's peer as smtpd logs it (`smtpd_peername_lookup` finds `localhost`).
const PEER: &str = "localhost[127.0.0.1]";

/// Tests that make many errors in one session: no error sleep, no disconnect.
const MANY_ERRORS: &str =
    "smtpd_error_sleep_time = 0s\nsmtpd_soft_error_limit = 100\nsmtpd_hard_error_limit = 100\n";

/// Asserts a reply's code and that its (first line's) text starts with `text`.
#[track_caller]
fn is(r: &Reply, code: u16, text: &str) {
    assert!(
        r.code == code && r.lines[0].starts_with(text),
        "expected {code} {text}..., got {}",
        r.wire()
    );
}

/// Sends `line` and asserts the reply's code and text prefix; returns the reply.
#[track_caller]
fn says(c: &mut Client, line: &str, code: u16, text: &str) -> Reply {
    let r = c.cmd(line);
    assert!(
        r.code == code && r.lines[0].starts_with(text),
        "{line:?}: expected {code} {text}..., got {}",
        r.wire()
    );
    r
}

/// Asserts `250 2.0.0 Ok: queued as ID` at the end of data; returns the ID.
#[track_caller]
fn queued(r: &Reply) -> String {
    is(r, 250, "2.0.0 Ok: queued as ");
    queue_id(r)
}

/// MAIL FROM:<from> and RCPT TO:<rcpt>, each answered with its 250 Ok.
#[track_caller]
fn envelope(c: &mut Client, from: &str, rcpt: &str) {
    says(c, &format!("MAIL FROM:<{from}>"), 250, "2.1.0 Ok");
    says(c, &format!("RCPT TO:<{rcpt}>"), 250, "2.1.5 Ok");
}

/// Waits until the log has a line ending with `tail`; returns that line.
fn log_line_ending(inst: &Instance, tail: &str) -> String {
    let ok = inst.wait_until(T, || inst.log_text().lines().any(|l| l.ends_with(tail)));
    assert!(
        ok,
        "no log line ends with {tail:?}; log:\n{}",
        inst.log_text()
    );
    inst.log_text()
        .lines()
        .find(|l| l.ends_with(tail))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn greeting_ehlo_and_helo() {
    let inst = started("");
    // connect() waits for the listener and checks the code; the exact text is read raw.
    drop(Client::connect(inst.smtp_port));
    let mut c = Client::connect_raw(inst.smtp_port);
    let g = c.reply();
    assert_eq!(g.wire(), "220 mail.example.test ESMTP posthorn");

    let r = c.expect("EHLO client.example.test", 250);
    assert_eq!(
        r.lines,
        [
            "mail.example.test",
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ],
        "{}",
        r.wire()
    );
    // HELO answers with the host name alone.
    let r = c.expect("HELO client.example.test", 250);
    assert_eq!(r.wire(), "250 mail.example.test");
    // Without an argument: a syntax error, 501 5.5.4.
    says(&mut c, "HELO", 501, "5.5.4 ");
    says(&mut c, "EHLO", 501, "5.5.4 ");
    // The session is still usable, and a second EHLO is allowed.
    c.expect("EHLO again.example.test", 250);
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
    assert!(c.closed(), "the connection stays open after QUIT");
}

#[test]
fn mail_from_replies() {
    let inst = started(MANY_ERRORS);
    // smtpd_helo_required = no: MAIL without HELO is fine.
    let mut c = Client::connect(inst.smtp_port);
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    says(&mut c, "MAIL FROM:<other@example.org>", 503, "5.5.1 ");
    says(&mut c, "RSET", 250, "2.0.0 Ok");
    c.expect("EHLO client.example.test", 250);

    // Syntax: no colon, wrong keyword, nothing at all.
    says(&mut c, "MAIL", 501, "5.5.4 ");
    says(&mut c, "MAIL FROM", 501, "5.5.4 ");
    says(&mut c, "MAIL TO:<sender@example.org>", 501, "5.5.4 ");
    // A broken address.
    says(&mut c, "MAIL FROM:<sender@example.org", 501, "5.1.7 ");
    // SIZE over message_size_limit (10240000).
    says(
        &mut c,
        "MAIL FROM:<sender@example.org> SIZE=20000000",
        552,
        "5.3.4 ",
    );
    // An unknown parameter.
    says(
        &mut c,
        "MAIL FROM:<sender@example.org> FROBNICATE=yes",
        555,
        "5.5.4 ",
    );
    // A UTF-8 address without the SMTPUTF8 parameter.
    says(&mut c, "MAIL FROM:<j\u{f6}rg@example.org>", 553, "5.6.7 ");
    // None of them started a transaction.
    says(&mut c, "RCPT TO:<someone@mail.example.test>", 503, "5.5.1 ");

    // With SMTPUTF8 the same address is fine.
    says(
        &mut c,
        "MAIL FROM:<j\u{f6}rg@example.org> SMTPUTF8",
        250,
        "2.1.0 Ok",
    );
    says(&mut c, "RSET", 250, "2.0.0 Ok");
    // A SIZE under the limit, BODY=8BITMIME.
    says(
        &mut c,
        "MAIL FROM:<sender@example.org> SIZE=1000 BODY=8BITMIME",
        250,
        "2.1.0 Ok",
    );
    says(&mut c, "RSET", 250, "2.0.0 Ok");
    // The null sender.
    says(&mut c, "MAIL FROM:<>", 250, "2.1.0 Ok");
    says(&mut c, "RSET", 250, "2.0.0 Ok");
    // A source route is accepted (and dropped).
    says(
        &mut c,
        "MAIL FROM:<@relay1.example,@relay2.example:sender@example.org>",
        250,
        "2.1.0 Ok",
    );
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
}

#[test]
fn rcpt_to_replies() {
    let inst = started(MANY_ERRORS);
    let mut c = ehlo_session(&inst);
    let rcpt = format!("RCPT TO:<{}>", local_user(&inst));
    says(&mut c, &rcpt, 503, "5.5.1 ");
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    says(&mut c, &rcpt, 250, "2.1.5 Ok");
    says(&mut c, "RCPT TO:<broken@example.org", 501, "5.1.3 ");
    says(&mut c, "RCPT", 501, "5.5.4 ");
    says(&mut c, "RCPT FROM:<x@example.org>", 501, "5.5.4 ");
    says(
        &mut c,
        &format!("RCPT TO:<{}> FROBNICATE=yes", local_user(&inst)),
        555,
        "5.5.4 ",
    );
    // A source route in a recipient is accepted too.
    says(
        &mut c,
        &format!("RCPT TO:<@relay.example:{}>", local_user(&inst)),
        250,
        "2.1.5 Ok",
    );
    // 127.0.0.1 is in the default mynetworks: relaying is allowed.
    says(&mut c, "RCPT TO:<x@elsewhere.test>", 250, "2.1.5 Ok");
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
}

#[test]
fn recipient_limit_gives_452() {
    let inst = started("smtpd_recipient_limit = 3\n");
    let mut c = ehlo_session(&inst);
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    let rcpt = format!("RCPT TO:<{}>", local_user(&inst));
    for _ in 0..3 {
        says(&mut c, &rcpt, 250, "2.1.5 Ok");
    }
    let r = says(&mut c, &rcpt, 452, "4.5.3 ");
    assert_eq!(r.wire(), "452 4.5.3 Error: too many recipients");
    // The three accepted recipients still make a message.
    let r = c.data("Subject: limit\r\n\r\nthree recipients\r\n");
    is(&r, 250, "2.0.0 Ok: queued as ");
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
}

#[test]
fn relay_to_foreign_domain_is_denied_outside_mynetworks() {
    let inst = started(
        "mynetworks = 192.0.2.0/24\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
    );
    let mut c = Client::connect(inst.smtp_port);
    c.expect("EHLO h", 250);
    says(&mut c, "MAIL FROM:<a@b.example>", 250, "2.1.0 Ok");
    let r = says(&mut c, "RCPT TO:<x@elsewhere.test>", 554, "5.7.1 ");
    assert_eq!(
        r.wire(),
        "554 5.7.1 <x@elsewhere.test>: Relay access denied"
    );
    // Local mail is still accepted.
    says(
        &mut c,
        &format!("RCPT TO:<{}>", local_user(&inst)),
        250,
        "2.1.5 Ok",
    );
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
    let line = log_line_ending(
        &inst,
        &format!(
            "NOQUEUE: reject: RCPT from {PEER}: 554 5.7.1 <x@elsewhere.test>: Relay access denied; \
             from=<a@b.example> to=<x@elsewhere.test> proto=ESMTP helo=<h>"
        ),
    );
    assert!(line.contains("/smtpd["), "{line}");
}

#[test]
fn relay_is_deferred_by_default_outside_mynetworks() {
    // The default smtpd_relay_restrictions ends in defer_unauth_destination: 454 4.7.1.
    let inst = started("mynetworks = 192.0.2.0/24\n");
    let mut c = ehlo_session(&inst);
    says(&mut c, "MAIL FROM:<a@b.example>", 250, "2.1.0 Ok");
    let r = says(&mut c, "RCPT TO:<x@elsewhere.test>", 454, "4.7.1 ");
    assert_eq!(
        r.wire(),
        "454 4.7.1 <x@elsewhere.test>: Relay access denied"
    );
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
}

#[test]
fn unknown_local_user_is_rejected_at_rcpt() {
    let mut inst = Instance::new("");
    let user = inst.user();
    inst.add_main_cf(&format!("local_recipient_maps = inline:{{ {user}=ok }}\n"));
    inst.start();
    let mut c = ehlo_session(&inst);
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    let r = says(
        &mut c,
        "RCPT TO:<no-such-user-q@mail.example.test>",
        550,
        "5.1.1 ",
    );
    assert!(
        r.text().contains("<no-such-user-q@mail.example.test>"),
        "{}",
        r.wire()
    );
    says(
        &mut c,
        &format!("RCPT TO:<{}>", local_user(&inst)),
        250,
        "2.1.5 Ok",
    );
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
    inst.expect_log(
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <no-such-user-q@mail.example.test>",
        T,
    );
}

#[test]
fn unknown_local_user_is_rejected_with_the_default_maps() {
    // Postfix's default local_recipient_maps (the password file and alias_maps) reject a
    // user that has no account; the instance's own user has one.
    let inst = started("");
    let mut c = ehlo_session(&inst);
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    says(
        &mut c,
        "RCPT TO:<no-such-user-d@mail.example.test>",
        550,
        "5.1.1 ",
    );
    says(
        &mut c,
        &format!("RCPT TO:<{}>", local_user(&inst)),
        250,
        "2.1.5 Ok",
    );
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
}

#[test]
fn data_sequence_errors() {
    let inst = started("");
    let mut c = ehlo_session(&inst);
    says(&mut c, "DATA", 503, "5.5.1 ");
    // Postfix: 503 "need RCPT command" before MAIL; inside a transaction without an
    // accepted recipient, 554 5.5.1 "no valid recipients" (pipelined DATA is not a
    // protocol error there).
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    let r = c.cmd("DATA");
    assert!(
        matches!(r.code, 503 | 554) && r.lines[0].starts_with("5.5.1 "),
        "DATA without RCPT: {}",
        r.wire()
    );
    // A refused BDAT's chunk is read and thrown away (RFC 3030).
    c.send_raw(b"BDAT 10 LAST\r\n0123456789");
    let r = c.reply();
    assert!(
        matches!(r.code, 503 | 554) && r.lines[0].starts_with("5.5.1 "),
        "BDAT without RCPT: {}",
        r.wire()
    );
    // After the refused BDAT the session still works.
    says(&mut c, "NOOP", 250, "2.0.0 Ok");
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
}

#[test]
fn a_message_is_queued_delivered_and_logged() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = Client::connect(inst.smtp_port);
    c.expect("EHLO client.example.test", 250);
    envelope(&mut c, "sender@example.org", &rcpt);
    let r = c.cmd("DATA");
    is(&r, 354, "");
    // Dot-stuffed lines: "..x" is ".x", "..." is "..".
    c.send_raw(
        b"Subject: smtpd e2e\r\nFrom: sender@example.org\r\nMessage-ID: <e2e-1@example.org>\r\n\
          \r\nfirst line\r\n..x leading dot\r\n...\r\nlast line\r\n.\r\n",
    );
    let r = c.reply();
    let qid = queued(&r);
    let r = c.cmd("QUIT");
    assert_eq!(r.wire(), "221 2.0.0 Bye");
    assert!(c.closed());

    let text = inst.wait_for_text(&mbox(&inst), "last line");
    inst.expect_log(&format!("{qid}: to=<{rcpt}>"), T);
    // The Received: header in Postfix's layout.
    let received = format!(
        "\nReceived: from client.example.test (localhost [127.0.0.1])\n\
         \tby mail.example.test (posthorn) with ESMTP id {qid}\n\
         \tfor <{rcpt}>; "
    );
    assert!(text.contains(&received), "no {received:?} in:\n{text}");
    let after = &text[text.find(&received).unwrap() + received.len()..];
    let date = after.lines().next().unwrap_or_default();
    assert!(
        [
            "Mon, ", "Tue, ", "Wed, ", "Thu, ", "Fri, ", "Sat, ", "Sun, "
        ]
        .iter()
        .any(|d| date.starts_with(d)),
        "Received: date {date:?}"
    );
    assert!(text.contains("\nSubject: smtpd e2e\n"), "{text}");
    assert!(
        text.contains("\n\nfirst line\n.x leading dot\n..\nlast line\n"),
        "dot-stuffing is not transparent:\n{text}"
    );
    assert!(!text.contains('\r'), "CR in the mbox:\n{text:?}");

    // Postfix's log lines for the session.
    inst.log_line(&format!("]: connect from {PEER}"));
    inst.log_line(&format!("]: {qid}: client={PEER}"));
    inst.log_line(&format!("{qid}: from=<sender@example.org>, size="));
    log_line_ending(
        &inst,
        &format!("]: disconnect from {PEER} ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"),
    );
    assert!(
        inst.wait_until(T, || inst.queue_empty()),
        "log:\n{}",
        inst.log_text()
    );
}

#[test]
fn helo_session_is_logged_as_smtp() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = Client::connect(inst.smtp_port);
    let r = c.expect("HELO old.example.test", 250);
    assert_eq!(r.wire(), "250 mail.example.test");
    let qid = c.send_mail(
        "sender@example.org",
        &[&rcpt],
        "Subject: helo\r\n\r\nold style\r\n",
    );
    c.expect("QUIT", 221);
    let text = inst.wait_for_text(&mbox(&inst), "old style");
    let received = format!(
        "\nReceived: from old.example.test (localhost [127.0.0.1])\n\
         \tby mail.example.test (posthorn) with SMTP id {qid}\n"
    );
    assert!(text.contains(&received), "no {received:?} in:\n{text}");
    log_line_ending(
        &inst,
        &format!("]: disconnect from {PEER} helo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"),
    );
}

#[test]
fn source_routes_are_dropped_from_the_envelope() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    says(
        &mut c,
        "MAIL FROM:<@a.example,@b.example:user@c.example>",
        250,
        "2.1.0 Ok",
    );
    says(
        &mut c,
        &format!("RCPT TO:<@relay.example:{rcpt}>"),
        250,
        "2.1.5 Ok",
    );
    let r = c.data("Subject: routed\r\n\r\nsource routed\r\n");
    let qid = queued(&r);
    c.expect("QUIT", 221);
    let text = inst.wait_for_text(&mbox(&inst), "source routed");
    inst.log_line(&format!("{qid}: from=<user@c.example>, size="));
    inst.log_line(&format!("{qid}: to=<{rcpt}>"));
    assert!(text.contains("\nReturn-Path: <user@c.example>\n"), "{text}");
}

#[test]
fn null_sender_message_is_accepted() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    envelope(&mut c, "", &rcpt);
    let r = c.data("Subject: from nobody\r\n\r\nnull sender body\r\n");
    let qid = queued(&r);
    c.expect("QUIT", 221);
    let text = inst.wait_for_text(&mbox(&inst), "null sender body");
    inst.log_line(&format!("{qid}: from=<>, size="));
    assert!(text.contains("\nReturn-Path: <>\n"), "{text}");
}

#[test]
fn bdat_chunks_are_raw() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    envelope(&mut c, "sender@example.org", &rcpt);
    // No dot-stuffing in BDAT: "..x" stays "..x", a lone "." is content.
    let one = "Subject: chunks\r\n\r\n..x stays doubled\r\n.\r\nmid";
    let two = "dle of a line\r\nlast chunk\r\n";
    c.send_raw(format!("BDAT {}\r\n{one}", one.len()).as_bytes());
    let r = c.reply();
    assert_eq!(r.wire(), format!("250 2.0.0 Ok: {} bytes", one.len()));
    c.send_raw(format!("BDAT {} LAST\r\n{two}", two.len()).as_bytes());
    let r = c.reply();
    let qid = queued(&r);
    // Still in the session: a second transaction with BDAT 0 LAST ending it.
    envelope(&mut c, "sender@example.org", &rcpt);
    let three = "Subject: zero last\r\n\r\nended by an empty chunk\r\n";
    c.send_raw(format!("BDAT {}\r\n{three}", three.len()).as_bytes());
    c.reply();
    let r = c.cmd("BDAT 0 LAST");
    is(&r, 250, "2.0.0 Ok: queued as ");
    c.expect("QUIT", 221);

    let text = inst.wait_for_text(&mbox(&inst), "ended by an empty chunk");
    inst.log_line(&format!("{qid}: to=<{rcpt}>"));
    assert!(
        text.contains("\n\n..x stays doubled\n.\nmiddle of a line\nlast chunk\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\tby mail.example.test (posthorn) with ESMTP id {qid}\n"
        )),
        "{text}"
    );
    log_line_ending(
        &inst,
        &format!("]: disconnect from {PEER} ehlo=1 mail=2 rcpt=2 bdat=4 quit=1 commands=10"),
    );
}

#[test]
fn rset_noop_quit_help_vrfy_and_unknown_commands() {
    let inst = started(&format!("disable_vrfy_command = yes\n{MANY_ERRORS}"));
    let mut c = ehlo_session(&inst);
    assert_eq!(c.cmd("NOOP").wire(), "250 2.0.0 Ok");
    assert_eq!(c.cmd("RSET").wire(), "250 2.0.0 Ok");
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    assert_eq!(c.cmd("RSET").wire(), "250 2.0.0 Ok");
    // RSET ended the transaction.
    says(&mut c, "RCPT TO:<x@example.org>", 503, "5.5.1 ");
    let r = c.cmd("HELP");
    assert_eq!(r.code, 214, "{}", r.wire());
    says(&mut c, "VRFY root", 502, "5.5.1 ");
    let r = c.cmd("XYZZY plugh");
    assert_eq!(r.wire(), "502 5.5.2 Error: command not recognized");
    // Commands are case-insensitive.
    assert_eq!(c.cmd("noop").wire(), "250 2.0.0 Ok");
    // A command line of 5000 bytes.
    let r = c.cmd(&format!("NOOP {}", "x".repeat(5000)));
    assert_eq!(r.wire(), "500 5.5.2 Error: line too long");
    // The rest of the long line was discarded: the next command works.
    assert_eq!(c.cmd("NOOP").wire(), "250 2.0.0 Ok");
    assert_eq!(c.cmd("QUIT").wire(), "221 2.0.0 Bye");
    assert!(c.closed());
}

#[test]
fn vrfy_is_offered_by_default() {
    let inst = started("");
    let mut c = ehlo_session(&inst);
    // Postfix answers VRFY for a known local user with 252 (cannot verify, will accept).
    let r = c.cmd(&format!("VRFY {}", inst.user()));
    assert!(
        r.code == 250 || r.code == 252,
        "VRFY of a local user: {}",
        r.wire()
    );
    c.expect("QUIT", 221);
}

#[test]
fn disconnect_log_counts_failed_commands() {
    // Postfix: " name=ok" per command, "/total" when some failed.
    let inst = started(MANY_ERRORS);
    let mut c = ehlo_session(&inst);
    says(&mut c, "MAIL FROM:<broken@example.org", 501, "5.1.7 ");
    says(&mut c, "MAIL FROM:<sender@example.org>", 250, "2.1.0 Ok");
    says(&mut c, "RSET", 250, "2.0.0 Ok");
    says(&mut c, "QUIT", 221, "2.0.0 Bye");
    log_line_ending(
        &inst,
        &format!("]: disconnect from {PEER} ehlo=1 mail=1/2 rset=1 quit=1 commands=4/5"),
    );
}

#[test]
fn dsn_parameters_are_stored_in_the_queue_file() {
    let mut inst = Instance::new("");
    inst.add_main_cf(&inst.virtual_cf("alice@virt.test=alice/"));
    // A uid below virtual_minimum_uid defers the delivery; long backoffs keep it queued.
    inst.add_main_cf(
        "virtual_minimum_uid = 4000000000\nminimal_backoff_time = 300s\n\
         maximal_backoff_time = 600s\nqueue_run_delay = 300s\n",
    );
    inst.start();
    let mut c = ehlo_session(&inst);
    says(
        &mut c,
        "MAIL FROM:<sender@example.org> RET=HDRS ENVID=xyz-42",
        250,
        "2.1.0 Ok",
    );
    says(
        &mut c,
        "RCPT TO:<alice@virt.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@example.net",
        250,
        "2.1.5 Ok",
    );
    let r = c.data("Subject: dsn\r\n\r\nwith dsn\r\n");
    let qid = queued(&r);
    c.expect("QUIT", 221);
    inst.expect_log(&format!("{qid}: to=<alice@virt.test>"), T);
    assert!(
        inst.wait_until(T, || inst.queue_count("deferred") == 1),
        "log:\n{}",
        inst.log_text()
    );
    let out = inst
        .command("postcat")
        .args(["-e", "-q", &qid])
        .output()
        .expect("run postcat");
    let cat = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "postcat: {cat}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cat.contains("\nsender: sender@example.org\n"), "{cat}");
    assert!(cat.contains("\ndsn_envelope_id: xyz-42\n"), "{cat}");
    assert!(cat.contains("\ndsn_return_flags: HDRS\n"), "{cat}");
    let notify = cat
        .lines()
        .find_map(|l| l.strip_prefix("dsn_notify_flags: "))
        .unwrap_or_else(|| panic!("no dsn_notify_flags in:\n{cat}"));
    let mut words: Vec<&str> = notify.split(',').map(str::trim).collect();
    words.sort_unstable();
    assert_eq!(words, ["FAILURE", "SUCCESS"], "{cat}");
    assert!(
        cat.contains("\ndsn_original_recipient: rfc822;orig@example.net\n"),
        "{cat}"
    );
    assert!(cat.contains("\nrecipient: alice@virt.test\n"), "{cat}");
}

#[test]
fn pipelined_transaction_after_ehlo() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    // RFC 2920: MAIL, RCPT, RCPT, DATA in one write; the content after the 354.
    c.send_raw(
        format!(
            "MAIL FROM:<sender@example.org>\r\nRCPT TO:<{rcpt}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
        )
        .as_bytes(),
    );
    is(&c.reply(), 250, "2.1.0 Ok");
    is(&c.reply(), 250, "2.1.5 Ok");
    is(&c.reply(), 250, "2.1.5 Ok");
    is(&c.reply(), 354, "");
    c.send_raw(b"Subject: pipelined\r\n\r\npipelined body\r\n.\r\nQUIT\r\n");
    is(&c.reply(), 250, "2.0.0 Ok: queued as ");
    is(&c.reply(), 221, "2.0.0 Bye");
    inst.wait_for_text(&mbox(&inst), "pipelined body");
}

#[test]
fn message_size_limit_is_enforced_at_end_of_data() {
    let inst = started("message_size_limit = 1000\n");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    let r = c.cmd("EHLO again.example.test");
    assert!(r.lines.contains(&"SIZE 1000".to_string()), "{}", r.wire());
    envelope(&mut c, "sender@example.org", &rcpt);
    let body: String = (0..100)
        .map(|i| format!("line {i:04} of a big one\r\n"))
        .collect();
    let r = c.data(&format!("Subject: big\r\n\r\n{body}"));
    is(&r, 552, "5.3.4 ");
    // The session goes on; nothing was queued.
    says(&mut c, "NOOP", 250, "2.0.0 Ok");
    c.expect("QUIT", 221);
    std::thread::sleep(Duration::from_secs(1));
    assert!(inst.queue_empty(), "log:\n{}", inst.log_text());
    assert!(!mbox(&inst).exists(), "{:?}", std::fs::read(mbox(&inst)));
}
