//! smtpd's limits end to end: per-client connection count, connection rate and message
//! rate (anvil-style), the per-process connection cap, hard and soft error limits with the
//! error sleep, message_size_limit (SIZE= and actual size), smtpd_recipient_limit, the
//! PROXY protocol (v1, v2, garbage), many idle connections at a small memory cost, and
//! `sendmail -bs` speaking the same SMTP dialogue on stdin/stdout.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use posthorn_testkit::smtp::{
    Client, Reply, add_service, assert_reply, ehlo_session, local_user, mbox, started,
    wait_listening,
};
use posthorn_testkit::{Instance, free_port};

const T: Duration = Duration::from_secs(20);

/// main.cf lines that subject loopback clients to the per-client limits (by default
/// `$mynetworks` is exempt).
const NO_EXCEPTIONS: &str = "smtpd_client_event_limit_exceptions =\n";

/// One connection (no probe before it) that must be greeted with 220.
fn greeted(port: u16) -> Client {
    let (c, r) = Client::connect_reply(port);
    assert_eq!(r.code, 220, "greeting: {}", r.wire());
    c
}

/// Waits until a new connection gets 220 again (limits are released asynchronously).
fn wait_for_220(port: u16) -> Client {
    let end = Instant::now() + T;
    loop {
        let (c, r) = Client::connect_reply(port);
        if r.code == 220 {
            return c;
        }
        assert!(
            Instant::now() < end,
            "no 220 again after the other sessions ended: {}",
            r.wire()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------
// Per-client limits

#[test]
fn connection_count_limit_refuses_the_third_concurrent_connection() {
    let inst = started(&format!(
        "{NO_EXCEPTIONS}smtpd_client_connection_count_limit = 2\n"
    ));
    wait_listening(inst.smtp_port);
    let mut c1 = greeted(inst.smtp_port);
    let mut c2 = greeted(inst.smtp_port);
    let (mut c3, r) = Client::connect_reply(inst.smtp_port);
    assert_reply(
        &r,
        421,
        "4.7.0 mail.example.test Error: too many connections from 127.0.0.1",
        "third concurrent connection",
    );
    assert!(c3.closed(), "the refused connection must be closed");
    // The first two are unaffected.
    c1.expect("EHLO one.example.test", 250);
    c2.expect("EHLO two.example.test", 250);
    c1.expect("QUIT", 221);
    assert!(c1.closed());
    // With one slot free again, a new connection is served.
    let mut c4 = wait_for_220(inst.smtp_port);
    c4.expect("EHLO four.example.test", 250);
    c4.expect("QUIT", 221);
    c2.expect("QUIT", 221);
}

#[test]
fn connection_rate_limit_refuses_the_fourth_connection_in_a_minute() {
    let inst = started(&format!(
        "{NO_EXCEPTIONS}smtpd_client_connection_rate_limit = 3\nanvil_rate_time_unit = 60s\n"
    ));
    wait_listening(inst.smtp_port);
    for i in 0..3 {
        let mut c = greeted(inst.smtp_port);
        c.expect(&format!("EHLO c{i}.example.test"), 250);
        c.expect("QUIT", 221);
        assert!(c.closed());
    }
    let (mut c, r) = Client::connect_reply(inst.smtp_port);
    assert_reply(
        &r,
        421,
        "4.7.0 mail.example.test Error: too many connections from 127.0.0.1",
        "fourth connection within the minute",
    );
    assert!(c.closed(), "the refused connection must be closed");
}

#[test]
fn message_rate_limit_refuses_the_third_mail_in_a_minute() {
    let inst = started(&format!(
        "{NO_EXCEPTIONS}smtpd_client_message_rate_limit = 2\n"
    ));
    let me = local_user(&inst);
    let mut c = ehlo_session(&inst);
    for i in 0..2 {
        c.send_mail(
            "a@b.test",
            &[&me],
            &format!("Subject: rate {i}\r\n\r\nmessage {i}\r\n"),
        );
    }
    let r = c.cmd("MAIL FROM:<a@b.test>");
    assert!(
        (400..500).contains(&r.code) && r.text().contains("too much mail from 127.0.0.1"),
        "third MAIL within the minute: {}",
        r.wire()
    );
    // The refusal is temporary and the session stays usable.
    c.expect("NOOP", 250);
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "message 1");
}

#[test]
fn recipient_limit_refuses_extra_recipients() {
    let inst = started("smtpd_recipient_limit = 2\n");
    let me = local_user(&inst);
    let mut c = ehlo_session(&inst);
    c.expect("MAIL FROM:<a@b.test>", 250);
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    c.expect(&format!("RCPT TO:<{}@localhost>", inst.user()), 250);
    let r = c.cmd("RCPT TO:<x@elsewhere.test>");
    assert_reply(&r, 452, "4.5.3 Error: too many recipients", "third RCPT");
    // The accepted two still get the message.
    let r = c.data("Subject: two only\r\n\r\ntwo recipients\r\n");
    assert_eq!(r.code, 250, "{}", r.wire());
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "two recipients");
}

// ---------------------------------------------------------------------------------------
// Per-process cap

#[test]
fn process_connection_limit_answers_421_and_keeps_the_others() {
    let inst = Instance::new("smtpd_process_connection_limit = 5\n");
    // One smtpd process only: maxproc (7th column) of the smtp service = 1.
    let cf = inst.etc.join("master.cf");
    let text = fs::read_to_string(&cf).unwrap();
    let me = format!("127.0.0.1:{}", inst.smtp_port);
    let mut found = false;
    let edited: String = text
        .lines()
        .map(|l| {
            let mut cols: Vec<&str> = l.split_whitespace().collect();
            if cols.first() == Some(&me.as_str()) && cols.len() >= 8 {
                found = true;
                cols[6] = "1";
                cols.join(" ")
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    assert!(found, "no smtp service in master.cf:\n{text}");
    fs::write(&cf, edited).unwrap();
    inst.chown_all();
    let mut inst = inst;
    inst.start();

    wait_listening(inst.smtp_port);
    let mut clients: Vec<Client> = (0..5).map(|_| greeted(inst.smtp_port)).collect();
    let (mut sixth, r) = Client::connect_reply(inst.smtp_port);
    assert!(
        r.code == 421 && r.text().starts_with("4.3.2 "),
        "sixth connection to a full process: {}",
        r.wire()
    );
    assert!(sixth.closed(), "the refused connection must be closed");
    for (i, c) in clients.iter_mut().enumerate() {
        c.expect(&format!("EHLO c{i}.example.test"), 250);
        c.expect("NOOP", 250);
    }
    let me = local_user(&inst);
    clients[0].send_mail("a@b.test", &[&me], "Subject: cap\r\n\r\nunder the cap\r\n");
    for c in &mut clients {
        c.expect("QUIT", 221);
    }
    drop(clients);
    let mut c = wait_for_220(inst.smtp_port);
    c.expect("EHLO again.example.test", 250);
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "under the cap");
}

// ---------------------------------------------------------------------------------------
// Error limits

#[test]
fn hard_error_limit_disconnects_the_client() {
    let inst = started("smtpd_hard_error_limit = 3\nsmtpd_soft_error_limit = 100\n");
    let mut c = ehlo_session(&inst);
    for i in 1..=2 {
        let r = c.cmd(&format!("BOGUS{i}"));
        assert!(r.code >= 500, "BOGUS{i}: {}", r.wire());
    }
    // Postfix answers the third error and then, before reading on, says 421.
    let r3 = c.cmd("BOGUS3");
    let last = if r3.code == 421 {
        r3
    } else {
        assert!(r3.code >= 500, "BOGUS3: {}", r3.wire());
        c.try_reply()
            .unwrap_or_else(|e| panic!("no 421 after the third error ({e})"))
    };
    assert_reply(
        &last,
        421,
        "4.7.0 mail.example.test Error: too many errors",
        "after the third error",
    );
    assert!(c.closed(), "the connection must be closed after 421");
    // Postfix logs why the session ended: `too many errors after CMD from host[addr]`.
    let line = inst.log_line("too many errors after ");
    assert!(line.contains(" from localhost[127.0.0.1]"), "{line}");
}

#[test]
fn soft_error_limit_slows_down_replies() {
    let inst = started(
        "smtpd_soft_error_limit = 1\n\
         smtpd_error_sleep_time = 1s\n\
         smtpd_hard_error_limit = 100\n",
    );
    let mut c = ehlo_session(&inst);
    let _ = c.cmd("BOGUS1");
    let _ = c.cmd("BOGUS2");
    let t0 = Instant::now();
    let r = c.cmd("BOGUS3");
    let took = t0.elapsed();
    assert!(r.code >= 500, "{}", r.wire());
    assert!(
        took >= Duration::from_millis(900),
        "an error reply past the soft limit must be delayed by smtpd_error_sleep_time \
         (1 s); it took {took:?}"
    );
    c.expect("QUIT", 221);
}

// ---------------------------------------------------------------------------------------
// Message size

#[test]
fn message_size_limit_is_enforced_for_size_and_for_data() {
    let inst = started("message_size_limit = 2000\n");
    let me = local_user(&inst);
    let mut c = Client::connect(inst.smtp_port);
    let ehlo = c.expect("EHLO client.example.test", 250);
    assert!(
        ehlo.lines.iter().any(|l| l == "SIZE 2000"),
        "EHLO must advertise SIZE 2000: {}",
        ehlo.wire()
    );
    let r = c.cmd("MAIL FROM:<a@b.test> SIZE=5000");
    assert_reply(
        &r,
        552,
        "5.3.4 Message size exceeds fixed limit",
        "MAIL with SIZE=5000",
    );
    // Declared small (or not at all), sent big.
    c.expect("MAIL FROM:<a@b.test>", 250);
    c.expect(&format!("RCPT TO:<{me}>"), 250);
    let body: String = (0..100)
        .map(|i| format!("big line {i:04} {}\r\n", "x".repeat(60)))
        .collect();
    let r = c.data(&format!("Subject: too big\r\n\r\n{body}"));
    assert_reply(
        &r,
        552,
        "5.3.4 Message size exceeds fixed limit",
        "end of a 7 KB DATA",
    );
    // The session goes on; a small message is accepted and delivered.
    c.expect("RSET", 250);
    c.send_mail("a@b.test", &[&me], "Subject: small\r\n\r\nsmall enough\r\n");
    c.expect("QUIT", 221);
    let text = inst.wait_for_text(&mbox(&inst), "small enough");
    assert!(!text.contains("big line 0001"), "the big one was delivered");
}

// ---------------------------------------------------------------------------------------
// PROXY protocol

/// An instance with a haproxy-fronted smtpd service on a port of its own; returns the port
/// once it listens (a probe connection would itself be a broken PROXY client).
fn proxy_instance() -> (Instance, u16) {
    let mut inst = Instance::new("");
    let port = free_port();
    add_service(
        &inst,
        &format!("127.0.0.1:{port} inet n - n - - smtpd -o smtpd_upstream_proxy_protocol=haproxy"),
    );
    inst.start();
    wait_listening(port);
    (inst, port)
}

/// Sends `header` first, then one message through the proxied session; returns its queue
/// ID and its header lines as delivered to the mailbox.
fn proxied_message(inst: &Instance, port: u16, header: &[u8], tag: &str) -> (String, String) {
    let mut c = Client::connect_raw(port);
    c.send_raw(header);
    let g = c.reply();
    assert_eq!(g.code, 220, "greeting after the PROXY header: {}", g.wire());
    c.expect("EHLO client.example.test", 250);
    let id = c.send_mail(
        "a@b.test",
        &[&local_user(inst)],
        &format!("Subject: {tag}\r\n\r\nbody of {tag}\r\n"),
    );
    c.expect("QUIT", 221);
    let text = inst.wait_for_text(&mbox(inst), &format!("body of {tag}"));
    let start = text
        .find(&format!("Subject: {tag}"))
        .expect("message in mbox");
    let msg_start = text[..start].rfind("\nFrom ").map_or(0, |p| p + 1);
    (id, text[msg_start..start].to_string())
}

#[test]
fn proxy_protocol_v1_gives_the_real_client_address() {
    let (inst, port) = proxy_instance();
    let (id, headers) = proxied_message(
        &inst,
        port,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 25\r\n",
        "proxied v1",
    );
    assert!(
        headers.contains("[203.0.113.7]"),
        "Received header without the real client:\n{headers}"
    );
    inst.expect_log("connect from unknown[203.0.113.7]", T);
    inst.expect_log(&format!("{id}: client=unknown[203.0.113.7]"), T);
}

#[test]
fn proxy_protocol_v2_gives_the_real_client_address() {
    let (inst, port) = proxy_instance();
    let mut h = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&[203, 0, 113, 8]);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&4712u16.to_be_bytes());
    h.extend_from_slice(&25u16.to_be_bytes());
    let (_, headers) = proxied_message(&inst, port, &h, "proxied v2");
    assert!(
        headers.contains("[203.0.113.8]"),
        "Received header without the real client:\n{headers}"
    );
    inst.expect_log("connect from unknown[203.0.113.8]", T);
}

#[test]
fn proxy_protocol_garbage_closes_the_connection() {
    let (inst, port) = proxy_instance();
    let warnings_before = inst.log_text().matches("warning:").count();
    let mut c = Client::connect_raw(port);
    c.send_raw(b"HELLO this is not a proxy header\r\n");
    let mut rest = Vec::new();
    let _ = c.stream().try_clone().unwrap().read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("220"),
        "a client with a broken PROXY header must get no greeting: {rest:?}"
    );
    let logged = inst.wait_until(T, || {
        inst.log_text()
            .lines()
            .filter(|l| l.contains("warning:"))
            .count()
            > warnings_before
    });
    assert!(logged, "no warning logged; log:\n{}", inst.log_text());
    let log = inst.log_text();
    let warning = log
        .lines()
        .filter(|l| l.contains("warning:"))
        .nth(warnings_before)
        .unwrap_or_default();
    assert!(
        warning.to_ascii_lowercase().contains("proxy"),
        "the warning should name the PROXY protocol: {warning}"
    );
    // The service still works for a proper upstream.
    let (_, headers) = proxied_message(
        &inst,
        port,
        b"PROXY TCP4 203.0.113.9 127.0.0.1 4713 25\r\n",
        "after garbage",
    );
    assert!(headers.contains("[203.0.113.9]"), "{headers}");
}

