//! showq - list the posthorn mail queue
//!
//! # Synopsis
//!
//! ```text
//! showq [generic daemon options]          (started by master)
//! showq -S [-c config_dir] [-v]           (stand-alone, run by postqueue for root)
//! ```
//!
//! master.cf: `showq unix n - n - - showq` (a public socket; runs as `mail_owner`).
//!
//! # Description
//!
//! showq reports the mail queue for `postqueue -p` and `postqueue -j` (and so for `mailq`
//! and `sendmail -bp`). It exists because the queue directories belong to `mail_owner` and
//! are closed to everybody else: unprivileged users see the queue only through this
//! daemon, never by reading it.
//!
//! For each client it walks the `maildrop`, `active`, `incoming`, `deferred` and `hold`
//! queues (Postfix's order) and reports every complete queue file as it goes: queue name,
//! queue ID, arrival time, content size, the forced-expire flag (the group-execute bit, as
//! in Postfix), the sender, and each recipient still to be delivered with the reason of its
//! last deferral from the `defer` log. It reads each file only up to the start of its
//! content and builds no list of the queue, so a listing streams in constant memory and a
//! queue of 100,000 messages lists in seconds. The queue may change while it is listed:
//! a message that moves between queues meanwhile may be listed twice or not at all.
//!
//! With `-S` showq serves one listing on its standard output and exits. postqueue runs it
//! this way when the super-user lists the queue while the mail system is down; it still
//! drops to `mail_owner` before reading anything.
//!
//! # Inputs
//!
//! Queue files and defer logs (read-only). Nothing from the client: showq speaks first
//! and never reads from the connection.
//!
//! # Outputs
//!
//! The `showq_protocol` stream (posthorn_postqueue::protocol): a greeting, one frame per
//! message and one per recipient, then an end frame, or a failure frame with the reason
//! when a queue directory cannot be read. postqueue formats it.
//!
//! # Security
//!
//! Runs as `mail_owner`; everything it reads is below `queue_directory`, so it may run
//! chrooted. The socket is public (`setgid_group` may connect), so showq takes no input
//! from its clients. Queue files are opened without
//! following symbolic links; damaged files are skipped. Addresses and reasons are sent as
//! found; postqueue replaces control characters before they reach a terminal.
//!
//! # Diagnostics
//!
//! `warning:` lines for damaged queue files and unreadable queue directories.
//!
//! # Configuration parameters
//!
//! - `empty_address_recipient`: how the null sender is shown (`MAILER-DAEMON`).
//! - `hash_queue_depth`, `hash_queue_names`, `queue_directory`: the queue layout.
//! - `ipc_timeout`: time limit for each write to a client.
//! - `max_idle`, `max_use`: process lifetime, as for every single-client daemon.
//!
//! # Files
//!
//! - `/var/spool/posthorn/public/showq`: the service socket.
//! - `/var/spool/posthorn/{maildrop,active,incoming,deferred,hold}/`: what is listed.
//! - `/var/spool/posthorn/defer/`: deferral reasons.
//!
//! # See also
//!
//! postqueue(1), sendmail(1), qmgr(8), master(8).

mod scan;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use posthorn_postqueue::protocol::ListingWriter;
use posthorn_server::Daemon;

use scan::{ScanError, Scanner};

fn main() {
    // -S (Postfix's stand-alone flag) is accepted and otherwise ignored by the server
    // skeleton; it is looked for here.
    let stand_alone = std::env::args().skip(1).any(|a| a == "-S");
    let daemon = posthorn_server::start("showq");
    if stand_alone {
        std::process::exit(serve_stdout(&daemon));
    }
    daemon.serve_single(serve);
}

/// Serves one client of `public/showq`.
fn serve(d: &Daemon, stream: UnixStream) {
    let timeout = Some(d.config.get_duration("ipc_timeout")).filter(|t| !t.is_zero());
    if let Err(e) = stream.set_write_timeout(timeout) {
        log::warn!("client socket: {e}");
        return;
    }
    match list(d, BufWriter::with_capacity(64 * 1024, &stream)) {
        Ok(()) => {}
        Err(e) => log::debug!("client: {e}"),
    }
}

/// Stand-alone mode: one listing on standard output. Exit status 0 once the listing (or
/// its failure frame) is written, 1 when it cannot be written.
fn serve_stdout(d: &Daemon) -> i32 {
    // The raw descriptor, not Rust's line-buffered stdout: the stream is binary.
    let out = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => posthorn_log::fatal(format!("standard output: {e}")),
    };
    match list(d, BufWriter::with_capacity(64 * 1024, out)) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("standard output: {e}");
            1
        }
    }
}

/// Writes the whole listing to `out`: the greeting, the messages, then the end frame, or
/// a failure frame when the queue cannot be read. Errors are write errors (client gone).
fn list<W: Write>(d: &Daemon, out: W) -> io::Result<()> {
    let scanner = Scanner::new(
        &d.layout,
        d.config.get_int("hash_queue_depth"),
        d.config.get("empty_address_recipient"),
    );
    let mut w = ListingWriter::new(out)?;
    match scanner.list(&mut w, &|| d.stopping()) {
        Ok(n) => {
            log::debug!("listed {n} messages");
            w.finish(None)?;
        }
        Err(ScanError::Client(e)) => return Err(e),
        Err(e) => {
            log::warn!("{e}");
            w.finish(Some(&e.to_string()))?;
        }
    }
    Ok(())
}
