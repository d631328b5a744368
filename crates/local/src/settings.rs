//! The settings of local(8) and virtual(8), built once per process from main.cf (with the
//! master.cf `-o` overrides) and passed by reference.

use std::path::PathBuf;
use std::time::Duration;

use posthorn_config::Config;
use posthorn_mailbox::MboxOptions;

use crate::message::MEMORY_LIMIT;
use crate::privilege::SELF_EXE;
use crate::routing::{Classes, RouteSettings};

/// A parameter's expanded value, or "" when this build's parameter table does not know it
/// (so a missing table entry degrades to the documented default instead of a panic).
fn get(c: &Config, name: &str) -> String {
    if posthorn_config::effective_param(name).is_some() {
        c.get(name)
    } else {
        String::new()
    }
}

fn get_list(c: &Config, name: &str) -> Vec<String> {
    posthorn_config::split_list(&get(c, name))
}

fn or(value: String, default: &str) -> String {
    if value.trim().is_empty() {
        default.to_string()
    } else {
        value.trim().to_string()
    }
}

/// Mailbox options from a lock list (`mailbox_delivery_lock`, `virtual_mailbox_lock`) and a
/// size limit.
pub fn mbox_options(locks: &[String], size_limit: u64) -> MboxOptions {
    let mut o = MboxOptions {
        dotlock: false,
        fcntl_lock: false,
        size_limit,
        ..MboxOptions::default()
    };
    for l in locks {
        match l.to_ascii_lowercase().as_str() {
            "dotlock" => o.dotlock = true,
            "fcntl" => o.fcntl_lock = true,
            other => log::warn!(
                "unsupported mailbox lock method \"{other}\" (posthorn supports fcntl and dotlock)"
            ),
        }
    }
    o
}

/// How commands are run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSettings {
    /// `local_command_shell` (empty: `/bin/sh`).
    pub shell: String,
    /// `command_time_limit`.
    pub time_limit: Duration,
    /// `export_environment`: `NAME` (copied from posthorn's environment) or `NAME=value`.
    pub export_environment: Vec<String>,
    /// The run-as helper used when root (normally this program, `/proc/self/exe`).
    pub helper: String,
}

/// Which deliveries get a `Delivered-To:` header besides mailboxes
/// (`prepend_delivered_header`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrependDelivered {
    /// `command`
    pub command: bool,
    /// `file`
    pub file: bool,
    /// `forward`
    pub forward: bool,
}

/// local(8)'s settings.
#[derive(Clone, Debug)]
pub struct LocalSettings {
    /// What routing needs.
    pub route: RouteSettings,
    /// `alias_maps`.
    pub alias_maps: String,
    /// `home_mailbox`.
    pub home_mailbox: String,
    /// `mail_spool_directory`.
    pub mail_spool_directory: String,
    /// `mailbox_delivery_lock`, `mailbox_size_limit` (also for `/file` targets).
    pub mbox: MboxOptions,
    /// Command deliveries.
    pub command: CommandSettings,
    /// `prepend_delivered_header`.
    pub prepend_delivered: PrependDelivered,
    /// Messages up to this size are held in memory.
    pub memory_limit: u64,
}

impl LocalSettings {
    /// Reads the settings from the configuration.
    pub fn from_config(c: &Config) -> LocalSettings {
        let local_domains = get_list(c, "mydestination")
            .into_iter()
            .filter(|d| {
                let table = d.contains(':') || d.starts_with('/');
                if table {
                    log::warn!(
                        "mydestination: table \"{d}\" is not supported by local(8); ignored"
                    );
                }
                !table
            })
            .map(|d| d.trim_end_matches('.').to_lowercase())
            .collect();
        let mut prepend = PrependDelivered::default();
        for item in get_list(c, "prepend_delivered_header") {
            match item.to_ascii_lowercase().as_str() {
                "command" => prepend.command = true,
                "file" => prepend.file = true,
                "forward" => prepend.forward = true,
                other => log::warn!("prepend_delivered_header: unknown value \"{other}\""),
            }
        }
        LocalSettings {
            route: RouteSettings {
                myorigin: get(c, "myorigin"),
                local_domains,
                recipient_delimiter: get(c, "recipient_delimiter"),
                allow_commands: Classes::from_list(&get_list(c, "allow_mail_to_commands")),
                allow_files: Classes::from_list(&get_list(c, "allow_mail_to_files")),
                forward_path: get_list(c, "forward_path"),
                default_privs: or(get(c, "default_privs"), "nobody"),
                mailbox_command: get(c, "mailbox_command").trim().to_string(),
                luser_relay: get(c, "luser_relay").trim().to_string(),
            },
            alias_maps: get(c, "alias_maps"),
            home_mailbox: get(c, "home_mailbox"),
            mail_spool_directory: or(get(c, "mail_spool_directory"), "/var/mail"),
            mbox: mbox_options(
                &get_list(c, "mailbox_delivery_lock"),
                c.get_size("mailbox_size_limit"),
            ),
            command: CommandSettings {
                shell: or(get(c, "local_command_shell"), "/bin/sh"),
                time_limit: c.get_duration("command_time_limit"),
                export_environment: get_list(c, "export_environment"),
                helper: SELF_EXE.to_string(),
            },
            prepend_delivered: prepend,
            memory_limit: MEMORY_LIMIT,
        }
    }
}

