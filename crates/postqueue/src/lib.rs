//! postqueue - posthorn queue control
//!
//! # Synopsis
//!
//! ```text
//! postqueue [-v] [-c config_dir] -p
//! postqueue [-v] [-c config_dir] -j
//! postqueue [-v] [-c config_dir] -f
//! postqueue [-v] [-c config_dir] -i queue_id
//! postqueue [-v] [-c config_dir] -s site
//! ```
//!
//! # Description
//!
//! `postqueue` is the user interface to the mail queue for the operations that need no
//! privilege: listing it and asking for delivery now. `mailq` and `sendmail -bp` run
//! `postqueue -p`.
//!
//! The queue directories belong to `mail_owner`, so `postqueue` never reads them: it asks
//! the `showq`(8) daemon over `public/showq` and formats what showq streams back, one
//! message at a time, so a queue of any size is listed in constant memory. When the mail
//! system is down, only the super-user can still list the queue: `postqueue` then runs
//! showq itself in stand-alone mode (it drops to `mail_owner` before reading anything).
//!
//! # Options
//!
//! - `-c config_dir`: the directory with `main.cf` (see Security).
//! - `-f`: flush the queue: ask the queue manager to attempt delivery of all queued mail
//!   now (triggers `F` and `A` on `public/qmgr`, and a wakeup of `pickup`(8) on
//!   `public/pickup` for the maildrop). Flushing undeliverable mail often makes delivery of
//!   all other mail slower.
//! - `-i queue_id`: schedule immediate delivery of deferred mail with this queue ID: the
//!   queue manager retries that message now (request trigger `i` on `public/qmgr`; posthorn
//!   has no `flush`(8) daemon).
//! - `-j`: list the queue in JSON Lines format (see JSON object format).
//! - `-p`: list the queue in the traditional Sendmail format: per message its queue ID,
//!   size, arrival time and sender, then the recipients that still need delivery, each
//!   group preceded by the reason of the last failed attempt where known. The queue ID is
//!   followed by `*` when the message is in the active queue (selected for delivery), by
//!   `!` when it is on hold, then by `#` when it is forced to expire. The listing ends
//!   with `-- N Kbytes in M Requests.`, or is `Mail queue is empty`.
//! - `-s site`: schedule immediate delivery of all mail queued for `site`, a domain (an
//!   address literal in `[]` is accepted): the queue manager retries now every deferred
//!   message with a pending recipient in that domain (request trigger `s`). Unlike
//!   Postfix's flush(8), which keeps per-site logs, qmgr finds them by reading the deferred
//!   queue's envelopes.
//! - `-v`: verbose logging; honoured only for the super-user, or when postqueue runs
//!   without raised privileges.
//!
//! # JSON object format
//!
//! Each queue file is one JSON object on one line, with Postfix's members in Postfix's
//! order: `queue_name` (where the message was found: `maildrop`, `active`, `incoming`,
//! `deferred` or `hold`; the queue may change while it is listed, so a message can appear
//! twice or not at all), `queue_id`, `arrival_time` (seconds since the epoch),
//! `message_size` (bytes of header and body), `forced_expire` (`true` or `false`),
//! `sender`, and `recipients`, an array of objects with `address` and, when known,
//! `delay_reason`. Programs should ignore members not listed here.
//!
//! # Security
//!
//! postqueue may be installed set-group-ID `setgid_group` (`posthorn set-permissions`
//! does so), which lets it connect to `public/showq` and `public/qmgr`. It never runs
//! set-user-ID, never reads the queue, and distrusts its caller: the environment is
//! cleared but for `TZ` (`MAIL_CONFIG` is read once, first); when it runs with raised
//! privileges for anyone but root, a configuration directory other than the default is
//! used only when the default `main.cf` lists it in `alternate_config_directories`.
//! Addresses and reasons, which come from mail, are shown with control characters
//! replaced by `?`. Listing requires `authorized_mailq_users`, flushing
//! `authorized_flush_users`; root and `mail_owner` are always allowed.
//!
//! # Standards
//!
//! RFC 7159 (JSON).
//!
//! # Diagnostics
//!
//! Problems are logged (to `maillog_file`, else syslog) and printed on standard error as
//! `postqueue: fatal: text`, with Postfix's texts: `Queue report unavailable - mail system
//! is down (Connect to the posthorn showq service: reason)`, `Cannot flush mail queue -
//! mail system is down`, `User name(uid) is not allowed to view the mail queue`.
//!
//! # Exit status
//!
//! 0 on success (also when the reader of the listing goes away early). 64 (EX_USAGE) for
//! a bad command line, site or queue ID; 69 (EX_UNAVAILABLE) when the mail system is down;
//! 70 (EX_SOFTWARE) when showq cannot be reached for lack of permission, answers
//! something malformed, or cannot finish the listing; 71 (EX_OSERR) when stand-alone showq
//! cannot be started; 74 (EX_IOERR) for output errors; 77 (EX_NOPERM) for a user not
//! authorized; 78 (EX_CONFIG) for configuration errors.
//!
//! # Environment
//!
//! - `MAIL_CONFIG`: the configuration directory, when `-c` is not given (same rule).
//! - `TZ`: the time zone of the arrival times in the `-p` listing.
//!
//! # Configuration parameters
//!
//! - `alternate_config_directories`: see Security (read from the default `main.cf`).
//! - `authorized_flush_users` (default `static:anyone`): who may use `-f`, `-i`, `-s`.
//! - `authorized_mailq_users` (default `static:anyone`): who may use `-p`, `-j`.
//! - `config_directory`: the default configuration directory.
//! - `daemon_directory`: where stand-alone `showq` is.
//! - `ipc_timeout`: time limit for each read from showq.
//! - `mail_name`, `mail_owner`, `showq_service_name`.
//! - `queue_directory`: where `public/showq`, `public/qmgr` and `public/pickup` are.
//! - `maillog_file`, `syslog_facility`, `syslog_name`: logging.
//!
//! # Files
//!
//! - `/var/spool/posthorn/public/showq`: the queue listing service.
//! - `/var/spool/posthorn/public/qmgr`, `/var/spool/posthorn/public/pickup`: triggers.
//!
//! # See also
//!
//! showq(8), qmgr(8), pickup(8), sendmail(1), posthorn(1).

