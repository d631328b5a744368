//! The command line of `sendmail`, `mailq` and `newaliases`: Sendmail's getopt-style flags,
//! parsed with lexopt the way Postfix's getopt string `A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx`
//! (with glibc's `+`: stop at the first operand) reads them.
//!
//! Parsing never touches the system: it turns argv into [`Options`] or an [`ArgError`]
//! carrying the sysexits code and the text for `sendmail: fatal: ...`. Problems Postfix only
//! warns about (a bad `-N` or `-V` value) are collected in [`Options::warnings`] and logged
//! once logging is set up.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::exit;

/// Which program the user ran; it picks the default [`Action`] (as argv\[0\] does in Postfix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `sendmail`: submit a message unless a flag says otherwise.
    Sendmail,
    /// `mailq`: list the queue.
    Mailq,
    /// `newaliases`: rebuild the alias databases.
    Newaliases,
}

impl Mode {
    /// The program name used in diagnostics (`mailq: fatal: ...`) and as the log process name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sendmail => "sendmail",
            Mode::Mailq => "mailq",
            Mode::Newaliases => "newaliases",
        }
    }

    /// The mode named by argv\[0\]'s file name (`mailq`, `newaliases`), else `default`, so that
    /// a `mailq -> sendmail` symlink behaves as Postfix's does.
    pub fn from_argv0(argv0: Option<&OsStr>, default: Mode) -> Mode {
        let base = argv0
            .map(std::path::Path::new)
            .and_then(std::path::Path::file_name)
            .and_then(OsStr::to_str);
        match base {
            Some("mailq") => Mode::Mailq,
            Some("newaliases") => Mode::Newaliases,
            Some("sendmail") => Mode::Sendmail,
            _ => default,
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read a message from stdin and submit it through postdrop (`-bm`, the default).
    Enqueue,
    /// List the queue (`-bp`, `mailq`).
    Mailq,
    /// Rebuild the alias databases (`-bi`, `-I`, `newaliases`).
    Newaliases,
    /// Ask the queue manager to retry all queued mail now (`-q`).
    Flush,
    /// A stand-alone SMTP session on stdin/stdout, submitting each message (`-bs`).
    StandAlone,
    /// Do nothing and exit 0 (`-bh`, `-bH`, `-q`*interval*), as Postfix does.
    Ignore,
    /// A feature posthorn does not have yet; the text names it (exit 69, EX_UNAVAILABLE).
    NotImplemented(String),
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// What to do.
    pub action: Action,
    /// `-C dir` (a `main.cf` path means its directory).
    pub config_dir: Option<PathBuf>,
    /// `-f` / `-r` as given (parsed into an address later).
    pub sender: Option<String>,
    /// `-F`.
    pub full_name: Option<String>,
    /// `-t`: the recipients are also taken from the message headers (by cleanup).
    pub extract_recipients: bool,
    /// A line with a single `.` ends the message (cleared by `-i` and `-oi`).
    pub dot_ends_input: bool,
    /// `-N`, normalised to the uppercase DSN NOTIFY list (`SUCCESS,DELAY`), or `NEVER`.
    pub notify: Option<String>,
    /// `-R`: `FULL` or `HDRS`.
    pub ret: Option<String>,
    /// `-V`: the DSN envelope ID.
    pub envid: Option<String>,
    /// `local`, or `remote` with `-G` (gateway submission).
    pub rewrite_context: &'static str,
    /// Number of `-v` flags that mean verbose logging (a single `-v` while submitting asks
    /// for a delivery report instead, see [`Options::delivery_report`]).
    pub verbose: u32,
    /// A single `-v` while submitting: Postfix mails a delivery report (not implemented yet).
    pub delivery_report: bool,
    /// `-oA`: the alias database(s) for newaliases.
    pub alias_database: Option<String>,
    /// The operands: recipients (each may hold a comma-separated address list).
    pub operands: Vec<OsString>,
    /// Problems that Postfix reports as warnings only.
    pub warnings: Vec<String>,
}

/// A command line that cannot be obeyed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ArgError {
    /// The sysexits code to exit with (64, or 69 for unimplemented features).
    pub code: i32,
    /// The text after `sendmail: fatal: `.
    pub message: String,
}

