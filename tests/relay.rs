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

#[path = "relay_support.rs"]
mod support;

use support::{
    T, assert_only_deferred, delivery_lines, me, offer_starttls, receiver, send, sender,
    transport_maps, wait_deferred_queue, wait_delivery_line, wait_queue_empty,
};

/// The bound for a burst of messages.
const BURST: Duration = Duration::from_secs(60);
/// Postfix's test server.
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
/// Two MX hosts for `example.test`: `mx1` at 127.0.0.2 (preference 10), `mx2` at 127.0.0.3.
const TWO_MX: &str = "example.test MX 10 mx1.example.test\n\
                      example.test MX 20 mx2.example.test\n\
                      mx1.example.test A 127.0.0.2\n\
                      mx2.example.test A 127.0.0.3\n";

// ---------------------------------------------------------------------------------------
// Instances

/// The instance user's mbox.
fn mbox(inst: &Instance) -> std::path::PathBuf {
    inst.mail.join(inst.user())
}

/// A started sending instance that routes `dest.test` to the posthorn instance `recv`
/// (`[127.0.0.1]:SMTP_PORT`), with `extra` first in main.cf; returns once `recv` listens.
fn sender_to(recv: &Instance, extra: &str) -> Instance {
    let hop = format!("[127.0.0.1]:{}", recv.smtp_port);
    let inst = sender(&format!(
        "{extra}{}",
        transport_maps(&[("dest.test", &hop)])
    ));
    wait_listening(recv.smtp_port);
    inst
}

/// A started sending instance that finds MX hosts through the test name server `dns` and
/// connects to them on `port`, with `extra` first in main.cf.
fn sender_via_dns(dns: &TestDns, port: u16, extra: &str) -> Instance {
    sender(&format!(
        "{extra}smtp_dns_servers = {}
smtp_tcp_port = {port}
",
        dns.server_spec()
    ))
}

/// Waits until a delivery line for `rcpt` contains `want`; checks its layout (see
/// [`check_format`]) and returns it.
fn wait_delivery(inst: &Instance, rcpt: &str, want: &str) -> String {
    let line = wait_delivery_line(inst, rcpt, want);
    check_format(&line);
    line
}

/// Waits until a delivery line for `rcpt` contains `until` (see [`wait_delivery`]); checks
/// that it contains each of `wants`.
#[track_caller]
fn expect_delivery(inst: &Instance, rcpt: &str, until: &str, wants: &[&str]) {
    let line = wait_delivery(inst, rcpt, until);
    for want in wants {
        assert!(
            line.contains(want),
            "no {want:?} in: {line}\nlog:\n{}",
            inst.log_text()
        );
    }
}

/// Waits (`timeout`) until at least `n` delivery lines for `rcpt` say `status=sent`.
fn wait_sent(inst: &Instance, rcpt: &str, n: usize, timeout: Duration) -> bool {
    inst.wait_until(timeout, || {
        delivery_lines(&inst.log_text(), rcpt)
            .iter()
            .filter(|l| l.contains("status=sent"))
            .count()
            >= n
    })
}

/// Checks that the smtp client logged a line ending in `end`; `hint` goes into the message.
#[track_caller]
fn assert_smtp_line_ends_with(inst: &Instance, end: &str, hint: &str) {
    let log = inst.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("posthorn/smtp[") && l.ends_with(end)),
        "no smtp line ending in {end:?}{hint}:\n{log}"
    );
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

/// Waits a few seconds, then checks that `rcpt` was only ever deferred (never bounced) and the
/// message is still queued.
fn assert_stays_queued(inst: &Instance, rcpt: &str) {
    std::thread::sleep(Duration::from_secs(3));
    let log = inst.log_text();
    assert_only_deferred(&log, rcpt);
    assert!(
        !inst.queue_empty(),
        "the message to <{rcpt}> left the queue; log:\n{log}"
    );
    wait_deferred_queue(inst);
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

/// How a [`ScriptedServer`] behaves.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// ESMTP; after `354` it reads a little of the body and closes the connection.
    DropInData,
    /// `502` to EHLO, `250` to HELO, then accepts the message.
    HeloOnly,
    /// ESMTP whose EHLO reply lists PIPELINING and SIZE but not 8BITMIME; accepts the message.
    No8BitMime,
}

