//! `sendmail -bs`: a stand-alone SMTP session on standard input and output, spoken by the
//! same protocol engine as smtpd (posthorn-smtp-proto). Each message the client sends is
//! collected in memory (the engine enforces `message_size_limit`) and submitted at the end
//! of DATA exactly as `sendmail` submits a message: as a record stream to `postdrop`.
//!
//! The session is a local pipe, as Postfix treats `-bs`: pipelining is always allowed,
//! STARTTLS is not offered, there is no error sleep, and bare LF line endings are accepted.

use std::io::{self, Read, Write};
use std::time::Duration;

use posthorn_config::Config;
use posthorn_queue::file::{Envelope, Recipient};
use posthorn_smtp_proto::Reply;
use posthorn_smtp_proto::command::{MailFrom, RcptTo};
use posthorn_smtp_proto::data::BareLf;
use posthorn_smtp_proto::server::{Backend, Facts, Session, Settings, Status};

use crate::submit::Failure;

/// The protocol settings of a `-bs` session, from the configuration.
pub fn settings(c: &Config) -> Settings {
    Settings {
        // A local pipe from the user's own process: no pipelining discipline, no error
        // sleep, bare LF accepted as a line end (as Postfix's stand-alone mode).
        forbid_unauth_pipelining: false,
        bare_lf: BareLf::Normalize,
        error_sleep: Duration::ZERO,
        ..Settings::from_config(c)
    }
}

/// Submits one finished message (envelope and stored-form content).
pub type SubmitFn<'a> = dyn FnMut(&Envelope, &[u8]) -> Result<Option<String>, Failure> + 'a;

/// The backend of a `-bs` session: accepts what the engine accepts, collects each message
/// and hands it to a submission function at the end of DATA.
pub struct Submission<'a> {
    rewrite_context: &'static str,
    env: Envelope,
    content: Vec<u8>,
    submit: &'a mut SubmitFn<'a>,
}

