//! The command line of postmap and postalias: Postfix's getopt-style flags, read with lexopt.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::entries::Duplicates;
use crate::{Fatal, Tool, exit};

/// What the command does, chosen by `-i`, `-q`, `-s`, `-d` (default: build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `postmap FILE...`: build each `FILE.db` from `FILE`.
    Build,
    /// `-i`: add entries from standard input to each table.
    Incremental,
    /// `-q KEY` / `-q -`: print the first value found.
    Query(Keys),
    /// `-s`: print every entry.
    Dump,
    /// `-d KEY` / `-d -`: delete the keys from each table.
    Delete(Keys),
}

/// The keys of `-q` and `-d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Keys {
    /// One key from the command line.
    One(String),
    /// `-`: keys from standard input, one per line.
    Stdin,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// `-c DIR`.
    pub config_dir: Option<PathBuf>,
    /// What to do.
    pub action: Action,
    /// `-r` (replace) or `-w` (ignore quietly); the default warns and keeps the first.
    pub duplicates: Duplicates,
    /// `-o`: a new `.db` stays owned by root instead of the source file's owner.
    pub keep_root: bool,
    /// `-p`: a new `.db` gets mode 0644 (less the umask) instead of the source's read bits.
    pub default_mode: bool,
    /// Number of `-v`.
    pub verbose: u32,
    /// The `[type:]name` arguments, at least one.
    pub tables: Vec<String>,
    /// Warnings about accepted but ignored flags (`-f`, `-u`).
    pub warnings: Vec<String>,
}

/// A `[type:]name` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableArg {
    /// The table type (`hash`, `inline`, `static`, ...).
    pub kind: String,
    /// The name: a file name for `hash:`, `{...}` for `inline:`.
    pub name: String,
    /// Whether the type came from `default_database_type`, not from the argument.
    pub defaulted: bool,
}

impl TableArg {
    /// Splits `arg` at its first `:`; without one the type is `default_type`.
    pub(crate) fn parse(arg: &str, default_type: &str) -> TableArg {
        match arg.split_once(':') {
            Some((kind, name)) => TableArg {
                kind: kind.to_owned(),
                name: name.to_owned(),
                defaulted: false,
            },
            None => TableArg {
                kind: if default_type.is_empty() {
                    "hash".to_owned()
                } else {
                    default_type.to_owned()
                },
                name: arg.to_owned(),
                defaulted: true,
            },
        }
    }

    /// The spec for `posthorn_tables::Table::open`.
    pub(crate) fn spec(&self) -> String {
        format!("{}:{}", self.kind, self.name)
    }

    /// The `.db` file of a table this command may create or change; only `hash:` tables
    /// can be written.
    pub(crate) fn writable_db(&self, tool: Tool) -> Result<PathBuf, Fatal> {
        if self.kind != "hash" {
            let (code, origin) = if self.defaulted {
                (exit::CONFIG, " (from default_database_type in main.cf)")
            } else {
                (exit::USAGE, "")
            };
            let what = match self.kind.as_str() {
                "inline" | "static" => format!("table {} is read-only", self.spec()),
                kind => format!("unsupported table type \"{kind}\"{origin}"),
            };
            return Err(Fatal::new(
                code,
                format!(
                    "{what}: {} creates and changes hash: tables only; write hash:FILE or FILE",
                    tool.name()
                ),
            ));
        }
        if self.name.is_empty() {
            return Err(Fatal::new(
                exit::USAGE,
                format!("\"{}\" names no file; write hash:FILE or FILE", self.spec()),
            ));
        }
        let mut db = OsString::from(&self.name);
        db.push(".db");
        Ok(PathBuf::from(db))
    }
}

/// The usage line of `tool`.
pub(crate) fn usage(tool: Tool) -> String {
    format!(
        "usage: {} [-finNoprsuUvw] [-c config_dir] [-d key] [-q key] [file_type:]file_name ...",
        tool.name()
    )
}

