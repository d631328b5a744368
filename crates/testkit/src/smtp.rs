//! A small, strict SMTP client for tests: raw bytes in and out over a real loopback socket,
//! replies parsed into code + lines, every read bounded by a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    drop(s);
                    break;
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("connect 127.0.0.1:{port}: {e}"),
            }
        }
        let mut c = Client::connect_raw(port);
        let g = c.reply();
        assert_eq!(g.code, 220, "greeting: {}", g.wire());
        c
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
