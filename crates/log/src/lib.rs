//! posthorn-log: the `log` facade backend every posthorn program installs, writing Postfix-format
//! records to one sink.
//!
//! **Inputs:** a [`LogConfig`] built by each program at start-up from `syslog_name`,
//! `syslog_facility` and `maillog_file` (see [`sink_from_config`]), the program's process name
//! and its `-v` flag; then the records of the `log` macros (`info!`, `warn!`, `error!`,
//! `debug!`, `trace!`) and of [`fatal`], [`fatal_with`] and [`panic_msg`].
//!
//! **Outputs:** one record per call, to exactly one sink:
//! * syslog — libc `syslog(3)` through `nix::syslog`, opened by [`init`] with
//!   `openlog("syslog_name/process", LOG_PID|LOG_NDELAY, facility)`, so call [`init`] before any
//!   chroot; info/warning/error/critical priorities as Postfix's `msg_syslog` maps them;
//! * a file (`maillog_file`) or stderr — lines laid out as Postfix's `msg_logger` writes them,
//!   `Mmm dd hh:mm:ss host syslog_name/process[pid]: text`, e.g.
//!   `Nov 25 15:40:05 mx posthorn/smtpd[1234]: connect from a[192.0.2.1]`.
//!   Like `strftime("%b %d ...")` in Postfix's `msg_logger_print`, the day is zero-padded
//!   (`Nov 05`), unlike syslogd's space padding. The host is the name up to its first dot.
//!   Each line reaches the file in one write(2) on an O_APPEND descriptor, so lines of
//!   concurrent processes interleave only at line boundaries. The path is stat'ed at most once
//!   a second and reopened when rotation renamed or removed it. If the file cannot be written,
//!   lines go to stderr after one `warning:` saying so.
//!
//! Text follows Postfix: `info!` as is, `warn!` as `warning: text`, `error!` as `error: text`,
//! [`fatal`] as `fatal: text`, [`panic_msg`] as `panic: text`; `debug!`/`trace!` only with
//! `verbose` (`-v`), without prefix. Control characters become `?` and text is cut at 2000
//! bytes, so a record is always one line. With `also_stderr` (commands such as sendmail),
//! warnings and worse are also printed as `sendmail: fatal: text` on stderr.
//!
//! Before [`init`], [`fatal`] and friends write to stderr as `posthorn/<argv0>`.
//!
//! **Time:** the file and stderr sinks stamp lines in local time, like Postfix, through
//! `posthorn_message::time`: the zone comes from `TZ`, else `/etc/localtime` (UTC when neither
//! is usable). [`init`] loads it, so a daemon that chroots afterwards (where the zoneinfo files
//! are out of reach) keeps its zone as long as `TZ` does not change. Before [`init`] the zone is
//! loaded on the first line written. The syslog sink is not affected (syslogd stamps the
//! records).

mod backend;
mod file;
mod format;
mod syslog;

use std::borrow::Cow;
use std::fmt::Display;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use backend::Backend;
use format::Severity;

/// Where log records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// syslog(3) with the named facility (`mail`, `local0`, ...; main.cf `syslog_facility`).
    Syslog {
        /// Facility name as spelled in main.cf.
        facility: String,
    },
    /// Append to this file (main.cf `maillog_file`); its directory must exist.
    File(PathBuf),
    /// Standard error, in the file layout.
    Stderr,
}

/// Everything [`init`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// main.cf `syslog_name`, normally `posthorn`.
    pub syslog_name: String,
    /// The program or service name: `smtpd`, `master`, `sendmail`.
    pub process: String,
    /// The one sink records go to.
    pub sink: Sink,
    /// `-v`: also write `debug!`/`trace!` records.
    pub verbose: bool,
    /// Commands: also print warnings, errors and fatal errors on stderr as `process: fatal: text`.
    pub also_stderr: bool,
}

/// Why [`init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `maillog_file` could not be opened for appending (missing directory, permissions).
    #[error("cannot open maillog_file {}: {source}", path.display())]
    Open {
        /// The configured path.
        path: PathBuf,
        /// The error from open(2) or fstat(2).
        #[source]
        source: std::io::Error,
    },
    /// `syslog_facility` names no facility this system knows.
    #[error("unknown syslog_facility {0:?}")]
    UnknownFacility(String),
    /// openlog(3) could not be called with the ident.
    #[error("openlog failed: {0}")]
    Openlog(#[source] nix::Error),
    /// Some other `log` backend was installed in this process first.
    #[error("another logger is already installed in this process")]
    ForeignLogger,
}

