//! Replies, configuration errors, and the host and domain questions.

use std::net::IpAddr;

use super::*;

#[test]
fn soft_bounce_turns_5xx_into_4xx() {
    let p = policy("soft_bounce = yes\nsmtpd_helo_restrictions = reject\n");
    let reject = Session::outsider()
        .helo("h.example")
        .rcpt(&p, "root@localhost")
        .unwrap_err();
    assert_eq!(
        reject.reply_line(),
        "454 4.7.1 <h.example>: Helo command rejected: Access denied"
    );
    assert!(reject.is_temporary());
}

#[test]
fn bad_codes_become_a_generic_deferral() {
    let p = policy("reject_code = 250\nsmtpd_helo_restrictions = reject\n");
    assert_eq!(
        line(
            Session::outsider()
                .helo("h.example")
                .rcpt(&p, "root@localhost")
        ),
        "450 4.7.1 Service unavailable"
    );
}

#[test]
fn replies_are_printable_and_short() {
    let long = "x".repeat(600);
    let p = policy(&format!(
        "smtpd_sender_restrictions = check_sender_access inline:{{ {{a@x.example = REJECT {long}}} }}\n"
    ));
    let reject = Session::outsider()
        .from("a@x.example")
        .rcpt(&p, "root@localhost")
        .unwrap_err();
    assert_eq!(reject.reply_line().len(), 510);
    let p = policy("smtpd_sender_restrictions = reject\n");
    let reject = Session::outsider()
        .from("a\tb@x.example")
        .rcpt(&p, "root@localhost")
        .unwrap_err();
    assert_eq!(
        reject.text,
        "<a b@x.example>: Sender address rejected: Access denied"
    );
}

#[test]
fn client_port_logging_shows_the_port() {
    let p = policy("smtpd_client_port_logging = yes\nsmtpd_client_restrictions = reject\n");
    assert_eq!(
        line(Session::outsider().rcpt(&p, "root@localhost")),
        "554 5.7.1 <unknown[192.0.2.10]:4711>: Client host rejected: Access denied"
    );
}

#[test]
fn reject_reply_line() {
    let r = Reject {
        code: 554,
        dsn: "5.7.1".to_owned(),
        text: "<a@b>: Relay access denied".to_owned(),
    };
    assert_eq!(r.reply_line(), "554 5.7.1 <a@b>: Relay access denied");
    assert_eq!(r.to_string(), r.reply_line());
    assert!(!r.is_temporary());
}

// --- configuration errors ------------------------------------------------------------

#[test]
fn configuration_errors_name_parameter_and_word() {
    let err = policy_err("smtpd_recipient_restrictions = permit_mynetworks, reject_evrything\n");
    assert_eq!(
        err.to_string(),
        "smtpd_recipient_restrictions: unknown restriction \"reject_evrything\""
    );
    let err = policy_err("smtpd_client_restrictions = reject_rbl_client zen.example\n");
    assert_eq!(
        err.to_string(),
        "smtpd_client_restrictions: restriction \"reject_rbl_client\" is not supported by posthorn"
    );
    let err = policy_err("smtpd_sender_restrictions = check_sender_access\n");
    assert!(matches!(err, PolicyError::MissingTable { .. }), "{err}");
    let err =
        policy_err("smtpd_helo_restrictions = check_helo_access hash:/nonexistent/posthorn/helo\n");
    assert!(
        err.to_string()
            .starts_with("smtpd_helo_restrictions: check_helo_access hash:/nonexistent"),
        "{err}"
    );
    let err = policy_err("smtpd_data_restrictions = inline:{ a=b }\n");
    assert!(matches!(err, PolicyError::BareTable { .. }), "{err}");
    let err = policy_err("mynetworks = 10.0.0.1/8\n");
    assert!(
        err.to_string()
            .starts_with("mynetworks: bad pattern \"10.0.0.1/8\""),
        "{err}"
    );
    let err = policy_err("local_recipient_maps = btree:/etc/postfix/local\n");
    assert!(
        err.to_string().starts_with("local_recipient_maps: btree:"),
        "{err}"
    );
    assert!(matches!(
        Policy::from_main_cf("this is not main.cf\n"),
        Err(PolicyError::Config(_))
    ));
}

#[test]
fn relay_control_is_required() {
    for bad in [
        "smtpd_relay_restrictions = permit_mynetworks\n",
        "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks\n",
        "smtpd_relay_restrictions = permit, reject_unauth_destination\n",
        "smtpd_relay_restrictions = warn_if_reject reject_unauth_destination\n",
    ] {
        let err = policy_err(bad);
        assert!(
            matches!(err, PolicyError::NoRelayControl { .. }),
            "{bad}: {err}"
        );
    }
    assert!(
        policy_err("smtpd_relay_restrictions = permit_mynetworks\n")
            .to_string()
            .contains("reject_unauth_destination, defer_unauth_destination, reject or defer")
    );
    // Either list may carry it.
    policy(
        "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n",
    );
}

// --- host and domain questions ---------------------------------------------------------

#[test]
fn network_questions() {
    let p = policy("");
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(p.in_mynetworks(ip("127.0.0.1")));
    assert!(p.in_mynetworks(ip("::1")));
    assert!(p.in_mynetworks(ip("::ffff:127.1.2.3")));
    assert!(!p.in_mynetworks(ip("192.0.2.1")));
    assert!(p.bare_newline_excluded(ip("127.0.0.1")));
    assert!(p.event_limit_exempt(ip("127.0.0.1")));
    assert!(!p.event_limit_exempt(ip("192.0.2.1")));
    let p = policy(
        "mynetworks = 192.0.2.0/24\nsmtpd_forbid_bare_newline_exclusions =\n\
         smtpd_client_event_limit_exceptions = $mynetworks, 198.51.100.1\n",
    );
    assert!(p.in_mynetworks(ip("192.0.2.1")));
    assert!(!p.in_mynetworks(ip("127.0.0.1")));
    assert!(!p.bare_newline_excluded(ip("192.0.2.1")));
    assert!(p.event_limit_exempt(ip("192.0.2.1")));
    assert!(p.event_limit_exempt(ip("198.51.100.1")));
}

#[test]
fn local_domains() {
    let p = policy(
        "mydestination = $myhostname, localhost, hash:/nonexistent/posthorn/dest\nproxy_interfaces = 198.51.100.1\n",
    );
    assert!(p.is_local_domain("mx.example.com"));
    assert!(p.is_local_domain("MX.Example.COM."));
    assert!(p.is_local_domain("localhost"));
    assert!(p.is_local_domain("[127.0.0.1]"));
    assert!(p.is_local_domain("[IPv6:::1]"));
    assert!(p.is_local_domain("[198.51.100.1]"));
    assert!(!p.is_local_domain("[192.0.2.1]"));
    // Not decidable: the table cannot be read.
    assert!(!p.is_local_domain("example.com"));
    let p = policy("");
    assert!(p.is_local_domain("localhost.example.com"));
    assert!(!p.is_local_domain("example.com"));
    assert!(!p.is_local_domain("sub.mx.example.com"));
}

#[test]
fn policies_can_be_shared() {
    fn shared<T: Send + Sync>() {}
    shared::<Policy>();
    shared::<Reject>();
    shared::<PolicyError>();
}
