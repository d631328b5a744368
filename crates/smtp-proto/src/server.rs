//! The server side of an SMTP session as a state machine without I/O: bytes in, replies
//! out, decisions and message content through a [`Backend`]. smtpd drives it from its
//! event loop, `sendmail -bs` from stdin/stdout; both get the same protocol.
//!
//! The engine owns the protocol rules: command sequence, reply codes and enhanced status
//! codes, PIPELINING discipline (RFC 2920, `smtpd_forbid_unauth_pipelining`), the DATA and
//! BDAT phases, size and recipient limits, error counting (`smtpd_soft_error_limit`,
//! `smtpd_hard_error_limit`, `smtpd_junk_command_limit`). Policy, queueing and logging
//! belong to the backend; timeouts, TLS and sockets to the driver.

use std::time::Duration;

use crate::command::{self, Command, MailFrom, RcptTo};
use crate::data::{BareLf, ChunkReader, DataReader, DataStatus};
use crate::reply::Reply;

/// Protocol settings, read once from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `myhostname`.
    pub hostname: String,
    /// `smtpd_banner` (text after `220 `).
    pub banner: String,
    /// `message_size_limit` (0: none).
    pub size_limit: u64,
    /// `smtpd_recipient_limit`.
    pub recipient_limit: usize,
    /// `disable_vrfy_command`.
    pub disable_vrfy: bool,
    /// `smtpd_helo_required`.
    pub helo_required: bool,
    /// `smtputf8_enable`.
    pub smtputf8: bool,
    /// `smtpd_forbid_unauth_pipelining`.
    pub forbid_unauth_pipelining: bool,
    /// `smtpd_forbid_bare_newline` for this client (exclusions applied).
    pub bare_lf: BareLf,
    /// `smtpd_forbid_bare_newline_reject_code`.
    pub bare_lf_reject_code: u16,
    /// `smtpd_soft_error_limit`.
    pub soft_error_limit: u32,
    /// `smtpd_hard_error_limit`.
    pub hard_error_limit: u32,
    /// `smtpd_error_sleep_time`.
    pub error_sleep: Duration,
    /// `smtpd_junk_command_limit`.
    pub junk_limit: u32,
    /// `smtpd_discard_ehlo_keywords` (lower case).
    pub discard_ehlo: Vec<String>,
    /// Offer STARTTLS (TLS configured and not yet active).
    pub starttls: bool,
    /// `smtpd_tls_security_level = encrypt`: MAIL, RCPT, DATA need TLS first.
    pub tls_required: bool,
    /// Longest command line accepted (`line_length_limit`).
    pub line_limit: usize,
}

impl Settings {
    /// The settings main.cf gives (smtpd's parameters); STARTTLS off until the caller has
    /// a certificate, bare-LF exclusions are the caller's to apply.
    pub fn from_config(c: &posthorn_config::Config) -> Settings {
        let int = |n: &str| u32::try_from(c.get_int(n).max(0)).unwrap_or(u32::MAX);
        let bare = c.get("smtpd_forbid_bare_newline");
        let bare_lf = BareLf::parse(&bare).unwrap_or_else(|| {
            log::warn!("smtpd_forbid_bare_newline: bad value {bare:?}; using normalize");
            BareLf::Normalize
        });
        Settings {
            hostname: c.get("myhostname"),
            banner: c.get("smtpd_banner"),
            size_limit: c.get_size("message_size_limit"),
            recipient_limit: usize::try_from(c.get_int("smtpd_recipient_limit").max(1))
                .unwrap_or(1000),
            disable_vrfy: c.get_bool("disable_vrfy_command"),
            helo_required: c.get_bool("smtpd_helo_required"),
            smtputf8: c.get_bool("smtputf8_enable"),
            forbid_unauth_pipelining: c.get_bool("smtpd_forbid_unauth_pipelining"),
            bare_lf,
            bare_lf_reject_code: u16::try_from(c.get_int("smtpd_forbid_bare_newline_reject_code"))
                .ok()
                .filter(|c| (400..600).contains(c))
                .unwrap_or(550),
            soft_error_limit: int("smtpd_soft_error_limit"),
            hard_error_limit: int("smtpd_hard_error_limit").max(1),
            error_sleep: c.get_duration("smtpd_error_sleep_time"),
            junk_limit: int("smtpd_junk_command_limit"),
            discard_ehlo: c
                .get_list("smtpd_discard_ehlo_keywords")
                .into_iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            starttls: false,
            tls_required: false,
            line_limit: usize::try_from(c.get_int("line_length_limit").max(512)).unwrap_or(2048),
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            hostname: "localhost".into(),
            banner: "localhost ESMTP posthorn".into(),
            size_limit: 10_240_000,
            recipient_limit: 1000,
            disable_vrfy: false,
            helo_required: false,
            smtputf8: true,
            forbid_unauth_pipelining: true,
            bare_lf: BareLf::Normalize,
            bare_lf_reject_code: 550,
            soft_error_limit: 10,
            hard_error_limit: 20,
            error_sleep: Duration::from_secs(1),
            junk_limit: 100,
            discard_ehlo: Vec::new(),
            starttls: false,
            tls_required: false,
            line_limit: 2048,
        }
    }
}

