//! Message content as it arrives after DATA (dot-stuffed, CRLF lines) or in BDAT chunks
//! (raw), turned into the stored form: lines ending in a single LF.
//!
//! SMTP smuggling defence: only `<CRLF>.<CRLF>` ends DATA — the `.` line must itself end in
//! CRLF and the line before it too (the DATA command's own CRLF counts for the first line).
//! `<LF>.<LF>`, `<LF>.<CRLF>`, `<CRLF>.<LF>` and `<CR>.<CR>` are content, in every mode. A
//! bare LF ends a content line (normalize, no) or is refused (reject); a bare CR is kept as
//! data inside its line. A lone `.` line that does not end DATA is kept as `.`, so nothing
//! can turn it into a header/body separator.

use memchr::memchr;

/// `smtpd_forbid_bare_newline`, after exclusions are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareLf {
    /// `no`: bare LF ends a line (the end of DATA still needs CRLF.CRLF).
    Allow,
    /// `normalize` (default): bare LF ends a line, as if CRLF had been sent.
    Normalize,
    /// `yes` / `reject`: a bare LF is a protocol error.
    Reject,
}

impl BareLf {
    /// Parses Postfix's values (`no`, `normalize`, `yes`, `reject`).
    pub fn parse(s: &str) -> Option<BareLf> {
        match s.trim().to_ascii_lowercase().as_str() {
            "no" | "false" => Some(BareLf::Allow),
            "normalize" => Some(BareLf::Normalize),
            "yes" | "true" | "reject" => Some(BareLf::Reject),
            _ => None,
        }
    }
}

/// What a call to [`DataReader::feed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// All complete input consumed (this many bytes); more is needed.
    More(usize),
    /// The end-of-data line was consumed; this many bytes in all.
    End(usize),
    /// A bare LF arrived in reject mode.
    BareLf,
}

/// Longest partial line kept back while waiting for its end; longer lines are passed on
/// in pieces (nothing in the stored form limits line length).
const HOLD_MAX: usize = 8192;

/// Decoder for the DATA phase.
#[derive(Debug)]
pub struct DataReader {
    mode: BareLf,
    prev_crlf: bool,
    mid_line: bool,
    /// Whether any bare LF was seen (for the log).
    pub saw_bare_lf: bool,
}

impl DataReader {
    /// Starts reading content right after the DATA command line.
    pub fn new(mode: BareLf) -> DataReader {
        DataReader {
            mode,
            prev_crlf: true,
            mid_line: false,
            saw_bare_lf: false,
        }
    }

    /// Consumes complete lines from `input`, appending stored-form content to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataStatus {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let Some(i) = memchr(b'\n', rest) else {
                if rest.len() > HOLD_MAX {
                    // A long line: pass on what we have, holding back a CR that may be the
                    // first half of CRLF.
                    let keep = usize::from(rest.ends_with(b"\r"));
                    let mut piece = &rest[..rest.len() - keep];
                    if !self.mid_line && piece.first() == Some(&b'.') {
                        piece = &piece[1..];
                    }
                    out.extend_from_slice(piece);
                    self.mid_line = true;
                    pos += rest.len() - keep;
                }
                return DataStatus::More(pos);
            };
            let line = &rest[..i];
            let (content, crlf) = match line.strip_suffix(b"\r") {
                Some(c) => (c, true),
                None => (line, false),
            };
            if !crlf {
                if self.mode == BareLf::Reject {
                    return DataStatus::BareLf;
                }
                self.saw_bare_lf = true;
            }
            pos += i + 1;
            if !self.mid_line && content == b"." {
                if crlf && self.prev_crlf {
                    return DataStatus::End(pos);
                }
                out.extend_from_slice(b".\n");
            } else {
                let c = if !self.mid_line && content.first() == Some(&b'.') {
                    &content[1..]
                } else {
                    content
                };
                out.extend_from_slice(c);
                out.push(b'\n');
            }
            self.prev_crlf = crlf;
            self.mid_line = false;
        }
    }
}

/// Converts one BDAT chunk (raw, CRLF lines) into the stored form, carrying a CR that ends
/// one chunk over to the next.
#[derive(Debug, Default)]
pub struct ChunkReader {
    pending_cr: bool,
}

