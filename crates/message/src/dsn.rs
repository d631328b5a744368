//! Delivery status notifications (RFC 3464 `message/delivery-status` inside an RFC 3462
//! `multipart/report`), laid out like Postfix's bounce daemon with its built-in templates.
//!
//! The notice has three parts: a human-readable text ("Notification"), the machine-readable
//! report ("Delivery report") and the original message (`message/rfc822`) or its headers only
//! (`text/rfc822-headers`). Every output line is at most 998 bytes: report fields are folded at
//! 79 columns like Postfix's `line_wrap()`, and over-long lines of the returned message are
//! broken by inserting "\n " (what Postfix's smtp client does with `smtp_line_length_limit`).
//! Values that come from outside (addresses, diagnostics, ENVID) lose their control
//! characters, so they can never add a header or a MIME boundary of their own.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::address::quote_local_part;
use crate::header::{split_header_ranges, split_headers};
use crate::time;
use lines::Out;

mod lines;

/// The per-recipient Action field of RFC 3464.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsnAction {
    /// Permanent failure: the message was not delivered.
    Failed,
    /// Still being retried.
    Delayed,
    /// Delivered to the final mailbox.
    Delivered,
    /// Handed to a system that does not send DSNs.
    Relayed,
    /// Delivered to an alias or list that expanded to other recipients.
    Expanded,
}

impl DsnAction {
    /// The RFC 3464 keyword: `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
            DsnAction::Expanded => "expanded",
        }
    }
}

impl fmt::Display for DsnAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `s` is an RFC 3463 enhanced status code, `class.subject.detail` with class 2, 4
/// or 5 and one to three digits each after it (`5.1.1`, `4.7.0`).
pub fn is_status_code(s: &str) -> bool {
    let mut parts = s.split('.');
    let class_ok = matches!(parts.next(), Some("2" | "4" | "5"));
    let rest: Vec<&str> = parts.collect();
    class_ok
        && rest.len() == 2
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// One recipient's entry in a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The recipient as delivered to (internal form).
    pub final_recipient: String,
    /// The original recipient: an address, or a typed ORCPT value (`rfc822;user@x`).
    pub original_recipient: Option<String>,
    /// What happened.
    pub action: DsnAction,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// The remote MTA that answered (`mx.example.com`, or typed `dns; mx.example.com`).
    pub remote_mta: Option<String>,
    /// `type; text`, e.g. `smtp; 550 5.1.1 user unknown` or `x-unix; ...`; untyped text is
    /// reported as `X-Posthorn; text`.
    pub diagnostic: String,
    /// The reason as the delivery agent logged it, for the human-readable part (Postfix
    /// quotes it whole: `host mx[192.0.2.1] said: ... (in reply to RCPT TO command)`);
    /// None: derived from the diagnostic.
    pub text: Option<String>,
}

/// Everything a notice is built from.
#[derive(Debug, Clone)]
pub struct DsnRequest<'a> {
    /// `myhostname`: Reporting-MTA and the MAILER-DAEMON domain.
    pub reporting_mta: &'a str,
    /// Queue ID of the original message.
    pub queue_id: &'a str,
    /// When the original message arrived.
    pub arrival: SystemTime,
    /// The original envelope sender, who gets the notice ("" sends it to `postmaster`).
    pub sender: &'a str,
    /// Where help requests go, named in the text (Postfix: "postmaster").
    pub postmaster: &'a str,
    /// The recipients to report; failures select the bounce template, else delays the delay
    /// template, else the success template.
    pub recipients: &'a [DsnRecipient],
    /// The original message, LF line endings.
    pub original: &'a [u8],
    /// RET=FULL: return the whole message (else only its headers).
    pub return_full: bool,
    /// The ENVID of the original transaction.
    pub envid: Option<&'a str>,
    /// The time of the notice.
    pub now: SystemTime,
    /// The program name for the `X-<Name>-` report fields ("posthorn").
    pub mail_name: &'a str,
    /// Makes the MIME boundary and Message-Id unique (e.g. the queue ID).
    pub boundary_seed: &'a str,
}

/// Knobs with Postfix's defaults, for [`compose_dsn_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnOptions {
    /// `maximal_queue_lifetime` (default 5 days): for Will-Retry-Until and the delay text.
    pub maximal_queue_lifetime: Duration,
    /// `delay_warning_time` for the delay text; `None` uses the message's age.
    pub delay_warning_time: Option<Duration>,
    /// `bounce_size_limit` (default 50000 bytes): a larger original is returned as headers
    /// only, even with RET=FULL. 0 means no limit.
    pub bounce_size_limit: usize,
    /// Fixed zone (UTC offset in seconds, abbreviation) for dates; `None` uses local time.
    pub zone: Option<(i32, String)>,
    /// A postmaster copy (double bounce): Postfix's subject "Postmaster Copy: Undelivered
    /// Mail" instead of the sender's.
    pub postmaster_copy: bool,
}

