//! `mailq` / `sendmail -bp`: the queue listing in Postfix's `postqueue -p` format, read
//! straight from the queue files.
//!
//! Interim design: Postfix's mailq asks the `showq` daemon (which can read the mail_owner's
//! queue) through `postqueue`. Until posthorn has those, this module reads the queue
//! directories itself, which works for the queue owner (root, or the single user of an
//! unprivileged instance); other users get "cannot read the queue as this user".
//!
//! Format (long queue IDs, `showq_compat.c`): a heading, then per message a line
//! `%-17s %8ld %19.19s %s` (ID with `*` for active or `!` for hold, content size, arrival
//! time, sender or `MAILER-DAEMON`), a `(reason)` line right-aligned to column 78 whenever
//! the deferral reason changes from the previous recipient, and one line per recipient still
//! to be delivered; a blank line between messages; then `-- N Kbytes in M Requests.`, or
//! `Mail queue is empty`.
//!
//! Arrival times are local time, `asctime(localtime())` cut to 19 characters as in Postfix
//! (`Wed Nov 25 15:40:05`), in the zone of `TZ` or `/etc/localtime` ([`format`]); [`format_in`]
//! takes the zone explicitly.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use posthorn_message::time::{TimeZone, asctime_at, asctime_local, unix_seconds};
use posthorn_queue::file::{QueueFile, is_complete, read_log};
use posthorn_queue::{QueueId, QueueLayout, QueueName};

/// The queues listed, in Postfix's showq order.
pub const LISTED: [QueueName; 5] = [
    QueueName::Maildrop,
    QueueName::Incoming,
    QueueName::Active,
    QueueName::Deferred,
    QueueName::Hold,
];

/// One message of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The queue it is in.
    pub queue: QueueName,
    /// Its queue ID.
    pub id: QueueId,
    /// When it arrived.
    pub arrival: SystemTime,
    /// Content size in bytes.
    pub size: u64,
    /// Envelope sender ("" = null sender).
    pub sender: String,
    /// Recipients still to be delivered, each with its last deferral reason ("" = none).
    pub recipients: Vec<(String, String)>,
}

/// Why the queue could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The user may not read the queue directories (they belong to mail_owner).
    #[error("cannot read the queue as this user; postqueue/showq comes later ({}: permission denied)", .0.display())]
    NoAccess(PathBuf),
    /// Another error reading a queue directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Reads every listed queue. Files still being written, or that fail verification, are
/// skipped (they are not mail yet, or not mail at all).
pub fn scan(layout: &QueueLayout) -> Result<Vec<Entry>, ScanError> {
    if let Err(e) = std::fs::metadata(layout.root()) {
        return Err(ScanError::Io {
            path: layout.root().to_path_buf(),
            source: e,
        });
    }
    let mut out = Vec::new();
    for q in LISTED {
        let ids = layout.list(q).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => ScanError::NoAccess(layout.dir(q)),
            _ => ScanError::Io {
                path: layout.dir(q),
                source: e,
            },
        })?;
        for id in ids {
            let path = layout.path(q, &id);
            match std::fs::metadata(&path) {
                Ok(m) if is_complete(&m) => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(ScanError::NoAccess(path));
                }
                Err(_) => continue,
            }
            let qf = match QueueFile::open_read_only(&path) {
                Ok(qf) => qf,
                Err(posthorn_queue::QueueError::Io { source, .. })
                    if source.kind() == io::ErrorKind::PermissionDenied =>
                {
                    return Err(ScanError::NoAccess(path));
                }
                Err(_) => continue,
            };
            let reasons: HashMap<String, String> = read_log(layout, QueueName::Defer, &id)
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.recipient, e.reason))
                .collect();
            let env = qf.envelope;
            let recipients = env
                .recipients
                .into_iter()
                .filter(|r| !r.done)
                .map(|r| {
                    let why = reasons.get(&r.address).cloned().unwrap_or_default();
                    (r.address, why)
                })
                .collect();
            out.push(Entry {
                queue: q,
                id,
                arrival: env.arrival.unwrap_or(UNIX_EPOCH),
                size: env.size.content_size,
                sender: env.sender,
                recipients,
            });
        }
    }
    Ok(out)
}

