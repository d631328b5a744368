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

#[path = "relay_support.rs"]
mod support;

use support::{
    assert_only_deferred, offer_starttls, send, transport_maps, wait_deferred_queue,
    wait_delivery_line as wait_delivery, wait_queue_empty,
};

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
    let inst = support::receiver(MX, "dest.test", "");
    match ca {
        Some(ca) => {
            let (cert_pem, key_pem) = ca.server();
            offer_starttls(&inst, &cert_pem, &key_pem);
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

/// The next hop `[127.0.0.1]:port`.
fn loopback(port: u16) -> String {
    format!("[127.0.0.1]:{port}")
}

/// A started sending instance (`myhostname = mail.example.test`) that sends `dest.test` to
/// next hop `hop`, with `extra` in main.cf and, with `ca`, `smtp_tls_CAfile` = that CA.
fn sender(hop: &str, extra: &str, ca: Option<&Ca>) -> Instance {
    started_sender(
        &format!("{}{extra}", transport_maps(&[("dest.test", hop)])),
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

/// The main.cf lines of a sender that asks the test name server `dns`, at TLS level `level`.
fn dns_tls_cf(dns: &TestDns, level: &str) -> String {
    format!(
        "smtp_dns_servers = {}\n\
         smtp_tls_security_level = {level}\n",
        dns.server_spec()
    )
}

/// The receiver user's address in `dest.test`.
fn rcpt(recv: &Instance) -> String {
    format!("{}@dest.test", recv.user())
}

// ---------------------------------------------------------------------------------------
// Checks

/// The smtp client's `... TLS connection established to ...` lines.
fn tls_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("posthorn/smtp[") && l.contains(" TLS connection established to "))
        .map(str::to_string)
        .collect()
}

/// Checks that the smtp client logged no `... TLS connection established to ...` line.
#[track_caller]
fn assert_no_tls_line(inst: &Instance) {
    let log = inst.log_text();
    assert!(tls_lines(&log).is_empty(), "{log}");
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

/// Sends a message (`subject`, `body`) to the receiver's user and checks that it was only
/// ever deferred with `dsn` and a reason holding `why`, that it is still queued (deferred
/// queue) and that the receiver never got it.
#[track_caller]
fn assert_deferred(
    inst: &Instance,
    recv: &Instance,
    subject: &str,
    body: &str,
    dsn: &str,
    why: &str,
) {
    let rcpt = rcpt(recv);
    send(inst, &[&rcpt], subject, body);
    let line = wait_delivery(inst, &rcpt, "status=");
    assert!(
        line.contains(&format!("dsn={dsn}, status=deferred (")) && line.contains(why),
        "want dsn={dsn}, status=deferred with {why:?}: {line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_only_deferred(&inst.log_text(), &rcpt);
    wait_deferred_queue(inst);
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

/// Sends a message (`subject`, `body`) to the receiver's user and checks its `status=sent`
/// delivery line via `127.0.0.1[127.0.0.1]:port`; then, with `tls`, the client's TLS line
/// (its first word one of `tls`, see [`assert_tls_line`]) and `with ESMTPS` at the receiver,
/// without, `with ESMTP` at the receiver and no TLS line; last, that the queue is empty.
#[track_caller]
fn assert_delivered(
    inst: &Instance,
    recv: &Instance,
    port: u16,
    subject: &str,
    body: &str,
    tls: Option<&[&str]>,
) {
    let to = rcpt(recv);
    send(inst, &[&to], subject, body);
    let line = wait_delivery(inst, &to, "status=");
    assert!(
        line.contains(&format!("relay=127.0.0.1[127.0.0.1]:{port}, delay="))
            && line.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as "),
        "{line}"
    );
    match tls {
        Some(words) => {
            assert_tls_line(&inst.log_text(), port, words);
            assert_received(recv, body, "ESMTPS");
        }
        None => {
            assert_received(recv, body, "ESMTP");
            assert_no_tls_line(inst);
        }
    }
    wait_queue_empty(inst);
}

/// Sends a message (`subject`, `body`) to the receiver's user and checks its `status=sent`
/// delivery line via [`MX`]`[127.0.0.1]:PORT` (the receiver's port), a client TLS line
/// holding `tls`, `with ESMTPS` at the receiver; last, that the queue is empty.
#[track_caller]
fn assert_delivered_to_mx(inst: &Instance, recv: &Instance, subject: &str, body: &str, tls: &str) {
    let to = rcpt(recv);
    send(inst, &[&to], subject, body);
    let l = wait_delivery(inst, &to, "status=");
    assert!(
        l.contains(&format!("relay={MX}[127.0.0.1]:{}, delay=", recv.smtp_port))
            && l.contains("dsn=2.0.0, status=sent ("),
        "{l}"
    );
    let log = inst.log_text();
    assert!(
        tls_lines(&log).iter().any(|l| l.contains(tls)),
        "no {tls:?}:\n{log}"
    );
    assert_received(recv, body, "ESMTPS");
    wait_queue_empty(inst);
}

// ---------------------------------------------------------------------------------------
// encrypt

#[test]
fn encrypt_delivers_over_starttls() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let port = recv.smtp_port;
    let inst = sender(&loopback(port), "smtp_tls_security_level = encrypt\n", None);
    // No CAfile: the chain does not lead to the bundled roots, so at most Untrusted.
    assert_delivered(
        &inst,
        &recv,
        port,
        "encrypt",
        "sent at encrypt",
        Some(&["Anonymous", "Untrusted"]),
    );
}

#[test]
fn encrypt_defers_without_starttls() {
    let recv = started_receiver(None);
    let inst = sender(
        &loopback(recv.smtp_port),
        "smtp_tls_security_level = encrypt\n",
        None,
    );
    assert_deferred(
        &inst,
        &recv,
        "encrypt",
        "never in plaintext",
        "4.7.4",
        "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]",
    );
    assert_no_tls_line(&inst);
}

// ---------------------------------------------------------------------------------------
// verify

/// With next hop `[127.0.0.1]:P` the name checked is the host, 127.0.0.1, which the
/// certificate has as an IP address SAN.
#[test]
fn verify_with_the_signing_ca_delivers() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let port = recv.smtp_port;
    let inst = sender(
        &loopback(port),
        "smtp_tls_security_level = verify\n",
        Some(&ca),
    );
    assert_delivered(
        &inst,
        &recv,
        port,
        "verify",
        "sent at verify",
        Some(&["Verified"]),
    );
}

#[test]
fn verify_with_another_ca_defers() {
    let ca = Ca::new("relay_tls CA");
    let other = Ca::new("some other CA");
    let recv = started_receiver(Some(&ca));
    let inst = sender(
        &loopback(recv.smtp_port),
        "smtp_tls_security_level = verify\n",
        Some(&other),
    );
    assert_deferred(
        &inst,
        &recv,
        "verify",
        "not to an unknown CA",
        "4.7.5",
        "Server certificate not verified",
    );
    assert_no_tls_line(&inst);
}

/// A next hop named by DNS, `[mx.dest.test]:P` (the test name server maps it to 127.0.0.1):
/// `verify` checks that host name, which the certificate has as a DNS SAN.
#[test]
fn verify_checks_the_host_name() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let dns = TestDns::start(&format!("{MX} A 127.0.0.1\n"));
    let inst = sender(
        &format!("[{MX}]:{}", recv.smtp_port),
        &dns_tls_cf(&dns, "verify"),
        Some(&ca),
    );
    let want = format!(
        "]: Verified TLS connection established to {MX}[127.0.0.1]:{}: TLSv1.3 with cipher ",
        recv.smtp_port
    );
    assert_delivered_to_mx(&inst, &recv, "verify", "verified by name", &want);
}

/// `verify` to a host whose name the certificate does not have (a trusted chain is not
/// enough): deferred.
#[test]
fn verify_refuses_another_host_name() {
    let ca = Ca::new("relay_tls CA");
    let recv = started_receiver(Some(&ca));
    let dns = TestDns::start("other.dest.test A 127.0.0.1\n");
    let inst = sender(
        &format!("[other.dest.test]:{}", recv.smtp_port),
        &dns_tls_cf(&dns, "verify"),
        Some(&ca),
    );
    assert_deferred(
        &inst,
        &recv,
        "verify",
        "wrong name",
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
            "smtp_tcp_port = {}\n{}",
            recv.smtp_port,
            dns_tls_cf(&dns, "secure")
        ),
        Some(&ca),
    );
    assert_delivered_to_mx(
        &inst,
        &recv,
        "secure",
        "secure to dest.test",
        "]: Verified TLS connection established to ",
    );
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
        &loopback(port),
        "smtp_tls_security_level = encrypt\nsmtp_tls_wrappermode = yes\n",
        None,
    );
    assert_delivered(
        &inst,
        &recv,
        port,
        "wrapped",
        "sent in wrapper mode",
        Some(&["Anonymous", "Untrusted"]),
    );
}

#[test]
fn may_without_tls_delivers_in_plaintext() {
    let recv = started_receiver(None);
    let port = recv.smtp_port;
    let inst = sender(&loopback(port), "smtp_tls_security_level = may\n", None);
    assert_delivered(&inst, &recv, port, "may", "sent in plaintext", None);
}
