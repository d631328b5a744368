//! virtual - Postfix-compatible virtual mailbox delivery
//!
//! # Synopsis
//! `virtual` (started by master; `virtual unix - n n - - virtual` in master.cf)
//!
//! # Description
//! qmgr hands virtual the recipients of `virtual_mailbox_domains`, over `private/virtual`
//! (`delivery_protocol`): mailboxes for users who have no Unix account. For each recipient
//! virtual looks up the full address, then `@domain` (with `recipient_delimiter`
//! extensions), in `virtual_mailbox_maps`. The result is a path relative to
//! `virtual_mailbox_base`: a trailing `/` means a Maildir, anything else an mbox file
//! (`virtual_mailbox_lock` locks, `From ` line, `>From ` quoting). Not found: 5.1.1
//! `unknown user: "ADDR"`. The owner comes from `virtual_uid_maps` and `virtual_gid_maps`
//! (same lookup; `static:5000` is typical); a uid below `virtual_minimum_uid`, uid or gid 0
//! (allowed only with `virtual_minimum_uid = 0`), a missing uid or gid, or a path that is
//! absolute or climbs with `..` defers with 4.3.5 "mail system configuration error" and a
//! warning. Files may grow to `virtual_mailbox_limit`.
//! Every copy starts with `Return-Path: <SENDER>` and `Delivered-To: RECIPIENT`; a message
//! that already has that `Delivered-To:` bounces as a mail forwarding loop (5.4.6).
//!
//! # Security
//! Runs as root (master.cf unpriv `n`) and writes each mailbox with the effective uid/gid
//! from the maps. Run as an ordinary user (the unprivileged mode, e.g. the quickstart), it
//! writes with that user's rights, and empty `virtual_uid_maps` / `virtual_gid_maps` then
//! mean "my own ids". Requests are validated before any path is built; the table values
//! are confined below `virtual_mailbox_base`.
//!
//! # Standards
//! RFC 5322, RFC 3463, the mbox format of Postfix's `mail_copy()`, Maildir.
//!
//! # Diagnostics
//! Results go to qmgr, which logs them (`status=sent (delivered to maildir)`); problems with
//! tables or their values are logged as `warning:` lines.
//!
//! # Configuration parameters
//! `virtual_mailbox_base`, `virtual_mailbox_maps`, `virtual_uid_maps`, `virtual_gid_maps`,
//! `virtual_minimum_uid`, `virtual_mailbox_limit`, `virtual_mailbox_lock`,
//! `recipient_delimiter`, and the server skeleton's (`queue_directory`, `max_idle`, ...).
//!
//! # Files
//! `$virtual_mailbox_base/...`.
//!
//! # See also
//! local(8), qmgr(8), postmap(1).

fn main() {
    posthorn_local::privilege::exec_helper_if_requested();
    posthorn_local::service::run_virtual();
}
