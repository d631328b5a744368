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
//!
//! Address resolution (until the resolver library of the relay release): a domain in
//! `mydestination`, or no domain, goes to `local_transport`; a domain in
//! `virtual_mailbox_domains` to `virtual_transport`; anything else to `default_transport`.
//! A transport without a running service defers its mail ("mail transport unavailable").
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
//! `qmgr_message_active_limit`, `default_destination_concurrency_limit`,
//! `default_destination_recipient_limit`, `local_destination_recipient_limit`,
//! `mydestination`, `virtual_mailbox_domains`, `local_transport`, `virtual_transport`,
//! `default_transport`.

mod schedule;
mod transport;

fn main() {
    let daemon = posthorn_server::start("qmgr");
    schedule::Scheduler::new(daemon).run();
}
