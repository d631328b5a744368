//! bounce - delivery status notifications
//!
//! # Synopsis
//! `bounce` (started by master; `bounce unix - - n - 0 bounce` in master.cf)
//!
//! # Description
//! qmgr asks bounce (over `private/bounce`, `bounce_protocol`) to report on some recipients
//! of a queue file: failures, delays or successes. bounce reads the original message from
//! the queue, composes an RFC 3464 notice (multipart/report with a human-readable part, a
//! message/delivery-status part and the returned message or its headers), and submits it
//! through cleanup from the null sender. It answers qmgr only once the notice is a durable
//! queue file, so a failed recipient is marked done only after its notice is safe.
//!
//! - DSN NOTIFY is honoured per recipient: NEVER sends nothing, and a recipient gets a
//!   failure, delay or success notice only when its NOTIFY allows it (no NOTIFY = failures
//!   and delays, as Postfix); RET=HDRS returns only the headers; ENVID is reported.
//! - Mail from the null sender is never bounced to its sender: a failed notice becomes a
//!   "double bounce" sent to `2bounce_notice_recipient` from
//!   `$double_bounce_sender@$myorigin`, and a double bounce that fails in turn is discarded
//!   (`undeliverable postmaster notification discarded`, as Postfix logs it).
//!
//! # Security
//! Runs as `mail_owner`; reads queue files, talks to cleanup.
//!
//! # Standards
//! RFC 3461 (DSN), RFC 3462/6522 (multipart/report), RFC 3464 (delivery-status), RFC 3463.
//!
//! # Diagnostics
//! `QUEUEID: sender non-delivery notification: NOTICEID` (also "delay", "delivery status"),
//! as Postfix logs them.
//!
//! # Configuration parameters
//! `myhostname`, `myorigin`, `2bounce_notice_recipient`, `double_bounce_sender`.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::SystemTime;

use posthorn_message::{DsnAction, DsnRecipient, DsnRequest};
use posthorn_proto::bounce::{self, NoticeKind, Notify, Reply};
use posthorn_proto::cleanup::{Origin, Reply as CleanupReply};
use posthorn_proto::{Conn, ProtoError};
use posthorn_queue::file::QueueFile;
use posthorn_queue::{QueueId, QueueName};
use posthorn_server::Daemon;
use posthorn_server::cleanup_client::CleanupClient;

fn main() {
    posthorn_server::start("bounce").serve_single(|d, stream| {
        if let Err(e) = serve(d, stream)
            && !matches!(e, ProtoError::Closed)
        {
            log::warn!("bounce client: {e}");
        }
    });
}

fn serve(d: &Daemon, stream: UnixStream) -> Result<(), ProtoError> {
    let mut conn = Conn::new(stream)?;
    conn.greet(bounce::PROTOCOL, bounce::VERSION)?;
    let mut cleanup: Option<CleanupClient> = None;
    loop {
        if !conn.has_buffered() && !d.wait_readable(conn.stream(), None) {
            return Ok(());
        }
        let req = Notify::decode(conn.read_frame()?)?;
        let reply = match notify(d, &mut cleanup, &req) {
            Ok(id) => Reply::Sent(id),
            Err(e) => {
                log::warn!("{}: cannot send notice: {e}", req.queue_id);
                Reply::Failed(e)
            }
        };
        // Notices are rare: don't keep a cleanup process busy between them.
        cleanup = None;
        conn.send(&reply.frame())?;
        conn.flush()?;
    }
}

/// Whether a recipient's DSN NOTIFY asks for this kind of notice.
fn wants(notify: Option<&str>, kind: NoticeKind) -> bool {
    let n = notify.unwrap_or("FAILURE,DELAY").to_ascii_uppercase();
    let has = |w: &str| n.split(',').any(|x| x.trim() == w);
    if has("NEVER") {
        return false;
    }
    match kind {
        NoticeKind::Failure => has("FAILURE"),
        NoticeKind::Delay => has("DELAY"),
        NoticeKind::Success => has("SUCCESS"),
    }
}

