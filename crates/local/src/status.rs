//! Per-recipient results: one [`Failure`] type for everything that can go wrong with a
//! delivery, and the rule that folds the results of an alias or `.forward` expansion into
//! the one [`Status`] qmgr records for the original recipient.

use posthorn_mailbox::DeliveryError;
use posthorn_proto::delivery::{Outcome, Status};

/// A failed delivery (or a failed step of one): status code and Postfix-style reason. The
/// class digit of `dsn` decides: `4.x.x` defers, `5.x.x` bounces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// RFC 3463 enhanced status code, e.g. `5.1.1`.
    pub dsn: String,
    /// The text qmgr logs in `status=bounced (...)` and bounce puts in the notice.
    pub reason: String,
}

impl Failure {
    /// A temporary failure (`dsn` should be of class 4).
    pub fn defer(dsn: &str, reason: impl Into<String>) -> Failure {
        Failure {
            dsn: dsn.to_string(),
            reason: reason.into(),
        }
    }

    /// A permanent failure (`dsn` should be of class 5).
    pub fn bounce(dsn: &str, reason: impl Into<String>) -> Failure {
        Failure {
            dsn: dsn.to_string(),
            reason: reason.into(),
        }
    }

    /// Postfix's answer to any configuration mistake: defer with 4.3.5 (details go to the log).
    pub fn config_error() -> Failure {
        Failure::defer("4.3.5", "mail system configuration error")
    }

    /// Whether the failure is permanent (bounce) rather than temporary (defer).
    pub fn is_permanent(&self) -> bool {
        self.dsn.starts_with('5')
    }

    /// The protocol outcome for this failure.
    pub fn outcome(&self) -> Outcome {
        if self.is_permanent() {
            Outcome::Bounced
        } else {
            Outcome::Deferred
        }
    }
}

impl From<DeliveryError> for Failure {
    fn from(e: DeliveryError) -> Failure {
        Failure {
            dsn: e.dsn().to_string(),
            reason: e.reason().to_string(),
        }
    }
}

/// The result of one delivery step: the success text (`delivered to mailbox`) or a failure.
pub type StepResult = Result<String, Failure>;

/// A status for one request recipient.
pub fn status(offset: u64, relay: &str, result: &StepResult) -> Status {
    match result {
        Ok(reason) => Status {
            offset,
            outcome: Outcome::Sent,
            dsn: "2.0.0".to_string(),
            relay: relay.to_string(),
            reason: reason.clone(),
        },
        Err(f) => Status {
            offset,
            outcome: f.outcome(),
            dsn: f.dsn.clone(),
            relay: relay.to_string(),
            reason: f.reason.clone(),
        },
    }
}

/// Folds the results of every target an expansion produced into one result for the
/// original recipient.
///
/// Postfix keeps a state per expanded target; posthorn records one status per queue-file
/// recipient, so: if any target was deferred, the whole recipient is deferred (the targets
/// that did succeed are delivered again at the next attempt: at-least-once, as after a
/// crash); else if any target bounced, the recipient bounces with the first such reason;
/// else it is sent, with the last success text. An empty list means the expansion found
/// nothing to deliver to, which only an alias loop produces: that bounces as a loop.
pub fn merge(address: &str, results: &[StepResult]) -> StepResult {
    if let Some(Err(f)) = results
        .iter()
        .find(|r| matches!(r, Err(f) if !f.is_permanent()))
    {
        return Err(f.clone());
    }
    if let Some(Err(f)) = results.iter().find(|r| r.is_err()) {
        return Err(f.clone());
    }
    match results.last() {
        Some(Ok(text)) => Ok(text.clone()),
        _ => Err(Failure::bounce(
            "5.4.6",
            format!("mail forwarding loop for {address}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferral_wins_then_bounce_then_last_success() {
        let sent = |t: &str| Ok(t.to_string());
        let b = Err(Failure::bounce("5.1.1", "unknown user: \"x\""));
        let d = Err(Failure::defer("4.2.0", "busy"));
        assert_eq!(merge("a@x", &[sent("one"), b.clone(), d.clone()]), d);
        assert_eq!(merge("a@x", &[sent("one"), b.clone(), sent("two")]), b);
        assert_eq!(merge("a@x", &[sent("one"), sent("two")]), sent("two"));
        assert_eq!(
            merge("a@x", &[]).unwrap_err().reason,
            "mail forwarding loop for a@x"
        );
    }

    #[test]
    fn statuses() {
        let s = status(7, "local", &Ok("delivered to mailbox".into()));
        assert_eq!(
            (s.offset, s.outcome, s.dsn.as_str(), s.relay.as_str()),
            (7, Outcome::Sent, "2.0.0", "local")
        );
        let s = status(7, "virtual", &Err(Failure::config_error()));
        assert_eq!((s.outcome, s.dsn.as_str()), (Outcome::Deferred, "4.3.5"));
        assert_eq!(Failure::bounce("5.7.1", "x").outcome(), Outcome::Bounced);
    }
}
