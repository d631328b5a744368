//! One message passing through cleanup: record parsing, header fix-ups, the queue file.

use std::time::SystemTime;

use posthorn_config::Config;
use posthorn_message::Fixups;
use posthorn_proto::cleanup::{FLAG_EXTRACT_RECIPIENTS, Origin, Reply};
use posthorn_queue::file::{Envelope, NewQueueFile, Recipient, SizeRecord};
use posthorn_queue::record::{RecordError, RecordReader, kind};
use posthorn_queue::{QueueError, QueueLayout, QueueName};

/// The parameters cleanup uses, read once per connection.
pub struct Settings {
    /// virtual_alias_maps (None: empty), or why its tables cannot be used.
    virtual_alias: Result<Option<crate::valias::VirtualAlias>, String>,
    myhostname: String,
    myorigin: String,
    size_limit: u64,
    header_limit: usize,
    hopcount_limit: usize,
}

impl Settings {
    /// Reads the settings from the configuration.
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            virtual_alias: crate::valias::VirtualAlias::from_config(c).inspect_err(|e| {
                log::warn!("{e}; mail is deferred until the table is fixed");
            }),
            myhostname: c.get("myhostname"),
            myorigin: c.get("myorigin"),
            size_limit: c.get_size("message_size_limit"),
            hopcount_limit: usize::try_from(c.get_int("hopcount_limit")).unwrap_or(50),
            header_limit: usize::try_from(c.get_size("header_size_limit"))
                .unwrap_or(102_400)
                .max(1024),
        }
    }
}

enum Phase {
    Envelope,
    Headers,
    Body,
    Done,
}

/// A message being received.
pub struct Message<'a> {
    s: &'a Settings,
    layout: &'a QueueLayout,
    flags: u64,
    origin: Origin,
    phase: Phase,
    pending: Vec<u8>,
    env: Envelope,
    next_rcpt: Recipient,
    head: Vec<u8>,
    file: Option<NewQueueFile>,
    content_offset: u64,
    size: u64,
    error: Option<Reply>,
}

fn perm(dsn: &str, text: impl Into<String>) -> Reply {
    Reply::Failed {
        temporary: false,
        dsn: dsn.into(),
        text: text.into(),
    }
}

fn temp(text: impl Into<String>) -> Reply {
    Reply::Failed {
        temporary: true,
        dsn: "4.3.0".into(),
        text: text.into(),
    }
}

impl<'a> Message<'a> {
    /// Starts a message.
    pub fn new(s: &'a Settings, layout: &'a QueueLayout, flags: u64, origin: Origin) -> Self {
        Message {
            s,
            layout,
            flags,
            origin,
            phase: Phase::Envelope,
            pending: Vec::new(),
            env: Envelope::default(),
            next_rcpt: Recipient::default(),
            head: Vec::new(),
            file: None,
            content_offset: 0,
            size: 0,
            error: None,
        }
    }

    /// Creates the queue file now (for clients that want the ID before the content) and
    /// returns its ID, or "" after recording the error for the final reply.
    pub fn open_early(&mut self) -> String {
        match NewQueueFile::create(self.layout, QueueName::Incoming) {
            Ok(f) => {
                let id = f.id().to_string();
                self.file = Some(f);
                id
            }
            Err(e) => {
                self.fail(io_fail(e));
                String::new()
            }
        }
    }

