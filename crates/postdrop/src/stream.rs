//! The strict reader of the record stream a submitter sends on standard input, and the
//! writer of the maildrop file's records.
//!
//! Every record is CRC-checked (posthorn_queue::record::RecordReader) and must come in
//! queue-file order:
//!
//! ```text
//! envelope   T (dropped: postdrop stamps the time itself), F, S (exactly one),
//!            A (rewrite_context=local|remote; extract_recipients=1 -> size-record flag),
//!            i, <, and per recipient O / n / o then R          ... then M
//! content    N ...                                                 ... then X
//! end        E, then end of input
//! ```
//!
//! Anything else is refused: other record types (`C`, `D`, `W`, `L`, ...), other
//! attributes, a second sender, recipient attributes without a recipient, envelope text
//! that is not UTF-8 or holds control characters, malformed DSN values, a message without
//! recipients (unless recipients are to be extracted from the headers), content beyond the
//! size guard, and input that ends before `E` or continues after it.

pub use posthorn_sys::sysexits::{EX_DATAERR, EX_TEMPFAIL};
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use posthorn_queue::file::{FLAG_EXTRACT_RECIPIENTS, SizeRecord};
use posthorn_queue::record::{RecordError, RecordReader, RecordWriter, kind};

/// Why a submission was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading standard input failed.
    #[error("error reading input: {0}")]
    Read(#[source] io::Error),
    /// A record is damaged (bad CRC, bad length) or cut off.
    #[error("malformed input: {0}")]
    Malformed(#[source] RecordError),
    /// The input ended before the end record (the submitter gave up or died).
    #[error("premature end of input: no end record")]
    Premature,
    /// A record type that is not allowed at this point.
    #[error("unexpected record type {:?} in the {segment}", *kind as char)]
    Unexpected {
        /// The record type.
        kind: u8,
        /// `envelope`, `content` or `end` segment.
        segment: &'static str,
    },
    /// A record whose value is not acceptable.
    #[error("{0}")]
    Bad(String),
    /// The content is larger than the guard allows.
    #[error("message file too big")]
    TooBig,
    /// Writing the queue file failed.
    #[error("error writing queue file: {0}")]
    Write(#[source] io::Error),
}

impl StreamError {
    /// The sysexits code: 75 for I/O trouble, 69 for a message over message_size_limit
    /// (what Postfix's sendmail exits with), 65 for everything else the input is to blame for.
    pub fn exit_code(&self) -> i32 {
        match self {
            StreamError::TooBig => 69,
            StreamError::Read(_) | StreamError::Write(_) => EX_TEMPFAIL,
            StreamError::Malformed(RecordError::Io(_)) => EX_TEMPFAIL,
            _ => EX_DATAERR,
        }
    }
}

/// Copies a submission from `input` into `out` (positioned after the size record), checking
/// it as described in the module doc; stamps `T` with `now`. Returns the size record to
/// commit the file with. Does not write `E`: committing the file does.
///
/// `max_content` is the size guard (None: unlimited).
pub fn copy_submission<R: Read, W: Write>(
    input: R,
    out: &mut RecordWriter<W>,
    now: SystemTime,
    max_content: Option<u64>,
) -> Result<SizeRecord, StreamError> {
    let put =
        |out: &mut RecordWriter<W>, k: u8, p: &[u8]| out.put(k, p).map_err(StreamError::Write);
    let next = |r: &mut RecordReader<R>| match r.next_record() {
        Ok(Some(rec)) => Ok(rec),
        Ok(None) => Err(StreamError::Premature),
        Err(RecordError::Io(e)) => Err(StreamError::Read(e)),
        Err(e) => Err(StreamError::Malformed(e)),
    };
    let mut r = RecordReader::new(input, 0);
    let t = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    put(
        out,
        kind::TIME,
        format!("{} {}", t.as_secs(), t.subsec_micros()).as_bytes(),
    )?;

    // Envelope.
    let mut size = SizeRecord::default();
    let (mut have_sender, mut have_full, mut have_envid, mut have_ret, mut have_context) =
        (false, false, false, false, false);
    let mut pending_rcpt_attrs = false;
    loop {
        let rec = next(&mut r)?;
        match rec.kind {
            kind::TIME => {}
            kind::FULL => {
                once(&mut have_full, "full name")?;
                text(&rec.payload, "full name")?;
                put(out, kind::FULL, &rec.payload)?;
            }
            kind::FROM => {
                once(&mut have_sender, "sender")?;
                text(&rec.payload, "sender")?;
                put(out, kind::FROM, &rec.payload)?;
            }
            kind::ATTR => {
                let t = text(&rec.payload, "attribute")?;
                match t.split_once('=') {
                    Some(("rewrite_context", "local" | "remote")) => {
                        once(&mut have_context, "rewrite_context attribute")?;
                        put(out, kind::ATTR, &rec.payload)?;
                    }
                    Some(("extract_recipients", "1")) => size.flags |= FLAG_EXTRACT_RECIPIENTS,
                    Some(("extract_recipients", "0")) => {}
                    _ => return Err(StreamError::Bad(format!("attribute not allowed: {t:.100}"))),
                }
            }
            kind::DSN_ENVID => {
                once(&mut have_envid, "DSN envelope ID")?;
                let t = text(&rec.payload, "DSN envelope ID")?;
                if t.len() > 100 || !t.is_ascii() {
                    return Err(StreamError::Bad("bad DSN envelope ID".into()));
                }
                put(out, kind::DSN_ENVID, &rec.payload)?;
            }
            kind::DSN_RET => {
                once(&mut have_ret, "DSN RET")?;
                if !matches!(&rec.payload[..], b"FULL" | b"HDRS") {
                    return Err(StreamError::Bad("bad DSN RET value".into()));
                }
                put(out, kind::DSN_RET, &rec.payload)?;
            }
            kind::DSN_NOTIFY => {
                if !valid_notify(&rec.payload) {
                    return Err(StreamError::Bad("bad DSN NOTIFY value".into()));
                }
                pending_rcpt_attrs = true;
                put(out, kind::DSN_NOTIFY, &rec.payload)?;
            }
            kind::ORCP | kind::DSN_ORCPT => {
                text(&rec.payload, "original recipient")?;
                pending_rcpt_attrs = true;
                put(out, rec.kind, &rec.payload)?;
            }
            kind::RCPT => {
                if text(&rec.payload, "recipient")?.is_empty() {
                    return Err(StreamError::Bad("empty recipient address".into()));
                }
                pending_rcpt_attrs = false;
                size.recipients += 1;
                put(out, kind::RCPT, &rec.payload)?;
            }
            kind::MESG => {
                if !have_sender {
                    return Err(StreamError::Bad("no sender record".into()));
                }
                if pending_rcpt_attrs {
                    return Err(StreamError::Bad(
                        "recipient attributes without a recipient".into(),
                    ));
                }
                if size.recipients == 0 && size.flags & FLAG_EXTRACT_RECIPIENTS == 0 {
                    return Err(StreamError::Bad("no recipients".into()));
                }
                size.content_offset = put(out, kind::MESG, b"")?;
                break;
            }
            k => {
                return Err(StreamError::Unexpected {
                    kind: k,
                    segment: "envelope",
                });
            }
        }
    }

    // Content.
    loop {
        let rec = next(&mut r)?;
        match rec.kind {
            kind::NORM => {
                size.content_size += rec.payload.len() as u64;
                if max_content.is_some_and(|m| size.content_size > m) {
                    return Err(StreamError::TooBig);
                }
                out.put_content(&rec.payload).map_err(StreamError::Write)?;
            }
            kind::XTRA => {
                put(out, kind::XTRA, b"")?;
                break;
            }
            k => {
                return Err(StreamError::Unexpected {
                    kind: k,
                    segment: "content",
                });
            }
        }
    }

    // End: exactly one E, then nothing.
    match next(&mut r)? {
        rec if rec.kind == kind::END => {}
        rec => {
            return Err(StreamError::Unexpected {
                kind: rec.kind,
                segment: "end",
            });
        }
    }
    let mut extra = [0u8; 1];
    let mut rest = r.into_inner();
    loop {
        match rest.read(&mut extra) {
            Ok(0) => return Ok(size),
            Ok(_) => return Err(StreamError::Bad("data after the end record".into())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Read(e)),
        }
    }
}

fn once(seen: &mut bool, what: &str) -> Result<(), StreamError> {
    if std::mem::replace(seen, true) {
        return Err(StreamError::Bad(format!("more than one {what} record")));
    }
    Ok(())
}

/// Envelope text: UTF-8 without control characters.
fn text<'a>(payload: &'a [u8], what: &str) -> Result<&'a str, StreamError> {
    let t = std::str::from_utf8(payload)
        .map_err(|_| StreamError::Bad(format!("{what} is not valid UTF-8")))?;
    if t.chars().any(char::is_control) {
        return Err(StreamError::Bad(format!(
            "{what} contains control characters"
        )));
    }
    Ok(t)
}

