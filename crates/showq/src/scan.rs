//! Reading the queue for a listing, in constant memory: each queue directory is read as it
//! is walked (no list of queue IDs is built), and each queue file only up to the start of
//! its content, with every record read CRC-checked. The body is never read: a queue of big
//! messages lists as fast as one of small ones.
//!
//! Error policy: a file that vanished since the directory was read (it moved on, or was
//! delivered) is skipped in silence; a damaged file is skipped with a warning (qmgr moves it
//! to `corrupt/` when it reaches it); a queue directory that cannot be read ends the
//! listing with [`ScanError::Dir`].

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use posthorn_message::address::quote_local_part;
use posthorn_postqueue::protocol::{Event, ListingWriter, Message, Recipient};
use posthorn_queue::file::{is_complete, read_log};
use posthorn_queue::record::{Record, RecordReader, kind};
use posthorn_queue::{QueueId, QueueLayout, QueueName};

/// The queues listed, in the order Postfix's showq visits them (`showq.c`).
pub const LISTED: [QueueName; 5] = [
    QueueName::Maildrop,
    QueueName::Active,
    QueueName::Incoming,
    QueueName::Deferred,
    QueueName::Hold,
];

/// Postfix's `MAIL_QUEUE_STAT_EXPIRE`: group-execute on a queue file means "forced to
/// expire" (`postsuper -e`/`-f`).
const STAT_EXPIRE: u32 = 0o010;

/// Why a listing stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The client stopped reading (went away, or the write timed out).
    #[error("write to client: {0}")]
    Client(#[source] io::Error),
    /// A queue directory could not be read.
    #[error("cannot read {}: {}", path.display(), strerror(source))]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The daemon was asked to stop.
    #[error("showq is stopping")]
    Stopped,
}

/// Lists the queue of one instance.
pub struct Scanner<'a> {
    layout: &'a QueueLayout,
    depth: usize,
    empty_address: String,
}

impl<'a> Scanner<'a> {
    /// A scanner for `layout`, whose hashed queues are `hash_queue_depth` levels deep;
    /// the null sender is shown as `empty_address` (`empty_address_recipient`).
    pub fn new(layout: &'a QueueLayout, hash_queue_depth: i64, empty_address: String) -> Self {
        Scanner {
            layout,
            // As QueueLayout::new clamps it: queue IDs give five characters of hash.
            depth: usize::try_from(hash_queue_depth).unwrap_or(1).clamp(1, 5),
            empty_address,
        }
    }

    /// Streams every listed message to `out`; returns how many were listed. `stop` is
    /// asked between files (SIGTERM).
    pub fn list<W: Write>(
        &self,
        out: &mut ListingWriter<W>,
        stop: &dyn Fn() -> bool,
    ) -> Result<u64, ScanError> {
        let mut listed = 0;
        for q in LISTED {
            let levels = if self.layout.is_hashed(q) {
                self.depth
            } else {
                0
            };
            self.walk(q, &self.layout.dir(q), levels, out, stop, &mut listed)?;
        }
        Ok(listed)
    }