fn bad(code: u16, dsn: &str, text: &str) -> Reply {
    Reply::new(code, dsn, text)
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

impl<'a> Submission<'a> {
    /// A backend whose messages get `rewrite_context` (`local`, or `remote` with `-G`) and
    /// go to `submit`.
    pub fn new(rewrite_context: &'static str, submit: &'a mut SubmitFn<'a>) -> Submission<'a> {
        Submission {
            rewrite_context,
            env: Envelope::default(),
            content: Vec::new(),
            submit,
        }
    }
}

impl Backend for Submission<'_> {
    fn helo(&mut self, _: &Facts) -> Result<(), Reply> {
        Ok(())
    }

    fn mail(&mut self, _: &Facts, m: &MailFrom) -> Result<(), Reply> {
        if has_control(&m.address) {
            return Err(bad(501, "5.1.7", "Bad sender address syntax"));
        }
        if m.envid
            .as_ref()
            .is_some_and(|e| e.len() > 100 || !e.bytes().all(|b| (0x20..0x7f).contains(&b)))
        {
            return Err(bad(501, "5.5.4", "Bad ENVID parameter syntax"));
        }
        self.env = Envelope {
            sender: m.address.clone(),
            attrs: vec![("rewrite_context".into(), self.rewrite_context.into())],
            envid: m.envid.clone(),
            ret: m.ret.clone(),
            ..Default::default()
        };
        self.content.clear();
        Ok(())
    }

    fn rcpt(&mut self, _: &Facts, _: &MailFrom, r: &RcptTo) -> Result<(), Reply> {
        if r.address.is_empty() || has_control(&r.address) {
            return Err(bad(501, "5.1.3", "Bad recipient address syntax"));
        }
        if r.orcpt.as_deref().is_some_and(has_control) {
            return Err(bad(501, "5.5.4", "Bad ORCPT parameter syntax"));
        }
        self.env.recipients.push(Recipient {
            address: r.address.clone(),
            notify: r.notify.clone(),
            orcpt: r.orcpt.clone(),
            ..Default::default()
        });
        Ok(())
    }

    fn data(&mut self, _: &Facts, _: &MailFrom) -> Result<(), Reply> {
        self.content.clear();
        Ok(())
    }

    fn content(&mut self, bytes: &[u8]) {
        self.content.extend_from_slice(bytes);
    }

    fn end(&mut self, _: &Facts) -> Option<Reply> {
        let env = std::mem::take(&mut self.env);
        let content = std::mem::take(&mut self.content);
        Some(match (self.submit)(&env, &content) {
            Ok(Some(id)) => Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
            Ok(None) => Reply::new(250, "2.0.0", "Ok: queued"),
            Err(f) => {
                log::error!("{f}");
                let text: String = f
                    .message
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                Reply::new(451, "4.3.0", format!("Error: {text}"))
            }
        })
    }

    fn reset(&mut self) {
        self.env = Envelope::default();
        self.content = Vec::new();
    }

    fn vrfy(&mut self, _: &Facts, address: &str) -> Reply {
        Reply::new(252, "2.0.0", format!("<{address}>"))
    }

    fn note(&mut self, what: &str, detail: &str) {
        if detail.is_empty() {
            log::info!("{what} from local");
        } else {
            log::info!("{what} from local: {detail}");
        }
    }
}

/// Runs the session: the greeting, then commands from `input` until QUIT, the end of the
/// session, or end of file. Output is flushed after every piece of input.
pub fn run<R: Read, W: Write>(
    settings: Settings,
    mut input: R,
    mut output: W,
    b: &mut dyn Backend,
) -> io::Result<()> {
    let mut session = Session::new(settings);
    let mut out = Vec::new();
    session.greeting(&mut out);
    output.write_all(&out)?;
    output.flush()?;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => {
                if let Some(what) = session.in_transaction() {
                    log::info!("lost connection after {what} from local");
                }
                b.reset();
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            out.clear();
            let st = session.process(&mut pending, &mut out, b);
            if let Status::Sleep(d) = st {
                std::thread::sleep(d);
            }
            output.write_all(&out)?;
            output.flush()?;
            match st {
                Status::Sleep(_) => continue,
                // Pending cannot happen (the backend answers at once), nor StartTls (not
                // offered); neither leaves anything to do but read more.
                Status::Ready | Status::Pending | Status::StartTls => break,
                Status::Close => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_settings() -> Settings {
        Settings {
            hostname: "mx.test".into(),
            banner: "mx.test ESMTP posthorn".into(),
            forbid_unauth_pipelining: false,
            error_sleep: Duration::ZERO,
            ..Settings::default()
        }
    }

    fn session(input: &[u8], fail: bool) -> (String, Vec<(Envelope, Vec<u8>)>) {
        let mut got = Vec::new();
        let mut output = Vec::new();
        {
            let mut f = |e: &Envelope, c: &[u8]| {
                got.push((e.clone(), c.to_vec()));
                if fail {
                    Err(Failure {
                        code: 75,
                        message: "postdrop exited with status 75; message not queued".into(),
                    })
                } else {
                    Ok(Some("QID1".to_string()))
                }
            };
            let mut b = Submission::new("local", &mut f);
            run(test_settings(), input, &mut output, &mut b).unwrap();
        }
        (String::from_utf8(output).unwrap(), got)
    }

    #[test]
    fn one_message_pipelined() {
        let input = b"EHLO x\r\nMAIL FROM:<a@example.org> RET=HDRS ENVID=e1\r\n\
            RCPT TO:<b@example.test> NOTIFY=SUCCESS ORCPT=rfc822;B@example.test\r\n\
            RCPT TO:<c@example.test>\r\nDATA\r\nSubject: t\r\n\r\n..dot\r\nhi\r\n.\r\nQUIT\r\n";
        let (out, got) = session(input, false);
        let codes: Vec<&str> = out.lines().map(|l| &l[..4]).collect();
        assert_eq!(codes.first(), Some(&"220 "));
        assert!(out.contains("250-mx.test\r\n"));
        assert!(out.contains("250 2.0.0 Ok: queued as QID1\r\n"));
        assert!(out.ends_with("221 2.0.0 Bye\r\n"));
        assert_eq!(got.len(), 1);
        let (e, c) = &got[0];
        assert_eq!(e.sender, "a@example.org");
        assert_eq!(e.attr("rewrite_context"), Some("local"));
        assert_eq!(
            (e.envid.as_deref(), e.ret.as_deref()),
            (Some("e1"), Some("HDRS"))
        );
        let r: Vec<_> = e
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), r.notify.as_deref(), r.orcpt.as_deref()))
            .collect();
        assert_eq!(
            r,
            [
                (
                    "b@example.test",
                    Some("SUCCESS"),
                    Some("rfc822;B@example.test")
                ),
                ("c@example.test", None, None)
            ]
        );
        assert_eq!(c, b"Subject: t\n\n.dot\nhi\n");
    }

    #[test]
    fn two_messages_and_rset() {
        // Bare LF ends lines, but the end of DATA needs CRLF.CRLF (the smuggling defence).
        let input = b"HELO x\nMAIL FROM:<>\nRCPT TO:<b@x>\nRSET\nMAIL FROM:<s@x>\n\
            RCPT TO:<c@x>\nDATA\none\r\n.\r\nMAIL FROM:<t@x>\nRCPT TO:<d@x>\nDATA\ntwo\n.\n\r\n.\r\n";
        let (out, got) = session(input, false);
        assert_eq!(out.matches("Ok: queued").count(), 2, "{out}");
        let summary: Vec<_> = got
            .iter()
            .map(|(e, c)| {
                (
                    e.sender.as_str(),
                    e.recipients.len(),
                    String::from_utf8_lossy(c).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("s@x", 1, "one\n".to_string()),
                ("t@x", 1, "two\n.\n\n".to_string())
            ]
        );
    }

    #[test]
    fn failure_and_vrfy() {
        let input = b"VRFY bob\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
        let (out, got) = session(input, true);
        assert!(out.contains("252 2.0.0 <bob>\r\n"), "{out}");
        assert!(
            out.contains("451 4.3.0 Error: postdrop exited with status 75; message not queued\r\n"),
            "{out}"
        );
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn eof_ends_the_session() {
        let (out, got) = session(
            b"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nx",
            false,
        );
        assert!(out.contains("354 "));
        assert!(got.is_empty());
        let (out, _) = session(b"", false);
        assert!(out.starts_with("220 mx.test ESMTP posthorn\r\n"));
    }

    #[test]
    fn settings_from_config() {
        let c = Config::defaults();
        let s = settings(&c);
        assert!(!s.forbid_unauth_pipelining && !s.starttls && s.error_sleep.is_zero());
        assert_eq!(s.size_limit, c.get_size("message_size_limit"));
        assert_eq!(s.banner, c.get("smtpd_banner"));
    }
}
