//! The main.cf editor behind `-e`, `-X` and `-#`: a pure function from the old text and the
//! requests to the new text, so that it is tested without files.
//!
//! As in Postfix (postconf_edit.c): a setting is found by the name at the start of a logical
//! line; `-e` replaces the whole logical line (its continuation lines included) where it
//! stands with `name = value`, and appends settings that main.cf lacks at the end, sorted by
//! name; `-X` removes the logical line; `-#` puts a `#` in front of each of its physical lines.
//! Comment and blank lines, also those between a line and its continuations, are kept, and so
//! is every other byte of the file. A name set more than once is edited everywhere, with a
//! warning. Unlike Postfix, a setting whose value already equals the requested one is left as
//! written, so an edit that changes nothing leaves the file byte for byte the same.

use std::collections::BTreeMap;

use crate::lines::{self, Decision};

/// What to do with one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set it to this value (`-e name=value`).
    Set(String),
    /// Remove it (`-X name`).
    Remove,
    /// Comment it out (`-# name`).
    CommentOut,
}

/// The result of an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// The new file text.
    pub text: String,
    /// Warnings to print (`postconf: warning: ...`), without the prefix.
    pub warnings: Vec<String>,
    /// Names that were requested but not found (for `-X` and `-#`; `-e` appends them).
    pub not_found: Vec<String>,
}

/// The parameter name at the start of a start line: up to whitespace or `=`.
pub fn key_of(line: &str) -> &str {
    let end = line
        .find(|c: char| c.is_ascii_whitespace() || c == '=')
        .unwrap_or(line.len());
    &line[..end]
}

/// The text of a `name = value` line as postconf writes it.
pub fn setting_line(name: &str, value: &str) -> String {
    if value.is_empty() {
        format!("{name} =\n")
    } else {
        format!("{name} = {value}\n")
    }
}

/// Applies `requests` (name, action) to main.cf text; `file` names the file in warnings.
/// When a name is requested twice, the later request wins (with a warning, as in Postfix).
pub fn edit_main(text: &str, requests: &[(String, Action)], file: &str) -> Edited {
    let mut warnings = Vec::new();
    let mut wanted: BTreeMap<&str, &Action> = BTreeMap::new();
    for (name, action) in requests {
        if let Some(earlier) = wanted.insert(name.as_str(), action) {
            let shown = match earlier {
                Action::Set(value) => format!("'{name} = {value}'"),
                Action::Remove | Action::CommentOut => format!("'{name}'"),
            };
            warnings.push(format!("ignoring earlier request: {shown}"));
        }
    }

    let lines = lines::split(text);
    let logical = lines::logical(&lines);
    let owners = lines::owners(&lines, &logical);
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    let mut decisions = Vec::with_capacity(logical.len());
    for entry in &logical {
        let key = key_of(lines[entry.start].raw);
        let Some(action) = wanted.get(key) else {
            decisions.push(Decision::Keep);
            continue;
        };
        let count = found.entry(key).or_insert(0);
        *count += 1;
        if *count == 2 {
            warnings.push(format!("{file}: multiple entries for \"{key}\""));
        }
        decisions.push(match action {
            Action::Set(value) => {
                let text = entry.text(&lines);
                let current = text.split_once('=').map(|(_, v)| v.trim_ascii());
                if current == Some(value.as_str()) {
                    Decision::Keep
                } else {
                    Decision::Replace(setting_line(key, value))
                }
            }
            Action::Remove => Decision::Remove,
            Action::CommentOut => Decision::Comment,
        });
    }

    let mut out = lines::render(&lines, &owners, &decisions);

    let mut not_found = Vec::new();
    for (name, action) in &wanted {
        if found.contains_key(name) {
            continue;
        }
        match action {
            Action::Set(value) => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&setting_line(name, value));
            }
            Action::Remove | Action::CommentOut => not_found.push((*name).to_string()),
        }
    }
    Edited {
        text: out,
        warnings,
        not_found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, Action)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), Action::Set(v.to_string())))
            .collect()
    }

    fn names(names: &[&str], action: Action) -> Vec<(String, Action)> {
        names
            .iter()
            .map(|n| (n.to_string(), action.clone()))
            .collect()
    }

    const SAMPLE: &str = "\
# main.cf header
myhostname = old.example.com

# Destinations, continued over lines:
mydestination = $myhostname,
    localhost.$mydomain,
# a comment inside the entry stays
    localhost
