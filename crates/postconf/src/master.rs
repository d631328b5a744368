//! master.cf as postconf shows and edits it (`-M`, `-Mf`, `-Me`, `-MX`, `-M#`): entries with
//! their fields as written (`-` stays `-`), Postfix's normalized column layout, service
//! patterns (`name`, `name/type`, `*`), and a pure editor like the main.cf one.
//!
//! posthorn-config's [`posthorn_config::MasterCf`] resolves defaults and is what daemons use;
//! postconf needs the text as written, so it splits entries itself, the same way: words at
//! whitespace outside `{ }`, leading `-o name=value` / `-oname=value` / `-o { name = value }`
//! options normalized to `-o name=value`, other `{ ... }` arguments unwrapped.

use crate::edit::Edited;
use crate::lines::{self, Decision};

/// Preferred start column of each of the eight fixed fields (Postfix's `postconf -M`).
const COLUMNS: [usize; 8] = [0, 11, 17, 25, 33, 41, 49, 57];

/// Folded lines are kept below this length when possible.
const LINE_LIMIT: usize = 80;

/// Indentation of continuation lines when folding.
const INDENT: &str = "    ";

/// The field names, for errors.
const FIELD_NAMES: [&str; 8] = [
    "service", "type", "private", "unpriv", "chroot", "wakeup", "maxproc", "command",
];

/// The service types posthorn's master accepts.
const TYPES: [&str; 5] = ["inet", "unix", "unix-dgram", "fifo", "pass"];

/// One master.cf entry: the eight fixed fields as written, then the normalized arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// At least eight words.
    fields: Vec<String>,
}

impl Entry {
    /// Parses the text of one logical line (continuations joined), checks the fixed fields
    /// as Postfix's postconf does, and normalizes the arguments.
    pub fn parse(text: &str) -> Result<Entry, String> {
        let mut fields = split_words(text)?;
        if fields.len() < FIELD_NAMES.len() {
            return Err(format!(
                "missing \"{}\" field in \"{}\"",
                FIELD_NAMES[fields.len()],
                text.trim_ascii()
            ));
        }
        let bad = |index: usize| {
            format!(
                "invalid {} field \"{}\" in \"{}\"",
                FIELD_NAMES[index],
                fields[index],
                text.trim_ascii()
            )
        };
        if !TYPES.contains(&fields[1].as_str()) {
            return Err(bad(1));
        }
        if let Some(index) = (2..=4).find(|&i| !matches!(fields[i].as_str(), "y" | "n" | "-")) {
            return Err(bad(index));
        }
        let wakeup = fields[5].strip_suffix('?').unwrap_or(&fields[5]);
        if wakeup != "-" && !is_number(wakeup) {
            return Err(bad(5));
        }
        if fields[6] != "-" && !is_number(&fields[6]) {
            return Err(bad(6));
        }
        normalize_arguments(&mut fields);
        Ok(Entry { fields })
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.fields[0]
    }

    /// The service type.
    pub fn kind(&self) -> &str {
        &self.fields[1]
    }

    /// The command (program name).
    pub fn command(&self) -> &str {
        &self.fields[7]
    }

    /// The `-o name=value` overrides, in order.
    pub fn overrides(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        let mut i = FIELD_NAMES.len();
        while i < self.fields.len() {
            let arg = &self.fields[i];
            if !arg.starts_with('-') || arg == "--" {
                break;
            }
            if arg == "-o"
                && let Some(value) = self.fields.get(i + 1)
            {
                if let Some((name, value)) = value.split_once('=') {
                    out.push((name, value));
                }
                i += 1;
            }
            i += 1;
        }
        out
    }

