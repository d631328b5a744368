//! The SMTP delivery client (`smtp`) end to end, against real peers on loopback only:
//! Postfix's `smtp-sink` behind `relayhost` (and told to answer 4xx/5xx), a second posthorn
//! instance as the destination (Received chain, connection reuse, per-recipient replies,
//! opportunistic STARTTLS), MX routing through a test name server (preference, a dead first
//! MX, null MX, NXDOMAIN, SERVFAIL), and tiny scripted servers written here: one that drops
//! the connection in the middle of DATA, one that only speaks HELO. Log lines and notices are
//! checked against Postfix's formats (delivery line layout, `conn_use=`, `connect to ...`
//! for a dead MX, the whole reason quoted in a bounce notice).
//!
//! Nothing uses port 25 and nothing leaves 127.0.0.0/8: next hops are `[127.0.0.1]:PORT`
//! literals or MX hosts that the test name server (`smtp_dns_servers`) maps to 127.0.0.x,
//! with `smtp_tcp_port` set to a free port.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use posthorn_dns::testserver::TestDns;
use posthorn_testkit::smtp::wait_listening;
use posthorn_testkit::{Instance, free_port, is_root, read_text};

/// The usual bound for one expected event.
const T: Duration = Duration::from_secs(20);
/// The bound for a burst of messages.
const BURST: Duration = Duration::from_secs(60);
/// Postfix's test server.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

// ---------------------------------------------------------------------------------------
// Instances

/// The instance user's address in its own `$mydestination`.
fn me(inst: &Instance) -> String {
    format!("{}@mail.example.test", inst.user())
}

/// The instance user's mbox.
fn mbox(inst: &Instance) -> std::path::PathBuf {
    inst.mail.join(inst.user())
}

/// A started sending instance (`myhostname = mail.example.test`) with `extra` in main.cf.
fn sender(extra: &str) -> Instance {
    let mut inst = Instance::new(extra);
    inst.start();
    inst
}

/// A receiving instance (not started) named `mx.DOMAIN` that delivers mail for `domain`
/// locally; `extra` main.cf lines come last. Its own name differs from the sender's, so a
/// client's mail-loop check cannot mistake it for itself.
fn receiver(host: &str, domain: &str, extra: &str) -> Instance {
    Instance::new(&format!(
        "myhostname = {host}\n\
         mydestination = $myhostname, localhost, {domain}\n\
         {extra}"
    ))
}

/// Submits one message from the instance user to `to` with `sendmail -f`.
fn send(inst: &Instance, to: &[&str], subject: &str, body: &str) {
    let me = me(inst);
    let mut args = vec!["-f", me.as_str()];
    args.extend_from_slice(to);
    let out = inst.sendmail(&args, &format!("Subject: {subject}\n\n{body}\n"));
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
    let line = found.unwrap_or_default();
    check_format(&line);
    line
}

/// Checks Postfix's delivery line layout:
/// `ID: to=<..>, relay=R, [conn_use=N, ]delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=S (..)`.
#[track_caller]
fn check_format(line: &str) {
    let rest = line
        .split_once(": to=<")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no to=<: {line}"));
    let (head, status) = rest
        .split_once(", status=")
        .unwrap_or_else(|| panic!("no status= in {line}"));
    let fields: Vec<&str> = head.split(", ").collect();
    let named = |prefix: &str| {
        fields
            .iter()
            .find(|f| f.starts_with(prefix))
            .map(|f| &f[prefix.len()..])
            .unwrap_or_else(|| panic!("no {prefix} in {line}"))
    };
    assert!(
        fields.get(1).is_some_and(|f| f.starts_with("relay=")),
        "{line}"
    );
    assert!(named("delay=").parse::<f64>().is_ok(), "delay: {line}");
    let delays: Vec<&str> = named("delays=").split('/').collect();
    assert!(
        delays.len() == 4 && delays.iter().all(|d| d.parse::<f64>().is_ok()),
        "delays: {line}"
    );
    let dsn = named("dsn=");
    assert!(
        dsn.split('.').count() == 3 && dsn.split('.').all(|p| p.parse::<u16>().is_ok()),
        "dsn: {line}"
    );
    assert!(
        fields.last().is_some_and(|f| f.starts_with("dsn=")),
        "dsn= comes right before status=: {line}"
    );
    assert!(
        ["sent (", "deferred (", "bounced ("]
            .iter()
            .any(|s| status.starts_with(s))
            && status.ends_with(')'),
        "status: {line}"
    );
}

/// A notice's text with Postfix's line wrapping (newline + 4 spaces) undone.
fn unwrapped(text: &str) -> String {
    text.replace("\n    ", " ")
}

