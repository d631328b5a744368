//! posthorn-resolve: address resolution, the job of Postfix's trivial-rewrite "resolve"
//! request: which transport delivers a recipient, and to which next hop.
//!
//! Role: qmgr calls [`Resolver::resolve`] for every recipient of every message it
//! schedules, and the SMTP client reads the resulting next hop with [`parse_nexthop`].
//!
//! Inputs: the main.cf parameters mydestination, inet_interfaces, proxy_interfaces,
//! myhostname, virtual_alias_domains, virtual_mailbox_domains, relay_domains,
//! local_transport, virtual_transport, relay_transport, default_transport, relayhost,
//! sender_dependent_relayhost_maps, transport_maps, parent_domain_matches_subdomains and
//! recipient_delimiter; a recipient address and its message's sender.
//! Outputs: a [`Route`] (transport name, next hop, address [`Class`]).
//!
//! The rules, as in Postfix:
//!
//! | recipient domain                          | class    | transport         | default next hop |
//! |-------------------------------------------|----------|-------------------|------------------|
//! | none, mydestination, `[addr]` of this host| Local    | local_transport   | its `:nexthop`, else the domain |
//! | virtual_alias_domains                     | Alias    | `error`           | `5.1.1 User unknown in virtual alias table` |
//! | virtual_mailbox_domains                   | Virtual  | virtual_transport | its `:nexthop`, else the domain |
//! | relay_domains                             | Relay    | relay_transport   | its `:nexthop`, else sender_dependent_relayhost_maps, relayhost, the domain |
//! | anything else                             | Default  | default_transport | its `:nexthop`, else sender_dependent_relayhost_maps, relayhost, the domain |
//!
//! transport_maps then override transport and next hop for every class but Alias (Postfix
//! does not let a transport table undo "User unknown"). Keys are tried in the order of
//! transport(5): `user+ext@domain`, `user@domain`, `domain`, each parent as `.parent` (or
//! `parent` when transport_maps is in parent_domain_matches_subdomains), then `*`. A result
//! `transport:nexthop` replaces both; `transport` or `transport:` replaces the transport and
//! makes the next hop the recipient domain (`Address is undeliverable` for error and retry);
//! `:nexthop` keeps the transport; `:` keeps both.
//!
//! The resolver does not check that the transports exist in master.cf; qmgr does.
//!
//! Error policy: tables that cannot be opened are [`ResolveError::Config`] from
//! [`Resolver::from_config`]; a table that fails during a lookup is
//! [`ResolveError::Lookup`], and qmgr defers the recipient (4.3.0). Nothing panics on input.

mod domains;
mod nexthop;
mod transport;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use posthorn_config::Config;
use posthorn_tables::{TableError, TableList};

use domains::{DomainList, Style};
pub use nexthop::{NextHop, parse_nexthop};
use transport::TransportMaps;

/// The error transport and its text for addresses in virtual alias domains that no
/// virtual_alias_maps entry expanded.
const ALIAS_TRANSPORT: &str = "error";
/// See [`ALIAS_TRANSPORT`].
const ALIAS_NEXTHOP: &str = "5.1.1 User unknown in virtual alias table";

/// The address class of a recipient domain (Postfix's RESOLVE_CLASS_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// mydestination, this host's address literals, or no domain: local_transport.
    Local,
    /// virtual_alias_domains: every address must be aliased; unexpanded ones bounce.
    Alias,
    /// virtual_mailbox_domains: virtual_transport.
    Virtual,
    /// relay_domains: relay_transport.
    Relay,
    /// Any other domain: default_transport.
    Default,
}

/// Where one recipient goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The master.cf service name that delivers it (`local`, `smtp`, `error`, ...).
    pub transport: String,
    /// The next hop, meaning depends on the transport: a domain or `[host]:port` for smtp,
    /// the text of the error for `error`/`discard`, the host name for local.
    pub nexthop: String,
    /// The class of the recipient domain (before transport_maps).
    pub class: Class,
}