impl Script {
    /// The server's name in its greeting and HELO/EHLO replies.
    fn name(self) -> &'static str {
        match self {
            Script::DropInData | Script::HeloOnly => "fake.test",
            Script::No8BitMime => "seven.test",
        }
    }

    /// The queue id in the reply to an accepted message.
    fn queue_id(self) -> &'static str {
        match self {
            Script::DropInData | Script::HeloOnly => "FAKE1",
            Script::No8BitMime => "SEVEN1",
        }
    }

    /// The reply to EHLO.
    fn ehlo(self) -> String {
        match self {
            Script::DropInData => "250 fake.test".to_string(),
            Script::HeloOnly => "502 5.5.2 Error: command not recognized".to_string(),
            Script::No8BitMime => {
                "250-seven.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 ENHANCEDSTATUSCODES"
                    .to_string()
            }
        }
    }
}

/// A tiny SMTP server on 127.0.0.1 (one thread per connection) following a [`Script`]: it
/// records every command line it reads (and `DROPPED after N body bytes` where it hangs up)
/// and the raw bytes of every message it accepts.
struct ScriptedServer {
    port: u16,
    stop: Arc<AtomicBool>,
    commands: Arc<Mutex<Vec<String>>>,
    data: Arc<Mutex<Vec<Vec<u8>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    fn start(script: Script) -> ScriptedServer {
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
                                let _ = serve(s, script, &commands, &data);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        ScriptedServer {
            port,
            stop,
            commands,
            data,
            acceptor: Some(acceptor),
        }
    }

    /// The next hop `[127.0.0.1]:PORT`.
    fn hop(&self) -> String {
        format!("[127.0.0.1]:{}", self.port)
    }

    /// The command lines (and notes) recorded so far.
    fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    /// The messages accepted so far, as sent between DATA and the final dot.
    fn data(&self) -> Vec<Vec<u8>> {
        self.data.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One connection of a [`ScriptedServer`].
fn serve(
    s: TcpStream,
    script: Script,
    commands: &Mutex<Vec<String>>,
    data: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    w.write_all(format!("220 {} ESMTP\r\n", script.name()).as_bytes())?;
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
            "EHLO" => script.ehlo(),
            "HELO" => format!("250 {}", script.name()),
            "MAIL" => "250 2.1.0 Ok".to_string(),
            "RCPT" => "250 2.1.5 Ok".to_string(),
            "RSET" | "NOOP" => "250 2.0.0 Ok".to_string(),
            "QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            "DATA" => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                if let Script::DropInData = script {
                    let mut buf = vec![0u8; 4096];
                    let n = r.read(&mut buf)?;
                    commands
                        .lock()
                        .unwrap()
                        .push(format!("DROPPED after {n} body bytes"));
                    // Closing with unread data sends a reset: the client is cut off mid-body.
                    return Ok(());
                }
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
                format!("250 2.0.0 Ok: queued as {}", script.queue_id())
            }
            _ => "502 5.5.2 Error: command not recognized".to_string(),
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
    let ok = wait_sent(&inst, "x@remote.test", 20, BURST);
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
    let inst = sender_to(&recv, "");
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
    let ok = wait_sent(&inst, &rcpt, 10, T);
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
    let ok = wait_sent(&inst, "y@remote.test", 8, BURST);
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
    let dns = TestDns::start(TWO_MX);
    let mut recv = receiver("mx2.example.test", "example.test", "");
    listen_on(&recv, &format!("127.0.0.3:{port}"));
    recv.start();
    wait_listening_on([127, 0, 0, 3], port);
    let inst = sender_via_dns(&dns, port, "");
    let rcpt = format!("{}@example.test", recv.user());
    send(&inst, &[&rcpt], "via mx", "routed by MX");
    expect_delivery(
        &inst,
        &rcpt,
        "status=sent",
        &[
            &format!("relay=mx2.example.test[127.0.0.3]:{port},"),
            "dsn=2.0.0",
        ],
    );
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
    let dns = TestDns::start(TWO_MX);
    let sink = Sink::start_on([127, 0, 0, 3], port, &[]);
    let inst = sender_via_dns(&dns, port, "");
    send(&inst, &["who@example.test"], "via mx2", "body");
    expect_delivery(
        &inst,
        "who@example.test",
        "status=sent",
        &[&format!("relay=mx2.example.test[127.0.0.3]:{port},")],
    );
    assert_eq!(sink.messages().len(), 1);
    let want = format!("]: connect to mx1.example.test[127.0.0.2]:{port}: Connection refused");
    assert_smtp_line_ends_with(&inst, &want, "");
}

