//! Carrying out deliveries: the per-recipient entry points of local(8)
//! ([`LocalAgent::deliver`]) and virtual(8) ([`VirtualAgent::deliver`]), the execution of
//! each planned [`Action`], and forwarding through cleanup ([`CleanupForwarder`]).
//!
//! Every delivered copy starts with `Return-Path: <SENDER>` and `Delivered-To: RECIPIENT`
//! (lowercased, the recipient as the delivery request named it, qualified with `$myorigin`:
//! Postfix's `frozen_delivered_to = yes`); commands and files get `Delivered-To:` only when
//! `prepend_delivered_header` lists them, forwarded copies when it lists `forward`.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use posthorn_mailbox::{
    CommandOptions, Envelope as CopyEnvelope, deliver_command, deliver_file, deliver_maildir,
    deliver_mbox,
};
use posthorn_message::{qualify, quote_local_part, split_address};
use posthorn_proto::ProtoError;
use posthorn_proto::cleanup::{Origin, Reply};
use posthorn_proto::delivery::Rcpt;
use posthorn_queue::QueueLayout;
use posthorn_queue::file::{Envelope, Recipient as QueueRecipient};
use posthorn_server::cleanup_client::CleanupClient;
use posthorn_sys::Account;
use posthorn_tables::split_local_part;

use crate::aliases::{AliasHit, AliasMaps, IncludeError, IncludeFile, read_include_as};
use crate::forward::{ForwardFile, read_forward_as, strerror};
use crate::mailbox_choice::{MailboxTarget, choose_mailbox};
use crate::message::Message;
use crate::privilege::{as_account, command_launcher};
use crate::routing::{Action, Lookups, Recipient, Step, plan_local};
use crate::settings::{LocalSettings, VirtualSettings};
use crate::status::{Failure, StepResult, merge};
use crate::vmailbox::{OpenMaps, VirtualTables, route_virtual};

/// The real [`Lookups`]: `alias_maps`, the passwd database, files read with the user's rights.
pub struct SystemLookups<'a> {
    /// The alias tables.
    pub aliases: &'a AliasMaps,
}

impl Lookups for SystemLookups<'_> {
    fn alias(&self, key: &str) -> Result<Option<AliasHit>, String> {
        self.aliases.lookup(key)
    }

    fn user(&self, name: &str) -> Result<Option<Account>, String> {
        posthorn_sys::user_by_name(name).map_err(|e| e.to_string())
    }

    fn user_by_uid(&self, uid: u32) -> Result<Option<Account>, String> {
        posthorn_sys::user_by_uid(uid).map_err(|e| e.to_string())
    }

    fn forward_file(
        &self,
        user: &Account,
        paths: &[PathBuf],
    ) -> Result<Option<ForwardFile>, String> {
        read_forward_as(user, paths)
    }

    fn include_file(&self, path: &Path, reader: &Account) -> Result<IncludeFile, IncludeError> {
        read_include_as(path, reader)
    }
}

/// One forwarded copy: a new message through cleanup.
#[derive(Clone, Copy, Debug)]
pub struct ForwardCopy<'a> {
    /// Its envelope sender (the original one, or `owner-NAME@myorigin`).
    pub sender: &'a str,
    /// Its recipients.
    pub recipients: &'a [String],
    /// The original recipient, recorded for each new recipient (`orig_to=` in logs).
    pub orig: &'a str,
    /// The `Delivered-To:` line to put first, if any.
    pub delivered_to: Option<&'a str>,
}

/// Submits forwarded copies; [`CleanupForwarder`] is the real one.
pub trait Forwarder {
    /// Submits one copy; `Ok` carries the success text (`forwarded as ID`).
    fn forward(&mut self, copy: &ForwardCopy<'_>, msg: &Message<'_>) -> StepResult;
}

/// Forwards through the cleanup service, over one connection kept for many messages.
pub struct CleanupForwarder {
    layout: QueueLayout,
    client: Option<CleanupClient>,
}

impl CleanupForwarder {
    /// A forwarder for the queue at `layout` (connects on first use).
    pub fn new(layout: QueueLayout) -> CleanupForwarder {
        CleanupForwarder {
            layout,
            client: None,
        }
    }

