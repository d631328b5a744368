//! One SMTP session with one server: connect, greeting, EHLO (HELO fallback), STARTTLS,
//! then mail transactions (pipelined when the server allows), RSET between them, QUIT.
//!
//! Results use Postfix's texts: `host H[A] said: REPLY (in reply to RCPT TO command)`,
//! `lost connection with H[A] while sending message body`, `conversation with H[A] timed
//! out while ...`, `connect to H[A]:P: Connection refused`.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use posthorn_proto::delivery::{Outcome, Status};
use posthorn_smtp_proto::command::xtext_encode;

use crate::conn::{Conn, IoFail, error_text};
use crate::content::{DataEncoder, downgrade_8bit};
use crate::reply::ServerReply;
use crate::route::Candidate;
use crate::settings::{SmtpSettings, TlsLevel};
use crate::tls::{TlsClient, describe};

/// Content is written to the server in pieces of about this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// The mail to send in one transaction.
pub trait Content {
    /// Size in bytes as stored (LF line ends), announced with SIZE=.
    fn size(&self) -> u64;
    /// Whether any byte has the high bit set.
    fn eight_bit(&self) -> bool;
    /// A fresh reader of the content (headers and body, LF line ends).
    fn reader(&self) -> Box<dyn Read + '_>;
}

/// Content held in memory.
#[derive(Clone, Debug)]
pub struct MemoryContent {
    data: Vec<u8>,
    eight_bit: bool,
}

impl MemoryContent {
    /// Wraps `data` (LF line ends).
    pub fn new(data: Vec<u8>) -> MemoryContent {
        let eight_bit = data.iter().any(|b| *b >= 0x80);
        MemoryContent { data, eight_bit }
    }
}

impl Content for MemoryContent {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn eight_bit(&self) -> bool {
        self.eight_bit
    }
    fn reader(&self) -> Box<dyn Read + '_> {
        Box::new(self.data.as_slice())
    }
}

/// One recipient of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Its queue-file record offset (identifies it in the status).
    pub offset: u64,
    /// The address.
    pub address: String,
    /// DSN NOTIFY (comma list), if given.
    pub notify: Option<String>,
    /// DSN ORCPT (`type;address`, decoded), if given.
    pub orcpt: Option<String>,
}

/// What one delivery request sends.
pub struct Request<'a> {
    /// Queue ID (for logs).
    pub queue_id: &'a str,
    /// Next hop from qmgr (`domain`, `domain:port`, `[host]`, `[host]:port`).
    pub nexthop: &'a str,
    /// Envelope sender ("" = null sender).
    pub sender: &'a str,
    /// DSN ENVID.
    pub envid: Option<&'a str>,
    /// DSN RET (`FULL` or `HDRS`).
    pub ret: Option<&'a str>,
    /// Whether the message needs SMTPUTF8.
    pub smtputf8: bool,
    /// The recipients.
    pub rcpts: &'a [Recipient],
    /// The content.
    pub content: &'a dyn Content,
}

/// What the server announced in its EHLO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// EHLO was accepted (else HELO).
    pub esmtp: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// SIZE, with its limit (0: none announced).
    pub size: Option<u64>,
    /// 8BITMIME.
    pub eightbitmime: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// DSN.
    pub dsn: bool,
    /// STARTTLS.
    pub starttls: bool,
}

impl Features {
    /// Reads the keywords of an EHLO reply, ignoring those in `discard` (lowercase).
    pub fn from_ehlo(reply: &ServerReply, discard: &[String]) -> Features {
        let mut f = Features {
            esmtp: true,
            ..Features::default()
        };
        for text in reply.line_texts().skip(1) {
            let mut words = text.split_whitespace();
            let Some(kw) = words.next() else { continue };
            let kw = kw.to_ascii_lowercase();
            if discard.contains(&kw) {
                continue;
            }
            match kw.as_str() {
                "pipelining" => f.pipelining = true,
                "size" => f.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
                "8bitmime" => f.eightbitmime = true,
                "smtputf8" => f.smtputf8 = true,
                "dsn" => f.dsn = true,
                "starttls" => f.starttls = true,
                _ => {}
            }
        }
        f
    }
}

