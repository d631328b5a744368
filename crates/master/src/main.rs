//! master - posthorn's process supervisor
//!
//! # Synopsis
//! `master [-c config_dir] [-v] [-w]` (normally started by `posthorn start` or `posthorn start-fg`)
//!
//! # Description
//! master reads `main.cf` and `master.cf`, takes the instance lock (`pid/master.lock` below
//! `queue_directory`, with the pid in `pid/master.pid`), opens every service's listener
//! (`private/NAME` or `public/NAME` Unix sockets, TCP sockets for `inet` services), and then
//! spawns each service's daemon from `daemon_directory` on demand: when a listener is
//! readable and none of that service's processes is idle, up to `maxproc` (0 = unlimited).
//! Services with a `wakeup` time get a `W` trigger every so many seconds (and one at start,
//! unless the time ends in `?`).
//!
//! A child that exits abnormally is logged; one that fails before serving anything
//! throttles its service with a growing delay (1 s, 2 s, 4 s ... up to
//! `service_throttle_time`), so a daemon that crashes at start cannot fork-bomb the host.
//!
//! When master prints `ready` on standard output, every listener is open: `posthorn start`
//! waits for that line. With `-w` (what `posthorn start` uses) master then detaches its
//! standard input, output and error to /dev/null.
//!
//! # Signals
//! - SIGHUP: re-read `main.cf` and `master.cf`; open new listeners, close removed ones, and
//!   ask every running daemon to finish its current request and exit (SIGTERM); new
//!   processes start with the new configuration.
//! - SIGTERM, SIGINT: stop every daemon (SIGTERM, then SIGKILL after 10 seconds), release
//!   the lock and exit.
//!
//! # Security
//! Runs as root in a real installation, to bind privileged ports and to start daemons that
//! then drop to `mail_owner` (services with `unpriv` = `y`, the default) or stay root (`n`,
//! e.g. local). Run as another user, everything runs as that user (a logged warning says so).
//! Daemons get a cleaned environment: `MAIL_CONFIG`, `TZ`, `PATH` and master's own variables.
//!
//! # Diagnostics
//! Problems go to the mail log (`maillog_file` or syslog). Startup errors also go to stderr.
//!
//! # Configuration parameters
//! `queue_directory`, `daemon_directory`, `default_process_limit`, `service_throttle_time`,
//! `inet_interfaces`, `mail_owner`, `setgid_group`, `syslog_name`, `maillog_file`.
//!
//! # Files
//! `main.cf`, `master.cf` in the configuration directory; `pid/master.pid`, `pid/master.lock`,
//! `private/`, `public/` below `queue_directory`.
//!
//! # See also
//! posthorn(1), the daemons' pages.

mod service;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use posthorn_config::{Config, MasterCf};
use service::Service;

/// Everything master needs from its configuration.
struct Settings {
    config_dir: PathBuf,
    config: Config,
    master_cf: MasterCf,
}

fn load(config_dir: &Path) -> Result<Settings, String> {
    let config = Config::load(config_dir).map_err(|e| e.to_string())?;
    for d in config.validate() {
        log::warn!("{d}");
    }
    let master_cf = MasterCf::load(config_dir, &config).map_err(|e| e.to_string())?;
    Ok(Settings {
        config_dir: config_dir.to_path_buf(),
        config,
        master_cf,
    })
}

struct SignalPipe {
    read: UnixStream,
}

impl SignalPipe {
    fn new(sigs: &[i32]) -> SignalPipe {
        let (read, write) =
            UnixStream::pair().unwrap_or_else(|e| posthorn_log::fatal(format!("socketpair: {e}")));
        read.set_nonblocking(true).ok();
        write.set_nonblocking(true).ok();
        for &s in sigs {
            let w = write
                .try_clone()
                .unwrap_or_else(|e| posthorn_log::fatal(format!("dup: {e}")));
            signal_hook::low_level::pipe::register(s, w)
                .unwrap_or_else(|e| posthorn_log::fatal(format!("signal: {e}")));
        }
        SignalPipe { read }
    }