    fn submit(&mut self, copy: &ForwardCopy<'_>, msg: &Message<'_>) -> Result<Reply, ProtoError> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(CleanupClient::connect(&self.layout)?),
        };
        client.begin(
            0,
            Origin {
                kind: "forward".into(),
                uid: 0,
                client: "local".into(),
            },
        )?;
        let env = Envelope {
            sender: copy.sender.to_string(),
            arrival: Some(SystemTime::now()),
            recipients: copy
                .recipients
                .iter()
                .map(|a| QueueRecipient {
                    address: a.clone(),
                    orig: Some(copy.orig.to_string()),
                    ..QueueRecipient::default()
                })
                .collect(),
            ..Envelope::default()
        };
        client.envelope(&env)?;
        client.start_content()?;
        if let Some(d) = copy.delivered_to {
            client.content(format!("Delivered-To: {}\n", quote_local_part(d)).as_bytes())?;
        }
        client.content_from(&mut *msg.reader())?;
        client.commit()
    }
}

impl Forwarder for CleanupForwarder {
    fn forward(&mut self, copy: &ForwardCopy<'_>, msg: &Message<'_>) -> StepResult {
        let result = self.submit(copy, msg);
        // One cleanup connection per forwarded message, as Postfix: an idle local process
        // must not keep a cleanup process busy.
        self.client = None;
        match result {
            Ok(Reply::Queued { id }) => {
                log::debug!(
                    "{}: forwarded as {id} to {}",
                    msg.queue_id,
                    copy.recipients.join(", ")
                );
                Ok(format!("forwarded as {id}"))
            }
            Ok(Reply::Failed {
                temporary,
                dsn,
                text,
            }) => {
                let dsn = match (temporary, dsn.starts_with('4'), dsn.starts_with('5')) {
                    (true, true, _) | (false, _, true) => dsn,
                    (true, _, _) => "4.3.0".to_string(),
                    (false, _, _) => "5.3.0".to_string(),
                };
                Err(Failure { dsn, reason: text })
            }
            Err(e) => {
                // The session state is unknown: start over with a new connection.
                self.client = None;
                log::warn!("{}: cannot forward through cleanup: {e}", msg.queue_id);
                Err(Failure::defer(
                    "4.3.0",
                    format!("cannot forward message: {e}"),
                ))
            }
        }
    }
}

/// `Return-Path:` and (optionally) `Delivered-To:` lines for a copy.
fn prepend_lines(sender: &str, delivered_to: Option<&str>) -> Vec<String> {
    let mut v = vec![format!("Return-Path: <{}>", quote_local_part(sender))];
    if let Some(d) = delivered_to {
        v.push(format!("Delivered-To: {}", quote_local_part(d)));
    }
    v
}

/// local(8): delivery for recipients in `mydestination`.
pub struct LocalAgent {
    /// The settings.
    pub settings: LocalSettings,
    /// `alias_maps`, opened once per process.
    pub aliases: AliasMaps,
}

impl LocalAgent {
    /// Opens the alias tables.
    pub fn new(settings: LocalSettings) -> LocalAgent {
        let aliases = AliasMaps::open(&settings.alias_maps);
        LocalAgent { settings, aliases }
    }

    /// Call before each request: re-opens tables that failed to open.
    pub fn before_request(&mut self) {
        self.aliases.retry();
    }

    /// Delivers `msg` to one request recipient: plans with the system lookups, then
    /// carries the plan out (see [`merge`] for how the results combine). A plan that
    /// defers anything is not carried out at all, to avoid duplicates at the retry.
    pub fn deliver(&self, msg: &Message<'_>, rcpt: &Rcpt, fwd: &mut dyn Forwarder) -> StepResult {
        let lookups = SystemLookups {
            aliases: &self.aliases,
        };
        self.deliver_with(&lookups, msg, rcpt, fwd)
    }