impl Default for DsnOptions {
    fn default() -> DsnOptions {
        DsnOptions {
            maximal_queue_lifetime: Duration::from_secs(5 * 86_400),
            delay_warning_time: None,
            bounce_size_limit: 50_000,
            zone: None,
            postmaster_copy: false,
        }
    }
}

/// Which of Postfix's templates a notice uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Non-delivery report.
    Failure,
    /// Delay warning.
    Delay,
    /// Success notice (delivered, relayed, expanded).
    Success,
}

impl NoticeKind {
    /// The kind for a set of recipients: any failure makes a bounce, else any delay a warning.
    pub fn of(recipients: &[DsnRecipient]) -> NoticeKind {
        if recipients.iter().any(|r| r.action == DsnAction::Failed) {
            NoticeKind::Failure
        } else if recipients.iter().any(|r| r.action == DsnAction::Delayed) {
            NoticeKind::Delay
        } else {
            NoticeKind::Success
        }
    }

    /// The Subject: of the notice.
    pub fn subject(self) -> &'static str {
        match self {
            NoticeKind::Failure => "Undelivered Mail Returned to Sender",
            NoticeKind::Delay => "Delayed Mail (still being retried)",
            NoticeKind::Success => "Successful Mail Delivery Report",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            NoticeKind::Failure => "bounce",
            NoticeKind::Delay => "delay",
            NoticeKind::Success => "success",
        }
    }
}

/// Whether data has any byte with the high bit set.
pub fn is_8bit(data: &[u8]) -> bool {
    data.iter().any(|&b| b >= 0x80)
}

/// Composes the complete notice (headers and body, LF line endings) with default options.
pub fn compose_dsn(r: &DsnRequest) -> Vec<u8> {
    compose_dsn_with(r, &DsnOptions::default())
}

