//! One TCP connection to a server, plain or TLS: sending with a time limit, reading whole
//! replies with a deadline, and switching to TLS (STARTTLS or wrapper mode).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::reply::{MAX_LINE, ReplyParser, ServerReply};

/// Why an exchange with the server failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoFail {
    /// The phase's time limit passed.
    Timeout,
    /// The connection broke or was closed.
    Lost(String),
    /// The server sent something that is not a reply.
    Protocol(String),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// A connection with its input buffer.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("tls", &self.is_tls())
            .field("buffered", &(self.buf.len() - self.start))
            .finish()
    }
}

/// The text of an I/O error without Rust's ` (os error N)` suffix, as `%m` prints it.
pub fn error_text(e: &io::Error) -> String {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return "Connection timed out".to_string();
    }
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

fn fail(e: &io::Error) -> IoFail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoFail::Timeout,
        _ => IoFail::Lost(error_text(e)),
    }
}

impl Conn {
    /// Connects to `addr` within `timeout` (zero: the kernel's limit).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let sock = if timeout.is_zero() {
            TcpStream::connect(addr)?
        } else {
            TcpStream::connect_timeout(&addr, timeout)?
        };
        // Small commands go out at once; pipelined groups are written in one call anyway.
        sock.set_nodelay(true)?;
        Ok(Conn {
            stream: Stream::Plain(sock),
            buf: Vec::with_capacity(4096),
            start: 0,
        })
    }

    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.get_ref(),
        }
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The TLS state, when TLS is on.
    pub fn tls(&self) -> Option<&ClientConnection> {
        match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(t) => Some(&t.conn),
        }
    }

    /// Whether the server sent input that no command has asked for yet.
    pub fn has_buffered(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Sends `data`, each write within `timeout`.
    pub fn send(&mut self, data: &[u8], timeout: Duration) -> Result<(), IoFail> {
        let t = Some(timeout.max(Duration::from_millis(1)));
        self.tcp().set_write_timeout(t).map_err(|e| fail(&e))?;
        // rustls may need to read (key updates) while writing.
        self.tcp().set_read_timeout(t).map_err(|e| fail(&e))?;
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(data).and_then(|()| s.flush()),
            Stream::Tls(s) => s.write_all(data).and_then(|()| s.flush()),
        };
        r.map_err(|e| fail(&e))
    }

    /// Reads one complete reply; the whole reply must arrive within `timeout`.
    pub fn read_reply(&mut self, timeout: Duration) -> Result<ServerReply, IoFail> {
        let deadline = Instant::now() + timeout;
        let mut parser = ReplyParser::new();
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let end = self.start + pos;
                let line = &self.buf[self.start..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let got = parser.feed(line);
                self.start = end + 1;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                match got {
                    Ok(Some(r)) => return Ok(r),
                    Ok(None) => continue,
                    Err(e) => return Err(IoFail::Protocol(e.to_string())),
                }
            }
            if self.buf.len() - self.start > MAX_LINE {
                return Err(IoFail::Protocol(format!(
                    "reply line longer than {MAX_LINE} bytes"
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(IoFail::Timeout);
            }
            self.fill(left)?;
        }
    }

    fn fill(&mut self, timeout: Duration) -> Result<(), IoFail> {
        self.tcp()
            .set_read_timeout(Some(timeout))
            .map_err(|e| fail(&e))?;
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 8192];
        let n = loop {
            let r = match &mut self.stream {
                Stream::Plain(s) => s.read(&mut chunk),
                Stream::Tls(s) => s.read(&mut chunk),
            };
            match r {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(&e)),
            }
        };
        if n == 0 {
            return Err(IoFail::Lost("Connection closed by peer".into()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Switches to TLS (after the server's 220 to STARTTLS, or at once in wrapper mode):
    /// the handshake must finish within `timeout`. Refuses when the server already sent
    /// more plaintext (it would be taken as if protected: the STARTTLS injection attack).
    pub fn start_tls(
        self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<Conn, String> {
        if self.has_buffered() {
            return Err("server sent data after its STARTTLS reply".into());
        }
        let Stream::Plain(mut sock) = self.stream else {
            return Err("TLS is already on".into());
        };
        let mut tls = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        while tls.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            let t = Some(left);
            sock.set_read_timeout(t).map_err(|e| error_text(&e))?;
            sock.set_write_timeout(t).map_err(|e| error_text(&e))?;
            match tls.complete_io(&mut sock) {
                Ok((0, 0)) if tls.is_handshaking() => {
                    return Err("lost connection during the TLS handshake".into());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match e.get_ref() {
                        Some(inner) => inner.to_string(),
                        None => error_text(&e),
                    });
                }
            }
        }
        Ok(Conn {
            stream: Stream::Tls(Box::new(StreamOwned::new(tls, sock))),
            buf: Vec::with_capacity(4096),
            start: 0,
        })
    }

    /// Ends TLS politely (close_notify) when it is on; best effort.
    pub fn close(mut self) {
        if let Stream::Tls(s) = &mut self.stream {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Both);
    }
}
