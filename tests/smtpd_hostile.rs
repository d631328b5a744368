//! smtpd against hostile clients (issue 3, "Hostile input — each of these needs its own
//! test"): SMTP smuggling with every bare-LF/bare-CR variant of the end-of-data mark,
//! `smtpd_forbid_bare_newline` (reject and normalize), unauthorized pipelining and early
//! talkers, NUL and 8-bit bytes in commands, header injection through addresses, hundreds
//! of recipients and thousands of pipelined commands in one write, slowloris clients and a
//! trickling DATA phase, a 2 MB line, and a message over the size limit. In every case the
//! server must answer as Postfix does, never split or lose a message, and stay up for the
//! next client.

use std::io::Write;
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use posthorn_testkit::Instance;
use posthorn_testkit::smtp::{Client, Reply, ehlo_session, local_user, mbox, queue_id, started};

const T: Duration = Duration::from_secs(20);

/// 127.0.0.1 outside mynetworks: no exemption from smtpd_forbid_bare_newline.
const UNTRUSTED: &str = "mynetworks = 192.0.2.0/24\n";

/// Writes `bytes` on the client's socket, ignoring errors (the server may already have
/// closed the connection, which is what some tests expect).
fn write_ignoring_errors(c: &Client, bytes: &[u8]) {
    if let Ok(mut s) = c.stream().try_clone() {
        let _ = s.write_all(bytes);
    }
}

/// Reads replies until the connection ends (EOF, reset or a `timeout` without data), at
/// most `max`; returns them and why reading stopped.
fn drain(c: &mut Client, max: usize, timeout: Duration) -> (Vec<Reply>, String) {
    c.stream().set_read_timeout(Some(timeout)).unwrap();
    let mut replies = Vec::new();
    while replies.len() < max {
        match c.try_reply() {
            Ok(r) => replies.push(r),
            Err(e) => return (replies, e),
        }
    }
    (replies, format!("stopped after {max} replies"))
}

/// The wire form of replies, for messages.
fn wires(replies: &[Reply]) -> String {
    replies
        .iter()
        .map(Reply::wire)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the reading ended because the server closed (EOF or reset), not by timeout.
fn ended_by_close(why: &str) -> bool {
    why.contains("closed") || why.contains("reset") || why.contains("Broken pipe")
}

/// Asserts that [`drain`] stopped because the server closed the connection.
#[track_caller]
fn assert_closed(why: &str) {
    assert!(ended_by_close(why), "connection not closed: {why}");
}

/// Postfix's reply to a client that talks out of turn.
const SYNC_ERROR: &str = "554 5.5.0 Error: SMTP protocol synchronization";

/// Asserts that one of `replies` is [`SYNC_ERROR`].
#[track_caller]
fn assert_sync_error(replies: &[Reply], why: &str) {
    assert!(
        replies.iter().any(|r| r.wire() == SYNC_ERROR),
        "{} ({why})",
        wires(replies)
    );
}

/// Waits for Postfix's log line `improper command pipelining after CMD from HOST[ADDR]`.
fn expect_improper_pipelining(inst: &Instance, after: &str) {
    inst.expect_log(
        &format!("improper command pipelining after {after} from localhost[127.0.0.1]"),
        T,
    );
}

/// Sends MAIL FROM:<sender@example.org>, RCPT TO:<rcpt> and DATA (354): the session is
/// then in the DATA phase.
fn begin_data(c: &mut Client, rcpt: &str) {
    c.expect("MAIL FROM:<sender@example.org>", 250);
    c.expect(&format!("RCPT TO:<{rcpt}>"), 250);
    c.expect("DATA", 354);
}

/// Writes `bytes` on the client's socket from a thread, so that the replies can be read
/// meanwhile and neither side blocks; join it for the result of the write.
fn write_in_background(c: &Client, bytes: Vec<u8>) -> JoinHandle<std::io::Result<()>> {
    let mut w = c.stream().try_clone().unwrap();
    std::thread::spawn(move || w.write_all(&bytes))
}

/// Asserts (after a second for stragglers) that the queue is empty and nothing reached the
/// mbox.
#[track_caller]
fn assert_nothing_delivered(inst: &Instance) {
    std::thread::sleep(Duration::from_secs(1));
    assert!(inst.queue_empty(), "log:\n{}", inst.log_text());
    assert!(!mbox(inst).exists(), "a message was delivered");
}

/// A fresh session that sends one message to the local user and gets it delivered:
/// proof that the server survived whatever came before.
fn still_serves(inst: &Instance, tag: &str) {
    let rcpt = local_user(inst);
    let mut c = ehlo_session(inst);
    let body = format!("Subject: {tag}\r\n\r\nalive after {tag}\r\n");
    let qid = c.send_mail("sender@example.org", &[&rcpt], &body);
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(inst), &format!("alive after {tag}"));
    inst.expect_log(&format!("{qid}: to=<{rcpt}>"), T);
}

