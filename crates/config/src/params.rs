//! The parameter registry: what a parameter is ([`Param`]), how to find one ([`param`],
//! [`effective_param`]) and the run-time defaults that cannot be written as main.cf text.
//! The table itself is [`crate::PARAMS`] in `table.rs`.

use std::fmt;
use std::sync::OnceLock;

/// The type of a parameter's value, after `$name` expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `yes` / `no` (also `true` / `false`), see [`crate::parse_bool`].
    Bool,
    /// A signed decimal integer.
    Int,
    /// A number of bytes, see [`crate::parse_size`].
    Size,
    /// A time: a number with an optional unit s/m/h/d/w, see [`crate::parse_duration`].
    Duration,
    /// Free text.
    Str,
    /// Elements separated by whitespace and/or commas, see [`crate::split_list`].
    List,
    /// An absolute path name, or empty.
    Path,
    /// A list of `type:name` lookup tables, e.g. `hash:/etc/aliases`.
    Lookup,
}

impl Kind {
    /// The word used for this kind in diagnostics and in the man page.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Size => "size",
            Kind::Duration => "time",
            Kind::Str => "string",
            Kind::List => "list",
            Kind::Path => "path",
            Kind::Lookup => "lookup tables",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parameter's default.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// main.cf text, `$name`-expanded like an explicit value.
    Text(&'static str),
    /// Computed at run time (host name, program location); the result is used literally.
    Computed(fn() -> String),
}

impl DefaultValue {
    /// The default as main.cf text: the text itself, or the computed value.
    pub fn value(&self) -> String {
        match self {
            DefaultValue::Text(text) => (*text).to_string(),
            DefaultValue::Computed(f) => f(),
        }
    }
}

/// One entry of the parameter table.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Postfix's spelling where the meaning matches.
    pub name: &'static str,
    /// The type of the expanded value.
    pub kind: Kind,
    /// The default when main.cf does not set the parameter.
    pub default: DefaultValue,
    /// One line: what the parameter does (and how a computed default is found).
    pub doc: &'static str,
    /// For [`Kind::Duration`]: the unit of a bare number (`'s'` for most parameters, `'d'` for
    /// maximal_queue_lifetime). Unused for other kinds.
    pub unit: char,
    /// The value is not `$name`-expanded when configuration is read, because the program that
    /// uses it expands it later with its own attributes (Postfix's "raw" parameters, e.g.
    /// forward_path with `$home`). [`crate::Config::get`] returns such values as written.
    pub raw: bool,
}

impl Param {
    /// Checks that an (expanded) value parses as this parameter's kind.
    pub fn check(&self, value: &str) -> Result<(), String> {
        crate::values::check_kind(self.kind, self.unit, value)
    }
}

/// Looks up a parameter of the table by name.
pub fn param(name: &str) -> Option<&'static Param> {
    crate::PARAMS
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .map(|i| &crate::PARAMS[i])
}

/// Per-transport parameter suffixes (Postfix's `transport_destination_concurrency_limit` and
/// friends, where `transport` is a master.cf service name) and the parameter each one falls
/// back to when `<transport>_<suffix>` is not set.
pub const PER_TRANSPORT: &[(&str, &str)] = &[
    ("delivery_slot_cost", "default_delivery_slot_cost"),
    ("delivery_slot_discount", "default_delivery_slot_discount"),
    ("delivery_slot_loan", "default_delivery_slot_loan"),
    (
        "destination_concurrency_failed_cohort_limit",
        "default_destination_concurrency_failed_cohort_limit",
    ),
    (
        "destination_concurrency_limit",
        "default_destination_concurrency_limit",
    ),
    (
        "destination_concurrency_negative_feedback",
        "default_destination_concurrency_negative_feedback",
    ),
    (
        "destination_concurrency_positive_feedback",
        "default_destination_concurrency_positive_feedback",
    ),
    ("destination_rate_delay", "default_destination_rate_delay"),
    (
        "destination_recipient_limit",
        "default_destination_recipient_limit",
    ),
    ("extra_recipient_limit", "default_extra_recipient_limit"),
    (
        "initial_destination_concurrency",
        "initial_destination_concurrency",
    ),
    ("minimum_delivery_slots", "default_minimum_delivery_slots"),
    ("recipient_limit", "default_recipient_limit"),
    ("recipient_refill_delay", "default_recipient_refill_delay"),
    ("recipient_refill_limit", "default_recipient_refill_limit"),
    ("time_limit", "command_time_limit"),
    ("transport_rate_delay", "default_transport_rate_delay"),
];

