//! Relay control: mynetworks, our domains, relay_domains, routed addresses.

use super::*;

#[test]
fn relay_is_deferred_by_default_for_strangers() {
    let p = policy("");
    let r = Session::outsider()
        .from("a@b.example")
        .rcpt(&p, "user@elsewhere.example");
    let reject = r.unwrap_err();
    assert_eq!(
        reject.reply_line(),
        "454 4.7.1 <user@elsewhere.example>: Relay access denied"
    );
    assert!(reject.is_temporary());
}

#[test]
fn mynetworks_may_relay() {
    let p = policy("");
    assert_eq!(
        Session::insider().rcpt(&p, "user@elsewhere.example"),
        Ok(())
    );
    assert_eq!(
        Session::new("::1", "localhost").rcpt(&p, "user@elsewhere.example"),
        Ok(())
    );
    assert_eq!(
        Session::new("::ffff:127.0.0.9", "unknown").rcpt(&p, "user@elsewhere.example"),
        Ok(())
    );
    let p = policy("mynetworks = 192.0.2.0/24, [2001:db8::]/32\n");
    assert_eq!(Session::outsider().rcpt(&p, "x@elsewhere.example"), Ok(()));
    assert_eq!(
        Session::new("2001:db8::5", "unknown").rcpt(&p, "x@elsewhere.example"),
        Ok(())
    );
    assert!(Session::insider().rcpt(&p, "x@elsewhere.example").is_err());
}

#[test]
fn reject_unauth_destination_in_recipient_restrictions() {
    let p = policy(
        "smtpd_relay_restrictions =\n\
         smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n",
    );
    assert_eq!(
        line(Session::outsider().rcpt(&p, "user@elsewhere.example")),
        "554 5.7.1 <user@elsewhere.example>: Relay access denied"
    );
    assert_eq!(Session::outsider().rcpt(&p, "root@mx.example.com"), Ok(()));
    assert_eq!(
        Session::insider().rcpt(&p, "user@elsewhere.example"),
        Ok(())
    );
    let p = policy(
        "smtpd_relay_restrictions =\nrelay_domains_reject_code = 550\n\
         smtpd_recipient_restrictions = reject_unauth_destination\n",
    );
    assert_eq!(
        line(Session::insider().rcpt(&p, "u@elsewhere.example")),
        "550 5.7.1 <u@elsewhere.example>: Relay access denied"
    );
}

#[test]
fn our_domains_are_authorized_destinations() {
    let p = policy(
        "virtual_alias_domains = alias.example\nvirtual_alias_maps = inline:{ a@alias.example=root }\n\
         virtual_mailbox_domains = mbox.example\nrelay_domains = relay.example, .relay.example\n",
    );
    let s = Session::outsider();
    for rcpt in [
        "root@mx.example.com",
        "root@localhost",
        "root@[127.0.0.1]",
        "a@alias.example",
        "any@mbox.example",
        "any@relay.example",
        "any@sub.relay.example",
        "root",
        "postmaster",
        "Postmaster",
    ] {
        assert_eq!(s.rcpt(&p, rcpt), Ok(()), "{rcpt}");
    }
    for rcpt in [
        "x@example.com",
        "x@[192.0.2.1]",
        "x@notrelay.example",
        "root%x@mx.example.com",
    ] {
        assert!(s.rcpt(&p, rcpt).is_err(), "{rcpt}");
    }
}

#[test]
fn relay_needs_both_relay_and_recipient_lists() {
    let p = policy(
        "smtpd_recipient_restrictions = check_recipient_access inline:{ blocked@elsewhere.example=REJECT }\n",
    );
    assert_eq!(Session::insider().rcpt(&p, "ok@elsewhere.example"), Ok(()));
    assert_eq!(
        line(Session::insider().rcpt(&p, "blocked@elsewhere.example")),
        "554 5.7.1 <blocked@elsewhere.example>: Recipient address rejected: Access denied"
    );
    // A permit in the recipient list does not override the relay list.
    let p = policy("smtpd_recipient_restrictions = permit\n");
    assert!(Session::outsider().rcpt(&p, "x@elsewhere.example").is_err());
}

#[test]
fn relay_list_runs_before_recipient_list() {
    let p = policy("smtpd_recipient_restrictions = reject\n");
    assert_eq!(
        line(Session::outsider().rcpt(&p, "x@elsewhere.example")),
        "454 4.7.1 <x@elsewhere.example>: Relay access denied"
    );
    let p = policy(
        "smtpd_recipient_restrictions = reject\nsmtpd_relay_before_recipient_restrictions = no\n",
    );
    assert_eq!(
        line(Session::outsider().rcpt(&p, "x@elsewhere.example")),
        "554 5.7.1 <x@elsewhere.example>: Recipient address rejected: Access denied"
    );
}

#[test]
fn permit_auth_destination() {
    let p = policy("smtpd_relay_restrictions = permit_auth_destination, reject\n");
    assert_eq!(Session::outsider().rcpt(&p, "root@mx.example.com"), Ok(()));
    assert_eq!(
        line(Session::insider().rcpt(&p, "x@elsewhere.example")),
        "554 5.7.1 <x@elsewhere.example>: Recipient address rejected: Access denied"
    );
}

#[test]
fn routed_addresses_are_not_permitted_by_tables() {
    let p = policy(
        "smtpd_relay_restrictions = check_recipient_access inline:{ mx.example.com=OK }, reject_unauth_destination\n",
    );
    assert_eq!(Session::outsider().rcpt(&p, "root@mx.example.com"), Ok(()));
    assert_eq!(
        line(Session::outsider().rcpt(&p, "x%elsewhere.example@mx.example.com")),
        "554 5.7.1 <x%elsewhere.example@mx.example.com>: Relay access denied"
    );
    let p = policy(
        "allow_untrusted_routing = yes\nlocal_recipient_maps =\n\
         smtpd_relay_restrictions = reject_unauth_destination\n",
    );
    assert_eq!(
        Session::outsider().rcpt(&p, "x%elsewhere.example@mx.example.com"),
        Ok(())
    );
}
