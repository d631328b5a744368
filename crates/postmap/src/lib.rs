//! posthorn-postmap: the code behind the `postmap(1)` and `postalias(1)` commands.
//!
//! Role: build `hash:` tables from source text (postmap's `key value` lines, or aliases(5)
//! `name: value` lines for postalias), query them (`-q`), list them (`-s`), and edit them in
//! place of the old file (`-i` adds from standard input, `-d` deletes). The two binaries in
//! `src/bin/` differ only in [`Tool`]; their `//!` docs are the man pages.
//!
//! Inputs: the command line (Postfix's flags, parsed in `args.rs` with lexopt), `main.cf`
//! from `-c` / `MAIL_CONFIG` / `/etc/posthorn` (for `default_database_type`), source files,
//! standard input, and existing `.db` files.
//! Outputs: `.db` files in the format of posthorn-tables, lookup results on standard output,
//! and `postmap: warning: ...` / `postmap: fatal: ...` lines on standard error.
//!
//! Parsing, the file format and lookups belong to posthorn-tables; this crate adds what a
//! command needs on top of its public API: duplicate policies (`-r`, `-w`, line numbers in
//! warnings), read-modify-write for `-i`/`-d`, an exclusive lock so that concurrent writers
//! of one table serialise, and the ownership and permissions of a new `.db` file
//! (`install.rs`).
//!
//! Error policy: every failure becomes a [`Fatal`] carrying a sysexits(3) code ([`exit`])
//! and a one-line message that says what to do; nothing panics on input.

mod args;
mod entries;
mod install;
mod query;

use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use posthorn_config::Config;
use posthorn_tables::TableError;

use crate::args::{Action, Keys, Options, TableArg};
use crate::entries::Entry;

/// Exit statuses: Postfix's 0/1 for found/not found, sysexits(3) codes for failures.
pub mod exit {
    /// Success; for `-q` and `-d`: the key was found.
    pub const OK: i32 = 0;
    /// `-q` or `-d`: no requested key was found (as in Postfix).
    pub const NOT_FOUND: i32 = 1;
    pub use posthorn_sys::sysexits::{
        EX_CANTCREAT as CANTCREAT, EX_CONFIG as CONFIG, EX_DATAERR as DATAERR, EX_IOERR as IOERR,
        EX_NOINPUT as NOINPUT, EX_UNAVAILABLE as UNAVAILABLE, EX_USAGE as USAGE,
    };
}

/// Which command runs: they differ in source syntax, naming and output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `postmap`: `key whitespace value` source lines, `key<TAB>value` output.
    Postmap,
    /// `postalias`: aliases(5) source lines, `name:<TAB>value` output.
    Postalias,
}

impl Tool {
    /// The program name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Postmap => "postmap",
            Tool::Postalias => "postalias",
        }
    }
}

/// A fatal error: the exit status and the text printed after `postmap: fatal: `.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    /// The exit status, one of [`exit`].
    pub code: i32,
    /// One line saying what went wrong and what to do; empty means "exit quietly" (a
    /// closed output pipe, like `postmap -s big | head`).
    pub message: String,
}

impl Fatal {
    /// A fatal error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
        }
    }

    /// A failed write to standard output; quiet when the reader went away.
    fn output(err: &io::Error) -> Fatal {
        if err.kind() == io::ErrorKind::BrokenPipe {
            Fatal::new(exit::IOERR, "")
        } else {
            Fatal::new(
                exit::IOERR,
                format!("write to standard output: {}", os_error(err)),
            )
        }
    }

    /// A [`TableError`] met while reading or querying a table.
    fn table(err: TableError) -> Fatal {
        match err {
            TableError::Io { path, source } => {
                let code = match source.kind() {
                    io::ErrorKind::NotFound => exit::NOINPUT,
                    io::ErrorKind::PermissionDenied => exit::NOINPUT,
                    _ => exit::IOERR,
                };
                Fatal::new(code, format!("{}: {}", path.display(), os_error(&source)))
            }
            TableError::Syntax { .. } => Fatal::new(
                exit::DATAERR,
                format!("{err}; fix it and run the command again (no table was changed)"),
            ),
            TableError::Corrupt { .. } => Fatal::new(exit::DATAERR, err.to_string()),
            TableError::BadSpec(_) => Fatal::new(exit::USAGE, err.to_string()),
        }
    }
}