/// For a per-transport name like `relay_destination_concurrency_limit` that is not itself in
/// the table: the table parameter it falls back to.
pub(crate) fn per_transport_fallback(name: &str) -> Option<&'static Param> {
    PER_TRANSPORT.iter().find_map(|(suffix, fallback)| {
        let transport = name.strip_suffix(suffix)?.strip_suffix('_')?;
        if transport.is_empty() {
            None
        } else {
            param(fallback)
        }
    })
}

/// The table entry that describes `name`: the parameter itself, or for a per-transport name
/// (`<transport>_<suffix>` with a suffix of [`PER_TRANSPORT`]) the parameter it falls back to,
/// which gives its kind and default. `None` for names posthorn does not know.
pub fn effective_param(name: &str) -> Option<&'static Param> {
    param(name).or_else(|| per_transport_fallback(name))
}

/// The default config_directory: `/etc/posthorn`, or the directory given in
/// `POSTHORN_CONFIG_DIRECTORY` when posthorn was built.
pub(crate) fn default_config_directory() -> String {
    option_env!("POSTHORN_CONFIG_DIRECTORY")
        .unwrap_or("/etc/posthorn")
        .to_string()
}

/// Where programs live when the running executable cannot be located.
const FALLBACK_DAEMON_DIRECTORY: &str = "/usr/libexec/posthorn";

/// The directory of the running executable (cached), or a fixed fallback.
pub(crate) fn default_daemon_directory() -> String {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.to_string_lossy().into_owned()))
            .filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| FALLBACK_DAEMON_DIRECTORY.to_string())
    })
    .clone()
}

/// The system host name as the kernel reports it (cached); `localhost` if that fails.
pub(crate) fn system_hostname() -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .map(|name| name.to_string_lossy().trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
    .clone()
}

/// The default myhostname without main.cf: the system host name, with `.localdomain`
/// appended when it has no dot. ([`crate::Config`] appends an explicit `$mydomain` instead.)
pub(crate) fn default_myhostname() -> String {
    let host = system_hostname();
    if host.contains('.') {
        host
    } else {
        format!("{host}.localdomain")
    }
}

/// The domain part of a host name: everything after the first dot, or `localdomain`.
pub(crate) fn domain_of(hostname: &str) -> String {
    match hostname.split_once('.') {
        Some((_, domain)) if !domain.is_empty() => domain.to_string(),
        _ => "localdomain".to_string(),
    }
}

/// The default mydomain without main.cf: [`default_myhostname`] minus its first label.
pub(crate) fn default_mydomain() -> String {
    domain_of(&default_myhostname())
}

