//! smtpd - the posthorn SMTP server
//!
//! # Synopsis
//! `smtpd` (started by master; `smtp inet n - n - - smtpd` in master.cf)
//!
//! # Description
//! smtpd receives mail over SMTP (RFC 5321) with the ESMTP extensions PIPELINING, SIZE,
//! 8BITMIME, ENHANCEDSTATUSCODES, DSN, SMTPUTF8, CHUNKING (BDAT) and STARTTLS. One process
//! serves many connections on one event loop (mio); master may start more processes, up to
//! the service's maxproc, and they share the listening socket. A process reports itself busy
//! to master when it holds `smtpd_process_connection_limit` connections; beyond that it
//! answers `421 4.3.2` and closes.
//!
//! Each message is streamed to cleanup while it arrives (the queue file is created at the
//! first accepted recipient, whose ID smtpd logs as `ID: client=...` and writes into its
//! Received: header). The reply to the end of data, `250 2.0.0 Ok: queued as ID`, is sent
//! only after cleanup reports the queue file durable; any cleanup failure is a 4xx reply.
//!
//! Protocol rules (posthorn-smtp-proto): only `<CRLF>.<CRLF>` ends DATA; bare LF follows
//! `smtpd_forbid_bare_newline` (normalize, yes/reject, no) except for clients in
//! `smtpd_forbid_bare_newline_exclusions`; pipelining before EHLO or after a command that
//! must end a pipeline group gets `554 5.5.0 Error: SMTP protocol synchronization` and a
//! disconnect (`smtpd_forbid_unauth_pipelining`); plaintext pipelined after STARTTLS is
//! discarded; clients that talk before the greeting are refused.
//!
//! Policy (posthorn-policy): `smtpd_client_restrictions`, `smtpd_helo_restrictions`,
//! `smtpd_sender_restrictions`, `smtpd_relay_restrictions`, `smtpd_recipient_restrictions`,
//! `smtpd_data_restrictions`, `smtpd_end_of_data_restrictions`, with Postfix's names and
//! semantics. A configuration error in them answers `451 4.3.5 Server configuration error`
//! instead of opening a relay.
//!
//! # Inputs
//! TCP connections from master's `inet` listeners; optionally a PROXY protocol v1/v2 header
//! first (`smtpd_upstream_proxy_protocol = haproxy`).
//!
//! # Outputs
//! Queue files through cleanup (`public/cleanup`), log lines.
//!
//! # Security
//! Runs as `mail_owner`, optionally chrooted; trusts nothing the client sends: every buffer
//! is bounded (commands, unprocessed input, replies the client does not read, content
//! waiting for cleanup), every phase has a deadline (`smtpd_timeout`, with
//! `smtpd_min_data_rate` during content), and errors are counted and limited.
//!
//! # Standards
//! RFC 5321, 1870 (SIZE), 2920 (PIPELINING), 3030 (CHUNKING), 3207 (STARTTLS), 3461-3464
//! (DSN), 3463 (enhanced codes), 6152 (8BITMIME), 6531 (SMTPUTF8); HAProxy PROXY protocol.
//!
//! # Diagnostics
//! Postfix's lines: `connect from host[addr]`, `ID: client=host[addr]`,
//! `NOQUEUE: reject: RCPT from host[addr]: 554 5.7.1 <...>: Relay access denied; from=<...>
//! to=<...> proto=ESMTP helo=<...>`, `Anonymous TLS connection established from ...`,
//! `timeout after DATA from ...`, `lost connection after DATA from ...`,
//! `disconnect from host[addr] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`.
//! Host names: posthorn does not look up client names in DNS yet; loopback clients are
//! `localhost`, others `unknown` (as Postfix with `smtpd_peername_lookup = no`).
//!
//! # Configuration parameters
//! `myhostname`, `smtpd_banner`, `message_size_limit`, `smtpd_recipient_limit`,
//! `disable_vrfy_command`, `smtpd_helo_required`, `smtputf8_enable`,
//! `smtpd_forbid_unauth_pipelining`, `smtpd_forbid_bare_newline`,
//! `smtpd_forbid_bare_newline_exclusions`, `smtpd_soft_error_limit`,
//! `smtpd_hard_error_limit`, `smtpd_error_sleep_time`, `smtpd_junk_command_limit`,
//! `smtpd_discard_ehlo_keywords`, `line_length_limit`, `smtpd_timeout`,
//! `smtpd_min_data_rate`, `smtpd_greet_wait`, `smtpd_client_connection_count_limit`,
//! `smtpd_client_connection_rate_limit`, `smtpd_client_message_rate_limit`,
//! `smtpd_client_event_limit_exceptions`, `anvil_rate_time_unit`,
//! `smtpd_process_connection_limit`, `smtpd_upstream_proxy_protocol`,
//! `smtpd_upstream_proxy_timeout`, `smtpd_tls_security_level`, `smtpd_tls_wrappermode`,
//! `smtpd_tls_cert_file`, `smtpd_tls_key_file`, `smtpd_tls_chain_files`,
//! `smtpd_tls_received_header`, the restriction lists and their tables, `max_idle`.
//!
//! # See also
//! cleanup(8), master(8), posthorn.conf(5)

