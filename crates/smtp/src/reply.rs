//! Server replies as the client reads them: a strict multi-line parser (RFC 5321 4.2) and
//! the texts Postfix derives from a reply (enhanced status code, one-line text).

use thiserror::Error;

/// At most this many lines in one reply (a server cannot make the client buffer more).
pub const MAX_LINES: usize = 1000;
/// At most this many bytes in one reply line.
pub const MAX_LINE: usize = 4096;

/// One complete server reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The lines as received, code included, line ends removed (`250-PIPELINING`).
    pub lines: Vec<String>,
}

/// Why a reply line is not acceptable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReplyError {
    /// The line does not start with a valid code and separator.
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    /// A continuation line carries another code than the first line.
    #[error("reply code changed within a multi-line reply: {first} then {line:?}")]
    CodeChanged {
        /// The first line's code.
        first: u16,
        /// The offending line.
        line: String,
    },
    /// The reply has more than [`MAX_LINES`] lines.
    #[error("reply has more than {MAX_LINES} lines")]
    TooManyLines,
}

impl ServerReply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as one line, the way Postfix quotes it: lines joined with a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The text of each line after the code and separator (EHLO keywords).
    pub fn line_texts(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.get(4..).unwrap_or(""))
    }

    /// The enhanced status code of the first line when it has one of the right class, else
    /// the default for the code's class (`2.0.0`, `4.0.0`, `5.0.0`).
    pub fn dsn(&self) -> String {
        let class = char::from(b'0' + (self.code / 100).min(9) as u8);
        let first = self.lines.first().and_then(|l| l.get(4..)).unwrap_or("");
        let word = first.split(' ').next().unwrap_or("");
        if posthorn_message::dsn::is_status_code(word) && word.starts_with(class) {
            return word.to_string();
        }
        match class {
            '2' | '4' | '5' => format!("{class}.0.0"),
            _ => "5.0.0".to_string(),
        }
    }

    /// The same reply with 5xx codes turned into 4xx (a reply that must not bounce mail).
    pub fn softened(&self) -> ServerReply {
        if !self.is_permanent() {
            return self.clone();
        }
        ServerReply {
            code: self.code - 100,
            lines: self
                .lines
                .iter()
                .map(|l| {
                    let mut l = l.clone();
                    l.replace_range(0..1, "4");
                    if let Some(rest) = l.get(4..)
                        && rest.starts_with("5.")
                        && posthorn_message::dsn::is_status_code(
                            rest.split(' ').next().unwrap_or(""),
                        )
                    {
                        l.replace_range(4..5, "4");
                    }
                    l
                })
                .collect(),
        }
    }
}

/// Accumulates reply lines until the last line of a reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// A parser at the start of a reply.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Takes one line (without its CRLF or LF). Returns the reply after its last line.
    /// Each line must be `DDD`, `DDD text` or `DDD-text` with the first digit 2 to 5, and
    /// every line of a reply must carry the same code.
    pub fn feed(&mut self, raw: &[u8]) -> Result<Option<ServerReply>, ReplyError> {
        let line = String::from_utf8_lossy(raw).into_owned();
        let b = line.as_bytes();
        let valid = b.len() >= 3
            && (b'2'..=b'5').contains(&b[0])
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && (b.len() == 3 || b[3] == b' ' || b[3] == b'-');
        if !valid {
            return Err(ReplyError::Malformed(line));
        }
        let code =
            u16::from(b[0] - b'0') * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0');
        if let Some(first) = self.code
            && first != code
        {
            return Err(ReplyError::CodeChanged { first, line });
        }
        self.code = Some(code);
        let last = b.len() == 3 || b[3] == b' ';
        self.lines.push(line);
        if self.lines.len() > MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        if last {
            self.code = None;
            return Ok(Some(ServerReply {
                code,
                lines: std::mem::take(&mut self.lines),
            }));
        }
        Ok(None)
    }
}

/// Parses complete replies from `text` (tests and tools).
pub fn parse_all(text: &[u8]) -> Result<Vec<ServerReply>, ReplyError> {
    let mut p = ReplyParser::new();
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(r) = p.feed(line)? {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        let r =
            parse_all(b"220 mx.test ESMTP\r\n250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
                .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].code, 220);
        assert_eq!(r[1].lines.len(), 3);
        assert_eq!(
            r[1].line_texts().collect::<Vec<_>>(),
            ["mx.test", "PIPELINING", "SIZE 1000"]
        );
        assert_eq!(r[1].text(), "250-mx.test 250-PIPELINING 250 SIZE 1000");
        let bare = parse_all(b"250\r\n").unwrap();
        assert_eq!(bare[0].dsn(), "2.0.0");
    }

    #[test]
    fn strictness() {
        let mut p = ReplyParser::new();
        assert!(matches!(p.feed(b"hello"), Err(ReplyError::Malformed(_))));
        assert!(matches!(p.feed(b"25"), Err(ReplyError::Malformed(_))));
        assert!(matches!(p.feed(b"250x"), Err(ReplyError::Malformed(_))));
        assert!(matches!(p.feed(b"650 x"), Err(ReplyError::Malformed(_))));
        let mut p = ReplyParser::new();
        assert_eq!(p.feed(b"250-a").unwrap(), None);
        assert!(matches!(
            p.feed(b"251 b"),
            Err(ReplyError::CodeChanged { first: 250, .. })
        ));
        let mut p = ReplyParser::new();
        for _ in 0..MAX_LINES {
            let _ = p.feed(b"250-x");
        }
        assert_eq!(p.feed(b"250-x"), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn enhanced_codes() {
        let r = |s: &str| parse_all(s.as_bytes()).unwrap().remove(0);
        assert_eq!(
            r("550 5.1.1 <x>: Recipient address rejected\r\n").dsn(),
            "5.1.1"
        );
        assert_eq!(r("550 no such user\r\n").dsn(), "5.0.0");
        assert_eq!(r("451 4.3.0 try later\r\n").dsn(), "4.3.0");
        // A code of the wrong class is not believed.
        assert_eq!(r("450 5.1.1 odd\r\n").dsn(), "4.0.0");
        let s = r("554-5.7.1 go away\r\n554 5.7.1 really\r\n").softened();
        assert_eq!(s.code, 454);
        assert_eq!(s.text(), "454-4.7.1 go away 454 4.7.1 really");
        assert_eq!(s.dsn(), "4.7.1");
    }
}
