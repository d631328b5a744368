//! Who may list or flush the queue (`authorized_mailq_users`, `authorized_flush_users`).
//! The configuration directory rule is posthorn_config::trust, shared with postdrop.

use posthorn_tables::{Table, TableError, split_table_list};

/// Whether `user` is in a user list such as `authorized_mailq_users`: Postfix's string list
/// rules, first match wins. An element is a login name, or a lookup table (`type:name`,
/// e.g. `static:anyone`, `hash:/etc/posthorn/mailq_users`) where the user name is the key;
/// `!` before an element turns a match into a refusal.
pub fn user_in_list(value: &str, user: &str) -> Result<bool, TableError> {
    for elem in split_table_list(value) {
        let (negated, pattern) = match elem.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, elem.as_str()),
        };
        let matched = if pattern.contains(':') {
            Table::open(pattern)?.lookup(user)?.is_some()
        } else {
            pattern == user
        };
        if matched {
            return Ok(!negated);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_lists() {
        assert!(user_in_list("static:anyone", "joe").unwrap());
        assert!(user_in_list("root, joe", "joe").unwrap());
        assert!(!user_in_list("root, joe", "jim").unwrap());
        assert!(!user_in_list("", "jim").unwrap());
        assert!(!user_in_list("!joe, static:anyone", "joe").unwrap());
        assert!(user_in_list("!joe, static:anyone", "jim").unwrap());
        assert!(user_in_list("inline:{ jim=yes, ann=yes }", "ann").unwrap());
        assert!(!user_in_list("inline:{ jim=yes, ann=yes }", "joe").unwrap());
        assert!(user_in_list("nosuchtype:x", "joe").is_err());
    }
}
