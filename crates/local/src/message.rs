//! The message being delivered: its sender, its content (held in memory when small, else
//! streamed from the queue file again for each copy) and the `Delivered-To:` addresses in its
//! headers, for loop detection.

use std::io::{self, Read};

use posthorn_message::split_headers;
use posthorn_queue::file::QueueFile;

/// Messages up to this size are read once into memory; larger ones are streamed from the
/// queue file for each delivered copy.
pub const MEMORY_LIMIT: u64 = 256 * 1024;

/// At most this much of the header section is read for loop detection.
const HEADER_LIMIT: usize = 1024 * 1024;

enum Body<'a> {
    Memory(Vec<u8>),
    File(&'a QueueFile),
}

/// One queued message, ready to be copied to several destinations.
pub struct Message<'a> {
    /// The queue ID (for logs).
    pub queue_id: String,
    /// The envelope sender ("" = null sender).
    pub sender: String,
    body: Body<'a>,
    delivered_to: Vec<String>,
}

impl<'a> Message<'a> {
    /// Prepares `qf` for delivery: reads the content into memory when it is at most
    /// `memory_limit` bytes, else only its headers.
    pub fn load(qf: &'a QueueFile, queue_id: &str, memory_limit: u64) -> io::Result<Message<'a>> {
        let (body, delivered_to) = if qf.envelope.size.content_size <= memory_limit {
            let mut data = Vec::with_capacity(qf.envelope.size.content_size as usize);
            qf.content().read_to_end(&mut data)?;
            let found = delivered_to(&data);
            (Body::Memory(data), found)
        } else {
            (
                Body::File(qf),
                delivered_to(&read_header_section(&mut qf.content())?),
            )
        };
        Ok(Message {
            queue_id: queue_id.to_string(),
            sender: qf.envelope.sender.clone(),
            delivered_to,
            body,
        })
    }

    /// A message held in memory (for tests and tools).
    pub fn from_bytes(queue_id: &str, sender: &str, content: Vec<u8>) -> Message<'static> {
        let delivered_to = delivered_to(&content);
        Message {
            queue_id: queue_id.to_string(),
            sender: sender.to_string(),
            body: Body::Memory(content),
            delivered_to,
        }
    }

    /// A fresh reader of the whole content (headers and body, LF line endings).
    pub fn reader(&self) -> Box<dyn Read + '_> {
        match &self.body {
            Body::Memory(data) => Box::new(data.as_slice()),
            Body::File(qf) => Box::new(qf.content()),
        }
    }

    /// The addresses of the message's `Delivered-To:` headers, lowercased.
    pub fn delivered_to(&self) -> &[String] {
        &self.delivered_to
    }

    /// Whether the message was already delivered to `address` (a mail loop).
    pub fn is_looping(&self, address: &str) -> bool {
        let a = address.to_lowercase();
        self.delivered_to.contains(&a)
    }
}

/// Reads up to the end of the header section (the first empty line), at most
/// [`HEADER_LIMIT`] bytes.
fn read_header_section(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8192);
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        let from = out.len().saturating_sub(1);
        out.extend_from_slice(&buf[..n]);
        if out.starts_with(b"\n")
            || out[from..].windows(2).any(|w| w == b"\n\n")
            || out.len() >= HEADER_LIMIT
        {
            return Ok(out);
        }
    }
}

/// The lowercased values of the `Delivered-To:` headers in the header section of `msg`.
fn delivered_to(msg: &[u8]) -> Vec<String> {
    let (headers, _) = split_headers(msg);
    headers
        .get_all("Delivered-To")
        .into_iter()
        .map(|h| h.unfolded_value().to_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_to_headers() {
        let m = Message::from_bytes("Q", "s@x", b"Delivered-To: Joe@Example.org\nSubject: x\ndelivered-to:  ann@example.org \n\nDelivered-To: body@example.org\n".to_vec());
        assert_eq!(m.delivered_to(), ["joe@example.org", "ann@example.org"]);
        assert!(m.is_looping("JOE@example.ORG"));
        assert!(!m.is_looping("body@example.org"));
        let mut s = String::new();
        m.reader().read_to_string(&mut s).unwrap();
        assert!(s.starts_with("Delivered-To: Joe@"));
    }

    #[test]
    fn header_section_reading_stops_at_the_body() {
        let text = format!("A: 1\nB: 2\n\n{}", "x".repeat(100_000));
        let got = read_header_section(&mut text.as_bytes()).unwrap();
        assert!(got.len() < 20_000);
        assert!(got.starts_with(b"A: 1\nB: 2\n\n"));
        assert_eq!(read_header_section(&mut &b"\nbody"[..]).unwrap(), b"\nbody");
    }
}
