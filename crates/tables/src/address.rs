//! Postfix's lookup order for an address, with address extensions (`user+ext@domain`).
//!
//! For `user+ext@domain` and `recipient_delimiter = +` the keys tried are, in order and as
//! enabled by [`AddressLookup`]: `user+ext@domain`, `user@domain` (full), `user+ext`, `user`
//! (local part), `@domain` (catch-all). Each key is tried in the whole table or list before
//! the next key, as Postfix's `mail_addr_find` does.

use crate::{Lookup, TableError};

/// Which forms of an address to try; see the module documentation for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLookup {
    /// `user+ext@domain`, then `user@domain`.
    pub full: bool,
    /// `user+ext`, then `user` (only meaningful for local domains).
    pub local_part: bool,
    /// `@domain`.
    pub at_domain: bool,
}

impl AddressLookup {
    /// Every form: what [`lookup_address`] uses.
    pub const ALL: AddressLookup = AddressLookup {
        full: true,
        local_part: true,
        at_domain: true,
    };
    /// `virtual_mailbox_maps`, `virtual_alias_maps` for virtual domains: full and `@domain`.
    pub const VIRTUAL: AddressLookup = AddressLookup {
        full: true,
        local_part: false,
        at_domain: true,
    };
    /// `alias_maps`: alias keys are local names.
    pub const ALIASES: AddressLookup = AddressLookup {
        full: false,
        local_part: true,
        at_domain: false,
    };
}

/// A successful address lookup: what matched and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressMatch {
    /// The table's value.
    pub value: String,
    /// The key that matched (lowercased), e.g. `user@example.org` or `@example.org`.
    pub key: String,
    /// The extension with its delimiter (`+ext`) when the matching key dropped it, for
    /// `propagate_unmatched_extensions`; None when the key kept it or there was none.
    pub unmatched_extension: Option<String>,
}

/// Looks `address` up trying every form (full, local part, `@domain`).
pub fn lookup_address(
    table: &dyn Lookup,
    address: &str,
    delimiter: &str,
) -> Result<Option<String>, TableError> {
    lookup_address_with(table, address, delimiter, AddressLookup::ALL)
}

/// Looks `address` up trying the forms `opts` enables; `delimiter` is
/// `recipient_delimiter` (each character is a delimiter; empty means no extensions).
pub fn lookup_address_with(
    table: &dyn Lookup,
    address: &str,
    delimiter: &str,
    opts: AddressLookup,
) -> Result<Option<String>, TableError> {
    Ok(lookup_address_match(table, address, delimiter, opts)?.map(|m| m.value))
}

/// Like [`lookup_address_with`], but says which key matched and whether the extension was
/// dropped.
pub fn lookup_address_match(
    table: &dyn Lookup,
    address: &str,
    delimiter: &str,
    opts: AddressLookup,
) -> Result<Option<AddressMatch>, TableError> {
    let address = crate::fold(address);
    let (local, domain) = match address.rfind('@') {
        Some(at) => (&address[..at], Some(&address[at + 1..])),
        None => (address.as_ref(), None),
    };
    let (base, extension) = split_local_part(local, delimiter);
    let stripped = extension.map(|(delim, ext)| format!("{delim}{ext}"));
    let with_domain = |local: &str| match domain {
        Some(domain) => format!("{local}@{domain}"),
        None => local.to_owned(),
    };

    // (key, whether it dropped the extension)
    let mut keys: Vec<(String, bool)> = Vec::with_capacity(5);
    if opts.full {
        keys.push((address.to_string(), false));
        if extension.is_some() {
            keys.push((with_domain(base), true));
        }
    }
    if opts.local_part {
        keys.push((local.to_owned(), false));
        if extension.is_some() {
            keys.push((base.to_owned(), true));
        }
    }
    if opts.at_domain
        && let Some(domain) = domain.filter(|d| !d.is_empty())
    {
        keys.push((format!("@{domain}"), false));
    }

    let mut tried: Vec<&str> = Vec::with_capacity(keys.len());
    for (key, dropped) in &keys {
        if key.is_empty() || tried.contains(&key.as_str()) {
            continue;
        }
        tried.push(key);
        if let Some(value) = table.lookup(key)? {
            return Ok(Some(AddressMatch {
                value,
                key: key.clone(),
                unmatched_extension: if *dropped { stripped.clone() } else { None },
            }));
        }
    }
    Ok(None)
}

