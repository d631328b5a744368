//! From a next hop to the list of servers to try: next-hop syntax, MX lookups (with null MX
//! and the no-MX fallback), host addresses, address families and limits.

use std::net::{IpAddr, ToSocketAddrs};

use posthorn_dns::{Dns, DnsError, Family, Mx};

use crate::settings::{Families, Preference, SmtpSettings, port_number};

/// A parsed next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The domain or host (without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// Whether MX records are looked up (`domain`, `domain:port`; not `[host]`).
    pub mx: bool,
}

/// A next hop that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad next-hop destination \"{0}\"")]
pub struct BadNextHop(pub String);

impl NextHop {
    /// Parses `domain`, `domain:port`, `[host]`, `[host]:port` (port number or name),
    /// `[ipv6:addr]` and `[addr]`.
    pub fn parse(s: &str, default_port: u16) -> Result<NextHop, BadNextHop> {
        let bad = || BadNextHop(s.to_string());
        let s = s.trim();
        let (host, port, mx) = if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => default_port,
                p => port_number(p.strip_prefix(':').ok_or_else(bad)?).ok_or_else(bad)?,
            };
            let inner = inner
                .strip_prefix("ipv6:")
                .or_else(|| inner.strip_prefix("IPv6:"))
                .unwrap_or(inner);
            (inner.to_string(), port, false)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), port_number(p).ok_or_else(bad)?, true),
                None => (s.to_string(), default_port, true),
            }
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(NextHop { host, port, mx })
    }

    /// The host as an address, when it is an address literal.
    pub fn literal(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// One server to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Host name (the MX host, the relay host, or the address text for literals).
    pub name: String,
    /// Its address.
    pub addr: IpAddr,
    /// TCP port.
    pub port: u16,
}

impl Candidate {
    /// `name[addr]`, as Postfix names a server in reasons.
    pub fn namaddr(&self) -> String {
        format!("{}[{}]", self.name, self.addr)
    }

    /// `name[addr]:port`, the `relay=` text.
    pub fn relay(&self) -> String {
        format!("{}[{}]:{}", self.name, self.addr, self.port)
    }
}

/// Why a next hop gave no server to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFailure {
    /// Whether the failure is permanent (bounce) rather than temporary (defer).
    pub permanent: bool,
    /// Enhanced status code.
    pub dsn: String,
    /// Postfix's text.
    pub reason: String,
}

impl RouteFailure {
    fn from_dns(e: &DnsError) -> RouteFailure {
        match e {
            DnsError::NotFound(t) | DnsError::NoData(t) => RouteFailure {
                permanent: true,
                dsn: "5.4.4".into(),
                reason: t.clone(),
            },
            DnsError::Temporary(t) => RouteFailure {
                permanent: false,
                dsn: "4.4.3".into(),
                reason: t.clone(),
            },
        }
    }
}

/// The lookups routing needs (the real resolver or a test double).
pub trait Resolver {
    /// MX records of `domain`.
    fn mx(&self, domain: &str) -> Result<Mx, DnsError>;
    /// Addresses of `host`.
    fn addresses(&self, host: &str, family: Family) -> Result<Vec<IpAddr>, DnsError>;
}

impl Resolver for Dns {
    fn mx(&self, domain: &str) -> Result<Mx, DnsError> {
        Dns::mx(self, domain)
    }
    fn addresses(&self, host: &str, family: Family) -> Result<Vec<IpAddr>, DnsError> {
        Dns::addresses(self, host, family)
    }
}

/// The system resolver (getaddrinfo), used when `smtp_dns_support_level = disabled`:
/// never an MX record.
#[derive(Debug, Default)]
pub struct NativeResolver;

impl Resolver for NativeResolver {
    fn mx(&self, _domain: &str) -> Result<Mx, DnsError> {
        Ok(Mx::NoMx)
    }
    fn addresses(&self, host: &str, family: Family) -> Result<Vec<IpAddr>, DnsError> {
        let shown = format!("name={host} type=A");
        match (host, 0u16).to_socket_addrs() {
            Ok(it) => {
                let v: Vec<IpAddr> = it
                    .map(|a| a.ip())
                    .filter(|ip| match family {
                        Family::Any => true,
                        Family::V4 => ip.is_ipv4(),
                        Family::V6 => ip.is_ipv6(),
                    })
                    .collect();
                if v.is_empty() {
                    Err(DnsError::NoData(format!(
                        "Name service error for {shown}: No address associated with hostname"
                    )))
                } else {
                    Ok(v)
                }
            }
            Err(e) => Err(DnsError::Temporary(format!(
                "Host or domain name not found. Name service error for {shown}: {e}"
            ))),
        }
    }
}