    fn drain(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut got = false;
        while let Ok(n) = self.read.read(&mut buf) {
            if n == 0 {
                break;
            }
            got = true;
        }
        got
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args =
        posthorn_server::parse_args(&argv).unwrap_or_else(|e| posthorn_log::fatal_with(64, e));
    let settings = match load(&args.config_dir) {
        Ok(s) => s,
        Err(e) => posthorn_log::fatal_with(78, e),
    };
    posthorn_server::init_log("master", &settings.config, args.verbose, true);
    let layout = posthorn_server::layout_of(&settings.config);
    let lock = take_lock(&layout.pid_dir());

    if !posthorn_sys::is_root() {
        let me = posthorn_sys::user_by_uid(posthorn_sys::uids().1)
            .ok()
            .flatten()
            .map(|a| a.name)
            .unwrap_or_default();
        log::warn!(
            "running as unprivileged user {me}: every daemon runs as {me}, without privilege separation"
        );
    }
    let mut sup = Supervisor {
        settings,
        services: Vec::new(),
    };
    sup.open_services(false);
    log::info!(
        "daemon started -- version {}, configuration {}",
        sup.settings.config.get("mail_version"),
        sup.settings.config_dir.display()
    );
    // Tell `posthorn start` that we are up, then stop writing to its pipe.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    if args.extra.iter().any(|a| a == "-w") {
        // Started by `posthorn start`: let go of its pipes, or whoever waits for that
        // command's output would wait for master's exit.
        if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(&null);
            let _ = nix::unistd::dup2_stderr(&null);
            let _ = nix::unistd::dup2_stdin(&null);
        }
    }
    sup.run();
    drop(lock);
}

/// The instance lock: held for master's lifetime, so a second master (or `posthorn start`)
/// sees the instance running.
fn take_lock(pid_dir: &Path) -> nix::fcntl::Flock<File> {
    let _ = fs::create_dir_all(pid_dir);
    let path = pid_dir.join("master.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| posthorn_log::fatal_with(73, format!("open {}: {e}", path.display())));
    let lock = match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            posthorn_log::fatal_with(75, "the posthorn mail system is already running")
        }
        Err((_, e)) => posthorn_log::fatal(format!("lock {}: {e}", path.display())),
    };
    let pid_path = pid_dir.join("master.pid");
    let tmp = pid_dir.join("master.pid.tmp");
    if let Err(e) = fs::write(&tmp, format!("{:>10}\n", std::process::id()))
        .and_then(|()| fs::rename(&tmp, &pid_path))
    {
        posthorn_log::fatal(format!("write {}: {e}", pid_path.display()));
    }
    lock
}

struct Supervisor {
    settings: Settings,
    services: Vec<Service>,
}

impl Supervisor {
    fn open_services(&mut self, reloading: bool) {
        let layout = posthorn_server::layout_of(&self.settings.config);
        if let Err(e) = layout.create_tree(&posthorn_queue::DirOwner::default()) {
            posthorn_log::fatal(format!("queue directory: {e}"));
        }
        let mut old: Vec<Service> = std::mem::take(&mut self.services);
        for def in self.settings.master_cf.services.clone() {
            let reuse = old.iter().position(|s| s.same_endpoint(&def));
            let svc = match reuse {
                Some(i) => {
                    let mut s = old.remove(i);
                    s.update(def);
                    s
                }
                None => match Service::open(def, &self.settings.config, &layout) {
                    Ok(s) => s,
                    // At start a service that cannot listen is fatal; on reload the running
                    // system must not die for a typo: skip the new service and say so.
                    Err(e) if reloading => {
                        log::error!("{e}; service not started");
                        continue;
                    }
                    Err(e) => posthorn_log::fatal(e),
                },
            };
            self.services.push(svc);
        }
        for mut s in old {
            s.terminate_all();
            s.remove_socket();
            // Its children are still reaped: keep it until they are gone.
            s.retired = true;
            self.services.push(s);
        }
        for s in &mut self.services {
            s.schedule_first_wakeup();
        }
    }

