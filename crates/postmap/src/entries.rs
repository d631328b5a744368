//! Table entries from source text or standard input, and how new entries meet old ones:
//! the duplicate policy of `-r` / `-w` and the warnings with file and line.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use posthorn_tables::{HashTable, TableError, join_alias_targets, parse_aliases, parse_map_source};

use crate::{Fatal, Tool, exit, os_error};

/// One entry read from source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key, folded to lower case as the table stores it.
    pub key: String,
    /// The value as stored (for aliases: the targets joined by `join_alias_targets`).
    pub value: String,
    /// The line where the entry starts.
    pub line: usize,
}

/// What to do when a key is already present (earlier in the input, or in the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Duplicates {
    /// Keep the first value and warn `duplicate entry` (Postfix's default).
    Warn,
    /// `-r`: the later value replaces the earlier one, quietly.
    Replace,
    /// `-w`: keep the first value, quietly.
    Ignore,
}

impl Tool {
    /// Parses source text in this tool's syntax; `origin` names it in messages.
    pub(crate) fn parse(self, text: &str, origin: &str) -> Result<Vec<Entry>, TableError> {
        Ok(match self {
            Tool::Postmap => parse_map_source(text, origin)?
                .into_iter()
                .map(|(key, value, line)| Entry {
                    key: fold(key),
                    value,
                    line,
                })
                .collect(),
            Tool::Postalias => parse_aliases(text, origin)?
                .into_iter()
                .map(|e| Entry {
                    value: join_alias_targets(&e.targets),
                    key: e.name,
                    line: e.line,
                })
                .collect(),
        })
    }
}

/// Folds a key to lower case exactly as posthorn-tables does (ASCII fast path).
pub(crate) fn fold(mut key: String) -> String {
    if key.is_ascii() {
        key.make_ascii_lowercase();
        key
    } else {
        key.to_lowercase()
    }
}

/// Reads a source file as UTF-8 text.
pub(crate) fn read_source(path: &Path, tool: Tool) -> Result<String, Fatal> {
    let bytes = std::fs::read(path).map_err(|err| {
        let hint = match err.kind() {
            std::io::ErrorKind::NotFound => format!(
                " (create the source file first, or add entries from standard input with {} -i)",
                tool.name()
            ),
            std::io::ErrorKind::PermissionDenied => {
                " (run the command as a user who may read it)".to_owned()
            }
            _ => String::new(),
        };
        Fatal::new(
            exit::NOINPUT,
            format!("open {}: {}{hint}", path.display(), os_error(&err)),
        )
    })?;
    decode(bytes, &path.display().to_string())
}

/// Reads all of standard input as UTF-8 text (for `-i`).
pub(crate) fn read_stdin(stdin: &mut dyn BufRead) -> Result<String, Fatal> {
    let mut bytes = Vec::new();
    stdin.read_to_end(&mut bytes).map_err(|err| {
        Fatal::new(
            exit::IOERR,
            format!("read standard input: {}", os_error(&err)),
        )
    })?;
    decode(bytes, "stdin")
}

/// Checks that `bytes` are UTF-8; the error names the line, as a syntax error does.
fn decode(bytes: Vec<u8>, origin: &str) -> Result<String, Fatal> {
    String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let line = 1 + err.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Fatal::table(TableError::Syntax {
            file: origin.to_owned(),
            line,
            message: "invalid UTF-8 text (posthorn tables hold UTF-8 only)".to_owned(),
        })
    })
}

/// The outcome of [`merge`]: the table's new contents and the warnings to print.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    /// `(key, value)` in table order: the existing entries, then the new keys in input order.
    pub entries: Vec<(String, String)>,
    /// `origin, line N: duplicate entry: "key"` for each duplicate under [`Duplicates::Warn`].
    pub warnings: Vec<String>,
}

