//! Resolver tests: one per class and per transport_maps form.

use super::*;

/// A resolver from main.cf text, with a fixed host name and loopback interfaces.
fn resolver(extra: &str) -> Resolver {
    let text = format!(
        "myhostname = mx.example.net\n\
         mydomain = example.net\n\
         inet_interfaces = loopback-only\n\
         proxy_interfaces = 192.0.2.10\n\
         {extra}"
    );
    let c = Config::parse_str(&text, "main.cf").unwrap();
    Resolver::from_config(&c).unwrap()
}

fn route(r: &Resolver, rcpt: &str) -> (String, String, Class) {
    let x = r.resolve(rcpt, "sender@example.org").unwrap();
    (x.transport, x.nexthop, x.class)
}

fn t(transport: &str, nexthop: &str, class: Class) -> (String, String, Class) {
    (transport.to_string(), nexthop.to_string(), class)
}

#[test]
fn local_class() {
    let r = resolver("");
    assert_eq!(
        route(&r, "u@mx.example.net"),
        t("local", "mx.example.net", Class::Local)
    );
    assert_eq!(
        route(&r, "u@LOCALHOST."),
        t("local", "mx.example.net", Class::Local)
    );
    assert_eq!(
        route(&r, "u@localhost.example.net"),
        t("local", "mx.example.net", Class::Local)
    );
    assert_eq!(
        route(&r, "postmaster"),
        t("local", "mx.example.net", Class::Local)
    );
    assert_eq!(
        route(&r, "u@[127.0.0.1]"),
        t("local", "mx.example.net", Class::Local)
    );
    assert_eq!(
        route(&r, "u@[IPv6:::1]"),
        t("local", "mx.example.net", Class::Local)
    );
    assert_eq!(
        route(&r, "u@[192.0.2.10]"),
        t("local", "mx.example.net", Class::Local)
    );
    assert_eq!(
        route(&r, "u@[192.0.2.11]"),
        t("smtp", "[192.0.2.11]", Class::Default)
    );
}

#[test]
fn local_transport_without_nexthop_uses_the_domain() {
    let r = resolver("local_transport = local:\nmydestination = a.test, inline:{ b.test=x }\n");
    assert_eq!(route(&r, "u@A.test"), t("local", "a.test", Class::Local));
    assert_eq!(route(&r, "u@b.test"), t("local", "b.test", Class::Local));
    assert_eq!(
        route(&r, "u@sub.a.test"),
        t("smtp", "sub.a.test", Class::Default)
    );
}

#[test]
fn alias_virtual_relay_and_default_classes() {
    let r = resolver(
        "virtual_alias_domains = alias.test\n\
         virtual_mailbox_domains = inline:{ vmail.test=1 }\n\
         relay_domains = relay.test, .sub.test\n",
    );
    assert_eq!(
        route(&r, "u@alias.test"),
        t(
            "error",
            "5.1.1 User unknown in virtual alias table",
            Class::Alias
        )
    );
    assert_eq!(
        route(&r, "u@VMail.test"),
        t("virtual", "vmail.test", Class::Virtual)
    );
    assert_eq!(
        route(&r, "u@relay.test"),
        t("relay", "relay.test", Class::Relay)
    );
    assert_eq!(
        route(&r, "u@a.sub.test"),
        t("relay", "a.sub.test", Class::Relay)
    );
    assert_eq!(
        route(&r, "u@x.relay.test"),
        t("smtp", "x.relay.test", Class::Default)
    );
    assert_eq!(
        route(&r, "u@Example.COM."),
        t("smtp", "example.com", Class::Default)
    );
}

#[test]
fn relay_domains_in_parent_domain_matches_subdomains() {
    let r =
        resolver("relay_domains = relay.test\nparent_domain_matches_subdomains = relay_domains\n");
    assert_eq!(
        route(&r, "u@x.relay.test"),
        t("relay", "x.relay.test", Class::Relay)
    );
}

#[test]
fn relayhost_and_transport_nexthops() {
    let r = resolver("relayhost = [smarthost.test]:587\nrelay_domains = relay.test\n");
    assert_eq!(
        route(&r, "u@example.com"),
        t("smtp", "[smarthost.test]:587", Class::Default)
    );
    assert_eq!(
        route(&r, "u@relay.test"),
        t("relay", "[smarthost.test]:587", Class::Relay)
    );
    assert_eq!(
        route(&r, "u@mx.example.net"),
        t("local", "mx.example.net", Class::Local)
    );
    // A next hop in default_transport takes precedence over relayhost.
    let r = resolver("relayhost = [smarthost.test]\ndefault_transport = smtp:[out.test]:25\n");
    assert_eq!(
        route(&r, "u@example.com"),
        t("smtp", "[out.test]:25", Class::Default)
    );
}

#[test]
fn sender_dependent_relayhost_maps() {
    let r = resolver(
        "relayhost = [default.test]\n\
         sender_dependent_relayhost_maps = inline:{ boss@corp.test=[vip.test], @corp.test=[corp-relay.test]:2525 }\n",
    );
    let hop = |sender: &str| r.resolve("u@example.com", sender).unwrap().nexthop;
    assert_eq!(hop("Boss@Corp.test"), "[vip.test]");
    assert_eq!(hop("other@corp.test"), "[corp-relay.test]:2525");
    assert_eq!(hop("x@elsewhere.test"), "[default.test]");
    assert_eq!(hop(""), "[default.test]");
    // Local mail is not relayed.
    assert_eq!(
        r.resolve("u@localhost", "boss@corp.test")
            .unwrap()
            .transport,
        "local"
    );
}

