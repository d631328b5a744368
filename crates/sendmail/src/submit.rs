//! Submission (`sendmail` in delivery mode): the envelope from the command line and the
//! user's identity, the content from standard input, streamed as queue-file records to
//! `postdrop`, which alone may write into `maildrop/`.
//!
//! The record stream is what a maildrop file holds minus the size record: `T` (postdrop
//! replaces it), `F` full name, `S` sender, `A rewrite_context=local|remote`,
//! `A extract_recipients=1` with `-t` (postdrop turns it into the size record's
//! `FLAG_EXTRACT_RECIPIENTS`), `i` envid, `<` ret, per recipient `n` notify + `R` address,
//! then `M`, the content as `N` blocks, `X`, and `E` last. sendmail exits 0 only when
//! postdrop exited 0, which it does only after the file and its directory are fsynced.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use posthorn_queue::file::{Envelope, Recipient};
use posthorn_queue::record::{BLOCK_SIZE, RecordWriter, kind};

use crate::address::{full_name, parse_address_list, parse_sender};
use crate::args::Options;
use crate::exit;
use crate::input::{CopyError, copy_message};

/// A submission that failed: the sysexits code and the text after `sendmail: fatal: `.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit status.
    pub code: i32,
    /// What went wrong.
    pub message: String,
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Who submits: the real user's ID, login name and password-file full name.
#[derive(Clone, Debug)]
pub struct Submitter {
    /// The real user ID.
    pub uid: u32,
    /// The login name, if the password database knows the user.
    pub login: Option<String>,
    /// The GECOS field.
    pub gecos: String,
}

