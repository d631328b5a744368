//! posthorn-server: the skeleton every daemon plugs into.
//!
//! [`start`] does, in one readable order, what every daemon must do before it touches a
//! byte of input: parse the command line master gave it (`-n service -t type -o name=value
//! -v`), read `main.cf` from `MAIL_CONFIG` and apply the `-o` overrides, start logging,
//! take the descriptors master passed (listeners, status pipe), and — when started as root
//! for an unprivileged service — chroot if asked and drop to `mail_owner` irrevocably.
//! Then the daemon's own code runs, typically [`Daemon::serve_single`].
//!
//! # Master interface
//! - `POSTHORN_LISTEN_FDS`: comma-separated descriptor numbers of the service's listeners.
//! - `POSTHORN_STATUS_FD`: the write end of the service's status pipe; the child writes
//!   5-byte messages `pid (u32 LE) | b'B' or b'I'` when it becomes busy or idle. A new child
//!   counts as idle until it says busy, so master never over-spawns.
//! - `POSTHORN_UNPRIV` (`y`/`n`) and `POSTHORN_CHROOT` (`y`/`n`): master.cf's columns.
//! - `MAIL_CONFIG`: the configuration directory.
//!
//! Run without master (tests, debugging), a daemon has no listeners and no status pipe.

pub mod cleanup_client;
pub mod delivery_log;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use posthorn_config::Config;
use posthorn_queue::QueueLayout;

/// The command line master gives a daemon.
#[derive(Clone, Debug, Default)]
pub struct Args {
    /// Service name (master.cf first column).
    pub service: String,
    /// Service type (`unix`, `inet`, ...).
    pub kind: String,
    /// `-o name=value` overrides, in order.
    pub overrides: Vec<(String, String)>,
    /// `-v`: verbose logging.
    pub verbose: bool,
    /// The configuration directory (`-c` or `MAIL_CONFIG`).
    pub config_dir: PathBuf,
    /// Remaining arguments.
    pub extra: Vec<String>,
}

/// Parses a daemon command line (without argv[0]).
pub fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        config_dir: std::env::var_os("MAIL_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/posthorn")),
        ..Args::default()
    };
    let mut it = argv.iter();
    while let Some(x) = it.next() {
        let mut val = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("option {flag} needs a value"))
        };
        match x.as_str() {
            "-n" => a.service = val("-n")?,
            "-t" => a.kind = val("-t")?,
            "-c" => a.config_dir = PathBuf::from(val("-c")?),
            "-o" => {
                let kv = val("-o")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("-o {kv}: expected name=value"))?;
                a.overrides
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
            "-v" => a.verbose = true,
            "-S" | "-u" | "-z" | "-D" => {} // Postfix daemon flags with no meaning here
            other => a.extra.push(other.to_string()),
        }
    }
    Ok(a)
}

/// A started daemon: its configuration, queue, descriptors and stop flag.
pub struct Daemon {
    /// The program name (`cleanup`, `qmgr`, ...).
    pub program: &'static str,
    /// Its command line.
    pub args: Args,
    /// `main.cf` with the `-o` overrides applied.
    pub config: Config,
    /// The queue tree.
    pub layout: QueueLayout,
    /// Set by SIGTERM: finish the current request, then exit.
    pub terminate: Arc<AtomicBool>,
    listeners: Vec<OwnedFd>,
    status: Option<OwnedFd>,
}

/// Loads `main.cf` from `dir` and applies overrides; a broken file is fatal with file:line.
pub fn load_config(dir: &std::path::Path, overrides: &[(String, String)]) -> Config {
    let mut config = match Config::load(dir) {
        Ok(c) => c,
        Err(e) => posthorn_log::fatal_with(78, e),
    };
    for (k, v) in overrides {
        config.set(k, v);
    }
    config
}

/// The queue layout the configuration describes.
pub fn layout_of(config: &Config) -> QueueLayout {
    QueueLayout::from_config(config)
}

/// Starts logging for `program` as the configuration says.
pub fn init_log(program: &str, config: &Config, verbose: bool, also_stderr: bool) {
    let cfg = posthorn_log::LogConfig {
        syslog_name: config.get("syslog_name"),
        process: program.to_string(),
        sink: posthorn_log::sink_from_config(
            &config.get("maillog_file"),
            &config.get("syslog_facility"),
        ),
        verbose,
        also_stderr,
    };
    if let Err(e) = posthorn_log::init(cfg) {
        posthorn_log::fatal_with(78, format!("logging: {e}"));
    }
}

fn env_fds(name: &str) -> Vec<OwnedFd> {
    let Ok(v) = std::env::var(name) else {
        return Vec::new();
    };
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let n: i32 = s
                .parse()
                .unwrap_or_else(|_| posthorn_log::fatal(format!("{name}: bad descriptor {s:?}")));
            posthorn_sys::take_inherited_fd(n)
                .unwrap_or_else(|e| posthorn_log::fatal(format!("{name}: {e}")))
        })
        .collect()
}

