//! sendmail, mailq, newaliases - the Sendmail-compatible command-line interface of posthorn.
//!
//! # Synopsis
//!
//! ```text
//! sendmail [option ...] [recipient ...]
//! mailq                   (sendmail -bp)
//! newaliases              (sendmail -bi, sendmail -I)
//! ```
//!
//! # Description
//!
//! `sendmail` reads a message from standard input until end of file, or until a line that
//! holds only a `.` character, and arranges for its delivery: it hands the envelope and the
//! content to `postdrop`(1), which writes a queue file into the `maildrop` directory, where
//! `pickup`(8) finds it. Submission works while the mail system is stopped; the message
//! waits in `maildrop` until it runs.
//!
//! Standard input is read as Postfix does with `sendmail_fix_line_endings = always`: CR
//! characters before a line's LF are removed, leading `From ` (mbox) lines are dropped, and
//! a last line without LF gets one. Nothing else is changed: a line with two dots keeps
//! both (no dot-unstuffing).
//!
//! Each recipient argument is read as an address list, so `'Bob <bob@example.com>, carol'`
//! names two recipients. Options end at the first recipient or at `--`: in
//! `sendmail bob -t`, `-t` is a second recipient, as with Postfix.
//!
//! The program name selects the default mode: `mailq` lists the queue, `newaliases`
//! rebuilds the alias databases; flags can select another mode (`newaliases -bp` lists the
//! queue). The three names are separate binaries of this crate and may also be symbolic
//! links to `sendmail`.
//!
//! `mailq` lists the queue: as Postfix's sendmail does, it runs `postqueue -p` (from
//! `command_directory`) in its place, which gets the listing from the `showq` daemon; see
//! postqueue(1) for the format. Any user may list the queue this way, without reading it.
//!
//! With `-bs`, `sendmail` speaks SMTP on standard input and output, as a stand-alone SMTP
//! server: the same protocol engine as smtpd(8), with the `220` greeting from
//! `smtpd_banner`, EHLO extensions (PIPELINING, SIZE from `message_size_limit`, VRFY,
//! ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING; never STARTTLS), and DSN
//! parameters (`RET`, `ENVID`, `NOTIFY`, `ORCPT`) kept in the queue file. The client is a
//! local pipe: pipelining is always allowed and there is no error sleep. Lines may end in
//! bare LF, but the end of DATA must be `<CR><LF>.<CR><LF>`. Each message is submitted
//! through `postdrop`(1) at the end of DATA, as the invoking user, exactly like a message
//! read in delivery mode (`-G` gives it `rewrite_context=remote`); the reply is
//! `250 2.0.0 Ok: queued`, or `451 4.3.0 Error: ...` when it could not be queued. `VRFY`
//! answers `252` without looking the address up. The session ends with `QUIT` or at end of
//! input; sendmail then exits 0. `-f`, `-F`, `-N`, `-R`, `-V` do not apply: the envelope
//! comes from the SMTP commands.
//!
//! `newaliases` rebuilds each `hash:` database named in `alias_database` (or with `-oA`)
//! from its aliases(5) source file.
//!
//! # Options
//!
//! - `-Am`, `-Ac` (ignored): Postfix uses the same configuration for submission and relay.
//! - `-B body_type`: `7BIT` or `8BITMIME`; checked, then ignored.
//! - `-bd`, `-bl`: daemon mode. **Not implemented yet** (use `posthorn start`); exits 69.
//! - `-bh`, `-bH` (ignored): there is no host status database; exits 0.
//! - `-bi`, `-I`: rebuild the alias databases, as `newaliases`.
//! - `-bm`: read a message and arrange for delivery (the default).
//! - `-bp`: list the queue, as `mailq` (runs `postqueue -p`).
//! - `-bs`: stand-alone SMTP session on standard input and output (see below).
//! - `-bv`: address verification report. **Not implemented yet**; exits 69.
//! - `-C config_dir`: the configuration directory (a path ending in `main.cf` means its
//!   directory). It is passed on to postdrop, which accepts it only under its own rules.
//! - `-F full_name`: the sender's full name, used when cleanup adds a `From:` header.
//!   Default: the `NAME` environment variable, else the GECOS field of the password entry
//!   up to its first comma, with `&` replaced by the capitalised login name.
//! - `-f sender`, `-r sender`: the envelope sender. `<>` or an empty value is the null
//!   sender. Default: the login name of the real user ID.
//! - `-G` (gateway submission): sets `rewrite_context=remote` for cleanup.
//! - `-h hop_count`, `-L label`, `-m`, `-n`, `-U`, `-c`, `-x`, `-e mode`, `-p protocol`,
//!   `-O option=value`, `-X log_file`, `-o7`, `-o8`, `-om`, `-od`*mode* and other `-o`*x*
//!   Sendmail options (ignored).
//! - `-i`, `-oi`: a line with a single `.` does not end the message.
//! - `-N dsn`: DSN notification: `never`, or a comma-separated list of `success`,
//!   `delay`, `failure`. Stored with each command-line recipient. A bad value is ignored
//!   with a warning, as in Postfix.
//! - `-oA`*alias_database*: the alias database(s) for `newaliases` (`hash:` is assumed
//!   when no type is given).
//! - `-q`: ask the queue manager to attempt delivery of all queued mail now (a trigger on
//!   `public/qmgr`; the mail system must be running).
//! - `-q`*interval* (for example `-q30m`) (ignored; exits 0, as Postfix does).
//! - `-qR`*site*, `-qI`*queue_id*: **not implemented yet**; exit 69. `-qS` is not supported.
//! - `-R return`: DSN: `full` or `hdrs`, how much of the message a bounce returns.
//! - `-t`: also take the recipients from the message's `To:`, `Cc:` and `Bcc:` headers
//!   (done by cleanup; the recipients on the command line are added).
//! - `-V envid`: the DSN envelope ID (printable ASCII, at most 100 characters).
//! - `-v`: once, Postfix mails a delivery report: **not implemented yet**, ignored with a
//!   warning. Twice or more: verbose logging.
//! - `-XV`: VERP. **Not implemented yet**; exits 69.
//!
//! # Security
//!
//! `sendmail` is not set-user-ID or set-group-ID: it runs with the caller's privileges and
//! never touches the queue. Everything it hands on is checked again by the set-group-ID
//! `postdrop`, which trusts nothing from its caller.
//!
//! # Diagnostics
//!
//! Problems are logged (to `maillog_file`, else syslog) and printed on standard error as
//! `sendmail: fatal: text` (`mailq:`, `newaliases:` under those names). Warnings are
//! printed as `sendmail: warning: text`.
//!
//! # Exit status
//!
//! 0 when the message is safely queued (postdrop has fsynced the file and its directory),
//! or when a `-bs` session ends (each message's fate is in its SMTP reply), else a sysexits(3) code: 64 (EX_USAGE) for a bad command line or no recipients, 65
//! (EX_DATAERR) when standard input cannot be read, 74 (EX_IOERR) when a `-bs` session
//! cannot read its input or write its replies, 69 (EX_UNAVAILABLE) for features that
//! are not implemented yet, when postdrop or postqueue cannot be run, or when `-q` finds
//! the mail system down, 71 (EX_OSERR) when the user has no login name, 75 (EX_TEMPFAIL)
//! when the message could not be queued (postdrop's own exit status is passed on when it
//! is a sysexits code), 78 (EX_CONFIG) for configuration errors. `mailq` exits with the
//! status of postqueue(1).
//!
//! # Environment
//!
//! - `MAIL_CONFIG`: the configuration directory, when `-C` is not given.
//! - `MAIL_VERBOSE`: verbose logging.
//! - `NAME`: the sender's full name, when `-F` is not given.
//!
//! # Configuration parameters
//!
//! - `alias_database`: the databases `newaliases` rebuilds.
//! - `myhostname`, `smtpd_banner`, `message_size_limit`, `smtpd_recipient_limit`,
//!   `disable_vrfy_command`, `smtpd_helo_required`, `smtputf8_enable`,
//!   `smtpd_soft_error_limit`, `smtpd_hard_error_limit`, `smtpd_junk_command_limit`,
//!   `smtpd_discard_ehlo_keywords`, `line_length_limit`: the `-bs` SMTP session.
//! - `command_directory`: where `postdrop` and `postqueue` are (default: the directory of
//!   this program; a program missing there is looked for next to this program).
//! - `config_directory`: the default configuration directory, `/etc/posthorn`.
//! - `queue_directory`: where `public/qmgr` is (`-q`).
//! - `maillog_file`, `syslog_facility`, `syslog_name`: logging.
//!
//! # Files
//!
//! - `/etc/posthorn/main.cf`: configuration.
//! - `/var/spool/posthorn/maildrop/`: where postdrop puts submitted mail.
//! - `/var/spool/posthorn/public/qmgr`: the trigger socket for `-q`.
//!
//! # See also
//!
//! postdrop(1), postqueue(1), pickup(8), smtpd(8), cleanup(8), qmgr(8), showq(8), posthorn(1),
//! aliases(5), sysexits(3).