/// What the backend knows about the session when it is asked to decide.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The HELO/EHLO argument.
    pub helo: Option<String>,
    /// Whether the client greeted with EHLO.
    pub esmtp: bool,
    /// Whether TLS is active.
    pub tls: bool,
    /// Whether the client pipelined where it was not allowed to.
    pub unauth_pipelining: bool,
}

impl Facts {
    /// Postfix's protocol name: SMTP, ESMTP, ESMTPS, UTF8SMTP, UTF8SMTPS.
    pub fn protocol(&self, smtputf8: bool) -> String {
        let base = match (smtputf8, self.esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        };
        if self.tls {
            format!("{base}S")
        } else {
            base.to_string()
        }
    }
}

/// The decisions and side effects an SMTP server delegates.
pub trait Backend {
    /// HELO/EHLO (helo restrictions).
    fn helo(&mut self, f: &Facts) -> Result<(), Reply>;
    /// MAIL FROM, after protocol checks (sender restrictions).
    fn mail(&mut self, f: &Facts, mail: &MailFrom) -> Result<(), Reply>;
    /// RCPT TO, after protocol checks (recipient restrictions); on Ok the recipient is part
    /// of the message.
    fn rcpt(&mut self, f: &Facts, mail: &MailFrom, rcpt: &RcptTo) -> Result<(), Reply>;
    /// DATA or the first BDAT (data restrictions); on Ok content follows.
    fn data(&mut self, f: &Facts, mail: &MailFrom) -> Result<(), Reply>;
    /// Message content in stored form (LF line endings).
    fn content(&mut self, bytes: &[u8]);
    /// The content is complete: queue the message. None = the answer comes later through
    /// [`Session::resume`].
    fn end(&mut self, f: &Facts) -> Option<Reply>;
    /// Forget the current transaction (RSET, a new EHLO, an error, a lost connection).
    fn reset(&mut self);
    /// VRFY (enabled).
    fn vrfy(&mut self, f: &Facts, address: &str) -> Reply;
    /// A protocol event worth a log line: `what from CLIENT: detail` (`improper command
    /// pipelining after EHLO`, `bare <LF> received`, ...); `detail` may be empty.
    fn note(&mut self, what: &str, detail: &str);
}

/// What the driver should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Send the output; feed more input when it comes.
    Ready,
    /// Send the output; the backend owes an answer ([`Session::resume`]); keep input.
    Pending,
    /// Send the output (`220 Ready to start TLS`), then do the TLS handshake and call
    /// [`Session::tls_started`]. Pending plaintext was discarded.
    StartTls,
    /// Send the output after this pause (error sleep), then continue.
    Sleep(Duration),
    /// Send the output and close the connection.
    Close,
}

