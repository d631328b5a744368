//! The expansion rules of local(8) routing (see [`crate::routing`] for the list): a
//! recursive walk over aliases, the passwd database, `.forward` and `:include:` files that
//! produces the [`Step`]s of a plan, before [`crate::routing::plan_local`] drops duplicates
//! and groups forwards.

use std::collections::HashSet;
use std::path::Path;

use posthorn_message::{qualify, split_address};
use posthorn_sys::Account;
use posthorn_tables::{split_alias_targets, split_local_part};

use crate::aliases::{AliasHit, IncludeError};
use crate::forward::{ExpandAttrs, forward_paths, local_expand, parse_forward};
use crate::routing::{Action, Class, Lookups, MAX_DEPTH, RouteSettings, Step};
use crate::status::Failure;

/// Expands the (qualified) local `address`: the steps in the order found, duplicates and
/// separate forwards included.
pub(crate) fn expand(
    s: &RouteSettings,
    lk: &dyn Lookups,
    delivered_to: &[String],
    address: &str,
    sender: &str,
) -> Vec<Step> {
    let mut p = Planner {
        s,
        lk,
        delivered: delivered_to,
        steps: Vec::new(),
        seen: HashSet::new(),
    };
    p.local(address, sender, 0, false);
    p.steps
}

/// Whose rights commands, files and include files of a target list use.
#[derive(Clone, Debug)]
enum Privs {
    /// This account (root means `default_privs`).
    Of(Account),
    /// The owner of a table or include file (0 means `default_privs`).
    Uid(u32),
    /// `default_privs`.
    Default,
}

/// The context of a target list.
#[derive(Clone, Debug)]
struct Ctx {
    class: Class,
    privs: Privs,
    /// The alias name or `.forward` owner: a bare reference to it is a self-reference.
    self_name: String,
    /// For `.forward`: the user, whose mailbox a self-reference means.
    owner: Option<Account>,
    sender: String,
}

struct Planner<'a> {
    s: &'a RouteSettings,
    lk: &'a dyn Lookups,
    delivered: &'a [String],
    steps: Vec<Step>,
    /// Local addresses and include files already expanded for this recipient.
    seen: HashSet<String>,
}

