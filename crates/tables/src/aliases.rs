//! aliases(5) files: parsing, `postalias`, and the target-list encoding used in `.db` values.
//!
//! Targets are returned in internal (unquoted) form, the way Postfix's local(8) sees them
//! after parsing: `"|cmd with, comma"` becomes `|cmd with, comma`, `"/var/log/x y"` becomes
//! `/var/log/x y`, `"john doe"@example.org` becomes `john doe@example.org`. Inside double
//! quotes a backslash escapes the next character; outside quotes it is kept (`\root`).
//! A `.db` value stores the list re-quoted where needed ([`join_alias_targets`]), and
//! [`split_alias_targets`] turns it back into the same internal forms.

use std::path::Path;

use crate::builder::build;
use crate::hash::db_path_for;
use crate::source::{logical_lines, read_text};
use crate::{TableError, fold};

/// One `name: target, target, ...` entry of an aliases file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasEntry {
    /// The alias name, unquoted and lowercased.
    pub name: String,
    /// The targets in internal (unquoted) form, in file order; never empty.
    pub targets: Vec<String>,
    /// The line where the entry starts.
    pub line: usize,
}

/// Parses aliases(5) text.
///
/// Logical lines are as in [`crate::parse_map_source`] (continuation by leading whitespace,
/// `#` comment lines). The name ends at the first `:` outside double quotes, may be quoted
/// (`"a b": x`), and is lowercased. Targets are split at commas outside double quotes; empty
/// ones are dropped. Errors (with file and line): no colon, an empty or unquoted-blank name,
/// no target, an unbalanced double quote.
pub fn parse_aliases(text: &str, file: &str) -> Result<Vec<AliasEntry>, TableError> {
    let mut out = Vec::new();
    for (line, number) in logical_lines(text, file)? {
        let error = |message: String| TableError::Syntax {
            file: file.to_owned(),
            line: number,
            message,
        };
        let Some(colon) = find_unquoted(&line, ':') else {
            return Err(error(if has_unbalanced_quote(&line) {
                "unbalanced double quote".to_owned()
            } else {
                "need name:value pair (missing ':')".to_owned()
            }));
        };
        let raw_name = line[..colon].trim();
        if raw_name.is_empty() {
            return Err(error("empty alias name".to_owned()));
        }
        if find_unquoted(raw_name, ' ')
            .or_else(|| find_unquoted(raw_name, '\t'))
            .is_some()
        {
            return Err(error(format!(
                "alias name \"{raw_name}\" contains whitespace; quote it: \"...\":"
            )));
        }
        let name = fold(&unquote(raw_name)).into_owned();
        let value = &line[colon + 1..];
        if has_unbalanced_quote(value) {
            return Err(error(format!(
                "unbalanced double quote in the value of \"{name}\""
            )));
        }
        let targets = split_alias_targets(value);
        if targets.is_empty() {
            return Err(error(format!("no value for alias \"{name}\"")));
        }
        out.push(AliasEntry {
            name,
            targets,
            line: number,
        });
    }
    Ok(out)
}

/// Builds `<source>.db` from an aliases file (what `postalias` and `newaliases` do); returns
/// warnings such as `file, line N: duplicate entry: "name"` (the first entry wins).
///
/// Each value is [`join_alias_targets`] of the entry's targets. Postfix's `@` sentinel key
/// is not written.
pub fn postalias(source: &Path) -> Result<Vec<String>, TableError> {
    let text = read_text(source)?;
    let file = source.display().to_string();
    let entries = parse_aliases(&text, &file)?;
    build(
        &db_path_for(source),
        entries
            .into_iter()
            .map(|e| (e.name, join_alias_targets(&e.targets), Some(e.line))),
        Some(&file),
    )
}

/// Splits an alias value (or a stored `.db` value) into targets in internal form: at commas
/// (and newlines) outside double quotes, trimmed, unquoted; empty targets are dropped.
///
/// An unterminated quote runs to the end of the value.
pub fn split_alias_targets(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (at, ch) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && ch == '\\' {
            escaped = true;
        } else if ch == '"' {
            quoted = !quoted;
        } else if !quoted && (ch == ',' || ch == '\n') {
            push_target(&mut out, &value[start..at]);
            start = at + 1;
        }
    }
    push_target(&mut out, &value[start..]);
    out
}

/// Joins targets into one value with `", "`, quoting those that need it so that
/// [`split_alias_targets`] gives them back unchanged.
pub fn join_alias_targets(targets: &[String]) -> String {
    let mut out = String::new();
    for (n, target) in targets.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let needs_quotes = target.is_empty()
            || target.contains([',', '"', '\n'])
            || target.starts_with(char::is_whitespace)
            || target.ends_with(char::is_whitespace);
        if needs_quotes {
            out.push('"');
            for ch in target.chars() {
                if ch == '"' || ch == '\\' {
                    out.push('\\');
                }
                out.push(ch);
            }
            out.push('"');
        } else {
            out.push_str(target);
        }
    }
    out
}

/// Trims and unquotes one raw target and adds it unless empty.
fn push_target(out: &mut Vec<String>, raw: &str) {
    let target = unquote(raw.trim());
    if !target.is_empty() {
        out.push(target);
    }
}

