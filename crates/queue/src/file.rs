//! Queue files: creation and commit, full verification on read, content streaming,
//! in-place recipient completion, and the per-message defer/bounce logs.
//!
//! Structure of a queue file (record types from [`crate::record::kind`]):
//! ```text
//! C size            fixed width, patched at commit: content size, content offset, recipients, flags
//! T time            "sec usec"
//! F full name       optional
//! S sender          exactly one ("" = null sender)
//! A name=value      any number
//! i envid, < ret    optional DSN message attributes
//! { O orig, n notify, o orcpt }  R|D recipient     one group per recipient
//! M                 start of content
//! N block ...       content, LF line endings
//! X                 end of content
//! E                 end of file
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::{self, RecordError, RecordReader, RecordWriter, kind};
use crate::{QueueError, QueueId, QueueLayout, QueueName};

/// Flag in the size record: cleanup must take the recipients from the headers (sendmail -t).
pub const FLAG_EXTRACT_RECIPIENTS: u64 = 1;

/// The fixed-width size record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeRecord {
    /// Bytes of message content (headers and body, LF line endings).
    pub content_size: u64,
    /// Offset of the `M` record.
    pub content_offset: u64,
    /// Number of recipients.
    pub recipients: u64,
    /// Flags (`FLAG_*`).
    pub flags: u64,
}

impl SizeRecord {
    fn payload(&self) -> Vec<u8> {
        format!(
            "{:15} {:15} {:15} {:15}",
            self.content_size, self.content_offset, self.recipients, self.flags
        )
        .into_bytes()
    }

    fn parse(p: &[u8]) -> Option<SizeRecord> {
        let s = std::str::from_utf8(p).ok()?;
        let v: Vec<u64> = s
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        if v.len() != 4 {
            return None;
        }
        Some(SizeRecord {
            content_size: v[0],
            content_offset: v[1],
            recipients: v[2],
            flags: v[3],
        })
    }
}

/// One recipient of a queue file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The address to deliver to.
    pub address: String,
    /// The address as originally given, before alias or virtual expansion.
    pub orig: Option<String>,
    /// DSN NOTIFY (comma list), if given.
    pub notify: Option<String>,
    /// DSN ORCPT (`type;address`), if given.
    pub orcpt: Option<String>,
    /// Whether the recipient already has its final status.
    pub done: bool,
    /// Offset of the recipient record (its type byte), for [`mark_done`].
    pub offset: u64,
}

/// The envelope of a queue file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The size record.
    pub size: SizeRecord,
    /// When the message arrived.
    pub arrival: Option<SystemTime>,
    /// The sender's full name.
    pub full_name: Option<String>,
    /// The envelope sender ("" = null sender).
    pub sender: String,
    /// Named attributes, in order.
    pub attrs: Vec<(String, String)>,
    /// DSN ENVID.
    pub envid: Option<String>,
    /// DSN RET (`FULL` or `HDRS`).
    pub ret: Option<String>,
    /// The recipients, in order.
    pub recipients: Vec<Recipient>,
}

