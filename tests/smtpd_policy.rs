//! smtpd's restriction lists end to end, over real loopback SMTP sessions: relay control
//! (mynetworks, mydestination, relay_domains, smtpd_relay_restrictions), unknown local and
//! virtual recipients, the access tables (check_client/helo/sender/recipient_access with
//! every result kind), the reject_non_fqdn_* and reject_invalid_helo_hostname checks,
//! smtpd_helo_required, reject_unauth_pipelining, and a broken restriction list that must
//! fail safe (451 4.3.5, never an open relay). Replies and log lines are Postfix's.

use std::time::Duration;

use posthorn_testkit::Instance;
use posthorn_testkit::smtp::{Client, assert_reply, local_user, mbox, session, started};

const T: Duration = Duration::from_secs(20);

/// Sends `line` and asserts the one-line reply `code text`.
fn expect_exact(c: &mut Client, line: &str, code: u16, text: &str) {
    let r = c.cmd(line);
    assert_reply(&r, code, text, line);
}

/// A new session (`EHLO helo`, MAIL FROM:<a@b.test>) in which `RCPT TO:<rcpt>` gets the
/// one-line reply `code text` exactly; then QUIT.
fn rcpt_gets(inst: &Instance, helo: &str, rcpt: &str, code: u16, text: &str) {
    let mut c = session(inst, helo);
    c.expect("MAIL FROM:<a@b.test>", 250);
    expect_exact(&mut c, &format!("RCPT TO:<{rcpt}>"), code, text);
    c.expect("QUIT", 221);
}

/// A new session (`EHLO helo`, MAIL FROM:<a@b.test>) in which `RCPT TO:<rcpt>` is
/// accepted; then QUIT.
fn rcpt_accepted(inst: &Instance, helo: &str, rcpt: &str) {
    let mut c = session(inst, helo);
    c.expect("MAIL FROM:<a@b.test>", 250);
    c.expect(&format!("RCPT TO:<{rcpt}>"), 250);
    c.expect("QUIT", 221);
}

