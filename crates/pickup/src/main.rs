//! pickup - take local submissions from maildrop/ to cleanup
//!
//! # Synopsis
//! `pickup` (started by master; `pickup unix n - n 60 1 pickup` in master.cf)
//!
//! # Description
//! postdrop leaves each locally submitted message as a queue file in `maildrop/` and sends
//! a trigger to `public/pickup`; master also triggers pickup every `wakeup` seconds. On
//! each trigger pickup reads every complete file in `maildrop/`, checks it as untrusted
//! input (every record's CRC and order, only the attributes a user may set), streams it to
//! cleanup with the submitting user's uid (the file's owner, which postdrop cannot forge),
//! and removes it once cleanup answers that the new queue file is durable. Damaged files
//! go to `corrupt/`. A message cleanup refuses for good (too big, no recipients) is returned
//! to its sender in a delivery status notice, then removed; temporary trouble leaves it in
//! `maildrop/` for the next run.
//!
//! # Security
//! Runs as `mail_owner`. The maildrop files are written by users through setgid postdrop,
//! so everything in them is distrusted and re-validated here.
//!
//! # Diagnostics
//! `QUEUEID: uid=UID from=<sender>` per message, as Postfix's pickup logs.
//!
//! # Configuration parameters
//! `queue_directory`, `myhostname`, `message_size_limit` (enforced by cleanup).

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use posthorn_message::{DsnAction, DsnRecipient, DsnRequest};
use posthorn_proto::cleanup::{FLAG_EXTRACT_RECIPIENTS, Origin, Reply};
use posthorn_queue::file::{self, QueueFile};
use posthorn_queue::{QueueName, file::FLAG_EXTRACT_RECIPIENTS as FILE_EXTRACT};
use posthorn_server::Daemon;
use posthorn_server::cleanup_client::CleanupClient;

/// Attributes a local user may set through postdrop.
const USER_ATTRS: &[&str] = &["rewrite_context"];

fn main() {
    posthorn_server::start("pickup").serve_single(|d, mut stream| {
        // The trigger's content does not matter: any trigger means "scan maildrop".
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut b = [0u8; 64];
        let _ = stream.read(&mut b);
        drop(stream);
        scan(d);
    });
}

/// Picks up every complete file in maildrop/; stops early on temporary trouble.
fn scan(d: &Daemon) {
    let dir = d.layout.dir(QueueName::Maildrop);
    let ids = match d.layout.list(QueueName::Maildrop) {
        Ok(ids) => ids,
        Err(e) => {
            log::warn!("{}: {e}", dir.display());
            return;
        }
    };
    let mut client: Option<CleanupClient> = None;
    for id in ids {
        if d.stopping() {
            return;
        }
        let path = d.layout.path(QueueName::Maildrop, &id);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() {
            log::warn!("{}: not a regular file; moved to corrupt/", path.display());
            let _ = file::quarantine(&d.layout, &path);
            continue;
        }
        if !file::is_complete(&meta) {
            // postdrop is still writing it, or died: a dead writer no longer holds the
            // file's lock, and its file will never be completed.
            if file::writer_gone(&path) {
                log::warn!(
                    "{}: removing incomplete file left by postdrop",
                    path.display()
                );
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let qf = match QueueFile::open_read_only(&path) {
            Ok(q) => q,
            Err(e) if e.is_corrupt() => {
                log::warn!("{e}; moved to corrupt/");
                let _ = file::quarantine(&d.layout, &path);
                continue;
            }
            Err(e) => {
                log::warn!("{e}");
                continue;
            }
        };
        if client.is_none() {
            match CleanupClient::connect(&d.layout) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    log::warn!("connect to cleanup: {e}");
                    return;
                }
            }
        }
        let Some(c) = client.as_mut() else { return };
        match pass_on(c, &qf, meta.uid()) {
            Ok(Reply::Queued { id: new_id }) => {
                log::info!("{new_id}: uid={} from=<{}>", meta.uid(), qf.envelope.sender);
                let _ = fs::remove_file(&path);
            }
            Ok(Reply::Failed {
                temporary: true,
                text,
                ..
            }) => {
                log::warn!("{id}: cleanup: {text}; will retry");
                return;
            }
            Ok(Reply::Failed {
                temporary: false,
                dsn,
                text,
            }) => {
                log::warn!(
                    "{id}: uid={} from=<{}>: message rejected: {dsn} {text}",
                    meta.uid(),
                    qf.envelope.sender
                );
                match return_to_sender(d, c, &qf, &dsn, &text) {
                    Ok(()) => {
                        let _ = fs::remove_file(&path);
                    }
                    Err(e) => {
                        log::warn!(
                            "{id}: cannot return the message to its sender: {e}; will retry"
                        );
                        return;
                    }
                }
            }
            Err(e) => {
                log::warn!("{id}: cleanup: {e}; will retry");
                return;
            }
        }
    }
}

