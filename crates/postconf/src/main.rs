//! postconf - posthorn configuration utility
//!
//! # Synopsis
//! Managing main.cf:
//! - `postconf [-dfhHnqx] [-c config_dir] [-C class,...] [-o name=value] [name ...]`
//! - `postconf [-e] [-c config_dir] name=value ...`
//! - `postconf -X [-c config_dir] name ...`
//! - `postconf -# [-c config_dir] name ...`
//!
//! Managing master.cf:
//! - `postconf -M [-fqx] [-c config_dir] [service[/type] ...]`
//! - `postconf -M [-e] [-c config_dir] service/type="entry" ...`
//! - `postconf -MX [-c config_dir] service/type ...`
//! - `postconf -M# [-c config_dir] service/type ...`
//!
//! Other information: `postconf -m` (lookup table types), `postconf -l` (mailbox locks).
//!
//! # Description
//! Shows main.cf parameters and master.cf entries in Postfix's formats, and edits both files
//! in place. Parameters, their defaults and their kinds come from the one parameter table of
//! posthorn-config, so what postconf shows is what the daemons use.
//!
//! By default (`-p`) postconf prints every parameter as `name = value`, sorted by name: the
//! main.cf setting as written, else the default (computed defaults such as myhostname or
//! mail_version computed). Besides the table's parameters these are the per-transport
//! parameters of master.cf services that run a delivery agent (`relay_destination_recipient_limit`
//! for a `relay ... smtp` service) and user-defined parameters (set in main.cf or master.cf
//! and used as `$name` in a value). With names as arguments it prints just those; an unknown
//! name gets `postconf: warning: NAME: unknown parameter` and postconf carries on (exit 0).
//! After the output, main.cf entries and master.cf `-o` settings that no program uses are
//! reported as `postconf: warning: FILE: unused parameter: name=value` (not with `-d`, `-q`).
//!
//! Edits (`-e`, `-X`, `-#`, `-Me`, `-MX`, `-M#`) keep every comment, blank line and the order
//! of the file. `-e name=value` replaces the logical line of `name` (with its continuation
//! lines) where it stands, and appends settings the file lacks at the end, sorted by name.
//! `-X` removes the logical line, `-#` puts `#` in front of each of its lines. The new file is
//! written to `FILE.tmp` (locked, so concurrent editors take turns), fsync'd and renamed over
//! the old one; an edit that changes nothing leaves the file untouched. After `-e`, values
//! that do not parse as their parameter's kind, and names no program uses, are reported as
//! warnings (the edit is made anyway, as in Postfix).
//!
//! # Inputs
//! The command line, `MAIL_CONFIG`, `main.cf` and `master.cf` of the configuration directory
//! (neither is needed for `-d`, `-m`, `-l`), and the parameter table of posthorn-config.
//!
//! # Outputs
//! Parameter lines or master.cf entries on standard output; diagnostics on standard error;
//! with the edit options, a rewritten `main.cf` or `master.cf`.
//!
//! # Options
//! - `-c config_dir`: the directory with main.cf and master.cf (else `MAIL_CONFIG`, else
//!   /etc/posthorn).
//! - `-C class,...`: list only parameters of these classes: `builtin`, `service`, `user`,
//!   `all` (default).
//! - `-d`: show built-in defaults instead of main.cf settings (main.cf is not read).
//! - `-e`: edit main.cf with `name=value` arguments (implied when the first argument contains
//!   `=`). With `-M`, replace or add whole master.cf entries given as `service/type=entry`:
//!   the first entry matching `service/type` (or the new entry's own name and type) is
//!   replaced in place, later matches are removed, and the entry is appended when none
//!   matches. The new entry is checked as posthorn's master would check it.
//! - `-f`: fold long lines (main.cf values, and `-M` entries: one `-o` per line).
//! - `-h`: show values without `name = `. `-H`: show names without ` = value`.
//! - `-l`: list the mailbox lock methods posthorn supports (`fcntl`, `dotlock`).
//! - `-m`: list the lookup table types posthorn supports (`hash`, `inline`, `static`).
//! - `-M`: show master.cf entries (all, or those matching `service` or `service/type`; `*`
//!   matches any name or type) in Postfix's column layout.
//! - `-n`: show only parameters that main.cf (or `-o`) sets.
//! - `-o name=value`: override a main.cf setting for this run.
//! - `-p`: show main.cf parameters (the default).
//! - `-q`: no warnings about unused parameters.
//! - `-v`: accepted for compatibility; postconf has nothing to log.
//! - `-x`: expand `$name` in values (main.cf values, and `-o` values with `-M`). Parameters
//!   that delivery agents expand themselves (forward_path, mailbox_command, ...) are shown as
//!   written.
//! - `-X`: remove main.cf settings (`-MX`: master.cf entries).
//! - `-#`: comment out main.cf settings (`-M#`: master.cf entries).
//!
//! Options end at the first argument that is not an option, as with Postfix. Combinations
//! that make no sense (`-d` with `-n`, `-f` with `-e`, `-M` with `-h`, ...) are refused.
//!
//! # Deviations from Postfix
//! - Not supported (exit 69): `-a`, `-A` (SASL), `-b`, `-t` (bounce templates), `-T` (TLS),
//!   `-F` and `-P` (master.cf fields and service parameters; use `-M`).
//! - Per-transport names (`X_destination_concurrency_limit`, ...) are known for every X, as
//!   posthorn-config knows them, not only for master.cf services; the full listing shows
//!   those of master.cf delivery services.
//! - `-e` writes `name =` for an empty value (Postfix: `name = ` with a trailing space), and
//!   leaves a setting that already has the requested value as written.
//! - `-Me` leaves an entry that already equals the new one as written; the first argument of
//!   a command that contains whitespace keeps its `{ }` in `-M` output (Postfix drops them).
//! - With `-d`, a missing master.cf is not reported.
//! - `-l` lists `fcntl` and `dotlock` only: posthorn does not lock mailboxes with flock.
//!
//! # Diagnostics
//! Problems go to standard error as one line: `postconf: warning: ...` (postconf carries on)
//! or `postconf: fatal: ...` (postconf stops; the message says what to do). Nothing is logged.
//!
//! # Exit status
//! 0 on success, also when some names were unknown. Otherwise a sysexits(3) code: 64
//! (EX_USAGE) for a bad command line, 69 (EX_UNAVAILABLE) for Postfix options posthorn does not
//! have, 70 (EX_SOFTWARE) when an edit would leave a file posthorn cannot read, 73
//! (EX_CANTCREAT) when the temporary file cannot be created, 74 (EX_IOERR) when writing or
//! renaming fails, 78 (EX_CONFIG) when main.cf or master.cf cannot be read or parsed.
//!
//! # Files
//! `$config_directory/main.cf`, `$config_directory/master.cf`, and `main.cf.tmp` /
//! `master.cf.tmp` next to them while editing (lock and temporary file).
//!
//! # Security
//! Runs with the privileges of its user; editing needs write access to the configuration
//! directory (usually root). postconf trusts the files it reads no more than to print them.
//!
//! # See also
//! posthorn.conf(5), posthorn(1), master(8), postmap(1).

