//! The command line, Postfix's: `postsuper [-psv] [-c config_dir] [-d queue_id]
//! [-h queue_id] [-H queue_id] [-r queue_id] [queue ...]`, and what each operation may touch.

use std::ffi::OsString;
use std::path::PathBuf;

use posthorn_queue::QueueName;

/// The usage line, printed after a command-line error.
pub const USAGE: &str = "usage: postsuper [-c config_dir] [-d queue_id (delete)] \
[-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] \
[-r queue_id (requeue)] [-s (structure fix)] [-v (verbose)] [queue...]";

/// The message queues, in the order a queue ID is searched for.
pub const MESSAGE_QUEUES: [QueueName; 5] = [
    QueueName::Maildrop,
    QueueName::Incoming,
    QueueName::Active,
    QueueName::Deferred,
    QueueName::Hold,
];

/// The per-message log directories.
pub const LOG_QUEUES: [QueueName; 3] = [QueueName::Defer, QueueName::Bounce, QueueName::Trace];

/// An operation on messages named by queue ID (or `ALL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `-d`: delete the message and its defer, bounce and trace logs.
    Delete,
    /// `-h`: move the message to `hold/`.
    Hold,
    /// `-H`: move the message from `hold/` to `deferred/`, due now.
    Release,
    /// `-r`: move the message to `incoming/`, due now.
    Requeue,
}

impl Op {
    /// Every operation, in the order of the summary lines (Postfix's order).
    pub const ALL: [Op; 4] = [Op::Requeue, Op::Delete, Op::Hold, Op::Release];

    /// The queues searched when the command line names none (Postfix's defaults).
    pub fn default_queues(self) -> &'static [QueueName] {
        match self {
            Op::Delete => &MESSAGE_QUEUES,
            Op::Hold => &[QueueName::Incoming, QueueName::Active, QueueName::Deferred],
            Op::Release => &[QueueName::Hold],
            Op::Requeue => &[
                QueueName::Incoming,
                QueueName::Active,
                QueueName::Deferred,
                QueueName::Hold,
            ],
        }
    }

    /// Whether the operation may take a message from queue `q`. Mail in `maildrop/` has
    /// not been checked by pickup yet, so it is never moved among checked mail.
    pub fn applies_to(self, q: QueueName) -> bool {
        match self {
            Op::Delete => MESSAGE_QUEUES.contains(&q),
            Op::Hold => matches!(
                q,
                QueueName::Incoming | QueueName::Active | QueueName::Deferred
            ),
            Op::Release => q == QueueName::Hold,
            Op::Requeue => matches!(
                q,
                QueueName::Incoming | QueueName::Active | QueueName::Deferred | QueueName::Hold
            ),
        }
    }

    /// The option letter.
    pub fn flag(self) -> char {
        match self {
            Op::Delete => 'd',
            Op::Hold => 'h',
            Op::Release => 'H',
            Op::Requeue => 'r',
        }
    }

    /// What is logged per message: `ID: removed`.
    pub fn done_text(self) -> &'static str {
        match self {
            Op::Delete => "removed",
            Op::Hold => "placed on hold",
            Op::Release => "released from hold",
            Op::Requeue => "requeued",
        }
    }

    /// The summary line's label: `Deleted: 2 messages`.
    pub fn summary_label(self) -> &'static str {
        match self {
            Op::Delete => "Deleted",
            Op::Hold => "Placed on hold",
            Op::Release => "Released from hold",
            Op::Requeue => "Requeued",
        }
    }
}

/// What the command line asks of one operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// `ALL` was given (upper case, as a safety measure).
    pub all: bool,
    /// The queue IDs given, in order; `-` means "read IDs from standard input".
    pub ids: Vec<String>,
}

impl Targets {
    /// Whether the operation was asked for at all.
    pub fn is_requested(&self) -> bool {
        self.all || !self.ids.is_empty()
    }
}

/// The parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `-c dir`.
    pub config_dir: Option<PathBuf>,
    /// `-d`.
    pub delete: Targets,
    /// `-h`.
    pub hold: Targets,
    /// `-H`.
    pub release: Targets,
    /// `-r`.
    pub requeue: Targets,
    /// `-p`: purge stale temporary files.
    pub purge: bool,
    /// `-s`: structure check and repair.
    pub structure: bool,
    /// `-v`.
    pub verbose: bool,
    /// The queues named after the options (empty: each operation's defaults).
    pub queues: Vec<QueueName>,
}

impl Args {
    /// The targets of `op`.
    pub fn targets(&self, op: Op) -> &Targets {
        match op {
            Op::Delete => &self.delete,
            Op::Hold => &self.hold,
            Op::Release => &self.release,
            Op::Requeue => &self.requeue,
        }
    }