pub mod address;
pub mod args;
pub mod input;
pub mod mailq;
pub mod newaliases;
pub mod standalone;
pub mod submit;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use posthorn_config::Config;
use posthorn_queue::QueueLayout;

pub use args::{Action, Mode, Options};

/// sysexits(3) codes used by these commands.
pub mod exit {
    pub use posthorn_sys::sysexits::{
        EX_CANTCREAT as CANTCREAT, EX_CONFIG as CONFIG, EX_DATAERR as DATAERR, EX_IOERR as IOERR,
        EX_NOUSER as NOUSER, EX_OSERR as OSERR, EX_TEMPFAIL as TEMPFAIL,
        EX_UNAVAILABLE as UNAVAILABLE, EX_USAGE as USAGE,
    };
}

/// Runs `sendmail`, `mailq` or `newaliases` (per `mode`, or argv\[0\]'s name) with the
/// process's arguments; returns the exit status. Fatal errors exit directly through
/// posthorn_log::fatal_with.
pub fn run(mode: Mode) -> i32 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mode = Mode::from_argv0(argv.first().map(OsString::as_os_str), mode);
    let prog = mode.name();
    posthorn_log::init_command(prog, None, false);
    let opts = match args::parse(mode, argv) {
        Ok(o) => o,
        Err(e) => posthorn_log::fatal_with(e.code, e.message),
    };
    match &opts.action {
        Action::Ignore => return 0,
        Action::NotImplemented(what) => {
            posthorn_log::fatal_with(exit::UNAVAILABLE, format!("{what} is not implemented yet"))
        }
        _ => {}
    }
    let chosen_dir = opts.config_dir.clone().or_else(|| {
        std::env::var_os("MAIL_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let dir = chosen_dir
        .clone()
        .unwrap_or_else(|| Config::defaults().get_path("config_directory"));
    let cfg = match Config::load(&dir) {
        Ok(c) => c,
        Err(e) => posthorn_log::fatal_with(exit::CONFIG, e),
    };
    let verbose = opts.verbose > 0 || std::env::var_os("MAIL_VERBOSE").is_some();
    posthorn_log::init_command(prog, Some(&cfg), verbose);
    for w in &opts.warnings {
        log::warn!("{w}");
    }
    match &opts.action {
        Action::Enqueue => enqueue(&opts, &cfg, chosen_dir.as_deref(), verbose),
        Action::Mailq => list_queue(&opts, &cfg, chosen_dir.as_deref()),
        Action::Newaliases => rebuild_aliases(&opts, &cfg),
        Action::Flush => flush(&cfg),
        Action::StandAlone => stand_alone(&opts, &cfg, chosen_dir.as_deref(), verbose),
        Action::Ignore | Action::NotImplemented(_) => 0,
    }
}

fn enqueue(opts: &Options, cfg: &Config, chosen_dir: Option<&Path>, verbose: bool) -> i32 {
    if opts.delivery_report {
        log::warn!("-v (mail a delivery report) is not implemented yet -- ignored");
    }
    let who = submit::Submitter::current();
    let name = std::env::var("NAME").ok();
    let env = match submit::envelope(opts, &who, name.as_deref(), &mut |w| log::warn!("{w}")) {
        Ok(e) => e,
        Err(f) => posthorn_log::fatal_with(f.code, f.message),
    };
    let postdrop = submit::postdrop_program(&cfg.get_path("command_directory"));
    log::debug!("submitting through {}", postdrop.display());
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    match submit::submit(
        &env,
        &mut input,
        opts.dot_ends_input,
        &postdrop,
        chosen_dir,
        verbose,
        &who,
    ) {
        Ok(_) => 0,
        Err(f) => posthorn_log::fatal_with(f.code, f.message),
    }
}

/// `-bs`: an SMTP session on stdin/stdout; each message goes through postdrop.
fn stand_alone(opts: &Options, cfg: &Config, chosen_dir: Option<&Path>, verbose: bool) -> i32 {
    let who = submit::Submitter::current();
    let postdrop = submit::postdrop_program(&cfg.get_path("command_directory"));
    log::debug!(
        "stand-alone session, submitting through {}",
        postdrop.display()
    );
    let mut deliver = |env: &posthorn_queue::file::Envelope, content: &[u8]| {
        submit::submit_stored(env, content, &postdrop, chosen_dir, verbose, &who)
    };
    let mut backend = standalone::Submission::new(opts.rewrite_context, &mut deliver);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match standalone::run(
        standalone::settings(cfg),
        stdin.lock(),
        stdout.lock(),
        &mut backend,
    ) {
        Ok(_) => 0,
        Err(e) => posthorn_log::fatal_with(exit::IOERR, format!("stand-alone session: {e}")),
    }
}

/// `mailq`, `-bp`: becomes `postqueue -p`; returns only when that cannot be run.
fn list_queue(opts: &Options, cfg: &Config, chosen_dir: Option<&Path>) -> i32 {
    let program = mailq::postqueue_program(&cfg.get_path("command_directory"));
    let args = mailq::postqueue_args(chosen_dir, opts.verbose);
    log::debug!("running {} {args:?}", program.display());
    let e = mailq::exec_postqueue(&program, &args);
    posthorn_log::fatal_with(
        exit::UNAVAILABLE,
        format!("execvp {}: {e}", program.display()),
    )
}

fn rebuild_aliases(opts: &Options, cfg: &Config) -> i32 {
    let value = opts
        .alias_database
        .clone()
        .unwrap_or_else(|| cfg.get("alias_database"));
    match newaliases::rebuild(&value, &mut |w| log::warn!("{w}")) {
        Ok(_) => 0,
        Err(e) => posthorn_log::fatal_with(e.code, e.message),
    }
}

fn flush(cfg: &Config) -> i32 {
    use posthorn_proto::{service, trigger};
    let socket = QueueLayout::from_config(cfg).public_socket(service::QMGR);
    match trigger::send(&socket, &[trigger::SCAN_ALL]) {
        Ok(_) => 0,
        Err(e) => {
            log::debug!("trigger {}: {e}", socket.display());
            posthorn_log::fatal_with(
                exit::UNAVAILABLE,
                "Cannot flush mail queue - mail system is down",
            )
        }
    }
}
