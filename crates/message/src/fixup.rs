//! Cleanup's header fix-ups: missing Message-Id/Date/From, and pickup's Received: header.
//!
//! Formats follow Postfix's cleanup (`cleanup_header_done_callback`) and pickup: missing
//! headers are appended at the end of the header block in the order Message-Id, Date, From;
//! when the message carries Resent- headers, the Resent- variants are checked and added
//! instead. No To: header is invented (Postfix's `undisclosed_recipients_header` is empty by
//! default). The clock (`now`) is injected; `*_in` variants also take the zone.

use std::time::SystemTime;

use crate::address::{format_phrase, qualify, quote_local_part};
use crate::header::{Header, HeaderBlock};
use crate::time;

/// The program name in Received: headers (Postfix's `mail_name`).
pub const MAIL_NAME: &str = "posthorn";

/// The sender name Postfix uses for mail with the null sender.
pub const MAILER_DAEMON: &str = "MAILER-DAEMON";

/// Headers that switch cleanup to Resent- processing (Postfix's HDR_OPT_RR set).
const RESENT_HEADERS: [&str; 8] = [
    "Resent-Bcc",
    "Resent-Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-Message-Id",
    "Resent-Reply-To",
    "Resent-Sender",
    "Resent-To",
];

/// What cleanup knows about a message when it fixes its headers.
#[derive(Debug, Clone)]
pub struct Fixups<'a> {
    /// `myhostname`: right-hand side of generated Message-Ids, Received: "by" host.
    pub myhostname: &'a str,
    /// `myorigin`: domain appended to unqualified sender addresses.
    pub myorigin: &'a str,
    /// The message's queue ID.
    pub queue_id: &'a str,
    /// Envelope sender in internal form; "" is the null sender.
    pub sender: &'a str,
    /// The sender's full name (sendmail -F or the password file), if known.
    pub full_name: Option<&'a str>,
    /// The arrival time used for Date:, Message-Id: and Received:.
    pub now: SystemTime,
}

/// Postfix's `mail_date()` in local time: `Wed, 25 Nov 2026 15:40:05 +0000 (UTC)`.
pub fn rfc2822_date(t: SystemTime) -> String {
    time::mail_date_local(t)
}

/// The Message-Id Postfix generates: `<YYYYMMDDhhmmss.QUEUEID@myhostname>`, time in UTC.
pub fn message_id(f: &Fixups) -> String {
    let (year, month, day, hour, min, sec, _) = time::civil(f.now, 0);
    format!(
        "<{year:04}{month:02}{day:02}{hour:02}{min:02}{sec:02}.{}@{}>",
        f.queue_id, f.myhostname
    )
}

/// Appends missing Message-Id, Date and From headers; returns the names added, in order.
///
/// From is `From: Full Name <sender@myorigin>` with a known full name, else
/// `From: sender@myorigin`; `From: MAILER-DAEMON` for the null sender. Dates use local time.
pub fn add_missing_headers(headers: &mut HeaderBlock, f: &Fixups) -> Vec<String> {
    let (offset, abbr) = time::local_offset(f.now);
    add_missing_headers_in(headers, f, offset, &abbr)
}

/// [`add_missing_headers`] with an explicit zone (UTC offset in seconds and abbreviation).
pub fn add_missing_headers_in(
    headers: &mut HeaderBlock,
    f: &Fixups,
    offset: i32,
    abbr: &str,
) -> Vec<String> {
    let resent = headers
        .headers
        .iter()
        .any(|h| RESENT_HEADERS.iter().any(|n| h.is(n)));
    let prefix = if resent { "Resent-" } else { "" };
    let mut added = Vec::new();
    let mut add = |headers: &mut HeaderBlock, name: &str, value: String| {
        let name = format!("{prefix}{name}");
        if !headers.contains(&name) {
            headers.push(Header::new(&name, &value));
            added.push(name);
        }
    };
    add(headers, "Message-Id", message_id(f));
    add(headers, "Date", time::mail_date_at(f.now, offset, abbr));
    add(headers, "From", from_value(f));
    added
}

/// The value of a generated From: header.
fn from_value(f: &Fixups) -> String {
    if f.sender.is_empty() {
        return MAILER_DAEMON.to_string();
    }
    let addr = quote_local_part(&qualify(&one_line(f.sender), f.myorigin));
    match f.full_name.filter(|n| !n.is_empty()) {
        Some(name) => {
            let phrase = format_phrase(name);
            if phrase.is_empty() {
                format!("<{addr}>")
            } else {
                fold_long(&format!("{phrase} <{addr}>"))
            }
        }
        None => addr,
    }
}