impl Envelope {
    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Writes the envelope records after the size record (used by writers of new files and
    /// by the cleanup stream). Returns the offsets of the recipient records.
    pub fn write_records<W: Write>(&self, w: &mut RecordWriter<W>) -> io::Result<Vec<u64>> {
        let t = self
            .arrival
            .unwrap_or_else(SystemTime::now)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        w.put(
            kind::TIME,
            format!("{} {}", t.as_secs(), t.subsec_micros()).as_bytes(),
        )?;
        if let Some(f) = &self.full_name {
            w.put(kind::FULL, f.as_bytes())?;
        }
        w.put(kind::FROM, self.sender.as_bytes())?;
        for (n, v) in &self.attrs {
            w.put(kind::ATTR, format!("{n}={v}").as_bytes())?;
        }
        if let Some(e) = &self.envid {
            w.put(kind::DSN_ENVID, e.as_bytes())?;
        }
        if let Some(r) = &self.ret {
            w.put(kind::DSN_RET, r.as_bytes())?;
        }
        let mut offs = Vec::with_capacity(self.recipients.len());
        for r in &self.recipients {
            offs.push(write_recipient(w, r)?);
        }
        Ok(offs)
    }
}

/// Writes one recipient group; returns the offset of its `R`/`D` record.
pub fn write_recipient<W: Write>(w: &mut RecordWriter<W>, r: &Recipient) -> io::Result<u64> {
    if let Some(o) = &r.orig {
        w.put(kind::ORCP, o.as_bytes())?;
    }
    if let Some(n) = &r.notify {
        w.put(kind::DSN_NOTIFY, n.as_bytes())?;
    }
    if let Some(o) = &r.orcpt {
        w.put(kind::DSN_ORCPT, o.as_bytes())?;
    }
    w.put(
        if r.done { kind::DONE } else { kind::RCPT },
        r.address.as_bytes(),
    )
}

/// A queue file being written. Dropping it without [`NewQueueFile::commit`] removes it.
///
/// While it is written the file carries an exclusive `flock`, held on a second descriptor
/// of the same open file: if the writer dies, the kernel releases it, and
/// [`writer_gone`] lets the reader of the queue remove the incomplete file at once instead
/// of guessing from its age.
pub struct NewQueueFile {
    _lock: nix::fcntl::Flock<File>,
    w: RecordWriter<BufWriter<File>>,
    path: PathBuf,
    id: QueueId,
    queue: QueueName,
    done: bool,
}

impl NewQueueFile {
    /// Creates a new, incomplete (mode 0600) file in queue `q` under its final name and
    /// writes the placeholder size record.
    pub fn create(layout: &QueueLayout, q: QueueName) -> Result<NewQueueFile, QueueError> {
        let top = layout.dir(q);
        let pid = std::process::id();
        let mut attempt = 0u32;
        loop {
            let now = SystemTime::now();
            let nanos = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let tmp = top.join(format!("tmp.{pid}.{nanos}.{attempt}"));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| QueueError::io(&tmp, e))?;
            // Locked before it becomes visible under its queue name (see the type's doc).
            let lock = file
                .try_clone()
                .map_err(|e| QueueError::io(&tmp, e))
                .and_then(|f| {
                    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
                        .map_err(|(_, e)| QueueError::io(&tmp, io::Error::from(e)))
                })?;
            let ino = file.metadata().map_err(|e| QueueError::io(&tmp, e))?.ino();
            let id = QueueId::new(now, ino);
            let path = layout.path(q, &id);
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tmp,
                nix::fcntl::AT_FDCWD,
                &path,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {
                    let mut w = RecordWriter::new(BufWriter::with_capacity(64 * 1024, file), 0);
                    w.put(kind::SIZE, &SizeRecord::default().payload())
                        .map_err(|e| QueueError::io(&path, e))?;
                    return Ok(NewQueueFile {
                        _lock: lock,
                        w,
                        path,
                        id,
                        queue: q,
                        done: false,
                    });
                }
                Err(nix::errno::Errno::EEXIST) if attempt < 100 => {
                    let _ = fs::remove_file(&tmp);
                    attempt += 1;
                    std::thread::sleep(Duration::from_micros(1));
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(QueueError::io(&path, io::Error::from(e)));
                }
            }
        }
    }

    /// The new file's queue ID.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// The new file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset of the next record.
    pub fn offset(&self) -> u64 {
        self.w.offset()
    }

    /// Appends one record; returns its offset.
    pub fn put(&mut self, k: u8, payload: &[u8]) -> Result<u64, QueueError> {
        self.w
            .put(k, payload)
            .map_err(|e| QueueError::io(&self.path, e))
    }

    /// Appends message content as blocks.
    pub fn put_content(&mut self, data: &[u8]) -> Result<(), QueueError> {
        self.w
            .put_content(data)
            .map_err(|e| QueueError::io(&self.path, e))
    }

    /// The record writer, for [`Envelope::write_records`].
    pub fn writer(&mut self) -> &mut RecordWriter<BufWriter<File>> {
        &mut self.w
    }

    /// Completes the file: END record, size record patched, complete mode bit set, file and
    /// directory fsynced. Only after this returns may the message be acknowledged.
    pub fn commit(mut self, size: SizeRecord) -> Result<QueueId, QueueError> {
        let path = self.path.clone();
        let io = |e| QueueError::io(&path, e);
        self.w.put(kind::END, b"").map_err(io)?;
        let file = self.w.get_mut();
        file.flush().map_err(io)?;
        let file = file.get_ref();
        let mut head = Vec::new();
        record::encode(kind::SIZE, &size.payload(), &mut head);
        file.write_all_at(&head, 0).map_err(io)?;
        let mode = if self.queue == QueueName::Maildrop {
            0o744
        } else {
            0o700
        };
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        match sync_dir(self.path.parent().unwrap_or(Path::new("."))) {
            Ok(()) => {}
            // postdrop (setgid) may write but not read maildrop/ (mode 0730), so it cannot
            // open the directory to fsync it: flush the whole file system instead, which
            // makes the new directory entry durable too.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                nix::unistd::syncfs(file).map_err(|e| QueueError::io(&path, io::Error::from(e)))?;
            }
            Err(e) => return Err(io(e)),
        }
        self.done = true;
        Ok(self.id.clone())
    }
}

