//! smtpd's TLS end to end with a real rustls client: STARTTLS (offered, upgraded, refused a
//! second time), TLS 1.2 and 1.3 accepted and TLS 1.1 refused, the Received header and log
//! line of an encrypted session, the STARTTLS command-injection attack (CVE-2011-0411
//! class), `smtpd_tls_security_level = encrypt`, implicit TLS (`smtpd_tls_wrappermode`),
//! several key types through `smtpd_tls_chain_files`, and a renewed certificate picked up
//! without a restart while an open session keeps working.
//!
//! The certificates come from a CA generated per test with rcgen; the client trusts only it.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use posthorn_testkit::smtp::{Reply, add_service, connect_when_listening, local_user, mbox};
use posthorn_testkit::tls::OnlySchemes;
use posthorn_testkit::{Instance, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, SignatureScheme,
    StreamOwned, SupportedProtocolVersion,
};

const T: Duration = Duration::from_secs(20);
/// The server's name (`myhostname`), the name in its certificates.
const HOST: &str = "mail.example.test";

// ---------------------------------------------------------------------------------------
// Certificates

/// A throw-away certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, PEM and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "posthorn test CA");
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

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A certificate for [`HOST`] with common name `cn` and a new key of type `alg`.
    fn leaf(&self, cn: &str, alg: &'static SignatureAlgorithm) -> Leaf {
        let mut key = KeyPair::generate_for(alg).expect("leaf key");
        if std::ptr::eq(alg, &rcgen::PKCS_ED25519) {
            key = pkcs8_v1_ed25519(&key);
        }
        let mut p = CertificateParams::new(vec![HOST.to_string()]).expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &*self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// The Ed25519 key `key` as a PKCS#8 v1 document (ring writes v2, with the public key,
/// which OpenSSL 3.0 and others refuse; every TLS library reads v1).
fn pkcs8_v1_ed25519(key: &KeyPair) -> KeyPair {
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = key.serialized_der();
    // v2: 30 51 02 01 01 30 05 06 03 2b 65 70 04 22 04 20 SEED[32] a1/81 ... PUBLIC
    assert_eq!(
        der.get(12..16),
        Some(&[0x04, 0x22, 0x04, 0x20][..]),
        "{der:02x?}"
    );
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(&der[16..48]);
    KeyPair::try_from(v1.as_slice()).expect("PKCS#8 v1 Ed25519 key")
}

/// An ECDSA P-256 certificate.
fn ecdsa_leaf(ca: &Ca, cn: &str) -> Leaf {
    ca.leaf(cn, &rcgen::PKCS_ECDSA_P256_SHA256)
}

/// Writes `leaf` to ROOT/tls/NAME.crt and NAME.key; returns both paths.
fn install(inst: &Instance, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = inst.write_file(&format!("tls/{name}.crt"), &leaf.cert_pem);
    let key = inst.write_file(&format!("tls/{name}.key"), &leaf.key_pem);
    (cert, key)
}

/// The certificate and key files of [`tls_instance`].
fn server_files(inst: &Instance) -> (PathBuf, PathBuf) {
    let tls = inst.root().join("tls");
    (tls.join("server.crt"), tls.join("server.key"))
}

/// An instance with STARTTLS (`may`) and an ECDSA certificate (CN "first") in
/// [`server_files`]; `extra` main.cf lines come last. Not started.
fn tls_instance(extra: &str) -> (Instance, Ca, Leaf) {
    let inst = Instance::new("");
    let ca = Ca::new();
    let leaf = ecdsa_leaf(&ca, "first");
    let (cert, key) = install(&inst, "server", &leaf);
    inst.add_main_cf(&format!(
        "smtpd_tls_security_level = may\n\
         smtpd_tls_cert_file = {}\n\
         smtpd_tls_key_file = {}\n\
         {extra}",
        cert.display(),
        key.display()
    ));
    (inst, ca, leaf)
}

// ---------------------------------------------------------------------------------------
// Client side

/// What the client offers.
#[derive(Default)]
struct Offer {
    /// Protocol versions (empty: 1.2 and 1.3).
    versions: Vec<&'static SupportedProtocolVersion>,
    /// Only this cipher suite.
    suite: Option<CipherSuite>,
    /// Only these signature schemes.
    schemes: Option<Vec<SignatureScheme>>,
}

/// A rustls client configuration trusting only `ca`.
fn client_config(ca: &Ca, offer: &Offer) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(s) = offer.suite {
        provider.cipher_suites.retain(|cs| cs.suite() == s);
        assert!(!provider.cipher_suites.is_empty(), "no suite {s:?}");
    }
    let provider = Arc::new(provider);
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).expect("trust the test CA");
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    let verifier: Arc<dyn ServerCertVerifier> = match &offer.schemes {
        Some(s) => Arc::new(OnlySchemes {
            inner: webpki,
            schemes: s.clone(),
        }),
        None => webpki,
    };
    let versions: Vec<&'static SupportedProtocolVersion> = if offer.versions.is_empty() {
        vec![&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        offer.versions.clone()
    };
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Reads one CRLF-terminated line, one byte at a time (so that nothing after it is
/// consumed: the TLS handshake may follow on the same socket).
fn read_line(r: &mut impl Read) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut interrupted = 0;
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) => {
                return Err(format!(
                    "connection closed (after {:?})",
                    String::from_utf8_lossy(&buf)
                ));
            }
            Ok(_) => buf.push(b[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted && interrupted < 100 => {
                interrupted += 1;
            }
            Err(e) => return Err(format!("read: {e}")),
        }
        if buf.ends_with(b"\r\n") {
            buf.truncate(buf.len() - 2);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > 4096 {
            return Err(format!(
                "over-long reply line: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
    }
}

/// Reads one (possibly multi-line) SMTP reply.
fn read_reply(r: &mut impl Read) -> Result<Reply, String> {
    let mut code = 0u16;
    let mut lines = Vec::new();
    for _ in 0..200 {
        let line = read_line(r)?;
        let digits = line.get(..3).unwrap_or("");
        let c: u16 = digits
            .parse()
            .map_err(|_| format!("malformed reply line {line:?}"))?;
        if lines.is_empty() {
            code = c;
        } else if c != code {
            return Err(format!("mixed codes in one reply: {lines:?} then {line:?}"));
        }
        lines.push(line.get(4..).unwrap_or("").to_string());
        match line.as_bytes().get(3) {
            None | Some(b' ') => return Ok(Reply { code, lines }),
            Some(b'-') => {}
            Some(_) => return Err(format!("malformed reply line {line:?}")),
        }
    }
    Err("reply of more than 200 lines".into())
}

/// Connects to `port` (waiting up to 10 s for the listener) with a 20 s read timeout.
fn tcp(port: u16) -> TcpStream {
    let s = connect_when_listening(port);
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

/// Commands and replies on a plaintext or TLS session.
trait Talk {
    /// Sends raw bytes as they are.
    fn send_raw(&mut self, b: &[u8]);

    /// Reads one reply; panics if there is none.
    fn reply(&mut self) -> Reply;

    /// Sends a command line (CRLF added) and reads its reply.
    fn cmd(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends a command and asserts the reply code; returns the reply.
    fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line} -> {}", r.wire());
        r
    }
}

/// A plaintext session (before STARTTLS).
struct Plain {
    s: TcpStream,
}

impl Talk for Plain {
    fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("write");
    }

    fn reply(&mut self) -> Reply {
        read_reply(&mut self.s).unwrap_or_else(|e| panic!("plaintext reply: {e}"))
    }
}

impl Plain {
    /// Connects and reads the 220 greeting.
    fn connect(port: u16) -> Plain {
        let mut p = Plain { s: tcp(port) };
        let g = p.reply();
        assert_eq!(g.code, 220, "greeting: {}", g.wire());
        p
    }

    /// EHLO, STARTTLS (220 2.0.0 Ready to start TLS) and the handshake.
    fn starttls(mut self, cfg: Arc<ClientConfig>) -> Tls {
        let ehlo = self.expect("EHLO client.example.test", 250);
        assert!(
            ehlo.lines.iter().any(|l| l == "STARTTLS"),
            "EHLO must offer STARTTLS: {}",
            ehlo.wire()
        );
        let r = self.expect("STARTTLS", 220);
        assert_eq!(r.text(), "2.0.0 Ready to start TLS", "{}", r.wire());
        handshake(self.s, cfg).unwrap_or_else(|e| panic!("TLS handshake: {e}"))
    }
}

/// Runs a TLS handshake as client on `s`.
fn handshake(mut s: TcpStream, cfg: Arc<ClientConfig>) -> Result<Tls, String> {
    let name = ServerName::try_from(HOST).expect("server name");
    let mut conn = ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut rounds = 0;
    while conn.is_handshaking() {
        rounds += 1;
        if rounds > 50 {
            return Err("handshake does not finish".into());
        }
        match conn.complete_io(&mut s) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(Tls {
        s: StreamOwned::new(conn, s),
    })
}

/// A session inside TLS.
struct Tls {
    s: StreamOwned<ClientConnection, TcpStream>,
}

impl Talk for Tls {
    fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("TLS write");
        self.s.flush().expect("TLS flush");
    }

    fn reply(&mut self) -> Reply {
        read_reply(&mut self.s).unwrap_or_else(|e| panic!("reply inside TLS: {e}"))
    }
}

impl Tls {
    /// MAIL, RCPT, DATA; returns the end-of-data reply.
    fn send_mail(&mut self, from: &str, to: &str, content: &str) -> Reply {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        self.expect(&format!("RCPT TO:<{to}>"), 250);
        self.expect("DATA", 354);
        self.send_raw(content.as_bytes());
        self.send_raw(b".\r\n");
        self.reply()
    }

    /// [`Tls::send_mail`] from `a@b.test` to `to`, which must be accepted (250); then QUIT.
    fn mail_and_quit(&mut self, to: &str, content: &str) {
        let r = self.send_mail("a@b.test", to, content);
        assert_eq!(r.code, 250, "{}", r.wire());
        self.expect("QUIT", 221);
    }

    fn version(&self) -> Option<ProtocolVersion> {
        self.s.conn.protocol_version()
    }

    fn suite(&self) -> Option<CipherSuite> {
        self.s.conn.negotiated_cipher_suite().map(|s| s.suite())
    }

    /// The server's end-entity certificate.
    fn peer_cert(&self) -> CertificateDer<'static> {
        self.s
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server certificate")
            .clone()
            .into_owned()
    }
}

fn tls13_aes256(ca: &Ca) -> Arc<ClientConfig> {
    client_config(
        ca,
        &Offer {
            versions: vec![&rustls::version::TLS13],
            suite: Some(CipherSuite::TLS13_AES_256_GCM_SHA384),
            schemes: None,
        },
    )
}

// ---------------------------------------------------------------------------------------
// STARTTLS

#[test]
fn starttls_upgrades_the_session_and_is_recorded() {
    let (mut inst, ca, _) = tls_instance("smtpd_tls_received_header = yes\n");
    inst.start();
    let mut tls = Plain::connect(inst.smtp_port).starttls(tls13_aes256(&ca));
    assert_eq!(tls.version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(tls.suite(), Some(CipherSuite::TLS13_AES_256_GCM_SHA384));
    // The session starts over: EHLO again, and STARTTLS is no longer offered.
    let ehlo = tls.expect("EHLO client.example.test", 250);
    assert!(
        !ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "STARTTLS offered inside TLS: {}",
        ehlo.wire()
    );
    let r = tls.cmd("STARTTLS");
    assert_eq!(
        (r.code, r.text().as_str()),
        (554, "5.5.1 Error: TLS already active"),
        "{}",
        r.wire()
    );
    let me = local_user(&inst);
    tls.mail_and_quit(&me, "Subject: over tls\r\n\r\nencrypted hello\r\n");
    let text = inst.wait_for_text(&mbox(&inst), "encrypted hello");
    let received = text
        .split("\nReceived: ")
        .nth(1)
        .map(|r| r.split("\n\n").next().unwrap_or(r))
        .unwrap_or_else(|| panic!("no Received header:\n{text}"));
    assert!(
        received.contains("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"),
        "Received header without the TLS details:\n{received}"
    );
    assert!(received.contains("with ESMTPS id "), "{received}");
    let line = inst.log_line("TLS connection established from");
    assert!(
        line.contains(
            "Anonymous TLS connection established from localhost[127.0.0.1]: \
             TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
        ),
        "{line}"
    );
}

#[test]
fn received_header_has_no_tls_details_unless_asked() {
    let (mut inst, ca, _) = tls_instance("");
    inst.start();
    let mut tls = Plain::connect(inst.smtp_port).starttls(tls13_aes256(&ca));
    tls.expect("EHLO client.example.test", 250);
    tls.mail_and_quit(
        &local_user(&inst),
        "Subject: quiet tls\r\n\r\nno details\r\n",
    );
    let text = inst.wait_for_text(&mbox(&inst), "no details");
    assert!(text.contains("with ESMTPS id "), "{text}");
    assert!(!text.contains("(using TLSv1.3"), "{text}");
}

#[test]
fn tls_1_2_is_accepted() {
    let (mut inst, ca, _) = tls_instance("");
    inst.start();
    let cfg = client_config(
        &ca,
        &Offer {
            versions: vec![&rustls::version::TLS12],
            ..Offer::default()
        },
    );
    let mut tls = Plain::connect(inst.smtp_port).starttls(cfg);
    assert_eq!(tls.version(), Some(ProtocolVersion::TLSv1_2));
    tls.expect("EHLO client.example.test", 250);
    tls.mail_and_quit(&local_user(&inst), "Subject: tls12\r\n\r\nover tls 1.2\r\n");
    inst.wait_for_text(&mbox(&inst), "over tls 1.2");
    let line = inst.log_line("TLS connection established from");
    assert!(line.contains(": TLSv1.2 with cipher "), "{line}");
}

/// A TLS 1.1 ClientHello (no supported_versions extension) with TLS 1.0/1.1 suites.
fn tls11_client_hello() -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(data);
    }
    let mut body = vec![0x03, 0x02]; // client_version = TLS 1.1
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    let suites: [u16; 6] = [0xc009, 0xc00a, 0xc013, 0xc014, 0x002f, 0x0035];
    body.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    let mut exts = Vec::new();
    let name = HOST.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&u16::try_from(name.len() + 3).unwrap().to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    sni.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sni);
    ext(&mut exts, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // x25519, secp256r1
    ext(&mut exts, 0x000b, &[1, 0]); // uncompressed points
    body.extend_from_slice(&u16::try_from(exts.len()).unwrap().to_be_bytes());
    body.extend(exts);
    let mut hs = vec![0x01]; // ClientHello
    hs.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
    rec.extend(hs);
    rec
}

