//! Output: Postfix's postsuper reports every action both to the mail log and to standard
//! error (`postsuper: ID: removed`), warnings as `postsuper: warning: ...`, and dies with one
//! `postsuper: fatal: ...` line that says what to do.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

use posthorn_config::Config;
use posthorn_log::{LogConfig, Sink};

/// Set once the logger is configured: from then on fatal errors are logged too.
static LOG_READY: AtomicBool = AtomicBool::new(false);
/// Set when the log itself goes to standard error, so that lines are not printed twice.
static LOG_ON_STDERR: AtomicBool = AtomicBool::new(false);

/// Starts logging as main.cf says, with warnings and worse copied to standard error.
pub fn init_log(cfg: &Config, verbose: bool) {
    let sink =
        posthorn_log::sink_from_config(&cfg.get("maillog_file"), &cfg.get("syslog_facility"));
    let mut lc = LogConfig {
        syslog_name: cfg.get("syslog_name"),
        process: "postsuper".into(),
        sink,
        verbose,
        also_stderr: true,
    };
    if let Err(e) = posthorn_log::init(lc.clone()) {
        // A log file we cannot open must not keep the administrator from the queue.
        eprintln!("postsuper: warning: {e}; logging to syslog");
        lc.sink = Sink::Syslog {
            facility: "mail".into(),
        };
        let _ = posthorn_log::init(lc.clone());
    }
    LOG_ON_STDERR.store(lc.sink == Sink::Stderr, Ordering::Relaxed);
    LOG_READY.store(true, Ordering::Relaxed);
}

/// Reports an action: logged, and printed on standard error as Postfix's msg_info does.
pub fn info(msg: impl Display) {
    let text = msg.to_string();
    log::info!("{text}");
    if !LOG_ON_STDERR.load(Ordering::Relaxed) {
        eprintln!("postsuper: {text}");
    }
}

/// Reports a problem that does not stop the command (`postsuper: warning: ...`).
pub fn warn(msg: impl Display) {
    let text = msg.to_string();
    if LOG_READY.load(Ordering::Relaxed) {
        log::warn!("{text}");
    } else {
        eprintln!("postsuper: warning: {text}");
    }
}

/// Gives up with `postsuper: fatal: msg` and sysexits status `code`.
pub fn fatal(code: i32, msg: impl Display) -> ! {
    if LOG_READY.load(Ordering::Relaxed) {
        posthorn_log::fatal_with(code, msg)
    }
    eprintln!("postsuper: fatal: {msg}");
    std::process::exit(code)
}

/// An I/O error as text without Rust's `(os error N)` suffix: `No such file or directory`.
pub fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// `N message` / `N messages`, as Postfix's summary lines write it.
pub fn messages(n: usize) -> String {
    format!("{n} message{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_as_postfix() {
        assert_eq!(messages(1), "1 message");
        assert_eq!(messages(2), "2 messages");
    }

    #[test]
    fn errors_read_like_strerror() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(describe(&e), "No such file or directory");
        let e = std::io::Error::other("rename a to b: Permission denied");
        assert_eq!(describe(&e), "rename a to b: Permission denied");
    }
}
