//! postsuper - queue maintenance
//!
//! # Synopsis
//! `postsuper [-psv] [-c config_dir] [-d queue_id] [-h queue_id] [-H queue_id]
//! [-r queue_id] [queue ...]`
//!
//! # Description
//! postsuper does maintenance jobs on the queue, as Postfix's postsuper(1) does. With no
//! option it does `-s -p`. The optional `queue` arguments limit the work to those queues
//! (`maildrop`, `incoming`, `active`, `deferred`, `hold`; for `-s` and `-p` also the log
//! directories `defer`, `bounce`, `trace`); each operation only takes messages from the
//! queues it applies to. `queue_id` is a queue ID, `ALL` (upper case, as a safety measure)
//! for every message, or `-` to read queue IDs from standard input, one per line. Each
//! option may be given several times.
//!
//! - `-d queue_id`: delete the message and its defer, bounce and trace logs (default
//!   queues: `maildrop`, `incoming`, `active`, `deferred`, `hold`).
//! - `-h queue_id`: put the message on hold: move it to `hold/`, where nothing delivers or
//!   expires it (default: `incoming`, `active`, `deferred`).
//! - `-H queue_id`: release it from hold: move it to `deferred/` with its retry time set to
//!   now, so qmgr tries it at once (default: `hold`).
//! - `-r queue_id`: requeue it: move it to `incoming/` with a fresh time stamp, so qmgr
//!   resolves and delivers its remaining recipients at once (default: `incoming`,
//!   `active`, `deferred`, `hold`). Unlike Postfix, which sends the message through
//!   `maildrop/`, pickup and cleanup again (a new queue file with new address rewriting and
//!   a new arrival time), posthorn keeps the queue file: pickup would treat a requeued file
//!   as an untrusted local submission, dropping its attributes and the record of recipients
//!   already delivered. Recipient routing (transports, relays) is redone; address rewriting
//!   is not, and the arrival time, hence the expiry date, stays.
//! - `-s`: structure check and repair: misplaced, misnamed and stray files, stale temporary
//!   and abandoned incomplete files, logs of messages no longer queued (each repair is
//!   reported with a `warning:` line).
//! - `-p`: purge stale temporary and abandoned incomplete files only.
//! - `-v`: verbose logging.
//!
//! `-s` and `-p` run first, then the `ALL` operations, then those by queue ID, each in
//! Postfix's order: delete, requeue, hold, release. Mail in `maildrop/` (not yet checked by
//! pickup) is never held or requeued, only deleted.
//!
//! postsuper is safe to run while the mail system runs: every change is an atomic rename
//! or unlink of a complete queue file (never a rewrite), and renames never replace a file.
//! A message qmgr is delivering (in `active/`) is deleted at once by `-d`, but `-h` and
//! `-r` wait up to 10 seconds for qmgr to finish with it and then act on it where qmgr put
//! it, because qmgr records delivered recipients in the file under its `active/` name; a
//! message still active after that is left alone (exit status 75). Afterwards qmgr is
//! told about requeued (`I`) and released (`D`) mail.
//!
//! # Inputs
//! The command line; queue IDs on standard input for `-`; `main.cf`; the queue directories.
//!
//! # Outputs
//! Changes to the queue. Each action is logged and printed on standard error, as in
//! Postfix: `postsuper: ID: removed`, `ID: placed on hold`, `ID: released from hold`,
//! `ID: requeued`, then `Deleted: N messages` (`1 message`), `Placed on hold: N messages`,
//! `Released from hold: N messages`, `Requeued: N messages`.
//!
//! # Security
//! Meant for root. Started by root, postsuper changes to the owner of the queue (the
//! owner and group of `incoming/`, normally `mail_owner`) before it touches anything, as
//! Postfix does, so that directories it creates belong to the mail system and a queue
//! tampered with cannot lead it to act as root elsewhere; it never follows symbolic links
//! inside the queue. Run by another user, that user must own the queue (unprivileged
//! instances: tests, quickstart).
//!
//! # Diagnostics
//! Problems go to standard error and the mail log: `postsuper: warning: ...` for a
//! problem that does not stop the command (an invalid queue ID, a file repaired by `-s`),
//! `postsuper: fatal: ...` saying what to do otherwise. Exit status (sysexits): 0 done;
//! 64 bad command line; 74 I/O error; 75 messages still being delivered were left alone;
//! 77 no permission on the queue; 78 configuration error (no `main.cf`, no queue).
//!
//! # Configuration parameters
//! `queue_directory`, `hash_queue_names`, `hash_queue_depth`, `syslog_name`,
//! `syslog_facility`, `maillog_file`.
//!
//! # Files
//! `main.cf` in `-c config_dir`, else `$MAIL_CONFIG`, else `/etc/posthorn`; below
//! `queue_directory`: `maildrop/`, `incoming/`, `active/`, `deferred/`, `hold/`,
//! `corrupt/`, `defer/`, `bounce/`, `trace/`, `public/qmgr`.
//!
//! # See also
//! postcat(1), postqueue(1), qmgr(8), posthorn(1).

