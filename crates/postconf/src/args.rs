//! The command line: Postfix's getopt-style flags (`-c dir -dfhHnmMlpqvxX# -o name=value`,
//! options end at the first operand as with Postfix's `+` getopt), turned into [`Options`], and
//! the checks that reject option combinations that make no sense, as Postfix does.
//!
//! Parsing never touches the system; errors are [`Fatal`] values with the sysexits code.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::{EX_UNAVAILABLE, EX_USAGE, Fatal};

/// The usage line printed with command-line errors.
pub const USAGE: &str = "usage: postconf [-c config_dir] [-C class,...] [-d (defaults)] \
[-e (edit)] [-f (fold lines)] [-h (no names)] [-H (no values)] [-l (lock types)] \
[-m (map types)] [-M (master.cf)] [-n (non-default)] [-o name=value (override)] \
[-p (main.cf, default)] [-q (quiet)] [-v] [-x (expand)] [-X (remove)] [-# (comment out)] \
[name...]";

/// What postconf is asked to work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// main.cf parameters (`-p`, the default).
    Main,
    /// master.cf entries (`-M`).
    Master,
    /// The lookup table types (`-m`).
    Maps,
    /// The mailbox lock methods (`-l`).
    Locks,
}

/// How a configuration file is to be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    /// `-e`: set `name=value` (or replace/add `service/type=entry`).
    Set,
    /// `-X`: remove.
    Remove,
    /// `-#`: comment out.
    CommentOut,
}

/// Which parameter classes to show (`-C`); Postfix's builtin, service and user classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classes {
    /// Parameters of the table ([`posthorn_config::PARAMS`]).
    pub builtin: bool,
    /// Per-transport parameters derived from master.cf service names.
    pub service: bool,
    /// User-defined parameters: set in main.cf and used as `$name` somewhere.
    pub user: bool,
}

impl Classes {
    /// Every class (`-C all`, the default).
    pub const ALL: Classes = Classes {
        builtin: true,
        service: true,
        user: true,
    };
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-c dir`.
    pub config_dir: Option<PathBuf>,
    /// `-p`, `-M`, `-m` or `-l`.
    pub target: Target,
    /// `-e`, `-X` or `-#` (`-e` is implied when the first operand contains `=`).
    pub edit: Option<EditKind>,
    /// `-d`: built-in defaults instead of main.cf.
    pub defaults: bool,
    /// `-n`: only parameters that main.cf sets.
    pub non_default: bool,
    /// `-f`: fold long lines.
    pub fold: bool,
    /// `-h`: values without `name = `.
    pub hide_name: bool,
    /// `-H`: names without ` = value`.
    pub hide_value: bool,
    /// `-x`: expand `$name` in values.
    pub expand: bool,
    /// `-q`: no warnings about unused parameters.
    pub quiet: bool,
    /// `-C`: parameter classes to list.
    pub classes: Classes,
    /// `-o name=value`, in order.
    pub overrides: Vec<(String, String)>,
    /// `-v` count (accepted; postconf has nothing to log).
    pub verbose: u32,
    /// Parameter names, `name=value` pairs or service patterns.
    pub operands: Vec<String>,
}

/// A command-line error (exit 64).
fn usage(message: impl Into<String>) -> Fatal {
    Fatal::new(EX_USAGE, message)
}

/// Converts an argument to UTF-8 text (configuration files are UTF-8).
fn text(arg: OsString) -> Result<String, Fatal> {
    arg.into_string().map_err(|arg| {
        usage(format!(
            "argument {} is not valid UTF-8; configuration files are UTF-8 text",
            arg.to_string_lossy()
        ))
    })
}

/// Splits `name=value` as Postfix's split_nameval(): whitespace around name and value is
/// removed. Errors name what is missing.
pub fn split_nameval(arg: &str) -> Result<(String, String), String> {
    let Some((name, value)) = arg.split_once('=') else {
        return Err(format!("missing '=' after parameter name: \"{arg}\""));
    };
    let name = name.trim_ascii();
    if name.is_empty() {
        return Err(format!("missing parameter name before '=': \"{arg}\""));
    }
    Ok((name.to_string(), value.trim_ascii().to_string()))
}