/// Why a session could not be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionError {
    /// Whether the mail must bounce rather than be deferred (or tried elsewhere).
    pub permanent: bool,
    /// Enhanced status code.
    pub dsn: String,
    /// Postfix's text.
    pub reason: String,
    /// Whether the server answered (counts against `smtp_mx_session_limit`).
    pub reached_smtp: bool,
    /// Opportunistic TLS failed: the same server may be tried again without TLS.
    pub retry_plaintext: bool,
}

/// The phases, for texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Greeting,
    Ehlo,
    Helo,
    Starttls,
    Mail,
    Rcpt,
    Data,
    Body,
    Dot,
}

impl Phase {
    /// `... while {doing}`.
    fn doing(self) -> &'static str {
        match self {
            Phase::Greeting => "receiving the initial server greeting",
            Phase::Ehlo => "performing the EHLO handshake",
            Phase::Helo => "performing the HELO handshake",
            Phase::Starttls => "receiving the STARTTLS response",
            Phase::Mail => "sending MAIL FROM",
            Phase::Rcpt => "sending RCPT TO",
            Phase::Data => "sending DATA command",
            Phase::Body => "sending message body",
            Phase::Dot => "sending end of data -- message may be sent more than once",
        }
    }

    /// `(in reply to {request})`.
    fn request(self) -> &'static str {
        match self {
            Phase::Greeting => "initial greeting",
            Phase::Ehlo => "EHLO command",
            Phase::Helo => "HELO command",
            Phase::Starttls => "STARTTLS command",
            Phase::Mail => "MAIL FROM command",
            Phase::Rcpt => "RCPT TO command",
            Phase::Data => "DATA command",
            Phase::Body | Phase::Dot => "end of DATA command",
        }
    }
}

/// An open session, ready for a mail transaction.
#[derive(Debug)]
pub struct Session {
    conn: Conn,
    /// The server.
    pub server: Candidate,
    /// Its EHLO features (after TLS: the second EHLO's).
    pub features: Features,
    /// The TLS description, when TLS is on.
    pub tls: Option<String>,
    /// When the connection was made.
    pub created: Instant,
    /// Transactions started on it.
    pub transactions: u32,
}

fn io_reason(f: &IoFail, namaddr: &str, phase: Phase) -> String {
    match f {
        IoFail::Timeout => format!(
            "conversation with {namaddr} timed out while {}",
            phase.doing()
        ),
        IoFail::Lost(_) => format!("lost connection with {namaddr} while {}", phase.doing()),
        IoFail::Protocol(e) => {
            format!("protocol error from {namaddr} while {}: {e}", phase.doing())
        }
    }
}

fn said(namaddr: &str, r: &ServerReply, phase: Phase) -> String {
    format!(
        "host {namaddr} said: {} (in reply to {})",
        r.text(),
        phase.request()
    )
}

