//! smtpd_delay_reject, single restrictions, warn_if_reject, DATA and end of data.

use super::*;

#[test]
fn delayed_client_helo_and_sender_checks_run_at_rcpt() {
    let p = policy(
        "smtpd_client_restrictions = check_client_access inline:{ 192.0.2.10=REJECT }\n\
         smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n\
         smtpd_sender_restrictions = reject_non_fqdn_sender\n",
    );
    let s = Session::outsider().helo("foo").from("a@b");
    assert_eq!(s.at(&p, Stage::Connect, None), Ok(()));
    assert_eq!(s.at(&p, Stage::Helo, None), Ok(()));
    assert_eq!(s.at(&p, Stage::Mail, None), Ok(()));
    assert_eq!(
        line(s.rcpt(&p, "root@mx.example.com")),
        "554 5.7.1 <unknown[192.0.2.10]>: Client host rejected: Access denied"
    );
    let s = Session::new("192.0.2.11", "unknown")
        .helo("foo")
        .from("a@b");
    assert_eq!(
        line(s.rcpt(&p, "root@mx.example.com")),
        "504 5.5.2 <foo>: Helo command rejected: need fully-qualified hostname"
    );
    let s = Session::new("192.0.2.11", "unknown")
        .helo("foo.example")
        .from("a@b");
    assert_eq!(
        line(s.rcpt(&p, "root@mx.example.com")),
        "504 5.5.2 <a@b>: Sender address rejected: need fully-qualified address"
    );
    // Without HELO the HELO list is skipped.
    let s = Session::new("192.0.2.11", "unknown").from("a@b.example");
    assert_eq!(s.rcpt(&p, "root@mx.example.com"), Ok(()));
}