mod anvil;
mod backend;
mod cleanup_stream;
mod conn;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use posthorn_config::Config;
use posthorn_policy::{Policy, Stage};
use posthorn_smtp_proto::Reply;
use posthorn_smtp_proto::data::BareLf;
use posthorn_smtp_proto::server::Settings;
use posthorn_smtpd::tls::{Level, Reloader, TlsFiles};

use crate::backend::{Ctx, SmtpBackend};
use crate::conn::{Conn, Drive, End, Phase};

/// First token of connections; client socket = BASE + 2i, its cleanup stream = BASE + 2i + 1.
const BASE: usize = 1 << 16;
/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(200);

/// Settings read once from the configuration.
struct Config2 {
    proto: Settings,
    bare_lf: BareLf,
    timeout: Duration,
    min_rate: u64,
    per_record: bool,
    ipc: Duration,
    greet_wait: Duration,
    proxy: bool,
    proxy_timeout: Duration,
    count_limit: u32,
    rate_limit: u32,
    process_limit: usize,
    wrapper: bool,
    level: Level,
    max_idle: Duration,
}

fn settings(c: &Config) -> Config2 {
    let int = |n: &str| u32::try_from(c.get_int(n).max(0)).unwrap_or(u32::MAX);
    let proto = Settings::from_config(c);
    let bare_lf = proto.bare_lf;
    let level = c
        .get("smtpd_tls_security_level")
        .parse::<Level>()
        .unwrap_or_else(|e| {
            log::warn!("{e}; TLS is off");
            Level::None
        });
    let wrapper = c.get_bool("smtpd_tls_wrappermode");
    let proxy = match c.get("smtpd_upstream_proxy_protocol").as_str() {
        "" => false,
        "haproxy" => true,
        other => {
            log::warn!("smtpd_upstream_proxy_protocol = {other}: unsupported (use haproxy)");
            false
        }
    };
    Config2 {
        proto: Settings {
            tls_required: level == Level::Encrypt,
            ..proto
        },
        bare_lf,
        timeout: c.get_duration("smtpd_timeout").max(Duration::from_secs(1)),
        min_rate: u64::try_from(c.get_int("smtpd_min_data_rate").max(0)).unwrap_or(0),
        per_record: c.get_bool("smtpd_per_record_deadline"),
        ipc: c.get_duration("ipc_timeout").max(Duration::from_secs(1)),
        greet_wait: c.get_duration("smtpd_greet_wait"),
        proxy,
        proxy_timeout: c
            .get_duration("smtpd_upstream_proxy_timeout")
            .max(Duration::from_secs(1)),
        count_limit: int("smtpd_client_connection_count_limit"),
        rate_limit: int("smtpd_client_connection_rate_limit"),
        process_limit: usize::try_from(c.get_int("smtpd_process_connection_limit").max(1))
            .unwrap_or(1000),
        wrapper,
        level,
        max_idle: c.get_duration("max_idle"),
    }
}

