//! postcat - show queue file contents
//!
//! # Synopsis
//! `postcat [-bdeho] [-c config_dir] [files ...]`
//! `postcat [-bdeho] [-c config_dir] -q queue_id ...`
//!
//! # Description
//! postcat prints queue files in readable form, in the layout of Postfix's postcat(1), and
//! checks them on the way. With no file it reads standard input. By default it shows
//! everything, as if `-beh` were given:
//!
//! ```text
//! *** ENVELOPE RECORDS deferred/3/6DbRq2ZN7Tz1Kw ***
//! message_size:              23             141               2               0
//! message_arrival_time: Wed Nov 18 11:06:40 2026
//! sender: alice@example.com
//! named_attribute: log_client=localhost[127.0.0.1]
//! original_recipient: bob@example.com
//! recipient: bob@example.net
//! done_recipient: carol@example.com
//! *** MESSAGE CONTENTS deferred/3/6DbRq2ZN7Tz1Kw ***
//! Subject: hello
//!
//! Hello.
//! *** HEADER EXTRACTED deferred/3/6DbRq2ZN7Tz1Kw ***
//! *** MESSAGE FILE END deferred/3/6DbRq2ZN7Tz1Kw ***
//! *** RECIPIENT STATUS deferred/3/6DbRq2ZN7Tz1Kw ***
//! bob@example.net: pending (deferred: 4.4.1 connect to example.net: Connection refused)
//! carol@example.com: done
//! *** RECORD CHECK deferred/3/6DbRq2ZN7Tz1Kw: ok, 11 records ***
//! ```
//!
//! Envelope records are named as in Postfix (`message_size`, `message_arrival_time` in
//! local time, `sender_fullname`, `sender`, `named_attribute`, `original_recipient`,
//! `dsn_envelope_id`, `dsn_return_flags`, `dsn_notify_flags`, `dsn_original_recipient`,
//! `recipient` for a recipient still to be delivered, `done_recipient` for one with its
//! final status). The last two sections are posthorn's: each recipient's status, with the
//! last reason from the message's defer or bounce log (with `-q`), and the verdict of the
//! record check — every record's CRC, the order of the envelope, content and end records,
//! the size record against the content, the required time and sender records, and the
//! file's complete mark (owner-execute bit).
//!
//! - `-b`: show the body: from the first line that is not a header line to the end.
//! - `-c config_dir`: read `main.cf` there (for `-q`).
//! - `-d`: start each line with the decimal record type.
//! - `-e`: show the envelope records, the segment markers and the two check sections.
//! - `-h`: show the primary header: up to (not including) the first non-header line.
//! - `-o`: start each line with the offset of its record in the file (content lines: of
//!   the record where the line starts; posthorn stores content in blocks, not lines).
//! - `-q`: the arguments are queue IDs: find each in `maildrop`, `incoming`, `active`,
//!   `deferred`, `hold`, `saved` or `corrupt` (the search is made twice, as the message
//!   may move while postcat looks).
//!
//! # Inputs
//! Queue files (read only, never locked or changed); `main.cf` and the queue with `-q`.
//!
//! # Outputs
//! The file's contents on standard output. A damaged file is shown as far as it can be
//! read, then reported on standard error: `postcat: warning: FILE: corrupt queue file:
//! REASON` with the offset where the damage was found (`truncated record at offset 181`,
//! `CRC mismatch in record 'N' at offset 120`).
//!
//! # Security
//! Runs with the invoking user's privileges; reading the queue (`-q`) needs root or the
//! queue owner. Input files are untrusted: nothing in them can make postcat panic, and
//! payload sizes are bounded by the record format.
//!
//! # Diagnostics
//! `postcat: warning: FILE: ...` for a damaged file or one that is not a queue file,
//! `postcat: fatal: ...` saying what to do otherwise. Exit status (sysexits): 0 every file
//! is sound; 64 bad command line or queue ID; 65 a file is damaged, incomplete or no queue
//! file; 66 a file or queue ID not found; 74 read error; 77 no permission; 78 configuration
//! error.
//!
//! # Configuration parameters
//! `queue_directory`, `hash_queue_names`, `hash_queue_depth` (with `-q` only).
//!
//! # Files
//! `main.cf` in `-c config_dir`, else `$MAIL_CONFIG`, else `/etc/posthorn`.
//!
//! # See also
//! postsuper(1), postqueue(1), qmgr(8).

mod show;

use posthorn_sys::sysexits::{EX_CONFIG, EX_DATAERR, EX_IOERR, EX_NOINPUT, EX_NOPERM, EX_USAGE};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use posthorn_config::{Config, ConfigError};
use posthorn_queue::file::read_log;
use posthorn_queue::{QueueId, QueueLayout, QueueName};

use show::{Flags, Logs, Verdict, show};

const USAGE: &str = "usage: postcat [-b (body text)] [-c config_dir] [-d (decimal record type)] \
[-e (envelope records)] [-h (header text)] [-o (record offsets)] [-q (access queue)] [file(s)...]";

/// The queues `-q` searches, in order (Postfix's, plus `corrupt/`, which is flat).
const SEARCH: [QueueName; 6] = [
    QueueName::Maildrop,
    QueueName::Incoming,
    QueueName::Active,
    QueueName::Deferred,
    QueueName::Hold,
    QueueName::Saved,
];

/// The parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    flags: Flags,
    config_dir: Option<PathBuf>,
    queue: bool,
    names: Vec<PathBuf>,
}