#[test]
fn tls_1_1_is_refused() {
    let (mut inst, ca, _) = tls_instance("");
    inst.start();
    let mut p = Plain::connect(inst.smtp_port);
    p.expect("EHLO client.example.test", 250);
    p.expect("STARTTLS", 220);
    p.send_raw(&tls11_client_hello());
    // The answer must be a fatal alert or a closed connection, never a ServerHello.
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..20 {
        match p.s.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.len() >= 7 {
            break;
        }
    }
    if let Some(&kind) = got.first() {
        assert_eq!(
            kind, 0x15,
            "a TLS 1.1 ClientHello must get an alert, got record type {kind:#x}: {got:02x?}"
        );
        assert_eq!(got.get(5), Some(&2), "alert must be fatal: {got:02x?}");
        assert!(
            matches!(got.get(6), Some(70 | 40)),
            "alert should be protocol_version (70) or handshake_failure (40): {got:02x?}"
        );
    }
    drop(p);
    // The server is unharmed: a TLS 1.3 client still gets in.
    let mut tls = Plain::connect(inst.smtp_port).starttls(tls13_aes256(&ca));
    tls.expect("EHLO client.example.test", 250);
    tls.expect("QUIT", 221);
}

/// Sends `STARTTLS\r\nRSET\r\n` in one write. The RSET must never be answered: not in
/// plaintext, and not inside TLS (where the first reply must be to our own EHLO).
/// `may_refuse`: a refusal of the pipelined STARTTLS (4xx/5xx) is also acceptable.
fn starttls_injection(port: u16, ca: &Ca, may_refuse: bool) {
    let mut p = Plain::connect(port);
    p.expect("EHLO client.example.test", 250);
    p.send_raw(b"STARTTLS\r\nRSET\r\n");
    let r = p.reply();
    if r.code != 220 {
        assert!(
            may_refuse && r.code >= 400,
            "STARTTLS with pipelined RSET: {}",
            r.wire()
        );
        // Whatever follows, it is not a 250 to the RSET.
        let mut rest = Vec::new();
        let _ = p.s.read_to_end(&mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            !rest.contains("250"),
            "RSET answered after a refusal: {rest}"
        );
        return;
    }
    assert_eq!(r.text(), "2.0.0 Ready to start TLS", "{}", r.wire());
    let mut tls = handshake(p.s, tls13_aes256(ca)).unwrap_or_else(|e| {
        panic!(
            "handshake after STARTTLS+RSET failed ({e}): did the server answer RSET in plaintext?"
        )
    });
    tls.send_raw(b"EHLO client.example.test\r\n");
    let first = tls.reply();
    assert!(
        first.code == 250
            && first.lines.len() > 1
            && first.lines[0].starts_with("mail.example.test"),
        "the first reply inside TLS must answer our EHLO, got {} (the injected RSET was \
         executed)",
        first.wire()
    );
    // And nothing else is queued up: the next reply is NOOP's.
    let r = tls.cmd("NOOP");
    assert!(
        r.code == 250 && r.lines.len() == 1 && r.text().ends_with("Ok"),
        "NOOP got {} (a stale reply?)",
        r.wire()
    );
    let r = tls.cmd("QUIT");
    assert_eq!(r.code, 221, "QUIT got {} (a stale reply?)", r.wire());
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let (mut inst, ca, _) = tls_instance("smtpd_forbid_unauth_pipelining = no\n");
    inst.start();
    starttls_injection(inst.smtp_port, &ca, false);
}

