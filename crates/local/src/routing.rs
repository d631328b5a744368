//! Routing for local(8): what to do with one recipient in `mydestination`, as a [`Plan`] of
//! [`Action`]s, computed by a pure function ([`plan_local`]) over injected [`Lookups`]
//! (aliases, the passwd database, `.forward` and `:include:` files), so that every rule can
//! be tested without root and without touching a mailbox.
//!
//! The rules are Postfix's local(8):
//! 1. `Delivered-To:` loop detection for every local address reached (5.4.6).
//! 2. `alias_maps`: `user+ext`, then `user`. Targets: `|command` and `/file` where
//!    `allow_mail_to_commands` / `allow_mail_to_files` permit them for the class (`alias`,
//!    `forward`, `include`), else 5.7.1; `:include:/path`; `\user` (that user's mailbox, no
//!    further expansion); local names and addresses (expanded again); other addresses
//!    (forwarded). A target equal to the alias name is not looked up in aliases again. An
//!    `owner-NAME` alias makes `owner-NAME@$myorigin` the sender of everything delivered
//!    through alias NAME.
//! 3. The passwd database (unknown: `luser_relay`, else 5.1.1 `unknown user: "name"`).
//! 4. The first usable file of `forward_path`; its targets as above (a bare reference to
//!    the user is the user's mailbox).
//! 5. `mailbox_command`, else the mailbox.
//!
//! Rights: commands and files from aliases use the rights of the alias table's owner, from
//! `:include:` files those of the file's owner, from `.forward` those of the user; owner
//! root (uid 0) always means `default_privs`. Expansion depth is limited to [`MAX_DEPTH`],
//! and each local address, include file and destination is handled once per recipient.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use posthorn_message::qualify;
use posthorn_sys::Account;

use crate::aliases::{AliasHit, IncludeError, IncludeFile};
use crate::expansion::expand;
use crate::forward::ForwardFile;
use crate::status::Failure;

/// How deep aliases, `.forward` and `:include:` files may nest.
pub const MAX_DEPTH: usize = 100;

/// Where a target list came from: it decides whether commands and files are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `alias_maps` (and `luser_relay`).
    Alias,
    /// A `.forward` file.
    Forward,
    /// A `:include:` file.
    Include,
}

/// A set of classes, from `allow_mail_to_commands` / `allow_mail_to_files`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Classes {
    /// `alias`
    pub alias: bool,
    /// `forward`
    pub forward: bool,
    /// `include`
    pub include: bool,
}

impl Classes {
    /// Parses list items (`alias`, `forward`, `include`); other words are logged and ignored.
    pub fn from_list(items: &[String]) -> Classes {
        let mut c = Classes::default();
        for item in items {
            match item.to_ascii_lowercase().as_str() {
                "alias" => c.alias = true,
                "forward" => c.forward = true,
                "include" => c.include = true,
                other => log::warn!(
                    "unknown delivery class \"{other}\" (expected alias, forward or include)"
                ),
            }
        }
        c
    }

    /// Whether `class` is in the set.
    pub fn allows(self, class: Class) -> bool {
        match class {
            Class::Alias => self.alias,
            Class::Forward => self.forward,
            Class::Include => self.include,
        }
    }
}

/// The settings routing depends on.
#[derive(Clone, Debug, Default)]
pub struct RouteSettings {
    /// `myorigin`: qualifies bare names and `owner-` senders.
    pub myorigin: String,
    /// `mydestination`, lowercased (entries that are tables are left out).
    pub local_domains: Vec<String>,
    /// `recipient_delimiter`.
    pub recipient_delimiter: String,
    /// `allow_mail_to_commands`.
    pub allow_commands: Classes,
    /// `allow_mail_to_files`.
    pub allow_files: Classes,
    /// `forward_path`, unexpanded.
    pub forward_path: Vec<String>,
    /// `default_privs`.
    pub default_privs: String,
    /// `mailbox_command`, unexpanded ("" = deliver to the mailbox).
    pub mailbox_command: String,
    /// `luser_relay`, unexpanded ("" = bounce unknown users).
    pub luser_relay: String,
}

impl RouteSettings {
    /// Whether `domain` is one of `mydestination` (case-insensitive).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.').to_lowercase();
        self.local_domains.contains(&d)
    }
}

/// What routing needs from the system; [`crate::deliver::SystemLookups`] is the real one.
pub trait Lookups {
    /// Looks a local name up in `alias_maps`.
    fn alias(&self, key: &str) -> Result<Option<AliasHit>, String>;
    /// Looks up a Unix account by (lowercase) name.
    fn user(&self, name: &str) -> Result<Option<Account>, String>;
    /// Looks up a Unix account by uid.
    fn user_by_uid(&self, uid: u32) -> Result<Option<Account>, String>;
    /// Reads the first usable `.forward` among `paths` with `user`'s rights.
    fn forward_file(
        &self,
        user: &Account,
        paths: &[PathBuf],
    ) -> Result<Option<ForwardFile>, String>;
    /// Reads a `:include:` file with `reader`'s rights.
    fn include_file(&self, path: &Path, reader: &Account) -> Result<IncludeFile, IncludeError>;
}

