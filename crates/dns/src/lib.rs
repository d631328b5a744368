//! posthorn-dns: the DNS lookups of the SMTP client (MX, A, AAAA and RFC 7505 null MX),
//! plus a tiny name server for tests ([`testserver`]).
//!
//! Inputs: domain and host names, and the name servers to ask (those of `/etc/resolv.conf`, or
//! the `smtp_dns_servers` list). Outputs: MX host lists in preference order ([`Mx`]) and
//! address lists, or a [`DnsError`] that says whether the failure is permanent (the name does
//! not exist) or temporary (the mail must be deferred, never bounced).
//!
//! Lookups are blocking, as in Postfix: each [`Dns`] owns a small current-thread tokio runtime
//! and runs one hickory-resolver query at a time on it. hickory's response cache (256 entries)
//! is the small per-process cache. Names are always queried as fully qualified names (no
//! resolv.conf search list, like Postfix's default `res_query` use) and `/etc/hosts` is not
//! consulted (Postfix's default `smtp_host_lookup = dns`).

pub mod testserver;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Size of hickory's response cache (entries) for each [`Dns`].
const CACHE_SIZE: u64 = 256;
/// Per-query timeout used with explicit name servers.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Attempts per query used with explicit name servers.
const ATTEMPTS: usize = 2;

/// One MX host of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// MX preference: lower values are tried first.
    pub preference: u16,
    /// Exchange host name, lowercase, without trailing dot.
    pub name: String,
}

/// Result of an MX lookup with Postfix semantics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mx {
    /// MX hosts in preference order, in random order among equal preferences.
    Hosts(Vec<MxHost>),
    /// The domain exists but has no MX records: deliver to the domain's own A/AAAA.
    NoMx,
    /// RFC 7505 null MX ("0 ."): the domain accepts no mail.
    NullMx,
}

/// A failed lookup. The text is a Postfix-style description naming the name and type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN (or a malformed name): permanent, the name does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name exists but has no records of the asked type.
    #[error("{0}")]
    NoData(String),
    /// SERVFAIL, REFUSED, timeout, network or configuration trouble: try again later, never a bounce.
    #[error("{0}")]
    Temporary(String),
}

/// Address families to look up (`inet_protocols` / `smtp_address_preference`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 and IPv6: A records first, then AAAA.
    Any,
    /// IPv4 only (A records).
    V4,
    /// IPv6 only (AAAA records).
    V6,
}

/// A blocking DNS resolver; `Send + Sync` and cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

