//! Access tables: actions, lookup orders, failures, restriction classes.

use super::*;

#[test]
fn access_table_actions() {
    let p = policy(
        "smtpd_sender_restrictions = check_sender_access inline:{ \
           ok@x.example=OK, relay@x.example=RELAY, dunno@x.example=DUNNO, \
           {text@x.example = REJECT go away}, {dsn@x.example = REJECT 5.7.0 not you}, \
           defer@x.example=DEFER, {defertext@x.example = defer 4.2.0 later}, \
           {num5@x.example = 550 no such sender}, {num4@x.example = 421 4.4.5 busy}, \
           {numdsn@x.example = 553 5.1.1 bad}, \
           stamp@x.example=20240101, {info@x.example = INFO seen}, {warn@x.example = WARN seen} }, \
           reject\n",
    );
    let s = |sender: &str| Session::outsider().from(sender).rcpt(&p, "root@localhost");
    for ok in ["ok@x.example", "relay@x.example", "stamp@x.example"] {
        assert_eq!(s(ok), Ok(()), "{ok}");
    }
    for falls_through in [
        "dunno@x.example",
        "info@x.example",
        "warn@x.example",
        "none@x.example",
    ] {
        assert_eq!(
            line(s(falls_through)),
            format!("554 5.7.1 <{falls_through}>: Sender address rejected: Access denied")
        );
    }
    assert_eq!(
        line(s("text@x.example")),
        "554 5.7.1 <text@x.example>: Sender address rejected: go away"
    );
    assert_eq!(
        line(s("dsn@x.example")),
        "554 5.7.0 <dsn@x.example>: Sender address rejected: not you"
    );
    assert_eq!(
        line(s("defer@x.example")),
        "450 4.7.1 <defer@x.example>: Sender address rejected: Access denied"
    );
    assert_eq!(
        line(s("defertext@x.example")),
        "450 4.2.0 <defertext@x.example>: Sender address rejected: later"
    );
    assert_eq!(
        line(s("num5@x.example")),
        "550 5.7.1 <num5@x.example>: Sender address rejected: no such sender"
    );
    assert_eq!(
        line(s("num4@x.example")),
        "421 4.4.5 <num4@x.example>: Sender address rejected: busy"
    );
    // A recipient status code becomes the matching sender code.
    assert_eq!(
        line(s("numdsn@x.example")),
        "553 5.1.0 <numdsn@x.example>: Sender address rejected: bad"
    );
}

#[test]
fn access_table_codes_come_from_main_cf() {
    let p = policy(
        "access_map_reject_code = 550\naccess_map_defer_code = 451\n\
         smtpd_recipient_restrictions = check_recipient_access inline:{ r@y.example=REJECT, d@y.example=DEFER }\n",
    );
    assert_eq!(
        line(Session::insider().rcpt(&p, "r@y.example")),
        "550 5.7.1 <r@y.example>: Recipient address rejected: Access denied"
    );
    assert_eq!(
        line(Session::insider().rcpt(&p, "d@y.example")),
        "451 4.7.1 <d@y.example>: Recipient address rejected: Access denied"
    );
}

#[test]
fn access_results_may_be_restrictions() {
    let p = policy(
        "smtpd_relay_restrictions = check_client_access inline:{ \
           {192.0.2.10 = permit_auth_destination reject}, 192.0.2.11=reject_unauth_destination, \
           192.0.2.12=permit_mynetworks }, permit_mynetworks, reject_unauth_destination\n",
    );
    assert_eq!(Session::outsider().rcpt(&p, "root@localhost"), Ok(()));
    assert_eq!(
        line(Session::outsider().rcpt(&p, "x@elsewhere.example")),
        "554 5.7.1 <unknown[192.0.2.10]>: Client host rejected: Access denied"
    );
    assert_eq!(
        line(Session::new("192.0.2.11", "unknown").rcpt(&p, "x@elsewhere.example")),
        "554 5.7.1 <x@elsewhere.example>: Relay access denied"
    );
    assert!(
        Session::new("192.0.2.12", "unknown")
            .rcpt(&p, "x@elsewhere.example")
            .is_err()
    );
}

#[test]
fn broken_access_entries_answer_451() {
    let p = policy(
        "smtpd_client_restrictions = check_client_access inline:{ \
           192.0.2.10=HOLD, 192.0.2.11=hash:/etc/whatever, 192.0.2.12=no_such_restriction, \
           192.0.2.13=DISCARD }, permit\n",
    );
    for addr in ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"] {
        let reject = Session::new(addr, "unknown")
            .rcpt(&p, "x@elsewhere.example")
            .unwrap_err();
        assert_eq!(
            reject.reply_line(),
            "451 4.3.5 Server configuration error",
            "{addr}"
        );
    }
}