/// One thing to do for a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver to the account's mailbox (`home_mailbox` or `mail_spool_directory`).
    Mailbox {
        /// The mailbox owner.
        account: Account,
    },
    /// Pipe the message to `/bin/sh -c command`.
    Command {
        /// The command text (after the `|`).
        command: String,
        /// Whose rights it runs with.
        run_as: Account,
    },
    /// Append to a file (mbox style), or deliver to a Maildir when the path ends in `/`.
    File {
        /// The absolute path.
        path: String,
        /// Whose rights it is written with.
        run_as: Account,
    },
    /// Submit a copy to these addresses through cleanup.
    Forward {
        /// The new recipients.
        addrs: Vec<String>,
    },
    /// Fail permanently.
    Bounce(Failure),
    /// Fail temporarily.
    Defer(Failure),
}

/// An action with its context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// The envelope sender for this copy (the message's, or `owner-NAME@myorigin`).
    pub sender: String,
    /// The local address whose expansion produced the action (`$RECIPIENT` for commands).
    pub address: String,
}

/// Everything to do for one recipient, in order; forwards are grouped per sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The first deferral, if any: a plan with one is not carried out at all.
    pub fn deferral(&self) -> Option<&Failure> {
        self.steps.iter().find_map(|s| match &s.action {
            Action::Defer(f) => Some(f),
            _ => None,
        })
    }

    /// One line per step (`mailbox joe`, `command CMD as nobody`, `file PATH as joe`,
    /// `forward a@x, b@y`, `bounce 5.1.1 unknown user: "x"`, `defer ...`), for tests and logs.
    pub fn summary(&self) -> Vec<String> {
        self.steps.iter().map(|s| describe(&s.action)).collect()
    }
}

pub(crate) fn describe(a: &Action) -> String {
    match a {
        Action::Mailbox { account } => format!("mailbox {}", account.name),
        Action::Command { command, run_as } => format!("command {command} as {}", run_as.name),
        Action::File { path, run_as } => format!("file {path} as {}", run_as.name),
        Action::Forward { addrs } => format!("forward {}", addrs.join(", ")),
        Action::Bounce(f) => format!("bounce {} {}", f.dsn, f.reason),
        Action::Defer(f) => format!("defer {} {}", f.dsn, f.reason),
    }
}

/// The recipient to route.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    /// The address from the delivery request (`user+ext@domain`).
    pub address: &'a str,
    /// The message's envelope sender.
    pub sender: &'a str,
}

/// Plans the delivery of one local recipient. `delivered_to` holds the message's
/// `Delivered-To:` addresses, lowercased.
pub fn plan_local(
    s: &RouteSettings,
    lk: &dyn Lookups,
    delivered_to: &[String],
    rcpt: &Recipient<'_>,
) -> Plan {
    let address = qualify(rcpt.address, &s.myorigin);
    Plan {
        steps: group(expand(s, lk, delivered_to, &address, rcpt.sender)),
    }
}

/// Drops duplicate steps and merges the forwards of each sender into one step, placed where
/// that sender's first forward was.
fn group(steps: Vec<Step>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let mut seen: HashSet<String> = HashSet::new();
    let mut forwarded: HashSet<(String, String)> = HashSet::new();
    for step in steps {
        match step.action {
            Action::Forward { addrs } => {
                let fresh: Vec<String> = addrs
                    .into_iter()
                    .filter(|a| forwarded.insert((step.sender.clone(), a.to_lowercase())))
                    .collect();
                if fresh.is_empty() {
                    continue;
                }
                let existing = out.iter_mut().find(|s| {
                    s.sender == step.sender && matches!(s.action, Action::Forward { .. })
                });
                match existing {
                    Some(Step {
                        action: Action::Forward { addrs },
                        ..
                    }) => addrs.extend(fresh),
                    _ => out.push(Step {
                        action: Action::Forward { addrs: fresh },
                        ..step
                    }),
                }
            }
            action => {
                let key = match &action {
                    Action::Command { run_as, .. } | Action::File { run_as, .. } => {
                        format!("{} {}", describe(&action), run_as.uid)
                    }
                    _ => describe(&action),
                };
                if seen.insert(key) {
                    out.push(Step { action, ..step });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse() {
        let c = Classes::from_list(&["alias".into(), "Include".into(), "bogus".into()]);
        assert_eq!(
            c,
            Classes {
                alias: true,
                forward: false,
                include: true
            }
        );
        assert!(c.allows(Class::Include) && !c.allows(Class::Forward));
    }
}