/// Writes ROOT/tables/NAME and builds it with postmap; returns `hash:PATH`.
fn access_table(inst: &Instance, name: &str, text: &str) -> String {
    let src = inst.write_file(&format!("tables/{name}"), text);
    let table = format!("hash:{}", src.display());
    let out = inst
        .command("postmap")
        .arg(&table)
        .output()
        .expect("run postmap");
    assert!(
        out.status.success(),
        "postmap {table}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    table
}

/// A started instance (main.cf `extra`) whose `smtpd_KIND_restrictions` is
/// `check_KIND_access` with the table ROOT/tables/NAME built from `text`.
fn with_access_check(extra: &str, kind: &str, name: &str, text: &str) -> Instance {
    let mut inst = Instance::new(extra);
    let table = access_table(&inst, name, text);
    inst.add_main_cf(&format!(
        "smtpd_{kind}_restrictions = check_{kind}_access {table}\n"
    ));
    inst.start();
    inst
}

/// The log line for `needle`, which must be written by smtpd and end with `tail`.
fn assert_smtpd_log(inst: &Instance, needle: &str, tail: &str) {
    let line = inst.log_line(needle);
    assert!(line.contains("posthorn/smtpd["), "not smtpd's line: {line}");
    assert!(
        line.ends_with(tail),
        "log line\n  {line}\nshould end with\n  {tail}"
    );
}

// ---------------------------------------------------------------------------------------
// Relay control

#[test]
fn loopback_is_in_mynetworks_and_may_relay_by_default() {
    let inst = started("");
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    // 127.0.0.1 is in the default mynetworks: permit_mynetworks lets it relay.
    c.expect("RCPT TO:<x@elsewhere.test>", 250);
    c.expect(&format!("RCPT TO:<{}>", local_user(&inst)), 250);
    c.expect("RSET", 250);
    c.expect("QUIT", 221);
    assert!(
        !inst.log_text().contains("Relay access denied"),
        "{}",
        inst.log_text()
    );
}

#[test]
fn relay_outside_mynetworks_is_deferred_by_default() {
    // Postfix's default smtpd_relay_restrictions ends in defer_unauth_destination: 454.
    let inst = started("mynetworks = 192.0.2.0/24\n");
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    expect_exact(
        &mut c,
        "RCPT TO:<x@elsewhere.test>",
        454,
        "4.7.1 <x@elsewhere.test>: Relay access denied",
    );
    // The session goes on: the local destination is still accepted.
    c.expect(&format!("RCPT TO:<{}>", local_user(&inst)), 250);
    c.expect("QUIT", 221);
    assert_smtpd_log(
        &inst,
        "NOQUEUE: reject: RCPT from",
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 454 4.7.1 <x@elsewhere.test>: \
         Relay access denied; from=<a@b.test> to=<x@elsewhere.test> proto=ESMTP \
         helo=<client.example.test>",
    );
}

#[test]
fn reject_unauth_destination_refuses_relay_with_554_and_logs_it() {
    let inst = started(
        "mynetworks = 192.0.2.0/24\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n",
    );
    rcpt_gets(
        &inst,
        "h",
        "x@elsewhere.test",
        554,
        "5.7.1 <x@elsewhere.test>: Relay access denied",
    );
    assert_smtpd_log(
        &inst,
        "NOQUEUE: reject: RCPT from",
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554 5.7.1 <x@elsewhere.test>: \
         Relay access denied; from=<a@b.test> to=<x@elsewhere.test> proto=ESMTP helo=<h>",
    );
}

#[test]
fn mydestination_and_relay_domains_are_accepted_from_outside_mynetworks() {
    let inst = started(
        "mynetworks = 192.0.2.0/24\n\
         relay_domains = other.test\n",
    );
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    c.expect(&format!("RCPT TO:<{}>", local_user(&inst)), 250);
    c.expect(&format!("RCPT TO:<{}@localhost>", inst.user()), 250);
    c.expect("RCPT TO:<anyone@other.test>", 250);
    let r = c.cmd("RCPT TO:<x@elsewhere.test>");
    assert_eq!(r.code, 454, "{}", r.wire());
    c.expect("RSET", 250);
    c.expect("QUIT", 221);
}

#[test]
fn mail_from_outside_mynetworks_to_a_local_user_is_delivered() {
    let inst = started("mynetworks = 192.0.2.0/24\n");
    let mut c = session(&inst, "client.example.test");
    let me = local_user(&inst);
    let id = c.send_mail(
        "a@b.test",
        &[&me],
        "Subject: inbound policy\r\n\r\nhello from outside\r\n",
    );
    c.expect("QUIT", 221);
    let text = inst.wait_for_text(&mbox(&inst), "hello from outside");
    assert!(text.contains("Subject: inbound policy"), "{text}");
    inst.expect_log(&format!("{id}: client=localhost[127.0.0.1]"), T);
}

// ---------------------------------------------------------------------------------------
// Unknown recipients

#[test]
fn unknown_local_user_is_rejected_at_rcpt() {
    // The default local_recipient_maps = proxy:unix:passwd.byname $alias_maps.
    let inst = started("");
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    expect_exact(
        &mut c,
        "RCPT TO:<nosuchuser@mail.example.test>",
        550,
        "5.1.1 <nosuchuser@mail.example.test>: Recipient address rejected: \
         User unknown in local recipient table",
    );
    // A known account is accepted and the mail delivered.
    c.expect(&format!("RCPT TO:<{}>", local_user(&inst)), 250);
    let r = c.data("Subject: known user\r\n\r\nfor a real account\r\n");
    assert_eq!(r.code, 250, "{}", r.wire());
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "for a real account");
    assert_smtpd_log(
        &inst,
        "reject: RCPT from",
        "reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nosuchuser@mail.example.test>: \
         Recipient address rejected: User unknown in local recipient table; from=<a@b.test> \
         to=<nosuchuser@mail.example.test> proto=ESMTP helo=<client.example.test>",
    );
}

