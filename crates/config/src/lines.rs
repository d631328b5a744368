//! Reading Postfix-style configuration files (main.cf, master.cf): UTF-8 text split into
//! logical lines the way Postfix's readllines(3) does it.

use std::path::Path;

use crate::diag::ConfigError;

/// One logical line of a Postfix-style configuration file: a line and its continuations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// 1-based number of the first physical line.
    pub(crate) line: usize,
    /// The text, continuation lines joined with one space, trailing whitespace removed.
    pub(crate) text: String,
}

/// Splits a Postfix-style file into logical lines, as Postfix's readllines() does: a line
/// that starts with whitespace continues the logical line before it; blank lines and lines
/// whose first non-whitespace character is `#` are skipped and do not end a logical line.
/// Returns the lines, and the line numbers of text that starts with whitespace but continues
/// nothing (at the top of the file), which Postfix ignores with a warning.
pub(crate) fn logical_lines(text: &str) -> (Vec<LogicalLine>, Vec<usize>) {
    let mut lines = Vec::new();
    let mut orphans = Vec::new();
    let mut current: Option<LogicalLine> = None;
    let mut in_orphan = false;
    for (index, physical) in text.split('\n').enumerate() {
        let content = physical.trim_ascii();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if physical.starts_with(|c: char| c.is_ascii_whitespace()) {
            match current.as_mut() {
                Some(logical) => {
                    logical.text.push(' ');
                    logical.text.push_str(content);
                }
                None if !in_orphan => {
                    orphans.push(index + 1);
                    in_orphan = true;
                }
                None => {}
            }
            continue;
        }
        in_orphan = false;
        lines.extend(current.take());
        current = Some(LogicalLine {
            line: index + 1,
            text: physical.trim_ascii_end().to_string(),
        });
    }
    lines.extend(current);
    (lines, orphans)
}

/// Text shortened for a diagnostic.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Reads a configuration file as UTF-8 text.
pub(crate) fn read_text(path: &Path, file: &str) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let line = err.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ConfigError::Syntax {
            file: file.to_string(),
            line,
            message: "text is not valid UTF-8".to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_lines_follow_postfix() {
        let text = "a = 1\n  2\n#comment\n\n   3\nb=x\n # indented comment\n\tc\n";
        let (lines, orphans) = logical_lines(text);
        assert_eq!(
            lines,
            vec![
                LogicalLine {
                    line: 1,
                    text: "a = 1 2 3".into()
                },
                LogicalLine {
                    line: 6,
                    text: "b=x c".into()
                },
            ]
        );
        assert!(orphans.is_empty());
        let (lines, orphans) = logical_lines("  orphan\n  more\nx = 1");
        assert_eq!(lines.len(), 1);
        assert_eq!(orphans, vec![1]);
    }
}
