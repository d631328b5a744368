//! Owns one configured logger: who is logging (tag, host), what is written (verbose gating) and
//! where (one sink, with the stderr fallback for a failing `maillog_file` and the `also_stderr`
//! copy for commands). The process-wide instance lives in `lib.rs`; tests build their own.

use std::io::Write;
use std::time::SystemTime;

use crate::file::FileSink;
use crate::format::{self, Severity};
use crate::syslog::SyslogSink;
use crate::{LogConfig, LogError, Sink};

/// Where records go.
#[derive(Debug)]
enum Output {
    /// syslog(3).
    Syslog(SyslogSink),
    /// `maillog_file`; `warned` is set once the stderr-fallback warning has been printed and
    /// cleared when the file works again.
    File { sink: FileSink, warned: bool },
    /// Standard error, in the file layout.
    Stderr,
}

/// A configured logger.
#[derive(Debug)]
pub(crate) struct Backend {
    /// `syslog_name`, e.g. `posthorn`.
    syslog_name: String,
    /// Process name, e.g. `smtpd`.
    process: String,
    /// `syslog_name/process`, the tag in front of `[pid]`.
    tag: String,
    /// Host name up to the first dot.
    host: String,
    /// Whether `-v` (debug/trace) records are written.
    verbose: bool,
    /// Whether warnings and worse are also printed as `process: warning: text` on stderr.
    also_stderr: bool,
    /// The sink.
    out: Output,
}

impl Backend {
    /// Builds a logger from `cfg`. When `reuse` is the open file of the previous configuration
    /// and `cfg` names the same path, that file is kept (it may be unreachable after chroot).
    pub(crate) fn new(cfg: &LogConfig, reuse: Option<FileSink>) -> Result<Self, LogError> {
        let tag = tag(&cfg.syslog_name, &cfg.process);
        let out = match &cfg.sink {
            Sink::Syslog { facility } => Output::Syslog(SyslogSink::open(&tag, facility)?),
            Sink::File(path) => {
                let sink = match reuse {
                    Some(old) if old.path() == path => old,
                    _ => FileSink::open(path)?,
                };
                Output::File {
                    sink,
                    warned: false,
                }
            }
            Sink::Stderr => Output::Stderr,
        };
        Ok(Backend {
            syslog_name: cfg.syslog_name.clone(),
            process: cfg.process.clone(),
            tag,
            host: short_hostname(),
            verbose: cfg.verbose,
            also_stderr: cfg.also_stderr,
            out,
        })
    }

    /// The logger used before [`crate::init`]: stderr, `posthorn/<argv0 basename>`.
    pub(crate) fn fallback() -> Self {
        let syslog_name = "posthorn".to_owned();
        let process = std::env::args_os()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "posthorn".into());
        Backend {
            tag: tag(&syslog_name, &process),
            syslog_name,
            process,
            host: short_hostname(),
            verbose: false,
            also_stderr: false,
            out: Output::Stderr,
        }
    }

    /// Gives up the open log file, for [`Backend::new`] to keep across a re-init.
    pub(crate) fn into_file(self) -> Option<FileSink> {
        match self.out {
            Output::File { sink, .. } => Some(sink),
            Output::Syslog(_) | Output::Stderr => None,
        }
    }

    /// The `maillog_file` path when this logger writes to a file.
    pub(crate) fn file_path(&self) -> Option<&std::path::Path> {
        match &self.out {
            Output::File { sink, .. } => Some(sink.path()),
            Output::Syslog(_) | Output::Stderr => None,
        }
    }

    /// Whether `-v` records are written.
    pub(crate) fn verbose(&self) -> bool {
        self.verbose
    }

    /// Whether a record of `severity` would be written.
    pub(crate) fn enabled(&self, severity: Severity) -> bool {
        severity != Severity::Verbose || self.verbose
    }

    /// Changes the process name (and the syslog ident).
    pub(crate) fn set_process(&mut self, name: &str) {
        self.process = name.to_owned();
        self.tag = tag(&self.syslog_name, &self.process);
        if let Output::Syslog(s) = &self.out {
            // Only fails for an ident with NUL bytes, which `static_ident` replaces.
            let _ = s.set_ident(&self.tag);
        }
    }

    /// Writes one record to the sink (and to stderr for commands), if `severity` is enabled.
    pub(crate) fn emit(&mut self, severity: Severity, text: &str) {
        if !self.enabled(severity) {
            return;
        }
        let body = format::body(severity, text);
        let to_stderr = match &mut self.out {
            Output::Syslog(s) => {
                s.write(severity, &body);
                false
            }
            Output::Stderr => {
                write_stderr(&file_line(&self.host, &self.tag, &body));
                true
            }
            Output::File { sink, warned } => {
                let line = file_line(&self.host, &self.tag, &body);
                match sink.write_line(line.as_bytes()) {
                    Ok(()) => *warned = false,
                    Err(e) => {
                        if !*warned {
                            *warned = true;
                            let warning = format!(
                                "cannot write maillog_file {}: {e}; logging to stderr",
                                sink.path().display()
                            );
                            let w = format::body(Severity::Warning, &warning);
                            write_stderr(&file_line(&self.host, &self.tag, &w));
                        }
                        write_stderr(&line);
                    }
                }
                false
            }
        };
        if self.also_stderr && severity.is_problem() && !to_stderr {
            write_stderr(&format!("{}: {body}\n", self.process));
        }
    }

    /// Flushes buffered output; files and stderr are unbuffered, so this only flushes stderr's
    /// lock-protected handle for symmetry with `log::Log::flush`.
    pub(crate) fn flush(&mut self) {
        let _ = std::io::stderr().flush();
    }

    /// Lets tests check rotation without waiting a second.
    #[cfg(test)]
    pub(crate) fn set_restat_interval(&mut self, every: std::time::Duration) {
        if let Output::File { sink, .. } = &mut self.out {
            sink.set_restat_interval(every);
        }
    }
}

