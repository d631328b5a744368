//! The scheduler: queue scans, activation, jobs, results, completion.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use posthorn_proto::bounce::{self, Entry, NoticeKind, Notify};
use posthorn_proto::delivery::{Deliver, Outcome, Rcpt, Status};
use posthorn_proto::trigger;
use posthorn_queue::file::{self, Envelope, LogEntry, QueueFile};
use posthorn_queue::{QueueId, QueueName};
use posthorn_server::Daemon;

use crate::transport::{Answer, Done, Job, Transports, Work};

/// Settings read once.
struct Settings {
    run_delay: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    lifetime: Duration,
    bounce_lifetime: Duration,
    soft_bounce: bool,
    active_limit: usize,
    concurrency: usize,
    rcpt_limit: usize,
    local_rcpt_limit: usize,
    mydestination: HashSet<String>,
    virtual_domains: HashSet<String>,
    /// Tables in virtual_mailbox_domains, queried with the domain (Postfix's semantics).
    virtual_tables: posthorn_tables::TableList,
    local_transport: String,
    virtual_transport: String,
    default_transport: String,
}

fn transport_name(v: &str) -> String {
    v.split(':').next().unwrap_or("").trim().to_string()
}

fn domain_set(list: Vec<String>) -> HashSet<String> {
    list.into_iter()
        .filter(|d| !d.contains(':'))
        .map(|d| d.to_ascii_lowercase())
        .collect()
}

impl Settings {
    fn new(d: &Daemon) -> Settings {
        let c = &d.config;
        let limit = |n: &str| usize::try_from(c.get_int(n)).unwrap_or(1).max(1);
        let vdom = c.get_list("virtual_mailbox_domains");
        let virtual_tables = vdom
            .iter()
            .filter(|d| d.contains(':'))
            .cloned()
            .collect::<Vec<_>>();
        let virtual_tables =
            posthorn_tables::TableList::open(&virtual_tables).unwrap_or_else(|e| {
                log::warn!("virtual_mailbox_domains: {e}");
                posthorn_tables::TableList(Vec::new())
            });
        let virtual_domains = domain_set(vdom);
        Settings {
            run_delay: c
                .get_duration("queue_run_delay")
                .max(Duration::from_secs(1)),
            min_backoff: c.get_duration("minimal_backoff_time"),
            max_backoff: c.get_duration("maximal_backoff_time"),
            lifetime: c.get_duration("maximal_queue_lifetime"),
            bounce_lifetime: c.get_duration("bounce_queue_lifetime"),
            soft_bounce: c.get_bool("soft_bounce"),
            active_limit: limit("qmgr_message_active_limit"),
            concurrency: limit("default_destination_concurrency_limit"),
            rcpt_limit: limit("default_destination_recipient_limit"),
            local_rcpt_limit: limit("local_destination_recipient_limit"),
            mydestination: domain_set(c.get_list("mydestination")),
            virtual_domains,
            virtual_tables,
            local_transport: transport_name(&c.get("local_transport")),
            virtual_transport: transport_name(&c.get("virtual_transport")),
            default_transport: transport_name(&c.get("default_transport")),
        }
    }

    /// Resolves a recipient to (transport, next hop).
    fn resolve(&self, addr: &str) -> (String, String) {
        let domain = match addr.rfind('@') {
            Some(i) => addr[i + 1..].to_ascii_lowercase(),
            None => return (self.local_transport.clone(), String::new()),
        };
        let t = if self.mydestination.contains(&domain) || domain == "localhost" {
            &self.local_transport
        } else if self.virtual_domains.contains(&domain)
            || matches!(self.virtual_tables.lookup(&domain), Ok(Some(_)))
        {
            &self.virtual_transport
        } else {
            &self.default_transport
        };
        (t.clone(), domain)
    }
}

/// A message in the active queue.
struct Msg {
    id: QueueId,
    path: PathBuf,
    env: Envelope,
    activated: Instant,
    arrival: SystemTime,
    outstanding: usize,
    bounced: Vec<Entry>,
    successes: Vec<Entry>,
    deferred: Vec<LogEntry>,
    /// Recipients (by offset) whose bounce notice is being sent.
    bouncing: Vec<u64>,
}

