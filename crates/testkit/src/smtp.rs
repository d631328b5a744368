//! A small, strict SMTP client for tests: raw bytes in and out over a real loopback socket,
//! replies parsed into code + lines, every read bounded by a timeout; and the small helpers
//! the smtpd end-to-end tests share (a started instance, its local user and mbox, waiting
//! for the listener, extra master.cf services, exact reply assertions).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::Instance;

/// One SMTP reply: its code and the text of each line (without `NNN-`/`NNN `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of every line.
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined by newlines, for assertions.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The whole reply as it was on the wire (`250-a\r\n250 b`), for messages.
    pub fn wire(&self) -> String {
        let n = self.lines.len();
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}{}{l}", self.code, if i + 1 < n { '-' } else { ' ' }))
            .collect::<Vec<_>>()
            .join("\r\n")
    }
}

/// A client connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Client {
    /// Connects to `127.0.0.1:port` without reading the greeting.
    pub fn connect_raw(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to smtpd");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { reader, stream }
    }

    /// Connects, waiting up to 10 s for the listener (master starts smtpd on demand), and
    /// reads the greeting, which must be 220.
    pub fn connect(port: u16) -> Client {
        let (c, g) = Client::connect_any(port);
        assert_eq!(g.code, 220, "greeting: {}", g.wire());
        c
    }

    /// Connects once the listener is up (a probe connection first, up to 10 s) and returns
    /// the client with its greeting, whatever its code (a client rejected at connect time
    /// gets no 220).
    pub fn connect_any(port: u16) -> (Client, Reply) {
        drop(connect_when_listening(port));
        Client::connect_reply(port)
    }

    /// Connects without a probe (the listener must be up) and returns the client with its
    /// first reply.
    pub fn connect_reply(port: u16) -> (Client, Reply) {
        let mut c = Client::connect_raw(port);
        let r = c.reply();
        (c, r)
    }

    /// The underlying socket (for timeouts, shutdown, peer checks).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends raw bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to smtpd");
    }

    /// Sends one command line (CRLF added).
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Reads one reply; panics on timeout, EOF or a malformed reply.
    pub fn reply(&mut self) -> Reply {
        self.try_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    /// Reads one reply, or says why there is none (EOF, timeout, malformed line).
    pub fn try_reply(&mut self) -> Result<Reply, String> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut raw)
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            let line = String::from_utf8_lossy(&raw).into_owned();
            let Some(body) = line.strip_suffix("\r\n") else {
                return Err(format!("reply line without CRLF: {line:?}"));
            };
            if body.len() < 3 || !body.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("malformed reply line: {body:?}"));
            }
            let code: u16 = body[..3].parse().unwrap();
            let sep = body.as_bytes().get(3).copied().unwrap_or(b' ');
            lines.push((code, body.get(4..).unwrap_or("").to_string()));
            match sep {
                b' ' => break,
                b'-' => {}
                _ => return Err(format!("malformed reply line: {body:?}")),
            }
        }
        let code = lines[0].0;
        if lines.iter().any(|(c, _)| *c != code) {
            return Err(format!("mixed codes in one reply: {lines:?}"));
        }
        Ok(Reply {
            code,
            lines: lines.into_iter().map(|(_, l)| l).collect(),
        })
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.reply()
    }

    /// Sends a command and asserts the reply code; returns the reply.
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line} -> {}", r.wire());
        r
    }

    /// Sends DATA content (already dot-stuffed, CRLF line endings, without the final
    /// `.` line) followed by `.\r\n`, and returns the end-of-data reply.
    pub fn data(&mut self, content: &str) -> Reply {
        self.expect("DATA", 354);
        self.send_raw(content.as_bytes());
        if !content.is_empty() && !content.ends_with("\r\n") {
            self.send_raw(b"\r\n");
        }
        self.send_raw(b".\r\n");
        self.reply()
    }

    /// One whole transaction: EHLO is up to the caller; MAIL, RCPTs, DATA. Returns the
    /// queue ID from `250 2.0.0 Ok: queued as ID`.
    pub fn send_mail(&mut self, from: &str, to: &[&str], content: &str) -> String {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        for t in to {
            self.expect(&format!("RCPT TO:<{t}>"), 250);
        }
        let r = self.data(content);
        assert_eq!(r.code, 250, "end of data: {}", r.wire());
        queue_id(&r)
    }

    /// Whether the server closed the connection (reads until EOF, up to the timeout).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

/// The queue ID in a `250 2.0.0 Ok: queued as ID` reply.
pub fn queue_id(r: &Reply) -> String {
    r.text()
        .rsplit("queued as ")
        .next()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(' '))
        .unwrap_or_else(|| panic!("no queue ID in {}", r.wire()))
}

/// A TCP connection to `127.0.0.1:port`, retried for up to 10 s while nothing listens
/// (master starts smtpd on demand, after the instance has started).
pub fn connect_when_listening(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("connect 127.0.0.1:{port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits (10 s) until something listens on 127.0.0.1:`port`, without connecting (a probe
/// connection would count against limits under test). Reads /proc/net/tcp.
pub fn wait_listening(port: u16) {
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let listening = table.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && want.iter().any(|w| w == cols[1]) && cols[3] == "0A"
        });
        if listening {
            return;
        }
        assert!(Instant::now() < end, "nothing listens on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A started unprivileged instance whose main.cf has `extra`.
pub fn started(extra: &str) -> Instance {
    let mut inst = Instance::new(extra);
    inst.start();
    inst
}

/// The instance user's address in `$mydestination` (`USER@mail.example.test`).
pub fn local_user(inst: &Instance) -> String {
    format!("{}@mail.example.test", inst.user())
}

/// The instance user's mbox.
pub fn mbox(inst: &Instance) -> PathBuf {
    inst.mail.join(inst.user())
}

/// A connection to the instance's smtp service after the greeting and `EHLO helo`.
pub fn session(inst: &Instance, helo: &str) -> Client {
    let mut c = Client::connect(inst.smtp_port);
    c.expect(&format!("EHLO {helo}"), 250);
    c
}

/// A connection after the greeting and `EHLO client.example.test`.
pub fn ehlo_session(inst: &Instance) -> Client {
    session(inst, "client.example.test")
}

/// Appends a master.cf service line (before the instance starts).
pub fn add_service(inst: &Instance, line: &str) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(inst.etc.join("master.cf"))
        .expect("open master.cf");
    writeln!(f, "{line}").expect("append to master.cf");
}

/// Asserts a one-line reply: `code text` exactly (`what` names it in the message).
#[track_caller]
pub fn assert_reply(r: &Reply, code: u16, text: &str, what: &str) {
    assert_eq!(
        (r.code, r.text().as_str()),
        (code, text),
        "{what}: got {}",
        r.wire()
    );
}
