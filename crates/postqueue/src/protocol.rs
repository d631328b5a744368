//! `showq_protocol`: how showq(8) hands the queue listing to postqueue(1).
//!
//! showq speaks first and never reads from its client: the socket is public (anyone in
//! `setgid_group` may connect), so nothing a client says can steer the daemon. The stream,
//! in posthorn-proto frames, is
//!
//! ```text
//! Hello("showq_protocol", 1)
//! { Message  Recipient* }*    one Message per queue file, then its recipients to deliver
//! End | Failed(text)          the listing is complete, or showq could not finish it
//! ```
//!
//! Each frame is written as soon as its queue file has been read, so neither side ever
//! holds more than one message (showq) or one frame (postqueue): the listing streams.
//! The data is raw (queue name, ID, arrival time, size, addresses, reasons); postqueue
//! formats it (`-p`, `-j`) in the user's time zone, as Postfix's postqueue does.
//!
//! Error policy: a decoder consumes whole frames and rejects unknown kinds, missing or extra
//! fields, a recipient before any message, and an end of stream before `End`.

use std::io::{self, Read, Write};

use posthorn_proto::{Frame, FrameReader, Hello, MAX_FRAME, ProtoError};

/// Protocol name announced by showq.
pub const PROTOCOL: &str = "showq_protocol";
/// Protocol version.
pub const VERSION: u64 = 1;

const HELLO: u8 = b'H';
const MESSAGE: u8 = b'M';
const RECIPIENT: u8 = b'R';
const END: u8 = b'E';
const FAILED: u8 = b'F';

/// One queue file, as listed (Postfix's showq attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The queue it was found in (`maildrop`, `active`, `incoming`, `deferred`, `hold`).
    pub queue_name: String,
    /// Its queue ID.
    pub queue_id: String,
    /// Arrival time, seconds since the Unix epoch.
    pub arrival_time: u64,
    /// Content size in bytes (headers and body).
    pub message_size: u64,
    /// Forced to expire (postsuper -e/-f).
    pub forced_expire: bool,
    /// Envelope sender, already in external form (`MAILER-DAEMON` for the null sender).
    pub sender: String,
}

/// One recipient still to be delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The address, in external form.
    pub address: String,
    /// Why its last delivery attempt was deferred, or "" when unknown.
    pub reason: String,
}

/// One frame of the listing after the greeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A queue file; its recipients follow.
    Message(Message),
    /// A recipient of the latest message.
    Recipient(Recipient),
    /// The listing is complete.
    End,
    /// showq could not complete the listing (the text says why).
    Failed(String),
}

impl Event {
    /// Encodes the event.
    pub fn frame(&self) -> Frame {
        match self {
            Event::Message(m) => Frame::new(MESSAGE)
                .str(&m.queue_name)
                .str(&m.queue_id)
                .u64(m.arrival_time)
                .u64(m.message_size)
                .u64(u64::from(m.forced_expire))
                .str(&m.sender),
            Event::Recipient(r) => Frame::new(RECIPIENT).str(&r.address).str(&r.reason),
            Event::End => Frame::new(END),
            Event::Failed(why) => Frame::new(FAILED).str(why),
        }
    }

    /// Decodes an event, consuming the whole frame.
    pub fn decode(mut r: FrameReader<'_>) -> Result<Event, ProtoError> {
        let ev = match r.kind {
            MESSAGE => Event::Message(Message {
                queue_name: r.str()?,
                queue_id: r.str()?,
                arrival_time: r.u64()?,
                message_size: r.u64()?,
                forced_expire: match r.u64()? {
                    0 => false,
                    1 => true,
                    n => return Err(ProtoError::bad(format!("showq: forced_expire {n}"))),
                },
                sender: r.str()?,
            }),
            RECIPIENT => Event::Recipient(Recipient {
                address: r.str()?,
                reason: r.str()?,
            }),
            END => Event::End,
            FAILED => Event::Failed(r.str()?),
            k => {
                return Err(ProtoError::bad(format!(
                    "showq: unexpected message {:?}",
                    k as char
                )));
            }
        };
        r.finish()?;
        Ok(ev)
    }
}

/// The server side: writes the greeting, then events, to any byte stream (a client socket,
/// or standard output in stand-alone mode).
pub struct ListingWriter<W: Write> {
    out: W,
}

impl<W: Write> ListingWriter<W> {
    /// Writes the greeting.
    pub fn new(mut out: W) -> io::Result<Self> {
        let hello = Hello {
            protocol: PROTOCOL.into(),
            version: VERSION,
        };
        out.write_all(&hello.frame().encode())?;
        Ok(ListingWriter { out })
    }

    /// Writes one event (buffered by `W`, if it buffers).
    pub fn send(&mut self, ev: &Event) -> io::Result<()> {
        self.out.write_all(&ev.frame().encode())
    }

