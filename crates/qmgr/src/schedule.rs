//! The scheduler: queue scans, activation, jobs, results, completion, graceful stop.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use posthorn_config::Config;
use posthorn_proto::bounce::{self, Entry, NoticeKind, Notify};
use posthorn_proto::delivery::{Deliver, Outcome, Rcpt, Status};
use posthorn_proto::trigger;
use posthorn_queue::file::{self, Envelope, LogEntry, QueueFile};
use posthorn_queue::{QueueId, QueueLayout, QueueName};
use posthorn_server::Daemon;

use crate::dest::{Destinations, Feedback, Limits};
use crate::transport::{Answer, Done, Job, Timeouts, Transports, Work};
use posthorn_server::delivery_log;

/// How long a graceful stop waits for outstanding jobs (master sends SIGKILL after 10 s).
const DRAIN_LIMIT: Duration = Duration::from_secs(8);
/// Queue file mode bit: the delay warning was sent (Postfix keeps a `W` record instead).
const DELAY_WARNED: u32 = 0o020;
/// A file in `active/` that no message in memory owns for this long is stranded.
const STRANDED_AGE: Duration = Duration::from_secs(60);
/// A `tmp.*` file in `incoming/` this old was left by a crash inside `NewQueueFile::create`.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// Settings read once.
struct Settings {
    run_delay: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    lifetime: Duration,
    bounce_lifetime: Duration,
    soft_bounce: bool,
    active_limit: usize,
    /// `qmgr_message_recipient_limit`: recipients of active messages held in memory.
    rcpt_memory_limit: usize,
    concurrency: usize,
    rcpt_limit: usize,
    local_rcpt_limit: usize,
    /// Address resolution (posthorn-resolve), shared by every message.
    resolver: Option<posthorn_resolve::Resolver>,
    /// Why the resolver could not be built (every recipient is deferred with it).
    resolver_error: String,
    local_transport: String,
    /// Limits of the connections to agents and bounce.
    timeouts: Timeouts,
    /// Jobs per transport at once (`default_process_limit`).
    process_limit: usize,
    /// `transport_retry_time`: how long a dead destination is left alone.
    retry: Duration,
    /// `delay_warning_time` (zero: no delay notices).
    delay_warning: Duration,
    /// For the per-transport parameters (`smtp_destination_concurrency_limit`, ...).
    config: Config,
}

fn transport_name(v: &str) -> String {
    v.split(':').next().unwrap_or("").trim().to_string()
}

/// How many queue files may be open at once: each active message holds its file open, so
/// the active queue is capped below the descriptor limit (raised to its hard maximum first).
fn fd_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 900;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    usize::try_from(soft.saturating_sub(200))
        .unwrap_or(usize::MAX)
        .max(100)
}

impl Settings {
    fn new(c: &Config) -> Settings {
        let limit = |n: &str| usize::try_from(c.get_int(n)).unwrap_or(1).max(1);
        let resolver = posthorn_resolve::Resolver::from_config(c).map_err(|e| {
            log::error!(
                "address resolution: {e}; mail is deferred until the configuration is fixed"
            );
            e
        });
        Settings {
            run_delay: c
                .get_duration("queue_run_delay")
                .max(Duration::from_secs(1)),
            min_backoff: c.get_duration("minimal_backoff_time"),
            max_backoff: c.get_duration("maximal_backoff_time"),
            lifetime: c.get_duration("maximal_queue_lifetime"),
            bounce_lifetime: c.get_duration("bounce_queue_lifetime"),
            soft_bounce: c.get_bool("soft_bounce"),
            active_limit: limit("qmgr_message_active_limit").min(fd_budget()),
            rcpt_memory_limit: limit("qmgr_message_recipient_limit"),
            concurrency: limit("default_destination_concurrency_limit"),
            rcpt_limit: limit("default_destination_recipient_limit"),
            local_rcpt_limit: limit("local_destination_recipient_limit"),
            resolver_error: resolver
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            resolver: resolver.ok(),
            local_transport: transport_name(&c.get("local_transport")),
            timeouts: Timeouts {
                greeting: Timeouts::GREETING,
                request: c.get_duration("ipc_timeout"),
            },
            process_limit: limit("default_process_limit"),
            delay_warning: c.get_duration("delay_warning_time"),
            retry: c
                .get_duration("transport_retry_time")
                .max(Duration::from_secs(1)),
            config: c.clone(),
        }
    }

    /// Transport `t`'s destination limits (Postfix's per-transport parameter names).
    fn limits(&self, t: &str) -> Limits {
        let c = &self.config;
        let int = |name: String| usize::try_from(c.get_int(&name)).unwrap_or(1).max(1);
        Limits {
            initial: int(format!("{t}_initial_destination_concurrency")),
            max: int(format!("{t}_destination_concurrency_limit")),
            cohort_limit: int(format!("{t}_destination_concurrency_failed_cohort_limit")) as f64,
            retry: self.retry,
            cap: self.process_limit,
        }
    }
}

/// The message's timing for a delivery request (the agent's log line).
fn timing_of(msg: &Msg) -> posthorn_proto::delivery::Timing {
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let in_qmgr = msg.activated.elapsed();
    posthorn_proto::delivery::Timing {
        arrival_us: msg.arrival.duration_since(UNIX_EPOCH).map_or(0, us),
        before_qmgr_us: us(since(msg.arrival).saturating_sub(in_qmgr)),
        in_qmgr_us: us(in_qmgr),
    }
}

