//! The `delivery_protocol` server side shared by local and virtual: greet qmgr, then answer
//! each `Deliver` request with one status per recipient, on one long-lived connection.
//!
//! Each request is checked before any path is built from it: the queue name must be
//! `active` and the queue ID must parse. A request that fails those checks, or whose queue
//! file cannot be read, defers every recipient (4.3.0) with the reason: qmgr keeps the mail.

use std::os::unix::net::UnixStream;

use posthorn_proto::delivery::{Deliver, PROTOCOL, Rcpt, Status, VERSION, reply_frame};
use posthorn_proto::{Conn, ProtoError};
use posthorn_queue::file::QueueFile;
use posthorn_queue::{QueueId, QueueLayout, QueueName};
use posthorn_server::Daemon;

use crate::deliver::{CleanupForwarder, LocalAgent, VirtualAgent};
use crate::message::Message;
use crate::settings::{LocalSettings, VirtualSettings};
use crate::status::{Failure, StepResult, status};

/// Handles one request: validates it, opens the queue file read-only, loads the message and
/// calls `each` for every recipient, in order.
pub fn handle_request(
    layout: &QueueLayout,
    req: &Deliver,
    relay: &str,
    memory_limit: u64,
    each: &mut dyn FnMut(&Message<'_>, &Rcpt) -> StepResult,
) -> Vec<Status> {
    let all = |f: Failure| {
        req.rcpts
            .iter()
            .map(|r| status(r.offset, relay, &Err(f.clone())))
            .collect()
    };
    if req.queue_name != QueueName::Active.as_str() {
        log::warn!(
            "{}: delivery request for queue \"{}\", expected active",
            req.queue_id,
            req.queue_name
        );
        return all(Failure::defer(
            "4.3.0",
            format!("bad queue name \"{}\" in delivery request", req.queue_name),
        ));
    }
    let id = match QueueId::parse(&req.queue_id) {
        Ok(id) => id,
        Err(e) => {
            log::warn!("delivery request: {e}");
            return all(Failure::defer("4.3.0", e.to_string()));
        }
    };
    let qf = match QueueFile::open_read_only(&layout.path(QueueName::Active, &id)) {
        Ok(qf) => qf,
        Err(e) => {
            log::warn!("{id}: {e}");
            return all(Failure::defer(
                "4.3.0",
                format!("cannot read queue file: {e}"),
            ));
        }
    };
    let msg = match Message::load(&qf, id.as_str(), memory_limit) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("{id}: reading {}: {e}", qf.path.display());
            return all(Failure::defer(
                "4.3.0",
                format!("error reading queue file: {e}"),
            ));
        }
    };
    req.rcpts
        .iter()
        .map(|r| status(r.offset, relay, &each(&msg, r)))
        .collect()
}

/// Serves one qmgr connection: greeting, then requests until the peer closes, the daemon is
/// asked to stop, or a protocol error (which ends the connection).
pub fn serve(
    d: &Daemon,
    stream: UnixStream,
    handle: &mut dyn FnMut(&Deliver) -> Vec<Status>,
) -> Result<(), ProtoError> {
    let soft_bounce = d.config.get_bool("soft_bounce");
    serve_conn(
        stream,
        &mut |s| d.wait_readable(s, None),
        handle,
        soft_bounce,
    )
}