impl Drop for NewQueueFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsyncs a directory, making renames and new entries in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// For an incomplete queue file (no execute bit): whether its writer is gone (crashed or
/// killed), so that the file will never be completed and may be removed. False while a
/// writer holds it, when the file cannot be opened, and when the file turns out complete
/// once its lock is ours: the caller saw it incomplete, but the writer may have committed
/// it and released the lock in between (a writer sets the execute bit before it lets go).
pub fn writer_gone(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked.metadata().is_ok_and(|m| !is_complete(&m)),
        Err(_) => false,
    }
}

/// Whether a queue file is complete (its owner-execute bit is set).
pub fn is_complete(meta: &fs::Metadata) -> bool {
    meta.mode() & 0o100 != 0
}

/// An open, fully verified queue file.
#[derive(Debug)]
pub struct QueueFile {
    /// The path it was opened from.
    pub path: PathBuf,
    /// The open file (read and write: recipients are marked done through it).
    pub file: File,
    /// The envelope.
    pub envelope: Envelope,
    /// Offset of the first record after `M`.
    pub content_start: u64,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> QueueError {
    QueueError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl QueueFile {
    /// Opens and verifies a queue file: every record's CRC, the order of the records, the
    /// END record, and nothing after it.
    pub fn open(path: &Path) -> Result<QueueFile, QueueError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| QueueError::io(path, e))?;
        Self::from_file(path, file)
    }

    /// Like [`QueueFile::open`], read-only (for listing and for unprivileged readers).
    pub fn open_read_only(path: &Path) -> Result<QueueFile, QueueError> {
        let file = File::open(path).map_err(|e| QueueError::io(path, e))?;
        Self::from_file(path, file)
    }