/// Adds `added` to the entries of `existing` (none for a fresh build), applying `policy` to
/// keys already present in `existing` or earlier in `added`. A replaced entry keeps its
/// position; new keys follow the existing ones in input order.
pub(crate) fn merge(
    existing: Option<&HashTable>,
    mut added: Vec<Entry>,
    policy: Duplicates,
    origin: &str,
) -> Merged {
    let mut warnings = Vec::new();
    let mut keep = vec![false; added.len()];
    // (earlier index, later index): the later value replaces the earlier one (-r).
    let mut overrides: Vec<(usize, usize)> = Vec::new();
    // Key in `existing` -> index in `added` of its replacement (-r).
    let mut replace_old: HashMap<String, usize> = HashMap::new();
    {
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(added.len());
        for (at, entry) in added.iter().enumerate() {
            let earlier = if existing.is_some_and(|t| t.get(&entry.key).is_some()) {
                None
            } else {
                match first.get(entry.key.as_str()) {
                    Some(&earlier) => Some(earlier),
                    None => {
                        first.insert(&entry.key, at);
                        keep[at] = true;
                        continue;
                    }
                }
            };
            match policy {
                Duplicates::Warn => warnings.push(format!(
                    "{origin}, line {}: duplicate entry: \"{}\"",
                    entry.line, entry.key
                )),
                Duplicates::Ignore => {}
                Duplicates::Replace => match earlier {
                    Some(earlier) => overrides.push((earlier, at)),
                    None => {
                        replace_old.insert(entry.key.clone(), at);
                    }
                },
            }
        }
    }
    for (earlier, later) in overrides {
        added[earlier].value = std::mem::take(&mut added[later].value);
    }
    let mut replacements: HashMap<String, String> = replace_old
        .into_iter()
        .map(|(key, at)| (key, std::mem::take(&mut added[at].value)))
        .collect();
    let old_len = existing.map_or(0, HashTable::len);
    let mut entries = Vec::with_capacity(old_len + added.len());
    if let Some(table) = existing {
        for (key, value) in table.iter() {
            let value = replacements.remove(key).unwrap_or_else(|| value.to_owned());
            entries.push((key.to_owned(), value));
        }
    }
    entries.extend(
        added
            .into_iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(e, _)| (e.key, e.value)),
    );
    Merged { entries, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tool: Tool, text: &str) -> Vec<Entry> {
        tool.parse(text, "src").unwrap()
    }

    fn pairs(merged: &Merged) -> Vec<(&str, &str)> {
        merged
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn table(dir: &Path, list: &[(&str, &str)]) -> HashTable {
        let db = dir.join("t.db");
        posthorn_tables::build_hash(
            &db,
            list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .unwrap();
        HashTable::open(&db).unwrap()
    }

    #[test]
    fn postmap_and_postalias_syntax() {
        assert_eq!(
            entries(Tool::Postmap, "User@X.org a b\n"),
            vec![Entry {
                key: "user@x.org".into(),
                value: "a b".into(),
                line: 1
            }]
        );
        assert_eq!(
            entries(Tool::Postalias, "# c\nRoot: a,\n  \"|cmd x, y\"\n"),
            vec![Entry {
                key: "root".into(),
                value: "a, \"|cmd x, y\"".into(),
                line: 2
            }]
        );
        assert_eq!(fold("ÄB".into()), "äb");
    }

    #[test]
    fn duplicates_in_one_input() {
        let input = entries(Tool::Postmap, "a 1\nb 2\nA 3\na 4\n");
        let m = merge(None, input.clone(), Duplicates::Warn, "src");
        assert_eq!(pairs(&m), vec![("a", "1"), ("b", "2")]);
        assert_eq!(
            m.warnings,
            vec![
                "src, line 3: duplicate entry: \"a\"",
                "src, line 4: duplicate entry: \"a\""
            ]
        );
        let m = merge(None, input.clone(), Duplicates::Ignore, "src");
        assert_eq!(pairs(&m), vec![("a", "1"), ("b", "2")]);
        assert!(m.warnings.is_empty());
        let m = merge(None, input, Duplicates::Replace, "src");
        assert_eq!(pairs(&m), vec![("a", "4"), ("b", "2")]);
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn additions_to_an_existing_table() {
        let dir = tempfile::tempdir().unwrap();
        let old = table(dir.path(), &[("a", "1"), ("b", "2")]);
        let input = entries(Tool::Postmap, "c 3\nB 20\nc 30\n");
        let m = merge(Some(&old), input.clone(), Duplicates::Warn, "stdin");
        assert_eq!(pairs(&m), vec![("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(
            m.warnings,
            vec![
                "stdin, line 2: duplicate entry: \"b\"",
                "stdin, line 3: duplicate entry: \"c\""
            ]
        );
        let m = merge(Some(&old), input, Duplicates::Replace, "stdin");
        assert_eq!(pairs(&m), vec![("a", "1"), ("b", "20"), ("c", "30")]);
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = decode(b"a 1\nb \xff\n".to_vec(), "stdin").unwrap_err();
        assert_eq!(err.code, exit::DATAERR);
        assert!(
            err.message.starts_with("stdin, line 2: invalid UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn missing_source_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_source(&dir.path().join("nope"), Tool::Postmap).unwrap_err();
        assert_eq!(err.code, exit::NOINPUT);
        assert!(
            err.message
                .contains("No such file or directory (create the source file"),
            "{err}"
        );
    }
}
