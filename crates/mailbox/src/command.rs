//! Delivery to a command, as Postfix's `pipe_command()`: `SHELL -c COMMAND` in its own
//! process group, with the message (`From ` line, prepended lines, content) on standard input
//! and standard output and error captured together for the bounce reason.
//!
//! One thread drives both pipes with poll(2), so a command that stops reading, writes a lot,
//! or never exits cannot block the delivery agent past the time limit; at the limit the whole
//! process group gets SIGKILL. A command that exits without reading all its input succeeds
//! (its exit status decides), as in Postfix. Writing relies on SIGPIPE being ignored, which
//! the Rust runtime does for every program.
//!
//! Results: exit 0 is success. Otherwise, in this order: output that starts with a status code
//! (`4.2.2 mailbox full`) gives that code and text; a <sysexits.h> status gives Postfix's code
//! for it (`EX_TEMPFAIL` 75 and `EX_OSERR` 71 defer with 4.3.0, `EX_NOUSER` 67 bounces with
//! 5.1.1, ...); any other status bounces with 5.3.0 `Command died with status N: "COMMAND".
//! Command output: ...`. Death by a signal and the time limit defer with 4.3.0.

use std::io::{self, PipeReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::copy::{Encoder, Format};
use crate::{CommandOptions, DeliveryError, Envelope, io_error, strerror};

/// How much command output is kept for the reason (Postfix keeps one VSTREAM buffer).
const OUTPUT_LIMIT: usize = 4096;

/// The search path every command starts with (Postfix's `_PATH_DEFPATH`).
const DEFAULT_PATH: &str = "/usr/bin:/bin";

/// Runs `opts.shell -c command` with the message on its standard input and maps its exit
/// status to a delivery result (see the module documentation). The environment is exactly
/// `PATH=/usr/bin:/bin` plus `opts.env`.
pub fn deliver_command(
    command: &str,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    opts: &CommandOptions,
) -> Result<(), DeliveryError> {
    let deadline = Instant::now()
        .checked_add(opts.time_limit)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400));
    let (output, child) = spawn(command, opts)?;
    let mut run = Running {
        child,
        status: None,
    };
    let stdin = run.child.stdin.take();
    if let Some(s) = &stdin {
        // A blocking write could outlive the deadline.
        set_nonblocking(s.as_fd())?;
    }
    let mut outcome = pump(&mut run, stdin, output, env, content, deadline);
    if outcome.status.is_none() && !outcome.timed_out && outcome.read_error.is_none() {
        outcome.status = wait_until(&mut run, deadline)?;
        outcome.timed_out = outcome.status.is_none();
    }
    let output = printable(&outcome.output);
    if let Some(e) = outcome.read_error {
        return Err(DeliveryError::temporary(
            "4.3.0",
            format!("error reading message: {}", strerror(&e)),
        ));
    }
    match outcome.status {
        Some(status) if !outcome.timed_out => judge(status, command, &output, outcome.write_error),
        _ => Err(DeliveryError::temporary(
            "4.3.0",
            with_output(
                format!("Command time limit exceeded: \"{command}\""),
                &output,
            ),
        )),
    }
}

/// Starts the shell; returns the read end of its combined stdout/stderr and the child.
fn spawn(command: &str, opts: &CommandOptions) -> Result<(PipeReader, Child), DeliveryError> {
    let failed = |e: io::Error| io_error(&e, "4.3.0", "Delivery failed: cannot create pipe");
    let (reader, writer) = io::pipe().map_err(failed)?;
    let writer2 = writer.try_clone().map_err(failed)?;
    set_nonblocking(reader.as_fd())?;
    // The Command owns our copies of the write end; it must be dropped right after spawn()
    // so that the reader sees end-of-file when the command's side closes.
    let child = Command::new(&opts.shell)
        .arg("-c")
        .arg(command)
        .current_dir(&opts.cwd)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            DeliveryError::temporary(
                "4.3.0",
                format!(
                    "Delivery failed: cannot execute {} in directory {}: {}",
                    opts.shell.display(),
                    opts.cwd.display(),
                    strerror(&e)
                ),
            )
        })?;
    Ok((reader, child))
}

