//! The delivery log line, in Postfix's format (`global/log_adhoc.c`), written once by
//! whoever decided the recipient's fate: the delivery agent (local, virtual, smtp) for its
//! own results, qmgr for the ones it decides itself (suspended destinations, `error:` and
//! `discard:` transports, expiry):
//!
//! `QUEUEID: to=<rcpt>[, orig_to=<o>], relay=R, delay=D, delays=a/b/c/d, dsn=X.Y.Z,
//! status=sent|deferred|bounced (reason)`
//!
//! `a` is the time before qmgr, `b` the time in qmgr, `c` the agent's connection setup,
//! `d` the rest of the agent's time; every figure is printed as Postfix does (two
//! significant digits, whole seconds from 10 s).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use posthorn_proto::delivery::{Deliver, Outcome, Status};

/// Postfix's delay format: `0`, `0.01` .. `0.99`, `1` .. `9.9`, then whole seconds.
pub fn format_delay(d: Duration) -> String {
    let x = d.as_secs_f64();
    if x >= 10.0 {
        format!("{}", x.round() as u64)
    } else if x >= 1.0 {
        let s = format!("{x:.1}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{x:.2}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "0" {
            "0".to_string()
        } else {
            s.to_string()
        }
    }
}

/// The four parts of `delays=` and the total `delay=`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delays {
    /// Since arrival.
    pub total: Duration,
    /// Before qmgr.
    pub a: Duration,
    /// In qmgr.
    pub b: Duration,
    /// Connection setup in the agent.
    pub c: Duration,
    /// The rest of the agent's work.
    pub d: Duration,
}

/// One recipient's result.
pub struct Line<'a> {
    /// Queue ID.
    pub queue_id: &'a str,
    /// The recipient.
    pub rcpt: &'a str,
    /// The original recipient, when it differs.
    pub orig: Option<&'a str>,
    /// `relay=` text.
    pub relay: &'a str,
    /// The timings.
    pub delays: Delays,
    /// Enhanced status code.
    pub dsn: &'a str,
    /// `sent`, `deferred` or `bounced`.
    pub status: &'a str,
    /// The reason or server reply.
    pub reason: &'a str,
}

impl Line<'_> {
    /// The text after the program prefix.
    pub fn text(&self) -> String {
        let orig = match self.orig {
            Some(o) if !o.is_empty() && o != self.rcpt => format!(", orig_to=<{o}>"),
            _ => String::new(),
        };
        let d = &self.delays;
        format!(
            "{}: to=<{}>{orig}, relay={}, delay={}, delays={}/{}/{}/{}, dsn={}, status={} ({})",
            self.queue_id,
            self.rcpt,
            self.relay,
            format_delay(d.total),
            format_delay(d.a),
            format_delay(d.b),
            format_delay(d.c),
            format_delay(d.d),
            self.dsn,
            self.status,
            self.reason
        )
    }
}

/// A status as it is reported: with `soft_bounce`, a bounce is a deferral (4.x.x).
pub fn effective(outcome: Outcome, dsn: &str, soft_bounce: bool) -> (Outcome, String) {
    if outcome == Outcome::Bounced && soft_bounce {
        let dsn = match dsn.strip_prefix('5') {
            Some(rest) => format!("4{rest}"),
            None => dsn.to_string(),
        };
        return (Outcome::Deferred, dsn);
    }
    (outcome, dsn.to_string())
}

/// The status word of an outcome.
pub fn status_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Sent => "sent",
        Outcome::Deferred => "deferred",
        Outcome::Bounced => "bounced",
    }
}

/// A delivery agent logs its answer to `req`: one line per status. `started` is when the
/// agent took the request, `setup` its connection setup time, if any.
pub fn log_results(
    req: &Deliver,
    statuses: &[Status],
    started: Instant,
    setup: Option<Duration>,
    soft_bounce: bool,
) {
    let agent = started.elapsed();
    let c = setup.unwrap_or_default().min(agent);
    let t = req.timing;
    let a = Duration::from_micros(t.before_qmgr_us);
    let b = Duration::from_micros(t.in_qmgr_us);
    let total = if t.arrival_us > 0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(Duration::from_micros(t.arrival_us))
    } else {
        a + b + agent
    };
    let delays = Delays {
        total,
        a,
        b,
        c,
        d: agent - c,
    };
    for st in statuses {
        let Some(r) = req.rcpts.iter().find(|r| r.offset == st.offset) else {
            continue;
        };
        let (outcome, dsn) = effective(st.outcome, &st.dsn, soft_bounce);
        let line = Line {
            queue_id: &req.queue_id,
            rcpt: &r.address,
            orig: Some(r.orig.as_str()),
            relay: &st.relay,
            delays,
            dsn: &dsn,
            status: status_word(outcome),
            reason: &st.reason,
        };
        log::info!("{}", line.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_format() {
        for (ms, want) in [
            (0, "0"),
            (4, "0"),
            (10, "0.01"),
            (250, "0.25"),
            (1000, "1"),
            (1500, "1.5"),
            (9940, "9.9"),
            (12_400, "12"),
        ] {
            assert_eq!(format_delay(Duration::from_millis(ms)), want, "{ms} ms");
        }
    }

    #[test]
    fn line_layout() {
        let l = Line {
            queue_id: "Q1",
            rcpt: "a@b.test",
            orig: Some("alias@b.test"),
            relay: "mx[192.0.2.1]:25, conn_use=2",
            delays: Delays {
                total: Duration::from_millis(1200),
                a: Duration::from_millis(100),
                b: Duration::from_millis(10),
                c: Duration::from_millis(20),
                d: Duration::from_millis(1070),
            },
            dsn: "2.0.0",
            status: "sent",
            reason: "250 2.0.0 Ok",
        };
        assert_eq!(
            l.text(),
            "Q1: to=<a@b.test>, orig_to=<alias@b.test>, relay=mx[192.0.2.1]:25, conn_use=2, delay=1.2, delays=0.1/0.01/0.02/1.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
        );
        assert_eq!(
            effective(Outcome::Bounced, "5.1.1", true),
            (Outcome::Deferred, "4.1.1".to_string())
        );
    }
}