mod args;
mod edit;
mod file;
mod lines;
mod master;
mod show;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use posthorn_config::{Config, ConfigError, MasterCf, effective_param};

use crate::args::{EditKind, Options, Target};
use crate::master::{Entry, Pattern};
use crate::show::Catalog;

/// sysexits(3): command line usage error.
pub(crate) const EX_USAGE: u8 = posthorn_sys::sysexits::EX_USAGE as u8;
/// sysexits(3): service unavailable (a Postfix option posthorn lacks).
pub(crate) const EX_UNAVAILABLE: u8 = posthorn_sys::sysexits::EX_UNAVAILABLE as u8;
/// sysexits(3): internal software error (an edit would break a file).
pub(crate) const EX_SOFTWARE: u8 = posthorn_sys::sysexits::EX_SOFTWARE as u8;
/// sysexits(3): cannot create (user) output file.
pub(crate) const EX_CANTCREAT: u8 = posthorn_sys::sysexits::EX_CANTCREAT as u8;
/// sysexits(3): input/output error.
pub(crate) const EX_IOERR: u8 = posthorn_sys::sysexits::EX_IOERR as u8;
/// sysexits(3): configuration error.
pub(crate) const EX_CONFIG: u8 = posthorn_sys::sysexits::EX_CONFIG as u8;

/// Why postconf stops: the exit code and the text after `postconf: fatal: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fatal {
    /// sysexits(3) code.
    pub code: u8,
    /// One line saying what is wrong and what to do; empty for a quiet exit.
    pub message: String,
}

impl Fatal {
    /// A fatal error with this code and message.
    pub fn new(code: u8, message: impl Into<String>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
        }
    }
}

