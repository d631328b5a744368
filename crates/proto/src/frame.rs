//! Frame encoding, strict decoding, and a buffered connection.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The largest frame accepted (content travels in blocks of at most 64 KiB).
pub const MAX_FRAME: usize = 4 << 20;

/// IPC errors.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection between frames.
    #[error("connection closed by peer")]
    Closed,
    /// The peer sent something this protocol does not allow.
    #[error("protocol error: {0}")]
    Bad(String),
}

impl ProtoError {
    /// A protocol violation with a message.
    pub fn bad(msg: impl Into<String>) -> Self {
        ProtoError::Bad(msg.into())
    }
}

/// One frame being built: a kind byte and fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The message kind.
    pub kind: u8,
    buf: Vec<u8>,
}

impl Frame {
    /// A new frame of `kind`.
    pub fn new(kind: u8) -> Self {
        Frame {
            kind,
            buf: Vec::new(),
        }
    }

    /// Adds a byte-string field.
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(b);
        self
    }

    /// Adds a text field.
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    /// Adds a number field.
    pub fn u64(self, n: u64) -> Self {
        self.bytes(&n.to_be_bytes())
    }

    /// Adds a list field; `f` encodes each item into a frame of its own.
    pub fn list<T>(mut self, items: &[T], f: impl Fn(&T) -> Frame) -> Self {
        self = self.u64(items.len() as u64);
        for it in items {
            let sub = f(it);
            self = self.bytes(&sub.buf);
        }
        self
    }

    /// The encoded frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.buf.len());
        out.extend_from_slice(&((self.buf.len() + 1) as u32).to_be_bytes());
        out.push(self.kind);
        out.extend_from_slice(&self.buf);
        out
    }
}

/// For non-blocking readers: the first complete frame in `buf` as (bytes used, frame body
/// starting with its kind byte), or None while incomplete.
pub fn split_frame(buf: &[u8]) -> Result<Option<(usize, &[u8])>, ProtoError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if n == 0 || n > MAX_FRAME {
        return Err(ProtoError::bad(format!("frame length {n}")));
    }
    Ok(buf.get(4..4 + n).map(|body| (4 + n, body)))
}

/// A strict reader over a received frame's fields.
pub struct FrameReader<'a> {
    /// The message kind.
    pub kind: u8,
    data: &'a [u8],
}

impl<'a> FrameReader<'a> {
    /// Reads the fields of a frame body (kind byte first).
    pub fn new(body: &'a [u8]) -> Result<Self, ProtoError> {
        let (&kind, data) = body
            .split_first()
            .ok_or_else(|| ProtoError::bad("empty frame"))?;
        Ok(FrameReader { kind, data })
    }

    /// The next field as bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        if self.data.len() < 4 {
            return Err(ProtoError::bad("missing field"));
        }
        let n =
            u32::from_be_bytes([self.data[0], self.data[1], self.data[2], self.data[3]]) as usize;
        let rest = &self.data[4..];
        if rest.len() < n {
            return Err(ProtoError::bad("field longer than frame"));
        }
        self.data = &rest[n..];
        Ok(&rest[..n])
    }

    /// The next field as UTF-8 text.
    pub fn str(&mut self) -> Result<String, ProtoError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| ProtoError::bad("field is not UTF-8"))
    }

    /// The next field as a number.
    pub fn u64(&mut self) -> Result<u64, ProtoError> {
        let b = self.bytes()?;
        let a: [u8; 8] = b
            .try_into()
            .map_err(|_| ProtoError::bad("number field of wrong size"))?;
        Ok(u64::from_be_bytes(a))
    }

    /// The next field as a list; `f` decodes each item from a reader of its own.
    pub fn list<T>(
        &mut self,
        f: impl Fn(&mut FrameReader<'a>) -> Result<T, ProtoError>,
    ) -> Result<Vec<T>, ProtoError> {
        let n = self.u64()?;
        if n > (self.data.len() / 4) as u64 {
            return Err(ProtoError::bad("list count larger than frame"));
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let b = self.bytes()?;
            let mut sub = FrameReader {
                kind: self.kind,
                data: b,
            };
            out.push(f(&mut sub)?);
            sub.finish()?;
        }
        Ok(out)
    }

    /// Whether every field was consumed (for optional trailing fields).
    pub fn at_end(&self) -> bool {
        self.data.is_empty()
    }

    /// Checks that every field was consumed.
    pub fn finish(&self) -> Result<(), ProtoError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::bad("extra data at end of frame"))
        }
    }
}

/// The greeting every server sends first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol name, e.g. `cleanup_protocol`.
    pub protocol: String,
    /// Protocol version.
    pub version: u64,
}

const HELLO: u8 = b'H';