impl Session {
    /// Connects to `server` and gets it ready for mail: greeting, EHLO/HELO, and TLS as
    /// `smtp_tls_security_level` says (`use_tls = false` skips opportunistic TLS, for the
    /// retry after a failed handshake). `nexthop` is the destination's domain (for the
    /// `secure` level's name).
    pub fn open(
        server: &Candidate,
        s: &SmtpSettings,
        tls: Option<&TlsClient>,
        nexthop: &str,
        use_tls: bool,
    ) -> Result<Session, SessionError> {
        let na = server.namaddr();
        let soft = |dsn: &str, reason: String, reached: bool| SessionError {
            permanent: false,
            dsn: dsn.to_string(),
            reason,
            reached_smtp: reached,
            retry_plaintext: false,
        };
        let t = &s.timeouts;
        let addr = SocketAddr::new(server.addr, server.port);
        let mut conn = Conn::connect(addr, t.connect).map_err(|e| {
            let why = format!("connect to {}: {}", server.relay(), error_text(&e));
            // Postfix logs each failed server before it tries the next one.
            log::info!("{why}");
            soft("4.4.1", why, false)
        })?;
        let mut tls_desc = None;
        if s.tls_wrappermode {
            // Wrapper mode has no plaintext to fall back to.
            let (c, desc) = handshake(conn, server, s, tls, nexthop).map_err(|mut e| {
                e.retry_plaintext = false;
                e
            })?;
            conn = c;
            tls_desc = Some(desc);
        }
        let greeting = conn
            .read_reply(t.helo)
            .map_err(|f| soft("4.4.2", io_reason(&f, &na, Phase::Greeting), false))?;
        if !greeting.is_positive() {
            let reply = if greeting.is_permanent() && s.skip_5xx_greeting {
                greeting.softened()
            } else {
                greeting
            };
            return Err(SessionError {
                permanent: reply.is_permanent(),
                dsn: reply.dsn(),
                reason: format!("host {na} refused to talk to me: {}", reply.text()),
                reached_smtp: true,
                retry_plaintext: false,
            });
        }
        let mut features = hello(&mut conn, s, &na, nexthop)?;
        if tls_desc.is_none() && s.tls_level != TlsLevel::None {
            if !features.starttls || !use_tls {
                if s.tls_level.required() {
                    return Err(soft(
                        "4.7.4",
                        format!("TLS is required, but was not offered by host {na}"),
                        true,
                    ));
                }
            } else {
                conn.send(b"STARTTLS\r\n", t.starttls)
                    .map_err(|f| soft("4.4.2", io_reason(&f, &na, Phase::Starttls), true))?;
                let r = conn
                    .read_reply(t.starttls)
                    .map_err(|f| soft("4.4.2", io_reason(&f, &na, Phase::Starttls), true))?;
                if r.is_positive() {
                    let (c, desc) = handshake(conn, server, s, tls, nexthop)?;
                    conn = c;
                    tls_desc = Some(desc);
                    features = hello(&mut conn, s, &na, nexthop)?;
                } else if s.tls_level.required() {
                    return Err(soft(
                        "4.7.5",
                        format!(
                            "TLS is required, but host {na} refused to start TLS: {}",
                            r.text()
                        ),
                        true,
                    ));
                } else {
                    log::info!("host {na} refused to start TLS: {}", r.text());
                }
            }
        }
        Ok(Session {
            conn,
            server: server.clone(),
            features,
            tls: tls_desc,
            created: Instant::now(),
            transactions: 0,
        })
    }

    /// RSET before reusing the session; true when the server answered 2xx.
    pub fn reset(&mut self, timeout: Duration) -> bool {
        if self.conn.has_buffered() {
            return false;
        }
        self.conn.send(b"RSET\r\n", timeout).is_ok()
            && self.conn.read_reply(timeout).is_ok_and(|r| r.is_positive())
    }

    /// Closes without QUIT (after an I/O error).
    pub fn abort(self) {
        self.conn.close();
    }

    /// Says QUIT (waiting at most `timeout` for the reply) and closes.
    pub fn quit(mut self, timeout: Duration) {
        if self.conn.send(b"QUIT\r\n", timeout).is_ok() {
            let _ = self.conn.read_reply(timeout);
        }
        self.conn.close();
    }

