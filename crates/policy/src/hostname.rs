//! Syntax checks for host names and address literals, with Postfix's rules
//! (`valid_hostname`, `valid_hostaddr`, `valid_mailhost_addr`).

use std::net::Ipv6Addr;

/// Longest host name Postfix accepts.
const MAX_HOSTNAME_LEN: usize = 255;
/// Longest label Postfix accepts.
const MAX_LABEL_LEN: usize = 63;

/// Whether `name` is a syntactically valid host name: labels of letters, digits, `_` and
/// inner `-`, separated by single dots, not all-numeric, at most 255 characters.
pub(crate) fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_HOSTNAME_LEN {
        return false;
    }
    let mut numeric = true;
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return false;
        }
        if label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        for b in label.bytes() {
            match b {
                b'0'..=b'9' => {}
                b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'-' => numeric = false,
                _ => return false,
            }
        }
    }
    // "1.2.3.4" is an address, not a name.
    !numeric
}

/// Whether `addr` is a dotted-quad IPv4 address as Postfix accepts it (four decimal parts
/// of at most 255, the first not 0).
pub(crate) fn valid_ipv4(addr: &str) -> bool {
    let mut count = 0;
    for (n, part) in addr.split('.').enumerate() {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(value) = part.parse::<u16>() else {
            return false;
        };
        if value > 255 || (n == 0 && value == 0) {
            return false;
        }
        count += 1;
    }
    count == 4
}

/// Whether `addr` is an IPv6 address in text form.
pub(crate) fn valid_ipv6(addr: &str) -> bool {
    addr.contains(':') && addr.parse::<Ipv6Addr>().is_ok()
}

/// Whether `addr` is a bare IPv4 or IPv6 address (`valid_hostaddr`).
pub(crate) fn valid_hostaddr(addr: &str) -> bool {
    valid_ipv4(addr) || valid_ipv6(addr)
}

/// Whether `addr` is the inside of an address literal: IPv4, or `IPv6:` and IPv6
/// (`valid_mailhost_addr`).
pub(crate) fn valid_mailhost_addr(addr: &str) -> bool {
    match strip_ipv6_tag(addr) {
        Some(v6) => valid_ipv6(v6),
        None => valid_ipv4(addr),
    }
}

/// The address after a case-insensitive `IPv6:` tag, if there is one.
pub(crate) fn strip_ipv6_tag(addr: &str) -> Option<&str> {
    let tag = addr.get(..5)?;
    tag.eq_ignore_ascii_case("ipv6:").then(|| &addr[5..])
}

/// Drops one trailing dot, but not from `..` endings or a lone `.` (`dup_if_truncate`).
pub(crate) fn truncate_dot(name: &str) -> &str {
    match name.strip_suffix('.') {
        Some(rest) if !rest.is_empty() && !rest.ends_with('.') => rest,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for good in [
            "a",
            "mail.example.com",
            "x_y.example",
            "a-b.c",
            "1a.2b",
            "3com.com",
        ] {
            assert!(valid_hostname(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "-a.b",
            "a-.b",
            "a b",
            "a@b",
            "1.2.3.4",
            "123",
            "ä.example",
        ] {
            assert!(!valid_hostname(bad), "{bad}");
        }
        assert!(!valid_hostname(&"a".repeat(64)));
        assert!(valid_hostname(&"a".repeat(63)));
        let long = vec!["abc"; 70].join(".");
        assert!(!valid_hostname(&long));
    }

    #[test]
    fn addresses() {
        assert!(valid_ipv4("1.2.3.4"));
        assert!(valid_ipv4("255.255.255.255"));
        for bad in [
            "0.255.255.255",
            "321.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "a.b.c.d",
        ] {
            assert!(!valid_ipv4(bad), "{bad}");
        }
        assert!(valid_hostaddr("2001:db8::1"));
        assert!(valid_hostaddr("::ffff:1.2.3.4"));
        assert!(!valid_hostaddr("example.com"));
        assert!(valid_mailhost_addr("IPv6:2001:db8::1"));
        assert!(valid_mailhost_addr("ipv6:::1"));
        assert!(!valid_mailhost_addr("2001:db8::1"));
        assert!(valid_mailhost_addr("10.0.0.1"));
    }

    #[test]
    fn trailing_dot() {
        assert_eq!(truncate_dot("foo."), "foo");
        assert_eq!(truncate_dot("foo.."), "foo..");
        assert_eq!(truncate_dot("."), ".");
        assert_eq!(truncate_dot("foo"), "foo");
    }
}
