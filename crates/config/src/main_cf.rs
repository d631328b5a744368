//! main.cf: reading the file into explicit settings, and [`Config`], which answers with the
//! expanded value of any parameter (explicit value, else default).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::{ConfigDiag, ConfigError, Severity};
use crate::expand::Expander;
use crate::lines::{excerpt, logical_lines, read_text};
use crate::params::{self, DefaultValue, Kind, Param};
use crate::values;

/// The file name used for diagnostics when a [`Config`] was not read from a file.
const NO_FILE: &str = "main.cf";

/// Where a value set by [`Config::set`] comes from, for diagnostics.
const OVERRIDE_ORIGIN: &str = "override";

/// An explicitly set parameter.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The value as written, not expanded.
    pub(crate) value: String,
    /// Where it was set: the file as given, or `override`.
    pub(crate) file: String,
    /// 1-based line in `file`, 0 when there is none.
    pub(crate) line: usize,
}

/// Whether `name` is acceptable as a parameter name on the left of `=`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The main.cf configuration: explicit settings (main.cf, then overrides) on top of the
/// defaults of [`crate::PARAMS`]. Values are `$name`-expanded when read with
/// [`Config::get`] and the typed getters. Immutable while daemons run: build it once, then
/// derive typed settings from it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main.cf file as given, for diagnostics.
    file: String,
    /// Explicitly set parameters, by name.
    pub(crate) explicit: BTreeMap<String, Entry>,
    /// Defaults supplied by the program (config_directory from `-c`), used literally.
    pub(crate) base_defaults: BTreeMap<String, String>,
    /// Findings of parsing (ignored lines, overridden entries), reported by validate().
    parse_diags: Vec<ConfigDiag>,
}

impl Config {
    /// Reads `config_dir/main.cf` and sets config_directory to `config_dir`.
    pub fn load(config_dir: &Path) -> Result<Config, ConfigError> {
        let path = config_dir.join("main.cf");
        let file = path.display().to_string();
        let text = read_text(&path, &file)?;
        let mut config = Config::parse_str(&text, &file)?;
        config.set_default("config_directory", &config_dir.display().to_string());
        Ok(config)
    }

