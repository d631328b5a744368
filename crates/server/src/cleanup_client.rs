//! A client of the cleanup service: how pickup, bounce and local (forwarding) inject mail.

use std::io;

use posthorn_proto::cleanup::{self, Origin, Reply, Request};
use posthorn_proto::{Conn, ProtoError};
use posthorn_queue::QueueLayout;
use posthorn_queue::file::Envelope;
use posthorn_queue::record::{self, RecordWriter, kind};

/// A connection to cleanup that carries one message after another.
pub struct CleanupClient {
    conn: Conn,
    buf: Vec<u8>,
}

const FLUSH_AT: usize = 64 * 1024;

impl CleanupClient {
    /// Connects to the cleanup service (`public/cleanup`, or `private/cleanup`).
    pub fn connect(layout: &QueueLayout) -> Result<CleanupClient, ProtoError> {
        let name = posthorn_proto::service::CLEANUP;
        let mut path = layout.public_socket(name);
        if !path.exists() {
            path = layout.private_socket(name);
        }
        let conn = Conn::connect(
            &path,
            cleanup::PROTOCOL,
            cleanup::VERSION,
            Some(std::time::Duration::from_secs(300)),
        )?;
        Ok(CleanupClient {
            conn,
            buf: Vec::with_capacity(FLUSH_AT + 1024),
        })
    }

    /// Starts a message.
    pub fn begin(&mut self, flags: u64, origin: Origin) -> Result<(), ProtoError> {
        self.buf.clear();
        self.conn.send(&Request::Begin { flags, origin }.frame())
    }

    fn maybe_flush(&mut self) -> Result<(), ProtoError> {
        if self.buf.len() >= FLUSH_AT {
            self.flush_records()?;
        }
        Ok(())
    }

    fn flush_records(&mut self) -> Result<(), ProtoError> {
        if !self.buf.is_empty() {
            let data = std::mem::take(&mut self.buf);
            self.conn.send(&Request::Records(data).frame())?;
        }
        Ok(())
    }

    /// Sends one record.
    pub fn record(&mut self, k: u8, payload: &[u8]) -> Result<(), ProtoError> {
        record::encode(k, payload, &mut self.buf);
        self.maybe_flush()
    }

    /// Sends the envelope records (time, sender, attributes, recipients).
    pub fn envelope(&mut self, env: &Envelope) -> Result<(), ProtoError> {
        let mut w = RecordWriter::new(std::mem::take(&mut self.buf), 0);
        env.write_records(&mut w).map_err(ProtoError::Io)?;
        self.buf = w.into_inner();
        self.maybe_flush()
    }

    /// Sends the start-of-content record.
    pub fn start_content(&mut self) -> Result<(), ProtoError> {
        self.record(kind::MESG, b"")
    }

    /// Sends message content (LF line endings).
    pub fn content(&mut self, mut data: &[u8]) -> Result<(), ProtoError> {
        while !data.is_empty() {
            let n = data.len().min(record::BLOCK_SIZE);
            self.record(kind::NORM, &data[..n])?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Sends everything readable from `r` as content.
    pub fn content_from(&mut self, r: &mut dyn io::Read) -> Result<(), ProtoError> {
        let mut block = vec![0u8; record::BLOCK_SIZE];
        loop {
            let n = r.read(&mut block)?;
            if n == 0 {
                return Ok(());
            }
            self.content(&block[..n])?;
        }
    }

    /// Ends the content, commits, and returns cleanup's answer.
    pub fn commit(&mut self) -> Result<Reply, ProtoError> {
        self.record(kind::XTRA, b"")?;
        self.flush_records()?;
        self.conn.send(&Request::Commit.frame())?;
        self.conn.flush()?;
        let r = self.conn.read_frame()?;
        Reply::decode(r)
    }
}

impl CleanupClient {
    /// Submits a composed notice (a bounce, or pickup's rejection notice) from the null
    /// sender to `to`, flagged so that it is never bounced in turn. `sender` is "" for
    /// notices to users and `double-bounce@myorigin` for postmaster copies of double bounces.
    pub fn submit_notice(
        &mut self,
        notice: &[u8],
        sender: &str,
        to: &str,
        origin: Origin,
    ) -> Result<Reply, ProtoError> {
        self.begin(cleanup::FLAG_NOTICE, origin)?;
        let env = Envelope {
            sender: sender.to_string(),
            arrival: Some(std::time::SystemTime::now()),
            recipients: vec![posthorn_queue::file::Recipient {
                address: to.to_string(),
                ..Default::default()
            }],
            attrs: vec![("notice".to_string(), "1".to_string())],
            ..Default::default()
        };
        self.envelope(&env)?;
        self.start_content()?;
        self.content(notice)?;
        self.commit()
    }
}
