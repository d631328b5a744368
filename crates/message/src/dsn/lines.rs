//! Output lines of a notice: Postfix-style wrapping and the 998-byte line limit.

/// Maximal length of an output line, without the line end (RFC 5322).
pub(super) const MAX_LINE: usize = 998;
/// Postfix's `line_wrap()` width and continuation indent for report lines.
pub(super) const WRAP_WIDTH: usize = 79;
const WRAP_INDENT: usize = 4;

/// The notice being built.
#[derive(Default)]
pub(super) struct Out {
    pub(super) buf: Vec<u8>,
}

impl Out {
    /// One line of our own text (over-long ones are folded like header lines).
    pub(super) fn line(&mut self, s: &str) {
        self.limited(s.as_bytes(), b" ");
    }

    /// A line with outside data: wrapped at 79 columns, continuation lines indented.
    pub(super) fn wrapped(&mut self, s: &str) {
        for line in wrap(s, WRAP_WIDTH, WRAP_INDENT) {
            self.limited(line.as_bytes(), b"    ");
        }
    }

    /// Lines of the returned message, each kept under the limit.
    pub(super) fn raw_lines(&mut self, data: &[u8]) {
        let data = data.strip_suffix(b"\n").unwrap_or(data);
        for line in data.split(|&b| b == b'\n') {
            self.limited(line, b" ");
        }
    }

    /// Writes `line` + "\n", breaking it into pieces of at most 998 bytes, each later piece
    /// starting with `prefix` (never inside a UTF-8 sequence when one can be avoided).
    fn limited(&mut self, mut line: &[u8], prefix: &[u8]) {
        let mut first = true;
        loop {
            let room = if first {
                MAX_LINE
            } else {
                MAX_LINE - prefix.len()
            };
            if !first {
                self.buf.extend_from_slice(prefix);
            }
            if line.len() <= room {
                self.buf.extend_from_slice(line);
                self.buf.push(b'\n');
                return;
            }
            let mut cut = room;
            // Back up over UTF-8 continuation bytes, but at most one character's worth.
            while cut > room - 3 && line[cut] & 0xC0 == 0x80 {
                cut -= 1;
            }
            if line[cut] & 0xC0 == 0x80 {
                cut = room;
            }
            self.buf.extend_from_slice(&line[..cut]);
            self.buf.push(b'\n');
            line = &line[cut..];
            first = false;
        }
    }
}

/// Postfix's `line_wrap()`: breaks at blanks so lines fit in `width` columns; continuation
/// lines are indented by `indent`. Words longer than a line are left whole (the 998-byte
/// limit is enforced when writing).
fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut pending_blank = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let blank_len = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let blanks = &rest[..blank_len];
        rest = &rest[blank_len..];
        let word_len = rest.find([' ', '\t']).unwrap_or(rest.len());
        let word = &rest[..word_len];
        rest = &rest[word_len..];
        if word.is_empty() {
            pending_blank.push_str(blanks);
            continue;
        }
        pending_blank.push_str(blanks);
        let starts_line = current.trim_start().is_empty();
        if !starts_line && current.len() + pending_blank.len() + word.len() > width {
            lines.push(std::mem::take(&mut current));
            current = " ".repeat(indent);
        } else {
            current.push_str(&pending_blank);
        }
        pending_blank.clear();
        current.push_str(word);
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_like_postfix() {
        assert_eq!(wrap("short", 79, 4), ["short"]);
        assert_eq!(wrap("", 79, 4), [""]);
        assert_eq!(wrap("aaa bbb ccc", 7, 2), ["aaa bbb", "  ccc"]);
        assert_eq!(wrap("aaa  bbb", 8, 2), ["aaa  bbb"]);
        assert_eq!(wrap("aaaaaaaaaa bb", 5, 2), ["aaaaaaaaaa", "  bb"]);
        assert_eq!(wrap("a ", 5, 2), ["a"]);
    }

    #[test]
    fn limit_breaks_at_character_boundaries() {
        let mut out = Out::default();
        let line = "\u{e4}".repeat(700); // 1400 bytes of two-byte characters
        out.line(&line);
        let text = String::from_utf8(out.buf).expect("no character was cut");
        let pieces: Vec<&str> = text.lines().collect();
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() <= MAX_LINE));
        assert!(pieces[1].starts_with(' '));
        assert_eq!(text.matches('\u{e4}').count(), 700);
    }
}