// ---------------------------------------------------------------------------------------
// Many idle connections

/// Reads the greeting of a raw connection (up to its `220 ` line).
fn read_greeting(s: &mut TcpStream) -> Result<String, String> {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    let mut interrupted = 0;
    while got.len() < 4096 {
        match s.read(&mut b) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&got))),
            Ok(_) => got.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && interrupted < 100 => {
                interrupted += 1;
                continue;
            }
            Err(e) => return Err(e.to_string()),
        }
        if got.ends_with(b"\r\n") {
            let text = String::from_utf8_lossy(&got).into_owned();
            let last = text
                .trim_end()
                .rsplit("\r\n")
                .next()
                .unwrap_or("")
                .to_string();
            if last.starts_with("220 ") {
                return Ok(text);
            }
            if !last.starts_with("220-") {
                return Err(format!("not a greeting: {text:?}"));
            }
        }
    }
    Err("greeting too long".into())
}

/// VmRSS of process `pid` in KiB, if it is alive.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The pids of smtpd processes named in the log (`posthorn/smtpd[PID]:`).
fn smtpd_pids(log: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = log
        .lines()
        .filter_map(|l| l.split("posthorn/smtpd[").nth(1))
        .filter_map(|r| r.split(']').next())
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[test]
fn five_hundred_idle_connections_are_cheap() {
    const N: usize = 500;
    // Enough descriptors for this process (and, inherited, for the instance).
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(4096);
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
    let inst = started("");
    // Make sure the listener is up.
    let mut probe = Client::connect(inst.smtp_port);
    probe.expect("QUIT", 221);

    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(("127.0.0.1", inst.smtp_port))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        s.set_read_timeout(Some(T)).unwrap();
        read_greeting(&mut s).unwrap_or_else(|e| panic!("greeting of connection {i}: {e}"));
        conns.push(s);
    }
    // Let the log catch up with the connects.
    let ok = inst.wait_until(T, || {
        inst.log_text()
            .matches(": connect from localhost[127.0.0.1]")
            .count()
            > N
    });
    assert!(ok, "not every connection was logged");
    let pids: Vec<u32> = smtpd_pids(&inst.log_text())
        .into_iter()
        .filter(|p| rss_kib(*p).is_some())
        .collect();
    assert!(!pids.is_empty(), "no live smtpd process found via the log");
    let rss: Vec<(u32, u64)> = pids
        .iter()
        .map(|p| (*p, rss_kib(*p).unwrap_or(0)))
        .collect();
    eprintln!("{N} idle connections: smtpd VmRSS (pid, KiB) = {rss:?}");
    for (pid, kib) in &rss {
        assert!(
            *kib < 50 * 1024,
            "smtpd[{pid}] uses {kib} KiB with {N} idle connections (limit 50 MB); all: {rss:?}"
        );
    }
    // The oldest and newest connections are both alive.
    for i in [0, N - 1] {
        conns[i].write_all(b"NOOP\r\n").unwrap();
        let mut line = String::new();
        let mut r = BufReader::new(conns[i].try_clone().unwrap());
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("250"), "NOOP on connection {i}: {line:?}");
    }
    drop(conns);
    // A new session works as before.
    let mut c = ehlo_session(&inst);
    c.send_mail(
        "a@b.test",
        &[&local_user(&inst)],
        "Subject: after the crowd\r\n\r\nstill serving\r\n",
    );
    c.expect("QUIT", 221);
    inst.wait_for_text(&mbox(&inst), "still serving");
}