    /// [`LocalAgent::deliver`] with other lookups.
    pub fn deliver_with(
        &self,
        lookups: &dyn Lookups,
        msg: &Message<'_>,
        rcpt: &Rcpt,
        fwd: &mut dyn Forwarder,
    ) -> StepResult {
        let s = &self.settings;
        let address = qualify(&rcpt.address, &s.route.myorigin);
        let delivered_to = address.to_lowercase();
        let plan = plan_local(
            &s.route,
            lookups,
            msg.delivered_to(),
            &Recipient {
                address: &address,
                sender: &msg.sender,
            },
        );
        log::debug!(
            "{}: {}: plan: {}",
            msg.queue_id,
            address,
            plan.summary().join("; ")
        );
        if let Some(f) = plan.deferral() {
            return Err(f.clone());
        }
        let orig = if rcpt.orig.is_empty() {
            rcpt.address.as_str()
        } else {
            rcpt.orig.as_str()
        };
        let mut results = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let r = self.execute(step, msg, &delivered_to, orig, fwd);
            if let Err(f) = &r {
                log::debug!("{}: {}: {} {}", msg.queue_id, step.address, f.dsn, f.reason);
            }
            results.push(r);
        }
        merge(&address, &results)
    }

    fn execute(
        &self,
        step: &Step,
        msg: &Message<'_>,
        delivered_to: &str,
        orig: &str,
        fwd: &mut dyn Forwarder,
    ) -> StepResult {
        let prepend = self.settings.prepend_delivered;
        match &step.action {
            Action::Mailbox { account } => self.mailbox(account, step, msg, delivered_to),
            Action::Command { command, run_as } => self.command(
                command,
                run_as,
                step,
                msg,
                prepend.command.then_some(delivered_to),
                orig,
            ),
            Action::File { path, run_as } => self.file(
                path,
                run_as,
                step,
                msg,
                prepend.file.then_some(delivered_to),
            ),
            Action::Forward { addrs } => {
                let copy = ForwardCopy {
                    sender: &step.sender,
                    recipients: addrs,
                    orig,
                    delivered_to: prepend.forward.then_some(delivered_to),
                };
                fwd.forward(&copy, msg)
            }
            Action::Bounce(f) | Action::Defer(f) => Err(f.clone()),
        }
    }

    fn mailbox(
        &self,
        account: &Account,
        step: &Step,
        msg: &Message<'_>,
        delivered_to: &str,
    ) -> StepResult {
        let s = &self.settings;
        let choice = choose_mailbox(&s.home_mailbox, &s.mail_spool_directory, account);
        if choice.in_spool && posthorn_sys::is_root() {
            prepare_spool_mailbox(&choice.target, account)?;
        }
        let lines = prepend_lines(&step.sender, Some(delivered_to));
        let env = CopyEnvelope {
            sender: &step.sender,
            arrival: SystemTime::now(),
            prepend: &lines,
        };
        let done = as_account(account.uid, account.gid, || {
            let mut content = msg.reader();
            match &choice.target {
                MailboxTarget::Mbox(p) => deliver_mbox(p, &env, &mut content, &s.mbox)
                    .map(|()| "delivered to mailbox".to_string()),
                MailboxTarget::Maildir(d) => {
                    deliver_maildir(d, &env, &mut content, s.mbox.size_limit)
                        .map(|_| "delivered to maildir".to_string())
                }
            }
        });
        done.map_err(|e| Failure::defer("4.3.0", e))?
            .map_err(Failure::from)
    }

    fn file(
        &self,
        path: &str,
        run_as: &Account,
        step: &Step,
        msg: &Message<'_>,
        delivered_to: Option<&str>,
    ) -> StepResult {
        let lines = prepend_lines(&step.sender, delivered_to);
        let env = CopyEnvelope {
            sender: &step.sender,
            arrival: SystemTime::now(),
            prepend: &lines,
        };
        let done = as_account(run_as.uid, run_as.gid, || {
            deliver_file(
                Path::new(path),
                &env,
                &mut msg.reader(),
                &self.settings.mbox,
            )
        });
        done.map_err(|e| Failure::defer("4.3.0", e))?
            .map_err(Failure::from)?;
        Ok(format!("delivered to file: {path}"))
    }

    fn command(
        &self,
        command: &str,
        run_as: &Account,
        step: &Step,
        msg: &Message<'_>,
        delivered_to: Option<&str>,
        orig: &str,
    ) -> StepResult {
        let cs = &self.settings.command;
        let lines = prepend_lines(&step.sender, delivered_to);
        let env = CopyEnvelope {
            sender: &step.sender,
            arrival: SystemTime::now(),
            prepend: &lines,
        };
        let (shell, launcher_env) = command_launcher(&cs.shell, &cs.helper, run_as.uid, run_as.gid);
        let mut vars = command_environment(
            step,
            run_as,
            orig,
            &self.settings.route.recipient_delimiter,
            &cs.export_environment,
        );
        vars.extend(launcher_env);
        let cwd = if run_as.home.is_dir() {
            run_as.home.clone()
        } else {
            PathBuf::from("/")
        };
        let opts = CommandOptions {
            shell,
            cwd,
            env: vars,
            time_limit: cs.time_limit,
        };
        deliver_command(command, &env, &mut msg.reader(), &opts).map_err(Failure::from)?;
        Ok(format!("delivered to command: {command}"))
    }
}