/// Number of log lines containing `needle`.
fn count_log(inst: &Instance, needle: &str) -> usize {
    inst.log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Sends one DATA transaction whose content holds `eod_variant` followed by a complete
/// second transaction, then the real end of data; exactly one message may result.
fn smuggling_attempt(eod_variant: &[u8], name: &str) {
    let inst = started(UNTRUSTED);
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    begin_data(&mut c, &rcpt);
    let mut data = format!("Subject: first {name}\r\n\r\nfirst body {name}").into_bytes();
    data.extend_from_slice(eod_variant);
    data.extend_from_slice(
        format!(
            "MAIL FROM:<admin@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n\
             Subject: smuggled {name}\r\n\r\nsmuggled body {name}\r\n.\r\n"
        )
        .as_bytes(),
    );
    c.send_raw(&data);
    // Exactly one reply: the end of the one message.
    let r = c.reply();
    assert!(
        r.code == 250 && r.text().starts_with("2.0.0 Ok: queued as "),
        "{name}: end of data: {}",
        r.wire()
    );
    let qid = queue_id(&r);
    // The next reply belongs to QUIT, not to a smuggled MAIL/RCPT/DATA.
    let r = c.cmd("QUIT");
    assert_eq!(r.wire(), "221 2.0.0 Bye", "{name}: a second transaction?");
    assert!(c.closed());

    let text = inst.wait_for_text(&mbox(&inst), &format!("smuggled body {name}"));
    inst.expect_log(&format!("{qid}: to=<{rcpt}>"), T);
    // Give a second message every chance to show up.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        inst.wait_until(T, || inst.queue_empty()),
        "log:\n{}",
        inst.log_text()
    );
    let log = inst.log_text();
    assert_eq!(
        count_log(&inst, ": client=localhost[127.0.0.1]"),
        1,
        "{name}: more than one message was received:\n{log}"
    );
    assert_eq!(
        count_log(&inst, "status=sent"),
        1,
        "{name}: more than one delivery:\n{log}"
    );
    assert!(!log.contains("from=<admin@example.org>"), "{name}:\n{log}");
    // One message in the mbox, holding both "bodies".
    assert_eq!(
        text.matches("\nFrom ").count(),
        0,
        "{name}: two messages in the mbox:\n{text}"
    );
    let first = text.find(&format!("first body {name}")).unwrap();
    let smuggled = text.find(&format!("smuggled body {name}")).unwrap();
    assert!(first < smuggled, "{text}");
}

/// One test per end-of-data look-alike: `test: variant, tag;` runs
/// [`smuggling_attempt`]`(variant, tag)`.
macro_rules! smuggling_tests {
    ($($test:ident: $eod:expr, $tag:expr;)*) => {
        $(
            #[test]
            fn $test() {
                smuggling_attempt($eod, $tag);
            }
        )*
    };
}

smuggling_tests! {
    smuggling_lf_dot_lf_does_not_end_data: b"\n.\n", "lf-dot-lf";
    smuggling_lf_dot_crlf_does_not_end_data: b"\n.\r\n", "lf-dot-crlf";
    smuggling_cr_dot_cr_does_not_end_data: b"\r.\r", "cr-dot-cr";
    smuggling_crlf_dot_lf_does_not_end_data: b"\r\n.\n", "crlf-dot-lf";
    smuggling_cr_dot_crlf_does_not_end_data: b"\r.\r\n", "cr-dot-crlf";
}

