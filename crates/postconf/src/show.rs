//! Which main.cf parameters exist and what they are set to, for `postconf`, `-d`, `-n`, `NAME`
//! and `-x`; the `name = value` line format; and the "unused parameter" findings.
//!
//! Parameter classes, as in Postfix: *builtin* (the table, [`posthorn_config::PARAMS`]),
//! *service* (`<service>_<suffix>` for master.cf services that run a delivery agent, defaulting
//! to `$<default parameter>`), and *user* (a name that main.cf or master.cf sets and that
//! some value refers to as `$name`). Other names that main.cf sets are "unused".

use std::collections::BTreeSet;

use posthorn_config::{Config, DefaultValue, PER_TRANSPORT, effective_param, param};

use crate::args::Classes;
use crate::master::Entry;

/// Lines longer than this are folded with `-f`.
const LINE_LIMIT: usize = 80;

/// Indentation of folded lines.
const INDENT: &str = "    ";

/// Programs whose master.cf services get per-transport parameters (Postfix's delivery
/// agents), and whether they get all of them or only `_time_limit` (spawn).
const DELIVERY_AGENTS: &[(&str, Suffixes)] = &[
    ("local", Suffixes::Delivery),
    ("virtual", Suffixes::Delivery),
    ("smtp", Suffixes::Delivery),
    ("lmtp", Suffixes::Delivery),
    ("error", Suffixes::Delivery),
    ("pipe", Suffixes::Pipe),
    ("spawn", Suffixes::TimeLimitOnly),
];

/// Which [`PER_TRANSPORT`] suffixes a delivery agent's services get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suffixes {
    /// All but `time_limit`.
    Delivery,
    /// All of them.
    Pipe,
    /// Only `time_limit`.
    TimeLimitOnly,
}

/// The parameter name space of one postconf run.
pub struct Catalog<'c> {
    /// Values come from here (built-in defaults only with `-d`).
    config: &'c Config,
    /// `-d`: ignore main.cf; no user-defined parameters.
    defaults_only: bool,
    /// Per-transport names derived from master.cf services.
    service: BTreeSet<String>,
    /// Names that some main.cf or master.cf value refers to as `$name`.
    referenced: BTreeSet<String>,
}

impl<'c> Catalog<'c> {
    /// Builds the name space from a configuration and the master.cf entries.
    pub fn new(config: &'c Config, entries: &[Entry], defaults_only: bool) -> Catalog<'c> {
        let mut service = BTreeSet::new();
        for entry in entries {
            let Some((_, suffixes)) = DELIVERY_AGENTS.iter().find(|(p, _)| *p == entry.command())
            else {
                continue;
            };
            for (suffix, _) in PER_TRANSPORT {
                let wanted = match suffixes {
                    Suffixes::Pipe => true,
                    Suffixes::Delivery => *suffix != "time_limit",
                    Suffixes::TimeLimitOnly => *suffix == "time_limit",
                };
                if wanted {
                    service.insert(format!("{}_{suffix}", entry.name()));
                }
            }
        }
        let mut referenced = BTreeSet::new();
        if !defaults_only {
            for name in config.explicit_names() {
                if let Some(value) = config.raw(&name) {
                    referenced_names(&value, &mut referenced);
                }
            }
            for entry in entries {
                for (_, value) in entry.overrides() {
                    referenced_names(value, &mut referenced);
                }
            }
        }
        Catalog {
            config,
            defaults_only,
            service,
            referenced,
        }
    }

    /// Whether `name` is a parameter: in the table, a per-transport name, or a user-defined
    /// parameter (set explicitly and referred to; never with `-d`).
    pub fn is_known(&self, name: &str) -> bool {
        effective_param(name).is_some() || self.is_user_defined(name)
    }

    /// Whether `name` is a user-defined parameter.
    fn is_user_defined(&self, name: &str) -> bool {
        !self.defaults_only
            && effective_param(name).is_none()
            && self.referenced.contains(name)
            && self.config.is_set_explicitly(name)
    }

    /// Whether `name` is set explicitly (main.cf or `-o`).
    pub fn is_explicit(&self, name: &str) -> bool {
        !self.defaults_only && self.config.is_set_explicitly(name)
    }

    /// The names to list without operands, sorted: the classes asked for, only explicit ones
    /// with `-n`.
    pub fn names(&self, classes: Classes, non_default: bool) -> Vec<String> {
        let mut names = BTreeSet::new();
        for p in posthorn_config::PARAMS {
            let is_service = self.service.contains(p.name);
            if (is_service && classes.service) || (!is_service && classes.builtin) {
                names.insert(p.name.to_string());
            }
        }
        if classes.service {
            names.extend(self.service.iter().cloned());
        }
        if !self.defaults_only {
            for name in self.config.explicit_names() {
                let class_wanted = if param(&name).is_some() {
                    false // already decided above
                } else if effective_param(&name).is_some() {
                    classes.service
                } else {
                    classes.user && self.is_user_defined(&name)
                };
                if class_wanted {
                    names.insert(name);
                }
            }
        }
        names
            .into_iter()
            .filter(|name| !non_default || self.is_explicit(name))
            .collect()
    }

    /// The value to show: the explicit setting as written, else the default as main.cf text
    /// (computed defaults computed); with `expand`, the value after `$name` expansion.
    /// `None` for names that are not parameters.
    pub fn value(&self, name: &str, expand: bool) -> Option<String> {
        if !self.is_known(name) {
            return None;
        }
        if expand {
            return self.config.lookup(name);
        }
        if self.is_explicit(name) {
            return self.config.raw(name);
        }
        match param(name) {
            Some(p) => match p.default {
                DefaultValue::Text(text) => Some(text.to_string()),
                DefaultValue::Computed(_) => self.config.lookup(name),
            },
            None => effective_param(name).map(|fallback| format!("${}", fallback.name)),
        }
    }

    /// Expands `$name` in arbitrary text (a master.cf `-o` value for `postconf -Mx`), with
    /// `overrides` (that service's other `-o` settings) in force.
    pub fn expand_text(&self, text: &str, overrides: &[(&str, &str)]) -> String {
        // A name that no main.cf line can set, so it cannot clash with a parameter.
        const SCRATCH: &str = "postconf -x";
        let mut config = self.config.clone();
        for (name, value) in overrides {
            config.set(name, value);
        }
        config.set(SCRATCH, text);
        config.lookup(SCRATCH).unwrap_or_default()
    }

    /// main.cf entries (not `-o` overrides) whose names are not parameters, in Postfix's
    /// wording: `FILE: unused parameter: name=value`.
    pub fn unused_main(&self, main_cf: &str) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.config.explicit_names() {
            let from_main = self
                .config
                .origin(&name)
                .is_some_and(|(file, _)| file == main_cf);
            if from_main && !self.is_known(&name) {
                let value = self.config.raw(&name).unwrap_or_default();
                out.push(format!("{main_cf}: unused parameter: {name}={value}"));
            }
        }
        out
    }

