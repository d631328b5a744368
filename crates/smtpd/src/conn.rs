//! One client connection: the socket (plain or TLS), buffers, the SMTP session, and its
//! backend. [`Conn::drive`] moves bytes until nothing more can happen without an event.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use posthorn_smtp_proto::Reply;
use posthorn_smtp_proto::server::{Session, Settings, Status};
use rustls::ServerConnection;

use crate::backend::SmtpBackend;
use crate::cleanup_stream::Answer;

/// Input kept unprocessed at most (a client cannot make smtpd buffer more).
const INPUT_CAP: usize = 256 * 1024;
/// Replies not yet taken by the client at most, before smtpd stops reading its commands.
const OUTPUT_CAP: usize = 256 * 1024;
/// Content waiting for cleanup at most, before smtpd stops reading the client.
const BACKLOG_CAP: usize = 512 * 1024;

/// The deadlines a client must meet.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `smtpd_timeout`.
    pub timeout: Duration,
    /// `smtpd_min_data_rate` (bytes/s during content; 0: none).
    pub min_rate: u64,
    /// `smtpd_per_record_deadline`: the timeout covers a whole command line, so a client
    /// dripping bytes cannot hold the connection (otherwise each read restarts it).
    pub per_record: bool,
    /// `ipc_timeout`: how long the end of a message may wait for cleanup's answer.
    pub ipc: Duration,
}

/// Where the connection is.
#[derive(Debug)]
pub enum Phase {
    /// Waiting for the PROXY protocol header.
    Proxy,
    /// Waiting `smtpd_greet_wait` before the greeting.
    GreetWait(Instant),
    /// Talking SMTP.
    Smtp,
}

/// Why a connection ends (for the log).
pub enum End {
    /// Closed normally (QUIT, or after a final reply).
    Done,
    /// The client went away.
    Lost,
    /// A hard I/O or TLS error.
    Error(String),
}

/// A client connection.
pub struct Conn {
    /// The socket.
    pub sock: TcpStream,
    /// The peer of the socket (the proxy, behind a load balancer).
    pub peer: SocketAddr,
    /// TLS, once started.
    pub tls: Option<ServerConnection>,
    tls_logged: bool,
    /// STARTTLS was answered but its reply is not fully sent: TLS starts once it is, and
    /// nothing is read meanwhile (the client's hello stays in the socket for rustls).
    tls_waiting: bool,
    /// Received, not yet processed.
    pub input: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// The SMTP session (created when the client is known).
    pub session: Option<Session>,
    /// Its backend.
    pub backend: Option<SmtpBackend>,
    /// Where the connection is.
    pub phase: Phase,
    /// When the client has to have said something.
    pub deadline: Instant,
    /// Replies are held until then (smtpd_error_sleep_time).
    pub sleep_until: Option<Instant>,
    /// Close once the output is sent.
    pub closing: bool,
    /// The session waits for cleanup.
    pub pending: bool,
    /// Until when it may wait (then 451 and the cleanup connection is dropped).
    pub pending_deadline: Instant,
    eof: bool,
    /// The client's address (after PROXY).
    pub client_ip: Option<IpAddr>,
    /// Set when the limit counters include this connection.
    pub counted: bool,
    timing: Timing,
    /// `myhostname`, for the 421 replies.
    pub hostname: Rc<str>,
}

