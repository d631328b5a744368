//! One master.cf service: its listeners, its status pipe, its processes, its timers.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use posthorn_config::{Config, Service as Def, ServiceType};
use posthorn_queue::QueueLayout;

use crate::Settings;

/// A running child.
struct Child {
    busy: bool,
    served: bool,
}

/// A service and its processes.
pub struct Service {
    def: Def,
    listeners: Vec<OwnedFd>,
    socket_path: Option<PathBuf>,
    status_r: UnixStream,
    status_w: UnixStream,
    children: HashMap<i32, Child>,
    throttle_until: Option<Instant>,
    startup_failures: u32,
    next_wakeup: Option<Instant>,
    /// Removed from master.cf by a reload; kept until its children are gone.
    pub retired: bool,
}

fn endpoint(def: &Def) -> (String, ServiceType) {
    (def.name.clone(), def.kind)
}

impl Service {
    /// Opens the service's listener and status pipe.
    pub fn open(def: Def, config: &Config, layout: &QueueLayout) -> Result<Service, String> {
        let mut listeners = Vec::new();
        let mut socket_path = None;
        match def.kind {
            ServiceType::Unix | ServiceType::Pass => {
                let path = if def.private {
                    layout.private_socket(&def.name)
                } else {
                    layout.public_socket(&def.name)
                };
                let _ = fs::remove_file(&path);
                let l = UnixListener::bind(&path).map_err(|e| {
                    format!("{}:{}: bind {}: {e}", def.file, def.line, path.display())
                })?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
                    .map_err(|e| format!("chmod {}: {e}", path.display()))?;
                listeners.push(OwnedFd::from(l));
                socket_path = Some(path);
            }
            ServiceType::Inet => {
                let (host, port) = def.inet_address().unwrap_or_default();
                let hosts: Vec<String> = if host.is_empty() {
                    inet_hosts(config)
                } else {
                    vec![host]
                };
                for h in hosts {
                    let addr = if h.contains(':') {
                        format!("[{h}]:{port}")
                    } else {
                        format!("{h}:{port}")
                    };
                    let l = TcpListener::bind(&addr)
                        .map_err(|e| format!("{}:{}: bind {addr}: {e}", def.file, def.line))?;
                    listeners.push(OwnedFd::from(l));
                }
            }
            other => {
                return Err(format!(
                    "{}:{}: service type {other:?} is not supported by posthorn",
                    def.file, def.line
                ));
            }
        }
        let (status_r, status_w) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        status_r.set_nonblocking(true).map_err(|e| e.to_string())?;
        status_w.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Service {
            def,
            listeners,
            socket_path,
            status_r,
            status_w,
            children: HashMap::new(),
            throttle_until: None,
            startup_failures: 0,
            next_wakeup: None,
            retired: false,
        })
    }

    /// Whether `def` names the same listener (reload keeps it open).
    pub fn same_endpoint(&self, def: &Def) -> bool {
        !self.retired
            && endpoint(&self.def) == endpoint(def)
            && self.def.inet_address() == def.inet_address()
    }

    /// Takes the new definition after a reload.
    pub fn update(&mut self, def: Def) {
        self.def = def;
        self.throttle_until = None;
        self.startup_failures = 0;
    }

    /// Sets the first wakeup: right away, unless on demand (`?`).
    pub fn schedule_first_wakeup(&mut self) {
        self.next_wakeup = match &self.def.wakeup {
            Some(w) if w.seconds > 0 && !w.on_demand => Some(Instant::now()),
            _ => None,
        };
    }

    /// The read end of the status pipe.
    pub fn status_fd(&self) -> BorrowedFd<'_> {
        self.status_r.as_fd()
    }

    /// The listeners.
    pub fn listener_fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.listeners.iter().map(AsFd::as_fd)
    }

    /// Number of live children.
    pub fn children_count(&self) -> usize {
        self.children.len()
    }

    fn idle_count(&self) -> usize {
        self.children.values().filter(|c| !c.busy).count()
    }

    /// Whether a readable listener should make master spawn a process now.
    pub fn wants_spawn(&self, now: Instant) -> bool {
        !self.retired
            && self.idle_count() == 0
            && (self.def.maxproc == 0 || self.children.len() < self.def.maxproc as usize)
            && self.throttle_until.is_none_or(|t| now >= t)
    }

    /// The next instant this service needs attention.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.next_wakeup, self.throttle_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends due wakeup triggers.
    pub fn run_timers(&mut self, now: Instant) {
        if self.throttle_until.is_some_and(|t| now >= t) {
            self.throttle_until = None;
        }
        let (Some(t), Some(w)) = (self.next_wakeup, &self.def.wakeup) else {
            return;
        };
        if now < t {
            return;
        }
        self.next_wakeup = Some(now + Duration::from_secs(w.seconds));
        if let Some(p) = &self.socket_path {
            // Never blocks master: a full backlog means the service has work queued anyway.
            let _ = posthorn_proto::trigger::send(p, &[posthorn_proto::trigger::WAKEUP]);
        }
    }

    /// Reads busy/idle reports from the children.
    pub fn read_status(&mut self) {
        let mut buf = [0u8; 5 * 64];
        let mut pending: Vec<u8> = Vec::new();
        while let Ok(n) = self.status_r.read(&mut buf) {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
        }
        // Each message is one 5-byte write, atomic on a socket pair.
        for m in pending.chunks_exact(5) {
            let pid = i32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            if let Some(c) = self.children.get_mut(&pid) {
                c.busy = m[4] == b'B';
                if c.busy {
                    c.served = true;
                    self.startup_failures = 0;
                }
            }
        }
    }

    /// Spawns one process for this service.
    pub fn spawn(&mut self, settings: &Settings, daemon_dir: &Path) {
        let now = Instant::now();
        if !self.wants_spawn(now) {
            return;
        }
        let path = if self.def.command.starts_with('/') {
            PathBuf::from(&self.def.command)
        } else {
            daemon_dir.join(&self.def.command)
        };
        let mut cmd = Command::new(&path);
        cmd.arg("-n")
            .arg(&self.def.name)
            .arg("-t")
            .arg(kind_name(self.def.kind));
        for (k, v) in &self.def.overrides {
            cmd.arg("-o").arg(format!("{k}={v}"));
        }
        cmd.args(&self.def.args);
        cmd.env_clear();
        for var in ["TZ", "PATH", "LANG", "LC_ALL"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let fds: Vec<String> = self
            .listeners
            .iter()
            .map(|l| l.as_raw_fd().to_string())
            .collect();
        cmd.env("MAIL_CONFIG", &settings.config_dir)
            .env("POSTHORN_LISTEN_FDS", fds.join(","))
            .env("POSTHORN_STATUS_FD", self.status_w.as_raw_fd().to_string())
            .env("POSTHORN_UNPRIV", if self.def.unpriv { "y" } else { "n" })
            .env("POSTHORN_CHROOT", if self.def.chroot { "y" } else { "n" })
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // Master is single-threaded: clearing close-on-exec around the spawn hands exactly
        // these descriptors to this child and no other.
        let inherit = |on: bool| {
            for l in &self.listeners {
                let _ = posthorn_sys::set_cloexec(l, on);
            }
            let _ = posthorn_sys::set_cloexec(&self.status_w, on);
        };
        inherit(false);
        let res = cmd.spawn();
        inherit(true);
        match res {
            Ok(child) => {
                self.children.insert(
                    child.id() as i32,
                    Child {
                        busy: false,
                        served: false,
                    },
                );
            }
            Err(e) => {
                log::error!(
                    "{}: cannot start {}: {}",
                    self.def.name,
                    path.display(),
                    io_text(&e)
                );
                self.throttle(Duration::from_secs(60));
            }
        }
    }

    fn throttle(&mut self, max: Duration) {
        self.startup_failures += 1;
        let delay = Duration::from_secs(1u64 << self.startup_failures.min(16).saturating_sub(1))
            .min(max.max(Duration::from_secs(1)));
        self.throttle_until = Some(Instant::now() + delay);
    }

    /// Handles the exit of `pid` if it is ours; returns whether it was.
    pub fn child_exited(
        &mut self,
        pid: i32,
        failure: Option<&str>,
        throttle_max: Duration,
    ) -> bool {
        let Some(c) = self.children.remove(&pid) else {
            return false;
        };
        if let Some(why) = failure {
            let cmd = &self.def.command;
            log::warn!("process {cmd} pid {pid} {why}");
            if !c.served && !self.retired {
                log::warn!("{cmd}: bad command startup -- throttling");
                self.throttle(throttle_max);
            }
        }
        true
    }

    /// Asks every child to finish its current request and exit.
    pub fn terminate_all(&mut self) {
        self.signal_all(nix::sys::signal::Signal::SIGTERM);
    }

    /// Kills every child.
    pub fn kill_all(&mut self) {
        self.signal_all(nix::sys::signal::Signal::SIGKILL);
    }

    fn signal_all(&self, sig: nix::sys::signal::Signal) {
        for pid in self.children.keys() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), sig);
        }
    }

    /// Removes the Unix socket at shutdown.
    pub fn remove_socket(&self) {
        if let Some(p) = &self.socket_path {
            let _ = fs::remove_file(p);
        }
    }
}

/// An I/O error's text without Rust's " (os error N)" suffix, as in Postfix's messages.
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn kind_name(k: ServiceType) -> &'static str {
    match k {
        ServiceType::Inet => "inet",
        ServiceType::Unix => "unix",
        ServiceType::UnixDgram => "unix-dgram",
        ServiceType::Fifo => "fifo",
        ServiceType::Pass => "pass",
    }
}

fn inet_hosts(config: &Config) -> Vec<String> {
    let list = config.get_list("inet_interfaces");
    let mut out = Vec::new();
    for h in list {
        match h.as_str() {
            "all" => out.push("0.0.0.0".to_string()),
            "loopback-only" | "localhost" => out.push("127.0.0.1".to_string()),
            _ => out.push(h.trim_start_matches('[').trim_end_matches(']').to_string()),
        }
    }
    if out.is_empty() {
        out.push("0.0.0.0".to_string());
    }
    out
}
