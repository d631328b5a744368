//! The delivery client against real servers on loopback: small scripted servers in threads
//! (per-recipient replies, drops, HELO-only, greetings, STARTTLS), Postfix's smtp-sink, and
//! a test DNS server for MX routing to 127.0.0.2 and 127.0.0.3.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use posthorn_dns::testserver::TestDns;
use posthorn_proto::delivery::{Outcome, Status};
use posthorn_smtp::settings::{ServerNameMode, Timeouts};
use posthorn_smtp::{
    Agent, MemoryContent, NativeResolver, Recipient, Request, SmtpSettings, TlsLevel,
};

/// How a scripted server behaves.
#[derive(Clone)]
struct Script {
    greeting: String,
    /// EHLO keywords; None: EHLO is refused with 502 (a HELO-only server).
    ehlo: Option<Vec<String>>,
    /// The reply to RCPT TO for an address.
    rcpt: fn(&str) -> String,
    /// Close the connection after the first content line.
    drop_in_data: bool,
    end_reply: String,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            greeting: "220 mx.test ESMTP".into(),
            ehlo: Some(vec![
                "PIPELINING".into(),
                "SIZE 10240000".into(),
                "8BITMIME".into(),
                "DSN".into(),
            ]),
            rcpt: |_| "250 2.1.5 Ok".into(),
            drop_in_data: false,
            end_reply: "250 2.0.0 Ok: queued as ABC".into(),
            tls: None,
        }
    }
}

/// A scripted server: its address, the commands it saw and its connection count.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Server {
    fn start(ip: &str, script: Script) -> Server {
        Server::start_on(TcpListener::bind((ip, 0)).unwrap(), script)
    }

    fn start_on(listener: TcpListener, script: Script) -> Server {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (s2, c2, m2) = (seen.clone(), connections.clone(), messages.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(50) {
                let Ok(stream) = stream else { continue };
                c2.fetch_add(1, Ordering::SeqCst);
                let (script, seen, messages) = (script.clone(), s2.clone(), m2.clone());
                std::thread::spawn(move || serve(stream, &script, &seen, &messages));
            }
        });
        Server {
            addr,
            seen,
            connections,
            messages,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn hop(&self) -> String {
        format!("[{}]:{}", self.addr.ip(), self.addr.port())
    }
}

fn read_line(s: &mut dyn Read) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    for _ in 0..100_000 {
        match s.read(&mut b) {
            Ok(1) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
            _ => return None,
        }
    }
    None
}

fn say(s: &mut dyn Write, text: &str) -> bool {
    s.write_all(format!("{text}\r\n").as_bytes()).is_ok() && s.flush().is_ok()
}

fn serve(
    mut sock: TcpStream,
    script: &Script,
    seen: &Mutex<Vec<String>>,
    messages: &Mutex<Vec<Vec<u8>>>,
) {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    if !say(&mut sock, &script.greeting) || !script.greeting.starts_with('2') {
        let _ = read_line(&mut sock);
        return;
    }
    if dialogue(&mut sock, script, seen, messages, true)
        && let Some(cfg) = &script.tls
    {
        let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        dialogue(&mut tls, script, seen, messages, false);
    }
}