/// Parses the arguments after argv\[0\].
pub(crate) fn parse(tool: Tool, args: Vec<OsString>) -> Result<Options, Fatal> {
    use lexopt::Arg::{Long, Short, Value};

    let bad = |text: String| Fatal::new(exit::USAGE, format!("{text}; {}", usage(tool)));
    let mut opts = Options {
        config_dir: None,
        action: Action::Build,
        duplicates: Duplicates::Warn,
        keep_root: false,
        default_mode: false,
        verbose: 0,
        tables: Vec::new(),
        warnings: Vec::new(),
    };
    let mut incremental = false;
    let mut chosen: Vec<char> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(err) => return Err(bad(err.to_string())),
        };
        match arg {
            Short('c') => opts.config_dir = Some(PathBuf::from(value(&mut parser, 'c', &bad)?)),
            Short('d') => {
                chosen.push('d');
                opts.action = Action::Delete(keys(value(&mut parser, 'd', &bad)?));
            }
            Short('q') => {
                chosen.push('q');
                opts.action = Action::Query(keys(value(&mut parser, 'q', &bad)?));
            }
            Short('s') => {
                chosen.push('s');
                opts.action = Action::Dump;
            }
            Short('i') => incremental = true,
            Short('f') => opts
                .warnings
                .push("-f is ignored: posthorn tables always fold keys to lower case".to_owned()),
            Short('u') => opts
                .warnings
                .push("-u is ignored: posthorn tables always hold UTF-8 text".to_owned()),
            // No NUL convention in posthorn's format; -U (UTF-8 checks) is always on.
            Short('N' | 'n' | 'U') => {}
            Short('o') => opts.keep_root = true,
            Short('p') => opts.default_mode = true,
            Short('r') => opts.duplicates = Duplicates::Replace,
            Short('w') => opts.duplicates = Duplicates::Ignore,
            Short('v') => opts.verbose += 1,
            Short(flag @ ('b' | 'h' | 'm' | 'F')) => {
                return Err(Fatal::new(
                    exit::UNAVAILABLE,
                    format!(
                        "-{flag} is not implemented in posthorn (message query modes and \
                         base64 values); query keys one per line with -q -"
                    ),
                ));
            }
            Value(table) => opts.tables.push(utf8(table, &bad)?),
            Short(flag) => return Err(bad(format!("invalid option -- '{flag}'"))),
            Long(flag) => return Err(bad(format!("invalid option --{flag}"))),
        }
    }
    chosen.dedup();
    if chosen.len() > 1 {
        return Err(bad("specify only one of -s or -q or -d".to_owned()));
    }
    if incremental {
        if !chosen.is_empty() {
            return Err(bad("-i cannot be combined with -s, -q or -d".to_owned()));
        }
        opts.action = Action::Incremental;
    }
    if opts.tables.is_empty() {
        return Err(bad("no table named".to_owned()));
    }
    Ok(opts)
}

/// The value of option `-flag` as UTF-8 text.
fn value(
    parser: &mut lexopt::Parser,
    flag: char,
    bad: &dyn Fn(String) -> Fatal,
) -> Result<String, Fatal> {
    let raw = parser
        .value()
        .map_err(|_| bad(format!("option requires an argument -- '{flag}'")))?;
    utf8(raw, bad)
}

/// `-` means standard input.
fn keys(key: String) -> Keys {
    if key == "-" {
        Keys::Stdin
    } else {
        Keys::One(key)
    }
}