impl ChunkReader {
    /// Appends the stored form of `data` to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut start = 0;
        if self.pending_cr {
            self.pending_cr = false;
            if data.first() != Some(&b'\n') {
                out.push(b'\r');
            }
        }
        let mut i = 0;
        while let Some(n) = memchr(b'\n', &data[i..]) {
            let lf = i + n;
            let end = if lf > start && data[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            out.extend_from_slice(&data[start..end]);
            out.push(b'\n');
            start = lf + 1;
            i = lf + 1;
        }
        let mut tail = &data[start..];
        if tail.ends_with(b"\r") {
            self.pending_cr = true;
            tail = &tail[..tail.len() - 1];
        }
        out.extend_from_slice(tail);
    }

    /// Ends the message: a CR held back is data after all.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: BareLf, input: &[u8]) -> (Vec<u8>, DataStatus) {
        let mut r = DataReader::new(mode);
        let mut out = Vec::new();
        let st = r.feed(input, &mut out);
        (out, st)
    }

    #[test]
    fn plain_message_and_dot_stuffing() {
        let (out, st) = run(
            BareLf::Normalize,
            b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\nMAIL",
        );
        assert_eq!(out, b"Subject: x\n\n.dot\nbody\n");
        assert_eq!(st, DataStatus::End(30));
    }

    #[test]
    fn smuggling_variants_never_end_data() {
        for v in [
            &b"a\n.\nMAIL FROM:<x>\r\n"[..],
            b"a\n.\r\nMAIL FROM:<x>\r\n",
            b"a\r\n.\nMAIL FROM:<x>\r\n",
            b"a\r.\rMAIL FROM:<x>\r\n",
            b"a\r\n.\r.\r\nMAIL FROM:<x>\r\n",
        ] {
            let (out, st) = run(BareLf::Normalize, v);
            assert!(matches!(st, DataStatus::More(_)), "{v:?} -> {st:?}");
            assert!(!out.is_empty());
            let (_, st) = run(BareLf::Allow, v);
            assert!(matches!(st, DataStatus::More(_)), "{v:?} -> {st:?}");
        }
        let (out, _) = run(BareLf::Normalize, b"a\n.\nb\r\n");
        assert_eq!(out, b"a\n.\nb\n");
        let (out, _) = run(BareLf::Normalize, b"a\r.\rb\r\n");
        assert_eq!(out, b"a\r.\rb\n");
        let (_, st) = run(BareLf::Reject, b"a\n.\n");
        assert_eq!(st, DataStatus::BareLf);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"x: y\r\n\r\n.a\r\nlong\r\n\n.\r\n.\r\n";
        let (whole, st) = run(BareLf::Normalize, input);
        let mut r = DataReader::new(BareLf::Normalize);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut end = None;
        for &b in input {
            buf.push(b);
            match r.feed(&buf, &mut out) {
                DataStatus::More(n) => {
                    buf.drain(..n);
                }
                DataStatus::End(_) => {
                    end = Some(());
                    break;
                }
                DataStatus::BareLf => panic!(),
            }
        }
        assert!(end.is_some());
        assert_eq!(out, whole);
        assert!(matches!(st, DataStatus::End(_)));
    }

    #[test]
    fn long_lines_pass_in_pieces() {
        let mut input = vec![b'.'];
        input.extend(std::iter::repeat_n(b'x', 20_000));
        input.push(b'\r');
        let mut r = DataReader::new(BareLf::Normalize);
        let mut out = Vec::new();
        let DataStatus::More(n) = r.feed(&input, &mut out) else {
            panic!()
        };
        assert_eq!(n, input.len() - 1);
        assert_eq!(out.len(), 20_000);
        let st = r.feed(b"\r\n.\r\n", &mut out);
        assert_eq!(st, DataStatus::End(5));
        assert_eq!(out.len(), 20_001);
    }

    #[test]
    fn chunks() {
        let mut c = ChunkReader::default();
        let mut out = Vec::new();
        c.feed(b"a\r", &mut out);
        c.feed(b"\nb\rc\n..d\r", &mut out);
        c.feed(b"e", &mut out);
        c.finish(&mut out);
        assert_eq!(out, b"a\nb\rc\n..d\re");
    }
}
