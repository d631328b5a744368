//! postdrop - the set-group-ID gate through which local submissions enter the queue.
//!
//! # Synopsis
//!
//! ```text
//! postdrop [-rv] [-c config_dir]
//! ```
//!
//! # Description
//!
//! `postdrop` reads one message, as a stream of queue-file records, from standard input and
//! stores it as a new file in the `maildrop` directory of the queue, where `pickup`(8)
//! takes it. It is normally run by `sendmail`(1), never by hand. It stamps the arrival time
//! itself, writes the size record (content size, content offset, recipient count, and the
//! extract-recipients flag that `sendmail -t` asks for with the attribute
//! `extract_recipients=1`), commits the file (fsync of the file and of the `maildrop`
//! directory, then the execute bit marks it complete), and only then exits 0. Finally it
//! pokes `public/pickup` with a wakeup trigger; when that fails (the mail system is
//! stopped) the file simply waits for pickup's next scan, and postdrop stays silent (the
//! failure is logged with `-v` only).
//!
//! # Inputs
//!
//! The record stream (posthorn_queue::record format, each record CRC-checked), in this
//! order: `T`, `F`, `S`, `A`, `i`, `<`, and `O`/`n`/`o` before each `R`; then `M`, `N`
//! content blocks, `X`, and `E`. Only the attributes `rewrite_context` (`local` or
//! `remote`) and `extract_recipients` are accepted; every other record type, value or order
//! is refused (see the `stream` module). Content larger than `message_size_limit` is
//! refused at once (exit 69, as Postfix); cleanup enforces the limit again.
//!
//! # Outputs
//!
//! One complete file `maildrop/QUEUEID` (mode 0744, owned by the submitting user), or no
//! file at all. Nothing on standard output.
//!
//! # Options
//!
//! - `-c config_dir`: the configuration directory (see Security).
//! - `-r`: Postfix's internal protocol: the input is a record stream (always, here), and the
//!   new queue ID is reported on standard output as `queue_id=ID` once the file is committed.
//! - `-v`: verbose logging; honoured only when postdrop runs without raised privileges or
//!   for root.
//!
//! # Security
//!
//! postdrop is installed set-group-ID `setgid_group` (mode 2755) so that it can write into
//! `maildrop/` (mode 730, group `setgid_group`), which users may not list. It never runs
//! set-user-ID. It distrusts everything its caller controls:
//!
//! - Environment: only `MAIL_CONFIG` is ever read; no other variable is consulted, no other
//!   program is run. (The environment is not cleared: that needs `unsafe`, which lives only
//!   in posthorn-sys; the C library ignores its dangerous variables in set-ID programs.)
//! - Configuration directory: when privileged (effective and real IDs differ) and the real
//!   user is not root, a directory from `-c` or `MAIL_CONFIG` other than the default
//!   `/etc/posthorn` is used only when the default `main.cf` lists it in
//!   `alternate_config_directories`. An unprivileged postdrop (a build tree, the tests, an
//!   instance run by one user) has nothing to protect and honours any directory.
//! - umask is set to 022; file modes are set explicitly anyway.
//! - Input: checked record by record as above; the time comes from the clock, not the
//!   caller; the file is owned by the caller, so it counts against the caller's quota.
//! - Signals: SIGINT, SIGQUIT and SIGTERM remove the unfinished file before postdrop exits,
//!   as in Postfix; SIGXFSZ is caught so an exceeded file-size limit becomes a write error.
//!   SIGHUP keeps its inherited disposition (it cannot be inspected without `unsafe`; a
//!   hangup during a submission leaves an incomplete file without execute bit, which
//!   pickup never takes).
//!
//! # Diagnostics
//!
//! Problems are logged (`maillog_file`, else syslog) and printed on standard error as
//! `postdrop: fatal: uid=UID: reason`.
//!
//! # Exit status
//!
//! 0 once the message is committed to stable storage. 64 (EX_USAGE) for a bad command
//! line, 65 (EX_DATAERR) for input that breaks the rules (including a truncated or damaged
//! stream and "message file too big"), 73 (EX_CANTCREAT) when no file can be created in
//! `maildrop/`, 75 (EX_TEMPFAIL) for I/O errors and interruption by a signal, 78
//! (EX_CONFIG) for an unreadable configuration or an untrusted configuration directory.
//!
//! # Configuration parameters
//!
//! - `alternate_config_directories` (read from the default `main.cf` only).
//! - `queue_directory`, `hash_queue_names`, `hash_queue_depth`: where `maildrop/` is.
//! - `message_size_limit`: content larger than this is refused (0 means no limit).
//! - `maillog_file`, `syslog_facility`, `syslog_name`: logging.
//!
//! # Files
//!
//! - `/etc/posthorn/main.cf`: configuration.
//! - `/var/spool/posthorn/maildrop/`: new submissions.
//! - `/var/spool/posthorn/public/pickup`: the pickup trigger socket.
//!
//! # See also
//!
//! sendmail(1), pickup(8), cleanup(8), posthorn(1).