    fn from_file(path: &Path, file: File) -> Result<QueueFile, QueueError> {
        let rerr = |e: RecordError| match e {
            RecordError::Io(e) => QueueError::io(path, e),
            other => corrupt(path, other.to_string()),
        };
        let mut r = RecordReader::new(io::BufReader::with_capacity(64 * 1024, &file), 0);
        let mut env = Envelope::default();
        let first = r
            .next_record()
            .map_err(rerr)?
            .ok_or_else(|| corrupt(path, "empty file"))?;
        if first.kind != kind::SIZE {
            return Err(corrupt(path, "no size record"));
        }
        env.size =
            SizeRecord::parse(&first.payload).ok_or_else(|| corrupt(path, "bad size record"))?;
        let mut pending = Recipient::default();
        let mut have_sender = false;
        let content_start;
        loop {
            let rec = r
                .next_record()
                .map_err(rerr)?
                .ok_or_else(|| corrupt(path, "no content"))?;
            let text = || rec.text();
            match rec.kind {
                kind::TIME => {
                    let mut it = text()
                        .split_whitespace()
                        .map(str::parse::<u64>)
                        .collect::<Vec<_>>()
                        .into_iter();
                    let (Some(Ok(s)), Some(Ok(us))) = (it.next(), it.next()) else {
                        return Err(corrupt(path, "bad time record"));
                    };
                    env.arrival =
                        Some(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us));
                }
                kind::FULL => env.full_name = Some(text()),
                kind::FROM if !have_sender => {
                    env.sender = text();
                    have_sender = true;
                }
                kind::ATTR => {
                    let t = text();
                    let (n, v) = t
                        .split_once('=')
                        .ok_or_else(|| corrupt(path, "bad attribute record"))?;
                    env.attrs.push((n.to_string(), v.to_string()));
                }
                kind::DSN_ENVID => env.envid = Some(text()),
                kind::DSN_RET => env.ret = Some(text()),
                kind::ORCP => pending.orig = Some(text()),
                kind::DSN_NOTIFY => pending.notify = Some(text()),
                kind::DSN_ORCPT => pending.orcpt = Some(text()),
                kind::RCPT | kind::DONE => {
                    pending.address = text();
                    pending.done = rec.kind == kind::DONE;
                    pending.offset = rec.offset;
                    env.recipients.push(std::mem::take(&mut pending));
                }
                kind::MESG => {
                    content_start = r.offset();
                    if env.size.content_offset != 0 && env.size.content_offset != rec.offset {
                        return Err(corrupt(path, "content offset mismatch"));
                    }
                    break;
                }
                k => {
                    return Err(corrupt(
                        path,
                        format!("unexpected record {:?} in envelope", k as char),
                    ));
                }
            }
        }
        if !have_sender || env.arrival.is_none() {
            return Err(corrupt(path, "missing sender or time record"));
        }
        let mut size = 0u64;
        loop {
            let rec = r
                .next_record()
                .map_err(rerr)?
                .ok_or_else(|| corrupt(path, "no end of content"))?;
            match rec.kind {
                kind::NORM => size += rec.payload.len() as u64,
                kind::XTRA => break,
                k => {
                    return Err(corrupt(
                        path,
                        format!("unexpected record {:?} in content", k as char),
                    ));
                }
            }
        }
        match r.next_record().map_err(rerr)? {
            Some(rec) if rec.kind == kind::END => {}
            _ => return Err(corrupt(path, "missing end record")),
        }
        if r.next_record().map_err(rerr)?.is_some() {
            return Err(corrupt(path, "data after end record"));
        }
        if env.size.content_offset != 0 && env.size.content_size != size {
            return Err(corrupt(path, "content size mismatch"));
        }
        env.size.content_size = size;
        Ok(QueueFile {
            path: path.to_path_buf(),
            file,
            envelope: env,
            content_start,
        })
    }

    /// A reader of the message content (headers and body, LF line endings). Each block's
    /// CRC was verified by `open`; the reader verifies again while streaming, so a file
    /// damaged since is reported as an error, never delivered half.
    pub fn content(&self) -> ContentReader<'_> {
        let pread = PreadReader {
            file: &self.file,
            pos: self.content_start,
        };
        ContentReader {
            r: RecordReader::new(
                io::BufReader::with_capacity(64 * 1024, pread),
                self.content_start,
            ),
            block: Vec::new(),
            pos: 0,
            ended: false,
        }
    }

    /// Marks recipient `r` done (see [`mark_done`]).
    pub fn mark_done(&self, r: &Recipient) -> Result<(), QueueError> {
        mark_done(&self.file, r.offset).map_err(|e| QueueError::io(&self.path, e))
    }
}

/// Records a recipient's final status by flipping its record type `R` to `D` in place.
/// Not fsynced (durability contract, point 4).
pub fn mark_done(file: &File, offset: u64) -> io::Result<()> {
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset)?;
    if b[0] != kind::RCPT && b[0] != kind::DONE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no recipient record at offset {offset}"),
        ));
    }
    file.write_all_at(&[kind::DONE], offset)
}