impl Planner<'_> {
    fn push(&mut self, action: Action, sender: &str, address: &str) {
        self.steps.push(Step {
            action,
            sender: sender.to_string(),
            address: address.to_string(),
        });
    }

    fn fail(&mut self, f: Failure, sender: &str, address: &str) {
        let a = if f.is_permanent() {
            Action::Bounce(f)
        } else {
            Action::Defer(f)
        };
        self.push(a, sender, address);
    }

    fn loop_bounce(&mut self, address: &str, sender: &str) {
        self.fail(
            Failure::bounce("5.4.6", format!("mail forwarding loop for {address}")),
            sender,
            address,
        );
    }

    /// A local address (qualified): loop checks, aliases, passwd, `.forward`, mailbox.
    fn local(&mut self, address: &str, sender: &str, depth: usize, skip_alias: bool) {
        let lower = address.to_lowercase();
        if depth > MAX_DEPTH || self.delivered.contains(&lower) {
            return self.loop_bounce(address, sender);
        }
        // An address met again (an alias loop, or the same name twice) is handled once.
        if !self.seen.insert(format!("local\0{lower}\0{skip_alias}")) {
            return;
        }
        let (localpart, _) = split_address(address);
        let (user, extension) = split_local_part(localpart, &self.s.recipient_delimiter);
        let user = user.to_lowercase();
        if !skip_alias {
            let mut keys = vec![localpart.to_lowercase()];
            if extension.is_some() {
                keys.push(user.clone());
            }
            for key in keys {
                match self.lk.alias(&key) {
                    Err(e) => {
                        log::warn!("{e}");
                        return self.fail(
                            Failure::defer("4.3.0", "alias database unavailable"),
                            sender,
                            address,
                        );
                    }
                    Ok(Some(hit)) => return self.alias(&key, &hit, address, sender, depth),
                    Ok(None) => {}
                }
            }
        }
        let account = match self.lk.user(&user) {
            Ok(Some(a)) => a,
            Ok(None) => return self.unknown(&user, address, sender, depth),
            Err(e) => {
                log::warn!("user lookup for \"{user}\": {e}");
                return self.fail(
                    Failure::defer("4.3.0", format!("user lookup error for \"{user}\"")),
                    sender,
                    address,
                );
            }
        };
        let paths = forward_paths(
            &self.s.forward_path,
            &attrs(
                address,
                &self.s.recipient_delimiter,
                &account,
                &user,
                &mut String::new(),
            ),
        );
        match self.lk.forward_file(&account, &paths) {
            Err(e) => {
                log::warn!("{e}");
                return self.fail(Failure::defer("4.3.0", e), sender, address);
            }
            Ok(Some(f)) => {
                let targets = parse_forward(&f.text);
                if !targets.is_empty() {
                    let ctx = Ctx {
                        class: Class::Forward,
                        privs: Privs::Of(account.clone()),
                        self_name: user,
                        owner: Some(account),
                        sender: sender.to_string(),
                    };
                    return self.targets(&targets, &ctx, address, depth + 1);
                }
            }
            Ok(None) => {}
        }
        self.mailbox(account, address, sender);
    }

    /// The final step for an account: `mailbox_command` or the mailbox.
    fn mailbox(&mut self, account: Account, address: &str, sender: &str) {
        if self.s.mailbox_command.is_empty() {
            return self.push(Action::Mailbox { account }, sender, address);
        }
        let mut scratch = String::new();
        let user = account.name.clone();
        let expanded = local_expand(
            &self.s.mailbox_command,
            &attrs(
                address,
                &self.s.recipient_delimiter,
                &account,
                &user,
                &mut scratch,
            ),
            false,
        );
        match expanded {
            Ok(command) => match self.resolve(&Privs::Of(account)) {
                Ok(run_as) => self.push(Action::Command { command, run_as }, sender, address),
                Err(f) => self.fail(f, sender, address),
            },
            Err(e) => {
                log::warn!("mailbox_command: {e}");
                self.fail(Failure::config_error(), sender, address);
            }
        }
    }

    /// A name that is neither an alias nor a user: `luser_relay`, or a bounce.
    fn unknown(&mut self, user: &str, address: &str, sender: &str, depth: usize) {
        if self.s.luser_relay.is_empty() {
            return self.fail(
                Failure::bounce("5.1.1", format!("unknown user: \"{user}\"")),
                sender,
                address,
            );
        }
        let (localpart, domain) = split_address(address);
        let (_, ext) = split_local_part(localpart, &self.s.recipient_delimiter);
        let a = ExpandAttrs {
            user,
            extension: ext.map_or("", |(_, e)| e),
            recipient: address,
            domain: domain.unwrap_or(""),
            local: localpart,
            ..ExpandAttrs::default()
        };
        let mut delim = String::new();
        if let Some((d, _)) = ext {
            delim.push(d);
        }
        let a = ExpandAttrs {
            recipient_delimiter: &delim,
            ..a
        };
        match local_expand(&self.s.luser_relay, &a, true) {
            Ok(relay) => {
                let ctx = Ctx {
                    class: Class::Alias,
                    privs: Privs::Default,
                    self_name: String::new(),
                    owner: None,
                    sender: sender.to_string(),
                };
                self.targets(&split_alias_targets(&relay), &ctx, address, depth + 1);
            }
            Err(e) => {
                log::warn!("luser_relay: {e}");
                self.fail(Failure::config_error(), sender, address);
            }
        }
    }

    /// Alias `name` matched for `address`.
    fn alias(&mut self, name: &str, hit: &AliasHit, address: &str, sender: &str, depth: usize) {
        let mut sender = sender.to_string();
        if !name.starts_with("owner-") {
            let owner = format!("owner-{name}");
            match self.lk.alias(&owner) {
                Ok(Some(_)) => sender = qualify(&owner, &self.s.myorigin),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("{e}");
                    return self.fail(
                        Failure::defer("4.3.0", "alias database unavailable"),
                        &sender,
                        address,
                    );
                }
            }
        }
        let ctx = Ctx {
            class: Class::Alias,
            privs: Privs::Uid(hit.owner),
            self_name: name.to_string(),
            owner: None,
            sender,
        };
        self.targets(&split_alias_targets(&hit.value), &ctx, address, depth + 1);
    }

    /// Expands the targets of an alias, `.forward` or include file.
    fn targets(&mut self, targets: &[String], ctx: &Ctx, address: &str, depth: usize) {
        for target in targets {
            let t = target.trim();
            if let Some(command) = t.strip_prefix('|') {
                if !self.s.allow_commands.allows(ctx.class) {
                    self.fail(
                        Failure::bounce("5.7.1", "mail to command is restricted"),
                        &ctx.sender,
                        address,
                    );
                    continue;
                }
                match self.resolve(&ctx.privs) {
                    Ok(run_as) => self.push(
                        Action::Command {
                            command: command.to_string(),
                            run_as,
                        },
                        &ctx.sender,
                        address,
                    ),
                    Err(f) => self.fail(f, &ctx.sender, address),
                }
            } else if t.starts_with('/') {
                if !self.s.allow_files.allows(ctx.class) {
                    self.fail(
                        Failure::bounce("5.7.1", "mail to file is restricted"),
                        &ctx.sender,
                        address,
                    );
                    continue;
                }
                match self.resolve(&ctx.privs) {
                    Ok(run_as) => self.push(
                        Action::File {
                            path: t.to_string(),
                            run_as,
                        },
                        &ctx.sender,
                        address,
                    ),
                    Err(f) => self.fail(f, &ctx.sender, address),
                }
            } else if t
                .get(..9)
                .is_some_and(|p| p.eq_ignore_ascii_case(":include:"))
            {
                self.include(t[9..].trim(), ctx, address, depth);
            } else if let Some(name) = t.strip_prefix('\\') {
                self.backslash(name, ctx, address);
            } else if !t.is_empty() {
                self.address(t, ctx, address, depth);
            }
        }
    }

    /// An address target: local ones are expanded again, others forwarded.
    fn address(&mut self, t: &str, ctx: &Ctx, parent: &str, depth: usize) {
        let (localpart, domain) = split_address(t);
        if let Some(d) = domain
            && !self.s.is_local_domain(d)
        {
            return self.push(
                Action::Forward {
                    addrs: vec![t.to_string()],
                },
                &ctx.sender,
                parent,
            );
        }
        let full = qualify(t, &self.s.myorigin);
        let is_self = ctx.class != Class::Include && localpart.eq_ignore_ascii_case(&ctx.self_name);
        match (is_self, &ctx.owner) {
            // `joe` in joe's own .forward: joe's mailbox.
            (true, Some(owner)) => self.mailbox(owner.clone(), parent, &ctx.sender),
            // `root: root, ...`: root without alias expansion.
            (true, None) => self.local(&full, &ctx.sender, depth, true),
            (false, _) => self.local(&full, &ctx.sender, depth, false),
        }
    }

    /// `\user`: that user's mailbox, without aliases or `.forward`.
    fn backslash(&mut self, name: &str, ctx: &Ctx, parent: &str) {
        let (localpart, domain) = split_address(name);
        if let Some(d) = domain
            && !self.s.is_local_domain(d)
        {
            return self.push(
                Action::Forward {
                    addrs: vec![name.to_string()],
                },
                &ctx.sender,
                parent,
            );
        }
        let (user, _) = split_local_part(localpart, &self.s.recipient_delimiter);
        let user = user.to_lowercase();
        match self.lk.user(&user) {
            Ok(Some(account)) => self.mailbox(account, parent, &ctx.sender),
            Ok(None) => self.fail(
                Failure::bounce("5.1.1", format!("unknown user: \"{user}\"")),
                &ctx.sender,
                parent,
            ),
            Err(e) => {
                log::warn!("user lookup for \"{user}\": {e}");
                self.fail(
                    Failure::defer("4.3.0", format!("user lookup error for \"{user}\"")),
                    &ctx.sender,
                    parent,
                );
            }
        }
    }

    /// `:include:/path`.
    fn include(&mut self, path: &str, ctx: &Ctx, address: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return self.loop_bounce(address, &ctx.sender);
        }
        if !path.starts_with('/') {
            log::warn!(":include:{path} uses a relative path");
            return self.fail(
                Failure::bounce("5.3.5", "mail system configuration error"),
                &ctx.sender,
                address,
            );
        }
        if !self.seen.insert(format!("include\0{path}")) {
            return;
        }
        let reader = match self.resolve(&ctx.privs) {
            Ok(a) => a,
            Err(f) => return self.fail(f, &ctx.sender, address),
        };
        match self.lk.include_file(Path::new(path), &reader) {
            Ok(f) => {
                let inner = Ctx {
                    class: Class::Include,
                    privs: Privs::Uid(f.owner),
                    self_name: String::new(),
                    owner: None,
                    sender: ctx.sender.clone(),
                };
                self.targets(&parse_forward(&f.text), &inner, address, depth + 1);
            }
            Err(IncludeError::Missing(reason)) => {
                self.fail(Failure::bounce("5.3.0", reason), &ctx.sender, address)
            }
            Err(IncludeError::Other(reason)) => {
                log::warn!("{reason}");
                self.fail(Failure::defer("4.3.0", reason), &ctx.sender, address);
            }
        }
    }

    /// The account whose rights apply; root becomes `default_privs`.
    fn resolve(&self, privs: &Privs) -> Result<Account, Failure> {
        match privs {
            Privs::Of(a) if a.uid != 0 => return Ok(a.clone()),
            Privs::Uid(uid) if *uid != 0 => {
                return match self.lk.user_by_uid(*uid) {
                    Ok(Some(a)) => Ok(a),
                    Ok(None) => {
                        log::warn!(
                            "no user with uid {uid} (owner of an alias table or include file)"
                        );
                        Err(Failure::config_error())
                    }
                    Err(e) => Err(Failure::defer(
                        "4.3.0",
                        format!("user lookup error for uid {uid}: {e}"),
                    )),
                };
            }
            _ => {}
        }
        match self.lk.user(&self.s.default_privs) {
            Ok(Some(a)) if a.uid != 0 => Ok(a),
            Ok(Some(_)) => {
                log::warn!(
                    "default_privs user {} must not be root",
                    self.s.default_privs
                );
                Err(Failure::config_error())
            }
            Ok(None) => {
                log::warn!("unknown default_privs user \"{}\"", self.s.default_privs);
                Err(Failure::config_error())
            }
            Err(e) => Err(Failure::defer(
                "4.3.0",
                format!("user lookup error for \"{}\": {e}", self.s.default_privs),
            )),
        }
    }
}

