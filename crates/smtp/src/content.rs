//! Message content on the wire: stored content (LF lines) to SMTP DATA (CRLF lines,
//! dot-stuffed, long lines folded, terminated by `.`), the 8-bit test, and the 8-bit to
//! 7-bit MIME downgrade (quoted-printable, part by part) for servers without 8BITMIME.
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

/// How deep multipart and message/rfc822 nesting is followed, as Postfix's
/// `mime_nesting_limit` (default 100; 20 is plenty for real mail and bounds the recursion).
const MAX_DEPTH: usize = 20;

/// RFC 6152 downgrade for a server without 8BITMIME, the way Postfix's MIME state machine
/// does it, recursively: every leaf part (the top-level body included) whose
/// Content-Transfer-Encoding is `8bit`, `7bit` or absent and whose body holds an 8-bit byte
/// gets its body encoded as quoted-printable and that header replaced by
/// `Content-Transfer-Encoding: quoted-printable` (at the top level `MIME-Version: 1.0` is
/// added when missing). `multipart/*` bodies are walked part by part along their boundary
/// (preamble, delimiters and epilogue kept as they are), `message/rfc822` bodies as a
/// message of their own, both up to 20 levels; a container declared `8bit` is relabelled
/// `7bit` when no 8-bit body byte is left in it (8-bit header text does not count, as in
/// Postfix). `binary` parts, other `message/*` types and header bytes are never changed.
/// Returns None when nothing was changed.
pub fn downgrade_8bit(content: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 4 + 64);
    entity(content, false, 0, true, &mut out)
        .changed
        .then_some(out)
}

/// What walking an entity did.
#[derive(Clone, Copy, Debug, Default)]
struct Walk {
    /// Something was converted or relabelled.
    changed: bool,
    /// 8-bit body bytes were left as they were (binary, too deep, preamble, ...); 8-bit
    /// header bytes do not count.
    left_8bit: bool,
}

impl Walk {
    /// An entity copied as it is.
    fn unchanged(body: &[u8]) -> Walk {
        Walk {
            changed: false,
            left_8bit: body.iter().any(|b| *b >= 0x80),
        }
    }

    /// Adds what walking a sibling did.
    fn add(&mut self, other: Walk) {
        self.changed |= other.changed;
        self.left_8bit |= other.left_8bit;
    }
}

/// One MIME entity split at the end of its header: the header fields (each with its
/// continuation lines), the empty line that ends them (empty when there is none) and the body.
struct Entity<'a> {
    fields: Vec<&'a [u8]>,
    separator: &'a [u8],
    body: &'a [u8],
}

/// `line` without its LF or CR LF.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The end (after the LF, or the end of `s`) of the line starting at `pos`.
fn line_end(s: &[u8], pos: usize) -> usize {
    memchr::memchr(b'\n', &s[pos..]).map_or(s.len(), |i| pos + i + 1)
}

/// Whether a line starts a header field: a name of printable ASCII, then (spaces and) `:`.
fn starts_field(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|b| (33..=126).contains(b))
}

/// Splits `input` into header fields, separator and body. Header parsing stops at the first
/// empty line (the separator) or at the first line that is neither a field nor a
/// continuation line (the body starts there, with no separator).
fn split_entity(input: &[u8]) -> Entity<'_> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut field_start = None;
    let mut pos = 0;
    let mut separator: &[u8] = &[];
    while pos < input.len() {
        let end = line_end(input, pos);
        let text = trim_eol(&input[pos..end]);
        if text.is_empty() {
            separator = &input[pos..end];
            break;
        }
        let continuation = text[0] == b' ' || text[0] == b'\t';
        if !(continuation && field_start.is_some()) {
            if !starts_field(text) {
                break;
            }
            if let Some(s) = field_start {
                fields.push(&input[s..pos]);
            }
            field_start = Some(pos);
        }
        pos = end;
    }
    if let Some(s) = field_start {
        fields.push(&input[s..pos]);
    }
    Entity {
        fields,
        separator,
        body: &input[pos + separator.len()..],
    }
}