    /// Takes more encoded records. After an error the rest is read and ignored, so the
    /// client gets its answer at commit.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.pending.extend_from_slice(data);
        let buf = std::mem::take(&mut self.pending);
        let mut r = RecordReader::new(&buf[..], 0);
        let mut used = 0usize;
        loop {
            match r.next_record() {
                Ok(Some(rec)) => {
                    used = r.offset() as usize;
                    if let Err(e) = self.record(rec.kind, &rec.payload) {
                        self.fail(e);
                        return;
                    }
                }
                Ok(None) | Err(RecordError::Truncated(_)) => break,
                Err(e) => {
                    self.fail(perm("5.3.0", format!("malformed record stream: {e}")));
                    return;
                }
            }
        }
        self.pending = buf[used..].to_vec();
    }

    fn fail(&mut self, reply: Reply) {
        self.error = Some(reply);
        self.file = None; // removes the incomplete file
    }

    fn record(&mut self, k: u8, p: &[u8]) -> Result<(), Reply> {
        let text = || String::from_utf8_lossy(p).into_owned();
        match self.phase {
            Phase::Envelope => match k {
                kind::TIME => {
                    let t = text();
                    let mut it = t.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
                    if let (Some(s), Some(us)) = (it.next(), it.next()) {
                        self.env.arrival = Some(
                            SystemTime::UNIX_EPOCH
                                + std::time::Duration::from_secs(s)
                                + std::time::Duration::from_micros(us),
                        );
                    }
                }
                kind::FULL => self.env.full_name = Some(text()),
                kind::FROM => self.env.sender = text(),
                kind::ATTR => {
                    let t = text();
                    let (n, v) = t
                        .split_once('=')
                        .ok_or_else(|| perm("5.3.0", "bad attribute record"))?;
                    self.env.attrs.push((n.to_string(), v.to_string()));
                }
                kind::DSN_ENVID => self.env.envid = Some(text()),
                kind::DSN_RET => self.env.ret = Some(text()),
                kind::ORCP => self.next_rcpt.orig = Some(text()),
                kind::DSN_NOTIFY => self.next_rcpt.notify = Some(text()),
                kind::DSN_ORCPT => self.next_rcpt.orcpt = Some(text()),
                kind::RCPT => {
                    let mut r = std::mem::take(&mut self.next_rcpt);
                    r.address = text();
                    self.env.recipients.push(r);
                }
                kind::MESG => self.phase = Phase::Headers,
                other => {
                    return Err(perm(
                        "5.3.0",
                        format!("unexpected record {:?} in envelope", other as char),
                    ));
                }
            },
            Phase::Headers | Phase::Body => match k {
                kind::NORM => self.content(p)?,
                kind::XTRA => {
                    if let Phase::Headers = self.phase {
                        let all = self.head.len();
                        self.write_head(all)?;
                    }
                    self.phase = Phase::Done;
                }
                other => {
                    return Err(perm(
                        "5.3.0",
                        format!("unexpected record {:?} in content", other as char),
                    ));
                }
            },
            Phase::Done => {
                return Err(perm(
                    "5.3.0",
                    format!("record {:?} after end of content", k as char),
                ));
            }
        }
        Ok(())
    }

    fn content(&mut self, p: &[u8]) -> Result<(), Reply> {
        self.size += p.len() as u64;
        if self.s.size_limit > 0 && self.size > self.s.size_limit {
            return Err(perm("5.3.4", "message file too big"));
        }
        match self.phase {
            Phase::Headers => {
                self.head.extend_from_slice(p);
                // Only complete lines decide where the header block ends.
                let complete = self
                    .head
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let prefix = &self.head[..complete];
                let (_, body_at) = posthorn_message::split_header_ranges(prefix);
                let ended = complete > 0
                    && (body_at < complete || prefix.ends_with(b"\n\n") || prefix == b"\n");
                // A header block larger than the cap is cut at a line boundary; the rest is
                // treated as body (degenerate input; nothing is lost, nothing is split mid-line).
                if ended || complete > self.s.header_limit {
                    self.write_head(complete)?;
                    self.phase = Phase::Body;
                }
            }
            _ => {
                let f = self
                    .file
                    .as_mut()
                    .ok_or_else(|| temp("internal: no queue file"))?;
                f.put_content(p).map_err(io_fail)?;
            }
        }
        Ok(())
    }

    /// Fixes the headers, settles the recipients, creates the queue file and writes the
    /// envelope, the `M` record, the headers and any body bytes already received. The first
    /// `head_len` bytes of the buffer hold the header block (whole lines); header bytes are
    /// copied as they came (8-bit included), only removed or added headers change.
    fn write_head(&mut self, head_len: usize) -> Result<(), Reply> {
        let buf = std::mem::take(&mut self.head);
        let head = &buf[..head_len];
        let (ranges, body_at) = posthorn_message::split_header_ranges(head);
        let (mut headers, _) = posthorn_message::split_headers(head);
        // A mail loop (Postfix's hopcount_limit): refused here, so that nothing is queued.
        let hops = headers.get_all("Received").len();
        if self.s.hopcount_limit > 0 && hops > self.s.hopcount_limit {
            return Err(perm(
                "5.4.6",
                format!("too many hops: {hops} Received: headers (mail forwarding loop)"),
            ));
        }
        let now = SystemTime::now();
        // A local user's file says when it was submitted; never trust a time in the future
        // (it would keep the message from ever expiring).
        if self.env.arrival.is_none_or(|t| t > now) {
            self.env.arrival = Some(now);
        }
        let s = self.s;
        if !self.env.sender.is_empty() {
            self.env.sender = posthorn_message::qualify(&self.env.sender, &s.myorigin);
        }
        if self.flags & FLAG_EXTRACT_RECIPIENTS != 0 {
            for name in ["To", "Cc", "Bcc"] {
                for h in headers.get_all(name) {
                    for a in posthorn_message::parse_address_list(&h.unfolded_value()) {
                        self.env.recipients.push(Recipient {
                            address: a,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        const REMOVED: [&str; 3] = ["Bcc", "Resent-Bcc", "Return-Path"];
        for name in REMOVED {
            headers.remove_all(name);
        }
        let mut seen = std::collections::HashSet::new();
        let mut rcpts = Vec::new();
        for mut r in std::mem::take(&mut self.env.recipients) {
            if r.address.is_empty() {
                continue;
            }
            r.address = posthorn_message::qualify(&r.address, &s.myorigin);
            if seen.insert((r.address.to_lowercase(), r.orig.clone())) {
                rcpts.push(r);
            }
        }
        let rcpts = match &s.virtual_alias {
            Ok(None) => rcpts,
            Ok(Some(va)) => {
                let expanded = va.expand(rcpts).map_err(|e| temp(e.0))?;
                let mut seen = std::collections::HashSet::new();
                expanded
                    .into_iter()
                    .filter(|r| seen.insert((r.address.to_lowercase(), r.orig.clone())))
                    .collect()
            }
            Err(e) => return Err(temp(e.clone())),
        };
        if rcpts.is_empty() {
            return Err(perm("5.1.3", "No recipients specified"));
        }
        self.env.recipients = rcpts;

        let mut file = match self.file.take() {
            Some(f) => f,
            None => NewQueueFile::create(self.layout, QueueName::Incoming).map_err(io_fail)?,
        };
        let id = file.id().to_string();
        let fx = Fixups {
            myhostname: &s.myhostname,
            myorigin: &s.myorigin,
            queue_id: &id,
            sender: &self.env.sender,
            full_name: self.env.full_name.as_deref(),
            now: self.env.arrival.unwrap_or(now),
        };
        let mut out = Vec::with_capacity(buf.len() + 512);
        if self.origin.kind == "local" {
            let single =
                (self.env.recipients.len() == 1).then(|| self.env.recipients[0].address.clone());
            let uid = u32::try_from(self.origin.uid).unwrap_or(u32::MAX);
            out.extend_from_slice(
                posthorn_message::received_local(&fx, uid, single.as_deref()).as_bytes(),
            );
            out.push(b'\n');
        }
        for r in &ranges {
            let raw = &head[r.clone()];
            let name_end = raw.iter().position(|&b| b == b':').unwrap_or(0);
            let name = String::from_utf8_lossy(&raw[..name_end]);
            if REMOVED
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.trim_end()))
            {
                continue;
            }
            out.extend_from_slice(raw);
            out.push(b'\n');
        }
        let before = headers.headers.len();
        posthorn_message::add_missing_headers(&mut headers, &fx);
        for h in &headers.headers[before..] {
            out.extend_from_slice(h.raw.as_bytes());
            out.push(b'\n');
        }
        let msgid = headers
            .get("Message-ID")
            .map(|h| h.unfolded_value())
            .unwrap_or_default();
        // split_header_ranges consumed the empty separator line (if any); the rewritten
        // header block is always followed by one.
        out.push(b'\n');
        out.extend_from_slice(&head[body_at.min(head.len())..]);
        out.extend_from_slice(&buf[head_len..]);

        self.env
            .write_records(file.writer())
            .map_err(|e| io_fail(QueueError::io(file.path(), e)))?;
        self.content_offset = file.put(kind::MESG, b"").map_err(io_fail)?;
        self.size = out.len() as u64;
        file.put_content(&out).map_err(io_fail)?;
        log::info!("{id}: message-id={}", msgid.trim());
        self.file = Some(file);
        Ok(())
    }

    /// Commits the queue file and returns the answer for the client.
    pub fn finish(mut self) -> Reply {
        if let Some(e) = self.error.take() {
            return e;
        }
        if !self.pending.is_empty() || !matches!(self.phase, Phase::Done) {
            return perm("5.3.0", "message stream ended early");
        }
        let Some(mut file) = self.file.take() else {
            return temp("internal: no queue file");
        };
        let body_size = self.size_after_head();
        if let Err(e) = file.put(kind::XTRA, b"") {
            return io_fail(e);
        }
        let size = SizeRecord {
            content_size: body_size,
            content_offset: self.content_offset,
            recipients: self.env.recipients.len() as u64,
            flags: 0,
        };
        match file.commit(size) {
            Ok(id) => Reply::Queued { id: id.to_string() },
            Err(e) => io_fail(e),
        }
    }

    fn size_after_head(&self) -> u64 {
        // self.size was reset to the rewritten header size in write_head and has grown by
        // every body block since.
        self.size
    }
}

fn io_fail(e: QueueError) -> Reply {
    log::warn!("{e}");
    temp(format!("queue file write error: {e}"))
}
