//! Recipient tables: local, alias, virtual, relay recipients, unlisted senders.

use super::*;

#[test]
fn unknown_local_users_are_rejected_even_from_mynetworks() {
    let p = policy("");
    let want = "550 5.1.1 <nosuchuser-posthorn@mx.example.com>: Recipient address rejected: \
                User unknown in local recipient table";
    assert_eq!(
        line(Session::outsider().rcpt(&p, "nosuchuser-posthorn@mx.example.com")),
        want
    );
    assert_eq!(
        line(Session::insider().rcpt(&p, "nosuchuser-posthorn@mx.example.com")),
        want
    );
    assert_eq!(
        line(Session::outsider().rcpt(&p, "nosuchuser-posthorn")),
        "550 5.1.1 <nosuchuser-posthorn>: Recipient address rejected: User unknown in local recipient table"
    );
}

#[test]
fn known_local_users_and_aliases() {
    let p = policy("recipient_delimiter = +\n");
    let s = Session::outsider();
    for rcpt in [
        "root@mx.example.com",
        "ROOT@MX.EXAMPLE.COM",
        "root+list@mx.example.com",
        "info@mx.example.com",
        "Sales@localhost",
        "info@[127.0.0.1]",
        "postmaster@mx.example.com",
        "mailer-daemon@localhost",
        "double-bounce@mx.example.com",
    ] {
        assert_eq!(s.rcpt(&p, rcpt), Ok(()), "{rcpt}");
    }
}

#[test]
fn unlisted_recipient_can_be_turned_off() {
    let p = policy("smtpd_reject_unlisted_recipient = no\n");
    assert_eq!(
        Session::outsider().rcpt(&p, "nosuchuser-posthorn@mx.example.com"),
        Ok(())
    );
    let p = policy("local_recipient_maps =\n");
    assert_eq!(
        Session::outsider().rcpt(&p, "nosuchuser-posthorn@mx.example.com"),
        Ok(())
    );
    // The explicit restriction still works with the implicit one off.
    let p = policy(
        "smtpd_reject_unlisted_recipient = no\n\
         smtpd_recipient_restrictions = reject_unlisted_recipient\n",
    );
    assert!(
        Session::outsider()
            .rcpt(&p, "nosuchuser-posthorn@mx.example.com")
            .is_err()
    );
}

#[test]
fn virtual_domains() {
    let dir = tempfile::tempdir().unwrap();
    let mailboxes = hash_table(
        dir.path(),
        "vmailbox",
        &[
            ("anna@mbox.example", "mbox.example/anna/"),
            ("@catchall.example", "catchall/"),
        ],
    );
    let p = policy(&format!(
        "virtual_mailbox_domains = mbox.example, catchall.example\nvirtual_mailbox_maps = {mailboxes}\n\
         virtual_alias_domains = alias.example\n\
         virtual_alias_maps = inline:{{ sales@alias.example=anna@mbox.example, boss@anywhere.example=root }}\n\
         unknown_virtual_mailbox_reject_code = 551\n"
    ));
    let s = Session::outsider();
    assert_eq!(s.rcpt(&p, "anna@mbox.example"), Ok(()));
    assert_eq!(s.rcpt(&p, "Anna@MBOX.example"), Ok(()));
    assert_eq!(s.rcpt(&p, "whoever@catchall.example"), Ok(()));
    assert_eq!(
        line(s.rcpt(&p, "bob@mbox.example")),
        "551 5.1.1 <bob@mbox.example>: Recipient address rejected: User unknown in virtual mailbox table"
    );
    assert_eq!(s.rcpt(&p, "sales@alias.example"), Ok(()));
    assert_eq!(
        line(s.rcpt(&p, "bob@alias.example")),
        "550 5.1.1 <bob@alias.example>: Recipient address rejected: User unknown in virtual alias table"
    );
    // An address in virtual_alias_maps is known in any domain, but relaying still needs
    // permission.
    assert_eq!(Session::insider().rcpt(&p, "boss@anywhere.example"), Ok(()));
    assert!(s.rcpt(&p, "boss@anywhere.example").is_err());
}

#[test]
fn relay_recipients() {
    let p = policy(
        "relay_domains = relay.example\nrelay_recipient_maps = inline:{ joe@relay.example=x }\n",
    );
    let s = Session::outsider();
    assert_eq!(s.rcpt(&p, "joe@relay.example"), Ok(()));
    assert_eq!(
        line(s.rcpt(&p, "jim@relay.example")),
        "550 5.1.1 <jim@relay.example>: Recipient address rejected: User unknown in relay recipient table"
    );
    let p = policy("relay_domains = relay.example\n");
    assert_eq!(s.rcpt(&p, "jim@relay.example"), Ok(()));
}

#[test]
fn unlisted_sender() {
    let p = policy("smtpd_reject_unlisted_sender = yes\n");
    let rcpt = "root@mx.example.com";
    assert_eq!(
        line(
            Session::outsider()
                .from("nosuchuser-posthorn@mx.example.com")
                .rcpt(&p, rcpt)
        ),
        "550 5.1.0 <nosuchuser-posthorn@mx.example.com>: Sender address rejected: User unknown in local recipient table"
    );
    assert_eq!(
        Session::outsider()
            .from("info@mx.example.com")
            .rcpt(&p, rcpt),
        Ok(())
    );
    assert_eq!(Session::outsider().from("").rcpt(&p, rcpt), Ok(()));
    assert_eq!(
        Session::outsider()
            .from("x@elsewhere.example")
            .rcpt(&p, rcpt),
        Ok(())
    );
    let p = policy("smtpd_sender_restrictions = reject_unlisted_sender\n");
    assert!(
        Session::outsider()
            .from("nosuchuser-posthorn@localhost")
            .rcpt(&p, rcpt)
            .is_err()
    );
}

#[test]
fn recipient_table_failures_defer_and_never_permit() {
    let p = policy(
        "virtual_mailbox_domains = mbox.example\n\
         virtual_mailbox_maps = hash:/nonexistent/posthorn/vmailbox\n",
    );
    let reject = Session::insider()
        .rcpt(&p, "anna@mbox.example")
        .unwrap_err();
    assert_eq!(
        reject.reply_line(),
        "451 4.3.0 <anna@mbox.example>: Temporary lookup failure"
    );
    assert!(reject.is_temporary());
    // Recipients that do not need the table are not affected.
    assert_eq!(Session::insider().rcpt(&p, "root@mx.example.com"), Ok(()));

    // A domain list that cannot be read: no decision about relaying.
    let p = policy("relay_domains = hash:/nonexistent/posthorn/relay\n");
    assert_eq!(
        line(Session::outsider().rcpt(&p, "x@elsewhere.example")),
        "451 4.3.0 <x@elsewhere.example>: Temporary lookup failure"
    );
}
