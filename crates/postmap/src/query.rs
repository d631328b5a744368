//! `-q` (query) and `-s` (list): reading tables through posthorn_tables::Table, the same
//! code the daemons use, so `hash:`, `inline:{...}` and `static:` all work.

use std::io::{BufRead, Write};
use std::sync::Arc;

use posthorn_tables::{HashTable, Table};

use crate::args::{Keys, TableArg};
use crate::{Command, Fatal, Tool, exit, os_error};

impl Tool {
    /// One output line: `key<TAB>value` (postmap) or `name:<TAB>value` (postalias, with the
    /// name quoted when aliases(5) syntax needs it, so the output can be read back).
    pub(crate) fn format_entry(self, key: &str, value: &str) -> String {
        match self {
            Tool::Postmap => format!("{key}\t{value}"),
            Tool::Postalias => {
                let needs_quotes = key.is_empty()
                    || key.starts_with('#')
                    || key.contains(|c: char| c.is_whitespace() || c == ':' || c == '"');
                if needs_quotes {
                    let escaped = key.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("\"{escaped}\":\t{value}")
                } else {
                    format!("{key}:\t{value}")
                }
            }
        }
    }
}

impl Command<'_> {
    /// `-q KEY` prints the first value found in the tables (in order); `-q -` prints
    /// `key<TAB>value` for each key from standard input that is found. Exit 0 when something
    /// was found, 1 otherwise.
    pub(crate) fn query(
        &mut self,
        args: &[TableArg],
        keys: &Keys,
        stdin: &mut dyn BufRead,
        stdout: &mut dyn Write,
    ) -> Result<i32, Fatal> {
        let tables = self.open_all(args)?;
        let tool = self.tool;
        let mut found = false;
        match keys {
            Keys::One(key) => {
                if let Some(value) = first_value(&tables, key)? {
                    writeln!(stdout, "{value}").map_err(|e| Fatal::output(&e))?;
                    found = true;
                }
            }
            Keys::Stdin => {
                each_key(stdin, &mut |w| self.warn(w), &mut |key| {
                    if let Some(value) = first_value(&tables, key)? {
                        writeln!(stdout, "{}", tool.format_entry(key, &value))
                            .map_err(|e| Fatal::output(&e))?;
                        found = true;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(if found { exit::OK } else { exit::NOT_FOUND })
    }

    /// `-s`: prints every entry of each table, in table order (for `hash:` that is the
    /// order of the source file, then entries added with `-i`).
    pub(crate) fn dump(&mut self, args: &[TableArg], stdout: &mut dyn Write) -> Result<i32, Fatal> {
        let tables = self.open_all(args)?;
        for table in &tables {
            let entries: Box<dyn Iterator<Item = (&str, &str)>> = match table {
                Opened::Hash(snapshot) => Box::new(snapshot.iter()),
                Opened::Other(Table::Inline(inline)) => Box::new(inline.iter()),
                Opened::Other(other) => {
                    return Err(Fatal::new(
                        exit::USAGE,
                        format!(
                            "table {other}: listing (-s) is not supported for static: tables; \
                             query it with -q"
                        ),
                    ));
                }
            };
            for (key, value) in entries {
                writeln!(stdout, "{}", self.tool.format_entry(key, value))
                    .map_err(|e| Fatal::output(&e))?;
            }
        }
        Ok(exit::OK)
    }

    /// Opens every table before the first lookup, as Postfix does, so that a bad name is
    /// reported even when an earlier table has the answer.
    fn open_all(&mut self, args: &[TableArg]) -> Result<Vec<Opened>, Fatal> {
        let mut tables = Vec::with_capacity(args.len());
        for arg in args {
            let table = Table::open(&arg.spec()).map_err(|err| {
                let mut fatal = Fatal::table(err);
                if arg.defaulted && fatal.code == exit::USAGE {
                    fatal.code = exit::CONFIG;
                    fatal
                        .message
                        .push_str(" (the type comes from default_database_type in main.cf)");
                }
                fatal
            })?;
            tables.push(match table {
                Table::Hash(db) => {
                    if db.source_is_newer() {
                        self.warn(format_args!(
                            "database {} is older than source file {}",
                            db.path().display(),
                            db.source_path().display()
                        ));
                    }
                    Opened::Hash(db.snapshot().map_err(Fatal::table)?)
                }
                other => Opened::Other(other),
            });
        }
        Ok(tables)
    }
}

/// A table opened for `-q` or `-s`. A command uses one snapshot of a `hash:` file
/// throughout, without the per-lookup check for a rebuild that daemons need.
enum Opened {
    /// One checked snapshot of a `.db` file.
    Hash(Arc<HashTable>),
    /// `inline:` or `static:`.
    Other(Table),
}

/// The first value for `key` in `tables`.
fn first_value(tables: &[Opened], key: &str) -> Result<Option<String>, Fatal> {
    for table in tables {
        let value = match table {
            Opened::Hash(snapshot) => snapshot.get(key).map(str::to_owned),
            Opened::Other(table) => table.lookup(key).map_err(Fatal::table)?,
        };
        if value.is_some() {
            return Ok(value);
        }
    }
    Ok(None)
}

/// Reads keys one per line (without the line end, CR included); lines that are not UTF-8
/// are skipped with a warning.
pub(crate) fn read_keys(
    stdin: &mut dyn BufRead,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<String>, Fatal> {
    let mut keys = Vec::new();
    each_key(stdin, warn, &mut |key| {
        keys.push(key.to_owned());
        Ok(())
    })?;
    Ok(keys)
}

/// Calls `f` with each key read from `stdin`, as [`read_keys`] describes.
fn each_key(
    stdin: &mut dyn BufRead,
    warn: &mut dyn FnMut(String),
    f: &mut dyn FnMut(&str) -> Result<(), Fatal>,
) -> Result<(), Fatal> {
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = stdin.read_until(b'\n', &mut line).map_err(|err| {
            Fatal::new(
                exit::IOERR,
                format!("read standard input: {}", os_error(&err)),
            )
        })?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        match std::str::from_utf8(text) {
            Ok(key) => f(key)?,
            Err(_) => warn(format!("stdin, line {number}: invalid UTF-8; key skipped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats() {
        assert_eq!(Tool::Postmap.format_entry("k", "v w"), "k\tv w");
        assert_eq!(Tool::Postalias.format_entry("root", "a, b"), "root:\ta, b");
        assert_eq!(
            Tool::Postalias.format_entry("the boss", "x"),
            "\"the boss\":\tx"
        );
        assert_eq!(Tool::Postalias.format_entry("a\"b", "x"), "\"a\\\"b\":\tx");
    }

    #[test]
    fn keys_from_stdin() {
        let mut input: &[u8] = b"a\r\nB c\n\xff\nlast";
        let mut warnings = Vec::new();
        let keys = read_keys(&mut input, &mut |w| warnings.push(w)).unwrap();
        assert_eq!(keys, vec!["a", "B c", "last"]);
        assert_eq!(warnings, vec!["stdin, line 3: invalid UTF-8; key skipped"]);
    }
}