#[derive(Debug)]
enum Phase {
    Command,
    /// Skipping the rest of an over-long command line.
    SkipLine,
    Data(DataReader),
    Bdat {
        size: u64,
        remaining: u64,
        last: bool,
        /// Content goes nowhere (the BDAT itself was refused).
        discard: bool,
    },
    /// Waiting for the backend's answer to the end of a message.
    Ending,
    Closed,
}

/// Command names in Postfix's order for the `disconnect from` statistics.
const STATS: [&str; 14] = [
    "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy",
    "etrn", "quit", "unknown",
];

/// One SMTP session.
pub struct Session {
    s: Settings,
    phase: Phase,
    facts: Facts,
    mail: Option<MailFrom>,
    rcpts: usize,
    rcpt_attempts: usize,
    bdat_used: bool,
    size: u64,
    too_big: bool,
    chunk: ChunkReader,
    errors: u32,
    junk: u32,
    stats: [(u32, u32); 14],
    scratch: Vec<u8>,
    last_cmd: String,
    error_limit_hit: bool,
}

fn r(code: u16, dsn: &str, text: &str) -> Reply {
    Reply::new(code, dsn, text)
}

impl Session {
    /// A new session with these settings.
    pub fn new(s: Settings) -> Session {
        Session {
            s,
            phase: Phase::Command,
            facts: Facts::default(),
            mail: None,
            rcpts: 0,
            rcpt_attempts: 0,
            bdat_used: false,
            size: 0,
            too_big: false,
            chunk: ChunkReader::default(),
            errors: 0,
            junk: 0,
            stats: [(0, 0); 14],
            scratch: Vec::new(),
            last_cmd: "CONNECT".into(),
            error_limit_hit: false,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// The session facts (HELO name, TLS, ...).
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Writes the greeting.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        Reply::plain(220, self.s.banner.clone()).write_to(out);
    }

    /// Whether a message transaction or content transfer is under way (for the log's
    /// `lost connection after DATA`).
    pub fn in_transaction(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Data(_) | Phase::Ending => Some("DATA"),
            Phase::Bdat { .. } => Some("BDAT"),
            _ if self.rcpts > 0 => Some("RCPT"),
            _ if self.mail.is_some() => Some("MAIL"),
            _ => None,
        }
    }

    /// The last command the client sent (`CONNECT` before the first), for `timeout after`
    /// and `lost connection after` log lines.
    pub fn last_command(&self) -> &str {
        &self.last_cmd
    }

    /// After `smtpd_hard_error_limit` ended the session: the last command, for Postfix's
    /// `too many errors after CMD from ...` log line.
    pub fn error_limit_reached(&self) -> Option<&str> {
        self.error_limit_hit.then_some(self.last_cmd.as_str())
    }

    /// Whether the session is reading message content (the driver applies the minimum
    /// data rate then).
    pub fn in_content(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
    }

    /// ` ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4`, as Postfix's disconnect line.
    pub fn stats(&self) -> String {
        let mut out = String::new();
        let (mut ok, mut all) = (0, 0);
        for (name, (good, total)) in STATS.iter().zip(self.stats) {
            if total == 0 {
                continue;
            }
            ok += good;
            all += total;
            if good == total {
                out.push_str(&format!(" {name}={total}"));
            } else {
                out.push_str(&format!(" {name}={good}/{total}"));
            }
        }
        if ok == all {
            out.push_str(&format!(" commands={all}"));
        } else {
            out.push_str(&format!(" commands={ok}/{all}"));
        }
        out
    }

    /// TLS is up: forget everything said before (RFC 3207 4.2) and stop offering STARTTLS.
    pub fn tls_started(&mut self) {
        self.facts = Facts {
            tls: true,
            ..Facts::default()
        };
        self.s.starttls = false;
        self.mail = None;
        self.rcpts = 0;
        self.phase = Phase::Command;
    }

    fn count(&mut self, name: &str, ok: bool) {
        if let Some(i) = STATS.iter().position(|n| *n == name) {
            self.stats[i].1 += 1;
            if ok {
                self.stats[i].0 += 1;
            }
        }
    }

