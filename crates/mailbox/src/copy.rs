//! The bytes of one delivered copy: the optional `From ` line, the prepended header lines,
//! then the message, with `>From ` quoting and a final blank line where the format asks for
//! them (Postfix's `mail_copy()` flags). The message is streamed, never held whole.

use std::io::{self, Read};

use crate::Envelope;
use crate::localtime;

/// What to add around and inside the message for one kind of destination.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    /// Start with `From SENDER  DATE`.
    pub from_line: bool,
    /// Prefix `>` to every message line that starts with `From `.
    pub quote_from: bool,
    /// End with an empty line, so that the next `From ` line is found.
    pub blank_line: bool,
}

impl Format {
    /// mbox files and `/file` destinations.
    pub const MBOX: Format = Format {
        from_line: true,
        quote_from: true,
        blank_line: true,
    };
    /// Maildir files: the message as is, after the prepended lines.
    pub const MAILDIR: Format = Format {
        from_line: false,
        quote_from: false,
        blank_line: false,
    };
    /// Command input: the `From ` line, no quoting, no trailing blank line.
    pub const COMMAND: Format = Format {
        from_line: true,
        quote_from: false,
        blank_line: false,
    };
}

/// How much message content to read at a time.
const CHUNK: usize = 64 * 1024;

/// Produces the delivered copy in pieces, reading the message as it goes.
pub(crate) struct Encoder<'a> {
    content: &'a mut dyn Read,
    format: Format,
    /// `From ` line and prepended lines, not yet handed out.
    head: Option<Vec<u8>>,
    /// True when the next content byte starts a line.
    at_line_start: bool,
    /// The first bytes (fewer than five, no newline) of a line whose quoting is undecided.
    held: Vec<u8>,
    inbuf: Vec<u8>,
    done: bool,
}

impl<'a> Encoder<'a> {
    /// An encoder for `content` with the envelope's `From ` line and prepended lines.
    pub fn new(env: &Envelope<'_>, content: &'a mut dyn Read, format: Format) -> Self {
        let mut head = Vec::with_capacity(256);
        if format.from_line {
            head.extend_from_slice(from_line(env.sender, env.arrival).as_bytes());
        }
        for line in env.prepend {
            head.extend(
                line.bytes()
                    .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
            );
            head.push(b'\n');
        }
        Encoder {
            content,
            format,
            head: Some(head),
            at_line_start: true,
            held: Vec::with_capacity(5),
            inbuf: vec![0; CHUNK],
            done: false,
        }
    }

    /// Appends the next piece of the copy to `out` (possibly nothing). Returns `Ok(false)`
    /// once the copy is complete, `Ok(true)` when there is more to come. An error is a read
    /// error of the message content.
    pub fn fill(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if let Some(head) = self.head.take() {
            out.extend_from_slice(&head);
            return Ok(true);
        }
        if self.done {
            return Ok(false);
        }
        let n = loop {
            match self.content.read(&mut self.inbuf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.finish(out);
            return Ok(false);
        }
        let data = std::mem::take(&mut self.inbuf);
        self.encode(&data[..n], out);
        self.inbuf = data;
        Ok(true)
    }

    /// Copies content bytes to `out`, quoting lines that start with `From `.
    fn encode(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        if !self.format.quote_from {
            if let Some(&last) = data.last() {
                self.at_line_start = last == b'\n';
            }
            out.extend_from_slice(data);
            return;
        }
        while !data.is_empty() {
            if self.at_line_start {
                // Decide on quoting once five bytes of the line (or its end) are known.
                let want = (5 - self.held.len()).min(data.len());
                if let Some(nl) = data[..want].iter().position(|&b| b == b'\n') {
                    out.append(&mut self.held);
                    out.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    continue;
                }
                self.held.extend_from_slice(&data[..want]);
                data = &data[want..];
                if self.held.len() < 5 {
                    return;
                }
                if self.held == b"From " {
                    out.push(b'>');
                }
                out.append(&mut self.held);
                self.at_line_start = false;
            } else if let Some(nl) = data.iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&data[..=nl]);
                data = &data[nl + 1..];
                self.at_line_start = true;
            } else {
                out.extend_from_slice(data);
                return;
            }
        }
    }

    /// Ends the copy: completes a last line without newline, adds the blank line.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.held.is_empty() {
            out.append(&mut self.held);
            self.at_line_start = false;
        }
        if !self.at_line_start {
            out.push(b'\n');
            self.at_line_start = true;
        }
        if self.format.blank_line {
            out.push(b'\n');
        }
        self.done = true;
    }
}