/// virtual(8)'s settings.
#[derive(Clone, Debug)]
pub struct VirtualSettings {
    /// `virtual_mailbox_base`.
    pub base: PathBuf,
    /// `recipient_delimiter`.
    pub delimiter: String,
    /// `virtual_minimum_uid`.
    pub minimum_uid: u32,
    /// `virtual_mailbox_lock`, `virtual_mailbox_limit`.
    pub mbox: MboxOptions,
    /// `virtual_mailbox_maps`.
    pub mailbox_maps: String,
    /// `virtual_uid_maps`.
    pub uid_maps: String,
    /// `virtual_gid_maps`.
    pub gid_maps: String,
    /// Messages up to this size are held in memory.
    pub memory_limit: u64,
}

impl VirtualSettings {
    /// Reads the settings from the configuration.
    pub fn from_config(c: &Config) -> VirtualSettings {
        VirtualSettings {
            base: PathBuf::from(get(c, "virtual_mailbox_base").trim()),
            delimiter: get(c, "recipient_delimiter"),
            minimum_uid: u32::try_from(c.get_int("virtual_minimum_uid")).unwrap_or(100),
            mbox: mbox_options(
                &get_list(c, "virtual_mailbox_lock"),
                c.get_size("virtual_mailbox_limit"),
            ),
            mailbox_maps: get(c, "virtual_mailbox_maps"),
            uid_maps: get(c, "virtual_uid_maps"),
            gid_maps: get(c, "virtual_gid_maps"),
            memory_limit: MEMORY_LIMIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_main_cf() {
        let c = Config::parse_str(
            "myhostname = mail.example.test\nmydomain = example.test\nrecipient_delimiter = +\n\
             allow_mail_to_files = alias\nmailbox_delivery_lock = fcntl\nmailbox_size_limit = 1000\n\
             mydestination = $myhostname, localhost, hash:/etc/x\nvirtual_mailbox_base = /srv/v\n\
             virtual_uid_maps = static:5000\nvirtual_minimum_uid = 1000\nprepend_delivered_header = forward\n",
            "main.cf",
        )
        .unwrap();
        let l = LocalSettings::from_config(&c);
        assert_eq!(l.route.myorigin, "mail.example.test");
        assert_eq!(
            l.route.local_domains,
            vec!["mail.example.test", "localhost"]
        );
        assert!(l.route.is_local_domain("MAIL.example.test."));
        assert_eq!(
            l.route.allow_files,
            Classes {
                alias: true,
                forward: false,
                include: false
            }
        );
        assert_eq!(
            l.route.allow_commands,
            Classes {
                alias: true,
                forward: true,
                include: false
            }
        );
        assert_eq!(
            l.route.forward_path,
            vec![
                "$home/.forward${recipient_delimiter}${extension}",
                "$home/.forward"
            ]
        );
        assert_eq!(l.route.default_privs, "nobody");
        assert_eq!(l.alias_maps, "hash:/etc/aliases");
        assert_eq!(l.mail_spool_directory, "/var/mail");
        assert_eq!(
            (l.mbox.dotlock, l.mbox.fcntl_lock, l.mbox.size_limit),
            (false, true, 1000)
        );
        assert_eq!(l.command.shell, "/bin/sh");
        assert_eq!(l.command.time_limit, Duration::from_secs(1000));
        assert_eq!(
            l.prepend_delivered,
            PrependDelivered {
                command: false,
                file: false,
                forward: true
            }
        );
        let v = VirtualSettings::from_config(&c);
        assert_eq!(v.base, PathBuf::from("/srv/v"));
        assert_eq!(
            (v.minimum_uid, v.uid_maps.as_str(), v.gid_maps.as_str()),
            (1000, "static:5000", "")
        );
        assert_eq!(
            (v.mbox.dotlock, v.mbox.fcntl_lock, v.mbox.size_limit),
            (true, true, 51_200_000)
        );
    }
}
