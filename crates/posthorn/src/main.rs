//! posthorn - control the posthorn mail system
//!
//! # Synopsis
//! `posthorn [-c config_dir] [-v] command`
//!
//! # Description
//! The administrator's front end, like Postfix's postfix(1). Commands:
//! - `check`: validate `main.cf` and `master.cf` (errors with file:line, unknown parameters
//!   warned about), create the queue directory tree if missing, and report wrong owners or
//!   modes of queue directories and of `postdrop`.
//! - `start`: check, then start master in the background; returns once master has opened
//!   every listener. Refused, with a clear message, while the instance runs.
//! - `start-fg`: run master in the foreground (for supervisors such as systemd or runit).
//! - `stop`: ask master to stop (SIGTERM) and wait until master and every daemon are gone.
//! - `reload`: ask master to re-read its configuration (SIGHUP).
//! - `status`: say whether the instance runs (exit 0) or not (exit 1).
//! - `set-permissions`: repair owners and modes of the queue tree, and make `postdrop`
//!   setgid `setgid_group` (mode 2755), as `postfix set-permissions` does (root only).
//! - `flush`: ask qmgr to retry all deferred mail now.
//!
//! # Options
//! `-c dir` uses that configuration directory (also `MAIL_CONFIG`; default /etc/posthorn).
//! `-v` logs more.
//!
//! # Security
//! Meant for root in an installation; in a build tree or a quickstart instance any user may
//! run it, and the whole instance then runs as that user.
//!
//! # Exit status
//! 0 on success; sysexits codes otherwise (64 usage, 69 not running, 75 already running or
//! temporary trouble, 78 configuration error).
//!
//! # Files
//! `main.cf`, `master.cf`; `pid/master.pid` below `queue_directory`.
//!
//! # See also
//! master(8), sendmail(1), posthorn.conf(5).

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use posthorn_config::{Config, MasterCf, Severity};
use posthorn_queue::{DirOwner, QueueLayout};

const USAGE: &str = "usage: posthorn [-c config_dir] [-v] start|start-fg|stop|reload|status|check|set-permissions|flush";

fn say(msg: impl std::fmt::Display) {
    eprintln!("posthorn: {msg}");
}

fn fatal(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("posthorn: fatal: {msg}");
    log::error!("{msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_dir: Option<PathBuf> = None;
    let mut verbose = false;
    let mut command = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" => match args.next() {
                Some(d) => config_dir = Some(PathBuf::from(d)),
                None => return fatal(64, USAGE),
            },
            "-v" => verbose = true,
            c if command.is_none() && !c.starts_with('-') => command = Some(c.to_string()),
            _ => return fatal(64, USAGE),
        }
    }
    let Some(command) = command else {
        return fatal(64, USAGE);
    };
    let config_dir = posthorn_config::trust::command_config_dir(config_dir);
    let config_dir = fs::canonicalize(&config_dir).unwrap_or(config_dir);
    let config = match Config::load(&config_dir) {
        Ok(c) => c,
        Err(e) => return fatal(78, e),
    };
    posthorn_server::init_log("posthorn-script", &config, verbose, false);
    let ctl = Control {
        layout: posthorn_server::layout_of(&config),
        config,
        config_dir,
    };
    match command.as_str() {
        "check" => ctl.check(),
        "start" => ctl.start(),
        "start-fg" => ctl.start_fg(),
        "stop" => ctl.stop(),
        "reload" => ctl.signal_master(
            nix::sys::signal::Signal::SIGHUP,
            "refreshing the posthorn mail system",
        ),
        "status" => ctl.status(),
        "set-permissions" => ctl.set_permissions(),
        "flush" => ctl.flush(),
        other => fatal(64, format!("unknown command: {other}\n{USAGE}")),
    }
}

struct Control {
    config: Config,
    config_dir: PathBuf,
    layout: QueueLayout,
}