/// Starts a daemon: see the crate documentation for the order of steps.
pub fn start(program: &'static str) -> Daemon {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&argv)
        .unwrap_or_else(|e| posthorn_log::fatal_with(64, format!("{program}: {e}")));
    let config = load_config(&args.config_dir, &args.overrides);
    init_log(program, &config, args.verbose, false);
    let listeners = env_fds("POSTHORN_LISTEN_FDS");
    let status = env_fds("POSTHORN_STATUS_FD").into_iter().next();
    let from_master = status.is_some();
    let mut layout = layout_of(&config);

    let unpriv = std::env::var("POSTHORN_UNPRIV")
        .map(|v| v != "n")
        .unwrap_or(true);
    let chroot = std::env::var("POSTHORN_CHROOT").is_ok_and(|v| v == "y");
    if posthorn_sys::is_root() && unpriv {
        let owner = config.get("mail_owner");
        let acct = match posthorn_sys::user_by_name(&owner) {
            Ok(Some(a)) => a,
            Ok(None) => posthorn_log::fatal_with(78, format!("mail_owner {owner}: no such user")),
            Err(e) => posthorn_log::fatal(e),
        };
        if acct.uid == 0 {
            posthorn_log::fatal_with(78, format!("mail_owner {owner} must not be root"));
        }
        if chroot {
            if let Err(e) = posthorn_sys::chroot_to(layout.root()) {
                posthorn_log::fatal(e);
            }
            // Inside the chroot the queue directory is "/".
            layout = QueueLayout::from_config_at(&config, "/");
        }
        if let Err(e) = posthorn_sys::drop_privileges(acct.uid, acct.gid) {
            posthorn_log::fatal(e);
        }
    }
    if from_master && let Err(e) = posthorn_sys::exit_with_parent() {
        log::warn!("{e}");
    }
    let terminate = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&terminate)) {
            posthorn_log::fatal(format!("signal handler: {e}"));
        }
    }
    Daemon {
        program,
        args,
        config,
        layout,
        terminate,
        listeners,
        status,
    }
}

impl Daemon {
    /// Whether SIGTERM asked this daemon to stop.
    pub fn stopping(&self) -> bool {
        self.terminate.load(Ordering::Relaxed)
    }

    /// Takes the inherited listeners (master passes one per service for Unix services).
    pub fn take_listeners(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.listeners)
    }

    /// Tells master this process is busy (`true`) or idle (`false`).
    pub fn report(&self, busy: bool) {
        if let Some(fd) = &self.status {
            let mut msg = std::process::id().to_le_bytes().to_vec();
            msg.push(if busy { b'B' } else { b'I' });
            // A full or closed pipe only costs master an extra spawn; never block on it.
            let _ = nix::unistd::write(fd, &msg);
        }
    }

    /// Waits until `fd` is readable. Returns false when the daemon should stop instead
    /// (SIGTERM), or when `idle_limit` passes without input.
    pub fn wait_readable(&self, fd: &impl AsFd, idle_limit: Option<Duration>) -> bool {
        let start = Instant::now();
        loop {
            if self.stopping() {
                return false;
            }
            if idle_limit.is_some_and(|l| start.elapsed() >= l) {
                return false;
            }
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(500u16)) {
                Ok(n) if n > 0 => return true,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    log::warn!("poll: {e}");
                    return false;
                }
            }
        }
    }

    /// Postfix's single-threaded server: accept one client at a time on the inherited Unix
    /// listener and hand it to `handler`, reporting busy/idle to master. Exits after
    /// `max_use` clients or `max_idle` without one, and on SIGTERM once idle.
    pub fn serve_single(mut self, mut handler: impl FnMut(&Daemon, UnixStream)) {
        let Some(fd) = self.take_listeners().into_iter().next() else {
            posthorn_log::fatal(format!(
                "{}: no listener from master (this program is started by master)",
                self.program
            ));
        };
        let listener = UnixListener::from(fd);
        if let Err(e) = listener.set_nonblocking(true) {
            posthorn_log::fatal(format!("listener: {e}"));
        }
        let max_idle = self.config.get_duration("max_idle");
        let max_use = u64::try_from(self.config.get_int("max_use"))
            .unwrap_or(100)
            .max(1);
        let mut served = 0u64;
        while served < max_use && self.wait_readable(&listener, Some(max_idle)) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nonblocking(false) {
                        log::warn!("accept: {e}");
                        continue;
                    }
                    self.report(true);
                    handler(&self, stream);
                    served += 1;
                    self.report(false);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        log::debug!(
            "{}: exiting after {served} clients (fd {})",
            self.program,
            listener.as_raw_fd()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let v: Vec<String> = ["-n", "cleanup", "-t", "unix", "-o", "a = b", "-v", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = parse_args(&v).unwrap();
        assert_eq!(a.service, "cleanup");
        assert_eq!(a.kind, "unix");
        assert_eq!(a.overrides, vec![("a".to_string(), "b".to_string())]);
        assert!(a.verbose);
        assert_eq!(a.extra, vec!["x"]);
        assert!(parse_args(&["-o".to_string(), "novalue".to_string()]).is_err());
    }
}