impl Conn {
    /// A new connection in `phase`.
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        phase: Phase,
        timing: Timing,
        hostname: Rc<str>,
    ) -> Conn {
        Conn {
            sock,
            peer,
            tls: None,
            tls_logged: false,
            tls_waiting: false,
            input: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            session: None,
            backend: None,
            phase,
            deadline: Instant::now() + timing.timeout,
            sleep_until: None,
            closing: false,
            pending: false,
            pending_deadline: Instant::now(),
            eof: false,
            client_ip: None,
            counted: false,
            timing,
            hostname,
        }
    }

    /// Starts the SMTP session (the client is known).
    pub fn start_session(&mut self, s: Settings, backend: SmtpBackend, tls: bool) {
        let mut session = Session::new(s);
        if tls {
            session.tls_started();
        }
        self.session = Some(session);
        self.backend = Some(backend);
        self.phase = Phase::Smtp;
        self.deadline = Instant::now() + self.timing.timeout;
    }

    /// Queues the greeting.
    pub fn greet(&mut self) {
        if let Some(s) = &self.session {
            let mut out = Vec::new();
            s.greeting(&mut out);
            self.send(&out);
        }
    }

    /// Queues raw reply bytes (plaintext; under TLS they are encrypted as rustls takes
    /// them, so unsent replies always count against OUTPUT_CAP).
    pub fn send(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Queues a reply and closes after it.
    pub fn send_and_close(&mut self, r: &Reply) {
        let mut out = Vec::new();
        r.write_to(&mut out);
        self.send(&out);
        self.closing = true;
    }

    /// Starts TLS with `config` (STARTTLS or wrapper mode). Bytes already read (a client
    /// hello that came with the PROXY header) go to rustls, not to the SMTP session.
    pub fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let mut c = ServerConnection::new(config).map_err(io::Error::other)?;
        let early = std::mem::take(&mut self.input);
        let mut rd = &early[..];
        while !rd.is_empty() {
            if c.read_tls(&mut rd)? == 0 {
                break;
            }
            c.process_new_packets().map_err(io::Error::other)?;
        }
        self.tls = Some(c);
        self.tls_waiting = false;
        Ok(())
    }

    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads what the socket has (within the caps). Returns bytes of new plaintext.
    fn read_some(&mut self) -> Result<usize, End> {
        let mut got = 0;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if self.eof || self.input.len() >= INPUT_CAP || self.tls_waiting {
                return Ok(got);
            }
            if self
                .backend
                .as_ref()
                .is_some_and(|b| b.backlog() >= BACKLOG_CAP)
            {
                return Ok(got);
            }
            match &mut self.tls {
                None => match self.sock.read(&mut buf) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.input.extend_from_slice(&buf[..n]);
                        got += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => self.eof = true,
                },
                Some(tls) => {
                    let mut sock_done = false;
                    match tls.read_tls(&mut self.sock) {
                        Ok(0) => self.eof = true,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock_done = true,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => self.eof = true,
                    }
                    if let Err(e) = tls.process_new_packets() {
                        // Tell the peer why before closing.
                        let _ = tls.write_tls(&mut self.sock);
                        return Err(End::Error(format!("TLS: {e}")));
                    }
                    loop {
                        match tls.reader().read(&mut buf) {
                            Ok(0) => {
                                self.eof = true;
                                break;
                            }
                            Ok(n) => {
                                self.input.extend_from_slice(&buf[..n]);
                                got += n;
                            }
                            Err(_) => break, // WouldBlock: no more plaintext yet
                        }
                    }
                    if sock_done {
                        return Ok(got);
                    }
                }
            }
        }
    }

    /// Writes what the socket takes.
    fn flush(&mut self) -> Result<(), End> {
        if let Some(tls) = &mut self.tls {
            loop {
                if self.out_pos < self.out.len()
                    && let Ok(n) = tls.writer().write(&self.out[self.out_pos..])
                {
                    self.out_pos += n;
                }
                let mut sent = false;
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(0) => return Err(End::Lost),
                        Ok(_) => sent = true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(End::Lost),
                    }
                }
                // More plaintext fits once rustls has sent what it held.
                if !(sent && self.out_pos < self.out.len() && !tls.wants_write()) {
                    break;
                }
            }
        } else {
            while self.out_pos < self.out.len() {
                match self.sock.write(&self.out[self.out_pos..]) {
                    Ok(0) => return Err(End::Lost),
                    Ok(n) => self.out_pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(End::Lost),
                }
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Whether everything queued has been written.
    pub fn flushed(&self) -> bool {
        self.out_pos == self.out.len() && self.tls.as_ref().is_none_or(|t| !t.wants_write())
    }

    /// Whether input arrived that nobody asked for yet (early talkers).
    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// Reads without processing (PROXY and greet-wait phases). Err = the connection ended.
    pub fn read_only(&mut self) -> Result<(), End> {
        self.read_some()?;
        if self.eof && self.input.is_empty() {
            return Err(End::Lost);
        }
        Ok(())
    }

    /// Moves bytes: reads, runs the session, writes; returns when no progress is possible.
    /// `Ok(Some(config))` asks the caller for a TLS config to start TLS with.
    pub fn drive(&mut self, now: Instant) -> Result<Drive, End> {
        loop {
            let handshaking = self.tls.as_ref().is_some_and(|t| t.is_handshaking());
            let can_process = !self.pending
                && !self.closing
                && !self.tls_waiting
                && self.sleep_until.is_none_or(|t| now >= t)
                && !handshaking
                && self.unsent() < OUTPUT_CAP;
            let before_in = self.input.len();
            let n = self.read_some()?;
            if n > 0 {
                self.note_progress(n, now, false);
            }
            if self.tls.is_some() && !handshaking && !self.tls_logged {
                self.tls_logged = true;
                if let (Some(tls), Some(b)) = (&self.tls, &mut self.backend)
                    && let Some(info) = posthorn_smtpd::tls::session_info(tls)
                {
                    log::info!(
                        "Anonymous TLS connection established from {}: {}",
                        b.label,
                        info.describe()
                    );
                    b.tls_info = Some(info.describe());
                }
            }
            let mut status = Status::Ready;
            let mut out = Vec::new();
            if can_process && !self.input.is_empty() {
                self.sleep_until = None;
                if let (Some(s), Some(b)) = (&mut self.session, &mut self.backend) {
                    status = s.process(&mut self.input, &mut out, b);
                }
            }
            let processed = self.input.len() != before_in + n || !out.is_empty();
            if processed {
                self.note_progress(0, now, true);
            }
            if !out.is_empty() {
                self.send(&out);
            }
            let mut want_tls = false;
            match status {
                Status::Ready => {}
                Status::Pending => {
                    self.pending = true;
                    self.pending_deadline = now + self.timing.ipc;
                }
                Status::Sleep(d) => self.sleep_until = Some(now + d),
                Status::Close => self.closing = true,
                Status::StartTls => want_tls = true,
            }
            if want_tls {
                self.tls_waiting = true;
            }
            self.flush()?;
            if self.tls_waiting {
                if self.flushed() {
                    return Ok(Drive::StartTls);
                }
                // The rest of "220 Ready to start TLS" goes out at the next writable event.
                return Ok(Drive::Idle);
            }
            if self.closing && self.flushed() {
                return Err(End::Done);
            }
            if self.eof && (self.input.is_empty() || !can_process) && !self.pending {
                return Err(End::Lost);
            }
            if n == 0 && !processed {
                return Ok(Drive::Idle);
            }
        }
    }

    /// Input arrived (`n` bytes) or a command was completed: move the deadline. During
    /// content each byte earns time by the minimum data rate; with per-record deadlines
    /// only completed commands count.
    fn note_progress(&mut self, n: usize, now: Instant, command_done: bool) {
        let t = self.timing;
        let content = self.session.as_ref().is_some_and(Session::in_content);
        if content && t.min_rate > 0 {
            let credit = Duration::from_secs_f64(n as f64 / t.min_rate as f64);
            self.deadline = (self.deadline + credit).min(now + t.timeout);
        } else if command_done || !t.per_record {
            self.deadline = now + t.timeout;
        }
    }

    /// A cleanup answer for this connection's session.
    pub fn cleanup_answer(&mut self, a: Answer) {
        let Some(b) = &mut self.backend else { return };
        if let Some(reply) = b.on_answer(a) {
            self.finish_pending(reply);
        }
    }

    /// The cleanup connection broke.
    pub fn cleanup_broken(&mut self, e: &str) {
        let Some(b) = &mut self.backend else { return };
        let reply = b.on_stream_error(e);
        if self.pending {
            self.finish_pending(reply);
        }
    }

    fn finish_pending(&mut self, reply: Reply) {
        self.pending = false;
        let mut out = Vec::new();
        let st = match &mut self.session {
            Some(s) => s.resume(reply, &mut out),
            None => Status::Close,
        };
        self.send(&out);
        match st {
            Status::Close => self.closing = true,
            Status::Sleep(d) => self.sleep_until = Some(Instant::now() + d),
            _ => {}
        }
        self.deadline = Instant::now() + self.timing.timeout;
    }

    /// The deadline passed: the Postfix reply and log line.
    pub fn timed_out(&mut self) {
        let after = self
            .session
            .as_ref()
            .map_or("CONNECT", Session::last_command);
        if let Some(b) = &self.backend {
            log::info!("timeout after {after} from {}", b.label);
        }
        let h = self.hostname.clone();
        self.send_and_close(&Reply::new(
            421,
            "4.4.2",
            format!("{h} Error: timeout exceeded"),
        ));
    }
}

/// What [`Conn::drive`] needs from the event loop.
pub enum Drive {
    /// Nothing to do until the next event.
    Idle,
    /// Start TLS now.
    StartTls,
}
