//! `$name` expansion of main.cf values, as Postfix's mac_expand(3) does it:
//! `$name`, `${name}`, `$(name)`, `$$`, `${name?text}` (text when name is non-empty),
//! `${name:text}` (text when name is empty or undefined), the braced operand forms
//! `${name?{text}}`, `${name:{text}}`, `${name?{text1}:{text2}}`, and the comparisons
//! `${{text1} == {text2} ? {text3} : {text4}}` (also `!=`).
//!
//! Error policy: expansion never fails and never loops. Problems (an undefined `$name`, a
//! parameter loop, a syntax error) are collected as messages for [`crate::Config::validate`];
//! the offending part expands to nothing.

use std::collections::{BTreeSet, HashMap};

use crate::diag::Severity;
use crate::main_cf::Config;
use crate::params::{self, DefaultValue};

/// Deepest nesting of parameter references and `${...}` expressions before giving up, as in
/// Postfix ("unreasonable macro call nesting").
const MAX_DEPTH: usize = 100;

/// Longest expansion result; protects against `a = $b $b`, `b = $c $c`, ... blow-ups.
const MAX_LEN: usize = 1 << 20;

/// Whitespace skipped around `{text}` operands.
const WS: &[char] = &[' ', '\t', '\r', '\n'];

/// Where a parameter's text comes from, and whether it still needs expansion.
enum Source {
    /// main.cf text: expand it.
    Expand(String),
    /// A computed value or a raw parameter: use it as it is.
    Literal(String),
}

/// One expansion session over a [`Config`]: remembers expanded values, the chain of
/// parameters being expanded (for loop detection) and the problems found.
pub(crate) struct Expander<'c> {
    /// The configuration that values come from.
    config: &'c Config,
    /// Scan mode: record `$name` references instead of expanding them; both branches of
    /// conditionals are visited.
    scan: bool,
    /// Names referenced so far (scan mode).
    pub(crate) referenced: BTreeSet<String>,
    /// Parameters currently being expanded, outermost first.
    stack: Vec<String>,
    /// Expanded values, by name.
    cache: HashMap<String, String>,
    /// Nesting depth of `${...}` expressions and references.
    depth: usize,
    /// Name whose explicit value is ignored, to compute what its default would be.
    ignore_explicit: Option<&'c str>,
    /// Problems found, in order.
    pub(crate) problems: Vec<Problem>,
}

/// Something wrong found while expanding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Warning (undefined name) or error (loop, syntax).
    pub(crate) severity: Severity,
    /// What is wrong.
    pub(crate) message: String,
    /// The innermost explicitly set parameter being expanded when it was found: the entry
    /// whose text (or whose references) has the problem.
    pub(crate) origin: Option<String>,
}