struct PreadReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PreadReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Streams a queue file's content; see [`QueueFile::content`].
pub struct ContentReader<'a> {
    r: RecordReader<io::BufReader<PreadReader<'a>>>,
    block: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl<'a> ContentReader<'a> {
    fn refill(&mut self) -> io::Result<()> {
        while self.pos >= self.block.len() && !self.ended {
            match self.r.next_record() {
                Ok(Some(rec)) if rec.kind == kind::NORM => {
                    self.block = rec.payload;
                    self.pos = 0;
                }
                Ok(Some(rec)) if rec.kind == kind::XTRA => self.ended = true,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "queue file content ends early",
                    ));
                }
                Err(RecordError::Io(e)) => return Err(e),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
        Ok(())
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.refill()?;
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One entry of a defer or bounce log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The recipient.
    pub recipient: String,
    /// Its original address, or "".
    pub orig: String,
    /// The enhanced status code (`4.4.1`).
    pub dsn: String,
    /// The reason text.
    pub reason: String,
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\t' || c == '\n' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Appends entries to the log of message `id` in `q` (`defer/` or `bounce/`), fsynced.
pub fn append_log(
    layout: &QueueLayout,
    q: QueueName,
    id: &QueueId,
    entries: &[LogEntry],
) -> Result<(), QueueError> {
    let path = layout.path(q, id);
    let io = |e| QueueError::io(&path, e);
    let mut f = match OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
    {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?
        }
        r => r.map_err(io)?,
    };
    let mut buf = Vec::new();
    for e in entries {
        let line = format!(
            "{}\t{}\t{}\t{}",
            clean(&e.recipient),
            clean(&e.orig),
            clean(&e.dsn),
            clean(&e.reason)
        );
        record::encode(kind::LOG, line.as_bytes(), &mut buf);
    }
    f.write_all(&buf).map_err(io)?;
    f.sync_data().map_err(io)
}

/// Reads the log of message `id` in `q`; a missing log is empty. A damaged tail (torn
/// append) is ignored: the entries before it are returned.
pub fn read_log(
    layout: &QueueLayout,
    q: QueueName,
    id: &QueueId,
) -> Result<Vec<LogEntry>, QueueError> {
    let path = layout.path(q, id);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(QueueError::io(&path, e)),
    };
    f.seek(SeekFrom::Start(0))
        .map_err(|e| QueueError::io(&path, e))?;
    let mut r = RecordReader::new(io::BufReader::new(f), 0);
    let mut out = Vec::new();
    while let Ok(Some(rec)) = r.next_record() {
        let t = rec.text();
        let mut it = t.splitn(4, '\t');
        if let (Some(a), Some(b), Some(c), Some(d)) = (it.next(), it.next(), it.next(), it.next()) {
            out.push(LogEntry {
                recipient: a.into(),
                orig: b.into(),
                dsn: c.into(),
                reason: d.into(),
            });
        }
    }
    Ok(out)
}