/// Composes the complete notice with explicit options.
pub fn compose_dsn_with(r: &DsnRequest, opts: &DsnOptions) -> Vec<u8> {
    let kind = NoticeKind::of(r.recipients);
    let host = field(r.reporting_mta);
    let label = mail_label(r.mail_name);
    let sender = field(r.sender);
    let postmaster = match field(r.postmaster) {
        p if p.is_empty() => "postmaster".to_string(),
        p => p,
    };
    let envid = r.envid.map(field).filter(|e| !e.is_empty());
    let date = |t: SystemTime| match &opts.zone {
        Some((offset, abbr)) => time::mail_date_at(t, *offset, abbr),
        None => time::mail_date_local(t),
    };

    let recipients: Vec<Entry> = r
        .recipients
        .iter()
        .map(|rc| Entry::new(rc, &label))
        .collect();
    let eight_bit = is_8bit(r.original)
        || !sender.is_ascii()
        || !envid.as_deref().unwrap_or("").is_ascii()
        || recipients.iter().any(Entry::is_8bit);

    let headers_only =
        !r.return_full || (opts.bounce_size_limit > 0 && r.original.len() > opts.bounce_size_limit);
    let returned = returned_content(r.original, headers_only);
    let boundary = make_boundary(r, &host, returned);

    let mut out = Out::default();

    // Top-level header, in the order a Postfix bounce has after cleanup.
    out.line(&format!("Date: {}", date(r.now)));
    out.line(&format!(
        "From: MAILER-DAEMON@{host} (Mail Delivery System)"
    ));
    let subject = if opts.postmaster_copy && kind == NoticeKind::Failure {
        "Postmaster Copy: Undelivered Mail"
    } else {
        kind.subject()
    };
    out.line(&format!("Subject: {subject}"));
    let to = if sender.is_empty() {
        postmaster.clone()
    } else {
        quote_local_part(&sender)
    };
    out.line(&format!("To: {to}"));
    if let Some(id) = original_message_id(r.original) {
        out.line(&format!("References: {id}"));
        out.line(&format!("In-Reply-To: {id}"));
    }
    out.line("Auto-Submitted: auto-replied");
    out.line("MIME-Version: 1.0");
    out.line("Content-Type: multipart/report; report-type=delivery-status;");
    out.line(&format!("\tboundary=\"{boundary}\""));
    out.line(&format!(
        "Content-Transfer-Encoding: {}",
        if eight_bit { "8bit" } else { "7bit" }
    ));
    let (year, month, day, hour, min, sec, _) = time::civil(r.now, 0);
    out.line(&format!(
        "Message-Id: <{year:04}{month:02}{day:02}{hour:02}{min:02}{sec:02}.{}.{}@{host}>",
        id_part(r.boundary_seed),
        kind.tag()
    ));
    out.line("");
    out.line("This is a MIME-encapsulated message.");

    // Part 1: the text for humans.
    out.line("");
    out.line(&format!("--{boundary}"));
    out.line("Content-Description: Notification");
    if eight_bit {
        out.line("Content-Type: text/plain; charset=utf-8");
        out.line("Content-Transfer-Encoding: 8bit");
    } else {
        out.line("Content-Type: text/plain; charset=us-ascii");
    }
    out.line("");
    for line in template(kind, &host, &postmaster, r, opts) {
        out.line(&line);
    }
    for e in &recipients {
        out.line("");
        let text = match &e.expanded_from {
            Some(orig) => format!("<{}> (expanded from <{orig}>): {}", e.final_rcpt, e.reason),
            None => format!("<{}>: {}", e.final_rcpt, e.reason),
        };
        out.wrapped(&text);
    }

    // Part 2: the report for machines.
    out.line("");
    out.line(&format!("--{boundary}"));
    out.line("Content-Description: Delivery report");
    out.line("Content-Type: message/delivery-status");
    out.line("");
    out.wrapped(&format!("Reporting-MTA: dns; {host}"));
    if let Some(envid) = &envid {
        out.wrapped(&format!("Original-Envelope-Id: {envid}"));
    }
    out.wrapped(&format!("X-{label}-Queue-ID: {}", field(r.queue_id)));
    if !sender.is_empty() {
        out.wrapped(&format!("X-{label}-Sender: rfc822; {sender}"));
    }
    out.line(&format!("Arrival-Date: {}", date(r.arrival)));
    for e in &recipients {
        out.line("");
        out.wrapped(&format!("Final-Recipient: rfc822; {}", e.final_rcpt));
        if let Some(orig) = &e.original_field {
            out.wrapped(&format!("Original-Recipient: {orig}"));
        }
        out.line(&format!("Action: {}", e.action));
        out.wrapped(&format!("Status: {}", e.status));
        if let Some(mta) = &e.remote_mta {
            out.wrapped(&format!("Remote-MTA: {mta}"));
        }
        out.wrapped(&format!("Diagnostic-Code: {}", e.diagnostic));
        if kind == NoticeKind::Delay {
            out.line(&format!(
                "Will-Retry-Until: {}",
                date(r.arrival + opts.maximal_queue_lifetime)
            ));
        }
    }

    // Part 3: the original message or its headers.
    out.line("");
    out.line(&format!("--{boundary}"));
    let undelivered = if kind == NoticeKind::Success {
        ""
    } else {
        "Undelivered "
    };
    let what = if headers_only {
        "Message Headers"
    } else {
        "Message"
    };
    out.line(&format!("Content-Description: {undelivered}{what}"));
    out.line(if headers_only {
        "Content-Type: text/rfc822-headers"
    } else {
        "Content-Type: message/rfc822"
    });
    if eight_bit {
        out.line("Content-Transfer-Encoding: 8bit");
    }
    out.line("");
    if r.original.is_empty() {
        out.line("\t--- Undelivered message unavailable ---");
    } else {
        out.wrapped(&format!("Return-Path: <{}>", quote_local_part(&sender)));
        out.raw_lines(returned);
    }
    out.line("");
    out.line(&format!("--{boundary}--"));
    out.buf
}

/// One recipient, with every value made safe for the notice.
struct Entry {
    final_rcpt: String,
    expanded_from: Option<String>,
    original_field: Option<String>,
    action: DsnAction,
    status: String,
    remote_mta: Option<String>,
    diagnostic: String,
    reason: String,
}

impl Entry {
    fn new(rc: &DsnRecipient, label: &str) -> Entry {
        let final_rcpt = field(&rc.final_recipient);
        let original = rc
            .original_recipient
            .as_deref()
            .map(field)
            .filter(|o| !o.is_empty());
        // A typed ORCPT ("rfc822;user@x") goes into the report as is.
        let (original_field, original_addr) = match &original {
            Some(o) => match typed(o) {
                Some((_, addr)) => (Some(o.clone()), addr.to_string()),
                None => (Some(format!("rfc822; {o}")), o.clone()),
            },
            None => (None, String::new()),
        };
        let expanded_from = (!original_addr.is_empty()
            && !original_addr.eq_ignore_ascii_case(&final_rcpt))
        .then_some(original_addr);
        let remote_mta = rc
            .remote_mta
            .as_deref()
            .map(field)
            .filter(|m| !m.is_empty())
            .map(|m| {
                if typed(&m).is_some() {
                    m
                } else {
                    format!("dns; {m}")
                }
            });
        let diag = field(&rc.diagnostic);
        let (diagnostic, reason) = match typed(&diag) {
            Some((dtype, text)) => {
                let reason = match remote_mta.as_deref().and_then(typed) {
                    Some((_, mta)) if dtype.eq_ignore_ascii_case("smtp") => {
                        format!("host {mta} said: {text}")
                    }
                    _ => text.to_string(),
                };
                (diag.clone(), reason)
            }
            None => {
                let text = if diag.is_empty() {
                    default_reason(rc.action).to_string()
                } else {
                    diag
                };
                (format!("X-{label}; {text}"), text)
            }
        };
        let reason = match rc.text.as_deref().map(field) {
            Some(t) if !t.is_empty() => t,
            _ => reason,
        };
        let status = match field(&rc.status) {
            s if s.is_empty() => default_status(rc.action).to_string(),
            s => s,
        };
        Entry {
            final_rcpt,
            expanded_from,
            original_field,
            action: rc.action,
            status,
            remote_mta,
            diagnostic,
            reason,
        }
    }

