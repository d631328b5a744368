//! `delivery_protocol`: qmgr asks a delivery agent to deliver some recipients of one queue
//! file; the agent answers with one status per recipient. The agent reads the envelope and
//! content from the queue file itself (it is trusted to read the queue, not to change it:
//! qmgr records the results).

use crate::{Frame, FrameReader, ProtoError};

/// Protocol name announced by delivery agents.
pub const PROTOCOL: &str = "delivery_protocol";
/// Protocol version.
pub const VERSION: u64 = 1;

/// One recipient to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rcpt {
    /// Offset of its record in the queue file (identifies it in the reply).
    pub offset: u64,
    /// The address.
    pub address: String,
    /// The original address ("" if none).
    pub orig: String,
}

/// When the message arrived and how long it waited before this request, for the agent's
/// log line (`delay=`, and `a`/`b` of `delays=a/b/c/d`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Arrival time, microseconds since the Unix epoch (0: unknown).
    pub arrival_us: u64,
    /// Time from arrival until qmgr took the message (`a`), in microseconds.
    pub before_qmgr_us: u64,
    /// Time in qmgr until this request (`b`), in microseconds.
    pub in_qmgr_us: u64,
}

/// A delivery request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deliver {
    /// Queue directory name (`active`).
    pub queue_name: String,
    /// Queue ID.
    pub queue_id: String,
    /// Next hop from address resolution (for local: the domain).
    pub nexthop: String,
    /// The recipients.
    pub rcpts: Vec<Rcpt>,
    /// Timing for the log line (optional on the wire: absent means unknown).
    pub timing: Timing,
}

/// The outcome for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Temporary failure: retry later.
    Deferred,
    /// Permanent failure: notify the sender.
    Bounced,
}

/// One recipient's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The recipient's record offset (from the request).
    pub offset: u64,
    /// What happened.
    pub outcome: Outcome,
    /// Enhanced status code.
    pub dsn: String,
    /// The `relay=` text for the log (`local`, `virtual`, `host[addr]:port`; the smtp
    /// client appends Postfix's `, conn_use=N` for a reused connection).
    pub relay: String,
    /// The reason or server reply, for logs and notices.
    pub reason: String,
}

impl Deliver {
    /// Encodes the request.
    pub fn frame(&self) -> Frame {
        Frame::new(b'D')
            .str(&self.queue_name)
            .str(&self.queue_id)
            .str(&self.nexthop)
            .list(&self.rcpts, |r| {
                Frame::new(0).u64(r.offset).str(&r.address).str(&r.orig)
            })
            .u64(self.timing.arrival_us)
            .u64(self.timing.before_qmgr_us)
            .u64(self.timing.in_qmgr_us)
    }

    /// Decodes a request.
    pub fn decode(mut r: FrameReader<'_>) -> Result<Deliver, ProtoError> {
        if r.kind != b'D' {
            return Err(ProtoError::bad("delivery: expected request"));
        }
        let mut d = Deliver {
            queue_name: r.str()?,
            queue_id: r.str()?,
            nexthop: r.str()?,
            rcpts: r.list(|r| {
                Ok(Rcpt {
                    offset: r.u64()?,
                    address: r.str()?,
                    orig: r.str()?,
                })
            })?,
            timing: Timing::default(),
        };
        if !r.at_end() {
            d.timing = Timing {
                arrival_us: r.u64()?,
                before_qmgr_us: r.u64()?,
                in_qmgr_us: r.u64()?,
            };
        }
        r.finish()?;
        Ok(d)
    }
}

fn outcome_code(o: Outcome) -> u64 {
    match o {
        Outcome::Sent => 0,
        Outcome::Deferred => 1,
        Outcome::Bounced => 2,
    }
}

/// Encodes a reply with the agent's connection setup time for the request (DNS, connect,
/// greeting, EHLO, TLS: the `c` of the log's `delays=a/b/c/d`), as an optional trailing field.
pub fn reply_frame_timed(st: &[Status], setup: Option<std::time::Duration>) -> Frame {
    let f = reply_frame(st);
    match setup {
        Some(d) => f.u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        None => f,
    }
}

/// Encodes a reply.
pub fn reply_frame(st: &[Status]) -> Frame {
    Frame::new(b'S').list(st, |s| {
        Frame::new(0)
            .u64(s.offset)
            .u64(outcome_code(s.outcome))
            .str(&s.dsn)
            .str(&s.relay)
            .str(&s.reason)
    })
}

/// Decodes a reply.
pub fn decode_reply(r: FrameReader<'_>) -> Result<Vec<Status>, ProtoError> {
    decode_reply_timed(r).map(|(v, _)| v)
}

/// Decodes a reply and the connection setup time, when the agent sent one.
pub fn decode_reply_timed(
    mut r: FrameReader<'_>,
) -> Result<(Vec<Status>, Option<std::time::Duration>), ProtoError> {
    if r.kind != b'S' {
        return Err(ProtoError::bad("delivery: expected status"));
    }
    let v = r.list(|r| {
        let offset = r.u64()?;
        let outcome = match r.u64()? {
            0 => Outcome::Sent,
            1 => Outcome::Deferred,
            2 => Outcome::Bounced,
            n => return Err(ProtoError::bad(format!("delivery: outcome {n}"))),
        };
        Ok(Status {
            offset,
            outcome,
            dsn: r.str()?,
            relay: r.str()?,
            reason: r.str()?,
        })
    })?;
    let setup = if r.at_end() {
        None
    } else {
        Some(std::time::Duration::from_micros(r.u64()?))
    };
    r.finish()?;
    Ok((v, setup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let d = Deliver {
            queue_name: "active".into(),
            queue_id: "Q".into(),
            nexthop: "example.org".into(),
            rcpts: vec![Rcpt {
                offset: 9,
                address: "a@b".into(),
                orig: "".into(),
            }],
            timing: Timing {
                arrival_us: 1,
                before_qmgr_us: 2,
                in_qmgr_us: 3,
            },
        };
        let e = d.frame().encode();
        assert_eq!(
            Deliver::decode(FrameReader::new(&e[4..]).unwrap()).unwrap(),
            d
        );
        let st = vec![Status {
            offset: 9,
            outcome: Outcome::Bounced,
            dsn: "5.1.1".into(),
            relay: "local".into(),
            reason: "unknown user".into(),
        }];
        let e = reply_frame(&st).encode();
        assert_eq!(
            decode_reply(FrameReader::new(&e[4..]).unwrap()).unwrap(),
            st
        );
        let t = std::time::Duration::from_millis(12);
        let e = reply_frame_timed(&st, Some(t)).encode();
        assert_eq!(
            decode_reply_timed(FrameReader::new(&e[4..]).unwrap()).unwrap(),
            (st.clone(), Some(t))
        );
    }
}