fn usage(message: impl Into<String>) -> ArgError {
    ArgError {
        code: exit::USAGE,
        message: message.into(),
    }
}

/// Options that take a value (attached, `-fbob`, or as the next argument, `-f bob`).
const WITH_VALUE: &str = "ABCFLNORVXbefhopr";

/// Parses argv (argv\[0\] included) for a program started as `mode`.
pub fn parse<I>(mode: Mode, args: I) -> Result<Options, ArgError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg::{Long, Short, Value};

    let mut o = Options {
        action: match mode {
            Mode::Sendmail => Action::Enqueue,
            Mode::Mailq => Action::Mailq,
            Mode::Newaliases => Action::Newaliases,
        },
        config_dir: None,
        sender: None,
        full_name: None,
        extract_recipients: false,
        dot_ends_input: true,
        notify: None,
        ret: None,
        envid: None,
        rewrite_context: "local",
        verbose: 0,
        delivery_report: false,
        alias_database: None,
        operands: Vec::new(),
        warnings: Vec::new(),
    };
    let prog = mode.name();
    let mut queue_interval = false;
    let mut site_flush: Option<&'static str> = None;
    let mut unsupported: Option<String> = None;
    let mut parser = lexopt::Parser::from_iter(args);
    loop {
        let arg = parser.next().map_err(|e| lexopt_error(prog, e))?;
        let Some(arg) = arg else { break };
        match arg {
            Short('q') => match parser.optional_value() {
                None => o.action = Action::Flush,
                Some(v) => {
                    let v = v.to_string_lossy();
                    match v.chars().next() {
                        Some(c) if c.is_ascii_digit() => queue_interval = true,
                        Some('R') if v.len() == 1 => return Err(usage("specify: -qRsitename")),
                        Some('I') if v.len() == 1 => return Err(usage("specify: -qIqueueid")),
                        Some('R') => site_flush = Some("-qR (flush mail for one site)"),
                        Some('I') => site_flush = Some("-qI (flush one message)"),
                        Some(c) => return Err(usage(format!("-q{c} is not implemented"))),
                        None => o.action = Action::Flush,
                    }
                }
            },
            Short(c) if WITH_VALUE.contains(c) => {
                let v = parser.value().map_err(|e| lexopt_error(prog, e))?;
                if let Some(u) = o.apply_value(c, v)? {
                    unsupported = Some(u);
                }
            }
            Short(c) => o.apply_flag(c, prog)?,
            Long(name) => {
                return Err(usage(format!(
                    "invalid option --{name}; usage: {prog} [options] [recipient ...]"
                )));
            }
            Value(v) => {
                // POSIX (and Postfix, which gives glibc's getopt a leading '+'): the first
                // operand ends the options; everything after it is an operand too.
                o.operands.push(v);
                o.operands
                    .extend(parser.raw_args().map_err(|e| lexopt_error(prog, e))?);
                break;
            }
        }
    }
    o.finish(queue_interval, site_flush, unsupported)?;
    Ok(o)
}

fn lexopt_error(prog: &str, e: lexopt::Error) -> ArgError {
    let text = match e {
        lexopt::Error::MissingValue { option: Some(opt) } => {
            format!("option requires an argument -- {opt}")
        }
        other => other.to_string(),
    };
    usage(format!("{text}; usage: {prog} [options] [recipient ...]"))
}

impl Options {
    fn apply_flag(&mut self, c: char, prog: &str) -> Result<(), ArgError> {
        match c {
            'G' => self.rewrite_context = "remote",
            'I' => self.action = Action::Newaliases,
            'i' => self.dot_ends_input = false,
            't' => self.extract_recipients = true,
            'v' => self.verbose += 1,
            // -U initial submission, -c, -x, -m (me too), -n (no aliasing): ignored.
            'U' | 'c' | 'x' | 'm' | 'n' => {}
            other => {
                return Err(usage(format!(
                    "invalid option -- '{other}'; usage: {prog} [options] [recipient ...]"
                )));
            }
        }
        Ok(())
    }