/// The Received: header pickup adds for locally submitted mail (local time).
///
/// `Received: by HOST (posthorn, from userid UID)\n\tid QUEUEID; DATE`, or with exactly one
/// recipient `...\n\tid QUEUEID\n\tfor <rcpt>; DATE` (smtpd's layout for the `for` clause).
pub fn received_local(f: &Fixups, uid: u32, recipient_for: Option<&str>) -> String {
    let (offset, abbr) = time::local_offset(f.now);
    received_local_in(f, uid, recipient_for, offset, &abbr)
}

/// [`received_local`] with an explicit zone (UTC offset in seconds and abbreviation).
pub fn received_local_in(
    f: &Fixups,
    uid: u32,
    recipient_for: Option<&str>,
    offset: i32,
    abbr: &str,
) -> String {
    let date = time::mail_date_at(f.now, offset, abbr);
    let head = format!(
        "Received: by {} ({MAIL_NAME}, from userid {uid})\n\tid {}",
        one_line(f.myhostname),
        one_line(f.queue_id)
    );
    match recipient_for {
        Some(rcpt) => format!(
            "{head}\n\tfor <{}>; {date}",
            quote_local_part(&one_line(rcpt))
        ),
        None => format!("{head}; {date}"),
    }
}

/// Replaces line breaks so that a value cannot start a new header.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Folds a single-line value at blanks so that no header line exceeds 998 bytes.
fn fold_long(value: &str) -> String {
    const LIMIT: usize = 900; // leaves room for the header name
    if value.len() <= LIMIT {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 16);
    let mut line_len = 0;
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 {
            if line_len + 1 + word.len() > LIMIT {
                out.push('\n');
                line_len = 0;
            }
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::split_headers;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-11-25 15:40:05 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_621_205)
    }

    fn fixups<'a>(sender: &'a str, full_name: Option<&'a str>) -> Fixups<'a> {
        Fixups {
            myhostname: "mail.example.com",
            myorigin: "example.com",
            queue_id: "ABC123",
            sender,
            full_name,
            now: now(),
        }
    }

    fn fix(msg: &[u8], f: &Fixups) -> (Vec<String>, String) {
        let (mut h, _) = split_headers(msg);
        let added = add_missing_headers_in(&mut h, f, 0, "UTC");
        (added, String::from_utf8(h.to_bytes()).unwrap())
    }

    #[test]
    fn message_id_format() {
        assert_eq!(
            message_id(&fixups("joe", None)),
            "<20261125154005.ABC123@mail.example.com>"
        );
    }

    #[test]
    fn all_missing() {
        let (added, text) = fix(b"Subject: hi\n\nbody\n", &fixups("joe", None));
        assert_eq!(added, ["Message-Id", "Date", "From"]);
        assert_eq!(
            text,
            "Subject: hi\n\
             Message-Id: <20261125154005.ABC123@mail.example.com>\n\
             Date: Wed, 25 Nov 2026 15:40:05 +0000 (UTC)\n\
             From: joe@example.com\n"
        );
    }

    #[test]
    fn each_missing_combination() {
        let present = [
            "Message-ID: <x@y>",
            "date: Mon, 1 Jan 2024 00:00:00 +0000",
            "FROM: a@b",
        ];
        let names = ["Message-Id", "Date", "From"];
        for mask in 0..8u8 {
            let mut msg = String::from("Subject: s\n");
            for (bit, line) in present.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    msg.push_str(line);
                    msg.push('\n');
                }
            }
            let (added, text) = fix(msg.as_bytes(), &fixups("joe", None));
            let want: Vec<&str> = (0..3)
                .filter(|bit| mask & (1 << bit) == 0)
                .map(|bit| names[bit])
                .collect();
            assert_eq!(added, want, "mask {mask}");
            let (h, _) = split_headers(text.as_bytes());
            for name in names {
                assert_eq!(h.get_all(name).len(), 1, "mask {mask} {name}");
            }
            // Existing headers stay first and untouched; additions go to the end.
            assert!(text.starts_with(&msg));
        }
    }

    #[test]
    fn from_with_full_name() {
        let (_, text) = fix(
            b"Date: x\nMessage-Id: <y>\n",
            &fixups("joe", Some("Joe  User")),
        );
        assert!(
            text.ends_with("From: Joe User <joe@example.com>\n"),
            "{text}"
        );
        let (_, text) = fix(
            b"Date: x\nMessage-Id: <y>\n",
            &fixups("joe@other.org", Some("User, Joe")),
        );
        assert!(
            text.ends_with("From: \"User, Joe\" <joe@other.org>\n"),
            "{text}"
        );
        let (_, text) = fix(b"Date: x\nMessage-Id: <y>\n", &fixups("a b", Some("Jörg")));
        assert!(
            text.ends_with("From: =?utf-8?B?SsO2cmc=?= <\"a b\"@example.com>\n"),
            "{text}"
        );
        // Blank names are ignored; header injection through the name is impossible.
        let (_, text) = fix(b"Date: x\nMessage-Id: <y>\n", &fixups("joe", Some("")));
        assert!(text.ends_with("From: joe@example.com\n"), "{text}");
        let (_, text) = fix(b"Date: x\nMessage-Id: <y>\n", &fixups("joe", Some("  ")));
        assert!(text.ends_with("From: <joe@example.com>\n"), "{text}");
        let (_, text) = fix(
            b"Date: x\nMessage-Id: <y>\n",
            &fixups("joe", Some("x\nBcc: evil@x")),
        );
        let (h, _) = split_headers(text.as_bytes());
        assert!(h.get("Bcc").is_none());
        // A huge name still gives lines of at most 998 bytes.
        let long = "word ".repeat(500);
        let (_, text) = fix(b"Date: x\nMessage-Id: <y>\n", &fixups("joe", Some(&long)));
        assert!(text.lines().all(|l| l.len() <= 998));
        let (h, _) = split_headers(text.as_bytes());
        assert!(
            h.get("From")
                .unwrap()
                .unfolded_value()
                .ends_with("<joe@example.com>")
        );
    }

    #[test]
    fn null_sender() {
        let (added, text) = fix(b"Subject: bounce\n", &fixups("", Some("Ignored Name")));
        assert_eq!(added, ["Message-Id", "Date", "From"]);
        assert!(text.ends_with("From: MAILER-DAEMON\n"), "{text}");
    }

    #[test]
    fn no_recipient_header_is_invented() {
        let (_, text) = fix(b"Subject: s\n", &fixups("joe", None));
        let (h, _) = split_headers(text.as_bytes());
        for name in ["To", "Cc", "Bcc"] {
            assert!(h.get(name).is_none());
        }
    }

    #[test]
    fn resent_headers_switch_to_resent_variants() {
        let msg = b"From: a@b\nDate: old\nMessage-Id: <old@x>\nResent-To: c@d\n";
        let (added, text) = fix(msg, &fixups("joe", None));
        assert_eq!(added, ["Resent-Message-Id", "Resent-Date", "Resent-From"]);
        assert!(text.contains("Resent-From: joe@example.com\n"));
        let msg = b"Resent-From: x@y\nResent-Date: d\nResent-Message-Id: <r@x>\n";
        assert!(fix(msg, &fixups("joe", None)).0.is_empty());
    }

    #[test]
    fn received_formats() {
        let f = fixups("joe", None);
        assert_eq!(
            received_local_in(&f, 1000, None, 0, "UTC"),
            "Received: by mail.example.com (posthorn, from userid 1000)\n\
             \tid ABC123; Wed, 25 Nov 2026 15:40:05 +0000 (UTC)"
        );
        assert_eq!(
            received_local_in(&f, 0, Some("user@example.org"), 3600, "CET"),
            "Received: by mail.example.com (posthorn, from userid 0)\n\
             \tid ABC123\n\
             \tfor <user@example.org>; Wed, 25 Nov 2026 16:40:05 +0100 (CET)"
        );
        let raw = received_local_in(&f, 7, Some("a b@x"), 0, "UTC");
        assert!(raw.contains("for <\"a b\"@x>;"));
        // It is one header when parsed back.
        let msg = format!("{raw}\nSubject: s\n\n");
        let (h, body) = split_headers(msg.as_bytes());
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.headers[0].raw, raw);
        assert_eq!(body, msg.len());
        // The local-time versions agree with the zone the process uses.
        let (offset, abbr) = time::local_offset(f.now);
        assert_eq!(
            received_local(&f, 1000, None),
            received_local_in(&f, 1000, None, offset, &abbr)
        );
        assert_eq!(
            rfc2822_date(f.now),
            time::mail_date_at(f.now, offset, &abbr)
        );
    }
}