/// Streams one maildrop file to cleanup.
fn pass_on(
    c: &mut CleanupClient,
    qf: &QueueFile,
    uid: u32,
) -> Result<Reply, posthorn_proto::ProtoError> {
    let mut env = qf.envelope.clone();
    env.attrs.retain(|(n, _)| {
        let ok = USER_ATTRS.contains(&n.as_str());
        if !ok {
            log::warn!(
                "{}: ignoring attribute {n} from uid {uid}",
                qf.path.display()
            );
        }
        ok
    });
    for r in &mut env.recipients {
        r.done = false;
    }
    let flags = if env.size.flags & FILE_EXTRACT != 0 {
        FLAG_EXTRACT_RECIPIENTS
    } else {
        0
    };
    c.begin(
        flags,
        Origin {
            kind: "local".into(),
            uid: u64::from(uid),
            client: format!("uid={uid}"),
        },
    )?;
    c.envelope(&env)?;
    c.start_content()?;
    c.content_from(&mut qf.content())?;
    c.commit()
}

/// Sends the sender a notice that the message could not be accepted at all.
fn return_to_sender(
    d: &Daemon,
    c: &mut CleanupClient,
    qf: &QueueFile,
    dsn: &str,
    text: &str,
) -> Result<(), String> {
    let env = &qf.envelope;
    if env.sender.is_empty() {
        return Ok(()); // never bounce a notice
    }
    let mut original = Vec::new();
    qf.content()
        .take(64 * 1024)
        .read_to_end(&mut original)
        .map_err(|e| e.to_string())?;
    let rcpts: Vec<DsnRecipient> = if env.recipients.is_empty() {
        vec![DsnRecipient {
            final_recipient: "undisclosed-recipients".into(),
            original_recipient: None,
            action: DsnAction::Failed,
            status: dsn.into(),
            remote_mta: None,
            diagnostic: format!("x-posthorn; {text}"),
            text: None,
        }]
    } else {
        env.recipients
            .iter()
            .map(|r| DsnRecipient {
                final_recipient: r.address.clone(),
                original_recipient: r.orig.clone(),
                action: DsnAction::Failed,
                status: dsn.into(),
                remote_mta: None,
                diagnostic: format!("x-posthorn; {text}"),
                text: None,
            })
            .collect()
    };
    let host = d.config.get("myhostname");
    let sender = posthorn_message::qualify(&env.sender, &d.config.get("myorigin"));
    let id = qf
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let notice = posthorn_message::compose_dsn(&DsnRequest {
        reporting_mta: &host,
        queue_id: &id,
        arrival: env.arrival.unwrap_or_else(SystemTime::now),
        sender: &sender,
        postmaster: "postmaster",
        recipients: &rcpts,
        original: &original,
        return_full: false,
        envid: env.envid.as_deref(),
        now: SystemTime::now(),
        mail_name: "posthorn",
        boundary_seed: &id,
    });
    let to = posthorn_message::qualify(&env.sender, &d.config.get("myorigin"));
    match c.submit_notice(
        &notice,
        "",
        &to,
        Origin {
            kind: "bounce".into(),
            uid: 0,
            client: "pickup".into(),
        },
    ) {
        Ok(Reply::Queued { id: nid }) => {
            log::info!("{id}: sender non-delivery notification: {nid}");
            Ok(())
        }
        Ok(Reply::Failed { text, .. }) => Err(text),
        Err(e) => Err(e.to_string()),
    }
}