    /// Lists the files of `dir`, `levels` hash levels above the files.
    fn walk<W: Write>(
        &self,
        q: QueueName,
        dir: &Path,
        levels: usize,
        out: &mut ListingWriter<W>,
        stop: &dyn Fn() -> bool,
        listed: &mut u64,
    ) -> Result<(), ScanError> {
        let dir_error = |source| ScanError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(dir_error(e)),
        };
        for entry in entries {
            if stop() {
                return Err(ScanError::Stopped);
            }
            let entry = entry.map_err(dir_error)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if levels > 0 {
                if name.len() == 1 && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    self.walk(q, &entry.path(), levels - 1, out, stop, listed)?;
                }
            } else if let Ok(id) = QueueId::parse(name)
                && self.report(q, &entry.path(), &id, out)?
            {
                *listed += 1;
            }
        }
        Ok(())
    }

    /// Lists one queue file: its envelope up to the `M` record, each recipient still to be
    /// delivered with the reason from the defer log. Returns whether it was listed.
    fn report<W: Write>(
        &self,
        q: QueueName,
        path: &Path,
        id: &QueueId,
        out: &mut ListingWriter<W>,
    ) -> Result<bool, ScanError> {
        // O_NOFOLLOW: list queue files, never what a link in the queue points to;
        // O_NONBLOCK: a FIFO in the queue cannot stall the listing (it is not a file).
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                log::warn!("open {} {id}: {e}", q.as_str());
                return Ok(false);
            }
        };
        let Ok(meta) = file.metadata() else {
            return Ok(false);
        };
        if !meta.is_file() || !is_complete(&meta) {
            // Not mail yet: its writer has not committed it.
            return Ok(false);
        }
        let mut env = EnvelopeHead {
            file_size: meta.len(),
            forced_expire: meta.mode() & STAT_EXPIRE != 0,
            ..EnvelopeHead::default()
        };
        let mut records = RecordReader::new(BufReader::with_capacity(8192, &file), 0);
        let mut reasons: Option<HashMap<String, String>> = None;
        loop {
            let rec = match records.next_record() {
                Ok(Some(rec)) => rec,
                Ok(None) => {
                    log::warn!("{id}: no content in {} queue file", q.as_str());
                    break;
                }
                Err(e) => {
                    log::warn!("{id}: {} queue file: {e}", q.as_str());
                    break;
                }
            };
            match rec.kind {
                kind::RCPT | kind::DONE | kind::MESG if reasons.is_none() => {
                    let Some(m) = env.message(q, id, &self.empty_address) else {
                        log::warn!("{id}: missing size, time or sender record");
                        break;
                    };
                    out.send(&Event::Message(m)).map_err(ScanError::Client)?;
                    reasons = Some(self.reasons(id));
                    if rec.kind == kind::MESG {
                        break;
                    }
                    self.recipient(&rec, reasons.as_ref(), out)?;
                }
                kind::RCPT => self.recipient(&rec, reasons.as_ref(), out)?,
                kind::DONE => {}
                kind::MESG => break,
                _ if reasons.is_none() => {
                    if let Err(why) = env.take(&rec) {
                        log::warn!("{id}: {} queue file: {why}", q.as_str());
                        break;
                    }
                }
                // Per-recipient attributes (O, n, o) between recipients.
                kind::ORCP | kind::DSN_NOTIFY | kind::DSN_ORCPT => {}
                k => {
                    log::warn!(
                        "{id}: unexpected record {:?} among the recipients",
                        k as char
                    );
                    break;
                }
            }
        }
        Ok(reasons.is_some())
    }

    /// Sends one recipient still to be delivered, with its reason.
    fn recipient<W: Write>(
        &self,
        rec: &Record,
        reasons: Option<&HashMap<String, String>>,
        out: &mut ListingWriter<W>,
    ) -> Result<(), ScanError> {
        if rec.kind != kind::RCPT {
            return Ok(());
        }
        let raw = rec.text();
        let reason = reasons
            .and_then(|r| r.get(&raw))
            .cloned()
            .unwrap_or_default();
        let r = Recipient {
            address: self.external(&raw),
            reason,
        };
        out.send(&Event::Recipient(r)).map_err(ScanError::Client)
    }

    /// The last deferral reason of each recipient of `id` (the defer log is appended to at
    /// each attempt, so a later entry is newer). No log: no reasons.
    fn reasons(&self, id: &QueueId) -> HashMap<String, String> {
        match read_log(self.layout, QueueName::Defer, id) {
            Ok(entries) => entries
                .into_iter()
                .map(|e| (e.recipient, e.reason))
                .collect(),
            Err(e) => {
                log::warn!("{e}");
                HashMap::new()
            }
        }
    }

    /// An address in external form, as Postfix's showq sends it: the local part quoted
    /// where needed, the null address as `empty_address_recipient`.
    fn external(&self, addr: &str) -> String {
        if addr.is_empty() {
            self.empty_address.clone()
        } else {
            quote_local_part(addr)
        }
    }
}

/// What a listing needs from the records before the first recipient.
#[derive(Debug, Default)]
struct EnvelopeHead {
    /// Records seen so far.
    records: u64,
    /// Content size and offset from the size record.
    size: Option<(u64, u64)>,
    /// Arrival time (seconds).
    arrival: Option<u64>,
    /// Envelope sender.
    sender: Option<String>,
    /// The file's size, shown when the size record has not been completed.
    file_size: u64,
    /// Group-execute bit set.
    forced_expire: bool,
}

