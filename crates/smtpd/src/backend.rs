//! What smtpd does with an SMTP session's decisions: restriction lists (posthorn-policy),
//! rate limits, the reject log lines, the Received header, and streaming the message to
//! cleanup (posthorn-smtp-proto's [`Backend`]).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use posthorn_policy::{Facts as PolicyFacts, Policy, Stage};
use posthorn_proto::cleanup::{Origin, Reply as CleanupReply};
use posthorn_queue::QueueLayout;
use posthorn_queue::record::kind;
use posthorn_smtp_proto::Reply;
use posthorn_smtp_proto::command::{MailFrom, RcptTo};
use posthorn_smtp_proto::server::{Backend, Facts};

use crate::anvil::Anvil;
use crate::cleanup_stream::{Answer, CleanupStream};

/// Process-wide state shared by every connection.
pub struct Ctx {
    /// The restriction lists, or why they could not be built.
    pub policy: Result<Policy, String>,
    /// `myhostname`.
    pub hostname: String,
    /// `smtpd_tls_received_header`.
    pub tls_received_header: bool,
    /// The queue (for cleanup's socket).
    pub layout: QueueLayout,
    /// Idle cleanup connections.
    pub pool: RefCell<Vec<CleanupStream>>,
    /// Connection and rate counters.
    pub anvil: RefCell<Anvil>,
    /// `smtpd_client_message_rate_limit`.
    pub message_rate_limit: u32,
    /// master.cf service name, for the limit warnings.
    pub service: String,
    /// Free space the queue file system must keep to take a message: the larger of
    /// `queue_minfree` and 1.5 × `message_size_limit` (Postfix's rule).
    pub space_needed: u64,
    /// The poller's registry (streams leave it before they go back to the pool).
    pub registry: mio::Registry,
}

/// Idle cleanup connections kept for reuse.
const POOL_MAX: usize = 16;

/// The backend of one connection.
pub struct SmtpBackend {
    ctx: Rc<Ctx>,
    /// The client as policy sees it.
    pub client: posthorn_policy::Client,
    /// `host[addr]` for logs.
    pub label: String,
    /// Exempt from the rate and count limits.
    pub exempt: bool,
    /// A rejection decided at connect time (smtpd_delay_reject = no).
    pub connect_reject: Option<Reply>,
    /// `TLSv1.3 with cipher ... (256/256 bits)` once TLS is up.
    pub tls_info: Option<String>,
    sender: Option<MailFrom>,
    rcpts: Vec<String>,
    /// The cleanup connection of the current message.
    pub stream: Option<CleanupStream>,
    /// Whether `stream` is registered with the event loop.
    pub registered: bool,
    id: Option<String>,
    /// The cleanup connection of the current transaction broke: recipients accepted so
    /// far are lost to it, so nothing more of this transaction may be accepted.
    broken: bool,
    held: Option<Vec<u8>>,
    data_started: bool,
    commit_wanted: bool,
    arrival: SystemTime,
    protocol: String,
    helo: String,
}

fn temp_error() -> Reply {
    Reply::new(451, "4.3.0", "Error: queue file write error")
}

impl SmtpBackend {
    /// A backend for a client.
    pub fn new(ctx: Rc<Ctx>, client: posthorn_policy::Client, exempt: bool) -> SmtpBackend {
        let label = format!("{}[{}]", client.name, client.addr);
        SmtpBackend {
            ctx,
            client,
            label,
            exempt,
            connect_reject: None,
            tls_info: None,
            sender: None,
            rcpts: Vec::new(),
            stream: None,
            registered: false,
            id: None,
            broken: false,
            held: None,
            data_started: false,
            commit_wanted: false,
            arrival: SystemTime::now(),
            protocol: "SMTP".into(),
            helo: String::new(),
        }
    }

    /// The ID of the current message, or `NOQUEUE`.
    fn queue_id(&self) -> &str {
        self.id.as_deref().unwrap_or("NOQUEUE")
    }