    /// Parses main.cf text; `file_name` is used in diagnostics.
    ///
    /// Errors: a logical line without `=`, or with an empty or malformed name. Values are
    /// not checked here; see [`Config::validate`].
    pub fn parse_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        let mut config = Config::empty(file_name);
        let (lines, orphans) = logical_lines(text);
        for line in orphans {
            config.parse_diags.push(ConfigDiag {
                file: file_name.to_string(),
                line,
                severity: Severity::Warning,
                message: "ignoring text that starts with whitespace but continues no line"
                    .to_string(),
            });
        }
        for logical in lines {
            let syntax = |message: String| ConfigError::Syntax {
                file: file_name.to_string(),
                line: logical.line,
                message,
            };
            let Some((name, value)) = logical.text.split_once('=') else {
                return Err(syntax(format!(
                    "missing '=' after parameter name: \"{}\"",
                    excerpt(&logical.text)
                )));
            };
            let name = name.trim_ascii();
            if name.is_empty() {
                return Err(syntax(format!(
                    "missing parameter name before '=': \"{}\"",
                    excerpt(&logical.text)
                )));
            }
            if !is_valid_name(name) {
                return Err(syntax(format!(
                    "bad parameter name \"{}\": use letters, digits and '_'",
                    excerpt(name)
                )));
            }
            if let Some(earlier) = config.explicit.get(name) {
                config.parse_diags.push(ConfigDiag {
                    file: file_name.to_string(),
                    line: logical.line,
                    severity: Severity::Warning,
                    message: format!(
                        "overriding earlier entry (line {}): {name} = {}",
                        earlier.line,
                        excerpt(&earlier.value)
                    ),
                });
            }
            config.explicit.insert(
                name.to_string(),
                Entry {
                    value: value.trim_ascii().to_string(),
                    file: file_name.to_string(),
                    line: logical.line,
                },
            );
        }
        Ok(config)
    }

    /// The configuration without any main.cf: every parameter has its default.
    pub fn defaults() -> Config {
        Config::empty(NO_FILE)
    }

    /// A configuration with nothing set, reporting as `file`.
    fn empty(file: &str) -> Config {
        Config {
            file: file.to_string(),
            explicit: BTreeMap::new(),
            base_defaults: BTreeMap::new(),
            parse_diags: Vec::new(),
        }
    }

    /// Sets a parameter explicitly, replacing any main.cf value (master.cf `-o` overrides,
    /// command-line overrides). Diagnostics name it as coming from `override`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.set_at(name, value, OVERRIDE_ORIGIN, 0);
    }

    /// Like [`Config::set`], recording where the value comes from (e.g. master.cf and the
    /// line of the service) for diagnostics.
    pub fn set_at(&mut self, name: &str, value: &str, file: &str, line: usize) {
        self.explicit.insert(
            name.to_string(),
            Entry {
                value: value.to_string(),
                file: file.to_string(),
                line,
            },
        );
    }

    /// Replaces the default of `name` for this configuration with a literal value that is
    /// not expanded (e.g. config_directory from `-c`). It does not make the parameter
    /// explicit: `postconf -n` does not list it and main.cf still wins.
    pub fn set_default(&mut self, name: &str, value: &str) {
        self.base_defaults
            .insert(name.to_string(), value.to_string());
    }

    /// The main.cf file name as given (`main.cf` when there was none).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Whether main.cf or an override sets `name`.
    pub fn is_set_explicitly(&self, name: &str) -> bool {
        self.explicit.contains_key(name)
    }

    /// The explicit value of `name` as written, not expanded; `None` when it is not set.
    pub fn raw(&self, name: &str) -> Option<String> {
        self.explicit.get(name).map(|e| e.value.clone())
    }

    /// Where `name` was set: the file as given (or `override`) and the line (0: none).
    pub fn origin(&self, name: &str) -> Option<(String, usize)> {
        self.explicit.get(name).map(|e| (e.file.clone(), e.line))
    }

    /// The expanded value of a parameter: its explicit value, else its default. Raw
    /// parameters (forward_path, ...) are returned as written. Per-transport names such as
    /// `relay_destination_concurrency_limit` fall back to their `default_` parameter.
    ///
    /// Asking for a name that is not in the table is a bug: it returns "" and fails a
    /// `debug_assert`. Use [`Config::lookup`] for names typed by a user.
    pub fn get(&self, name: &str) -> String {
        if params::effective_param(name).is_none() {
            debug_assert!(
                false,
                "Config::get: {name:?} is not in posthorn_config::PARAMS"
            );
            return String::new();
        }
        Expander::new(self).value_of(name).unwrap_or_default()
    }

    /// The expanded value of any parameter, including user-defined ones that main.cf sets;
    /// `None` when the name is neither set nor known (for `postconf NAME`).
    pub fn lookup(&self, name: &str) -> Option<String> {
        Expander::new(self).value_of(name)
    }

    /// A boolean parameter. An invalid value falls back to the default (validate() reports
    /// it).
    pub fn get_bool(&self, name: &str) -> bool {
        self.typed(name, Kind::Bool, |_, v| values::parse_bool(v))
    }

    /// An integer parameter. An invalid value falls back to the default.
    pub fn get_int(&self, name: &str) -> i64 {
        self.typed(name, Kind::Int, |_, v| values::parse_int(v))
    }

    /// A size parameter, in bytes. An invalid value falls back to the default.
    pub fn get_size(&self, name: &str) -> u64 {
        self.typed(name, Kind::Size, |_, v| values::parse_size(v))
    }

    /// A time parameter; a bare number is in the parameter's own unit. An invalid value
    /// falls back to the default.
    pub fn get_duration(&self, name: &str) -> Duration {
        self.typed(name, Kind::Duration, |p, v| {
            values::parse_duration(v, p.unit)
        })
    }

    /// A list parameter split on whitespace and commas (braces kept together), as Postfix.
    pub fn get_list(&self, name: &str) -> Vec<String> {
        values::split_list(&self.get(name))
    }

    /// A path parameter.
    pub fn get_path(&self, name: &str) -> PathBuf {
        PathBuf::from(self.get(name))
    }

    /// The names set in main.cf or by overrides, sorted (for `postconf -n`).
    pub fn explicit_names(&self) -> Vec<String> {
        self.explicit.keys().cloned().collect()
    }

    /// Checks the configuration: every explicit value must parse as its parameter's kind
    /// after expansion; unknown parameter names, undefined `$name` references and ignored
    /// lines are warnings; parameter loops and expansion syntax errors are errors. A name
    /// that the table does not know but that another value refers to as `$name` is a
    /// user-defined parameter, as in Postfix, and is not reported.
    pub fn validate(&self) -> Vec<ConfigDiag> {
        let mut diags = self.parse_diags.clone();
        let mut scanner = Expander::scanner(self);
        for entry in self.explicit.values() {
            scanner.expand(&entry.value);
        }
        let referenced = scanner.referenced;

        let mut expander = Expander::new(self);
        let mut bad_explicit = BTreeSet::new();
        for (name, entry) in &self.explicit {
            let diag = |severity, message| ConfigDiag {
                file: entry.file.clone(),
                line: entry.line,
                severity,
                message,
            };
            let param = params::effective_param(name);
            if param.is_none() && !referenced.contains(name) {
                diags.push(diag(
                    Severity::Warning,
                    format!("unknown parameter: {name}"),
                ));
                continue;
            }
            let value = expander.value_of(name).unwrap_or_default();
            if let Some(p) = param
                && let Err(err) = p.check(&value)
            {
                diags.push(diag(Severity::Error, format!("{name}: {err}")));
                bad_explicit.insert(name.as_str());
            }
        }
        // Defaults that refer to explicit values can go bad too (a = $b, b set to junk).
        for p in crate::PARAMS {
            if self.explicit.contains_key(p.name) || p.raw {
                continue;
            }
            let DefaultValue::Text(text) = p.default else {
                continue;
            };
            if !text.contains('$') {
                continue;
            }
            let value = expander.value_of(p.name).unwrap_or_default();
            if let Err(err) = p.check(&value)
                && !self
                    .default_dependencies(p.name)
                    .iter()
                    .any(|name| bad_explicit.contains(name.as_str()))
            {
                diags.push(ConfigDiag {
                    file: self.file.clone(),
                    line: 0,
                    severity: Severity::Error,
                    message: format!("{} (default {text}): {err}", p.name),
                });
            }
        }
        for problem in expander.problems {
            let (file, line, message) = match problem.origin.and_then(|name| {
                self.explicit.get(&name).map(|e| {
                    (
                        e.file.clone(),
                        e.line,
                        format!("{name}: {}", problem.message),
                    )
                })
            }) {
                Some(located) => located,
                None => (self.file.clone(), 0, problem.message),
            };
            diags.push(ConfigDiag {
                file,
                line,
                severity: problem.severity,
                message,
            });
        }
        diags.sort_by(|a, b| {
            (a.file != self.file, &a.file, a.line).cmp(&(b.file != self.file, &b.file, b.line))
        });
        diags
    }

    /// The explicitly set parameters that the default of `name` refers to, directly or
    /// through other defaults.
    fn default_dependencies(&self, name: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut todo = vec![name.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(DefaultValue::Text(text)) = params::param(&name).map(|p| p.default) else {
                continue;
            };
            let mut scanner = Expander::scanner(self);
            scanner.expand(text);
            for referenced in scanner.referenced {
                if self.explicit.contains_key(&referenced) {
                    found.insert(referenced);
                } else {
                    todo.push(referenced);
                }
            }
        }
        found
    }

    /// A typed value: parse the expanded value; if that fails, the default in this
    /// configuration, then the built-in default, then `T::default()`.
    fn typed<T: Default>(
        &self,
        name: &str,
        kind: Kind,
        parse: impl Fn(&Param, &str) -> Result<T, String>,
    ) -> T {
        let Some(p) = params::effective_param(name) else {
            debug_assert!(
                false,
                "Config::get_*: {name:?} is not in posthorn_config::PARAMS"
            );
            return T::default();
        };
        debug_assert_eq!(p.kind, kind, "Config::get_*: {name} is a {}", p.kind);
        let value = self.get(name);
        let err = match parse(p, &value) {
            Ok(v) => return v,
            Err(err) => err,
        };
        let location = match self.origin(name) {
            Some((file, 0)) => file,
            Some((file, line)) => format!("{file}:{line}"),
            None => self.file.clone(),
        };
        log::warn!("{location}: {name}: {err}; using the default");
        let default = Expander::ignoring_explicit(self, name)
            .value_of(name)
            .unwrap_or_default();
        if let Ok(v) = parse(p, &default) {
            return v;
        }
        let builtin = Expander::new(&Config::defaults())
            .value_of(name)
            .unwrap_or_default();
        parse(p, &builtin).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses main.cf text that must be valid.
    fn config(text: &str) -> Config {
        Config::parse_str(text, "main.cf").expect("test main.cf parses")
    }

    #[test]
    fn continuation_lines_join_with_one_space() {
        let c = config("mydestination = a,\n    b,\n\tc   \nmyorigin=x\n");
        assert_eq!(c.raw("mydestination").as_deref(), Some("a, b, c"));
        assert_eq!(c.get_list("mydestination"), vec!["a", "b", "c"]);
        assert_eq!(c.raw("myorigin").as_deref(), Some("x"));
    }

    #[test]
    fn comment_between_line_and_continuation_does_not_break_it() {
        let c = config("smtpd_banner = one\n# a comment\n\n  two\n");
        assert_eq!(c.raw("smtpd_banner").as_deref(), Some("one two"));
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let c = config("# header\n\n   \n  # indented\nrelayhost = [mx]:587 # not a comment\n");
        assert_eq!(c.explicit_names(), vec!["relayhost"]);
        assert_eq!(c.get("relayhost"), "[mx]:587 # not a comment");
    }

    #[test]
    fn spaces_around_equals_are_optional_and_values_trimmed() {
        let c = config("myorigin=a\nmydomain    =    b   \t\nrelayhost =\n");
        assert_eq!(c.raw("myorigin").as_deref(), Some("a"));
        assert_eq!(c.raw("mydomain").as_deref(), Some("b"));
        assert_eq!(c.raw("relayhost").as_deref(), Some(""));
        assert!(c.is_set_explicitly("relayhost"));
        assert!(!c.is_set_explicitly("myhostname"));
    }

    #[test]
    fn later_assignment_wins() {
        let c = config("myorigin = first\nmyorigin = second\n");
        assert_eq!(c.get("myorigin"), "second");
        assert_eq!(c.origin("myorigin"), Some(("main.cf".into(), 2)));
        let diags = c.validate();
        assert!(
            diags
                .iter()
                .any(|d| d.line == 2 && d.message.contains("overriding earlier entry (line 1)")),
            "{diags:?}"
        );
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = Config::parse_str("a = 1\n\n# c\nno equals here\n", "/etc/x/main.cf")
            .expect_err("line without =");
        assert_eq!(
            err.to_string(),
            "/etc/x/main.cf:4: missing '=' after parameter name: \"no equals here\""
        );
        let err = Config::parse_str("a = 1\n= 2\n", "main.cf").expect_err("empty name");
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
        let err = Config::parse_str("a b = 2\n", "main.cf").expect_err("bad name");
        assert!(matches!(err, ConfigError::Syntax { line: 1, .. }), "{err}");
        // The line number of a continued entry is its first line.
        let err = Config::parse_str("x = 1\nbroken\n  continued\n", "main.cf").expect_err("no =");
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
    }

    #[test]
    fn orphan_continuation_is_a_warning() {
        let c = config("  leading\nmyorigin = x\n");
        let diags = c.validate();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].line, 1);
        assert_eq!(diags[0].severity, Severity::Warning);
    }

    #[test]
    fn defaults_and_expansion() {
        let c = Config::defaults();
        assert_eq!(c.get("queue_directory"), "/var/spool/posthorn");
        assert_eq!(
            c.get_path("queue_directory"),
            PathBuf::from("/var/spool/posthorn")
        );
        assert_eq!(c.get("myorigin"), c.get("myhostname"));
        assert_eq!(c.get_size("message_size_limit"), 10_240_000);
        assert_eq!(c.get_int("default_process_limit"), 100);
        assert!(!c.get_bool("soft_bounce"));
        assert_eq!(
            c.get_duration("maximal_queue_lifetime"),
            Duration::from_secs(5 * 86400)
        );
        assert_eq!(c.get_duration("smtpd_timeout"), Duration::from_secs(300));
        assert_eq!(
            c.get_list("local_recipient_maps"),
            vec!["proxy:unix:passwd.byname", "hash:/etc/aliases"]
        );
        assert_eq!(c.get("virtual_alias_domains"), "");
        assert_eq!(c.get("config_directory"), "/etc/posthorn");
        assert!(c.explicit_names().is_empty());
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn duration_parameters_use_their_own_unit() {
        let c = config(
            "maximal_queue_lifetime = 2\nbounce_queue_lifetime = 3h\ndelay_warning_time = 4\nqueue_run_delay = 60\n",
        );
        assert_eq!(
            c.get_duration("maximal_queue_lifetime"),
            Duration::from_secs(2 * 86400)
        );
        assert_eq!(
            c.get_duration("bounce_queue_lifetime"),
            Duration::from_secs(3 * 3600)
        );
        assert_eq!(
            c.get_duration("delay_warning_time"),
            Duration::from_secs(4 * 3600)
        );
        assert_eq!(c.get_duration("queue_run_delay"), Duration::from_secs(60));
        assert!(c.validate().is_empty());
    }

    #[test]
    fn sizes_accept_suffixes() {
        let c = config("message_size_limit = 20m\n");
        assert_eq!(c.get_size("message_size_limit"), 20 << 20);
    }

    #[test]
    fn stress_switches_conditional_defaults() {
        let mut c = Config::defaults();
        assert_eq!(c.get_int("smtpd_hard_error_limit"), 20);
        assert!(!c.get_bool("smtpd_per_record_deadline"));
        c.set("stress", "yes");
        assert_eq!(c.get_int("smtpd_hard_error_limit"), 1);
        assert_eq!(c.get_duration("smtpd_timeout"), Duration::from_secs(10));
        assert!(c.get_bool("smtpd_per_record_deadline"));
    }

    #[test]
    fn overrides_replace_main_cf_values() {
        let mut c = config("smtpd_banner = from main.cf\n");
        c.set("smtpd_banner", "$myhostname override");
        assert_eq!(
            c.get("smtpd_banner"),
            format!("{} override", c.get("myhostname"))
        );
        assert_eq!(c.origin("smtpd_banner"), Some(("override".into(), 0)));
        c.set_at("smtpd_tls_wrappermode", "yes", "master.cf", 9);
        assert!(c.get_bool("smtpd_tls_wrappermode"));
        c.set_at("smtpd_timeout", "soon", "master.cf", 9);
        let diags = c.validate();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].file, "master.cf");
        assert_eq!(diags[0].line, 9);
    }

    #[test]
    fn myhostname_and_mydomain_derive_from_each_other() {
        let c = config("myhostname = mx1.mail.example.org\n");
        assert_eq!(c.get("mydomain"), "mail.example.org");
        let c = config("mydomain = example.net\n");
        let host = c.get("myhostname");
        assert!(host.contains('.'), "{host}");
        if !params::system_hostname().contains('.') {
            assert_eq!(host, format!("{}.example.net", params::system_hostname()));
        }
        assert_eq!(c.get("mydomain"), "example.net");
        assert_eq!(
            c.get("mydestination"),
            format!("{host}, localhost.example.net, localhost")
        );
    }

    #[test]
    fn raw_parameters_are_not_expanded() {
        let c = Config::defaults();
        assert_eq!(
            c.get("forward_path"),
            "$home/.forward${recipient_delimiter}${extension}, $home/.forward"
        );
        let c = config("mailbox_command = /usr/bin/procmail -a \"$EXTENSION\"\n");
        assert_eq!(
            c.get("mailbox_command"),
            "/usr/bin/procmail -a \"$EXTENSION\""
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn unknown_parameters_are_warned_about_unless_referenced() {
        let c = config(
            "myorigin = x\nfoo = 1\nmy_domain_list = a, b\nrelay_domains = $my_domain_list\n",
        );
        let diags = c.validate();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(
            diags[0].to_string(),
            "main.cf:2: warning: unknown parameter: foo"
        );
        assert_eq!(c.get_list("relay_domains"), vec!["a", "b"]);
        assert_eq!(c.lookup("my_domain_list").as_deref(), Some("a, b"));
        assert_eq!(c.lookup("no_such_thing"), None);
    }

    #[test]
    fn undefined_references_are_warnings() {
        let c = config("\nmyorigin = $no_such_parameter.example\n");
        assert_eq!(c.get("myorigin"), ".example");
        let diags = c.validate();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(
            diags[0].to_string(),
            "main.cf:2: warning: myorigin: undefined parameter: $no_such_parameter"
        );
    }

    #[test]
    fn loops_are_reported_once_with_a_line() {
        let c = config("myhostname = $myorigin\nmyorigin = $myhostname\n");
        assert_eq!(c.get("myorigin"), "");
        let diags = c.validate();
        let loops: Vec<_> = diags
            .iter()
            .filter(|d| d.message.contains("parameter loop"))
            .collect();
        assert_eq!(loops.len(), 1, "{diags:?}");
        assert_eq!(loops[0].severity, Severity::Error);
        assert!(loops[0].line == 1 || loops[0].line == 2);
        // A loop through a default is attributed to the explicit entry.
        let c = config("myhostname = x.$myorigin\n");
        let diags = c.validate();
        assert!(
            diags
                .iter()
                .any(|d| d.line == 1 && d.message.contains("myhostname -> myorigin -> myhostname")),
            "{diags:?}"
        );
    }

    #[test]
    fn bad_values_are_errors_and_getters_fall_back_to_defaults() {
        let c = config(
            "smtpd_timeout = soon\nmessage_size_limit = big\nsoft_bounce = maybe\ndefault_process_limit = many\nqueue_directory = relative/dir\nalias_maps = /etc/aliases\n",
        );
        let diags = c.validate();
        let lines: Vec<usize> = diags.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6], "{diags:?}");
        assert!(diags.iter().all(|d| d.severity == Severity::Error));
        assert!(
            diags[0]
                .to_string()
                .starts_with("main.cf:1: error: smtpd_timeout: bad time value")
        );
        assert_eq!(c.get_duration("smtpd_timeout"), Duration::from_secs(300));
        assert_eq!(c.get_size("message_size_limit"), 10_240_000);
        assert!(!c.get_bool("soft_bounce"));
        assert_eq!(c.get_int("default_process_limit"), 100);
    }

    #[test]
    fn bad_values_reached_through_defaults_are_reported_once() {
        // smtp_destination_concurrency_limit defaults to $default_destination_concurrency_limit:
        // the error is reported where the bad value is, not again for the default.
        let c = config("default_destination_concurrency_limit = lots\n");
        let diags = c.validate();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].line, 1);
        assert_eq!(c.get("smtp_destination_concurrency_limit"), "lots");
        assert_eq!(c.get_int("smtp_destination_concurrency_limit"), 20);
    }

    #[test]
    fn per_transport_parameters() {
        let c = config(
            "default_destination_concurrency_limit = 7\nrelay_destination_recipient_limit = 3\n",
        );
        assert_eq!(c.get_int("relay_destination_concurrency_limit"), 7);
        assert_eq!(c.get_int("relay_destination_recipient_limit"), 3);
        assert_eq!(c.get_int("smtp_destination_concurrency_limit"), 7);
        assert_eq!(c.get_int("local_destination_concurrency_limit"), 2);
        assert_eq!(c.get_duration("pipe_time_limit"), Duration::from_secs(1000));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not in posthorn_config::PARAMS")]
    fn get_of_an_unknown_name_is_a_bug() {
        let _ = Config::defaults().get("no_such_parameter");
    }

    #[test]
    fn load_reads_main_cf_and_sets_config_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("main.cf"),
            "myorigin = example.com\nbogus\n",
        )
        .expect("write");
        let err = Config::load(dir.path()).expect_err("syntax error");
        let want = format!("{}:2: ", dir.path().join("main.cf").display());
        assert!(err.to_string().starts_with(&want), "{err}");

        std::fs::write(dir.path().join("main.cf"), "myorigin = example.com\n").expect("write");
        let c = Config::load(dir.path()).expect("load");
        assert_eq!(c.get("myorigin"), "example.com");
        assert_eq!(c.get_path("config_directory"), dir.path());
        assert!(!c.is_set_explicitly("config_directory"));
        assert_eq!(c.explicit_names(), vec!["myorigin"]);

        std::fs::write(dir.path().join("main.cf"), b"a = 1\nb = \xff\n").expect("write");
        let err = Config::load(dir.path()).expect_err("not UTF-8");
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");

        let missing = dir.path().join("nonexistent");
        let err = Config::load(&missing).expect_err("no main.cf");
        assert!(matches!(err, ConfigError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nonexistent/main.cf"), "{err}");
    }

    /// The project's own etc/main.cf, if it exists yet, must load and validate without
    /// errors.
    #[test]
    fn project_main_cf_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc");
        if !dir.join("main.cf").exists() {
            return;
        }
        let c = Config::load(&dir).expect("etc/main.cf loads");
        let errors: Vec<String> = c
            .validate()
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}
