//! The primary header section of a message: where it ends, and each header with its folded lines.
//!
//! Rules (Postfix's `is_header()` and cleanup's header/body split): a header line is a name of
//! printable ASCII other than `:` (optionally followed by blanks, RFC 822's obsolete syntax) and
//! a colon; a line starting with a space or tab continues the header before it; the section ends
//! at the first empty line (which is consumed) or at the first line that is neither, which then
//! starts the body. Input uses LF line endings; a CR before an LF is tolerated.

use std::ops::Range;

/// One header: its name and its full text, folded lines joined with "\n", no final newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name as written (without blanks or the colon).
    pub name: String,
    /// The whole header: `Name: value`, continuation lines joined with "\n", no final newline.
    pub raw: String,
}

impl Header {
    /// Builds `Name: value` (the value may contain "\n" + blank continuation lines).
    pub fn new(name: &str, value: &str) -> Header {
        Header {
            name: name.to_string(),
            raw: format!("{name}: {value}"),
        }
    }

    /// Parses one header's text (`Name: value...`); `None` when it is not a header line.
    pub fn parse(raw: &str) -> Option<Header> {
        let name_len = header_name_len(raw.as_bytes())?;
        Some(Header {
            name: raw[..name_len].to_string(),
            raw: raw.trim_end_matches('\n').to_string(),
        })
    }

    /// Whether this header has the given name (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The text after the first colon, exactly as written (leading blank and folding kept).
    pub fn value(&self) -> &str {
        match self.raw.find(':') {
            Some(colon) => &self.raw[colon + 1..],
            None => "",
        }
    }

    /// The value with line breaks removed (RFC 5322 unfolding) and outer whitespace trimmed.
    pub fn unfolded_value(&self) -> String {
        let v: String = self
            .value()
            .chars()
            .filter(|&c| c != '\n' && c != '\r')
            .collect();
        v.trim().to_string()
    }
}

/// The headers of one message in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    /// Headers in message order.
    pub headers: Vec<Header>,
}