impl<'c> Expander<'c> {
    /// A session that expands values of `config`.
    pub(crate) fn new(config: &'c Config) -> Expander<'c> {
        Expander {
            config,
            scan: false,
            referenced: BTreeSet::new(),
            stack: Vec::new(),
            cache: HashMap::new(),
            depth: 0,
            ignore_explicit: None,
            problems: Vec::new(),
        }
    }

    /// A session that only collects the names that expanded texts refer to.
    pub(crate) fn scanner(config: &'c Config) -> Expander<'c> {
        Expander {
            scan: true,
            ..Expander::new(config)
        }
    }

    /// A session in which `name` is treated as not explicitly set, so that its value is its
    /// default.
    pub(crate) fn ignoring_explicit(config: &'c Config, name: &'c str) -> Expander<'c> {
        Expander {
            ignore_explicit: Some(name),
            ..Expander::new(config)
        }
    }

    /// The expanded value of parameter `name`, `None` when it is undefined (not set, not in
    /// the table). Loops are reported and expand to the empty string.
    pub(crate) fn value_of(&mut self, name: &str) -> Option<String> {
        if let Some(value) = self.cache.get(name) {
            return Some(value.clone());
        }
        if self.stack.iter().any(|n| n == name) {
            let chain = self.stack.join(" -> ");
            self.problem(
                Severity::Error,
                format!("parameter loop: {chain} -> {name}"),
            );
            return Some(String::new());
        }
        if !self.enter() {
            return Some(String::new());
        }
        // On the stack while its source is found too: computed defaults (myhostname,
        // mydomain) look at other parameters.
        self.stack.push(name.to_string());
        let value = match self.source(name) {
            None => None,
            Some(Source::Literal(value)) => Some(value),
            Some(Source::Expand(text)) => Some(self.expand(&text)),
        };
        self.stack.pop();
        self.depth -= 1;
        if let Some(value) = &value {
            self.cache.insert(name.to_string(), value.clone());
        }
        value
    }

    /// Expands `text`.
    pub(crate) fn expand(&mut self, text: &str) -> String {
        let mut out = String::new();
        self.expand_into(text, &mut out);
        out
    }

    /// Where the text of `name` comes from: explicit value, value set by the program,
    /// table default, or per-transport fallback.
    fn source(&mut self, name: &str) -> Option<Source> {
        let raw = params::param(name).is_some_and(|p| p.raw);
        if self.ignore_explicit != Some(name)
            && let Some(entry) = self.config.explicit.get(name)
        {
            return Some(if raw {
                Source::Literal(entry.value.clone())
            } else {
                Source::Expand(entry.value.clone())
            });
        }
        if let Some(value) = self.config.base_defaults.get(name) {
            return Some(Source::Literal(value.clone()));
        }
        if let Some(p) = params::param(name) {
            return Some(match p.default {
                DefaultValue::Text(text) if p.raw => Source::Literal(text.to_string()),
                DefaultValue::Text(text) => Source::Expand(text.to_string()),
                DefaultValue::Computed(_) if name == "myhostname" => {
                    Source::Literal(self.contextual_myhostname())
                }
                DefaultValue::Computed(_) if name == "mydomain" => {
                    Source::Literal(self.contextual_mydomain())
                }
                DefaultValue::Computed(f) => Source::Literal(f()),
            });
        }
        params::per_transport_fallback(name).map(|p| Source::Expand(format!("${}", p.name)))
    }

    /// The myhostname default in this configuration: the system host name, completed with an
    /// explicit mydomain (as Postfix does) or `.localdomain` when it has no dot.
    fn contextual_myhostname(&mut self) -> String {
        let host = params::system_hostname();
        if host.contains('.') {
            return host;
        }
        let domain_is_explicit = self.ignore_explicit != Some("mydomain")
            && self.config.explicit.contains_key("mydomain");
        let domain = if domain_is_explicit {
            self.value_of("mydomain").unwrap_or_default()
        } else {
            String::new()
        };
        if domain.is_empty() {
            format!("{host}.localdomain")
        } else {
            format!("{host}.{domain}")
        }
    }

    /// The mydomain default in this configuration: the effective myhostname minus its first
    /// label, or `localdomain`.
    fn contextual_mydomain(&mut self) -> String {
        let host = self.value_of("myhostname").unwrap_or_default();
        params::domain_of(&host)
    }

    /// Records a problem.
    fn problem(&mut self, severity: Severity, message: String) {
        if self.scan {
            return;
        }
        let origin = self
            .stack
            .iter()
            .rev()
            .find(|name| self.config.explicit.contains_key(name.as_str()))
            .cloned();
        let problem = Problem {
            severity,
            message,
            origin,
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// Enters one nesting level; false (after reporting) when that is too deep.
    fn enter(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            let chain = self.stack.join(" -> ");
            self.problem(
                Severity::Error,
                format!("unreasonable nesting of parameter references: {chain}"),
            );
            return false;
        }
        self.depth += 1;
        true
    }

    /// Appends the expansion of `text` to `out`.
    fn expand_into(&mut self, text: &str, out: &mut String) {
        let bytes = text.as_bytes();
        let mut literal_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            out.push_str(&text[literal_start..i]);
            match bytes.get(i + 1) {
                Some(b'$') => {
                    out.push('$');
                    i += 2;
                }
                Some(&open @ (b'{' | b'(')) => {
                    let close = if open == b'{' { b'}' } else { b')' };
                    match matching(bytes, i + 2, open, close) {
                        Some(end) => {
                            self.expression(&text[i + 2..end], out);
                            i = end + 1;
                        }
                        None => {
                            self.problem(
                                Severity::Error,
                                format!("truncated macro reference: \"{text}\""),
                            );
                            out.push_str(&text[i..]);
                            i = bytes.len();
                        }
                    }
                }
                _ => {
                    let start = i + 1;
                    let end = start
                        + bytes[start..]
                            .iter()
                            .take_while(|b| is_name_byte(**b))
                            .count();
                    if end == start {
                        self.problem(
                            Severity::Error,
                            format!("empty macro name after '$' in \"{text}\""),
                        );
                        out.push('$');
                        i = start;
                    } else {
                        self.reference(&text[start..end], out);
                        i = end;
                    }
                }
            }
            literal_start = i;
            if out.len() > MAX_LEN {
                self.problem(
                    Severity::Error,
                    format!("expansion is longer than {MAX_LEN} bytes; truncated"),
                );
                let mut cut = MAX_LEN;
                while !out.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.truncate(cut);
                return;
            }
        }
        out.push_str(&text[literal_start..]);
    }

    /// Appends the value of an unconditional `$name` reference.
    fn reference(&mut self, name: &str, out: &mut String) {
        if self.scan {
            self.referenced.insert(name.to_string());
            return;
        }
        match self.value_of(name) {
            Some(value) => out.push_str(&value),
            None => self.problem(Severity::Warning, format!("undefined parameter: ${name}")),
        }
    }

    /// Whether `name` has a non-empty value, for `${name?..}` / `${name:..}` (an undefined
    /// name is simply empty here, as in Postfix).
    fn test(&mut self, name: &str) -> bool {
        if self.scan {
            self.referenced.insert(name.to_string());
            return true;
        }
        self.value_of(name).is_some_and(|v| !v.is_empty())
    }

    /// Appends the expansion of the inside of `${...}` / `$(...)`.
    fn expression(&mut self, inner: &str, out: &mut String) {
        if !self.enter() {
            return;
        }
        if inner.trim_start_matches(WS).starts_with('{') {
            self.comparison(inner.trim_start_matches(WS), out);
        } else {
            let name_end = inner.find(['?', ':']).unwrap_or(inner.len());
            let name = &inner[..name_end];
            if name.is_empty() || !name.bytes().all(is_name_byte) {
                self.problem(
                    Severity::Error,
                    format!("parameter name syntax error in \"${{{inner}}}\""),
                );
            } else if name_end == inner.len() {
                self.reference(name, out);
            } else {
                let cond = self.test(name);
                let op = inner.as_bytes()[name_end];
                self.conditional(cond, op, &inner[name_end + 1..], inner, out);
            }
        }
        self.depth -= 1;
    }

    /// `{text1} == {text2}` or `!=`, optionally followed by `? ...` / `: ...`.
    fn comparison(&mut self, expr: &str, out: &mut String) {
        let Some((left, rest)) = self.operand(expr, expr) else {
            return;
        };
        let op_len = rest
            .bytes()
            .take_while(|b| b"<>!=?+-*/~&|%".contains(b))
            .count();
        let equal = match &rest[..op_len] {
            "==" => true,
            "!=" => false,
            op => {
                self.problem(
                    Severity::Error,
                    format!("\"==\" or \"!=\" expected, found \"{op}\" in \"${{{expr}}}\""),
                );
                return;
            }
        };
        let rest = rest[op_len..].trim_start_matches(WS);
        if !rest.starts_with('{') {
            self.problem(
                Severity::Error,
                format!(
                    "\"{{text}}\" expected after \"{op}\" in \"${{{expr}}}\"",
                    op = if equal { "==" } else { "!=" }
                ),
            );
            return;
        }
        let Some((right, rest)) = self.operand(rest, expr) else {
            return;
        };
        let left = self.expand(left);
        let right = self.expand(right);
        let cond = (left == right) == equal;
        match rest.bytes().next() {
            None => {
                if cond {
                    out.push_str("true");
                }
            }
            Some(op @ (b'?' | b':')) => self.conditional(cond, op, &rest[1..], expr, out),
            Some(_) => self.problem(
                Severity::Error,
                format!("\"?\" or \":\" expected at \"{rest}\" in \"${{{expr}}}\""),
            ),
        }
    }

    /// The result part of `?` / `:` expressions: `rest` follows the operator `op`.
    fn conditional(&mut self, cond: bool, op: u8, rest: &str, whole: &str, out: &mut String) {
        let Some((text, mut rest)) = self.operand(rest, whole) else {
            return;
        };
        if op == b'?' {
            if cond || self.scan {
                self.expand_into(text, out);
            }
            if rest.is_empty() {
                return;
            }
            let Some(after) = rest.strip_prefix(':') else {
                self.problem(
                    Severity::Error,
                    format!("\":\" expected at \"{rest}\" in \"${{{whole}}}\""),
                );
                return;
            };
            let Some((text, after)) = self.operand(after, whole) else {
                return;
            };
            if !cond || self.scan {
                self.expand_into(text, out);
            }
            rest = after;
        } else if !cond || self.scan {
            self.expand_into(text, out);
        }
        if !rest.is_empty() {
            self.problem(
                Severity::Error,
                format!("unexpected text \"{rest}\" in \"${{{whole}}}\""),
            );
        }
    }

    /// Splits one operand off `s`: a `{text}` (braces removed, whitespace around it
    /// skipped), or else all of `s` (Postfix 2.2 compatible `${name?text}`).
    fn operand<'t>(&mut self, s: &'t str, whole: &str) -> Option<(&'t str, &'t str)> {
        let trimmed = s.trim_start_matches(WS);
        if !trimmed.starts_with('{') {
            return Some((s, ""));
        }
        match matching(trimmed.as_bytes(), 1, b'{', b'}') {
            Some(end) => Some((&trimmed[1..end], trimmed[end + 1..].trim_start_matches(WS))),
            None => {
                self.problem(
                    Severity::Error,
                    format!("unbalanced {{}} in \"${{{whole}}}\""),
                );
                None
            }
        }
    }
}