/// What a job was for.
struct JobInfo {
    msg: QueueId,
    transport: String,
    dispatched: Instant,
    rcpts: Vec<Rcpt>,
    notice: Option<NoticeKind>,
}

/// The queue manager.
pub struct Scheduler {
    d: Daemon,
    s: Settings,
    active: HashMap<QueueId, Msg>,
    jobs: HashMap<u64, JobInfo>,
    seq: u64,
    transports: Transports,
    done_rx: Receiver<Done>,
    wake_r: UnixStream,
    next_deferred_scan: Instant,
}

fn fmt_delay(d: Duration) -> String {
    let x = d.as_secs_f64();
    if x >= 10.0 {
        format!("{}", x.round() as u64)
    } else if x >= 1.0 {
        let s = format!("{x:.1}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{x:.2}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "0" {
            "0".to_string()
        } else {
            s.to_string()
        }
    }
}

fn since(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

impl Scheduler {
    /// Sets up the scheduler (and recovers `active/`).
    pub fn new(d: Daemon) -> Scheduler {
        let s = Settings::new(&d);
        let (done_tx, done_rx) = channel();
        let (wake_r, wake_w) =
            UnixStream::pair().unwrap_or_else(|e| posthorn_log::fatal(format!("socketpair: {e}")));
        let _ = wake_r.set_nonblocking(true);
        let _ = wake_w.set_nonblocking(true);
        match d.layout.list(QueueName::Active) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = d
                        .layout
                        .move_to(&id, QueueName::Active, QueueName::Incoming)
                    {
                        log::warn!("{id}: cannot move back to incoming: {e}");
                    }
                }
            }
            Err(e) => log::warn!("active queue: {e}"),
        }
        Scheduler {
            d,
            s,
            active: HashMap::new(),
            jobs: HashMap::new(),
            seq: 0,
            transports: Transports::new(done_tx, wake_w),
            done_rx,
            wake_r,
            next_deferred_scan: Instant::now(),
        }
    }

    /// The event loop; returns on SIGTERM.
    pub fn run(mut self) {
        let mut listeners: Vec<UnixListener> = self
            .d
            .take_listeners()
            .into_iter()
            .map(UnixListener::from)
            .collect();
        for l in &listeners {
            let _ = l.set_nonblocking(true);
        }
        let mut triggers: Vec<UnixStream> = Vec::new();
        self.scan(QueueName::Incoming, false);
        loop {
            if self.d.stopping() {
                log::info!("terminating on signal");
                return;
            }
            let now = Instant::now();
            if now >= self.next_deferred_scan {
                self.scan(QueueName::Deferred, false);
                self.next_deferred_scan = now + self.s.run_delay;
            }
            let (mut incoming, mut deferred, mut all) = (false, false, false);
            {
                let mut fds: Vec<PollFd<'_>> =
                    vec![PollFd::new(self.wake_r.as_fd(), PollFlags::POLLIN)];
                for l in &listeners {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                for t in &triggers {
                    fds.push(PollFd::new(t.as_fd(), PollFlags::POLLIN));
                }
                let wait = self
                    .next_deferred_scan
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(500));
                let _ = poll(
                    &mut fds,
                    PollTimeout::try_from(wait.as_millis().max(1) as i32)
                        .unwrap_or(PollTimeout::MAX),
                );
            }
            let mut buf = [0u8; 256];
            while matches!((&self.wake_r).read(&mut buf), Ok(n) if n > 0) {}
            for l in &mut listeners {
                while let Ok((s, _)) = l.accept() {
                    let _ = s.set_nonblocking(true);
                    triggers.push(s);
                }
            }
            triggers.retain_mut(|t| {
                loop {
                    match t.read(&mut buf) {
                        Ok(0) => break false,
                        Ok(n) => {
                            for &b in &buf[..n] {
                                match b {
                                    trigger::SCAN_INCOMING => incoming = true,
                                    trigger::SCAN_DEFERRED => deferred = true,
                                    trigger::SCAN_ALL => all = true,
                                    trigger::WAKEUP => {
                                        incoming = true;
                                        deferred = true;
                                    }
                                    _ => {}
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                        Err(_) => break false,
                    }
                }
            });
            while let Ok(done) = self.done_rx.try_recv() {
                self.job_done(done);
            }
            if all {
                self.scan(QueueName::Incoming, true);
                self.scan(QueueName::Deferred, true);
            } else {
                if incoming {
                    self.scan(QueueName::Incoming, false);
                }
                if deferred {
                    self.scan(QueueName::Deferred, false);
                }
            }
        }
    }

    /// Activates the ready messages of queue `q`; `force` ignores retry times.
    fn scan(&mut self, q: QueueName, force: bool) {
        let ids = match self.d.layout.list(q) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("{}: {e}", self.d.layout.dir(q).display());
                return;
            }
        };
        for id in ids {
            if self.active.len() >= self.s.active_limit {
                return;
            }
            if self.active.contains_key(&id) {
                continue;
            }
            let path = self.d.layout.path(q, &id);
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !file::is_complete(&meta) {
                let age = meta.modified().map(since).unwrap_or_default();
                if age > Duration::from_secs(86_400) {
                    log::warn!("{id}: removing incomplete queue file left by cleanup");
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if q == QueueName::Deferred
                && !force
                && meta.modified().is_ok_and(|m| m > SystemTime::now())
            {
                continue;
            }
            self.activate(&id, q);
        }
    }

    fn activate(&mut self, id: &QueueId, from: QueueName) {
        let path = match self.d.layout.move_to(id, from, QueueName::Active) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("{id}: cannot move to active: {e}");
                return;
            }
        };
        let qf = match QueueFile::open_read_only(&path) {
            Ok(q) => q,
            Err(e) if e.is_corrupt() => {
                log::warn!("{e}; moved to corrupt/");
                let _ = file::quarantine(&self.d.layout, &path);
                return;
            }
            Err(e) => {
                log::warn!("{e}");
                let _ = self.d.layout.move_to(id, QueueName::Active, from);
                return;
            }
        };
        let env = qf.envelope;
        let todo = env.recipients.iter().filter(|r| !r.done).count();
        log::info!(
            "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
            env.sender,
            env.size.content_size,
            env.recipients.len()
        );
        let arrival = env.arrival.unwrap_or_else(|| id.time());
        let mut msg = Msg {
            id: id.clone(),
            path,
            env,
            activated: Instant::now(),
            arrival,
            outstanding: 0,
            bounced: Vec::new(),
            successes: Vec::new(),
            deferred: Vec::new(),
            bouncing: Vec::new(),
        };
        let lifetime = if msg.env.sender.is_empty() {
            self.s.bounce_lifetime
        } else {
            self.s.lifetime
        };
        if from == QueueName::Deferred && since(arrival) > lifetime && todo > 0 {
            self.expire(&mut msg);
        } else {
            self.dispatch(&mut msg);
        }
        let id = msg.id.clone();
        self.active.insert(id.clone(), msg);
        self.maybe_finish(&id);
    }

    /// Returns every remaining recipient of an expired message to its sender.
    fn expire(&mut self, msg: &mut Msg) {
        let reasons = file::read_log(&self.d.layout, QueueName::Defer, &msg.id).unwrap_or_default();
        for r in msg.env.recipients.iter().filter(|r| !r.done) {
            let last = reasons.iter().rev().find(|e| e.recipient == r.address);
            let (dsn, reason) = match last {
                Some(e) => (e.dsn.clone(), e.reason.clone()),
                None => ("4.7.0".to_string(), "message expired".to_string()),
            };
            self.log_result(
                msg,
                &r.address,
                r.orig.as_deref(),
                "none",
                &dsn,
                "expired, returned to sender",
                &reason,
                None,
            );
            msg.bounced.push(Entry {
                recipient: r.address.clone(),
                orig: r.orig.clone().unwrap_or_default(),
                dsn,
                relay: "none".into(),
                reason,
            });
            msg.bouncing.push(r.offset);
        }
    }

    /// Groups the message's remaining recipients into delivery jobs.
    fn dispatch(&mut self, msg: &mut Msg) {
        let mut groups: Vec<(String, String, Vec<Rcpt>)> = Vec::new();
        for r in msg.env.recipients.iter().filter(|r| !r.done) {
            let (t, hop) = self.s.resolve(&r.address);
            let limit = if t == self.s.local_transport {
                self.s.local_rcpt_limit
            } else {
                self.s.rcpt_limit
            };
            let rc = Rcpt {
                offset: r.offset,
                address: r.address.clone(),
                orig: r.orig.clone().unwrap_or_default(),
            };
            match groups
                .iter_mut()
                .find(|(gt, gh, v)| *gt == t && *gh == hop && v.len() < limit)
            {
                Some(g) => g.2.push(rc),
                None => groups.push((t, hop, vec![rc])),
            }
        }
        for (t, hop, rcpts) in groups {
            let socket = self.d.layout.private_socket(&t);
            if t.is_empty() || t.contains('/') || !socket.exists() {
                let why = format!("mail transport unavailable: no \"{t}\" service in master.cf");
                for r in &rcpts {
                    self.record_status(
                        msg,
                        &Status {
                            offset: r.offset,
                            outcome: Outcome::Deferred,
                            dsn: "4.3.0".into(),
                            relay: "none".into(),
                            reason: why.clone(),
                        },
                        Instant::now(),
                    );
                }
                continue;
            }
            self.seq += 1;
            let req = Deliver {
                queue_name: "active".into(),
                queue_id: msg.id.to_string(),
                nexthop: hop,
                rcpts: rcpts.clone(),
            };
            self.jobs.insert(
                self.seq,
                JobInfo {
                    msg: msg.id.clone(),
                    transport: t.clone(),
                    dispatched: Instant::now(),
                    rcpts,
                    notice: None,
                },
            );
            msg.outstanding += 1;
            self.transports.submit(
                &t,
                socket,
                self.s.concurrency,
                Job {
                    seq: self.seq,
                    work: Work::Deliver(req),
                },
            );
        }
    }

    fn job_done(&mut self, done: Done) {
        let Some(info) = self.jobs.remove(&done.seq) else {
            return;
        };
        self.transports.finished(&info.transport);
        let Some(mut msg) = self.active.remove(&info.msg) else {
            return;
        };
        msg.outstanding = msg.outstanding.saturating_sub(1);
        match (info.notice, done.answer) {
            (None, Answer::Delivered(statuses)) => {
                for r in &info.rcpts {
                    // Only answers about recipients we asked for count; a missing one defers.
                    let st = statuses
                        .iter()
                        .find(|s| s.offset == r.offset)
                        .cloned()
                        .unwrap_or(Status {
                            offset: r.offset,
                            outcome: Outcome::Deferred,
                            dsn: "4.3.0".into(),
                            relay: info.transport.clone(),
                            reason: "delivery agent gave no status".into(),
                        });
                    self.record_status(&mut msg, &st, done.started);
                }
            }
            (None, Answer::Failed(why)) | (None, Answer::Notified(bounce::Reply::Failed(why))) => {
                log::warn!("{}: transport {}: {why}", msg.id, info.transport);
                for r in &info.rcpts {
                    let st = Status {
                        offset: r.offset,
                        outcome: Outcome::Deferred,
                        dsn: "4.3.0".into(),
                        relay: info.transport.clone(),
                        reason: "delivery temporarily suspended: mail transport error".into(),
                    };
                    self.record_status(&mut msg, &st, info.dispatched);
                }
            }
            (Some(kind), answer) => {
                let ok = matches!(answer, Answer::Notified(bounce::Reply::Sent(_)));
                if kind == NoticeKind::Failure {
                    if ok {
                        if let Ok(f) = OpenOptions::new().write(true).read(true).open(&msg.path) {
                            for off in &msg.bouncing {
                                let _ = file::mark_done(&f, *off);
                            }
                        }
                        for r in &mut msg.env.recipients {
                            if msg.bouncing.contains(&r.offset) {
                                r.done = true;
                            }
                        }
                    } else {
                        let why = match answer {
                            Answer::Failed(w) | Answer::Notified(bounce::Reply::Failed(w)) => w,
                            _ => String::new(),
                        };
                        log::warn!(
                            "{}: cannot send the non-delivery notification: {why}; will retry",
                            msg.id
                        );
                        for e in &msg.bounced {
                            msg.deferred.push(LogEntry {
                                recipient: e.recipient.clone(),
                                orig: e.orig.clone(),
                                dsn: e.dsn.clone(),
                                reason: e.reason.clone(),
                            });
                        }
                    }
                    msg.bouncing.clear();
                    msg.bounced.clear();
                }
            }
            (None, Answer::Notified(_)) => {}
        }
        let id = msg.id.clone();
        self.active.insert(id.clone(), msg);
        self.maybe_finish(&id);
    }

    #[allow(clippy::too_many_arguments)]
    fn log_result(
        &self,
        msg: &Msg,
        rcpt: &str,
        orig: Option<&str>,
        relay: &str,
        dsn: &str,
        status: &str,
        reason: &str,
        dispatched: Option<Instant>,
    ) {
        let now = Instant::now();
        let a = msg.activated.duration_since(msg.activated)
            + since(msg.arrival).saturating_sub(now.duration_since(msg.activated));
        let (b, d) = match dispatched {
            Some(t) => (t.duration_since(msg.activated), now.duration_since(t)),
            None => (now.duration_since(msg.activated), Duration::ZERO),
        };
        let orig = match orig {
            Some(o) if !o.is_empty() && o != rcpt => format!(", orig_to=<{o}>"),
            _ => String::new(),
        };
        log::info!(
            "{}: to=<{rcpt}>{orig}, relay={relay}, delay={}, delays={}/{}/0/{}, dsn={dsn}, status={status} ({reason})",
            msg.id,
            fmt_delay(since(msg.arrival)),
            fmt_delay(a),
            fmt_delay(b),
            fmt_delay(d)
        );
    }

    fn record_status(&mut self, msg: &mut Msg, st: &Status, dispatched: Instant) {
        let Some(r) = msg
            .env
            .recipients
            .iter()
            .find(|r| r.offset == st.offset)
            .cloned()
        else {
            return;
        };
        let mut outcome = st.outcome;
        let mut dsn = st.dsn.clone();
        if outcome == Outcome::Bounced && self.s.soft_bounce {
            outcome = Outcome::Deferred;
            if dsn.starts_with('5') {
                dsn.replace_range(0..1, "4");
            }
        }
        let orig = r.orig.clone().unwrap_or_default();
        match outcome {
            Outcome::Sent => {
                self.log_result(
                    msg,
                    &r.address,
                    r.orig.as_deref(),
                    &st.relay,
                    &dsn,
                    "sent",
                    &st.reason,
                    Some(dispatched),
                );
                if let Ok(f) = OpenOptions::new().write(true).read(true).open(&msg.path)
                    && let Err(e) = file::mark_done(&f, r.offset)
                {
                    log::warn!("{}: cannot record delivery to {}: {e}", msg.id, r.address);
                }
                if let Some(m) = msg.env.recipients.iter_mut().find(|x| x.offset == r.offset) {
                    m.done = true;
                }
                if r.notify
                    .as_deref()
                    .is_some_and(|n| n.to_ascii_uppercase().contains("SUCCESS"))
                {
                    msg.successes.push(Entry {
                        recipient: r.address.clone(),
                        orig,
                        dsn,
                        relay: st.relay.clone(),
                        reason: st.reason.clone(),
                    });
                }
            }
            Outcome::Deferred => {
                self.log_result(
                    msg,
                    &r.address,
                    r.orig.as_deref(),
                    &st.relay,
                    &dsn,
                    "deferred",
                    &st.reason,
                    Some(dispatched),
                );
                msg.deferred.push(LogEntry {
                    recipient: r.address.clone(),
                    orig,
                    dsn,
                    reason: st.reason.clone(),
                });
            }
            Outcome::Bounced => {
                self.log_result(
                    msg,
                    &r.address,
                    r.orig.as_deref(),
                    &st.relay,
                    &dsn,
                    "bounced",
                    &st.reason,
                    Some(dispatched),
                );
                msg.bounced.push(Entry {
                    recipient: r.address.clone(),
                    orig,
                    dsn,
                    relay: st.relay.clone(),
                    reason: st.reason.clone(),
                });
                msg.bouncing.push(r.offset);
            }
        }
    }

    /// When a message has no jobs left: send notices, then remove it or defer it.
    fn maybe_finish(&mut self, id: &QueueId) {
        let Some(mut msg) = self.active.remove(id) else {
            return;
        };
        if msg.outstanding > 0 {
            self.active.insert(id.clone(), msg);
            return;
        }
        if !msg.bounced.is_empty()
            && !msg.bouncing.is_empty()
            && !self.jobs.values().any(|j| j.msg == *id)
        {
            let entries = msg.bounced.clone();
            self.notify(&mut msg, NoticeKind::Failure, entries);
            self.active.insert(id.clone(), msg);
            return;
        }
        if !msg.successes.is_empty() {
            let entries = std::mem::take(&mut msg.successes);
            self.notify(&mut msg, NoticeKind::Success, entries);
            self.active.insert(id.clone(), msg);
            return;
        }
        let remaining = msg.env.recipients.iter().any(|r| !r.done);
        if !remaining {
            if let Err(e) = fs::remove_file(&msg.path) {
                log::warn!("{id}: cannot remove: {e}");
            }
            let _ = fs::remove_file(self.d.layout.path(QueueName::Defer, id));
            log::info!("{id}: removed");
            return;
        }
        if !msg.deferred.is_empty()
            && let Err(e) = file::append_log(&self.d.layout, QueueName::Defer, id, &msg.deferred)
        {
            log::warn!("{e}");
        }
        let delay = since(msg.arrival).clamp(
            self.s.min_backoff,
            self.s.max_backoff.max(self.s.min_backoff),
        );
        match self
            .d
            .layout
            .move_to(id, QueueName::Active, QueueName::Deferred)
        {
            Ok(p) => {
                if let Ok(f) = OpenOptions::new().write(true).open(&p) {
                    let _ = f.set_modified(SystemTime::now() + delay);
                }
            }
            Err(e) => log::warn!("{id}: cannot move to deferred: {e}"),
        }
    }

    fn notify(&mut self, msg: &mut Msg, kind: NoticeKind, entries: Vec<Entry>) {
        self.seq += 1;
        let req = Notify {
            kind,
            queue_name: "active".into(),
            queue_id: msg.id.to_string(),
            entries,
        };
        let socket = self
            .d
            .layout
            .private_socket(posthorn_proto::service::BOUNCE);
        self.jobs.insert(
            self.seq,
            JobInfo {
                msg: msg.id.clone(),
                transport: "bounce".into(),
                dispatched: Instant::now(),
                rcpts: Vec::new(),
                notice: Some(kind),
            },
        );
        msg.outstanding += 1;
        self.transports.submit(
            "bounce",
            socket,
            self.s.concurrency,
            Job {
                seq: self.seq,
                work: Work::Notify(req),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_format() {
        assert_eq!(fmt_delay(Duration::ZERO), "0");
        assert_eq!(fmt_delay(Duration::from_millis(3)), "0");
        assert_eq!(fmt_delay(Duration::from_millis(150)), "0.15");
        assert_eq!(fmt_delay(Duration::from_millis(100)), "0.1");
        assert_eq!(fmt_delay(Duration::from_millis(2340)), "2.3");
        assert_eq!(fmt_delay(Duration::from_secs(37)), "37");
    }
}
