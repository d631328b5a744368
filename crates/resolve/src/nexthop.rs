//! Next-hop strings as the SMTP client reads them: `domain`, `host:port`, `[host]`,
//! `[host]:port`, `[ipv6:2001:db8::1]`.

use std::net::IpAddr;

use crate::ResolveError;

/// A parsed next hop: where the SMTP (or LMTP) client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The domain or host name, or an IP address without brackets or `ipv6:` prefix.
    pub host: String,
    /// The port, when one was given (a number or a well-known service name).
    pub port: Option<u16>,
    /// Whether to look up MX records for `host`; false for the bracketed forms.
    pub mx: bool,
}

/// Parses a next hop: `domain`, `host:port`, `[host]`, `[host]:port`, `[1.2.3.4]`,
/// `[ipv6:2001:db8::1]:25` (the `ipv6:` prefix is optional inside brackets). The port may
/// be a number (1-65535) or one of the service names smtp, submission, smtps,
/// submissions and lmtp.
///
/// Errors ([`ResolveError::BadNextHop`]): an empty host, a missing `]`, text after `]`
/// other than `:port`, a bad port, an IPv6 address without brackets, or a host name with
/// characters that no host name has.
pub fn parse_nexthop(s: &str) -> Result<NextHop, ResolveError> {
    let text = s.trim();
    let bad = |reason: &str| ResolveError::BadNextHop {
        nexthop: s.to_string(),
        reason: reason.to_string(),
    };
    if text.is_empty() {
        return Err(bad("empty next hop"));
    }
    let (host, port, mx) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(parse_port(p).map_err(|r| bad(&r))?),
                None => return Err(bad("unexpected text after ']'")),
            },
        };
        let inner = inner.trim();
        let host = match strip_ipv6_prefix(inner) {
            Some(addr) => match addr.parse::<IpAddr>() {
                Ok(IpAddr::V6(a)) => a.to_string(),
                _ => return Err(bad("bad IPv6 address after 'ipv6:'")),
            },
            None if inner.parse::<IpAddr>().is_ok() => inner.to_string(),
            None if inner.contains(':') => return Err(bad("bad IP address in brackets")),
            None => inner.to_string(),
        };
        (host, port, false)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(bad("an IPv6 address must be written in brackets"));
            }
            Some((h, p)) => (h, Some(parse_port(p).map_err(|r| bad(&r))?)),
            None => (text, None),
        };
        (host.to_string(), port, true)
    };
    if host.is_empty() {
        return Err(bad("empty host name"));
    }
    if host.parse::<IpAddr>().is_err() && !host.chars().all(is_host_char) {
        return Err(bad("bad character in host name"));
    }
    Ok(NextHop { host, port, mx })
}

/// The address after a case-insensitive `ipv6:` prefix, if there is one.
fn strip_ipv6_prefix(s: &str) -> Option<&str> {
    match s.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => Some(&s[5..]),
        _ => None,
    }
}

/// Characters of a DNS host name (`_` too: it occurs in real names).
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// A port number or a well-known mail service name.
fn parse_port(p: &str) -> Result<u16, String> {
    let p = p.trim();
    let port = match p.to_ascii_lowercase().as_str() {
        "smtp" => 25,
        "lmtp" => 24,
        "submission" => 587,
        "smtps" | "submissions" => 465,
        _ => p
            .parse::<u16>()
            .map_err(|_| format!("bad port \"{p}\": expected 1-65535 or a service name"))?,
    };
    if port == 0 {
        return Err("bad port \"0\"".to_string());
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(s: &str) -> (String, Option<u16>, bool) {
        let h = parse_nexthop(s).unwrap();
        (h.host, h.port, h.mx)
    }

    #[test]
    fn domain_and_host_port() {
        assert_eq!(hop("example.com"), ("example.com".into(), None, true));
        assert_eq!(
            hop(" mx.example.com:2525 "),
            ("mx.example.com".into(), Some(2525), true)
        );
        assert_eq!(
            hop("example.com:submission"),
            ("example.com".into(), Some(587), true)
        );
    }

    #[test]
    fn bracketed_forms_disable_mx() {
        assert_eq!(
            hop("[mail.example.com]"),
            ("mail.example.com".into(), None, false)
        );
        assert_eq!(
            hop("[192.0.2.1]:587"),
            ("192.0.2.1".into(), Some(587), false)
        );
        assert_eq!(
            hop("[smtp.example.com]:smtp"),
            ("smtp.example.com".into(), Some(25), false)
        );
    }

    #[test]
    fn ipv6_literals() {
        assert_eq!(
            hop("[ipv6:2001:db8::1]"),
            ("2001:db8::1".into(), None, false)
        );
        assert_eq!(
            hop("[IPv6:2001:DB8::1]:25"),
            ("2001:db8::1".into(), Some(25), false)
        );
        assert_eq!(hop("[::1]:2525"), ("::1".into(), Some(2525), false));
    }

    #[test]
    fn bad_next_hops() {
        for s in [
            "",
            "  ",
            "[]",
            "[host",
            "[host]x",
            "[host]:",
            "host:",
            "host:0",
            "host:65536",
            "host:http",
            "[1.2.3.4]:-1",
            "2001:db8::1",
            "[ipv6:1.2.3.4]",
            "[ipv6:zz::1]",
            "[2001:db8::zz]",
            "a b",
            "h1,h2",
            ":25",
        ] {
            let e = parse_nexthop(s).unwrap_err();
            assert!(
                matches!(&e, ResolveError::BadNextHop { nexthop, .. } if nexthop == s),
                "{s:?}: {e}"
            );
        }
    }

    #[test]
    fn error_names_next_hop_and_reason() {
        let e = parse_nexthop("host:99999").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad next hop \"host:99999\": bad port \"99999\": expected 1-65535 or a service name"
        );
    }
}