#[test]
fn plaintext_pipelined_after_starttls_is_never_answered_with_default_settings() {
    let (mut inst, ca, _) = tls_instance("");
    inst.start();
    starttls_injection(inst.smtp_port, &ca, true);
}

#[test]
fn security_level_encrypt_requires_starttls() {
    let (mut inst, ca, _) = tls_instance("smtpd_tls_security_level = encrypt\n");
    inst.start();
    let me = local_user(&inst);
    let mut p = Plain::connect(inst.smtp_port);
    p.expect("EHLO client.example.test", 250);
    let r = p.cmd("MAIL FROM:<a@b.test>");
    assert_eq!(
        (r.code, r.text().as_str()),
        (530, "5.7.0 Must issue a STARTTLS command first"),
        "{}",
        r.wire()
    );
    p.expect("QUIT", 221);
    let mut tls = Plain::connect(inst.smtp_port).starttls(tls13_aes256(&ca));
    tls.expect("EHLO client.example.test", 250);
    tls.mail_and_quit(&me, "Subject: enc\r\n\r\nrequired tls\r\n");
    inst.wait_for_text(&mbox(&inst), "required tls");
}

// ---------------------------------------------------------------------------------------
// Implicit TLS

#[test]
fn wrappermode_service_speaks_tls_from_the_first_byte() {
    let (mut inst, ca, _) = tls_instance("smtpd_tls_received_header = yes\n");
    let port = free_port();
    add_service(
        &inst,
        &format!("127.0.0.1:{port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes"),
    );
    inst.start();
    let mut tls = handshake(tcp(port), tls13_aes256(&ca))
        .unwrap_or_else(|e| panic!("handshake on the smtps port: {e}"));
    let g = tls.reply();
    assert_eq!(g.code, 220, "greeting inside TLS: {}", g.wire());
    let ehlo = tls.expect("EHLO client.example.test", 250);
    assert!(
        !ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "{}",
        ehlo.wire()
    );
    tls.mail_and_quit(&local_user(&inst), "Subject: smtps\r\n\r\nimplicit tls\r\n");
    let text = inst.wait_for_text(&mbox(&inst), "implicit tls");
    assert!(text.contains("(using TLSv1.3 with cipher"), "{text}");
    inst.expect_log(
        "Anonymous TLS connection established from localhost[127.0.0.1]",
        T,
    );
    // The plain port still offers STARTTLS alongside.
    let mut p = Plain::connect(inst.smtp_port);
    let ehlo = p.expect("EHLO client.example.test", 250);
    assert!(
        ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "{}",
        ehlo.wire()
    );
}