#[test]
fn undelayed_checks_run_at_their_own_stage() {
    let p = policy(
        "smtpd_delay_reject = no\n\
         smtpd_client_restrictions = check_client_access inline:{ 192.0.2.10=REJECT }\n\
         smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n\
         smtpd_sender_restrictions = reject_non_fqdn_sender\n",
    );
    let s = Session::outsider();
    assert_eq!(
        line(s.at(&p, Stage::Connect, None)),
        "554 5.7.1 <unknown[192.0.2.10]>: Client host rejected: Access denied"
    );
    // RCPT does not run the client list again.
    assert_eq!(s.rcpt(&p, "root@mx.example.com"), Ok(()));
    let s = Session::new("192.0.2.11", "unknown").helo("foo");
    assert_eq!(s.at(&p, Stage::Connect, None), Ok(()));
    assert_eq!(
        line(s.at(&p, Stage::Helo, None)),
        "504 5.5.2 <foo>: Helo command rejected: need fully-qualified hostname"
    );
    let s = s.from("a@b");
    assert_eq!(
        line(s.at(&p, Stage::Mail, None)),
        "504 5.5.2 <a@b>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(s.rcpt(&p, "root@mx.example.com"), Ok(()));
}

#[test]
fn permit_ends_only_its_own_list() {
    let p = policy(
        "smtpd_client_restrictions = permit_mynetworks, reject\n\
         smtpd_sender_restrictions = permit\n",
    );
    assert_eq!(
        Session::insider()
            .from("x@y.example")
            .rcpt(&p, "a@elsewhere.example"),
        Ok(())
    );
    assert_eq!(
        line(
            Session::outsider()
                .from("x@y.example")
                .rcpt(&p, "root@mx.example.com")
        ),
        "554 5.7.1 <unknown[192.0.2.10]>: Client host rejected: Access denied"
    );
    // A permitted client is still subject to relay control.
    let p = policy("smtpd_client_restrictions = permit\n");
    assert!(Session::outsider().rcpt(&p, "a@elsewhere.example").is_err());
}

// --- single restrictions -------------------------------------------------------------

#[test]
fn reject_and_defer() {
    let p = policy("smtpd_helo_restrictions = reject\n");
    assert_eq!(
        line(
            Session::outsider()
                .helo("h.example")
                .rcpt(&p, "root@localhost")
        ),
        "554 5.7.1 <h.example>: Helo command rejected: Access denied"
    );
    let p = policy("smtpd_sender_restrictions = defer\ndefer_code = 451\n");
    let reject = Session::outsider()
        .from("s@x.example")
        .rcpt(&p, "root@localhost")
        .unwrap_err();
    assert_eq!(
        reject.reply_line(),
        "451 4.3.2 <s@x.example>: Sender address rejected: Try again later"
    );
    assert!(reject.is_temporary());
    let p = policy("smtpd_sender_restrictions = reject\n");
    assert_eq!(
        line(Session::outsider().from("").rcpt(&p, "root@localhost")),
        "554 5.7.1 <>: Sender address rejected: Access denied"
    );
}

#[test]
fn helo_syntax() {
    let p = policy("smtpd_helo_restrictions = reject_invalid_helo_hostname\n");
    let check = |helo: &str| Session::outsider().helo(helo).rcpt(&p, "root@localhost");
    for good in [
        "mail.example.com",
        "foo",
        "foo.",
        "1.2.3.4",
        "[192.0.2.1]",
        "[IPv6:2001:db8::1]",
    ] {
        assert_eq!(check(good), Ok(()), "{good}");
    }
    assert_eq!(
        line(check("bad_host!")),
        "501 5.5.2 <bad_host!>: Helo command rejected: Invalid name"
    );
    assert_eq!(
        line(check("[321.255.255.255]")),
        "501 5.5.2 <[321.255.255.255]>: Helo command rejected: invalid ip address"
    );
    assert_eq!(
        line(check("[2001:db8::1]")),
        "501 5.5.2 <[2001:db8::1]>: Helo command rejected: invalid ip address"
    );

    let p = policy(
        "smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\nnon_fqdn_reject_code = 550\n",
    );
    let check = |helo: &str| Session::outsider().helo(helo).rcpt(&p, "root@localhost");
    assert_eq!(check("foo.bar"), Ok(()));
    assert_eq!(check("foo.bar."), Ok(()));
    assert_eq!(check("[192.0.2.1]"), Ok(()));
    assert_eq!(
        line(check("foo")),
        "550 5.5.2 <foo>: Helo command rejected: need fully-qualified hostname"
    );
    assert!(check("192.0.2.1").is_err());
    assert!(check("[0.255.255.255]").is_err());
}

#[test]
fn address_syntax() {
    let p = policy(
        "smtpd_sender_restrictions = reject_non_fqdn_sender\n\
         smtpd_recipient_restrictions = reject_non_fqdn_recipient\n",
    );
    let s = Session::insider();
    assert_eq!(s.from("a@b.example").rcpt(&p, "x@y.example"), Ok(()));
    assert_eq!(Session::insider().from("").rcpt(&p, "x@y.example."), Ok(()));
    assert_eq!(
        Session::insider()
            .from("a@[192.0.2.1]")
            .rcpt(&p, "x@y.example"),
        Ok(())
    );
    assert_eq!(
        line(Session::insider().from("foo").rcpt(&p, "x@y.example")),
        "504 5.5.2 <foo>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(
        line(Session::insider().from("a@b.example").rcpt(&p, "foo@foo")),
        "504 5.5.2 <foo@foo>: Recipient address rejected: need fully-qualified address"
    );
    assert_eq!(
        line(Session::insider().rcpt(&p, "root")),
        "504 5.5.2 <root>: Recipient address rejected: need fully-qualified address"
    );
    // RFC 5321: a bare postmaster is always accepted.
    assert_eq!(Session::insider().rcpt(&p, "postmaster"), Ok(()));
}

#[test]
fn unauth_pipelining() {
    let p = policy("smtpd_data_restrictions = reject_unauth_pipelining\n");
    let mut s = Session::outsider().from("a@b.example");
    assert_eq!(s.at(&p, Stage::Data, None), Ok(()));
    s.pipelining = true;
    assert_eq!(
        line(s.at(&p, Stage::Data, None)),
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"
    );
    let p = policy("smtpd_client_restrictions = reject_unauth_pipelining\n");
    assert_eq!(
        line(s.rcpt(&p, "root@localhost")),
        "503 5.5.0 <unknown[192.0.2.10]>: Client host rejected: Improper use of SMTP command pipelining"
    );
}

#[test]
fn data_and_end_of_data_lists() {
    let p = policy(
        "smtpd_data_restrictions = check_sender_access inline:{ spam@x.example=REJECT }\n\
         smtpd_end_of_data_restrictions = reject\n",
    );
    let s = Session::outsider().from("ham@x.example");
    assert_eq!(s.at(&p, Stage::Data, None), Ok(()));
    assert_eq!(
        line(
            Session::outsider()
                .from("spam@x.example")
                .at(&p, Stage::Data, None)
        ),
        "554 5.7.1 <spam@x.example>: Sender address rejected: Access denied"
    );
    assert_eq!(
        line(s.at(&p, Stage::EndOfData, None)),
        "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access denied"
    );
    // Nothing applies at the other stages.
    assert_eq!(s.at(&p, Stage::Connect, None), Ok(()));
}

#[test]
fn permit_sasl_authenticated_never_matches() {
    let p =
        policy("smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n");
    assert!(Session::insider().rcpt(&p, "x@elsewhere.example").is_err());
}

#[test]
fn permit_inet_interfaces() {
    let p = policy(
        "mynetworks = 192.0.2.0/24\n\
         smtpd_relay_restrictions = permit_inet_interfaces, reject_unauth_destination\n",
    );
    assert_eq!(Session::insider().rcpt(&p, "x@elsewhere.example"), Ok(()));
    assert!(Session::outsider().rcpt(&p, "x@elsewhere.example").is_err());
}

#[test]
fn warn_if_reject_only_logs() {
    let p = policy(
        "smtpd_client_restrictions = warn_if_reject reject, check_client_access inline:{ 192.0.2.10=REJECT }\n",
    );
    assert_eq!(
        line(Session::outsider().rcpt(&p, "root@localhost")),
        "554 5.7.1 <unknown[192.0.2.10]>: Client host rejected: Access denied"
    );
    assert_eq!(
        Session::new("192.0.2.11", "unknown").rcpt(&p, "root@localhost"),
        Ok(())
    );
    // The implicit recipient check still runs after a warned one.
    let p = policy("smtpd_recipient_restrictions = warn_if_reject reject_unlisted_recipient\n");
    assert!(
        Session::outsider()
            .rcpt(&p, "nosuchuser-posthorn@localhost")
            .is_err()
    );
    // Lookup failures are never turned into warnings.
    let p = policy(
        "virtual_mailbox_domains = mbox.example\nvirtual_mailbox_maps = hash:/nonexistent/posthorn/v\n\
         smtpd_recipient_restrictions = warn_if_reject reject_unlisted_recipient\n",
    );
    assert!(Session::insider().rcpt(&p, "a@mbox.example").is_err());
}