/// Runs commands until QUIT or EOF; true when STARTTLS was accepted.
fn dialogue<S: Read + Write>(
    s: &mut S,
    script: &Script,
    seen: &Mutex<Vec<String>>,
    messages: &Mutex<Vec<Vec<u8>>>,
    plain: bool,
) -> bool {
    for _ in 0..1000 {
        let Some(line) = read_line(s) else {
            return false;
        };
        let cmd = line.trim_end().to_string();
        seen.lock().unwrap().push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            match &script.ehlo {
                None => "502 5.5.2 Error: command not recognized".to_string(),
                Some(kw) => {
                    let mut kw = kw.clone();
                    if plain && script.tls.is_some() {
                        kw.push("STARTTLS".into());
                    }
                    let mut r = String::from("250-mx.test");
                    for (i, k) in kw.iter().enumerate() {
                        r.push_str(if i + 1 == kw.len() {
                            "\r\n250 "
                        } else {
                            "\r\n250-"
                        });
                        r.push_str(k);
                    }
                    if kw.is_empty() {
                        r = "250 mx.test".into();
                    }
                    r
                }
            }
        } else if upper.starts_with("HELO") {
            "250 mx.test".into()
        } else if upper == "STARTTLS" && plain && script.tls.is_some() {
            say(s, "220 2.0.0 Ready to start TLS");
            return true;
        } else if upper.starts_with("MAIL FROM:") {
            "250 2.1.0 Ok".into()
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:<") {
            let addr = rest.split('>').next().unwrap_or("").to_ascii_lowercase();
            (script.rcpt)(&addr)
        } else if upper == "DATA" {
            if !say(s, "354 End data with <CR><LF>.<CR><LF>") {
                return false;
            }
            let mut msg = Vec::new();
            loop {
                let Some(l) = read_line(s) else { return false };
                if script.drop_in_data {
                    return false;
                }
                if l == ".\r\n" {
                    break;
                }
                msg.extend_from_slice(l.as_bytes());
            }
            messages.lock().unwrap().push(msg);
            script.end_reply.clone()
        } else if upper == "RSET" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            say(s, "221 2.0.0 Bye");
            return false;
        } else {
            "502 5.5.2 Error: command not recognized".into()
        };
        if !say(s, &reply) {
            return false;
        }
    }
    false
}

fn settings() -> SmtpSettings {
    let mut s = SmtpSettings::defaults("client.test");
    s.timeouts = Timeouts::uniform(Duration::from_secs(10));
    s
}

fn rcpts(addrs: &[&str]) -> Vec<Recipient> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Recipient {
            offset: 100 + i as u64,
            address: a.to_string(),
            notify: None,
            orcpt: None,
        })
        .collect()
}

fn send(agent: &mut Agent, hop: &str, to: &[&str], content: &[u8]) -> Vec<Status> {
    let content = MemoryContent::new(content.to_vec());
    let rcpts = rcpts(to);
    agent.deliver(&Request {
        queue_id: "QID",
        nexthop: hop,
        sender: "sender@client.test",
        envid: None,
        ret: None,
        smtputf8: false,
        rcpts: &rcpts,
        content: &content,
    })
}

const MSG: &[u8] = b"Subject: test\n\n.dot line\nbody\n";

#[test]
fn pipelined_delivery_with_per_recipient_results_and_reuse() {
    let server = Server::start(
        "127.0.0.1",
        Script {
            rcpt: |a| {
                if a.starts_with("bad") {
                    format!("550 5.1.1 <{a}>: Recipient address rejected: User unknown")
                } else if a.starts_with("later") {
                    "450 4.2.0 <x>: greylisted".into()
                } else {
                    "250 2.1.5 Ok".into()
                }
            },
            ..Script::default()
        },
    );
    let mut agent = Agent::new(settings(), Box::new(NativeResolver));
    let st = send(
        &mut agent,
        &server.hop(),
        &["good@d.test", "bad@d.test", "later@d.test"],
        MSG,
    );
    let relay = format!("127.0.0.1[127.0.0.1]:{}", server.addr.port());
    assert_eq!(st.len(), 3);
    assert_eq!(st[0].outcome, Outcome::Sent);
    assert_eq!(st[0].reason, "250 2.0.0 Ok: queued as ABC");
    assert_eq!(st[0].dsn, "2.0.0");
    assert_eq!(st[0].relay, relay);
    assert_eq!(st[0].offset, 100);
    assert_eq!(st[1].outcome, Outcome::Bounced);
    assert_eq!(st[1].dsn, "5.1.1");
    assert_eq!(
        st[1].reason,
        "host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad@d.test>: Recipient address rejected: User unknown (in reply to RCPT TO command)"
    );
    assert_eq!(
        (st[2].outcome, st[2].dsn.as_str()),
        (Outcome::Deferred, "4.2.0")
    );
    let seen = server.seen();
    assert_eq!(seen[0], "EHLO client.test");
    assert!(
        seen[1].starts_with("MAIL FROM:<sender@client.test> SIZE="),
        "{seen:?}"
    );
    assert_eq!(
        server.messages.lock().unwrap()[0],
        b"Subject: test\r\n\r\n..dot line\r\nbody\r\n"
    );

    // The second message reuses the connection, after RSET.
    assert_eq!(agent.cached(), 1);
    let st = send(&mut agent, &server.hop(), &["good@d.test"], MSG);
    assert_eq!(st[0].outcome, Outcome::Sent);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert!(server.seen().contains(&"RSET".to_string()));

    // An expired cache entry is closed with QUIT.
    let mut s = settings();
    s.cache_time_limit = Duration::from_millis(1);
    let mut agent = Agent::new(s, Box::new(NativeResolver));
    send(&mut agent, &server.hop(), &["good@d.test"], MSG);
    std::thread::sleep(Duration::from_millis(20));
    agent.expire_cache();
    assert_eq!(agent.cached(), 0);
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.seen().contains(&"QUIT".to_string()));
}

