//! cleanup - canonicalize and enqueue mail
//!
//! # Synopsis
//! `cleanup` (started by master; `cleanup unix n - n - 0 cleanup` in master.cf)
//!
//! # Description
//! cleanup is the only writer of new queue files. A client (pickup for local submissions,
//! bounce for notices, local for forwarded mail, smtpd for network mail) connects to
//! `public/cleanup` and streams one message after another as queue-file records (the
//! `cleanup_protocol` of posthorn-proto). smtpd asks for the queue ID up front
//! (`FLAG_REPORT_ID`): the file is then created at once, before the records arrive, and its
//! ID goes back right away. For each message cleanup:
//! - checks the records strictly (types, order, CRCs) and the size against
//!   `message_size_limit` (`5.3.4 message file too big`);
//! - refuses a message with more than `hopcount_limit` Received: headers (a mail loop,
//!   5.4.6);
//! - qualifies unqualified sender and recipient addresses with `myorigin`;
//! - expands recipients through `virtual_alias_maps` (recursively; the original address is
//!   kept for logs and notices);
//! - with the extract flag (`sendmail -t`), adds the recipients of To:, Cc: and Bcc:;
//! - removes Bcc:, Resent-Bcc: and Return-Path: headers (Return-Path is added at delivery),
//!   drops duplicate recipients;
//! - for local submissions, prepends a `Received: by HOST (posthorn, from userid UID)`
//!   header; adds From:, Date: and Message-ID: when missing;
//! - writes the queue file into `incoming/`, commits it (file and directory fsynced; see
//!   posthorn-queue's durability contract), answers `Queued` with the queue ID, and wakes
//!   qmgr.
//!
//! # Security
//! Runs as `mail_owner`; trusts no client: every record is length- and CRC-checked and a
//! malformed stream aborts that message with an error reply.
//!
//! # Diagnostics
//! `QUEUEID: message-id=<...>` per message; problems as `warning:` lines.
//!
//! # Configuration parameters
//! `message_size_limit`, `header_size_limit`, `myhostname`, `myorigin`, `queue_directory`,
//! `virtual_alias_maps`, `virtual_alias_recursion_limit`, `virtual_alias_expansion_limit`,
//! `recipient_delimiter`, `mydestination`, `hopcount_limit`.

mod message;
mod valias;

use std::os::unix::net::UnixStream;

use posthorn_proto::cleanup::{self, Reply, Request};
use posthorn_proto::{Conn, ProtoError};
use posthorn_server::Daemon;

fn main() {
    let daemon = posthorn_server::start("cleanup");
    let mut qmgr: Option<UnixStream> = None;
    daemon.serve_single(|d, stream| {
        if let Err(e) = serve(d, stream, &mut qmgr) {
            match e {
                ProtoError::Closed => {}
                e => log::warn!("cleanup client: {e}"),
            }
        }
    });
}

fn serve(d: &Daemon, stream: UnixStream, qmgr: &mut Option<UnixStream>) -> Result<(), ProtoError> {
    let mut conn = Conn::new(stream)?;
    conn.greet(cleanup::PROTOCOL, cleanup::VERSION)?;
    let settings = message::Settings::from_config(&d.config);
    loop {
        if !conn.has_buffered() && !d.wait_readable(conn.stream(), None) {
            return Ok(());
        }
        let req = Request::decode(conn.read_frame()?)?;
        let Request::Begin { flags, origin } = req else {
            return Err(ProtoError::bad("expected Begin"));
        };
        let mut msg = message::Message::new(&settings, &d.layout, flags, origin);
        if flags & cleanup::FLAG_REPORT_ID != 0 {
            let id = msg.open_early();
            conn.send(&cleanup::Opened { id }.frame())?;
            conn.flush()?;
        }
        let reply = loop {
            match Request::decode(conn.read_frame()?)? {
                Request::Records(data) => msg.feed(&data),
                Request::Commit => break Some(msg.finish()),
                Request::Abort => break None,
                Request::Begin { .. } => return Err(ProtoError::bad("Begin inside a message")),
            }
        };
        let Some(reply) = reply else { continue };
        if let Reply::Queued { .. } = &reply {
            wake_qmgr(d, qmgr);
        }
        conn.send(&reply.frame())?;
        conn.flush()?;
    }
}

/// Tells qmgr that `incoming/` has new mail, over a connection kept open between messages.
fn wake_qmgr(d: &Daemon, qmgr: &mut Option<UnixStream>) {
    use std::io::Write;
    for _ in 0..2 {
        if qmgr.is_none() {
            *qmgr = posthorn_proto::trigger::connect_nonblocking(
                &d.layout.public_socket(posthorn_proto::service::QMGR),
            )
            .ok();
        }
        match qmgr
            .as_mut()
            .map(|s| s.write(&[posthorn_proto::trigger::SCAN_INCOMING]))
        {
            Some(Ok(_)) => return,
            // A full buffer means qmgr already has triggers to read.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            _ => *qmgr = None,
        }
    }
}