/// Builds and submits one notice; returns its queue ID ("" when none was due).
fn notify(d: &Daemon, cleanup: &mut Option<CleanupClient>, req: &Notify) -> Result<String, String> {
    let q = QueueName::parse(&req.queue_name)
        .filter(|q| {
            matches!(
                q,
                QueueName::Active | QueueName::Deferred | QueueName::Incoming | QueueName::Hold
            )
        })
        .ok_or("bad queue name")?;
    let id = QueueId::parse(&req.queue_id).map_err(|e| e.to_string())?;
    let qf = QueueFile::open_read_only(&d.layout.path(q, &id)).map_err(|e| e.to_string())?;
    let env = &qf.envelope;
    let myorigin = d.config.get("myorigin");
    let double_bounce = format!("{}@{myorigin}", d.config.get("double_bounce_sender"));
    // A postmaster notice that itself fails is the end of the line: Postfix discards it.
    if env.sender.eq_ignore_ascii_case(&double_bounce) {
        if req.kind == NoticeKind::Failure {
            log::warn!("{id}: undeliverable postmaster notification discarded");
        }
        return Ok(String::new());
    }

    let mut rcpts = Vec::new();
    for e in &req.entries {
        let queued = env.recipients.iter().find(|r| r.address == e.recipient);
        let notify = queued.and_then(|r| r.notify.as_deref());
        // DSN ORCPT (RFC 3461) wins over the address before alias expansion.
        let orcpt = queued.and_then(|r| r.orcpt.clone());
        let (remote_mta, diagnostic) = diagnostic_of(&e.reason);
        if !env.sender.is_empty() && !wants(notify, req.kind) {
            continue;
        }
        rcpts.push(DsnRecipient {
            final_recipient: e.recipient.clone(),
            original_recipient: orcpt
                .or_else(|| (!e.orig.is_empty() && e.orig != e.recipient).then(|| e.orig.clone())),
            action: match req.kind {
                NoticeKind::Failure => DsnAction::Failed,
                NoticeKind::Delay => DsnAction::Delayed,
                NoticeKind::Success => DsnAction::Delivered,
            },
            status: e.dsn.clone(),
            remote_mta,
            diagnostic,
            text: Some(e.reason.clone()),
        });
    }
    if rcpts.is_empty() {
        return Ok(String::new());
    }
    // Who gets it, and from whom.
    let (to, sender, what) = if !env.sender.is_empty() {
        (env.sender.clone(), String::new(), notice_name(req.kind))
    } else if req.kind == NoticeKind::Failure && env.attr("notice").is_some() {
        if env.sender == double_bounce || env.attr("double_bounce").is_some() {
            log::info!("{id}: discarding undeliverable double bounce");
            return Ok(String::new());
        }
        (
            d.config.get("2bounce_notice_recipient"),
            double_bounce.clone(),
            "postmaster non-delivery notification",
        )
    } else if req.kind == NoticeKind::Failure {
        (
            d.config.get("2bounce_notice_recipient"),
            double_bounce.clone(),
            "postmaster non-delivery notification",
        )
    } else {
        return Ok(String::new()); // no delay or success notices for the null sender
    };
    if to.is_empty() {
        return Ok(String::new());
    }
    let mut original = Vec::new();
    qf.content()
        .read_to_end(&mut original)
        .map_err(|e| e.to_string())?;
    let host = d.config.get("myhostname");
    let opts = posthorn_message::DsnOptions {
        maximal_queue_lifetime: d.config.get_duration("maximal_queue_lifetime"),
        postmaster_copy: !sender.is_empty(),
        ..Default::default()
    };
    let notice = posthorn_message::compose_dsn_with(
        &DsnRequest {
            reporting_mta: &host,
            queue_id: id.as_str(),
            arrival: env.arrival.unwrap_or_else(SystemTime::now),
            sender: &env.sender,
            postmaster: "postmaster",
            recipients: &rcpts,
            original: &original,
            return_full: !env
                .ret
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("HDRS")),
            envid: env.envid.as_deref(),
            now: SystemTime::now(),
            mail_name: "posthorn",
            boundary_seed: id.as_str(),
        },
        &opts,
    );
    let to = posthorn_message::qualify(&to, &myorigin);
    let origin = Origin {
        kind: "bounce".into(),
        uid: 0,
        client: "bounce".into(),
    };
    for attempt in 0..2 {
        if cleanup.is_none() {
            *cleanup =
                Some(CleanupClient::connect(&d.layout).map_err(|e| format!("cleanup: {e}"))?);
        }
        let Some(c) = cleanup.as_mut() else { continue };
        match c.submit_notice(&notice, &sender, &to, origin.clone()) {
            Ok(CleanupReply::Queued { id: nid }) => {
                log::info!("{id}: {what}: {nid}");
                return Ok(nid);
            }
            Ok(CleanupReply::Failed { dsn, text, .. }) => {
                return Err(format!("cleanup: {dsn} {text}"));
            }
            Err(e) if attempt == 0 => {
                log::debug!("cleanup connection: {e}; reconnecting");
                *cleanup = None;
            }
            Err(e) => return Err(format!("cleanup: {e}")),
        }
    }
    Err("cleanup unreachable".into())
}