/// `syslog_name/process`, or just `syslog_name` when the process name is empty.
fn tag(syslog_name: &str, process: &str) -> String {
    if process.is_empty() {
        syslog_name.to_owned()
    } else {
        format!("{syslog_name}/{process}")
    }
}

/// One file/stderr line stamped now, in local time.
fn file_line(host: &str, tag: &str, body: &str) -> String {
    let now = SystemTime::now();
    let stamp = format::timestamp(now, local_offset(now));
    format::line(&stamp, host, tag, std::process::id(), body)
}

/// Seconds east of UTC at `now` in the process's zone (`TZ`, else `/etc/localtime`), which
/// [`crate::init`] loaded before any chroot.
fn local_offset(now: SystemTime) -> i32 {
    posthorn_message::time::local_offset(now).0
}

/// Writes `line` to stderr with one write(2) (stderr is unbuffered); errors are ignored, there
/// is nowhere left to report them.
fn write_stderr(line: &str) {
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The host name up to the first dot, as syslog writes it; `localhost` if it cannot be read.
fn short_hostname() -> String {
    let name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short = name.split('.').next().unwrap_or("");
    if short.is_empty() {
        "localhost".into()
    } else {
        short.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn file_backend(dir: &Path, verbose: bool) -> (Backend, PathBuf) {
        let path = dir.join("maillog");
        let cfg = LogConfig {
            syslog_name: "posthorn".into(),
            process: "smtpd".into(),
            sink: Sink::File(path.clone()),
            verbose,
            also_stderr: false,
        };
        (Backend::new(&cfg, None).unwrap(), path)
    }

    fn read(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn line_shape() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, path) = file_backend(dir.path(), false);
        b.emit(Severity::Info, "3F1A2B4C5D: client=a[192.0.2.1]");
        let lines = read(&path);
        assert_eq!(lines.len(), 1);
        let f: Vec<&str> = lines[0].splitn(6, ' ').collect();
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        assert!(months.contains(&f[0]), "{f:?}");
        assert!(
            f[1].len() == 2 && f[1].bytes().all(|c| c.is_ascii_digit()),
            "{f:?}"
        );
        let hms: Vec<&str> = f[2].split(':').collect();
        assert!(hms.len() == 3 && hms.iter().all(|p| p.len() == 2), "{f:?}");
        assert_eq!(f[3], short_hostname());
        assert!(!f[3].contains('.'));
        assert_eq!(f[4], format!("posthorn/smtpd[{}]:", std::process::id()));
        assert_eq!(f[5], "3F1A2B4C5D: client=a[192.0.2.1]");
    }

    #[test]
    fn verbose_gating_and_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut quiet, qpath) = file_backend(dir.path(), false);
        quiet.emit(Severity::Verbose, "not written");
        quiet.emit(Severity::Warning, "w");
        quiet.emit(Severity::Error, "e");
        quiet.emit(Severity::Info, "multi\nline");
        let texts: Vec<String> = read(&qpath)
            .iter()
            .map(|l| l.split_once("]: ").unwrap().1.to_owned())
            .collect();
        assert_eq!(texts, ["warning: w", "error: e", "multi?line"]);

        let vdir = tempfile::tempdir().unwrap();
        let (mut loud, vpath) = file_backend(vdir.path(), true);
        loud.emit(Severity::Verbose, "written");
        assert!(read(&vpath)[0].ends_with("]: written"));
    }

    #[test]
    fn process_name_change() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, path) = file_backend(dir.path(), false);
        b.set_process("submission");
        b.emit(Severity::Info, "x");
        assert!(read(&path)[0].contains(" posthorn/submission["));
        b.set_process("");
        b.emit(Severity::Info, "y");
        assert!(read(&path)[1].contains(" posthorn["));
    }

    #[test]
    fn reopens_after_rename() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, path) = file_backend(dir.path(), false);
        b.set_restat_interval(Duration::ZERO);
        b.emit(Severity::Info, "before");
        let rotated = dir.path().join("maillog.0");
        std::fs::rename(&path, &rotated).unwrap();
        b.emit(Severity::Info, "after");
        assert_eq!(read(&rotated).len(), 1);
        assert!(read(&rotated)[0].ends_with(": before"));
        assert_eq!(read(&path).len(), 1);
        assert!(read(&path)[0].ends_with(": after"));
    }

    #[test]
    fn falls_back_to_stderr_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("log");
        std::fs::create_dir(&sub).unwrap();
        let (mut b, path) = file_backend(&sub, false);
        b.set_restat_interval(Duration::ZERO);
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        // Goes to stderr with one warning; must not panic.
        b.emit(Severity::Info, "lost to stderr (expected in test output)");
        b.emit(Severity::Info, "second, without a new warning");
        std::fs::create_dir(&sub).unwrap();
        b.emit(Severity::Info, "back");
        let lines = read(&path);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with(": back"));
    }

    #[test]
    fn threads_share_one_file_without_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (b, path) = file_backend(dir.path(), false);
        let shared = std::sync::Mutex::new(b);
        std::thread::scope(|s| {
            for t in 0..4 {
                let shared = &shared;
                s.spawn(move || {
                    for i in 0..200 {
                        shared
                            .lock()
                            .unwrap()
                            .emit(Severity::Info, &format!("t{t} {i}"));
                    }
                });
            }
        });
        assert_eq!(read(&path).len(), 800);
    }
}
