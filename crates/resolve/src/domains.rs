//! Domain match lists from main.cf (mydestination, virtual_*_domains, relay_domains): names,
//! `.parent` patterns, `!negations` and `type:table` entries, first match wins.

use posthorn_config::Config;
use posthorn_tables::Table;

use crate::ResolveError;

/// How a list matches subdomains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// A plain string list (mydestination, virtual_*_domains in Postfix): a name matches
    /// only itself, tables are queried with the domain only.
    Exact,
    /// A domain list (relay_domains): `.example.com` matches subdomains, and tables are also
    /// queried with `.parent` keys.
    Domain,
    /// A domain list whose parameter is in parent_domain_matches_subdomains: `example.com`
    /// also matches its subdomains, and tables are queried with bare parent names.
    Parent,
}

/// One list element.
#[derive(Debug)]
enum Pattern {
    /// A domain name or `.domain`, lowercased.
    Name(String),
    /// A lookup table queried with the domain.
    Table(Table),
}

/// A main.cf domain list, ready to match.
#[derive(Debug)]
pub(crate) struct DomainList {
    /// The parameter name, for errors.
    param: &'static str,
    style: Style,
    /// Elements in order, each with its negation flag.
    patterns: Vec<(bool, Pattern)>,
}

impl DomainList {
    /// Reads and opens the list `param`; a table that cannot be opened is an error.
    pub(crate) fn new(c: &Config, param: &'static str, style: Style) -> Result<Self, ResolveError> {
        let mut patterns = Vec::new();
        for item in c.get_list(param) {
            let (negate, item) = match item.strip_prefix('!') {
                Some(rest) => (true, rest.to_string()),
                None => (false, item),
            };
            let pattern = if item.contains(':') && !item.starts_with('[') {
                Pattern::Table(Table::open(&item).map_err(|e| ResolveError::Config {
                    param: param.to_string(),
                    reason: e.to_string(),
                })?)
            } else {
                Pattern::Name(item.trim_end_matches('.').to_ascii_lowercase())
            };
            patterns.push((negate, pattern));
        }
        Ok(DomainList {
            param,
            style,
            patterns,
        })
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `domain` (lowercased) is in the list. A failing table is an error.
    pub(crate) fn contains(&self, domain: &str) -> Result<bool, ResolveError> {
        for (negate, pattern) in &self.patterns {
            let hit = match pattern {
                Pattern::Name(name) => self.name_matches(name, domain),
                Pattern::Table(table) => self.table_matches(table, domain)?,
            };
            if hit {
                return Ok(!negate);
            }
        }
        Ok(false)
    }

    fn name_matches(&self, name: &str, domain: &str) -> bool {
        if name == domain {
            return true;
        }
        match self.style {
            Style::Exact => false,
            Style::Domain => name.starts_with('.') && domain.ends_with(name),
            Style::Parent => {
                let parent = name.strip_prefix('.').unwrap_or(name);
                domain.len() > parent.len()
                    && domain.ends_with(parent)
                    && domain.as_bytes()[domain.len() - parent.len() - 1] == b'.'
            }
        }
    }

    fn table_matches(&self, table: &Table, domain: &str) -> Result<bool, ResolveError> {
        let lookup = |key: &str| {
            table
                .lookup(key)
                .map(|v| v.is_some())
                .map_err(|source| ResolveError::Lookup {
                    param: self.param.to_string(),
                    key: key.to_string(),
                    source,
                })
        };
        if lookup(domain)? {
            return Ok(true);
        }
        if self.style == Style::Exact {
            return Ok(false);
        }
        for (i, _) in domain.match_indices('.') {
            let key = match self.style {
                Style::Parent => &domain[i + 1..],
                _ => &domain[i..],
            };
            if !key.is_empty() && lookup(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(value: &str, style: Style) -> DomainList {
        let c = Config::parse_str(&format!("relay_domains = {value}\n"), "main.cf").unwrap();
        DomainList::new(&c, "relay_domains", style).unwrap()
    }

    #[test]
    fn exact_names_are_case_insensitive() {
        let l = list("Example.COM, other.org.", Style::Exact);
        assert!(l.contains("example.com").unwrap());
        assert!(l.contains("other.org").unwrap());
        assert!(!l.contains("sub.example.com").unwrap());
    }

    #[test]
    fn dot_patterns_match_subdomains_in_domain_lists() {
        let l = list(".example.com", Style::Domain);
        assert!(l.contains("a.b.example.com").unwrap());
        assert!(!l.contains("example.com").unwrap());
        let l = list("example.com", Style::Domain);
        assert!(!l.contains("sub.example.com").unwrap());
        let l = list("example.com", Style::Parent);
        assert!(l.contains("sub.example.com").unwrap());
        assert!(!l.contains("badexample.com").unwrap());
    }

    #[test]
    fn negation_and_first_match() {
        let l = list("!no.example.com, .example.com", Style::Domain);
        assert!(!l.contains("no.example.com").unwrap());
        assert!(l.contains("yes.example.com").unwrap());
    }

    #[test]
    fn tables_are_queried_with_domain_and_parents() {
        let l = list("inline:{ x.org=ok, .example.com=ok }", Style::Exact);
        assert!(l.contains("x.org").unwrap());
        assert!(!l.contains("sub.example.com").unwrap());
        let l = list("inline:{ .example.com=ok }", Style::Domain);
        assert!(l.contains("sub.example.com").unwrap());
        let l = list("inline:{ example.com=ok }", Style::Parent);
        assert!(l.contains("sub.example.com").unwrap());
    }

    #[test]
    fn unopenable_table_is_a_config_error() {
        let c = Config::parse_str("relay_domains = btree:/nonexistent\n", "main.cf").unwrap();
        let e = DomainList::new(&c, "relay_domains", Style::Domain).unwrap_err();
        assert!(matches!(e, ResolveError::Config { ref param, .. } if param == "relay_domains"));
    }
}