/// The version of this build, for mail_version.
pub(crate) fn default_mail_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PARAMS;
    use crate::expand::referenced_names;

    /// Names that raw parameters may use: the attributes local(8) and virtual(8) expand at
    /// delivery time (Postfix local(8) "EXTERNAL FILE DELIVERY" / forward_path), not parameters.
    const DELIVERY_ATTRIBUTES: &[&str] = &[
        "client_address",
        "client_helo",
        "client_hostname",
        "client_port_address",
        "client_protocol",
        "domain",
        "extension",
        "home",
        "local",
        "mailbox",
        "original_recipient",
        "recipient",
        "recipient_delimiter",
        "sasl_method",
        "sasl_sender",
        "sasl_username",
        "sender",
        "shell",
        "user",
    ];

    #[test]
    fn names_are_unique_and_sorted() {
        for pair in PARAMS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "table not sorted or duplicate: {} then {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn names_are_snake_case() {
        // Postfix's own spelling, kept so that existing main.cf files work.
        const POSTFIX_MIXED_CASE: [&str; 2] = ["smtp_tls_CAfile", "smtpd_tls_CAfile"];
        for p in PARAMS {
            if POSTFIX_MIXED_CASE.contains(&p.name) {
                continue;
            }
            let ok = !p.name.is_empty()
                && !p.name.starts_with('_')
                && !p.name.ends_with('_')
                && !p.name.contains("__")
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            assert!(ok, "{} is not snake_case", p.name);
        }
    }

    #[test]
    fn every_entry_is_documented() {
        for p in PARAMS {
            assert!(!p.doc.trim().is_empty(), "{} has no doc", p.name);
            assert!(!p.doc.contains('\n'), "{} doc is not one line", p.name);
            assert!(p.doc.ends_with('.'), "{} doc is not a sentence", p.name);
        }
    }

    #[test]
    fn every_default_reference_exists() {
        for p in PARAMS {
            let DefaultValue::Text(text) = p.default else {
                continue;
            };
            for name in referenced_names(text) {
                if p.raw {
                    assert!(
                        DELIVERY_ATTRIBUTES.contains(&name.as_str()) || param(&name).is_some(),
                        "{}: ${name} is neither a delivery attribute nor a parameter",
                        p.name
                    );
                } else {
                    assert!(
                        param(&name).is_some(),
                        "{}: default refers to unknown ${name}",
                        p.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_default_parses_as_its_kind() {
        let config = crate::Config::defaults();
        for p in PARAMS {
            let value = config.get(p.name);
            assert!(
                p.check(&value).is_ok(),
                "{}: default {:?} expands to {value:?}: {:?}",
                p.name,
                p.default.value(),
                p.check(&value)
            );
        }
        // Under stress the conditional defaults must parse too.
        let mut stressed = crate::Config::defaults();
        stressed.set("stress", "yes");
        for p in PARAMS {
            let value = stressed.get(p.name);
            assert!(
                p.check(&value).is_ok(),
                "{} under stress: {value:?}",
                p.name
            );
        }
    }

    #[test]
    fn only_durations_have_other_units() {
        for p in PARAMS {
            if p.kind != Kind::Duration {
                assert_eq!(p.unit, 's', "{}", p.name);
            }
            assert!("smhdw".contains(p.unit), "{}", p.name);
        }
        assert_eq!(param("maximal_queue_lifetime").map(|p| p.unit), Some('d'));
        assert_eq!(param("bounce_queue_lifetime").map(|p| p.unit), Some('d'));
        assert_eq!(param("delay_warning_time").map(|p| p.unit), Some('h'));
    }

    #[test]
    fn computed_defaults_do_not_panic_and_are_sane() {
        for p in PARAMS {
            if let DefaultValue::Computed(f) = p.default {
                let _ = f();
            }
        }
        let host = default_myhostname();
        assert!(host.contains('.'), "{host}");
        assert!(!default_mydomain().is_empty());
        assert!(default_daemon_directory().starts_with('/'));
        assert_eq!(default_mail_version(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn domain_of_strips_the_first_label() {
        assert_eq!(domain_of("mail.example.com"), "example.com");
        assert_eq!(domain_of("example.com"), "com");
        assert_eq!(domain_of("host"), "localdomain");
        assert_eq!(domain_of("host."), "localdomain");
    }

    #[test]
    fn lookup_and_per_transport_names() {
        assert_eq!(param("myhostname").map(|p| p.name), Some("myhostname"));
        assert!(param("no_such_parameter").is_none());
        assert_eq!(
            effective_param("relay_destination_concurrency_limit").map(|p| p.name),
            Some("default_destination_concurrency_limit")
        );
        assert_eq!(
            effective_param("relay_initial_destination_concurrency").map(|p| p.name),
            Some("initial_destination_concurrency")
        );
        assert_eq!(
            effective_param("local_destination_recipient_limit").map(|p| p.name),
            Some("local_destination_recipient_limit")
        );
        assert!(effective_param("_destination_concurrency_limit").is_none());
        for (_, fallback) in PER_TRANSPORT {
            assert!(
                param(fallback).is_some(),
                "{fallback} missing from the table"
            );
        }
    }
}