/// The first field called `name` (case-insensitive): its index and its value.
fn find_field<'a>(fields: &[&'a [u8]], name: &str) -> Option<(usize, &'a [u8])> {
    fields.iter().enumerate().find_map(|(i, f)| {
        let colon = memchr::memchr(b':', f)?;
        f[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(name.as_bytes())
            .then_some((i, &f[colon + 1..]))
    })
}

/// A Content-Type value: the lowercase `type/subtype` and the `boundary` parameter.
fn parse_content_type(v: &[u8]) -> (String, Option<Vec<u8>>) {
    let is_ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let semi = memchr::memchr(b';', v).unwrap_or(v.len());
    let mime: String = String::from_utf8_lossy(&v[..semi])
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let mut boundary = None;
    let mut i = semi;
    while i < v.len() {
        i += 1; // the ';'
        let name_start = i;
        while i < v.len() && v[i] != b'=' && v[i] != b';' {
            i += 1;
        }
        let name = v[name_start..i].trim_ascii();
        if i >= v.len() || v[i] == b';' {
            continue;
        }
        i += 1; // the '='
        while i < v.len() && is_ws(v[i]) {
            i += 1;
        }
        let mut value = Vec::new();
        if v.get(i) == Some(&b'"') {
            i += 1;
            while i < v.len() && v[i] != b'"' {
                if v[i] == b'\\' && i + 1 < v.len() {
                    i += 1;
                }
                if v[i] != b'\r' && v[i] != b'\n' {
                    value.push(v[i]);
                }
                i += 1;
            }
        } else {
            while i < v.len() && v[i] != b';' && !is_ws(v[i]) {
                value.push(v[i]);
                i += 1;
            }
        }
        while i < v.len() && v[i] != b';' {
            i += 1;
        }
        if boundary.is_none() && name.eq_ignore_ascii_case(b"boundary") && !value.is_empty() {
            boundary = Some(value);
        }
    }
    (mime, boundary)
}

/// The lowercase mechanism of a Content-Transfer-Encoding value (`8bit`, `base64`, ...).
fn parse_encoding(v: &[u8]) -> String {
    let v = v.trim_ascii_start();
    let end = v
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b';' || *b == b'(')
        .unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).to_ascii_lowercase()
}

/// Appends the downgraded form of one entity to `out` and says what it did.
/// `digest_part`: a part of multipart/digest, whose default type is message/rfc822.
fn entity(input: &[u8], digest_part: bool, depth: usize, top: bool, out: &mut Vec<u8>) -> Walk {
    let e = split_entity(input);
    if !e.body.iter().any(|b| *b >= 0x80) {
        out.extend_from_slice(input);
        return Walk::default();
    }
    let (mime, boundary) = match find_field(&e.fields, "Content-Type") {
        Some((_, v)) => parse_content_type(v),
        None if digest_part => ("message/rfc822".to_string(), None),
        None => ("text/plain".to_string(), None),
    };
    let cte = find_field(&e.fields, "Content-Transfer-Encoding");
    let encoding = cte.map(|(_, v)| parse_encoding(v));
    // Only 7-bit, 8-bit or undeclared text can be converted: binary cannot be made 7-bit
    // here, and base64 or quoted-printable with 8-bit bytes is broken beyond repair.
    if !matches!(encoding.as_deref(), None | Some("7bit" | "8bit")) {
        out.extend_from_slice(input);
        return Walk::unchanged(e.body);
    }
    let is_rfc822 = mime == "message/rfc822";
    if mime.starts_with("multipart/") || mime.starts_with("message/") {
        let walk = depth < MAX_DEPTH && (is_rfc822 || boundary.is_some());
        if !walk {
            out.extend_from_slice(input);
            return Walk::unchanged(e.body);
        }
        let mut cte_range = None;
        for (i, f) in e.fields.iter().enumerate() {
            if cte.is_some_and(|(c, _)| c == i) {
                cte_range = Some(out.len()..out.len() + f.len());
            }
            out.extend_from_slice(f);
        }
        out.extend_from_slice(e.separator);
        let mut w = match &boundary {
            Some(b) if !is_rfc822 => {
                multipart(e.body, b, mime == "multipart/digest", depth + 1, out)
            }
            _ => entity(e.body, false, depth + 1, false, out),
        };
        // A container is labelled with the domain of what it holds (RFC 2045 6.4); as in
        // Postfix, 8-bit header text inside does not keep it 8bit.
        if encoding.as_deref() == Some("8bit")
            && !w.left_8bit
            && let Some(r) = cte_range
        {
            out.splice(r, b"Content-Transfer-Encoding: 7bit\n".iter().copied());
            w.changed = true;
        }
        return w;
    }
    let mut has_version = false;
    for f in &e.fields {
        if find_field(&[f], "Content-Transfer-Encoding").is_some() {
            continue;
        }
        has_version |= find_field(&[f], "MIME-Version").is_some();
        out.extend_from_slice(f);
    }
    if top && !has_version {
        out.extend_from_slice(b"MIME-Version: 1.0\n");
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\n");
    if e.separator.is_empty() {
        out.push(b'\n');
    } else {
        out.extend_from_slice(e.separator);
    }
    qp_encode(e.body, out);
    Walk {
        changed: true,
        left_8bit: false,
    }
}

/// Whether `line` is a delimiter line of `boundary`: Some(true) for the close delimiter
/// (`--boundary--`), Some(false) for one between parts.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = trim_eol(line).strip_prefix(b"--")?.strip_prefix(boundary)?;
    if rest.starts_with(b"--") {
        Some(true)
    } else if rest.iter().all(|b| *b == b' ' || *b == b'\t') {
        Some(false)
    } else {
        None
    }
}

