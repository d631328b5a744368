//! The `delivery_protocol` server side: greet qmgr, then answer each `Deliver` request
//! with one status per recipient, reading the message from the queue file (read-only).
//! While waiting for the next request, idle cached SMTP sessions are expired.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use posthorn_proto::delivery::{Deliver, Outcome, PROTOCOL, Status, VERSION, reply_frame_timed};
use posthorn_proto::{Conn, ProtoError};
use posthorn_queue::file::QueueFile;
use posthorn_queue::{QueueId, QueueLayout, QueueName};
use posthorn_server::Daemon;

use crate::content::has_8bit;
use crate::deliver::Agent;
use crate::route::{NativeResolver, Resolver};
use crate::session::{Content, Recipient, Request};
use crate::settings::SmtpSettings;

/// A queue file's content.
struct QueueContent<'a> {
    qf: &'a QueueFile,
    eight_bit: bool,
}

impl Content for QueueContent<'_> {
    fn size(&self) -> u64 {
        self.qf.envelope.size.content_size
    }
    fn eight_bit(&self) -> bool {
        self.eight_bit
    }
    fn reader(&self) -> Box<dyn std::io::Read + '_> {
        Box::new(self.qf.content())
    }
}

/// Every recipient of `req` deferred with `reason`.
fn defer_all(req: &Deliver, dsn: &str, reason: &str) -> Vec<Status> {
    req.rcpts
        .iter()
        .map(|r| Status {
            offset: r.offset,
            outcome: Outcome::Deferred,
            dsn: dsn.to_string(),
            relay: "none".into(),
            reason: reason.to_string(),
        })
        .collect()
}

/// Handles one request: validates it, opens the queue file read-only and delivers.
pub fn handle_request(agent: &mut Agent, layout: &QueueLayout, req: &Deliver) -> Vec<Status> {
    if req.queue_name != QueueName::Active.as_str() {
        log::warn!(
            "{}: delivery request for queue \"{}\", expected active",
            req.queue_id,
            req.queue_name
        );
        return defer_all(
            req,
            "4.3.0",
            &format!("bad queue name \"{}\" in delivery request", req.queue_name),
        );
    }
    let id = match QueueId::parse(&req.queue_id) {
        Ok(id) => id,
        Err(e) => {
            log::warn!("delivery request: {e}");
            return defer_all(req, "4.3.0", &e.to_string());
        }
    };
    let qf = match QueueFile::open_read_only(&layout.path(QueueName::Active, &id)) {
        Ok(qf) => qf,
        Err(e) => {
            log::warn!("{id}: {e}");
            return defer_all(req, "4.3.0", &format!("cannot read queue file: {e}"));
        }
    };
    let eight_bit = match has_8bit(&mut qf.content()) {
        Ok(b) => b,
        Err(e) => {
            log::warn!("{id}: reading {}: {e}", qf.path.display());
            return defer_all(req, "4.3.0", &format!("error reading queue file: {e}"));
        }
    };
    let env = &qf.envelope;
    let rcpts: Vec<Recipient> = req
        .rcpts
        .iter()
        .map(|r| {
            let rec = env.recipients.iter().find(|x| x.offset == r.offset);
            Recipient {
                offset: r.offset,
                address: r.address.clone(),
                notify: rec.and_then(|x| x.notify.clone()),
                orcpt: rec.and_then(|x| x.orcpt.clone()),
            }
        })
        .collect();
    let content = QueueContent { qf: &qf, eight_bit };
    let request = Request {
        queue_id: id.as_str(),
        nexthop: &req.nexthop,
        sender: &env.sender,
        envid: env.envid.as_deref(),
        ret: env.ret.as_deref(),
        smtputf8: env.attr("smtputf8") == Some("1"),
        rcpts: &rcpts,
        content: &content,
    };
    agent.deliver(&request)
}

/// Serves one qmgr connection until qmgr closes it, the daemon is asked to stop, or a
/// protocol error. Cached sessions expire while waiting.
pub fn serve(d: &Daemon, agent: &mut Agent, stream: UnixStream) -> Result<(), ProtoError> {
    let soft_bounce = d.config.get_bool("soft_bounce");
    let mut conn = Conn::new(stream)?;
    conn.greet(PROTOCOL, VERSION)?;
    loop {
        if !conn.has_buffered() {
            loop {
                let limit = agent
                    .next_expiry()
                    .map(|d| d.max(Duration::from_millis(10)));
                if d.wait_readable(conn.stream(), limit) {
                    break;
                }
                if d.stopping() || limit.is_none() {
                    return Ok(());
                }
                agent.expire_cache();
            }
        }
        let req = match conn.read_frame() {
            Ok(frame) => Deliver::decode(frame)?,
            Err(ProtoError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let started = std::time::Instant::now();
        let statuses = handle_request(agent, &d.layout, &req);
        posthorn_server::delivery_log::log_results(
            &req,
            &statuses,
            started,
            agent.last_setup,
            soft_bounce,
        );
        conn.send(&reply_frame_timed(&statuses, agent.last_setup))?;
        conn.flush()?;
    }
}

/// The `smtp` program: serve qmgr until master says stop.
pub fn run() {
    let d = posthorn_server::start("smtp");
    let settings = SmtpSettings::from_config(&d.config);
    let resolver: Box<dyn Resolver> = if settings.dns_disabled {
        Box::new(NativeResolver)
    } else {
        match posthorn_dns::Dns::new(&settings.dns_servers) {
            Ok(dns) => Box::new(dns),
            Err(e) => posthorn_log::fatal(format!("smtp: DNS resolver: {e}")),
        }
    };
    let mut agent = Agent::new(settings, resolver);
    d.serve_single(move |d, stream| {
        if let Err(e) = serve(d, &mut agent, stream) {
            log::warn!("smtp: qmgr connection: {e}");
        }
        agent.close_all();
    });
}
