//! Showing one queue file, record by record, while checking it: every record's CRC, the
//! order of the segments (envelope, `M` content, `X`, `E`), the size record against the
//! content, and the required time and sender records — the checks posthorn-queue makes
//! before anything is delivered. Whatever can be read is shown; the first problem found is
//! the verdict, with the byte offset where it was found.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use posthorn_message::split_header_ranges;
use posthorn_message::time::asctime_local;
use posthorn_queue::file::LogEntry;
use posthorn_queue::record::{Record, RecordError, RecordReader, kind};

/// What to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-e`: envelope records, segment markers, recipient status and record check.
    pub envelope: bool,
    /// `-h`: the primary header, up to (not including) the first non-header line.
    pub header: bool,
    /// `-b`: the body, from the first non-header line on.
    pub body: bool,
    /// `-o`: each line starts with the offset of its record.
    pub offsets: bool,
    /// `-d`: each line starts with the decimal record type.
    pub decimal: bool,
}

/// The message's defer and bounce logs (`postcat -q`), for the recipient status.
#[derive(Clone, Debug, Default)]
pub struct Logs {
    /// Reasons for deferred recipients, oldest first.
    pub defer: Vec<LogEntry>,
    /// Reasons for bounced recipients, oldest first.
    pub bounce: Vec<LogEntry>,
}

/// The result of the record check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record is sound and in order; the file is marked complete (or not known).
    Ok,
    /// The first byte is not that of a size record: not a queue file at all.
    NotQueueFile,
    /// The records are damaged or out of order: what, and where.
    Corrupt(String),
    /// The records are sound but the file lacks its complete mark (mode shown).
    Incomplete(u32),
}

/// Shows the queue file read from `input` on `out`, titled `label`. `mode` is the file's
/// permission bits when known (a file without owner-execute was never committed).
pub fn show<R: Read, W: Write>(
    input: R,
    label: &str,
    flags: Flags,
    mode: Option<u32>,
    logs: Option<&Logs>,
    out: &mut W,
) -> io::Result<Verdict> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    if input.fill_buf()?.first() != Some(&kind::SIZE) {
        return Ok(Verdict::NotQueueFile);
    }
    let mut s = Shower {
        out,
        flags,
        label,
        segment: Segment::Envelope,
        problem: None,
        records: 0,
        have_time: false,
        have_sender: false,
        size: None,
        content_bytes: 0,
        recipients: Vec::new(),
        pending: Vec::new(),
        pending_at: 0,
        in_body: false,
        seen_header: false,
    };
    if flags.envelope {
        writeln!(s.out, "*** ENVELOPE RECORDS {label} ***")?;
    }
    let mut r = RecordReader::new(input, 0);
    let mut first = true;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                let go_on = if first {
                    s.size_record(&rec)
                } else {
                    s.record(rec)
                }?;
                first = false;
                if !go_on {
                    break;
                }
            }
            Ok(None) => {
                s.end_content()?;
                if s.segment != Segment::Ended {
                    s.problem(format!(
                        "missing end record (the file ends at offset {})",
                        r.offset()
                    ));
                }
                break;
            }
            Err(RecordError::Io(e)) => return Err(e),
            Err(e) => {
                s.end_content()?;
                s.problem(e.to_string());
                break;
            }
        }
    }
    if !first && (!s.have_time || !s.have_sender) && s.segment != Segment::Envelope {
        s.problem("missing sender or time record".into());
    }
    let verdict = match (s.problem.take(), mode) {
        (Some(p), _) => Verdict::Corrupt(p),
        (None, Some(m)) if m & 0o100 == 0 => Verdict::Incomplete(m & 0o7777),
        (None, _) => Verdict::Ok,
    };
    if flags.envelope {
        s.status(logs)?;
        let text = match &verdict {
            Verdict::Ok => format!("ok, {} records", s.records),
            Verdict::Corrupt(p) => format!("corrupt queue file: {p}"),
            Verdict::Incomplete(m) => format!(
                "{} records ok, but the file is not marked complete (mode {m:04o}): its writer did not commit it",
                s.records
            ),
            Verdict::NotQueueFile => "not a queue file".into(),
        };
        writeln!(s.out, "*** RECORD CHECK {label}: {text} ***")?;
    }
    s.out.flush()?;
    Ok(verdict)
}

/// Where in the file the reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    /// After the size record, before `M`.
    Envelope,
    /// Between `M` and `X`.
    Content,
    /// Between `X` and `E`.
    Extracted,
    /// After `E`.
    Ended,
}