    /// Runs one mail transaction for `req.rcpts[i]` for each `i` in `which`. Returns one
    /// status per recipient (with its index) and whether the session can be used again.
    pub fn transaction(
        &mut self,
        s: &SmtpSettings,
        req: &Request<'_>,
        which: &[usize],
    ) -> (Vec<(usize, Status)>, bool) {
        self.transactions += 1;
        let na = self.server.namaddr();
        // Postfix's `conn_use=N` after `relay=` when a connection carries its Nth message;
        // the delivery line's relay text is where qmgr prints it.
        let relay = if self.transactions > 1 {
            format!("{}, conn_use={}", self.server.relay(), self.transactions)
        } else {
            self.server.relay()
        };
        let status = |i: usize, outcome: Outcome, dsn: String, reason: String| {
            (
                i,
                Status {
                    offset: req.rcpts[i].offset,
                    outcome,
                    dsn,
                    relay: relay.clone(),
                    reason,
                },
            )
        };
        let all = |outcome: Outcome, dsn: &str, reason: &str, v: &[usize]| {
            v.iter()
                .map(|&i| status(i, outcome, dsn.to_string(), reason.to_string()))
                .collect::<Vec<_>>()
        };
        let from_reply = |i: usize, r: &ServerReply, phase: Phase| {
            let outcome = if r.is_temporary() {
                Outcome::Deferred
            } else {
                Outcome::Bounced
            };
            status(i, outcome, r.dsn(), said(&na, r, phase))
        };
        let f = &self.features;
        if req.smtputf8 && !f.smtputf8 {
            let reason = format!("SMTPUTF8 is required, but was not offered by host {na}");
            return (all(Outcome::Bounced, "5.6.7", &reason, which), true);
        }
        let size = req.content.size();
        if let Some(limit) = f.size
            && limit > 0
            && size > limit
        {
            let reason = format!("message size {size} exceeds size limit {limit} of server {na}");
            return (all(Outcome::Bounced, "5.3.4", &reason, which), true);
        }
        let eight = req.content.eight_bit();
        // RFC 6152: no 8-bit content to a server without 8BITMIME, where it can be helped.
        let mut downgraded = None;
        if eight && !f.eightbitmime {
            let mut all_content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            if req.content.reader().read_to_end(&mut all_content).is_ok() {
                downgraded = downgrade_8bit(&all_content).map(MemoryContent::new);
            }
            if downgraded.is_none() {
                log::info!(
                    "{}: host {na} does not announce 8BITMIME: sending 8-bit content unchanged",
                    req.queue_id
                );
            }
        }
        let mail = mail_command(req, f, size, eight);
        let rcpts: Vec<String> = which
            .iter()
            .map(|&i| rcpt_command(&req.rcpts[i], f))
            .collect();
        let t = &s.timeouts;
        let io_all = |fail: &IoFail, phase: Phase, v: &[usize]| {
            all(Outcome::Deferred, "4.4.2", &io_reason(fail, &na, phase), v)
        };

        // MAIL, RCPT and DATA: one write when pipelining, else one at a time.
        let pipelining = f.pipelining;
        if pipelining {
            let mut batch = mail.clone();
            for r in &rcpts {
                batch.push_str(r);
            }
            batch.push_str("DATA\r\n");
            if let Err(e) = self.conn.send(batch.as_bytes(), t.mail) {
                return (io_all(&e, Phase::Mail, which), false);
            }
        } else if let Err(e) = self.conn.send(mail.as_bytes(), t.mail) {
            return (io_all(&e, Phase::Mail, which), false);
        }
        let mail_reply = match self.conn.read_reply(t.mail) {
            Ok(r) => r,
            Err(e) => return (io_all(&e, Phase::Mail, which), false),
        };
        let mut out = Vec::with_capacity(which.len());
        let mut accepted = Vec::new();
        if !mail_reply.is_positive() {
            out.extend(
                which
                    .iter()
                    .map(|&i| from_reply(i, &mail_reply, Phase::Mail)),
            );
            if !pipelining {
                return (out, true);
            }
        }
        for (k, &i) in which.iter().enumerate() {
            if !pipelining && let Err(e) = self.conn.send(rcpts[k].as_bytes(), t.rcpt) {
                out.extend(io_all(&e, Phase::Rcpt, &which[k..]));
                out.extend(io_all(&e, Phase::Rcpt, &accepted));
                return (out, false);
            }
            let r = match self.conn.read_reply(t.rcpt) {
                Ok(r) => r,
                Err(e) => {
                    if mail_reply.is_positive() {
                        out.extend(io_all(&e, Phase::Rcpt, &which[k..]));
                        out.extend(io_all(&e, Phase::Rcpt, &accepted));
                    }
                    return (out, false);
                }
            };
            if !mail_reply.is_positive() {
                continue;
            }
            if r.is_positive() {
                accepted.push(i);
            } else {
                out.push(from_reply(i, &r, Phase::Rcpt));
            }
        }
        if !pipelining {
            if accepted.is_empty() {
                return (out, true);
            }
            if let Err(e) = self.conn.send(b"DATA\r\n", t.data_init) {
                out.extend(io_all(&e, Phase::Data, &accepted));
                return (out, false);
            }
        }
        let data_reply = match self.conn.read_reply(t.data_init) {
            Ok(r) => r,
            Err(e) => {
                out.extend(io_all(&e, Phase::Data, &accepted));
                return (out, false);
            }
        };
        if data_reply.code != 354 {
            out.extend(
                accepted
                    .iter()
                    .map(|&i| from_reply(i, &data_reply, Phase::Data)),
            );
            return (out, true);
        }
        if accepted.is_empty() {
            // A pipelining server that said 354 without a recipient: end the empty
            // message; whatever it answers, nothing was accepted.
            let ok = self.conn.send(b".\r\n", t.data_xfer).is_ok()
                && self.conn.read_reply(t.data_done).is_ok();
            return (out, ok);
        }

        // The content.
        let mut enc = DataEncoder::new(s.line_length_limit);
        let mut reader = match &downgraded {
            Some(d) => d.reader(),
            None => req.content.reader(),
        };
        let mut chunk = vec![0u8; WRITE_CHUNK];
        let mut wire = Vec::with_capacity(WRITE_CHUNK + WRITE_CHUNK / 8);
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("{}: reading the message content: {e}", req.queue_id);
                    // Never let a truncated message look complete: drop the connection.
                    let reason = format!("error reading message content: {e}");
                    out.extend(all(Outcome::Deferred, "4.3.0", &reason, &accepted));
                    return (out, false);
                }
            };
            if n == 0 {
                enc.finish(&mut wire);
            } else {
                enc.encode(&chunk[..n], &mut wire);
            }
            if n == 0 || wire.len() >= WRITE_CHUNK {
                if let Err(e) = self.conn.send(&wire, t.data_xfer) {
                    out.extend(io_all(&e, Phase::Body, &accepted));
                    return (out, false);
                }
                wire.clear();
            }
            if n == 0 {
                break;
            }
        }
        let end = match self.conn.read_reply(t.data_done) {
            Ok(r) => r,
            Err(e) => {
                out.extend(io_all(&e, Phase::Dot, &accepted));
                return (out, false);
            }
        };
        if end.is_positive() {
            out.extend(
                accepted
                    .iter()
                    .map(|&i| status(i, Outcome::Sent, end.dsn(), end.text())),
            );
        } else {
            out.extend(accepted.iter().map(|&i| from_reply(i, &end, Phase::Dot)));
        }
        (out, true)
    }
}

