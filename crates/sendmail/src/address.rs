//! Addresses and names from the command line and the password database.
//!
//! Like Postfix's sendmail, each recipient operand is read as an RFC 5322 address list, so
//! `sendmail 'Bob <bob@example.com>, carol'` has two recipients, `bob@example.com` and
//! `carol`: lists are split at commas outside quotes, comments and angle brackets; a
//! `<route-addr>` wins over the phrase before it; comments and whitespace outside quotes go.
//! Quoted local parts keep their quotes (`"john doe"@example.com`). Qualifying bare names
//! (`carol` -> `carol@$myorigin`) is cleanup's job, not ours.

/// The addresses in one command-line operand, in order; empty when it holds none.
pub fn parse_address_list(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for group in split_top_level(text) {
        if let Some(a) = group_address(&group) {
            out.push(a);
        }
    }
    out
}

/// The envelope sender given with `-f`/`-r`: the first address of the value, `""` (the null
/// sender) for `''` or `<>`. Returns a warning when the value held more than one address,
/// which Postfix also accepts with a warning.
pub fn parse_sender(value: &str) -> (String, Option<String>) {
    let mut all = split_top_level(value)
        .into_iter()
        .filter_map(|g| group_address(&g));
    let first = all.next().unwrap_or_default();
    let warning = all
        .next()
        .map(|_| format!("-f option specified malformed sender: {value}"));
    (first, warning)
}

/// Splits at commas that are outside quotes, comments and angle brackets.
fn split_top_level(text: &str) -> Vec<String> {
    let mut groups = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped, mut comment, mut angle) = (false, false, 0usize, false);
    for ch in text.chars() {
        if escaped {
            escaped = false;
        } else if ch == '\\' && (quoted || comment > 0) {
            escaped = true;
        } else if quoted {
            quoted = ch != '"';
        } else if comment > 0 {
            match ch {
                '(' => comment += 1,
                ')' => comment -= 1,
                _ => {}
            }
        } else {
            match ch {
                '"' => quoted = true,
                '(' => comment = 1,
                '<' => angle = true,
                '>' => angle = false,
                ',' if !angle => {
                    groups.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
        }
        cur.push(ch);
    }
    groups.push(cur);
    groups
}

/// The address of one list member: the last `<...>` if there is one, else the member with
/// comments and unquoted whitespace removed. `<>` gives `Some("")`; a member with nothing in
/// it gives `None`.
fn group_address(group: &str) -> Option<String> {
    let mut plain = String::new();
    let mut angle: Option<String> = None;
    let mut in_angle: Option<String> = None;
    let (mut quoted, mut escaped, mut comment) = (false, false, 0usize);
    for ch in group.chars() {
        let target = match in_angle.as_mut() {
            Some(a) => a,
            None => &mut plain,
        };
        if escaped {
            escaped = false;
            if comment == 0 {
                target.push(ch);
            }
            continue;
        }
        if comment > 0 {
            match ch {
                '\\' => escaped = true,
                '(' => comment += 1,
                ')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        if quoted {
            if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                quoted = false;
            }
            target.push(ch);
            continue;
        }
        match ch {
            '"' => {
                quoted = true;
                target.push(ch);
            }
            '(' => comment = 1,
            '<' => in_angle = Some(String::new()),
            '>' => angle = in_angle.take().or(angle),
            c if c.is_whitespace() => {}
            c => target.push(c),
        }
    }
    if let Some(open) = in_angle {
        // "<bob@x" without '>': take what follows '<'.
        angle = Some(open);
    }
    match angle {
        // A route (<@a,@b:user@x>) keeps only the mailbox, as RFC 5321 says to.
        Some(a) => Some(match a.rfind(':') {
            Some(i) if a.starts_with('@') => a[i + 1..].to_string(),
            _ => a,
        }),
        None if plain.is_empty() => None,
        None => Some(plain),
    }
}

/// Postfix's fullname(): `NAME` from the environment if set, else the password entry's
/// GECOS field up to the first comma, with each `&` replaced by the login name with its
/// first letter in upper case. `None` when that leaves nothing.
pub fn full_name(env_name: Option<&str>, gecos: &str, login: &str) -> Option<String> {
    if let Some(n) = env_name.filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let field = gecos.split(',').next().unwrap_or("");
    let mut cap = String::new();
    let mut chars = login.chars();
    if let Some(first) = chars.next() {
        cap.extend(first.to_uppercase());
        cap.push_str(chars.as_str());
    }
    let name = field.replace('&', &cap);
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(parse_address_list("bob@example.com"), ["bob@example.com"]);
        assert_eq!(
            parse_address_list("Bob Smith <bob@x>, carol"),
            ["bob@x", "carol"]
        );
        assert_eq!(parse_address_list("a@x,b@y ,, c@z"), ["a@x", "b@y", "c@z"]);
        assert_eq!(parse_address_list("\"Smith, Bob\" <bob@x>"), ["bob@x"]);
        assert_eq!(parse_address_list("bob@x (Bob, the builder)"), ["bob@x"]);
        assert_eq!(parse_address_list("\"john doe\"@x"), ["\"john doe\"@x"]);
        assert_eq!(parse_address_list("<@relay:bob@x>"), ["bob@x"]);
        assert_eq!(parse_address_list("  "), Vec::<String>::new());
        assert_eq!(parse_address_list("-t"), ["-t"]);
        assert_eq!(parse_address_list("<bob@x"), ["bob@x"]);
    }

    #[test]
    fn senders() {
        assert_eq!(parse_sender("alice@x"), ("alice@x".into(), None));
        assert_eq!(parse_sender("<alice@x>"), ("alice@x".into(), None));
        assert_eq!(parse_sender("<>"), (String::new(), None));
        assert_eq!(parse_sender(""), (String::new(), None));
        assert_eq!(parse_sender("Alice <alice@x>"), ("alice@x".into(), None));
        let (s, w) = parse_sender("a@x, b@y");
        assert_eq!(s, "a@x");
        assert_eq!(
            w.as_deref(),
            Some("-f option specified malformed sender: a@x, b@y")
        );
    }

    #[test]
    fn full_names() {
        assert_eq!(
            full_name(Some("Env Name"), "Ignored", "al").as_deref(),
            Some("Env Name")
        );
        assert_eq!(
            full_name(None, "Alice Example,Room 1,555", "alice").as_deref(),
            Some("Alice Example")
        );
        assert_eq!(
            full_name(None, "& Jones", "bob").as_deref(),
            Some("Bob Jones")
        );
        assert_eq!(full_name(Some(""), ",,,", "bob"), None);
        assert_eq!(full_name(None, "", "bob"), None);
    }
}