impl EnvelopeHead {
    /// Takes one record of the envelope's head; an error says why the file is not listed.
    fn take(&mut self, rec: &Record) -> Result<(), String> {
        self.records += 1;
        match rec.kind {
            kind::SIZE if self.records == 1 => {
                self.size = Some(parse_size(&rec.payload).ok_or("bad size record")?);
            }
            _ if self.records == 1 => return Err("no size record".into()),
            kind::TIME => {
                let t = rec.text();
                let secs = t.split_whitespace().next().and_then(|s| s.parse().ok());
                self.arrival = Some(secs.ok_or("bad time record")?);
            }
            kind::FROM if self.sender.is_some() => return Err("duplicate sender".into()),
            kind::FROM => self.sender = Some(rec.text()),
            kind::FULL | kind::ATTR | kind::DSN_ENVID | kind::DSN_RET => {}
            kind::ORCP | kind::DSN_NOTIFY | kind::DSN_ORCPT => {}
            k => return Err(format!("unexpected record {:?} in envelope", k as char)),
        }
        Ok(())
    }

    /// The listing's message, once size, time and sender were seen.
    fn message(&self, q: QueueName, id: &QueueId, empty_address: &str) -> Option<Message> {
        let (content_size, content_offset) = self.size?;
        let sender = self.sender.as_deref()?;
        Some(Message {
            queue_name: q.as_str().to_string(),
            queue_id: id.as_str().to_string(),
            arrival_time: self.arrival?,
            // A committed file has its content size patched in; otherwise show the file
            // size, as Postfix does with a malformed size record.
            message_size: if content_offset != 0 {
                content_size
            } else {
                self.file_size
            },
            forced_expire: self.forced_expire,
            sender: if sender.is_empty() {
                empty_address.to_string()
            } else {
                quote_local_part(sender)
            },
        })
    }
}

