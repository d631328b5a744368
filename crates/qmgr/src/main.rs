//! qmgr - the queue manager
//!
//! # Synopsis
//! `qmgr` (started by master; `qmgr unix n - n 300 1 qmgr` in master.cf; exactly one)
//!
//! # Description
//! qmgr moves mail from `incoming/` (and, when its retry time has come, from `deferred/`)
//! to `active/`, resolves each recipient to a transport, asks the delivery agents
//! (`private/TRANSPORT`) to deliver, and records every recipient's result in the queue
//! file. When a message is finished it is removed (all recipients done) or moved to
//! `deferred/` with its file time set to the next retry: the message's age, clamped to
//! `minimal_backoff_time`..`maximal_backoff_time` (so retries back off exponentially).
//! Failed recipients are reported to the sender through bounce before they are marked done;
//! mail older than `maximal_queue_lifetime` (`bounce_queue_lifetime` for notices) is
//! returned. `soft_bounce = yes` turns every bounce into a deferral.
//!
//! Triggers on `public/qmgr` (Postfix's letters): `I` new mail in incoming, `D` scan
//! deferred, `A` scan everything now (flush), `W` periodic wakeup from master. The deferred
//! queue is also scanned every `queue_run_delay`.
//!
//! At start qmgr moves anything left in `active/` (a previous qmgr died) back to
//! `incoming/`: the queue is the only state, and at worst a recipient is delivered twice.
//! With each deferred scan it does the same for a file that has sat in `active/` for over a
//! minute without being worked on (a move to `deferred/`, a removal or an activation that
//! failed halfway), so such a message is retried rather than stuck until the next start.
//! Incoming scans skip incomplete files (cleanup is still writing them) and remove those
//! whose writer died (it no longer holds the file's lock), and they remove `tmp.*` files
//! older than an hour from the top of `incoming/`: names a crashed cleanup left while
//! creating a queue file, never mail.
//!
//! A delivery agent (or bounce) must connect and greet within 30 seconds; a request may
//! then take up to `ipc_timeout`. A failed or timed-out request defers its recipients.
//! A success notice that cannot be sent is logged and not retried (the recipients are
//! done); a non-delivery notice is retried with the message.
//!
//! Address resolution (until the resolver library of the relay release): a domain in
//! `mydestination`, or no domain, goes to `local_transport`; a domain in
//! `virtual_mailbox_domains` to `virtual_transport`; anything else to `default_transport`.
//! Both lists hold domain names and lookup tables (queried with the domain), as in Postfix.
//! A transport without a running service defers its mail ("mail transport unavailable").
//!
//! # Signals
//! SIGTERM (sent by master on `posthorn stop` and `posthorn reload`) stops qmgr gracefully:
//! it activates and dispatches no more messages and accepts no more triggers, but keeps
//! recording the answers of deliveries already under way and finishing their messages
//! (including the notices that complete them), then exits when none is left or after 8
//! seconds (master kills after 10). What is still unanswered then stays in `active/` and is
//! retried at the next start.
//!
//! # Security
//! Runs as `mail_owner`. Trusts queue files only after full verification (damaged files go
//! to `corrupt/`), and agents' answers only for the recipients it asked about.
//!
//! # Diagnostics
//! Postfix's lines: `QUEUEID: from=<s>, size=N, nrcpt=N (queue active)`,
//! `QUEUEID: to=<r>, relay=R, delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=sent (...)`,
//! `QUEUEID: removed`.
//!
//! # Configuration parameters
//! `queue_run_delay`, `minimal_backoff_time`, `maximal_backoff_time`,
//! `maximal_queue_lifetime`, `bounce_queue_lifetime`, `soft_bounce`,
//! `qmgr_message_active_limit` (also capped below the open-file limit, since each active
//! message keeps its queue file open), `default_destination_concurrency_limit`,
//! `default_destination_recipient_limit`, `local_destination_recipient_limit`,
//! `mydestination`, `virtual_mailbox_domains`, `local_transport`, `virtual_transport`,
//! `default_transport`, `ipc_timeout`.

mod dest;
mod schedule;
mod transport;

fn main() {
    let mut daemon = posthorn_server::start("qmgr");
    let scheduler = schedule::Scheduler::new(&daemon.config, daemon.layout.clone());
    scheduler.run(&mut daemon);
}