pub mod access;
pub mod cli;
pub mod format;
pub mod protocol;

use std::io::{self, BufReader, BufWriter, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use posthorn_config::Config;
use posthorn_message::time::TimeZone;
use posthorn_proto::{ProtoError, service, trigger};
use posthorn_queue::QueueLayout;

use access::user_in_list;
use cli::Mode;
use format::{Compat, Json, Listing, printable};
use posthorn_config::trust::{Caller, trusted_config_dir};
use protocol::{Event, ListingReader};

/// sysexits(3) codes used by postqueue.
pub mod exit {
    pub use posthorn_sys::sysexits::{
        EX_CONFIG as CONFIG, EX_IOERR as IOERR, EX_NOPERM as NOPERM, EX_OSERR as OSERR,
        EX_SOFTWARE as SOFTWARE, EX_UNAVAILABLE as UNAVAILABLE, EX_USAGE as USAGE,
    };
}

/// Why a listing could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// Writing the listing failed (`EPIPE`: the reader went away).
    #[error("output write error: {0}")]
    Output(#[source] io::Error),
    /// showq's stream was broken or malformed.
    #[error("malformed showq server response: {0}")]
    Protocol(#[from] ProtoError),
    /// showq reported that it could not finish the listing.
    #[error("showq cannot list the queue: {0}")]
    Server(String),
}

/// Reads a showq stream from `input` and writes it out through `listing`, one event at a
/// time. Text from showq passes through [`printable`] first.
pub fn copy_listing<R: Read>(input: R, listing: &mut dyn Listing) -> Result<(), ListingError> {
    let mut rd = ListingReader::new(input)?;
    while let Some(ev) = rd.next_event()? {
        match ev {
            Event::Message(mut m) => {
                for s in [&mut m.queue_name, &mut m.queue_id, &mut m.sender] {
                    *s = printable(s);
                }
                listing.message(&m).map_err(ListingError::Output)?;
            }
            Event::Recipient(mut r) => {
                r.address = printable(&r.address);
                r.reason = printable(&r.reason);
                listing.recipient(&r).map_err(ListingError::Output)?;
            }
            Event::Failed(why) => return Err(ListingError::Server(printable(&why))),
            // next_event() returns None at End.
            Event::End => break,
        }
    }
    listing.finish().map_err(ListingError::Output)
}

/// Runs postqueue with the process's arguments; returns the exit status (fatal errors exit
/// directly through posthorn_log::fatal_with).
pub fn run() -> i32 {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // Distrust the caller's environment: read MAIL_CONFIG once, then keep nothing but TZ.
    let mail_config = std::env::var_os("MAIL_CONFIG").filter(|v| !v.is_empty());
    posthorn_sys::clear_env(&["TZ"]);
    let caller = Caller::current();
    posthorn_log::init_command("postqueue", None, false);
    let args = match cli::parse(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => posthorn_log::fatal_with(exit::USAGE, e),
    };
    let dir = match trusted_config_dir(args.config_dir.clone(), mail_config, caller) {
        Ok(d) => d,
        Err(e) => posthorn_log::fatal_with(exit::CONFIG, format!("uid={}: {e}", caller.uid)),
    };
    let cfg = match Config::load(&dir) {
        Ok(c) => c,
        Err(e) => posthorn_log::fatal_with(exit::CONFIG, e),
    };
    let verbose = if caller.must_check() { 0 } else { args.verbose };
    posthorn_log::init_command("postqueue", Some(&cfg), verbose > 0);
    let checked = match &args.mode {
        Mode::FlushSite(site) => cli::check_site(site),
        Mode::FlushFile(id) => cli::check_queue_id(id),
        _ => Ok(()),
    };
    if let Err(e) = checked {
        posthorn_log::fatal_with(exit::USAGE, e);
    }
    match &args.mode {
        Mode::List => show_queue(&cfg, &dir, false, verbose),
        Mode::Json => show_queue(&cfg, &dir, true, verbose),
        Mode::Flush => {
            authorize(&cfg, "authorized_flush_users", "flush");
            flush(&cfg, true)
        }
        Mode::FlushFile(id) => {
            authorize(&cfg, "authorized_flush_users", "flush");
            request(&cfg, &trigger::request(trigger::FLUSH_ID, id))
        }
        Mode::FlushSite(site) => {
            authorize(&cfg, "authorized_flush_users", "flush");
            request(&cfg, &trigger::request(trigger::FLUSH_SITE, site))
        }
    }
}

/// Exits with 77 unless the real user may `verb` the queue per the user list `param`.
/// Root and mail_owner always may (Postfix's rule).
fn authorize(cfg: &Config, param: &str, verb: &str) {
    let uid = nix::unistd::getuid().as_raw();
    if uid == 0 {
        return;
    }
    let owner = posthorn_sys::user_by_name(&cfg.get("mail_owner"))
        .ok()
        .flatten();
    if owner.is_some_and(|a| a.uid == uid) {
        return;
    }
    let name = posthorn_sys::user_by_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |a| a.name);
    match user_in_list(&cfg.get(param), &name) {
        Ok(true) => {}
        Ok(false) => posthorn_log::fatal_with(
            exit::NOPERM,
            format!("User {name}({uid}) is not allowed to {verb} the mail queue"),
        ),
        Err(e) => posthorn_log::fatal_with(exit::CONFIG, format!("{param}: {e}")),
    }
}

/// The text of an OS error without Rust's ` (os error N)` suffix, as Postfix's `%m`.
fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// `-p` / `-j`: list the queue through showq.
fn show_queue(cfg: &Config, config_dir: &Path, json: bool, verbose: u32) -> i32 {
    authorize(cfg, "authorized_mailq_users", "view");
    let service_name = cfg.get("showq_service_name");
    let socket = QueueLayout::from_config(cfg).public_socket(&service_name);
    let what = format!(
        "Connect to the {} {service_name} service",
        cfg.get("mail_name")
    );
    match UnixStream::connect(&socket) {
        Ok(s) => {
            let timeout = Some(cfg.get_duration("ipc_timeout")).filter(|t| !t.is_zero());
            if let Err(e) = s.set_read_timeout(timeout) {
                log::warn!("{}: {e}", socket.display());
            }
            listed(copy_to_stdout(s, json))
        }
        // The mail system may well be up: do not say it is down.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
            posthorn_log::fatal_with(exit::SOFTWARE, format!("{what}: {}", strerror(&e)))
        }
        Err(e) if nix::unistd::geteuid().is_root() => {
            log::warn!(
                "Mail system is down -- accessing queue directly ({what}: {})",
                strerror(&e)
            );
            stand_alone(cfg, config_dir, json, verbose)
        }
        Err(e) => posthorn_log::fatal_with(
            exit::UNAVAILABLE,
            format!(
                "Queue report unavailable - mail system is down ({what}: {})",
                strerror(&e)
            ),
        ),
    }
}

