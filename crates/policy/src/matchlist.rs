//! Postfix match lists: `mynetworks`-style host lists (names, addresses, networks) and
//! domain lists (`mydestination`, `relay_domains`, ...), plus this host's own addresses
//! (`inet_interfaces`, `proxy_interfaces`).
//!
//! A list is tried in order and the first matching pattern decides; `!pattern` makes a
//! match a non-match. Patterns are names (`example.com`, `.example.com`), addresses and
//! networks (`10.0.0.0/8`, `[2001:db8::]/32`, host lists only), `type:table` lookup tables
//! (queried with the exact name, and with the address in host lists), and `/file/name`
//! (more patterns, read once at start-up).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use ipnet::IpNet;
use posthorn_config::split_list;
use posthorn_tables::{Lookup, TableError};

use crate::PolicyError;
use crate::maps::{Map, OpenMode};

/// How many `/file` levels may include each other.
const MAX_FILE_DEPTH: usize = 8;

/// What a list matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Domain names compared whole (`mydestination`, `virtual_*_domains`: Postfix string
    /// lists).
    Exact,
    /// Domain names; `.domain` matches subdomains, and `domain` does too when the parameter
    /// is in `parent_domain_matches_subdomains` (`relay_domains`).
    Domain,
    /// Clients by name and address (`mynetworks` and friends).
    Host,
}

/// One pattern.
#[derive(Debug)]
enum Pattern {
    /// A name, lowercased, possibly with a leading dot.
    Name(String),
    /// An address or network (host lists only).
    Net(IpNet),
    /// A lookup table.
    Table(Map),
}

/// A pattern with its `!`.
#[derive(Debug)]
struct Item {
    /// Whether a match means "not in the list".
    negate: bool,
    /// The pattern.
    pattern: Pattern,
}

/// A parsed match list.
#[derive(Debug)]
pub(crate) struct MatchList {
    /// The patterns, in order.
    items: Vec<Item>,
    /// Whether `domain` also matches its subdomains.
    parent_style: bool,
}

impl MatchList {
    /// Parses the value of `param`. `parent_style` comes from
    /// `parent_domain_matches_subdomains`. Tables that cannot be opened yet are retried at
    /// each lookup; malformed patterns and unreadable files are errors.
    pub(crate) fn parse(
        param: &str,
        value: &str,
        kind: ListKind,
        parent_style: bool,
    ) -> Result<MatchList, PolicyError> {
        let mut list = MatchList {
            items: Vec::new(),
            parent_style: parent_style && kind != ListKind::Exact,
        };
        for word in split_list(value) {
            list.add(param, &word, kind, 0)?;
        }
        Ok(list)
    }

