//! The SMTP delivery client's TLS (`smtp_tls_security_level`, `smtp_tls_CAfile`,
//! `smtp_tls_wrappermode`) end to end, against a second posthorn instance as the destination
//! (`mx.dest.test`, STARTTLS at `may`, a certificate from a CA generated per test whose
//! names are `mx.dest.test` and 127.0.0.1):
//!
//! - `encrypt` delivers over STARTTLS (log line `... TLS connection established to ...`,
//!   `with ESMTPS` in the receiver's Received header) and defers (4.7.4, message kept) when
//!   the server offers no STARTTLS;
//! - `verify` with `smtp_tls_CAfile` = the signing CA delivers (`Verified TLS connection`,
//!   the IP address SAN matching the `[127.0.0.1]` next hop); with another CA it defers;
//! - `verify` to `[mx.dest.test]:P` (test name server) checks that DNS name, and refuses a
//!   host whose name the certificate lacks; `secure` to `dest.test` (MX `mx.dest.test`)
//!   accepts a subdomain of the next hop, Postfix's default `dot-nexthop`;
//! - `smtp_tls_wrappermode = yes` speaks TLS from the first byte to a
//!   `smtpd_tls_wrappermode=yes` service;
//! - `may` to a server without TLS delivers in plaintext.
//!
//! Everything stays on 127.0.0.1: next hops are `[127.0.0.1]:PORT` in `transport_maps`, or
//! names that the test name server (`smtp_dns_servers`) maps to 127.0.0.1.

use std::time::Duration;

use posthorn_dns::testserver::TestDns;
use posthorn_testkit::smtp::{add_service, mbox, wait_listening};
use posthorn_testkit::{Instance, free_port, read_text};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The usual bound for one expected event.
const T: Duration = Duration::from_secs(20);
/// The receiver's name (`myhostname`), a DNS name in its certificate.
const MX: &str = "mx.dest.test";

// ---------------------------------------------------------------------------------------
// Certificates

/// A throw-away certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(p, key).expect("CA certificate"),
        }
    }

    /// The CA certificate, PEM.
    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate and key (PEM) for DNS name [`MX`] and IP address 127.0.0.1.
    fn server(&self) -> (String, String) {
        let key = KeyPair::generate().expect("server key");
        // rcgen makes an IP address SAN of a name that parses as one.
        let mut p = CertificateParams::new(vec![MX.to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        p.distinguished_name.push(DnType::CommonName, MX);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &*self.issuer).expect("sign server cert");
        (cert.pem(), key.serialize_pem())
    }
}

// ---------------------------------------------------------------------------------------
// Instances

/// A receiving instance named [`MX`] that delivers `dest.test` locally (not started). With
/// `ca`, it offers STARTTLS (`may`) with a certificate signed by it; without, no TLS at all.
fn receiver(ca: Option<&Ca>) -> Instance {
    let inst = Instance::new(&format!(
        "myhostname = {MX}\n\
         mydestination = $myhostname, localhost, dest.test\n"
    ));
    match ca {
        Some(ca) => {
            let (cert_pem, key_pem) = ca.server();
            let cert = inst.write_file("tls/server.crt", &cert_pem);
            let key = inst.write_file("tls/server.key", &key_pem);
            inst.add_main_cf(&format!(
                "smtpd_tls_security_level = may\n\
                 smtpd_tls_cert_file = {}\n\
                 smtpd_tls_key_file = {}\n",
                cert.display(),
                key.display()
            ));
        }
        None => inst.add_main_cf("smtpd_tls_security_level = none\n"),
    }
    inst
}

/// A started receiver (see [`receiver`]) once its smtp service listens.
fn started_receiver(ca: Option<&Ca>) -> Instance {
    let mut recv = receiver(ca);
    recv.start();
    wait_listening(recv.smtp_port);
    recv
}

/// A started sending instance (`myhostname = mail.example.test`) that sends `dest.test` to
/// `[127.0.0.1]:port`, with `extra` in main.cf and, with `ca`, `smtp_tls_CAfile` = that CA.
fn sender(port: u16, extra: &str, ca: Option<&Ca>) -> Instance {
    started_sender(
        &format!("transport_maps = inline:{{ {{dest.test=smtp:[127.0.0.1]:{port}}} }}\n{extra}"),
        ca,
    )
}