    /// Writes `End` (or `Failed(why)`), flushes and gives back the stream.
    pub fn finish(mut self, failure: Option<&str>) -> io::Result<W> {
        let last = match failure {
            Some(why) => Event::Failed(why.to_string()),
            None => Event::End,
        };
        self.send(&last)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The client side: checks the greeting, then yields events until `End`.
pub struct ListingReader<R: Read> {
    input: R,
    body: Vec<u8>,
    in_message: bool,
    done: bool,
}

impl<R: Read> ListingReader<R> {
    /// Reads and checks showq's greeting.
    pub fn new(input: R) -> Result<Self, ProtoError> {
        let mut r = ListingReader {
            input,
            body: Vec::new(),
            in_message: false,
            done: false,
        };
        let mut h = r.read_frame()?;
        if h.kind != HELLO {
            return Err(ProtoError::bad("showq: expected greeting"));
        }
        let (p, v) = (h.str()?, h.u64()?);
        h.finish()?;
        if p != PROTOCOL || v != VERSION {
            return Err(ProtoError::bad(format!(
                "server speaks {p} v{v}, not {PROTOCOL} v{VERSION}"
            )));
        }
        Ok(r)
    }

    /// The next event; `Ok(None)` once `End` was read. A stream that ends before `End`, or a
    /// recipient outside a message, is an error.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtoError> {
        if self.done {
            return Ok(None);
        }
        let ev = match self.read_frame() {
            Ok(f) => Event::decode(f)?,
            Err(ProtoError::Closed) => {
                return Err(ProtoError::bad("showq: listing ended early"));
            }
            Err(e) => return Err(e),
        };
        match &ev {
            Event::Message(_) => self.in_message = true,
            Event::Recipient(_) if !self.in_message => {
                return Err(ProtoError::bad("showq: recipient before any message"));
            }
            Event::Recipient(_) => {}
            Event::End | Event::Failed(_) => {
                self.done = true;
                if ev == Event::End {
                    return Ok(None);
                }
            }
        }
        Ok(Some(ev))
    }

    /// Reads one frame (`length u32 BE | kind | fields`), as posthorn_proto::Conn does, but
    /// from any byte stream.
    fn read_frame(&mut self) -> Result<FrameReader<'_>, ProtoError> {
        let mut len = [0u8; 4];
        match self.input.read(&mut len[..1]) {
            Ok(0) => return Err(ProtoError::Closed),
            Ok(_) => self.input.read_exact(&mut len[1..])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return self.read_frame(),
            Err(e) => return Err(e.into()),
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > MAX_FRAME {
            return Err(ProtoError::bad(format!("frame length {n}")));
        }
        self.body.resize(n, 0);
        self.input.read_exact(&mut self.body)?;
        FrameReader::new(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            queue_name: "deferred".into(),
            queue_id: "4cVbKp0Dwzz1Lh".into(),
            arrival_time: 1_763_632_800,
            message_size: 1234,
            forced_expire: true,
            sender: "alice@example.org".into(),
        }
    }

    fn stream(events: &[Event], failure: Option<&str>) -> Vec<u8> {
        let mut w = ListingWriter::new(Vec::new()).unwrap();
        for e in events {
            w.send(e).unwrap();
        }
        w.finish(failure).unwrap()
    }

    #[test]
    fn every_event_round_trips() {
        let events = [
            Event::Message(message()),
            Event::Recipient(Recipient {
                address: "bob@example.com".into(),
                reason: "connect to example.com[192.0.2.1]:25: Connection refused".into(),
            }),
            Event::End,
            Event::Failed("cannot read deferred".into()),
        ];
        for e in events {
            let enc = e.frame().encode();
            let got = Event::decode(FrameReader::new(&enc[4..]).unwrap()).unwrap();
            assert_eq!(got, e);
        }
    }

    #[test]
    fn a_listing_streams_until_end() {
        let m = Event::Message(message());
        let r = Event::Recipient(Recipient {
            address: "b@y".into(),
            reason: String::new(),
        });
        let bytes = stream(&[m.clone(), r.clone(), m.clone()], None);
        let mut rd = ListingReader::new(&bytes[..]).unwrap();
        assert_eq!(rd.next_event().unwrap(), Some(m.clone()));
        assert_eq!(rd.next_event().unwrap(), Some(r));
        assert_eq!(rd.next_event().unwrap(), Some(m));
        assert_eq!(rd.next_event().unwrap(), None);
        assert_eq!(rd.next_event().unwrap(), None);
        // A failure is reported as the last event.
        let bytes = stream(&[], Some("no access"));
        let mut rd = ListingReader::new(&bytes[..]).unwrap();
        assert_eq!(
            rd.next_event().unwrap(),
            Some(Event::Failed("no access".into()))
        );
        assert_eq!(rd.next_event().unwrap(), None);
    }

    #[test]
    fn broken_streams_are_errors_never_panics() {
        let bytes = stream(&[Event::Message(message())], None);
        // Every truncation fails (at the greeting or later), and never panics.
        for cut in 0..bytes.len() {
            let res = ListingReader::new(&bytes[..cut]).and_then(|mut rd| {
                while rd.next_event()?.is_some() {}
                Ok(())
            });
            assert!(res.is_err(), "cut {cut}");
        }
        // A recipient before any message.
        let bytes = stream(
            &[Event::Recipient(Recipient {
                address: "x".into(),
                reason: String::new(),
            })],
            None,
        );
        let mut rd = ListingReader::new(&bytes[..]).unwrap();
        assert!(rd.next_event().is_err());
        // The wrong protocol.
        let mut other = Hello {
            protocol: "cleanup_protocol".into(),
            version: 1,
        }
        .frame()
        .encode();
        other.extend(Event::End.frame().encode());
        let e = ListingReader::new(&other[..]).err().unwrap();
        assert!(e.to_string().contains("cleanup_protocol"), "{e}");
        // An unknown kind, and an extra field.
        let mut bad = stream(&[], None);
        bad.truncate(bad.len() - 5);
        bad.extend(Frame::new(b'?').encode());
        let mut rd = ListingReader::new(&bad[..]).unwrap();
        assert!(rd.next_event().is_err());
        let mut bad = stream(&[], None);
        bad.truncate(bad.len() - 5);
        bad.extend(Frame::new(END).str("x").encode());
        let mut rd = ListingReader::new(&bad[..]).unwrap();
        assert!(rd.next_event().is_err());
    }
}