/// EHLO (or HELO when EHLO is refused with 5xx, or when `smtp_never_send_ehlo`). A
/// server that greets with our own name is ourselves: the mail would loop (Postfix's
/// `mail for DEST loops back to myself`, 5.4.6).
fn hello(
    conn: &mut Conn,
    s: &SmtpSettings,
    na: &str,
    nexthop: &str,
) -> Result<Features, SessionError> {
    let t = s.timeouts.helo;
    let fail = |f: IoFail, phase: Phase| SessionError {
        permanent: false,
        dsn: "4.4.2".into(),
        reason: io_reason(&f, na, phase),
        reached_smtp: true,
        retry_plaintext: false,
    };
    let refused = |r: &ServerReply, phase: Phase| SessionError {
        permanent: r.is_permanent(),
        dsn: r.dsn(),
        reason: said(na, r, phase),
        reached_smtp: true,
        retry_plaintext: false,
    };
    if !s.never_send_ehlo {
        conn.send(format!("EHLO {}\r\n", s.helo_name).as_bytes(), t)
            .map_err(|f| fail(f, Phase::Ehlo))?;
        let r = conn.read_reply(t).map_err(|f| fail(f, Phase::Ehlo))?;
        if r.is_positive() {
            let name = r
                .line_texts()
                .next()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("");
            if !name.is_empty() && name.eq_ignore_ascii_case(&s.helo_name) {
                return Err(SessionError {
                    permanent: true,
                    dsn: "5.4.6".into(),
                    reason: format!("mail for {nexthop} loops back to myself"),
                    reached_smtp: true,
                    retry_plaintext: false,
                });
            }
            return Ok(Features::from_ehlo(&r, &s.discard_ehlo_keywords));
        }
        if r.is_temporary() {
            return Err(refused(&r, Phase::Ehlo));
        }
    }
    conn.send(format!("HELO {}\r\n", s.helo_name).as_bytes(), t)
        .map_err(|f| fail(f, Phase::Helo))?;
    let r = conn.read_reply(t).map_err(|f| fail(f, Phase::Helo))?;
    if r.is_positive() {
        Ok(Features::default())
    } else {
        Err(refused(&r, Phase::Helo))
    }
}

