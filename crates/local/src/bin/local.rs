//! local - Postfix-compatible local mail delivery
//!
//! # Synopsis
//! `local` (started by master; `local unix - n n - - local` in master.cf)
//!
//! # Description
//! qmgr hands local the recipients whose domain is in `mydestination`, over
//! `private/local` (`delivery_protocol`). For each recipient local:
//! 1. bounces the message (5.4.6 `mail forwarding loop for ADDR`) when its headers already
//!    carry `Delivered-To: ADDR` for an address the delivery reaches;
//! 2. splits `user+ext@domain` with `recipient_delimiter` and looks up `user+ext`, then
//!    `user`, in `alias_maps` (aliases(5) syntax, built by newaliases/postalias). Alias
//!    targets are local names (expanded again), `\user` (that user's mailbox, nothing
//!    else), remote addresses (forwarded), `|command`, `/file/name` and
//!    `:include:/file`, the last three as `allow_mail_to_commands` and
//!    `allow_mail_to_files` permit (`alias`, `forward`, `include`); a target equal to the
//!    alias name is that user, not the alias again; an `owner-NAME` alias becomes the
//!    sender of mail expanded from NAME;
//! 3. otherwise finds the Unix account (none: `luser_relay`, or 5.1.1
//!    `unknown user: "user"`), then the first usable `forward_path` file (`$home/.forward`),
//!    read with the user's rights: owned by the user or root, not group- or
//!    world-writable. Its targets are handled as alias targets;
//! 4. otherwise runs `mailbox_command`, or delivers to the mailbox: `$HOME/$home_mailbox`
//!    when `home_mailbox` is set, else `mail_spool_directory/USER`; a trailing `/` selects
//!    Maildir. mbox deliveries take `mailbox_delivery_lock` locks (fcntl, dotlock), add a
//!    `From ` line and `>From ` quoting, and respect `mailbox_size_limit`.
//!
//! Every copy starts with `Return-Path: <SENDER>` and `Delivered-To: RECIPIENT`.
//! Forwarded copies are one new message per sender, submitted through cleanup with the
//! original recipient as `orig_to`; the status says `forwarded as QUEUEID`. Commands run
//! with `/bin/sh -c` (or `local_command_shell`) in the home directory, with HOME, USER,
//! LOGNAME, SHELL, SENDER, RECIPIENT, LOCAL, DOMAIN, EXTENSION, ORIGINAL_RECIPIENT and
//! `export_environment` in their environment, limited by `command_time_limit`.
//!
//! A recipient whose expansion defers anywhere is deferred as a whole (its other targets are
//! repeated at the retry); otherwise a bounce of any target bounces it; otherwise it is sent.
//!
//! # Security
//! Runs as root (master.cf unpriv `n`), but does the work of each delivery with the rights
//! of the account it is for: each mailbox and `/file` is written with the effective ids of
//! the recipient (or of the alias table's owner, `default_privs` when that is root),
//! `.forward` and `:include:` files are read with the rights of the user or alias owner
//! that names them, and commands run through a helper (this program, re-executed) that
//! drops all ids irrevocably before it starts the shell. No command or file delivery runs
//! as root: uid 0 means `default_privs`. A missing spool mailbox is created by root, then
//! given to the user.
//! Run as an ordinary user (the unprivileged mode), local delivers everything with that
//! user's rights and says so in a warning. Requests are validated (queue `active`, a valid
//! queue ID) before any path is built.
//!
//! # Standards
//! RFC 5322 (`Return-Path:`, header syntax), RFC 3463 (enhanced status codes), the mbox
//! format of Postfix's `mail_copy()`, Maildir (<https://cr.yp.to/proto/maildir.html>).
//!
//! # Diagnostics
//! Results go to qmgr, which logs them (`status=sent (delivered to mailbox)`). local logs
//! `warning:` lines for unusable `.forward` files, table errors, configuration errors and
//! forwarding trouble; with `-v` also each recipient's plan and
//! `QUEUEID: forwarded as NEWID to ADDRS`.
//!
//! # Configuration parameters
//! `alias_maps`, `allow_mail_to_commands`, `allow_mail_to_files`, `command_time_limit`,
//! `default_privs`, `export_environment`, `forward_path`, `home_mailbox`,
//! `local_command_shell`, `luser_relay`, `mail_spool_directory`, `mailbox_command`,
//! `mailbox_delivery_lock`, `mailbox_size_limit`, `mydestination`, `myorigin`,
//! `prepend_delivered_header`, `recipient_delimiter`, and the server skeleton's
//! (`queue_directory`, `max_idle`, `max_use`, ...).
//!
//! # Files
//! `/etc/aliases`, `/etc/aliases.db`, `~/.forward`, `/var/mail/USER`, `~/Maildir/`.
//!
//! # See also
//! virtual(8), qmgr(8), cleanup(8), aliases(5), newaliases(1), postalias(1).

fn main() {
    posthorn_local::privilege::exec_helper_if_requested();
    posthorn_local::service::run_local();
}