impl Submitter {
    /// The user running this process (real UID), looked up in the password database.
    pub fn current() -> Submitter {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid).ok().flatten();
        Submitter {
            uid: uid.as_raw(),
            login: user.as_ref().map(|u| u.name.clone()),
            gecos: user
                .map(|u| u.gecos.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// Builds the envelope for `opts`; `warn` receives warnings (a malformed `-f` value).
pub fn envelope(
    opts: &Options,
    who: &Submitter,
    env_name: Option<&str>,
    warn: &mut dyn FnMut(String),
) -> Result<Envelope, Failure> {
    let mut recipients = Vec::new();
    for op in &opts.operands {
        let Some(text) = op.to_str() else {
            return Err(fail(
                exit::USAGE,
                format!("recipient {op:?} is not valid UTF-8"),
            ));
        };
        for address in parse_address_list(text) {
            recipients.push(Recipient {
                address,
                notify: opts.notify.clone(),
                ..Default::default()
            });
        }
    }
    if recipients.is_empty() && !opts.extract_recipients {
        return Err(fail(
            exit::USAGE,
            "Recipient addresses must be specified on the command line or via the -t option",
        ));
    }
    let sender = match &opts.sender {
        Some(v) => {
            let (s, w) = parse_sender(v);
            if let Some(w) = w {
                warn(w);
            }
            s
        }
        None => match &who.login {
            Some(l) => l.clone(),
            None => {
                return Err(fail(
                    exit::OSERR,
                    format!("no login name found for user ID {}", who.uid),
                ));
            }
        },
    };
    if let Some(bad) = recipients
        .iter()
        .map(|r| &r.address)
        .chain([&sender])
        .find(|a| a.chars().any(char::is_control))
    {
        return Err(fail(
            exit::USAGE,
            format!("address {bad:?} contains control characters"),
        ));
    }
    let full = match &opts.full_name {
        Some(f) => Some(f.clone()),
        None => full_name(env_name, &who.gecos, who.login.as_deref().unwrap_or("")),
    }
    .map(|f| {
        f.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
    })
    .filter(|f| !f.is_empty());
    let mut attrs = vec![(
        "rewrite_context".to_string(),
        opts.rewrite_context.to_string(),
    )];
    if opts.extract_recipients {
        attrs.push(("extract_recipients".into(), "1".into()));
    }
    Ok(Envelope {
        full_name: full,
        sender,
        attrs,
        envid: opts.envid.clone(),
        ret: opts.ret.clone(),
        recipients,
        ..Default::default()
    })
}

/// The postdrop program: `command_directory/postdrop`, else the one next to this program.
pub fn postdrop_program(command_directory: &Path) -> PathBuf {
    let p = command_directory.join("postdrop");
    if p.is_file() {
        return p;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("postdrop")))
        .filter(|q| q.is_file())
        .unwrap_or(p)
}

/// Runs `postdrop` (with `-c config_dir` when the user chose a configuration directory),
/// streams the envelope and the message from `input` to it, and waits for its verdict.
pub fn submit<R: BufRead>(
    env: &Envelope,
    input: &mut R,
    dot_ends_input: bool,
    postdrop: &Path,
    config_dir: Option<&Path>,
    verbose: bool,
    who: &Submitter,
) -> Result<Option<String>, Failure> {
    run_postdrop(env, postdrop, config_dir, verbose, who, &mut |mut out| {
        copy_message(input, &mut out, dot_ends_input).map(|_| ())
    })
}

/// As [`submit`], with content that is already in stored form (LF line endings, no dot
/// handling, no `From ` lines to drop): the messages of a `sendmail -bs` session.
pub fn submit_stored(
    env: &Envelope,
    content: &[u8],
    postdrop: &Path,
    config_dir: Option<&Path>,
    verbose: bool,
    who: &Submitter,
) -> Result<Option<String>, Failure> {
    run_postdrop(env, postdrop, config_dir, verbose, who, &mut |out| {
        out.write_all(content).map_err(CopyError::Write)
    })
}

/// Writes the message content into the `N` records.
type ContentFn<'a> = dyn FnMut(&mut dyn Write) -> Result<(), CopyError> + 'a;

fn run_postdrop(
    env: &Envelope,
    postdrop: &Path,
    config_dir: Option<&Path>,
    verbose: bool,
    who: &Submitter,
    content: &mut ContentFn<'_>,
) -> Result<Option<String>, Failure> {
    let tag = format!("{}({})", env.sender, who.uid);
    let mut cmd = Command::new(postdrop);
    cmd.arg("-r");
    if let Some(dir) = config_dir {
        cmd.arg("-c").arg(dir);
    }
    if verbose {
        cmd.arg("-v");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| {
        fail(
            exit::UNAVAILABLE,
            format!("{tag}: unable to execute {}: {e}", postdrop.display()),
        )
    })?;
    let Some(pipe) = child.stdin.take() else {
        // Invariant: stdin was configured as piped just above.
        posthorn_log::panic_msg("submit: postdrop child has no stdin pipe");
    };
    let streamed = stream(pipe, env, content);
    // postdrop -r reports `queue_id=ID` once the file is committed.
    let mut reported = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.by_ref().take(4096).read_to_string(&mut reported);
    }
    let id = reported
        .lines()
        .find_map(|l| l.strip_prefix("queue_id="))
        .map(str::to_string);
    let status = child.wait().map_err(|e| {
        fail(
            exit::OSERR,
            format!("{tag}: wait for {}: {e}", postdrop.display()),
        )
    })?;
    verdict(&tag, postdrop, streamed, status).map(|()| id)
}

fn verdict(
    tag: &str,
    postdrop: &Path,
    streamed: Result<(), CopyError>,
    status: ExitStatus,
) -> Result<(), Failure> {
    use std::os::unix::process::ExitStatusExt;
    if let Err(CopyError::Read(e)) = &streamed {
        return Err(fail(
            exit::DATAERR,
            format!("{tag}: error reading input: {e}"),
        ));
    }
    if !status.success() {
        return Err(match (status.code(), status.signal()) {
            (Some(c), _) => fail(
                if (64..=78).contains(&c) {
                    c
                } else {
                    exit::TEMPFAIL
                },
                format!(
                    "{tag}: {} exited with status {c}; message not queued",
                    postdrop.display()
                ),
            ),
            (None, sig) => fail(
                exit::TEMPFAIL,
                format!(
                    "{tag}: {} was killed by signal {}; message not queued",
                    postdrop.display(),
                    sig.unwrap_or(0)
                ),
            ),
        });
    }
    match streamed {
        Err(e) => Err(fail(exit::TEMPFAIL, format!("{tag}: {e}"))),
        Ok(()) => Ok(()),
    }
}

/// Writes the whole record stream into postdrop's stdin and closes it.
fn stream<W: Write>(pipe: W, env: &Envelope, content: &mut ContentFn<'_>) -> Result<(), CopyError> {
    let mut w = RecordWriter::new(BufWriter::with_capacity(BLOCK_SIZE, pipe), 0);
    env.write_records(&mut w).map_err(CopyError::Write)?;
    w.put(kind::MESG, b"").map_err(CopyError::Write)?;
    {
        let mut blocks = BufWriter::with_capacity(BLOCK_SIZE, Blocks(&mut w));
        content(&mut blocks)?;
        blocks.flush().map_err(CopyError::Write)?;
    }
    w.put(kind::XTRA, b"").map_err(CopyError::Write)?;
    w.put(kind::END, b"").map_err(CopyError::Write)?;
    w.into_inner()
        .into_inner()
        .map_err(|e| CopyError::Write(e.into_error()))?;
    Ok(())
}

/// Turns each write into content records (`N`, at most BLOCK_SIZE bytes each).
struct Blocks<'a, W: Write>(&'a mut RecordWriter<W>);