#[test]
fn unknown_virtual_mailbox_user_is_rejected_at_rcpt() {
    let mut inst = Instance::new("");
    let cf = inst.virtual_cf("alice@virt.test=alice/");
    inst.add_main_cf(&cf);
    inst.start();
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    expect_exact(
        &mut c,
        "RCPT TO:<bob@virt.test>",
        550,
        "5.1.1 <bob@virt.test>: Recipient address rejected: \
         User unknown in virtual mailbox table",
    );
    c.expect("RCPT TO:<alice@virt.test>", 250);
    let r = c.data("Subject: virtual\r\n\r\nto alice\r\n");
    assert_eq!(r.code, 250, "{}", r.wire());
    c.expect("QUIT", 221);
    let ok = inst.wait_until(T, || !inst.maildir(&inst.mail.join("alice")).is_empty());
    assert!(ok, "alice's maildir stays empty; log:\n{}", inst.log_text());
}

// ---------------------------------------------------------------------------------------
// Access tables

#[test]
fn check_sender_access_results() {
    let inst = with_access_check(
        "",
        "sender",
        "sender_access",
        "reject@s.test    REJECT\n\
         custom@s.test    REJECT custom text\n\
         defer@s.test     DEFER\n\
         ok@s.test        OK\n\
         dunno@s.test     DUNNO\n\
         goaway@s.test    550 5.7.0 go away\n\
         later@s.test     450 try later\n",
    );
    let me = local_user(&inst);
    let mut c = session(&inst, "client.example.test");
    let cases: [(&str, u16, &str); 5] = [
        (
            "reject@s.test",
            554,
            "5.7.1 <reject@s.test>: Sender address rejected: Access denied",
        ),
        (
            "custom@s.test",
            554,
            "5.7.1 <custom@s.test>: Sender address rejected: custom text",
        ),
        (
            "defer@s.test",
            450,
            "4.7.1 <defer@s.test>: Sender address rejected: Access denied",
        ),
        (
            "goaway@s.test",
            550,
            "5.7.0 <goaway@s.test>: Sender address rejected: go away",
        ),
        (
            "later@s.test",
            450,
            "4.7.1 <later@s.test>: Sender address rejected: try later",
        ),
    ];
    for (sender, code, text) in cases {
        // smtpd_delay_reject = yes (default): MAIL is accepted, RCPT carries the verdict.
        c.expect(&format!("MAIL FROM:<{sender}>"), 250);
        expect_exact(&mut c, &format!("RCPT TO:<{me}>"), code, text);
        c.expect("RSET", 250);
    }
    for sender in ["ok@s.test", "dunno@s.test", "unlisted@s.test"] {
        c.expect(&format!("MAIL FROM:<{sender}>"), 250);
        c.expect(&format!("RCPT TO:<{me}>"), 250);
        c.expect("RSET", 250);
    }
    // OK really lets the mail through.
    c.send_mail(
        "ok@s.test",
        &[&me],
        "Subject: sender ok\r\n\r\nok sender\r\n",
    );
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "ok sender");
    assert_smtpd_log(
        &inst,
        "<reject@s.test>: Sender address rejected",
        &format!(
            "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554 5.7.1 <reject@s.test>: \
             Sender address rejected: Access denied; from=<reject@s.test> to=<{me}> \
             proto=ESMTP helo=<client.example.test>"
        ),
    );
}

#[test]
fn check_client_access_rejects_at_rcpt_with_delay_reject() {
    let inst = with_access_check("", "client", "client_access", "127.0.0.1 REJECT\n");
    rcpt_gets(
        &inst,
        "client.example.test",
        &local_user(&inst),
        554,
        "5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied",
    );
    inst.expect_log("Client host rejected: Access denied", T);
}

