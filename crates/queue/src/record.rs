//! The record format of queue files and of the cleanup stream.
//!
//! A record is `type (1 byte) | length (LEB128: 7 bits per byte, least significant first,
//! high bit = more) | payload | CRC32 (4 bytes, little-endian)`. The CRC (IEEE, crc32fast)
//! covers the type, the length bytes and the payload, with one exception: the recipient types
//! `R` (to do) and `D` (done) are hashed as `R`, because delivery agents flip that byte in
//! place ([`crate::file::mark_done`]) without rewriting the record.
//!
//! Record types use Postfix's letters where the meaning is the same.

use std::io::{self, Read, Write};

/// Largest payload accepted (content blocks are at most [`BLOCK_SIZE`]).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Content is stored in blocks of at most this many bytes.
pub const BLOCK_SIZE: usize = 64 * 1024;

/// Record types.
pub mod kind {
    /// Fixed-width size record, first in a queue file; patched in place before commit.
    pub const SIZE: u8 = b'C';
    /// Arrival time, `"sec usec"`.
    pub const TIME: u8 = b'T';
    /// Sender's full name (sendmail -F).
    pub const FULL: u8 = b'F';
    /// Envelope sender (empty = null sender).
    pub const FROM: u8 = b'S';
    /// Named attribute, `name=value`.
    pub const ATTR: u8 = b'A';
    /// Original recipient of the next recipient record.
    pub const ORCP: u8 = b'O';
    /// DSN NOTIFY of the next recipient (comma list: NEVER, SUCCESS, FAILURE, DELAY).
    pub const DSN_NOTIFY: u8 = b'n';
    /// DSN ORCPT of the next recipient (`type;address`).
    pub const DSN_ORCPT: u8 = b'o';
    /// DSN ENVID of the message.
    pub const DSN_ENVID: u8 = b'i';
    /// DSN RET of the message (`FULL` or `HDRS`).
    pub const DSN_RET: u8 = b'<';
    /// A recipient still to be delivered.
    pub const RCPT: u8 = b'R';
    /// A recipient that has its final status.
    pub const DONE: u8 = b'D';
    /// Start of the message content.
    pub const MESG: u8 = b'M';
    /// A block of message content (LF line endings, arbitrary split points).
    pub const NORM: u8 = b'N';
    /// End of the message content.
    pub const XTRA: u8 = b'X';
    /// End of the file; a file without it is incomplete.
    pub const END: u8 = b'E';
    /// A defer/bounce log entry: `recipient \t original \t dsn \t reason`.
    pub const LOG: u8 = b'L';
    /// Cleanup stream only: the message is complete, commit it.
    pub const COMMIT: u8 = b'!';
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The type byte.
    pub kind: u8,
    /// The payload.
    pub payload: Vec<u8>,
    /// Byte offset of the type byte in the stream.
    pub offset: u64,
}

impl Record {
    /// The payload as text (queue files hold UTF-8 envelope data; invalid bytes are replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The underlying read failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The stream ended inside a record.
    #[error("truncated record at offset {0}")]
    Truncated(u64),
    /// The length field is malformed or too large.
    #[error("bad record length at offset {0}")]
    BadLength(u64),
    /// The CRC does not match.
    #[error("CRC mismatch in record {kind:?} at offset {offset}")]
    Crc {
        /// The record type as read.
        kind: char,
        /// Where the record starts.
        offset: u64,
    },
}