    /// Processes as much of `input` as possible, removing what was used, appending replies
    /// to `out`.
    pub fn process(
        &mut self,
        input: &mut Vec<u8>,
        out: &mut Vec<u8>,
        b: &mut dyn Backend,
    ) -> Status {
        let mut used = 0;
        let status = loop {
            let rest = &input[used..];
            match &mut self.phase {
                Phase::Closed => break Status::Close,
                Phase::Ending => break Status::Pending,
                Phase::SkipLine => match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        used += i + 1;
                        self.phase = Phase::Command;
                    }
                    None => {
                        used += rest.len();
                        break Status::Ready;
                    }
                },
                Phase::Data(reader) => {
                    let mut content = std::mem::take(&mut self.scratch);
                    content.clear();
                    let st = reader.feed(rest, &mut content);
                    self.take_content(&content, b);
                    self.scratch = content;
                    match st {
                        DataStatus::More(n) => {
                            used += n;
                            break Status::Ready;
                        }
                        DataStatus::End(n) => {
                            used += n;
                            if let Some(st) = self.end_message(out, b, "data") {
                                break st;
                            }
                        }
                        DataStatus::BareLf => {
                            b.note("bare <LF> received", "");
                            b.reset();
                            self.clear_transaction();
                            r(
                                self.s.bare_lf_reject_code,
                                "5.5.2",
                                "Error: bare <LF> received",
                            )
                            .write_to(out);
                            self.phase = Phase::Closed;
                            break Status::Close;
                        }
                    }
                }
                Phase::Bdat {
                    size,
                    remaining,
                    last,
                    discard,
                } => {
                    let chunk_size = *size;
                    let n = rest
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    *remaining -= n as u64;
                    let (done, last, discard) = (*remaining == 0, *last, *discard);
                    if !discard {
                        let mut content = std::mem::take(&mut self.scratch);
                        content.clear();
                        self.chunk.feed(&rest[..n], &mut content);
                        if done && last {
                            self.chunk.finish(&mut content);
                        }
                        self.take_content(&content, b);
                        self.scratch = content;
                    }
                    used += n;
                    if !done {
                        break Status::Ready;
                    }
                    self.phase = Phase::Command;
                    if discard {
                        continue;
                    }
                    if last || self.too_big {
                        if let Some(st) = self.end_message(out, b, "bdat") {
                            break st;
                        }
                    } else {
                        self.count("bdat", true);
                        r(250, "2.0.0", &format!("Ok: {chunk_size} bytes")).write_to(out);
                    }
                }
                Phase::Command => {
                    let Some(i) = memchr::memchr(b'\n', rest) else {
                        if rest.len() > self.s.line_limit {
                            used += rest.len();
                            self.phase = Phase::SkipLine;
                            let st = self.error(out, r(500, "5.5.2", "Error: line too long"));
                            if st != Status::Ready {
                                break st;
                            }
                        }
                        break Status::Ready;
                    };
                    let raw = &rest[..i];
                    let (line, crlf) = match raw.strip_suffix(b"\r") {
                        Some(l) => (l, true),
                        None => (raw, false),
                    };
                    let line = line.to_vec();
                    used += i + 1;
                    let pending = used < input.len();
                    if !crlf && self.s.bare_lf == BareLf::Reject {
                        b.note("bare <LF> received", "");
                        r(
                            self.s.bare_lf_reject_code,
                            "5.5.2",
                            "Error: bare <LF> received",
                        )
                        .write_to(out);
                        self.phase = Phase::Closed;
                        break Status::Close;
                    }
                    let st = if line.len() > self.s.line_limit {
                        self.error(out, r(500, "5.5.2", "Error: line too long"))
                    } else {
                        let next = next_line(&input[used..]);
                        let mut st = self.command(&line, pending, &next, out, b);
                        // As Postfix: once a client has made smtpd_soft_error_limit errors,
                        // every reply is slowed down, not only error replies.
                        if st == Status::Ready
                            && self.errors >= self.s.soft_error_limit
                            && !self.s.error_sleep.is_zero()
                        {
                            st = Status::Sleep(self.s.error_sleep);
                        }
                        if matches!(st, Status::Ready | Status::Sleep(_))
                            && self.errors >= self.s.hard_error_limit
                        {
                            let h = self.s.hostname.clone();
                            Reply::new(421, "4.7.0", format!("{h} Error: too many errors"))
                                .write_to(out);
                            self.phase = Phase::Closed;
                            self.error_limit_hit = true;
                            Status::Close
                        } else {
                            st
                        }
                    };
                    match st {
                        Status::Ready => {}
                        Status::StartTls => {
                            // CVE-2011-0411: nothing sent in plaintext after STARTTLS may
                            // be read as if it came over TLS.
                            if used < input.len() {
                                b.note(
                                    &format!(
                                        "discarding {} bytes of plaintext pipelined after STARTTLS",
                                        input.len() - used
                                    ),
                                    "",
                                );
                            }
                            used = input.len();
                            break st;
                        }
                        st => break st,
                    }
                }
            }
        };
        input.drain(..used.min(input.len()));
        status
    }

    /// Content for the backend, unless the message is already too big.
    fn take_content(&mut self, content: &[u8], b: &mut dyn Backend) {
        if content.is_empty() || self.too_big {
            return;
        }
        self.size += content.len() as u64;
        if self.s.size_limit > 0 && self.size > self.s.size_limit {
            self.too_big = true;
            return;
        }
        b.content(content);
    }

    fn end_message(&mut self, out: &mut Vec<u8>, b: &mut dyn Backend, cmd: &str) -> Option<Status> {
        self.phase = Phase::Command;
        if self.too_big {
            b.reset();
            self.clear_transaction();
            self.count(cmd, false);
            let st = self.error(out, r(552, "5.3.4", "Message size exceeds fixed limit"));
            return (st != Status::Ready).then_some(st);
        }
        self.count(cmd, true);
        match b.end(&self.facts) {
            Some(reply) => {
                let st = self.finish_message(reply, out);
                (st != Status::Ready).then_some(st)
            }
            None => {
                self.phase = Phase::Ending;
                Some(Status::Pending)
            }
        }
    }

    /// The backend's answer to the end of a message.
    pub fn resume(&mut self, reply: Reply, out: &mut Vec<u8>) -> Status {
        if !matches!(self.phase, Phase::Ending) {
            return Status::Ready;
        }
        self.phase = Phase::Command;
        self.finish_message(reply, out)
    }

    fn finish_message(&mut self, reply: Reply, out: &mut Vec<u8>) -> Status {
        self.clear_transaction();
        if reply.is_error() {
            self.error(out, reply)
        } else {
            self.errors = 0;
            self.junk = 0;
            reply.write_to(out);
            Status::Ready
        }
    }

    fn clear_transaction(&mut self) {
        self.mail = None;
        self.rcpts = 0;
        self.rcpt_attempts = 0;
        self.bdat_used = false;
        self.size = 0;
        self.too_big = false;
        self.chunk = ChunkReader::default();
    }

    /// Writes an error reply, counting it; may ask for a pause or the end of the session.
    fn error(&mut self, out: &mut Vec<u8>, reply: Reply) -> Status {
        let sleep = self.errors >= self.s.soft_error_limit;
        self.errors += 1;
        reply.write_to(out);
        if self.errors >= self.s.hard_error_limit {
            let h = self.s.hostname.clone();
            Reply::new(421, "4.7.0", format!("{h} Error: too many errors")).write_to(out);
            self.phase = Phase::Closed;
            self.error_limit_hit = true;
            return Status::Close;
        }
        if sleep && !self.s.error_sleep.is_zero() {
            Status::Sleep(self.s.error_sleep)
        } else {
            Status::Ready
        }
    }

    /// A command outcome: the stats entry, the reply, error accounting.
    fn done(&mut self, name: &str, out: &mut Vec<u8>, result: Result<Reply, Reply>) -> Status {
        match result {
            Ok(reply) => {
                self.count(name, true);
                reply.write_to(out);
                Status::Ready
            }
            Err(reply) => {
                self.count(name, false);
                self.error(out, reply)
            }
        }
    }

    fn command(
        &mut self,
        line: &[u8],
        pending: bool,
        next: &str,
        out: &mut Vec<u8>,
        b: &mut dyn Backend,
    ) -> Status {
        let verb = line
            .split(|&c| c == b' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        self.last_cmd = if matches!(
            verb.as_slice(),
            b"HELO"
                | b"EHLO"
                | b"MAIL"
                | b"RCPT"
                | b"DATA"
                | b"BDAT"
                | b"RSET"
                | b"NOOP"
                | b"QUIT"
                | b"VRFY"
                | b"HELP"
                | b"STARTTLS"
        ) {
            String::from_utf8_lossy(&verb).into_owned()
        } else {
            "UNKNOWN".into()
        };
        if line.contains(&0) {
            self.count("unknown", false);
            return self.error(out, r(500, "5.5.2", "Error: command contains a NUL byte"));
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.count("unknown", false);
            return self.error(out, r(500, "5.5.2", "Error: bad UTF-8 syntax"));
        };
        let cmd = match command::parse(text) {
            Ok(c) => c,
            Err(reply) => {
                let verb = text.split(' ').next().unwrap_or("").to_ascii_lowercase();
                let name = if STATS.contains(&verb.as_str()) {
                    verb
                } else {
                    "unknown".into()
                };
                self.count(&name, false);
                return self.error(out, reply);
            }
        };
        // RFC 2920: without PIPELINING every command waits for its reply; some commands
        // must end a pipelined group.
        let must_be_last = matches!(
            cmd,
            Command::Helo(_) | Command::Ehlo(_) | Command::Data | Command::Noop | Command::Vrfy(_)
        );
        let pipelining = self.facts.esmtp && !self.discarded("pipelining");
        if pending
            && !matches!(cmd, Command::StartTls | Command::Quit)
            && (must_be_last || !pipelining)
        {
            let verb = text.split(' ').next().unwrap_or("").to_ascii_uppercase();
            if self.s.forbid_unauth_pipelining {
                b.note(&format!("improper command pipelining after {verb}"), next);
                b.reset();
                r(554, "5.5.0", "Error: SMTP protocol synchronization").write_to(out);
                self.phase = Phase::Closed;
                return Status::Close;
            }
            self.facts.unauth_pipelining = true;
        }
        let junk = matches!(
            cmd,
            Command::Helo(_) | Command::Ehlo(_) | Command::Rset | Command::Noop | Command::Vrfy(_)
        );
        if junk {
            self.junk += 1;
            if self.junk > self.s.junk_limit {
                self.errors += 1;
            }
        }
        match cmd {
            Command::Helo(name) | Command::Ehlo(name) => {
                let esmtp = text.as_bytes()[..4].eq_ignore_ascii_case(b"EHLO");
                self.hello(name, esmtp, out, b)
            }
            Command::Mail(m) => {
                let res = self.mail(m, b);
                self.done("mail", out, res)
            }
            Command::Rcpt(rc) => {
                let res = self.rcpt(rc, b);
                self.done("rcpt", out, res)
            }
            Command::Data => self.data(out, b),
            Command::Bdat { size, last } => self.bdat(size, last, out, b),
            Command::Rset => {
                b.reset();
                self.clear_transaction();
                self.done("rset", out, Ok(r(250, "2.0.0", "Ok")))
            }
            Command::Noop => self.done("noop", out, Ok(r(250, "2.0.0", "Ok"))),
            Command::Quit => {
                self.count("quit", true);
                r(221, "2.0.0", "Bye").write_to(out);
                b.reset();
                self.phase = Phase::Closed;
                Status::Close
            }
            Command::Vrfy(addr) => {
                if self.s.disable_vrfy {
                    return self.done(
                        "vrfy",
                        out,
                        Err(r(502, "5.5.1", "VRFY command is disabled")),
                    );
                }
                let addr = addr
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string();
                let reply = b.vrfy(&self.facts, &addr);
                let res = if reply.is_error() {
                    Err(reply)
                } else {
                    Ok(reply)
                };
                self.done("vrfy", out, res)
            }
            Command::Help => {
                self.count("unknown", true);
                r(
                    214,
                    "2.0.0",
                    "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT STARTTLS",
                )
                .write_to(out);
                Status::Ready
            }
            Command::StartTls => self.starttls(out),
            Command::NotOffered(v) => {
                let name = v.to_ascii_lowercase();
                let name = if STATS.contains(&name.as_str()) {
                    name
                } else {
                    "unknown".into()
                };
                self.done(
                    &name,
                    out,
                    Err(r(502, "5.5.1", "Error: command not implemented")),
                )
            }
            Command::Unknown(_) => self.done(
                "unknown",
                out,
                Err(r(502, "5.5.2", "Error: command not recognized")),
            ),
        }
    }

    fn discarded(&self, keyword: &str) -> bool {
        self.s.discard_ehlo.iter().any(|k| k == keyword)
    }

    fn hello(
        &mut self,
        name: String,
        esmtp: bool,
        out: &mut Vec<u8>,
        b: &mut dyn Backend,
    ) -> Status {
        let cmd = if esmtp { "ehlo" } else { "helo" };
        // A new greeting resets the transaction (RFC 5321 4.1.4).
        b.reset();
        self.clear_transaction();
        let before = self.facts.helo.replace(name);
        self.facts.esmtp = esmtp;
        if let Err(reply) = b.helo(&self.facts) {
            self.facts.helo = before;
            return self.done(cmd, out, Err(reply));
        }
        let h = self.s.hostname.clone();
        if !esmtp {
            return self.done(cmd, out, Ok(Reply::plain(250, h)));
        }
        let mut lines = vec![h];
        let size = if self.s.size_limit > 0 {
            format!("SIZE {}", self.s.size_limit)
        } else {
            "SIZE".to_string()
        };
        let offers: [(&str, String, bool); 10] = [
            ("pipelining", "PIPELINING".into(), true),
            ("size", size, true),
            ("vrfy", "VRFY".into(), !self.s.disable_vrfy),
            ("starttls", "STARTTLS".into(), self.s.starttls),
            ("enhancedstatuscodes", "ENHANCEDSTATUSCODES".into(), true),
            ("8bitmime", "8BITMIME".into(), true),
            ("dsn", "DSN".into(), true),
            ("smtputf8", "SMTPUTF8".into(), self.s.smtputf8),
            ("chunking", "CHUNKING".into(), true),
            ("", String::new(), false),
        ];
        for (key, text, on) in offers {
            if on && !self.discarded(key) {
                lines.push(text);
            }
        }
        self.count(cmd, true);
        Reply {
            code: 250,
            dsn: String::new(),
            lines,
        }
        .write_to(out);
        Status::Ready
    }

    fn tls_gate(&self) -> Result<(), Reply> {
        if self.s.tls_required && !self.facts.tls {
            return Err(r(530, "5.7.0", "Must issue a STARTTLS command first"));
        }
        Ok(())
    }

    fn mail(&mut self, m: MailFrom, b: &mut dyn Backend) -> Result<Reply, Reply> {
        self.tls_gate()?;
        if self.s.helo_required && self.facts.helo.is_none() {
            return Err(r(503, "5.5.1", "Error: send HELO/EHLO first"));
        }
        if self.mail.is_some() {
            return Err(r(503, "5.5.1", "Error: nested MAIL command"));
        }
        if m.smtputf8 && !self.s.smtputf8 {
            return Err(r(555, "5.5.4", "Unsupported option: SMTPUTF8"));
        }
        if !m.smtputf8 && !m.address.is_ascii() {
            return Err(r(
                553,
                "5.6.7",
                "Must declare SMTPUTF8 to send unicode address",
            ));
        }
        if self.s.size_limit > 0 && m.size.is_some_and(|s| s > self.s.size_limit) {
            return Err(r(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        b.mail(&self.facts, &m)?;
        self.mail = Some(m);
        Ok(r(250, "2.1.0", "Ok"))
    }

    fn rcpt(&mut self, rc: RcptTo, b: &mut dyn Backend) -> Result<Reply, Reply> {
        self.tls_gate()?;
        let Some(m) = &self.mail else {
            return Err(r(503, "5.5.1", "Error: need MAIL command"));
        };
        self.rcpt_attempts += 1;
        if self.rcpts >= self.s.recipient_limit {
            return Err(r(452, "4.5.3", "Error: too many recipients"));
        }
        if !m.smtputf8 && !rc.address.is_ascii() {
            return Err(r(
                553,
                "5.6.7",
                "Must declare SMTPUTF8 to send unicode address",
            ));
        }
        b.rcpt(&self.facts, m, &rc)?;
        self.rcpts += 1;
        Ok(r(250, "2.1.5", "Ok"))
    }

    /// Checks shared by DATA and the first BDAT.
    fn may_send_content(&self) -> Result<(), Reply> {
        self.tls_gate()?;
        if self.mail.is_none() {
            return Err(r(503, "5.5.1", "Error: need RCPT command"));
        }
        if self.rcpts == 0 {
            return Err(r(554, "5.5.1", "Error: no valid recipients"));
        }
        Ok(())
    }

    fn data(&mut self, out: &mut Vec<u8>, b: &mut dyn Backend) -> Status {
        if let Err(reply) = self.may_send_content() {
            return self.done("data", out, Err(reply));
        }
        if self.bdat_used {
            return self.done("data", out, Err(r(503, "5.5.1", "Error: DATA after BDAT")));
        }
        let m = self.mail.clone().unwrap_or_default();
        if let Err(reply) = b.data(&self.facts, &m) {
            return self.done("data", out, Err(reply));
        }
        self.size = 0;
        self.too_big = false;
        Reply::plain(354, "End data with <CR><LF>.<CR><LF>").write_to(out);
        self.phase = Phase::Data(DataReader::new(self.s.bare_lf));
        Status::Ready
    }

    fn bdat(&mut self, size: u64, last: bool, out: &mut Vec<u8>, b: &mut dyn Backend) -> Status {
        let refuse = if self.bdat_used {
            None
        } else {
            match self.may_send_content() {
                Err(reply) => Some(reply),
                Ok(()) => {
                    let m = self.mail.clone().unwrap_or_default();
                    match b.data(&self.facts, &m) {
                        Err(reply) => Some(reply),
                        Ok(()) => {
                            self.bdat_used = true;
                            self.size = 0;
                            self.too_big = false;
                            None
                        }
                    }
                }
            }
        };
        // The chunk is read in any case (RFC 3030 2): it is data, never commands.
        self.phase = Phase::Bdat {
            size,
            remaining: size,
            last,
            discard: refuse.is_some(),
        };
        match refuse {
            Some(reply) => {
                if self.mail.is_some() && self.rcpts > 0 {
                    b.reset();
                    self.clear_transaction();
                }
                self.done("bdat", out, Err(reply))
            }
            None => Status::Ready,
        }
    }

    fn starttls(&mut self, out: &mut Vec<u8>) -> Status {
        if self.facts.tls {
            return self.done(
                "starttls",
                out,
                Err(r(554, "5.5.1", "Error: TLS already active")),
            );
        }
        if !self.s.starttls {
            return self.done(
                "starttls",
                out,
                Err(r(502, "5.5.1", "Error: command not implemented")),
            );
        }
        self.count("starttls", true);
        r(220, "2.0.0", "Ready to start TLS").write_to(out);
        Status::StartTls
    }
}

/// The next input line, for the pipelining log line (printable, at most 100 characters).
fn next_line(rest: &[u8]) -> String {
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len()).min(100);
    String::from_utf8_lossy(&rest[..end])
        .trim_end_matches('\r')
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
