//! What goes wrong with configuration files: [`ConfigError`] stops loading a file,
//! [`ConfigDiag`] is a finding of [`crate::Config::validate`] that the caller reports.

use std::fmt;
use std::path::PathBuf;

/// How bad a [`ConfigDiag`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Suspicious but usable (unknown parameter, undefined `$name`).
    Warning,
    /// The value cannot be used; programs should refuse to start.
    Error,
}

impl Severity {
    /// The Postfix log word: `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about a configuration, located in a file.
///
/// Displays as `main.cf:12: warning: unknown parameter: foo` (the file as given when the
/// configuration was loaded); without a line number (`line == 0`) as `main.cf: warning: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiag {
    /// The file the finding is about, as given when it was read.
    pub file: String,
    /// 1-based line of the (first line of the) entry, 0 when no line applies.
    pub line: usize,
    /// Warning or error.
    pub severity: Severity,
    /// What is wrong, without file and severity.
    pub message: String,
}

impl fmt::Display for ConfigDiag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.severity, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.severity, self.message
            )
        }
    }
}

/// Why a main.cf or master.cf could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A line does not follow the file's syntax.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file, as given.
        file: String,
        /// 1-based line number (first line of a continued entry).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A field or setting has a value that cannot be used.
    #[error("{file}:{line}: bad {name} value: {message}")]
    Value {
        /// The file, as given.
        file: String,
        /// 1-based line number (first line of a continued entry).
        line: usize,
        /// The field or parameter name, e.g. `maxproc`.
        name: String,
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let diag = ConfigDiag {
            file: "main.cf".into(),
            line: 12,
            severity: Severity::Warning,
            message: "unknown parameter: foo".into(),
        };
        assert_eq!(
            diag.to_string(),
            "main.cf:12: warning: unknown parameter: foo"
        );
        let diag = ConfigDiag {
            line: 0,
            severity: Severity::Error,
            ..diag
        };
        assert_eq!(diag.to_string(), "main.cf: error: unknown parameter: foo");
        let err = ConfigError::Syntax {
            file: "/etc/posthorn/main.cf".into(),
            line: 3,
            message: "missing '='".into(),
        };
        assert_eq!(err.to_string(), "/etc/posthorn/main.cf:3: missing '='");
        let err = ConfigError::Value {
            file: "master.cf".into(),
            line: 7,
            name: "maxproc".into(),
            message: "\"x\" is not a number or '-'".into(),
        };
        assert_eq!(
            err.to_string(),
            "master.cf:7: bad maxproc value: \"x\" is not a number or '-'"
        );
    }
}