/// The servers for `hop`, in the order to try them, at most `smtp_mx_address_limit`.
pub fn candidates(
    s: &SmtpSettings,
    dns: &dyn Resolver,
    hop: &NextHop,
) -> Result<Vec<Candidate>, RouteFailure> {
    if let Some(addr) = hop.literal() {
        return Ok(vec![Candidate {
            name: addr.to_string(),
            addr,
            port: hop.port,
        }]);
    }
    let hosts: Vec<String> = if hop.mx && !s.dns_disabled {
        match dns.mx(&hop.host) {
            Ok(Mx::Hosts(h)) => h.into_iter().map(|h| h.name).collect(),
            Ok(Mx::NoMx) => vec![hop.host.clone()],
            Ok(Mx::NullMx) => {
                return Err(RouteFailure {
                    permanent: true,
                    dsn: "5.1.10".into(),
                    reason: format!("Domain {} does not accept mail (nullMX)", hop.host),
                });
            }
            Err(e) => return Err(RouteFailure::from_dns(&e)),
        }
    } else {
        vec![hop.host.clone()]
    };
    let family = match s.families {
        Families::Both => Family::Any,
        Families::V4 => Family::V4,
        Families::V6 => Family::V6,
    };
    let mut out = Vec::new();
    let mut last_error: Option<RouteFailure> = None;
    let mut any_temporary = false;
    for host in hosts {
        let mut addrs = match dns.addresses(&host, family) {
            Ok(a) => a,
            Err(e) => {
                let f = RouteFailure::from_dns(&e);
                any_temporary |= !f.permanent;
                last_error = Some(f);
                continue;
            }
        };
        match s.preference {
            Preference::Any => {}
            Preference::V4 => addrs.sort_by_key(|a| a.is_ipv6()),
            Preference::V6 => addrs.sort_by_key(|a| a.is_ipv4()),
        }
        out.extend(addrs.into_iter().map(|addr| Candidate {
            name: host.clone(),
            addr,
            port: hop.port,
        }));
    }
    if out.is_empty() {
        let mut f = last_error.unwrap_or_else(|| RouteFailure {
            permanent: false,
            dsn: "4.4.3".into(),
            reason: format!("no address found for {}", hop.host),
        });
        if any_temporary && f.permanent {
            // One MX host failed only temporarily: it may work later.
            f.permanent = false;
            f.dsn = "4.4.3".into();
        }
        return Err(f);
    }
    if s.mx_address_limit > 0 {
        out.truncate(s.mx_address_limit);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn next_hop_forms() {
        let p = |s: &str| NextHop::parse(s, 25).unwrap();
        assert_eq!(
            p("Example.TEST."),
            NextHop {
                host: "example.test".into(),
                port: 25,
                mx: true
            }
        );
        assert_eq!(
            (p("example.test:2525").port, p("example.test:2525").mx),
            (2525, true)
        );
        assert_eq!(
            p("[relay.test]:submission"),
            NextHop {
                host: "relay.test".into(),
                port: 587,
                mx: false
            }
        );
        assert_eq!(
            p("[127.0.0.1]").literal(),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(p("[ipv6:::1]:26").literal(), Some("::1".parse().unwrap()));
        assert_eq!(p("[ipv6:::1]:26").port, 26);
        for bad in ["", "[x", "[x]y", "x:nope", "[]"] {
            assert!(NextHop::parse(bad, 25).is_err(), "{bad}");
        }
    }

    struct Fake {
        mx: HashMap<&'static str, Result<Mx, DnsError>>,
        a: HashMap<&'static str, Result<Vec<IpAddr>, DnsError>>,
    }

    impl Resolver for Fake {
        fn mx(&self, d: &str) -> Result<Mx, DnsError> {
            self.mx.get(d).cloned().unwrap_or(Ok(Mx::NoMx))
        }
        fn addresses(&self, h: &str, _f: Family) -> Result<Vec<IpAddr>, DnsError> {
            self.a
                .get(h)
                .cloned()
                .unwrap_or_else(|| Err(DnsError::NotFound(format!("nx {h}"))))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mx_routing() {
        let host = |n: &str, p: u16| posthorn_dns::MxHost {
            preference: p,
            name: n.into(),
        };
        let fake = Fake {
            mx: HashMap::from([
                (
                    "d.test",
                    Ok(Mx::Hosts(vec![
                        host("mx1.d.test", 10),
                        host("mx2.d.test", 20),
                    ])),
                ),
                ("null.test", Ok(Mx::NullMx)),
                ("nx.test", Err(DnsError::NotFound("nxdomain".into()))),
                ("tmp.test", Err(DnsError::Temporary("servfail".into()))),
            ]),
            a: HashMap::from([
                ("mx1.d.test", Ok(vec![ip("::1"), ip("127.0.0.2")])),
                ("mx2.d.test", Ok(vec![ip("127.0.0.3")])),
                ("own.test", Ok(vec![ip("127.0.0.4")])),
            ]),
        };
        let mut s = SmtpSettings::defaults("me.test");
        s.preference = Preference::V4;
        let hop = |t: &str| NextHop::parse(t, 25).unwrap();
        let c = candidates(&s, &fake, &hop("d.test")).unwrap();
        let got: Vec<String> = c.iter().map(Candidate::relay).collect();
        assert_eq!(
            got,
            [
                "mx1.d.test[127.0.0.2]:25",
                "mx1.d.test[::1]:25",
                "mx2.d.test[127.0.0.3]:25"
            ]
        );
        s.mx_address_limit = 2;
        assert_eq!(candidates(&s, &fake, &hop("d.test")).unwrap().len(), 2);
        assert_eq!(
            candidates(&s, &fake, &hop("own.test")).unwrap()[0].addr,
            ip("127.0.0.4")
        );
        let null = candidates(&s, &fake, &hop("null.test")).unwrap_err();
        assert!(null.permanent);
        assert_eq!(null.dsn, "5.1.10");
        assert_eq!(
            null.reason,
            "Domain null.test does not accept mail (nullMX)"
        );
        let nx = candidates(&s, &fake, &hop("nx.test")).unwrap_err();
        assert_eq!((nx.permanent, nx.dsn.as_str()), (true, "5.4.4"));
        let tmp = candidates(&s, &fake, &hop("tmp.test")).unwrap_err();
        assert_eq!((tmp.permanent, tmp.dsn.as_str()), (false, "4.4.3"));
        // [host] skips the MX lookup.
        assert!(candidates(&s, &fake, &hop("[d.test]")).is_err());
        assert_eq!(
            candidates(&s, &fake, &hop("[127.0.0.9]:2525")).unwrap()[0].relay(),
            "127.0.0.9[127.0.0.9]:2525"
        );
    }
}