/// A started sending instance with `main_cf` and, with `ca`, `smtp_tls_CAfile` = that CA (a
/// file under the sender's root).
fn started_sender(main_cf: &str, ca: Option<&Ca>) -> Instance {
    let mut inst = Instance::new(main_cf);
    if let Some(ca) = ca {
        let file = inst.write_file("tls/ca.pem", &ca.pem());
        inst.add_main_cf(&format!("smtp_tls_CAfile = {}\n", file.display()));
    }
    inst.start();
    inst
}

/// The receiver user's address in `dest.test`.
fn rcpt(recv: &Instance) -> String {
    format!("{}@dest.test", recv.user())
}

/// Submits one message from the instance user to `to` with `sendmail -f`.
fn send(inst: &Instance, to: &str, subject: &str, body: &str) {
    let me = format!("{}@mail.example.test", inst.user());
    let out = inst.sendmail(&["-f", &me, to], &format!("Subject: {subject}\n\n{body}\n"));
    assert!(
        out.status.success(),
        "sendmail failed ({:?}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The delivery log lines (`ID: to=<rcpt>, relay=...`) for `rcpt`.
fn delivery_lines(log: &str, rcpt: &str) -> Vec<String> {
    let needle = format!(": to=<{rcpt}>, relay=");
    log.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Waits until a delivery line for `rcpt` contains `want`; returns that line.
fn wait_delivery(inst: &Instance, rcpt: &str, want: &str) -> String {
    let mut found = None;
    let ok = inst.wait_until(T, || {
        found = delivery_lines(&inst.log_text(), rcpt)
            .into_iter()
            .find(|l| l.contains(want));
        found.is_some()
    });
    assert!(
        ok,
        "no delivery line for <{rcpt}> with {want:?}; log:\n{}",
        inst.log_text()
    );
    found.unwrap_or_default()
}

/// The smtp client's `... TLS connection established to ...` lines.
fn tls_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("posthorn/smtp[") && l.contains(" TLS connection established to "))
        .map(str::to_string)
        .collect()
}

/// The TLS line for `127.0.0.1[127.0.0.1]:port`: `WORD TLS connection established to
/// 127.0.0.1[127.0.0.1]:PORT: TLSv1.3 with cipher ...`, with WORD one of `words`.
#[track_caller]
fn assert_tls_line(log: &str, port: u16, words: &[&str]) -> String {
    let to =
        format!("TLS connection established to 127.0.0.1[127.0.0.1]:{port}: TLSv1.3 with cipher ");
    let lines = tls_lines(log);
    let line = lines
        .iter()
        .find(|l| l.contains(&to))
        .unwrap_or_else(|| panic!("no smtp line with {to:?}:\n{log}"));
    assert!(
        words
            .iter()
            .any(|w| line.contains(&format!("]: {w} TLS connection established to "))),
        "want one of {words:?}: {line}"
    );
    line.clone()
}

/// Checks that the message to `rcpt` was only ever deferred with `dsn` and a reason holding
/// `why`, that it is still queued (deferred queue) and that the receiver never got it.
#[track_caller]
fn assert_deferred(inst: &Instance, recv: &Instance, rcpt: &str, dsn: &str, why: &str) {
    let line = wait_delivery(inst, rcpt, "status=");
    assert!(
        line.contains(&format!("dsn={dsn}, status=deferred (")) && line.contains(why),
        "want dsn={dsn}, status=deferred with {why:?}: {line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = inst.log_text();
    let lines = delivery_lines(&log, rcpt);
    assert!(
        lines.iter().all(|l| l.contains("status=deferred")),
        "<{rcpt}> must only ever be deferred:\n{}",
        lines.join("\n")
    );
    let ok = inst.wait_until(T, || inst.queue_count("deferred") >= 1);
    assert!(
        ok,
        "nothing in the deferred queue; log:\n{}",
        inst.log_text()
    );
    let got = read_text(&mbox(recv));
    assert!(got.is_empty(), "the receiver got it:\n{got}");
}

/// Waits until the receiver delivered a message holding `body`; checks its Received header
/// says `proto` (`ESMTP` or `ESMTPS`).
#[track_caller]
fn assert_received(recv: &Instance, body: &str, proto: &str) {
    let text = recv.wait_for_text(&mbox(recv), body);
    assert!(
        text.contains(&format!("by {MX} (posthorn) with {proto} id ")),
        "want Received ... with {proto}:\n{text}"
    );
}

/// Waits until no message is left in the instance's queues.
fn wait_queue_empty(inst: &Instance) {
    let ok = inst.wait_until(T, || inst.queue_empty());
    assert!(
        ok,
        "queue not empty: deferred={} active={} incoming={}; log:\n{}",
        inst.queue_count("deferred"),
        inst.queue_count("active"),
        inst.queue_count("incoming"),
        inst.log_text()
    );
}

/// Asserts a `status=sent` delivery line via `127.0.0.1[127.0.0.1]:port`.
#[track_caller]
fn assert_sent(line: &str, port: u16) {
    assert!(
        line.contains(&format!("relay=127.0.0.1[127.0.0.1]:{port}, delay="))
            && line.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as "),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------
// encrypt

#[test]
fn encrypt_delivers_over_starttls() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let inst = sender(recv.smtp_port, "smtp_tls_security_level = encrypt\n", None);
    let to = rcpt(&recv);
    send(&inst, &to, "encrypt", "sent at encrypt");
    assert_sent(&wait_delivery(&inst, &to, "status="), recv.smtp_port);
    // No CAfile: the chain does not lead to the bundled roots, so at most Untrusted.
    assert_tls_line(
        &inst.log_text(),
        recv.smtp_port,
        &["Anonymous", "Untrusted"],
    );
    assert_received(&recv, "sent at encrypt", "ESMTPS");
    wait_queue_empty(&inst);
}

#[test]
fn encrypt_defers_without_starttls() {
    let recv = started_receiver(None);
    let inst = sender(recv.smtp_port, "smtp_tls_security_level = encrypt\n", None);
    let to = rcpt(&recv);
    send(&inst, &to, "encrypt", "never in plaintext");
    assert_deferred(
        &inst,
        &recv,
        &to,
        "4.7.4",
        "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]",
    );
    let log = inst.log_text();
    assert!(tls_lines(&log).is_empty(), "{log}");
}

// ---------------------------------------------------------------------------------------
// verify

/// With next hop `[127.0.0.1]:P` the name checked is the host, 127.0.0.1, which the
/// certificate has as an IP address SAN.
#[test]
fn verify_with_the_signing_ca_delivers() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let inst = sender(
        recv.smtp_port,
        "smtp_tls_security_level = verify\n",
        Some(&ca),
    );
    let to = rcpt(&recv);
    send(&inst, &to, "verify", "sent at verify");
    assert_sent(&wait_delivery(&inst, &to, "status="), recv.smtp_port);
    assert_tls_line(&inst.log_text(), recv.smtp_port, &["Verified"]);
    assert_received(&recv, "sent at verify", "ESMTPS");
    wait_queue_empty(&inst);
}

#[test]
fn verify_with_another_ca_defers() {
    let ca = Ca::new("relay_tls CA");
    let other = Ca::new("some other CA");
    let recv = started_receiver(Some(&ca));
    let inst = sender(
        recv.smtp_port,
        "smtp_tls_security_level = verify\n",
        Some(&other),
    );
    let to = rcpt(&recv);
    send(&inst, &to, "verify", "not to an unknown CA");
    assert_deferred(
        &inst,
        &recv,
        &to,
        "4.7.5",
        "Server certificate not verified",
    );
    let log = inst.log_text();
    assert!(tls_lines(&log).is_empty(), "{log}");
}

/// A next hop named by DNS, `[mx.dest.test]:P` (the test name server maps it to 127.0.0.1):
/// `verify` checks that host name, which the certificate has as a DNS SAN.
#[test]
fn verify_checks_the_host_name() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let dns = TestDns::start(&format!("{MX} A 127.0.0.1\n"));
    let inst = started_sender(
        &format!(
            "smtp_dns_servers = {}\n\
             transport_maps = inline:{{ {{dest.test=smtp:[{MX}]:{}}} }}\n\
             smtp_tls_security_level = verify\n",
            dns.server_spec(),
            recv.smtp_port
        ),
        Some(&ca),
    );
    let to = rcpt(&recv);
    send(&inst, &to, "verify", "verified by name");
    let l = wait_delivery(&inst, &to, "status=");
    assert!(
        l.contains(&format!("relay={MX}[127.0.0.1]:{}, delay=", recv.smtp_port))
            && l.contains("dsn=2.0.0, status=sent ("),
        "{l}"
    );
    let want = format!(
        "]: Verified TLS connection established to {MX}[127.0.0.1]:{}: TLSv1.3 with cipher ",
        recv.smtp_port
    );
    let log = inst.log_text();
    assert!(
        tls_lines(&log).iter().any(|l| l.contains(&want)),
        "no {want:?}:\n{log}"
    );
    assert_received(&recv, "verified by name", "ESMTPS");
    wait_queue_empty(&inst);
}

/// `verify` to a host whose name the certificate does not have (a trusted chain is not
/// enough): deferred.
#[test]
fn verify_refuses_another_host_name() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let dns = TestDns::start("other.dest.test A 127.0.0.1\n");
    let inst = started_sender(
        &format!(
            "smtp_dns_servers = {}\n\
             transport_maps = inline:{{ {{dest.test=smtp:[other.dest.test]:{}}} }}\n\
             smtp_tls_security_level = verify\n",
            dns.server_spec(),
            recv.smtp_port
        ),
        Some(&ca),
    );
    let to = rcpt(&recv);
    send(&inst, &to, "verify", "wrong name");
    assert_deferred(
        &inst,
        &recv,
        &to,
        "4.7.5",
        "Server certificate not verified",
    );
}