#[test]
fn wrappermode_plaintext_client_gets_no_greeting() {
    let (mut inst, _ca, _) = tls_instance("");
    let port = free_port();
    add_service(
        &inst,
        &format!("127.0.0.1:{port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes"),
    );
    inst.start();
    let mut s = tcp(port);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // No plaintext 220 arrives by itself.
    let mut buf = [0u8; 64];
    // (A timeout is fine: the server waits for a ClientHello.)
    if let Ok(n) = s.read(&mut buf) {
        assert!(
            !String::from_utf8_lossy(&buf[..n]).starts_with("220"),
            "plaintext greeting on the smtps port"
        );
    }
    // Plaintext commands are not answered as SMTP.
    s.set_read_timeout(Some(T)).unwrap();
    let _ = s.write_all(b"EHLO client.example.test\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("250"),
        "EHLO answered in plaintext on the smtps port: {:?}",
        String::from_utf8_lossy(&got)
    );
}

// ---------------------------------------------------------------------------------------
// Certificates: several key types, renewal

#[test]
fn chain_files_pick_the_certificate_the_client_can_verify() {
    let inst = Instance::new("");
    let ca = Ca::new();
    let ecdsa = ecdsa_leaf(&ca, "ecdsa");
    let ed25519 = ca.leaf("ed25519", &rcgen::PKCS_ED25519);
    // Each file: the private key, then its certificate.
    let f1 = inst.write_file(
        "tls/ecdsa.pem",
        &format!("{}{}", ecdsa.key_pem, ecdsa.cert_pem),
    );
    let f2 = inst.write_file(
        "tls/ed25519.pem",
        &format!("{}{}", ed25519.key_pem, ed25519.cert_pem),
    );
    inst.add_main_cf(&format!(
        "smtpd_tls_security_level = may\n\
         smtpd_tls_chain_files = {}, {}\n",
        f1.display(),
        f2.display()
    ));
    let mut inst = inst;
    inst.start();
    for (schemes, want, what) in [
        (vec![SignatureScheme::ED25519], &ed25519, "Ed25519"),
        (
            vec![SignatureScheme::ECDSA_NISTP256_SHA256],
            &ecdsa,
            "ECDSA",
        ),
    ] {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let cfg = client_config(
                &ca,
                &Offer {
                    versions: vec![version],
                    suite: None,
                    schemes: Some(schemes.clone()),
                },
            );
            let mut tls = Plain::connect(inst.smtp_port).starttls(cfg);
            assert!(
                tls.peer_cert() == want.der,
                "a client that verifies only {what} ({:?}) must get the {what} certificate",
                version.version
            );
            tls.expect("EHLO client.example.test", 250);
            tls.expect("QUIT", 221);
        }
    }
}