/// Copies a showq stream to standard output in the chosen format, arrival times in the
/// zone of `TZ` (else `/etc/localtime`).
fn copy_to_stdout(input: impl Read, json: bool) -> Result<(), ListingError> {
    let stdout = io::stdout();
    let out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let input = BufReader::with_capacity(64 * 1024, input);
    if json {
        copy_listing(input, &mut Json::new(out))
    } else {
        let zone = TimeZone::from_tz_value(std::env::var_os("TZ").as_deref());
        copy_listing(input, &mut Compat::new(out, zone))
    }
}

/// The exit status for a listing's outcome.
fn listed(result: Result<(), ListingError>) -> i32 {
    match result {
        Ok(()) => 0,
        // The reader of the listing went away (`postqueue -p | head`): not an error.
        Err(ListingError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e @ ListingError::Output(_)) => posthorn_log::fatal_with(exit::IOERR, e),
        Err(e) => posthorn_log::fatal_with(exit::SOFTWARE, e),
    }
}

/// Root with the mail system down: runs `daemon_directory/showq -S`, which drops to
/// mail_owner and writes the showq stream to its standard output (a socket pair here).
fn stand_alone(cfg: &Config, config_dir: &Path, json: bool, verbose: u32) -> i32 {
    let program = cfg.get_path("daemon_directory").join("showq");
    let (ours, theirs) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => posthorn_log::fatal_with(exit::OSERR, format!("socketpair: {e}")),
    };
    let mut cmd = Command::new(&program);
    cmd.arg("-S").arg("-c").arg(config_dir);
    for _ in 0..verbose {
        cmd.arg("-v");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(theirs)));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => posthorn_log::fatal_with(
            exit::OSERR,
            format!("Error running {}: {e}", program.display()),
        ),
    };
    // Close our copy of the child's end, so that its exit ends the stream.
    drop(cmd);
    let result = copy_to_stdout(ours, json);
    if matches!(&result, Err(ListingError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe) {
        return 0;
    }
    match child.wait() {
        Ok(st) if st.success() => listed(result),
        Ok(st) => posthorn_log::fatal_with(
            exit::SOFTWARE,
            format!("Error running {} ({st})", program.display()),
        ),
        Err(e) => posthorn_log::fatal_with(
            exit::OSERR,
            format!("Error running {}: {e}", program.display()),
        ),
    }
}