#[test]
fn helo_only_server_without_pipelining() {
    let server = Server::start(
        "127.0.0.1",
        Script {
            ehlo: None,
            ..Script::default()
        },
    );
    let mut agent = Agent::new(settings(), Box::new(NativeResolver));
    let st = send(
        &mut agent,
        &server.hop(),
        &["a@d.test", "b@d.test"],
        "Subject: x\n\ncaf\u{e9}\n".as_bytes(),
    );
    assert!(st.iter().all(|s| s.outcome == Outcome::Sent), "{st:?}");
    let seen = server.seen();
    assert_eq!(
        &seen[..3],
        [
            "EHLO client.test",
            "HELO client.test",
            "MAIL FROM:<sender@client.test>"
        ]
    );
    // No 8BITMIME: the body went as quoted-printable.
    let msg = String::from_utf8(server.messages.lock().unwrap()[0].clone()).unwrap();
    assert!(
        msg.ends_with("Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"),
        "{msg}"
    );
}

#[test]
fn connection_dropped_during_data_defers() {
    let server = Server::start(
        "127.0.0.1",
        Script {
            drop_in_data: true,
            ..Script::default()
        },
    );
    let mut agent = Agent::new(settings(), Box::new(NativeResolver));
    let big = "x".repeat(100).repeat(20_000).into_bytes();
    let st = send(&mut agent, &server.hop(), &["a@d.test"], &big);
    assert_eq!(st[0].outcome, Outcome::Deferred);
    assert_eq!(st[0].dsn, "4.4.2");
    assert!(
        st[0]
            .reason
            .starts_with("lost connection with 127.0.0.1[127.0.0.1] while sending message body")
            || st[0]
                .reason
                .starts_with("lost connection with 127.0.0.1[127.0.0.1] while sending end of data"),
        "{}",
        st[0].reason
    );
    assert_eq!(agent.cached(), 0);
}

#[test]
fn size_and_smtputf8_are_checked_before_sending() {
    let server = Server::start(
        "127.0.0.1",
        Script {
            ehlo: Some(vec!["SIZE 10".into()]),
            ..Script::default()
        },
    );
    let mut agent = Agent::new(settings(), Box::new(NativeResolver));
    let st = send(&mut agent, &server.hop(), &["a@d.test"], MSG);
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Bounced, "5.3.4")
    );
    assert!(
        st[0]
            .reason
            .starts_with("message size 30 exceeds size limit 10 of server 127.0.0.1[127.0.0.1]")
    );

    let content = MemoryContent::new(b"x\n".to_vec());
    let r = rcpts(&["j\u{f6}rg@d.test"]);
    let st = agent.deliver(&Request {
        queue_id: "QID",
        nexthop: &server.hop(),
        sender: "s@client.test",
        envid: None,
        ret: None,
        smtputf8: true,
        rcpts: &r,
        content: &content,
    });
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Bounced, "5.6.7")
    );
    assert_eq!(
        st[0].reason,
        "SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]"
    );
    assert!(!server.seen().iter().any(|c| c.starts_with("MAIL")));
}