/// An argument as UTF-8 text (keys and table names are text in posthorn).
fn utf8(raw: OsString, bad: &dyn Fn(String) -> Fatal) -> Result<String, Fatal> {
    raw.into_string()
        .map_err(|raw| bad(format!("argument {raw:?} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> Options {
        parse(Tool::Postmap, args.iter().map(OsString::from).collect()).unwrap()
    }

    fn parse_err(args: &[&str]) -> Fatal {
        parse(Tool::Postmap, args.iter().map(OsString::from).collect()).unwrap_err()
    }

    #[test]
    fn build_with_flags() {
        let o = parse_ok(&["-c", "/etc/x", "-Nnrov", "-v", "hash:/a", "/b"]);
        assert_eq!(o.config_dir, Some(PathBuf::from("/etc/x")));
        assert_eq!(o.action, Action::Build);
        assert_eq!(o.duplicates, Duplicates::Replace);
        assert!(o.keep_root && !o.default_mode);
        assert_eq!(o.verbose, 2);
        assert_eq!(o.tables, vec!["hash:/a", "/b"]);
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn last_of_r_and_w_wins() {
        assert_eq!(parse_ok(&["-rw", "t"]).duplicates, Duplicates::Ignore);
        assert_eq!(parse_ok(&["-wr", "t"]).duplicates, Duplicates::Replace);
    }

    #[test]
    fn actions() {
        assert_eq!(
            parse_ok(&["-q", "-x", "t"]).action,
            Action::Query(Keys::One("-x".into()))
        );
        assert_eq!(
            parse_ok(&["-qkey", "t"]).action,
            Action::Query(Keys::One("key".into()))
        );
        assert_eq!(
            parse_ok(&["t", "-q", "-"]).action,
            Action::Query(Keys::Stdin)
        );
        assert_eq!(
            parse_ok(&["-d", "-", "t"]).action,
            Action::Delete(Keys::Stdin)
        );
        assert_eq!(parse_ok(&["-s", "t", "u"]).action, Action::Dump);
        assert_eq!(parse_ok(&["-i", "t"]).action, Action::Incremental);
        let o = parse_ok(&["-f", "-u", "-U", "t"]);
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
    }

    #[test]
    fn usage_errors() {
        for (args, text) in [
            (
                &["-q", "a", "-s", "t"][..],
                "specify only one of -s or -q or -d",
            ),
            (&["-i", "-s", "t"][..], "-i cannot be combined"),
            (&["-Z", "t"][..], "invalid option -- 'Z'"),
            (&["--help"][..], "invalid option --help"),
            (&["-q"][..], "option requires an argument -- 'q'"),
            (&["-s"][..], "no table named"),
        ] {
            let err = parse_err(args);
            assert_eq!(err.code, exit::USAGE, "{args:?}");
            assert!(err.message.contains(text), "{args:?}: {err}");
            assert!(err.message.contains("usage: postmap ["), "{err}");
        }
        assert_eq!(parse_err(&["-b", "-q", "-", "t"]).code, exit::UNAVAILABLE);
    }

    #[test]
    fn table_args() {
        let t = TableArg::parse("/etc/x", "hash");
        assert_eq!(
            (t.kind.as_str(), t.name.as_str(), t.defaulted),
            ("hash", "/etc/x", true)
        );
        assert_eq!(
            t.writable_db(Tool::Postmap).unwrap(),
            PathBuf::from("/etc/x.db")
        );
        let t = TableArg::parse("inline:{a=b}", "hash");
        assert_eq!(t.spec(), "inline:{a=b}");
        let err = t.writable_db(Tool::Postmap).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("read-only"), "{err}");
        let err = TableArg::parse("btree:/x", "hash")
            .writable_db(Tool::Postalias)
            .unwrap_err();
        assert!(
            err.message.contains("unsupported table type \"btree\""),
            "{err}"
        );
        let err = TableArg::parse("/x", "lmdb")
            .writable_db(Tool::Postmap)
            .unwrap_err();
        assert_eq!(err.code, exit::CONFIG);
        assert!(err.message.contains("default_database_type"), "{err}");
        assert_eq!(TableArg::parse("x", "").kind, "hash");
        assert!(
            TableArg::parse("hash:", "hash")
                .writable_db(Tool::Postmap)
                .is_err()
        );
    }
}