/// The environment of a command, as Postfix's local(8) documents it: HOME, USER, LOGNAME,
/// SHELL of the account it runs as; SENDER, RECIPIENT, LOCAL, DOMAIN, EXTENSION (when there
/// is one) and ORIGINAL_RECIPIENT of the delivery; plus `export_environment`.
pub fn command_environment(
    step: &Step,
    run_as: &Account,
    orig: &str,
    delimiter: &str,
    export: &[String],
) -> Vec<(String, String)> {
    let (localpart, domain) = split_address(&step.address);
    let (_, ext) = split_local_part(localpart, delimiter);
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut v = vec![
        ("HOME".to_string(), path(&run_as.home)),
        ("USER".to_string(), run_as.name.clone()),
        ("LOGNAME".to_string(), run_as.name.clone()),
        ("SHELL".to_string(), path(&run_as.shell)),
        ("SENDER".to_string(), step.sender.clone()),
        ("RECIPIENT".to_string(), step.address.clone()),
        ("LOCAL".to_string(), localpart.to_lowercase()),
        ("DOMAIN".to_string(), domain.unwrap_or("").to_lowercase()),
    ];
    if let Some((_, e)) = ext {
        v.push(("EXTENSION".to_string(), e.to_string()));
    }
    v.push(("ORIGINAL_RECIPIENT".to_string(), orig.to_string()));
    for item in export {
        match item.split_once('=') {
            Some((k, val)) => v.push((k.to_string(), val.to_string())),
            None => {
                if let Ok(val) = std::env::var(item) {
                    v.push((item.clone(), val));
                }
            }
        }
    }
    v
}

