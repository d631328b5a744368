//! The message on standard input, turned into queue-file content the way Postfix's sendmail
//! reads it with `sendmail_fix_line_endings = always`:
//!
//! - CR characters right before a line's LF are removed (CRLF becomes LF);
//! - leading `From ` lines (mbox envelope lines, also `>From `) are dropped;
//! - unless `-i`/`-oi`, a line holding only `.` ends the message and the rest of stdin is not
//!   read; no other dot handling (no dot-unstuffing: `..` stays `..`);
//! - a last line without LF gets one; everything else is kept byte for byte (NULs, 8-bit).
//!
//! Input is read in pieces of at most [`PIECE`] bytes, so a huge line without LF never needs
//! more memory than that.

use std::io::{self, BufRead, Read, Write};

/// The most bytes of one line held in memory at a time.
pub const PIECE: u64 = 64 * 1024;

/// Why copying the message failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading standard input failed.
    #[error("error reading input: {0}")]
    Read(#[source] io::Error),
    /// Writing the content (to postdrop) failed.
    #[error("error writing queue file: {0}")]
    Write(#[source] io::Error),
}

/// Copies the message from `input` to `out`, applying the rules in the module doc.
/// `dot_ends_input` is false with `-i`/`-oi`. Returns the number of bytes written.
pub fn copy_message<R: BufRead, W: Write>(
    input: &mut R,
    out: &mut W,
    dot_ends_input: bool,
) -> Result<u64, CopyError> {
    let mut c = Copier { out, written: 0 };
    let mut piece = Vec::with_capacity(8192);
    let mut at_line_start = true;
    let mut looking_for_from = true;
    let mut dropping_line = false;
    let mut held_crs = 0usize;
    loop {
        piece.clear();
        let n = input
            .by_ref()
            .take(PIECE)
            .read_until(b'\n', &mut piece)
            .map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        let complete = piece.last() == Some(&b'\n');
        let starts_line = at_line_start;
        at_line_start = complete;
        if dropping_line {
            dropping_line = !complete;
            continue;
        }
        if starts_line && looking_for_from {
            let unquoted = &piece[piece.iter().take_while(|&&b| b == b'>').count()..];
            if unquoted.starts_with(b"From ") {
                dropping_line = !complete;
                continue;
            }
            looking_for_from = false;
        }
        let text = if complete {
            &piece[..piece.len() - 1]
        } else {
            &piece[..]
        };
        let kept = text.len() - text.iter().rev().take_while(|&&b| b == b'\r').count();
        if starts_line && dot_ends_input && &text[..kept] == b"." {
            // Only a whole line (or the unterminated last one) can be the lone dot; a 64 KiB
            // piece of a longer line is never just ".".
            return Ok(c.written);
        }
        if kept > 0 {
            // CRs held back at the end of the previous piece were not at the end of the line.
            c.put_crs(held_crs)?;
            held_crs = 0;
            c.put(&text[..kept])?;
        }
        if complete {
            held_crs = 0;
            c.put(b"\n")?;
        } else {
            held_crs += text.len() - kept;
        }
    }
    if !at_line_start {
        c.put(b"\n")?;
    }
    Ok(c.written)
}

struct Copier<'a, W: Write> {
    out: &'a mut W,
    written: u64,
}

impl<W: Write> Copier<'_, W> {
    fn put(&mut self, b: &[u8]) -> Result<(), CopyError> {
        self.out.write_all(b).map_err(CopyError::Write)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn put_crs(&mut self, n: usize) -> Result<(), CopyError> {
        for _ in 0..n {
            self.put(b"\r")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], dot: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = input;
        let n = copy_message(&mut r, &mut out, dot).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn lone_dot_ends_input_unless_i() {
        let msg = b"Subject: x\n\nbody\n.\nafter\n";
        assert_eq!(run(msg, true), b"Subject: x\n\nbody\n");
        assert_eq!(run(msg, false), msg);
        // Also with CRLF, and as the unterminated last line.
        assert_eq!(run(b"a\r\n.\r\nb\r\n", true), b"a\n");
        assert_eq!(run(b"a\n.", true), b"a\n");
        assert_eq!(run(b"a\n.", false), b"a\n.\n");
    }

    #[test]
    fn the_rest_of_stdin_is_not_read() {
        let data = b"a\n.\nrest\n";
        let mut r: &[u8] = data;
        let mut out = Vec::new();
        copy_message(&mut r, &mut out, true).unwrap();
        assert_eq!(r, b"rest\n");
    }

    #[test]
    fn dots_inside_lines_are_kept() {
        let msg = b"..\n. \n.x\na.\n..\n";
        assert_eq!(run(msg, true), msg);
        assert_eq!(run(b" .\n", true), b" .\n");
    }

    #[test]
    fn crlf_becomes_lf() {
        assert_eq!(run(b"a\r\nb\r\n\r\nc\r\r\n", true), b"a\nb\n\nc\n");
        // A CR elsewhere is data.
        assert_eq!(run(b"a\rb\n\rc\n", true), b"a\rb\n\rc\n");
        // Mixed endings, and a last line without newline.
        assert_eq!(run(b"a\nb\r\nc", true), b"a\nb\nc\n");
        assert_eq!(run(b"c\r", true), b"c\n");
    }

    #[test]
    fn leading_from_lines_are_dropped() {
        assert_eq!(
            run(
                b"From alice Thu Nov 20 10:00:00 2025\nSubject: x\n\nFrom here\n",
                true
            ),
            b"Subject: x\n\nFrom here\n"
        );
        assert_eq!(run(b"From a\n>From b\nX: y\n", true), b"X: y\n");
        assert_eq!(run(b"X: y\nFrom a\n", true), b"X: y\nFrom a\n");
        assert_eq!(run(b"Fromage: yes\n", true), b"Fromage: yes\n");
        // A long From_ line is dropped whole.
        let mut long = b"From ".to_vec();
        long.extend(vec![b'x'; 200_000]);
        long.extend_from_slice(b"\nbody\n");
        assert_eq!(run(&long, true), b"body\n");
    }

    #[test]
    fn empty_input_and_binary_data() {
        assert_eq!(run(b"", true), b"");
        let bin = b"a\0b\xff\n";
        assert_eq!(run(bin, true), bin);
    }

    #[test]
    fn long_lines_keep_their_bytes() {
        let mut line = vec![b'y'; 300_000];
        line.push(b'\r');
        line.push(b'\n');
        let mut want = vec![b'y'; 300_000];
        want.push(b'\n');
        assert_eq!(run(&line, true), want);
        // A CR at a piece boundary that is not at the end of the line is kept.
        let mut line = vec![b'z'; PIECE as usize - 1];
        line.extend_from_slice(b"\rq\n");
        assert_eq!(run(&line, true), line);
        // A long line ending in a dot is not a lone dot.
        let mut line = vec![b'.'; PIECE as usize + 1];
        line.push(b'\n');
        assert_eq!(run(&line, true), line);
    }

    #[test]
    fn write_errors_are_reported_as_such() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut r: &[u8] = b"a\n";
        assert!(matches!(
            copy_message(&mut r, &mut Broken, true),
            Err(CopyError::Write(_))
        ));
    }
}