/// Replaces `path` atomically with `text`.
fn replace_file(inst: &Instance, path: &Path, text: &str) {
    let tmp = PathBuf::from(format!("{}.new", path.display()));
    fs::write(&tmp, text).unwrap();
    inst.chown_all();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn renewed_certificate_is_used_without_restart_and_open_sessions_survive() {
    let (mut inst, ca, first) = tls_instance("");
    let (cert, key) = server_files(&inst);
    inst.start();
    let cfg = tls13_aes256(&ca);

    // A session opened before the renewal.
    let mut old = Plain::connect(inst.smtp_port).starttls(cfg.clone());
    assert!(old.peer_cert() == first.der, "the first certificate");
    old.expect("EHLO old.example.test", 250);

    // Renewal: a new key and certificate (another subject) replace the files.
    let second = ecdsa_leaf(&ca, "second");
    replace_file(&inst, &key, &second.key_pem);
    replace_file(&inst, &cert, &second.cert_pem);
    std::thread::sleep(Duration::from_secs(2));

    // New connections get the new certificate (within a bounded wait), none fails.
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut seen_new = false;
    for _ in 0..40 {
        let mut p = Plain::connect(inst.smtp_port);
        p.expect("EHLO client.example.test", 250);
        p.expect("STARTTLS", 220);
        match handshake(p.s, cfg.clone()) {
            Ok(mut t) => {
                let der = t.peer_cert();
                let _ = t.cmd("QUIT");
                if der == second.der {
                    seen_new = true;
                    break;
                }
                assert!(der == first.der, "a certificate that is neither");
            }
            Err(e) => failures.push(e),
        }
        if start.elapsed() > Duration::from_secs(15) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen_new,
        "new connections still get the old certificate {:?} after the files changed \
         (no reload was run); failures: {failures:?}",
        start.elapsed() + Duration::from_secs(2)
    );
    assert!(
        failures.is_empty(),
        "handshakes failed during the renewal: {failures:?}"
    );

    // The session opened before the swap still works.
    old.mail_and_quit(
        &local_user(&inst),
        "Subject: across renewal\r\n\r\nsurvived the renewal\r\n",
    );
    inst.wait_for_text(&mbox(&inst), "survived the renewal");
}
