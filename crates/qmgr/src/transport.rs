//! Connections to delivery agents and to bounce, one worker thread per connection.
//!
//! The scheduler (main thread) owns all queue state; workers only carry one request at a
//! time over a long-lived connection to an agent and hand the answer back through a
//! channel, waking the scheduler's poll with a byte on a socket pair. This is the "small,
//! justified thread model": agents answer synchronously, and a blocked agent must not
//! stall the scheduler.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use posthorn_proto::bounce::{self, Notify};
use posthorn_proto::delivery::{self, Deliver, Status};
use posthorn_proto::{Conn, ProtoError};

/// What a worker is asked to do.
pub enum Work {
    /// A delivery request to an agent.
    Deliver(Deliver),
    /// A notice request to bounce.
    Notify(Notify),
}

/// A job and its identity.
pub struct Job {
    /// Sequence number, to match the answer.
    pub seq: u64,
    /// The request.
    pub work: Work,
}

/// A worker's answer.
pub enum Answer {
    /// Per-recipient statuses from an agent, and its connection setup time if it said.
    Delivered(Vec<Status>, Option<Duration>),
    /// The bounce daemon's reply.
    Notified(bounce::Reply),
    /// The agent could not be reached or broke the protocol.
    Failed(String),
}

/// A finished job.
pub struct Done {
    /// The job's sequence number.
    pub seq: u64,
    /// When the worker started on it.
    pub started: Instant,
    /// The answer.
    pub answer: Answer,
}

/// Time limits of a worker's connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Connecting and reading the agent's greeting. Short: an agent that crash-loops or that
    /// master throttles never greets, and its worker must not hang on it.
    pub greeting: Duration,
    /// One request and its answer (`ipc_timeout`): a delivery may legitimately take long.
    pub request: Duration,
}

impl Timeouts {
    /// The connect-and-greeting limit qmgr uses (30 s).
    pub const GREETING: Duration = Duration::from_secs(30);
}

struct Pool {
    tx: Sender<Job>,
    rx: Arc<Mutex<Receiver<Job>>>,
    workers: usize,
    limit: usize,
    socket: PathBuf,
    queued: usize,
}

/// All transports' worker pools.
pub struct Transports {
    pools: HashMap<String, Pool>,
    done_tx: Sender<Done>,
    wake: UnixStream,
    timeouts: Timeouts,
}

impl Transports {
    /// Creates the pools' shared answer channel; `wake` is written to on every answer.
    pub fn new(done_tx: Sender<Done>, wake: UnixStream, timeouts: Timeouts) -> Self {
        Transports {
            pools: HashMap::new(),
            done_tx,
            wake,
            timeouts,
        }
    }

    /// Queues a job for `transport` (socket `socket`, at most `limit` connections).
    pub fn submit(&mut self, transport: &str, socket: PathBuf, limit: usize, job: Job) {
        let pool = self.pools.entry(transport.to_string()).or_insert_with(|| {
            let (tx, rx) = channel();
            Pool {
                tx,
                rx: Arc::new(Mutex::new(rx)),
                workers: 0,
                limit: limit.max(1),
                socket: socket.clone(),
                queued: 0,
            }
        });
        pool.queued += 1;
        if pool.workers < pool.limit && pool.queued > 0 {
            pool.workers += 1;
            let rx = Arc::clone(&pool.rx);
            let done = self.done_tx.clone();
            let wake = self.wake.try_clone().ok();
            let socket = pool.socket.clone();
            let name = transport.to_string();
            let timeouts = self.timeouts;
            std::thread::Builder::new()
                .name(format!("{name}-worker"))
                .spawn(move || worker(&socket, &rx, &done, wake, timeouts))
                .unwrap_or_else(|e| {
                    posthorn_log::fatal(format!("cannot start a worker thread: {e}"))
                });
        }
        // The receiver lives as long as any worker; a send error means every worker died,
        // which they only do on channel shutdown.
        let _ = pool.tx.send(job);
    }

    /// Records that a job of `transport` finished (for the spawn decision).
    pub fn finished(&mut self, transport: &str) {
        if let Some(p) = self.pools.get_mut(transport) {
            p.queued = p.queued.saturating_sub(1);
        }
    }
}