/// The resolver and the runtime it runs on. Field order matters: the resolver (and its
/// background tasks' handles) drop before the runtime.
struct Inner {
    resolver: TokioResolver,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

impl Dns {
    /// Name servers from /etc/resolv.conf (hickory system-config), or the given servers ("addr"
    /// or "addr:port", e.g. "127.0.0.1:5353", "[::1]:53") when `servers` is non-empty
    /// (posthorn's smtp_dns_servers parameter).
    pub fn new(servers: &[String]) -> Result<Dns, DnsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| DnsError::Temporary(format!("cannot create DNS runtime: {e}")))?;
        let resolver = {
            let _guard = rt.enter();
            let mut builder = if servers.is_empty() {
                TokioResolver::builder_tokio().map_err(|e| {
                    DnsError::Temporary(format!("cannot read resolver configuration: {e}"))
                })?
            } else {
                let mut name_servers = Vec::with_capacity(servers.len());
                for spec in servers {
                    name_servers.push(name_server(spec)?);
                }
                let cfg = ResolverConfig::from_parts(None, vec![], name_servers);
                let mut b =
                    TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default());
                let opts = b.options_mut();
                opts.timeout = TIMEOUT;
                opts.attempts = ATTEMPTS;
                b
            };
            let opts: &mut ResolverOpts = builder.options_mut();
            opts.cache_size = CACHE_SIZE;
            opts.use_hosts_file = ResolveHosts::Never;
            builder
                .build()
                .map_err(|e| DnsError::Temporary(format!("cannot create DNS resolver: {e}")))?
        };
        Ok(Dns {
            inner: Arc::new(Inner { resolver, rt }),
        })
    }

    /// MX lookup with Postfix semantics: NXDOMAIN -> Err(NotFound); no MX records (NoData) ->
    /// Ok(Mx::NoMx); a single MX "0 ." -> Ok(Mx::NullMx); SERVFAIL/timeouts -> Err(Temporary).
    pub fn mx(&self, domain: &str) -> Result<Mx, DnsError> {
        let (name, shown) = fqdn(domain, "MX")?;
        let lookup = match self.query(name, RecordType::MX, &shown) {
            Ok(lookup) => lookup,
            Err(DnsError::NoData(_)) => return Ok(Mx::NoMx),
            Err(e) => return Err(e),
        };
        let mut hosts: Vec<(u16, Option<String>)> = Vec::new();
        for record in lookup.answers() {
            if let RData::MX(mx) = &record.data {
                let host = if mx.exchange.is_root() {
                    None
                } else {
                    Some(host_text(&mx.exchange))
                };
                if !hosts.contains(&(mx.preference, host.clone())) {
                    hosts.push((mx.preference, host));
                }
            }
        }
        Ok(mx_result(hosts))
    }

    /// A and/or AAAA of a host, IPv4 first for Family::Any. NXDOMAIN -> NotFound; no records
    /// -> NoData. A literal address ("192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]") is
    /// returned as is, without DNS.
    pub fn addresses(&self, host: &str, family: Family) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = literal_ip(host) {
            let wanted = match family {
                Family::Any => true,
                Family::V4 => ip.is_ipv4(),
                Family::V6 => ip.is_ipv6(),
            };
            return if wanted {
                Ok(vec![ip])
            } else {
                Err(DnsError::NoData(format!(
                    "address {ip} is not of the enabled address family"
                )))
            };
        }
        match family {
            Family::V4 => self.typed_addresses(host, RecordType::A),
            Family::V6 => self.typed_addresses(host, RecordType::AAAA),
            Family::Any => {
                let v4 = self.typed_addresses(host, RecordType::A);
                if let Err(DnsError::NotFound(_)) = v4 {
                    // NXDOMAIN covers every type: no need to ask for AAAA.
                    return v4;
                }
                let v6 = self.typed_addresses(host, RecordType::AAAA);
                combine(v4, v6)
            }
        }
    }

    /// Addresses of one record type (A or AAAA).
    fn typed_addresses(&self, host: &str, rtype: RecordType) -> Result<Vec<IpAddr>, DnsError> {
        let (name, shown) = fqdn(host, &rtype.to_string())?;
        let lookup = self.query(name, rtype, &shown)?;
        let mut out = Vec::new();
        for record in lookup.answers() {
            let ip = match &record.data {
                RData::A(a) if rtype == RecordType::A => IpAddr::V4(a.0),
                RData::AAAA(a) if rtype == RecordType::AAAA => IpAddr::V6(a.0),
                _ => continue,
            };
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        if out.is_empty() {
            return Err(no_data(&shown));
        }
        Ok(out)
    }

    /// Runs one query and maps hickory's errors onto [`DnsError`]; an answer without records
    /// of the asked type (e.g. only a CNAME) is not mapped here.
    fn query(&self, name: Name, rtype: RecordType, shown: &str) -> Result<Lookup, DnsError> {
        let inner = &*self.inner;
        let result = inner.rt.block_on(inner.resolver.lookup(name, rtype));
        result.map_err(|e| {
            log::debug!("dns lookup {shown}: {e}");
            classify(&e, shown)
        })
    }
}

/// Maps a hickory error to our three kinds.
fn classify(e: &NetError, shown: &str) -> DnsError {
    use hickory_resolver::net::DnsError as HDns;
    use hickory_resolver::proto::op::ResponseCode;
    match e {
        NetError::Dns(HDns::NoRecordsFound(nr)) if nr.response_code == ResponseCode::NXDomain => {
            DnsError::NotFound(format!(
                "Host or domain name not found. Name service error for {shown}: Host not found"
            ))
        }
        NetError::Dns(HDns::NoRecordsFound(nr)) if nr.response_code == ResponseCode::NoError => {
            no_data(shown)
        }
        other => DnsError::Temporary(format!(
            "Host or domain name not found. Name service error for {shown}: Host not found, try again ({other})"
        )),
    }
}

/// The NoData error text for `shown` ("name=X type=T").
fn no_data(shown: &str) -> DnsError {
    DnsError::NoData(format!(
        "Name service error for {shown}: No address associated with hostname"
    ))
}