// ---------------------------------------------------------------------------------------
// 4. DNS failures: null MX and NXDOMAIN bounce, SERVFAIL defers

#[test]
fn null_mx_and_nxdomain_bounce_servfail_defers() {
    let dns = TestDns::start(
        "nullmx.test MX 0 .\n\
         servfail.test SERVFAIL\n",
    );
    let inst = sender_via_dns(&dns, free_port(), "");
    send(&inst, &["x@nullmx.test"], "to null mx", "body");
    send(&inst, &["y@nx.test"], "to nxdomain", "body");
    send(&inst, &["z@servfail.test"], "to servfail", "body");

    expect_delivery(
        &inst,
        "x@nullmx.test",
        "status=",
        &[
            "relay=none,",
            "dsn=5.1.10, status=bounced (Domain nullmx.test does not accept mail (nullMX))",
        ],
    );
    expect_delivery(
        &inst,
        "y@nx.test",
        "status=",
        &[
            "relay=none,",
            "dsn=5.4.4, status=bounced (Host or domain name not found. \
             Name service error for name=nx.test type=MX: Host not found)",
        ],
    );
    expect_delivery(
        &inst,
        "z@servfail.test",
        "status=",
        &[
            "relay=none,",
            "dsn=4.4.3, status=deferred (Host or domain name not found. \
             Name service error for name=servfail.test type=MX: Host not found, try again",
        ],
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
    let inst = sender_to(&recv, "");
    send(&inst, &[&good, bad], "two rcpts", "one of two");

    expect_delivery(
        &inst,
        &good,
        "status=",
        &[
            &format!("relay=127.0.0.1[127.0.0.1]:{},", recv.smtp_port),
            "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as ",
        ],
    );
    expect_delivery(
        &inst,
        bad,
        "status=",
        &[
            "dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 \
             <nosuchuser@dest.test>: Recipient address rejected: User unknown in local \
             recipient table (in reply to RCPT TO command))",
        ],
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
    let inst = sender(&transport_maps(&[
        ("soft.test", &soft.hop()),
        ("hard.test", &hard.hop()),
        ("harddata.test", &hard_data.hop()),
    ]));
    send(&inst, &["a@soft.test"], "soft", "body");
    send(&inst, &["b@hard.test"], "hard", "body");
    send(&inst, &["c@harddata.test"], "hard data", "body");

    expect_delivery(
        &inst,
        "a@soft.test",
        "status=",
        &[
            &format!("relay=127.0.0.1[127.0.0.1]:{},", soft.port),
            "dsn=4.3.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.3.0 \
             Error: command failed (in reply to RCPT TO command))",
        ],
    );
    expect_delivery(
        &inst,
        "b@hard.test",
        "status=",
        &[
            "dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 \
             Error: command failed (in reply to RCPT TO command))",
        ],
    );
    expect_delivery(
        &inst,
        "c@harddata.test",
        "status=",
        &[
            "dsn=5.3.0, status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 \
             Error: command failed (in reply to end of DATA command))",
        ],
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
    let inst = sender(&transport_maps(&[
        ("hard.test", &hard.hop()),
        ("harddata.test", &hard_data.hop()),
    ]));
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
    let server = ScriptedServer::start(Script::DropInData);
    let inst = sender(&transport_maps(&[("drop.test", &server.hop())]));
    // A body large enough that the client is still writing it when the server hangs up.
    let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n";
    let body = line.repeat(16_000);
    send(&inst, &["d@drop.test"], "dropped", &body);
    expect_delivery(
        &inst,
        "d@drop.test",
        "status=",
        &[
            &format!("relay=127.0.0.1[127.0.0.1]:{},", server.port),
            "dsn=4.4.2, status=deferred (lost connection with 127.0.0.1[127.0.0.1] while sending",
        ],
    );
    assert!(
        server
            .commands()
            .iter()
            .any(|s| s.starts_with("DROPPED after")),
        "{:?}",
        server.commands()
    );
    assert_stays_queued(&inst, "d@drop.test");
}

#[test]
fn helo_only_server_gets_the_mail() {
    let server = ScriptedServer::start(Script::HeloOnly);
    let inst = sender(&transport_maps(&[("helo.test", &server.hop())]));
    send(&inst, &["h@helo.test"], "old server", "spoken with HELO");
    expect_delivery(
        &inst,
        "h@helo.test",
        "status=",
        &["dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as FAKE1)"],
    );
    let seen = server.commands();
    let pos = |prefix: &str| seen.iter().position(|s| s.starts_with(prefix));
    let ehlo = pos("EHLO ").unwrap_or_else(|| panic!("no EHLO first: {seen:?}"));
    let helo = pos("HELO ").unwrap_or_else(|| panic!("no HELO fallback: {seen:?}"));
    assert!(ehlo < helo, "{seen:?}");
    assert_eq!(seen[helo], "HELO mail.example.test", "{seen:?}");
    // Without ESMTP, no MAIL FROM parameters (SIZE=, BODY=, RET=, ...).
    let mail = pos("MAIL ").unwrap_or_else(|| panic!("no MAIL: {seen:?}"));
    assert_eq!(seen[mail], format!("MAIL FROM:<{}>", me(&inst)), "{seen:?}");
    assert_eq!(seen[mail + 1], "RCPT TO:<h@helo.test>", "{seen:?}");
    let body = server
        .data()
        .first()
        .map(|d| String::from_utf8_lossy(d).to_string())
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
    offer_starttls(&recv, &ck.cert.pem(), &ck.signing_key.serialize_pem());
    recv.start();
    let rcpt = format!("{}@dest.test", recv.user());
    let inst = sender_to(&recv, "smtp_tls_security_level = may\n");
    send(&inst, &[&rcpt], "encrypted", "over TLS");
    expect_delivery(&inst, &rcpt, "status=sent", &["dsn=2.0.0"]);
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
    let inst = sender_via_dns(
        &dns,
        port,
        "inet_protocols = all\n\
         smtp_address_preference = ipv6\n",
    );
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
    assert_smtp_line_ends_with(&inst, &want, " (IPv6 not tried first?)");
    let text = recv.wait_for_text(&mbox(&recv), "fell back to IPv4");
    assert!(text.contains("Subject: v6 then v4"), "{text}");
    wait_queue_empty(&inst);
}

/// RFC 6152 / Postfix's "8-bit downgrade": to a server without 8BITMIME, each 8-bit part of
/// a multipart message is sent as quoted-printable (its Content-Transfer-Encoding header
/// changed), other parts byte for byte as they were, no BODY=8BITMIME on MAIL FROM.
#[test]
fn eight_bit_multipart_is_downgraded_for_a_server_without_8bitmime() {
    let server = ScriptedServer::start(Script::No8BitMime);
    let inst = sender(&transport_maps(&[("seven.test", &server.hop())]));
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
    expect_delivery(
        &inst,
        "m@seven.test",
        "status=",
        &["dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as SEVEN1)"],
    );
    let commands = server.commands();
    let mail = commands
        .iter()
        .find(|c| c.starts_with("MAIL FROM:"))
        .unwrap_or_else(|| panic!("no MAIL: {commands:?}"));
    assert!(!mail.contains("BODY="), "{mail}");
    let data = server.data();
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