/// Appends the downgraded form of a multipart body to `out`, part by part; preamble,
/// delimiter lines and epilogue are copied.
fn multipart(body: &[u8], boundary: &[u8], digest: bool, depth: usize, out: &mut Vec<u8>) -> Walk {
    let mut w = Walk::default();
    let mut part_start = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = line_end(body, pos);
        let line = &body[pos..end];
        if let Some(close) = delimiter(line, boundary) {
            match part_start {
                Some(s) => w.add(entity(&body[s..pos], digest, depth, false, out)),
                None => {
                    out.extend_from_slice(&body[..pos]);
                    w.add(Walk::unchanged(&body[..pos]));
                }
            }
            out.extend_from_slice(line);
            if close {
                out.extend_from_slice(&body[end..]);
                w.add(Walk::unchanged(&body[end..]));
                return w;
            }
            part_start = Some(end);
        }
        pos = end;
    }
    // No close delimiter: the last part runs to the end.
    match part_start {
        Some(s) => w.add(entity(&body[s..], digest, depth, false, out)),
        None => {
            out.extend_from_slice(body);
            w.add(Walk::unchanged(body));
        }
    }
    w
}

/// Quoted-printable (RFC 2045 6.7) with LF line ends and soft breaks before 76 columns.
/// A line start dot is encoded too, and so is every control byte but TAB (CR included).
fn qp_encode(body: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut pos = 0;
    while pos < body.len() {
        let end = line_end(body, pos);
        let has_lf = body[end - 1] == b'\n';
        let line = &body[pos..if has_lf { end - 1 } else { end }];
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let trailing_ws = (b == b' ' || b == b'\t') && i + 1 == line.len();
            let printable =
                (b == b' ' || b == b'\t' || (33..=126).contains(&b)) && b != b'=' && !trailing_ws;
            // A dot that starts a line is encoded, after a soft break too.
            let width_at = |col: usize| {
                if printable && !(col == 0 && b == b'.') {
                    1
                } else {
                    3
                }
            };
            let mut width = width_at(col);
            if col + width > 75 {
                out.extend_from_slice(b"=\n");
                col = 0;
                width = width_at(col);
            }
            if width == 1 {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
        }
        if has_lf {
            out.push(b'\n');
        }
        pos = end;
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
        // A part without header lines gets them, and a blank line after them.
        let multi = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\u{e9}\n".as_bytes();
        assert_eq!(
            String::from_utf8(downgrade_8bit(multi).unwrap()).unwrap(),
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\
             Content-Transfer-Encoding: quoted-printable\n\n=C3=A9\n"
        );
        assert_eq!(
            downgrade_8bit("Subject: \u{e9}\n\nascii\n".as_bytes()),
            None
        );
    }

    /// Decodes quoted-printable with LF line ends (the test's check of the encoder).
    fn qp_decode(s: &[u8]) -> Vec<u8> {
        let hex = |c: u8| (c as char).to_digit(16).unwrap() as u8;
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'=' {
                if s[i + 1] == b'\n' {
                    i += 2;
                } else {
                    out.push(hex(s[i + 1]) * 16 + hex(s[i + 2]));
                    i += 3;
                }
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    fn downgrade_str(s: &str) -> String {
        String::from_utf8(downgrade_8bit(s.as_bytes()).expect("changed")).unwrap()
    }

    fn assert_7bit(s: &str) {
        assert!(s.is_ascii(), "8-bit left in:\n{s}");
        assert!(s.lines().all(|l| l.len() <= 76), "long line in:\n{s}");
    }

    const BASE64_PART: &str = "Content-Type: application/octet-stream\n\
        Content-Transfer-Encoding: base64\n\
        \n\
        AAECAwQFBgcICQ==\n";

    #[test]
    fn multipart_mixed_converts_only_the_8bit_part() {
        let msg = format!(
            "Subject: x\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed;\n boundary=\"=_b 1\"\n\
             \n\
             This is a preamble.\n\
             --=_b 1\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\
             X-Other: kept\n\
             \n\
             gr\u{fc}\u{df}e = caf\u{e9}\n\
             .dot\n\
             \n\
             --=_b 1\n\
             {BASE64_PART}\
             --=_b 1--\n\
             epilogue \u{e9}\n"
        );
        let got = downgrade_str(&msg);
        let want = format!(
            "Subject: x\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed;\n boundary=\"=_b 1\"\n\
             \n\
             This is a preamble.\n\
             --=_b 1\n\
             Content-Type: text/plain; charset=utf-8\n\
             X-Other: kept\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             gr=C3=BC=C3=9Fe =3D caf=C3=A9\n\
             =2Edot\n\
             \n\
             --=_b 1\n\
             {BASE64_PART}\
             --=_b 1--\n\
             epilogue \u{e9}\n"
        );
        assert_eq!(got, want);
        // The epilogue is kept as it is, 8-bit or not (readers ignore it).
        assert_eq!(
            downgrade_8bit(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n\xe9\n"),
            None
        );
    }

    #[test]
    fn nested_alternative_inside_mixed() {
        let msg = "Content-Type: multipart/mixed; boundary=outer\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             --outer\n\
             Content-Type: multipart/alternative; boundary=\"inner\"\n\
             \n\
             --inner\n\
             Content-Type: text/plain; charset=utf-8\n\
             \n\
             na\u{ef}ve\n\
             --inner\n\
             Content-Type: text/html; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             <p>na=C3=AFve</p>\n\
             --inner--\n\
             --outer\n\
             Content-Type: text/plain\n\
             \n\
             ascii only\n\
             --outer--\n";
        let got = downgrade_str(msg);
        assert_7bit(&got);
        // The container loses its 8bit label; the inner 7-bit parts are untouched.
        assert!(got.starts_with(
            "Content-Type: multipart/mixed; boundary=outer\n\
             Content-Transfer-Encoding: 7bit\n\n--outer\n"
        ));
        assert!(got.contains(
            "--inner\nContent-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\nna=C3=AFve\n--inner\n"
        ));
        assert!(got.contains("\n<p>na=C3=AFve</p>\n--inner--\n--outer\n"));
        assert!(got.ends_with("--outer\nContent-Type: text/plain\n\nascii only\n--outer--\n"));
        assert!(
            !got.contains("MIME-Version"),
            "only a top-level leaf gets one"
        );
    }

    #[test]
    fn message_rfc822_is_walked_into() {
        let msg = "Content-Type: multipart/mixed; boundary=b\n\n\
             --b\n\
             Content-Type: message/rfc822\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             Subject: inner \u{e9}\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             \u{e9}t\u{e9}\n\
             --b--\n";
        let got = downgrade_str(msg);
        assert_eq!(
            got,
            "Content-Type: multipart/mixed; boundary=b\n\n\
             --b\n\
             Content-Type: message/rfc822\n\
             Content-Transfer-Encoding: 7bit\n\
             \n\
             Subject: inner \u{e9}\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             =C3=A9t=C3=A9\n\
             --b--\n"
        );
        // A top-level message/rfc822 too; message/partial is left alone.
        let top = "Content-Type: message/rfc822\n\nSubject: s\n\n\u{e9}\n";
        assert_eq!(
            downgrade_str(top),
            "Content-Type: message/rfc822\n\nSubject: s\n\
             Content-Transfer-Encoding: quoted-printable\n\n=C3=A9\n"
        );
        let partial = "Content-Type: message/partial; id=x\n\nSubject: s\n\n\u{e9}\n";
        assert_eq!(downgrade_8bit(partial.as_bytes()), None);
    }

    #[test]
    fn part_without_cte_or_declared_7bit_is_converted() {
        let msg = "Content-Type: multipart/mixed; boundary=b\n\n\
             --b\n\
             Content-Type: text/plain; charset=utf-8\n\
             \n\
             one \u{e9}\n\
             --b\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 7BIT\n\
             \n\
             two \u{e9}\n\
             --b--\n";
        let got = downgrade_str(msg);
        assert_7bit(&got);
        assert_eq!(
            got.matches("Content-Transfer-Encoding: quoted-printable\n")
                .count(),
            2
        );
        assert!(!got.contains("7BIT"));
        assert!(got.contains("\n\none =C3=A9\n--b\n"));
        assert!(got.contains("\n\ntwo =C3=A9\n--b--\n"));
    }

    #[test]
    fn binary_and_broken_encodings_are_left_alone() {
        let bin = "Content-Type: multipart/mixed; boundary=b\n\n\
             --b\n\
             Content-Transfer-Encoding: binary\n\
             \n\
             \u{e9}\n\
             --b--\n";
        assert_eq!(downgrade_8bit(bin.as_bytes()), None);
        let b64 = "Content-Transfer-Encoding: base64\n\n\u{e9}\n";
        assert_eq!(downgrade_8bit(b64.as_bytes()), None);
        // A binary part next to an 8-bit one: the 8-bit one is still converted, and the
        // 8bit container keeps its label as 8-bit data remains inside.
        let mixed = "Content-Type: multipart/mixed; boundary=b\n\
             Content-Transfer-Encoding: 8bit\n\n\
             --b\n\
             Content-Transfer-Encoding: binary\n\
             \n\
             \u{e9}\n\
             --b\n\
             \n\
             \u{e8}\n\
             --b--\n";
        let got = downgrade_str(mixed);
        assert!(got.contains("Content-Transfer-Encoding: 8bit\n"));
        assert!(got.contains("binary\n\n\u{e9}\n--b\n"));
        assert!(got.contains("--b\nContent-Transfer-Encoding: quoted-printable\n\n=C3=A8\n"));
    }

    #[test]
    fn crlf_lines_and_data_form() {
        // Stored content has LF lines; the result too, and its DATA form is CRLF and 7-bit.
        let msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n\u{e9}\n.\n--b--\n";
        let got = downgrade_8bit(msg.as_bytes()).unwrap();
        assert!(!got.contains(&b'\r'));
        let data = encode_all(&got, 998);
        assert!(data.is_ascii());
        assert!(!data.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        assert!(data.ends_with(b"=C3=A9\r\n=2E\r\n--b--\r\n.\r\n"));
        // CR LF line ends (not what is stored, but tolerated): the structure is still
        // found, and the CR bytes inside the converted body are kept as =0D.
        let crlf =
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\u{e9}\r\n--b--\r\n";
        assert_eq!(
            downgrade_str(crlf),
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Transfer-Encoding: quoted-printable\n\r\n=C3=A9=0D\n--b--\r\n"
        );
    }

    #[test]
    fn long_lines_get_soft_breaks() {
        let line: String = "\u{e9}ab cd=.".repeat(200); // 1800 bytes, no LF
        let body = format!("{line}\n.{line} \n");
        let msg = format!("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n{body}--b--\n");
        let got = downgrade_str(&msg);
        assert_7bit(&got);
        let start = got.find("quoted-printable\n\n").unwrap() + 18;
        let end = got.rfind("--b--").unwrap();
        assert_eq!(qp_decode(&got.as_bytes()[start..end]), body.as_bytes());
        // Every soft-broken line but the last of each hard line is 76 bytes or less and
        // no line of the encoded body starts with a dot.
        for l in got[start..end].lines() {
            assert!(l.len() <= 76 && !l.starts_with('.'), "{l:?}");
        }
        assert!(got[start..end].lines().filter(|l| l.ends_with('=')).count() > 40);
    }

    #[test]
    fn digest_parts_default_to_rfc822_and_depth_is_bounded() {
        let digest = "Content-Type: multipart/digest; boundary=d\n\n\
             --d\n\
             \n\
             Subject: one\n\
             \n\
             \u{e9}\n\
             --d--\n";
        assert!(downgrade_str(digest).contains(
            "--d\n\nSubject: one\nContent-Transfer-Encoding: quoted-printable\n\n=C3=A9\n--d--\n"
        ));
        // Deeper than MAX_DEPTH: the innermost part is left as it is, and nothing panics.
        let levels = MAX_DEPTH + 5;
        let mut msg = String::new();
        for i in 0..levels {
            msg.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
            ));
        }
        msg.push_str("\n\u{e9}\n");
        for i in (0..levels).rev() {
            msg.push_str(&format!("--b{i}--\n"));
        }
        assert_eq!(downgrade_8bit(msg.as_bytes()), None);
        let shallow: String = {
            let skip = msg
                .find("Content-Type: multipart/mixed; boundary=b10\n")
                .unwrap();
            msg[skip..].to_string()
        };
        let got = downgrade_str(&shallow);
        assert_7bit(&got);
    }

    #[test]
    fn eight_bit() {
        assert!(!has_8bit(&mut &b"plain ascii\n"[..]).unwrap());
        assert!(has_8bit(&mut "caf\u{e9}\n".as_bytes()).unwrap());
    }
}