/// A started command; dropping it before its status was collected kills its process group.
struct Running {
    child: Child,
    status: Option<ExitStatus>,
}

impl Running {
    /// SIGKILL to the command's process group (its pid: it was started as group leader).
    fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
    }

    /// The exit status if the command has ended.
    fn try_wait(&mut self) -> Result<Option<ExitStatus>, DeliveryError> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| io_error(&e, "4.3.0", "Delivery failed: wait"))?;
        }
        Ok(self.status)
    }

    /// Kills the process group and collects the status.
    fn kill_and_reap(&mut self) {
        self.kill();
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill_and_reap();
        }
    }
}

/// What happened while the command ran.
#[derive(Default)]
struct Outcome {
    status: Option<ExitStatus>,
    timed_out: bool,
    read_error: Option<io::Error>,
    /// A write error other than EPIPE.
    write_error: Option<io::Error>,
    output: Vec<u8>,
}

/// Feeds the message to the command and collects its output until both pipes are done, the
/// command has exited, the deadline passes, or the message cannot be read.
fn pump(
    run: &mut Running,
    mut stdin: Option<ChildStdin>,
    output: PipeReader,
    env: &Envelope<'_>,
    content: &mut dyn Read,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut output = Some(output);
    let mut encoder = Encoder::new(env, content, Format::COMMAND);
    let mut pending: Vec<u8> = Vec::with_capacity(80 * 1024);
    let mut sent = 0;
    let mut more = true;
    loop {
        if stdin.is_some() && sent == pending.len() {
            if more {
                pending.clear();
                sent = 0;
                match encoder.fill(&mut pending) {
                    Ok(m) => more = m,
                    Err(e) => {
                        outcome.read_error = Some(e);
                        run.kill_and_reap();
                        return outcome;
                    }
                }
                continue;
            }
            stdin = None; // end of message: the command sees end-of-file
        }
        if stdin.is_none() {
            match run.try_wait() {
                Ok(Some(status)) => {
                    // Whatever is left comes from offspring that kept the pipe open.
                    if let Some(out) = &mut output {
                        drain(out, &mut outcome.output);
                    }
                    outcome.status = Some(status);
                    return outcome;
                }
                Ok(None) => {}
                Err(_) => output = None,
            }
            if output.is_none() {
                return outcome;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            run.kill_and_reap();
            if let Some(out) = &mut output {
                drain(out, &mut outcome.output);
            }
            outcome.timed_out = true;
            return outcome;
        }
        // With only the output left, wake up now and then to notice the command's exit
        // even when a background process holds the output pipe open.
        let mut wait = deadline - now;
        if stdin.is_none() {
            wait = wait.min(Duration::from_millis(50));
        }
        let (stdin_ready, output_ready) = wait_ready(stdin.as_ref(), output.as_ref(), wait);
        if stdin_ready && let Some(s) = &mut stdin {
            match s.write(&pending[sent..]) {
                Ok(n) => sent += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    // The command stopped reading; its exit status will tell.
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        outcome.write_error = Some(e);
                    }
                    stdin = None;
                    more = false;
                }
            }
        }
        if output_ready
            && let Some(out) = &mut output
            && !read_some(out, &mut outcome.output)
        {
            output = None;
        }
    }
}

/// poll(2) for writability of `stdin` and readability of `output`, at most `wait`.
fn wait_ready(
    stdin: Option<&ChildStdin>,
    output: Option<&PipeReader>,
    wait: Duration,
) -> (bool, bool) {
    let mut fds = Vec::with_capacity(2);
    let stdin_at = stdin.map(|s| {
        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
        fds.len() - 1
    });
    let output_at = output.map(|o| {
        fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
        fds.len() - 1
    });
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        // Should not happen with valid descriptors; try the operations and let them fail.
        Err(_) => return (stdin_at.is_some(), output_at.is_some()),
    }
    let ready = |at: Option<usize>| {
        at.and_then(|i| fds[i].revents())
            .is_some_and(|r| !r.is_empty())
    };
    (ready(stdin_at), ready(output_at))
}