    fn is_8bit(&self) -> bool {
        [
            &self.final_rcpt,
            &self.diagnostic,
            &self.reason,
            &self.status,
        ]
        .iter()
        .any(|s| !s.is_ascii())
            || self
                .original_field
                .as_deref()
                .is_some_and(|s| !s.is_ascii())
            || self.remote_mta.as_deref().is_some_and(|s| !s.is_ascii())
    }
}

fn default_reason(action: DsnAction) -> &'static str {
    match action {
        DsnAction::Failed => "delivery failed",
        DsnAction::Delayed => "delivery temporarily suspended",
        DsnAction::Delivered => "delivery successful",
        DsnAction::Relayed => "relayed to a non-DSN system",
        DsnAction::Expanded => "alias expanded",
    }
}

fn default_status(action: DsnAction) -> &'static str {
    match action {
        DsnAction::Failed => "5.0.0",
        DsnAction::Delayed => "4.0.0",
        _ => "2.0.0",
    }
}

/// Splits `type; text` when the part before `;` is an RFC 822 atom.
fn typed(s: &str) -> Option<(&str, &str)> {
    let (kind, rest) = s.split_once(';')?;
    let kind = kind.trim();
    let is_atom = !kind.is_empty()
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    is_atom.then(|| (kind, rest.trim()))
}

/// An outside value on one line: CR, LF and TAB become blanks, other controls '?'.
fn field(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The mail name as an atom with a capital, as in `X-Posthorn-Queue-ID` (Postfix translates
/// specials in `mail_name` to '-' for the same reason).
fn mail_label(mail_name: &str) -> String {
    let atom: String = mail_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut chars = atom.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => "Posthorn".to_string(),
    }
}

/// A Message-Id fragment: dot-atom characters only.
fn id_part(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(*c))
        .collect();
    match cleaned.get(..64) {
        _ if cleaned.is_empty() => "notice".to_string(),
        Some(short) => short.to_string(),
        None => cleaned,
    }
}

/// The original's Message-Id, when it looks like one, for References/In-Reply-To.
fn original_message_id(original: &[u8]) -> Option<String> {
    let (headers, _) = split_headers(original);
    let id = field(&headers.get("Message-Id")?.unfolded_value());
    let plausible = id.starts_with('<')
        && id.ends_with('>')
        && id.len() > 2
        && id.len() <= 900
        && !id.contains(char::is_whitespace)
        && id.is_ascii();
    plausible.then_some(id)
}

/// The bytes of the original to return: all of it, or its header lines only.
fn returned_content(original: &[u8], headers_only: bool) -> &[u8] {
    if !headers_only {
        return original;
    }
    let (ranges, _) = split_header_ranges(original);
    match ranges.last() {
        Some(last) => &original[..last.end],
        None => &[],
    }
}

/// `seed.unixtime/host` (Postfix's form), restricted to RFC 2046 bchars and 70 characters,
/// and changed until no line of the returned content could be mistaken for it.
fn make_boundary(r: &DsnRequest, host: &str, returned: &[u8]) -> String {
    let raw = format!(
        "{}.{}/{host}",
        field(r.boundary_seed),
        time::unix_seconds(r.now)
    );
    let mut base: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "'()+_,-./:=?".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(60);
    let mut boundary = base.clone();
    let mut n = 0u32;
    loop {
        let marker = format!("--{boundary}");
        if memchr::memmem::find(returned, marker.as_bytes()).is_none() {
            return boundary;
        }
        n += 1;
        boundary = format!("{base}={n}");
    }
}