/// Installs the process-wide logger, or replaces its configuration when called again (after a
/// reload, or once the service name is known). On error the previous configuration stays.
/// Re-initialising with the same `maillog_file` keeps the open file, which matters after chroot.
/// Also loads the local time zone (see the crate doc), so call it before any chroot.
pub fn init(cfg: LogConfig) -> Result<(), LogError> {
    // Read the local zone now: callers init before chroot(), after which it is out of reach.
    posthorn_message::time::init_local_zone();
    let mut state = lock_state();
    let same_file = match (&cfg.sink, state.as_ref().and_then(Backend::file_path)) {
        (Sink::File(new), Some(old)) => new == old,
        _ => false,
    };
    let reuse = if same_file {
        state.take().and_then(Backend::into_file)
    } else {
        None
    };
    let backend = Backend::new(&cfg, reuse)?;
    if !INSTALLED.load(Ordering::Acquire) {
        log::set_logger(&LOGGER).map_err(|_| LogError::ForeignLogger)?;
        INSTALLED.store(true, Ordering::Release);
    }
    VERBOSE.store(backend.verbose(), Ordering::Relaxed);
    log::set_max_level(if backend.verbose() {
        log::LevelFilter::Trace
    } else {
        log::LevelFilter::Info
    });
    *state = Some(backend);
    Ok(())
}

/// Chooses the sink from main.cf: a non-empty `maillog_file` is a file (`-` or `/dev/stderr`
/// meaning stderr), an empty one means syslog with `syslog_facility`.
pub fn sink_from_config(maillog_file: &str, syslog_facility: &str) -> Sink {
    match maillog_file.trim() {
        "" => Sink::Syslog {
            facility: syslog_facility.trim().to_owned(),
        },
        "-" | "/dev/stderr" => Sink::Stderr,
        path => Sink::File(PathBuf::from(path)),
    }
}

/// Changes the process name in later records (a daemon learning its service name from
/// master.cf `-n`); for syslog this re-runs openlog with the new ident.
pub fn set_process(name: &str) {
    lock_state()
        .get_or_insert_with(Backend::fallback)
        .set_process(name);
}

/// Whether `-v` records are being written, for callers that build costly debug text.
pub fn is_verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Flushes the sink (files and stderr are written unbuffered, so this is cheap).
pub fn flush() {
    if let Some(b) = lock_state().as_mut() {
        b.flush();
    }
}

/// Logs `fatal: msg` (also on stderr with `also_stderr`) and exits with status 1.
pub fn fatal(msg: impl Display) -> ! {
    fatal_with(1, msg)
}

/// Logs `fatal: msg` like [`fatal`] and exits with `code` (a sysexits value such as 75).
pub fn fatal_with(code: i32, msg: impl Display) -> ! {
    exit_after(Severity::Fatal, code, &msg)
}

/// Logs `panic: msg` for a broken invariant and exits at once with status 2.
pub fn panic_msg(msg: impl Display) -> ! {
    exit_after(Severity::Panic, 2, &msg)
}

/// The process-wide logger; the state lives in [`STATE`].
struct Logger;

/// The one [`Logger`] handed to `log::set_logger`.
static LOGGER: Logger = Logger;

/// The current configuration; `None` before [`init`].
static STATE: Mutex<Option<Backend>> = Mutex::new(None);

/// Whether [`LOGGER`] has been installed with `log::set_logger`.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Copy of the current `verbose`, read without the lock by `Log::enabled`.
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Set by the first fatal/panic, so that a message whose formatting fails fatally again
/// exits instead of recursing (Postfix's `msg_exiting`).
static EXITING: AtomicBool = AtomicBool::new(false);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info || VERBOSE.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Format before taking the lock: a Display impl that logs must not deadlock.
        let text = match record.args().as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(record.args().to_string()),
        };
        emit(Severity::from_level(record.level()), &text);
    }

    fn flush(&self) {
        flush();
    }
}

/// Writes one record through the current (or the pre-init fallback) configuration.
fn emit(severity: Severity, text: &str) {
    lock_state()
        .get_or_insert_with(Backend::fallback)
        .emit(severity, text);
}

/// Logs the final record once, then exits with `code`.
fn exit_after(severity: Severity, code: i32, msg: &dyn Display) -> ! {
    if !EXITING.swap(true, Ordering::SeqCst) {
        let text = msg.to_string();
        emit(severity, &text);
        flush();
    }
    std::process::exit(code)
}