impl<W: Write> Write for Blocks<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.put_content(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Mode, parse};
    use posthorn_queue::record::RecordReader;

    fn opts(args: &[&str]) -> Options {
        parse(
            Mode::Sendmail,
            std::iter::once("sendmail").chain(args.iter().copied()),
        )
        .unwrap()
    }

    fn alice() -> Submitter {
        Submitter {
            uid: 1000,
            login: Some("alice".into()),
            gecos: "Alice Example,,,".into(),
        }
    }

    #[test]
    fn envelope_from_options() {
        let mut warnings = Vec::new();
        let o = opts(&[
            "-N",
            "success",
            "-R",
            "hdrs",
            "-V",
            "id1",
            "-t",
            "Bob <bob@x>, carol",
            "dave@y",
        ]);
        let e = envelope(&o, &alice(), None, &mut |w| warnings.push(w)).unwrap();
        assert_eq!(e.sender, "alice");
        assert_eq!(e.full_name.as_deref(), Some("Alice Example"));
        let rcpts: Vec<_> = e
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), r.notify.as_deref()))
            .collect();
        assert_eq!(
            rcpts,
            [
                ("bob@x", Some("SUCCESS")),
                ("carol", Some("SUCCESS")),
                ("dave@y", Some("SUCCESS"))
            ]
        );
        assert_eq!(e.attr("rewrite_context"), Some("local"));
        assert_eq!(e.attr("extract_recipients"), Some("1"));
        assert_eq!(
            (e.envid.as_deref(), e.ret.as_deref()),
            (Some("id1"), Some("HDRS"))
        );
        assert!(warnings.is_empty());

        let o = opts(&["-f", "<>", "-F", "Robot", "x"]);
        let e = envelope(&o, &alice(), Some("Ignored"), &mut |_| {}).unwrap();
        assert_eq!(
            (e.sender.as_str(), e.full_name.as_deref()),
            ("", Some("Robot"))
        );
        assert_eq!(e.attr("extract_recipients"), None);
        let e = envelope(&opts(&["x"]), &alice(), Some("From Env"), &mut |_| {}).unwrap();
        assert_eq!(e.full_name.as_deref(), Some("From Env"));
    }

    #[test]
    fn envelope_errors() {
        let e = envelope(&opts(&[]), &alice(), None, &mut |_| {}).unwrap_err();
        assert_eq!(e.code, 64);
        assert_eq!(
            e.message,
            "Recipient addresses must be specified on the command line or via the -t option"
        );
        assert!(envelope(&opts(&["-t"]), &alice(), None, &mut |_| {}).is_ok());
        let nobody = Submitter {
            uid: 4242,
            login: None,
            gecos: String::new(),
        };
        let e = envelope(&opts(&["x"]), &nobody, None, &mut |_| {}).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (71, "no login name found for user ID 4242")
        );
        assert!(envelope(&opts(&["-f", "a@x", "x"]), &nobody, None, &mut |_| {}).is_ok());
    }

    #[test]
    fn stream_layout() {
        let e = envelope(&opts(&["bob@x"]), &alice(), None, &mut |_| {}).unwrap();
        let mut out = Vec::new();
        let mut input: &[u8] = b"Subject: t\r\n\r\nhi\r\n.\r\nignored\r\n";
        stream(&mut out, &e, &mut |mut o| {
            copy_message(&mut input, &mut o, true).map(|_| ())
        })
        .unwrap();
        let mut r = RecordReader::new(&out[..], 0);
        let mut kinds = String::new();
        let mut content = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            kinds.push(rec.kind as char);
            if rec.kind == kind::NORM {
                content.extend(rec.payload);
            }
        }
        assert_eq!(kinds, "TFSARMNXE");
        assert_eq!(content, b"Subject: t\n\nhi\n");
    }
}