/// Whether `b` may appear in a parameter name.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The index of the `close` that balances an `open` just before `from`.
fn matching(bytes: &[u8], from: usize, open: u8, close: u8) -> Option<usize> {
    let mut level = 1usize;
    for (i, &b) in bytes.iter().enumerate().skip(from) {
        if b == open {
            level += 1;
        } else if b == close {
            level -= 1;
            if level == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// The parameter names that `text` refers to, including those in both branches of
/// conditionals and the names tested by them.
#[cfg(test)]
pub(crate) fn referenced_names(text: &str) -> BTreeSet<String> {
    let config = Config::defaults();
    let mut expander = Expander::scanner(&config);
    expander.expand(text);
    expander.referenced
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration from main.cf text; panics on syntax errors (tests only).
    fn config(text: &str) -> Config {
        Config::parse_str(text, "main.cf").expect("test main.cf parses")
    }

    /// Expands `text` in `config`, returning the result and the problems.
    fn expand(config: &Config, text: &str) -> (String, Vec<(Severity, String)>) {
        let mut expander = Expander::new(config);
        let value = expander.expand(text);
        let problems = expander
            .problems
            .into_iter()
            .map(|p| (p.severity, p.message))
            .collect();
        (value, problems)
    }

    #[test]
    fn plain_braced_and_parenthesised_references() {
        let c = config("a = A\nb = B\n");
        assert_eq!(expand(&c, "$a-${a}-$(a)-$b.x").0, "A-A-A-B.x");
        assert_eq!(expand(&c, "x$a_y").0, "x"); // the name is a_y, undefined
        assert_eq!(expand(&c, "cost: $$5").0, "cost: $5");
        assert_eq!(expand(&c, "$$a").0, "$a");
    }

    #[test]
    fn conditionals() {
        let c = config("full = yes\nempty =\n");
        let cases = [
            ("${full?X}", "X"),
            ("${empty?X}", ""),
            ("${undefined?X}", ""),
            ("${full:X}", ""),
            ("${empty:X}", "X"),
            ("${undefined:X}", "X"),
            ("${full?{X}}", "X"),
            ("${empty:{ X }}", " X "),
            ("${full?{A}:{B}}", "A"),
            ("${empty?{A}:{B}}", "B"),
            ("${empty ? {A} : {B}}", ""), // "empty " is not a name: syntax error
            ("${full?{A} : B}", "A"),
            ("${empty?{A}:B}", "B"),
            ("${full?a:b}", "a:b"), // unbraced: the rest is literal text
            ("${full?$full}", "yes"),
            ("${empty:{$full}}", "yes"),
            ("$(full?x)", "x"),
        ];
        for (text, want) in cases {
            assert_eq!(expand(&c, text).0, want, "{text}");
        }
        assert!(!expand(&c, "${empty ? {A} : {B}}").1.is_empty());
    }

    #[test]
    fn comparisons() {
        let c = config("level = 2\n");
        assert_eq!(expand(&c, "${{$level} == {2} ? {two} : {other}}").0, "two");
        assert_eq!(
            expand(&c, "${{$level} != {2} ? {two} : {other}}").0,
            "other"
        );
        assert_eq!(expand(&c, "${{$level} == {2}}").0, "true");
        assert_eq!(expand(&c, "${{$level} == {3}}").0, "");
        let (value, problems) = expand(&c, "${{$level} < {3} ? {x}}");
        assert_eq!(value, "");
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn recursion_through_parameters_and_defaults() {
        let c = config("myhostname = mail.example.com\n");
        assert_eq!(c.get("myorigin"), "mail.example.com");
        assert_eq!(c.get("mydomain"), "example.com");
        assert_eq!(
            c.get("mydestination"),
            "mail.example.com, localhost.example.com, localhost"
        );
        assert_eq!(c.get("smtpd_banner"), "mail.example.com ESMTP posthorn");
    }

    #[test]
    fn loops_are_errors_not_hangs() {
        let c = config("a = x$b\nb = y$a\nself = $self\n");
        let (value, problems) = expand(&c, "$a");
        assert_eq!(value, "xy");
        assert!(
            problems
                .iter()
                .any(|(s, m)| *s == Severity::Error && m.contains("parameter loop: a -> b -> a")),
            "{problems:?}"
        );
        assert_eq!(expand(&c, "[$self]").0, "[]");
        // A loop through a conditional is caught too.
        let c = config("a = ${b?$b}\nb = ${a:x}$a\n");
        let (_, problems) = expand(&c, "$a");
        assert!(problems.iter().any(|(_, m)| m.contains("parameter loop")));
    }

    #[test]
    fn blow_ups_are_bounded() {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!("p{i} = $p{n} $p{n}\n", n = i + 1));
        }
        text.push_str("p40 = xxxxxxxxxxxxxxxx\n");
        let c = config(&text);
        let (value, problems) = expand(&c, "$p0");
        assert!(value.len() <= MAX_LEN);
        assert!(problems.iter().any(|(_, m)| m.contains("longer than")));
    }

    #[test]
    fn deep_chains_are_bounded() {
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!("q{i} = $q{}\n", i + 1));
        }
        let c = config(&text);
        let (_, problems) = expand(&c, "$q0");
        assert!(
            problems
                .iter()
                .any(|(_, m)| m.contains("unreasonable nesting"))
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        let c = Config::defaults();
        for bad in [
            "${unclosed",
            "$",
            "a $ b",
            "${bad name}",
            "${x?{unbalanced}",
        ] {
            let (_, problems) = expand(&c, bad);
            assert!(
                problems.iter().any(|(s, _)| *s == Severity::Error),
                "{bad}: {problems:?}"
            );
        }
        let (value, problems) = expand(&c, "$nonexistent_parameter!");
        assert_eq!(value, "!");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, Severity::Warning);
    }

    #[test]
    fn scan_finds_all_names() {
        let names = referenced_names("$a ${b?{$c}:{$d}} ${e:x} $$f ${{$g} == {h} ? {$i}}");
        let want: BTreeSet<String> = ["a", "b", "c", "d", "e", "g", "i"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, want);
    }
}
