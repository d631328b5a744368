use super::*;

/// A backend that accepts everything except the addresses it is told to refuse, and
/// records what it saw.
#[derive(Default)]
struct Rec {
    content: Vec<u8>,
    ended: usize,
    resets: usize,
    notes: Vec<String>,
    refuse_rcpt: Vec<String>,
    pending: bool,
}

impl Backend for Rec {
    fn helo(&mut self, _: &Facts) -> Result<(), Reply> {
        Ok(())
    }
    fn mail(&mut self, _: &Facts, _: &MailFrom) -> Result<(), Reply> {
        Ok(())
    }
    fn rcpt(&mut self, _: &Facts, _: &MailFrom, r: &RcptTo) -> Result<(), Reply> {
        if self.refuse_rcpt.contains(&r.address) {
            return Err(Reply::new(550, "5.1.1", "no"));
        }
        Ok(())
    }
    fn data(&mut self, _: &Facts, _: &MailFrom) -> Result<(), Reply> {
        Ok(())
    }
    fn content(&mut self, b: &[u8]) {
        self.content.extend_from_slice(b);
    }
    fn end(&mut self, _: &Facts) -> Option<Reply> {
        self.ended += 1;
        if self.pending {
            return None;
        }
        Some(Reply::new(
            250,
            "2.0.0",
            format!("Ok: queued as Q{}", self.ended),
        ))
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
    fn vrfy(&mut self, _: &Facts, a: &str) -> Reply {
        Reply::new(252, "2.0.0", a.to_string())
    }
    fn note(&mut self, t: &str, _: &str) {
        self.notes.push(t.to_string());
    }
}

fn settings() -> Settings {
    Settings {
        hostname: "mx.test".into(),
        banner: "mx.test ESMTP posthorn".into(),
        error_sleep: Duration::ZERO,
        ..Settings::default()
    }
}

/// Feeds `input` in one piece; returns the replies as text and the final status.
fn talk(s: &mut Session, b: &mut Rec, input: &[u8]) -> (String, Status) {
    let mut inp = input.to_vec();
    let mut out = Vec::new();
    let st = s.process(&mut inp, &mut out, b);
    (String::from_utf8(out).unwrap(), st)
}

fn codes(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect()
}

#[test]
fn a_whole_pipelined_transaction() {
    let mut s = Session::new(settings());
    let mut b = Rec::default();
    let (o, _) = talk(&mut s, &mut b, b"EHLO c.test\r\n");
    assert!(
        o.contains("250-PIPELINING\r\n") && o.ends_with("250 CHUNKING\r\n"),
        "{o}"
    );
    let (o, st) = talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nDATA\r\n",
    );
    assert_eq!(codes(&o), ["250", "250", "250", "354"], "{o}");
    assert_eq!(st, Status::Ready);
    let (o, _) = talk(&mut s, &mut b, b"Subject: t\r\n\r\n..x\r\n.\r\nQUIT\r\n");
    assert_eq!(codes(&o), ["250", "221"], "{o}");
    assert!(o.contains("queued as Q1"));
    assert_eq!(b.content, b"Subject: t\n\n.x\n");
    assert_eq!(s.stats(), " ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6");
}

#[test]
fn sequence_errors() {
    let mut s = Session::new(settings());
    let mut b = Rec::default();
    let (o, _) = talk(&mut s, &mut b, b"RCPT TO:<x@y>\r\n");
    assert!(o.starts_with("503 5.5.1 Error: need MAIL command"), "{o}");
    let (o, _) = talk(&mut s, &mut b, b"DATA\r\n");
    assert!(o.starts_with("503 5.5.1"), "{o}");
    let (o, _) = talk(&mut s, &mut b, b"MAIL FROM:<>\r\n");
    assert!(o.starts_with("250 2.1.0"), "{o}");
    let (o, _) = talk(&mut s, &mut b, b"MAIL FROM:<>\r\n");
    assert!(o.starts_with("503 5.5.1 Error: nested MAIL command"), "{o}");
    b.refuse_rcpt.push("bad@y".into());
    let (o, _) = talk(&mut s, &mut b, b"RCPT TO:<bad@y>\r\n");
    assert!(o.starts_with("550"), "{o}");
    let (o, _) = talk(&mut s, &mut b, b"DATA\r\n");
    assert!(o.starts_with("554 5.5.1 Error: no valid recipients"), "{o}");
    let (o, _) = talk(&mut s, &mut b, b"FOO\r\n");
    assert!(o.starts_with("502 5.5.2"), "{o}");
    assert!(s.stats().ends_with("commands=1/7"), "{}", s.stats());
}

