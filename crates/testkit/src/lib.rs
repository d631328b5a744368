//! posthorn-testkit: real posthorn instances for tests.
//!
//! An [`Instance`] is a complete, self-contained installation in a temporary directory:
//! `etc/main.cf` and `etc/master.cf` (the project's stock master.cf), a queue, a log file
//! (`maillog_file`), mail spools, all run from the workspace's built binaries
//! (`target/debug`, built by `scripts/test` before the tests run). Every process it starts
//! is stopped when it is dropped.
//!
//! Run by root (as CI does), an unprivileged instance runs every command as the account
//! `nobody`, so the unprivileged mode is tested there too; [`Mode::Privileged`] runs master
//! as root with daemons as `mail_owner`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How the instance runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything as one ordinary user (the test user, or `nobody` when tests run as root).
    Unprivileged,
    /// master as root, daemons as `mail_owner`, local delivery as the recipients (root only).
    Privileged,
}

/// The folder holding the built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("POSTHORN_BIN_DIR") {
        return PathBuf::from(d);
    }
    // Test executables live in target/debug/deps; the binaries one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for b in [
        "posthorn", "master", "cleanup", "qmgr", "pickup", "local", "bounce", "sendmail",
        "postdrop",
    ] {
        assert!(
            dir.join(b).exists(),
            "{} missing: build the workspace first (scripts/test does: cargo build --workspace)",
            dir.join(b).display()
        );
    }
    dir
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Whether this test process runs as root.
pub fn is_root() -> bool {
    posthorn_sys::is_root()
}

/// The binaries, reachable by the unprivileged account the instance runs as (`nobody`).
/// A build tree below a private folder (e.g. /root, mode 0700) is not, so the binaries are
/// then copied once per test process to a world-readable folder in /tmp.
fn bin_dir_for_others() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let src = bin_dir();
        let reachable = src.ancestors().all(|d| {
            fs::metadata(d)
                .map(|m| m.permissions().mode() & 0o001 != 0)
                .unwrap_or(false)
        });
        if reachable {
            return src;
        }
        // Copies left by earlier test processes that have exited are removed first.
        for e in fs::read_dir("/tmp").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("posthorn-test-bin.")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let dst = PathBuf::from(format!("/tmp/posthorn-test-bin.{}", std::process::id()));
        fs::create_dir_all(&dst).unwrap();
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
        copy_binaries(&src, &dst);
        dst
    })
    .clone()
}

/// Copies the executables of `src` (not the `.d` files) into `dst`.
fn copy_binaries(src: &Path, dst: &Path) {
    for e in fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        let is_exec = e
            .metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if is_exec && p.extension().is_none_or(|x| x != "d") {
            fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

/// Prepares a privileged instance (root only): the accounts `posthorn` (mail_owner) and
/// group `postdrop`, and a private copy of the binaries in ROOT/bin, so that making
/// `postdrop` setgid there does not change the shared build tree.
fn privileged_setup(root: &Path) -> PathBuf {
    assert!(is_root(), "Mode::Privileged needs root");
    ensure_account("posthorn", None);
    if posthorn_sys::group_by_name("postdrop").unwrap().is_none() {
        let _ = Command::new("groupadd")
            .args(["--system", "postdrop"])
            .status();
    }
    let src = bin_dir();
    let bin = root.join("bin");
    fs::create_dir_all(&bin).unwrap();
    copy_binaries(&src, &bin);
    bin
}

/// The first line of an /etc/posthorn/main.cf written by the tests (any test may rewrite it).
const TEST_MAIN_CF_MARK: &str = "# written by posthorn's test suite";

/// Lets setgid programs (postdrop, postqueue) trust configuration directory `dir`: writes
/// the default /etc/posthorn/main.cf with `alternate_config_directories = DIR` (root only).
/// Refuses to touch a main.cf that the tests did not write.
pub fn allow_config_dir(dir: &Path) {
    let main = Path::new("/etc/posthorn/main.cf");
    if main.exists()
        && !fs::read_to_string(main)
            .unwrap_or_default()
            .starts_with(TEST_MAIN_CF_MARK)
    {
        panic!("/etc/posthorn/main.cf exists and was not written by the tests; not touching it");
    }
    fs::create_dir_all("/etc/posthorn").unwrap();
    fs::write(
        main,
        format!(
            "{TEST_MAIN_CF_MARK}\nalternate_config_directories = {}\n",
            dir.display()
        ),
    )
    .unwrap();
}

/// Creates a system account if missing (root only); `home` gives it a home directory.
pub fn ensure_account(name: &str, home: Option<&Path>) {
    if posthorn_sys::user_by_name(name).unwrap().is_some() {
        return;
    }
    let mut c = Command::new("useradd");
    match home {
        Some(h) => c.arg("--home-dir").arg(h).arg("--shell").arg("/bin/sh"),
        None => c.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ]),
    };
    let st = c.arg(name).status().expect("useradd");
    assert!(
        st.success() || posthorn_sys::user_by_name(name).unwrap().is_some(),
        "useradd {name} failed"
    );
}

