//! The two queue listing formats, written as the listing streams in: `postqueue -p` (also
//! `mailq` and `sendmail -bp`) and `postqueue -j`. This is the one place for both.
//!
//! `-p` is Postfix's `showq_compat.c` layout for long queue IDs: a heading, then per message
//! a line `%-17s %8ld %19.19s %s` (queue ID with `*` for active, `!` for hold, then `#` when
//! forced to expire; content size; arrival time as `asctime(localtime())` cut to 19
//! characters; sender), a `(reason)` line right-aligned to column 78 whenever the deferral
//! reason changes from the previous recipient (`(reason unavailable)` when a recipient has
//! none after one that had one), one line per recipient still to be delivered, a blank line
//! between messages, and `-- N Kbytes in M Requests.` at the end, or `Mail queue is empty`.
//!
//! `-j` is Postfix's `showq_json.c`: one JSON object per message and line, members in
//! Postfix's order with its `", "` separators; `delay_reason` only when there is one.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use posthorn_message::time::{TimeZone, asctime_at, unix_seconds};

use crate::protocol::{Message, Recipient};

/// A listing format: receives the events of a listing, in order, and writes them out.
pub trait Listing {
    /// A queue file; its recipients follow.
    fn message(&mut self, m: &Message) -> io::Result<()>;
    /// A recipient of the latest message.
    fn recipient(&mut self, r: &Recipient) -> io::Result<()>;
    /// The listing is complete: write the trailer and flush.
    fn finish(&mut self) -> io::Result<()>;
}

/// `postqueue -p`: the traditional Sendmail-style listing.
pub struct Compat<W: Write> {
    out: W,
    zone: TimeZone,
    messages: u64,
    bytes: u64,
    saved_reason: String,
}

impl<W: Write> Compat<W> {
    /// Writes to `out`, with arrival times in `zone`.
    pub fn new(out: W, zone: TimeZone) -> Self {
        Compat {
            out,
            zone,
            messages: 0,
            bytes: 0,
            saved_reason: String::new(),
        }
    }

    /// Gives back the output stream.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Listing for Compat<W> {
    fn message(&mut self, m: &Message) -> io::Result<()> {
        if self.messages == 0 {
            // Postfix's "%-17s %8s %-19s %s" headings, each exactly as wide as its column.
            writeln!(
                self.out,
                "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
            )?;
        } else {
            writeln!(self.out)?;
        }
        let mut id = m.queue_id.clone();
        match m.queue_name.as_str() {
            "active" => id.push('*'),
            "hold" => id.push('!'),
            _ => {}
        }
        if m.forced_expire {
            id.push('#');
        }
        let arrival = UNIX_EPOCH + Duration::from_secs(m.arrival_time);
        writeln!(
            self.out,
            "{id:<17} {:>8} {:<19.19} {}",
            m.message_size,
            asctime_in(arrival, &self.zone),
            m.sender
        )?;
        self.saved_reason.clear();
        self.messages += 1;
        self.bytes = self.bytes.saturating_add(m.message_size);
        Ok(())
    }

    fn recipient(&mut self, r: &Recipient) -> io::Result<()> {
        if r.reason != self.saved_reason {
            self.saved_reason.clone_from(&r.reason);
            let shown = if r.reason.is_empty() {
                "reason unavailable"
            } else {
                r.reason.as_str()
            };
            // Postfix pads to 76 columns by bytes (strlen), not characters.
            let pad = 76usize.saturating_sub(shown.len());
            writeln!(self.out, "{:pad$}({shown})", "")?;
        }
        writeln!(self.out, "{:<17} {:>8} {:<19} {}", "", "", "", r.address)
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.messages == 0 {
            writeln!(self.out, "Mail queue is empty")?;
        } else {
            let n = self.messages;
            writeln!(
                self.out,
                "\n-- {} Kbytes in {n} Request{}.",
                self.bytes / 1024,
                if n == 1 { "" } else { "s" }
            )?;
        }
        self.out.flush()
    }
}

/// `postqueue -j`: JSON Lines, one object per queue file.
pub struct Json<W: Write> {
    out: W,
    open: bool,
    recipients: u64,
}