#[test]
fn greetings_connect_failures_and_fallback_relay() {
    let refusing = Server::start(
        "127.0.0.1",
        Script {
            greeting: "554 5.7.1 go away".into(),
            ..Script::default()
        },
    );
    let mut agent = Agent::new(settings(), Box::new(NativeResolver));
    let st = send(&mut agent, &refusing.hop(), &["a@d.test"], MSG);
    // smtp_skip_5xx_greeting = yes: never a bounce.
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Deferred, "4.7.1")
    );
    assert_eq!(
        st[0].reason,
        "host 127.0.0.1[127.0.0.1] refused to talk to me: 454 4.7.1 go away"
    );

    // A closed port: connect failure, then the fallback relay.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("[127.0.0.1]:{}", closed.port());
    let st = send(&mut agent, &dead, &["a@d.test"], MSG);
    assert_eq!(st[0].outcome, Outcome::Deferred);
    assert_eq!(
        st[0].reason,
        format!(
            "connect to 127.0.0.1[127.0.0.1]:{}: Connection refused",
            closed.port()
        )
    );
    let good = Server::start("127.0.0.1", Script::default());
    let mut s = settings();
    s.fallback_relay = vec![good.hop()];
    let mut agent = Agent::new(s, Box::new(NativeResolver));
    let st = send(&mut agent, &dead, &["a@d.test"], MSG);
    assert_eq!(st[0].outcome, Outcome::Sent, "{st:?}");
    assert_eq!(
        st[0].relay,
        format!("127.0.0.1[127.0.0.1]:{}", good.addr.port())
    );
}

/// A port free on both 127.0.0.2 and 127.0.0.3, with its two listeners.
fn twin_listeners() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.2:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind(("127.0.0.3", port)) {
            return (a, b);
        }
    }
    panic!("no common free port on 127.0.0.2 and 127.0.0.3");
}

#[test]
fn mx_routing_with_a_real_dns_server() {
    let dns = TestDns::start(
        "example.test MX 10 mx1.example.test\n\
         example.test MX 20 mx2.example.test\n\
         mx1.example.test A 127.0.0.2\n\
         mx2.example.test A 127.0.0.3\n\
         nullmx.test MX 0 .\n\
         servfail.test SERVFAIL\n",
    );
    let (l1, l2) = twin_listeners();
    let port = l1.local_addr().unwrap().port();
    // mx1 greets with 421: the client goes on to mx2.
    let mx1 = Server::start_on(
        l1,
        Script {
            greeting: "421 4.3.2 busy".into(),
            ..Script::default()
        },
    );
    let mx2 = Server::start_on(l2, Script::default());
    let dns = posthorn_dns::Dns::new(&[dns.server_spec()]).unwrap();
    let mut agent = Agent::new(settings(), Box::new(dns));
    let st = send(
        &mut agent,
        &format!("example.test:{port}"),
        &["u@example.test"],
        MSG,
    );
    assert_eq!(st[0].outcome, Outcome::Sent, "{st:?}");
    assert_eq!(st[0].relay, format!("mx2.example.test[127.0.0.3]:{port}"));
    assert_eq!(mx1.connections.load(Ordering::SeqCst), 1);
    assert_eq!(mx2.connections.load(Ordering::SeqCst), 1);

    let st = send(&mut agent, "nullmx.test", &["u@nullmx.test"], MSG);
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Bounced, "5.1.10")
    );
    assert_eq!(
        st[0].reason,
        "Domain nullmx.test does not accept mail (nullMX)"
    );
    let st = send(&mut agent, "nosuch.test", &["u@nosuch.test"], MSG);
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Bounced, "5.4.4"),
        "{st:?}"
    );
    assert!(
        st[0]
            .reason
            .contains("name=nosuch.test type=MX: Host not found"),
        "{}",
        st[0].reason
    );
    let st = send(&mut agent, "servfail.test", &["u@servfail.test"], MSG);
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Deferred, "4.4.3"),
        "{st:?}"
    );
}