#[test]
fn bare_lf_in_data_is_rejected_with_forbid_bare_newline_yes() {
    let inst = started(&format!("{UNTRUSTED}smtpd_forbid_bare_newline = yes\n"));
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    begin_data(&mut c, &rcpt);
    write_ignoring_errors(
        &c,
        b"Subject: bare\r\n\r\nline one\nline two\r\n.\r\nMAIL FROM:<x@example.org>\r\n",
    );
    let (replies, why) = drain(&mut c, 5, Duration::from_secs(10));
    let first = replies
        .first()
        .unwrap_or_else(|| panic!("no reply ({why})"));
    // Postfix: "NNN 5.5.2 myhostname Error: bare <LF> received" and disconnect (the code
    // is smtpd_forbid_bare_newline_reject_code).
    assert!(
        first.code / 100 == 5
            && first.text().starts_with("5.5.2 ")
            && first.text().contains("Error: bare <LF> received"),
        "{}",
        wires(&replies)
    );
    assert_eq!(replies.len(), 1, "{}", wires(&replies));
    assert_closed(&why);
    assert_nothing_delivered(&inst);
    still_serves(&inst, "bare-lf-data");
}

#[test]
fn bare_lf_in_a_command_is_rejected_with_forbid_bare_newline_yes() {
    let inst = started(&format!("{UNTRUSTED}smtpd_forbid_bare_newline = yes\n"));
    let mut c = ehlo_session(&inst);
    write_ignoring_errors(&c, b"NOOP\n");
    let (replies, why) = drain(&mut c, 5, Duration::from_secs(10));
    assert!(
        replies.len() == 1
            && replies[0].code / 100 == 5
            && replies[0].text().contains("Error: bare <LF> received"),
        "{} ({why})",
        wires(&replies)
    );
    assert_closed(&why);
}

#[test]
fn bare_lf_is_normalized_by_default() {
    let inst = started(UNTRUSTED);
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    // Commands ending in a bare LF are accepted as if they ended in CRLF.
    c.send_raw(b"NOOP\n");
    assert_eq!(c.reply().code, 250);
    begin_data(&mut c, &rcpt);
    c.send_raw(b"Subject: normalized\r\n\r\nline one\nline two\r\nline three\n\r\n.\r\n");
    let r = c.reply();
    assert!(
        r.code == 250 && r.text().starts_with("2.0.0 Ok: queued as "),
        "{}",
        r.wire()
    );
    let qid = queue_id(&r);
    c.expect("QUIT", 221);
    let text = inst.wait_for_text(&mbox(&inst), "line three");
    assert!(
        text.contains("\n\nline one\nline two\nline three\n\n"),
        "{text:?}"
    );
    // The queue file kept three lines (no line glued, none split).
    inst.expect_log(&format!("{qid}: removed"), T);
}

#[test]
fn unauthorized_pipelining_after_helo_is_refused() {
    let inst = started("");
    let mut c = Client::connect(inst.smtp_port);
    // HELO announces no PIPELINING: a second command in the same write is a violation.
    write_ignoring_errors(
        &c,
        b"HELO client.example.test\r\nMAIL FROM:<a@example.org>\r\n",
    );
    let (replies, why) = drain(&mut c, 5, Duration::from_secs(10));
    assert_sync_error(&replies, &why);
    assert!(
        !replies.iter().any(|r| r.text().starts_with("2.1.0")),
        "MAIL was accepted: {}",
        wires(&replies)
    );
    assert_closed(&why);
    expect_improper_pipelining(&inst, "HELO");
    still_serves(&inst, "helo-pipelining");
}

#[test]
fn pipelining_after_data_before_354_is_refused() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    // DATA must be the last command of a group: the content may not follow before the 354.
    write_ignoring_errors(
        &c,
        format!(
            "MAIL FROM:<sender@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n\
             Subject: too early\r\n\r\nearly content\r\n.\r\n"
        )
        .as_bytes(),
    );
    let (replies, why) = drain(&mut c, 10, Duration::from_secs(10));
    assert_sync_error(&replies, &why);
    assert!(
        !replies
            .iter()
            .any(|r| r.code == 354 || r.text().contains("queued as")),
        "the content was taken: {}",
        wires(&replies)
    );
    assert_closed(&why);
    expect_improper_pipelining(&inst, "DATA");
    std::thread::sleep(Duration::from_secs(1));
    assert!(inst.queue_empty(), "log:\n{}", inst.log_text());
    still_serves(&inst, "data-pipelining");
}