    /// master.cf `-o` settings whose names are not parameters (nor referred to as `$name`).
    pub fn unused_master(&self, master_cf: &str, entries: &[Entry]) -> Vec<String> {
        let mut out = Vec::new();
        for entry in entries {
            for (name, value) in entry.overrides() {
                if effective_param(name).is_none() && !self.referenced.contains(name) {
                    out.push(format!("{master_cf}: unused parameter: {name}={value}"));
                }
            }
        }
        out
    }
}

/// Adds the names that text refers to (`$name`, `${name...}`, `$(name...)`, also inside
/// conditionals) to `out`. `$$` is a literal dollar.
pub fn referenced_names(text: &str, out: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let mut start = i + 1;
        match bytes.get(start) {
            Some(b'$') => {
                i += 2;
                continue;
            }
            Some(b'{' | b'(') => start += 1,
            _ => {}
        }
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(bytes.len(), |n| start + n);
        if end > start {
            out.insert(text[start..end].to_string());
        }
        i += 1;
    }
}

/// Formats one output line as Postfix's postconf does: words separated by single spaces
/// (whitespace runs collapse) and, with `fold`, lines broken before 80 columns and continued
/// with four spaces. Ends with a newline.
pub fn format_line(text: &str, fold: bool) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    let mut line_len = 0;
    for word in text
        .split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        if line_len > 0 {
            if !fold || line_len + word.len() < LINE_LIMIT {
                out.push(' ');
                line_len += 1;
            } else {
                out.push('\n');
                out.push_str(INDENT);
                line_len = INDENT.len();
            }
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse_str(text, "/etc/posthorn/main.cf").expect("main.cf")
    }

    fn entries(text: &str) -> Vec<Entry> {
        crate::master::read_entries(text)
            .expect("master.cf")
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    #[test]
    fn references() {
        let mut names = BTreeSet::new();
        referenced_names(
            "$a ${b} $(c) $$d ${e?$f} ${g:{$h}} ${{$i} == {x} ? {y} : {z}} $ x$j_k-",
            &mut names,
        );
        let want: BTreeSet<String> = ["a", "b", "c", "e", "f", "g", "h", "i", "j_k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, want);
    }

    #[test]
    fn line_format_collapses_and_folds() {
        assert_eq!(format_line("a = b   c", false), "a = b c\n");
        assert_eq!(format_line("relayhost = ", false), "relayhost =\n");
        assert_eq!(format_line("", false), "\n");
        let long = format!("name = {}", ["word"; 30].join(", "));
        let folded = format_line(&long, true);
        assert!(folded.lines().count() > 1);
        assert!(folded.lines().all(|l| l.len() < LINE_LIMIT), "{folded}");
        assert!(folded.lines().skip(1).all(|l| l.starts_with(INDENT)));
        assert_eq!(
            folded.split_ascii_whitespace().collect::<Vec<_>>(),
            long.split_ascii_whitespace().collect::<Vec<_>>()
        );
    }

    #[test]
    fn classes_of_names() {
        let c = config("myorigin = x\nmy_list = a\nrelay_domains = $my_list\nbogus = 1\n");
        let e = entries(
            "relay unix - - n - - smtp\nfoo unix - - n - - spawn\npickup unix n - n 60 1 pickup\n",
        );
        let cat = Catalog::new(&c, &e, false);
        assert!(cat.is_known("myorigin"));
        assert!(cat.is_known("my_list"));
        assert!(!cat.is_known("bogus"));
        assert!(cat.is_known("relay_destination_concurrency_limit"));
        let all = cat.names(Classes::ALL, false);
        assert!(all.contains(&"relay_destination_concurrency_limit".to_string()));
        assert!(!all.contains(&"relay_time_limit".to_string()));
        assert!(all.contains(&"foo_time_limit".to_string()));
        assert!(!all.contains(&"foo_destination_concurrency_limit".to_string()));
        assert!(!all.iter().any(|n| n.starts_with("pickup_destination")));
        assert!(all.contains(&"my_list".to_string()));
        assert!(!all.contains(&"bogus".to_string()));
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert_eq!(
            cat.names(Classes::ALL, true),
            vec!["my_list", "myorigin", "relay_domains"]
        );
        let user = Classes {
            builtin: false,
            service: false,
            user: true,
        };
        assert_eq!(cat.names(user, false), vec!["my_list"]);
        let service = Classes {
            builtin: false,
            service: true,
            user: false,
        };
        assert!(
            cat.names(service, false)
                .iter()
                .all(|n| n.starts_with("relay_") || n.starts_with("foo_"))
        );
    }

    #[test]
    fn values() {
        let c = config("myorigin = $mydomain\nmydomain = example.org\n");
        let cat = Catalog::new(&c, &[], false);
        assert_eq!(cat.value("myorigin", false).as_deref(), Some("$mydomain"));
        assert_eq!(cat.value("myorigin", true).as_deref(), Some("example.org"));
        assert_eq!(
            cat.value("mydestination", false).as_deref(),
            Some("$myhostname, localhost.$mydomain, localhost")
        );
        assert_eq!(
            cat.value("relay_destination_recipient_limit", false)
                .as_deref(),
            Some("$default_destination_recipient_limit")
        );
        assert_eq!(
            cat.value("relay_destination_recipient_limit", true)
                .as_deref(),
            Some("50")
        );
        assert_eq!(
            cat.value("mail_version", false).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(cat.value("no_such_thing", false), None);
        let defaults = Config::defaults();
        let cat = Catalog::new(&defaults, &[], true);
        assert_eq!(cat.value("myorigin", false).as_deref(), Some("$myhostname"));
        assert_eq!(
            cat.value("forward_path", true).as_deref(),
            Some("$home/.forward${recipient_delimiter}${extension}, $home/.forward")
        );
    }

    #[test]
    fn expansion_of_override_values() {
        let c = config("mydomain = example.org\n");
        let cat = Catalog::new(&c, &[], false);
        assert_eq!(cat.expand_text("mail.$mydomain", &[]), "mail.example.org");
        assert_eq!(
            cat.expand_text("$syslog_name/x", &[("syslog_name", "posthorn/sub")]),
            "posthorn/sub/x"
        );
    }

    #[test]
    fn unused_settings() {
        let c = config("myorigin = x\nbogus = 1\nmy_list = a\nrelay_domains = $my_list\n");
        let e = entries("smtp inet n - n - - smtpd -o smtpd_bogus=2 -o syslog_name=x\n");
        let cat = Catalog::new(&c, &e, false);
        assert_eq!(
            cat.unused_main("/etc/posthorn/main.cf"),
            vec!["/etc/posthorn/main.cf: unused parameter: bogus=1"]
        );
        assert_eq!(
            cat.unused_master("/etc/posthorn/master.cf", &e),
            vec!["/etc/posthorn/master.cf: unused parameter: smtpd_bogus=2"]
        );
        // -o overrides from the command line are not main.cf entries.
        let mut c = config("myorigin = x\n");
        c.set("bogus", "1");
        assert!(
            Catalog::new(&c, &[], false)
                .unused_main("/etc/posthorn/main.cf")
                .is_empty()
        );
    }
}