    /// The entry in Postfix's `postconf -M` layout: fixed fields at their columns, then the
    /// arguments. With `fold`, each `-o` option goes on its own indented line and long lines
    /// are wrapped (`-Mf`, and what `-Me` writes). `expand` rewrites `-o` values (`-x`).
    pub fn format(&self, fold: bool, expand: Option<&dyn Fn(&str) -> String>) -> String {
        let mut out = String::new();
        let mut line_len = 0;
        for (field, goal) in self.fields.iter().zip(COLUMNS) {
            if line_len > 0 {
                loop {
                    out.push(' ');
                    line_len += 1;
                    if line_len >= goal {
                        break;
                    }
                }
            }
            out.push_str(field);
            line_len += field.len();
        }
        let mut in_options = true;
        let mut i = FIELD_NAMES.len();
        while i < self.fields.len() {
            let arg = &self.fields[i];
            let mut arg_len = arg.len();
            let mut value: Option<String> = None;
            let mut braces = false;
            if in_options && (!arg.starts_with('-') || arg == "--") {
                in_options = false;
            }
            if in_options {
                if arg.as_bytes().get(1) == Some(&b'o')
                    && let Some(raw) = self.fields.get(i + 1)
                {
                    // An option with a value starts a new line.
                    line_len = LINE_LIMIT;
                    let shown = match (arg.as_str(), expand, raw.split_once('=')) {
                        ("-o", Some(expand), Some((name, v))) => {
                            format!("{name}={}", expand(v))
                        }
                        _ => raw.clone(),
                    };
                    braces = has_blank(&shown);
                    arg_len += shown.len() + 3 + if braces { 2 } else { 0 };
                    value = Some(shown);
                }
            } else {
                // Postfix forgets the braces on the first argument; posthorn does not, so
                // that the output reads back the same.
                braces = has_blank(arg) || arg.is_empty();
                if braces {
                    arg_len += 2;
                }
            }
            if line_len > INDENT.len() {
                if !fold || line_len + 1 + arg_len < LINE_LIMIT {
                    out.push(' ');
                    line_len += 1;
                } else {
                    out.push('\n');
                    out.push_str(INDENT);
                    line_len = INDENT.len();
                }
            }
            let wrap = braces && value.is_none();
            if wrap {
                out.push('{');
            }
            out.push_str(arg);
            if wrap {
                out.push('}');
            }
            line_len += arg.len() + if wrap { 2 } else { 0 };
            if let Some(value) = value {
                out.push(' ');
                if braces {
                    out.push('{');
                }
                out.push_str(&value);
                if braces {
                    out.push('}');
                }
                i += 1;
                // An option with a value ends its line.
                line_len = LINE_LIMIT;
            }
            i += 1;
        }
        out.push('\n');
        out
    }
}

/// Whether text is one or more ASCII digits.
fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether text contains master.cf word separators.
fn has_blank(text: &str) -> bool {
    text.contains([' ', '\t', '\r', '\n'])
}

/// Splits at whitespace outside `{ }` (Postfix's argv_splitq with braces).
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut depth = 0usize;
    let mut in_word = false;
    for c in text.chars() {
        if depth == 0 && c.is_ascii_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            continue;
        }
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                return Err(format!("unbalanced '}}' in \"{}\"", text.trim_ascii()));
            }
            '}' => depth -= 1,
            _ => {}
        }
        word.push(c);
        in_word = true;
    }
    if depth > 0 {
        return Err(format!("missing '}}' in \"{}\"", text.trim_ascii()));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `{ text }` without braces and surrounding whitespace; other text as it is.
fn unwrap_braces(word: &str) -> String {
    match word.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
        Some(inner) if balanced(inner) => inner.trim_ascii().to_string(),
        _ => word.to_string(),
    }
}

/// Whether braces in text are balanced (so that `{a}{b}` is not taken as one group).
fn balanced(text: &str) -> bool {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// Brings the arguments after the command into canonical form, as Postfix's postconf:
/// `-oname=value` becomes `-o name=value`, `-vo x=y` becomes `-v -o x=y`, `{ name = value }`
/// after `-o` becomes `name=value`, and `{ text }` arguments lose their braces.
fn normalize_arguments(fields: &mut Vec<String>) {
    let mut i = FIELD_NAMES.len();
    while i < fields.len() {
        let arg = fields[i].clone();
        if !arg.starts_with('-') || arg == "--" {
            break;
        }
        // "-vozz" is "-v" followed by "-ozz".
        if arg.len() > 2
            && arg.as_bytes()[1] != b'o'
            && let Some(pos) = arg[2..].find('o')
        {
            let split = pos + 2;
            fields[i] = arg[..split].to_string();
            fields.insert(i + 1, format!("-{}", &arg[split..]));
            i += 1;
            continue;
        }
        if arg.as_bytes().get(1) != Some(&b'o') {
            i += 1;
            continue;
        }
        if arg.len() > 2 {
            fields[i] = "-o".to_string();
            fields.insert(i + 1, arg[2..].to_string());
        } else if i + 1 >= fields.len() {
            break;
        }
        i += 1;
        if fields[i].starts_with('{') {
            let inner = unwrap_braces(&fields[i]);
            fields[i] = match crate::args::split_nameval(&inner) {
                Ok((name, value)) => format!("{name}={value}"),
                Err(_) => inner,
            };
        }
        i += 1;
    }
    for field in fields.iter_mut().skip(i) {
        if field.starts_with('{') {
            *field = unwrap_braces(field);
        }
    }
}

/// A service pattern: `name`, `name/type`, where either part may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The argument as given.
    pub raw: String,
    /// The name, `None` for `*`.
    name: Option<String>,
    /// The type, `None` for `*` or when omitted.
    kind: Option<String>,
}