#[test]
fn pipelining_with_ehlo_is_fine() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    c.send_raw(
        format!(
            "MAIL FROM:<sender@example.org>\r\nRCPT TO:<{rcpt}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
        )
        .as_bytes(),
    );
    let codes: Vec<u16> = (0..4).map(|_| c.reply().code).collect();
    assert_eq!(codes, [250, 250, 250, 354]);
    c.send_raw(b"Subject: ok\r\n\r\npipelined fine\r\n.\r\nQUIT\r\n");
    assert!(c.reply().text().starts_with("2.0.0 Ok: queued as "));
    assert_eq!(c.reply().code, 221);
    inst.wait_for_text(&mbox(&inst), "pipelined fine");
}

#[test]
fn early_talker_is_refused() {
    let inst = started("smtpd_greet_wait = 1s\n");
    // Make sure the service is up before the raw connection.
    let mut probe = Client::connect(inst.smtp_port);
    probe.expect("QUIT", 221);
    let mut c = Client::connect_raw(inst.smtp_port);
    write_ignoring_errors(&c, b"EHLO early.example.test\r\n");
    let (replies, why) = drain(&mut c, 5, Duration::from_secs(15));
    assert_sync_error(&replies, &why);
    assert!(
        !replies.iter().any(|r| r.code == 250),
        "EHLO was answered: {}",
        wires(&replies)
    );
    assert_closed(&why);
    expect_improper_pipelining(&inst, "CONNECT");
    still_serves(&inst, "early-talker");
}

#[test]
fn nul_byte_in_a_command_is_refused_and_the_session_goes_on() {
    let inst = started("");
    let mut c = ehlo_session(&inst);
    c.send_raw(b"NOOP\0garbage\r\n");
    let r = c.reply();
    assert!(
        r.code == 500 && r.text().starts_with("5.5.2 "),
        "{}",
        r.wire()
    );
    c.send_raw(b"MAIL FROM:<a\0b@example.org>\r\n");
    let r = c.reply();
    assert!(r.code / 100 == 5, "NUL in an address: {}", r.wire());
    assert_eq!(c.cmd("NOOP").wire(), "250 2.0.0 Ok");
    c.expect("QUIT", 221);
    still_serves(&inst, "nul");
}

#[test]
fn eight_bit_bytes_in_commands_get_errors_not_crashes() {
    let inst = started("smtpd_error_sleep_time = 0s\n");
    let mut c = ehlo_session(&inst);
    // Not UTF-8, and no SMTPUTF8 parameter.
    for line in [
        &b"MAIL FROM:<\xff\xfe@example.org>\r\n"[..],
        b"MAIL FROM:<sender@ex\xe4mple.org>\r\n",
        b"XY\xffZ\r\n",
        b"\x80\x81\x82\x83\r\n",
    ] {
        c.send_raw(line);
        let r = c.reply();
        assert!(
            r.code / 100 == 5,
            "{:?}: {}",
            String::from_utf8_lossy(line),
            r.wire()
        );
    }
    // Invalid UTF-8 is refused even with SMTPUTF8.
    c.send_raw(b"MAIL FROM:<\xc3\x28@example.org> SMTPUTF8\r\n");
    let r = c.reply();
    assert!(r.code / 100 == 5, "bad UTF-8 with SMTPUTF8: {}", r.wire());
    // No transaction was started by any of them.
    let r = c.cmd("RCPT TO:<x@mail.example.test>");
    assert_eq!(r.code, 503, "{}", r.wire());
    assert_eq!(c.cmd("NOOP").wire(), "250 2.0.0 Ok");
    c.expect("QUIT", 221);
    still_serves(&inst, "eight-bit");
}