    fn check(&self, stage: Stage, f: &Facts, rcpt: Option<&str>) -> Result<(), Reply> {
        let policy = match &self.ctx.policy {
            Ok(p) => p,
            // As Postfix: a broken restriction list refuses mail at RCPT (and later), never
            // opens a relay, and lets the client see where the problem is.
            Err(_) if matches!(stage, Stage::Connect | Stage::Helo | Stage::Mail) => {
                return Ok(());
            }
            Err(_) => return Err(Reply::new(451, "4.3.5", "Server configuration error")),
        };
        let sender = self.sender.as_ref().map(|m| m.address.as_str());
        let facts = PolicyFacts {
            client: &self.client,
            helo: f.helo.as_deref(),
            sender,
            recipient: rcpt,
            protocol: &self.protocol,
            unauth_pipelining: f.unauth_pipelining,
        };
        policy.check(stage, &facts).map_err(|rej| {
            let (dsn, text) = (rej.dsn.clone(), rej.text.clone());
            Reply::new(rej.code, &dsn, text)
        })
    }

    /// Logs a policy rejection in Postfix's format.
    fn log_reject(&self, cmd: &str, reply: &Reply, rcpt: Option<&str>) {
        let mut line = format!(
            "{}: reject: {cmd} from {}: {};",
            self.queue_id(),
            self.label,
            reply.summary()
        );
        if let Some(m) = &self.sender {
            line.push_str(&format!(" from=<{}>", m.address));
        }
        if let Some(r) = rcpt {
            line.push_str(&format!(" to=<{r}>"));
        }
        line.push_str(&format!(" proto={}", self.protocol));
        if !self.helo.is_empty() {
            line.push_str(&format!(" helo=<{}>", self.helo));
        }
        log::info!("{line}");
    }

    fn track(&mut self, f: &Facts) {
        let utf8 = self.sender.as_ref().is_some_and(|m| m.smtputf8);
        self.protocol = f.protocol(utf8);
        self.helo = f.helo.clone().unwrap_or_default();
    }

    /// Opens the cleanup stream and sends the envelope so far.
    fn open_message(&mut self, m: &MailFrom) -> Result<(), Reply> {
        let mut stream = loop {
            let Some(mut s) = self.ctx.pool.borrow_mut().pop() else {
                break CleanupStream::connect(&self.ctx.layout).map_err(|e| {
                    log::warn!("connect to cleanup: {e}");
                    temp_error()
                })?;
            };
            if s.healthy() {
                break s;
            }
        };
        stream.begin(Origin {
            kind: "smtp".into(),
            uid: 0,
            client: self.label.clone(),
        });
        let t = self
            .arrival
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        stream.record(
            kind::TIME,
            format!("{} {}", t.as_secs(), t.subsec_micros()).as_bytes(),
        );
        stream.record(kind::FROM, m.address.as_bytes());
        stream.record(kind::ATTR, format!("client={}", self.label).as_bytes());
        stream.record(kind::ATTR, format!("protocol={}", self.protocol).as_bytes());
        if m.smtputf8 {
            stream.record(kind::ATTR, b"smtputf8=1");
        }
        if let Some(e) = &m.envid {
            stream.record(kind::DSN_ENVID, e.as_bytes());
        }
        if let Some(r) = &m.ret {
            stream.record(kind::DSN_RET, r.as_bytes());
        }
        self.stream = Some(stream);
        self.registered = false;
        Ok(())
    }

    /// Takes an answer from cleanup; returns the reply for the client once the message is
    /// settled.
    pub fn on_answer(&mut self, a: Answer) -> Option<Reply> {
        match a {
            Answer::Opened(id) => {
                if !id.is_empty() {
                    log::info!("{id}: client={}", self.label);
                }
                self.id = Some(id);
                if self.data_started {
                    self.write_head();
                }
                if self.commit_wanted {
                    self.commit_wanted = false;
                    if let Some(s) = &mut self.stream {
                        s.commit();
                    }
                }
                None
            }
            Answer::Done(r) => {
                let reply = match r {
                    CleanupReply::Queued { id } => {
                        Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
                    }
                    CleanupReply::Failed {
                        temporary: true,
                        dsn,
                        text,
                    } => Reply::new(451, &dsn, format!("Error: {text}")),
                    CleanupReply::Failed { dsn, text, .. } if dsn == "5.3.4" => {
                        let _ = text;
                        Reply::new(552, "5.3.4", "Error: message file too big")
                    }
                    CleanupReply::Failed { dsn, text, .. } => {
                        Reply::new(554, &dsn, format!("Error: {text}"))
                    }
                };
                self.release();
                self.clear();
                Some(reply)
            }
        }
    }