/// A file's text, or "" when it cannot be read (yet).
pub fn read_text(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// The queue ID of the first log line containing `needle` (`... name[pid]: ID: ...`).
pub fn queue_id_for(log: &str, needle: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line with {needle}:\n{log}"));
    let after = line.split("]: ").nth(1).unwrap_or_default();
    after.split(':').next().unwrap_or_default().to_string()
}

pub mod smtp;
pub mod tls;

/// A loopback TCP port that was free a moment ago (tests never use port 25).
///
/// Chosen at random below Linux's ephemeral range (32768 and up), so that the outgoing
/// connections of tests running in parallel, which take ephemeral ports, cannot grab it
/// before the instance binds it; never the same port twice in one test process.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let state = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..1000 {
        let mut h = state.build_hasher();
        h.write_u32(attempt);
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port found in 20000-31999");
}

/// The stock master.cf with its `smtp inet` service moved to `127.0.0.1:port`.
pub fn loopback_master_cf(stock: &str, port: u16) -> String {
    let mut out = String::with_capacity(stock.len() + 32);
    for line in stock.lines() {
        let mut cols = line.split_whitespace();
        if let (Some("smtp"), Some("inet")) = (cols.next(), cols.next()) {
            out.push_str(&line.replacen("smtp", &format!("127.0.0.1:{port}"), 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// A running (or ready to run) posthorn instance.
pub struct Instance {
    dir: tempfile::TempDir,
    /// The configuration directory (`-c`).
    pub etc: PathBuf,
    /// `queue_directory`.
    pub queue: PathBuf,
    /// `maillog_file`.
    pub log: PathBuf,
    /// A folder for mailboxes (`mail_spool_directory`, `virtual_mailbox_base`).
    pub mail: PathBuf,
    /// The built binaries.
    pub bin: PathBuf,
    /// How it runs.
    pub mode: Mode,
    /// The loopback port of master.cf's `smtp inet` service (chosen at run time).
    pub smtp_port: u16,
    /// uid/gid commands run as (None: this process's ids).
    run_as: Option<(u32, u32)>,
    started: bool,
}

impl Instance {
    /// Creates an unprivileged instance whose main.cf is the base settings plus `extra`
    /// (later lines win, so `extra` overrides).
    pub fn new(extra: &str) -> Instance {
        Instance::with_mode(Mode::Unprivileged, extra)
    }

    /// Creates an instance in `mode`.
    pub fn with_mode(mode: Mode, extra: &str) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("ph")
            .tempdir_in("/tmp")
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().to_path_buf();
        let bin = match mode {
            Mode::Unprivileged if is_root() => bin_dir_for_others(),
            Mode::Unprivileged => bin_dir(),
            Mode::Privileged => privileged_setup(&root),
        };
        let etc = root.join("etc");
        let queue = root.join("queue");
        let mail = root.join("mail");
        let log = root.join("maillog");
        fs::create_dir_all(&etc).unwrap();
        fs::create_dir_all(&mail).unwrap();
        fs::set_permissions(&mail, fs::Permissions::from_mode(0o1777)).unwrap();
        let run_as = match mode {
            Mode::Unprivileged if is_root() => {
                let n = posthorn_sys::user_by_name("nobody")
                    .unwrap()
                    .expect("user nobody");
                Some((n.uid, n.gid))
            }
            _ => None,
        };
        let owner = if mode == Mode::Privileged {
            "mail_owner = posthorn\nsetgid_group = postdrop\n"
        } else {
            ""
        };
        let main_cf = format!(
            "{owner}queue_directory = {q}\n\
             daemon_directory = {b}\n\
             command_directory = {b}\n\
             data_directory = {root}/data\n\
             maillog_file = {log}\n\
             myhostname = mail.example.test\n\
             mydomain = example.test\n\
             mydestination = $myhostname, localhost.$mydomain, localhost\n\
             alias_maps =\n\
             alias_database =\n\
             mail_spool_directory = {mail}\n\
             virtual_mailbox_base = {mail}\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             service_throttle_time = 2s\n\
             # No test asks the machine's name servers: outside mail defers at once.\n\
             smtp_dns_servers = 127.0.0.1:1\n\
             {extra}\n",
            q = queue.display(),
            b = bin.display(),
            root = root.display(),
            log = log.display(),
            mail = mail.display(),
        );
        fs::write(etc.join("main.cf"), main_cf).unwrap();
        let stock =
            fs::read_to_string(workspace_root().join("etc/master.cf")).expect("etc/master.cf");
        let smtp_port = free_port();
        fs::write(etc.join("master.cf"), loopback_master_cf(&stock, smtp_port)).unwrap();
        if let Some((uid, gid)) = run_as {
            for p in [&root, &etc, &mail] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        }
        let inst = Instance {
            dir,
            etc,
            queue,
            log,
            mail,
            bin,
            mode,
            smtp_port,
            run_as,
            started: false,
        };
        if let Some((uid, gid)) = run_as {
            let _ = (uid, gid);
            inst.chown_all();
        }
        inst
    }

    /// The instance's root folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The uid commands run as.
    pub fn uid(&self) -> u32 {
        self.run_as
            .map(|(u, _)| u)
            .unwrap_or_else(|| posthorn_sys::uids().1)
    }

    /// The login name commands run as.
    pub fn user(&self) -> String {
        posthorn_sys::user_by_uid(self.uid())
            .unwrap()
            .map(|a| a.name)
            .unwrap_or_default()
    }

    /// Gives every file of the instance to the run-as user (after writing files as root).
    pub fn chown_all(&self) {
        if let Some((uid, gid)) = self.run_as {
            let _ = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(self.root())
                .status();
        }
    }

    /// Appends lines to main.cf.
    pub fn add_main_cf(&self, text: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.etc.join("main.cf"))
            .unwrap();
        writeln!(f, "{text}").unwrap();
    }

    /// Writes a file below the instance root (owned by the run-as user).
    pub fn write_file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.root().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, content).unwrap();
        self.chown_all();
        p
    }

    /// A command for binary `name`, run as the instance's user, with `MAIL_CONFIG` set.
    pub fn command(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("MAIL_CONFIG", &self.etc);
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c
    }

    /// Runs `posthorn -c ETC ARGS`.
    pub fn posthorn(&self, args: &[&str]) -> Output {
        let mut c = self.command("posthorn");
        c.arg("-c").arg(&self.etc).args(args);
        c.stdin(Stdio::null()).output().expect("run posthorn")
    }

    /// Starts the instance; panics with the output if that fails.
    pub fn start(&mut self) {
        let out = self.posthorn(&["start"]);
        assert!(
            out.status.success(),
            "posthorn start failed: {}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        self.started = true;
    }

    /// Stops the instance (waits until every daemon is gone).
    pub fn stop(&mut self) {
        if self.started {
            let out = self.posthorn(&["stop"]);
            assert!(
                out.status.success(),
                "posthorn stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            self.started = false;
        }
    }

    /// Marks the instance as stopped (after a test killed it).
    pub fn forget_started(&mut self) {
        self.started = false;
    }

    /// Runs `sendmail ARGS` with `input` on stdin.
    pub fn sendmail(&self, args: &[&str], input: &str) -> Output {
        self.sendmail_bytes(args, input.as_bytes())
    }

    /// Runs `sendmail ARGS` with raw bytes on stdin (8-bit input). The input is written
    /// from a thread, so a sendmail that exits early cannot block the test.
    pub fn sendmail_bytes(&self, args: &[&str], input: &[u8]) -> Output {
        let mut c = self.command("sendmail");
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run sendmail");
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out
    }

    /// main.cf lines for virtual mailboxes of domain `virt.test` with the inline map
    /// entries `maps` (e.g. `alice@virt.test=alice/`), delivered as the instance's user.
    pub fn virtual_cf(&self, maps: &str) -> String {
        use std::os::unix::fs::MetadataExt;
        let gid = fs::metadata(self.root()).unwrap().gid();
        format!(
            "virtual_mailbox_domains = virt.test\n\
             virtual_mailbox_maps = inline:{{ {maps} }}\n\
             virtual_uid_maps = static:{}\n\
             virtual_gid_maps = static:{gid}\n\
             virtual_minimum_uid = 0\n",
            self.uid()
        )
    }

    /// Writes ROOT/aliases, points alias_maps and alias_database at it and builds it with
    /// newaliases (call before the instance starts).
    pub fn setup_aliases(&self, text: &str) -> PathBuf {
        let src = self.write_file("aliases", text);
        self.add_main_cf(&format!(
            "alias_maps = hash:{0}\nalias_database = hash:{0}\n",
            src.display()
        ));
        let out = self.command("newaliases").output().expect("run newaliases");
        assert!(
            out.status.success(),
            "newaliases failed ({:?}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        src
    }

    /// Waits (20 s) until file `p` contains `needle`; returns the text, or panics with the
    /// file and the log.
    pub fn wait_for_text(&self, p: &Path, needle: &str) -> String {
        let ok = self.wait_until(Duration::from_secs(20), || read_text(p).contains(needle));
        assert!(
            ok,
            "{} never contained {needle:?}; it holds:\n{}\nlog:\n{}",
            p.display(),
            read_text(p),
            self.log_text()
        );
        read_text(p)
    }

    /// The first log line containing `needle`, waiting (20 s) for it to appear.
    pub fn log_line(&self, needle: &str) -> String {
        self.expect_log(needle, Duration::from_secs(20));
        self.log_text()
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    }

    /// The mail log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `cond` holds (polling every 50 ms) or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the log contains `needle`; panics with the log if it does not in time.
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        let ok = self.wait_until(timeout, || self.log_text().contains(needle));
        assert!(ok, "log never showed {needle:?}; log:\n{}", self.log_text());
    }

    /// Number of message files in queue `name` (all hash levels).
    pub fn queue_count(&self, name: &str) -> usize {
        fn walk(p: &Path) -> usize {
            let Ok(rd) = fs::read_dir(p) else { return 0 };
            rd.flatten()
                .map(|e| {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        walk(&e.path())
                    } else if e.file_name().to_string_lossy().contains('z') {
                        1
                    } else {
                        0
                    }
                })
                .sum()
        }
        walk(&self.queue.join(name))
    }

    /// Whether the queue (maildrop, incoming, active, deferred) is empty.
    pub fn queue_empty(&self) -> bool {
        ["maildrop", "incoming", "active", "deferred"]
            .iter()
            .all(|q| self.queue_count(q) == 0)
    }

    /// The files in a Maildir's `new/`, sorted, with their contents.
    pub fn maildir(&self, dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir.join("new"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            fs::read(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.started {
            let _ = self.posthorn(&["stop"]);
        }
        if std::env::var_os("POSTHORN_KEEP_TEST_DIR").is_some() {
            let p = self.dir.path().to_path_buf();
            eprintln!("keeping {}", p.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().unwrap(),
            ));
        }
    }
}
