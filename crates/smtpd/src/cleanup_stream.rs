//! A non-blocking cleanup_protocol client for the event loop: frames are queued and
//! written when the socket allows; answers are parsed as they arrive. Connections are kept
//! in a small pool and carry one message after another, so a message costs no connect and
//! no cleanup process start.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;

use mio::net::UnixStream;
use posthorn_proto::cleanup::{self, Opened, Origin, Reply, Request};
use posthorn_proto::{Frame, FrameReader, Hello, ProtoError};
use posthorn_queue::QueueLayout;
use posthorn_queue::record::{self, kind};

/// What cleanup said.
pub enum Answer {
    /// The queue file exists under this ID ("" = it could not be created).
    Opened(String),
    /// The final answer for the message.
    Done(Reply),
}

/// One connection to cleanup.
pub struct CleanupStream {
    /// The socket (registered with the event loop while a message uses it).
    pub sock: UnixStream,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    greeted: bool,
    records: Vec<u8>,
    /// Answers still owed for the current message (Opened and/or the final reply).
    pub owed: u8,
}

/// Bytes of records collected before they go out as one frame.
const FRAME_AT: usize = 64 * 1024;

impl CleanupStream {
    /// Connects to `public/cleanup` (or `private/cleanup`).
    pub fn connect(layout: &QueueLayout) -> io::Result<CleanupStream> {
        let name = posthorn_proto::service::CLEANUP;
        let mut path = layout.public_socket(name);
        if !path.exists() {
            path = layout.private_socket(name);
        }
        let s = StdUnixStream::connect(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {}: {e}", path.display())))?;
        s.set_nonblocking(true)?;
        Ok(CleanupStream {
            sock: UnixStream::from_std(s),
            out: Vec::with_capacity(FRAME_AT + 1024),
            written: 0,
            inbuf: Vec::new(),
            greeted: false,
            records: Vec::with_capacity(FRAME_AT + 1024),
            owed: 0,
        })
    }

    /// Whether an idle pooled connection is still usable (cleanup did not go away).
    pub fn healthy(&mut self) -> bool {
        if self.owed != 0 || self.pending() > 0 {
            return false;
        }
        let mut b = [0u8; 1];
        match self.sock.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            _ => false, // EOF or unexpected bytes
        }
    }

    fn frame(&mut self, f: &Frame) {
        self.out.extend_from_slice(&f.encode());
    }

    fn push_records(&mut self) {
        if !self.records.is_empty() {
            let data = std::mem::take(&mut self.records);
            self.frame(&Request::Records(data).frame());
            self.records = Vec::with_capacity(FRAME_AT + 1024);
        }
    }

    /// Starts a message, asking for the queue ID at once.
    pub fn begin(&mut self, origin: Origin) {
        self.owed = 2;
        self.frame(
            &Request::Begin {
                flags: cleanup::FLAG_REPORT_ID,
                origin,
            }
            .frame(),
        );
    }

    /// Adds one record.
    pub fn record(&mut self, k: u8, payload: &[u8]) {
        record::encode(k, payload, &mut self.records);
        if self.records.len() >= FRAME_AT {
            self.push_records();
        }
    }

    /// Adds content (stored form) as NORM records.
    pub fn content(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = data.len().min(record::BLOCK_SIZE);
            self.record(kind::NORM, &data[..n]);
            data = &data[n..];
        }
    }

    /// Ends the content and asks for the commit.
    pub fn commit(&mut self) {
        self.record(kind::XTRA, b"");
        self.push_records();
        self.frame(&Request::Commit.frame());
    }

    /// Bytes not yet written to cleanup (for back-pressure).
    pub fn pending(&self) -> usize {
        self.out.len() - self.written + self.records.len()
    }

    /// Writes what the socket takes. Err = the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match self.sock.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }

    /// Reads and parses what cleanup sent. Err = broken (EOF or a protocol error).
    pub fn read(&mut self, answers: &mut Vec<Answer>) -> Result<(), ProtoError> {
        let mut buf = [0u8; 4096];
        // An answer that arrived just before cleanup closed the connection (a reload) still
        // counts: parse what was read before reporting the end.
        let mut ended: Option<ProtoError> = None;
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    ended = Some(ProtoError::Closed);
                    break;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    ended = Some(e.into());
                    break;
                }
            }
        }
        let mut used = 0;
        while let Some((n, body)) = posthorn_proto::split_frame(&self.inbuf[used..])? {
            let r = FrameReader::new(body)?;
            if !self.greeted {
                check_hello(r)?;
                self.greeted = true;
            } else if r.kind == b'O' {
                answers.push(Answer::Opened(Opened::decode(r)?.id));
                self.owed = self.owed.saturating_sub(1);
            } else {
                answers.push(Answer::Done(Reply::decode(r)?));
                self.owed = 0;
            }
            used += n;
        }
        self.inbuf.drain(..used);
        match ended {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn check_hello(mut r: FrameReader<'_>) -> Result<(), ProtoError> {
    let expect = Hello {
        protocol: cleanup::PROTOCOL.into(),
        version: cleanup::VERSION,
    };
    if r.kind != b'H' {
        return Err(ProtoError::bad("cleanup: expected greeting"));
    }
    let (p, v) = (r.str()?, r.u64()?);
    r.finish()?;
    if p != expect.protocol || v != expect.version {
        return Err(ProtoError::bad(format!(
            "cleanup speaks {p} v{v}, not {} v{}",
            expect.protocol, expect.version
        )));
    }
    Ok(())
}