relayhost=[mx.example.com]:587
";

    #[test]
    fn set_replaces_in_place_and_keeps_comments() {
        let e = edit_main(
            SAMPLE,
            &set(&[("myhostname", "new.example.com")]),
            "main.cf",
        );
        assert_eq!(
            e.text,
            SAMPLE.replace(
                "myhostname = old.example.com",
                "myhostname = new.example.com"
            )
        );
        assert!(e.warnings.is_empty());
    }

    #[test]
    fn set_replaces_continuations_as_a_whole() {
        let e = edit_main(SAMPLE, &set(&[("mydestination", "localhost")]), "main.cf");
        assert_eq!(
            e.text,
            "\
# main.cf header
myhostname = old.example.com

# Destinations, continued over lines:
mydestination = localhost
# a comment inside the entry stays
relayhost=[mx.example.com]:587
"
        );
    }

    #[test]
    fn set_appends_missing_names_sorted_at_the_end() {
        let e = edit_main(
            SAMPLE,
            &set(&[
                ("mynetworks", "127.0.0.0/8"),
                ("alias_maps", "hash:/etc/aliases"),
            ]),
            "main.cf",
        );
        assert_eq!(
            e.text,
            format!("{SAMPLE}alias_maps = hash:/etc/aliases\nmynetworks = 127.0.0.0/8\n")
        );
        // A last line without a newline gets one before the appended setting.
        let e = edit_main("a = 1", &set(&[("b", "2")]), "main.cf");
        assert_eq!(e.text, "a = 1\nb = 2\n");
        let e = edit_main("", &set(&[("b", "")]), "main.cf");
        assert_eq!(e.text, "b =\n");
    }

    #[test]
    fn unchanged_value_is_a_no_op() {
        // Same value, even written differently (no spaces, continued): the file stays as is.
        for name_value in [
            ("relayhost", "[mx.example.com]:587"),
            (
                "mydestination",
                "$myhostname, localhost.$mydomain, localhost",
            ),
            ("myhostname", "old.example.com"),
        ] {
            let e = edit_main(SAMPLE, &set(&[name_value]), "main.cf");
            assert_eq!(e.text, SAMPLE, "{name_value:?}");
        }
        // Removing or commenting out what is not there changes nothing either.
        let e = edit_main(SAMPLE, &names(&["nothing_here"], Action::Remove), "main.cf");
        assert_eq!(e.text, SAMPLE);
        assert_eq!(e.not_found, vec!["nothing_here"]);
    }

    #[test]
    fn remove_takes_continuations_and_keeps_comments() {
        let e = edit_main(
            SAMPLE,
            &names(&["mydestination", "relayhost"], Action::Remove),
            "main.cf",
        );
        assert_eq!(
            e.text,
            "\
# main.cf header
myhostname = old.example.com

# Destinations, continued over lines:
# a comment inside the entry stays
"
        );
        assert!(e.not_found.is_empty());
    }

    #[test]
    fn comment_out_marks_every_physical_line() {
        let e = edit_main(
            SAMPLE,
            &names(&["mydestination"], Action::CommentOut),
            "main.cf",
        );
        assert_eq!(
            e.text,
            "\
# main.cf header
myhostname = old.example.com

# Destinations, continued over lines:
#mydestination = $myhostname,
#    localhost.$mydomain,
# a comment inside the entry stays
#    localhost
relayhost=[mx.example.com]:587
"
        );
        // The result reads as if the parameter were not set.
        let config = posthorn_config::Config::parse_str(&e.text, "main.cf").expect("parses");
        assert!(!config.is_set_explicitly("mydestination"));
        assert_eq!(config.raw("myhostname").as_deref(), Some("old.example.com"));
    }

    #[test]
    fn round_trips_through_the_config_parser() {
        let e = edit_main(
            SAMPLE,
            &set(&[
                ("mydestination", "a, b"),
                ("smtpd_banner", "$myhostname ESMTP posthorn"),
            ]),
            "main.cf",
        );
        let config = posthorn_config::Config::parse_str(&e.text, "main.cf").expect("parses");
        assert_eq!(config.raw("mydestination").as_deref(), Some("a, b"));
        assert_eq!(
            config.raw("smtpd_banner").as_deref(),
            Some("$myhostname ESMTP posthorn")
        );
        assert_eq!(
            config.raw("relayhost").as_deref(),
            Some("[mx.example.com]:587")
        );
        // Editing the result again with the same request changes nothing.
        let again = edit_main(&e.text, &set(&[("mydestination", "a, b")]), "main.cf");
        assert_eq!(again.text, e.text);
    }

    #[test]
    fn duplicates_are_all_edited_with_a_warning() {
        let text = "a = 1\nb = 2\na = 3\n";
        let e = edit_main(text, &set(&[("a", "9")]), "/etc/posthorn/main.cf");
        assert_eq!(e.text, "a = 9\nb = 2\na = 9\n");
        assert_eq!(
            e.warnings,
            vec!["/etc/posthorn/main.cf: multiple entries for \"a\""]
        );
        let e = edit_main(text, &set(&[("a", "1"), ("a", "2")]), "main.cf");
        assert_eq!(e.warnings[0], "ignoring earlier request: 'a = 1'");
        assert_eq!(e.text, "a = 2\nb = 2\na = 2\n");
    }

    #[test]
    fn names_match_whole_words_only() {
        let text = "myorigin = a\nmyorigin_extra = b\nmy = c\n";
        let e = edit_main(text, &names(&["my"], Action::Remove), "main.cf");
        assert_eq!(e.text, "myorigin = a\nmyorigin_extra = b\n");
        // A stray continuation at the top of the file belongs to no entry and stays.
        let e = edit_main(
            "  stray\nmy = c\n  more\n",
            &names(&["my"], Action::Remove),
            "x",
        );
        assert_eq!(e.text, "  stray\n");
    }

    #[test]
    fn key_and_setting_line() {
        assert_eq!(key_of("myorigin=x"), "myorigin");
        assert_eq!(key_of("myorigin = x"), "myorigin");
        assert_eq!(key_of("myorigin\t= x"), "myorigin");
        assert_eq!(key_of("bare"), "bare");
        assert_eq!(setting_line("a", ""), "a =\n");
        assert_eq!(setting_line("a", "b"), "a = b\n");
    }
}