/// Moves a damaged file to `corrupt/` (flat, by its file name) so it is kept for
/// inspection and never delivered. Returns the new path.
pub fn quarantine(layout: &QueueLayout, path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().unwrap_or_default();
    let dst = layout.dir(QueueName::Corrupt).join(name);
    fs::rename(path, &dst)?;
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o400))?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DirOwner;

    fn layout() -> (tempfile::TempDir, QueueLayout) {
        let tmp = tempfile::tempdir().unwrap();
        let l = QueueLayout::new(
            tmp.path().join("q"),
            &["deferred".into(), "defer".into()],
            1,
        );
        l.create_tree(&DirOwner::default()).unwrap();
        (tmp, l)
    }

    fn write_one(l: &QueueLayout, body: &[u8]) -> QueueId {
        let mut f = NewQueueFile::create(l, QueueName::Incoming).unwrap();
        let env = Envelope {
            sender: "s@x".into(),
            arrival: Some(SystemTime::now()),
            attrs: vec![("log_client".into(), "local".into())],
            recipients: vec![
                Recipient {
                    address: "a@x".into(),
                    orig: Some("A@x".into()),
                    ..Default::default()
                },
                Recipient {
                    address: "b@x".into(),
                    notify: Some("FAILURE".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        env.write_records(f.writer()).unwrap();
        let m = f.put(kind::MESG, b"").unwrap();
        f.put_content(body).unwrap();
        f.put(kind::XTRA, b"").unwrap();
        let size = SizeRecord {
            content_size: body.len() as u64,
            content_offset: m,
            recipients: 2,
            flags: 0,
        };
        f.commit(size).unwrap()
    }

    #[test]
    fn write_read_mark_done() {
        let (_t, l) = layout();
        let body = b"Subject: hi\n\nhello\n".repeat(5000);
        let id = write_one(&l, &body);
        let p = l.path(QueueName::Incoming, &id);
        assert!(is_complete(&fs::metadata(&p).unwrap()));
        let q = QueueFile::open(&p).unwrap();
        assert_eq!(q.envelope.sender, "s@x");
        assert_eq!(q.envelope.attr("log_client"), Some("local"));
        assert_eq!(q.envelope.recipients.len(), 2);
        assert_eq!(q.envelope.recipients[0].orig.as_deref(), Some("A@x"));
        let mut got = Vec::new();
        q.content().read_to_end(&mut got).unwrap();
        assert_eq!(got, body);
        q.mark_done(&q.envelope.recipients[1]).unwrap();
        let q2 = QueueFile::open(&p).unwrap();
        assert!(!q2.envelope.recipients[0].done);
        assert!(q2.envelope.recipients[1].done);
    }

    #[test]
    fn uncommitted_file_is_removed_and_damage_detected() {
        let (_t, l) = layout();
        let f = NewQueueFile::create(&l, QueueName::Incoming).unwrap();
        let p = f.path().to_path_buf();
        assert!(p.exists());
        assert!(!is_complete(&fs::metadata(&p).unwrap()));
        assert!(!writer_gone(&p), "the writer holds its lock");
        drop(f);
        assert!(!p.exists());
        // An incomplete file nobody holds (its writer died) is recognised as abandoned.
        fs::write(&p, b"partial").unwrap();
        assert!(writer_gone(&p));
        fs::remove_file(&p).unwrap();
        // A scanner that saw the file incomplete just before its writer committed it and
        // let go of the lock must not take it for abandoned.
        let f = NewQueueFile::create(&l, QueueName::Incoming).unwrap();
        let p = f.path().to_path_buf();
        let seen_incomplete = !is_complete(&fs::metadata(&p).unwrap());
        let id = {
            let mut f = f;
            Envelope {
                sender: "s@x".into(),
                recipients: vec![Recipient {
                    address: "r@x".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .write_records(f.writer())
            .unwrap();
            f.put(kind::MESG, b"").unwrap();
            f.put_content(b"x\n").unwrap();
            f.put(kind::XTRA, b"").unwrap();
            f.commit(SizeRecord::default()).unwrap()
        };
        assert!(seen_incomplete);
        assert!(!writer_gone(&p), "a committed file is never abandoned");
        fs::remove_file(l.path(QueueName::Incoming, &id)).unwrap();

        let id = write_one(&l, b"x\n");
        let p = l.path(QueueName::Incoming, &id);
        let bytes = fs::read(&p).unwrap();
        for cut in [bytes.len() - 1, bytes.len() - 7, 40] {
            fs::write(&p, &bytes[..cut]).unwrap();
            assert!(
                QueueFile::open(&p).unwrap_err().is_corrupt(),
                "cut at {cut}"
            );
        }
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 12] ^= 0x40;
        fs::write(&p, &bad).unwrap();
        assert!(QueueFile::open(&p).unwrap_err().is_corrupt());
        let dst = quarantine(&l, &p).unwrap();
        assert!(dst.starts_with(l.dir(QueueName::Corrupt)));
    }

    #[test]
    fn logs_append_and_read() {
        let (_t, l) = layout();
        let id = QueueId::new(SystemTime::now(), 7);
        let e = LogEntry {
            recipient: "a@x".into(),
            orig: "".into(),
            dsn: "4.4.1".into(),
            reason: "connect\tfailed".into(),
        };
        append_log(&l, QueueName::Defer, &id, std::slice::from_ref(&e)).unwrap();
        append_log(&l, QueueName::Defer, &id, std::slice::from_ref(&e)).unwrap();
        let got = read_log(&l, QueueName::Defer, &id).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].reason, "connect failed");
    }
}