    /// Adds one pattern (recursing into `/file` patterns).
    fn add(
        &mut self,
        param: &str,
        word: &str,
        kind: ListKind,
        depth: usize,
    ) -> Result<(), PolicyError> {
        let (negate, word) = match word.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, word),
        };
        let bad = |reason: &str| PolicyError::BadPattern {
            param: param.to_owned(),
            pattern: word.to_owned(),
            reason: reason.to_owned(),
        };
        if word.is_empty() {
            return Err(bad("empty pattern"));
        }
        if word.starts_with('/') {
            if negate {
                return Err(bad("a file name cannot be negated"));
            }
            if depth >= MAX_FILE_DEPTH {
                return Err(bad("files include each other too deeply"));
            }
            let text = fs::read_to_string(word).map_err(|source| PolicyError::File {
                param: param.to_owned(),
                path: word.into(),
                source,
            })?;
            for line in text.lines() {
                if line.trim_start().starts_with('#') {
                    continue;
                }
                for inner in split_list(line) {
                    self.add(param, &inner, kind, depth + 1)?;
                }
            }
            return Ok(());
        }
        let pattern = if kind == ListKind::Host
            && let Some(net) = parse_net(word).map_err(|reason| bad(&reason))?
        {
            Pattern::Net(net)
        } else if word.contains(':') && !word.starts_with('[') {
            Pattern::Table(Map::open(word, OpenMode::Retry).map_err(|source| {
                PolicyError::Table {
                    param: param.to_owned(),
                    spec: word.to_owned(),
                    source,
                }
            })?)
        } else {
            Pattern::Name(word.to_ascii_lowercase())
        };
        self.items.push(Item { negate, pattern });
        Ok(())
    }

    /// Whether the domain `name` (lowercase, no trailing dot) is in a domain list.
    pub(crate) fn matches_name(&self, name: &str) -> Result<bool, TableError> {
        for item in &self.items {
            let hit = match &item.pattern {
                Pattern::Name(pattern) => self.name_matches(pattern, name),
                Pattern::Net(_) => false,
                Pattern::Table(map) => map.lookup(name)?.is_some(),
            };
            if hit {
                return Ok(!item.negate);
            }
        }
        Ok(false)
    }

    /// Whether a client is in a host list: by its verified name (`None`: unknown) or its
    /// address.
    pub(crate) fn matches_host(
        &self,
        name: Option<&str>,
        addr: IpAddr,
    ) -> Result<bool, TableError> {
        let addr = addr.to_canonical();
        let name = name.map(str::to_ascii_lowercase);
        let mut addr_text: Option<String> = None;
        for item in &self.items {
            let hit = match &item.pattern {
                Pattern::Name(pattern) => name
                    .as_deref()
                    .is_some_and(|n| self.name_matches(pattern, n)),
                Pattern::Net(net) => net.contains(&addr),
                Pattern::Table(map) => {
                    let by_name = match name.as_deref() {
                        Some(n) => map.lookup(n)?.is_some(),
                        None => false,
                    };
                    by_name
                        || map
                            .lookup(addr_text.get_or_insert_with(|| addr.to_string()))?
                            .is_some()
                }
            };
            if hit {
                return Ok(!item.negate);
            }
        }
        Ok(false)
    }

    /// Name comparison: exact, `.domain` for subdomains, and `domain` for subdomains in
    /// parent style.
    fn name_matches(&self, pattern: &str, name: &str) -> bool {
        if pattern == name {
            return true;
        }
        if let Some(parent) = pattern.strip_prefix('.') {
            return !parent.is_empty() && is_subdomain(name, parent);
        }
        self.parent_style && is_subdomain(name, pattern)
    }
}

/// Whether `name` is a proper subdomain of `parent`.
fn is_subdomain(name: &str, parent: &str) -> bool {
    name.len() > parent.len() + 1
        && name.ends_with(parent)
        && name.as_bytes()[name.len() - parent.len() - 1] == b'.'
}

/// Parses an address or network pattern: `1.2.3.4`, `10.0.0.0/8`, `[::1]`, `[::1]/128`,
/// `2001:db8::/32`. `Ok(None)`: not an address pattern. A network with host bits set is an
/// error, as in Postfix.
fn parse_net(word: &str) -> Result<Option<IpNet>, String> {
    let text: String = if let Some(rest) = word.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("missing ']'".to_owned());
        };
        format!("{inside}{after}")
    } else {
        word.to_owned()
    };
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(Some(IpNet::from(addr.to_canonical())));
    }
    let Ok(net) = text.parse::<IpNet>() else {
        if word.starts_with('[')
            || word.starts_with(|c: char| c.is_ascii_digit()) && word.contains('/')
        {
            return Err("not an address or network".to_owned());
        }
        return Ok(None);
    };
    if net.trunc() != net {
        return Err(format!(
            "non-null host address bits, perhaps you should use \"{}\" instead",
            net.trunc()
        ));
    }
    Ok(Some(net))
}