#[test]
fn client_lookup_order() {
    let p = policy(
        "smtpd_client_restrictions = check_client_access inline:{ \
           192.0.2=REJECT, {198.51.100.7 = REJECT exact}, 2001:db8:1=REJECT, \
           .bad.example=REJECT, good.bad.example=OK }\n",
    );
    let check = |addr: &str, name: &str| Session::new(addr, name).rcpt(&p, "root@localhost");
    assert_eq!(
        line(check("192.0.2.77", "unknown")),
        "554 5.7.1 <unknown[192.0.2.77]>: Client host rejected: Access denied"
    );
    assert_eq!(
        line(check("::ffff:192.0.2.78", "unknown")),
        "554 5.7.1 <unknown[192.0.2.78]>: Client host rejected: Access denied"
    );
    assert_eq!(
        line(check("198.51.100.7", "unknown")),
        "554 5.7.1 <unknown[198.51.100.7]>: Client host rejected: exact"
    );
    assert_eq!(check("198.51.100.8", "unknown"), Ok(()));
    assert!(check("2001:db8:1::25", "unknown").is_err());
    assert_eq!(check("2001:db8:2::25", "unknown"), Ok(()));
    assert_eq!(
        line(check("203.0.113.5", "mail.bad.example")),
        "554 5.7.1 <mail.bad.example[203.0.113.5]>: Client host rejected: Access denied"
    );
    // The name wins over the address.
    assert_eq!(check("192.0.2.5", "good.bad.example"), Ok(()));
    // A name entry ends the search even with DUNNO, as in Postfix.
    let p = policy(
        "smtpd_client_restrictions = check_client_access inline:{ 192.0.2=REJECT, unknown=DUNNO }\n",
    );
    assert_eq!(
        Session::new("192.0.2.5", "unknown").rcpt(&p, "root@localhost"),
        Ok(())
    );
    assert!(
        Session::new("192.0.2.5", "x.example")
            .rcpt(&p, "root@localhost")
            .is_err()
    );
    // Without smtpd_access_maps in parent_domain_matches_subdomains, a bare parent does
    // not match subdomains.
    let p =
        policy("smtpd_client_restrictions = check_client_access inline:{ bad.example=REJECT }\n");
    assert_eq!(
        Session::new("203.0.113.5", "mail.bad.example").rcpt(&p, "root@localhost"),
        Ok(())
    );
    let p = policy(
        "parent_domain_matches_subdomains = smtpd_access_maps\n\
         smtpd_client_restrictions = check_client_access inline:{ bad.example=REJECT }\n",
    );
    assert!(
        Session::new("203.0.113.5", "mail.bad.example")
            .rcpt(&p, "root@localhost")
            .is_err()
    );
}

#[test]
fn helo_lookup_order() {
    let p = policy(
        "smtpd_helo_restrictions = check_helo_access inline:{ .bad.example=REJECT, friend.bad.example=OK }, \
           reject_non_fqdn_helo_hostname\n",
    );
    let check = |helo: &str| Session::outsider().helo(helo).rcpt(&p, "root@localhost");
    assert_eq!(
        line(check("random.bad.example")),
        "554 5.7.1 <random.bad.example>: Helo command rejected: Access denied"
    );
    assert_eq!(check("friend.bad.example"), Ok(()));
    assert_eq!(check("bad.example"), Ok(()));
    // OK ends the HELO list, so the FQDN check is skipped.
    let p = policy(
        "smtpd_helo_restrictions = check_helo_access inline:{ local=OK }, reject_non_fqdn_helo_hostname\n",
    );
    assert_eq!(
        Session::outsider().helo("local").rcpt(&p, "root@localhost"),
        Ok(())
    );
}