/// The delay or failure or success text, Postfix's built-in templates.
fn template(
    kind: NoticeKind,
    host: &str,
    postmaster: &str,
    r: &DsnRequest,
    opts: &DsnOptions,
) -> Vec<String> {
    let mut t = vec![
        format!("This is the mail system at host {host}."),
        String::new(),
    ];
    let help = |t: &mut Vec<String>| {
        t.push(String::new());
        t.push(format!(
            "For further assistance, please send mail to {postmaster}."
        ));
        t.push(String::new());
        t.push("If you do so, please include this problem report. You can".into());
        t.push("delete your own text from the attached returned message.".into());
    };
    match kind {
        NoticeKind::Failure => {
            t.push("I'm sorry to have to inform you that your message could not".into());
            t.push("be delivered to one or more recipients. It's attached below.".into());
            help(&mut t);
        }
        NoticeKind::Delay => {
            let hours = match opts.delay_warning_time {
                Some(d) => d.as_secs() / 3600,
                None => r
                    .now
                    .duration_since(r.arrival)
                    .map_or(0, |d| d.as_secs() / 3600),
            };
            let days = opts.maximal_queue_lifetime.as_secs() / 86_400;
            let bar = "#".repeat(68);
            t.push(bar.clone());
            t.push("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #".into());
            t.push(bar);
            t.push(String::new());
            t.push(format!(
                "Your message could not be delivered for {hours} hour(s)."
            ));
            t.push(format!("It will be retried until it is {days} day(s) old."));
            help(&mut t);
        }
        NoticeKind::Success => {
            t.push("Your message was successfully delivered to the destination(s)".into());
            t.push("listed below. If the message was delivered to mailbox you will".into());
            t.push("receive no further notifications. Otherwise you may still receive".into());
            t.push("notifications of mail delivery errors from other systems.".into());
        }
    }
    t.push(String::new());
    t.push("                   The mail system".into());
    t
}

#[cfg(test)]
mod tests {
    use super::lines::{MAX_LINE, WRAP_WIDTH};
    use super::*;

    #[test]
    fn status_codes() {
        for ok in ["2.0.0", "4.7.1", "5.1.10", "5.999.999"] {
            assert!(is_status_code(ok), "{ok}");
        }
        for bad in [
            "", "5", "5.1", "3.0.0", "5.1.1.1", "5..1", "5.1.x", "5.1000.1", "550",
        ] {
            assert!(!is_status_code(bad), "{bad}");
        }
    }
    use crate::header::split_headers;
    use std::time::UNIX_EPOCH;

    const ORIGINAL: &[u8] = b"Received: by client.example (posthorn, from userid 1000)\n\
        \tid 1A2B3C; Wed, 25 Nov 2026 15:00:00 +0000 (UTC)\n\
        From: Joe <joe@client.example>\n\
        To: gone@remote.example, other@remote.example\n\
        Subject: hello\n\
        Message-Id: <20261125150000.1A2B3C@client.example>\n\
        \n\
        Hello there.\n\
        Second line.\n";

    fn failed(addr: &str, status: &str, diag: &str) -> DsnRecipient {
        DsnRecipient {
            final_recipient: addr.into(),
            original_recipient: None,
            action: DsnAction::Failed,
            status: status.into(),
            remote_mta: Some("mx.remote.example".into()),
            diagnostic: diag.into(),
            text: None,
        }
    }

    fn request<'a>(rcpts: &'a [DsnRecipient], original: &'a [u8], full: bool) -> DsnRequest<'a> {
        DsnRequest {
            reporting_mta: "mail.example.com",
            queue_id: "1A2B3C",
            arrival: UNIX_EPOCH + Duration::from_secs(1_795_618_800),
            sender: "joe@client.example",
            postmaster: "postmaster",
            recipients: rcpts,
            original,
            return_full: full,
            envid: None,
            now: UNIX_EPOCH + Duration::from_secs(1_795_621_205),
            mail_name: "posthorn",
            boundary_seed: "1A2B3C",
        }
    }

    fn utc() -> DsnOptions {
        DsnOptions {
            zone: Some((0, "UTC".into())),
            ..DsnOptions::default()
        }
    }

    fn compose(r: &DsnRequest) -> String {
        let out = compose_dsn_with(r, &utc());
        check_structure(&out);
        String::from_utf8(out).unwrap()
    }

    /// Compares with `testdata/NAME`; `POSTHORN_UPDATE_GOLDEN=1` rewrites the file instead.
    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        if std::env::var_os("POSTHORN_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("golden: read {}: {e}", path.display()));
        assert!(
            want == actual,
            "golden: {name} differs\n--- want\n{want}\n--- got\n{actual}"
        );
    }

    /// Lines are short, the header parses, and the boundaries frame exactly three parts.
    fn check_structure(out: &[u8]) {
        for line in out.split(|&b| b == b'\n') {
            assert!(line.len() <= MAX_LINE, "line of {} bytes", line.len());
        }
        assert!(out.ends_with(b"--\n"));
        let (h, body) = split_headers(out);
        let ct = h.get("Content-Type").unwrap().unfolded_value();
        assert!(ct.starts_with("multipart/report; report-type=delivery-status;"));
        let boundary = ct
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        let body = String::from_utf8_lossy(&out[body..]);
        let delimiter = format!("--{boundary}");
        let parts: Vec<&str> = body.lines().filter(|l| l.starts_with(&delimiter)).collect();
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert_eq!(parts[3], format!("{delimiter}--"));
        assert!(parts[..3].iter().all(|p| *p == delimiter));
    }