/// Splits a local part at the first recipient delimiter, as Postfix's `split_addr` does:
/// returns `(base, Some((delimiter, extension)))`, or `(local, None)` when there is no
/// extension.
///
/// Not split: an empty base (`+foo`), `postmaster`, `mailer-daemon`, `double-bounce`, and,
/// when `-` is a delimiter, `owner-*` and `*-request` (mailing-list conventions).
pub fn split_local_part<'a>(local: &'a str, delimiter: &str) -> (&'a str, Option<(char, &'a str)>) {
    let unsplit = (local, None);
    if delimiter.is_empty() {
        return unsplit;
    }
    for reserved in ["postmaster", "mailer-daemon", "double-bounce"] {
        if local.eq_ignore_ascii_case(reserved) {
            return unsplit;
        }
    }
    if delimiter.contains('-') {
        let lower = local.to_ascii_lowercase();
        if lower.starts_with("owner-") || (lower.len() > 8 && lower.ends_with("-request")) {
            return unsplit;
        }
    }
    match local.char_indices().find(|&(_, c)| delimiter.contains(c)) {
        Some((at, delim)) if at > 0 => {
            (&local[..at], Some((delim, &local[at + delim.len_utf8()..])))
        }
        _ => unsplit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InlineTable, Table};
    use std::cell::RefCell;

    /// A table that records the keys it was asked for.
    struct Recorder {
        keys: RefCell<Vec<String>>,
        table: InlineTable,
    }

    impl Recorder {
        fn new(spec: &str) -> Recorder {
            Recorder {
                keys: RefCell::new(Vec::new()),
                table: InlineTable::parse(spec).unwrap(),
            }
        }
        fn take(&self) -> Vec<String> {
            self.keys.take()
        }
    }

    impl Lookup for Recorder {
        fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
            self.keys.borrow_mut().push(key.to_owned());
            Ok(self.table.get(key).map(str::to_owned))
        }
    }

    #[test]
    fn order_with_extension() {
        let t = Recorder::new("{}");
        assert_eq!(
            lookup_address(&t, "User+Ext@Example.org", "+").unwrap(),
            None
        );
        assert_eq!(
            t.take(),
            vec![
                "user+ext@example.org",
                "user@example.org",
                "user+ext",
                "user",
                "@example.org"
            ]
        );
    }

    #[test]
    fn order_without_delimiter() {
        let t = Recorder::new("{}");
        lookup_address(&t, "user+ext@example.org", "").unwrap();
        assert_eq!(
            t.take(),
            vec!["user+ext@example.org", "user+ext", "@example.org"]
        );
        lookup_address(&t, "user@example.org", "+").unwrap();
        assert_eq!(t.take(), vec!["user@example.org", "user", "@example.org"]);
    }

    #[test]
    fn options_select_forms() {
        let t = Recorder::new("{}");
        lookup_address_with(&t, "a+b@d.org", "+", AddressLookup::VIRTUAL).unwrap();
        assert_eq!(t.take(), vec!["a+b@d.org", "a@d.org", "@d.org"]);
        lookup_address_with(&t, "a+b@d.org", "+", AddressLookup::ALIASES).unwrap();
        assert_eq!(t.take(), vec!["a+b", "a"]);
        // A bare local part: full and local forms coincide and are tried once.
        lookup_address(&t, "a+b", "+").unwrap();
        assert_eq!(t.take(), vec!["a+b", "a"]);
    }

    #[test]
    fn first_form_that_matches_wins() {
        let t = Table::open("inline:{ a@d.org=full, a=local, @d.org=catchall, a+x@d.org=exact }")
            .unwrap();
        assert_eq!(
            lookup_address(&t, "a+x@d.org", "+").unwrap().as_deref(),
            Some("exact")
        );
        assert_eq!(
            lookup_address(&t, "A+y@D.org", "+").unwrap().as_deref(),
            Some("full")
        );
        assert_eq!(
            lookup_address_with(&t, "a+y@d.org", "+", AddressLookup::ALIASES)
                .unwrap()
                .as_deref(),
            Some("local")
        );
        assert_eq!(
            lookup_address(&t, "zz@d.org", "+").unwrap().as_deref(),
            Some("catchall")
        );
        assert_eq!(lookup_address(&t, "zz@e.org", "+").unwrap(), None);

        let m = lookup_address_match(&t, "a+y@d.org", "+", AddressLookup::VIRTUAL)
            .unwrap()
            .unwrap();
        assert_eq!(m.key, "a@d.org");
        assert_eq!(m.unmatched_extension.as_deref(), Some("+y"));
        let m = lookup_address_match(&t, "a+x@d.org", "+", AddressLookup::VIRTUAL)
            .unwrap()
            .unwrap();
        assert_eq!(m.unmatched_extension, None);
    }

    #[test]
    fn works_through_a_table_list() {
        let list =
            crate::TableList::from_value("inline:{ x@d.org=1 }, inline:{ @d.org=2 }").unwrap();
        assert_eq!(
            lookup_address(&list, "x+y@d.org", "+").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(
            lookup_address(&list, "z@d.org", "+").unwrap().as_deref(),
            Some("2")
        );
    }

    #[test]
    fn several_delimiters() {
        let t = Recorder::new("{}");
        lookup_address_with(&t, "a-b+c@d.org", "+-", AddressLookup::VIRTUAL).unwrap();
        assert_eq!(t.take(), vec!["a-b+c@d.org", "a@d.org", "@d.org"]);
        assert_eq!(split_local_part("a-b+c", "+-"), ("a", Some(('-', "b+c"))));
        assert_eq!(split_local_part("a+", "+"), ("a", Some(('+', ""))));
    }

    #[test]
    fn reserved_names_are_not_split() {
        assert_eq!(split_local_part("+x", "+"), ("+x", None));
        assert_eq!(split_local_part("owner-list", "-"), ("owner-list", None));
        assert_eq!(
            split_local_part("list-request", "-+"),
            ("list-request", None)
        );
        assert_eq!(split_local_part("owner-list", "+"), ("owner-list", None));
        assert_eq!(split_local_part("a-request", "+"), ("a-request", None));
        assert_eq!(split_local_part("list-x", "-"), ("list", Some(('-', "x"))));
        assert_eq!(split_local_part("Postmaster", "+"), ("Postmaster", None));
        assert_eq!(split_local_part("-request", "-"), ("-request", None));
    }

    #[test]
    fn odd_addresses() {
        let t = Recorder::new("{}");
        lookup_address(&t, "", "+").unwrap();
        assert!(t.take().is_empty());
        lookup_address(&t, "user@", "+").unwrap();
        assert_eq!(t.take(), vec!["user@", "user"]);
        lookup_address(&t, "\"a@b\"@d.org", "+").unwrap();
        assert_eq!(t.take(), vec!["\"a@b\"@d.org", "\"a@b\"", "@d.org"]);
    }
}