/// The expansion attributes for `address` delivered to `account`. `delim` is scratch space
/// for the delimiter character found in the address.
fn attrs<'a>(
    address: &'a str,
    delimiters: &str,
    account: &'a Account,
    user: &'a str,
    delim: &'a mut String,
) -> ExpandAttrs<'a> {
    let (localpart, domain) = split_address(address);
    let (_, ext) = split_local_part(localpart, delimiters);
    if let Some((d, _)) = ext {
        delim.push(d);
    }
    let delim: &'a String = delim;
    ExpandAttrs {
        home: account.home.to_str().unwrap_or(""),
        user,
        shell: account.shell.to_str().unwrap_or(""),
        extension: ext.map_or("", |(_, e)| e),
        recipient_delimiter: delim,
        recipient: address,
        domain: domain.unwrap_or(""),
        local: localpart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliases::{AliasMaps, IncludeFile};
    use crate::forward::ForwardFile;
    use crate::routing::{Classes, Plan, Recipient, plan_local};
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn account(name: &str, uid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid: uid,
            home: PathBuf::from(format!("/home/{name}")),
            shell: PathBuf::from("/bin/sh"),
            gecos: String::new(),
        }
    }

    /// Aliases from an inline table, a fixed passwd, files from a map.
    struct Fake {
        aliases: AliasMaps,
        alias_owner: u32,
        users: Vec<Account>,
        files: HashMap<String, (String, u32)>,
    }

    impl Fake {
        fn new(aliases: &str) -> Fake {
            Fake {
                aliases: AliasMaps::open(&format!("inline:{{ {aliases} }}")),
                alias_owner: 0,
                users: vec![
                    account("root", 0),
                    account("nobody", 65534),
                    account("joe", 1000),
                    account("ann", 1001),
                    account("list", 1002),
                ],
                files: HashMap::new(),
            }
        }
        fn file(mut self, path: &str, text: &str, owner: u32) -> Fake {
            self.files.insert(path.into(), (text.into(), owner));
            self
        }
    }

    impl Lookups for Fake {
        fn alias(&self, key: &str) -> Result<Option<AliasHit>, String> {
            if key == "broken" {
                return Err("table on fire".into());
            }
            Ok(self.aliases.lookup(key)?.map(|h| AliasHit {
                owner: self.alias_owner,
                ..h
            }))
        }
        fn user(&self, name: &str) -> Result<Option<Account>, String> {
            Ok(self.users.iter().find(|a| a.name == name).cloned())
        }
        fn user_by_uid(&self, uid: u32) -> Result<Option<Account>, String> {
            Ok(self.users.iter().find(|a| a.uid == uid).cloned())
        }
        fn forward_file(
            &self,
            _user: &Account,
            paths: &[PathBuf],
        ) -> Result<Option<ForwardFile>, String> {
            Ok(paths.iter().find_map(|p| {
                let key = p.to_str().unwrap_or("");
                self.files.get(key).map(|(text, _)| ForwardFile {
                    path: p.clone(),
                    text: text.clone(),
                })
            }))
        }
        fn include_file(
            &self,
            path: &Path,
            _reader: &Account,
        ) -> Result<IncludeFile, IncludeError> {
            match self.files.get(path.to_str().unwrap_or("")) {
                Some((text, owner)) => Ok(IncludeFile {
                    text: text.clone(),
                    owner: *owner,
                }),
                None => Err(IncludeError::Missing(format!(
                    "cannot open include file {}: No such file or directory",
                    path.display()
                ))),
            }
        }
    }

    fn settings() -> RouteSettings {
        RouteSettings {
            myorigin: "example.org".into(),
            local_domains: vec!["example.org".into(), "localhost".into()],
            recipient_delimiter: "+".into(),
            allow_commands: Classes {
                alias: true,
                forward: true,
                include: false,
            },
            allow_files: Classes {
                alias: true,
                forward: true,
                include: false,
            },
            forward_path: vec![
                "$home/.forward${recipient_delimiter}${extension}".into(),
                "$home/.forward".into(),
            ],
            default_privs: "nobody".into(),
            ..RouteSettings::default()
        }
    }

    fn plan_with(s: &RouteSettings, lk: &Fake, addr: &str) -> Plan {
        plan_local(
            s,
            lk,
            &[],
            &Recipient {
                address: addr,
                sender: "sender@remote.test",
            },
        )
    }

    fn plan(lk: &Fake, addr: &str) -> Vec<String> {
        plan_with(&settings(), lk, addr).summary()
    }

    #[test]
    fn plain_users_and_unknowns() {
        let lk = Fake::new("");
        assert_eq!(plan(&lk, "joe@example.org"), vec!["mailbox joe"]);
        assert_eq!(plan(&lk, "Joe+Stuff@example.org"), vec!["mailbox joe"]);
        assert_eq!(plan(&lk, "joe"), vec!["mailbox joe"]);
        assert_eq!(
            plan(&lk, "Nosuch+x@example.org"),
            vec!["bounce 5.1.1 unknown user: \"nosuch\""]
        );
    }

    #[test]
    fn aliases_expand_recursively() {
        let lk = Fake::new(
            "postmaster=root, root=joe, {staff = ann, joe@localhost, friend@remote.test, other@remote.test}, joe+lists=ann",
        );
        assert_eq!(plan(&lk, "postmaster@example.org"), vec!["mailbox joe"]);
        assert_eq!(
            plan(&lk, "staff@example.org"),
            vec![
                "mailbox ann",
                "mailbox joe",
                "forward friend@remote.test, other@remote.test"
            ]
        );
        // user+ext is looked up before user.
        assert_eq!(plan(&lk, "joe+lists@example.org"), vec!["mailbox ann"]);
        assert_eq!(plan(&lk, "joe+other@example.org"), vec!["mailbox joe"]);
    }

    #[test]
    fn self_reference_and_backslash() {
        let lk = Fake::new("{root = root, ann}, {joe = \\joe, ann}, a=b, b=a").file(
            "/home/ann/.forward",
            "\\ann, ann, joe@example.org\n",
            1001,
        );
        assert_eq!(
            plan(&lk, "root@example.org"),
            vec!["mailbox root", "mailbox ann", "mailbox joe"]
        );
        assert_eq!(
            plan(&lk, "joe@example.org"),
            vec!["mailbox joe", "mailbox ann"]
        );
        // An alias loop delivers nothing: the merge turns that into a loop bounce.
        assert!(plan(&lk, "a@example.org").is_empty());
    }

    #[test]
    fn commands_files_and_privileges() {
        let mut lk = Fake::new(
            "{log = |/usr/bin/logger, /var/log/copy, :include:/etc/mail/list}, sys=|/bin/true",
        );
        lk = lk.file(
            "/etc/mail/list",
            "# members\nann\n|/bin/cat\n/tmp/f\n",
            1002,
        );
        assert_eq!(
            plan(&lk, "log@example.org"),
            vec![
                "command /usr/bin/logger as nobody",
                "file /var/log/copy as nobody",
                "mailbox ann",
                "bounce 5.7.1 mail to command is restricted",
                "bounce 5.7.1 mail to file is restricted"
            ]
        );
        let mut s = settings();
        s.allow_commands.include = true;
        s.allow_files = Classes::default();
        // Include files use their owner's rights.
        assert_eq!(
            plan_with(&s, &lk, "log@example.org").summary(),
            vec![
                "command /usr/bin/logger as nobody",
                "bounce 5.7.1 mail to file is restricted",
                "mailbox ann",
                "command /bin/cat as list"
            ]
        );
        // A table owned by a user: that user's rights.
        lk.alias_owner = 1000;
        assert_eq!(
            plan(&lk, "sys@example.org"),
            vec!["command /bin/true as joe"]
        );
        // default_privs missing: configuration error.
        lk.alias_owner = 0;
        s.default_privs = "nosuchuser".into();
        assert_eq!(
            plan_with(&s, &lk, "sys@example.org").summary(),
            vec!["defer 4.3.5 mail system configuration error"]
        );
        s.default_privs = "root".into();
        assert_eq!(
            plan_with(&s, &lk, "sys@example.org").summary(),
            vec!["defer 4.3.5 mail system configuration error"]
        );
    }

    #[test]
    fn owner_alias_sets_the_sender() {
        let lk = Fake::new("{list = ann, x@remote.test}, owner-list=joe, other=y@remote.test");
        let p = plan_with(&settings(), &lk, "list@example.org");
        assert_eq!(p.summary(), vec!["mailbox ann", "forward x@remote.test"]);
        assert!(p.steps.iter().all(|s| s.sender == "owner-list@example.org"));
        let p = plan_with(&settings(), &lk, "other@example.org");
        assert_eq!(p.steps[0].sender, "sender@remote.test");
    }

    #[test]
    fn dot_forward() {
        let lk = Fake::new("")
            .file(
                "/home/joe/.forward",
                "joe, \"|/usr/bin/vacation joe\"\nann@remote.test, /home/joe/archive\n",
                1000,
            )
            .file("/home/joe/.forward+list", "ann\n", 1000)
            .file("/home/ann/.forward", "# empty\n", 1001);
        assert_eq!(
            plan(&lk, "joe@example.org"),
            vec![
                "mailbox joe",
                "command /usr/bin/vacation joe as joe",
                "forward ann@remote.test",
                "file /home/joe/archive as joe"
            ]
        );
        assert_eq!(plan(&lk, "joe+list@example.org"), vec!["mailbox ann"]);
        // A .forward without targets is no .forward.
        assert_eq!(plan(&lk, "ann@example.org"), vec!["mailbox ann"]);
        let mut s = settings();
        s.allow_commands.forward = false;
        assert_eq!(
            plan_with(&s, &lk, "joe@example.org").summary()[1],
            "bounce 5.7.1 mail to command is restricted"
        );
        // root's .forward commands run as default_privs.
        let lk = Fake::new("").file("/home/root/.forward", "|/bin/x\n", 0);
        assert_eq!(
            plan(&lk, "root@example.org"),
            vec!["command /bin/x as nobody"]
        );
    }

    #[test]
    fn loops_and_errors() {
        let lk = Fake::new("");
        let delivered = vec!["joe@example.org".to_string()];
        let p = plan_local(
            &settings(),
            &lk,
            &delivered,
            &Recipient {
                address: "JOE@example.org",
                sender: "",
            },
        );
        assert_eq!(
            p.summary(),
            vec!["bounce 5.4.6 mail forwarding loop for JOE@example.org"]
        );
        let p = plan_local(
            &settings(),
            &lk,
            &delivered,
            &Recipient {
                address: "ann@example.org",
                sender: "",
            },
        );
        assert_eq!(p.summary(), vec!["mailbox ann"]);

        let lk = Fake::new("x=broken, {inc = :include:relative, :include:/missing}");
        let p = plan_with(&settings(), &lk, "x@example.org");
        assert_eq!(p.summary(), vec!["defer 4.3.0 alias database unavailable"]);
        assert_eq!(p.deferral().unwrap().dsn, "4.3.0");
        assert_eq!(
            plan(&lk, "inc@example.org"),
            vec![
                "bounce 5.3.5 mail system configuration error",
                "bounce 5.3.0 cannot open include file /missing: No such file or directory"
            ]
        );
        // Deep but finite nesting is fine; a chain longer than MAX_DEPTH is a loop.
        let chain: Vec<String> = (0..150).map(|i| format!("n{i}=n{}", i + 1)).collect();
        let lk = Fake::new(&chain.join(", "));
        assert_eq!(
            plan(&lk, "n140@example.org"),
            vec!["bounce 5.1.1 unknown user: \"n150\""]
        );
        assert_eq!(
            plan(&lk, "n0@example.org"),
            vec!["bounce 5.4.6 mail forwarding loop for n101@example.org"]
        );
    }

    #[test]
    fn mailbox_command_and_luser_relay() {
        let lk = Fake::new("");
        let mut s = settings();
        s.mailbox_command = "/usr/bin/procmail -a \"${extension}\" $user".into();
        assert_eq!(
            plan_with(&s, &lk, "joe+x@example.org").summary(),
            vec!["command /usr/bin/procmail -a \"x\" joe as joe"]
        );
        s.mailbox_command.clear();
        s.luser_relay = "catchall+$user@remote.test".into();
        assert_eq!(
            plan_with(&s, &lk, "who@example.org").summary(),
            vec!["forward catchall+who@remote.test"]
        );
        s.luser_relay = "ann".into();
        assert_eq!(
            plan_with(&s, &lk, "who@example.org").summary(),
            vec!["mailbox ann"]
        );
    }
}
