//! `bounce_protocol`: qmgr asks the bounce daemon to send a delivery status notice about
//! some recipients of one queue file. The daemon answers only after the notice itself is a
//! durable queue file (or after deciding that none is due, e.g. for the null sender with
//! no postmaster copy configured).

use crate::{Frame, FrameReader, ProtoError};

/// Protocol name announced by the bounce daemon.
pub const PROTOCOL: &str = "bounce_protocol";
/// Protocol version.
pub const VERSION: u64 = 1;

/// Which kind of notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// Non-delivery report.
    Failure,
    /// Delay warning.
    Delay,
    /// Success notice (DSN NOTIFY=SUCCESS).
    Success,
}

/// One recipient in a notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The recipient.
    pub recipient: String,
    /// Its original address, or "".
    pub orig: String,
    /// Enhanced status code.
    pub dsn: String,
    /// Where it failed (`local`, `host[addr]`).
    pub relay: String,
    /// The reason.
    pub reason: String,
}

/// A notice request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// Which notice.
    pub kind: NoticeKind,
    /// The queue of the original message.
    pub queue_name: String,
    /// The original message's queue ID.
    pub queue_id: String,
    /// The recipients to report.
    pub entries: Vec<Entry>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done; the notice's queue ID, or "" when no notice was due.
    Sent(String),
    /// Could not send the notice now; qmgr retries later.
    Failed(String),
}

impl Notify {
    /// Encodes the request.
    pub fn frame(&self) -> Frame {
        let k = match self.kind {
            NoticeKind::Failure => 0,
            NoticeKind::Delay => 1,
            NoticeKind::Success => 2,
        };
        Frame::new(b'N')
            .u64(k)
            .str(&self.queue_name)
            .str(&self.queue_id)
            .list(&self.entries, |e| {
                Frame::new(0)
                    .str(&e.recipient)
                    .str(&e.orig)
                    .str(&e.dsn)
                    .str(&e.relay)
                    .str(&e.reason)
            })
    }

    /// Decodes a request.
    pub fn decode(mut r: FrameReader<'_>) -> Result<Notify, ProtoError> {
        if r.kind != b'N' {
            return Err(ProtoError::bad("bounce: expected notify"));
        }
        let kind = match r.u64()? {
            0 => NoticeKind::Failure,
            1 => NoticeKind::Delay,
            2 => NoticeKind::Success,
            n => return Err(ProtoError::bad(format!("bounce: kind {n}"))),
        };
        let n = Notify {
            kind,
            queue_name: r.str()?,
            queue_id: r.str()?,
            entries: r.list(|r| {
                Ok(Entry {
                    recipient: r.str()?,
                    orig: r.str()?,
                    dsn: r.str()?,
                    relay: r.str()?,
                    reason: r.str()?,
                })
            })?,
        };
        r.finish()?;
        Ok(n)
    }
}

impl Reply {
    /// Encodes the reply.
    pub fn frame(&self) -> Frame {
        match self {
            Reply::Sent(id) => Frame::new(b'S').str(id),
            Reply::Failed(why) => Frame::new(b'F').str(why),
        }
    }

    /// Decodes a reply.
    pub fn decode(mut r: FrameReader<'_>) -> Result<Reply, ProtoError> {
        let rep = match r.kind {
            b'S' => Reply::Sent(r.str()?),
            b'F' => Reply::Failed(r.str()?),
            k => return Err(ProtoError::bad(format!("bounce: unknown reply {k}"))),
        };
        r.finish()?;
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let n = Notify {
            kind: NoticeKind::Delay,
            queue_name: "deferred".into(),
            queue_id: "Q".into(),
            entries: vec![Entry {
                recipient: "a".into(),
                orig: "".into(),
                dsn: "4.4.1".into(),
                relay: "local".into(),
                reason: "r".into(),
            }],
        };
        let e = n.frame().encode();
        assert_eq!(
            Notify::decode(FrameReader::new(&e[4..]).unwrap()).unwrap(),
            n
        );
        for p in [Reply::Sent("X".into()), Reply::Failed("no".into())] {
            let e = p.frame().encode();
            assert_eq!(
                Reply::decode(FrameReader::new(&e[4..]).unwrap()).unwrap(),
                p
            );
        }
    }
}