mod args;
mod fsops;
mod ops;
mod repair;
mod report;
mod walk;

use posthorn_sys::sysexits::{EX_CONFIG, EX_IOERR, EX_NOPERM, EX_OSERR, EX_TEMPFAIL, EX_USAGE};
use std::io::{self, BufRead};
use std::os::unix::fs::MetadataExt;

use posthorn_config::{Config, ConfigError};
use posthorn_queue::{QueueLayout, QueueName};

use args::{Args, LOG_QUEUES, MESSAGE_QUEUES, Op};
use ops::Messages;
use repair::Repair;
use report::{describe, fatal, info, messages, warn};

fn main() {
    let args = args::parse(std::env::args_os().skip(1)).unwrap_or_else(|e| fatal(EX_USAGE, e));
    let dir = posthorn_config::trust::command_config_dir(args.config_dir.clone());
    let config = Config::load(&dir).unwrap_or_else(|e| {
        let text = match &e {
            ConfigError::Io { path, source } => format!("{}: {}", path.display(), describe(source)),
            other => other.to_string(),
        };
        fatal(
            EX_CONFIG,
            format!("{text}; name the configuration directory with -c or MAIL_CONFIG"),
        )
    });
    let layout = posthorn_server::layout_of(&config);
    report::init_log(&config, args.verbose);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    become_queue_owner(&layout);
    match run(&args, &layout) {
        Ok(code) => std::process::exit(code),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => fatal(
            EX_NOPERM,
            format!(
                "{}; run postsuper as root or as the owner of the queue",
                describe(&e)
            ),
        ),
        Err(e) => fatal(
            EX_IOERR,
            format!("{}; check the queue directory and retry", describe(&e)),
        ),
    }
}

/// Does what `args` asks; returns the exit status.
fn run(args: &Args, layout: &QueueLayout) -> io::Result<i32> {
    let (structure, purge) = if !args.has_message_ops() && !args.structure && !args.purge {
        (true, true)
    } else {
        (args.structure, args.purge)
    };
    if structure || purge {
        let queues: Vec<QueueName> = if args.queues.is_empty() {
            MESSAGE_QUEUES
                .iter()
                .chain(LOG_QUEUES.iter())
                .copied()
                .collect()
        } else {
            args.queues.clone()
        };
        let mut r = Repair::new(layout, structure, purge);
        r.run(&queues)?;
        log::debug!("structure check: {} repaired, {} left", r.repaired, r.left);
    }
    const ORDER: [Op; 4] = [Op::Delete, Op::Requeue, Op::Hold, Op::Release];
    let mut m = Messages::new(layout);
    for op in ORDER {
        let t = args.targets(op);
        if t.all {
            if !t.ids.is_empty() {
                warn(format!(
                    "option \"-{} ALL\" will ignore other command line queue IDs",
                    op.flag()
                ));
            }
            m.all(op, &args.queues_for(op))?;
        }
    }
    for op in ORDER {
        let t = args.targets(op);
        if t.all {
            continue;
        }
        let queues = args.queues_for(op);
        for text in &t.ids {
            if text == "-" {
                for line in io::stdin().lock().lines() {
                    let line = line?;
                    let id = line.trim();
                    if !id.is_empty() {
                        m.by_id(op, &queues, id)?;
                    }
                }
            } else {
                m.by_id(op, &queues, text)?;
            }
        }
    }
    let busy = m.settle()?;
    for op in Op::ALL {
        let n = m.count(op);
        if n > 0 {
            info(format!("{}: {}", op.summary_label(), messages(n)));
        }
    }
    m.trigger_qmgr();
    Ok(if busy > 0 { EX_TEMPFAIL } else { 0 })
}

/// Runs as the owner of the queue (see the Security section of the crate doc).
fn become_queue_owner(layout: &QueueLayout) {
    let dir = layout.dir(QueueName::Incoming);
    let meta = std::fs::metadata(&dir).unwrap_or_else(|e| {
        fatal(
            EX_CONFIG,
            format!(
                "queue directory {}: {}; check queue_directory, or create the queue with \"posthorn check\"",
                dir.display(),
                describe(&e)
            ),
        )
    });
    let (uid, gid) = (meta.uid(), meta.gid());
    if posthorn_sys::is_root() {
        if uid != 0
            && let Err(e) = posthorn_sys::drop_privileges(uid, gid)
        {
            fatal(EX_OSERR, format!("cannot change to the queue owner: {e}"));
        }
    } else if posthorn_sys::uids().1 != uid {
        fatal(
            EX_NOPERM,
            format!(
                "the queue {} belongs to uid {uid}: run postsuper as root or as that user",
                layout.root().display()
            ),
        );
    }
}