/// Parses argv (argv\[0\] included).
pub fn parse<I>(args: I) -> Result<Options, Fatal>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg::{Long, Short, Value};

    let mut o = Options {
        config_dir: None,
        target: Target::Main,
        edit: None,
        defaults: false,
        non_default: false,
        fold: false,
        hide_name: false,
        hide_value: false,
        expand: false,
        quiet: false,
        classes: Classes::ALL,
        overrides: Vec::new(),
        verbose: 0,
        operands: Vec::new(),
    };
    // Every flag letter seen, in order, for the compatibility checks.
    let mut seen: Vec<char> = Vec::new();
    let mut parser = lexopt::Parser::from_iter(args);
    // getopt(3) gives `-o=x` the value "=x"; lexopt would drop the '='.
    parser.set_short_equals(false);
    loop {
        let arg = parser.next().map_err(lexopt_error)?;
        let Some(arg) = arg else { break };
        match arg {
            Short(c @ ('c' | 'C' | 'o' | 'T')) => {
                let value = text(parser.value().map_err(lexopt_error)?)?;
                match c {
                    'c' => o.config_dir = Some(PathBuf::from(value)),
                    'C' => {
                        o.classes = parse_classes(&value)?;
                        seen.push('C');
                    }
                    'o' => {
                        o.overrides
                            .push(split_nameval(&value).map_err(|e| usage(format!("-o {e}")))?);
                        seen.push('o');
                    }
                    _ => return Err(unsupported('T')),
                }
            }
            Short(c) => {
                match c {
                    'p' => o.target = Target::Main,
                    'M' => o.target = Target::Master,
                    'm' => o.target = Target::Maps,
                    'l' => o.target = Target::Locks,
                    'd' => o.defaults = true,
                    'n' => o.non_default = true,
                    'e' => o.edit = Some(EditKind::Set),
                    'X' => o.edit = Some(EditKind::Remove),
                    '#' => o.edit = Some(EditKind::CommentOut),
                    'f' => o.fold = true,
                    'h' => o.hide_name = true,
                    'H' => o.hide_value = true,
                    'x' => o.expand = true,
                    'q' => o.quiet = true,
                    'v' => o.verbose += 1,
                    'a' | 'A' | 'b' | 't' | 'F' | 'P' => return Err(unsupported(c)),
                    other => {
                        return Err(usage(format!("invalid option -- '{other}'; {USAGE}")));
                    }
                }
                if !matches!(c, 'q' | 'v') {
                    seen.push(c);
                }
            }
            Long(name) => {
                return Err(usage(format!("invalid option --{name}; {USAGE}")));
            }
            Value(v) => {
                // Options end at the first operand (Postfix gives getopt a leading '+').
                o.operands.push(text(v)?);
                for v in parser.raw_args().map_err(lexopt_error)? {
                    o.operands.push(text(v)?);
                }
                break;
            }
        }
    }
    // Since Postfix 2.8 a name=value operand implies -e.
    if matches!(o.target, Target::Main | Target::Master)
        && o.operands.first().is_some_and(|a| a.contains('='))
        && o.edit.is_none()
    {
        o.edit = Some(EditKind::Set);
        seen.push('e');
    }
    check_combinations(&o, &seen)?;
    Ok(o)
}

/// The error for a Postfix option that posthorn does not have (exit 69).
fn unsupported(c: char) -> Fatal {
    let what = match c {
        'a' | 'A' => "SASL plug-in types (posthorn has no SASL yet)",
        'b' | 't' => "bounce templates (posthorn's bounce texts are built in)",
        'T' => "TLS information (posthorn has no TLS yet)",
        'F' => "master.cf fields (use postconf -M to see whole entries)",
        _ => "master.cf service parameters (use postconf -M to see whole entries)",
    };
    Fatal::new(
        EX_UNAVAILABLE,
        format!("option -{c} is not supported by posthorn: {what}"),
    )
}