/// The environment variables the commands read, captured once so tests can supply them.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `MAIL_CONFIG`: the configuration directory when `-c` is not given.
    pub mail_config: Option<OsString>,
    /// `MAIL_VERBOSE` is set: as one `-v`.
    pub mail_verbose: bool,
}

impl Env {
    /// The values of this process's environment.
    pub fn from_process() -> Env {
        Env {
            mail_config: std::env::var_os("MAIL_CONFIG").filter(|v| !v.is_empty()),
            mail_verbose: std::env::var_os("MAIL_VERBOSE").is_some(),
        }
    }
}

/// Runs `tool` as a program: process arguments, environment and standard streams; returns
/// the exit status for `std::process::exit`.
pub fn main(tool: Tool) -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let env = Env::from_process();
    let mut stdin = io::stdin().lock();
    let mut stdout = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut stderr = io::stderr().lock();
    run(tool, args, &env, &mut stdin, &mut stdout, &mut stderr)
}

/// Runs `tool` with `args` (without argv\[0\]) and the given streams; returns the exit
/// status. Warnings and the fatal message go to `stderr`, one line each.
pub fn run(
    tool: Tool,
    args: Vec<OsString>,
    env: &Env,
    stdin: &mut dyn BufRead,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let mut cmd = Command {
        tool,
        stderr,
        verbose: u32::from(env.mail_verbose),
    };
    let result = cmd.execute(args, env, stdin, stdout);
    let flushed = stdout.flush().map_err(|e| Fatal::output(&e));
    match result.and_then(|code| flushed.map(|()| code)) {
        Ok(code) => code,
        Err(fatal) => {
            if !fatal.message.is_empty() {
                let _ = writeln!(cmd.stderr, "{}: fatal: {}", tool.name(), fatal.message);
            }
            fatal.code
        }
    }
}

/// The result of [`build_table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Entries written.
    pub entries: usize,
    /// Warnings such as `FILE, line N: duplicate entry: "key"` (without the program name).
    pub warnings: Vec<String>,
}

/// Builds `<source>.db` from `source` exactly as `postmap source` (or `postalias source`)
/// does without options: the first of duplicate keys wins with a warning, a new `.db`
/// copies the source's read permissions (and, when run by root, its owner), an existing one
/// keeps its mode and owner, and the replacement is atomic and serialised with other
/// writers. For `newaliases`, which rebuilds the files of `alias_database`.
pub fn build_table(tool: Tool, source: &Path) -> Result<Built, Fatal> {
    let mut db = source.as_os_str().to_owned();
    db.push(".db");
    let rules = Rules {
        duplicates: entries::Duplicates::Warn,
        keep_root: false,
        default_mode: false,
    };
    build_file(tool, source, Path::new(&db), rules)
}

/// The options that shape a build.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// `-r` / `-w`.
    duplicates: entries::Duplicates,
    /// `-o`.
    keep_root: bool,
    /// `-p`.
    default_mode: bool,
}

/// Reads and parses `source`, and installs it as `db`.
fn build_file(tool: Tool, source: &Path, db: &Path, rules: Rules) -> Result<Built, Fatal> {
    let text = entries::read_source(source, tool)?;
    let source_meta = std::fs::metadata(source).ok();
    let origin = source.display().to_string();
    let parsed = tool.parse(&text, &origin).map_err(Fatal::table)?;
    drop(text);
    let merged = entries::merge(None, parsed, rules.duplicates, &origin);
    let count = merged.entries.len();
    let staged = install::stage(db, merged.entries, tool)?;
    let new_file =
        install::NewFile::from_source(source_meta.as_ref(), rules.keep_root, rules.default_mode);
    install::install(staged, db, new_file, tool)?;
    Ok(Built {
        entries: count,
        warnings: merged.warnings,
    })
}

/// One run of a command: what it is and where its diagnostics go.
struct Command<'a> {
    /// postmap or postalias.
    tool: Tool,
    /// Warnings and `-v` notes.
    stderr: &'a mut dyn Write,
    /// The `-v` count (plus one for `MAIL_VERBOSE`).
    verbose: u32,
}