#[test]
fn check_client_access_rejects_at_connect_without_delay_reject() {
    // smtpd_delay_reject = no: the client restrictions run when the client connects.
    // Postfix answers the connection with the rejection instead of 220 and every command
    // but QUIT with 503 5.7.0; either way no command may succeed.
    let inst = with_access_check(
        "smtpd_delay_reject = no\n",
        "client",
        "client_access",
        "127.0.0.1 REJECT\n",
    );
    let (mut c, greeting) = Client::connect_any(inst.smtp_port);
    let want = "5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied";
    if greeting.code == 220 {
        // The rejection then comes at the first command.
        let r = c.cmd("EHLO client.example.test");
        assert_reply(&r, 554, want, "EHLO after a 220 to a rejected client");
    } else {
        assert_reply(&greeting, 554, want, "greeting to a rejected client");
        let r = c.cmd("EHLO client.example.test");
        assert!(r.code >= 500, "EHLO after the rejection: {}", r.wire());
    }
    let r = c.cmd("MAIL FROM:<a@b.test>");
    assert!(r.code >= 500, "MAIL from a rejected client: {}", r.wire());
    let r = c.cmd(&format!("RCPT TO:<{}>", local_user(&inst)));
    assert!(r.code >= 500, "RCPT from a rejected client: {}", r.wire());
    c.expect("QUIT", 221);
    inst.expect_log("Client host rejected: Access denied", T);
}

#[test]
fn check_helo_access_rejects_the_listed_helo_name() {
    let inst = with_access_check("", "helo", "helo_access", "bad.helo.test REJECT\n");
    let me = local_user(&inst);
    rcpt_gets(
        &inst,
        "bad.helo.test",
        &me,
        554,
        "5.7.1 <bad.helo.test>: Helo command rejected: Access denied",
    );
    rcpt_accepted(&inst, "good.helo.test", &me);
}

#[test]
fn check_recipient_access_rejects_the_listed_recipient() {
    // local_recipient_maps is empty so that only the access table decides.
    let inst = with_access_check(
        "local_recipient_maps =\n",
        "recipient",
        "rcpt_access",
        "blocked@mail.example.test REJECT\n\
         later@mail.example.test 450 4.2.1 mailbox busy\n",
    );
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    expect_exact(
        &mut c,
        "RCPT TO:<blocked@mail.example.test>",
        554,
        "5.7.1 <blocked@mail.example.test>: Recipient address rejected: Access denied",
    );
    expect_exact(
        &mut c,
        "RCPT TO:<later@mail.example.test>",
        450,
        "4.2.1 <later@mail.example.test>: Recipient address rejected: mailbox busy",
    );
    c.expect(&format!("RCPT TO:<{}>", local_user(&inst)), 250);
    c.expect("QUIT", 221);
}

// ---------------------------------------------------------------------------------------
// Syntax checks on names and addresses

#[test]
fn reject_non_fqdn_sender_and_recipient() {
    let inst = started(
        "local_recipient_maps =\n\
         smtpd_sender_restrictions = reject_non_fqdn_sender\n\
         smtpd_recipient_restrictions = reject_non_fqdn_recipient\n",
    );
    let me = local_user(&inst);
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<alice@nodot>", 250);
    expect_exact(
        &mut c,
        &format!("RCPT TO:<{me}>"),
        504,
        "5.5.2 <alice@nodot>: Sender address rejected: need fully-qualified address",
    );
    c.expect("RSET", 250);
    c.expect("MAIL FROM:<alice@example.test>", 250);
    expect_exact(
        &mut c,
        "RCPT TO:<bob@nodot>",
        504,
        "5.5.2 <bob@nodot>: Recipient address rejected: need fully-qualified address",
    );
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    c.expect("QUIT", 221);
}