fn crc_of(kind: u8, len_bytes: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let k = if kind == kind::DONE { kind::RCPT } else { kind };
    h.update(&[k]);
    h.update(len_bytes);
    h.update(payload);
    h.finalize()
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Appends one encoded record to `out`.
pub fn encode(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(
        payload.len() <= MAX_PAYLOAD,
        "encode: payload of {} bytes",
        payload.len()
    );
    out.push(kind);
    let len_at = out.len();
    leb128(payload.len(), out);
    let crc = crc_of(kind, &out[len_at..], payload);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The encoded size of a record with a payload of `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    let mut v = Vec::new();
    leb128(len, &mut v);
    1 + v.len() + len + 4
}

/// Writes records to a byte stream, counting the offset.
pub struct RecordWriter<W: Write> {
    inner: W,
    offset: u64,
    buf: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    /// Starts writing at `offset` (where the stream currently is).
    pub fn new(inner: W, offset: u64) -> Self {
        RecordWriter {
            inner,
            offset,
            buf: Vec::with_capacity(256),
        }
    }

    /// Writes one record; returns the offset of its type byte.
    pub fn put(&mut self, kind: u8, payload: &[u8]) -> io::Result<u64> {
        self.buf.clear();
        encode(kind, payload, &mut self.buf);
        self.inner.write_all(&self.buf)?;
        let at = self.offset;
        self.offset += self.buf.len() as u64;
        Ok(at)
    }

    /// Writes a block of content as as many [`kind::NORM`] records as needed.
    pub fn put_content(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(BLOCK_SIZE);
            self.put(kind::NORM, &data[..n])?;
            data = &data[n..];
        }
        Ok(())
    }

    /// The offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives back the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads records from a byte stream, verifying each CRC.
pub struct RecordReader<R: Read> {
    inner: R,
    offset: u64,
}

impl<R: Read> RecordReader<R> {
    /// Starts reading at `offset` (where the stream currently is).
    pub fn new(inner: R, offset: u64) -> Self {
        RecordReader { inner, offset }
    }

    /// The offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record; `Ok(None)` at a clean end of stream (between records).
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        let start = self.offset;
        let mut k = [0u8; 1];
        match self.inner.read(&mut k) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return self.next_record(),
            Err(e) => return Err(e.into()),
        }
        let mut len_bytes = Vec::with_capacity(3);
        let mut len: usize = 0;
        loop {
            let mut b = [0u8; 1];
            self.read_exact(&mut b, start)?;
            len_bytes.push(b[0]);
            if len_bytes.len() > 4 {
                return Err(RecordError::BadLength(start));
            }
            len |= usize::from(b[0] & 0x7f) << (7 * (len_bytes.len() - 1));
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        if len > MAX_PAYLOAD {
            return Err(RecordError::BadLength(start));
        }
        let mut payload = vec![0u8; len];
        self.read_exact(&mut payload, start)?;
        let mut crc = [0u8; 4];
        self.read_exact(&mut crc, start)?;
        if u32::from_le_bytes(crc) != crc_of(k[0], &len_bytes, &payload) {
            return Err(RecordError::Crc {
                kind: k[0] as char,
                offset: start,
            });
        }
        self.offset = start + 1 + len_bytes.len() as u64 + len as u64 + 4;
        Ok(Some(Record {
            kind: k[0],
            payload,
            offset: start,
        }))
    }

    fn read_exact(&mut self, buf: &mut [u8], start: u64) -> Result<(), RecordError> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                RecordError::Truncated(start)
            } else {
                RecordError::Io(e)
            }
        })
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = RecordWriter::new(Vec::new(), 0);
        w.put(kind::FROM, b"a@b").unwrap();
        let big = vec![b'x'; 200_000];
        w.put_content(&big).unwrap();
        w.put(kind::END, b"").unwrap();
        let bytes = w.into_inner();
        let mut r = RecordReader::new(&bytes[..], 0);
        let a = r.next_record().unwrap().unwrap();
        assert_eq!(
            (a.kind, a.payload.as_slice(), a.offset),
            (kind::FROM, &b"a@b"[..], 0)
        );
        let mut got = Vec::new();
        loop {
            let rec = r.next_record().unwrap().unwrap();
            if rec.kind == kind::END {
                break;
            }
            assert_eq!(rec.kind, kind::NORM);
            got.extend(rec.payload);
        }
        assert_eq!(got, big);
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn detects_damage_and_allows_done_flip() {
        let mut v = Vec::new();
        encode(kind::RCPT, b"u@x", &mut v);
        v[0] = kind::DONE;
        let rec = RecordReader::new(&v[..], 0).next_record().unwrap().unwrap();
        assert_eq!(rec.kind, kind::DONE);
        let mut bad = v.clone();
        bad[3] ^= 1;
        assert!(matches!(
            RecordReader::new(&bad[..], 0).next_record(),
            Err(RecordError::Crc { .. })
        ));
        let mut bad = v.clone();
        bad[0] = kind::FROM;
        assert!(RecordReader::new(&bad[..], 0).next_record().is_err());
        for cut in 1..v.len() {
            assert!(matches!(
                RecordReader::new(&v[..cut], 0).next_record(),
                Err(RecordError::Truncated(0))
            ));
        }
        let huge = [kind::NORM, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            RecordReader::new(&huge[..], 0).next_record(),
            Err(RecordError::BadLength(0))
        ));
    }
}
