//! posthorn-local: the `local` and `virtual` delivery agents (Postfix's local(8) and
//! virtual(8)), two programs sharing this library.
//!
//! Role: qmgr hands them recipients over `delivery_protocol` (`private/local`,
//! `private/virtual`); they read the message from the queue file (read-only: qmgr records the
//! results), deliver it, and answer one status per recipient with Postfix's reason texts
//! (`delivered to mailbox`, `delivered to maildir`, `delivered to command: CMD`,
//! `delivered to file: PATH`, `forwarded as ID`, `unknown user: "joe"`,
//! `mail forwarding loop for ADDR`, ...), which qmgr logs as `status=sent (REASON)`.
//!
//! Inputs: delivery requests; queue files; `alias_maps`, the passwd database, `~/.forward`
//! and `:include:` files (local); `virtual_mailbox_maps`, `virtual_uid_maps`,
//! `virtual_gid_maps` (virtual). Outputs: mbox files and Maildirs, `/file` appends, command
//! runs, forwarded messages submitted to cleanup, and statuses.
//!
//! Modules, in the order a delivery uses them:
//! - [`service`]: the protocol loop and request validation.
//! - [`message`]: the message content and its `Delivered-To:` headers.
//! - [`routing`] (with [`expansion`]): local(8)'s rules as a pure function over injected
//!   lookups, giving a [`Plan`] of [`Action`]s ([`aliases`] and [`forward`] supply the
//!   table and file parts).
//! - [`vmailbox`]: virtual(8)'s lookups as a pure function.
//! - [`mailbox_choice`]: `home_mailbox` / `mail_spool_directory`, mbox or Maildir.
//! - [`privilege`]: whose rights each delivery uses, and how they are taken.
//! - [`deliver`]: carrying out plans, forwarding through cleanup.
//! - [`status`]: results and how they fold into one status per recipient.
//! - [`settings`]: the parameters, read once per process.
//!
//! # Decisions
//! - One status per queue-file recipient: when any target of an alias or `.forward`
//!   expansion defers, the whole recipient is deferred and the targets that succeeded are
//!   delivered again at the retry (at-least-once); see [`status::merge`].
//! - `Delivered-To:` holds the recipient as qmgr gave it (Postfix's default
//!   `frozen_delivered_to = yes`), lowercased; loops are detected against every local
//!   address reached during expansion. posthorn adds no `X-Original-To:` header.
//! - An `owner-NAME` alias changes the sender of every copy delivered through alias NAME
//!   (mailbox `Return-Path:`, command `$SENDER`, forwarded copies), as in Postfix.
//! - `.forward` files must be owned by the user (or root) and not be group- or
//!   world-writable (Postfix only refuses world-writable ones).
//! - virtual(8) refuses absolute or `..` mailbox paths (4.3.5), and uid or gid 0 unless
//!   `virtual_minimum_uid = 0` (Postfix never allows 0; the root quickstart needs it). When
//!   not running as root and `virtual_uid_maps` / `virtual_gid_maps` are empty, it uses its
//!   own ids.
//! - As root, a missing mailbox in `mail_spool_directory` is created by root and given to
//!   the user before the delivery (which runs with the user's rights).
//!
//! # Parameters
//! local: `alias_maps`, `allow_mail_to_commands`, `allow_mail_to_files`,
//! `command_time_limit`, `default_privs`, `export_environment`, `forward_path`,
//! `home_mailbox`, `local_command_shell`, `luser_relay`, `mail_spool_directory`,
//! `mailbox_command`, `mailbox_delivery_lock`, `mailbox_size_limit`, `mydestination`,
//! `myorigin`, `prepend_delivered_header`, `recipient_delimiter`. virtual:
//! `virtual_mailbox_base`, `virtual_mailbox_maps`, `virtual_uid_maps`, `virtual_gid_maps`,
//! `virtual_minimum_uid`, `virtual_mailbox_limit`, `virtual_mailbox_lock`,
//! `recipient_delimiter`. All are in the parameter table today; a parameter missing from
//! the table reads as "" (then `default_privs` = `nobody`, `local_command_shell` =
//! `/bin/sh`, `mail_spool_directory` = `/var/mail`). Not implemented (read by nobody):
//! `biff`, `fallback_transport`, `mailbox_transport`, `expand_owner_alias`,
//! `propagate_unmatched_extensions` (alias/forward/include), `duplicate_filter_limit`,
//! the `flock` lock method, tables in `mydestination`; Postfix's `command_execution_directory`,
//! `forward_expansion_filter` (the default filter is built in), `frozen_delivered_to` and
//! `enable_original_recipient` are not parameters of posthorn.

pub mod aliases;
pub mod deliver;
pub mod expansion;
pub mod forward;
pub mod mailbox_choice;
pub mod message;
pub mod privilege;
pub mod routing;
pub mod service;
pub mod settings;
pub mod status;
pub mod vmailbox;

pub use deliver::{CleanupForwarder, ForwardCopy, Forwarder, LocalAgent, VirtualAgent};
pub use message::Message;
pub use routing::{Action, Plan, Step, plan_local};
pub use service::handle_request;
pub use status::Failure;