/// A CA and a server certificate for 127.0.0.1 and mx.tls.test.
struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["mx.tls.test".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

#[test]
fn starttls_levels() {
    let pki = pki();
    let server = Server::start(
        "127.0.0.1",
        Script {
            tls: Some(pki.server.clone()),
            ..Script::default()
        },
    );
    // may: TLS when offered, not verified.
    let mut s = settings();
    s.tls_level = TlsLevel::May;
    let mut agent = Agent::new(s.clone(), Box::new(NativeResolver));
    let st = send(&mut agent, &server.hop(), &["a@d.test"], MSG);
    assert_eq!(st[0].outcome, Outcome::Sent, "{st:?}");
    let seen = server.seen();
    assert_eq!(
        seen[..3],
        ["EHLO client.test", "STARTTLS", "EHLO client.test"]
    );
    assert_eq!(server.messages.lock().unwrap().len(), 1);

    // verify with the right CA file: the name checked is the host, here 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    s.tls_level = TlsLevel::Verify;
    s.tls_ca_file = Some(ca);
    s.tls_servername = ServerNameMode::Hostname;
    let mut agent = Agent::new(s.clone(), Box::new(NativeResolver));
    let st = send(&mut agent, &server.hop(), &["a@d.test"], MSG);
    assert_eq!(st[0].outcome, Outcome::Sent, "{st:?}");

    // verify with the bundled roots: the test CA is not trusted, the mail is deferred.
    s.tls_ca_file = None;
    let mut agent = Agent::new(s.clone(), Box::new(NativeResolver));
    let st = send(&mut agent, &server.hop(), &["a@d.test"], MSG);
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Deferred, "4.7.5"),
        "{st:?}"
    );
    assert!(
        st[0].reason.starts_with("Server certificate not verified"),
        "{}",
        st[0].reason
    );

    // encrypt against a server without STARTTLS.
    let plain = Server::start("127.0.0.1", Script::default());
    s.tls_level = TlsLevel::Encrypt;
    let mut agent = Agent::new(s, Box::new(NativeResolver));
    let st = send(&mut agent, &plain.hop(), &["a@d.test"], MSG);
    assert_eq!(
        (st[0].outcome, st[0].dsn.as_str()),
        (Outcome::Deferred, "4.7.4")
    );
    assert_eq!(
        st[0].reason,
        "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"
    );
}

#[test]
fn postfix_smtp_sink() {
    let sink = std::path::Path::new("/usr/sbin/smtp-sink");
    if !sink.exists() {
        eprintln!("smtp-sink not installed: skipped");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = std::process::Command::new(sink);
    if nix::unistd::geteuid().is_root() {
        cmd.args(["-u", "nobody"]);
    }
    let mut child = cmd
        .args(["-c", &format!("127.0.0.1:{port}"), "10"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut agent = Agent::new(settings(), Box::new(NativeResolver));
    let hop = format!("[127.0.0.1]:{port}");
    for _ in 0..3 {
        let st = send(&mut agent, &hop, &["a@d.test", "b@d.test"], MSG);
        assert!(st.iter().all(|s| s.outcome == Outcome::Sent), "{st:?}");
        assert!(st[0].reason.starts_with("250 2.0.0 Ok"), "{}", st[0].reason);
    }
    agent.close_all();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}