    /// The body of part `n` (1-based): headers and content, split at the first blank line.
    fn part(text: &str, n: usize) -> (String, String) {
        let (h, body) = split_headers(text.as_bytes());
        let boundary = h
            .get("Content-Type")
            .unwrap()
            .unfolded_value()
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"')
            .to_string();
        let body = &text[body..];
        let chunk = body.split(&format!("--{boundary}")).nth(n).unwrap();
        let chunk = chunk.strip_prefix('\n').unwrap();
        let (head, content) = chunk.split_once("\n\n").unwrap();
        // The line end before the next delimiter belongs to the delimiter.
        let content = content.strip_suffix('\n').unwrap_or(content);
        (head.to_string(), content.to_string())
    }

    #[test]
    fn failure_notice_golden() {
        let rcpts = [failed(
            "gone@remote.example",
            "5.1.1",
            "smtp; 550 5.1.1 <gone@remote.example>: Recipient address rejected",
        )];
        let text = compose(&request(&rcpts, ORIGINAL, true));
        golden("dsn-failure-full.ref", &text);
    }

    #[test]
    fn delay_notice_golden() {
        let mut rc = failed(
            "slow@remote.example",
            "4.4.1",
            "connect to mx.remote.example: timed out",
        );
        rc.action = DsnAction::Delayed;
        rc.original_recipient = Some("rfc822;Slow@Remote.Example".into());
        let rcpts = [rc];
        let mut r = request(&rcpts, ORIGINAL, false);
        r.envid = Some("ENV-7");
        let opts = DsnOptions {
            delay_warning_time: Some(Duration::from_secs(4 * 3600)),
            zone: Some((3600, "CET".into())),
            ..DsnOptions::default()
        };
        let out = compose_dsn_with(&r, &opts);
        check_structure(&out);
        golden("dsn-delay-headers.ref", &String::from_utf8(out).unwrap());
    }

    #[test]
    fn success_notice_golden() {
        let original = "Subject: gr\u{fc}\u{df}e\nTo: joe@local.example\n\nK\u{e4}se\n".as_bytes();
        let rcpts = [
            DsnRecipient {
                final_recipient: "joe@local.example".into(),
                original_recipient: None,
                action: DsnAction::Delivered,
                status: "2.0.0".into(),
                remote_mta: None,
                diagnostic: "x-unix; delivered to mailbox".into(),
                text: None,
            },
            DsnRecipient {
                final_recipient: "list@local.example".into(),
                original_recipient: None,
                action: DsnAction::Expanded,
                status: "2.0.0".into(),
                remote_mta: None,
                diagnostic: "alias expanded".into(),
                text: None,
            },
            DsnRecipient {
                final_recipient: "far@remote.example".into(),
                original_recipient: None,
                action: DsnAction::Relayed,
                status: "2.0.0".into(),
                remote_mta: Some("mx.remote.example".into()),
                diagnostic: "smtp; 250 2.0.0 Ok: queued as 9F".into(),
                text: None,
            },
        ];
        let text = compose(&request(&rcpts, original, true));
        golden("dsn-success-8bit.ref", &text);
    }