    /// The cleanup connection broke: the message is lost to us, the client must retry.
    pub fn on_stream_error(&mut self, e: &str) -> Reply {
        log::warn!("{}: cleanup connection: {e}", self.queue_id());
        self.stream = None;
        self.registered = false;
        self.clear();
        // Until the client starts over (RSET, MAIL after a reply, EHLO), every further
        // RCPT, DATA and end of data of this transaction is refused.
        self.broken = true;
        temp_error()
    }

    /// Returns an idle stream to the pool (the event loop has deregistered it).
    fn release(&mut self) {
        if let Some(mut s) = self.stream.take() {
            if self.registered {
                let _ = self.ctx.registry.deregister(&mut s.sock);
            }
            let mut pool = self.ctx.pool.borrow_mut();
            if pool.len() < POOL_MAX && s.owed == 0 && s.pending() == 0 {
                pool.push(s);
            }
        }
        self.registered = false;
    }

    fn clear(&mut self) {
        self.sender = None;
        self.rcpts.clear();
        self.id = None;
        self.held = None;
        self.data_started = false;
        self.commit_wanted = false;
    }

    /// Writes the start of content (Received header first) once the queue ID is known,
    /// followed by content that arrived before it.
    fn write_head(&mut self) {
        let received = self.received();
        let held = self.held.take().unwrap_or_default();
        if let Some(s) = &mut self.stream {
            s.record(kind::MESG, b"");
            s.content(received.as_bytes());
            s.content(&held);
        }
    }

    fn received(&self) -> String {
        let addr = match self.client.addr {
            IpAddr::V6(a) => format!("IPv6:{a}"),
            IpAddr::V4(a) => a.to_string(),
        };
        let helo = if self.helo.is_empty() {
            "unknown"
        } else {
            &self.helo
        };
        let clean = |s: &str| s.replace(|c: char| c.is_control(), " ");
        let mut h = format!(
            "Received: from {} ({} [{addr}])\n",
            clean(helo),
            clean(&self.client.name)
        );
        if let (Some(t), true) = (&self.tls_info, self.ctx.tls_received_header) {
            h.push_str(&format!("\t(using {t})\n"));
        }
        h.push_str(&format!(
            "\tby {} (posthorn) with {} id {}",
            self.ctx.hostname,
            self.protocol,
            self.id.as_deref().unwrap_or("")
        ));
        let (offset, abbr) = posthorn_message::time::local_offset(self.arrival);
        let date = posthorn_message::time::mail_date_at(self.arrival, offset, &abbr);
        if self.rcpts.len() == 1 {
            h.push_str(&format!("\n\tfor <{}>; {date}\n", clean(&self.rcpts[0])));
        } else {
            h.push_str(&format!("; {date}\n"));
        }
        h
    }

    /// Bytes waiting to go to cleanup (the event loop stops reading the client above a
    /// threshold).
    pub fn backlog(&self) -> usize {
        self.stream.as_ref().map_or(0, CleanupStream::pending)
            + self.held.as_ref().map_or(0, Vec::len)
    }
}

impl Backend for SmtpBackend {
    fn helo(&mut self, f: &Facts) -> Result<(), Reply> {
        self.track(f);
        if let Some(r) = &self.connect_reject {
            return Err(r.clone());
        }
        self.check(Stage::Helo, f, None).inspect_err(|r| {
            self.log_reject("HELO", r, None);
        })
    }