/// Merges the A and AAAA results of a [`Family::Any`] lookup: any addresses win; else a
/// temporary error wins (the mail is deferred); else NoData.
fn combine(
    v4: Result<Vec<IpAddr>, DnsError>,
    v6: Result<Vec<IpAddr>, DnsError>,
) -> Result<Vec<IpAddr>, DnsError> {
    match (v4, v6) {
        (Ok(mut a), Ok(b)) => {
            a.extend(b);
            Ok(a)
        }
        (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok(a),
        (Err(e @ DnsError::Temporary(_)), _) | (_, Err(e @ DnsError::Temporary(_))) => Err(e),
        (Err(e), _) => Err(e),
    }
}

/// Builds the [`Mx`] result from (preference, exchange) pairs, `None` meaning the root name.
fn mx_result(mut hosts: Vec<(u16, Option<String>)>) -> Mx {
    if hosts.is_empty() {
        return Mx::NoMx;
    }
    if hosts.iter().all(|(_, h)| h.is_none()) {
        // RFC 7505: a single "0 ." (we also accept any preference, and duplicates).
        return Mx::NullMx;
    }
    // A "." mixed with real hosts is not a null MX; drop it.
    hosts.retain(|(_, h)| h.is_some());
    let mut list: Vec<MxHost> = hosts
        .into_iter()
        .filter_map(|(preference, h)| h.map(|name| MxHost { preference, name }))
        .collect();
    shuffle(&mut list);
    // Stable sort keeps the shuffled order among equal preferences.
    list.sort_by_key(|h| h.preference);
    Mx::Hosts(list)
}

/// Fisher-Yates shuffle seeded from std's per-process random hash keys.
fn shuffle<T>(items: &mut [T]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut state = hasher.finish() | 1;
    for i in (1..items.len()).rev() {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Parses `domain` into a fully qualified lowercase [`Name`] and a "name=X type=T" text.
fn fqdn(domain: &str, rtype: &str) -> Result<(Name, String), DnsError> {
    let text = domain.trim_end_matches('.').to_ascii_lowercase();
    let shown = format!("name={text} type={rtype}");
    if text.is_empty() {
        return Err(DnsError::NotFound(format!(
            "malformed domain name: {shown}"
        )));
    }
    let mut name = Name::from_ascii(&text)
        .map_err(|e| DnsError::NotFound(format!("malformed domain name: {shown}: {e}")))?;
    name.set_fqdn(true);
    Ok((name, shown))
}

/// A host name as text: lowercase, no trailing dot.
fn host_text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// A literal address: "1.2.3.4", "::1", "[1.2.3.4]" or "[IPv6:::1]".
fn literal_ip(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let inner = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => &inner[5..],
        _ => inner,
    };
    inner.parse().ok()
}

/// One `smtp_dns_servers` entry: "addr", "addr:port" or "[v6addr]:port".
fn name_server(spec: &str) -> Result<NameServerConfig, DnsError> {
    let spec = spec.trim();
    let sa = if let Ok(sa) = spec.parse::<SocketAddr>() {
        sa
    } else if let Some(ip) = literal_ip(spec) {
        SocketAddr::new(ip, 53)
    } else {
        return Err(DnsError::Temporary(format!(
            "invalid DNS server address \"{spec}\": expected addr or addr:port"
        )));
    };
    let mut udp = ConnectionConfig::udp();
    udp.port = sa.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = sa.port();
    Ok(NameServerConfig::new(sa.ip(), true, vec![udp, tcp]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::TestDns;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ZONE: &str = "\
example.test MX 20 mx2.example.test
example.test MX 10 mx1.example.test
example.test MX 30 mx3.example.test
example.test A 127.0.0.9
eq.test MX 10 a.eq.test
eq.test MX 10 b.eq.test
eq.test MX 5 first.eq.test
nomx.test A 127.0.0.10
nullmx.test MX 0 .
mx1.example.test A 127.0.0.2
mx1.example.test A 127.0.0.3
v6.example.test AAAA ::1
both.example.test AAAA 2001:db8::1
both.example.test A 192.0.2.1
servfail.test SERVFAIL
";

    fn setup() -> (TestDns, Dns) {
        let server = TestDns::start(ZONE);
        let dns = Dns::new(&[server.server_spec()]).expect("resolver");
        (server, dns)
    }

    fn names(mx: &Mx) -> Vec<&str> {
        match mx {
            Mx::Hosts(h) => h.iter().map(|h| h.name.as_str()).collect(),
            other => panic!("expected hosts, got {other:?}"),
        }
    }

    #[test]
    fn dns_is_send_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Dns>();
    }

    #[test]
    fn mx_in_preference_order() {
        let (_s, dns) = setup();
        let mx = dns.mx("Example.TEST.").unwrap();
        assert_eq!(
            mx,
            Mx::Hosts(vec![
                MxHost {
                    preference: 10,
                    name: "mx1.example.test".into()
                },
                MxHost {
                    preference: 20,
                    name: "mx2.example.test".into()
                },
                MxHost {
                    preference: 30,
                    name: "mx3.example.test".into()
                },
            ])
        );
    }

    #[test]
    fn mx_equal_preferences_are_shuffled() {
        let (_s, dns) = setup();
        let mut seen_ab = false;
        let mut seen_ba = false;
        for _ in 0..50 {
            let mx = dns.mx("eq.test").unwrap();
            let n = names(&mx);
            assert_eq!(n[0], "first.eq.test");
            match (n[1], n[2]) {
                ("a.eq.test", "b.eq.test") => seen_ab = true,
                ("b.eq.test", "a.eq.test") => seen_ba = true,
                other => panic!("unexpected order {other:?}"),
            }
            if seen_ab && seen_ba {
                break;
            }
        }
        assert!(
            seen_ab && seen_ba,
            "both orders should appear in 50 lookups"
        );
    }

    #[test]
    fn mx_nomx_nullmx_notfound_temporary() {
        let (_s, dns) = setup();
        assert_eq!(dns.mx("nomx.test").unwrap(), Mx::NoMx);
        assert_eq!(dns.mx("mx1.example.test").unwrap(), Mx::NoMx);
        assert_eq!(dns.mx("nullmx.test").unwrap(), Mx::NullMx);
        assert!(matches!(dns.mx("nowhere.test"), Err(DnsError::NotFound(_))));
        let e = dns.mx("servfail.test").unwrap_err();
        assert!(matches!(e, DnsError::Temporary(_)), "{e:?}");
        assert!(matches!(dns.mx(""), Err(DnsError::NotFound(_))));
    }

    #[test]
    fn addresses_by_family() {
        let (_s, dns) = setup();
        let v4a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let v4b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let mut got = dns.addresses("mx1.example.test", Family::V4).unwrap();
        got.sort();
        assert_eq!(got, vec![v4a, v4b]);
        assert_eq!(
            dns.addresses("v6.example.test", Family::V6).unwrap(),
            vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        assert_eq!(
            dns.addresses("both.example.test.", Family::Any).unwrap(),
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(
            dns.addresses("v6.example.test", Family::Any).unwrap(),
            vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        assert!(matches!(
            dns.addresses("v6.example.test", Family::V4),
            Err(DnsError::NoData(_))
        ));
        assert!(matches!(
            dns.addresses("mx1.example.test", Family::V6),
            Err(DnsError::NoData(_))
        ));
        assert!(matches!(
            dns.addresses("nowhere.test", Family::Any),
            Err(DnsError::NotFound(_))
        ));
        assert!(matches!(
            dns.addresses("servfail.test", Family::Any),
            Err(DnsError::Temporary(_))
        ));
    }

    #[test]
    fn literal_addresses_skip_dns() {
        // No server at all: a literal must not need one.
        let dns = Dns::new(&["127.0.0.1:9".to_string()]).unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(dns.addresses("192.0.2.7", Family::Any).unwrap(), vec![v4]);
        assert_eq!(dns.addresses("[192.0.2.7]", Family::V4).unwrap(), vec![v4]);
        assert_eq!(
            dns.addresses("[IPv6:2001:db8::7]", Family::V6).unwrap(),
            vec![v6]
        );
        assert_eq!(dns.addresses("2001:db8::7", Family::Any).unwrap(), vec![v6]);
        assert!(matches!(
            dns.addresses("2001:db8::7", Family::V4),
            Err(DnsError::NoData(_))
        ));
    }

    #[test]
    fn system_configuration_constructs_or_fails_cleanly() {
        // Depends on the machine's /etc/resolv.conf: it must not panic either way.
        let _ = Dns::new(&[]);
    }

    #[test]
    fn silent_server_is_temporary() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns = Dns::new(&[silent.local_addr().unwrap().to_string()]).unwrap();
        let e = dns.mx("example.test").unwrap_err();
        assert!(matches!(e, DnsError::Temporary(_)), "{e:?}");
    }

    #[test]
    fn server_specs() {
        assert!(name_server("127.0.0.1").is_ok());
        assert!(name_server("127.0.0.1:5353").is_ok());
        assert!(name_server("[::1]:5353").is_ok());
        assert!(name_server("::1").is_ok());
        assert!(matches!(
            name_server("dns.example"),
            Err(DnsError::Temporary(_))
        ));
        assert!(Dns::new(&["bogus".to_string()]).is_err());
    }

    #[test]
    fn mx_result_rules() {
        assert_eq!(mx_result(vec![]), Mx::NoMx);
        assert_eq!(mx_result(vec![(0, None)]), Mx::NullMx);
        assert_eq!(
            mx_result(vec![(0, None), (10, Some("a.test".into()))]),
            Mx::Hosts(vec![MxHost {
                preference: 10,
                name: "a.test".into()
            }])
        );
    }
}