/// Postfix's envelope line: `From SENDER  DATE\n` (two spaces, asctime date, local time).
pub(crate) fn from_line(sender: &str, arrival: std::time::SystemTime) -> String {
    let who = if sender.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        quote_local_part(sender)
    };
    format!("From {who}  {}\n", localtime::asctime(arrival))
}

/// Quotes the local part of `addr` as RFC 5322 requires when it is not a dot-atom
/// (Postfix's `quote_822_local()`); control characters become `_` so that the line stays
/// one line.
fn quote_local_part(addr: &str) -> String {
    let addr: String = addr
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let (local, domain) = match addr.rfind('@') {
        Some(at) => (&addr[..at], &addr[at..]),
        None => (addr.as_str(), ""),
    };
    let special = |c: char| c == ' ' || "()<>@,;:\\\".[]".contains(c);
    let dot_atom_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !local.chars().any(|c| c != '.' && special(c));
    if dot_atom_ok {
        return addr.clone();
    }
    let mut quoted = String::with_capacity(addr.len() + 4);
    quoted.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted.push_str(domain);
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A reader that hands out its data in pieces of `step` bytes.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn encode(content: &[u8], step: usize, format: Format, prepend: &[String]) -> Vec<u8> {
        let env = Envelope {
            sender: "s@example.org",
            arrival: SystemTime::UNIX_EPOCH,
            prepend,
        };
        let mut reader = Trickle {
            data: content,
            step,
        };
        let mut enc = Encoder::new(&env, &mut reader, format);
        let mut out = Vec::new();
        while enc.fill(&mut out).unwrap() {}
        out
    }

    #[test]
    fn quoting_is_independent_of_read_boundaries() {
        let body = b"From x\nSubject: From here\n\nFrom  a\nFro\nFrom\n>From b\nFrom ";
        let want = b"A: b\n>From x\nSubject: From here\n\n>From  a\nFro\nFrom\n>From b\n>From \n\n";
        for step in 1..=body.len() {
            let got = encode(body, step, Format::MBOX, &["A: b".to_string()]);
            let without_from = &got[got.iter().position(|&b| b == b'\n').unwrap() + 1..];
            assert_eq!(
                String::from_utf8_lossy(without_from),
                String::from_utf8_lossy(want),
                "step {step}"
            );
        }
    }

    #[test]
    fn maildir_format_is_verbatim_plus_newline() {
        let got = encode(b"From x\nbody", 3, Format::MAILDIR, &[]);
        assert_eq!(got, b"From x\nbody\n");
        let got = encode(b"", 3, Format::MAILDIR, &["X: y".to_string()]);
        assert_eq!(got, b"X: y\n");
    }

    #[test]
    fn prepended_lines_cannot_inject_lines() {
        let got = encode(b"b\n", 9, Format::MAILDIR, &["X: a\nFrom evil".to_string()]);
        assert_eq!(got, b"X: a From evil\nb\n");
    }

    #[test]
    fn from_line_uses_two_spaces_and_mailer_daemon() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_621_205);
        let date = localtime::asctime(t);
        assert_eq!(from_line("", t), format!("From MAILER-DAEMON  {date}\n"));
        assert_eq!(from_line("a@b", t), format!("From a@b  {date}\n"));
    }

    #[test]
    fn local_part_quoting() {
        assert_eq!(quote_local_part("joe@example.org"), "joe@example.org");
        assert_eq!(quote_local_part("j.o+e@x"), "j.o+e@x");
        assert_eq!(quote_local_part("a b@x"), "\"a b\"@x");
        assert_eq!(quote_local_part("a\"b@x"), "\"a\\\"b\"@x");
        assert_eq!(quote_local_part(".a@x"), "\".a\"@x");
        assert_eq!(quote_local_part("a\nb@x"), "a_b@x");
        assert_eq!(quote_local_part("x@y@z"), "\"x@y\"@z");
    }
}