/// The event loop's state.
struct Server {
    poll: Poll,
    listeners: Vec<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: VecDeque<usize>,
    live: usize,
    ctx: Rc<Ctx>,
    cfg: Config2,
    tls: Option<Reloader>,
    hostname: Rc<str>,
    busy: bool,
}

fn main() {
    let mut daemon = posthorn_server::start("smtpd");
    let cfg = settings(&daemon.config);
    // One descriptor per client and one per message in flight to cleanup.
    match posthorn_sys::raise_nofile_limit() {
        Ok(n) if n < 2 * cfg.process_limit as u64 + 64 => log::warn!(
            "open file limit {n} is low for smtpd_process_connection_limit = {}",
            cfg.process_limit
        ),
        Ok(_) => {}
        Err(e) => log::warn!("{e}"),
    }
    let poll = Poll::new().unwrap_or_else(|e| posthorn_log::fatal(format!("poll: {e}")));
    let mut listeners = Vec::new();
    for (i, fd) in daemon.take_listeners().into_iter().enumerate() {
        let std_l = std::net::TcpListener::from(fd);
        if let Err(e) = std_l.set_nonblocking(true) {
            posthorn_log::fatal(format!("listener: {e}"));
        }
        let mut l = TcpListener::from_std(std_l);
        if let Err(e) = poll
            .registry()
            .register(&mut l, Token(i), Interest::READABLE)
        {
            posthorn_log::fatal(format!("listener: {e}"));
        }
        listeners.push(l);
    }
    if listeners.is_empty() {
        posthorn_log::fatal("smtpd: no listener from master (this program is started by master)");
    }
    let policy = Policy::from_config(&daemon.config).map_err(|e| {
        log::error!("restriction lists: {e}; all mail is refused with 451 4.3.5");
        e.to_string()
    });
    let tls = if cfg.level != Level::None || cfg.wrapper {
        let files = TlsFiles {
            cert_file: daemon.config.get("smtpd_tls_cert_file"),
            key_file: daemon.config.get("smtpd_tls_key_file"),
            chain_files: daemon.config.get_list("smtpd_tls_chain_files"),
        };
        match Reloader::new(files) {
            Ok(r) => Some(r),
            Err(e) => {
                log::warn!("TLS is not available: {e}");
                None
            }
        }
    } else {
        None
    };
    let registry = poll
        .registry()
        .try_clone()
        .unwrap_or_else(|e| posthorn_log::fatal(format!("poll: {e}")));
    let hostname: Rc<str> = Rc::from(daemon.config.get("myhostname").as_str());
    let ctx = Rc::new(Ctx {
        policy,
        hostname: daemon.config.get("myhostname"),
        tls_received_header: daemon.config.get_bool("smtpd_tls_received_header"),
        layout: daemon.layout.clone(),
        pool: RefCell::new(Vec::new()),
        anvil: RefCell::new(anvil::Anvil::new(
            daemon.config.get_duration("anvil_rate_time_unit"),
        )),
        message_rate_limit: u32::try_from(
            daemon
                .config
                .get_int("smtpd_client_message_rate_limit")
                .max(0),
        )
        .unwrap_or(0),
        service: daemon.args.service.clone(),
        space_needed: daemon.config.get_size("queue_minfree").max(
            daemon
                .config
                .get_size("message_size_limit")
                .saturating_mul(3)
                / 2,
        ),
        registry,
    });
    let mut server = Server {
        poll,
        listeners,
        conns: Vec::new(),
        free: VecDeque::new(),
        live: 0,
        ctx,
        cfg,
        tls,
        hostname,
        busy: false,
    };
    server.run(&mut daemon);
}