/// The transports qmgr answers itself: `error:text` bounces (the text may start with a
/// status code, as in transport(5)), `retry:text` defers, `discard:text` drops the mail
/// as delivered.
fn built_in_transport(t: &str, hop: &str, offset: u64) -> Option<Status> {
    let (outcome, default_dsn) = match t {
        "error" => (Outcome::Bounced, "5.0.0"),
        "retry" => (Outcome::Deferred, "4.0.0"),
        "discard" => (Outcome::Sent, "2.0.0"),
        _ => return None,
    };
    let text = hop.trim();
    let (dsn, reason) = match text.split_once(' ') {
        Some((code, rest))
            if posthorn_message::dsn::is_status_code(code)
                && code.starts_with(&default_dsn[..1]) =>
        {
            (code.to_string(), rest.trim().to_string())
        }
        _ if posthorn_message::dsn::is_status_code(text) && text.starts_with(&default_dsn[..1]) => {
            (text.to_string(), String::new())
        }
        _ => (default_dsn.to_string(), text.to_string()),
    };
    let reason = match (t, reason.is_empty()) {
        ("discard", true) => "discarded".to_string(),
        ("discard", false) => reason,
        (_, true) => "Address is undeliverable".to_string(),
        (_, false) => reason,
    };
    Some(Status {
        offset,
        outcome,
        dsn,
        relay: "none".into(),
        reason,
    })
}

/// Whether a job's answer says the destination was reached: an agent that deferred every
/// recipient with a 4.4.x status (network, connection, DNS: RFC 3463's "network and
/// routing" class) counts against the destination's window; a failed agent says nothing
/// about the destination.
fn feedback(a: &Answer) -> Feedback {
    match a {
        // The agent itself failed (crash, IPC): no news about the destination.
        Answer::Failed(_) => Feedback::Neutral,
        Answer::Delivered(st, _)
            if !st.is_empty()
                && st
                    .iter()
                    .all(|s| s.outcome == Outcome::Deferred && s.dsn.starts_with("4.4.")) =>
        {
            Feedback::Failed(st[0].reason.clone())
        }
        _ => Feedback::Reached,
    }
}

/// A message in the active queue.
struct Msg {
    id: QueueId,
    path: PathBuf,
    /// The queue file, open read-write for the whole time the message is active.
    file: std::fs::File,
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
    /// The destination (next hop, or the recipient for per-recipient transports).
    dest: String,
    /// The request, until the destination's window lets it start.
    waiting: Option<Work>,
    dispatched: Instant,
    rcpts: Vec<Rcpt>,
    notice: Option<NoticeKind>,
}

/// The queue manager.
pub struct Scheduler {
    layout: QueueLayout,
    s: Settings,
    active: HashMap<QueueId, Msg>,
    jobs: HashMap<u64, JobInfo>,
    seq: u64,
    transports: Transports,
    dests: Destinations,
    /// Recipients of the messages in `active` (for qmgr_message_recipient_limit).
    rcpts_active: usize,
    /// A graceful stop is under way: no new jobs start.
    stopping: bool,
    /// The connection setup time the agent reported for the job being recorded (`c` of
    /// `delays=a/b/c/d`).
    setup: Option<Duration>,
    done_rx: Receiver<Done>,
    wake_r: UnixStream,
    next_deferred_scan: Instant,
    next_tmp_sweep: Instant,
}