/// Rewrites the instance's `smtp inet` service (moved to 127.0.0.1 by testkit) to listen on
/// `addr` instead (before the instance starts).
fn listen_on(inst: &Instance, addr: &str) {
    let p = inst.etc.join("master.cf");
    let old = format!("127.0.0.1:{} ", inst.smtp_port);
    let text: String = fs::read_to_string(&p)
        .expect("master.cf")
        .lines()
        .map(|l| match l.strip_prefix(&old) {
            Some(rest) => format!("{addr} {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().take(2).eq([addr, "inet"])),
        "{text}"
    );
    fs::write(&p, text).expect("write master.cf");
    inst.chown_all();
}

/// Waits (10 s) until something listens on TCP `ip:port` (IPv4), without connecting.
fn wait_listening_on(ip: [u8; 4], port: u16) {
    let want = format!(
        "{:02X}{:02X}{:02X}{:02X}:{port:04X}",
        ip[3], ip[2], ip[1], ip[0]
    );
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let listening = table.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1] == want && cols[3] == "0A"
        });
        if listening {
            return;
        }
        assert!(Instant::now() < end, "nothing listens on {ip:?}:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number of `connect from` lines (new SMTP sessions) in an smtpd log.
fn smtpd_connections(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("]: connect from "))
        .count()
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

/// Waits a few seconds, then checks that `rcpt` was only ever deferred (never bounced) and the
/// message is still queued.
fn assert_stays_queued(inst: &Instance, rcpt: &str) {
    std::thread::sleep(Duration::from_secs(3));
    let log = inst.log_text();
    let lines = delivery_lines(&log, rcpt);
    assert!(
        lines.iter().all(|l| l.contains("status=deferred")),
        "<{rcpt}> must only ever be deferred:\n{}",
        lines.join("\n")
    );
    assert!(
        !inst.queue_empty(),
        "the message to <{rcpt}> left the queue; log:\n{log}"
    );
    let ok = inst.wait_until(T, || inst.queue_count("deferred") >= 1);
    assert!(
        ok,
        "nothing in the deferred queue; log:\n{}",
        inst.log_text()
    );
}

// ---------------------------------------------------------------------------------------
// smtp-sink

/// A running `smtp-sink` on 127.0.0.1, dumping each message to a file; killed when dropped.
struct Sink {
    child: Child,
    port: u16,
    /// Its stdout and stderr (the `-c` counters).
    output: Arc<Mutex<String>>,
    dump: tempfile::TempDir,
}

impl Sink {
    /// Starts `smtp-sink -c -d DUMP/m. OPTS 127.0.0.1:PORT 64` and waits until it listens.
    fn start(opts: &[&str]) -> Sink {
        Sink::start_on([127, 0, 0, 1], free_port(), opts)
    }

    /// Starts `smtp-sink -c -d DUMP/m. OPTS IP:PORT 64` and waits until it listens.
    fn start_on(ip: [u8; 4], port: u16, opts: &[&str]) -> Sink {
        assert!(
            Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} missing (Debian package postfix)"
        );
        let dump = tempfile::Builder::new()
            .prefix("sink")
            .tempdir_in("/tmp")
            .expect("sink dump dir");
        fs::set_permissions(dump.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let mut c = Command::new(SMTP_SINK);
        if is_root() {
            c.args(["-u", "nobody"]);
        }
        c.arg("-c")
            .arg("-d")
            .arg(format!("{}/m.", dump.path().display()))
            .args(opts)
            .arg(format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]))
            .arg("64")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("start smtp-sink");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            std::thread::spawn(move || collect(pipe, &out));
        }
        let sink = Sink {
            child,
            port,
            output,
            dump,
        };
        wait_listening_on(ip, port);
        sink
    }

    /// The next hop `[127.0.0.1]:PORT`.
    fn hop(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// The messages received so far (dump files: smtp-sink's X- headers, then the message).
    fn messages(&self) -> Vec<String> {
        fs::read_dir(self.dump.path())
            .map(|rd| {
                rd.flatten()
                    .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The last `sess=N` counter (sessions ended so far), if any was printed.
    fn sessions(&self) -> Option<u64> {
        let out = self.output.lock().unwrap().clone();
        out.rsplit(['\r', '\n'])
            .find_map(|s| s.strip_prefix("sess=")?.split(' ').next()?.parse().ok())
    }

    /// What it printed.
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends everything read from `r` to `out` until EOF.
fn collect(mut r: Box<dyn Read + Send>, out: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

// ---------------------------------------------------------------------------------------
// Scripted servers

/// How a [`FakeServer`] behaves.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// ESMTP; after `354` it reads a little of the body and closes the connection.
    DropInData,
    /// `502` to EHLO, `250` to HELO, then accepts the message.
    HeloOnly,
}

/// A tiny SMTP server on 127.0.0.1 (one thread per connection) that records every command
/// line it reads and every message it accepts (as `BODY\n...`).
struct FakeServer {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(script: Script) -> FakeServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            let seen = seen.clone();
                            std::thread::spawn(move || {
                                let _ = serve(s, script, &seen);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        FakeServer {
            port,
            stop,
            seen,
            acceptor: Some(acceptor),
        }
    }

    /// The next hop `[127.0.0.1]:PORT`.
    fn hop(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// Everything recorded so far.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One connection of a [`FakeServer`].
fn serve(s: TcpStream, script: Script, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    w.write_all(b"220 fake.test ESMTP\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        seen.lock().unwrap().push(cmd.clone());
        let verb = cmd
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match (script, verb.as_str()) {
            (Script::HeloOnly, "EHLO") => "502 5.5.2 Error: command not recognized",
            (_, "EHLO" | "HELO") => "250 fake.test",
            (_, "MAIL") => "250 2.1.0 Ok",
            (_, "RCPT") => "250 2.1.5 Ok",
            (_, "RSET" | "NOOP") => "250 2.0.0 Ok",
            (_, "QUIT") => {
                w.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            (Script::DropInData, "DATA") => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut buf = vec![0u8; 4096];
                let n = r.read(&mut buf)?;
                seen.lock()
                    .unwrap()
                    .push(format!("DROPPED after {n} body bytes"));
                // Closing with unread data sends a reset: the client is cut off mid-body.
                return Ok(());
            }
            (Script::HeloOnly, "DATA") => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut body = String::from("BODY\n");
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    body.push_str(&l);
                }
                seen.lock().unwrap().push(body);
                "250 2.0.0 Ok: queued as FAKE1"
            }
            _ => "502 5.5.2 Error: command not recognized",
        };
        w.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

// ---------------------------------------------------------------------------------------
// 1. relayhost → smtp-sink

#[test]
fn relayhost_to_smtp_sink() {
    let sink = Sink::start(&[]);
    let inst = sender(&format!("relayhost = {}\n", sink.hop()));
    for i in 0..20 {
        send(&inst, &["x@remote.test"], &format!("relayed {i}"), "body");
    }
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{},", sink.port);
    let ok = inst.wait_until(BURST, || {
        delivery_lines(&inst.log_text(), "x@remote.test")
            .iter()
            .filter(|l| l.contains("status=sent"))
            .count()
            >= 20
    });
    let log = inst.log_text();
    assert!(ok, "not all 20 messages were sent; log:\n{log}");
    let lines = delivery_lines(&log, "x@remote.test");
    assert_eq!(
        lines.len(),
        20,
        "one attempt per message:\n{}",
        lines.join("\n")
    );
    for l in &lines {
        check_format(l);
        assert!(l.contains(&relay), "{l}");
        assert!(l.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok)"), "{l}");
    }
    wait_queue_empty(&inst);
    // The sink got every message, each with the envelope and the subject.
    let ok = inst.wait_until(T, || sink.messages().len() >= 20);
    assert!(ok, "sink holds {} messages", sink.messages().len());
    let msgs = sink.messages();
    for i in 0..20 {
        let subject = format!("Subject: relayed {i}\n");
        let m = msgs
            .iter()
            .find(|m| m.contains(&subject))
            .unwrap_or_else(|| panic!("no message with {subject:?} at the sink"));
        assert!(m.contains("X-Rcpt-Args: <x@remote.test>"), "{m}");
        assert!(
            m.contains(&format!("X-Mail-Args: <{}>", me(&inst))),
            "envelope sender: {m}"
        );
        assert!(m.contains("X-Helo-Args: mail.example.test"), "{m}");
    }
    eprintln!(
        "smtp-sink sessions for 20 messages: {:?} (output {:?})",
        sink.sessions(),
        sink.output()
    );
}

// ---------------------------------------------------------------------------------------
// 2. posthorn → posthorn: Received chain and connection reuse

#[test]
fn posthorn_to_posthorn_with_connection_reuse() {
    let mut recv = receiver("mx.dest.test", "dest.test", "");
    recv.start();
    let user = recv.user();
    let rcpt = format!("{user}@dest.test");
    let inst = sender(&format!(
        "transport_maps = inline:{{ {{dest.test=smtp:[127.0.0.1]:{}}} }}\n",
        recv.smtp_port
    ));
    wait_listening(recv.smtp_port);
    for i in 0..10 {
        send(&inst, &[&rcpt], &format!("reuse {i}"), "hello across");
    }
    let box_path = mbox(&recv);
    let ok = recv.wait_until(BURST, || {
        read_text(&box_path).matches("\nSubject: reuse ").count() >= 10
    });
    assert!(
        ok,
        "the receiver's mbox holds {} of 10 messages:\n{}\nsender log:\n{}\nreceiver log:\n{}",
        read_text(&box_path).matches("\nSubject: reuse ").count(),
        read_text(&box_path),
        inst.log_text(),
        recv.log_text()
    );
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{},", recv.smtp_port);
    let ok = inst.wait_until(T, || {
        delivery_lines(&inst.log_text(), &rcpt)
            .iter()
            .filter(|l| l.contains("status=sent"))
            .count()
            >= 10
    });
    assert!(ok, "sender log:\n{}", inst.log_text());
    for l in delivery_lines(&inst.log_text(), &rcpt) {
        check_format(&l);
        assert!(l.contains(&relay), "{l}");
        assert!(
            l.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as "),
            "{l}"
        );
    }
    wait_queue_empty(&inst);

    // The Received chain: the receiver's smtpd header above the sender's local one.
    let text = read_text(&box_path);
    let first = text.split("\nFrom ").next().unwrap_or_default().to_string();
    let by_smtpd = first
        .find("Received: from mail.example.test (")
        .unwrap_or_else(|| panic!("no Received header from the sender's client:\n{first}"));
    let by_local = first
        .find("Received: by mail.example.test (posthorn, from userid ")
        .unwrap_or_else(|| panic!("no Received header of the sender's submission:\n{first}"));
    assert!(by_smtpd < by_local, "order of Received headers:\n{first}");
    assert!(
        first.contains("by mx.dest.test (posthorn) with ESMTP id "),
        "{first}"
    );
    assert!(first.contains("hello across"), "{first}");

    // Connection reuse: fewer sessions than messages at the receiver.
    let sessions = smtpd_connections(&recv.log_text());
    assert!(
        (1..10).contains(&sessions),
        "the receiver saw {sessions} SMTP sessions for 10 messages (no connection reuse);\n\
         sender log:\n{}\nreceiver log:\n{}",
        inst.log_text(),
        recv.log_text()
    );
}

/// Postfix logs `conn_use=N` (after `relay=`) for every delivery over a reused connection
/// (log_adhoc.c): with S sessions for M messages at the sink, M - S lines carry it.
#[test]
fn reused_connections_are_logged_with_conn_use() {
    let sink = Sink::start(&[]);
    let mut inst = sender(&format!("relayhost = {}\n", sink.hop()));
    for i in 0..8 {
        send(&inst, &["y@remote.test"], &format!("reuse {i}"), "body");
    }
    let ok = inst.wait_until(BURST, || {
        delivery_lines(&inst.log_text(), "y@remote.test")
            .iter()
            .filter(|l| l.contains("status=sent"))
            .count()
            >= 8
    });
    assert!(ok, "log:\n{}", inst.log_text());
    // Stopping the sender closes its cached connections; the sink then counts them all.
    inst.stop();
    let mut last = None;
    let settled = inst.wait_until(T, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = sink.sessions();
        let same = now.is_some() && now == last;
        last = now;
        same
    });
    assert!(settled, "sink output: {:?}", sink.output());
    let sessions = usize::try_from(last.unwrap_or(0)).unwrap_or(0);
    let lines = delivery_lines(&inst.log_text(), "y@remote.test");
    let with = lines.iter().filter(|l| l.contains(", conn_use=")).count();
    assert!(
        sessions < 8,
        "no reuse at the sink: {sessions} sessions for 8 messages"
    );
    assert_eq!(
        with,
        8 - sessions,
        "{sessions} sessions for 8 messages, so {} deliveries were over a reused \
         connection and must say conn_use=N:\n{}",
        8 - sessions,
        lines.join("\n")
    );
    for l in lines.iter().filter(|l| l.contains(", conn_use=")) {
        let n: u32 = l
            .split(", conn_use=")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n >= 2, "{l}");
        assert!(
            l.contains(&format!(
                "relay=127.0.0.1[127.0.0.1]:{}, conn_use=",
                sink.port
            )),
            "{l}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. MX routing through a test name server

#[test]
fn mx_routing_falls_back_to_the_second_mx() {
    let port = free_port();
    let dns = TestDns::start(
        "example.test MX 10 mx1.example.test\n\
         example.test MX 20 mx2.example.test\n\
         mx1.example.test A 127.0.0.2\n\
         mx2.example.test A 127.0.0.3\n",
    );
    let mut recv = receiver("mx2.example.test", "example.test", "");
    listen_on(&recv, &format!("127.0.0.3:{port}"));
    recv.start();
    wait_listening_on([127, 0, 0, 3], port);
    let inst = sender(&format!(
        "smtp_dns_servers = {}\nsmtp_tcp_port = {port}\n",
        dns.server_spec()
    ));
    let rcpt = format!("{}@example.test", recv.user());
    send(&inst, &[&rcpt], "via mx", "routed by MX");
    let line = wait_delivery(&inst, &rcpt, "status=sent");
    assert!(
        line.contains(&format!("relay=mx2.example.test[127.0.0.3]:{port},")),
        "{line}"
    );
    assert!(line.contains("dsn=2.0.0"), "{line}");
    let text = recv.wait_for_text(&mbox(&recv), "routed by MX");
    assert!(text.contains("Subject: via mx"), "{text}");
    assert!(
        text.contains("by mx2.example.test (posthorn) with ESMTP id "),
        "{text}"
    );
    wait_queue_empty(&inst);
}

/// Postfix's smtp logs each server it could not connect to before trying the next one:
/// `connect to HOST[ADDR]:PORT: Connection refused` (smtp_connect.c, msg_info).
#[test]
fn failed_mx_connect_is_logged() {
    let port = free_port();
    let dns = TestDns::start(
        "example.test MX 10 mx1.example.test\n\
         example.test MX 20 mx2.example.test\n\
         mx1.example.test A 127.0.0.2\n\
         mx2.example.test A 127.0.0.3\n",
    );
    let sink = Sink::start_on([127, 0, 0, 3], port, &[]);
    let inst = sender(&format!(
        "smtp_dns_servers = {}\nsmtp_tcp_port = {port}\n",
        dns.server_spec()
    ));
    send(&inst, &["who@example.test"], "via mx2", "body");
    let line = wait_delivery(&inst, "who@example.test", "status=sent");
    assert!(
        line.contains(&format!("relay=mx2.example.test[127.0.0.3]:{port},")),
        "{line}"
    );
    assert_eq!(sink.messages().len(), 1);
    let want = format!("]: connect to mx1.example.test[127.0.0.2]:{port}: Connection refused");
    let log = inst.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("posthorn/smtp[") && l.ends_with(&want)),
        "no smtp line ending in {want:?}:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// 4. DNS failures: null MX and NXDOMAIN bounce, SERVFAIL defers

#[test]
fn null_mx_and_nxdomain_bounce_servfail_defers() {
    let dns = TestDns::start(
        "nullmx.test MX 0 .\n\
         servfail.test SERVFAIL\n",
    );
    let inst = sender(&format!(
        "smtp_dns_servers = {}\nsmtp_tcp_port = {}\n",
        dns.server_spec(),
        free_port()
    ));
    send(&inst, &["x@nullmx.test"], "to null mx", "body");
    send(&inst, &["y@nx.test"], "to nxdomain", "body");
    send(&inst, &["z@servfail.test"], "to servfail", "body");

    let null = wait_delivery(&inst, "x@nullmx.test", "status=");
    assert!(null.contains("relay=none,"), "{null}");
    assert!(
        null.contains(
            "dsn=5.1.10, status=bounced (Domain nullmx.test does not accept mail (nullMX))"
        ),
        "{null}"
    );
    let nx = wait_delivery(&inst, "y@nx.test", "status=");
    assert!(nx.contains("relay=none,"), "{nx}");
    assert!(
        nx.contains(
            "dsn=5.4.4, status=bounced (Host or domain name not found. \
             Name service error for name=nx.test type=MX: Host not found)"
        ),
        "{nx}"
    );
    let sf = wait_delivery(&inst, "z@servfail.test", "status=");
    assert!(sf.contains("relay=none,"), "{sf}");
    assert!(
        sf.contains(
            "dsn=4.4.3, status=deferred (Host or domain name not found. \
             Name service error for name=servfail.test type=MX: Host not found, try again"
        ),
        "{sf}"
    );

    // The two bounces come back to the sender, quoting the reasons.
    let path = mbox(&inst);
    inst.wait_for_text(&path, "does not accept mail (nullMX)");
    let text = inst.wait_for_text(&path, "name=nx.test type=MX");
    assert_eq!(
        text.matches("Undelivered Mail Returned to Sender").count(),
        2,
        "{text}"
    );
    assert!(text.contains("Status: 5.1.10"), "{text}");
    assert!(text.contains("Status: 5.4.4"), "{text}");

    // SERVFAIL never bounces: the message stays queued.
    assert_stays_queued(&inst, "z@servfail.test");
    assert!(
        !read_text(&path).contains("servfail.test"),
        "no notice for the deferred message:\n{}",
        read_text(&path)
    );
}

// ---------------------------------------------------------------------------------------
// 5. Per-recipient results in one transaction

#[test]
fn per_recipient_replies() {
    let mut recv = receiver("mx.dest.test", "dest.test", "");
    let user = recv.user();
    recv.add_main_cf(&format!("local_recipient_maps = inline:{{ {user}=ok }}\n"));
    recv.start();
    let good = format!("{user}@dest.test");
    let bad = "nosuchuser@dest.test";
    let inst = sender(&format!(
        "transport_maps = inline:{{ {{dest.test=smtp:[127.0.0.1]:{}}} }}\n",
        recv.smtp_port
    ));
    wait_listening(recv.smtp_port);
    send(&inst, &[&good, bad], "two rcpts", "one of two");

    let sent = wait_delivery(&inst, &good, "status=");
    assert!(
        sent.contains(&format!("relay=127.0.0.1[127.0.0.1]:{},", recv.smtp_port)),
        "{sent}"
    );
    assert!(
        sent.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as "),
        "{sent}"
    );
    let bounced = wait_delivery(&inst, bad, "status=");
    assert!(
        bounced.contains(
            "dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 \
             <nosuchuser@dest.test>: Recipient address rejected: User unknown in local \
             recipient table (in reply to RCPT TO command))"
        ),
        "{bounced}"
    );
    // The known user got it once; the sender got a notice for the other.
    let text = recv.wait_for_text(&mbox(&recv), "one of two");
    assert_eq!(text.matches("Subject: two rcpts").count(), 1, "{text}");
    let notice = inst.wait_for_text(&mbox(&inst), "Undelivered Mail Returned to Sender");
    assert!(notice.contains("<nosuchuser@dest.test>"), "{notice}");
    assert!(
        unwrapped(&notice).contains(
            "550 5.1.1 <nosuchuser@dest.test>: Recipient address rejected: User unknown in \
             local recipient table"
        ),
        "the remote reply is quoted:\n{notice}"
    );
    assert!(
        !notice.contains(&format!("Final-Recipient: rfc822; {good}")),
        "only the rejected recipient is reported:\n{notice}"
    );
    wait_queue_empty(&inst);
}

// ---------------------------------------------------------------------------------------
// 6. smtp-sink answering 4xx / 5xx

#[test]
fn sink_soft_and_hard_rejections() {
    let soft = Sink::start(&["-r", "RCPT"]);
    let hard = Sink::start(&["-f", "RCPT"]);
    let hard_data = Sink::start(&["-f", "."]);
    let inst = sender(&format!(
        "transport_maps = inline:{{ {{soft.test=smtp:{}}}, {{hard.test=smtp:{}}}, \
         {{harddata.test=smtp:{}}} }}\n",
        soft.hop(),
        hard.hop(),
        hard_data.hop()
    ));
    send(&inst, &["a@soft.test"], "soft", "body");
    send(&inst, &["b@hard.test"], "hard", "body");
    send(&inst, &["c@harddata.test"], "hard data", "body");

    let s = wait_delivery(&inst, "a@soft.test", "status=");
    assert!(
        s.contains(&format!("relay=127.0.0.1[127.0.0.1]:{},", soft.port)),
        "{s}"
    );
    assert!(
        s.contains(
            "dsn=4.3.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.3.0 \
             Error: command failed (in reply to RCPT TO command))"
        ),
        "{s}"
    );
    let h = wait_delivery(&inst, "b@hard.test", "status=");
    assert!(
        h.contains(
            "dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 \
             Error: command failed (in reply to RCPT TO command))"
        ),
        "{h}"
    );
    let d = wait_delivery(&inst, "c@harddata.test", "status=");
    assert!(
        d.contains(
            "dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 \
             Error: command failed (in reply to end of DATA command))"
        ),
        "{d}"
    );
    // Both bounces come back with the server's reply.
    let path = mbox(&inst);
    inst.wait_for_text(&path, "c@harddata.test");
    let text = inst.wait_for_text(&path, "b@hard.test");
    assert_eq!(
        text.matches("Undelivered Mail Returned to Sender").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("Diagnostic-Code: smtp; 500 5.3.0 Error: command failed")
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains("<a@soft.test>"), "{text}");
    assert_stays_queued(&inst, "a@soft.test");
}

/// Postfix's notice text is the delivery agent's whole reason, as logged: `<rcpt>: host
/// H[A] said: REPLY (in reply to C command)`, wrapped at 79 columns with a 4-space indent
/// (bounce_notify_util.c, bounce_recipient_log()).
#[test]
fn bounce_notice_quotes_the_whole_smtp_reason() {
    let hard = Sink::start(&["-f", "RCPT"]);
    let hard_data = Sink::start(&["-f", "."]);
    let inst = sender(&format!(
        "transport_maps = inline:{{ {{hard.test=smtp:{}}}, {{harddata.test=smtp:{}}} }}\n",
        hard.hop(),
        hard_data.hop()
    ));
    send(&inst, &["b@hard.test"], "hard", "body");
    send(&inst, &["c@harddata.test"], "hard data", "body");
    let path = mbox(&inst);
    inst.wait_for_text(&path, "c@harddata.test");
    let text = unwrapped(&inst.wait_for_text(&path, "b@hard.test"));
    for want in [
        "<b@hard.test>: host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed \
         (in reply to RCPT TO command)",
        "<c@harddata.test>: host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed \
         (in reply to end of DATA command)",
    ] {
        assert!(text.contains(want), "no {want:?} in the notices:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// 7. A server that drops the connection mid-DATA; one that only speaks HELO

#[test]
fn connection_dropped_in_data_defers() {
    let server = FakeServer::start(Script::DropInData);
    let inst = sender(&format!(
        "transport_maps = inline:{{ {{drop.test=smtp:{}}} }}\n",
        server.hop()
    ));
    // A body large enough that the client is still writing it when the server hangs up.
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n";
    let body = line.repeat(16_000);
    send(&inst, &["d@drop.test"], "dropped", &body);
    let l = wait_delivery(&inst, "d@drop.test", "status=");
    assert!(
        l.contains(&format!("relay=127.0.0.1[127.0.0.1]:{},", server.port)),
        "{l}"
    );
    assert!(
        l.contains(
            "dsn=4.4.2, status=deferred (lost connection with 127.0.0.1[127.0.0.1] while sending"
        ),
        "{l}"
    );
    assert!(
        server.seen().iter().any(|s| s.starts_with("DROPPED after")),
        "{:?}",
        server.seen()
    );
    assert_stays_queued(&inst, "d@drop.test");
}

#[test]
fn helo_only_server_gets_the_mail() {
    let server = FakeServer::start(Script::HeloOnly);
    let inst = sender(&format!(
        "transport_maps = inline:{{ {{helo.test=smtp:{}}} }}\n",
        server.hop()
    ));
    send(&inst, &["h@helo.test"], "old server", "spoken with HELO");
    let l = wait_delivery(&inst, "h@helo.test", "status=");
    assert!(
        l.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as FAKE1)"),
        "{l}"
    );
    let seen = server.seen();
    let pos = |prefix: &str| seen.iter().position(|s| s.starts_with(prefix));
    let ehlo = pos("EHLO ").unwrap_or_else(|| panic!("no EHLO first: {seen:?}"));
    let helo = pos("HELO ").unwrap_or_else(|| panic!("no HELO fallback: {seen:?}"));
    assert!(ehlo < helo, "{seen:?}");
    assert_eq!(seen[helo], "HELO mail.example.test", "{seen:?}");
    // Without ESMTP, no MAIL FROM parameters (SIZE=, BODY=, RET=, ...).
    let mail = pos("MAIL ").unwrap_or_else(|| panic!("no MAIL: {seen:?}"));
    assert_eq!(seen[mail], format!("MAIL FROM:<{}>", me(&inst)), "{seen:?}");
    assert_eq!(seen[mail + 1], "RCPT TO:<h@helo.test>", "{seen:?}");
    let body = seen
        .iter()
        .find(|s| s.starts_with("BODY\n"))
        .unwrap_or_else(|| panic!("no message: {seen:?}"));
    assert!(body.contains("Subject: old server\r\n"), "{body}");
    assert!(body.contains("spoken with HELO\r\n"), "{body}");
    wait_queue_empty(&inst);
}

// ---------------------------------------------------------------------------------------
// 8. Opportunistic STARTTLS to posthorn

#[test]
fn starttls_opportunistic_to_posthorn() {
    let mut recv = receiver("mx.dest.test", "dest.test", "");
    let ck = rcgen::generate_simple_self_signed(vec!["mx.dest.test".to_string()])
        .expect("self-signed certificate");
    let cert = recv.write_file("tls/server.crt", &ck.cert.pem());
    let key = recv.write_file("tls/server.key", &ck.signing_key.serialize_pem());
    recv.add_main_cf(&format!(
        "smtpd_tls_security_level = may\n\
         smtpd_tls_cert_file = {}\n\
         smtpd_tls_key_file = {}\n",
        cert.display(),
        key.display()
    ));
    recv.start();
    let rcpt = format!("{}@dest.test", recv.user());
    let inst = sender(&format!(
        "smtp_tls_security_level = may\n\
         transport_maps = inline:{{ {{dest.test=smtp:[127.0.0.1]:{}}} }}\n",
        recv.smtp_port
    ));
    wait_listening(recv.smtp_port);
    send(&inst, &[&rcpt], "encrypted", "over TLS");
    let l = wait_delivery(&inst, &rcpt, "status=sent");
    assert!(l.contains("dsn=2.0.0"), "{l}");
    let log = inst.log_text();
    let tls_line = format!(
        "TLS connection established to 127.0.0.1[127.0.0.1]:{}: ",
        recv.smtp_port
    );
    assert!(
        log.lines().any(|l| l.contains(&tls_line)
            && (l.contains("Anonymous TLS") || l.contains("Untrusted TLS"))),
        "no {tls_line:?} line (Anonymous or Untrusted):\n{log}"
    );
    let text = recv.wait_for_text(&mbox(&recv), "over TLS");
    assert!(
        text.contains("by mx.dest.test (posthorn) with ESMTPS id "),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// 9. IPv6 first, IPv4 fallback; 8-bit MIME downgrade for a server without 8BITMIME

/// With both families enabled and IPv6 preferred, an MX whose AAAA address refuses the
/// connection is tried again over its A address, as Postfix's smtp does (smtp_connect.c:
/// every address of every MX host, the preferred family first), and the refused attempt is
/// logged `connect to HOST[::1]:PORT: Connection refused`.
#[test]
fn ipv6_failure_falls_back_to_ipv4() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("ipv6_failure_falls_back_to_ipv4: ::1 is not available here; skipped");
        return;
    }
    let mut recv = receiver("mx.v6.test", "v6.test", "");
    let port = recv.smtp_port;
    // Nothing may listen on [::1]:PORT, so that the IPv6 attempt is refused.
    drop(
        std::net::TcpListener::bind(("::1", port))
            .unwrap_or_else(|e| panic!("[::1]:{port} is in use ({e}); it must be free")),
    );
    recv.start();
    wait_listening(port);
    let dns = TestDns::start(
        "v6.test MX 10 mx.v6.test\n\
         mx.v6.test AAAA ::1\n\
         mx.v6.test A 127.0.0.1\n",
    );
    let inst = sender(&format!(
        "inet_protocols = all\n\
         smtp_address_preference = ipv6\n\
         smtp_dns_servers = {}\n\
         smtp_tcp_port = {port}\n",
        dns.server_spec()
    ));
    let rcpt = format!("{}@v6.test", recv.user());
    send(&inst, &[&rcpt], "v6 then v4", "fell back to IPv4");
    let line = wait_delivery(&inst, &rcpt, "status=");
    assert!(
        line.contains(&format!("relay=mx.v6.test[127.0.0.1]:{port},"))
            && line.contains("dsn=2.0.0, status=sent ("),
        "expected delivery via mx.v6.test[127.0.0.1]:{port}, got: {line}\nlog:\n{}",
        inst.log_text()
    );
    let want = format!("]: connect to mx.v6.test[::1]:{port}: Connection refused");
    let log = inst.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("posthorn/smtp[") && l.ends_with(&want)),
        "no smtp line ending in {want:?} (IPv6 not tried first?):\n{log}"
    );
    let text = recv.wait_for_text(&mbox(&recv), "fell back to IPv4");
    assert!(text.contains("Subject: v6 then v4"), "{text}");
    wait_queue_empty(&inst);
}

/// An ESMTP server on 127.0.0.1 whose EHLO reply lists PIPELINING and SIZE but not
/// 8BITMIME; it records every command line and the raw bytes of every DATA it accepts.
struct No8BitMimeServer {
    port: u16,
    stop: Arc<AtomicBool>,
    commands: Arc<Mutex<Vec<String>>>,
    data: Arc<Mutex<Vec<Vec<u8>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl No8BitMimeServer {
    fn start() -> No8BitMimeServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind scripted server");
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let data = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (stop, commands, data) = (stop.clone(), commands.clone(), data.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            let (commands, data) = (commands.clone(), data.clone());
                            std::thread::spawn(move || {
                                let _ = serve_no_8bitmime(s, &commands, &data);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        No8BitMimeServer {
            port,
            stop,
            commands,
            data,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for No8BitMimeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One connection of a [`No8BitMimeServer`].
fn serve_no_8bitmime(
    s: TcpStream,
    commands: &Mutex<Vec<String>>,
    data: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    w.write_all(b"220 seven.test ESMTP\r\n")?;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        commands.lock().unwrap().push(cmd.clone());
        let verb = cmd
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                "250-seven.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 ENHANCEDSTATUSCODES"
            }
            "HELO" => "250 seven.test",
            "MAIL" => "250 2.1.0 Ok",
            "RCPT" => "250 2.1.5 Ok",
            "RSET" | "NOOP" => "250 2.0.0 Ok",
            "QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            "DATA" => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut body = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l)? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    body.extend_from_slice(&l);
                }
                data.lock().unwrap().push(body);
                "250 2.0.0 Ok: queued as SEVEN1"
            }
            _ => "502 5.5.2 Error: command not recognized",
        };
        w.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

/// RFC 6152 / Postfix's "8-bit downgrade": to a server without 8BITMIME, each 8-bit part of
/// a multipart message is sent as quoted-printable (its Content-Transfer-Encoding header
/// changed), other parts byte for byte as they were, no BODY=8BITMIME on MAIL FROM.
#[test]
fn eight_bit_multipart_is_downgraded_for_a_server_without_8bitmime() {
    let server = No8BitMimeServer::start();
    let inst = sender(&format!(
        "transport_maps = inline:{{ {{seven.test=smtp:[127.0.0.1]:{}}} }}\n",
        server.port
    ));
    let me = me(&inst);
    let message = format!(
        "From: {me}\n\
         To: m@seven.test\n\
         Subject: multipart 8bit\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"=-b1\"\n\
         \n\
         This is a multi-part message in MIME format.\n\
         --=-b1\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         Gr\u{fc}\u{df}e aus K\u{f6}ln \u{2014} \u{e7}a va?\n\
         --=-b1\n\
         Content-Type: application/octet-stream; name=\"x.bin\"\n\
         Content-Transfer-Encoding: base64\n\
         \n\
         AAECAwQFBgcICQoLDA0ODw==\n\
         --=-b1--\n"
    );
    let out = inst.sendmail(&["-f", &me, "m@seven.test"], &message);
    assert!(
        out.status.success(),
        "sendmail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = wait_delivery(&inst, "m@seven.test", "status=");
    assert!(
        l.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as SEVEN1)"),
        "{l}\nlog:\n{}",
        inst.log_text()
    );
    let commands = server.commands.lock().unwrap().clone();
    let mail = commands
        .iter()
        .find(|c| c.starts_with("MAIL FROM:"))
        .unwrap_or_else(|| panic!("no MAIL: {commands:?}"));
    assert!(!mail.contains("BODY="), "{mail}");
    let data = server.data.lock().unwrap().clone();
    assert_eq!(data.len(), 1, "one DATA: {commands:?}");
    let data = &data[0];
    let text = String::from_utf8_lossy(data).to_string();
    let split = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header/body separator:\n{text}"));
    assert!(
        data[split..].iter().all(|b| *b < 0x80),
        "8-bit bytes left in the body:\n{text}"
    );
    assert!(
        text.contains(
            "--=-b1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             Gr=C3=BC=C3=9Fe aus K=C3=B6ln =E2=80=94 =C3=A7a va?\r\n\
             --=-b1\r\n"
        ),
        "the 8-bit part is not quoted-printable:\n{text}"
    );
    assert!(!text.contains("Content-Transfer-Encoding: 8bit"), "{text}");
    assert!(
        text.contains(
            "\r\n\r\nThis is a multi-part message in MIME format.\r\n--=-b1\r\n\
             Content-Type: text/plain"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(
            "--=-b1\r\n\
             Content-Type: application/octet-stream; name=\"x.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             AAECAwQFBgcICQoLDA0ODw==\r\n\
             --=-b1--\r\n"
        ),
        "the base64 part changed:\n{text}"
    );
    wait_queue_empty(&inst);
}
