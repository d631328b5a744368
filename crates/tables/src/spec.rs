//! Table specs as written in main.cf: `type:name`, lists of them, and the in-memory types.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::HashDb;
use crate::hash::db_path_for;
use crate::{Lookup, TableError, fold};

/// One open lookup table.
#[derive(Debug)]
pub enum Table {
    /// `static:value` (or `static:{value with spaces}`): the same value for every key.
    Static(String),
    /// `inline:{ key=value, { key = value with spaces } }`.
    Inline(InlineTable),
    /// `hash:/path`: the compiled `/path.db`, following rebuilds.
    Hash(HashDb),
}

impl Table {
    /// Opens a table from its spec, e.g. `hash:/etc/aliases` (which reads `/etc/aliases.db`).
    pub fn open(spec: &str) -> Result<Table, TableError> {
        let spec = spec.trim();
        let Some((kind, name)) = spec.split_once(':') else {
            return Err(TableError::BadSpec(format!(
                "missing table type in \"{spec}\" (expected type:name, e.g. hash:/etc/postfix/virtual)"
            )));
        };
        match kind {
            "static" => {
                let value = match name.strip_prefix('{') {
                    Some(rest) => rest
                        .strip_suffix('}')
                        .ok_or_else(|| TableError::BadSpec(format!("missing '}}' in \"{spec}\"")))?
                        .trim(),
                    None => name,
                };
                if value.is_empty() {
                    return Err(TableError::BadSpec(format!(
                        "\"{spec}\": static: needs a value"
                    )));
                }
                Ok(Table::Static(value.to_owned()))
            }
            "inline" => InlineTable::parse(name)
                .map(Table::Inline)
                .map_err(|why| TableError::BadSpec(format!("\"{spec}\": {why}"))),
            "hash" => {
                if name.is_empty() {
                    return Err(TableError::BadSpec(format!(
                        "\"{spec}\": hash: needs a file name, e.g. hash:/etc/aliases"
                    )));
                }
                HashDb::open(&db_path_for(Path::new(name))).map(Table::Hash)
            }
            _ => Err(TableError::BadSpec(format!(
                "unsupported lookup table type \"{kind}\" in \"{spec}\" \
                 (posthorn supports hash:, inline: and static:)"
            ))),
        }
    }

    /// Looks `key` up (case-insensitively); a `static:` table answers every key.
    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        match self {
            Table::Static(value) => Ok(Some(value.clone())),
            Table::Inline(table) => Ok(table.get(key).map(str::to_owned)),
            Table::Hash(db) => db.lookup(key),
        }
    }
}

impl Lookup for Table {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Table::lookup(self, key)
    }
}

impl fmt::Display for Table {
    /// The spec the table was opened from (inline entries in source order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Table::Static(value) if value.contains(char::is_whitespace) => {
                write!(f, "static:{{{value}}}")
            }
            Table::Static(value) => write!(f, "static:{value}"),
            Table::Inline(table) => {
                f.write_str("inline:{")?;
                for (n, (k, v)) in table.iter().enumerate() {
                    let sep = if n == 0 { " " } else { ", " };
                    if v.contains([' ', '\t', ',', '{', '}']) || v.is_empty() {
                        write!(f, "{sep}{{{k} = {v}}}")?;
                    } else {
                        write!(f, "{sep}{k}={v}")?;
                    }
                }
                f.write_str(" }")
            }
            Table::Hash(db) => write!(f, "hash:{}", db.source_path().display()),
        }
    }
}

/// A main.cf table list: the tables are consulted in order and the first match wins.
#[derive(Debug)]
pub struct TableList(pub Vec<Table>);

impl TableList {
    /// Opens every spec, in order.
    pub fn open(specs: &[String]) -> Result<TableList, TableError> {
        specs
            .iter()
            .map(|s| Table::open(s))
            .collect::<Result<_, _>>()
            .map(TableList)
    }

    /// Opens the tables of a main.cf value such as `hash:/etc/aliases, inline:{ a=b }`.
    pub fn from_value(value: &str) -> Result<TableList, TableError> {
        TableList::open(&split_table_list(value))
    }