/// Removes double quotes; inside them a backslash escapes the next character.
fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut quoted = false;
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            _ => out.push(ch),
        }
    }
    out
}

/// Byte index of the first `wanted` outside double quotes.
fn find_unquoted(text: &str, wanted: char) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, ch) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && ch == '\\' {
            escaped = true;
        } else if ch == '"' {
            quoted = !quoted;
        } else if !quoted && ch == wanted {
            return Some(at);
        }
    }
    None
}

/// Whether a double quote is left open at the end of `text`.
fn has_unbalanced_quote(text: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for ch in text.chars() {
        if escaped {
            escaped = false;
        } else if quoted && ch == '\\' {
            escaped = true;
        } else if ch == '"' {
            quoted = !quoted;
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashTable;

    fn parse(text: &str) -> Vec<AliasEntry> {
        parse_aliases(text, "/etc/aliases").unwrap()
    }

    fn entry(name: &str, targets: &[&str], line: usize) -> AliasEntry {
        AliasEntry {
            name: name.into(),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            line,
        }
    }

    #[test]
    fn typical_file() {
        let text = "\
# Basic system aliases
MAILER-DAEMON:\tpostmaster
postmaster: root
root: admin@example.org, \\root
log: \"|/usr/bin/logger -t mail, with comma\", /var/log/mail.copy
list: :include:/etc/mail/list.members
staff: alice,
    bob,
  # a comment in the middle
\tcarol@example.org
\"the boss\": \"john doe\"@example.org
";
        assert_eq!(
            parse(text),
            vec![
                entry("mailer-daemon", &["postmaster"], 2),
                entry("postmaster", &["root"], 3),
                entry("root", &["admin@example.org", "\\root"], 4),
                entry(
                    "log",
                    &["|/usr/bin/logger -t mail, with comma", "/var/log/mail.copy"],
                    5
                ),
                entry("list", &[":include:/etc/mail/list.members"], 6),
                entry("staff", &["alice", "bob", "carol@example.org"], 7),
                entry("the boss", &["john doe@example.org"], 11),
            ]
        );
    }

    #[test]
    fn escapes_inside_quotes() {
        let got = parse("a: \"|echo \\\"hi\\\" \\\\ there\", b\n");
        assert_eq!(got, vec![entry("a", &["|echo \"hi\" \\ there", "b"], 1)]);
    }

    #[test]
    fn errors_have_file_and_line() {
        let cases = [
            ("ok: x\nno colon here\n", 2, "need name:value pair"),
            ("ok: x\n: target\n", 2, "empty alias name"),
            ("two words: x\n", 1, "contains whitespace"),
            ("a:\n", 1, "no value for alias \"a\""),
            ("a: , ,\n", 1, "no value"),
            ("a: \"|cmd\n", 1, "unbalanced double quote"),
            ("\"a: x\n", 1, "unbalanced double quote"),
            ("  leading: x\n", 1, "must not start with whitespace"),
        ];
        for (text, line, message) in cases {
            let err = parse_aliases(text, "/etc/aliases").unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("/etc/aliases, line {line}: "))
                    && shown.contains(message),
                "{text:?}: {shown}"
            );
        }
    }

    #[test]
    fn join_and_split_are_inverse() {
        let targets: Vec<String> = [
            "|cmd with, comma",
            "/file",
            ":include:/path",
            "user@dom",
            "say \"hi\"",
            "back\\slash",
            " padded ",
            "\\root",
        ]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
        let joined = join_alias_targets(&targets);
        assert_eq!(
            joined,
            "\"|cmd with, comma\", /file, :include:/path, user@dom, \"say \\\"hi\\\"\", \
             back\\slash, \" padded \", \\root"
        );
        assert_eq!(split_alias_targets(&joined), targets);
    }

    #[test]
    fn split_is_lenient() {
        assert_eq!(split_alias_targets(" a ,, b\n c, "), vec!["a", "b", "c"]);
        assert_eq!(split_alias_targets("\"|open, quote"), vec!["|open, quote"]);
        assert_eq!(split_alias_targets(""), Vec::<String>::new());
    }

    #[test]
    fn postalias_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("aliases");
        std::fs::write(
            &src,
            "Root: admin, \"|/bin/cmd a, b\"\nroot: ignored\npostmaster: root\n",
        )
        .unwrap();
        let warnings = postalias(&src).unwrap();
        assert_eq!(
            warnings,
            vec![format!(
                "{}, line 2: duplicate entry: \"root\"",
                src.display()
            )]
        );
        let table = HashTable::open(&dir.path().join("aliases.db")).unwrap();
        assert_eq!(table.len(), 2);
        let value = table.get("ROOT").unwrap();
        assert_eq!(value, "admin, \"|/bin/cmd a, b\"");
        assert_eq!(split_alias_targets(value), vec!["admin", "|/bin/cmd a, b"]);
        assert_eq!(table.get("postmaster"), Some("root"));
    }

    #[test]
    fn postalias_reports_syntax_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("aliases");
        std::fs::write(&src, "a: b\nbroken\n").unwrap();
        let err = postalias(&src).unwrap_err();
        assert!(matches!(err, TableError::Syntax { line: 2, .. }), "{err}");
        assert!(!dir.path().join("aliases.db").exists());
    }
}