impl<W: Write> Json<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Json {
            out,
            open: false,
            recipients: 0,
        }
    }

    /// Gives back the output stream.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Writes `s` as a JSON string (quotes and escapes by serde_json).
    fn string(&mut self, s: &str) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, s).map_err(io::Error::from)
    }

    /// Closes the object of the previous message, if any.
    fn close(&mut self) -> io::Result<()> {
        if self.open {
            self.open = false;
            self.out.write_all(b"]}\n")?;
        }
        Ok(())
    }
}

impl<W: Write> Listing for Json<W> {
    fn message(&mut self, m: &Message) -> io::Result<()> {
        self.close()?;
        self.out.write_all(b"{\"queue_name\": ")?;
        self.string(&m.queue_name)?;
        self.out.write_all(b", \"queue_id\": ")?;
        self.string(&m.queue_id)?;
        write!(
            self.out,
            ", \"arrival_time\": {}, \"message_size\": {}, \"forced_expire\": {}, \"sender\": ",
            m.arrival_time, m.message_size, m.forced_expire
        )?;
        self.string(&m.sender)?;
        self.out.write_all(b", \"recipients\": [")?;
        self.open = true;
        self.recipients = 0;
        Ok(())
    }

    fn recipient(&mut self, r: &Recipient) -> io::Result<()> {
        if self.recipients > 0 {
            self.out.write_all(b", ")?;
        }
        self.recipients += 1;
        self.out.write_all(b"{\"address\": ")?;
        self.string(&r.address)?;
        if !r.reason.is_empty() {
            self.out.write_all(b", \"delay_reason\": ")?;
            self.string(&r.reason)?;
        }
        self.out.write_all(b"}")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.close()?;
        self.out.flush()
    }
}

/// `asctime(localtime(t))` in `zone`, cut to Postfix's 19 characters: `Thu Nov  5 10:00:00`.
pub fn asctime_in(t: SystemTime, zone: &TimeZone) -> String {
    let (offset, _) = zone.offset_at(unix_seconds(t));
    let mut s = asctime_at(t, offset);
    // asctime text is ASCII, so byte 19 is a character boundary.
    s.truncate(19);
    s
}