fn worker(
    socket: &std::path::Path,
    rx: &Arc<Mutex<Receiver<Job>>>,
    done: &Sender<Done>,
    wake: Option<UnixStream>,
    timeouts: Timeouts,
) {
    let mut conn: Option<Conn> = None;
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let started = Instant::now();
        // A request is written at most once: a second attempt after a failure could deliver
        // twice (the agent may have delivered before it died). Failures defer instead.
        let answer = match run(&mut conn, socket, &job.work, timeouts) {
            Ok(a) => a,
            Err(e) => {
                conn = None;
                Answer::Failed(e.to_string())
            }
        };
        if done
            .send(Done {
                seq: job.seq,
                started,
                answer,
            })
            .is_err()
        {
            return;
        }
        if let Some(w) = &wake {
            let _ = (&*w).write(&[1]);
        }
    }
}

/// Whether a kept connection was closed (or spoke out of turn) while idle.
fn is_stale(c: &Conn) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    if c.has_buffered() {
        return true;
    }
    let mut fds = [PollFd::new(c.stream().as_fd(), PollFlags::POLLIN)];
    !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

fn run(
    conn: &mut Option<Conn>,
    socket: &std::path::Path,
    work: &Work,
    timeouts: Timeouts,
) -> Result<Answer, ProtoError> {
    let (proto, version) = match work {
        Work::Deliver(_) => (delivery::PROTOCOL, delivery::VERSION),
        Work::Notify(_) => (bounce::PROTOCOL, bounce::VERSION),
    };
    // An agent closes its end after max_use requests or max_idle seconds: notice that
    // before writing, so a request is never sent into a dead connection.
    if conn.as_ref().is_some_and(is_stale) {
        *conn = None;
    }
    if conn.is_none() {
        // Connect and greeting under the short limit; the request under the long one.
        let c = Conn::connect(socket, proto, version, Some(timeouts.greeting))?;
        let request = Some(timeouts.request.max(Duration::from_secs(1)));
        c.stream().set_read_timeout(request)?;
        c.stream().set_write_timeout(request)?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Err(ProtoError::Closed);
    };
    match work {
        Work::Deliver(d) => {
            c.send(&d.frame())?;
            c.flush()?;
            let (st, setup) = delivery::decode_reply_timed(c.read_frame()?)?;
            Ok(Answer::Delivered(st, setup))
        }
        Work::Notify(n) => {
            c.send(&n.frame())?;
            c.flush()?;
            Ok(Answer::Notified(bounce::Reply::decode(c.read_frame()?)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn request() -> Work {
        Work::Deliver(Deliver {
            queue_name: "active".into(),
            queue_id: "X".into(),
            nexthop: "localhost".into(),
            rcpts: vec![delivery::Rcpt {
                offset: 7,
                address: "u@localhost".into(),
                orig: String::new(),
            }],
            timing: Default::default(),
        })
    }

    #[test]
    fn an_agent_that_never_greets_fails_at_the_greeting_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("local");
        // Listening but never accepting: connect succeeds, the greeting never comes.
        let _l = UnixListener::bind(&path).unwrap();
        let t = Timeouts {
            greeting: Duration::from_millis(200),
            request: Duration::from_secs(3600),
        };
        let start = Instant::now();
        let mut conn = None;
        assert!(run(&mut conn, &path, &request(), t).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(conn.is_none());
    }

    #[test]
    fn a_request_may_take_longer_than_the_greeting_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("local");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut c = Conn::new(s).unwrap();
            c.greet(delivery::PROTOCOL, delivery::VERSION).unwrap();
            let d = Deliver::decode(c.read_frame().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(600));
            let st: Vec<Status> = d
                .rcpts
                .iter()
                .map(|r| Status {
                    offset: r.offset,
                    outcome: delivery::Outcome::Sent,
                    dsn: "2.0.0".into(),
                    relay: "local".into(),
                    reason: "delivered".into(),
                })
                .collect();
            c.send(&delivery::reply_frame(&st)).unwrap();
            c.flush().unwrap();
        });
        let t = Timeouts {
            greeting: Duration::from_millis(200),
            request: Duration::from_secs(10),
        };
        let mut conn = None;
        match run(&mut conn, &path, &request(), t) {
            Ok(Answer::Delivered(st, _)) => assert_eq!(st[0].offset, 7),
            Ok(_) => panic!("unexpected answer"),
            Err(e) => panic!("request failed: {e}"),
        }
        let c = conn.expect("connection kept");
        assert_eq!(
            c.stream().read_timeout().unwrap(),
            Some(Duration::from_secs(10))
        );
    }
}
