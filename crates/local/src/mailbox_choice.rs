//! Which mailbox a local user's mail goes to: `home_mailbox` (relative to the home directory)
//! when set, else `mail_spool_directory/USER`; a trailing `/` on either means Maildir, as in
//! Postfix.

use std::path::PathBuf;

use posthorn_sys::Account;

/// A mailbox location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxTarget {
    /// An mbox file.
    Mbox(PathBuf),
    /// A Maildir directory.
    Maildir(PathBuf),
}

/// Where to deliver, and whether the location is in the shared spool directory (where a
/// missing mailbox is created by root for the user, since users normally may not create
/// files in /var/mail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxChoice {
    /// The mailbox.
    pub target: MailboxTarget,
    /// True for `mail_spool_directory`, false for `home_mailbox`.
    pub in_spool: bool,
}

/// Chooses the mailbox of `account` from `home_mailbox` and `mail_spool_directory`.
pub fn choose_mailbox(home_mailbox: &str, spool: &str, account: &Account) -> MailboxChoice {
    let home_mailbox = home_mailbox.trim();
    if !home_mailbox.is_empty() {
        let path = account.home.join(home_mailbox.trim_start_matches('/'));
        let target = if home_mailbox.ends_with('/') {
            MailboxTarget::Maildir(path)
        } else {
            MailboxTarget::Mbox(path)
        };
        return MailboxChoice {
            target,
            in_spool: false,
        };
    }
    let spool = spool.trim();
    let path = PathBuf::from(spool).join(&account.name);
    let target = if spool.ends_with('/') {
        let mut dir = path.into_os_string();
        dir.push("/");
        MailboxTarget::Maildir(PathBuf::from(dir))
    } else {
        MailboxTarget::Mbox(path)
    };
    MailboxChoice {
        target,
        in_spool: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joe() -> Account {
        Account {
            name: "joe".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/joe".into(),
            shell: "/bin/sh".into(),
            gecos: String::new(),
        }
    }

    #[test]
    fn choices() {
        let c = choose_mailbox("", "/var/mail", &joe());
        assert_eq!(
            c,
            MailboxChoice {
                target: MailboxTarget::Mbox("/var/mail/joe".into()),
                in_spool: true
            }
        );
        let c = choose_mailbox("", "/var/mail/", &joe());
        assert_eq!(
            c,
            MailboxChoice {
                target: MailboxTarget::Maildir("/var/mail/joe/".into()),
                in_spool: true
            }
        );
        let c = choose_mailbox("Maildir/", "/var/mail", &joe());
        assert_eq!(
            c,
            MailboxChoice {
                target: MailboxTarget::Maildir("/home/joe/Maildir/".into()),
                in_spool: false
            }
        );
        let c = choose_mailbox("Mailbox", "/var/mail/", &joe());
        assert_eq!(
            c,
            MailboxChoice {
                target: MailboxTarget::Mbox("/home/joe/Mailbox".into()),
                in_spool: false
            }
        );
    }
}