fn since(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

impl Scheduler {
    /// Sets up the scheduler (and recovers `active/`).
    pub fn new(config: &Config, layout: QueueLayout) -> Scheduler {
        let s = Settings::new(config);
        let (done_tx, done_rx) = channel();
        let (wake_r, wake_w) =
            UnixStream::pair().unwrap_or_else(|e| posthorn_log::fatal(format!("socketpair: {e}")));
        let _ = wake_r.set_nonblocking(true);
        let _ = wake_w.set_nonblocking(true);
        match layout.list(QueueName::Active) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = layout.move_to(&id, QueueName::Active, QueueName::Incoming) {
                        log::warn!("{id}: cannot move back to incoming: {e}");
                    }
                }
            }
            Err(e) => log::warn!("active queue: {e}"),
        }
        let timeouts = s.timeouts;
        Scheduler {
            layout,
            s,
            active: HashMap::new(),
            jobs: HashMap::new(),
            seq: 0,
            transports: Transports::new(done_tx, wake_w, timeouts),
            dests: Destinations::default(),
            rcpts_active: 0,
            stopping: false,
            setup: None,
            done_rx,
            wake_r,
            next_deferred_scan: Instant::now(),
            next_tmp_sweep: Instant::now(),
        }
    }

    /// The event loop; on SIGTERM it stops gracefully ([`Scheduler::drain`]) and returns.
    pub fn run(mut self, d: &mut Daemon) {
        let mut listeners: Vec<UnixListener> = d
            .take_listeners()
            .into_iter()
            .map(UnixListener::from)
            .collect();
        for l in &listeners {
            let _ = l.set_nonblocking(true);
        }
        // Trigger connections, each with the bytes of a request not yet complete.
        let mut triggers: Vec<(UnixStream, Vec<u8>)> = Vec::new();
        self.scan(QueueName::Incoming, false);
        // One long-running process (maxproc 1): busy from now on, so master counts a later
        // exit as the end of a working qmgr, not as a failed startup to throttle.
        d.report(true);
        loop {
            if d.stopping() {
                break;
            }
            let now = Instant::now();
            if now >= self.next_deferred_scan {
                self.scan_deferred(false);
                self.next_deferred_scan = now + self.s.run_delay;
            }
            let mut req = trigger::Requests::default();
            {
                let mut fds: Vec<PollFd<'_>> =
                    vec![PollFd::new(self.wake_r.as_fd(), PollFlags::POLLIN)];
                for l in &listeners {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                for (t, _) in &triggers {
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
                    triggers.push((s, Vec::new()));
                }
            }
            triggers.retain_mut(|(t, pending)| {
                loop {
                    match t.read(&mut buf) {
                        Ok(0) => break false,
                        Ok(n) => {
                            pending.extend_from_slice(&buf[..n]);
                            if !trigger::parse(pending, &mut req) {
                                log::warn!(
                                    "dropping a trigger connection that sent an invalid request"
                                );
                                break false;
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
            if req.all {
                self.scan(QueueName::Incoming, true);
                self.scan_deferred(true);
            } else {
                if req.incoming {
                    self.scan(QueueName::Incoming, false);
                }
                if req.deferred {
                    self.scan_deferred(false);
                }
            }
            for id in &req.ids {
                self.flush_id(id);
            }
            for site in &req.sites {
                self.flush_site(site);
            }
        }
        // Leave the listeners and pending triggers alone from here on: what is waiting in
        // the listeners' backlog makes master start the next qmgr as soon as this one exits.
        drop(triggers);
        drop(listeners);
        self.drain(DRAIN_LIMIT);
    }

    /// `postqueue -i ID`: retries that deferred message now (unknown IDs are ignored, as a
    /// message may have been delivered meanwhile).
    fn flush_id(&mut self, id: &str) {
        let Ok(id) = QueueId::parse(id) else {
            log::warn!("flush request for a malformed queue ID {id:?}");
            return;
        };
        if !self.active.contains_key(&id) && self.layout.path(QueueName::Deferred, &id).exists() {
            self.activate(&id, QueueName::Deferred);
        }
    }

    /// `postqueue -s SITE`: retries now the deferred messages with a pending recipient in
    /// domain SITE (case-insensitive; `[...]` brackets ignored).
    fn flush_site(&mut self, site: &str) {
        let site = site
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let Ok(ids) = self.layout.list(QueueName::Deferred) else {
            return;
        };
        for id in ids {
            if self.active_full() {
                return;
            }
            if self.active.contains_key(&id) {
                continue;
            }
            let Ok(qf) = QueueFile::open_read_only(&self.layout.path(QueueName::Deferred, &id))
            else {
                continue;
            };
            let wanted = qf.envelope.recipients.iter().any(|r| {
                !r.done
                    && r.address
                        .rsplit_once('@')
                        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&site))
            });
            if wanted {
                self.activate(&id, QueueName::Deferred);
            }
        }
    }

    /// Graceful stop: activates and dispatches nothing new, but keeps taking the answers of
    /// outstanding jobs and finishing their messages (recording results, sending the
    /// notices that complete them, removing or deferring them), until no job is left or
    /// `limit` has passed. Whatever is still outstanding then stays in `active/` and is
    /// retried at the next start (a recipient may then be delivered twice).
    fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        // Jobs still waiting for their destination's window never start: their messages
        // stay in active/ and are taken up again at the next start.
        self.stopping = true;
        self.jobs.retain(|_, j| j.waiting.is_none());
        if self.jobs.is_empty() {
            log::info!("terminating on signal");
            return;
        }
        log::info!(
            "terminating on signal: waiting for {} job(s) in progress",
            self.jobs.len()
        );
        while !self.jobs.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "terminating with {} job(s) still in progress; {} message(s) stay in the active queue and are retried at the next start",
                    self.jobs.len(),
                    self.active.len()
                );
                return;
            }
            match self
                .done_rx
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(done) => self.job_done(done),
                Err(RecvTimeoutError::Timeout) => {}
                // The transports hold a sender as long as the scheduler lives.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        log::info!("all jobs finished; exiting");
    }

    /// Scans `deferred/` (after the stranded-file check, whose messages go to `incoming/`).
    fn scan_deferred(&mut self, force: bool) {
        if self.recover_stranded(STRANDED_AGE) > 0 {
            self.scan(QueueName::Incoming, false);
        }
        self.scan(QueueName::Deferred, force);
    }

    /// Moves files that sit in `active/` without a message in memory back to `incoming/`,
    /// so they are retried: left there when finishing (removal, move to `deferred/`) or
    /// activation failed after the rename. Only files unchanged for `min_age` count (a
    /// rename into `active/` updates the inode change time), which keeps this safe even
    /// against a second qmgr working on the same queue. Returns how many were moved.
    fn recover_stranded(&mut self, min_age: Duration) -> usize {
        let ids = match self.layout.list(QueueName::Active) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("{}: {e}", self.layout.dir(QueueName::Active).display());
                return 0;
            }
        };
        let mut moved = 0;
        for id in ids {
            if self.active.contains_key(&id) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(self.layout.path(QueueName::Active, &id)) else {
                continue;
            };
            let changed = u64::try_from(meta.ctime())
                .ok()
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                .unwrap_or(UNIX_EPOCH);
            if since(changed) < min_age {
                continue;
            }
            match self
                .layout
                .move_to(&id, QueueName::Active, QueueName::Incoming)
            {
                Ok(_) => {
                    log::warn!("{id}: stranded in the active queue; moved back to incoming");
                    moved += 1;
                }
                Err(e) => log::warn!("{id}: stranded in the active queue; cannot move it: {e}"),
            }
        }
        moved
    }

    /// Removes `tmp.*` files older than `max_age` from the top of `incoming/`: the
    /// temporary names of `NewQueueFile::create`, left only by a crash between creating and
    /// renaming (no queue file ever lives under such a name). `maildrop/` is pickup's.
    fn remove_stale_temporaries(&self, max_age: Duration) {
        let dir = self.layout.dir(QueueName::Incoming);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                log::warn!("{}: {e}", dir.display());
                return;
            }
        };
        for e in rd.flatten() {
            if !e.file_name().as_encoded_bytes().starts_with(b"tmp.") {
                continue;
            }
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() || meta.modified().map(since).unwrap_or_default() < max_age {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => log::warn!("removed stale temporary file {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove stale temporary file {}: {e}", path.display()),
            }
        }
    }

    /// Activates the ready messages of queue `q`; `force` ignores retry times.
    fn scan(&mut self, q: QueueName, force: bool) {
        if q == QueueName::Incoming {
            let now = Instant::now();
            if now >= self.next_tmp_sweep {
                self.remove_stale_temporaries(STALE_TMP_AGE);
                self.next_tmp_sweep = now + self.s.run_delay;
            }
        }
        let ids = match self.layout.list(q) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("{}: {e}", self.layout.dir(q).display());
                return;
            }
        };
        for id in ids {
            if self.active_full() {
                return;
            }
            if self.active.contains_key(&id) {
                continue;
            }
            let path = self.layout.path(q, &id);
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !file::is_complete(&meta) {
                // cleanup is still writing it, or died (then it no longer holds the file's
                // lock, and the file will never be completed). The age rule covers files
                // written without the lock by older versions.
                let age = meta.modified().map(since).unwrap_or_default();
                if file::writer_gone(&path) || age > Duration::from_secs(86_400) {
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
        let path = match self.layout.move_to(id, from, QueueName::Active) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("{id}: cannot move to active: {e}");
                return;
            }
        };
        // Opened for writing and kept open while the message is active: recipient results
        // are recorded through this descriptor, which still names the file if an
        // administrator renames it meanwhile (postsuper).
        let qf = match QueueFile::open(&path) {
            Ok(q) => q,
            // A file that cannot be moved out of active/ here is stranded: a later
            // deferred scan returns it to incoming/ (recover_stranded).
            Err(e) if e.is_corrupt() => {
                match file::quarantine(&self.layout, &path) {
                    Ok(_) => log::warn!("{e}; moved to corrupt/"),
                    Err(qe) => log::warn!("{e}; cannot move to corrupt/: {qe}"),
                }
                return;
            }
            Err(e) => {
                log::warn!("{e}");
                if let Err(me) = self.layout.move_to(id, QueueName::Active, from) {
                    log::warn!("{id}: cannot move back to {}: {me}", from.as_str());
                }
                return;
            }
        };
        let qfile = qf.file;
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
            file: qfile,
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
        self.rcpts_active += msg.env.recipients.len();
        self.active.insert(id.clone(), msg);
        self.maybe_finish(&id);
    }

    /// Returns every remaining recipient of an expired message to its sender.
    fn expire(&mut self, msg: &mut Msg) {
        // Postfix's one line per message (qmgr_active_done), which log tools count.
        log::info!(
            "{}: from=<{}>, status=expired, returned to sender",
            msg.id,
            msg.env.sender
        );
        let reasons = file::read_log(&self.layout, QueueName::Defer, &msg.id).unwrap_or_default();
        for r in msg.env.recipients.iter().filter(|r| !r.done) {
            let last = reasons.iter().rev().find(|e| e.recipient == r.address);
            let (dsn, reason) = match last {
                Some(e) => (e.dsn.clone(), e.reason.clone()),
                None => ("4.7.0".to_string(), "message expired".to_string()),
            };
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
        let mut touched: Vec<String> = Vec::new();
        let mut groups: Vec<(String, String, Vec<Rcpt>)> = Vec::new();
        let mut settled: Vec<Status> = Vec::new();
        for r in msg.env.recipients.iter().filter(|r| !r.done) {
            let route = match &self.s.resolver {
                Some(res) => res
                    .resolve(&r.address, &msg.env.sender)
                    .map_err(|e| e.to_string()),
                None => Err(self.s.resolver_error.clone()),
            };
            let (t, hop) = match route {
                Ok(route) => (route.transport, route.nexthop),
                Err(why) => {
                    settled.push(Status {
                        offset: r.offset,
                        outcome: Outcome::Deferred,
                        dsn: "4.3.0".into(),
                        relay: "none".into(),
                        reason: format!("address resolver failure: {why}"),
                    });
                    continue;
                }
            };
            // Postfix's error(8), retry and discard(8) transports, done here.
            if let Some(st) = built_in_transport(&t, &hop, r.offset) {
                settled.push(st);
                continue;
            }
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
        for st in settled {
            self.record_status(msg, &st, Instant::now(), true);
        }
        for (t, hop, rcpts) in groups {
            let socket = self.layout.private_socket(&t);
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
                        true,
                    );
                }
                continue;
            }
            // Per-recipient transports (local: local_destination_recipient_limit = 1) have
            // one destination per recipient, as Postfix.
            let dest = if rcpts.len() == 1 && self.rcpt_limit_of(&t) == 1 {
                rcpts[0].address.to_ascii_lowercase()
            } else {
                hop.clone()
            };
            if let Some(why) = self.dests.dead(&t, &dest, Instant::now()) {
                self.suspend(msg, &rcpts, &t, &why);
                continue;
            }
            self.seq += 1;
            let req = Deliver {
                queue_name: "active".into(),
                queue_id: msg.id.to_string(),
                nexthop: hop,
                rcpts: rcpts.clone(),
                // Brought up to date when the job starts (pump).
                timing: timing_of(msg),
            };
            self.jobs.insert(
                self.seq,
                JobInfo {
                    msg: msg.id.clone(),
                    transport: t.clone(),
                    dest: dest.clone(),
                    waiting: Some(Work::Deliver(req)),
                    dispatched: Instant::now(),
                    rcpts,
                    notice: None,
                },
            );
            msg.outstanding += 1;
            let limits = self.s.limits(&t);
            self.dests.enqueue(&t, &dest, self.seq, limits);
            touched.push(t);
        }
        touched.sort();
        touched.dedup();
        for t in touched {
            self.pump(&t);
        }
    }

    fn rcpt_limit_of(&self, t: &str) -> usize {
        if t == self.s.local_transport {
            self.s.local_rcpt_limit
        } else {
            self.s.rcpt_limit
        }
    }

    /// Defers recipients of a destination that is dead for now.
    fn suspend(&mut self, msg: &mut Msg, rcpts: &[Rcpt], t: &str, why: &str) {
        for r in rcpts {
            self.record_status(
                msg,
                &Status {
                    offset: r.offset,
                    outcome: Outcome::Deferred,
                    dsn: "4.4.1".into(),
                    relay: "none".into(),
                    reason: format!("delivery temporarily suspended: {why}"),
                },
                Instant::now(),
                true,
            );
        }
        let _ = t;
    }

    /// Starts the jobs of transport `t` that its destinations' windows allow.
    fn pump(&mut self, t: &str) {
        if self.stopping {
            return;
        }
        let socket = self.layout.private_socket(t);
        for seq in self.dests.ready(t, Instant::now()) {
            let Some(info) = self.jobs.get_mut(&seq) else {
                continue;
            };
            let Some(mut work) = info.waiting.take() else {
                continue;
            };
            info.dispatched = Instant::now();
            if let (Work::Deliver(req), Some(msg)) = (&mut work, self.active.get(&info.msg)) {
                req.timing = timing_of(msg);
            }
            self.transports
                .submit(t, socket.clone(), self.s.process_limit, Job { seq, work });
        }
    }

    fn job_done(&mut self, done: Done) {
        let Some(info) = self.jobs.remove(&done.seq) else {
            return;
        };
        self.transports.finished(&info.transport);
        let mut suspended: Option<(Vec<u64>, String)> = None;
        if info.notice.is_none() {
            let fb = feedback(&done.answer);
            suspended = self
                .dests
                .done(&info.transport, &info.dest, fb, Instant::now());
        }
        self.finish_job(info, done);
        if let Some((jobs, why)) = suspended {
            for seq in jobs {
                let Some(j) = self.jobs.remove(&seq) else {
                    continue;
                };
                let Some(mut m) = self.active.remove(&j.msg) else {
                    continue;
                };
                m.outstanding = m.outstanding.saturating_sub(1);
                self.suspend(&mut m, &j.rcpts, &j.transport, &why);
                let id = m.id.clone();
                self.active.insert(id.clone(), m);
                self.maybe_finish(&id);
            }
        }
    }

    fn finish_job(&mut self, info: JobInfo, done: Done) {
        let transport = info.transport.clone();
        let Some(mut msg) = self.active.remove(&info.msg) else {
            self.pump(&transport);
            return;
        };
        msg.outstanding = msg.outstanding.saturating_sub(1);
        let info_is_delivery = info.notice.is_none();
        match (info.notice, done.answer) {
            (None, Answer::Delivered(statuses, setup)) => {
                self.setup = setup;
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
                    self.record_status(&mut msg, &st, done.started, false);
                }
                self.setup = None;
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
                    self.record_status(&mut msg, &st, info.dispatched, true);
                }
            }
            (Some(kind), answer) => {
                let ok = matches!(answer, Answer::Notified(bounce::Reply::Sent(_)));
                if kind == NoticeKind::Failure {
                    if ok {
                        for off in &msg.bouncing {
                            if let Err(e) = file::mark_done(&msg.file, *off) {
                                log::warn!("{}: cannot record a bounced recipient: {e}", msg.id);
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
                } else if !ok {
                    // Like Postfix, a success or delay notice is not worth keeping the
                    // message for: the recipients are done. Say that it was lost.
                    let why = match answer {
                        Answer::Failed(w) | Answer::Notified(bounce::Reply::Failed(w)) => w,
                        _ => String::new(),
                    };
                    log::warn!(
                        "{}: cannot send the {} notification: {why}; not retried",
                        msg.id,
                        match kind {
                            NoticeKind::Success => "delivery status",
                            _ => "delay",
                        }
                    );
                }
            }
            (None, Answer::Notified(_)) => {}
        }
        let id = msg.id.clone();
        self.active.insert(id.clone(), msg);
        self.maybe_finish(&id);
        if info_is_delivery {
            self.pump(&transport);
        }
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
        let a = since(msg.arrival).saturating_sub(now.duration_since(msg.activated));
        let (b, d) = match dispatched {
            Some(t) => (t.duration_since(msg.activated), now.duration_since(t)),
            None => (now.duration_since(msg.activated), Duration::ZERO),
        };
        let line = delivery_log::Line {
            queue_id: &msg.id.to_string(),
            rcpt,
            orig,
            relay,
            delays: delivery_log::Delays {
                total: since(msg.arrival),
                a,
                b,
                c: Duration::ZERO,
                d,
            },
            dsn,
            status,
            reason,
        };
        log::info!("{}", line.text());
    }

    /// Records one recipient's result; `log` is false when the delivery agent already
    /// wrote the log line (its own results), true for results qmgr decides itself.
    fn record_status(&mut self, msg: &mut Msg, st: &Status, dispatched: Instant, log: bool) {
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
                if log {
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
                }
                if let Err(e) = file::mark_done(&msg.file, r.offset) {
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
                if log {
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
                }
                msg.deferred.push(LogEntry {
                    recipient: r.address.clone(),
                    orig,
                    dsn,
                    reason: st.reason.clone(),
                });
            }
            Outcome::Bounced => {
                if log {
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
                }
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
        // No job of this message is left (outstanding counts them all).
        if !msg.bounced.is_empty() && !msg.bouncing.is_empty() {
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
        // From here on the message leaves the active queue, unless a notice is sent first.
        self.rcpts_active = self.rcpts_active.saturating_sub(msg.env.recipients.len());
        if !msg.path.exists() {
            // Deleted (postsuper -d) or moved away (postsuper -h) by the administrator while
            // it was being delivered: whoever did that logged it; it is no longer ours.
            if !self.layout.path(QueueName::Hold, id).exists() {
                let _ = fs::remove_file(self.layout.path(QueueName::Defer, id));
            }
            return;
        }
        let remaining = msg.env.recipients.iter().any(|r| !r.done);
        if !remaining {
            if let Err(e) = fs::remove_file(&msg.path) {
                // Every recipient is done: when the stranded-file check retries it, it is
                // found finished and removed then.
                log::warn!("{id}: cannot remove: {e}");
                return;
            }
            let _ = fs::remove_file(self.layout.path(QueueName::Defer, id));
            log::info!("{id}: removed");
            return;
        }
        if self.delay_warning_due(&msg) {
            // Postfix's "delayed mail" notice, once per message: the file's group-write
            // bit records that it was sent (queue files are otherwise 0700).
            if let Err(e) = msg.file.set_permissions(fs::Permissions::from_mode(
                msg.file.metadata().map_or(0o700, |m| m.mode() & 0o7777) | DELAY_WARNED,
            )) {
                log::warn!("{id}: cannot record the delay warning: {e}");
            }
            let entries = msg
                .deferred
                .iter()
                .map(|d| Entry {
                    recipient: d.recipient.clone(),
                    orig: d.orig.clone(),
                    dsn: d.dsn.clone(),
                    relay: "none".into(),
                    reason: d.reason.clone(),
                })
                .collect();
            self.notify(&mut msg, NoticeKind::Delay, entries);
            self.rcpts_active += msg.env.recipients.len();
            self.active.insert(id.clone(), msg);
            return;
        }
        if !msg.deferred.is_empty()
            && let Err(e) = file::append_log(&self.layout, QueueName::Defer, id, &msg.deferred)
        {
            log::warn!("{e}");
        }
        let delay = since(msg.arrival).clamp(
            self.s.min_backoff,
            self.s.max_backoff.max(self.s.min_backoff),
        );
        match self
            .layout
            .move_to(id, QueueName::Active, QueueName::Deferred)
        {
            Ok(_) => {
                if let Err(e) = msg.file.set_modified(SystemTime::now() + delay) {
                    log::warn!("{id}: cannot set the retry time: {e}");
                }
            }
            // The message is not kept in memory for another try: the file stays in
            // active/ and the stranded-file check of a later deferred scan moves it back to
            // incoming/, the same recovery as for a failed activation or removal. That
            // retries it at the first deferred scan a minute or more later instead of after
            // its backoff, which is harmless (a failing rename means local trouble), and
            // needs no extra state that would hold an active slot and a retry timer of its
            // own.
            Err(e) => log::warn!(
                "{id}: cannot move to deferred: {e}; left in the active queue, to be retried"
            ),
        }
    }

    /// Whether the in-memory active queue is full: `qmgr_message_active_limit` messages, or
    /// `qmgr_message_recipient_limit` recipients (one message is always let in, however
    /// large, so that a huge mailing still moves).
    fn active_full(&self) -> bool {
        self.active.len() >= self.s.active_limit
            || (!self.active.is_empty() && self.rcpts_active >= self.s.rcpt_memory_limit)
    }

    /// Whether a deferred message is due its delay warning now.
    fn delay_warning_due(&self, msg: &Msg) -> bool {
        !self.s.delay_warning.is_zero()
            && !msg.deferred.is_empty()
            && !msg.env.sender.is_empty()
            && since(msg.arrival) >= self.s.delay_warning
            && msg
                .file
                .metadata()
                .is_ok_and(|m| m.mode() & DELAY_WARNED == 0)
    }

    fn notify(&mut self, msg: &mut Msg, kind: NoticeKind, entries: Vec<Entry>) {
        self.seq += 1;
        let req = Notify {
            kind,
            queue_name: "active".into(),
            queue_id: msg.id.to_string(),
            entries,
        };
        let socket = self.layout.private_socket(posthorn_proto::service::BOUNCE);
        self.jobs.insert(
            self.seq,
            JobInfo {
                msg: msg.id.clone(),
                transport: "bounce".into(),
                dest: String::new(),
                waiting: None,
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
    use posthorn_proto::delivery;
    use posthorn_proto::{Conn, Frame, FrameReader};
    use posthorn_queue::DirOwner;
    use posthorn_queue::file::{NewQueueFile, Recipient, SizeRecord};
    use posthorn_queue::record::kind;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn instance() -> (tempfile::TempDir, QueueLayout, Config) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("q");
        let layout = QueueLayout::new(&root, &["deferred".into()], 1);
        layout.create_tree(&DirOwner::default()).unwrap();
        let mut c = Config::defaults();
        c.set("queue_directory", root.to_str().unwrap());
        c.set("mydestination", "localhost");
        c.set("local_transport", "local");
        (tmp, layout, c)
    }

    /// Queues a message in `q` with recipients (address, NOTIFY).
    fn queue_message(l: &QueueLayout, q: QueueName, rcpts: &[(&str, Option<&str>)]) -> QueueId {
        let mut f = NewQueueFile::create(l, q).unwrap();
        let env = Envelope {
            sender: "s@example.org".into(),
            arrival: Some(SystemTime::now()),
            recipients: rcpts
                .iter()
                .map(|(a, n)| Recipient {
                    address: (*a).into(),
                    notify: n.map(Into::into),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        env.write_records(f.writer()).unwrap();
        let body = b"Subject: t\n\nhi\n";
        let m = f.put(kind::MESG, b"").unwrap();
        f.put_content(body).unwrap();
        f.put(kind::XTRA, b"").unwrap();
        f.commit(SizeRecord {
            content_size: body.len() as u64,
            content_offset: m,
            recipients: rcpts.len() as u64,
            flags: 0,
        })
        .unwrap()
    }

    /// A fake service at `private/NAME` that greets with `proto` and answers each request
    /// with `answer` after `delay`; returns the count of requests seen.
    fn agent(
        l: &QueueLayout,
        name: &str,
        proto: &'static str,
        version: u64,
        delay: Duration,
        answer: impl Fn(FrameReader<'_>) -> Frame + Send + 'static,
    ) -> Arc<AtomicUsize> {
        let listener = UnixListener::bind(l.private_socket(name)).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&seen);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                let mut c = Conn::new(s).unwrap();
                if c.greet(proto, version).is_err() {
                    continue;
                }
                while let Ok(r) = c.read_frame() {
                    let f = answer(r);
                    count.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(delay);
                    if c.send(&f).and_then(|()| c.flush()).is_err() {
                        break;
                    }
                }
            }
        });
        seen
    }

    /// A delivery agent answering `outcome` for every recipient.
    fn local_agent(l: &QueueLayout, delay: Duration, outcome: Outcome) -> Arc<AtomicUsize> {
        agent(
            l,
            "local",
            delivery::PROTOCOL,
            delivery::VERSION,
            delay,
            move |r| {
                let d = Deliver::decode(r).unwrap();
                let st: Vec<Status> = d
                    .rcpts
                    .iter()
                    .map(|r| Status {
                        offset: r.offset,
                        outcome,
                        dsn: if outcome == Outcome::Sent {
                            "2.0.0"
                        } else {
                            "5.1.1"
                        }
                        .into(),
                        relay: "local".into(),
                        reason: "test".into(),
                    })
                    .collect();
                delivery::reply_frame(&st)
            },
        )
    }

    /// The bounce daemon, answering `reply` to every notice.
    fn bounce_agent(l: &QueueLayout, reply: bounce::Reply) -> Arc<AtomicUsize> {
        agent(
            l,
            "bounce",
            bounce::PROTOCOL,
            bounce::VERSION,
            Duration::ZERO,
            move |r| {
                Notify::decode(r).unwrap();
                reply.frame()
            },
        )
    }

    fn all_files(l: &QueueLayout) -> Vec<(QueueName, QueueId)> {
        let mut v = Vec::new();
        for q in [
            QueueName::Incoming,
            QueueName::Active,
            QueueName::Deferred,
            QueueName::Corrupt,
        ] {
            for id in l.list(q).unwrap() {
                v.push((q, id));
            }
        }
        v
    }

    #[test]
    fn graceful_stop_records_answers_that_arrive_later() {
        let (_t, l, c) = instance();
        local_agent(&l, Duration::from_millis(300), Outcome::Sent);
        let id = queue_message(&l, QueueName::Incoming, &[("u@localhost", None)]);
        let mut s = Scheduler::new(&c, l.clone());
        s.scan(QueueName::Incoming, false);
        assert_eq!(s.jobs.len(), 1);
        assert!(l.path(QueueName::Active, &id).exists());
        s.drain(Duration::from_secs(10));
        assert!(s.jobs.is_empty() && s.active.is_empty());
        assert!(all_files(&l).is_empty(), "{:?}", all_files(&l));
    }

    #[test]
    fn graceful_stop_sends_the_notices_that_complete_a_message() {
        let (_t, l, c) = instance();
        local_agent(&l, Duration::from_millis(100), Outcome::Bounced);
        let notices = bounce_agent(&l, bounce::Reply::Sent("N".into()));
        queue_message(&l, QueueName::Incoming, &[("u@localhost", None)]);
        let mut s = Scheduler::new(&c, l.clone());
        s.scan(QueueName::Incoming, false);
        s.drain(Duration::from_secs(10));
        assert_eq!(notices.load(Ordering::SeqCst), 1);
        assert!(s.jobs.is_empty());
        assert!(all_files(&l).is_empty(), "{:?}", all_files(&l));
    }

    #[test]
    fn graceful_stop_gives_up_at_its_limit() {
        let (_t, l, c) = instance();
        local_agent(&l, Duration::from_secs(30), Outcome::Sent);
        let id = queue_message(&l, QueueName::Incoming, &[("u@localhost", None)]);
        let mut s = Scheduler::new(&c, l.clone());
        s.scan(QueueName::Incoming, false);
        let start = Instant::now();
        s.drain(Duration::from_millis(300));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(s.jobs.len(), 1);
        // Left in active/: the next start retries it.
        assert_eq!(all_files(&l), vec![(QueueName::Active, id)]);
    }

    #[test]
    fn a_failed_success_notice_does_not_keep_the_message() {
        let (_t, l, c) = instance();
        local_agent(&l, Duration::ZERO, Outcome::Sent);
        let notices = bounce_agent(&l, bounce::Reply::Failed("cleanup is down".into()));
        queue_message(&l, QueueName::Incoming, &[("u@localhost", Some("SUCCESS"))]);
        let mut s = Scheduler::new(&c, l.clone());
        s.scan(QueueName::Incoming, false);
        s.drain(Duration::from_secs(10));
        assert_eq!(notices.load(Ordering::SeqCst), 1);
        assert!(s.jobs.is_empty() && s.active.is_empty());
        assert!(all_files(&l).is_empty(), "{:?}", all_files(&l));
    }

    #[test]
    fn stranded_active_files_go_back_to_incoming() {
        let (_t, l, c) = instance();
        local_agent(&l, Duration::from_secs(30), Outcome::Sent);
        let busy = queue_message(&l, QueueName::Incoming, &[("u@localhost", None)]);
        let mut s = Scheduler::new(&c, l.clone());
        s.scan(QueueName::Incoming, false);
        assert!(s.active.contains_key(&busy));
        // As if a move to deferred/ had failed: in active/, unknown to the scheduler.
        let lost = queue_message(&l, QueueName::Active, &[("v@localhost", None)]);
        // Too recent: left alone.
        assert_eq!(s.recover_stranded(STRANDED_AGE), 0);
        assert!(l.path(QueueName::Active, &lost).exists());
        assert_eq!(s.recover_stranded(Duration::ZERO), 1);
        assert!(l.path(QueueName::Incoming, &lost).exists());
        // The message being worked on stays where it is.
        assert!(l.path(QueueName::Active, &busy).exists());
    }

    #[test]
    fn incomplete_files_are_removed_only_when_their_writer_is_gone() {
        let (_t, l, c) = instance();
        let writing = NewQueueFile::create(&l, QueueName::Incoming).unwrap();
        let dead = NewQueueFile::create(&l, QueueName::Incoming).unwrap();
        let dead_path = dead.path().to_path_buf();
        // A writer killed mid-file: its lock is gone, the incomplete file stays.
        let partial = fs::read(&dead_path).unwrap();
        drop(dead);
        fs::write(&dead_path, partial).unwrap();
        let mut s = Scheduler::new(&c, l.clone());
        s.scan(QueueName::Incoming, false);
        assert!(!dead_path.exists());
        assert!(writing.path().exists());
        assert!(s.active.is_empty());
    }

    #[test]
    fn incoming_scans_remove_stale_temporary_files_only() {
        let (_t, l, c) = instance();
        let old = SystemTime::now() - Duration::from_secs(7200);
        let make = |p: PathBuf, t: SystemTime| {
            let f = fs::File::create(&p).unwrap();
            f.set_modified(t).unwrap();
            p
        };
        let incoming = l.dir(QueueName::Incoming);
        let stale = make(incoming.join("tmp.123.456.0"), old);
        let fresh = make(incoming.join("tmp.123.789.0"), SystemTime::now());
        let other = make(incoming.join("tmpfile"), old);
        let maildrop = make(l.dir(QueueName::Maildrop).join("tmp.1.2.0"), old);
        let mut s = Scheduler::new(&c, l.clone());
        s.scan(QueueName::Incoming, false);
        assert!(!stale.exists());
        assert!(fresh.exists() && other.exists() && maildrop.exists());
    }
}