/// An I/O error's text without Rust's " (os error N)" suffix, as Postfix's `%m` reads.
pub(crate) fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

fn main() -> ExitCode {
    let mut out = Output::new();
    let result = args::parse(std::env::args_os()).and_then(|options| run(&options, &mut out));
    let result = result.and_then(|()| out.flush());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            if fatal.message.is_empty() {
                return ExitCode::from(fatal.code);
            }
            let _ = out.flush();
            eprintln!("postconf: fatal: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}

/// Standard output, buffered, and warnings on standard error after what was printed so far.
struct Output {
    /// Buffered standard output.
    stdout: io::BufWriter<io::Stdout>,
}

impl Output {
    /// Wraps standard output.
    fn new() -> Output {
        Output {
            stdout: io::BufWriter::new(io::stdout()),
        }
    }

    /// Writes text (lines with their newlines).
    fn print(&mut self, text: &str) -> Result<(), Fatal> {
        self.stdout.write_all(text.as_bytes()).map_err(stdout_error)
    }

    /// Flushes standard output.
    fn flush(&mut self) -> Result<(), Fatal> {
        self.stdout.flush().map_err(stdout_error)
    }

    /// Prints `postconf: warning: ...` after flushing standard output, so that the two
    /// streams keep their order on a terminal, as Postfix does.
    fn warn(&mut self, message: &str) -> Result<(), Fatal> {
        self.flush()?;
        eprintln!("postconf: warning: {message}");
        Ok(())
    }
}

/// The error for a failed write to standard output. A reader that went away (`postconf |
/// head`) is no error: postconf stops quietly with status 0.
fn stdout_error(e: io::Error) -> Fatal {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Fatal::new(0, "")
    } else {
        Fatal::new(
            EX_IOERR,
            format!("write to standard output: {}", io_text(&e)),
        )
    }
}

/// Does what the command line asks.
fn run(o: &Options, out: &mut Output) -> Result<(), Fatal> {
    let dir = config_dir(o);
    match (o.target, o.edit) {
        (Target::Maps, _) => MAP_TYPES
            .iter()
            .try_for_each(|kind| out.print(&format!("{kind}\n"))),
        (Target::Locks, _) => out.print("fcntl\ndotlock\n"),
        (Target::Main, None) => show_main(o, &dir, out),
        (Target::Main, Some(kind)) => edit_main(o, kind, &dir, out),
        (Target::Master, None) => show_master(o, &dir, out),
        (Target::Master, Some(kind)) => edit_master(o, kind, &dir, out),
    }
}

/// The lookup table types of `postconf -m`, as posthorn-tables opens them (a unit test
/// checks that the two agree).
const MAP_TYPES: &[&str] = &["hash", "inline", "static"];

/// `-c`, else `MAIL_CONFIG`, else the built-in config_directory.
fn config_dir(o: &Options) -> PathBuf {
    posthorn_config::trust::command_config_dir(o.config_dir.clone())
}

/// Reads main.cf, or stops with a message that says what to do.
fn load_main(dir: &Path) -> Result<Config, Fatal> {
    Config::load(dir).map_err(|e| match e {
        ConfigError::Io { path, source } if source.kind() == io::ErrorKind::NotFound => {
            Fatal::new(
                EX_CONFIG,
                format!(
                    "open {}: {} (name the configuration directory with -c or MAIL_CONFIG; postconf -d shows the built-in defaults)",
                    path.display(),
                    io_text(&source)
                ),
            )
        }
        ConfigError::Io { path, source } => Fatal::new(
            EX_CONFIG,
            format!("open {}: {}", path.display(), io_text(&source)),
        ),
        other => Fatal::new(
            EX_CONFIG,
            format!("{other}; correct that line (postconf -X name removes a setting)"),
        ),
    })
}

/// Reads master.cf as text. `Ok(None)` when it does not exist.
fn read_master_text(path: &Path) -> Result<Option<String>, Fatal> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            Fatal::new(
                EX_CONFIG,
                format!("{}: text is not valid UTF-8", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Fatal::new(
            EX_CONFIG,
            format!("open {}: {}", path.display(), io_text(&e)),
        )),
    }
}