    /// The first table's answer for `key`, trying the tables in order.
    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        for table in &self.0 {
            if let Some(value) = table.lookup(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Whether the list has no tables (the parameter was empty).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tables, in lookup order.
    pub fn tables(&self) -> &[Table] {
        &self.0
    }
}

impl Lookup for TableList {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        TableList::lookup(self, key)
    }
}

/// Splits a main.cf table-list value into specs at commas and whitespace, except inside
/// `{ ... }` (so `inline:{ a=1, b=2 }` stays one spec).
pub fn split_table_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0_usize;
    for ch in value.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && (ch == ',' || ch.is_whitespace()) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(ch);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The entries of an `inline:{...}` table, keys lowercased.
#[derive(Debug, Clone, Default)]
pub struct InlineTable {
    /// Key to index in `entries`.
    index: HashMap<String, usize>,
    /// `(key, value)` in spec order, first occurrence of each key.
    entries: Vec<(String, String)>,
}

impl InlineTable {
    /// Parses the part after `inline:`, braces included: `{ a=1, b = 2, {k = v w} }`.
    ///
    /// Entries are separated by commas or whitespace; whitespace around `=` is allowed; an
    /// entry in its own braces may hold whitespace and commas in its value. A repeated key
    /// keeps its first value, as in `hash:` tables.
    pub fn parse(text: &str) -> Result<InlineTable, String> {
        let text = text.trim();
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or("the entries must be enclosed in { }")?;
        let mut table = InlineTable::default();
        let mut rest = inner.trim_start_matches(is_separator);
        while !rest.is_empty() {
            let (key, value, after) = if rest.starts_with('{') {
                let end = closing_brace(rest).ok_or("missing '}'")?;
                let entry = &rest[1..end];
                let (key, value) = entry
                    .split_once('=')
                    .ok_or_else(|| format!("missing '=' in \"{{{entry}}}\""))?;
                (key.trim(), value.trim(), &rest[end + 1..])
            } else {
                let key_end = rest
                    .find(|c: char| c == '=' || is_separator(c) || c == '{' || c == '}')
                    .unwrap_or(rest.len());
                let key = &rest[..key_end];
                let after_key = rest[key_end..].trim_start_matches(char::is_whitespace);
                let Some(after_eq) = after_key.strip_prefix('=') else {
                    return Err(format!("missing '=' after \"{key}\""));
                };
                let after_eq = after_eq.trim_start_matches(char::is_whitespace);
                let value_end = after_eq.find(is_separator).unwrap_or(after_eq.len());
                (key, &after_eq[..value_end], &after_eq[value_end..])
            };
            if key.is_empty() {
                return Err("empty key".to_owned());
            }
            if value.contains(['{', '}']) {
                return Err(format!("unexpected brace in the value of \"{key}\""));
            }
            table.insert(key, value);
            rest = after.trim_start_matches(is_separator);
        }
        Ok(table)
    }

    /// Adds an entry unless the (folded) key is already present.
    fn insert(&mut self, key: &str, value: &str) {
        let key = fold(key).into_owned();
        if !self.index.contains_key(&key) {
            self.index.insert(key.clone(), self.entries.len());
            self.entries.push((key, value.to_owned()));
        }
    }

    /// The value for `key`, matched case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        let index = *self.index.get(fold(key).as_ref())?;
        self.entries.get(index).map(|(_, v)| v.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in spec order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl Lookup for InlineTable {
    fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.get(key).map(str::to_owned))
    }
}

/// Separators between inline entries.
fn is_separator(c: char) -> bool {
    c == ',' || c.is_whitespace()
}

/// Byte index of the `}` matching the `{` at the start of `text`.
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0_usize;
    for (at, ch) in text.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build_hash;

    fn inline(spec: &str) -> InlineTable {
        match Table::open(spec).unwrap() {
            Table::Inline(t) => t,
            other => panic!("not inline: {other:?}"),
        }
    }

    #[test]
    fn static_answers_every_key() {
        let t = Table::open("static:relay").unwrap();
        assert_eq!(t.lookup("anything").unwrap().as_deref(), Some("relay"));
        assert_eq!(t.lookup("").unwrap().as_deref(), Some("relay"));
        let t = Table::open("static:{ text with spaces }").unwrap();
        assert_eq!(t.lookup("x").unwrap().as_deref(), Some("text with spaces"));
        assert_eq!(t.to_string(), "static:{text with spaces}");
        assert!(matches!(
            Table::open("static:"),
            Err(TableError::BadSpec(_))
        ));
        assert!(matches!(
            Table::open("static:{oops"),
            Err(TableError::BadSpec(_))
        ));
    }