impl Pattern {
    /// Parses a pattern; `need_type` requires the `/type` part (for edits).
    pub fn parse(raw: &str, need_type: bool) -> Option<Pattern> {
        if raw.starts_with('/') {
            return None;
        }
        let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty()).collect();
        let wanted = if need_type { 2..=2 } else { 1..=2 };
        if !wanted.contains(&parts.len()) || parts.iter().any(|p| *p != "*" && p.contains('*')) {
            return None;
        }
        let part = |i: usize| {
            parts
                .get(i)
                .filter(|p| **p != "*")
                .map(|p| (*p).to_string())
        };
        Some(Pattern {
            raw: raw.to_string(),
            name: part(0),
            kind: part(1),
        })
    }

    /// Whether the pattern matches a service.
    pub fn matches(&self, name: &str, kind: &str) -> bool {
        self.name.as_deref().is_none_or(|n| n == name)
            && self.kind.as_deref().is_none_or(|k| k == kind)
    }
}

/// Reads every entry of master.cf text, with its first line number.
pub fn read_entries(text: &str) -> Result<Vec<(usize, Entry)>, String> {
    let lines = lines::split(text);
    lines::logical(&lines)
        .iter()
        .map(|logical| {
            let number = lines[logical.start].number;
            Entry::parse(&logical.text(&lines))
                .map(|entry| (number, entry))
                .map_err(|e| format!("line {number}: {e}"))
        })
        .collect()
}

/// What to do with the entries that a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace the first match (or the entry with the new entry's name and type) with this
    /// entry, remove further matches; append it when nothing matches (`-Me`).
    Set(Entry),
    /// Remove matching entries (`-MX`).
    Remove,
    /// Comment out matching entries (`-M#`).
    CommentOut,
}