/// Postfix's printable names of record types (`rec_type_name()`), where posthorn has them.
fn record_name(k: u8) -> &'static str {
    match k {
        kind::SIZE => "message_size",
        kind::TIME => "message_arrival_time",
        kind::FULL => "sender_fullname",
        kind::FROM => "sender",
        kind::ATTR => "named_attribute",
        kind::ORCP => "original_recipient",
        kind::DSN_NOTIFY => "dsn_notify_flags",
        kind::DSN_ORCPT => "dsn_original_recipient",
        kind::DSN_ENVID => "dsn_envelope_id",
        kind::DSN_RET => "dsn_return_flags",
        kind::RCPT => "recipient",
        kind::DONE => "done_recipient",
        kind::MESG => "message_content",
        kind::NORM => "regular_text",
        kind::XTRA => "extracted_info",
        kind::END => "message_end",
        kind::LOG => "log_entry",
        _ => "unknown_record_type",
    }
}

struct Shower<'a, W: Write> {
    out: &'a mut W,
    flags: Flags,
    label: &'a str,
    segment: Segment,
    /// The first problem found.
    problem: Option<String>,
    records: u64,
    have_time: bool,
    have_sender: bool,
    /// The size record's content size and offset.
    size: Option<(u64, u64)>,
    content_bytes: u64,
    /// Each recipient and whether it is done.
    recipients: Vec<(String, bool)>,
    /// The start of a content line whose end is in a later record.
    pending: Vec<u8>,
    /// The offset of the record where `pending` starts.
    pending_at: u64,
    in_body: bool,
    seen_header: bool,
}