/// [`serve`] with the wait for input injected: `wait` returns false to stop serving. Each
/// result is logged here (Postfix's `to=<...>, relay=local, ... status=sent` line).
pub fn serve_conn(
    stream: UnixStream,
    wait: &mut dyn FnMut(&UnixStream) -> bool,
    handle: &mut dyn FnMut(&Deliver) -> Vec<Status>,
    soft_bounce: bool,
) -> Result<(), ProtoError> {
    let mut conn = Conn::new(stream)?;
    conn.greet(PROTOCOL, VERSION)?;
    loop {
        if !conn.has_buffered() && !wait(conn.stream()) {
            return Ok(());
        }
        let req = match conn.read_frame() {
            Ok(frame) => Deliver::decode(frame)?,
            Err(ProtoError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let started = std::time::Instant::now();
        let statuses = handle(&req);
        posthorn_server::delivery_log::log_results(&req, &statuses, started, None, soft_bounce);
        conn.send(&reply_frame(&statuses))?;
        conn.flush()?;
    }
}

fn warn_unprivileged(program: &str) {
    if !posthorn_sys::is_root() {
        let (_, euid) = posthorn_sys::uids();
        log::warn!(
            "{program}: not running as root: delivering all mail with the rights of uid {euid}"
        );
    }
}

/// The `local` program after its helper check: serve qmgr until master says stop.
pub fn run_local() {
    let d = posthorn_server::start("local");
    warn_unprivileged("local");
    let mut agent = LocalAgent::new(LocalSettings::from_config(&d.config));
    let mut fwd = CleanupForwarder::new(d.layout.clone());
    d.serve_single(move |d, stream| {
        let mut handle = |req: &Deliver| {
            agent.before_request();
            let limit = agent.settings.memory_limit;
            handle_request(&d.layout, req, "local", limit, &mut |m, r| {
                agent.deliver(m, r, &mut fwd)
            })
        };
        if let Err(e) = serve(d, stream, &mut handle) {
            log::warn!("local: qmgr connection: {e}");
        }
    });
}

/// The `virtual` program: serve qmgr until master says stop.
pub fn run_virtual() {
    let d = posthorn_server::start("virtual");
    warn_unprivileged("virtual");
    let mut agent = VirtualAgent::new(VirtualSettings::from_config(&d.config));
    d.serve_single(move |d, stream| {
        let mut handle = |req: &Deliver| {
            agent.before_request();
            let limit = agent.settings.memory_limit;
            handle_request(&d.layout, req, "virtual", limit, &mut |m, r| {
                agent.deliver(m, r)
            })
        };
        if let Err(e) = serve(d, stream, &mut handle) {
            log::warn!("virtual: qmgr connection: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_proto::Frame;
    use posthorn_proto::delivery::{Outcome, decode_reply};

    #[test]
    fn protocol_round_trips_and_ends_on_close_or_junk() {
        let (server, client) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut handle = |req: &Deliver| {
                req.rcpts
                    .iter()
                    .map(|r| {
                        status(
                            r.offset,
                            "local",
                            &Err(Failure::bounce(
                                "5.1.1",
                                format!("unknown user: \"{}\"", r.address),
                            )),
                        )
                    })
                    .collect()
            };
            serve_conn(server, &mut |_| true, &mut handle, false)
        });
        let mut c = Conn::new(client).unwrap();
        let mut hello = c.read_frame().unwrap();
        assert_eq!(
            (hello.kind, hello.str().unwrap(), hello.u64().unwrap()),
            (b'H', PROTOCOL.to_string(), VERSION)
        );
        for n in 0..3u64 {
            let req = Deliver {
                queue_name: "active".into(),
                queue_id: "x".into(),
                nexthop: "example.test".into(),
                rcpts: vec![Rcpt {
                    offset: 10 + n,
                    address: format!("u{n}"),
                    orig: String::new(),
                }],
                timing: Default::default(),
            };
            c.send(&req.frame()).unwrap();
        }
        c.flush().unwrap();
        for n in 0..3u64 {
            let st = decode_reply(c.read_frame().unwrap()).unwrap();
            assert_eq!(st.len(), 1);
            assert_eq!(
                (st[0].offset, st[0].outcome, st[0].reason.clone()),
                (10 + n, Outcome::Bounced, format!("unknown user: \"u{n}\""))
            );
        }
        // A frame that is not a request ends the connection with an error.
        c.send(&Frame::new(b'Z').str("junk")).unwrap();
        c.flush().unwrap();
        assert!(t.join().unwrap().is_err());

        // A clean close ends it quietly.
        let (server, client) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            serve_conn(server, &mut |_| true, &mut |_| Vec::new(), false)
        });
        let mut c = Conn::new(client).unwrap();
        assert_eq!(c.read_frame().unwrap().kind, b'H');
        drop(c);
        assert!(t.join().unwrap().is_ok());
    }
}