#[test]
fn reject_non_fqdn_helo_hostname() {
    let inst = started("smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n");
    let me = local_user(&inst);
    rcpt_gets(
        &inst,
        "nodot",
        &me,
        504,
        "5.5.2 <nodot>: Helo command rejected: need fully-qualified hostname",
    );
    rcpt_accepted(&inst, "client.example.test", &me);
}

#[test]
fn reject_invalid_helo_hostname() {
    let inst = started("smtpd_helo_restrictions = reject_invalid_helo_hostname\n");
    let me = local_user(&inst);
    rcpt_gets(
        &inst,
        "bad!name.test",
        &me,
        501,
        "5.5.2 <bad!name.test>: Helo command rejected: Invalid name",
    );
    // An address literal and an ordinary name are valid.
    for helo in ["[127.0.0.1]", "client.example.test"] {
        rcpt_accepted(&inst, helo, &me);
    }
}

#[test]
fn helo_required_refuses_mail_before_helo() {
    let inst = started("smtpd_helo_required = yes\n");
    let mut c = Client::connect(inst.smtp_port);
    expect_exact(
        &mut c,
        "MAIL FROM:<a@b.test>",
        503,
        "5.5.1 Error: send HELO/EHLO first",
    );
    c.expect("HELO client.example.test", 250);
    c.expect("MAIL FROM:<a@b.test>", 250);
    c.expect(&format!("RCPT TO:<{}>", local_user(&inst)), 250);
    c.expect("QUIT", 221);
}

#[test]
fn reject_unauth_pipelining_refuses_data_sent_ahead() {
    // Only the restriction is tested here: smtpd_forbid_unauth_pipelining (which would
    // hang up on the client) is off.
    let inst = started(
        "smtpd_data_restrictions = reject_unauth_pipelining\n\
         smtpd_forbid_unauth_pipelining = no\n",
    );
    let me = local_user(&inst);
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    // DATA and the message in one write, without waiting for 354.
    c.send_raw(b"DATA\r\nSubject: pipelined\r\n\r\nsent ahead\r\n.\r\n");
    let r = c.reply();
    assert_reply(
        &r,
        503,
        "5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining",
        "DATA sent ahead",
    );
    drop(c);
    // The same transaction without pipelining goes through.
    let mut c = session(&inst, "client.example.test");
    c.send_mail(
        "a@b.test",
        &[&me],
        "Subject: in step\r\n\r\nwaited for 354\r\n",
    );
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "waited for 354");
    assert!(
        !std::fs::read_to_string(mbox(&inst))
            .unwrap_or_default()
            .contains("sent ahead"),
        "the pipelined message must not be delivered"
    );
}

// ---------------------------------------------------------------------------------------
// Failing safe

#[test]
fn unknown_restriction_fails_safe_with_451() {
    let inst = started("smtpd_recipient_restrictions = reject_bogus\n");
    let mut c = session(&inst, "client.example.test");
    c.expect("MAIL FROM:<a@b.test>", 250);
    for rcpt in ["x@elsewhere.test".to_string(), local_user(&inst)] {
        expect_exact(
            &mut c,
            &format!("RCPT TO:<{rcpt}>"),
            451,
            "4.3.5 Server configuration error",
        );
    }
    // No recipient was accepted, so DATA has nobody to deliver to.
    let r = c.cmd("DATA");
    assert_ne!(r.code, 354, "DATA without recipients: {}", r.wire());
    c.expect("QUIT", 221);
    inst.expect_log("reject_bogus", T);
}

#[test]
fn unknown_relay_restriction_is_no_open_relay() {
    let inst = started(
        "mynetworks = 192.0.2.0/24\n\
         smtpd_relay_restrictions = permit_nowhere_bogus, permit\n",
    );
    rcpt_gets(
        &inst,
        "client.example.test",
        "x@elsewhere.test",
        451,
        "4.3.5 Server configuration error",
    );
}
