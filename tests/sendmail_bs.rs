//! `sendmail -bs` end to end: an SMTP session on the program's stdin/stdout, spoken by the
//! same engine as smtpd; each message is submitted through postdrop and delivered.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdout, Stdio};

use posthorn_testkit::Instance;

/// Reads one SMTP reply (all its lines); returns the text, panicking on end of file.
fn reply(r: &mut BufReader<ChildStdout>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read reply");
        assert!(n > 0, "sendmail -bs closed its output; so far: {all:?}");
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

fn expect(r: &mut BufReader<ChildStdout>, code: &str) -> String {
    let text = reply(r);
    assert!(
        text.starts_with(code) && text.lines().all(|l| l.starts_with(code)),
        "expected {code}, got {text:?}"
    );
    text
}

#[test]
fn stand_alone_session_delivers_a_message() {
    let mut inst = Instance::new("");
    inst.start();
    let me = inst.user();
    let mut child = inst
        .command("sendmail")
        .arg("-bs")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run sendmail -bs");
    let mut w = child.stdin.take().unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut say = |line: &str| {
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        w.flush().unwrap();
    };

    expect(&mut r, "220 ");
    say("EHLO x");
    let ehlo = expect(&mut r, "250");
    assert!(ehlo.lines().count() > 1, "multi-line EHLO reply: {ehlo:?}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    say("MAIL FROM:<a@example.org>");
    expect(&mut r, "250 ");
    say(&format!("RCPT TO:<{me}@mail.example.test>"));
    expect(&mut r, "250 ");
    say("DATA");
    expect(&mut r, "354 ");
    say("Subject: stand-alone bs test");
    say("");
    say("hello from sendmail -bs");
    say("..a dot-stuffed line");
    say(".");
    let queued = expect(&mut r, "250 ");
    assert!(queued.contains("Ok: queued as "), "{queued}");
    say("QUIT");
    expect(&mut r, "221 ");
    drop(w);
    let status = child.wait().unwrap();
    assert!(status.success(), "sendmail -bs exited with {status:?}");

    let text = inst.wait_for_text(&inst.mail.join(&me), "hello from sendmail -bs");
    assert!(text.contains("Subject: stand-alone bs test"), "{text}");
    assert!(text.contains("\n.a dot-stuffed line\n"), "{text}");
    assert!(!text.contains("..a dot-stuffed"), "{text}");
    inst.stop();
}

#[test]
fn end_of_input_ends_the_session() {
    let mut inst = Instance::new("");
    inst.start();
    let out = inst.sendmail(&["-bs"], "NOOP\r\n");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("220 "), "{text}");
    assert!(text.contains("250 2.0.0 Ok\r\n"), "{text}");
    let out = inst.sendmail(&["-bs", "bob"], "");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    inst.stop();
}