    fn run(&mut self) {
        let mut chld = SignalPipe::new(&[signal_hook::consts::SIGCHLD]);
        let mut hup = SignalPipe::new(&[signal_hook::consts::SIGHUP]);
        let mut term =
            SignalPipe::new(&[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]);
        let throttle_max = self.settings.config.get_duration("service_throttle_time");
        let daemon_dir = self.settings.config.get_path("daemon_directory");
        loop {
            let now = Instant::now();
            for s in &mut self.services {
                s.run_timers(now);
            }
            // Build the poll set: signals, status pipes, and listeners that need a process.
            let mut owners: Vec<(usize, bool)> = Vec::new(); // (service index, is_listener)
            let mut fds: Vec<PollFd<'_>> = vec![
                PollFd::new(chld.read.as_fd(), PollFlags::POLLIN),
                PollFd::new(hup.read.as_fd(), PollFlags::POLLIN),
                PollFd::new(term.read.as_fd(), PollFlags::POLLIN),
            ];
            for (i, s) in self.services.iter().enumerate() {
                fds.push(PollFd::new(s.status_fd(), PollFlags::POLLIN));
                owners.push((i, false));
                if s.wants_spawn(now) {
                    for l in s.listener_fds() {
                        fds.push(PollFd::new(l, PollFlags::POLLIN));
                        owners.push((i, true));
                    }
                }
            }
            let timeout = self
                .services
                .iter()
                .filter_map(|s| s.next_timer())
                .min()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let tmo = PollTimeout::try_from(timeout.as_millis().max(1) as i32)
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, tmo) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => posthorn_log::fatal(format!("poll: {e}")),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let mut spawn_for: Vec<usize> = Vec::new();
            let mut status_for: Vec<usize> = Vec::new();
            for (k, &(i, is_listener)) in owners.iter().enumerate() {
                if ready[k + 3] {
                    if is_listener {
                        if !spawn_for.contains(&i) {
                            spawn_for.push(i);
                        }
                    } else {
                        status_for.push(i);
                    }
                }
            }
            for i in status_for {
                self.services[i].read_status();
            }
            if ready[0] {
                chld.drain();
            }
            self.reap(throttle_max);
            for i in spawn_for {
                self.services[i].spawn(&self.settings, &daemon_dir);
            }
            if ready[1] && hup.drain() {
                self.reload();
            }
            if ready[2] && term.drain() {
                self.shutdown(&mut chld);
                return;
            }
            self.services
                .retain(|s| !(s.retired && s.children_count() == 0));
        }
    }

    fn reap(&mut self, throttle_max: Duration) {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.child_gone(
                    pid.as_raw(),
                    (code != 0).then(|| format!("exit status {code}")),
                    throttle_max,
                ),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.child_gone(
                    pid.as_raw(),
                    Some(format!("killed by signal {}", sig as i32)),
                    throttle_max,
                ),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn child_gone(&mut self, pid: i32, failure: Option<String>, throttle_max: Duration) {
        for s in &mut self.services {
            if s.child_exited(pid, failure.as_deref(), throttle_max) {
                return;
            }
        }
    }

    fn reload(&mut self) {
        match load(&self.settings.config_dir) {
            Ok(s) => {
                self.settings = s;
                for s in &mut self.services {
                    s.terminate_all();
                }
                self.open_services(true);
                log::info!(
                    "reload -- version {}, configuration {}",
                    self.settings.config.get("mail_version"),
                    self.settings.config_dir.display()
                );
            }
            Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
        }
    }

    fn shutdown(&mut self, chld: &mut SignalPipe) {
        log::info!("terminating on signal 15");
        for s in &mut self.services {
            s.terminate_all();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut killed = false;
        while self.services.iter().any(|s| s.children_count() > 0) {
            if Instant::now() >= deadline && !killed {
                for s in &mut self.services {
                    s.kill_all();
                }
                killed = true;
            }
            let mut fds = [PollFd::new(chld.read.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            chld.drain();
            self.reap(Duration::ZERO);
            if killed && Instant::now() >= deadline + Duration::from_secs(5) {
                log::warn!("some daemons did not exit; giving up on them");
                break;
            }
        }
        for s in &self.services {
            s.remove_socket();
        }
        let layout = posthorn_server::layout_of(&self.settings.config);
        let _ = fs::remove_file(layout.pid_dir().join("master.pid"));
    }
}