/// master.cf entries for the parameter name space of `postconf -p`: problems are warnings
/// (a missing master.cf is not even that with `-d`), as master.cf is not what was asked for.
fn master_entries_for_params(
    path: &Path,
    defaults: bool,
    out: &mut Output,
) -> Result<Vec<Entry>, Fatal> {
    let text = match read_master_text(path) {
        Ok(Some(text)) => text,
        Ok(None) => {
            if !defaults {
                out.warn(&format!(
                    "open {}: No such file or directory",
                    path.display()
                ))?;
            }
            return Ok(Vec::new());
        }
        Err(fatal) => {
            out.warn(&fatal.message)?;
            return Ok(Vec::new());
        }
    };
    match master::read_entries(&text) {
        Ok(entries) => Ok(entries.into_iter().map(|(_, e)| e).collect()),
        Err(e) => {
            out.warn(&format!(
                "{}: {e}; per-service parameters are not shown",
                path.display()
            ))?;
            Ok(Vec::new())
        }
    }
}

/// `postconf [-dnhHfx] [name ...]`.
fn show_main(o: &Options, dir: &Path, out: &mut Output) -> Result<(), Fatal> {
    let main_path = dir.join("main.cf");
    let master_path = dir.join("master.cf");
    let config = if o.defaults {
        Config::defaults()
    } else {
        let mut config = load_main(dir)?;
        for (name, value) in &o.overrides {
            config.set(name, value);
        }
        config
    };
    let entries = master_entries_for_params(&master_path, o.defaults, out)?;
    let catalog = Catalog::new(&config, &entries, o.defaults);
    let print = |name: &str, out: &mut Output| -> Result<(), Fatal> {
        let value = catalog.value(name, o.expand).unwrap_or_default();
        let text = if o.hide_value {
            name.to_string()
        } else if o.hide_name {
            value
        } else {
            format!("{name} = {value}")
        };
        out.print(&show::format_line(&text, o.fold))
    };
    if o.operands.is_empty() {
        for name in catalog.names(o.classes, o.non_default) {
            print(&name, out)?;
        }
    } else {
        for name in &o.operands {
            if !catalog.is_known(name) {
                out.warn(&format!("{name}: unknown parameter"))?;
            } else if !o.non_default || catalog.is_explicit(name) {
                print(name, out)?;
            }
        }
    }
    if !o.defaults && !o.quiet {
        for warning in catalog.unused_main(&main_path.display().to_string()) {
            out.warn(&warning)?;
        }
        for warning in catalog.unused_master(&master_path.display().to_string(), &entries) {
            out.warn(&warning)?;
        }
    }
    Ok(())
}

/// Whether a name can stand on the left of `=` in main.cf (posthorn-config's rule).
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Refuses arguments that would put a line break or a comment into a file.
fn check_edit_argument(arg: &str, options: &str) -> Result<(), Fatal> {
    if arg.contains(['\n', '\r']) {
        return Err(Fatal::new(
            EX_USAGE,
            format!(
                "{options} accept no multi-line input: \"{}\"",
                arg.escape_debug()
            ),
        ));
    }
    if arg.trim_ascii_start().starts_with('#') {
        return Err(Fatal::new(
            EX_USAGE,
            format!("{options} accept no comment input: \"{arg}\""),
        ));
    }
    Ok(())
}

/// `postconf -e name=value ...`, `-X name ...`, `-# name ...`.
fn edit_main(o: &Options, kind: EditKind, dir: &Path, out: &mut Output) -> Result<(), Fatal> {
    let mut requests = Vec::new();
    for arg in &o.operands {
        check_edit_argument(arg, "-e, -X and -#")?;
        let (name, action) = match kind {
            EditKind::Set => {
                let (name, value) =
                    args::split_nameval(arg).map_err(|e| Fatal::new(EX_USAGE, e))?;
                (name, edit::Action::Set(value))
            }
            EditKind::Remove | EditKind::CommentOut => {
                if arg.contains('=') {
                    return Err(Fatal::new(
                        EX_USAGE,
                        format!("-X and -# take parameter names without a value: \"{arg}\""),
                    ));
                }
                let action = if kind == EditKind::Remove {
                    edit::Action::Remove
                } else {
                    edit::Action::CommentOut
                };
                (arg.trim_ascii().to_string(), action)
            }
        };
        if !is_valid_name(&name) {
            return Err(Fatal::new(
                EX_USAGE,
                format!("bad parameter name \"{name}\": use letters, digits and '_'"),
            ));
        }
        requests.push((name, action));
    }
    let path = dir.join("main.cf");
    let shown = path.display().to_string();
    let mut warnings = Vec::new();
    let mut result = String::new();
    file::update(&path, |text| {
        let edited = edit::edit_main(text, &requests, &shown);
        if let Err(e) = Config::parse_str(&edited.text, &shown)
            && Config::parse_str(text, &shown).is_ok()
        {
            return Err(Fatal::new(
                EX_SOFTWARE,
                format!("the edited main.cf would not load ({e}); main.cf is unchanged"),
            ));
        }
        warnings = edited.warnings;
        result = edited.text.clone();
        Ok(edited.text)
    })?;
    for warning in &warnings {
        out.warn(warning)?;
    }
    if kind == EditKind::Set {
        check_settings(&result, &requests, dir, &shown, out)?;
    }
    Ok(())
}