/// Writes the listing of `entries` in `postqueue -p` format, arrival times in local time.
pub fn format<W: Write>(entries: &[Entry], out: &mut W) -> io::Result<()> {
    write_listing(entries, out, &asctime)
}

/// [`format`] with arrival times in `zone` instead of the process's local zone.
pub fn format_in<W: Write>(entries: &[Entry], out: &mut W, zone: &TimeZone) -> io::Result<()> {
    write_listing(entries, out, &|t| asctime_in(t, zone))
}

/// The listing, with `when` formatting the arrival times.
fn write_listing<W: Write>(
    entries: &[Entry],
    out: &mut W,
    when: &dyn Fn(SystemTime) -> String,
) -> io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "Mail queue is empty");
    }
    let mut total = 0u64;
    for (n, e) in entries.iter().enumerate() {
        if n == 0 {
            // Postfix's "%-17s %8s %-19s %s" headings, already exactly as wide as their columns.
            writeln!(
                out,
                "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
            )?;
        } else {
            writeln!(out)?;
        }
        let status = match e.queue {
            QueueName::Active => "*",
            QueueName::Hold => "!",
            _ => "",
        };
        let id = format!("{}{status}", e.id);
        let sender = if e.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            e.sender.as_str()
        };
        writeln!(
            out,
            "{id:<17} {:>8} {:<19.19} {sender}",
            e.size,
            when(e.arrival)
        )?;
        let mut saved = "";
        for (rcpt, why) in &e.recipients {
            if why != saved {
                saved = why;
                let shown = if why.is_empty() {
                    "reason unavailable"
                } else {
                    why.as_str()
                };
                let pad = 76usize.saturating_sub(shown.len());
                writeln!(out, "{:pad$}({shown})", "")?;
            }
            writeln!(out, "{:<17} {:>8} {:<19} {rcpt}", "", "", "")?;
        }
        total += e.size;
    }
    let n = entries.len();
    writeln!(
        out,
        "\n-- {} Kbytes in {n} Request{}.",
        total / 1024,
        if n == 1 { "" } else { "s" }
    )
}

/// `asctime(localtime(t))` without the year: `Thu Nov  5 10:00:00`.
pub fn asctime(t: SystemTime) -> String {
    without_year(asctime_local(t))
}

/// [`asctime`] in `zone` instead of the process's local zone.
pub fn asctime_in(t: SystemTime, zone: &TimeZone) -> String {
    let (offset, _) = zone.offset_at(unix_seconds(t));
    without_year(asctime_at(t, offset))
}