    /// Applies an option with a value; returns the name of a requested feature that is not
    /// implemented (the last such request wins, as the last mode flag does).
    fn apply_value(&mut self, c: char, v: OsString) -> Result<Option<String>, ArgError> {
        let text = || v.to_string_lossy().into_owned();
        match c {
            'B' => {
                let t = text();
                if t != "7BIT" && t != "8BITMIME" {
                    return Err(usage("-B option needs 8BITMIME or 7BIT"));
                }
            }
            'C' => {
                let p = PathBuf::from(&v);
                let dir = if p.file_name() == Some(OsStr::new("main.cf")) {
                    p.parent()
                        .map(PathBuf::from)
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or_else(|| ".".into())
                } else {
                    p
                };
                self.config_dir = Some(dir);
            }
            'F' => self.full_name = Some(text()),
            'N' => match parse_notify(&text()) {
                Some(n) => self.notify = Some(n),
                None => self.warnings.push("bad -N option value -- ignored".into()),
            },
            'R' => match text().to_ascii_lowercase().as_str() {
                "full" => self.ret = Some("FULL".into()),
                "hdrs" => self.ret = Some("HDRS".into()),
                _ => return Err(usage("-R option needs 'full' or 'hdrs'")),
            },
            'V' => {
                let t = text();
                if t.len() > 100 {
                    self.warnings
                        .push("too long -V option value -- ignored".into());
                } else if !t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    self.warnings
                        .push("bad syntax in -V option value -- ignored".into());
                } else {
                    self.envid = Some(t);
                }
            }
            // -X logfile (Sendmail's traffic log) is ignored below; -XV asks for VERP.
            'X' if v.to_string_lossy().starts_with('V') => return Ok(Some("-XV (VERP)".into())),
            'b' => {
                let t = text();
                match t.chars().next() {
                    Some('d' | 'l') => {
                        self.action = Action::NotImplemented(format!("-b{} (daemon) mode", &t[..1]))
                    }
                    Some('h' | 'H') => self.action = Action::Ignore,
                    Some('i') => self.action = Action::Newaliases,
                    Some('m') => self.action = Action::Enqueue,
                    Some('p') => self.action = Action::Mailq,
                    Some('s') => self.action = Action::StandAlone,
                    Some('v') => self.action = Action::NotImplemented("-bv mode".into()),
                    Some(other) => return Err(usage(format!("unsupported: -b{other}"))),
                    None => return Err(usage("unsupported: -b")),
                }
            }
            'f' | 'r' => match v.into_string() {
                Ok(s) => self.sender = Some(s),
                Err(_) => return Err(usage(format!("-{c} option value is not valid UTF-8"))),
            },
            'o' => {
                let t = text();
                match t.chars().next() {
                    Some('A') => {
                        if t.len() == 1 {
                            return Err(usage("-oA requires pathname"));
                        }
                        self.alias_database = Some(t[1..].to_string());
                    }
                    Some('i') => self.dot_ends_input = false,
                    // -o7, -o8, -om, -odq, -oQ..., any other Sendmail option: ignored.
                    _ => {}
                }
            }
            // -A (Am/Ac), -L label, -O option=value, -X logfile, -e mode, -h hops, -p protocol:
            // ignored.
            _ => {}
        }
        Ok(None)
    }

    /// Checks combinations, as Postfix does after its getopt loop.
    fn finish(
        &mut self,
        queue_interval: bool,
        site_flush: Option<&str>,
        unsupported: Option<String>,
    ) -> Result<(), ArgError> {
        if self.extract_recipients && self.action != Action::Enqueue {
            return Err(usage("-t can be used only in delivery mode"));
        }
        if let Some(what) = site_flush {
            if self.action != Action::Enqueue {
                let flag = &what[..3];
                return Err(usage(format!("{flag} can be used only in delivery mode")));
            }
            if !self.operands.is_empty() {
                return Err(usage("flush site requires no recipient"));
            }
            self.action = Action::NotImplemented(what.to_string());
        }
        // A single -v asks for a delivery report when submitting; more mean verbose logging.
        if self.verbose == 1 && self.action == Action::Enqueue {
            self.verbose = 0;
            self.delivery_report = true;
        }
        // "-q30m": the interval of a queue-runner daemon; Postfix exits at once.
        if queue_interval
            && !matches!(&self.action, Action::NotImplemented(m) if m.starts_with("-bd") || m.starts_with("-bl"))
        {
            self.action = Action::Ignore;
        }
        if let Some(u) = unsupported
            && self.action == Action::Enqueue
        {
            self.action = Action::NotImplemented(u);
        }
        if !self.operands.is_empty() {
            let refuse = match &self.action {
                Action::Mailq => Some("display queue mode requires no recipient"),
                Action::Flush => Some("flush queue mode requires no recipient"),
                Action::Newaliases => Some("alias initialization mode requires no recipient"),
                Action::NotImplemented(m) if m.starts_with("-bd") || m.starts_with("-bl") => {
                    Some("daemon mode requires no recipient")
                }
                Action::StandAlone => Some("stand-alone mode requires no recipient"),
                _ => None,
            };
            if let Some(msg) = refuse {
                return Err(usage(msg));
            }
        }
        Ok(())
    }
}