/// `secure` checks the next-hop domain with Postfix's default `smtp_tls_secure_cert_match =
/// nexthop, dot-nexthop`: a certificate for `mx.dest.test` (a subdomain of `dest.test`) found
/// by MX lookup matches.
#[test]
fn secure_accepts_a_subdomain_of_the_nexthop() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let dns = TestDns::start(&format!(
        "dest.test MX 10 {MX}\n\
         {MX} A 127.0.0.1\n"
    ));
    let inst = started_sender(
        &format!(
            "smtp_dns_servers = {}\n\
             smtp_tcp_port = {}\n\
             smtp_tls_security_level = secure\n",
            dns.server_spec(),
            recv.smtp_port
        ),
        Some(&ca),
    );
    let to = rcpt(&recv);
    send(&inst, &to, "secure", "secure to dest.test");
    let l = wait_delivery(&inst, &to, "status=");
    assert!(
        l.contains(&format!("relay={MX}[127.0.0.1]:{}, delay=", recv.smtp_port))
            && l.contains("dsn=2.0.0, status=sent ("),
        "{l}"
    );
    let log = inst.log_text();
    assert!(
        tls_lines(&log)
            .iter()
            .any(|l| l.contains("]: Verified TLS connection established to ")),
        "{log}"
    );
    assert_received(&recv, "secure to dest.test", "ESMTPS");
    wait_queue_empty(&inst);
}