fn parse<I>(argv: I) -> Result<Args, String>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::Arg::{Short, Value};
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_args(argv);
    while let Some(arg) = p.next().map_err(|e| format!("{e}; {USAGE}"))? {
        match arg {
            Short('b') => a.flags.body = true,
            Short('c') => {
                a.config_dir = Some(p.value().map_err(|e| format!("{e}; {USAGE}"))?.into());
            }
            Short('d') => a.flags.decimal = true,
            Short('e') => a.flags.envelope = true,
            Short('h') => a.flags.header = true,
            Short('o') => a.flags.offsets = true,
            Short('q') => a.queue = true,
            Value(v) => a.names.push(v.into()),
            other => return Err(format!("{}; {USAGE}", other.unexpected())),
        }
    }
    if !(a.flags.body || a.flags.envelope || a.flags.header) {
        a.flags.body = true;
        a.flags.envelope = true;
        a.flags.header = true;
    }
    Ok(a)
}

fn fatal(code: i32, msg: impl std::fmt::Display) -> ! {
    let _ = io::stdout().flush();
    eprintln!("postcat: fatal: {msg}");
    std::process::exit(code)
}

/// An I/O error as text without Rust's `(os error N)` suffix.
fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn main() {
    let args = parse(std::env::args_os().skip(1)).unwrap_or_else(|e| fatal(EX_USAGE, e));
    let mut status = 0;
    let mut stdout = io::stdout().lock();
    if args.names.is_empty() {
        let v = show(
            io::stdin().lock(),
            "stdin",
            args.flags,
            None,
            None,
            &mut stdout,
        );
        status = status.max(judge("stdin", v));
    } else if args.queue {
        let layout = layout(&args);
        for name in &args.names {
            let text = name.to_string_lossy();
            let id = QueueId::parse(&text).unwrap_or_else(|_| {
                fatal(
                    EX_USAGE,
                    format!(
                        "bad mail queue ID: {text}; give IDs as mailq shows them, without * or !"
                    ),
                )
            });
            let (path, file) = find(&layout, &id);
            let label = path
                .strip_prefix(layout.root())
                .unwrap_or(&path)
                .display()
                .to_string();
            let logs = Logs {
                defer: read_log(&layout, QueueName::Defer, &id).unwrap_or_default(),
                bounce: read_log(&layout, QueueName::Bounce, &id).unwrap_or_default(),
            };
            let mode = file.metadata().ok().map(|m| m.mode());
            let v = show(file, &label, args.flags, mode, Some(&logs), &mut stdout);
            status = status.max(judge(&label, v));
        }
    } else {
        for name in &args.names {
            let label = name.display().to_string();
            let file = File::open(name).unwrap_or_else(|e| open_failed(&label, &e));
            let mode = file.metadata().ok().map(|m| m.mode());
            let v = show(file, &label, args.flags, mode, None, &mut stdout);
            status = status.max(judge(&label, v));
        }
    }
    std::process::exit(status)
}

/// The exit status for one file's result, reporting problems.
fn judge(label: &str, v: io::Result<Verdict>) -> i32 {
    match v {
        Ok(Verdict::Ok) => 0,
        Ok(Verdict::NotQueueFile) => {
            eprintln!("postcat: warning: {label}: input is not a valid queue file");
            EX_DATAERR
        }
        Ok(Verdict::Corrupt(reason)) => {
            eprintln!("postcat: warning: {label}: corrupt queue file: {reason}");
            EX_DATAERR
        }
        Ok(Verdict::Incomplete(mode)) => {
            eprintln!(
                "postcat: warning: {label}: incomplete queue file (mode {mode:04o}): its writer did not commit it"
            );
            EX_DATAERR
        }
        // `postcat ... | head`: the reader is gone, which is not our failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => fatal(EX_IOERR, format!("{label}: {}", describe(&e))),
    }
}

fn open_failed(label: &str, e: &io::Error) -> ! {
    let code = match e.kind() {
        io::ErrorKind::NotFound => EX_NOINPUT,
        io::ErrorKind::PermissionDenied => EX_NOPERM,
        _ => EX_IOERR,
    };
    fatal(code, format!("open {label}: {}", describe(e)))
}

/// The queue layout of the configuration (`-q`).
fn layout(args: &Args) -> QueueLayout {
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
    posthorn_server::layout_of(&config)
}

/// Opens message `id` wherever it is (twice round the queues: it may move meanwhile).
fn find(layout: &QueueLayout, id: &QueueId) -> (PathBuf, File) {
    for _ in 0..2 {
        let places = SEARCH
            .iter()
            .map(|&q| layout.path(q, id))
            .chain(std::iter::once(
                layout.dir(QueueName::Corrupt).join(id.as_str()),
            ));
        for path in places {
            match File::open(&path) {
                Ok(f) => return (path, f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => fatal(
                    EX_NOPERM,
                    format!(
                        "open queue file {id}: {}; run postcat as root or as the owner of the queue",
                        describe(&e)
                    ),
                ),
                Err(e) => fatal(EX_IOERR, format!("open queue file {id}: {}", describe(&e))),
            }
        }
    }
    fatal(
        EX_NOINPUT,
        format!(
            "queue file {id}: not found in maildrop, incoming, active, deferred, hold, saved or corrupt; check the ID with mailq"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_default_to_everything() {
        let a = parse(["f"]).unwrap();
        assert!(a.flags.envelope && a.flags.header && a.flags.body);
        assert_eq!(a.names, vec![PathBuf::from("f")]);
        let a = parse(["-bo", "-q", "-c", "/x", "ID"]).unwrap();
        assert!(a.flags.body && !a.flags.header && !a.flags.envelope && a.flags.offsets);
        assert!(a.queue);
        assert_eq!(a.config_dir, Some(PathBuf::from("/x")));
        assert!(parse(["-z"]).unwrap_err().contains("usage: postcat"));
    }

    #[test]
    fn errors_read_like_strerror() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(describe(&e), "No such file or directory");
    }
}
