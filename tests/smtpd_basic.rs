//! smtpd's basic path end to end: a message over SMTP is queued (250 with the queue ID only
//! after cleanup made it durable) and delivered locally, with smtpd's Received header and
//! Postfix's log lines.

use std::time::Duration;

use posthorn_testkit::Instance;
use posthorn_testkit::smtp::{Client, queue_id};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_message_over_smtp_is_queued_and_delivered() {
    let mut inst = Instance::new("");
    inst.start();
    let me = format!("{}@mail.example.test", inst.user());
    let mut c = Client::connect(inst.smtp_port);
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(
        ehlo.lines.iter().any(|l| l == "PIPELINING"),
        "{}",
        ehlo.wire()
    );
    c.expect("MAIL FROM:<sender@example.org>", 250);
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    let r = c.data("Subject: over smtp\r\n\r\nhello\r\n..dotted\r\n");
    assert_eq!(r.code, 250, "{}", r.wire());
    let id = queue_id(&r);
    c.expect("QUIT", 221);
    let mbox = inst.mail.join(inst.user());
    let text = inst.wait_for_text(&mbox, "hello");
    assert!(text.contains("\n.dotted\n"), "{text}");
    assert!(
        text.contains(&format!(
            "Received: from client.test (localhost [127.0.0.1])\n\tby mail.example.test (posthorn) with ESMTP id {id}\n\tfor <{me}>;"
        )),
        "{text}"
    );
    inst.expect_log(&format!("{id}: client=localhost[127.0.0.1]"), T);
    inst.expect_log(
        "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
        T,
    );
    // Several messages over one connection, pipelined.
    let mut c = Client::connect(inst.smtp_port);
    c.expect("EHLO client.test", 250);
    for i in 0..3 {
        c.send_raw(format!("MAIL FROM:<s@example.org>\r\nRCPT TO:<{me}>\r\nDATA\r\n").as_bytes());
        assert_eq!(c.reply().code, 250);
        assert_eq!(c.reply().code, 250);
        assert_eq!(c.reply().code, 354);
        c.send_raw(format!("Subject: n{i}\r\n\r\nbody {i}\r\n.\r\n").as_bytes());
        assert_eq!(c.reply().code, 250);
    }
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox, "body 2");
}

#[test]
fn no_250_without_a_durable_queue_file() {
    use std::os::unix::fs::PermissionsExt;
    let mut inst = Instance::new("");
    inst.start();
    let me = format!("{}@mail.example.test", inst.user());
    // cleanup cannot create the queue file: the client gets a 4xx at the end of data.
    let incoming = inst.queue.join("incoming");
    let mode = std::fs::metadata(&incoming).unwrap().permissions().mode();
    std::fs::set_permissions(&incoming, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut c = Client::connect(inst.smtp_port);
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<sender@example.org>", 250);
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    let r = c.data("Subject: not on disk\r\n\r\nlost?\r\n");
    std::fs::set_permissions(&incoming, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(r.code, 451, "{}", r.wire());
    assert!(r.text().starts_with("4.3.0 "), "{}", r.wire());
    assert_eq!(inst.queue_count("incoming"), 0);
    // The session goes on, and the next message is queued.
    c.expect("MAIL FROM:<sender@example.org>", 250);
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    let r = c.data("Subject: on disk\r\n\r\nsafe\r\n");
    assert_eq!(r.code, 250, "{}", r.wire());
    c.expect("QUIT", 221);
    inst.wait_for_text(&inst.mail.join(inst.user()), "safe");
}

#[test]
fn mail_is_refused_when_the_queue_file_system_is_short_of_space() {
    let mut inst = Instance::new("queue_minfree = 1000000g\n");
    inst.start();
    let mut c = Client::connect(inst.smtp_port);
    c.expect("EHLO client.test", 250);
    let r = c.expect("MAIL FROM:<sender@example.org>", 452);
    assert_eq!(r.text(), "4.3.1 Insufficient system storage");
    c.expect("QUIT", 221);
}

#[test]
fn reload_keeps_open_sessions_and_serves_new_ones() {
    let mut inst = Instance::new("");
    inst.start();
    let me = format!("{}@mail.example.test", inst.user());
    let mut old = Client::connect(inst.smtp_port);
    old.expect("EHLO old.test", 250);
    old.expect("MAIL FROM:<old@example.org>", 250);
    let out = inst.posthorn(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    inst.expect_log("reload", T);
    // A new client is served (by a new smtpd) while the old session is still open.
    let mut new = Client::connect(inst.smtp_port);
    new.expect("EHLO new.test", 250);
    new.send_mail(
        "new@example.org",
        &[&me],
        "Subject: after reload\r\n\r\nnew one\r\n",
    );
    new.expect("QUIT", 221);
    // The old session finishes its message on the old process.
    old.expect(&format!("RCPT TO:<{me}>"), 250);
    let r = old.data("Subject: across reload\r\n\r\nold one\r\n");
    assert_eq!(r.code, 250, "{}", r.wire());
    old.expect("QUIT", 221);
    let mbox = inst.mail.join(inst.user());
    inst.wait_for_text(&mbox, "new one");
    inst.wait_for_text(&mbox, "old one");
}

#[test]
fn a_transaction_whose_cleanup_died_accepts_nothing_more() {
    let mut inst = Instance::new("");
    inst.start();
    let me = format!("{}@mail.example.test", inst.user());
    let mut c = Client::connect(inst.smtp_port);
    c.expect("EHLO client.test", 250);
    // A first message; its cleanup connection goes back to smtpd's pool.
    let first = c.send_mail("s@example.org", &[&me], "Subject: one\r\n\r\nfirst\r\n");
    let line = inst.log_line(&format!("{first}: message-id="));
    let pid: i32 = line
        .split("posthorn/cleanup[")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no cleanup pid in {line}"));
    // The next transaction takes the same cleanup connection; its process dies midway.
    c.expect("MAIL FROM:<s@example.org>", 250);
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The recipient accepted above is lost with that connection: nothing more of this
    // transaction may be accepted, least of all the message.
    let r = c.cmd(&format!("RCPT TO:<{me}>"));
    assert_eq!(r.code, 451, "{}", r.wire());
    let r = c.cmd("DATA");
    assert!(r.code >= 400, "{}", r.wire());
    // RSET starts over; the next message is queued and delivered.
    c.expect("RSET", 250);
    let second = c.send_mail("s@example.org", &[&me], "Subject: two\r\n\r\nsecond\r\n");
    c.expect("QUIT", 221);
    assert_ne!(first, second);
    inst.wait_for_text(&inst.mail.join(inst.user()), "second");
}