/// This host's addresses: `inet_interfaces` and `proxy_interfaces`.
#[derive(Debug, Default)]
pub(crate) struct OwnAddrs {
    /// Addresses the inet services listen on.
    pub(crate) inet: Vec<IpAddr>,
    /// Addresses of proxies or NAT devices in front of this host.
    pub(crate) proxy: Vec<IpAddr>,
}

impl OwnAddrs {
    /// Reads the two parameters' values (`all`: every interface address; `loopback-only`).
    pub(crate) fn new(inet_interfaces: &[String], proxy_interfaces: &[String]) -> OwnAddrs {
        OwnAddrs {
            inet: interface_addrs("inet_interfaces", inet_interfaces),
            proxy: interface_addrs("proxy_interfaces", proxy_interfaces),
        }
    }

    /// Whether `addr` is one of this host's addresses (or a proxy's).
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.inet.contains(&addr) || self.proxy.contains(&addr)
    }

    /// Whether `addr` is an `inet_interfaces` address (`permit_inet_interfaces`).
    pub(crate) fn is_inet(&self, addr: IpAddr) -> bool {
        self.inet.contains(&addr.to_canonical())
    }
}

/// The addresses an `inet_interfaces`-style value names.
fn interface_addrs(param: &str, words: &[String]) -> Vec<IpAddr> {
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut out: Vec<IpAddr> = Vec::new();
    for word in words {
        match word.to_ascii_lowercase().as_str() {
            "all" => match nix::ifaddrs::getifaddrs() {
                Ok(ifaces) => {
                    for iface in ifaces {
                        let Some(sa) = iface.address else { continue };
                        if let Some(v4) = sa.as_sockaddr_in() {
                            out.push(IpAddr::V4(v4.ip()));
                        } else if let Some(v6) = sa.as_sockaddr_in6() {
                            out.push(IpAddr::V6(v6.ip()).to_canonical());
                        }
                    }
                    out.extend(loopback);
                }
                Err(err) => {
                    log::warn!("{param}: cannot list interface addresses: {err}");
                    out.extend(loopback);
                }
            },
            "loopback-only" => out.extend(loopback),
            other => {
                let bare = other.trim_start_matches('[').trim_end_matches(']');
                if let Ok(addr) = bare.parse::<IpAddr>() {
                    out.push(addr.to_canonical());
                    continue;
                }
                match (bare, 0).to_socket_addrs() {
                    Ok(addrs) => out.extend(addrs.map(|sa| sa.ip().to_canonical())),
                    Err(err) => log::warn!("{param}: cannot find address of \"{other}\": {err}"),
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_addresses() {
        let list = MatchList::parse(
            "mynetworks",
            "127.0.0.0/8 [::1]/128, 192.0.2.7 [2001:db8::]/32",
            ListKind::Host,
            true,
        )
        .unwrap();
        assert!(list.matches_host(None, ip("127.0.0.1")).unwrap());
        assert!(list.matches_host(None, ip("::1")).unwrap());
        assert!(list.matches_host(None, ip("192.0.2.7")).unwrap());
        assert!(!list.matches_host(None, ip("192.0.2.8")).unwrap());
        assert!(list.matches_host(None, ip("2001:db8:1::5")).unwrap());
        // IPv4-mapped IPv6 clients match IPv4 entries.
        assert!(list.matches_host(None, ip("::ffff:127.0.0.2")).unwrap());
        assert!(!list.matches_host(None, ip("::ffff:10.0.0.1")).unwrap());
    }

    #[test]
    fn host_bits_are_an_error() {
        let err = MatchList::parse("mynetworks", "10.1.2.3/8", ListKind::Host, true).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
        assert!(MatchList::parse("mynetworks", "[::1", ListKind::Host, true).is_err());
        assert!(MatchList::parse("mynetworks", "10.0.0.0/33", ListKind::Host, true).is_err());
    }

    #[test]
    fn negation_and_order() {
        let list =
            MatchList::parse("mynetworks", "!10.0.0.5 10.0.0.0/24", ListKind::Host, true).unwrap();
        assert!(!list.matches_host(None, ip("10.0.0.5")).unwrap());
        assert!(list.matches_host(None, ip("10.0.0.6")).unwrap());
    }

    #[test]
    fn host_names_in_host_lists() {
        let parent = MatchList::parse("mynetworks", "example.com", ListKind::Host, true).unwrap();
        assert!(
            parent
                .matches_host(Some("Mail.Example.com"), ip("192.0.2.1"))
                .unwrap()
        );
        assert!(!parent.matches_host(None, ip("192.0.2.1")).unwrap());
        let dotted = MatchList::parse("x", "example.com", ListKind::Host, false).unwrap();
        assert!(
            !dotted
                .matches_host(Some("mail.example.com"), ip("192.0.2.1"))
                .unwrap()
        );
        assert!(
            dotted
                .matches_host(Some("example.com"), ip("192.0.2.1"))
                .unwrap()
        );
    }

    #[test]
    fn tables_files_and_domains() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nets");
        fs::write(&file, "# trusted\n10.9.0.0/16, 10.8.0.1\n").unwrap();
        let list = MatchList::parse(
            "mynetworks",
            &format!(
                "{} inline:{{ 192.0.2.9=ok, trusted.example=ok }}",
                file.display()
            ),
            ListKind::Host,
            true,
        )
        .unwrap();
        assert!(list.matches_host(None, ip("10.9.3.4")).unwrap());
        assert!(list.matches_host(None, ip("10.8.0.1")).unwrap());
        assert!(list.matches_host(None, ip("192.0.2.9")).unwrap());
        assert!(
            list.matches_host(Some("trusted.example"), ip("192.0.2.10"))
                .unwrap()
        );
        assert!(
            !list
                .matches_host(Some("other.example"), ip("192.0.2.10"))
                .unwrap()
        );

        let exact = MatchList::parse(
            "mydestination",
            "Example.com, .sub.example, inline:{ table.example=1 }",
            ListKind::Exact,
            true,
        )
        .unwrap();
        assert!(exact.matches_name("example.com").unwrap());
        assert!(!exact.matches_name("a.example.com").unwrap());
        assert!(exact.matches_name("table.example").unwrap());
        assert!(!exact.matches_name("a.table.example").unwrap());

        let relay = MatchList::parse(
            "relay_domains",
            "example.org .example.net",
            ListKind::Domain,
            false,
        )
        .unwrap();
        assert!(relay.matches_name("example.org").unwrap());
        assert!(!relay.matches_name("a.example.org").unwrap());
        assert!(relay.matches_name("a.example.net").unwrap());
        assert!(!relay.matches_name("example.net").unwrap());
        let parent =
            MatchList::parse("relay_domains", "example.org", ListKind::Domain, true).unwrap();
        assert!(parent.matches_name("a.b.example.org").unwrap());
        assert!(!parent.matches_name("badexample.org").unwrap());

        let missing = MatchList::parse(
            "mydestination",
            "/nonexistent/posthorn",
            ListKind::Exact,
            false,
        );
        assert!(matches!(missing, Err(PolicyError::File { .. })));
    }

    #[test]
    fn own_addresses() {
        let own = OwnAddrs::new(
            &["loopback-only".to_owned()],
            &["[192.0.2.1]".to_owned(), "2001:db8::1".to_owned()],
        );
        assert!(own.contains(ip("127.0.0.1")));
        assert!(own.contains(ip("::1")));
        assert!(own.contains(ip("192.0.2.1")));
        assert!(own.contains(ip("::ffff:192.0.2.1")));
        assert!(own.contains(ip("2001:db8::1")));
        assert!(!own.is_inet(ip("192.0.2.1")));
        let all = OwnAddrs::new(&["all".to_owned()], &[]);
        assert!(all.is_inet(ip("127.0.0.1")));
    }
}