/// Parses a `-N` value (`never`, or a list of `success`, `delay`, `failure`; commas or
/// spaces between, any case) into the DSN NOTIFY text stored per recipient; `None` when it
/// is invalid (empty, an unknown word, or `never` with another word).
pub fn parse_notify(value: &str) -> Option<String> {
    let (mut never, mut success, mut failure, mut delay) = (false, false, false, false);
    for word in value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        match word.to_ascii_lowercase().as_str() {
            "never" => never = true,
            "success" => success = true,
            "failure" => failure = true,
            "delay" => delay = true,
            _ => return None,
        }
    }
    let any = success || failure || delay;
    if never {
        return if any { None } else { Some("NEVER".into()) };
    }
    if !any {
        return None;
    }
    let words: Vec<&str> = [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")]
        .into_iter()
        .filter_map(|(on, w)| on.then_some(w))
        .collect();
    Some(words.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Options {
        try_p(args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
    }

    fn try_p(args: &[&str]) -> Result<Options, ArgError> {
        parse(
            Mode::Sendmail,
            std::iter::once("sendmail").chain(args.iter().copied()),
        )
    }

    fn ops(o: &Options) -> Vec<&str> {
        o.operands.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn defaults_and_recipients() {
        let o = p(&["bob@example.com", "carol"]);
        assert_eq!(o.action, Action::Enqueue);
        assert!(o.dot_ends_input);
        assert!(!o.extract_recipients);
        assert_eq!(o.rewrite_context, "local");
        assert_eq!(ops(&o), ["bob@example.com", "carol"]);
    }

    #[test]
    fn sender_forms() {
        assert_eq!(
            p(&["-f", "alice@x", "bob"]).sender.as_deref(),
            Some("alice@x")
        );
        assert_eq!(p(&["-falice@x", "bob"]).sender.as_deref(), Some("alice@x"));
        assert_eq!(
            p(&["-r", "alice@x", "bob"]).sender.as_deref(),
            Some("alice@x")
        );
        assert_eq!(p(&["-ralice@x", "bob"]).sender.as_deref(), Some("alice@x"));
        assert_eq!(p(&["-f", "", "bob"]).sender.as_deref(), Some(""));
        assert_eq!(p(&["-f", "<>", "bob"]).sender.as_deref(), Some("<>"));
        // A value that looks like an option is still the value.
        assert_eq!(
            p(&["-f", "-weird", "bob"]).sender.as_deref(),
            Some("-weird")
        );
        assert_eq!(try_p(&["bob", "-f"]).unwrap().sender, None);
        let e = try_p(&["-f"]).unwrap_err();
        assert_eq!(e.code, 64);
        assert!(e.message.contains("requires an argument"), "{}", e.message);
    }

    #[test]
    fn clusters() {
        let o = p(&["-ti"]);
        assert!(o.extract_recipients && !o.dot_ends_input);
        let o = p(&["-tfalice", "bob"]);
        assert!(o.extract_recipients);
        assert_eq!(o.sender.as_deref(), Some("alice"));
        assert_eq!(ops(&o), ["bob"]);
        let o = p(&["-itF", "Alice Example", "x"]);
        assert_eq!(o.full_name.as_deref(), Some("Alice Example"));
        assert!(o.extract_recipients && !o.dot_ends_input);
    }

    #[test]
    fn o_options() {
        assert!(!p(&["-oi", "x"]).dot_ends_input);
        assert!(!p(&["-o", "i", "x"]).dot_ends_input);
        assert!(!p(&["-i", "x"]).dot_ends_input);
        let o = p(&[
            "-odq",
            "-oem",
            "-o7",
            "-o8",
            "-om",
            "-oQ/var/spool",
            "-oZzz",
            "x",
        ]);
        assert!(o.dot_ends_input);
        assert_eq!(o.action, Action::Enqueue);
        let o = parse(Mode::Newaliases, ["newaliases", "-oA/etc/other/aliases"]).unwrap();
        assert_eq!(o.alias_database.as_deref(), Some("/etc/other/aliases"));
        assert_eq!(
            try_p(&["-oA"]).unwrap_err().message,
            "-oA requires pathname"
        );
    }

    #[test]
    fn end_of_options_and_operands_stop_parsing() {
        let o = p(&["--", "-dashuser"]);
        assert_eq!(ops(&o), ["-dashuser"]);
        // As in Postfix (getopt with '+'): after the first recipient, -t is a recipient.
        let o = p(&["bob", "-t"]);
        assert!(!o.extract_recipients);
        assert_eq!(ops(&o), ["bob", "-t"]);
        let o = p(&["-t", "bob", "--", "-i"]);
        assert!(o.extract_recipients && o.dot_ends_input);
        assert_eq!(ops(&o), ["bob", "--", "-i"]);
    }

    #[test]
    fn dsn_options() {
        let o = p(&["-N", "success,delay", "-R", "hdrs", "-V", "env-1", "x"]);
        assert_eq!(o.notify.as_deref(), Some("SUCCESS,DELAY"));
        assert_eq!(o.ret.as_deref(), Some("HDRS"));
        assert_eq!(o.envid.as_deref(), Some("env-1"));
        assert_eq!(p(&["-Nnever", "x"]).notify.as_deref(), Some("NEVER"));
        assert_eq!(
            p(&["-N", "Failure, DELAY,success", "x"]).notify.as_deref(),
            Some("SUCCESS,FAILURE,DELAY")
        );
        assert_eq!(p(&["-Rfull", "x"]).ret.as_deref(), Some("FULL"));
        let o = p(&["-N", "never,success", "x"]);
        assert_eq!(o.notify, None);
        assert_eq!(o.warnings, ["bad -N option value -- ignored"]);
        assert_eq!(p(&["-N", "sometimes", "x"]).notify, None);
        assert_eq!(try_p(&["-R", "most", "x"]).unwrap_err().code, 64);
        let long = "e".repeat(101);
        let o = p(&["-V", &long, "x"]);
        assert_eq!((o.envid, o.warnings.len()), (None, 1));
        let o = p(&["-V", "a\tb", "x"]);
        assert_eq!((o.envid, o.warnings.len()), (None, 1));
    }

    #[test]
    fn modes() {
        assert_eq!(p(&["-bp"]).action, Action::Mailq);
        assert_eq!(p(&["-bi"]).action, Action::Newaliases);
        assert_eq!(p(&["-I"]).action, Action::Newaliases);
        assert_eq!(p(&["-bp", "-bm", "x"]).action, Action::Enqueue);
        assert_eq!(p(&["-bh"]).action, Action::Ignore);
        assert_eq!(p(&["-bH"]).action, Action::Ignore);
        assert_eq!(p(&["-bs"]).action, Action::StandAlone);
        assert_eq!(
            p(&["-bd"]).action,
            Action::NotImplemented("-bd (daemon) mode".into())
        );
        assert_eq!(
            p(&["-bv", "x"]).action,
            Action::NotImplemented("-bv mode".into())
        );
        assert_eq!(try_p(&["-bz"]).unwrap_err().message, "unsupported: -bz");
        let mailq = parse(Mode::Mailq, ["mailq"]).unwrap();
        assert_eq!(mailq.action, Action::Mailq);
        let e = parse(Mode::Mailq, ["mailq", "bob"]).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (64, "display queue mode requires no recipient")
        );
        assert_eq!(
            try_p(&["-bi", "bob"]).unwrap_err().message,
            "alias initialization mode requires no recipient"
        );
        assert_eq!(
            try_p(&["-bs", "bob"]).unwrap_err().message,
            "stand-alone mode requires no recipient"
        );
        assert_eq!(
            try_p(&["-t", "-bp"]).unwrap_err().message,
            "-t can be used only in delivery mode"
        );
        assert_eq!(
            Mode::from_argv0(Some(OsStr::new("/usr/bin/mailq")), Mode::Sendmail),
            Mode::Mailq
        );
        assert_eq!(
            Mode::from_argv0(Some(OsStr::new("newaliases")), Mode::Sendmail),
            Mode::Newaliases
        );
        assert_eq!(
            Mode::from_argv0(Some(OsStr::new("x")), Mode::Mailq),
            Mode::Mailq
        );
    }

    #[test]
    fn queue_flags() {
        assert_eq!(p(&["-q"]).action, Action::Flush);
        assert_eq!(p(&["-q30m"]).action, Action::Ignore);
        assert_eq!(p(&["-q1h", "-bp"]).action, Action::Ignore);
        assert_eq!(
            try_p(&["-q", "bob"]).unwrap_err().message,
            "flush queue mode requires no recipient"
        );
        assert_eq!(
            p(&["-qRexample.com"]).action,
            Action::NotImplemented("-qR (flush mail for one site)".into())
        );
        assert_eq!(
            p(&["-qIABC"]).action,
            Action::NotImplemented("-qI (flush one message)".into())
        );
        assert_eq!(try_p(&["-qR"]).unwrap_err().message, "specify: -qRsitename");
        assert_eq!(
            try_p(&["-qS"]).unwrap_err().message,
            "-qS is not implemented"
        );
        assert_eq!(
            try_p(&["-bp", "-qRx"]).unwrap_err().message,
            "-qR can be used only in delivery mode"
        );
    }

    #[test]
    fn ignored_and_special_flags() {
        let o = p(&[
            "-Am", "-Ac", "-B", "8BITMIME", "-h", "20", "-L", "label", "-m", "-n", "-U", "-X",
            "/tmp/log", "-O", "x=y", "-e", "m", "-p", "smtp", "-c", "-x", "bob",
        ]);
        assert_eq!(o.action, Action::Enqueue);
        assert_eq!(ops(&o), ["bob"]);
        assert_eq!(
            try_p(&["-B", "binary", "x"]).unwrap_err().message,
            "-B option needs 8BITMIME or 7BIT"
        );
        assert_eq!(
            p(&["-XV", "x"]).action,
            Action::NotImplemented("-XV (VERP)".into())
        );
        assert_eq!(p(&["-G", "x"]).rewrite_context, "remote");
        let o = p(&["-C", "/tmp/inst", "x"]);
        assert_eq!(o.config_dir, Some(PathBuf::from("/tmp/inst")));
        let o = p(&["-C/tmp/inst/main.cf", "x"]);
        assert_eq!(o.config_dir, Some(PathBuf::from("/tmp/inst")));
        let e = try_p(&["-z", "x"]).unwrap_err();
        assert_eq!(e.code, 64);
        assert!(
            e.message.starts_with("invalid option -- 'z'"),
            "{}",
            e.message
        );
        assert_eq!(try_p(&["--help"]).unwrap_err().code, 64);
    }

    #[test]
    fn verbose_flags() {
        let o = p(&["-v", "x"]);
        assert!(o.delivery_report);
        assert_eq!(o.verbose, 0);
        let o = p(&["-vv", "x"]);
        assert!(!o.delivery_report);
        assert_eq!(o.verbose, 2);
        assert_eq!(p(&["-v", "-bp"]).verbose, 1);
    }

    #[test]
    fn non_utf8_arguments() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'a', 0xff]);
        let args = vec![
            OsString::from("sendmail"),
            OsString::from("-F"),
            bad.clone(),
            bad.clone(),
        ];
        let o = parse(Mode::Sendmail, args).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("a\u{fffd}"));
        assert_eq!(o.operands, vec![bad.clone()]);
        let args = vec![
            OsString::from("sendmail"),
            OsString::from("-f"),
            bad,
            OsString::from("x"),
        ];
        assert_eq!(parse(Mode::Sendmail, args).unwrap_err().code, 64);
    }
}