#[test]
fn unauthorized_pipelining_is_refused() {
    for input in [
        &b"HELO c\r\nMAIL FROM:<a@b>\r\n"[..],
        b"EHLO c\r\nMAIL FROM:<a@b>\r\n",
    ] {
        let mut s = Session::new(settings());
        let mut b = Rec::default();
        let (o, st) = talk(&mut s, &mut b, input);
        assert_eq!(st, Status::Close, "{o}");
        assert!(
            o.ends_with("554 5.5.0 Error: SMTP protocol synchronization\r\n"),
            "{o}"
        );
        assert!(
            b.notes[0].starts_with("improper command pipelining after"),
            "{:?}",
            b.notes
        );
    }
    // Content sent before the 354.
    let mut s = Session::new(settings());
    let mut b = Rec::default();
    talk(&mut s, &mut b, b"EHLO c\r\n");
    let (o, st) = talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(st, Status::Close, "{o}");
    // Allowed when the setting is off; the fact is recorded.
    let mut s = Session::new(Settings {
        forbid_unauth_pipelining: false,
        ..settings()
    });
    let (o, st) = talk(&mut s, &mut b, b"HELO c\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(st, Status::Ready, "{o}");
    assert!(s.facts().unauth_pipelining);
}

#[test]
fn smuggled_end_of_data_stays_content() {
    let mut s = Session::new(settings());
    let mut b = Rec::default();
    talk(&mut s, &mut b, b"EHLO c\r\n");
    talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
    );
    let (o, st) = talk(
        &mut s,
        &mut b,
        b"x\r\n\n.\nMAIL FROM:<evil@b>\r\nRCPT TO:<v@d>\r\nDATA\r\nevil\r\n.\r\n",
    );
    assert_eq!(codes(&o), ["250"], "{o}");
    assert_eq!(st, Status::Ready);
    assert_eq!(b.ended, 1);
    assert_eq!(
        String::from_utf8_lossy(&b.content),
        "x\n\n.\nMAIL FROM:<evil@b>\nRCPT TO:<v@d>\nDATA\nevil\n"
    );
}

#[test]
fn bare_lf_rejected_in_reject_mode() {
    let mut s = Session::new(Settings {
        bare_lf: BareLf::Reject,
        ..settings()
    });
    let mut b = Rec::default();
    talk(&mut s, &mut b, b"EHLO c\r\n");
    talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
    );
    let (o, st) = talk(&mut s, &mut b, b"x\ny\r\n.\r\n");
    assert_eq!(st, Status::Close);
    assert!(o.starts_with("550 5.5.2 Error: bare <LF> received"), "{o}");
    assert_eq!(b.ended, 0);
}

#[test]
fn bdat_chunks() {
    let mut s = Session::new(settings());
    let mut b = Rec::default();
    talk(&mut s, &mut b, b"EHLO c\r\n");
    let (o, _) = talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nA\r\n.\rBDAT 4 LAST\r\n\nB\r\nQUIT\r\n",
    );
    assert_eq!(codes(&o), ["250", "250", "250", "250", "221"], "{o}");
    assert!(o.contains("250 2.0.0 Ok: 5 bytes"), "{o}");
    assert_eq!(b.content, b"A\n.\nB\n");
    // BDAT without a transaction: the chunk is read and dropped.
    let mut s = Session::new(settings());
    talk(&mut s, &mut b, b"EHLO c\r\n");
    let (o, _) = talk(&mut s, &mut b, b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(codes(&o), ["503", "250"], "{o}");
}

#[test]
fn size_limit_during_data_and_bdat() {
    let mut s = Session::new(Settings {
        size_limit: 10,
        ..settings()
    });
    let mut b = Rec::default();
    talk(&mut s, &mut b, b"EHLO c\r\n");
    let (o, _) = talk(&mut s, &mut b, b"MAIL FROM:<a@b> SIZE=11\r\n");
    assert!(o.starts_with("552 5.3.4"), "{o}");
    talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
    );
    let (o, _) = talk(&mut s, &mut b, b"0123456789abc\r\n.\r\n");
    assert!(
        o.starts_with("552 5.3.4 Message size exceeds fixed limit"),
        "{o}"
    );
    assert_eq!(b.ended, 0);
    let (o, _) = talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 20 LAST\r\n01234567890123456789",
    );
    assert!(
        o.ends_with("552 5.3.4 Message size exceeds fixed limit\r\n"),
        "{o}"
    );
    assert_eq!(b.ended, 0);
}