// ---------------------------------------------------------------------------------------
// sendmail -bs

/// A child process killed when dropped (a failed test leaves nothing running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads one SMTP reply from lines arriving on `rx`.
fn pipe_reply(rx: &mpsc::Receiver<String>) -> Reply {
    let mut code = 0;
    let mut lines = Vec::new();
    for _ in 0..100 {
        let line = rx
            .recv_timeout(T)
            .unwrap_or_else(|e| panic!("sendmail -bs: no reply line ({e}); so far {lines:?}"));
        let line = line
            .strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("reply line without CRLF: {line:?}"))
            .to_string();
        code = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("malformed reply line {line:?}"));
        lines.push(line.get(4..).unwrap_or("").to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Reply { code, lines };
        }
    }
    panic!("endless reply: {code} {lines:?}");
}

#[test]
fn sendmail_bs_speaks_smtp_on_stdin_and_stdout() {
    let inst = started("");
    let me = local_user(&inst);
    let mut child = Reaped(
        inst.command("sendmail")
            .arg("-bs")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sendmail -bs"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut stdin = child.0.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut cmd = |line: &str, code: u16| -> Reply {
        stdin
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write to sendmail -bs");
        let r = pipe_reply(&rx);
        assert_eq!(r.code, code, "{line} -> {}", r.wire());
        r
    };
    let g = pipe_reply(&rx);
    assert_eq!(g.code, 220, "greeting: {}", g.wire());
    let ehlo = cmd("EHLO client.example.test", 250);
    assert!(ehlo.lines.len() > 1, "{}", ehlo.wire());
    cmd(&format!("MAIL FROM:<{me}>"), 250);
    cmd(&format!("RCPT TO:<{}@localhost>", inst.user()), 250);
    cmd("DATA", 354);
    let r = cmd(
        "Subject: via -bs\r\n\r\nspoken on a pipe\r\n..leading dot\r\n.",
        250,
    );
    let end_of_data = r.wire();
    cmd("QUIT", 221);
    drop(stdin);
    let end = Instant::now() + T;
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "sendmail -bs did not exit after QUIT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "sendmail -bs: {status:?} {err}");
    let text = inst.wait_for_text(&mbox(&inst), "spoken on a pipe");
    assert!(text.contains("Subject: via -bs"), "{text}");
    assert!(
        text.contains("\n.leading dot\n"),
        "dot-stuffing undone:\n{text}"
    );
    // As Postfix's (postdrop reports the queue ID back to the stand-alone smtpd).
    assert!(
        end_of_data.contains("queued as "),
        "the end-of-data reply should name the queue ID: {end_of_data}"
    );
}