#[test]
fn header_injection_through_addresses_is_refused() {
    let inst = started("smtpd_error_sleep_time = 0s\n");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    // A CR inside the address, and text after the closing bracket.
    for line in [
        &b"MAIL FROM:<a@example.org\r>\r\n"[..],
        b"MAIL FROM:<a@example.org>extra\r\n",
        b"MAIL FROM:<a@example.org\rBcc: victim@example.net>\r\n",
    ] {
        c.send_raw(line);
        let r = c.reply();
        assert_eq!(
            r.code,
            501,
            "{:?}: {}",
            String::from_utf8_lossy(line),
            r.wire()
        );
    }
    // A NUL inside the address: refused (500 for the NUL, or 501 for the address).
    c.send_raw(b"MAIL FROM:<a@example.org\0>\r\n");
    let r = c.reply();
    assert!(matches!(r.code, 500 | 501), "NUL: {}", r.wire());
    // A LF inside the brackets ends the line: neither half is a valid command.
    c.send_raw(b"MAIL FROM:<a@example.org\n>\r\n");
    let first = c.reply();
    let second = c.reply();
    assert!(
        first.code / 100 == 5 && second.code / 100 == 5,
        "LF in an address: {} / {}",
        first.wire(),
        second.wire()
    );
    // The same for recipients.
    c.expect("MAIL FROM:<sender@example.org>", 250);
    for line in [
        format!("RCPT TO:<{rcpt}\r>\r\n"),
        format!("RCPT TO:<{rcpt}>extra\r\n"),
        format!("RCPT TO:<{rcpt}\rX-Injected: yes>\r\n"),
    ] {
        c.send_raw(line.as_bytes());
        let r = c.reply();
        assert_eq!(r.code, 501, "{line:?}: {}", r.wire());
    }
    // No recipient was accepted.
    let r = c.cmd("DATA");
    assert!(r.code / 100 == 5, "DATA: {}", r.wire());
    c.expect("QUIT", 221);
    still_serves(&inst, "injection");
    let text = std::fs::read_to_string(mbox(&inst)).unwrap_or_default();
    assert!(
        !text.contains("X-Injected") && !text.contains("Bcc: victim"),
        "{text}"
    );
}

#[test]
fn five_hundred_recipients_in_one_write() {
    let inst = started("smtpd_recipient_limit = 1000\n");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    let mut batch = String::from("MAIL FROM:<sender@example.org>\r\n");
    for _ in 0..500 {
        batch.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
    }
    // Written from a thread: the replies are read meanwhile, so neither side can block.
    let writer = write_in_background(&c, batch.into_bytes());
    let r = c.reply();
    assert_eq!(r.wire(), "250 2.1.0 Ok");
    for i in 0..500 {
        let r = c.reply();
        assert_eq!(r.wire(), "250 2.1.5 Ok", "recipient {i}");
    }
    writer.join().unwrap().expect("write the recipients");
    let r = c.data("Subject: many\r\n\r\nfive hundred recipients\r\n");
    assert!(r.text().starts_with("2.0.0 Ok: queued as "), "{}", r.wire());
    let qid = queue_id(&r);
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "five hundred recipients");
    inst.expect_log(&format!("{qid}: removed"), T);
}

#[test]
fn thousands_of_pipelined_junk_commands_hit_the_junk_limit() {
    // RSET may stand anywhere in a pipelined group (RFC 2920), and it is a junk command:
    // smtpd_junk_command_limit (100) of them are fine, then each counts as an error up to
    // smtpd_hard_error_limit (20): about 120 replies, then 421 and the end.
    let inst = started("");
    let mut c = ehlo_session(&inst);
    let junk = "RSET\r\n".repeat(5000);
    // The server hangs up part way: write from a thread and ignore the error.
    let writer = write_in_background(&c, junk.into_bytes());
    let start = Instant::now();
    let (replies, why) = drain(&mut c, 6000, Duration::from_secs(60));
    let _ = writer.join();
    let oks = replies.iter().filter(|r| r.code == 250).count();
    assert!(
        (100..=200).contains(&oks),
        "{oks} RSETs answered 250 ({why}); last replies:\n{}",
        wires(&replies[replies.len().saturating_sub(5)..])
    );
    assert!(replies.len() < 5000, "the junk limit never struck");
    assert_closed(&why);
    // The 421 is the last reply, unless the reset of the unread input overtook it.
    if let Some(last) = replies.last().filter(|r| r.code != 250) {
        assert_eq!(
            last.wire(),
            "421 4.7.0 mail.example.test Error: too many errors"
        );
    } else {
        assert!(why.contains("reset"), "no 421 and no reset: {why}");
    }
    let took = start.elapsed();
    // The server is still there for others.
    still_serves(&inst, "junk");
    // Postfix logs why it hung up (smtpd.c: "too many errors after %s from %s").
    inst.expect_log("too many errors after RSET from localhost[127.0.0.1]", T);
    // Postfix (smtpd_chat_reply) delays every reply by smtpd_error_sleep_time (1s) once
    // the error count reaches smtpd_soft_error_limit (10): errors 10 to 19, about 10 s.
    assert!(
        took >= Duration::from_secs(5),
        "the junk session ended after {took:?}: no error sleep once past smtpd_soft_error_limit"
    );
}