/// The TLS handshake and its log line.
fn handshake(
    conn: Conn,
    server: &Candidate,
    s: &SmtpSettings,
    tls: Option<&TlsClient>,
    nexthop: &str,
) -> Result<(Conn, String), SessionError> {
    let failure = |dsn: &str, reason: String| SessionError {
        permanent: false,
        dsn: dsn.into(),
        reason,
        reached_smtp: true,
        retry_plaintext: !s.tls_level.required(),
    };
    let Some(tls) = tls else {
        return Err(failure(
            "4.7.5",
            "TLS is required, but the TLS client is not configured (see earlier warning)".into(),
        ));
    };
    let name = TlsClient::server_name(s, &server.name, nexthop).map_err(|e| failure("4.7.5", e))?;
    let conn = conn
        .start_tls(tls.config(), name.clone(), s.timeouts.starttls)
        .map_err(|e| {
            log::warn!("TLS handshake with {} failed: {e}", server.relay());
            let why = if e.contains("certificate") || e.contains("Certificate") {
                "Server certificate not verified"
            } else {
                "Cannot start TLS: handshake failure"
            };
            failure("4.7.5", format!("{why} ({}: {e})", server.namaddr()))
        })?;
    let Some(c) = conn.tls() else {
        // start_tls returns a TLS connection on success.
        return Err(failure("4.7.5", "TLS did not start".into()));
    };
    let trust = tls.trust(c, &name);
    let desc = describe(c);
    log::info!(
        "{} TLS connection established to {}: {desc}",
        trust.word(),
        server.relay()
    );
    Ok((conn, desc))
}

/// `MAIL FROM:<sender>` with the parameters the server supports.
fn mail_command(req: &Request<'_>, f: &Features, size: u64, eight: bool) -> String {
    let mut c = format!("MAIL FROM:<{}>", req.sender);
    if f.size.is_some() {
        c.push_str(&format!(" SIZE={size}"));
    }
    if eight && f.eightbitmime {
        c.push_str(" BODY=8BITMIME");
    }
    if req.smtputf8 && f.smtputf8 {
        c.push_str(" SMTPUTF8");
    }
    if f.dsn {
        if let Some(ret) = req.ret {
            c.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = req.envid {
            c.push_str(&format!(" ENVID={}", xtext_encode(envid)));
        }
    }
    c.push_str("\r\n");
    c
}

/// `RCPT TO:<address>` with NOTIFY and ORCPT when the server supports DSN.
fn rcpt_command(r: &Recipient, f: &Features) -> String {
    let mut c = format!("RCPT TO:<{}>", r.address);
    if f.dsn {
        if let Some(n) = &r.notify {
            c.push_str(&format!(" NOTIFY={n}"));
        }
        if let Some(o) = &r.orcpt {
            let (kind, addr) = o.split_once(';').unwrap_or(("rfc822", o));
            c.push_str(&format!(" ORCPT={kind};{}", xtext_encode(addr)));
        }
    }
    c.push_str("\r\n");
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::parse_all;

    #[test]
    fn ehlo_features() {
        let r = parse_all(
            b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-DSN\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n",
        )
        .unwrap()
        .remove(0);
        let f = Features::from_ehlo(&r, &[]);
        assert!(f.esmtp && f.pipelining && f.eightbitmime && f.dsn && f.starttls && f.smtputf8);
        assert_eq!(f.size, Some(10240000));
        let f = Features::from_ehlo(&r, &["pipelining".into(), "starttls".into()]);
        assert!(!f.pipelining && !f.starttls);
    }

    #[test]
    fn commands() {
        let content = MemoryContent::new(b"x\n".to_vec());
        let rcpts = [Recipient {
            offset: 1,
            address: "u@d.test".into(),
            notify: Some("SUCCESS,FAILURE".into()),
            orcpt: Some("rfc822;u+x@d.test".into()),
        }];
        let req = Request {
            queue_id: "Q",
            nexthop: "d.test",
            sender: "s@e.test",
            envid: Some("id 1"),
            ret: Some("HDRS"),
            smtputf8: false,
            rcpts: &rcpts,
            content: &content,
        };
        let all = Features {
            esmtp: true,
            size: Some(0),
            dsn: true,
            eightbitmime: true,
            ..Features::default()
        };
        assert_eq!(
            mail_command(&req, &all, 2, true),
            "MAIL FROM:<s@e.test> SIZE=2 BODY=8BITMIME RET=HDRS ENVID=id+201\r\n"
        );
        assert_eq!(
            rcpt_command(&rcpts[0], &all),
            "RCPT TO:<u@d.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+2Bx@d.test\r\n"
        );
        let none = Features::default();
        assert_eq!(
            mail_command(&req, &none, 2, true),
            "MAIL FROM:<s@e.test>\r\n"
        );
        assert_eq!(rcpt_command(&rcpts[0], &none), "RCPT TO:<u@d.test>\r\n");
    }
}