impl<W: Write> Shower<'_, W> {
    fn problem(&mut self, p: String) {
        self.problem.get_or_insert(p);
    }

    fn prefix(&mut self, offset: u64, k: u8) -> io::Result<()> {
        if self.flags.offsets {
            write!(self.out, "{offset:9} ")?;
        }
        if self.flags.decimal {
            write!(self.out, "{k:3} ")?;
        }
        Ok(())
    }

    fn marker(&mut self, rec: &Record, text: &str) -> io::Result<()> {
        if self.flags.envelope {
            self.prefix(rec.offset, rec.kind)?;
            writeln!(self.out, "*** {text} {} ***", self.label)?;
        }
        Ok(())
    }

    fn print(&mut self, rec: &Record, value: &[u8]) -> io::Result<()> {
        if self.flags.envelope {
            self.prefix(rec.offset, rec.kind)?;
            write!(self.out, "{}: ", record_name(rec.kind))?;
            self.out.write_all(value)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn unexpected(&mut self, rec: &Record, segment: &str) -> io::Result<()> {
        self.problem(format!(
            "unexpected record {:?} in the {segment} at offset {}",
            rec.kind as char, rec.offset
        ));
        self.print(rec, &rec.payload)
    }

    /// The first record (its type byte was checked before).
    fn size_record(&mut self, rec: &Record) -> io::Result<bool> {
        self.records += 1;
        self.print(rec, &rec.payload)?;
        let v: Option<Vec<u64>> = std::str::from_utf8(&rec.payload)
            .ok()
            .and_then(|t| t.split_whitespace().map(|f| f.parse().ok()).collect());
        match v.as_deref() {
            Some(&[size, offset, _rcpts, _flags]) => self.size = Some((size, offset)),
            _ => self.problem(format!("bad size record at offset {}", rec.offset)),
        }
        Ok(true)
    }

    /// Shows and checks one record; false when reading should stop.
    fn record(&mut self, rec: Record) -> io::Result<bool> {
        self.records += 1;
        match (self.segment, rec.kind) {
            (Segment::Envelope, kind::TIME) => {
                self.have_time = true;
                let t = rec.text();
                let mut f = t.split_whitespace().map(str::parse::<u64>);
                match (f.next(), f.next()) {
                    (Some(Ok(s)), Some(Ok(us))) if us < 1_000_000 => {
                        let at = UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us);
                        self.print(&rec, asctime_local(at).as_bytes())?;
                    }
                    _ => {
                        self.problem(format!("bad time record at offset {}", rec.offset));
                        self.print(&rec, &rec.payload)?;
                    }
                }
            }
            (Segment::Envelope, kind::FROM) if self.have_sender => {
                self.unexpected(&rec, "envelope (a second sender)")?;
            }
            (Segment::Envelope, kind::FROM) => {
                self.have_sender = true;
                self.print(&rec, &rec.payload)?;
            }
            (Segment::Envelope, kind::ATTR) => {
                if !rec.payload.contains(&b'=') {
                    self.problem(format!("bad attribute record at offset {}", rec.offset));
                }
                self.print(&rec, &rec.payload)?;
            }
            (Segment::Envelope, kind::RCPT | kind::DONE) => {
                self.recipients.push((rec.text(), rec.kind == kind::DONE));
                self.print(&rec, &rec.payload)?;
            }
            (
                Segment::Envelope,
                kind::FULL
                | kind::DSN_ENVID
                | kind::DSN_RET
                | kind::ORCP
                | kind::DSN_NOTIFY
                | kind::DSN_ORCPT,
            ) => self.print(&rec, &rec.payload)?,
            (Segment::Envelope, kind::MESG) => {
                self.marker(&rec, "MESSAGE CONTENTS")?;
                if let Some((_, offset)) = self.size
                    && offset != 0
                    && offset != rec.offset
                {
                    self.problem(format!(
                        "content offset mismatch: the size record says {offset}, the content starts at offset {}",
                        rec.offset
                    ));
                }
                self.segment = Segment::Content;
            }
            (Segment::Envelope, _) => self.unexpected(&rec, "envelope")?,
            (Segment::Content, kind::NORM) => {
                self.content_bytes += rec.payload.len() as u64;
                self.content(&rec.payload, rec.offset)?;
            }
            (Segment::Content, kind::XTRA) => {
                self.end_content()?;
                self.marker(&rec, "HEADER EXTRACTED")?;
                if let Some((size, offset)) = self.size
                    && offset != 0
                    && size != self.content_bytes
                {
                    self.problem(format!(
                        "content size mismatch: the size record says {size} bytes, the content has {}",
                        self.content_bytes
                    ));
                }
                self.segment = Segment::Extracted;
            }
            (Segment::Content, _) => {
                self.problem(format!(
                    "unexpected record {:?} in the content at offset {}",
                    rec.kind as char, rec.offset
                ));
            }
            (Segment::Extracted, kind::END) => {
                self.marker(&rec, "MESSAGE FILE END")?;
                self.segment = Segment::Ended;
            }
            (Segment::Extracted, _) => self.unexpected(&rec, "extracted segment")?,
            (Segment::Ended, _) => {
                self.problem(format!(
                    "data after the end record at offset {}",
                    rec.offset
                ));
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Splits content blocks (cut anywhere) into lines, for the header/body choice.
    fn content(&mut self, data: &[u8], at: u64) -> io::Result<()> {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(i + 1);
            if self.pending.is_empty() {
                self.line(line, at)?;
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.line(&whole, self.pending_at)?;
            }
            rest = tail;
        }
        if !rest.is_empty() {
            if self.pending.is_empty() {
                self.pending_at = at;
            }
            self.pending.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Shows a last content line that has no newline (with one, as Postfix does).
    fn end_content(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let mut whole = std::mem::take(&mut self.pending);
            whole.push(b'\n');
            self.line(&whole, self.pending_at)?;
        }
        Ok(())
    }

    /// One content line (with its newline): header until the first line that is neither a
    /// header nor a continuation of one (posthorn-message's rule), body from there on.
    fn line(&mut self, line: &[u8], at: u64) -> io::Result<()> {
        if !self.in_body {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let continued = self.seen_header && matches!(text.first(), Some(b' ' | b'\t'));
            if continued || !split_header_ranges(text).0.is_empty() {
                self.seen_header = true;
            } else {
                self.in_body = true;
            }
        }
        if (self.in_body && self.flags.body) || (!self.in_body && self.flags.header) {
            self.prefix(at, kind::NORM)?;
            self.out.write_all(line)?;
        }
        Ok(())
    }

    /// The recipient status section: done or pending, with the last logged reason.
    fn status(&mut self, logs: Option<&Logs>) -> io::Result<()> {
        writeln!(self.out, "*** RECIPIENT STATUS {} ***", self.label)?;
        let none = Logs::default();
        let logs = logs.unwrap_or(&none);
        let last = |v: &[LogEntry], a: &str| v.iter().rev().find(|e| e.recipient == a).cloned();
        for (addr, done) in &self.recipients {
            let mut line = format!("{addr}: {}", if *done { "done" } else { "pending" });
            if let Some(e) = last(&logs.bounce, addr) {
                line.push_str(&format!(" (bounced: {} {})", e.dsn, e.reason));
            } else if let Some(e) = last(&logs.defer, addr).filter(|_| !done) {
                line.push_str(&format!(" (deferred: {} {})", e.dsn, e.reason));
            }
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_queue::record::RecordWriter;

    const ALL: Flags = Flags {
        envelope: true,
        header: true,
        body: true,
        offsets: false,
        decimal: false,
    };

    /// A queue file with content cut into blocks at awkward places.
    fn file(blocks: &[&[u8]]) -> Vec<u8> {
        let total: usize = blocks.iter().map(|b| b.len()).sum();
        // The size record's payload is four 15-wide numbers and three blanks.
        let size_len = posthorn_queue::record::encoded_len(63) as u64;
        let mut w = RecordWriter::new(Vec::new(), size_len);
        w.put(kind::TIME, b"1795000000 5").unwrap();
        w.put(kind::FROM, b"s@x").unwrap();
        w.put(kind::RCPT, b"a@x").unwrap();
        let m = w.put(kind::MESG, b"").unwrap();
        for b in blocks {
            w.put(kind::NORM, b).unwrap();
        }
        w.put(kind::XTRA, b"").unwrap();
        w.put(kind::END, b"").unwrap();
        let mut out = Vec::new();
        let size = format!("{:15} {:15} {:15} {:15}", total, m, 1, 0);
        posthorn_queue::record::encode(kind::SIZE, size.as_bytes(), &mut out);
        out.extend(w.into_inner());
        out
    }

    fn run(bytes: &[u8], flags: Flags) -> (String, Verdict) {
        let mut out = Vec::new();
        let v = show(bytes, "f", flags, None, None, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), v)
    }

    #[test]
    fn header_and_body_across_block_boundaries() {
        let f = file(&[b"Subject: a\n  fol", b"ded\nX-Y: z\n\nbody 1\nbo", b"dy 2"]);
        let only = |header, body| Flags {
            header,
            body,
            ..Flags::default()
        };
        let (h, v) = run(&f, only(true, false));
        assert_eq!(v, Verdict::Ok);
        assert_eq!(h, "Subject: a\n  folded\nX-Y: z\n");
        let (b, _) = run(&f, only(false, true));
        assert_eq!(b, "\nbody 1\nbody 2\n");
        let (all, _) = run(&f, ALL);
        assert!(all.contains("*** MESSAGE CONTENTS f ***\nSubject: a\n  folded\nX-Y: z\n\nbody 1\nbody 2\n*** HEADER EXTRACTED f ***\n*** MESSAGE FILE END f ***\n"), "{all}");
        assert!(
            all.ends_with(
                "*** RECIPIENT STATUS f ***\na@x: pending\n*** RECORD CHECK f: ok, 10 records ***\n"
            ),
            "{all}"
        );
    }

    #[test]
    fn a_body_without_headers_and_offsets() {
        let f = file(&[b" leading blank\nno header\n"]);
        let flags = Flags {
            body: true,
            offsets: true,
            decimal: true,
            ..Flags::default()
        };
        let (b, _) = run(&f, flags);
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" 78  leading blank"), "{b}");
        assert_eq!(&lines[0][..10], &lines[1][..10], "same record");
    }

    #[test]
    fn damage_is_described_never_a_panic() {
        let f = file(&[b"Subject: x\n\nhello\n"]);
        for cut in 0..f.len() {
            let (_, v) = run(&f[..cut], ALL);
            match (cut, v) {
                (0, Verdict::NotQueueFile) => {}
                (_, Verdict::Corrupt(_)) => {}
                (c, v) => panic!("cut at {c}: {v:?}"),
            }
        }
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x20;
            let (_, v) = run(&bad, ALL);
            assert_ne!(v, Verdict::Ok, "flip at {i}");
        }
        let mut extra = f.clone();
        extra.extend_from_slice(&f);
        let (_, v) = run(&extra, ALL);
        assert!(
            matches!(v, Verdict::Corrupt(ref p) if p.starts_with("data after the end record")),
            "{v:?}"
        );
        let (_, v) = run(b"hello", ALL);
        assert_eq!(v, Verdict::NotQueueFile);
    }

    #[test]
    fn mode_without_the_complete_bit() {
        let f = file(&[b"x\n"]);
        let mut out = Vec::new();
        let v = show(&f[..], "f", ALL, Some(0o100600), None, &mut out).unwrap();
        assert_eq!(v, Verdict::Incomplete(0o600));
        let v = show(&f[..], "f", ALL, Some(0o100700), None, &mut out).unwrap();
        assert_eq!(v, Verdict::Ok);
    }
}