/// Why resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A parameter is unusable: a table that cannot be opened, or an empty transport name.
    #[error("{param}: {reason}")]
    Config {
        /// The main.cf parameter.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A table lookup failed; qmgr defers the recipient (4.3.0) and tries again later.
    #[error("{param}: lookup of \"{key}\" failed: {source}")]
    Lookup {
        /// The main.cf parameter whose table failed.
        param: String,
        /// The key that was looked up.
        key: String,
        /// The table's error.
        source: TableError,
    },
    /// A next hop that [`parse_nexthop`] cannot read.
    #[error("bad next hop \"{nexthop}\": {reason}")]
    BadNextHop {
        /// The next hop as given.
        nexthop: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A transport parameter value split into its name and optional next hop.
#[derive(Debug)]
struct TransportSpec {
    name: String,
    nexthop: String,
}

impl TransportSpec {
    /// Reads `transport[:nexthop]` from `param`; an empty name is a configuration error.
    fn new(c: &Config, param: &str) -> Result<TransportSpec, ResolveError> {
        let value = c.get(param);
        let (name, nexthop) = value.split_once(':').unwrap_or((&value, ""));
        let name = name.trim();
        if name.is_empty() {
            return Err(ResolveError::Config {
                param: param.to_string(),
                reason: format!("no transport name in \"{value}\""),
            });
        }
        Ok(TransportSpec {
            name: name.to_string(),
            nexthop: nexthop.trim().to_string(),
        })
    }
}

/// The resolver: main.cf routing parameters with their tables open. Build it once per
/// configuration (tables follow rebuilds of their files) and share it.
#[derive(Debug)]
pub struct Resolver {
    myhostname: String,
    mydestination: DomainList,
    /// This host's addresses (inet_interfaces and proxy_interfaces), for `[addr]` domains.
    own_addrs: Vec<IpAddr>,
    alias_domains: DomainList,
    mailbox_domains: DomainList,
    relay_domains: DomainList,
    local: TransportSpec,
    virtual_: TransportSpec,
    relay: TransportSpec,
    default: TransportSpec,
    relayhost: String,
    sender_relayhost: TableList,
    transport_maps: TransportMaps,
}

impl Resolver {
    /// Reads the routing parameters and opens their tables. Errors: a table that cannot be
    /// opened, or a transport parameter without a transport name.
    pub fn from_config(c: &Config) -> Result<Resolver, ResolveError> {
        let open = |param: &str| {
            TableList::from_value(&c.get(param)).map_err(|e| ResolveError::Config {
                param: param.to_string(),
                reason: e.to_string(),
            })
        };
        let parent = c.get_list("parent_domain_matches_subdomains");
        let parent_style = |param: &str| parent.iter().any(|p| p == param);
        let relay_style = if parent_style("relay_domains") {
            Style::Parent
        } else {
            Style::Domain
        };
        let mut own_addrs = interface_addrs("inet_interfaces", &c.get_list("inet_interfaces"));
        own_addrs.extend(interface_addrs(
            "proxy_interfaces",
            &c.get_list("proxy_interfaces"),
        ));
        Ok(Resolver {
            myhostname: c.get("myhostname").to_ascii_lowercase(),
            mydestination: DomainList::new(c, "mydestination", Style::Exact)?,
            own_addrs,
            alias_domains: DomainList::new(c, "virtual_alias_domains", Style::Exact)?,
            mailbox_domains: DomainList::new(c, "virtual_mailbox_domains", Style::Exact)?,
            relay_domains: DomainList::new(c, "relay_domains", relay_style)?,
            local: TransportSpec::new(c, "local_transport")?,
            virtual_: TransportSpec::new(c, "virtual_transport")?,
            relay: TransportSpec::new(c, "relay_transport")?,
            default: TransportSpec::new(c, "default_transport")?,
            relayhost: c.get("relayhost").trim().to_string(),
            sender_relayhost: open("sender_dependent_relayhost_maps")?,
            transport_maps: TransportMaps {
                tables: open("transport_maps")?,
                parent_style: parent_style("transport_maps"),
                delimiter: c.get("recipient_delimiter"),
            },
        })
    }

    /// Routes one recipient of a message from `sender` ("" = null sender). A recipient
    /// without a domain is local to `$myhostname`. Errors: [`ResolveError::Lookup`] when a
    /// table fails (defer the recipient).
    pub fn resolve(&self, recipient: &str, sender: &str) -> Result<Route, ResolveError> {
        let recipient = recipient.trim();
        let (local, domain) = match recipient.rfind('@') {
            Some(at) => (&recipient[..at], normalize_domain(&recipient[at + 1..])),
            None => (recipient, String::new()),
        };
        let local = local.to_lowercase();
        let mut route = if domain.is_empty() {
            self.local_route(&self.myhostname)
        } else {
            self.class_route(&domain, sender)?
        };
        if route.class != Class::Alias {
            let domain = if domain.is_empty() {
                &self.myhostname
            } else {
                &domain
            };
            self.transport_maps.apply(&local, domain, &mut route)?;
        }
        Ok(route)
    }

    /// The route by domain class alone.
    fn class_route(&self, domain: &str, sender: &str) -> Result<Route, ResolveError> {
        if self.is_local(domain)? {
            return Ok(self.local_route(domain));
        }
        if !self.alias_domains.is_empty() && self.alias_domains.contains(domain)? {
            return Ok(Route {
                transport: ALIAS_TRANSPORT.to_string(),
                nexthop: ALIAS_NEXTHOP.to_string(),
                class: Class::Alias,
            });
        }
        if !self.mailbox_domains.is_empty() && self.mailbox_domains.contains(domain)? {
            return Ok(Route {
                transport: self.virtual_.name.clone(),
                nexthop: or_domain(&self.virtual_.nexthop, domain),
                class: Class::Virtual,
            });
        }
        let (spec, class) =
            if !self.relay_domains.is_empty() && self.relay_domains.contains(domain)? {
                (&self.relay, Class::Relay)
            } else {
                (&self.default, Class::Default)
            };
        let nexthop = if !spec.nexthop.is_empty() {
            spec.nexthop.clone()
        } else if let Some(hop) = self.sender_relayhost(sender)? {
            hop
        } else {
            or_domain(&self.relayhost, domain)
        };
        Ok(Route {
            transport: spec.name.clone(),
            nexthop,
            class,
        })
    }

    /// A Local route for `domain`.
    fn local_route(&self, domain: &str) -> Route {
        Route {
            transport: self.local.name.clone(),
            nexthop: or_domain(&self.local.nexthop, domain),
            class: Class::Local,
        }
    }

    /// Whether `domain` is delivered here: mydestination, or an address literal of this
    /// host.
    fn is_local(&self, domain: &str) -> Result<bool, ResolveError> {
        if self.mydestination.contains(domain)? {
            return Ok(true);
        }
        Ok(address_literal(domain).is_some_and(|ip| self.own_addrs.contains(&ip)))
    }

    /// sender_dependent_relayhost_maps for `sender`: the full address, then `@domain`.
    /// Not consulted for the null sender.
    fn sender_relayhost(&self, sender: &str) -> Result<Option<String>, ResolveError> {
        let sender = sender.trim();
        if sender.is_empty() || self.sender_relayhost.is_empty() {
            return Ok(None);
        }
        let mut keys = vec![sender.to_lowercase()];
        if let Some(at) = sender.rfind('@') {
            keys.push(format!("@{}", normalize_domain(&sender[at + 1..])));
        }
        for key in keys {
            let found =
                self.sender_relayhost
                    .lookup(&key)
                    .map_err(|source| ResolveError::Lookup {
                        param: "sender_dependent_relayhost_maps".to_string(),
                        key: key.clone(),
                        source,
                    })?;
            if let Some(hop) = found
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
            {
                return Ok(Some(hop));
            }
        }
        Ok(None)
    }
}

/// `hop` unless it is empty, else `domain`.
fn or_domain(hop: &str, domain: &str) -> String {
    if hop.is_empty() { domain } else { hop }.to_string()
}

/// A domain lowercased, without one trailing dot.
fn normalize_domain(domain: &str) -> String {
    let d = domain.trim();
    d.strip_suffix('.').unwrap_or(d).to_lowercase()
}

/// The address of a domain literal: `[192.0.2.1]`, `[ipv6:2001:db8::1]`.
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let ip = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => IpAddr::V6(inner[5..].parse().ok()?),
        _ => IpAddr::V4(inner.parse().ok()?),
    };
    Some(ip.to_canonical())
}

