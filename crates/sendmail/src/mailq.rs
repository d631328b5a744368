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
//! TODO(local time): arrival times are printed in UTC; Postfix prints local time
//! (`asctime(localtime())`). Switch to `posthorn_message::time::asctime_local` once that
//! exists.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Writes the listing of `entries` in `postqueue -p` format.
pub fn format<W: Write>(entries: &[Entry], out: &mut W) -> io::Result<()> {
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
            asctime(e.arrival)
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

/// `asctime()` without the year: `Thu Nov  5 10:00:00` (UTC, see the module's TODO).
pub fn asctime(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (_, month, day) = civil_from_days(days);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02}",
        DAYS[((days + 4) % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn asctime_matches_libc_layout() {
        let t = UNIX_EPOCH + Duration::from_secs(0);
        assert_eq!(asctime(t), "Thu Jan  1 00:00:00");
        // 2025-11-20 10:00:00 UTC was a Thursday.
        let t = UNIX_EPOCH + Duration::from_secs(1_763_632_800);
        assert_eq!(asctime(t), "Thu Nov 20 10:00:00");
        // 2024-02-29 23:59:59 UTC, a leap day, was a Thursday.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(asctime(t), "Thu Feb 29 23:59:59");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
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
        format(&[a.clone(), d.clone()], &mut out).unwrap();
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
    }
}