/// Sends trigger bytes; a full backlog (the daemon is busy and has triggers waiting) counts
/// as delivered.
fn trigger_sent(socket: &Path, bytes: &[u8]) -> bool {
    match trigger::send(socket, bytes) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
        Err(e) => {
            log::debug!("trigger {}: {e}", socket.display());
            false
        }
    }
}

/// `-i`, `-s`: sends qmgr a request trigger (retry one message, or one destination's mail).
fn request(cfg: &Config, bytes: &[u8]) -> i32 {
    if !trigger_sent(
        &QueueLayout::from_config(cfg).public_socket(service::QMGR),
        bytes,
    ) {
        posthorn_log::fatal_with(
            exit::UNAVAILABLE,
            "Cannot flush mail queue - mail system is down",
        );
    }
    0
}

/// `-f`: ask qmgr to scan every queue now, ignoring retry times (`with_maildrop`: also
/// wake up pickup, as Postfix's flush does).
fn flush(cfg: &Config, with_maildrop: bool) -> i32 {
    let l = QueueLayout::from_config(cfg);
    let qmgr: &[u8] = if with_maildrop {
        &[trigger::FLUSH_DEAD, trigger::SCAN_ALL]
    } else {
        &[trigger::SCAN_ALL]
    };
    let mut ok = trigger_sent(&l.public_socket(service::QMGR), qmgr);
    if ok && with_maildrop {
        ok = trigger_sent(&l.public_socket(service::PICKUP), &[trigger::WAKEUP]);
    }
    if !ok {
        posthorn_log::fatal_with(
            exit::UNAVAILABLE,
            "Cannot flush mail queue - mail system is down",
        );
    }
    0
}
