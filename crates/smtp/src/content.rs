//! Message content on the wire: stored content (LF lines) to SMTP DATA (CRLF lines,
//! dot-stuffed, long lines folded, terminated by `.`), and the 8-bit test.
//!
//! Never emits a bare LF. A CR inside a line is passed on as it is (stored content has no
//! CRLF pairs: smtpd and pickup store LF lines), so no `CR LF . CR LF` can appear before
//! the real end of data.

use std::io::{self, Read};

/// Converts stored content to DATA form, one chunk at a time.
#[derive(Debug)]
pub struct DataEncoder {
    at_line_start: bool,
    line_len: usize,
    limit: usize,
}

impl DataEncoder {
    /// An encoder that folds lines longer than `line_limit` bytes (0: never) by inserting
    /// CR LF SPACE, as Postfix's `smtp_line_length_limit` does.
    pub fn new(line_limit: usize) -> DataEncoder {
        DataEncoder {
            at_line_start: true,
            line_len: 0,
            limit: line_limit,
        }
    }

    /// Appends the DATA form of `chunk` to `out`.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 32 + 8);
        for &b in chunk {
            if b == b'\n' {
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                self.line_len = 0;
                continue;
            }
            if self.limit > 0 && self.line_len >= self.limit {
                out.extend_from_slice(b"\r\n ");
                self.line_len = 1;
                self.at_line_start = false;
            }
            if self.at_line_start && b == b'.' {
                out.push(b'.');
                self.line_len += 1;
            }
            out.push(b);
            self.at_line_start = false;
            self.line_len += 1;
        }
    }

    /// Appends the end of data: a line end when the content did not end with one, then
    /// `.` CR LF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
        self.line_len = 0;
    }
}

/// Whether the content read from `r` has any byte with the high bit set.
pub fn has_8bit(r: &mut dyn Read) -> io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        if buf[..n].iter().any(|b| *b >= 0x80) {
            return Ok(true);
        }
    }
}