impl HeaderBlock {
    /// The first header with this name (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.is(name))
    }

    /// All headers with this name, in order.
    pub fn get_all(&self, name: &str) -> Vec<&Header> {
        self.headers.iter().filter(|h| h.is(name)).collect()
    }

    /// Whether a header with this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Removes every header with this name; returns how many were removed.
    pub fn remove_all(&mut self, name: &str) -> usize {
        let before = self.headers.len();
        self.headers.retain(|h| !h.is(name));
        before - self.headers.len()
    }

    /// Appends a header at the end of the block.
    pub fn push(&mut self, header: Header) {
        self.headers.push(header);
    }

    /// Inserts a header before all others (e.g. Received:, Return-Path:).
    pub fn prepend(&mut self, header: Header) {
        self.headers.insert(0, header);
    }

    /// The block as message text: each header's raw text plus "\n" (no blank line after).
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = self.headers.iter().map(|h| h.raw.len() + 1).sum();
        let mut out = Vec::with_capacity(len);
        for h in &self.headers {
            out.extend_from_slice(h.raw.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// Splits a message into its header block and the byte offset where the body starts.
///
/// The offset is just past the empty line that ends the headers, or the start of the first
/// line that is not a header (Postfix inserts nothing there), or `msg.len()` when the message
/// has no body. Header bytes that are not UTF-8 are replaced (U+FFFD); callers that must keep
/// raw 8-bit header bytes use [`split_header_ranges`] instead.
pub fn split_headers(msg: &[u8]) -> (HeaderBlock, usize) {
    let (ranges, body) = split_header_ranges(msg);
    let headers = ranges
        .into_iter()
        .map(|r| {
            let bytes = &msg[r];
            let name_len = header_name_len(bytes).unwrap_or(0);
            let raw = String::from_utf8_lossy(bytes);
            let raw = if raw.contains('\r') {
                raw.replace("\r\n", "\n")
            } else {
                raw.into_owned()
            };
            Header {
                name: String::from_utf8_lossy(&bytes[..name_len]).into_owned(),
                raw,
            }
        })
        .collect();
    (HeaderBlock { headers }, body)
}

/// Like [`split_headers`], but returns the byte range of each header in `msg` (from the name
/// to the end of its last line, without the line end) so that raw bytes can be kept.
pub fn split_header_ranges(msg: &[u8]) -> (Vec<Range<usize>>, usize) {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut current: Option<Range<usize>> = None;
    let mut pos = 0;
    let body = loop {
        if pos >= msg.len() {
            break msg.len();
        }
        let (line_end, next) = match memchr::memchr(b'\n', &msg[pos..]) {
            Some(i) => (pos + i, pos + i + 1),
            None => (msg.len(), msg.len()),
        };
        let content_end = if line_end > pos && msg[line_end - 1] == b'\r' && line_end < msg.len() {
            line_end - 1
        } else {
            line_end
        };
        let line = &msg[pos..content_end];
        if line.is_empty() {
            break next;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            match current.as_mut() {
                Some(range) => {
                    range.end = content_end;
                    pos = next;
                    continue;
                }
                // Leading white space before any header: that is body text.
                None => break pos,
            }
        }
        if header_name_len(line).is_some() {
            ranges.extend(current.take());
            current = Some(pos..content_end);
            pos = next;
            continue;
        }
        break pos;
    };
    ranges.extend(current);
    (ranges, body)
}

/// Drops a leading mbox envelope line (`From sender date`), as Postfix's sendmail does.
pub fn strip_mbox_from_line(msg: &[u8]) -> &[u8] {
    if !msg.starts_with(b"From ") {
        return msg;
    }
    match memchr::memchr(b'\n', msg) {
        Some(i) => &msg[i + 1..],
        None => &[],
    }
}

/// The length of the header name if `line` starts with `name[blanks]:`.
fn header_name_len(line: &[u8]) -> Option<usize> {
    let name_len = line
        .iter()
        .position(|&b| !(b.is_ascii_graphic() && b != b':'))
        .unwrap_or(line.len());
    if name_len == 0 {
        return None;
    }
    let rest = &line[name_len..];
    let blanks = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    (rest.get(blanks) == Some(&b':')).then_some(name_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(block: &HeaderBlock) -> Vec<&str> {
        block.headers.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn folded_headers_and_body() {
        let msg = b"From: a@b\nSubject: one\n two\n\tthree\nTo: c@d\n\nbody\nline2\n";
        let (h, body) = split_headers(msg);
        assert_eq!(names(&h), ["From", "Subject", "To"]);
        assert_eq!(h.headers[1].raw, "Subject: one\n two\n\tthree");
        assert_eq!(h.headers[1].value(), " one\n two\n\tthree");
        assert_eq!(h.headers[1].unfolded_value(), "one two\tthree");
        assert_eq!(&msg[body..], b"body\nline2\n");
        assert_eq!(
            h.to_bytes(),
            b"From: a@b\nSubject: one\n two\n\tthree\nTo: c@d\n"
        );
    }

    #[test]
    fn missing_blank_line_body_starts_at_first_non_header() {
        let msg = b"Subject: x\nThis is not a header\nmore\n";
        let (h, body) = split_headers(msg);
        assert_eq!(names(&h), ["Subject"]);
        assert_eq!(&msg[body..], b"This is not a header\nmore\n");
    }

    #[test]
    fn body_only_and_empty_messages() {
        let (h, body) = split_headers(b"just text\n\nSubject: nope\n");
        assert!(h.headers.is_empty());
        assert_eq!(body, 0);
        let (h, body) = split_headers(b"");
        assert!(h.headers.is_empty());
        assert_eq!(body, 0);
        let (h, body) = split_headers(b"\nSubject: in body\n");
        assert!(h.headers.is_empty());
        assert_eq!(body, 1);
        // Leading white space is not a continuation of nothing.
        let (h, body) = split_headers(b" indented\nSubject: x\n");
        assert!(h.headers.is_empty());
        assert_eq!(body, 0);
    }

    #[test]
    fn headers_only_message() {
        let msg = b"Subject: a\nTo: b";
        let (h, body) = split_headers(msg);
        assert_eq!(names(&h), ["Subject", "To"]);
        assert_eq!(body, msg.len());
        let msg = b"Subject: a\n\n";
        let (h, body) = split_headers(msg);
        assert_eq!(h.headers.len(), 1);
        assert_eq!(body, msg.len());
    }

    #[test]
    fn header_looking_body_lines_stay_in_body() {
        let msg = b"Subject: s\n\nX-Not-Header: really body\nFrom: nobody\n";
        let (h, body) = split_headers(msg);
        assert_eq!(names(&h), ["Subject"]);
        assert_eq!(&msg[body..], b"X-Not-Header: really body\nFrom: nobody\n");
    }

    #[test]
    fn header_name_syntax() {
        assert_eq!(header_name_len(b"Subject: x"), Some(7));
        assert_eq!(header_name_len(b"Subject : obsolete"), Some(7));
        assert_eq!(header_name_len(b"X-Empty:"), Some(7));
        assert_eq!(header_name_len(b": no name"), None);
        assert_eq!(header_name_len(b"No Colon Here"), None);
        assert_eq!(header_name_len(b"Two words: x"), None);
        assert_eq!(header_name_len(b"From sender@x Mon Jan  1"), None);
        assert_eq!(header_name_len("Sübject: x".as_bytes()), None);
    }

    #[test]
    fn mbox_from_line() {
        let msg = b"From joe@x Wed Nov 25 15:40:05 2026\nSubject: hi\n\nbody\n";
        // Not a header: unstripped, it starts the body.
        let (h, body) = split_headers(msg);
        assert!(h.headers.is_empty());
        assert_eq!(body, 0);
        let stripped = strip_mbox_from_line(msg);
        assert_eq!(stripped, b"Subject: hi\n\nbody\n");
        assert_eq!(split_headers(stripped).0.headers.len(), 1);
        assert_eq!(strip_mbox_from_line(b"Subject: x\n"), b"Subject: x\n");
        assert_eq!(strip_mbox_from_line(b"From x"), b"");
        assert_eq!(strip_mbox_from_line(b"From: x\n"), b"From: x\n");
    }

    #[test]
    fn crlf_and_non_utf8() {
        let msg = b"Subject: a\r\n b\r\nX-Latin: caf\xe9\r\n\r\nbody\r\n";
        let (h, body) = split_headers(msg);
        assert_eq!(h.headers[0].raw, "Subject: a\n b");
        assert_eq!(h.headers[1].raw, "X-Latin: caf\u{fffd}");
        assert_eq!(&msg[body..], b"body\r\n");
        let (ranges, _) = split_header_ranges(msg);
        assert_eq!(&msg[ranges[0].clone()], b"Subject: a\r\n b");
        assert_eq!(&msg[ranges[1].clone()], b"X-Latin: caf\xe9");
    }

    #[test]
    fn block_operations() {
        let (mut h, _) = split_headers(b"Received: 1\nTo: a\nreceived: 2\nSubject: s\n\n");
        assert_eq!(h.get("RECEIVED").unwrap().raw, "Received: 1");
        assert_eq!(h.get_all("received").len(), 2);
        assert!(h.contains("to"));
        assert!(h.get("Cc").is_none());
        assert_eq!(h.remove_all("Received"), 2);
        assert_eq!(h.remove_all("Received"), 0);
        h.prepend(Header::new("Return-Path", "<x@y>"));
        h.push(Header::parse("X-Tail: t\n").unwrap());
        assert_eq!(
            h.to_bytes(),
            b"Return-Path: <x@y>\nTo: a\nSubject: s\nX-Tail: t\n"
        );
        assert!(Header::parse("not a header").is_none());
        assert_eq!(Header::new("Subject", "x").value(), " x");
    }

    #[test]
    fn junk_never_panics() {
        let junk: [&[u8]; 8] = [
            b"\n\n\n",
            b"\r",
            b"\r\n",
            b":\n",
            b"A:\r",
            b"\xff\xfe:\n",
            b"X:\n \n\t\n",
            b"X: y\n\r\n",
        ];
        for j in junk {
            let (h, body) = split_headers(j);
            assert!(body <= j.len());
            let _ = h.to_bytes();
        }
        let (h, body) = split_headers(b"X: y\n\r\nbody");
        assert_eq!(h.headers.len(), 1);
        assert_eq!(body, 7);
    }
}