pub mod stream;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use posthorn_config::Config;
use posthorn_queue::file::NewQueueFile;
use posthorn_queue::{QueueLayout, QueueName};

use posthorn_config::trust::{Caller, trusted_config_dir};
pub use posthorn_sys::sysexits::{EX_CANTCREAT, EX_CONFIG, EX_USAGE};
use stream::{EX_TEMPFAIL, copy_submission};

/// The command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `-c dir`.
    pub config_dir: Option<PathBuf>,
    /// `-v`.
    pub verbose: bool,
    /// `-r`: report the new queue ID on standard output (`queue_id=ID`), as Postfix's
    /// postdrop does for its internal protocol (sendmail -bs quotes it in its 250 reply).
    pub report_id: bool,
}

/// Parses argv (argv\[0\] included); the error is the usage text.
pub fn parse_args<I>(args: I) -> Result<Args, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg::Short;
    const USAGE: &str = "usage: postdrop [-c config_dir] [-v]";
    let mut out = Args::default();
    let mut p = lexopt::Parser::from_iter(args);
    loop {
        match p.next() {
            Ok(None) => return Ok(out),
            Ok(Some(Short('c'))) => {
                out.config_dir = Some(p.value().map_err(|e| format!("{e}; {USAGE}"))?.into())
            }
            Ok(Some(Short('r'))) => out.report_id = true,
            Ok(Some(Short('v'))) => out.verbose = true,
            Ok(Some(other)) => return Err(format!("{}; {USAGE}", other.unexpected())),
            Err(e) => return Err(format!("{e}; {USAGE}")),
        }
    }
}

/// Runs postdrop with the process's arguments and standard input; returns the exit status
/// (fatal errors exit directly through posthorn_log::fatal_with).
pub fn run() -> i32 {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let now = SystemTime::now();
    let mail_config = std::env::var_os("MAIL_CONFIG").filter(|v| !v.is_empty());
    // Distrust the caller's environment: nothing but TZ survives (MAIL_CONFIG was read
    // above and is honoured only under posthorn_config::trust's rule).
    posthorn_sys::clear_env(&["TZ"]);
    let caller = Caller::current();
    let uid = caller.uid;
    posthorn_log::init_command("postdrop", None, false);
    let args = match parse_args(std::env::args_os()) {
        Ok(a) => a,
        Err(usage) => posthorn_log::fatal_with(EX_USAGE, usage),
    };
    // -c wins over MAIL_CONFIG.
    let dir = match trusted_config_dir(args.config_dir.clone(), mail_config, caller) {
        Ok(d) => d,
        Err(e) => posthorn_log::fatal_with(EX_CONFIG, format!("uid={uid}: {e}")),
    };
    let cfg = match Config::load(&dir) {
        Ok(c) => c,
        Err(e) => posthorn_log::fatal_with(EX_CONFIG, e),
    };
    posthorn_log::init_command("postdrop", Some(&cfg), args.verbose && !caller.must_check());
    let layout = QueueLayout::from_config(&cfg);
    let limit = cfg.get_size("message_size_limit");
    let max_content = (limit > 0).then_some(limit);

    let guard = SignalGuard::install();
    let mut file = match guard.create(|| NewQueueFile::create(&layout, QueueName::Maildrop)) {
        Ok(f) => f,
        Err(e) => posthorn_log::fatal_with(
            EX_CANTCREAT,
            format!("uid={uid}: create file in maildrop: {e}"),
        ),
    };
    log::debug!("{}: receiving a submission from uid={uid}", file.id());
    let size = match copy_submission(std::io::stdin().lock(), file.writer(), now, max_content) {
        Ok(s) => s,
        Err(e) => {
            drop(file); // removes the unfinished file
            posthorn_log::fatal_with(e.exit_code(), format!("uid={uid}: {e}"));
        }
    };
    let id = guard.commit(|| file.commit(size));
    let id = match id {
        Ok(id) => id,
        Err(e) => posthorn_log::fatal_with(EX_TEMPFAIL, format!("uid={uid}: {e}")),
    };
    log::debug!("{id}: queued in maildrop, {} recipients", size.recipients);
    if args.report_id {
        use std::io::Write;
        // The message is already safe; a caller that stopped listening loses only the ID.
        let _ = writeln!(std::io::stdout(), "queue_id={id}");
    }
    let socket = layout.public_socket(posthorn_proto::service::PICKUP);
    if let Err(e) = posthorn_proto::trigger::send(&socket, &[posthorn_proto::trigger::WAKEUP]) {
        log::debug!("unable to notify pickup at {}: {e}", socket.display());
    }
    0
}