/// Replaces control characters with `?`, as Postfix's `printable()` does with what showq
/// sends: addresses and reasons come from untrusted mail and must not reach a terminal raw.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_20: u64 = 1_763_632_800; // 2025-11-20 10:00:00 UTC, a Thursday

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn asctime_matches_libc_layout() {
        let utc = TimeZone::utc();
        assert_eq!(asctime_in(at(0), &utc), "Thu Jan  1 00:00:00");
        assert_eq!(asctime_in(at(NOV_20), &utc), "Thu Nov 20 10:00:00");
        // 2024-02-29 23:59:59 UTC, a leap day, was a Thursday.
        assert_eq!(asctime_in(at(1_709_251_199), &utc), "Thu Feb 29 23:59:59");
        // A year of five digits still gives the 19-character field.
        assert_eq!(asctime_in(at(253_402_300_800), &utc), "Sat Jan  1 00:00:00");
    }

    #[test]
    fn asctime_uses_the_zone() {
        let cet = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let ny = TimeZone::from_posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(asctime_in(at(NOV_20), &cet), "Thu Nov 20 11:00:00");
        assert_eq!(asctime_in(at(NOV_20), &ny), "Thu Nov 20 05:00:00");
        // 2024-02-29 23:59:59 UTC is already March 1st in Paris.
        assert_eq!(asctime_in(at(1_709_251_199), &cet), "Fri Mar  1 00:59:59");
        // 2025-07-01 12:00:00 UTC: summer time.
        assert_eq!(asctime_in(at(1_751_371_200), &cet), "Tue Jul  1 14:00:00");
        assert_eq!(asctime_in(at(1_751_371_200), &ny), "Tue Jul  1 08:00:00");
    }

    fn message(queue: &str, id: &str, sender: &str, size: u64) -> Message {
        Message {
            queue_name: queue.into(),
            queue_id: id.into(),
            arrival_time: NOV_20,
            message_size: size,
            forced_expire: false,
            sender: sender.into(),
        }
    }

    fn rcpt(address: &str, reason: &str) -> Recipient {
        Recipient {
            address: address.into(),
            reason: reason.into(),
        }
    }

    /// Feeds messages with their recipients to `l`.
    fn feed(l: &mut dyn Listing, msgs: &[(Message, Vec<Recipient>)]) {
        for (m, rs) in msgs {
            l.message(m).unwrap();
            for r in rs {
                l.recipient(r).unwrap();
            }
        }
        l.finish().unwrap();
    }

    fn compat(msgs: &[(Message, Vec<Recipient>)], zone: TimeZone) -> String {
        let mut c = Compat::new(Vec::new(), zone);
        feed(&mut c, msgs);
        String::from_utf8(c.into_inner()).unwrap()
    }

    fn json(msgs: &[(Message, Vec<Recipient>)]) -> String {
        let mut j = Json::new(Vec::new());
        feed(&mut j, msgs);
        String::from_utf8(j.into_inner()).unwrap()
    }

    const REFUSED: &str = "connect to y[192.0.2.1]:25: Connection refused";

    fn sample() -> Vec<(Message, Vec<Recipient>)> {
        vec![
            (
                message("active", "4cVbKp0Dwzz1Lh", "alice@x", 2048),
                vec![rcpt("bob@y", ""), rcpt("carol@z", "")],
            ),
            (
                message("deferred", "4cVbKp0Dwzz1Lj", "MAILER-DAEMON", 100),
                vec![rcpt("d@y", REFUSED), rcpt("e@y", REFUSED), rcpt("f@y", "")],
            ),
        ]
    }

    #[test]
    fn empty_queue() {
        assert_eq!(compat(&[], TimeZone::utc()), "Mail queue is empty\n");
        assert_eq!(json(&[]), "");
    }

    #[test]
    fn listing_layout() {
        let text = compat(&sample(), TimeZone::utc());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
        );
        assert_eq!(
            lines[1],
            "4cVbKp0Dwzz1Lh*       2048 Thu Nov 20 10:00:00 alice@x"
        );
        assert_eq!(lines[2], format!("{}bob@y", " ".repeat(47)));
        assert_eq!(lines[3], format!("{}carol@z", " ".repeat(47)));
        assert_eq!(lines[4], "");
        assert_eq!(
            lines[5],
            "4cVbKp0Dwzz1Lj         100 Thu Nov 20 10:00:00 MAILER-DAEMON"
        );
        let reason = format!("({REFUSED})");
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
        assert_eq!(
            compat(&sample(), cet),
            text.replace("Thu Nov 20 10:00:00", "Thu Nov 20 11:00:00")
        );
    }

    #[test]
    fn status_marks_and_the_single_request() {
        let mut held = message("hold", "4cVbKp0Dwzz1Lk", "a@b", 5000);
        held.forced_expire = true;
        let text = compat(&[(held, vec![rcpt("c@d", "")])], TimeZone::utc());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("4cVbKp0Dwzz1Lk!#      5000 "),
            "{text}"
        );
        // No reason line for a first recipient without a reason.
        assert_eq!(lines[2].trim_start(), "c@d");
        assert_eq!(lines[4], "-- 4 Kbytes in 1 Request.");
        // A reason longer than the line is not padded.
        let long = "x".repeat(100);
        let text = compat(
            &[(message("deferred", "I", "a@b", 1), vec![rcpt("c@d", &long)])],
            TimeZone::utc(),
        );
        assert_eq!(text.lines().nth(2).unwrap(), format!("({long})"));
    }

    #[test]
    fn json_lines_in_postfix_member_order() {
        let text = json(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "{\"queue_name\": \"active\", \"queue_id\": \"4cVbKp0Dwzz1Lh\", \"arrival_time\": 1763632800, \
             \"message_size\": 2048, \"forced_expire\": false, \"sender\": \"alice@x\", \
             \"recipients\": [{\"address\": \"bob@y\"}, {\"address\": \"carol@z\"}]}"
        );
        assert!(lines[1].ends_with(&format!(
            "\"recipients\": [{{\"address\": \"d@y\", \"delay_reason\": \"{REFUSED}\"}}, \
             {{\"address\": \"e@y\", \"delay_reason\": \"{REFUSED}\"}}, {{\"address\": \"f@y\"}}]}}"
        )));
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["recipients"].is_array());
        }
        // No recipients: an empty array. Quotes and backslashes are escaped.
        let text = json(&[(message("hold", "I", "\"q\\\"@x", 1), vec![])]);
        assert!(text.ends_with("\"sender\": \"\\\"q\\\\\\\"@x\", \"recipients\": []}\n"));
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["sender"], "\"q\\\"@x");
    }

    #[test]
    fn control_characters_become_question_marks() {
        assert_eq!(printable("a\x1b[2Jb\u{7f}\u{85}é"), "a?[2Jb??é");
    }
}