impl Server {
    fn run(&mut self, daemon: &mut posthorn_server::Daemon) {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        let mut idle_since = Instant::now();
        let mut stopping = false;
        loop {
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => posthorn_log::fatal(format!("poll: {e}")),
            }
            let now = Instant::now();
            for ev in &events {
                let t = ev.token().0;
                if t < self.listeners.len() {
                    if !stopping {
                        self.accept(t, now);
                    }
                } else if t >= BASE {
                    let idx = (t - BASE) / 2;
                    if (t - BASE) % 2 == 1 {
                        self.cleanup_event(idx);
                    }
                    self.drive(idx, now);
                }
            }
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                self.tick(now);
            }
            // Busy/idle for master: busy when this process takes no more connections.
            let busy = stopping || self.live >= self.cfg.process_limit;
            if busy != self.busy {
                self.busy = busy;
                daemon.report(busy);
            }
            if daemon.stopping() && !stopping {
                // Reload or stop: take no new clients, finish the current ones.
                stopping = true;
                for mut l in self.listeners.drain(..) {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                daemon.report(true);
                self.busy = true;
            }
            if self.live > 0 {
                idle_since = now;
            } else if stopping || now.duration_since(idle_since) >= self.cfg.max_idle {
                return;
            }
        }
    }

    fn accept(&mut self, li: usize, now: Instant) {
        loop {
            let (sock, peer) = match self.listeners[li].accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("accept: {e}");
                    return;
                }
            };
            if self.live >= self.cfg.process_limit {
                // Over the cap: a clear temporary failure, never a hang.
                let mut s = sock;
                let h = &self.hostname;
                let _ = s.write_all(
                    format!("421 4.3.2 {h} Service currently unavailable\r\n").as_bytes(),
                );
                log::warn!(
                    "connection limit {} reached: refused {}",
                    self.cfg.process_limit,
                    peer.ip()
                );
                continue;
            }
            let _ = sock.set_nodelay(true);
            self.add(sock, peer, now);
        }
    }

    fn add(&mut self, sock: TcpStream, peer: SocketAddr, now: Instant) {
        let idx = self.free.pop_front().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let phase = if self.cfg.proxy {
            Phase::Proxy
        } else {
            Phase::Smtp
        };
        let timeout = if self.cfg.proxy {
            self.cfg.proxy_timeout
        } else {
            self.cfg.timeout
        };
        let mut c = Conn::new(
            sock,
            peer,
            phase,
            conn::Timing {
                timeout,
                min_rate: self.cfg.min_rate,
                per_record: self.cfg.per_record,
                ipc: self.cfg.ipc,
            },
            self.hostname.clone(),
        );
        if let Err(e) = self.poll.registry().register(
            &mut c.sock,
            Token(BASE + 2 * idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("register: {e}");
            self.free.push_back(idx);
            return;
        }
        self.conns[idx] = Some(c);
        self.live += 1;
        if !self.cfg.proxy {
            self.establish(idx, unmap(peer.ip()), now);
        }
        self.drive(idx, now);
    }

    /// The client is known: limits, the connect log line, the session, the greeting.
    fn establish(&mut self, idx: usize, ip: IpAddr, now: Instant) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        let policy = self.ctx.policy.as_ref().ok();
        let exempt = policy.is_some_and(|p| p.event_limit_exempt(ip));
        let name = if ip.is_loopback() {
            "localhost"
        } else {
            "unknown"
        };
        let client = posthorn_policy::Client {
            addr: ip,
            name: name.to_string(),
            port: c.peer.port(),
        };
        let mut backend = SmtpBackend::new(self.ctx.clone(), client, exempt);
        let label = backend.label.clone();
        c.client_ip = Some(ip);
        let (count, rate) = self.ctx.anvil.borrow_mut().connect(ip);
        c.counted = true;
        let mut s = self.cfg.proto.clone();
        if policy.is_some_and(|p| p.bare_newline_excluded(ip)) {
            s.bare_lf = BareLf::Allow;
        } else {
            s.bare_lf = self.cfg.bare_lf;
        }
        s.starttls = self.tls.is_some() && !self.cfg.wrapper && self.cfg.level != Level::None;
        log::info!("connect from {label}");
        let h = self.hostname.clone();
        let over = if exempt {
            None
        } else if self.cfg.count_limit > 0 && count > self.cfg.count_limit {
            log::warn!(
                "Connection concurrency limit exceeded: {count} from {label} for service {}",
                self.ctx.service
            );
            Some(count)
        } else if self.cfg.rate_limit > 0 && rate > self.cfg.rate_limit {
            log::warn!(
                "Connection rate limit exceeded: {rate} from {label} for service {}",
                self.ctx.service
            );
            Some(rate)
        } else {
            None
        };
        if over.is_some() {
            c.start_session(s, backend, false);
            c.send_and_close(&Reply::new(
                421,
                "4.7.0",
                format!("{h} Error: too many connections from {ip}"),
            ));
            return;
        }
        if let Some(p) = policy {
            let facts = posthorn_policy::Facts {
                client: &backend.client,
                helo: None,
                sender: None,
                recipient: None,
                protocol: "SMTP",
                unauth_pipelining: false,
            };
            if let Err(r) = p.check(Stage::Connect, &facts) {
                log::info!(
                    "NOQUEUE: reject: CONNECT from {label}: {}; proto=SMTP",
                    r.reply_line()
                );
                backend.connect_reject = Some(Reply::new(r.code, &r.dsn.clone(), r.text.clone()));
            }
        }
        if self.cfg.wrapper {
            let Some(tls) = self.tls.as_mut() else {
                log::warn!("TLS wrapper mode without a usable certificate: closing {label}");
                c.start_session(s, backend, false);
                c.closing = true;
                return;
            };
            if let Err(e) = c.start_tls(tls.current()) {
                log::warn!("TLS: {e}");
                c.closing = true;
            }
            c.start_session(s, backend, true);
            c.greet();
            return;
        }
        c.start_session(s, backend, false);
        if !self.cfg.greet_wait.is_zero() {
            c.phase = Phase::GreetWait(now + self.cfg.greet_wait);
            return;
        }
        self.greet_or_refuse(idx);
    }

    /// Greets, unless the client already talked (an early talker).
    fn greet_or_refuse(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        c.phase = Phase::Smtp;
        if c.has_input() {
            let first = String::from_utf8_lossy(&c.input[..c.input.len().min(100)])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            if let Some(b) = &c.backend {
                log::info!(
                    "improper command pipelining after CONNECT from {}: {first}",
                    b.label
                );
            }
            c.input.clear();
            c.send_and_close(&Reply::new(
                554,
                "5.5.0",
                "Error: SMTP protocol synchronization",
            ));
            return;
        }
        c.greet();
    }

    fn cleanup_event(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Some(b) = c.backend.as_mut() else { return };
        let Some(s) = b.stream.as_mut() else { return };
        let mut answers = Vec::new();
        let res = s
            .flush()
            .map_err(|e| e.to_string())
            .and_then(|()| s.read(&mut answers).map_err(|e| e.to_string()));
        for a in answers {
            c.cleanup_answer(a);
        }
        // A connection that ended after its last answer (the message was settled and the
        // stream released) is no error of this client's.
        if let Err(e) = res
            && c.backend.as_ref().is_some_and(|b| b.stream.is_some())
        {
            c.cleanup_broken(&e);
        }
    }

    fn drive(&mut self, idx: usize, now: Instant) {
        loop {
            let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                return;
            };
            let result = match c.phase {
                Phase::Proxy => match c.read_only() {
                    Err(e) => Err(e),
                    Ok(()) => match posthorn_smtpd::proxy::parse(&c.input) {
                        Ok(None) => Ok(Drive::Idle),
                        Ok(Some((h, n))) => {
                            c.input.drain(..n);
                            let ip = h.source.map_or(c.peer.ip(), |a| a.ip());
                            self.establish(idx, unmap(ip), now);
                            continue;
                        }
                        Err(e) => {
                            log::warn!("haproxy read: {e} from [{}]", c.peer.ip());
                            Err(End::Error(e.to_string()))
                        }
                    },
                },
                Phase::GreetWait(_) => c.read_only().map(|()| Drive::Idle),
                Phase::Smtp => c.drive(now),
            };
            match result {
                Ok(Drive::Idle) => {
                    self.register_cleanup(idx);
                    // Answers may have arrived while the stream was being set up.
                    return;
                }
                Ok(Drive::StartTls) => {
                    let config = self.tls.as_mut().map(Reloader::current);
                    let c = self.conns[idx].as_mut().expect("live connection");
                    match config {
                        Some(cfg) => {
                            if let Err(e) = c.start_tls(cfg) {
                                log::warn!("TLS: {e}");
                                c.closing = true;
                            }
                            if let Some(s) = &mut c.session {
                                s.tls_started();
                            }
                            // RFC 3207: nothing said before TLS counts, a half-made
                            // transaction included.
                            if let Some(b) = &mut c.backend {
                                use posthorn_smtp_proto::server::Backend;
                                b.reset();
                            }
                        }
                        None => c.closing = true,
                    }
                }
                Err(end) => {
                    self.close(idx, end);
                    return;
                }
            }
        }
    }

    /// Registers a connection's new cleanup stream with the poller.
    fn register_cleanup(&mut self, idx: usize) {
        let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Some(b) = c.backend.as_mut() else { return };
        if b.registered {
            // Writes queued since the last event go out now.
            if let Some(s) = b.stream.as_mut()
                && s.pending() > 0
                && let Err(e) = s.flush()
            {
                c.cleanup_broken(&e.to_string());
            }
            return;
        }
        let Some(s) = b.stream.as_mut() else { return };
        let res = self.poll.registry().register(
            &mut s.sock,
            Token(BASE + 2 * idx + 1),
            Interest::READABLE | Interest::WRITABLE,
        );
        match res {
            Ok(()) => {
                b.registered = true;
                if let Err(e) = s.flush() {
                    c.cleanup_broken(&e.to_string());
                }
            }
            Err(e) => c.cleanup_broken(&format!("register: {e}")),
        }
    }

    fn close(&mut self, idx: usize, end: End) {
        let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.live -= 1;
        self.free.push_back(idx);
        let _ = self.poll.registry().deregister(&mut c.sock);
        if let Some(b) = c.backend.as_mut() {
            if let (End::Lost | End::Error(_), Some(s)) = (&end, &c.session) {
                log::info!(
                    "lost connection after {} from {}",
                    s.last_command(),
                    b.label
                );
            }
            if let End::Error(e) = &end {
                log::info!("{e} from {}", b.label);
            }
            if let Some(after) = c.session.as_ref().and_then(|s| s.error_limit_reached()) {
                log::info!("too many errors after {after} from {}", b.label);
            }
            use posthorn_smtp_proto::server::Backend;
            if b.stream.is_some() {
                if b.registered
                    && let Some(s) = b.stream.as_mut()
                {
                    let _ = self.poll.registry().deregister(&mut s.sock);
                }
                b.reset();
            }
            let stats = c.session.as_ref().map(|s| s.stats()).unwrap_or_default();
            log::info!("disconnect from {}{stats}", b.label);
        }
        if c.counted
            && let Some(ip) = c.client_ip
        {
            self.ctx.anvil.borrow_mut().disconnect(ip);
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (i, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            match c.phase {
                Phase::GreetWait(t) if now >= t => due.push((i, 1)),
                _ if c.pending && now >= c.pending_deadline => due.push((i, 4)),
                _ if c.pending => {}
                _ if now >= c.deadline && !c.closing => due.push((i, 2)),
                _ if c.closing && now >= c.deadline + Duration::from_secs(10) => due.push((i, 3)),
                _ if c.sleep_until.is_some_and(|t| now >= t) => due.push((i, 0)),
                _ => {}
            }
        }
        for (i, what) in due {
            match what {
                1 => self.greet_or_refuse(i),
                2 => {
                    if let Some(c) = self.conns[i].as_mut() {
                        if matches!(c.phase, Phase::Proxy) {
                            log::warn!("haproxy read: timeout from [{}]", c.peer.ip());
                            self.close(i, End::Lost);
                            continue;
                        }
                        c.timed_out();
                        c.deadline = now;
                    }
                }
                3 => {
                    self.close(i, End::Lost);
                    continue;
                }
                4 => {
                    // cleanup never answered: the client gets a 4xx and may retry.
                    if let Some(c) = self.conns[i].as_mut() {
                        c.cleanup_broken("timed out waiting for cleanup");
                    }
                }
                _ => {}
            }
            self.drive(i, now);
        }
        self.ctx.anvil.borrow_mut().prune();
    }
}

/// `::ffff:1.2.3.4` is the IPv4 client 1.2.3.4.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