    #[test]
    fn inline_forms() {
        let t = inline("inline:{ a=1, b = 2 }");
        assert_eq!(t.get("a"), Some("1"));
        assert_eq!(t.get("B"), Some("2"));
        assert_eq!(t.len(), 2);

        let t = inline("inline:{ {key = value with space}, k2=v2 }");
        assert_eq!(t.get("key"), Some("value with space"));
        assert_eq!(t.get("k2"), Some("v2"));

        let t = inline("inline:{a=1 B=2,c=3,{ d = x, y }  e =5}");
        let all: Vec<_> = t.iter().collect();
        assert_eq!(
            all,
            vec![
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "x, y"),
                ("e", "5")
            ]
        );

        let t = inline("inline:{ User@Example.org=local, user@example.org=dup, empty= }");
        assert_eq!(t.get("user@example.ORG"), Some("local"));
        assert_eq!(t.get("empty"), Some(""));
        assert!(inline("inline:{}").is_empty());
        assert!(inline("inline:{ , }").is_empty());
    }

    #[test]
    fn inline_errors() {
        for bad in [
            "inline:a=1",
            "inline:{ a=1",
            "inline:{ a }",
            "inline:{ a b=1 }",
            "inline:{ {a b} }",
            "inline:{ {a=b }",
            "inline:{ =1 }",
            "inline:{ a={b} }",
        ] {
            match Table::open(bad) {
                Err(TableError::BadSpec(text)) => assert!(text.contains(bad), "{bad}: {text}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn inline_display_round_trips() {
        let t = Table::open("inline:{ a=1, {b = x y}, c= }").unwrap();
        let text = t.to_string();
        assert_eq!(text, "inline:{ a=1, {b = x y}, {c = } }");
        let again = inline(&text);
        assert_eq!(again.get("b"), Some("x y"));
        assert_eq!(again.get("c"), Some(""));
    }

    #[test]
    fn bad_specs() {
        let err = Table::open("/etc/aliases").unwrap_err().to_string();
        assert!(err.contains("missing table type"), "{err}");
        let err = Table::open("btree:/etc/aliases").unwrap_err().to_string();
        assert!(
            err.contains("unsupported lookup table type \"btree\""),
            "{err}"
        );
        assert!(matches!(Table::open("hash:"), Err(TableError::BadSpec(_))));
    }

    #[test]
    fn hash_spec_opens_db_and_missing_db_names_postmap() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("aliases");
        let spec = format!("hash:{}", src.display());
        let err = Table::open(&spec).unwrap_err().to_string();
        assert!(err.contains(&format!("postmap {}", src.display())), "{err}");
        assert!(err.contains("newaliases"), "{err}");

        build_hash(&db_path_for(&src), vec![("root".into(), "admin".into())]).unwrap();
        let t = Table::open(&spec).unwrap();
        assert_eq!(t.lookup("ROOT").unwrap().as_deref(), Some("admin"));
        assert_eq!(t.lookup("nobody").unwrap(), None);
        assert_eq!(t.to_string(), spec);
    }

    #[test]
    fn split_lists_respect_braces() {
        assert_eq!(
            split_table_list("hash:/etc/aliases, inline:{ a=1, {b = x y} }  static:{ s p },,"),
            vec![
                "hash:/etc/aliases",
                "inline:{ a=1, {b = x y} }",
                "static:{ s p }"
            ]
        );
        assert_eq!(split_table_list("  \n\t "), Vec::<String>::new());
        assert_eq!(split_table_list("a,b c"), vec!["a", "b", "c"]);
    }

    #[test]
    fn list_first_match_wins() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("virtual");
        build_hash(&db_path_for(&src), vec![("a".into(), "from-hash".into())]).unwrap();
        let value = format!(
            "inline:{{ b=from-inline, a=shadowed }}, hash:{}, static:fallback",
            src.display()
        );
        let list = TableList::from_value(&value).unwrap();
        assert_eq!(list.tables().len(), 3);
        assert!(!list.is_empty());
        assert_eq!(list.lookup("A").unwrap().as_deref(), Some("shadowed"));
        assert_eq!(list.lookup("b").unwrap().as_deref(), Some("from-inline"));
        assert_eq!(list.lookup("zzz").unwrap().as_deref(), Some("fallback"));

        let list = TableList::open(&[format!("hash:{}", src.display())]).unwrap();
        assert_eq!(list.lookup("a").unwrap().as_deref(), Some("from-hash"));
        assert_eq!(list.lookup("zzz").unwrap(), None);
        assert!(TableList::open(&[]).unwrap().is_empty());
        assert!(TableList::open(&["static:x".into(), "nope".into()]).is_err());
    }
}