/// The text of an OS error without Rust's ` (os error N)` suffix, as Postfix's `%m`: it
/// reaches users through postqueue.
fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// The content size and content offset of a size record (`%15d %15d %15d %15d`: size,
/// offset, recipient count, flags; posthorn-queue's `SizeRecord`).
fn parse_size(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let size = fields.next()?.ok()?;
    let offset = fields.next()?.ok()?;
    Some((size, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_postqueue::protocol::ListingReader;
    use posthorn_queue::DirOwner;
    use posthorn_queue::file::{Envelope, LogEntry, NewQueueFile, Recipient as QRcpt, append_log};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    fn layout(tmp: &Path) -> QueueLayout {
        let l = QueueLayout::new(tmp.join("q"), &["deferred".into(), "defer".into()], 1);
        l.create_tree(&DirOwner::default()).unwrap();
        l
    }

    /// Commits a message with `rcpts` (address, done) and `body` into queue `q`.
    fn queue(
        l: &QueueLayout,
        q: QueueName,
        sender: &str,
        rcpts: &[(&str, bool)],
        body: &[u8],
    ) -> QueueId {
        let mut f = NewQueueFile::create(l, q).unwrap();
        let env = Envelope {
            arrival: Some(UNIX_EPOCH + Duration::from_secs(1_763_632_800)),
            sender: sender.into(),
            recipients: rcpts
                .iter()
                .map(|(a, done)| QRcpt {
                    address: (*a).into(),
                    done: *done,
                    ..QRcpt::default()
                })
                .collect(),
            ..Envelope::default()
        };
        env.write_records(f.writer()).unwrap();
        let m = f.put(kind::MESG, b"").unwrap();
        f.put_content(body).unwrap();
        f.put(kind::XTRA, b"").unwrap();
        let size = posthorn_queue::file::SizeRecord {
            content_size: body.len() as u64,
            content_offset: m,
            recipients: rcpts.len() as u64,
            flags: 0,
        };
        f.commit(size).unwrap()
    }

    fn events(l: &QueueLayout) -> Vec<Event> {
        let s = Scanner::new(l, 1, "MAILER-DAEMON".into());
        let mut w = ListingWriter::new(Vec::new()).unwrap();
        s.list(&mut w, &|| false).unwrap();
        let bytes = w.finish(None).unwrap();
        let mut rd = ListingReader::new(&bytes[..]).unwrap();
        let mut out = Vec::new();
        while let Some(e) = rd.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    fn rcpt(a: &str, why: &str) -> Event {
        Event::Recipient(Recipient {
            address: a.into(),
            reason: why.into(),
        })
    }

    #[test]
    fn lists_envelopes_with_reasons_in_showq_order() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        assert!(events(&l).is_empty());
        let held = queue(&l, QueueName::Hold, "", &[("x@y", false)], b"held\n");
        let body = vec![b'z'; 300_000];
        let def = queue(
            &l,
            QueueName::Deferred,
            "a b@x",
            &[
                ("done@y", true),
                ("c@y", false),
                ("d@y", false),
                ("e@y", false),
            ],
            &body,
        );
        let log = |r: &str, why: &str| LogEntry {
            recipient: r.into(),
            orig: String::new(),
            dsn: "4.0.0".into(),
            reason: why.into(),
        };
        append_log(
            &l,
            QueueName::Defer,
            &def,
            &[log("c@y", "old"), log("d@y", "d why")],
        )
        .unwrap();
        append_log(&l, QueueName::Defer, &def, &[log("c@y", "new")]).unwrap();
        let act = queue(&l, QueueName::Active, "s@x", &[("f@y", false)], b"1\n");
        let got = events(&l);
        let msg = |q: &str, id: &QueueId, sender: &str, size: u64| {
            Event::Message(Message {
                queue_name: q.into(),
                queue_id: id.to_string(),
                arrival_time: 1_763_632_800,
                message_size: size,
                forced_expire: false,
                sender: sender.into(),
            })
        };
        assert_eq!(
            got,
            vec![
                msg("active", &act, "s@x", 2),
                rcpt("f@y", ""),
                msg("deferred", &def, "\"a b\"@x", 300_000),
                rcpt("c@y", "new"),
                rcpt("d@y", "d why"),
                rcpt("e@y", ""),
                msg("hold", &held, "MAILER-DAEMON", 5),
                rcpt("x@y", ""),
            ]
        );
    }

    #[test]
    fn skips_what_is_not_mail() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let good = queue(&l, QueueName::Incoming, "s@x", &[("r@y", false)], b"x\n");
        // Incomplete (no execute bit), damaged, a link, a temporary name.
        let incomplete = queue(&l, QueueName::Incoming, "s@x", &[("r@y", false)], b"x\n");
        let p = l.path(QueueName::Incoming, &incomplete);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let damaged = queue(&l, QueueName::Incoming, "s@x", &[("r@y", false)], b"x\n");
        let p = l.path(QueueName::Incoming, &damaged);
        let mut bytes = fs::read(&p).unwrap();
        bytes[3] ^= 0xff; // inside the size record
        fs::write(&p, bytes).unwrap();
        let link = QueueId::new(UNIX_EPOCH + Duration::from_secs(5), 1);
        std::os::unix::fs::symlink(
            l.path(QueueName::Incoming, &good),
            l.path(QueueName::Incoming, &link),
        )
        .unwrap();
        fs::write(l.dir(QueueName::Incoming).join("tmp.123"), b"x").unwrap();
        let got = events(&l);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], Event::Message(m) if m.queue_id == good.to_string()));
        // Forced expire is the group-execute bit.
        let p = l.path(QueueName::Incoming, &good);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o710)).unwrap();
        assert!(matches!(&events(&l)[0], Event::Message(m) if m.forced_expire));
    }

    #[test]
    fn an_unreadable_queue_ends_the_listing_with_an_error() {
        if posthorn_sys::is_root() {
            eprintln!("SKIPPED: root reads any directory");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        fs::set_permissions(l.dir(QueueName::Hold), fs::Permissions::from_mode(0o000)).unwrap();
        let s = Scanner::new(&l, 1, "MAILER-DAEMON".into());
        let mut w = ListingWriter::new(Vec::new()).unwrap();
        let e = s.list(&mut w, &|| false).unwrap_err();
        assert!(matches!(e, ScanError::Dir { .. }), "{e}");
        fs::set_permissions(l.dir(QueueName::Hold), fs::Permissions::from_mode(0o700)).unwrap();
    }
}
