//! SMTP replies: a code, an enhanced status code (RFC 3463) and text, written to the wire.

use std::fmt;

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (`2.1.0`), empty for replies that carry none (220, 221 keep
    /// theirs where Postfix prints one).
    pub dsn: String,
    /// The text; several lines make a multi-line reply.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, dsn: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            dsn: dsn.to_string(),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced status code (greeting, HELO).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            dsn: String::new(),
            lines: vec![text.into()],
        }
    }

    /// Whether this is a 4xx or 5xx reply.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Whether this is a 4xx reply.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Appends the reply to `out` in wire format, CRLF-terminated.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map_or("", String::as_str);
            let sep = if i + 1 < n { '-' } else { ' ' };
            let line = if self.dsn.is_empty() {
                format!("{}{sep}{text}\r\n", self.code)
            } else {
                format!("{}{sep}{} {text}\r\n", self.code, self.dsn)
            };
            out.extend_from_slice(line.as_bytes());
        }
    }

    /// The first line as a log line shows it: `554 5.7.1 text`.
    pub fn summary(&self) -> String {
        let text = self.lines.first().map_or("", String::as_str);
        if self.dsn.is_empty() {
            format!("{} {text}", self.code)
        } else {
            format!("{} {} {text}", self.code, self.dsn)
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let mut out = Vec::new();
        Reply::new(250, "2.1.0", "Ok").write_to(&mut out);
        Reply {
            code: 250,
            dsn: String::new(),
            lines: vec!["mx".into(), "PIPELINING".into()],
        }
        .write_to(&mut out);
        assert_eq!(out, b"250 2.1.0 Ok\r\n250-mx\r\n250 PIPELINING\r\n");
        assert_eq!(
            Reply::new(554, "5.7.1", "no").summary(),
            "554 5.7.1 no".to_string()
        );
    }
}