/// RFC 6152 downgrade for a server without 8BITMIME, as far as posthorn does it: a message
/// whose top-level body is not `multipart/*` or `message/*` gets its body encoded as
/// quoted-printable, its `Content-Transfer-Encoding:` replaced (and `MIME-Version: 1.0`
/// added when missing). Returns None for multipart and message types (they are sent as
/// they are) and when the body has no 8-bit byte. Header bytes are never changed.
pub fn downgrade_8bit(content: &[u8]) -> Option<Vec<u8>> {
    let split = if content.starts_with(b"\n") {
        0
    } else {
        memchr::memmem::find(content, b"\n\n").map_or(content.len(), |p| p + 1)
    };
    let (head, body) = content.split_at(split);
    if !body.iter().any(|b| *b >= 0x80) {
        return None;
    }
    // Header fields, each with its continuation lines.
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    for (i, b) in head.iter().enumerate() {
        let next_is_field =
            *b == b'\n' && head.get(i + 1).is_none_or(|c| *c != b' ' && *c != b'\t');
        if next_is_field {
            fields.push(&head[start..=i]);
            start = i + 1;
        }
    }
    if start < head.len() {
        fields.push(&head[start..]);
    }
    let name_is = |f: &[u8], n: &str| {
        f.len() > n.len() && f[..n.len()].eq_ignore_ascii_case(n.as_bytes()) && f[n.len()] == b':'
    };
    let value = |f: &[u8], n: &str| {
        String::from_utf8_lossy(&f[n.len() + 1..])
            .trim()
            .to_ascii_lowercase()
    };
    if let Some(ct) = fields.iter().find(|f| name_is(f, "Content-Type")) {
        let v = value(ct, "Content-Type");
        if v.starts_with("multipart/") || v.starts_with("message/") {
            return None;
        }
    }
    let mut out = Vec::with_capacity(content.len() + content.len() / 4 + 64);
    let mut has_version = false;
    for f in &fields {
        if name_is(f, "Content-Transfer-Encoding") {
            continue;
        }
        has_version |= name_is(f, "MIME-Version");
        out.extend_from_slice(f);
    }
    if !has_version {
        out.extend_from_slice(b"MIME-Version: 1.0\n");
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\n");
    let body = body.strip_prefix(b"\n").unwrap_or(body);
    out.push(b'\n');
    qp_encode(body, &mut out);
    Some(out)
}

/// Quoted-printable (RFC 2045 6.7) with LF line ends and soft breaks before 76 columns.
fn qp_encode(body: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let last = lines.len() - 1;
    for (n, line) in lines.iter().enumerate() {
        if n == last && line.is_empty() {
            break;
        }
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let trailing_ws = (b == b' ' || b == b'\t') && i + 1 == line.len();
            let plain = (b == b' ' || b == b'\t' || (33..=126).contains(&b))
                && b != b'='
                && !trailing_ws
                && !(col == 0 && b == b'.');
            let width = if plain { 1 } else { 3 };
            if col + width > 75 {
                out.extend_from_slice(b"=\n");
                col = 0;
            }
            if plain {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
        }
        if n < last {
            out.push(b'\n');
        }
    }
}

/// The whole DATA form of `content` (tests and small messages).
pub fn encode_all(content: &[u8], line_limit: usize) -> Vec<u8> {
    let mut e = DataEncoder::new(line_limit);
    let mut out = Vec::new();
    e.encode(content, &mut out);
    e.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_dot_stuffing() {
        assert_eq!(encode_all(b"a\nb\n", 0), b"a\r\nb\r\n.\r\n");
        assert_eq!(encode_all(b".\n..x\nx.\n", 0), b"..\r\n...x\r\nx.\r\n.\r\n");
        assert_eq!(encode_all(b"no newline", 0), b"no newline\r\n.\r\n");
        assert_eq!(encode_all(b"", 0), b".\r\n");
        // A bare CR stays inside its line; it never becomes a line end.
        assert_eq!(encode_all(b"a\r.\rb\n", 0), b"a\r.\rb\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let text = b"Subject: x\n\n.hidden\nline\n.\n..\nend";
        let whole = encode_all(text, 0);
        for split in 0..text.len() {
            let mut e = DataEncoder::new(0);
            let mut out = Vec::new();
            e.encode(&text[..split], &mut out);
            e.encode(&text[split..], &mut out);
            e.finish(&mut out);
            assert_eq!(out, whole, "split at {split}");
        }
        assert!(!whole.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    #[test]
    fn long_lines_are_folded() {
        assert_eq!(encode_all(b"abcdefg\n", 3), b"abc\r\n de\r\n fg\r\n.\r\n");
        assert_eq!(encode_all(b"abc\n", 3), b"abc\r\n.\r\n");
    }

    #[test]
    fn eight_bit_downgrade() {
        let got = downgrade_8bit(
            "Subject: x\nContent-Transfer-Encoding: 8bit\n\ncaf\u{e9} = ok \n".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "Subject: x\nMIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9 =3D ok=20\n"
        );
        let long = format!("A: b\n\n{}\u{e9}\n", "y".repeat(100));
        let got = String::from_utf8(downgrade_8bit(long.as_bytes()).unwrap()).unwrap();
        assert!(got.lines().all(|l| l.len() <= 76), "{got}");
        assert!(got.contains("=\ny"));
        let multi = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\u{e9}\n".as_bytes();
        assert_eq!(downgrade_8bit(multi), None);
        assert_eq!(
            downgrade_8bit("Subject: \u{e9}\n\nascii\n".as_bytes()),
            None
        );
    }

    #[test]
    fn eight_bit() {
        assert!(!has_8bit(&mut &b"plain ascii\n"[..]).unwrap());
        assert!(has_8bit(&mut "caf\u{e9}\n".as_bytes()).unwrap());
    }
}