/// Locks [`STATE`]; a panic while logging leaves no broken invariant, so poison is ignored.
fn lock_state() -> MutexGuard<'static, Option<Backend>> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts logging for a command run by a user (sendmail, postdrop, postqueue): the sink the
/// configuration names (before it is read: syslog), falling back to syslog when
/// `maillog_file` cannot be written by this user; warnings and errors also go to stderr.
pub fn init_command(program: &str, cfg: Option<&posthorn_config::Config>, verbose: bool) {
    let (syslog_name, facility, maillog) = match cfg {
        Some(c) => (
            c.get("syslog_name"),
            c.get("syslog_facility"),
            c.get("maillog_file"),
        ),
        None => ("posthorn".to_string(), "mail".to_string(), String::new()),
    };
    let mut lc = LogConfig {
        syslog_name,
        process: program.to_string(),
        sink: sink_from_config(&maillog, &facility),
        verbose,
        also_stderr: true,
    };
    if init(lc.clone()).is_err() {
        lc.sink = Sink::Syslog {
            facility: "mail".into(),
        };
        let _ = init(lc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Output};

    /// Serialises the tests that reconfigure the process-wide logger.
    static GLOBAL: Mutex<()> = Mutex::new(());

    /// Environment variable that turns [`child_entry`] into a child-process program.
    const CHILD_MODE: &str = "POSTHORN_LOG_TEST_CHILD";
    /// Environment variable with the log file path for the child.
    const CHILD_FILE: &str = "POSTHORN_LOG_TEST_FILE";
    /// Environment variable with the zone file the "zone" child removes after [`init`].
    const CHILD_ZONE: &str = "POSTHORN_LOG_TEST_ZONE";

    fn file_config(path: &Path, process: &str, verbose: bool) -> LogConfig {
        LogConfig {
            syslog_name: "posthorn".into(),
            process: process.into(),
            sink: Sink::File(path.to_path_buf()),
            verbose,
            also_stderr: false,
        }
    }

    /// The (tag, text) of each line: `tag` without `[pid]`, `text` after `]: `.
    fn records(path: &Path) -> Vec<(String, String)> {
        let content = std::fs::read_to_string(path).unwrap();
        content
            .lines()
            .map(|l| {
                let rest = l.splitn(5, ' ').nth(4).unwrap();
                let (tag_pid, text) = rest.split_once("]: ").unwrap();
                let (tag, pid) = tag_pid.split_once('[').unwrap();
                assert!(pid.parse::<u32>().is_ok(), "{l}");
                (tag.to_owned(), text.to_owned())
            })
            .collect()
    }

    /// The text of each line, checking that all carry `tag`.
    fn texts(path: &Path, tag: &str) -> Vec<String> {
        records(path)
            .into_iter()
            .map(|(t, text)| {
                assert_eq!(t, tag, "{text}");
                text
            })
            .collect()
    }

    /// Runs this test binary's [`child_entry`] in `mode`, logging to `file`.
    fn spawn_child(mode: &str, file: &Path) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_MODE, mode)
            .env(CHILD_FILE, file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run_child(mode: &str, file: &Path) -> Output {
        spawn_child(mode, file).wait_with_output().unwrap()
    }

    /// Not a test on its own: does nothing unless started by [`spawn_child`].
    #[test]
    fn child_entry() {
        let Ok(mode) = std::env::var(CHILD_MODE) else {
            return;
        };
        let file = PathBuf::from(std::env::var_os(CHILD_FILE).unwrap());
        let mut cfg = file_config(&file, "tester", false);
        cfg.also_stderr = true;
        init(cfg).unwrap();
        match mode.as_str() {
            "fatal" => fatal_with(75, "queue file write error"),
            "zone" => {
                // Like a chroot: the zone file is out of reach once init has run.
                std::fs::remove_file(std::env::var_os(CHILD_ZONE).unwrap()).unwrap();
                log::info!("zoned");
            }
            "panic" => panic_msg("bad state"),
            writer => {
                let pad = "x".repeat(300);
                for i in 0..400 {
                    log::info!("{writer} line {i} {pad}");
                }
            }
        }
    }

    #[test]
    fn sink_choice() {
        assert_eq!(
            sink_from_config("", "mail"),
            Sink::Syslog {
                facility: "mail".into()
            }
        );
        assert_eq!(
            sink_from_config("/var/log/maillog", "mail"),
            Sink::File("/var/log/maillog".into())
        );
        assert_eq!(sink_from_config("-", "mail"), Sink::Stderr);
        assert_eq!(sink_from_config("/dev/stderr", "mail"), Sink::Stderr);
    }

    #[test]
    fn global_logger_levels_reinit_and_process_name() {
        let _g = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        init(file_config(&path, "smtpd", false)).unwrap();
        assert!(!is_verbose());
        log::info!("connect from a[192.0.2.1]");
        log::warn!("hostname b does not resolve");
        log::error!("open database: no such file");
        log::debug!("hidden {}", 1);
        log::trace!("hidden");
        // Re-init with the same file (and -v), then rename the service.
        init(file_config(&path, "smtpd", true)).unwrap();
        assert!(is_verbose());
        log::debug!("shown {}", 2);
        set_process("submission");
        log::info!("after rename");
        flush();
        let mut lines = records(&path);
        assert_eq!(
            lines.pop().unwrap(),
            ("posthorn/submission".into(), "after rename".into())
        );
        let expected = [
            "connect from a[192.0.2.1]",
            "warning: hostname b does not resolve",
            "error: open database: no such file",
            "shown 2",
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|t| ("posthorn/smtpd".to_owned(), (*t).to_owned()))
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn init_errors_keep_previous_config() {
        let _g = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        init(file_config(&path, "qmgr", false)).unwrap();
        let bad = file_config(&dir.path().join("missing/maillog"), "qmgr", false);
        let err = init(bad).unwrap_err();
        assert!(matches!(err, LogError::Open { .. }));
        assert!(err.to_string().contains("missing/maillog"), "{err}");
        let mut cfg = file_config(&path, "qmgr", false);
        cfg.sink = Sink::Syslog {
            facility: "nonesuch".into(),
        };
        assert!(matches!(init(cfg), Err(LogError::UnknownFacility(_))));
        log::info!("still here");
        assert_eq!(texts(&path, "posthorn/qmgr"), ["still here"]);
    }

    #[test]
    fn syslog_sink_initialises_without_a_daemon() {
        let _g = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cfg = file_config(Path::new("/nonexistent"), "test", false);
        cfg.sink = sink_from_config("", "mail");
        init(cfg).unwrap();
        log::info!("to syslog, or nowhere when no syslogd runs");
        log::warn!("also fine");
    }

    #[test]
    fn processes_append_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        let children: Vec<_> = (0..4)
            .map(|n| spawn_child(&format!("writer{n}"), &path))
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let pad = "x".repeat(300);
        let mut next = [0usize; 4];
        for text in texts(&path, "posthorn/tester") {
            let (writer, rest) = text.split_once(" line ").unwrap();
            let n: usize = writer.strip_prefix("writer").unwrap().parse().unwrap();
            assert_eq!(rest, format!("{} {pad}", next[n]));
            next[n] += 1;
        }
        assert_eq!(next, [400; 4]);
    }

    /// A version 1 TZif file with one zone type: UTC+05:30, abbreviation `XST`.
    fn tzif_plus_0530() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(b"TZif\0");
        d.extend_from_slice(&[0; 15]);
        for count in [0u32, 0, 0, 0, 1, 4] {
            d.extend_from_slice(&count.to_be_bytes());
        }
        d.extend_from_slice(&19_800i32.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(b"XST\0");
        d
    }

    #[test]
    fn lines_are_stamped_in_the_zone_loaded_by_init() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        let zoneinfo = dir.path().join("zoneinfo");
        std::fs::create_dir(&zoneinfo).unwrap();
        let zone = zoneinfo.join("Test_Zone");
        std::fs::write(&zone, tzif_plus_0530()).unwrap();
        let before = posthorn_message::time::unix_seconds(std::time::SystemTime::now());
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_MODE, "zone")
            .env(CHILD_FILE, &path)
            .env(CHILD_ZONE, &zone)
            .env("TZDIR", &zoneinfo)
            .env("TZ", "Test_Zone")
            .output()
            .unwrap();
        let after = posthorn_message::time::unix_seconds(std::time::SystemTime::now());
        assert!(out.status.success(), "{out:?}");
        assert!(!zone.exists(), "the child removed the zone file after init");
        let content = std::fs::read_to_string(&path).unwrap();
        let line = content.lines().next().unwrap();
        assert!(line.ends_with("]: zoned"), "{line}");
        let stamp = &line[..15];
        let expected: Vec<String> = (before..=after)
            .map(|s| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.unsigned_abs());
                format::timestamp(t, 19_800)
            })
            .collect();
        assert!(
            expected.iter().any(|e| e == stamp),
            "{stamp} not in {expected:?}"
        );
    }

    #[test]
    fn fatal_logs_prints_and_exits_with_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        let out = run_child("fatal", &path);
        assert_eq!(out.status.code(), Some(75), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("tester: fatal: queue file write error\n"),
            "{stderr}"
        );
        assert_eq!(
            texts(&path, "posthorn/tester"),
            ["fatal: queue file write error"]
        );
    }

    #[test]
    fn panic_msg_logs_and_exits_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        let out = run_child("panic", &path);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert_eq!(texts(&path, "posthorn/tester"), ["panic: bad state"]);
    }
}