fn notice_name(k: NoticeKind) -> &'static str {
    match k {
        NoticeKind::Failure => "sender non-delivery notification",
        NoticeKind::Delay => "sender delay notification",
        NoticeKind::Success => "sender delivery status notification",
    }
}

/// The Remote-MTA and Diagnostic-Code of a recipient's reason: an SMTP server's reply as
/// the smtp client reports it (`host mx.example[192.0.2.1] said: 550 5.1.1 ... (in reply
/// to RCPT TO command)`) becomes `dns; mx.example` and `smtp; 550 5.1.1 ...`, as Postfix
/// writes them; an already typed text (`type; text`) stays; anything else is
/// `x-posthorn; text`.
fn diagnostic_of(reason: &str) -> (Option<String>, String) {
    if let Some(rest) = reason.strip_prefix("host ")
        && let Some((host, said)) = rest.split_once(" said: ")
    {
        let name = host.split('[').next().unwrap_or(host).trim();
        let reply = match said.rfind(" (in reply to ") {
            Some(i) if said.ends_with(')') => &said[..i],
            _ => said,
        };
        return (
            Some(format!("dns; {name}")),
            format!("smtp; {}", reply.trim()),
        );
    }
    if reason.contains(';') && reason.split(';').next().is_some_and(|t| !t.contains(' ')) {
        return (None, reason.to_string());
    }
    (None, format!("x-posthorn; {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_replies_become_diagnostic_codes() {
        assert_eq!(
            diagnostic_of(
                "host mx.example.test[127.0.0.2] said: 550 5.1.1 <a@b>: User unknown (in reply to RCPT TO command)"
            ),
            (
                Some("dns; mx.example.test".to_string()),
                "smtp; 550 5.1.1 <a@b>: User unknown".to_string()
            )
        );
        assert_eq!(
            diagnostic_of("x-unix; mailbox full"),
            (None, "x-unix; mailbox full".to_string())
        );
        assert_eq!(
            diagnostic_of("User unknown"),
            (None, "x-posthorn; User unknown".to_string())
        );
    }

    #[test]
    fn notify_rules() {
        assert!(wants(None, NoticeKind::Failure));
        assert!(wants(None, NoticeKind::Delay));
        assert!(!wants(None, NoticeKind::Success));
        assert!(!wants(Some("NEVER"), NoticeKind::Failure));
        assert!(wants(Some("SUCCESS,FAILURE"), NoticeKind::Success));
        assert!(!wants(Some("SUCCESS"), NoticeKind::Failure));
    }
}