#[test]
fn pipelined_noops_are_a_synchronization_error() {
    // RFC 2920 (and Postfix): NOOP may only end a pipelined group, so thousands of NOOPs in
    // one write get 554 5.5.0 after the first and the connection is closed.
    let inst = started("");
    let mut c = ehlo_session(&inst);
    let junk = "NOOP\r\n".repeat(5000);
    let writer = write_in_background(&c, junk.into_bytes());
    let (replies, why) = drain(&mut c, 6000, Duration::from_secs(30));
    let _ = writer.join();
    assert!(replies.len() <= 2, "{}", wires(&replies));
    assert!(
        replies.is_empty() || replies.last().unwrap().wire() == SYNC_ERROR,
        "{} ({why})",
        wires(&replies)
    );
    assert_closed(&why);
    expect_improper_pipelining(&inst, "NOOP");
    still_serves(&inst, "noops");
}

#[test]
fn slowloris_does_not_stall_others_and_is_timed_out() {
    let inst = started("smtpd_timeout = 3s\nsmtpd_per_record_deadline = yes\n");
    let rcpt = local_user(&inst);
    let mut slow = ehlo_session(&inst);
    // One byte of a never-ending command line every 200 ms, for at most 10 s.
    let mut w = slow.stream().try_clone().unwrap();
    let started_at = Instant::now();
    let dripper = std::thread::spawn(move || {
        let line = b"NOOP slowly but surely";
        for i in 0..50 {
            if w.write_all(&line[i % line.len()..][..1]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // Meanwhile another client sends a whole message, without delay.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let mut fast = ehlo_session(&inst);
    let qid = fast.send_mail(
        "sender@example.org",
        &[&rcpt],
        "Subject: fast\r\n\r\nnot stalled\r\n",
    );
    fast.expect("QUIT", 221);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the fast client took {took:?} while a slow one dripped"
    );
    // The slow client is dropped after smtpd_timeout.
    let (replies, why) = drain(&mut slow, 5, Duration::from_secs(20));
    let dropped_after = started_at.elapsed();
    let _ = dripper.join();
    assert!(
        replies.len() == 1
            && replies[0].wire() == "421 4.4.2 mail.example.test Error: timeout exceeded",
        "{} ({why})",
        wires(&replies)
    );
    assert_closed(&why);
    inst.wait_for_text(&mbox(&inst), "not stalled");
    inst.expect_log(&format!("{qid}: to=<{rcpt}>"), T);
    // With smtpd_per_record_deadline = yes, smtpd_timeout limits the whole command line,
    // however the bytes trickle in (Postfix: smtp_stream's deadline per smtp_get call).
    assert!(
        dropped_after >= Duration::from_millis(2500) && dropped_after < Duration::from_secs(9),
        "dropped after {dropped_after:?} (smtpd_timeout = 3s, the client dripped for 10 s)"
    );
    // Postfix names the last command: "timeout after EHLO from host[addr]".
    inst.expect_log("timeout after EHLO from localhost[127.0.0.1]", T);
}

#[test]
fn trickling_data_is_dropped_by_the_minimum_data_rate() {
    // Each line completes within a second (well inside smtpd_timeout), but 3 bytes per
    // second is far below smtpd_min_data_rate.
    let inst =
        started("smtpd_timeout = 4s\nsmtpd_per_record_deadline = yes\nsmtpd_min_data_rate = 500\n");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    begin_data(&mut c, &rcpt);
    let mut w = c.stream().try_clone().unwrap();
    let started_at = Instant::now();
    let dripper = std::thread::spawn(move || {
        for _ in 0..30 {
            if w.write_all(b"a\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let _ = w.write_all(b".\r\n");
    });
    let (replies, why) = drain(&mut c, 5, Duration::from_secs(40));
    let dropped_after = started_at.elapsed();
    let _ = dripper.join();
    assert!(
        replies.len() == 1 && replies[0].code == 421 && replies[0].text().starts_with("4.4.2 "),
        "{} ({why})",
        wires(&replies)
    );
    assert_closed(&why);
    assert!(
        dropped_after < Duration::from_secs(15),
        "dropped only after {dropped_after:?}"
    );
    assert_nothing_delivered(&inst);
}

#[test]
fn a_two_megabyte_line_is_survived() {
    let inst = started("");
    let rcpt = local_user(&inst);
    // A header line without any newline, 2 MB long.
    let mut c = ehlo_session(&inst);
    begin_data(&mut c, &rcpt);
    let mut blob = b"Subject: ".to_vec();
    blob.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    blob.extend_from_slice(b"\r\n\r\nafter the long line\r\n.\r\n");
    let writer = write_in_background(&c, blob);
    let r = c.reply();
    writer.join().unwrap().expect("write the blob");
    assert!(
        (r.code == 250 && r.text().starts_with("2.0.0 Ok: queued as "))
            || (r.code == 552 && r.text().starts_with("5.3.4 ")),
        "{}",
        r.wire()
    );
    // The session goes on.
    assert_eq!(c.cmd("NOOP").wire(), "250 2.0.0 Ok");
    c.expect("QUIT", 221);

    // A 2 MB command line: refused, never a crash.
    let mut c = ehlo_session(&inst);
    let mut line = b"MAIL FROM:<".to_vec();
    line.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    line.extend_from_slice(b"@example.org>\r\nNOOP\r\n");
    let writer = write_in_background(&c, line);
    let (replies, why) = drain(&mut c, 2, Duration::from_secs(20));
    let _ = writer.join();
    assert!(
        replies.first().is_some_and(|r| r.code / 100 == 5),
        "{} ({why})",
        wires(&replies)
    );
    still_serves(&inst, "long-line");
}

#[test]
fn message_over_the_size_limit_is_not_queued() {
    // The stand-in for a cleanup failure: the message is refused at end of data, with no
    // 250 and no queue file left behind.
    let inst = started("message_size_limit = 1000\n");
    let rcpt = local_user(&inst);
    let mut c = ehlo_session(&inst);
    c.expect("MAIL FROM:<sender@example.org>", 250);
    c.expect(&format!("RCPT TO:<{rcpt}>"), 250);
    let body: String = (0..200)
        .map(|i| format!("filler line {i:04}\r\n"))
        .collect();
    let r = c.data(&format!("Subject: too big\r\n\r\n{body}"));
    assert!(
        r.code == 552 && r.text().starts_with("5.3.4 "),
        "{}",
        r.wire()
    );
    c.expect("QUIT", 221);
    std::thread::sleep(Duration::from_secs(2));
    assert!(inst.queue_empty(), "log:\n{}", inst.log_text());
    for q in [
        "maildrop", "incoming", "active", "deferred", "hold", "corrupt",
    ] {
        assert_eq!(inst.queue_count(q), 0, "a file in {q}/");
    }
    assert!(!mbox(&inst).exists(), "a message was delivered");
    let log = inst.log_text();
    assert!(!log.contains("status=sent"), "{log}");
}

#[test]
fn many_idle_connections_do_not_block_a_new_one() {
    let inst = started("");
    let rcpt = local_user(&inst);
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(Client::connect(inst.smtp_port));
    }
    let t0 = Instant::now();
    let mut c = ehlo_session(&inst);
    c.send_mail(
        "sender@example.org",
        &[&rcpt],
        "Subject: idle\r\n\r\nwith idlers\r\n",
    );
    c.expect("QUIT", 221);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    drop(idle);
    inst.wait_for_text(&mbox(&inst), "with idlers");
    // A raw TCP connection that sends nothing and closes does no harm either.
    drop(TcpStream::connect(("127.0.0.1", inst.smtp_port)).unwrap());
    still_serves(&inst, "idlers");
}