    #[test]
    fn headers_only_when_ret_hdrs() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let text = compose(&request(&rcpts, ORIGINAL, false));
        let (head, content) = part(&text, 3);
        assert_eq!(
            head,
            "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers"
        );
        assert!(content.starts_with("Return-Path: <joe@client.example>\nReceived: by client"));
        assert!(content.contains("Subject: hello\n"));
        assert!(!content.contains("Hello there."));
        // Full return includes the body.
        let text = compose(&request(&rcpts, ORIGINAL, true));
        let (head, content) = part(&text, 3);
        assert!(head.ends_with("Content-Type: message/rfc822"));
        assert!(content.contains("\n\nHello there.\nSecond line.\n"));
    }

    #[test]
    fn big_original_returns_headers_only() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let mut big = ORIGINAL.to_vec();
        big.extend(std::iter::repeat_n(b"0123456789\n".as_slice(), 10_000).flatten());
        let text = compose(&request(&rcpts, &big, true));
        let (head, content) = part(&text, 3);
        assert!(head.contains("text/rfc822-headers"));
        assert!(!content.contains("0123456789"));
        let opts = DsnOptions {
            bounce_size_limit: 0,
            ..utc()
        };
        let out = compose_dsn_with(&request(&rcpts, &big, true), &opts);
        check_structure(&out);
        assert!(out.len() > big.len());
    }

    #[test]
    fn envid_two_recipients_and_original_recipient() {
        let mut second = failed(
            "list-member@remote.example",
            "5.2.2",
            "x-unix; mailbox full",
        );
        second.original_recipient = Some("alias@client.example".into());
        second.remote_mta = None;
        let mut third = failed("typed@remote.example", "5.0.0", "plain reason, no type");
        third.original_recipient = Some("rfc822;typed@remote.example".into());
        third.remote_mta = Some("dns; relay.example".into());
        let rcpts = [
            failed("gone@remote.example", "5.1.1", "smtp; 550 user unknown"),
            second,
            third,
        ];
        let mut r = request(&rcpts, ORIGINAL, false);
        r.envid = Some("ENV-42");
        let text = compose(&r);
        let (_, notification) = part(&text, 1);
        assert!(
            notification.contains(
                "\n<list-member@remote.example> (expanded from <alias@client.example>): mailbox\n    full\n"
            ),
            "{notification}"
        );
        assert!(notification.contains("\n<typed@remote.example>: plain reason, no type\n"));
        let (_, report) = part(&text, 2);
        let want = "\
Reporting-MTA: dns; mail.example.com
Original-Envelope-Id: ENV-42
X-Posthorn-Queue-ID: 1A2B3C
X-Posthorn-Sender: rfc822; joe@client.example
Arrival-Date: Wed, 25 Nov 2026 15:00:00 +0000 (UTC)

Final-Recipient: rfc822; gone@remote.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.remote.example
Diagnostic-Code: smtp; 550 user unknown

Final-Recipient: rfc822; list-member@remote.example
Original-Recipient: rfc822; alias@client.example
Action: failed
Status: 5.2.2
Diagnostic-Code: x-unix; mailbox full

Final-Recipient: rfc822; typed@remote.example
Original-Recipient: rfc822;typed@remote.example
Action: failed
Status: 5.0.0
Remote-MTA: dns; relay.example
Diagnostic-Code: X-Posthorn; plain reason, no type
";
        assert_eq!(report, want);
        // The delivery-status body parses as header blocks: per-message, then per-recipient.
        let blocks: Vec<&str> = report.split("\n\n").collect();
        assert_eq!(blocks.len(), 4);
        for block in blocks {
            let (h, _) = split_headers(block.as_bytes());
            assert!(!h.headers.is_empty());
            assert_eq!(h.to_bytes().len(), block.trim_end().len() + 1);
        }
    }

    #[test]
    fn eight_bit_original() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let original = "Subject: caf\u{e9}\n\nBody with \u{fc}mlauts.\n".as_bytes();
        assert!(is_8bit(original));
        assert!(!is_8bit(ORIGINAL));
        let text = compose(&request(&rcpts, original, true));
        let (h, _) = split_headers(text.as_bytes());
        assert_eq!(
            h.get("Content-Transfer-Encoding").unwrap().unfolded_value(),
            "8bit"
        );
        let (head1, _) = part(&text, 1);
        assert_eq!(
            head1,
            "Content-Description: Notification\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit"
        );
        let (head2, _) = part(&text, 2);
        assert!(!head2.contains("Transfer-Encoding"));
        let (head3, content) = part(&text, 3);
        assert!(head3.ends_with("Content-Transfer-Encoding: 8bit"));
        assert!(content.contains("Body with \u{fc}mlauts."));
        // Non-UTF-8 originals are carried byte for byte.
        let latin1 = b"Subject: caf\xe9\n\nna\xefve\n";
        let out = compose_dsn_with(&request(&rcpts, latin1, true), &utc());
        check_structure(&out);
        assert!(memchr::memmem::find(&out, b"na\xefve\n").is_some());
    }

    #[test]
    fn delay_and_success_notices() {
        let mut rc = failed(
            "slow@remote.example",
            "4.4.1",
            "X-Posthorn; connect timed out",
        );
        rc.action = DsnAction::Delayed;
        rc.remote_mta = None;
        let rcpts = [rc];
        let text = compose(&request(&rcpts, ORIGINAL, false));
        assert!(text.contains("Subject: Delayed Mail (still being retried)\n"));
        assert!(
            text.contains("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n")
        );
        assert!(text.contains("Your message could not be delivered for 0 hour(s).\n"));
        assert!(text.contains("It will be retried until it is 5 day(s) old.\n"));
        assert!(text.contains("\nAction: delayed\nStatus: 4.4.1\n"));
        assert!(text.contains("Will-Retry-Until: Mon, 30 Nov 2026 15:00:00 +0000 (UTC)\n"));
        assert!(text.contains("Content-Description: Undelivered Message Headers\n"));
        assert!(text.contains("Message-Id: <20261125154005.1A2B3C.delay@mail.example.com>\n"));

        let mut rc = failed("joe@local.example", "2.0.0", "");
        rc.action = DsnAction::Delivered;
        rc.remote_mta = None;
        rc.diagnostic = "x-unix; delivered to mailbox".into();
        let rcpts = [rc];
        let text = compose(&request(&rcpts, ORIGINAL, false));
        assert!(text.contains("Subject: Successful Mail Delivery Report\n"));
        assert!(text.contains("Your message was successfully delivered to the destination(s)\n"));
        assert!(text.contains("\n<joe@local.example>: delivered to mailbox\n"));
        assert!(text.contains("Content-Description: Message Headers\n"));
        assert!(!text.contains("Will-Retry-Until"));
        assert!(!text.contains("For further assistance"));
    }

    #[test]
    fn long_diagnostics_are_folded() {
        let long = format!("smtp; 550 {}", "word ".repeat(400));
        let giant = format!("smtp; 550 {}", "x".repeat(3000));
        let rcpts = [
            failed("a@remote.example", "5.0.0", &long),
            failed("b@remote.example", "5.0.0", &giant),
        ];
        let text = compose(&request(&rcpts, ORIGINAL, true));
        let (_, report) = part(&text, 2);
        let (h, _) = split_headers(report.split("\n\n").nth(1).unwrap().as_bytes());
        let diag = h.get("Diagnostic-Code").unwrap();
        assert!(diag.raw.lines().count() > 20);
        assert!(diag.raw.lines().all(|l| l.len() <= WRAP_WIDTH));
        let (h, _) = split_headers(report.split("\n\n").nth(2).unwrap().as_bytes());
        let diag = h.get("Diagnostic-Code").unwrap();
        assert_eq!(diag.unfolded_value().matches('x').count(), 3000);
    }

    #[test]
    fn long_original_lines_are_broken() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let mut original = b"Subject: long\nX-Long: ".to_vec();
        original.extend(std::iter::repeat_n(b'h', 2500));
        original.extend_from_slice(b"\n\n");
        original.extend(std::iter::repeat_n(b'b', 5000));
        original.push(b'\n');
        let out = compose_dsn_with(&request(&rcpts, &original, true), &utc());
        check_structure(&out);
        let text = String::from_utf8(out).unwrap();
        let (_, content) = part(&text, 3);
        // The header stays one (folded) header; the body keeps all its bytes.
        let (h, body) = split_headers(content.as_bytes());
        assert_eq!(
            h.get("X-Long")
                .unwrap()
                .unfolded_value()
                .matches('h')
                .count(),
            2500
        );
        assert_eq!(content[body..].matches('b').count(), 5000);
    }

    #[test]
    fn hostile_fields_cannot_break_structure() {
        let mut rc = failed(
            "evil@x\nBcc: victim@y",
            "5.1.1\r\n",
            "smtp; 550 no\n--fake-boundary--\n\nInjected: yes",
        );
        rc.remote_mta = Some("mx\r\nX-Evil: 1".into());
        rc.original_recipient = Some("orig\n\nbody".into());
        let rcpts = [rc];
        let mut r = request(&rcpts, ORIGINAL, true);
        r.sender = "joe\n@x";
        r.envid = Some("id\nX-Injected: 1");
        r.reporting_mta = "host\nX-Bad: 1";
        let text = compose(&r);
        let (h, _) = split_headers(text.as_bytes());
        assert!(h.get("Bcc").is_none());
        assert!(h.get("X-Bad").is_none());
        assert!(!text.contains("\nInjected: yes"));
        assert!(!text.contains("\nX-Evil"));
        assert!(!text.contains("\nX-Injected"));
    }

    #[test]
    fn boundary_is_unique_against_original() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let original = b"Subject: trap\n\n--1A2B3C.1795621205/mail.example.com\n";
        let text = compose(&request(&rcpts, original, true));
        assert!(text.contains("boundary=\"1A2B3C.1795621205/mail.example.com=1\""));
    }

    #[test]
    fn null_sender_and_empty_original() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let mut r = request(&rcpts, b"", true);
        r.sender = "";
        let text = compose(&r);
        assert!(text.contains("\nTo: postmaster\n"));
        assert!(!text.contains("X-Posthorn-Sender"));
        assert!(text.contains("\t--- Undelivered message unavailable ---\n"));
        assert!(!text.contains("References:"));
    }

    #[test]
    fn quoted_sender_and_mail_name() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let mut r = request(&rcpts, ORIGINAL, false);
        r.sender = "a b@client.example";
        r.mail_name = "my mta";
        let text = compose(&r);
        assert!(text.contains("\nTo: \"a b\"@client.example\n"));
        assert!(text.contains("\nReturn-Path: <\"a b\"@client.example>\n"));
        assert!(text.contains("\nX-My-mta-Queue-ID: 1A2B3C\n"));
    }

    #[test]
    fn default_options_use_local_time() {
        let rcpts = [failed("gone@remote.example", "5.1.1", "smtp; 550 no")];
        let r = request(&rcpts, ORIGINAL, true);
        let out = compose_dsn(&r);
        check_structure(&out);
        let (h, _) = split_headers(&out);
        assert_eq!(
            h.get("Date").unwrap().unfolded_value(),
            time::mail_date_local(r.now)
        );
    }
}