// ---------------------------------------------------------------------------------------
// Wrapper mode, may

#[test]
fn wrappermode_encrypt_delivers() {
    let ca = Ca::new("relay_tls CA");
    let mut recv = receiver(Some(&ca));
    let port = free_port();
    add_service(
        &recv,
        &format!("127.0.0.1:{port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes"),
    );
    recv.chown_all();
    recv.start();
    wait_listening(port);
    let inst = sender(
        port,
        "smtp_tls_security_level = encrypt\nsmtp_tls_wrappermode = yes\n",
        None,
    );
    let to = rcpt(&recv);
    send(&inst, &to, "wrapped", "sent in wrapper mode");
    assert_sent(&wait_delivery(&inst, &to, "status="), port);
    assert_tls_line(&inst.log_text(), port, &["Anonymous", "Untrusted"]);
    assert_received(&recv, "sent in wrapper mode", "ESMTPS");
    wait_queue_empty(&inst);
}

#[test]
fn may_without_tls_delivers_in_plaintext() {
    let recv = started_receiver(None);
    let inst = sender(recv.smtp_port, "smtp_tls_security_level = may\n", None);
    let to = rcpt(&recv);
    send(&inst, &to, "may", "sent in plaintext");
    assert_sent(&wait_delivery(&inst, &to, "status="), recv.smtp_port);
    assert_received(&recv, "sent in plaintext", "ESMTP");
    let log = inst.log_text();
    assert!(tls_lines(&log).is_empty(), "{log}");
    wait_queue_empty(&inst);
}