impl Control {
    fn owner(&self) -> Result<DirOwner, String> {
        if !posthorn_sys::is_root() {
            return Ok(DirOwner::default());
        }
        let name = self.config.get("mail_owner");
        let acct = posthorn_sys::user_by_name(&name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("mail_owner {name}: no such user; create it (e.g. useradd --system {name})")
            })?;
        if acct.uid == 0 {
            return Err(format!("mail_owner {name} must not be root"));
        }
        let group = self.config.get("setgid_group");
        let gid = posthorn_sys::group_by_name(&group)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("setgid_group {group}: no such group; create it (e.g. groupadd --system {group})"))?;
        Ok(DirOwner {
            uid: Some(acct.uid),
            gid: Some(acct.gid),
            setgid_gid: Some(gid),
        })
    }

    fn command_dir(&self) -> PathBuf {
        self.config.get_path("command_directory")
    }

    /// Validates everything; returns the number of errors (warnings are printed too).
    fn validate(&self) -> usize {
        let mut errors = 0;
        for d in self.config.validate() {
            if d.severity == Severity::Error {
                errors += 1;
            }
            say(&d);
        }
        match MasterCf::load(&self.config_dir, &self.config) {
            Ok(m) => {
                let dd = self.config.get_path("daemon_directory");
                for s in &m.services {
                    let p = if s.command.starts_with('/') {
                        PathBuf::from(&s.command)
                    } else {
                        dd.join(&s.command)
                    };
                    if !p.is_file() {
                        say(format!(
                            "warning: {}:{}: service {}: no such program {}",
                            s.file,
                            s.line,
                            s.name,
                            p.display()
                        ));
                    }
                }
            }
            Err(e) => {
                say(format!("error: {e}"));
                errors += 1;
            }
        }
        errors
    }

    fn check(&self) -> ExitCode {
        let mut errors = self.validate();
        let owner = match self.owner() {
            Ok(o) => o,
            Err(e) => return fatal(78, e),
        };
        if let Err(e) = self.layout.create_tree(&owner) {
            return fatal(
                73,
                format!("queue directory {}: {e}", self.layout.root().display()),
            );
        }
        for p in self.layout.check_tree(&owner) {
            say(format!(
                "warning: {}: {} (posthorn set-permissions repairs this)",
                p.path.display(),
                p.message
            ));
        }
        if posthorn_sys::is_root() {
            let pd = self.command_dir().join("postdrop");
            match fs::metadata(&pd) {
                Ok(m) if m.mode() & 0o2000 == 0 || Some(m.gid()) != owner.setgid_gid => {
                    say(format!(
                        "warning: {}: not setgid {} (posthorn set-permissions repairs this)",
                        pd.display(),
                        self.config.get("setgid_group")
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    say(format!("error: {}: {e}", pd.display()));
                    errors += 1;
                }
            }
        }
        if errors > 0 {
            return fatal(78, format!("{errors} configuration error(s)"));
        }
        ExitCode::SUCCESS
    }

    fn running_pid(&self) -> Option<i32> {
        let lock = File::open(self.layout.pid_dir().join("master.lock")).ok()?;
        match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(_) => None, // we could lock it: no master holds it
            Err(_) => {
                let pid = fs::read_to_string(self.layout.pid_dir().join("master.pid")).ok()?;
                pid.trim().parse().ok()
            }
        }
    }

    fn master_path(&self) -> PathBuf {
        self.config.get_path("daemon_directory").join("master")
    }

    fn start(&self) -> ExitCode {
        if let Some(pid) = self.running_pid() {
            return fatal(
                75,
                format!("the posthorn mail system is already running (pid {pid})"),
            );
        }
        let code = self.check();
        if code != ExitCode::SUCCESS {
            return code;
        }
        say("starting the posthorn mail system");
        log::info!("starting the posthorn mail system");
        let mut child = match Command::new(self.master_path())
            .arg("-c")
            .arg(&self.config_dir)
            .arg("-w")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                return fatal(
                    69,
                    format!("cannot run {}: {e}", self.master_path().display()),
                );
            }
        };
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() == "ready" {
            return ExitCode::SUCCESS;
        }
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        fatal(
            75,
            format!("master did not start ({status}); see the mail log"),
        )
    }

    fn start_fg(&self) -> ExitCode {
        if let Some(pid) = self.running_pid() {
            return fatal(
                75,
                format!("the posthorn mail system is already running (pid {pid})"),
            );
        }
        let code = self.check();
        if code != ExitCode::SUCCESS {
            return code;
        }
        let err = Command::new(self.master_path())
            .arg("-c")
            .arg(&self.config_dir)
            .exec();
        fatal(
            69,
            format!("cannot run {}: {err}", self.master_path().display()),
        )
    }

    fn signal_master(&self, sig: nix::sys::signal::Signal, what: &str) -> ExitCode {
        let Some(pid) = self.running_pid() else {
            return fatal(69, "the posthorn mail system is not running");
        };
        say(what);
        log::info!("{what}");
        if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            return fatal(75, format!("signal master pid {pid}: {e}"));
        }
        ExitCode::SUCCESS
    }

    fn stop(&self) -> ExitCode {
        let code = self.signal_master(
            nix::sys::signal::Signal::SIGTERM,
            "stopping the posthorn mail system",
        );
        if code != ExitCode::SUCCESS {
            return code;
        }
        // master releases its lock only after every daemon has exited.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.running_pid().is_some() {
            if Instant::now() > deadline {
                return fatal(75, "master did not stop within 60 seconds");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ExitCode::SUCCESS
    }

    fn status(&self) -> ExitCode {
        match self.running_pid() {
            Some(pid) => {
                say(format!("the posthorn mail system is running: PID: {pid}"));
                ExitCode::SUCCESS
            }
            None => {
                say("the posthorn mail system is not running");
                ExitCode::from(1)
            }
        }
    }

    fn set_permissions(&self) -> ExitCode {
        let owner = match self.owner() {
            Ok(o) => o,
            Err(e) => return fatal(78, e),
        };
        if let Err(e) = self.layout.fix_tree(&owner) {
            return fatal(73, format!("{}: {e}", self.layout.root().display()));
        }
        for prog in ["postdrop", "postqueue"] {
            let p = self.command_dir().join(prog);
            if !p.exists() {
                continue;
            }
            if let Err(e) = setgid_program(&p, owner.setgid_gid) {
                return fatal(73, format!("{}: {e}", p.display()));
            }
        }
        ExitCode::SUCCESS
    }

    fn flush(&self) -> ExitCode {
        let sock = self.layout.public_socket(posthorn_proto::service::QMGR);
        match posthorn_proto::trigger::send(&sock, &[posthorn_proto::trigger::SCAN_ALL]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fatal(
                69,
                format!(
                    "cannot flush: {}: {e} (is the mail system running?)",
                    sock.display()
                ),
            ),
        }
    }
}

/// Makes a program `root:setgid_group` mode 2755; unprivileged, only the mode is set (g+s
/// on a file of one's own group is harmless) so a build tree can be checked.
fn setgid_program(p: &Path, gid: Option<u32>) -> std::io::Result<()> {
    if posthorn_sys::is_root() {
        std::os::unix::fs::chown(p, Some(0), gid)?;
        fs::set_permissions(p, fs::Permissions::from_mode(0o2755))
    } else {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755))
    }
}
