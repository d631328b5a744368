//! Source text of tables: Postfix's logical lines and the postmap(1) `key value` format.

use std::path::Path;

use crate::TableError;

/// Parses postmap(1) source text into `(key, value, line)` triples, in file order.
///
/// Each logical line is `key whitespace value`. A line that starts with whitespace continues
/// the previous logical line (the newline is dropped, the leading whitespace kept). Empty
/// lines, whitespace-only lines and lines whose first non-blank character is `#` are ignored,
/// also in the middle of a continued line. The value is trimmed; keys are returned as written
/// (folding happens when the table is built). `line` is where the logical line starts.
///
/// Unlike Postfix, which warns and skips, a key without a value and a continuation line with
/// no text before it are errors: a table is rebuilt atomically, so refusing costs nothing.
pub fn parse_map_source(
    text: &str,
    file: &str,
) -> Result<Vec<(String, String, usize)>, TableError> {
    let mut out = Vec::new();
    for (line, number) in logical_lines(text, file)? {
        let line = line.trim_end();
        let split = line.find(char::is_whitespace);
        let (key, value) = match split {
            Some(at) => (&line[..at], line[at..].trim()),
            None => (line, ""),
        };
        if value.is_empty() {
            return Err(TableError::Syntax {
                file: file.to_owned(),
                line: number,
                message: format!("expected format: key whitespace value (no value for \"{key}\")"),
            });
        }
        out.push((key.to_owned(), value.to_owned(), number));
    }
    Ok(out)
}

/// Splits text into Postfix logical lines: `(text, first physical line number)`.
pub(crate) fn logical_lines(text: &str, file: &str) -> Result<Vec<(String, usize)>, TableError> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let physical = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = physical.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let continues = physical.starts_with([' ', '\t']);
        if continues {
            match out.last_mut() {
                // Comment and blank lines in between do not end the logical line.
                Some((logical, _)) => logical.push_str(physical),
                None => {
                    return Err(TableError::Syntax {
                        file: file.to_owned(),
                        line: number,
                        message: "logical line must not start with whitespace".to_owned(),
                    });
                }
            }
        } else {
            out.push((physical.to_owned(), number));
        }
    }
    Ok(out)
}

/// Reads a source file as UTF-8 text; invalid UTF-8 is a syntax error naming the line.
pub(crate) fn read_text(path: &Path) -> Result<String, TableError> {
    let bytes = std::fs::read(path).map_err(|source| TableError::Io {
        path: path.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let line = 1 + err.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        TableError::Syntax {
            file: path.display().to_string(),
            line,
            message: "invalid UTF-8 text".to_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String, usize)> {
        parse_map_source(text, "virtual").unwrap()
    }

    #[test]
    fn simple_entries_and_comments() {
        let text = "# comment\n\nfoo@x.org   bar@y.org\n  # indented comment\nBaz\tqux quux  \n";
        assert_eq!(
            parse(text),
            vec![
                ("foo@x.org".into(), "bar@y.org".into(), 3),
                ("Baz".into(), "qux quux".into(), 5),
            ]
        );
    }

    #[test]
    fn continuation_lines_join_keeping_whitespace() {
        let text = "key first,\n    second,\n# comment inside\n\n\tthird\nnext value\n";
        assert_eq!(
            parse(text),
            vec![
                ("key".into(), "first,    second,\tthird".into(), 1),
                ("next".into(), "value".into(), 6),
            ]
        );
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        assert_eq!(
            parse("a 1\r\nb 2"),
            vec![("a".into(), "1".into(), 1), ("b".into(), "2".into(), 2)]
        );
    }

    #[test]
    fn key_without_value_is_an_error_with_line() {
        let err = parse_map_source("a 1\n\nlonely\n", "/etc/postfix/virtual").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/postfix/virtual, line 3: expected format: key whitespace value (no value for \"lonely\")"
        );
        // A value only on a continuation line is fine.
        assert_eq!(
            parse("lonely\n  value\n"),
            vec![("lonely".into(), "value".into(), 1)]
        );
    }

    #[test]
    fn leading_continuation_is_an_error() {
        let err = parse_map_source("# x\n   orphan value\n", "m").unwrap_err();
        assert!(matches!(err, TableError::Syntax { line: 2, .. }), "{err}");
    }

    #[test]
    fn invalid_utf8_names_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(&path, b"a 1\nb \xff\n").unwrap();
        let err = read_text(&path).unwrap_err();
        assert!(matches!(err, TableError::Syntax { line: 2, .. }), "{err}");
    }
}
