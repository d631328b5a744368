//! `cleanup_protocol`: a client streams one message as queue-file records, the server
//! answers once the queue file is durable.
//!
//! Client → server: [`Request::Begin`], then [`Request::Records`] frames carrying encoded
//! queue-file records (envelope, `M`, content blocks, `X`), then [`Request::Commit`]
//! (or [`Request::Abort`]). Server → client: one [`Reply`] per message. The connection
//! then carries the next message.

use crate::{Frame, FrameReader, ProtoError};

/// Protocol name announced by the cleanup server.
pub const PROTOCOL: &str = "cleanup_protocol";
/// Protocol version.
pub const VERSION: u64 = 1;

/// Flag: take recipients from To/Cc/Bcc (sendmail -t).
pub const FLAG_EXTRACT_RECIPIENTS: u64 = 1;
/// Flag: this is a delivery status notice (never bounced; double bounces go to postmaster).
pub const FLAG_NOTICE: u64 = 2;
/// Flag: create the queue file at once and answer [`Reply::Opened`] with its ID before the
/// records arrive (smtpd logs and writes the ID into its Received header).
pub const FLAG_REPORT_ID: u64 = 4;

/// Where the message comes from, for headers and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `local` (pickup), `smtp` (smtpd), `bounce` (notices), `forward` (local forwarding).
    pub kind: String,
    /// The submitting user's uid for local submission, else 0.
    pub uid: u64,
    /// Free text for the log's `client=` / `uid=` field.
    pub client: String,
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Starts a message.
    Begin {
        /// `FLAG_*` bits.
        flags: u64,
        /// Where it comes from.
        origin: Origin,
    },
    /// Encoded queue-file records (any number, any split between frames).
    Records(Vec<u8>),
    /// The message is complete: commit it.
    Commit,
    /// Forget the message.
    Abort,
}

/// The server's answer for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The queue file is durable under this ID.
    Queued {
        /// The new queue ID.
        id: String,
    },
    /// The message was not queued.
    Failed {
        /// Whether retrying later may succeed (4xx) or not (5xx).
        temporary: bool,
        /// Enhanced status code, e.g. `4.3.0`, `5.3.4`.
        dsn: String,
        /// Human-readable reason.
        text: String,
    },
}

/// With [`FLAG_REPORT_ID`], the server's first answer: the queue file exists under this ID
/// (empty when it could not be created; the final [`Reply`] then says why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The queue ID.
    pub id: String,
}

impl Opened {
    /// Encodes the answer.
    pub fn frame(&self) -> Frame {
        Frame::new(b'O').str(&self.id)
    }

    /// Decodes the answer.
    pub fn decode(mut r: FrameReader<'_>) -> Result<Opened, ProtoError> {
        if r.kind != b'O' {
            return Err(ProtoError::bad(format!(
                "cleanup: expected Opened, got {}",
                r.kind
            )));
        }
        let id = r.str()?;
        r.finish()?;
        Ok(Opened { id })
    }
}

impl Request {
    /// Encodes the request.
    pub fn frame(&self) -> Frame {
        match self {
            Request::Begin { flags, origin } => Frame::new(b'B')
                .u64(*flags)
                .str(&origin.kind)
                .u64(origin.uid)
                .str(&origin.client),
            Request::Records(b) => Frame::new(b'R').bytes(b),
            Request::Commit => Frame::new(b'C'),
            Request::Abort => Frame::new(b'A'),
        }
    }

    /// Decodes a request.
    pub fn decode(mut r: FrameReader<'_>) -> Result<Request, ProtoError> {
        let req = match r.kind {
            b'B' => Request::Begin {
                flags: r.u64()?,
                origin: Origin {
                    kind: r.str()?,
                    uid: r.u64()?,
                    client: r.str()?,
                },
            },
            b'R' => Request::Records(r.bytes()?.to_vec()),
            b'C' => Request::Commit,
            b'A' => Request::Abort,
            k => return Err(ProtoError::bad(format!("cleanup: unknown request {k}"))),
        };
        r.finish()?;
        Ok(req)
    }
}

impl Reply {
    /// Encodes the reply.
    pub fn frame(&self) -> Frame {
        match self {
            Reply::Queued { id } => Frame::new(b'Q').str(id),
            Reply::Failed {
                temporary,
                dsn,
                text,
            } => Frame::new(b'F')
                .u64(u64::from(*temporary))
                .str(dsn)
                .str(text),
        }
    }

    /// Decodes a reply.
    pub fn decode(mut r: FrameReader<'_>) -> Result<Reply, ProtoError> {
        let rep = match r.kind {
            b'Q' => Reply::Queued { id: r.str()? },
            b'F' => Reply::Failed {
                temporary: r.u64()? != 0,
                dsn: r.str()?,
                text: r.str()?,
            },
            k => return Err(ProtoError::bad(format!("cleanup: unknown reply {k}"))),
        };
        r.finish()?;
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_round_trips() {
        let o = Opened { id: "Q".into() };
        let e = o.frame().encode();
        assert_eq!(
            Opened::decode(FrameReader::new(&e[4..]).unwrap()).unwrap(),
            o
        );
    }

    #[test]
    fn round_trips() {
        let reqs = [
            Request::Begin {
                flags: 3,
                origin: Origin {
                    kind: "local".into(),
                    uid: 1000,
                    client: "uid=1000".into(),
                },
            },
            Request::Records(vec![1, 2, 3]),
            Request::Commit,
            Request::Abort,
        ];
        for q in reqs {
            let e = q.frame().encode();
            assert_eq!(
                Request::decode(FrameReader::new(&e[4..]).unwrap()).unwrap(),
                q
            );
        }
        for p in [
            Reply::Queued { id: "X".into() },
            Reply::Failed {
                temporary: true,
                dsn: "4.3.0".into(),
                text: "t".into(),
            },
        ] {
            let e = p.frame().encode();
            assert_eq!(
                Reply::decode(FrameReader::new(&e[4..]).unwrap()).unwrap(),
                p
            );
        }
    }
}