impl Command<'_> {
    /// Prints `postmap: warning: text`.
    fn warn(&mut self, text: impl Display) {
        let _ = writeln!(self.stderr, "{}: warning: {text}", self.tool.name());
    }

    /// Prints `postmap: text` when `-v` was given.
    fn note(&mut self, text: impl Display) {
        if self.verbose > 0 {
            let _ = writeln!(self.stderr, "{}: {text}", self.tool.name());
        }
    }

    /// Parses the command line, reads main.cf and performs the action.
    fn execute(
        &mut self,
        args: Vec<OsString>,
        env: &Env,
        stdin: &mut dyn BufRead,
        stdout: &mut dyn Write,
    ) -> Result<i32, Fatal> {
        let opts = args::parse(self.tool, args)?;
        self.verbose += opts.verbose;
        for warning in &opts.warnings {
            self.warn(warning);
        }
        let config_dir = opts
            .config_dir
            .clone()
            .or_else(|| env.mail_config.clone().map(PathBuf::from))
            .unwrap_or_else(|| Config::defaults().get_path("config_directory"));
        let config = Config::load(&config_dir).map_err(|err| {
            Fatal::new(
                exit::CONFIG,
                format!(
                    "{}; {} needs the main.cf of the configuration directory \
                     (give it with -c DIR or MAIL_CONFIG)",
                    os_error_text(&err.to_string()),
                    self.tool.name()
                ),
            )
        })?;
        let default_type = config.get("default_database_type");
        let tables = opts
            .tables
            .iter()
            .map(|t| TableArg::parse(t, &default_type))
            .collect::<Vec<_>>();
        match &opts.action {
            Action::Build => {
                for table in &tables {
                    self.build(table, &opts)?;
                }
                Ok(exit::OK)
            }
            Action::Incremental => {
                let text = entries::read_stdin(stdin)?;
                let added = self.tool.parse(&text, "stdin").map_err(Fatal::table)?;
                for table in &tables {
                    self.incremental(table, &opts, &added)?;
                }
                Ok(exit::OK)
            }
            Action::Query(keys) => self.query(&tables, keys, stdin, stdout),
            Action::Dump => self.dump(&tables, stdout),
            Action::Delete(keys) => self.delete(&tables, keys, stdin),
        }
    }

    /// `postmap FILE`: builds `FILE.db` from the source file.
    fn build(&mut self, table: &TableArg, opts: &Options) -> Result<(), Fatal> {
        let started = Instant::now();
        let db = table.writable_db(self.tool)?;
        let rules = Rules {
            duplicates: opts.duplicates,
            keep_root: opts.keep_root,
            default_mode: opts.default_mode,
        };
        let built = build_file(self.tool, Path::new(&table.name), &db, rules)?;
        for warning in &built.warnings {
            self.warn(warning);
        }
        self.note(format_args!(
            "{}: {} entries in {:.3} s",
            db.display(),
            built.entries,
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// `postmap -i FILE`: adds the entries read from standard input to `FILE.db`.
    fn incremental(
        &mut self,
        table: &TableArg,
        opts: &Options,
        added: &[Entry],
    ) -> Result<(), Fatal> {
        let db = table.writable_db(self.tool)?;
        let mut warnings = Vec::new();
        let mut change = |current: Option<&posthorn_tables::HashTable>| {
            let merged = entries::merge(current, added.to_vec(), opts.duplicates, "stdin");
            warnings = merged.warnings;
            Ok(Some(merged.entries))
        };
        install::edit(&db, install::NewFile::Default, self.tool, true, &mut change)?;
        for warning in warnings {
            self.warn(warning);
        }
        Ok(())
    }

    /// `postmap -d KEY FILE...`: removes the keys from each table; exit 0 if any was found.
    fn delete(
        &mut self,
        tables: &[TableArg],
        keys: &Keys,
        stdin: &mut dyn BufRead,
    ) -> Result<i32, Fatal> {
        let keys: Vec<String> = match keys {
            Keys::One(key) => vec![key.clone()],
            Keys::Stdin => query::read_keys(stdin, &mut |w| self.warn(w))?,
        };
        let folded: std::collections::HashSet<String> =
            keys.iter().map(|k| entries::fold(k.clone())).collect();
        let dbs = tables
            .iter()
            .map(|t| t.writable_db(self.tool))
            .collect::<Result<Vec<_>, _>>()?;
        let mut found_any = false;
        for db in &dbs {
            let mut change = |current: Option<&posthorn_tables::HashTable>| {
                let Some(table) = current else {
                    return Ok(None);
                };
                if !folded.iter().any(|k| table.get(k).is_some()) {
                    return Ok(None);
                }
                Ok(Some(
                    table
                        .iter()
                        .filter(|(k, _)| !folded.contains(*k))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                ))
            };
            if install::edit(db, install::NewFile::Default, self.tool, false, &mut change)? {
                found_any = true;
                self.note(format_args!("{}: deleted", db.display()));
            }
        }
        Ok(if found_any { exit::OK } else { exit::NOT_FOUND })
    }
}

/// An I/O error as Postfix prints `%m`: the system's text without Rust's `(os error N)`
/// (and without context some libraries append, such as tempfile's `at path ...`).
pub(crate) fn os_error(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(errno) => os_error_text(&io::Error::from_raw_os_error(errno).to_string()),
        None => os_error_text(&err.to_string()),
    }
}

/// Cuts an error text at Rust's ` (os error N)` (and whatever a library appended after it).
fn os_error_text(text: &str) -> String {
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_drops_the_errno_suffix() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(os_error(&err), "No such file or directory");
        assert_eq!(os_error_text("plain text"), "plain text");
        assert_eq!(
            os_error_text("No such file or directory (os error 2) at path \"/x/.t\""),
            "No such file or directory"
        );
        assert_eq!(
            os_error_text("/x: Permission denied (os error 13)"),
            "/x: Permission denied"
        );
    }

    /// Runs `tool` in-process with `-c dir`; returns (status, stdout, stderr).
    fn run_in(dir: &Path, tool: Tool, args: &[&str], input: &str) -> (i32, String, String) {
        let mut argv: Vec<OsString> = vec!["-c".into(), dir.into()];
        argv.extend(args.iter().map(OsString::from));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = input.as_bytes();
        let code = run(tool, argv, &Env::default(), &mut stdin, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn build_table_for_newaliases() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("aliases");
        std::fs::write(&src, "root: alice\nROOT: bob\npostmaster: root\n").unwrap();
        let built = build_table(Tool::Postalias, &src).unwrap();
        assert_eq!(built.entries, 2);
        assert_eq!(
            built.warnings,
            vec![format!(
                "{}, line 2: duplicate entry: \"root\"",
                src.display()
            )]
        );
        let table = posthorn_tables::HashTable::open(&dir.path().join("aliases.db")).unwrap();
        assert_eq!(table.get("root"), Some("alice"));
    }

    #[test]
    fn run_prints_values_warnings_and_fatals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.cf"), "").unwrap();
        let src = dir.path().join("t");
        std::fs::write(&src, "a 1\nb 2\n").unwrap();
        let src = src.to_str().unwrap();
        let (code, out, err) = run_in(dir.path(), Tool::Postmap, &["-v", src], "");
        assert_eq!((code, out.as_str()), (0, ""));
        assert!(
            err.starts_with(&format!("postmap: {src}.db: 2 entries in ")),
            "{err}"
        );
        let (code, out, err) = run_in(dir.path(), Tool::Postmap, &["-q", "-", src], "b\nx\n");
        assert_eq!((code, out.as_str(), err.as_str()), (0, "b\t2\n", ""));
        let (code, out, err) = run_in(dir.path(), Tool::Postalias, &["-s", src], "");
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "a:\t1\nb:\t2\n", "")
        );
        let (code, out, err) = run_in(dir.path(), Tool::Postmap, &["-x", src], "");
        assert_eq!((code, out.as_str()), (exit::USAGE, ""));
        assert!(err.starts_with("postmap: fatal: invalid option -- 'x'; usage: postmap "));
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn table_errors_map_to_sysexits() {
        let io = |kind| TableError::Io {
            path: "/x.db".into(),
            source: io::Error::new(kind, "why"),
        };
        assert_eq!(
            Fatal::table(io(io::ErrorKind::NotFound)).code,
            exit::NOINPUT
        );
        assert_eq!(Fatal::table(io(io::ErrorKind::Other)).code, exit::IOERR);
        let syntax = Fatal::table(TableError::Syntax {
            file: "m".into(),
            line: 3,
            message: "bad".into(),
        });
        assert_eq!(syntax.code, exit::DATAERR);
        assert!(syntax.message.starts_with("m, line 3: bad; "), "{syntax}");
        assert_eq!(
            Fatal::table(TableError::BadSpec("x".into())).code,
            exit::USAGE
        );
    }
}