#[test]
fn transport_maps_lookup_order() {
    let r = resolver(
        "recipient_delimiter = +\n\
         transport_maps = inline:{ user@example.com=uucp:gw, example.com=slow:, \
         .example.com=fast:, sub.example.com=sub:, * = wild:[hub.test] }\n",
    );
    assert_eq!(
        route(&r, "USER@Example.com"),
        t("uucp", "gw", Class::Default)
    );
    assert_eq!(
        route(&r, "user+tag@example.com"),
        t("uucp", "gw", Class::Default)
    );
    assert_eq!(
        route(&r, "other@example.com"),
        t("slow", "example.com", Class::Default)
    );
    assert_eq!(
        route(&r, "u@a.b.example.com"),
        t("fast", "a.b.example.com", Class::Default)
    );
    assert_eq!(
        route(&r, "u@sub.example.com"),
        t("sub", "sub.example.com", Class::Default)
    );
    assert_eq!(
        route(&r, "u@else.test"),
        t("wild", "[hub.test]", Class::Default)
    );
    // The transport table also overrides local domains (transport(5)).
    assert_eq!(
        route(&r, "u@localhost"),
        t("wild", "[hub.test]", Class::Local)
    );
}

#[test]
fn transport_maps_bare_domain_matches_subdomains_only_when_configured() {
    let maps = "transport_maps = inline:{ example.com=x: }\n";
    let r = resolver(maps);
    assert_eq!(
        route(&r, "u@sub.example.com"),
        t("smtp", "sub.example.com", Class::Default)
    );
    let r = resolver(&format!(
        "{maps}parent_domain_matches_subdomains = transport_maps\n"
    ));
    assert_eq!(
        route(&r, "u@sub.example.com"),
        t("x", "sub.example.com", Class::Default)
    );
}

#[test]
fn transport_maps_result_forms() {
    let r = resolver(
        "relayhost = [smarthost.test]\n\
         transport_maps = inline:{ {a.test = error:5.7.1 go away}, {b.test = discard:silently}, \
         c.test=:[gw.test]:2525, d.test=esmtp:, e.test=lmtp, f.test=:, {g.test = error:}, \
         h.test=smtp:[2001:db8::1]:25 }\n",
    );
    assert_eq!(
        route(&r, "u@a.test"),
        t("error", "5.7.1 go away", Class::Default)
    );
    assert_eq!(
        route(&r, "u@b.test"),
        t("discard", "silently", Class::Default)
    );
    assert_eq!(
        route(&r, "u@c.test"),
        t("smtp", "[gw.test]:2525", Class::Default)
    );
    assert_eq!(route(&r, "u@d.test"), t("esmtp", "d.test", Class::Default));
    assert_eq!(route(&r, "u@e.test"), t("lmtp", "e.test", Class::Default));
    assert_eq!(
        route(&r, "u@f.test"),
        t("smtp", "[smarthost.test]", Class::Default)
    );
    assert_eq!(
        route(&r, "u@g.test"),
        t("error", "Address is undeliverable", Class::Default)
    );
    assert_eq!(
        route(&r, "u@h.test"),
        t("smtp", "[2001:db8::1]:25", Class::Default)
    );
    let hop = parse_nexthop(&route(&r, "u@h.test").1).unwrap();
    assert_eq!(
        (hop.host.as_str(), hop.port, hop.mx),
        ("2001:db8::1", Some(25), false)
    );
}

#[test]
fn transport_maps_do_not_override_alias_domains() {
    let r =
        resolver("virtual_alias_domains = alias.test\ntransport_maps = inline:{ *=smtp:[hub] }\n");
    assert_eq!(route(&r, "u@alias.test").2, Class::Alias);
    assert_eq!(route(&r, "u@alias.test").0, "error");
}

#[test]
fn failing_table_is_a_lookup_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("transport");
    std::fs::write(&src, "example.com smtp:[gw]\n").unwrap();
    posthorn_tables::postmap(&src).unwrap();
    let r = resolver(&format!("transport_maps = hash:{}\n", src.display()));
    assert_eq!(
        route(&r, "u@example.com"),
        t("smtp", "[gw]", Class::Default)
    );
    // A damaged rebuild: the lookup fails and the recipient must be deferred.
    std::fs::write(dir.path().join("transport.db"), b"garbage, not a table").unwrap();
    let e = r.resolve("u@example.com", "").unwrap_err();
    assert!(
        matches!(&e, ResolveError::Lookup { param, key, .. }
            if param == "transport_maps" && key == "u@example.com"),
        "{e}"
    );
}

#[test]
fn bad_configuration() {
    let c = Config::parse_str("transport_maps = btree:/x\n", "main.cf").unwrap();
    let e = Resolver::from_config(&c).unwrap_err();
    assert!(matches!(&e, ResolveError::Config { param, .. } if param == "transport_maps"));
    let c = Config::parse_str("default_transport = :[x]\n", "main.cf").unwrap();
    let e = Resolver::from_config(&c).unwrap_err();
    assert_eq!(
        e.to_string(),
        "default_transport: no transport name in \":[x]\""
    );
    let c = Config::parse_str("mydestination = hash:/nonexistent/x\n", "main.cf").unwrap();
    assert!(matches!(
        Resolver::from_config(&c),
        Err(ResolveError::Config { .. })
    ));
}