    fn targets_mut(&mut self, op: Op) -> &mut Targets {
        match op {
            Op::Delete => &mut self.delete,
            Op::Hold => &mut self.hold,
            Op::Release => &mut self.release,
            Op::Requeue => &mut self.requeue,
        }
    }

    /// Whether any of `-d -h -H -r` was given.
    pub fn has_message_ops(&self) -> bool {
        Op::ALL.iter().any(|&op| self.targets(op).is_requested())
    }

    /// The queues `op` works on: those named on the command line that it applies to, or
    /// its defaults.
    pub fn queues_for(&self, op: Op) -> Vec<QueueName> {
        if self.queues.is_empty() {
            op.default_queues().to_vec()
        } else {
            self.queues
                .iter()
                .copied()
                .filter(|&q| op.applies_to(q))
                .collect()
        }
    }
}

/// Parses argv (without argv\[0\]); the error is the text for a `fatal:` line.
pub fn parse<I>(argv: I) -> Result<Args, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg::{Short, Value};
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_args(argv);
    let usage = |e: lexopt::Error| format!("{e}; {USAGE}");
    while let Some(arg) = p.next().map_err(usage)? {
        let op = match arg {
            Short('c') => {
                a.config_dir = Some(PathBuf::from(p.value().map_err(usage)?));
                continue;
            }
            Short('p') => {
                a.purge = true;
                continue;
            }
            Short('s') => {
                a.structure = true;
                continue;
            }
            Short('v') => {
                a.verbose = true;
                continue;
            }
            Short('d') => Op::Delete,
            Short('h') => Op::Hold,
            Short('H') => Op::Release,
            Short('r') => Op::Requeue,
            Value(v) => {
                let name = v.to_string_lossy().into_owned();
                match QueueName::parse(&name) {
                    Some(q) if MESSAGE_QUEUES.contains(&q) || LOG_QUEUES.contains(&q) => {
                        a.queues.push(q);
                    }
                    _ => {
                        return Err(format!(
                            "invalid directory name: {name}; name queues among {}",
                            queue_choices()
                        ));
                    }
                }
                continue;
            }
            other => return Err(format!("{}; {USAGE}", other.unexpected())),
        };
        let v = p.value().map_err(usage)?;
        let Some(v) = v.to_str() else {
            return Err(format!(
                "-{}: queue ID is not valid text: {}",
                op.flag(),
                v.to_string_lossy()
            ));
        };
        let t = a.targets_mut(op);
        if v == "ALL" {
            t.all = true;
        } else {
            t.ids.push(v.to_string());
        }
    }
    Ok(a)
}

fn queue_choices() -> String {
    MESSAGE_QUEUES
        .iter()
        .chain(LOG_QUEUES.iter())
        .map(|q| q.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().copied())
    }

    #[test]
    fn options_and_queues() {
        let a = p(&[
            "-c", "/etc/x", "-d", "ID1", "-d", "-", "-h", "ALL", "-sv", "deferred",
        ])
        .unwrap();
        assert_eq!(a.config_dir, Some(PathBuf::from("/etc/x")));
        assert_eq!(a.delete.ids, vec!["ID1", "-"]);
        assert!(!a.delete.all);
        assert!(a.hold.all && a.hold.ids.is_empty());
        assert!(a.structure && a.verbose && !a.purge);
        assert_eq!(a.queues, vec![QueueName::Deferred]);
        assert!(a.has_message_ops());
        assert_eq!(a.queues_for(Op::Hold), vec![QueueName::Deferred]);
        assert!(a.queues_for(Op::Release).is_empty());
    }

    #[test]
    fn all_must_be_upper_case_and_queues_known() {
        let a = p(&["-H", "all"]).unwrap();
        assert!(!a.release.all);
        assert_eq!(a.release.ids, vec!["all"]);
        let e = p(&["-d", "ALL", "corrupt"]).unwrap_err();
        assert!(e.starts_with("invalid directory name: corrupt"), "{e}");
        assert!(p(&["-x"]).unwrap_err().contains("usage: postsuper"));
        assert!(p(&["-d"]).unwrap_err().contains("missing argument"));
    }

    #[test]
    fn defaults_follow_postfix() {
        let a = p(&["-r", "ALL"]).unwrap();
        assert_eq!(
            a.queues_for(Op::Requeue),
            vec![
                QueueName::Incoming,
                QueueName::Active,
                QueueName::Deferred,
                QueueName::Hold
            ]
        );
        assert!(Op::Delete.applies_to(QueueName::Maildrop));
        for op in [Op::Hold, Op::Release, Op::Requeue] {
            assert!(!op.applies_to(QueueName::Maildrop), "{op:?}");
        }
        assert!(!Op::Hold.applies_to(QueueName::Hold));
    }
}