/// Reads what the output pipe has, keeping the first [`OUTPUT_LIMIT`] bytes. Returns false
/// at end-of-file or on error.
fn read_some(out: &mut PipeReader, keep: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    match out.read(&mut buf) {
        Ok(0) => false,
        Ok(n) => {
            let room = OUTPUT_LIMIT.saturating_sub(keep.len());
            keep.extend_from_slice(&buf[..n.min(room)]);
            true
        }
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

/// Reads what is immediately available from the (non-blocking) output pipe.
fn drain(out: &mut PipeReader, keep: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = OUTPUT_LIMIT.saturating_sub(keep.len());
        keep.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Waits for the command to exit until `deadline`; `None` means it was killed at the limit.
fn wait_until(run: &mut Running, deadline: Instant) -> Result<Option<ExitStatus>, DeliveryError> {
    loop {
        if let Some(status) = run.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            run.kill_and_reap();
            return Ok(None);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), DeliveryError> {
    let failed = |e: Errno| io_error(&e.into(), "4.3.0", "Delivery failed: fcntl");
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(failed)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(failed)?;
    Ok(())
}

/// The delivery result for a command that exited.
fn judge(
    status: ExitStatus,
    command: &str,
    output: &str,
    write_error: Option<io::Error>,
) -> Result<(), DeliveryError> {
    if let Some(signal) = status.signal() {
        return Err(DeliveryError::temporary(
            "4.3.0",
            with_output(
                format!("Command died with signal {signal}: \"{command}\""),
                output,
            ),
        ));
    }
    let code = status.code().unwrap_or(-1);
    if code == 0 {
        return match write_error {
            None => Ok(()),
            Some(e) => Err(DeliveryError::Permanent {
                dsn: "5.3.0",
                reason: format!("Command failed: {}: \"{command}\"", strerror(&e)),
            }),
        };
    }
    if let Some((dsn, text)) = dsn_from_output(output) {
        return Err(DeliveryError::from_dsn(dsn, text));
    }
    if let Some(&(_, dsn, text)) = SYSEXITS.iter().find(|(c, _, _)| *c == code) {
        return Err(DeliveryError::from_dsn(
            dsn,
            with_output(text.to_string(), output),
        ));
    }
    Err(DeliveryError::Permanent {
        dsn: "5.3.0",
        reason: with_output(
            format!("Command died with status {code}: \"{command}\""),
            output,
        ),
    })
}

/// <sysexits.h> codes with Postfix's status code and text for each.
const SYSEXITS: [(i32, &str, &str); 15] = [
    (64, "5.3.0", "command line usage error"),
    (65, "5.6.0", "data format error"),
    (66, "5.3.0", "cannot open input"),
    (67, "5.1.1", "user unknown"),
    (68, "5.1.2", "host name unknown"),
    (69, "5.3.0", "service unavailable"),
    (70, "5.3.0", "internal software error"),
    (71, "4.3.0", "system resource problem"),
    (72, "5.3.0", "critical OS file missing"),
    (73, "5.2.0", "can't create user output file"),
    (74, "5.3.0", "input/output error"),
    (75, "4.3.0", "temporary failure"),
    (76, "5.5.0", "remote error in protocol"),
    (77, "5.7.0", "permission denied"),
    (78, "5.3.5", "local configuration error"),
];

/// `reason`, followed by `. Command output: OUTPUT` when there was output.
fn with_output(reason: String, output: &str) -> String {
    if output.is_empty() {
        reason
    } else {
        format!("{reason}. Command output: {output}")
    }
}

/// Command output as one line: tabs and newlines become spaces, other control characters
/// `_` (Postfix's `translit()` and `printable()`), trailing space removed.
fn printable(raw: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .map(|c| match c {
            '\t' | '\n' => ' ',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    text.trim_end().to_string()
}

/// Output of the form `4.X.Y text` or `5.X.Y text`: the status code and the text.
fn dsn_from_output(output: &str) -> Option<(&'static str, &str)> {
    let (code, text) = output.split_once(' ')?;
    let text = text.trim_start();
    let mut parts = code.split('.');
    let class = parts.next()?;
    let nums: Vec<u16> = parts
        .map(|p| {
            if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse().ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    if !matches!(class, "4" | "5") || nums.len() != 2 || text.is_empty() {
        return None;
    }
    let canonical = format!("{class}.{}.{}", nums[0], nums[1]);
    let dsn = known_dsn(&canonical).or_else(|| known_dsn(&format!("{class}.0.0")))?;
    Some((dsn, text))
}

/// The static copy of a status code from the RFC 3463 range (subjects 0-7, details 0-30).
fn known_dsn(code: &str) -> Option<&'static str> {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let mut v = Vec::with_capacity(2 * 8 * 31);
            for class in [4, 5] {
                for subject in 0..=7 {
                    for detail in 0..=30 {
                        v.push(format!("{class}.{subject}.{detail}"));
                    }
                }
            }
            v
        })
        .iter()
        .find(|c| c.as_str() == code)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::from_line;
    use std::path::Path;
    use std::time::SystemTime;

    fn opts(dir: &Path) -> CommandOptions {
        CommandOptions {
            shell: "/bin/sh".into(),
            cwd: dir.to_path_buf(),
            env: vec![("FOO".to_string(), "bar baz".to_string())],
            time_limit: Duration::from_secs(20),
        }
    }

    fn run(command: &str, dir: &Path, content: &[u8]) -> Result<(), DeliveryError> {
        let p = vec!["Delivered-To: bob@example.com".to_string()];
        let env = Envelope {
            sender: "alice@example.org",
            arrival: SystemTime::UNIX_EPOCH,
            prepend: &p,
        };
        deliver_command(command, &env, &mut &content[..], &opts(dir))
    }

    #[test]
    fn exit_zero_is_success() {
        let dir = tempfile::tempdir().unwrap();
        run("cat >/dev/null", dir.path(), b"Subject: x\n\nhi\n").unwrap();
    }

    #[test]
    fn content_arrives_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        // Large enough to fill the pipe many times over.
        let mut content = b"Subject: x\n\nFrom the start\n".to_vec();
        for i in 0..100_000 {
            content.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        content.extend_from_slice(b"no newline");
        run("cat > got; pwd > where", dir.path(), &content).unwrap();
        let got = std::fs::read(dir.path().join("got")).unwrap();
        let mut want = from_line("alice@example.org", SystemTime::UNIX_EPOCH).into_bytes();
        want.extend_from_slice(b"Delivered-To: bob@example.com\n");
        want.extend_from_slice(&content);
        want.push(b'\n');
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        let cwd = std::fs::read_to_string(dir.path().join("where")).unwrap();
        assert_eq!(
            Path::new(cwd.trim_end()).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn environment_is_exactly_the_given_one() {
        let dir = tempfile::tempdir().unwrap();
        run(
            "[ \"$FOO\" = 'bar baz' ] && [ \"$PATH\" = /usr/bin:/bin ] && [ -z \"${CARGO_PKG_NAME:-}\" ]",
            dir.path(),
            b"",
        )
        .unwrap();
    }

    #[test]
    fn tempfail_defers() {
        let dir = tempfile::tempdir().unwrap();
        let err = run("exit 75", dir.path(), b"x\n").unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.dsn(), "4.3.0");
        assert_eq!(err.reason(), "temporary failure");
    }

    #[test]
    fn failure_bounces_with_output() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = "cat >/dev/null; echo 'oops:\tno'; echo second >&2; exit 1";
        let err = run(cmd, dir.path(), b"x\n").unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.dsn(), "5.3.0");
        assert_eq!(
            err.reason(),
            format!("Command died with status 1: \"{cmd}\". Command output: oops: no second")
        );
    }

    #[test]
    fn sysexits_and_dsn_output() {
        let dir = tempfile::tempdir().unwrap();
        let err = run("echo nobody here; exit 67", dir.path(), b"x\n").unwrap_err();
        assert_eq!(err.dsn(), "5.1.1");
        assert_eq!(err.reason(), "user unknown. Command output: nobody here");
        let err = run("echo '4.2.2 over quota'; exit 1", dir.path(), b"x\n").unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.dsn(), "4.2.2");
        assert_eq!(err.reason(), "over quota");
    }

    #[test]
    fn time_limit_kills_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.time_limit = Duration::from_secs(1);
        let env = Envelope {
            sender: "",
            arrival: SystemTime::now(),
            prepend: &[],
        };
        let start = Instant::now();
        let err = deliver_command("sleep 10", &env, &mut &b"x\n"[..], &o).unwrap_err();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(!err.is_permanent());
        assert_eq!(err.dsn(), "4.3.0");
        assert_eq!(err.reason(), "Command time limit exceeded: \"sleep 10\"");
    }

    #[test]
    fn time_limit_with_background_child_holding_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.time_limit = Duration::from_secs(1);
        let env = Envelope {
            sender: "",
            arrival: SystemTime::now(),
            prepend: &[],
        };
        // The shell exits at once; its background child keeps the output pipe open.
        let start = Instant::now();
        deliver_command("sleep 4 & exit 0", &env, &mut &b"x\n"[..], &o).unwrap();
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn command_that_ignores_input_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'a'; 1 << 20];
        run("exit 0", dir.path(), &big).unwrap();
    }

    #[test]
    fn signal_defers() {
        let dir = tempfile::tempdir().unwrap();
        let err = run("kill -9 $$", dir.path(), b"x\n").unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.dsn(), "4.3.0");
        assert!(
            err.reason().starts_with("Command died with signal 9"),
            "{err}"
        );
    }

    #[test]
    fn missing_shell_or_directory_defers() {
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope {
            sender: "",
            arrival: SystemTime::now(),
            prepend: &[],
        };
        let mut o = opts(dir.path());
        o.shell = "/nonexistent/sh".into();
        let err = deliver_command("true", &env, &mut &b""[..], &o).unwrap_err();
        assert!(!err.is_permanent());
        let mut o = opts(dir.path());
        o.cwd = dir.path().join("missing");
        let err = deliver_command("true", &env, &mut &b""[..], &o).unwrap_err();
        assert!(!err.is_permanent());
        assert!(err.reason().contains("missing"), "{err}");
    }

    #[test]
    fn read_error_kills_and_defers() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("bad queue file"))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope {
            sender: "",
            arrival: SystemTime::now(),
            prepend: &[],
        };
        let start = Instant::now();
        let err = deliver_command("cat > got", &env, &mut Failing, &opts(dir.path())).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(err.dsn(), "4.3.0");
        assert_eq!(err.reason(), "error reading message: bad queue file");
    }

    #[test]
    fn output_helpers() {
        assert_eq!(printable(b"a\tb\nc\x07d\n\n"), "a b c_d");
        assert_eq!(
            dsn_from_output("5.1.1 no such user"),
            Some(("5.1.1", "no such user"))
        );
        assert_eq!(dsn_from_output("4.9.99 odd"), Some(("4.0.0", "odd")));
        assert_eq!(dsn_from_output("2.0.0 fine"), None);
        assert_eq!(dsn_from_output("5.1 short"), None);
        assert_eq!(dsn_from_output("5.1.1"), None);
        assert_eq!(dsn_from_output("hello world"), None);
    }
}