#[test]
fn mail_address_lookup_order() {
    let dir = tempfile::tempdir().unwrap();
    let access = hash_table(
        dir.path(),
        "sender_access",
        &[
            ("full@x.example", "REJECT full"),
            ("user@y.example", "REJECT noext"),
            ("z.example", "REJECT domain"),
            (".sub.example", "REJECT parent"),
            ("postmaster@", "REJECT localpart"),
            ("<>", "REJECT null"),
        ],
    );
    let p = policy(&format!(
        "recipient_delimiter = +\nsmtpd_sender_restrictions = {access}\n"
    ));
    let text = |sender: &str| {
        Session::outsider()
            .from(sender)
            .rcpt(&p, "root@localhost")
            .map_err(|r| r.text.rsplit(": ").next().unwrap_or_default().to_owned())
    };
    assert_eq!(text("Full@X.example"), Err("full".to_owned()));
    assert_eq!(text("user+tag@y.example"), Err("noext".to_owned()));
    assert_eq!(text("anyone@z.example"), Err("domain".to_owned()));
    assert_eq!(text("anyone@z.example."), Err("domain".to_owned()));
    assert_eq!(text("anyone@a.sub.example"), Err("parent".to_owned()));
    assert_eq!(text("anyone@sub.example"), Ok(()));
    assert_eq!(
        text("postmaster@elsewhere.example"),
        Err("localpart".to_owned())
    );
    assert_eq!(
        text("postmaster+x@elsewhere.example"),
        Err("localpart".to_owned())
    );
    assert_eq!(text(""), Err("null".to_owned()));
    assert_eq!(text("other@elsewhere.example"), Ok(()));
    // The null sender key is configurable.
    let p = policy(&format!(
        "smtpd_null_access_lookup_key = <bounce>\nsmtpd_sender_restrictions = check_sender_access {access}\n"
    ));
    assert_eq!(
        Session::outsider().from("").rcpt(&p, "root@localhost"),
        Ok(())
    );
}

#[test]
fn access_lookup_failure_answers_451() {
    let dir = tempfile::tempdir().unwrap();
    let access = hash_table(dir.path(), "access", &[("x.example", "OK")]);
    let p = policy(&format!(
        "smtpd_sender_restrictions = check_sender_access {access}\n"
    ));
    let s = Session::outsider().from("a@x.example");
    assert_eq!(s.rcpt(&p, "root@localhost"), Ok(()));
    // The table is replaced by a damaged file.
    std::fs::write(dir.path().join("access.db.tmp"), b"garbage").unwrap();
    std::fs::rename(
        dir.path().join("access.db.tmp"),
        dir.path().join("access.db"),
    )
    .unwrap();
    let reject = s.rcpt(&p, "root@localhost").unwrap_err();
    assert_eq!(
        reject.reply_line(),
        "451 4.3.5 <a@x.example>: Sender address rejected: Server configuration error"
    );
}

#[test]
fn restriction_classes() {
    let p = policy(
        "smtpd_restriction_classes = friendly, strict\nfriendly = permit\n\
         strict = reject_non_fqdn_sender, reject\n\
         smtpd_sender_restrictions = check_sender_access inline:{ friend.example=friendly, foe.example=strict }\n\
         smtpd_recipient_restrictions = strict\n",
    );
    assert!(
        Session::insider()
            .from("a@friend.example")
            .rcpt(&p, "root@localhost")
            .is_err()
    );
    let p = policy(
        "smtpd_restriction_classes = friendly\nfriendly = permit_mynetworks, permit\n\
         smtpd_sender_restrictions = check_sender_access inline:{ foe.example=REJECT }, friendly, reject\n",
    );
    assert_eq!(
        Session::outsider()
            .from("a@x.example")
            .rcpt(&p, "root@localhost"),
        Ok(())
    );
    assert!(
        Session::outsider()
            .from("a@foe.example")
            .rcpt(&p, "root@localhost")
            .is_err()
    );
    let err = policy_err("smtpd_restriction_classes = nothing\n");
    assert!(matches!(err, PolicyError::UndefinedClass { .. }), "{err}");
    // A class may provide the relay control.
    let p = policy(
        "smtpd_restriction_classes = guard\nguard = permit_mynetworks reject_unauth_destination\n\
         smtpd_relay_restrictions = guard\n",
    );
    assert!(Session::outsider().rcpt(&p, "x@elsewhere.example").is_err());
    // Bare tables need a check_*_access inside a class.
    let err = policy_err("smtpd_restriction_classes = c\nc = inline:{ a=OK }\n");
    assert!(matches!(err, PolicyError::BareTable { .. }), "{err}");
    // Classes that refer to each other fail at run time, never permit.
    let p = policy(
        "smtpd_restriction_classes = ping, pong\nping = pong\npong = ping\n\
         smtpd_client_restrictions = ping\n",
    );
    assert_eq!(
        line(Session::insider().rcpt(&p, "root@localhost")),
        "451 4.3.5 Server configuration error"
    );
}