/// As root, creates a missing spool mailbox (mbox file, or Maildir directory) owned by the
/// user, since users normally cannot create files in the spool directory; the delivery then
/// happens with the user's rights. Failures defer (4.2.0).
fn prepare_spool_mailbox(target: &MailboxTarget, account: &Account) -> Result<(), Failure> {
    let fail = |path: &Path, e: io::Error| {
        Failure::defer(
            "4.2.0",
            format!(
                "cannot update mailbox {} for user {}. cannot create mailbox: {}",
                path.display(),
                account.name,
                strerror(&e)
            ),
        )
    };
    match target {
        MailboxTarget::Mbox(path) => {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(path)
            {
                Ok(f) => std::os::unix::fs::fchown(&f, Some(account.uid), Some(account.gid))
                    .map_err(|e| fail(path, e)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(fail(path, e)),
            }
        }
        MailboxTarget::Maildir(dir) => {
            let dir = Path::new(
                dir.to_str()
                    .map_or(dir.as_os_str(), |s| s.trim_end_matches('/').as_ref()),
            );
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => std::os::unix::fs::lchown(dir, Some(account.uid), Some(account.gid))
                    .map_err(|e| fail(dir, e)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(fail(dir, e)),
            }
        }
    }
}

/// virtual(8): delivery for recipients of `virtual_mailbox_domains`.
pub struct VirtualAgent {
    /// The settings.
    pub settings: VirtualSettings,
    mailbox: OpenMaps,
    uid: OpenMaps,
    gid: OpenMaps,
}

impl VirtualAgent {
    /// Opens the tables.
    pub fn new(settings: VirtualSettings) -> VirtualAgent {
        VirtualAgent {
            mailbox: OpenMaps::open("virtual_mailbox_maps", &settings.mailbox_maps),
            uid: OpenMaps::open("virtual_uid_maps", &settings.uid_maps),
            gid: OpenMaps::open("virtual_gid_maps", &settings.gid_maps),
            settings,
        }
    }

    /// Call before each request: re-opens tables that failed to open.
    pub fn before_request(&mut self) {
        self.mailbox.retry();
        self.uid.retry();
        self.gid.retry();
    }

    /// Delivers `msg` to one virtual recipient.
    pub fn deliver(&self, msg: &Message<'_>, rcpt: &Rcpt) -> StepResult {
        let address = rcpt.address.as_str();
        if msg.is_looping(address) {
            return Err(Failure::bounce(
                "5.4.6",
                format!("mail forwarding loop for {address}"),
            ));
        }
        let s = &self.settings;
        let unmapped_ids = (!posthorn_sys::is_root())
            .then(|| (posthorn_sys::uids().1, nix::unistd::getegid().as_raw()));
        let tables = VirtualTables {
            mailbox: &self.mailbox,
            uid: (!self.uid.is_empty()).then_some(&self.uid as &dyn posthorn_tables::Lookup),
            gid: (!self.gid.is_empty()).then_some(&self.gid as &dyn posthorn_tables::Lookup),
            base: &s.base,
            delimiter: &s.delimiter,
            minimum_uid: s.minimum_uid,
            unmapped_ids,
        };
        let target = route_virtual(&tables, address)?;
        let lines = prepend_lines(&msg.sender, Some(&address.to_lowercase()));
        let env = CopyEnvelope {
            sender: &msg.sender,
            arrival: SystemTime::now(),
            prepend: &lines,
        };
        let done = as_account(target.uid, target.gid, || {
            let mut content = msg.reader();
            if target.maildir {
                deliver_maildir(&target.path, &env, &mut content, s.mbox.size_limit)
                    .map(|_| "delivered to maildir".to_string())
            } else {
                deliver_mbox(&target.path, &env, &mut content, &s.mbox)
                    .map(|()| "delivered to mailbox".to_string())
            }
        });
        done.map_err(|e| Failure::defer("4.3.0", e))?
            .map_err(Failure::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepended_lines() {
        assert_eq!(
            prepend_lines("", Some("joe@example.org")),
            vec!["Return-Path: <>", "Delivered-To: joe@example.org"]
        );
        assert_eq!(
            prepend_lines("a b@x", None),
            vec!["Return-Path: <\"a b\"@x>"]
        );
    }

    #[test]
    fn command_env() {
        let step = Step {
            action: Action::Forward { addrs: vec![] },
            sender: "s@remote".into(),
            address: "Joe+Ext@Example.org".into(),
        };
        let joe = Account {
            name: "joe".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/joe".into(),
            shell: "/bin/bash".into(),
            gecos: String::new(),
        };
        let env = command_environment(
            &step,
            &joe,
            "orig@example.org",
            "+",
            &["A=b".into(), "POSTHORN_SURELY_UNSET".into()],
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/home/joe"));
        assert_eq!(get("USER"), Some("joe"));
        assert_eq!(get("LOGNAME"), Some("joe"));
        assert_eq!(get("SHELL"), Some("/bin/bash"));
        assert_eq!(get("SENDER"), Some("s@remote"));
        assert_eq!(get("RECIPIENT"), Some("Joe+Ext@Example.org"));
        assert_eq!(get("LOCAL"), Some("joe+ext"));
        assert_eq!(get("DOMAIN"), Some("example.org"));
        assert_eq!(get("EXTENSION"), Some("Ext"));
        assert_eq!(get("ORIGINAL_RECIPIENT"), Some("orig@example.org"));
        assert_eq!(get("A"), Some("b"));
        assert_eq!(get("POSTHORN_SURELY_UNSET"), None);
    }
}