impl Hello {
    /// Encodes the greeting.
    pub fn frame(&self) -> Frame {
        Frame::new(HELLO).str(&self.protocol).u64(self.version)
    }
}

/// A buffered, framed connection.
pub struct Conn {
    r: BufReader<UnixStream>,
    w: BufWriter<UnixStream>,
    body: Vec<u8>,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(s: UnixStream) -> io::Result<Self> {
        let w = BufWriter::with_capacity(64 * 1024, s.try_clone()?);
        Ok(Conn {
            r: BufReader::with_capacity(64 * 1024, s),
            w,
            body: Vec::new(),
        })
    }

    /// Connects to a service socket and checks its greeting.
    pub fn connect(
        path: &Path,
        protocol: &str,
        version: u64,
        timeout: Option<Duration>,
    ) -> Result<Self, ProtoError> {
        let s = UnixStream::connect(path)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {}: {e}", path.display())))?;
        s.set_read_timeout(timeout)?;
        s.set_write_timeout(timeout)?;
        let mut c = Conn::new(s)?;
        let mut r = c.read_frame()?;
        if r.kind != HELLO {
            return Err(ProtoError::bad("expected greeting"));
        }
        let (p, v) = (r.str()?, r.u64()?);
        r.finish()?;
        if p != protocol || v != version {
            return Err(ProtoError::bad(format!(
                "{}: server speaks {p} v{v}, not {protocol} v{version}",
                path.display()
            )));
        }
        Ok(c)
    }

    /// Server side: sends the greeting.
    pub fn greet(&mut self, protocol: &str, version: u64) -> Result<(), ProtoError> {
        self.send(
            &Hello {
                protocol: protocol.into(),
                version,
            }
            .frame(),
        )?;
        self.flush()
    }

    /// Queues a frame for sending (call [`Conn::flush`] to push it out).
    pub fn send(&mut self, f: &Frame) -> Result<(), ProtoError> {
        self.w.write_all(&f.encode())?;
        Ok(())
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> Result<(), ProtoError> {
        self.w.flush()?;
        Ok(())
    }

    /// Reads the next frame; [`ProtoError::Closed`] on a clean end of stream.
    pub fn read_frame(&mut self) -> Result<FrameReader<'_>, ProtoError> {
        let mut len = [0u8; 4];
        match self.r.read(&mut len[..1]) {
            Ok(0) => return Err(ProtoError::Closed),
            Ok(_) => self.r.read_exact(&mut len[1..])?,
            Err(e) => return Err(e.into()),
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > MAX_FRAME {
            return Err(ProtoError::bad(format!("frame length {n}")));
        }
        self.body.resize(n, 0);
        self.r.read_exact(&mut self.body)?;
        FrameReader::new(&self.body)
    }

    /// Whether received bytes are waiting in the buffer (then the socket need not be polled).
    pub fn has_buffered(&self) -> bool {
        !self.r.buffer().is_empty()
    }

    /// The underlying socket.
    pub fn stream(&self) -> &UnixStream {
        self.r.get_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding() {
        let f = Frame::new(b'x')
            .str("a")
            .u64(7)
            .list(&["p", "q"], |s| Frame::new(0).str(s));
        let enc = f.encode();
        let mut r = FrameReader::new(&enc[4..]).unwrap();
        assert_eq!(r.kind, b'x');
        assert_eq!(r.str().unwrap(), "a");
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.list(|r| r.str()).unwrap(), vec!["p", "q"]);
        r.finish().unwrap();
        // Truncations and extra bytes are errors, never panics.
        for cut in 5..enc.len() {
            let mut r = FrameReader::new(&enc[4..cut]).unwrap();
            let res = (|| {
                r.str()?;
                r.u64()?;
                r.list(|r| r.str())?;
                r.finish()
            })();
            assert!(res.is_err(), "cut {cut}");
        }
    }

    #[test]
    fn conn_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut server = Conn::new(a).unwrap();
        let t = std::thread::spawn(move || {
            server.greet("test_protocol", 1).unwrap();
            let mut r = server.read_frame().unwrap();
            let s = r.str().unwrap();
            server
                .send(&Frame::new(b'r').str(&s.to_uppercase()))
                .unwrap();
            server.flush().unwrap();
        });
        let mut c = Conn::new(b).unwrap();
        let mut h = c.read_frame().unwrap();
        assert_eq!(
            (h.kind, h.str().unwrap()),
            (b'H', "test_protocol".to_string())
        );
        c.send(&Frame::new(b'q').str("hi")).unwrap();
        c.flush().unwrap();
        let mut r = c.read_frame().unwrap();
        assert_eq!(r.str().unwrap(), "HI");
        t.join().unwrap();
        assert!(matches!(c.read_frame(), Err(ProtoError::Closed)));
    }
}