#[test]
fn errors_are_limited() {
    let mut s = Session::new(Settings {
        hard_error_limit: 3,
        soft_error_limit: 2,
        error_sleep: Duration::from_millis(5),
        ..settings()
    });
    let mut b = Rec::default();
    let (_, st) = talk(&mut s, &mut b, b"X\r\n");
    assert_eq!(st, Status::Ready);
    let (_, st) = talk(&mut s, &mut b, b"X\r\n");
    assert_eq!(st, Status::Sleep(Duration::from_millis(5)));
    let (o, st) = talk(&mut s, &mut b, b"X\r\n");
    assert_eq!(st, Status::Close);
    assert!(
        o.ends_with("421 4.7.0 mx.test Error: too many errors\r\n"),
        "{o}"
    );
    assert_eq!(s.error_limit_reached(), Some("UNKNOWN"));
}

#[test]
fn junk_commands_count_as_errors_after_the_limit() {
    let mut s = Session::new(Settings {
        junk_limit: 2,
        hard_error_limit: 3,
        ..settings()
    });
    let mut b = Rec::default();
    let mut closed = false;
    for _ in 0..10 {
        let (_, st) = talk(&mut s, &mut b, b"NOOP\r\n");
        if st == Status::Close {
            closed = true;
            break;
        }
    }
    assert!(closed);
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut s = Session::new(Settings {
        starttls: true,
        ..settings()
    });
    let mut b = Rec::default();
    let (o, _) = talk(&mut s, &mut b, b"EHLO c\r\n");
    assert!(o.contains("250-STARTTLS"));
    let mut inp = b"STARTTLS\r\nRSET\r\n".to_vec();
    let mut out = Vec::new();
    let st = s.process(&mut inp, &mut out, &mut b);
    assert_eq!(st, Status::StartTls);
    assert!(inp.is_empty());
    assert_eq!(out, b"220 2.0.0 Ready to start TLS\r\n");
    s.tls_started();
    let (o, _) = talk(&mut s, &mut b, b"EHLO c\r\n");
    assert!(!o.contains("STARTTLS"), "{o}");
    let (o, _) = talk(&mut s, &mut b, b"STARTTLS\r\n");
    assert!(o.starts_with("554 5.5.1 Error: TLS already active"), "{o}");
}

#[test]
fn tls_required_gates_mail() {
    let mut s = Session::new(Settings {
        starttls: true,
        tls_required: true,
        ..settings()
    });
    let mut b = Rec::default();
    talk(&mut s, &mut b, b"EHLO c\r\n");
    let (o, _) = talk(&mut s, &mut b, b"MAIL FROM:<a@b>\r\n");
    assert!(
        o.starts_with("530 5.7.0 Must issue a STARTTLS command first"),
        "{o}"
    );
}

#[test]
fn hostile_command_lines() {
    let mut s = Session::new(settings());
    let mut b = Rec::default();
    let (o, _) = talk(&mut s, &mut b, b"NO\0OP\r\n");
    assert!(o.starts_with("500 5.5.2"), "{o}");
    let (o, _) = talk(&mut s, &mut b, b"MAIL FROM:<\xff@b>\r\n");
    assert!(o.starts_with("500 5.5.2 Error: bad UTF-8"), "{o}");
    let (o, _) = talk(&mut s, &mut b, "MAIL FROM:<ü@b.test>\r\n".as_bytes());
    assert!(o.starts_with("553 5.6.7"), "{o}");
    let mut long = vec![b'X'; 5000];
    long.extend_from_slice(b"\r\nNOOP\r\n");
    let mut inp = long;
    let mut out = Vec::new();
    // Arrives in pieces: the over-long line is skipped, the next command works.
    let tail = inp.split_off(3000);
    s.process(&mut inp, &mut out, &mut b);
    let mut inp2 = tail;
    s.process(&mut inp2, &mut out, &mut b);
    let o = String::from_utf8(out).unwrap();
    assert_eq!(codes(&o), ["500", "250"], "{o}");
}

#[test]
fn pending_end_waits_for_the_backend() {
    let mut s = Session::new(settings());
    let mut b = Rec {
        pending: true,
        ..Rec::default()
    };
    talk(&mut s, &mut b, b"EHLO c\r\n");
    talk(
        &mut s,
        &mut b,
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
    );
    let mut inp = b"x\r\n.\r\nQUIT\r\n".to_vec();
    let mut out = Vec::new();
    assert_eq!(s.process(&mut inp, &mut out, &mut b), Status::Pending);
    assert!(out.is_empty());
    assert_eq!(inp, b"QUIT\r\n");
    let st = s.resume(
        Reply::new(451, "4.3.0", "Error: queue file write error"),
        &mut out,
    );
    assert_eq!(st, Status::Ready);
    assert_eq!(s.process(&mut inp, &mut out, &mut b), Status::Close);
    assert_eq!(codes(&String::from_utf8(out).unwrap()), ["451", "221"]);
}