/// The first 19 characters of an `asctime` string (Postfix's `%19.19s`), all ASCII.
fn without_year(mut s: String) -> String {
    s.truncate(19);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn asctime_matches_libc_layout() {
        let utc = TimeZone::utc();
        let t = UNIX_EPOCH + Duration::from_secs(0);
        assert_eq!(asctime_in(t, &utc), "Thu Jan  1 00:00:00");
        // 2025-11-20 10:00:00 UTC was a Thursday.
        let t = UNIX_EPOCH + Duration::from_secs(1_763_632_800);
        assert_eq!(asctime_in(t, &utc), "Thu Nov 20 10:00:00");
        // 2024-02-29 23:59:59 UTC, a leap day, was a Thursday.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(asctime_in(t, &utc), "Thu Feb 29 23:59:59");
        // A year of five digits still gives the 19-character field.
        let t = UNIX_EPOCH + Duration::from_secs(253_402_300_800); // 10000-01-01
        assert_eq!(asctime_in(t, &utc), "Sat Jan  1 00:00:00");
    }

    #[test]
    fn asctime_uses_the_zone() {
        let cet = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let ny = TimeZone::from_posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        // 2025-11-20 10:00:00 UTC: winter time on both sides.
        let t = UNIX_EPOCH + Duration::from_secs(1_763_632_800);
        assert_eq!(asctime_in(t, &cet), "Thu Nov 20 11:00:00");
        assert_eq!(asctime_in(t, &ny), "Thu Nov 20 05:00:00");
        // 2024-02-29 23:59:59 UTC is already March 1st in Paris.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(asctime_in(t, &cet), "Fri Mar  1 00:59:59");
        // 2025-07-01 12:00:00 UTC: summer time.
        let t = UNIX_EPOCH + Duration::from_secs(1_751_371_200);
        assert_eq!(asctime_in(t, &cet), "Tue Jul  1 14:00:00");
        assert_eq!(asctime_in(t, &ny), "Tue Jul  1 08:00:00");
        // The process's zone, whatever it is here, gives the same shape.
        assert_eq!(asctime(t).len(), 19);
    }

    fn entry(queue: QueueName, sender: &str, rcpts: &[(&str, &str)], size: u64) -> Entry {
        Entry {
            queue,
            id: QueueId::new(UNIX_EPOCH + Duration::from_secs(1_763_632_800), 7),
            arrival: UNIX_EPOCH + Duration::from_secs(1_763_632_800),
            size,
            sender: sender.into(),
            recipients: rcpts
                .iter()
                .map(|(a, b)| ((*a).into(), (*b).into()))
                .collect(),
        }
    }

    #[test]
    fn empty_queue() {
        let mut out = Vec::new();
        format(&[], &mut out).unwrap();
        assert_eq!(out, b"Mail queue is empty\n");
    }

    #[test]
    fn listing_layout() {
        let a = entry(
            QueueName::Active,
            "alice@x",
            &[("bob@y", ""), ("carol@z", "")],
            2048,
        );
        let d = entry(
            QueueName::Deferred,
            "",
            &[
                ("d@y", "connect to y[192.0.2.1]:25: Connection refused"),
                ("e@y", "connect to y[192.0.2.1]:25: Connection refused"),
                ("f@y", ""),
            ],
            100,
        );
        let mut out = Vec::new();
        format_in(&[a.clone(), d.clone()], &mut out, &TimeZone::utc()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
        );
        assert_eq!(
            lines[1],
            format!(
                "{:<17} {:>8} Thu Nov 20 10:00:00 alice@x",
                format!("{}*", a.id),
                2048
            )
        );
        assert_eq!(lines[2], format!("{}bob@y", " ".repeat(47)));
        assert_eq!(lines[3], format!("{}carol@z", " ".repeat(47)));
        assert_eq!(lines[4], "");
        assert_eq!(
            lines[5],
            format!(
                "{:<17} {:>8} Thu Nov 20 10:00:00 MAILER-DAEMON",
                d.id.to_string(),
                100
            )
        );
        let reason = "(connect to y[192.0.2.1]:25: Connection refused)";
        assert_eq!(
            lines[6],
            format!("{}{reason}", " ".repeat(78 - reason.len()))
        );
        assert_eq!(lines[7], format!("{}d@y", " ".repeat(47)));
        assert_eq!(lines[8], format!("{}e@y", " ".repeat(47)));
        assert_eq!(
            lines[9],
            format!("{}(reason unavailable)", " ".repeat(76 - 18))
        );
        assert_eq!(lines[10], format!("{}f@y", " ".repeat(47)));
        assert_eq!(lines[11], "");
        assert_eq!(lines[12], "-- 2 Kbytes in 2 Requests.");
        assert_eq!(lines.len(), 13);
        // In another zone only the arrival times move.
        let cet = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let mut out = Vec::new();
        format_in(&[a.clone(), d], &mut out, &cet).unwrap();
        let text_cet = String::from_utf8(out).unwrap();
        assert_eq!(
            text_cet,
            text.replace("Thu Nov 20 10:00:00", "Thu Nov 20 11:00:00")
        );
        assert!(text_cet.contains(&format!(
            "{:<17} {:>8} Thu Nov 20 11:00:00 alice@x",
            format!("{}*", a.id),
            2048
        )));
    }
}