/// The addresses an inet_interfaces-style value names (`all`, `loopback-only`, addresses
/// or host names); what cannot be found is logged and skipped.
fn interface_addrs(param: &str, words: &[String]) -> Vec<IpAddr> {
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut out = Vec::new();
    for word in words {
        match word.to_ascii_lowercase().as_str() {
            "all" => {
                out.extend(loopback);
                match nix::ifaddrs::getifaddrs() {
                    Ok(ifaces) => out.extend(ifaces.filter_map(|i| {
                        let sa = i.address?;
                        sa.as_sockaddr_in()
                            .map(|v4| IpAddr::V4(v4.ip()))
                            .or_else(|| sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                    })),
                    Err(e) => log::warn!("{param}: cannot list interface addresses: {e}"),
                }
            }
            "loopback-only" => out.extend(loopback),
            other => {
                let bare = other.trim_start_matches('[').trim_end_matches(']');
                if let Ok(ip) = bare.parse::<IpAddr>() {
                    out.push(ip);
                    continue;
                }
                match (bare, 0).to_socket_addrs() {
                    Ok(addrs) => out.extend(addrs.map(|sa| sa.ip())),
                    Err(e) => log::warn!("{param}: cannot find the address of \"{other}\": {e}"),
                }
            }
        }
    }
    let mut out: Vec<IpAddr> = out.into_iter().map(|ip| ip.to_canonical()).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