/// Applies edit requests to master.cf text, as Postfix's `postconf -M` edits do. Comment and
/// blank lines are kept; a replaced entry is written in the folded layout; an entry that is
/// already equal to its replacement is left as written. `not_found` lists the patterns of
/// `-MX`/`-M#` requests that matched nothing. `file` names the file in errors.
pub fn edit_master(
    text: &str,
    requests: &[(Pattern, Action)],
    file: &str,
) -> Result<Edited, String> {
    let lines = lines::split(text);
    let logical = lines::logical(&lines);
    let owners = lines::owners(&lines, &logical);
    let mut matches = vec![0usize; requests.len()];
    let mut decisions = Vec::with_capacity(logical.len());
    for entry in &logical {
        let start = &lines[entry.start];
        let mut words = start.content().split_ascii_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            return Err(format!(
                "{file}: line {}: specify service name and type on the same line",
                start.number
            ));
        };
        let mut matched: Option<&Action> = None;
        let mut replacement: Option<&Entry> = None;
        for (n, (pattern, action)) in requests.iter().enumerate() {
            let own =
                matches!(action, Action::Set(new) if new.name() == name && new.kind() == kind);
            if pattern.matches(name, kind) || own {
                matches[n] += 1;
                matched = Some(action);
                if let Action::Set(new) = action
                    && matches[n] == 1
                {
                    replacement = Some(new);
                }
            }
        }
        decisions.push(match (replacement, matched) {
            (Some(new), _) => {
                if Entry::parse(&entry.text(&lines)).as_ref() == Ok(new) {
                    Decision::Keep
                } else {
                    Decision::Replace(new.format(true, None))
                }
            }
            (None, Some(Action::CommentOut)) => Decision::Comment,
            (None, Some(_)) => Decision::Remove,
            (None, None) => Decision::Keep,
        });
    }

    let mut out = lines::render(&lines, &owners, &decisions);
    let mut not_found = Vec::new();
    for ((pattern, action), count) in requests.iter().zip(&matches) {
        if *count > 0 {
            continue;
        }
        match action {
            Action::Set(new) => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&new.format(true, None));
            }
            Action::Remove | Action::CommentOut => not_found.push(pattern.raw.clone()),
        }
    }
    Ok(Edited {
        text: out,
        warnings: Vec::new(),
        not_found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Entry {
        Entry::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn columns_follow_postfix() {
        assert_eq!(
            entry("smtp inet n - n - - smtpd").format(false, None),
            "smtp       inet  n       -       n       -       -       smtpd\n"
        );
        assert_eq!(
            entry("tlsmgr unix - - n 1000? 1 tlsmgr").format(false, None),
            "tlsmgr     unix  -       -       n       1000?   1       tlsmgr\n"
        );
        // Long fields push the rest right, with at least one space.
        assert_eq!(
            entry("127.0.0.1:10025 inet n - n - - smtpd").format(false, None),
            "127.0.0.1:10025 inet n   -       n       -       -       smtpd\n"
        );
        assert_eq!(
            entry("postlog unix-dgram n - n - 1 postlogd").format(false, None),
            "postlog    unix-dgram n  -       n       -       1       postlogd\n"
        );
    }

    #[test]
    fn options_are_normalized() {
        let e = entry(
            "submission inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  -o { smtpd_tls_security_level = encrypt }\n  -osmtpd_sasl_auth_enable=yes -vo smtpd_helo_required=yes",
        );
        assert_eq!(
            e.format(false, None),
            "submission inet  n       -       n       -       -       smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -v -o smtpd_helo_required=yes\n"
        );
        assert_eq!(
            e.overrides(),
            vec![
                ("syslog_name", "postfix/submission"),
                ("smtpd_tls_security_level", "encrypt"),
                ("smtpd_sasl_auth_enable", "yes"),
                ("smtpd_helo_required", "yes"),
            ]
        );
        assert_eq!(
            e.format(true, None),
            "submission inet  n       -       n       -       -       smtpd\n    -o syslog_name=postfix/submission\n    -o smtpd_tls_security_level=encrypt\n    -o smtpd_sasl_auth_enable=yes\n    -v\n    -o smtpd_helo_required=yes\n"
        );
    }

    #[test]
    fn values_with_blanks_keep_braces() {
        let e = entry("x unix - - n - - smtpd -o { smtpd_banner = $myhostname ESMTP  hi }");
        assert_eq!(
            e.format(true, None),
            "x          unix  -       -       n       -       -       smtpd\n    -o {smtpd_banner=$myhostname ESMTP  hi}\n"
        );
        let e = entry(
            "maildrop unix - n n - - pipe flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient} { a b }",
        );
        assert_eq!(
            e.format(false, None),
            "maildrop   unix  -       n       n       -       -       pipe flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient} {a b}\n"
        );
        // The output parses back to the same entry, in posthorn-config too.
        for e in [
            entry("x unix - - n - - smtpd -o { smtpd_banner = $myhostname ESMTP  hi }"),
            entry("m unix - n n - - pipe { a b } c"),
        ] {
            for fold in [false, true] {
                let shown = e.format(fold, None);
                assert_eq!(entry(&shown), e, "{shown}");
                posthorn_config::MasterCf::parse_str(
                    &shown,
                    "master.cf",
                    &posthorn_config::Config::defaults(),
                )
                .unwrap_or_else(|err| panic!("{shown}: {err}"));
            }
        }
    }

    #[test]
    fn folding_wraps_long_argument_lists() {
        let e = entry(
            "maildrop unix - n n - - pipe flags=DRXhu user=vmail argv=/usr/local/bin/maildrop -d ${recipient} ${extension} ${nexthop}",
        );
        let folded = e.format(true, None);
        assert_eq!(
            folded,
            "maildrop   unix  -       n       n       -       -       pipe flags=DRXhu\n    user=vmail argv=/usr/local/bin/maildrop -d ${recipient} ${extension}\n    ${nexthop}\n"
        );
        assert!(folded.lines().all(|l| l.len() < LINE_LIMIT), "{folded}");
    }

    #[test]
    fn expansion_applies_to_option_values() {
        let e = entry("x unix - - n - - smtpd -o a=$b -v");
        let expand = |v: &str| v.replace("$b", "B");
        assert_eq!(
            e.format(false, Some(&expand)),
            "x          unix  -       -       n       -       -       smtpd -o a=B -v\n"
        );
    }

    #[test]
    fn bad_entries_are_rejected() {
        for (text, needle) in [
            ("smtp inet n - n - -", "missing \"command\" field"),
            ("smtp tcp n - n - - smtpd", "invalid type field \"tcp\""),
            ("smtp inet yes - n - - smtpd", "invalid private field"),
            ("smtp inet n - N - - smtpd", "invalid chroot field"),
            ("smtp inet n - n soon - smtpd", "invalid wakeup field"),
            ("smtp inet n - n - many smtpd", "invalid maxproc field"),
            ("x unix - - n - - smtpd -o { a = b", "missing '}'"),
            ("x unix - - n - - smtpd a }", "unbalanced '}'"),
        ] {
            let err = Entry::parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(Entry::parse("pickup unix n - n 60? 1 pickup").is_ok());
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse("smtp", false).expect("smtp");
        assert!(p.matches("smtp", "inet") && p.matches("smtp", "unix"));
        assert!(!p.matches("smtps", "inet"));
        let p = Pattern::parse("smtp/inet", true).expect("smtp/inet");
        assert!(p.matches("smtp", "inet") && !p.matches("smtp", "unix"));
        let p = Pattern::parse("*/unix", true).expect("*/unix");
        assert!(p.matches("local", "unix") && !p.matches("smtp", "inet"));
        assert!(Pattern::parse("smtp", true).is_none());
        assert!(Pattern::parse("/inet", false).is_none());
        assert!(Pattern::parse("a/b/c", false).is_none());
        assert!(Pattern::parse("sm*", false).is_none());
    }

    const MASTER: &str = "\
# header
smtp      inet  n       -       n       -       -       smtpd
#  -o commented=out
  -o smtpd_helo_required=yes
pickup    unix  n       -       n       60      1       pickup

local     unix  -       n       n       -       -       local
";

    fn set(pattern: &str, text: &str) -> (Pattern, Action) {
        (
            Pattern::parse(pattern, true).expect("pattern"),
            Action::Set(entry(text)),
        )
    }

    #[test]
    fn set_replaces_an_entry_with_its_continuations() {
        let e = edit_master(
            MASTER,
            &[set(
                "smtp/inet",
                "smtp inet n - n - 10 smtpd -o smtpd_tls_wrappermode=yes",
            )],
            "master.cf",
        )
        .expect("edits");
        assert_eq!(
            e.text,
            "\
# header
smtp       inet  n       -       n       -       10      smtpd
    -o smtpd_tls_wrappermode=yes
#  -o commented=out
pickup    unix  n       -       n       60      1       pickup

local     unix  -       n       n       -       -       local
"
        );
        let lines = read_entries(&e.text).expect("reads back");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn set_appends_or_keeps() {
        let e = edit_master(
            MASTER,
            &[set("relay/unix", "relay unix - - n - - smtp")],
            "master.cf",
        )
        .expect("edits");
        assert_eq!(
            e.text,
            format!("{MASTER}relay      unix  -       -       n       -       -       smtp\n")
        );
        // The same entry, written differently: nothing changes.
        let e = edit_master(
            MASTER,
            &[set("pickup/unix", "pickup unix n - n 60 1 pickup")],
            "master.cf",
        )
        .expect("edits");
        assert_eq!(e.text, MASTER);
        // Renaming through the pattern: the old entry is replaced in place.
        let e = edit_master(
            MASTER,
            &[set("pickup/unix", "pickup2 unix n - n 60 1 pickup")],
            "master.cf",
        )
        .expect("edits");
        assert!(e.text.contains("\npickup2    unix"), "{}", e.text);
        assert!(!e.text.contains("\npickup "), "{}", e.text);
    }

    #[test]
    fn remove_and_comment_out() {
        let p = |s: &str| Pattern::parse(s, true).expect("pattern");
        let e =
            edit_master(MASTER, &[(p("smtp/inet"), Action::Remove)], "master.cf").expect("edits");
        assert_eq!(
            e.text,
            "\
# header
#  -o commented=out
pickup    unix  n       -       n       60      1       pickup

local     unix  -       n       n       -       -       local
"
        );
        let e = edit_master(MASTER, &[(p("smtp/inet"), Action::CommentOut)], "master.cf")
            .expect("edits");
        assert_eq!(
            e.text,
            "\
# header
#smtp      inet  n       -       n       -       -       smtpd
#  -o commented=out
#  -o smtpd_helo_required=yes
pickup    unix  n       -       n       60      1       pickup

local     unix  -       n       n       -       -       local
"
        );
        let e =
            edit_master(MASTER, &[(p("nope/unix"), Action::Remove)], "master.cf").expect("edits");
        assert_eq!(e.text, MASTER);
        assert_eq!(e.not_found, vec!["nope/unix"]);
    }

    #[test]
    fn a_start_line_needs_name_and_type() {
        let err = edit_master(
            "smtp\n  inet n - n - - smtpd\n",
            &[(
                Pattern::parse("x/unix", true).expect("pattern"),
                Action::Remove,
            )],
            "master.cf",
        )
        .expect_err("one word");
        assert_eq!(
            err,
            "master.cf: line 1: specify service name and type on the same line"
        );
    }

    #[test]
    fn the_project_master_cf_reads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/master.cf");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let entries = read_entries(&text).expect("etc/master.cf");
        assert!(entries.iter().any(|(_, e)| e.name() == "pickup"));
    }
}