/// `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY` without repeats.
fn valid_notify(p: &[u8]) -> bool {
    if p == b"NEVER" {
        return true;
    }
    let mut seen = Vec::new();
    for w in p.split(|&b| b == b',') {
        if !matches!(w, b"SUCCESS" | b"FAILURE" | b"DELAY") || seen.contains(&w) {
            return false;
        }
        seen.push(w);
    }
    !seen.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_queue::record::encode;

    fn stream(records: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (k, p) in records {
            encode(*k, p, &mut v);
        }
        v
    }

    fn good() -> Vec<(u8, &'static [u8])> {
        vec![
            (kind::TIME, b"1 2"),
            (kind::FULL, b"Alice Example"),
            (kind::FROM, b"alice"),
            (kind::ATTR, b"rewrite_context=local"),
            (kind::DSN_ENVID, b"env1"),
            (kind::DSN_RET, b"HDRS"),
            (kind::DSN_NOTIFY, b"SUCCESS,DELAY"),
            (kind::RCPT, b"bob@example.com"),
            (kind::RCPT, b"carol"),
            (kind::MESG, b""),
            (kind::NORM, b"Subject: hi\n\n"),
            (kind::NORM, b"body\n"),
            (kind::XTRA, b""),
            (kind::END, b""),
        ]
    }

    fn run(input: &[u8], max: Option<u64>) -> Result<(SizeRecord, Vec<u8>), StreamError> {
        let mut w = RecordWriter::new(Vec::new(), 100);
        let now = UNIX_EPOCH + std::time::Duration::from_micros(5_000_007);
        let size = copy_submission(input, &mut w, now, max)?;
        Ok((size, w.into_inner()))
    }

    fn kinds(bytes: &[u8]) -> String {
        let mut r = RecordReader::new(bytes, 100);
        let mut s = String::new();
        while let Some(rec) = r.next_record().unwrap() {
            s.push(rec.kind as char);
            if rec.kind == kind::TIME {
                assert_eq!(rec.payload, b"5 7");
            }
        }
        s
    }

    #[test]
    fn accepts_a_good_submission() {
        let (size, out) = run(&stream(&good()), None).unwrap();
        assert_eq!(kinds(&out), "TFSAi<nRRMNNX");
        assert_eq!(size.content_size, 18);
        assert_eq!(size.recipients, 2);
        assert_eq!(size.flags, 0);
        let mut r = RecordReader::new(&out[..], 100);
        let m = std::iter::from_fn(|| r.next_record().unwrap())
            .find(|rec| rec.kind == kind::MESG)
            .unwrap();
        assert_eq!(size.content_offset, m.offset);
    }

    #[test]
    fn extract_flag_replaces_recipients_and_is_not_copied() {
        let s = stream(&[
            (kind::FROM, b""),
            (kind::ATTR, b"extract_recipients=1"),
            (kind::MESG, b""),
            (kind::NORM, b"To: x@y\n\n"),
            (kind::XTRA, b""),
            (kind::END, b""),
        ]);
        let (size, out) = run(&s, None).unwrap();
        assert_eq!(size.flags, FLAG_EXTRACT_RECIPIENTS);
        assert_eq!(size.recipients, 0);
        assert_eq!(kinds(&out), "TSMNX");
    }

    fn refuse(records: Vec<(u8, &[u8])>) -> StreamError {
        run(&stream(&records), None).unwrap_err()
    }

    #[test]
    fn refuses_forbidden_records_and_values() {
        let with = |at: usize, rec: (u8, &'static [u8])| {
            let mut g = good();
            g.insert(at, rec);
            refuse(g)
        };
        assert!(matches!(
            with(0, (kind::SIZE, b"1 2 3 4")),
            StreamError::Unexpected { kind: b'C', .. }
        ));
        assert!(matches!(
            with(3, (kind::DONE, b"x@y")),
            StreamError::Unexpected { kind: b'D', .. }
        ));
        assert!(matches!(
            with(11, (kind::RCPT, b"x@y")),
            StreamError::Unexpected {
                segment: "content",
                ..
            }
        ));
        assert!(matches!(
            with(3, (kind::ATTR, b"trace_flags=1")),
            StreamError::Bad(_)
        ));
        assert!(matches!(
            with(3, (kind::ATTR, b"rewrite_context=evil")),
            StreamError::Bad(_)
        ));
        assert!(matches!(
            with(3, (kind::FROM, b"second")),
            StreamError::Bad(_)
        ));
        assert!(matches!(
            with(3, (kind::RCPT, b"a\nb")),
            StreamError::Bad(_)
        ));
        assert!(matches!(
            with(3, (kind::RCPT, b"\xff")),
            StreamError::Bad(_)
        ));
        assert!(matches!(with(3, (kind::RCPT, b"")), StreamError::Bad(_)));
        assert!(matches!(
            with(3, (kind::DSN_RET, b"ALL")),
            StreamError::Bad(_)
        ));
        assert!(matches!(
            with(7, (kind::DSN_NOTIFY, b"NEVER,SUCCESS")),
            StreamError::Bad(_)
        ));
        assert!(matches!(with(9, (kind::ORCP, b"x@y")), StreamError::Bad(_)));
        let mut g = good();
        g.retain(|(k, _)| *k != kind::RCPT && *k != kind::DSN_NOTIFY);
        assert_eq!(refuse(g).to_string(), "no recipients");
        let mut g = good();
        g.retain(|(k, _)| *k != kind::FROM);
        assert_eq!(refuse(g).to_string(), "no sender record");
        let e = with(14, (kind::NORM, b"more"));
        assert_eq!(e.to_string(), "data after the end record");
        assert!(e.exit_code() == EX_DATAERR);
    }

    #[test]
    fn refuses_truncated_and_damaged_input() {
        let full = stream(&good());
        let e = run(&full[..full.len() - 6], None).unwrap_err();
        assert!(matches!(e, StreamError::Premature), "{e}");
        let e = run(&full[..full.len() - 2], None).unwrap_err();
        assert!(
            matches!(e, StreamError::Malformed(RecordError::Truncated(_))),
            "{e}"
        );
        let mut bad = full.clone();
        bad[10] ^= 0x20;
        assert!(matches!(
            run(&bad, None).unwrap_err(),
            StreamError::Malformed(_)
        ));
        assert!(matches!(
            run(b"", None).unwrap_err(),
            StreamError::Premature
        ));
        assert_eq!(StreamError::Premature.exit_code(), 65);
    }

    #[test]
    fn size_guard() {
        assert!(run(&stream(&good()), Some(18)).is_ok());
        let e = run(&stream(&good()), Some(17)).unwrap_err();
        assert_eq!(e.to_string(), "message file too big");
        assert_eq!(e.exit_code(), 69);
    }

    #[test]
    fn notify_values() {
        assert!(valid_notify(b"NEVER"));
        assert!(valid_notify(b"SUCCESS,FAILURE,DELAY"));
        assert!(!valid_notify(b"SUCCESS,SUCCESS"));
        assert!(!valid_notify(b""));
        assert!(!valid_notify(b"success"));
    }
}