/// Where the submission stands, for the signal thread.
#[derive(Debug)]
enum Stage {
    /// No file yet.
    Starting,
    /// Writing this file; a signal removes it.
    Writing(PathBuf),
    /// Committed: the message is accepted; signals wait for the normal exit.
    Committed,
}

/// Removes the unfinished file on SIGINT, SIGQUIT or SIGTERM, from a thread that waits for
/// those signals (signal-hook's self-pipe, so no work happens in a signal handler).
struct SignalGuard {
    stage: Arc<Mutex<Stage>>,
}

impl SignalGuard {
    fn install() -> SignalGuard {
        use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGXFSZ};
        let stage = Arc::new(Mutex::new(Stage::Starting));
        // Caught (a flag nobody reads) instead of the default "terminate": a write beyond
        // RLIMIT_FSIZE then fails with EFBIG and the file is removed like after any error.
        let _ = signal_hook::flag::register(
            SIGXFSZ,
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        match signal_hook::iterator::Signals::new([SIGINT, SIGQUIT, SIGTERM]) {
            Ok(mut signals) => {
                let shared = Arc::clone(&stage);
                let spawned = std::thread::Builder::new()
                    .name("signals".into())
                    .spawn(move || {
                        for sig in signals.forever() {
                            let st = shared.lock().unwrap_or_else(PoisonError::into_inner);
                            match &*st {
                                Stage::Committed => continue,
                                Stage::Writing(path) => {
                                    let _ = std::fs::remove_file(path);
                                }
                                Stage::Starting => {}
                            }
                            posthorn_log::fatal_with(
                                EX_TEMPFAIL,
                                format!("interrupted by signal {sig}; message not queued"),
                            );
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("cannot start the signal thread: {e}");
                }
            }
            Err(e) => log::warn!("cannot catch signals: {e}"),
        }
        SignalGuard { stage }
    }

    /// Creates the queue file with signals held off, and from then on lets a signal remove
    /// it (no window in which a signal would leave the new file behind).
    fn create<E>(&self, f: impl FnOnce() -> Result<NewQueueFile, E>) -> Result<NewQueueFile, E> {
        let mut st = self.stage.lock().unwrap_or_else(PoisonError::into_inner);
        let file = f()?;
        *st = Stage::Writing(file.path().to_path_buf());
        Ok(file)
    }

    /// Runs the commit with signals held off, so that a signal cannot remove a file that is
    /// being made durable; after a successful commit, signals no longer remove anything.
    fn commit<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let mut st = self.stage.lock().unwrap_or_else(PoisonError::into_inner);
        let r = f();
        if r.is_ok() {
            *st = Stage::Committed;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse_args(std::iter::once("postdrop").chain(args.iter().copied()))
    }

    #[test]
    fn command_line() {
        assert_eq!(p(&[]).unwrap(), Args::default());
        let a = p(&["-r", "-v", "-c", "/tmp/x"]).unwrap();
        assert_eq!(
            (a.config_dir, a.verbose),
            (Some(PathBuf::from("/tmp/x")), true)
        );
        assert_eq!(
            p(&["-c/tmp/y"]).unwrap().config_dir,
            Some(PathBuf::from("/tmp/y"))
        );
        assert!(p(&["-x"]).unwrap_err().contains("usage: postdrop"));
        assert!(p(&["file"]).unwrap_err().contains("usage: postdrop"));
        assert!(p(&["-c"]).is_err());
    }
}