/// Parses the `-C` class list.
fn parse_classes(value: &str) -> Result<Classes, Fatal> {
    let mut classes = Classes {
        builtin: false,
        service: false,
        user: false,
    };
    for word in value
        .split([',', ' ', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
    {
        match word.as_str() {
            "builtin" => classes.builtin = true,
            "service" => classes.service = true,
            "user" => classes.user = true,
            "all" => classes = Classes::ALL,
            other => {
                return Err(usage(format!(
                    "-C option: unknown class \"{other}\"; specify builtin, service, user or all"
                )));
            }
        }
    }
    Ok(classes)
}

/// Option letters that change the file (at most one of them).
const EDITS: &[char] = &['e', 'X', '#'];

/// Rejects combinations that Postfix rejects: several targets or several of -d/-e/-n/-X/-#,
/// modifiers that do not apply to the target, and modifiers that conflict with editing.
fn check_combinations(o: &Options, seen: &[char]) -> Result<(), Fatal> {
    let has = |c: char| seen.contains(&c);
    let named = |set: &[char]| -> Vec<String> {
        set.iter()
            .filter(|c| has(**c))
            .map(|c| format!("-{c}"))
            .collect()
    };
    let exclusive = |set: &[char]| -> Result<(), Fatal> {
        let present = named(set);
        if present.len() > 1 {
            let all: Vec<String> = set.iter().map(|c| format!("-{c}")).collect();
            return Err(usage(format!(
                "specify only one of {} (got {})",
                all.join(", "),
                present.join(" and ")
            )));
        }
        Ok(())
    };
    exclusive(&['p', 'M', 'm', 'l'])?;
    exclusive(&['d', 'e', 'n', 'X', '#'])?;
    let conflicts: &[(char, &[char])] = &[
        ('f', EDITS),
        ('x', EDITS),
        ('o', &['d', 'e', 'X', '#']),
        ('h', &['e', 'X', '#', 'H']),
        ('H', &['e', 'X', '#']),
        ('C', &['e', 'X', '#']),
    ];
    for (flag, others) in conflicts {
        if !has(*flag) {
            continue;
        }
        if let Some(other) = others.iter().find(|c| has(**c)) {
            return Err(usage(format!(
                "option -{flag} cannot be combined with -{other}"
            )));
        }
    }
    let (target, allowed): (char, &[char]) = match o.target {
        Target::Main => (
            'p',
            &['d', 'e', 'n', 'X', '#', 'f', 'h', 'H', 'x', 'o', 'C'],
        ),
        Target::Master => ('M', &['e', 'X', '#', 'f', 'x', 'o']),
        Target::Maps => ('m', &[]),
        Target::Locks => ('l', &[]),
    };
    if let Some(extra) = seen
        .iter()
        .find(|c| **c != target && !allowed.contains(c) && !matches!(c, 'p' | 'M' | 'm' | 'l'))
    {
        return Err(usage(format!(
            "with option -{target}, do not specify -{extra}"
        )));
    }
    if let Some(kind) = o.edit
        && o.operands.is_empty()
    {
        let what = match (o.target, kind) {
            (Target::Master, EditKind::Set) => "-Me requires service/type=entry arguments",
            (Target::Master, _) => "-MX and -M# require service/type arguments",
            (_, EditKind::Set) => "-e requires name=value arguments",
            (_, _) => "-X and -# require parameter names",
        };
        return Err(usage(what));
    }
    Ok(())
}

/// Turns a lexopt error into a usage error.
fn lexopt_error(e: lexopt::Error) -> Fatal {
    let text = match e {
        lexopt::Error::MissingValue {
            option: Some(option),
        } => format!("option requires an argument -- {option}"),
        other => other.to_string(),
    };
    usage(format!("{text}; {USAGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> Options {
        let mut argv = vec!["postconf"];
        argv.extend_from_slice(args);
        parse(argv).unwrap_or_else(|e| panic!("{args:?}: {}", e.message))
    }

    fn parse_err(args: &[&str]) -> Fatal {
        let mut argv = vec!["postconf"];
        argv.extend_from_slice(args);
        match parse(argv) {
            Ok(o) => panic!("{args:?} parsed: {o:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_to_printing_main_cf() {
        let o = parse_ok(&[]);
        assert_eq!(o.target, Target::Main);
        assert_eq!(o.edit, None);
        assert!(o.operands.is_empty());
        assert_eq!(o.classes, Classes::ALL);
    }

    #[test]
    fn flags_combine_and_take_values_attached_or_separate() {
        let o = parse_ok(&["-dh", "-c/etc/x", "mail_version"]);
        assert!(o.defaults && o.hide_name);
        assert_eq!(o.config_dir, Some(PathBuf::from("/etc/x")));
        assert_eq!(o.operands, vec!["mail_version"]);
        let o = parse_ok(&["-c", "/etc/y", "-nfx"]);
        assert!(o.non_default && o.fold && o.expand);
        assert_eq!(o.config_dir, Some(PathBuf::from("/etc/y")));
        let o = parse_ok(&["-o", "a=b", "-oc = d"]);
        assert_eq!(
            o.overrides,
            vec![
                ("a".to_string(), "b".to_string()),
                ("c".to_string(), "d".to_string())
            ]
        );
        // As with getopt, the value of "-o=e=f" is "=e=f", which has no name.
        assert_eq!(parse_err(&["-o=e=f"]).code, EX_USAGE);
    }

    #[test]
    fn master_modes() {
        let o = parse_ok(&["-Mf", "smtp/inet"]);
        assert_eq!(o.target, Target::Master);
        assert!(o.fold);
        let o = parse_ok(&["-M#", "smtp/inet"]);
        assert_eq!(o.edit, Some(EditKind::CommentOut));
        let o = parse_ok(&["-MX", "smtp/inet"]);
        assert_eq!(o.edit, Some(EditKind::Remove));
        let o = parse_ok(&["-Me", "smtp/inet=smtp inet n - n - - smtpd"]);
        assert_eq!(o.edit, Some(EditKind::Set));
        // name=value implies -e.
        let o = parse_ok(&["-M", "smtp/inet=smtp inet n - n - - smtpd"]);
        assert_eq!(o.edit, Some(EditKind::Set));
    }

    #[test]
    fn name_value_implies_edit() {
        let o = parse_ok(&["myorigin=example.com", "relayhost="]);
        assert_eq!(o.edit, Some(EditKind::Set));
        assert_eq!(o.operands, vec!["myorigin=example.com", "relayhost="]);
    }

    #[test]
    fn options_end_at_the_first_operand() {
        let o = parse_ok(&["myorigin", "-n"]);
        assert!(!o.non_default);
        assert_eq!(o.operands, vec!["myorigin", "-n"]);
        let o = parse_ok(&["-X", "--", "-odd"]);
        assert_eq!(o.operands, vec!["-odd"]);
    }

    #[test]
    fn classes() {
        let o = parse_ok(&["-C", "builtin,user"]);
        assert!(o.classes.builtin && o.classes.user && !o.classes.service);
        assert_eq!(parse_ok(&["-Call"]).classes, Classes::ALL);
        assert_eq!(parse_err(&["-C", "bogus"]).code, EX_USAGE);
    }

    #[test]
    fn conflicting_options_are_usage_errors() {
        for args in [
            &["-d", "-n"][..],
            &["-n", "myorigin=x"],
            &["-e", "-X", "a"],
            &["-M", "-m"],
            &["-Md"],
            &["-Mn"],
            &["-Mh"],
            &["-md"],
            &["-l", "-x"],
            &["-f", "-e", "a=b"],
            &["-x", "-X", "a"],
            &["-h", "-H"],
            &["-d", "-o", "a=b"],
            &["-e"],
            &["-X"],
            &["-M#"],
            &["-c"],
            &["-k"],
            &["--help"],
        ] {
            let e = parse_err(args);
            assert_eq!(e.code, EX_USAGE, "{args:?}: {}", e.message);
        }
        let e = parse_err(&["-d", "-n"]);
        assert_eq!(
            e.message,
            "specify only one of -d, -e, -n, -X, -# (got -d and -n)"
        );
        let e = parse_err(&["-Mn"]);
        assert_eq!(e.message, "with option -M, do not specify -n");
    }

    #[test]
    fn unsupported_postfix_options_exit_69() {
        for args in [
            &["-F"][..],
            &["-P"],
            &["-a"],
            &["-A"],
            &["-b"],
            &["-t"],
            &["-T", "run-version"],
        ] {
            assert_eq!(parse_err(args).code, EX_UNAVAILABLE, "{args:?}");
        }
    }

    #[test]
    fn split_nameval_trims() {
        assert_eq!(
            split_nameval("  a =  b c  "),
            Ok(("a".to_string(), "b c".to_string()))
        );
        assert_eq!(split_nameval("a="), Ok(("a".to_string(), String::new())));
        assert!(split_nameval("a").is_err());
        assert!(split_nameval(" = b").is_err());
    }
}