/// After `-e`: warns about values that do not parse as their parameter's kind, and about
/// names that no program uses (posthorn ignores them).
fn check_settings(
    text: &str,
    requests: &[(String, edit::Action)],
    dir: &Path,
    shown: &str,
    out: &mut Output,
) -> Result<(), Fatal> {
    let Ok(mut config) = Config::parse_str(text, shown) else {
        return Ok(());
    };
    config.set_default("config_directory", &dir.display().to_string());
    let entries = match read_master_text(&dir.join("master.cf")) {
        Ok(Some(master)) => master::read_entries(&master)
            .map(|e| e.into_iter().map(|(_, e)| e).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let catalog = Catalog::new(&config, &entries, false);
    for (name, action) in requests {
        let edit::Action::Set(value) = action else {
            continue;
        };
        match effective_param(name) {
            Some(param) => {
                let expanded = config.lookup(name).unwrap_or_default();
                if let Err(e) = param.check(&expanded) {
                    out.warn(&format!("{shown}: {name} = {value}: {e}"))?;
                }
            }
            None if !catalog.is_known(name) => {
                out.warn(&format!("{shown}: unused parameter: {name}={value}"))?;
            }
            None => {}
        }
    }
    Ok(())
}

/// `postconf -M [service[/type] ...]`.
fn show_master(o: &Options, dir: &Path, out: &mut Output) -> Result<(), Fatal> {
    let path = dir.join("master.cf");
    let Some(text) = read_master_text(&path)? else {
        return Err(Fatal::new(
            EX_CONFIG,
            format!(
                "open {}: No such file or directory (name the configuration directory with -c or MAIL_CONFIG)",
                path.display()
            ),
        ));
    };
    let entries: Vec<Entry> = master::read_entries(&text)
        .map_err(|e| Fatal::new(EX_CONFIG, format!("{}: {e}", path.display())))?
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let mut patterns = Vec::new();
    for arg in &o.operands {
        patterns.push(Pattern::parse(arg, false).ok_or_else(|| {
            Fatal::new(
                EX_USAGE,
                format!("-M takes service_name or service_name/type, not \"{arg}\""),
            )
        })?);
    }
    // main.cf is needed for -x; otherwise it only helps to tell used -o names from unused.
    let config = if o.expand {
        load_main(dir)?
    } else {
        Config::load(dir).unwrap_or_else(|_| Config::defaults())
    };
    let mut config = config;
    for (name, value) in &o.overrides {
        config.set(name, value);
    }
    let catalog = Catalog::new(&config, &entries, false);
    let mut hits = vec![0usize; patterns.len()];
    for entry in &entries {
        let overrides = entry.overrides();
        // Values expand as the service's daemon will see them: with all of its -o settings.
        let expand = |value: &str| catalog.expand_text(value, &overrides);
        let expand: Option<&dyn Fn(&str) -> String> = if o.expand { Some(&expand) } else { None };
        if patterns.is_empty() {
            out.print(&entry.format(o.fold, expand))?;
            continue;
        }
        for (pattern, hit) in patterns.iter().zip(hits.iter_mut()) {
            if pattern.matches(entry.name(), entry.kind()) {
                *hit += 1;
                out.print(&entry.format(o.fold, expand))?;
            }
        }
    }
    for (pattern, hit) in patterns.iter().zip(&hits) {
        if *hit == 0 {
            out.warn(&format!("unmatched request: \"{}\"", pattern.raw))?;
        }
    }
    if !o.quiet {
        for warning in catalog.unused_master(&path.display().to_string(), &entries) {
            out.warn(&warning)?;
        }
    }
    Ok(())
}

/// Checks a new master.cf entry the way posthorn's master will read it.
fn check_new_entry(text: &str) -> Result<(), String> {
    match MasterCf::parse_str(text, "master.cf", &Config::defaults()) {
        Ok(_) => Ok(()),
        Err(ConfigError::Syntax { message, .. }) => Err(message),
        Err(ConfigError::Value { name, message, .. }) => {
            Err(format!("bad {name} value: {message}"))
        }
        Err(other) => Err(other.to_string()),
    }
}

/// `postconf -Me service/type=entry ...`, `-MX service/type ...`, `-M# service/type ...`.
fn edit_master(o: &Options, kind: EditKind, dir: &Path, out: &mut Output) -> Result<(), Fatal> {
    let need_pattern = |text: &str| {
        Pattern::parse(text, true).ok_or_else(|| {
            Fatal::new(
                EX_USAGE,
                format!("-Me, -MX and -M# take service_name/type, not \"{text}\""),
            )
        })
    };
    let mut requests = Vec::new();
    for arg in &o.operands {
        check_edit_argument(arg, "-Me, -MX and -M#")?;
        let request = match kind {
            EditKind::Set => {
                let Some((pattern, entry)) = arg.split_once('=') else {
                    return Err(Fatal::new(
                        EX_USAGE,
                        format!("-Me takes service/type=\"entry\", not \"{arg}\""),
                    ));
                };
                let pattern = need_pattern(pattern.trim_ascii())?;
                let entry = entry.trim_ascii();
                let bad = |why: String| {
                    Fatal::new(
                        EX_USAGE,
                        format!("invalid master.cf entry \"{entry}\": {why}"),
                    )
                };
                let parsed = Entry::parse(entry).map_err(bad)?;
                check_new_entry(entry).map_err(bad)?;
                (pattern, master::Action::Set(parsed))
            }
            EditKind::Remove | EditKind::CommentOut => {
                if arg.contains('=') {
                    return Err(Fatal::new(
                        EX_USAGE,
                        format!("-MX and -M# take service/type without a value: \"{arg}\""),
                    ));
                }
                let action = if kind == EditKind::Remove {
                    master::Action::Remove
                } else {
                    master::Action::CommentOut
                };
                (need_pattern(arg.trim_ascii())?, action)
            }
        };
        requests.push(request);
    }
    let path = dir.join("master.cf");
    let shown = path.display().to_string();
    let mut not_found = Vec::new();
    file::update(&path, |text| {
        let edited = master::edit_master(text, &requests, &shown)
            .map_err(|e| Fatal::new(EX_CONFIG, format!("{e}; correct that line first")))?;
        let defaults = Config::defaults();
        if let Err(e) = MasterCf::parse_str(&edited.text, &shown, &defaults)
            && MasterCf::parse_str(text, &shown, &defaults).is_ok()
        {
            return Err(Fatal::new(
                EX_SOFTWARE,
                format!("the edited master.cf would not load ({e}); master.cf is unchanged"),
            ));
        }
        not_found = edited.not_found;
        Ok(edited.text)
    })?;
    for raw in &not_found {
        out.warn(&format!("unmatched service_name/type: \"{raw}\""))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `postconf -m` says exactly what posthorn-tables opens.
    #[test]
    fn map_types_are_what_tables_open() {
        use posthorn_tables::{Table, TableError};
        let dir = tempfile::tempdir().expect("tempdir");
        for kind in MAP_TYPES {
            let spec = match *kind {
                "inline" => "inline:{a=b}".to_string(),
                "hash" => format!("hash:{}", dir.path().join("missing").display()),
                other => format!("{other}:x"),
            };
            match Table::open(&spec) {
                Ok(_) => {}
                // hash: is supported; the file just is not there.
                Err(TableError::Io { .. }) => {}
                Err(e) => panic!("{spec}: {e}"),
            }
        }
        for kind in [
            "btree", "cdb", "regexp", "pcre", "lmdb", "texthash", "proxy",
        ] {
            assert!(
                matches!(
                    Table::open(&format!("{kind}:/x")),
                    Err(TableError::BadSpec(_))
                ),
                "{kind} opens, add it to postconf -m"
            );
        }
    }

    #[test]
    fn io_text_drops_the_os_error_number() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_text(&e), "No such file or directory");
    }

    #[test]
    fn names() {
        assert!(is_valid_name("smtpd_banner"));
        assert!(is_valid_name("a-b.c"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(""));
        assert!(check_edit_argument("a=b\nc=d", "-e").is_err());
        assert!(check_edit_argument("  #a=b", "-e").is_err());
        assert!(check_edit_argument("a=#b", "-e").is_ok());
    }
}