    fn mail(&mut self, f: &Facts, mail: &MailFrom) -> Result<(), Reply> {
        self.track(f);
        self.broken = false;
        if let Some(r) = &self.connect_reject {
            return Err(r.clone());
        }
        if self.ctx.message_rate_limit > 0 && !self.exempt {
            let n = self.ctx.anvil.borrow_mut().message(self.client.addr);
            if n > self.ctx.message_rate_limit {
                log::warn!(
                    "Message delivery request rate limit exceeded: {n} from {} for service {}",
                    self.label,
                    self.ctx.service
                );
                return Err(Reply::new(
                    450,
                    "4.7.1",
                    format!("Error: too much mail from {}", self.client.addr),
                ));
            }
        }
        if self.ctx.space_needed > 0 {
            match posthorn_sys::free_space(self.ctx.layout.root()) {
                Ok(free) if free < self.ctx.space_needed => {
                    log::warn!(
                        "not enough free space in the queue file system: {free} bytes, need {}",
                        self.ctx.space_needed
                    );
                    return Err(Reply::new(452, "4.3.1", "Insufficient system storage"));
                }
                Ok(_) => {}
                Err(e) => log::warn!("queue file system: {e}"),
            }
        }
        self.sender = Some(mail.clone());
        self.track(f);
        self.arrival = SystemTime::now();
        self.check(Stage::Mail, f, None).inspect_err(|r| {
            self.log_reject("MAIL", r, None);
            self.sender = None;
        })
    }

    fn rcpt(&mut self, f: &Facts, _mail: &MailFrom, rcpt: &RcptTo) -> Result<(), Reply> {
        self.track(f);
        if let Some(r) = &self.connect_reject {
            return Err(r.clone());
        }
        if let Err(r) = self.check(Stage::Rcpt, f, Some(&rcpt.address)) {
            self.log_reject("RCPT", &r, Some(&rcpt.address));
            return Err(r);
        }
        if self.broken {
            return Err(temp_error());
        }
        if self.stream.is_none() {
            self.open_message(_mail)?;
        }
        let s = self.stream.as_mut().expect("opened above");
        if let Some(n) = &rcpt.notify {
            s.record(kind::DSN_NOTIFY, n.as_bytes());
        }
        if let Some(o) = &rcpt.orcpt {
            s.record(kind::DSN_ORCPT, o.as_bytes());
        }
        s.record(kind::RCPT, rcpt.address.as_bytes());
        self.rcpts.push(rcpt.address.clone());
        Ok(())
    }

    fn data(&mut self, f: &Facts, _mail: &MailFrom) -> Result<(), Reply> {
        self.track(f);
        if let Err(r) = self.check(Stage::Data, f, None) {
            self.log_reject("DATA", &r, None);
            return Err(r);
        }
        if self.stream.is_none() {
            return Err(temp_error());
        }
        self.data_started = true;
        if self.id.is_some() {
            self.write_head();
        } else {
            self.held = Some(Vec::new());
        }
        Ok(())
    }

    fn content(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.held {
            h.extend_from_slice(bytes);
        } else if let Some(s) = &mut self.stream {
            s.content(bytes);
        }
    }

    fn end(&mut self, f: &Facts) -> Option<Reply> {
        self.track(f);
        if let Err(r) = self.check(Stage::EndOfData, f, None) {
            self.log_reject("END-OF-MESSAGE", &r, None);
            self.reset();
            return Some(r);
        }
        match &mut self.stream {
            None => Some(temp_error()),
            Some(s) if self.id.is_some() => {
                s.commit();
                None
            }
            Some(_) => {
                self.commit_wanted = true;
                None
            }
        }
    }

    fn reset(&mut self) {
        self.broken = false;
        if self.stream.is_some() {
            // A half-sent message: close the connection; cleanup removes the file.
            self.stream = None;
            self.registered = false;
        }
        self.clear();
    }

    fn vrfy(&mut self, f: &Facts, address: &str) -> Reply {
        self.track(f);
        match self.check(Stage::Rcpt, f, Some(address)) {
            Ok(()) => Reply::new(252, "2.0.0", address.to_string()),
            Err(r) => {
                self.log_reject("VRFY", &r, Some(address));
                r
            }
        }
    }

    fn note(&mut self, what: &str, detail: &str) {
        if detail.is_empty() {
            log::info!("{what} from {}", self.label);
        } else {
            log::info!("{what} from {}: {detail}", self.label);
        }
    }
}
